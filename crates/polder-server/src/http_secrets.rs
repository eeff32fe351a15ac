//! Stored secrets over HTTP: `GET /api/v1/secrets` (names and descriptions, never values),
//! `PUT /api/v1/secrets/{name}` `{"value", "description"}`, `DELETE /api/v1/secrets/{name}`;
//! engineers and admins. Changes are audited without their values.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use polder_catalog::AuditRecord;
use polder_core::{ErrorKind, HasErrorKind, Secret};
use polder_engine::access;
use serde::Deserialize;

use crate::http::{AppState, error_response};

/// Engineers and admins manage secrets and connections (they set up the sources that use
/// them); `what` names the refused action.
pub(crate) fn require_engineer(what: &str) -> Result<polder_core::Principal, Response> {
    let principal = access::current_principal();
    if principal.is_engineer_or_admin() {
        Ok(principal)
    } else {
        Err(error_response(
            ErrorKind::PermissionDenied,
            &format!(
                "user '{}' ({}) may not {what}: that needs the engineer or admin role",
                principal.user, principal.role
            ),
            None,
        ))
    }
}

/// Audits a change made over HTTP (authentication on): who, from where, what, and why it
/// failed. Shared by the secrets and connections endpoints.
pub(crate) async fn audit_change(state: &AppState, kind: &str, what: &str, error: Option<&str>) {
    if state.auth.is_none() {
        return;
    }
    let principal = access::current_principal();
    let mut entry = AuditRecord::new(&principal.user, &principal.client, kind, what);
    if let Some(message) = error {
        entry = entry.failed(message);
    }
    if let Err(err) = state.engine.catalog_store().append_audit(&entry).await {
        tracing::warn!(error = %err, "cannot write the audit log");
    }
}

async fn audit(state: &AppState, what: &str, error: Option<&str>) {
    audit_change(state, "secret", what, error).await;
}

pub(crate) async fn list_secrets(State(state): State<AppState>) -> Response {
    if let Err(response) = require_engineer("manage secrets") {
        return response;
    }
    match state.secrets.list().await {
        Ok(secrets) => Json(serde_json::json!({ "secrets": secrets })).into_response(),
        Err(err) => error_response(err.kind(), &err.to_string(), None),
    }
}

#[derive(Deserialize)]
pub(crate) struct SecretBody {
    value: String,
    #[serde(default)]
    description: String,
}

pub(crate) async fn put_secret(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<SecretBody>,
) -> Response {
    let principal = match require_engineer("manage secrets") {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let value = Secret::new(body.value);
    let result = state
        .secrets
        .put(&name, &value, &body.description, &principal.user)
        .await;
    let message = result.as_ref().err().map(|e| e.to_string());
    audit(&state, &format!("set secret {name}"), message.as_deref()).await;
    match result {
        Ok(replaced) => (
            if replaced {
                axum::http::StatusCode::OK
            } else {
                axum::http::StatusCode::CREATED
            },
            Json(serde_json::json!({"name": name, "replaced": replaced})),
        )
            .into_response(),
        Err(err) => error_response(err.kind(), &err.to_string(), None),
    }
}

pub(crate) async fn delete_secret(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    if let Err(response) = require_engineer("manage secrets") {
        return response;
    }
    let result = state.secrets.delete(&name).await;
    let message = match &result {
        Ok(false) => Some(format!("secret '{name}' does not exist")),
        Ok(true) => None,
        Err(err) => Some(err.to_string()),
    };
    audit(&state, &format!("delete secret {name}"), message.as_deref()).await;
    match result {
        Ok(true) => Json(serde_json::json!({"deleted": name})).into_response(),
        Ok(false) => error_response(
            ErrorKind::NotFound,
            &format!("secret '{name}' does not exist"),
            None,
        ),
        Err(err) => error_response(err.kind(), &err.to_string(), None),
    }
}
