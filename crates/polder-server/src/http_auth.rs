//! HTTP authentication: `POST /api/v1/login`, bearer tokens (session or personal) or basic
//! credentials on every `/api/v1` call, and the user and token endpoints.

use axum::Json;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use polder_core::{ErrorKind, HasErrorKind, Principal, Role};
use polder_engine::access;
use serde::Deserialize;

use crate::auth::{AuthError, Authenticator, SESSION_TTL, parse_basic};
use crate::http::{AppState, error_response};

fn auth_error(err: &AuthError) -> Response {
    error_response(err.kind(), &err.to_string(), None)
}

fn client_of(request: &Request) -> String {
    let address = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.to_string())
        .unwrap_or_default();
    format!("http {address}")
}

/// Paths that stay open: the probes, the login, and the web UI's static files (the UI logs in
/// through the API; the files hold no data).
fn is_open(path: &str, protect_metrics: bool) -> bool {
    matches!(
        path,
        "/health" | "/ready" | "/" | "/favicon.ico" | "/api/v1/login"
    ) || path.starts_with("/assets/")
        || path.starts_with("/vendor/")
        || (path == "/metrics" && !protect_metrics)
}

/// Checks the caller's credentials and runs the request as its user.
pub(crate) async fn require_auth(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(auth) = state.auth.clone() else {
        return next.run(request).await;
    };
    if is_open(request.uri().path(), state.protect_metrics) {
        return next.run(request).await;
    }
    let client = client_of(&request);
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let principal = if let Some(token) = header.strip_prefix("Bearer ") {
        auth.verify_token(token.trim(), &client).await
    } else if header.starts_with("Basic ") {
        match parse_basic(&header) {
            Some((user, password)) => auth.login(&user, &password, &client).await,
            None => Err(AuthError::InvalidCredentials),
        }
    } else {
        return error_response(
            ErrorKind::Unauthenticated,
            "log in first: POST /api/v1/login, then send `Authorization: Bearer <token>`",
            None,
        );
    };
    match principal {
        Ok(principal) => access::run_as(principal, next.run(request)).await,
        Err(err) => auth_error(&err),
    }
}

#[derive(Deserialize)]
pub(crate) struct LoginBody {
    username: String,
    password: String,
}

fn authenticator(state: &AppState) -> Result<&Authenticator, Response> {
    state.auth.as_ref().ok_or_else(|| {
        error_response(
            ErrorKind::InvalidInput,
            "authentication is off on this server (auth.enabled = false)",
            None,
        )
    })
}

/// `POST /api/v1/login` `{"username", "password"}` → `{"token", "expires_at"}`.
pub(crate) async fn login(
    State(state): State<AppState>,
    ConnectInfo(address): ConnectInfo<std::net::SocketAddr>,
    body: Result<Json<LoginBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let auth = match authenticator(&state) {
        Ok(auth) => auth,
        Err(response) => return response,
    };
    let Json(body) = match body {
        Ok(body) => body,
        Err(err) => {
            return error_response(
                ErrorKind::InvalidInput,
                &format!(
                    "expected {{\"username\", \"password\"}}: {}",
                    err.body_text()
                ),
                None,
            );
        }
    };
    let client = format!("http {address}");
    let principal = match auth.login(&body.username, &body.password, &client).await {
        Ok(principal) => principal,
        Err(err) => return auth_error(&err),
    };
    match auth
        .issue_token(&principal.user, "session", "login", Some(SESSION_TTL))
        .await
    {
        Ok(issued) => Json(serde_json::json!({
            "token": issued.token,
            "expires_at": issued.expires_at,
            "user": principal.user,
            "role": principal.role.as_str(),
        }))
        .into_response(),
        Err(err) => auth_error(&err),
    }
}

fn require_admin() -> Result<Principal, Response> {
    let principal = access::current_principal();
    if principal.is_admin() {
        Ok(principal)
    } else {
        Err(error_response(
            ErrorKind::PermissionDenied,
            &format!(
                "user '{}' ({}) may not manage users: that needs the admin role",
                principal.user, principal.role
            ),
            None,
        ))
    }
}

/// `GET /api/v1/users` (admins).
pub(crate) async fn list_users(State(state): State<AppState>) -> Response {
    let auth = match authenticator(&state).and_then(|a| require_admin().map(|_| a)) {
        Ok(auth) => auth,
        Err(response) => return response,
    };
    match auth.store().list_users().await {
        Ok(users) => Json(serde_json::json!({
            "users": users.iter().map(|u| serde_json::json!({
                "name": u.name, "role": u.role, "disabled": u.disabled, "created_at": u.created_at,
            })).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(err) => error_response(err.kind(), &err.to_string(), None),
    }
}

#[derive(Deserialize)]
pub(crate) struct NewUser {
    name: String,
    role: String,
    password: String,
}

/// `POST /api/v1/users` `{"name", "role", "password"}` (admins).
pub(crate) async fn add_user(State(state): State<AppState>, Json(body): Json<NewUser>) -> Response {
    let (auth, admin) = match authenticator(&state).and_then(|a| require_admin().map(|p| (a, p))) {
        Ok(pair) => pair,
        Err(response) => return response,
    };
    let role: Role = match body.role.parse() {
        Ok(role) => role,
        Err(message) => return error_response(ErrorKind::InvalidInput, &message, None),
    };
    let result = auth.add_user(&body.name, role, &body.password).await;
    auth.audit_change(
        &admin.user,
        &admin.client,
        "user",
        &format!("add user {} ({role})", body.name),
        result.as_ref().err(),
    )
    .await;
    match result {
        Ok(()) => (
            axum::http::StatusCode::CREATED,
            Json(serde_json::json!({"name": body.name, "role": role.as_str()})),
        )
            .into_response(),
        Err(err) => auth_error(&err),
    }
}

#[derive(Deserialize)]
pub(crate) struct NewToken {
    #[serde(default)]
    label: String,
    /// Lifetime in days; none means until revoked.
    days: Option<u64>,
}

/// `POST /api/v1/tokens` `{"label", "days"}`: a personal access token for the caller.
pub(crate) async fn create_token(
    State(state): State<AppState>,
    Json(body): Json<NewToken>,
) -> Response {
    let auth = match authenticator(&state) {
        Ok(auth) => auth,
        Err(response) => return response,
    };
    let principal = access::current_principal();
    let ttl = body
        .days
        .map(|days| std::time::Duration::from_secs(days * 86_400));
    match auth
        .issue_token(&principal.user, "personal", &body.label, ttl)
        .await
    {
        Ok(issued) => (
            axum::http::StatusCode::CREATED,
            Json(serde_json::json!({
                "id": issued.id, "token": issued.token, "expires_at": issued.expires_at,
            })),
        )
            .into_response(),
        Err(err) => auth_error(&err),
    }
}

/// `GET /api/v1/tokens`: the caller's tokens (admins: everyone's), never their secrets.
pub(crate) async fn list_tokens(State(state): State<AppState>) -> Response {
    let auth = match authenticator(&state) {
        Ok(auth) => auth,
        Err(response) => return response,
    };
    let principal = access::current_principal();
    let owner = (principal.role != Role::Admin).then_some(principal.user.as_str());
    let tokens = match auth.store().list_tokens(owner).await {
        Ok(tokens) => tokens,
        Err(err) => return error_response(err.kind(), &err.to_string(), None),
    };
    let time = |millis: i64| {
        chrono::DateTime::from_timestamp_millis(millis)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    };
    let tokens: Vec<serde_json::Value> = tokens
        .iter()
        .map(|token| {
            serde_json::json!({
                "id": token.id,
                "user": token.user_name,
                "kind": token.kind,
                "label": token.label,
                "created_at": time(token.created_at),
                "expires_at": token.expires_at.map(time),
                "revoked": token.revoked,
            })
        })
        .collect();
    Json(serde_json::json!({ "tokens": tokens })).into_response()
}

/// `GET /api/v1/me`: who the caller is, and whether this server asks anyone to log in.
pub(crate) async fn me(State(state): State<AppState>) -> Response {
    let principal = access::current_principal();
    Json(serde_json::json!({
        "user": principal.user,
        "role": principal.role.as_str(),
        "auth_enabled": state.auth.is_some(),
    }))
    .into_response()
}

/// `DELETE /api/v1/tokens/{id}`: the owner or an admin revokes a token.
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    let auth = match authenticator(&state) {
        Ok(auth) => auth,
        Err(response) => return response,
    };
    let principal = access::current_principal();
    let owner = match auth.store().get_token(&id).await {
        Ok(Some(token)) => token.user_name,
        Ok(None) => return error_response(ErrorKind::NotFound, &format!("no token '{id}'"), None),
        Err(err) => return error_response(err.kind(), &err.to_string(), None),
    };
    if owner != principal.user && !principal.is_admin() {
        return error_response(
            ErrorKind::PermissionDenied,
            "only the token's owner or an admin may revoke it",
            None,
        );
    }
    match auth.revoke_token(&id).await {
        Ok(_) => Json(serde_json::json!({"revoked": id})).into_response(),
        Err(err) => auth_error(&err),
    }
}

/// `PUT /api/v1/users/{name}/attributes` `{"region": "EU", "team": null}` (admins): sets
/// attributes (`null` removes one), which row policies read with `current_user_attribute`.
pub(crate) async fn set_user_attributes(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<std::collections::BTreeMap<String, Option<String>>>,
) -> Response {
    let (auth, admin) = match authenticator(&state).and_then(|a| require_admin().map(|p| (a, p))) {
        Ok(pair) => pair,
        Err(response) => return response,
    };
    let result = match body.keys().find(|key| !crate::auth::is_attribute_name(key)) {
        Some(bad) => Err(AuthError::InvalidInput(format!(
            "'{bad}' is not an attribute name: use letters, digits and '_'"
        ))),
        None => auth
            .store()
            .set_user_attributes(&name, &body)
            .await
            .map_err(AuthError::from),
    };
    let described: Vec<String> = body
        .iter()
        .map(|(key, value)| match value {
            Some(value) => format!("{key}={value}"),
            None => format!("-{key}"),
        })
        .collect();
    auth.audit_change(
        &admin.user,
        &admin.client,
        "user",
        &format!("set attributes of {name}: {}", described.join(", ")),
        result.as_ref().err(),
    )
    .await;
    match result {
        Ok(()) => Json(serde_json::json!({"name": name, "attributes": body})).into_response(),
        Err(err) => auth_error(&err),
    }
}

#[derive(Deserialize)]
pub(crate) struct UserChange {
    password: Option<String>,
    role: Option<String>,
    disabled: Option<bool>,
}

/// `PATCH /api/v1/users/{name}` `{"password"?, "role"?, "disabled"?}`: admins change anything;
/// a user may change its own password.
pub(crate) async fn change_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<UserChange>,
) -> Response {
    let auth = match authenticator(&state) {
        Ok(auth) => auth,
        Err(response) => return response,
    };
    let caller = access::current_principal();
    let own_password_only = caller.user == name && body.role.is_none() && body.disabled.is_none();
    if !caller.is_admin()
        && !own_password_only
        && let Err(response) = require_admin()
    {
        return response;
    }
    let role = match body.role.as_deref().map(str::parse::<Role>).transpose() {
        Ok(role) => role,
        Err(message) => return error_response(ErrorKind::InvalidInput, &message, None),
    };
    let mut changes = Vec::new();
    let mut result = Ok(());
    if let Some(password) = &body.password {
        changes.push("password".to_string());
        result = auth.set_password(&name, password).await;
    }
    if let (Ok(()), Some(role)) = (&result, role) {
        changes.push(format!("role {role}"));
        result = auth.set_role(&name, role).await;
    }
    if let (Ok(()), Some(disabled)) = (&result, body.disabled) {
        changes.push(if disabled { "disabled" } else { "enabled" }.to_string());
        result = auth.set_disabled(&name, disabled).await;
    }
    auth.audit_change(
        &caller.user,
        &caller.client,
        "user",
        &format!("change user {name}: {}", changes.join(", ")),
        result.as_ref().err(),
    )
    .await;
    match result {
        Ok(()) => Json(serde_json::json!({"name": name, "changed": changes})).into_response(),
        Err(err) => auth_error(&err),
    }
}

/// `DELETE /api/v1/users/{name}` (admins): the user goes with its tokens, grants and attributes.
pub(crate) async fn delete_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    let (auth, admin) = match authenticator(&state).and_then(|a| require_admin().map(|p| (a, p))) {
        Ok(pair) => pair,
        Err(response) => return response,
    };
    if name == admin.user {
        return error_response(
            ErrorKind::InvalidInput,
            "an admin cannot delete itself (another admin can)",
            None,
        );
    }
    let result = auth.delete_user(&name).await;
    auth.audit_change(
        &admin.user,
        &admin.client,
        "user",
        &format!("delete user {name}"),
        result.as_ref().err(),
    )
    .await;
    match result {
        Ok(()) => Json(serde_json::json!({"deleted": name})).into_response(),
        Err(err) => auth_error(&err),
    }
}
