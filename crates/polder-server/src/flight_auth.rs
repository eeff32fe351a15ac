//! Flight SQL authentication: the handshake trades basic credentials for a session token, and a
//! tower layer checks the bearer token of every other call and runs it as the token's user.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use polder_engine::access;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::auth::{Authenticator, SESSION_TTL, parse_basic};

const HANDSHAKE_PATH: &str = "/arrow.flight.protocol.FlightService/Handshake";

/// Checks `authorization: Basic base64(user:password)` and issues a session token.
pub(crate) async fn handshake(
    auth: &Authenticator,
    metadata: &MetadataMap,
    client: &str,
) -> Result<String, Status> {
    let header = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (user, password) = parse_basic(header).ok_or_else(|| {
        Status::unauthenticated("the handshake needs `authorization: Basic base64(user:password)`")
    })?;
    let principal = auth
        .login(&user, &password, client)
        .await
        .map_err(|e| Status::unauthenticated(e.to_string()))?;
    let issued = auth
        .issue_token(&principal.user, "session", "flight", Some(SESSION_TTL))
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok(issued.token)
}

/// Wraps the Flight service: every call but the handshake needs `authorization: Bearer`.
#[derive(Clone)]
pub(crate) struct FlightAuthLayer {
    pub auth: Option<Authenticator>,
}

impl<S> tower::Layer<S> for FlightAuthLayer {
    type Service = FlightAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FlightAuth {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct FlightAuth<S> {
    inner: S,
    auth: Option<Authenticator>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for FlightAuth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone is the ready one's twin (tower's usual take-the-ready-service pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(auth) = self.auth.clone() else {
            return Box::pin(inner.call(request));
        };
        if request.uri().path() == HANDSHAKE_PATH {
            return Box::pin(inner.call(request));
        }
        let bearer = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string());
        let client = format!(
            "flight {}",
            request
                .extensions()
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|info| info.remote_addr())
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        Box::pin(async move {
            let Some(token) = bearer else {
                return Ok(Status::unauthenticated(
                    "Flight SQL calls need `authorization: Bearer <token>` from the handshake or a personal access token",
                )
                .into_http());
            };
            match auth.verify_token(&token, &client).await {
                Ok(principal) => access::run_as(principal, inner.call(request)).await,
                Err(err) => Ok(Status::unauthenticated(err.to_string()).into_http()),
            }
        })
    }
}
