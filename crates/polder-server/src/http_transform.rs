//! Transformation projects over HTTP (engineers and admins), for the UI and for schedulers:
//! `GET /api/v1/projects`, `GET /api/v1/projects/{name}` (lineage and each node's last run),
//! `POST /api/v1/projects/{name}/build|run|test|seed[?wait=true]`,
//! `GET /api/v1/projects/{name}/runs[?limit=]`, `GET /api/v1/projects/{name}/runs/{id}`.
//! Projects are addressed by name: a project is known once `polder build` (or another run
//! command) has run it on this catalog; the API never takes a directory from the request.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use polder_core::{ErrorKind, HasErrorKind};
use polder_engine::access;
use polder_transform::{Command, Progress, RunOptions, TransformError};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::http::{AppState, error_response};
use crate::http_secrets::require_engineer;

fn transform_error(err: &TransformError) -> Response {
    error_response(err.kind(), &err.to_string(), None)
}

pub(crate) async fn list_projects(State(state): State<AppState>) -> Response {
    if let Err(response) = require_engineer("list transformation projects") {
        return response;
    }
    match state.transformations.projects().await {
        Ok(projects) => {
            let projects: Vec<Value> = projects
                .into_iter()
                .map(|p| {
                    let run: Value = serde_json::from_str(&p.schedule_run).unwrap_or(Value::Null);
                    json!({
                        "name": p.name, "root": p.root, "created_by": p.created_by, "updated_at": p.updated_at,
                        "schedule": if p.schedule.is_empty() { Value::Null } else { Value::String(p.schedule) },
                        "scheduled_run": run,
                    })
                })
                .collect();
            Json(json!({ "projects": projects })).into_response()
        }
        Err(err) => transform_error(&err),
    }
}

pub(crate) async fn get_project(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    if let Err(response) = require_engineer("read transformation projects") {
        return response;
    }
    let nodes = match state.transformations.nodes(&name).await {
        Ok(nodes) if !nodes.is_empty() => nodes,
        Ok(_) => return unknown_project(&name),
        Err(err) => return transform_error(&err),
    };
    let nodes: Vec<Value> = nodes
        .into_iter()
        .map(|n| {
            let depends_on: Value = serde_json::from_str(&n.depends_on).unwrap_or(Value::Null);
            json!({
                "unique_id": n.unique_id, "resource_type": n.resource_type, "name": n.name,
                "relation": n.relation, "materialized": n.materialized, "depends_on": depends_on,
                "description": n.description, "file_path": n.file_path,
                "last_run": if n.last_status.is_empty() { Value::Null } else { json!({
                    "status": n.last_status, "message": n.last_message, "at": n.last_run_at,
                    "duration_ms": n.last_duration_ms, "run_id": n.last_run_id,
                })},
            })
        })
        .collect();
    Json(json!({ "name": name, "nodes": nodes })).into_response()
}

fn unknown_project(name: &str) -> Response {
    error_response(
        ErrorKind::NotFound,
        &format!(
            "no transformation project '{name}' (a project is known here once `polder build` has run it)"
        ),
        None,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleRequest {
    /// A cron expression (UTC), or null to stop the schedule.
    schedule: Option<String>,
    #[serde(default)]
    run: polder_transform::ScheduledRun,
}

/// `PATCH /api/v1/projects/{name}`: sets or clears the project's schedule.
pub(crate) async fn schedule_project(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<ScheduleRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(response) = require_engineer("schedule transformation projects") {
        return response;
    }
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            return error_response(ErrorKind::InvalidInput, &rejection.body_text(), None);
        }
    };
    let result = state
        .transformations
        .set_schedule(&name, request.schedule.as_deref(), &request.run)
        .await;
    let message = result.as_ref().err().map(ToString::to_string);
    crate::http_secrets::audit_change(
        &state,
        "project",
        &format!("schedule project {name}"),
        message.as_deref(),
    )
    .await;
    match result {
        Ok(()) => {
            Json(json!({"name": name, "schedule": request.schedule, "scheduled_run": request.run}))
                .into_response()
        }
        Err(err) => transform_error(&err),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunRequest {
    #[serde(default)]
    select: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    full_refresh: bool,
    #[serde(default)]
    vars: Map<String, Value>,
    threads: Option<usize>,
    #[serde(default)]
    fail_fast: bool,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WaitQuery {
    #[serde(default)]
    wait: bool,
}

pub(crate) async fn run_project(
    State(state): State<AppState>,
    Path((name, command)): Path<(String, String)>,
    Query(query): Query<WaitQuery>,
    body: Option<Json<RunRequest>>,
) -> Response {
    let principal = match require_engineer("run transformations") {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let command = match command.as_str() {
        "build" => Command::Build,
        "run" => Command::Run,
        "test" => Command::Test,
        "seed" => Command::Seed,
        other => {
            return error_response(
                ErrorKind::NotFound,
                &format!("'{other}' is not a command (build, run, test, seed)"),
                None,
            );
        }
    };
    let request = body.map(|Json(r)| r).unwrap_or_default();
    let root = match state.transformations.project_root(&name).await {
        Ok(Some(root)) => root,
        Ok(None) => return unknown_project(&name),
        Err(err) => return transform_error(&err),
    };
    let threads = request.threads.unwrap_or(4).clamp(1, 64);
    let transformations = state.transformations.clone();
    let loaded = match transformations.load(&root, request.vars, threads) {
        Ok(loaded) => loaded,
        Err(err) => return transform_error(&err),
    };
    crate::http_secrets::audit_change(
        &state,
        "project",
        &format!("{} project {name}", command.name()),
        None,
    )
    .await;
    let options = RunOptions {
        command,
        select: request.select,
        exclude: request.exclude,
        full_refresh: request.full_refresh,
        threads,
        fail_fast: request.fail_fast,
    };
    let run_id = polder_transform::new_run_id();
    let trigger = format!("api:{}", principal.user);
    let quiet: Arc<dyn Fn(Progress) + Send + Sync> = Arc::new(|_| {});
    let task_run_id = run_id.clone();
    // In the request's span: the run's log lines carry the id of the request that started it.
    let run = tokio::spawn(tracing::Instrument::in_current_span(access::run_as(
        principal,
        async move {
            transformations
                .execute(&loaded, &options, &trigger, &task_run_id, quiet)
                .await
        },
    )));
    if !query.wait {
        // The run's record exists once the run has started; give it a moment to appear.
        for _ in 0..50 {
            if let Ok(Some(_)) = state.transformations.run_record(&run_id).await {
                break;
            }
            if run.is_finished() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        return match state.transformations.run_record(&run_id).await {
            Ok(Some(record)) => (StatusCode::ACCEPTED, Json(run_json(record))).into_response(),
            _ => match run.await {
                Ok(Err(err)) => transform_error(&err),
                _ => (
                    StatusCode::ACCEPTED,
                    Json(json!({"id": run_id, "status": "running"})),
                )
                    .into_response(),
            },
        };
    }
    let finished = run.await;
    match state.transformations.run_record(&run_id).await {
        Ok(Some(record)) => Json(run_json(record)).into_response(),
        _ => match finished {
            Ok(Err(err)) => transform_error(&err),
            Ok(Ok(_)) => error_response(ErrorKind::Internal, "the run left no record", None),
            Err(err) => error_response(ErrorKind::Internal, &err.to_string(), None),
        },
    }
}

fn run_json(record: polder_catalog::TransformRunRecord) -> Value {
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    json!({
        "id": record.id, "project": record.project, "command": record.command,
        "args": parse(&record.args), "trigger": record.trigger, "status": record.status,
        "started_at": record.started_at, "finished_at": record.finished_at,
        "summary": parse(&record.summary), "results": parse(&record.results),
        "error": record.error,
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct RunsQuery {
    limit: Option<i64>,
}

pub(crate) async fn list_runs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<RunsQuery>,
) -> Response {
    if let Err(response) = require_engineer("read transformation runs") {
        return response;
    }
    let limit = query.limit.unwrap_or(20).clamp(1, 1000);
    match state.transformations.runs(Some(&name), limit).await {
        Ok(runs) => Json(json!({"runs": runs.into_iter().map(run_json).collect::<Vec<_>>()}))
            .into_response(),
        Err(err) => transform_error(&err),
    }
}

pub(crate) async fn get_run(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    if let Err(response) = require_engineer("read transformation runs") {
        return response;
    }
    match state.transformations.run_record(&id).await {
        Ok(Some(record)) if record.project == name => Json(run_json(record)).into_response(),
        Ok(_) => error_response(
            ErrorKind::NotFound,
            &format!("no run '{id}' of project '{name}'"),
            None,
        ),
        Err(err) => transform_error(&err),
    }
}

/// Serves a folder of static files (the docs site of `polder docs serve`) until the process ends.
pub async fn serve_static_dir(dir: &std::path::Path, address: (&str, u16)) -> std::io::Result<()> {
    let dir: Arc<PathBuf> = Arc::new(dir.to_path_buf());
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let dir = dir.clone();
        async move { static_file(&dir, uri.path()).await }
    });
    let address = address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address to listen on"))?;
    let listener = tokio::net::TcpListener::bind(address).await?;
    axum::serve(listener, app).await
}

async fn static_file(dir: &std::path::Path, path: &str) -> Response {
    let relative = path.trim_start_matches('/');
    let relative = if relative.is_empty() {
        "index.html"
    } else {
        relative
    };
    // Only plain names below the folder: no `..`, no absolute paths.
    if relative
        .split('/')
        .any(|part| part.is_empty() || part == ".." || part.starts_with('.'))
    {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let content_type = match relative.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        _ => "application/octet-stream",
    };
    match tokio::fs::read(dir.join(relative)).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
