//! Request ids: every HTTP request and Flight SQL call gets one — the client's `x-request-id`
//! when it is a token safe to log and echo, else a new one — answered in the response's
//! `x-request-id` and recorded on the tracing span the request is served in, so that every log
//! line emitted while serving it (engine, ingestion, transformation) carries it. PostgreSQL
//! connections get a `session_id` the same way (`pg.rs`).
//!
//! One tower layer serves both listeners (axum and tonic are both tower); tower-http's
//! request-id layers would need a second middleware to open the span and keep the id for
//! error bodies.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use tracing::Instrument;

/// The header a client may send its own id in, and the response carries.
pub(crate) const HEADER: &str = "x-request-id";

/// Longer client ids are replaced: they end up in every log line of the request.
const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the HTTP request served on this task (for error bodies), if any.
pub(crate) fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// `value` when it is a sane id (1 to 128 characters of `[A-Za-z0-9._-]`): nothing that could
/// forge a log line, break JSON or carry a secret-sized blob.
pub(crate) fn sanitize(value: &str) -> Option<&str> {
    let sane = !value.is_empty()
        && value.len() <= MAX_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    sane.then_some(value)
}

/// A new random id (a UUID v4).
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn id_for(headers: &http::HeaderMap) -> String {
    headers
        .get(HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(sanitize)
        .map_or_else(new_id, str::to_string)
}

#[derive(Debug, Clone, Copy)]
enum Listener {
    Http,
    Flight,
}

/// Gives each request an id, a span carrying it, and the id in the response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestIdLayer {
    listener: Listener,
}

impl RequestIdLayer {
    /// For the HTTP listener: also keeps the id for error bodies and logs each API request's
    /// outcome at info (probes, metrics scrapes and UI assets at debug).
    pub(crate) fn http() -> Self {
        RequestIdLayer {
            listener: Listener::Http,
        }
    }

    /// For Flight SQL calls (the id comes from the gRPC `x-request-id` metadata).
    pub(crate) fn flight() -> Self {
        RequestIdLayer {
            listener: Listener::Flight,
        }
    }
}

impl<S> tower::Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestId {
            inner,
            listener: self.listener,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RequestId<S> {
    inner: S,
    listener: Listener,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<Request<B>> for RequestId<S>
where
    S: tower::Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone is the ready one's twin (tower's usual take-the-ready-service pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let id = id_for(request.headers());
        let header = HeaderValue::from_str(&id).ok();
        if let Some(value) = &header {
            // Handlers see the id the response carries, not a rejected one.
            request.headers_mut().insert(HEADER, value.clone());
        }
        let listener = self.listener;
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let span = match listener {
            Listener::Http => {
                tracing::info_span!("request", request_id = %id, method = %method, path = %path)
            }
            Listener::Flight => tracing::info_span!("flight_call", request_id = %id, call = %path),
        };
        Box::pin(
            async move {
                let started = Instant::now();
                let mut result = CURRENT.scope(id, inner.call(request)).await;
                if let Ok(response) = &mut result {
                    if let Some(value) = header {
                        response.headers_mut().insert(HEADER, value);
                    }
                    let status = response.status().as_u16();
                    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
                    match listener {
                        Listener::Http if path.starts_with("/api/") => {
                            tracing::info!(status, elapsed_ms, "request answered")
                        }
                        Listener::Http => tracing::debug!(status, elapsed_ms, "request answered"),
                        // A gRPC call's outcome is in its trailers; statements log their own.
                        Listener::Flight => tracing::debug!(elapsed_ms, "flight call answered"),
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_replaced() {
        assert_eq!(sanitize("abc-123"), Some("abc-123"));
        assert_eq!(sanitize("A.b_C-9"), Some("A.b_C-9"));
        let longest = "x".repeat(128);
        assert_eq!(sanitize(&longest), Some(longest.as_str()));
        for bad in [
            "",
            &"x".repeat(129),
            "has space",
            "quote\"",
            "new\nline",
            "brace{}",
            "slash/",
            "ünïcode",
        ] {
            assert_eq!(sanitize(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_missing_or_bad_header_gets_a_new_id() {
        let mut headers = http::HeaderMap::new();
        let fresh = id_for(&headers);
        assert!(sanitize(&fresh).is_some() && fresh.len() == 36, "{fresh}");
        assert_ne!(fresh, id_for(&headers), "ids are not reused");
        headers.insert(HEADER, HeaderValue::from_static("abc-123"));
        assert_eq!(id_for(&headers), "abc-123");
        headers.insert(HEADER, HeaderValue::from_static("a b"));
        assert_ne!(id_for(&headers), "a b");
        // Not even valid UTF-8.
        headers.insert(HEADER, HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        assert_eq!(id_for(&headers).len(), 36);
    }

    #[tokio::test]
    async fn the_response_and_the_handler_carry_the_id() {
        use tower::{Layer, ServiceExt};
        let service = tower::service_fn(|request: Request<()>| async move {
            let seen = request
                .headers()
                .get(HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            Ok::<_, std::convert::Infallible>(Response::new((seen, current())))
        });
        let service = RequestIdLayer::http().layer(service);

        let request = Request::builder()
            .uri("/api/v1/sql")
            .header(HEADER, "abc-123")
            .body(())
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.headers()[HEADER], "abc-123");
        let (seen, current) = response.into_body();
        assert_eq!(seen.as_deref(), Some("abc-123"));
        assert_eq!(current.as_deref(), Some("abc-123"));

        let request = Request::builder()
            .uri("/health")
            .header(HEADER, "bad id!")
            .body(())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        let answered = response.headers()[HEADER].to_str().unwrap().to_string();
        assert_ne!(answered, "bad id!");
        let (seen, current) = response.into_body();
        assert_eq!(seen.as_deref(), Some(answered.as_str()));
        assert_eq!(current.as_deref(), Some(answered.as_str()));
    }
}
