//! Connections and their jobs over HTTP (engineers and admins):
//! `GET|POST /api/v1/connections`, `GET|PATCH|DELETE /api/v1/connections/{name}`,
//! `POST /api/v1/connections/{name}/check|discover|sync`, `GET /api/v1/jobs[?connection=&limit=]`,
//! `GET /api/v1/jobs/{id}`. Credentials go in with a connection and never come back out:
//! responses show `secret:` references. Changes are audited.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use polder_core::{ErrorKind, HasErrorKind};
use polder_ingest::{ConnectionPatch, ConnectionSpec, Counters, IngestError};
use serde::Deserialize;

use crate::http::{AppState, error_response};
use crate::http_secrets::require_engineer;

fn ingest_error(err: &IngestError) -> Response {
    error_response(err.kind(), &err.to_string(), None)
}

async fn audit(state: &AppState, what: &str, error: Option<&str>) {
    crate::http_secrets::audit_change(state, "connection", what, error).await;
}

pub(crate) async fn list_connections(State(state): State<AppState>) -> Response {
    if let Err(response) = require_engineer("list connections") {
        return response;
    }
    match state.ingestion.connections().await {
        Ok(connections) => Json(serde_json::json!({ "connections": connections })).into_response(),
        Err(err) => ingest_error(&err),
    }
}

pub(crate) async fn create_connection(
    State(state): State<AppState>,
    body: Result<Json<ConnectionSpec>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let principal = match require_engineer("create connections") {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let spec = match body {
        Ok(Json(spec)) => spec,
        Err(rejection) => {
            return error_response(ErrorKind::InvalidInput, &rejection.body_text(), None);
        }
    };
    let name = spec.name.clone();
    let result = state.ingestion.add_connection(spec, &principal.user).await;
    let message = result.as_ref().err().map(ToString::to_string);
    audit(
        &state,
        &format!("create connection {name}"),
        message.as_deref(),
    )
    .await;
    match result {
        Ok(view) => (StatusCode::CREATED, Json(view)).into_response(),
        Err(err) => ingest_error(&err),
    }
}

pub(crate) async fn get_connection(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    if let Err(response) = require_engineer("read connections") {
        return response;
    }
    match state.ingestion.connection(&name).await {
        Ok(view) => Json(view).into_response(),
        Err(err) => ingest_error(&err),
    }
}

pub(crate) async fn edit_connection(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<ConnectionPatch>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let principal = match require_engineer("change connections") {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let patch = match body {
        Ok(Json(patch)) => patch,
        Err(rejection) => {
            return error_response(ErrorKind::InvalidInput, &rejection.body_text(), None);
        }
    };
    let result = state
        .ingestion
        .edit_connection(&name, patch, &principal.user)
        .await;
    let message = result.as_ref().err().map(ToString::to_string);
    audit(
        &state,
        &format!("edit connection {name}"),
        message.as_deref(),
    )
    .await;
    match result {
        Ok(view) => Json(view).into_response(),
        Err(err) => ingest_error(&err),
    }
}

pub(crate) async fn delete_connection(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    if let Err(response) = require_engineer("delete connections") {
        return response;
    }
    let result = state.ingestion.delete_connection(&name).await;
    let message = result.as_ref().err().map(ToString::to_string);
    audit(
        &state,
        &format!("delete connection {name}"),
        message.as_deref(),
    )
    .await;
    match result {
        Ok(()) => Json(serde_json::json!({ "deleted": name })).into_response(),
        Err(err) => ingest_error(&err),
    }
}

pub(crate) async fn check_connection(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    if let Err(response) = require_engineer("check connections") {
        return response;
    }
    match state.ingestion.check(&name).await {
        Ok(message) => Json(serde_json::json!({ "ok": true, "message": message })).into_response(),
        Err(err) => ingest_error(&err),
    }
}

pub(crate) async fn discover_connection(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    if let Err(response) = require_engineer("discover connections") {
        return response;
    }
    match state.ingestion.discover(&name).await {
        Ok(streams) => Json(serde_json::json!({ "streams": streams })).into_response(),
        Err(err) => ingest_error(&err),
    }
}

#[derive(Deserialize)]
pub(crate) struct SyncQuery {
    /// Answer when the sync has finished (with its job) instead of when it has started.
    #[serde(default)]
    wait: bool,
}

pub(crate) async fn sync_connection(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<SyncQuery>,
) -> Response {
    let principal = match require_engineer("run syncs") {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    if let Err(err) = state.ingestion.connection(&name).await {
        return ingest_error(&err);
    }
    audit(&state, &format!("sync connection {name}"), None).await;
    let trigger = format!("api:{}", principal.user);
    let started = polder_catalog::now();
    let ingestion = state.ingestion.clone();
    let sync_name = name.clone();
    // In the request's span: the sync's log lines carry the id of the request that started it.
    let run = tokio::spawn(tracing::Instrument::in_current_span(async move {
        ingestion
            .sync(&sync_name, &trigger, Arc::new(Counters::default()), None)
            .await
    }));
    if query.wait {
        return match run.await {
            Ok(Ok(job)) => Json(job).into_response(),
            Ok(Err(err)) => ingest_error(&err),
            Err(err) => error_response(ErrorKind::Internal, &err.to_string(), None),
        };
    }
    // The job row appears as soon as the run starts; answer with it.
    for _ in 0..50 {
        if run.is_finished() {
            break;
        }
        if let Ok(jobs) = state.ingestion.jobs(Some(&name), 1).await
            && let Some(job) = jobs.into_iter().next()
            && job.created_at >= started
        {
            return (StatusCode::ACCEPTED, Json(job)).into_response();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match run.await {
        Ok(Ok(job)) => (StatusCode::ACCEPTED, Json(job)).into_response(),
        Ok(Err(err)) => ingest_error(&err),
        Err(err) => error_response(ErrorKind::Internal, &err.to_string(), None),
    }
}

#[derive(Deserialize)]
pub(crate) struct JobsQuery {
    connection: Option<String>,
    limit: Option<i64>,
}

pub(crate) async fn list_jobs(
    State(state): State<AppState>,
    Query(query): Query<JobsQuery>,
) -> Response {
    if let Err(response) = require_engineer("list jobs") {
        return response;
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    match state
        .ingestion
        .jobs(query.connection.as_deref(), limit)
        .await
    {
        Ok(jobs) => Json(serde_json::json!({ "jobs": jobs })).into_response(),
        Err(err) => ingest_error(&err),
    }
}

pub(crate) async fn get_job(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if let Err(response) = require_engineer("read jobs") {
        return response;
    }
    match state.ingestion.job(&id).await {
        Ok(job) => Json(job).into_response(),
        Err(err) => ingest_error(&err),
    }
}
