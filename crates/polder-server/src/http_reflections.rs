//! Reflections over HTTP: `GET/POST /api/v1/reflections`, `GET/DELETE
//! /api/v1/reflections/{name}`, `POST /api/v1/reflections/{name}/refresh[?full=true]`.
//! The engine checks the rights (engineers and admins manage reflections); changes are audited.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use polder_catalog::ReflectionRecord;
use polder_core::{ErrorKind, HasErrorKind};
use polder_engine::reflection::Definition;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::{AppState, engine_error_response, error_response};
use crate::http_saved::millis_to_rfc3339;
use crate::http_secrets::audit_change;

/// One reflection as `system.reflections` shows it.
pub(crate) fn reflection_json(record: &ReflectionRecord) -> Value {
    let (definition, refresh_policy, staleness_seconds) =
        polder_engine::reflection::describe(record);
    json!({
        "name": record.name,
        "source": record.source,
        "kind": record.kind,
        "definition": definition,
        "status": record.status,
        "status_reason": record.status_reason,
        "refresh_policy": refresh_policy,
        "staleness_seconds": staleness_seconds,
        "rows": record.row_count,
        "size_bytes": record.size_bytes,
        "source_versions": record.source_versions,
        "data_version": record.data_version,
        "refreshed_at": record.refreshed_at.map(millis_to_rfc3339),
        "last_refresh_ms": record.last_refresh_ms,
        "last_refresh_kind": record.last_refresh_kind,
        "usage_count": record.usage_count,
        "last_used_at": record.last_used_at.map(millis_to_rfc3339),
        "owner": record.owner,
    })
}

pub(crate) async fn list_reflections(State(state): State<AppState>) -> Response {
    match state.engine.reflection_records().await {
        Ok(records) => Json(json!({
            "reflections": records.iter().map(reflection_json).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(err) => engine_error_response(&err),
    }
}

async fn one(state: &AppState, name: &str) -> Response {
    match state.engine.catalog_store().get_reflection(name).await {
        Ok(Some(record)) => Json(reflection_json(&record)).into_response(),
        Ok(None) => error_response(
            ErrorKind::NotFound,
            &format!("reflection '{name}' does not exist"),
            None,
        ),
        Err(err) => error_response(err.kind(), &err.to_string(), None),
    }
}

pub(crate) async fn get_reflection(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    one(&state, &name).await
}

#[derive(Deserialize)]
pub(crate) struct CreateBody {
    name: String,
    /// `schema.table_or_view`.
    source: String,
    #[serde(flatten)]
    definition: serde_json::Map<String, Value>,
}

/// The request's definition in the engine's terms (`refresh: {"every_seconds": n}` included).
fn definition_from(mut fields: serde_json::Map<String, Value>) -> Result<Definition, String> {
    if let Some(Value::Object(refresh)) = fields.get("refresh")
        && let Some(seconds) = refresh.get("every_seconds").cloned()
    {
        fields.insert(
            "refresh".to_string(),
            json!({"every": {"seconds": seconds}}),
        );
    }
    fields.remove("source_ids");
    serde_json::from_value::<Definition>(Value::Object(fields)).map_err(|e| {
        format!(
            "not a reflection definition ({e}); expected {{\"kind\": \"raw\", \"columns\": [...]}} or \
             {{\"kind\": \"aggregate\", \"dimensions\": [{{\"column\": \"c\", \"grain\": \"day\"}}], \
             \"measures\": [{{\"column\": \"m\", \"functions\": [\"sum\", \"count\"]}}]}}"
        )
    })
}

pub(crate) async fn create_reflection(
    State(state): State<AppState>,
    Json(body): Json<CreateBody>,
) -> Response {
    let what = format!("create reflection {} on {}", body.name, body.source);
    let Some((schema, relation)) = body.source.split_once('.') else {
        return error_response(
            ErrorKind::InvalidInput,
            &format!("source '{}' must be schema.table", body.source),
            None,
        );
    };
    let definition = match definition_from(body.definition) {
        Ok(definition) => definition,
        Err(message) => return error_response(ErrorKind::InvalidInput, &message, None),
    };
    let result = state
        .engine
        .create_reflection(&body.name, false, schema, relation, definition)
        .await;
    audit_change(
        &state,
        "reflection",
        &what,
        result.as_ref().err().map(|e| e.to_string()).as_deref(),
    )
    .await;
    match result {
        Ok(_) => {
            let mut response = one(&state, &body.name).await;
            *response.status_mut() = StatusCode::CREATED;
            response
        }
        Err(err) => engine_error_response(&err),
    }
}

pub(crate) async fn delete_reflection(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    let result = state.engine.drop_reflection(&name, false).await;
    audit_change(
        &state,
        "reflection",
        &format!("drop reflection {name}"),
        result.as_ref().err().map(|e| e.to_string()).as_deref(),
    )
    .await;
    match result {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => engine_error_response(&err),
    }
}

#[derive(Deserialize)]
pub(crate) struct RefreshParams {
    #[serde(default)]
    full: bool,
}

pub(crate) async fn refresh_reflection(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<RefreshParams>,
) -> Response {
    match state.engine.refresh_reflection(&name, params.full).await {
        Ok(_) => one(&state, &name).await,
        Err(err) => engine_error_response(&err),
    }
}
