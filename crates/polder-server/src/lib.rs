//! Polder's listeners, all answering the same SQL through one engine:
//! - HTTP on 9047: REST API (`POST /api/v1/sql`, `GET /api/v1/catalog`, `POST /api/v1/import`),
//!   `/health`, `/ready`, `/metrics`;
//! - PostgreSQL wire on 31010 ([`pg`]);
//! - Arrow Flight SQL on 32010 ([`flight`]).

#![allow(clippy::result_large_err)] // handlers' errors are the axum `Response` they answer with

pub mod auth;
pub mod charts;
mod drain;
mod error;
mod flight;
mod flight_auth;
pub mod format;
mod http;
mod http_auth;
mod http_connections;
mod http_reflections;
mod http_saved;
mod http_secrets;
mod http_transform;
pub mod metrics;
#[cfg(test)]
mod openapi_routes_test;
mod pg;
mod pg_copy;
mod pg_cursor;
mod pg_functions;
mod refusals;
mod request_id;
pub mod tls;
mod ui_assets;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion_postgres::datafusion_pg_catalog::pg_catalog::{
    context::EmptyContextProvider, setup_pg_catalog,
};
use futures::StreamExt;
use polder_core::CATALOG_NAME;
use polder_engine::Engine;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use auth::{AuthError, Authenticator};
pub use error::{ServerError, grpc_status, http_status};
pub use http_saved::{DashboardBody, DashboardFilter, Tile};
pub use http_transform::serve_static_dir;
pub use tls::TlsIdentity;

/// Where the listeners listen.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub http: SocketAddr,
    pub pg: SocketAddr,
    pub flight: SocketAddr,
    /// Where uploads wait while they are imported.
    pub upload_dir: PathBuf,
    /// Credentials checks on every listener; `None` when authentication is off.
    pub auth: Option<auth::Authenticator>,
    /// Whether `/metrics` needs credentials too.
    pub protect_metrics: bool,
    /// Serve every listener over TLS with this certificate; `None` for plain connections.
    pub tls: Option<tls::TlsIdentity>,
    /// Stored secrets (`/api/v1/secrets`).
    pub secrets: polder_catalog::SecretVault,
    /// Run scheduled work (cron syncs and builds, reflection refreshes, resuming interrupted
    /// syncs) whenever this process holds the catalog's scheduler lease.
    pub run_schedules: bool,
    /// How long the scheduler lease lasts unrenewed (failover time after a crash).
    pub lease_ttl: std::time::Duration,
}

/// The listeners, bound and serving.
pub struct RunningServer {
    pub http: SocketAddr,
    pub pg: SocketAddr,
    pub flight: SocketAddr,
    tasks: JoinSet<Result<(), ServerError>>,
    drain: Arc<drain::Drain>,
    leadership: Option<polder_catalog::Leadership>,
}

async fn bind(listener: &'static str, address: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(address)
        .await
        .map_err(|e| ServerError::Bind {
            listener,
            address: address.to_string(),
            message: e.to_string(),
        })
}

/// Adds what PostgreSQL clients expect to find (`pg_catalog`, `version()`, ...) to the
/// engine's session.
fn prepare_session_for_postgres(engine: &Engine) -> Result<(), ServerError> {
    let setup_error = |message: String| ServerError::Serve {
        listener: "postgres",
        message,
    };
    setup_pg_catalog(engine.session(), CATALOG_NAME, EmptyContextProvider)
        .map_err(|e| setup_error(e.to_string()))?;
    let state = engine.session().state_ref();
    let mut state = state.write();
    datafusion_postgres::datafusion_pg_functions::register_all(&mut *state);
    drop(state);
    pg_functions::register(engine.session());
    Ok(())
}

/// Binds all three listeners (failing before serving anything if one cannot bind) and starts
/// serving.
pub async fn start(
    engine: Arc<Engine>,
    options: ServerOptions,
) -> Result<RunningServer, ServerError> {
    let metrics_handle = metrics::install();
    prepare_session_for_postgres(&engine)?;

    let http_listener = bind("http", options.http).await?;
    let pg_listener = bind("postgres", options.pg).await?;
    let flight_listener = bind("flight sql", options.flight).await?;
    let local = |listener: &TcpListener, name: &'static str| {
        listener.local_addr().map_err(|e| ServerError::Bind {
            listener: name,
            address: String::new(),
            message: e.to_string(),
        })
    };
    let http_address = local(&http_listener, "http")?;
    let pg_address = local(&pg_listener, "postgres")?;
    let flight_address = local(&flight_listener, "flight sql")?;

    if let Some(auth) = &options.auth {
        auth.spawn_token_cleanup(std::time::Duration::from_secs(600));
    }
    // Refusals are audited when there is an audit (authentication on).
    let refusals = options
        .auth
        .as_ref()
        .map(|auth| refusals::RefusalLog::new(auth.store().clone()));
    let mut tasks = JoinSet::new();
    let ingestion = Arc::new(polder_ingest::Ingestion::new(
        engine.clone(),
        options.secrets.clone(),
    ));
    let transformations = polder_transform::Transformations::new(engine.clone());
    let leadership = options.run_schedules.then(|| {
        polder_catalog::Leadership::spawn(
            engine.catalog_store().clone(),
            polder_catalog::SCHEDULER_LEASE,
            &polder_core::runner::runner_identity(),
            options.lease_ttl,
        )
    });
    if let Some(leadership) = &leadership {
        ingestion.clone().spawn_scheduler(leadership.clone());
        transformations.clone().spawn_scheduler(leadership.clone());
        engine.spawn_reflection_maintenance(leadership.clone());
    }
    let drain = drain::Drain::new();
    let state = http::AppState {
        engine: engine.clone(),
        metrics: metrics_handle,
        upload_dir: options.upload_dir.clone(),
        auth: options.auth.clone(),
        protect_metrics: options.protect_metrics,
        secrets: options.secrets.clone(),
        refusals: refusals.clone(),
        ingestion: ingestion.clone(),
        transformations: transformations.clone(),
        drain: drain.clone(),
        leadership: leadership.clone(),
    };
    let router = http::router(state)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(request_id::RequestIdLayer::http());
    let make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    let http_acceptor = match &options.tls {
        Some(identity) => Some(identity.acceptor(&[b"h2", b"http/1.1"])?),
        None => None,
    };
    let http_error = |e: std::io::Error| ServerError::Serve {
        listener: "http",
        message: e.to_string(),
    };
    match http_acceptor {
        Some(acceptor) => {
            // `tap_io` only so that axum hands handlers the peer address (ConnectInfo).
            use axum::serve::ListenerExt;
            let listener = tls::TlsListener::new(http_listener, acceptor, refusals.clone())
                .map_err(http_error)?
                .tap_io(|_| {});
            let draining = drain.clone();
            tasks.spawn(async move {
                axum::serve(listener, make_service)
                    .with_graceful_shutdown(async move { draining.begun().await })
                    .await
                    .map_err(http_error)
            });
        }
        None => {
            // Results stream out in several writes: without TCP_NODELAY each write after the
            // first waits for the client's delayed ACK (~40 ms).
            use axum::serve::ListenerExt;
            let listener = http_listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let draining = drain.clone();
            tasks.spawn(async move {
                axum::serve(listener, make_service)
                    .with_graceful_shutdown(async move { draining.begun().await })
                    .await
                    .map_err(http_error)
            });
        }
    }

    let pg_tls = match &options.tls {
        Some(identity) => Some((
            identity.acceptor(&[b"postgresql"])?,
            identity.certificate_pem(),
        )),
        None => None,
    };
    let handlers = Arc::new(pg::PgHandlers::new(
        engine.clone(),
        options.auth.clone(),
        pg_tls.as_ref().map(|(_, pem)| *pem),
        refusals.clone(),
        drain.clone(),
    )?);
    let pg_acceptor = pg_tls.map(|(acceptor, _)| acceptor);
    let pg_drain = drain.clone();
    tasks.spawn(async move {
        pg::serve(pg_listener, handlers, pg_acceptor, pg_drain)
            .await
            .map_err(|e| ServerError::Serve {
                listener: "postgres",
                message: e.to_string(),
            })
    });

    let flight_service =
        flight::PolderFlightSql::new(engine.clone(), options.auth.clone()).into_service();
    let flight_auth = flight_auth::FlightAuthLayer {
        auth: options.auth.clone(),
    };
    let flight_error = |e: tonic::transport::Error| ServerError::Serve {
        listener: "flight sql",
        message: e.to_string(),
    };
    let flight_server = tonic::transport::Server::builder()
        .layer(request_id::RequestIdLayer::flight())
        .layer(flight_auth)
        .add_service(flight_service);
    match &options.tls {
        Some(identity) => {
            // gRPC clients insist on ALPN h2 over TLS.
            let incoming = tls::flight_incoming(
                flight_listener,
                identity.acceptor(&[b"h2"])?,
                refusals.clone(),
            );
            let draining = drain.clone();
            tasks.spawn(async move {
                flight_server
                    .serve_with_incoming_shutdown(incoming, async move { draining.begun().await })
                    .await
                    .map_err(flight_error)
            });
        }
        None => {
            // Flight answers are small request/response exchanges: without TCP_NODELAY each
            // one waits for a delayed ACK (~40 ms).
            let incoming =
                tokio_stream::wrappers::TcpListenerStream::new(flight_listener).map(|accepted| {
                    accepted.inspect(|stream| {
                        let _ = stream.set_nodelay(true);
                    })
                });
            let draining = drain.clone();
            tasks.spawn(async move {
                flight_server
                    .serve_with_incoming_shutdown(incoming, async move { draining.begun().await })
                    .await
                    .map_err(flight_error)
            });
        }
    }

    Ok(RunningServer {
        http: http_address,
        pg: pg_address,
        flight: flight_address,
        tasks,
        drain,
        leadership,
    })
}

impl RunningServer {
    /// Serves until a listener fails (they do not stop on their own before [`Self::shutdown`]).
    pub async fn wait(&mut self) -> Result<(), ServerError> {
        match self.tasks.join_next().await {
            Some(Ok(result)) => result,
            Some(Err(join_error)) => Err(ServerError::Serve {
                listener: "task",
                message: join_error.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Drains and stops: readiness turns false, listeners stop accepting, new statements are
    /// refused, the scheduler lease is handed over; then waits (at most `timeout`) for the
    /// statements and commits already running to finish. Returns how many were cut off.
    pub async fn shutdown(mut self, timeout: std::time::Duration) -> usize {
        self.drain.begin();
        if let Some(leadership) = &self.leadership {
            leadership.resign().await;
        }
        let drained = async {
            while self.tasks.join_next().await.is_some() {}
            self.drain.idle().await;
            // A PostgreSQL statement counts as done once its last row left the stream; the
            // connection task still writes the completion message after that.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        match tokio::time::timeout(timeout, drained).await {
            Ok(()) => {
                tracing::info!("drained: every running statement finished");
                0
            }
            Err(_) => {
                let cut_off = self.drain.in_flight();
                tracing::warn!(
                    statements = cut_off,
                    timeout_secs = timeout.as_secs_f64(),
                    "shutdown timeout: statements still running are cut off (their writes are not committed)"
                );
                self.tasks.abort_all();
                cut_off
            }
        }
    }
}
