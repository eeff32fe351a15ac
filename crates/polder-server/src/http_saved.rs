//! What people save in the web UI, over REST: saved queries, charts (and the data they draw)
//! and dashboards, with who may see and change each.
//!
//! Rules: saved queries are their owner's (admins see all). Charts and dashboards are
//! visible to their owner, to engineers and admins, and — for dashboards — to the users and
//! roles they are shared with; a chart is visible through any dashboard that shows it. Only
//! the owner or an admin changes or deletes an object. A saved chart runs with its owner's
//! table rights while row policies and column masks apply to whoever looks at it, as a view
//! does: that is what lets a viewer (no SQL, no table rights) open a dashboard shared with it.

use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use polder_catalog::{SavedObjectKind, SavedObjectRecord};
use polder_core::{ErrorKind, HasErrorKind, Principal, Role, TableName};
use polder_engine::{EngineError, StatementOutput, access};
use serde::{Deserialize, Serialize};

use crate::charts::{ChartSource, ChartSpec, Filter, SourceColumn, quote_identifier};
use crate::http::{AppState, error_response};
use crate::metrics::{Interface, StatementRun};

fn invalid(message: impl AsRef<str>) -> Response {
    error_response(ErrorKind::InvalidInput, message.as_ref(), None)
}

fn not_found(what: &str, id: &str) -> Response {
    error_response(ErrorKind::NotFound, &format!("no {what} '{id}'"), None)
}

fn forbidden(message: impl AsRef<str>) -> Response {
    error_response(ErrorKind::PermissionDenied, message.as_ref(), None)
}

fn catalog_failure(err: polder_catalog::CatalogError) -> Response {
    error_response(err.kind(), &err.to_string(), None)
}

fn engine_failure(err: &EngineError) -> Response {
    error_response(err.kind(), &err.to_string(), Some(err.sqlstate()))
}

pub(crate) fn millis_to_rfc3339(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

fn is_privileged(principal: &Principal) -> bool {
    matches!(principal.role, Role::Admin | Role::Engineer)
}

fn may_change(principal: &Principal, owner: &str) -> bool {
    principal.user == owner || principal.role == Role::Admin
}

/// Viewers open dashboards; everything else here needs at least the analyst role.
fn require_author(principal: &Principal, what: &str) -> Result<(), Response> {
    if principal.role == Role::Viewer {
        return Err(forbidden(format!(
            "user '{}' (viewer) may not {what}: viewers open dashboards shared with them",
            principal.user
        )));
    }
    Ok(())
}

/// An object as the API shows it: the record's fields and its body's fields side by side.
fn present(record: &SavedObjectRecord) -> serde_json::Value {
    let mut object = serde_json::json!({
        "id": record.id,
        "name": record.name,
        "description": record.description,
        "owner": record.owner,
        "created_at": millis_to_rfc3339(record.created_at),
        "updated_at": millis_to_rfc3339(record.updated_at),
    });
    if let Ok(serde_json::Value::Object(body)) =
        serde_json::from_str::<serde_json::Value>(&record.body)
        && let Some(fields) = object.as_object_mut()
    {
        for (key, value) in body {
            fields.insert(key, value);
        }
    }
    object
}

/// Reads a JSON request body into `T`, answering the API's own error shape on bad input.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|err| invalid(format!("expected {expected}: {err}")))
}

fn require_name(name: &str) -> Result<String, Response> {
    let name = name.trim();
    if name.is_empty() {
        return Err(invalid("a name is required"));
    }
    if name.chars().count() > 200 {
        return Err(invalid("the name is longer than 200 characters"));
    }
    Ok(name.to_string())
}

async fn load(
    state: &AppState,
    kind: SavedObjectKind,
    id: &str,
) -> Result<SavedObjectRecord, Response> {
    let what = kind.as_str().replace('_', " ");
    state
        .engine
        .catalog_store()
        .get_saved_object(kind, id)
        .await
        .map_err(catalog_failure)?
        .ok_or_else(|| not_found(&what, id))
}

async fn delete_object(
    state: &AppState,
    kind: SavedObjectKind,
    id: &str,
) -> Result<Response, Response> {
    let principal = access::current_principal();
    let record = load(state, kind, id).await?;
    if !may_change(&principal, &record.owner) {
        return Err(forbidden(format!(
            "only its owner '{}' or an admin may delete this {}",
            record.owner,
            kind.as_str().replace('_', " ")
        )));
    }
    state
        .engine
        .catalog_store()
        .delete_saved_object(kind, id)
        .await
        .map_err(catalog_failure)?;
    audit(state, "delete", &record).await;
    Ok(Json(serde_json::json!({"deleted": id})).into_response())
}

/// Writes a change to the audit log: `create chart 'Revenue' (id)`; a dashboard's sharing is
/// part of the entry, since it decides who sees data.
async fn audit(state: &AppState, verb: &str, record: &SavedObjectRecord) {
    let kind = record.kind.replace('_', " ");
    let mut what = format!("{verb} {kind} '{}' ({})", record.name, record.id);
    if record.kind == SavedObjectKind::Dashboard.as_str() && verb != "delete" {
        let shared = DashboardBody::parse(record).shared_with;
        what.push_str(&format!(", shared with [{}]", shared.join(", ")));
    }
    crate::http_secrets::audit_change(state, &record.kind, &what, None).await;
}

/// `{"<key>": [...]}`: the objects of `kind` that `visible` lets `principal` see.
async fn list_visible(
    state: &AppState,
    principal: &Principal,
    kind: SavedObjectKind,
    key: &str,
    visible: fn(&Principal, &SavedObjectRecord) -> bool,
) -> Result<Response, Response> {
    let records = state
        .engine
        .catalog_store()
        .list_saved_objects(kind)
        .await
        .map_err(catalog_failure)?;
    let shown: Vec<serde_json::Value> = records
        .iter()
        .filter(|record| visible(principal, record))
        .map(present)
        .collect();
    Ok(Json(serde_json::json!({ key: shown })).into_response())
}

/// Stores a new object owned by `owner`, audits it and answers `201` with it.
async fn store_new(
    state: &AppState,
    kind: SavedObjectKind,
    owner: &str,
    (name, description, body): (String, String, String),
) -> Result<Response, Response> {
    let record = state
        .engine
        .catalog_store()
        .create_saved_object(kind, &name, &description, owner, &body)
        .await
        .map_err(catalog_failure)?;
    audit(state, "create", &record).await;
    Ok((axum::http::StatusCode::CREATED, Json(present(&record))).into_response())
}

/// Replaces an object's name, description and body, audits it and answers with it.
async fn store_change(
    state: &AppState,
    kind: SavedObjectKind,
    id: &str,
    (name, description, body): (String, String, String),
) -> Result<Response, Response> {
    let updated = state
        .engine
        .catalog_store()
        .update_saved_object(kind, id, &name, &description, &body)
        .await
        .map_err(catalog_failure)?
        .ok_or_else(|| not_found(&kind.as_str().replace('_', " "), id))?;
    audit(state, "change", &updated).await;
    Ok(Json(present(&updated)).into_response())
}

fn respond(result: Result<Response, Response>) -> Response {
    result.unwrap_or_else(|response| response)
}

// ---------------------------------------------------------------------------------------------
// Saved queries

#[derive(Debug, Serialize, Deserialize)]
struct SavedQueryBody {
    sql: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedQueryRequest {
    name: String,
    sql: String,
    #[serde(default)]
    description: String,
}

fn may_see_query(principal: &Principal, record: &SavedObjectRecord) -> bool {
    principal.user == record.owner || principal.role == Role::Admin
}

/// `GET /api/v1/saved-queries`: the caller's (admins: everyone's).
pub(crate) async fn list_saved_queries(State(state): State<AppState>) -> Response {
    respond(
        async {
            let principal = access::current_principal();
            require_author(&principal, "use saved queries")?;
            list_visible(
                &state,
                &principal,
                SavedObjectKind::SavedQuery,
                "saved_queries",
                may_see_query,
            )
            .await
        }
        .await,
    )
}

/// `POST /api/v1/saved-queries` `{"name", "sql", "description"}`.
pub(crate) async fn create_saved_query(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Response {
    respond(
        async {
            let principal = access::current_principal();
            require_author(&principal, "save queries")?;
            let request: SavedQueryRequest = parse_body(&body, "{\"name\", \"sql\"}")?;
            let name = require_name(&request.name)?;
            if request.sql.trim().is_empty() {
                return Err(invalid("the query has no SQL"));
            }
            let body = serde_json::to_string(&SavedQueryBody { sql: request.sql }).expect("json");
            let parts = (name, request.description, body);
            store_new(&state, SavedObjectKind::SavedQuery, &principal.user, parts).await
        }
        .await,
    )
}

pub(crate) async fn get_saved_query(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    respond(
        async {
            let principal = access::current_principal();
            let record = load(&state, SavedObjectKind::SavedQuery, &id).await?;
            if !may_see_query(&principal, &record) {
                return Err(not_found("saved query", &id));
            }
            Ok(Json(present(&record)).into_response())
        }
        .await,
    )
}

pub(crate) async fn update_saved_query(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    respond(
        async {
            let principal = access::current_principal();
            let record = load(&state, SavedObjectKind::SavedQuery, &id).await?;
            if !may_see_query(&principal, &record) {
                return Err(not_found("saved query", &id));
            }
            let request: SavedQueryRequest = parse_body(&body, "{\"name\", \"sql\"}")?;
            let name = require_name(&request.name)?;
            let body = serde_json::to_string(&SavedQueryBody { sql: request.sql }).expect("json");
            let parts = (name, request.description, body);
            store_change(&state, SavedObjectKind::SavedQuery, &id, parts).await
        }
        .await,
    )
}

pub(crate) async fn delete_saved_query(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    respond(delete_object(&state, SavedObjectKind::SavedQuery, &id).await)
}

// ---------------------------------------------------------------------------------------------
// Dashboards

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tile {
    pub chart_id: String,
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// A dashboard-wide filter control: which column, how it compares, and its starting value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardFilter {
    pub column: String,
    #[serde(default)]
    pub label: String,
    #[serde(default = "default_filter_op")]
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
}

fn default_filter_op() -> String {
    "=".to_string()
}

/// A dashboard's body in the catalog.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DashboardBody {
    #[serde(default)]
    pub refresh_seconds: u32,
    /// `user:<name>`, `role:<role>` or `*` (everyone who can log in).
    #[serde(default)]
    pub shared_with: Vec<String>,
    #[serde(default)]
    pub filters: Vec<DashboardFilter>,
    #[serde(default)]
    pub tiles: Vec<Tile>,
}

impl DashboardBody {
    fn check(&self) -> Result<(), String> {
        for entry in &self.shared_with {
            let valid = entry == "*"
                || entry.strip_prefix("user:").is_some_and(|u| !u.is_empty())
                || entry
                    .strip_prefix("role:")
                    .is_some_and(|r| r.parse::<Role>().is_ok());
            if !valid {
                return Err(format!(
                    "cannot share with '{entry}': use user:<name>, role:<admin|engineer|analyst|viewer> or *"
                ));
            }
        }
        for tile in &self.tiles {
            if tile.w == 0 || tile.w > 12 || tile.x + tile.w > 12 {
                return Err(format!(
                    "the tile of chart '{}' does not fit the 12-column grid (x {}, width {})",
                    tile.chart_id, tile.x, tile.w
                ));
            }
            if tile.h == 0 || tile.h > 24 {
                return Err(format!(
                    "the tile of chart '{}' must be 1 to 24 rows high",
                    tile.chart_id
                ));
            }
        }
        for filter in &self.filters {
            if filter.column.trim().is_empty() {
                return Err("a dashboard filter needs a column".to_string());
            }
            serde_json::from_value::<crate::charts::FilterOp>(serde_json::Value::String(
                filter.op.clone(),
            ))
            .map_err(|_| {
                format!(
                    "unknown filter operator '{}' on '{}'",
                    filter.op, filter.column
                )
            })?;
        }
        if self.refresh_seconds != 0 && self.refresh_seconds < 5 {
            return Err("auto-refresh runs at most every 5 seconds".to_string());
        }
        Ok(())
    }

    fn parse(record: &SavedObjectRecord) -> DashboardBody {
        serde_json::from_str(&record.body).unwrap_or_default()
    }

    fn is_shared_with(&self, principal: &Principal) -> bool {
        self.shared_with.iter().any(|entry| {
            entry == "*"
                || entry.strip_prefix("user:") == Some(principal.user.as_str())
                || entry.strip_prefix("role:") == Some(principal.role.as_str())
        })
    }
}

fn may_see_dashboard(principal: &Principal, record: &SavedObjectRecord) -> bool {
    is_privileged(principal)
        || principal.user == record.owner
        || DashboardBody::parse(record).is_shared_with(principal)
}

/// A dashboard as a client sends it; what the server sets (id, owner, times, charts) is
/// ignored, so a client may send back what it read.
#[derive(Debug, Deserialize)]
struct DashboardRequest {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    refresh_seconds: u32,
    #[serde(default)]
    shared_with: Vec<String>,
    #[serde(default)]
    filters: Vec<DashboardFilter>,
    #[serde(default)]
    tiles: Vec<Tile>,
}

impl DashboardRequest {
    fn into_parts(self) -> Result<(String, String, String), Response> {
        let name = require_name(&self.name)?;
        let body = DashboardBody {
            refresh_seconds: self.refresh_seconds,
            shared_with: self.shared_with,
            filters: self.filters,
            tiles: self.tiles,
        };
        body.check().map_err(invalid)?;
        let body = serde_json::to_string(&body).expect("json");
        Ok((name, self.description, body))
    }
}

/// `GET /api/v1/dashboards`: those the caller may open.
pub(crate) async fn list_dashboards(State(state): State<AppState>) -> Response {
    respond(
        async {
            let principal = access::current_principal();
            list_visible(
                &state,
                &principal,
                SavedObjectKind::Dashboard,
                "dashboards",
                may_see_dashboard,
            )
            .await
        }
        .await,
    )
}

pub(crate) async fn create_dashboard(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Response {
    respond(
        async {
            let principal = access::current_principal();
            require_author(&principal, "create dashboards")?;
            let request: DashboardRequest = parse_body(&body, "{\"name\", \"tiles\", ...}")?;
            let parts = request.into_parts()?;
            store_new(&state, SavedObjectKind::Dashboard, &principal.user, parts).await
        }
        .await,
    )
}

async fn visible_dashboard(state: &AppState, id: &str) -> Result<SavedObjectRecord, Response> {
    let principal = access::current_principal();
    let record = load(state, SavedObjectKind::Dashboard, id).await?;
    if !may_see_dashboard(&principal, &record) {
        // Not shared with the caller: as if it did not exist.
        return Err(not_found("dashboard", id));
    }
    Ok(record)
}

/// `GET /api/v1/dashboards/{id}`: the dashboard and the charts of its tiles.
pub(crate) async fn get_dashboard(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    respond(
        async {
            let record = visible_dashboard(&state, &id).await?;
            let body = DashboardBody::parse(&record);
            let mut charts = Vec::new();
            for tile in &body.tiles {
                let chart = state
                    .engine
                    .catalog_store()
                    .get_saved_object(SavedObjectKind::Chart, &tile.chart_id)
                    .await
                    .map_err(catalog_failure)?;
                if let Some(chart) = chart
                    && !charts
                        .iter()
                        .any(|c: &serde_json::Value| c["id"] == chart.id.as_str())
                {
                    charts.push(present(&chart));
                }
            }
            let mut shown = present(&record);
            shown["charts"] = serde_json::Value::Array(charts);
            Ok(Json(shown).into_response())
        }
        .await,
    )
}

pub(crate) async fn update_dashboard(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    respond(
        async {
            let principal = access::current_principal();
            let record = visible_dashboard(&state, &id).await?;
            if !may_change(&principal, &record.owner) {
                return Err(forbidden(format!(
                    "only its owner '{}' or an admin may change this dashboard",
                    record.owner
                )));
            }
            let request: DashboardRequest = parse_body(&body, "{\"name\", \"tiles\", ...}")?;
            store_change(
                &state,
                SavedObjectKind::Dashboard,
                &id,
                request.into_parts()?,
            )
            .await
        }
        .await,
    )
}

pub(crate) async fn delete_dashboard(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    respond(delete_object(&state, SavedObjectKind::Dashboard, &id).await)
}

#[derive(Debug, Deserialize)]
pub(crate) struct ValuesParams {
    column: String,
}

/// Distinct values a dashboard filter offers.
const MAX_FILTER_VALUES: usize = 500;

/// `GET /api/v1/dashboards/{id}/values?column=c`: up to 500 distinct values of `c` over the
/// first of the dashboard's charts whose source has it.
pub(crate) async fn dashboard_values(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<ValuesParams>,
) -> Response {
    respond(async {
        let record = visible_dashboard(&state, &id).await?;
        let body = DashboardBody::parse(&record);
        for tile in &body.tiles {
            let Some(chart) = state
                .engine
                .catalog_store()
                .get_saved_object(SavedObjectKind::Chart, &tile.chart_id)
                .await
                .map_err(catalog_failure)?
            else {
                continue;
            };
            let Ok(spec) = chart_spec(&chart) else {
                continue;
            };
            let column = params.column.clone();
            let owner = chart.owner.clone();
            let values = state
                .engine
                .run_with_owner_rights(&owner, async {
                    let source = source_sql(&state, &spec.source, &owner).await?;
                    let columns = source_columns(&state, &source).await?;
                    if !columns.iter().any(|c| c.name == column) {
                        return Ok(None);
                    }
                    let quoted = quote_identifier(&column);
                    let sql = format!(
                        "SELECT DISTINCT {quoted} AS value FROM {source} AS source WHERE {quoted} IS NOT NULL ORDER BY 1 LIMIT {MAX_FILTER_VALUES}"
                    );
                    let (rows, _) = run_query(&state, &sql).await?;
                    Ok::<_, Response>(Some(rows))
                })
                .await
                .map_err(|e| engine_failure(&e))??;
            if let Some(rows) = values {
                let values: Vec<serde_json::Value> =
                    rows.into_iter().map(|row| row["value"].clone()).collect();
                return Ok(Json(serde_json::json!({ "values": values })).into_response());
            }
        }
        Ok(Json(serde_json::json!({ "values": [] })).into_response())
    }
    .await)
}

// ---------------------------------------------------------------------------------------------
// Charts

/// A chart as a client sends it (server-set fields it read back are ignored).
#[derive(Debug, Deserialize)]
struct ChartRequest {
    name: String,
    #[serde(default)]
    description: String,
    spec: ChartSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChartDataRequest {
    #[serde(default)]
    spec: Option<ChartSpec>,
    #[serde(default)]
    filters: Vec<Filter>,
}

/// A chart's spec is stored as `{"spec": ...}` so that the object reads `chart.spec`.
#[derive(Debug, Serialize, Deserialize)]
struct ChartBody {
    spec: ChartSpec,
}

fn chart_spec(record: &SavedObjectRecord) -> Result<ChartSpec, Response> {
    serde_json::from_str::<ChartBody>(&record.body)
        .map(|body| body.spec)
        .map_err(|err| {
            error_response(
                ErrorKind::Internal,
                &format!("chart '{}' has an unreadable spec: {err}", record.id),
                None,
            )
        })
}

/// The ids of the charts on dashboards `principal` may open (one read of the dashboards).
async fn charts_on_visible_dashboards(
    state: &AppState,
    principal: &Principal,
) -> Result<std::collections::HashSet<String>, Response> {
    let dashboards = state
        .engine
        .catalog_store()
        .list_saved_objects(SavedObjectKind::Dashboard)
        .await
        .map_err(catalog_failure)?;
    Ok(dashboards
        .iter()
        .filter(|dashboard| may_see_dashboard(principal, dashboard))
        .flat_map(|dashboard| DashboardBody::parse(dashboard).tiles)
        .map(|tile| tile.chart_id)
        .collect())
}

/// Whether `principal` sees the chart: its own, engineers and admins, or through a dashboard
/// (`shown` holds the charts of the dashboards it may open).
fn may_see_chart(
    principal: &Principal,
    record: &SavedObjectRecord,
    shown: &std::collections::HashSet<String>,
) -> bool {
    is_privileged(principal) || principal.user == record.owner || shown.contains(&record.id)
}

async fn visible_chart(state: &AppState, id: &str) -> Result<SavedObjectRecord, Response> {
    let principal = access::current_principal();
    let record = load(state, SavedObjectKind::Chart, id).await?;
    let shown = charts_on_visible_dashboards(state, &principal).await?;
    if !may_see_chart(&principal, &record, &shown) {
        return Err(not_found("chart", id));
    }
    Ok(record)
}

/// `GET /api/v1/charts`: the charts the caller may see.
pub(crate) async fn list_charts(State(state): State<AppState>) -> Response {
    respond(
        async {
            let principal = access::current_principal();
            let records = state
                .engine
                .catalog_store()
                .list_saved_objects(SavedObjectKind::Chart)
                .await
                .map_err(catalog_failure)?;
            let shown = charts_on_visible_dashboards(&state, &principal).await?;
            let visible: Vec<serde_json::Value> = records
                .iter()
                .filter(|record| may_see_chart(&principal, record, &shown))
                .map(present)
                .collect();
            Ok(Json(serde_json::json!({ "charts": visible })).into_response())
        }
        .await,
    )
}

fn checked_chart_request(body: &[u8]) -> Result<(String, String, String), Response> {
    let request: ChartRequest = parse_body(body, "{\"name\", \"spec\"}")?;
    let name = require_name(&request.name)?;
    request.spec.check_shape().map_err(invalid)?;
    let body = serde_json::to_string(&ChartBody { spec: request.spec }).expect("json");
    Ok((name, request.description, body))
}

pub(crate) async fn create_chart(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Response {
    respond(
        async {
            let principal = access::current_principal();
            require_author(&principal, "create charts")?;
            let parts = checked_chart_request(&body)?;
            store_new(&state, SavedObjectKind::Chart, &principal.user, parts).await
        }
        .await,
    )
}

pub(crate) async fn get_chart(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    respond(
        async {
            let record = visible_chart(&state, &id).await?;
            Ok(Json(present(&record)).into_response())
        }
        .await,
    )
}

pub(crate) async fn update_chart(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    respond(
        async {
            let principal = access::current_principal();
            let record = visible_chart(&state, &id).await?;
            if !may_change(&principal, &record.owner) {
                return Err(forbidden(format!(
                    "only its owner '{}' or an admin may change this chart",
                    record.owner
                )));
            }
            store_change(
                &state,
                SavedObjectKind::Chart,
                &id,
                checked_chart_request(&body)?,
            )
            .await
        }
        .await,
    )
}

pub(crate) async fn delete_chart(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    respond(delete_object(&state, SavedObjectKind::Chart, &id).await)
}

/// `POST /api/v1/charts/data` `{"spec", "filters"}`: draws a chart that is not saved yet, with
/// the caller's own rights.
pub(crate) async fn preview_chart_data(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Response {
    respond(
        async {
            let principal = access::current_principal();
            require_author(&principal, "query tables")?;
            let request: ChartDataRequest = parse_body(&body, "{\"spec\", \"filters\"}")?;
            let Some(spec) = request.spec else {
                return Err(invalid("expected {\"spec\": {...}}: the chart to draw"));
            };
            chart_data(&state, &spec, &principal.user, &request.filters).await
        }
        .await,
    )
}

/// `POST /api/v1/charts/{id}/data` `{"filters"}`: a saved chart's rows, with its owner's rights.
pub(crate) async fn saved_chart_data(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    respond(
        async {
            let record = visible_chart(&state, &id).await?;
            let request: ChartDataRequest = if body.is_empty() {
                ChartDataRequest::default()
            } else {
                parse_body(&body, "{\"filters\": [...]}")?
            };
            if request.spec.is_some() {
                return Err(invalid(
                    "a saved chart draws its own spec: POST /api/v1/charts/data to try another",
                ));
            }
            let spec = chart_spec(&record)?;
            let owner = record.owner.clone();
            state
                .engine
                .run_with_owner_rights(&owner, chart_data(&state, &spec, &owner, &request.filters))
                .await
                .map_err(|err| engine_failure(&err))?
        }
        .await,
    )
}

/// The SQL a chart reads from: a quoted table name, or a saved query in parentheses (which
/// `owner` must be allowed to see).
async fn source_sql(
    state: &AppState,
    source: &ChartSource,
    owner: &str,
) -> Result<String, Response> {
    match source {
        ChartSource::Table(name) => {
            let table = TableName::parse(name).map_err(|e| invalid(e.to_string()))?;
            Ok(format!(
                "{}.{}",
                quote_identifier(&table.schema),
                quote_identifier(&table.table)
            ))
        }
        ChartSource::SavedQuery(id) => {
            let record = load(state, SavedObjectKind::SavedQuery, id).await?;
            let owner_is_admin = access::current_principal().role == Role::Admin;
            if record.owner != owner && !owner_is_admin {
                return Err(not_found("saved query", id));
            }
            let body: SavedQueryBody = serde_json::from_str(&record.body).map_err(|err| {
                error_response(
                    ErrorKind::Internal,
                    &format!("saved query '{id}' is unreadable: {err}"),
                    None,
                )
            })?;
            let sql = body.sql.trim().trim_end_matches(';').trim();
            Ok(format!("({sql})"))
        }
    }
}

/// The source's columns, from planning `SELECT *` over it (no data is read).
async fn source_columns(state: &AppState, source: &str) -> Result<Vec<SourceColumn>, Response> {
    let sql = format!("SELECT * FROM {source} AS source LIMIT 0");
    let outputs = state
        .engine
        .execute_sql(&sql)
        .await
        .map_err(|err| engine_failure(&err))?;
    let Some(StatementOutput::Query(frame)) = outputs.into_iter().last() else {
        return Err(invalid("the chart's source is not a query"));
    };
    Ok(frame
        .schema()
        .fields()
        .iter()
        .map(|field| SourceColumn {
            name: field.name().clone(),
            data_type: field.data_type().to_string(),
        })
        .collect())
}

type Columns = Vec<serde_json::Value>;

/// Runs one query, timed in the query history as the caller's; rows as JSON objects.
async fn run_query(
    state: &AppState,
    sql: &str,
) -> Result<(Vec<serde_json::Value>, Columns), Response> {
    let reader = access::current().map(|current| current.reader.clone());
    let run = StatementRun::start_as(&state.engine, Interface::Http, reader, sql);
    let frame = match state.engine.execute_sql(sql).await {
        Ok(outputs) => match outputs.into_iter().last() {
            Some(StatementOutput::Query(frame)) => frame,
            _ => {
                run.failed(ErrorKind::InvalidInput, "not a query");
                return Err(invalid("the chart's SQL is not a query"));
            }
        },
        Err(err) => {
            run.failed(err.kind(), &err.to_string());
            return Err(engine_failure(&err));
        }
    };
    let columns: Columns = frame
        .schema()
        .fields()
        .iter()
        .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    let batches = match frame.collect().await {
        Ok(batches) => batches,
        Err(err) => {
            let err = EngineError::from(err);
            run.failed(err.kind(), &err.to_string());
            return Err(engine_failure(&err));
        }
    };
    let rows = crate::format::json_rows(&batches).map_err(|err| {
        error_response(
            ErrorKind::Internal,
            &format!("cannot encode rows: {err}"),
            None,
        )
    })?;
    run.ok(Some(rows.len() as u64));
    Ok((rows, columns))
}

async fn chart_data(
    state: &AppState,
    spec: &ChartSpec,
    owner: &str,
    dashboard_filters: &[Filter],
) -> Result<Response, Response> {
    let started = Instant::now();
    let source = source_sql(state, &spec.source, owner).await?;
    let columns = source_columns(state, &source).await?;
    let query = spec
        .to_query(&source, &columns, dashboard_filters)
        .map_err(invalid)?;
    let (mut rows, result_columns) = run_query(state, &query.sql).await?;
    let truncated = rows.len() as u64 > query.limit;
    rows.truncate(query.limit as usize);
    Ok(Json(serde_json::json!({
        "columns": result_columns,
        "row_count": rows.len(),
        "rows": rows,
        "truncated": truncated,
        "sql": query.sql,
        "elapsed_ms": started.elapsed().as_millis() as u64,
        "ignored_filters": query.ignored_filters,
    }))
    .into_response())
}
