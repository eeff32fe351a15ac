//! The HTTP listener: the web UI (`/`), REST API (`/api/v1/...`), health and readiness probes,
//! Prometheus metrics.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use polder_core::{ErrorKind, HasErrorKind, TableName};
use polder_engine::{Engine, EngineError, StatementOutput};
use polder_ingest::{FileFormat, ImportMode, ImportRequest, NoProgress};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::error::http_status;
use crate::format::{Encoder, OutputFormat};
use crate::metrics::{Interface, StatementRun, record_rows, record_statement};

#[derive(Clone)]
pub(crate) struct AppState {
    pub engine: Arc<Engine>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Where uploaded files wait while they are imported.
    pub upload_dir: PathBuf,
    /// Checks credentials; `None` when authentication is off.
    pub auth: Option<crate::auth::Authenticator>,
    pub protect_metrics: bool,
    /// Stored secrets, sealed with the secrets key.
    pub secrets: polder_catalog::SecretVault,
    /// Audits refused requests (authentication on).
    pub refusals: Option<crate::refusals::RefusalLog>,
    /// Connections, syncs and jobs.
    pub ingestion: Arc<polder_ingest::Ingestion>,
    /// dbt projects: runs, lineage, last results.
    pub transformations: polder_transform::Transformations,
    /// Set once SIGTERM began a graceful shutdown: `/ready` answers 503.
    pub drain: Arc<crate::drain::Drain>,
    /// Whether this coordinator runs scheduled work now (`None`: it never does).
    pub leadership: Option<polder_catalog::Leadership>,
}

/// The REST API as an OpenAPI 3.1 document (made by `openapi/gen_openapi.py`; a test keeps it
/// equal to the routes below).
async fn openapi_document() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

pub(crate) fn router(state: AppState) -> Router {
    // The web UI's files go out gzip-compressed to browsers that accept it.
    let compressed = tower_http::compression::CompressionLayer::new;
    Router::new()
        .route("/", get(crate::ui_assets::index).layer(compressed()))
        .route(
            "/assets/{*path}",
            get(crate::ui_assets::asset).layer(compressed()),
        )
        .route(
            "/vendor/{*path}",
            get(crate::ui_assets::vendor).layer(compressed()),
        )
        .route("/api/v1/me", get(crate::http_auth::me))
        .route(
            "/api/v1/saved-queries",
            get(crate::http_saved::list_saved_queries).post(crate::http_saved::create_saved_query),
        )
        .route(
            "/api/v1/saved-queries/{id}",
            get(crate::http_saved::get_saved_query)
                .put(crate::http_saved::update_saved_query)
                .delete(crate::http_saved::delete_saved_query),
        )
        .route(
            "/api/v1/charts",
            get(crate::http_saved::list_charts).post(crate::http_saved::create_chart),
        )
        .route(
            "/api/v1/charts/data",
            post(crate::http_saved::preview_chart_data),
        )
        .route(
            "/api/v1/charts/{id}",
            get(crate::http_saved::get_chart)
                .put(crate::http_saved::update_chart)
                .delete(crate::http_saved::delete_chart),
        )
        .route(
            "/api/v1/charts/{id}/data",
            post(crate::http_saved::saved_chart_data),
        )
        .route(
            "/api/v1/dashboards",
            get(crate::http_saved::list_dashboards).post(crate::http_saved::create_dashboard),
        )
        .route(
            "/api/v1/dashboards/{id}",
            get(crate::http_saved::get_dashboard)
                .put(crate::http_saved::update_dashboard)
                .delete(crate::http_saved::delete_dashboard),
        )
        .route(
            "/api/v1/dashboards/{id}/values",
            get(crate::http_saved::dashboard_values),
        )
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(prometheus))
        .route("/api/v1/sql", post(sql))
        .route(
            "/api/v1/reflections",
            get(crate::http_reflections::list_reflections)
                .post(crate::http_reflections::create_reflection),
        )
        .route(
            "/api/v1/reflections/{name}",
            get(crate::http_reflections::get_reflection)
                .delete(crate::http_reflections::delete_reflection),
        )
        .route(
            "/api/v1/reflections/{name}/refresh",
            post(crate::http_reflections::refresh_reflection),
        )
        .route("/api/v1/catalog", get(catalog))
        .route("/api/v1/openapi.json", get(openapi_document))
        .route("/api/v1/login", post(crate::http_auth::login))
        .route(
            "/api/v1/users",
            get(crate::http_auth::list_users).post(crate::http_auth::add_user),
        )
        .route(
            "/api/v1/users/{name}",
            axum::routing::patch(crate::http_auth::change_user)
                .delete(crate::http_auth::delete_user),
        )
        .route(
            "/api/v1/users/{name}/attributes",
            axum::routing::put(crate::http_auth::set_user_attributes),
        )
        .route("/api/v1/secrets", get(crate::http_secrets::list_secrets))
        .route(
            "/api/v1/secrets/{name}",
            axum::routing::put(crate::http_secrets::put_secret)
                .delete(crate::http_secrets::delete_secret),
        )
        .route(
            "/api/v1/connections",
            get(crate::http_connections::list_connections)
                .post(crate::http_connections::create_connection),
        )
        .route(
            "/api/v1/connections/{name}",
            get(crate::http_connections::get_connection)
                .patch(crate::http_connections::edit_connection)
                .delete(crate::http_connections::delete_connection),
        )
        .route(
            "/api/v1/connections/{name}/check",
            post(crate::http_connections::check_connection),
        )
        .route(
            "/api/v1/connections/{name}/discover",
            post(crate::http_connections::discover_connection),
        )
        .route(
            "/api/v1/connections/{name}/sync",
            post(crate::http_connections::sync_connection),
        )
        .route("/api/v1/jobs", get(crate::http_connections::list_jobs))
        .route("/api/v1/jobs/{id}", get(crate::http_connections::get_job))
        .route(
            "/api/v1/projects",
            get(crate::http_transform::list_projects),
        )
        .route(
            "/api/v1/projects/{name}",
            get(crate::http_transform::get_project).patch(crate::http_transform::schedule_project),
        )
        .route(
            "/api/v1/projects/{name}/runs",
            get(crate::http_transform::list_runs),
        )
        .route(
            "/api/v1/projects/{name}/runs/{id}",
            get(crate::http_transform::get_run),
        )
        .route(
            "/api/v1/projects/{name}/{command}",
            post(crate::http_transform::run_project),
        )
        .route(
            "/api/v1/tokens",
            get(crate::http_auth::list_tokens).post(crate::http_auth::create_token),
        )
        .route(
            "/api/v1/tokens/{id}",
            axum::routing::delete(crate::http_auth::revoke_token),
        )
        .route(
            "/api/v1/import",
            post(import).layer(DefaultBodyLimit::disable()),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http_auth::require_auth,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit_refused_requests,
        ))
        .with_state(state)
}

/// Requests refused for their shape — too large, or an import naming a local path — go to the
/// audit log with the client's address (logins and SQL are audited where they are checked).
async fn audit_refused_requests(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(refusals) = state.refusals.clone() else {
        return next.run(request).await;
    };
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0);
    let what = format!("{} {}", request.method(), request.uri().path());
    let is_import = request.uri().path() == "/api/v1/import";
    let response = next.run(request).await;
    let status = response.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        refusals.record("http", peer, &format!("{what}: request body too large"));
    } else if is_import && status == StatusCode::BAD_REQUEST {
        refusals.record("http", peer, &format!("{what}: refused import request"));
    }
    response
}

/// `{"error": {"code", "message"}}` with the status of the error's kind, and the request's id
/// (`request_id`) that its log lines carry.
pub(crate) fn error_response(kind: ErrorKind, message: &str, sqlstate: Option<&str>) -> Response {
    let mut error = serde_json::json!({"code": kind.code(), "message": message});
    if let Some(state) = sqlstate {
        error["sqlstate"] = serde_json::Value::String(state.to_string());
    }
    if let Some(id) = crate::request_id::current() {
        error["request_id"] = serde_json::Value::String(id);
    }
    (
        http_status(kind),
        axum::Json(serde_json::json!({ "error": error })),
    )
        .into_response()
}

pub(crate) fn engine_error_response(err: &EngineError) -> Response {
    error_response(err.kind(), &err.to_string(), Some(err.sqlstate()))
}

async fn not_found() -> Response {
    error_response(ErrorKind::NotFound, "no such endpoint", None)
}

async fn health() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Ready when both the catalog store and the lake answer, and not shutting down.
async fn ready(State(state): State<AppState>) -> Response {
    let scheduler = match &state.leadership {
        Some(leadership) if leadership.is_leader() => "leader",
        Some(_) => "standby",
        None => "off",
    };
    if state.drain.is_draining() {
        let body = serde_json::json!({"status": "draining", "scheduler": scheduler});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    let catalog = state.engine.catalog_store().ping().await;
    let lake = state.engine.lake().check().await;
    let describe = |result: &Result<(), String>| match result {
        Ok(()) => serde_json::json!({"status": "ok"}),
        Err(message) => serde_json::json!({"status": "error", "message": message}),
    };
    let catalog = catalog.map_err(|e| e.to_string());
    let lake = lake.map_err(|e| e.to_string());
    let all_ok = catalog.is_ok() && lake.is_ok();
    let body = serde_json::json!({
        "status": if all_ok { "ready" } else { "not_ready" },
        "catalog": describe(&catalog),
        "lake": describe(&lake),
        "scheduler": scheduler,
    });
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn catalog(State(state): State<AppState>) -> Response {
    match state.engine.describe_catalog().await {
        Ok(description) => axum::Json(description).into_response(),
        Err(err) => engine_error_response(&err),
    }
}

#[derive(Debug, Deserialize)]
struct SqlRequest {
    sql: String,
    #[serde(default)]
    format: Option<String>,
    /// Stop after this many rows (the JSON answer then says `"truncated": true`).
    #[serde(default)]
    max_rows: Option<u64>,
    /// `false`: run without reflections and the results cache (to compare, or to measure).
    #[serde(default)]
    acceleration: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct FormatParam {
    format: Option<String>,
    max_rows: Option<u64>,
    acceleration: Option<bool>,
}

fn choose_format(
    param: Option<&str>,
    body: Option<&str>,
    headers: &HeaderMap,
) -> Result<OutputFormat, Response> {
    if let Some(name) = param.or(body) {
        return OutputFormat::from_name(name).ok_or_else(|| {
            error_response(
                ErrorKind::InvalidInput,
                &format!("unknown format '{name}': expected json, csv, arrow or parquet"),
                None,
            )
        });
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    Ok(OutputFormat::from_accept(accept).unwrap_or(OutputFormat::Json))
}

/// `POST /api/v1/sql`: runs the statements, answers with the last one's result.
async fn sql(
    State(state): State<AppState>,
    Query(params): Query<FormatParam>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let request: SqlRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            record_statement(
                Interface::Http,
                started.elapsed(),
                Some(ErrorKind::InvalidInput),
            );
            return error_response(
                ErrorKind::InvalidInput,
                &format!("expected a JSON body {{\"sql\": \"...\"}}: {err}"),
                None,
            );
        }
    };
    let format = match choose_format(
        params.format.as_deref(),
        request.format.as_deref(),
        &headers,
    ) {
        Ok(format) => format,
        Err(response) => return response,
    };
    tracing::debug!(sql = %request.sql, "http query");
    let acceleration = params.acceleration.or(request.acceleration).unwrap_or(true);
    polder_engine::with_acceleration(
        acceleration,
        run_sql_request(state, params, request, format),
    )
    .await
}

/// The statements of one `POST /api/v1/sql`, planned and started (the first batch computed)
/// inside the request's acceleration setting.
async fn run_sql_request(
    state: AppState,
    params: FormatParam,
    request: SqlRequest,
    format: OutputFormat,
) -> Response {
    let run = StatementRun::start(&state.engine, Interface::Http, &request.sql);
    let outputs = match state.engine.execute_sql(&request.sql).await {
        Ok(outputs) => outputs,
        Err(err) => {
            run.failed(err.kind(), &err.to_string());
            return engine_error_response(&err);
        }
    };
    match outputs.into_iter().last() {
        None => {
            run.ok(None);
            axum::Json(serde_json::json!({"command": "EMPTY"})).into_response()
        }
        Some(StatementOutput::Command(outcome)) => {
            run.ok(outcome.rows);
            axum::Json(serde_json::json!({"command": outcome.tag, "rows_affected": outcome.rows}))
                .into_response()
        }
        Some(StatementOutput::Query(frame)) => {
            let mut stream = match frame.execute_stream().await {
                Ok(stream) => stream,
                Err(err) => {
                    let err = EngineError::from(err);
                    run.failed(err.kind(), &err.to_string());
                    return engine_error_response(&err);
                }
            };
            // The status line goes out with the first bytes, so compute the first batch before
            // answering: most execution errors (a division by zero, a bad cast) show up there
            // and still get a 4xx. Errors after it end the stream instead.
            let first = match stream.next().await {
                Some(Ok(batch)) => Some(batch),
                Some(Err(err)) => {
                    let err = EngineError::from(err);
                    run.failed(err.kind(), &err.to_string());
                    return engine_error_response(&err);
                }
                None => None,
            };
            let max_rows = params.max_rows.or(request.max_rows);
            stream_response(stream, first, format, max_rows, run)
        }
    }
}

/// Streams a result: a task pulls batches and encodes them into a channel the body reads. A
/// client that goes away closes the channel, which stops the task and drops the query. With
/// `max_rows`, the query stops after that many rows.
fn stream_response(
    mut stream: datafusion::execution::SendableRecordBatchStream,
    first: Option<datafusion::arrow::array::RecordBatch>,
    format: OutputFormat,
    max_rows: Option<u64>,
    run: StatementRun,
) -> Response {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let schema = stream.schema();
    // In the request's span: the rows stream after the handler answered.
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        let (mut encoder, head) = match Encoder::new(format, &schema) {
            Ok(pair) => pair,
            Err(err) => {
                let _ = sender
                    .send(Err(std::io::Error::other(err.to_string())))
                    .await;
                return;
            }
        };
        let mut rows = 0u64;
        let mut bytes = head.len() as u64;
        if sender.send(Ok(head)).await.is_err() {
            // Dropping `run` records the statement as cancelled.
            return;
        }
        let mut failure: Option<EngineError> = None;
        let mut truncated = false;
        let mut pending_first = first;
        loop {
            let next = match pending_first.take() {
                Some(batch) => Some(Ok(batch)),
                None => stream.next().await,
            };
            let Some(next) = next else {
                break;
            };
            let mut batch = match next {
                Ok(batch) => batch,
                Err(err) => {
                    failure = Some(EngineError::from(err));
                    break;
                }
            };
            if let Some(limit) = max_rows {
                let room = limit.saturating_sub(rows);
                if batch.num_rows() as u64 > room {
                    batch = batch.slice(0, room as usize);
                    truncated = true;
                }
            }
            rows += batch.num_rows() as u64;
            let chunk = match encoder.batch(&batch) {
                Ok(chunk) => chunk,
                Err(err) => {
                    failure = Some(EngineError::InvalidInput(err.to_string()));
                    break;
                }
            };
            bytes += chunk.len() as u64;
            if !chunk.is_empty() && sender.send(Ok(chunk)).await.is_err() {
                tracing::debug!("http client went away during a result stream");
                return;
            }
            if truncated {
                // Dropping the stream stops the query.
                break;
            }
        }
        match &failure {
            Some(err) if format != OutputFormat::Json => {
                let _ = sender
                    .send(Err(std::io::Error::other(err.to_string())))
                    .await;
            }
            _ => {
                let message = failure.as_ref().map(|e| e.to_string());
                let error = failure
                    .as_ref()
                    .map(|e| (e.kind().code(), message.as_deref().unwrap_or("")));
                match encoder.end(error, truncated) {
                    Ok(tail) => {
                        bytes += tail.len() as u64;
                        let _ = sender.send(Ok(tail)).await;
                    }
                    Err(err) => {
                        let _ = sender
                            .send(Err(std::io::Error::other(err.to_string())))
                            .await;
                    }
                }
            }
        }
        record_rows(Interface::Http, rows, bytes);
        match &failure {
            Some(err) => run.failed(err.kind(), &err.to_string()),
            None => run.ok(Some(rows)),
        }
    }));
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, format.content_type())
        .body(body)
        .expect("static response parts")
}

#[derive(Debug, Deserialize)]
struct ImportParams {
    table: Option<String>,
    format: Option<String>,
    mode: Option<String>,
    /// The uploaded file's name, to tell its format (and compression) when `format` is absent.
    filename: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ImportBody {
    source: String,
    table: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    mode: Option<String>,
}

/// `POST /api/v1/import`: either an uploaded file (`?table=s.t&format=csv`, the file as the
/// body) or a JSON body `{"source": "s3://..." | "https://...", "table": "s.t"}`. Local paths of
/// the server are not accepted: the server reads only what the client sends or names remotely.
async fn import(
    State(state): State<AppState>,
    Query(params): Query<ImportParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let principal = polder_engine::access::current_principal();
    if !principal.is_engineer_or_admin() {
        return error_response(
            ErrorKind::PermissionDenied,
            &format!(
                "user '{}' ({}) may not import: loading tables needs the engineer or admin role",
                principal.user, principal.role
            ),
            None,
        );
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let invalid = |message: String| error_response(ErrorKind::InvalidInput, &message, None);

    let (source, table, format, mode, upload) = if is_json {
        let bytes = match axum::body::to_bytes(body, 1024 * 1024).await {
            Ok(bytes) => bytes,
            Err(err) => return invalid(format!("cannot read the request body: {err}")),
        };
        let request: ImportBody = match serde_json::from_slice(&bytes) {
            Ok(request) => request,
            Err(err) => return invalid(format!("expected {{\"source\", \"table\"}}: {err}")),
        };
        if !(request.source.starts_with("s3://")
            || request.source.starts_with("http://")
            || request.source.starts_with("https://"))
        {
            return invalid("a server-side import reads s3:// or http(s):// sources; upload local files as the body".to_string());
        }
        (
            request.source,
            request.table,
            request.format,
            request.mode,
            None,
        )
    } else {
        let Some(table) = params.table.clone() else {
            return invalid("missing ?table=schema.table".to_string());
        };
        let extension = params
            .filename
            .as_deref()
            .and_then(|name| name.split_once('.').map(|(_, ext)| ext.to_string()))
            .or_else(|| params.format.clone())
            .unwrap_or_else(|| "csv".to_string());
        let upload_path = state.upload_dir.join(format!(
            "upload-{}.{}",
            uuid::Uuid::new_v4().simple(),
            sanitize_extension(&extension)
        ));
        if let Err(err) = save_upload(body, &upload_path).await {
            let _ = tokio::fs::remove_file(&upload_path).await;
            return invalid(format!("cannot receive the upload: {err}"));
        }
        (
            upload_path.display().to_string(),
            table,
            params.format.clone(),
            params.mode.clone(),
            Some(upload_path),
        )
    };

    let result = run_import(&state, &source, &table, format.as_deref(), mode.as_deref()).await;
    if let Some(path) = upload {
        let _ = tokio::fs::remove_file(path).await;
    }
    match result {
        Ok(report) => axum::Json(report).into_response(),
        Err(response) => response,
    }
}

fn sanitize_extension(extension: &str) -> String {
    extension
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .take(24)
        .collect()
}

async fn save_upload(body: Body, path: &std::path::Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let mut file = tokio::fs::File::create(path).await?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(std::io::Error::other)?;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    Ok(())
}

async fn run_import(
    state: &AppState,
    source: &str,
    table: &str,
    format: Option<&str>,
    mode: Option<&str>,
) -> Result<polder_ingest::ImportReport, Response> {
    let invalid = |message: String| error_response(ErrorKind::InvalidInput, &message, None);
    let table = TableName::parse(table).map_err(|e| invalid(e.to_string()))?;
    let mut request = ImportRequest::new(source, table);
    if let Some(format) = format {
        request.format = Some(format.parse::<FileFormat>().map_err(invalid)?);
    }
    if let Some(mode) = mode {
        request.mode = mode.parse::<ImportMode>().map_err(invalid)?;
    }
    polder_ingest::import_files(&state.engine, &request, Arc::new(NoProgress))
        .await
        .map_err(|err| error_response(err.kind(), &err.to_string(), None))
}
