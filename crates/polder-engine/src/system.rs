//! The `system` schema, read from the catalog store when a statement uses it:
//! `system.audit`, `system.users`, `system.row_policies` and `system.column_masks` (admins),
//! `system.grants` (everyone sees the grants that apply to them; admins see all) and
//! `system.queries` (everyone sees their own statements; admins see all), `system.connections`
//! and `system.jobs` (ingestion; admins and engineers).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use polder_catalog::CatalogStore;

use crate::access;
use crate::error::{EngineError, Result};

pub(crate) const SYSTEM_SCHEMA: &str = "system";
const TABLES: [&str; 9] = [
    "audit",
    "column_masks",
    "connections",
    "grants",
    "jobs",
    "queries",
    "reflections",
    "row_policies",
    "users",
];
/// `system.queries` shows the newest statements; older ones stay in the catalog store.
const QUERY_ROWS: i64 = 10_000;
/// `system.jobs` shows the newest runs; older ones stay in the catalog store.
const JOB_ROWS: i64 = 10_000;
/// `system.audit` shows the newest entries; older ones stay in the catalog store.
const AUDIT_ROWS: i64 = 100_000;

#[derive(Debug)]
pub(crate) struct SystemSchema {
    pub store: CatalogStore,
    pub queries: Arc<crate::query_log::QueryLog>,
}

fn text(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn timestamps(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(values).with_timezone("UTC"))
}

fn batch(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| EngineError::InvalidInput(e.to_string()))?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

fn timestamp_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        false,
    )
}

impl SystemSchema {
    async fn audit(&self) -> Result<Arc<dyn TableProvider>> {
        access::check_admin("read system.audit")?;
        let rows = self.store.read_audit(AUDIT_ROWS).await?;
        batch(
            vec![
                timestamp_field("at"),
                Field::new("user_name", DataType::Utf8, false),
                Field::new("client", DataType::Utf8, false),
                Field::new("action", DataType::Utf8, false),
                Field::new("statement", DataType::Utf8, false),
                Field::new("ok", DataType::Boolean, false),
                Field::new("message", DataType::Utf8, false),
            ],
            vec![
                timestamps(rows.iter().map(|r| r.at).collect()),
                text(rows.iter().map(|r| r.user_name.clone()).collect()),
                text(rows.iter().map(|r| r.client.clone()).collect()),
                text(rows.iter().map(|r| r.action.clone()).collect()),
                text(rows.iter().map(|r| r.statement.clone()).collect()),
                Arc::new(BooleanArray::from(
                    rows.iter().map(|r| r.ok).collect::<Vec<_>>(),
                )),
                text(rows.iter().map(|r| r.message.clone()).collect()),
            ],
        )
    }

    async fn grants(&self) -> Result<Arc<dyn TableProvider>> {
        let principal = access::current_principal();
        let rows: Vec<_> = self
            .store
            .list_grants()
            .await?
            .into_iter()
            .filter(|grant| {
                principal.is_admin()
                    || (grant.grantee_kind == "user" && grant.grantee == principal.user)
                    || (grant.grantee_kind == "role" && grant.grantee == principal.role.as_str())
            })
            .collect();
        batch(
            vec![
                Field::new("grantee_kind", DataType::Utf8, false),
                Field::new("grantee", DataType::Utf8, false),
                Field::new("privilege", DataType::Utf8, false),
                Field::new("schema_name", DataType::Utf8, false),
                Field::new("table_name", DataType::Utf8, true),
                Field::new("granted_by", DataType::Utf8, false),
                timestamp_field("created_at"),
            ],
            vec![
                text(rows.iter().map(|g| g.grantee_kind.clone()).collect()),
                text(rows.iter().map(|g| g.grantee.clone()).collect()),
                text(rows.iter().map(|g| g.privilege.clone()).collect()),
                text(rows.iter().map(|g| g.schema.clone()).collect()),
                Arc::new(StringArray::from(
                    rows.iter()
                        .map(|g| (!g.table.is_empty()).then(|| g.table.clone()))
                        .collect::<Vec<_>>(),
                )),
                text(rows.iter().map(|g| g.granted_by.clone()).collect()),
                timestamps(rows.iter().map(|g| g.created_at).collect()),
            ],
        )
    }

    async fn users(&self) -> Result<Arc<dyn TableProvider>> {
        access::check_admin("read system.users")?;
        let rows = self.store.list_users().await?;
        batch(
            vec![
                Field::new("name", DataType::Utf8, false),
                Field::new("role", DataType::Utf8, false),
                Field::new("disabled", DataType::Boolean, false),
                timestamp_field("created_at"),
            ],
            vec![
                text(rows.iter().map(|u| u.name.clone()).collect()),
                text(rows.iter().map(|u| u.role.clone()).collect()),
                Arc::new(BooleanArray::from(
                    rows.iter().map(|u| u.disabled).collect::<Vec<_>>(),
                )),
                timestamps(rows.iter().map(|u| u.created_at).collect()),
            ],
        )
    }
}

impl SystemSchema {
    async fn queries(&self) -> Result<Arc<dyn TableProvider>> {
        let principal = access::current_principal();
        let only = (!principal.is_admin()).then_some(principal.user.as_str());
        let rows = self.queries.read(only, QUERY_ROWS).await?;
        batch(
            vec![
                Field::new("query_id", DataType::Utf8, false),
                Field::new("user_name", DataType::Utf8, false),
                Field::new("interface", DataType::Utf8, false),
                Field::new("client", DataType::Utf8, false),
                Field::new("statement", DataType::Utf8, false),
                timestamp_field("started_at"),
                Field::new("duration_ms", DataType::Int64, false),
                Field::new("rows", DataType::Int64, true),
                Field::new("status", DataType::Utf8, false),
                Field::new("error", DataType::Utf8, true),
            ],
            vec![
                text(rows.iter().map(|q| q.id.clone()).collect()),
                text(rows.iter().map(|q| q.user_name.clone()).collect()),
                text(rows.iter().map(|q| q.interface.clone()).collect()),
                text(rows.iter().map(|q| q.client.clone()).collect()),
                text(rows.iter().map(|q| q.statement.clone()).collect()),
                timestamps(rows.iter().map(|q| q.started_at).collect()),
                Arc::new(Int64Array::from(
                    rows.iter().map(|q| q.duration_ms).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|q| q.rows).collect::<Vec<_>>(),
                )),
                text(rows.iter().map(|q| q.status.clone()).collect()),
                Arc::new(StringArray::from(
                    rows.iter()
                        .map(|q| (!q.error.is_empty()).then(|| q.error.clone()))
                        .collect::<Vec<_>>(),
                )),
            ],
        )
    }

    async fn row_policies(&self) -> Result<Arc<dyn TableProvider>> {
        access::check_admin("read system.row_policies")?;
        let rows = self.store.list_row_policies().await?;
        batch(
            vec![
                Field::new("schema_name", DataType::Utf8, false),
                Field::new("table_name", DataType::Utf8, false),
                Field::new("policy_name", DataType::Utf8, false),
                Field::new("predicate", DataType::Utf8, false),
                Field::new("applies_to", DataType::Utf8, false),
                Field::new("created_by", DataType::Utf8, false),
                timestamp_field("created_at"),
            ],
            vec![
                text(rows.iter().map(|p| p.schema.clone()).collect()),
                text(rows.iter().map(|p| p.table.clone()).collect()),
                text(rows.iter().map(|p| p.name.clone()).collect()),
                text(rows.iter().map(|p| p.predicate.clone()).collect()),
                text(
                    rows.iter()
                        .map(|p| {
                            if p.applies_to.is_empty() {
                                "all non-admin users".to_string()
                            } else {
                                p.applies_to.join(", ")
                            }
                        })
                        .collect(),
                ),
                text(rows.iter().map(|p| p.created_by.clone()).collect()),
                timestamps(rows.iter().map(|p| p.created_at).collect()),
            ],
        )
    }

    async fn column_masks(&self) -> Result<Arc<dyn TableProvider>> {
        access::check_admin("read system.column_masks")?;
        let rows = self.store.list_column_masks().await?;
        batch(
            vec![
                Field::new("schema_name", DataType::Utf8, false),
                Field::new("table_name", DataType::Utf8, false),
                Field::new("mask_name", DataType::Utf8, false),
                Field::new("column_name", DataType::Utf8, false),
                Field::new("expression", DataType::Utf8, false),
                Field::new("exempt", DataType::Utf8, false),
                Field::new("created_by", DataType::Utf8, false),
                timestamp_field("created_at"),
            ],
            vec![
                text(rows.iter().map(|m| m.schema.clone()).collect()),
                text(rows.iter().map(|m| m.table.clone()).collect()),
                text(rows.iter().map(|m| m.name.clone()).collect()),
                text(rows.iter().map(|m| m.column.clone()).collect()),
                text(rows.iter().map(|m| m.expression.clone()).collect()),
                text(rows.iter().map(|m| m.exempt.join(", ")).collect()),
                text(rows.iter().map(|m| m.created_by.clone()).collect()),
                timestamps(rows.iter().map(|m| m.created_at).collect()),
            ],
        )
    }
}

/// Ingestion runs data into the lake: only those who may run it see it.
fn check_engineer(what: &str) -> Result<()> {
    match access::current() {
        Some(access) if !access.principal.is_engineer_or_admin() => {
            Err(EngineError::PermissionDenied(format!(
                "user '{}' ({}) may not {what}: that needs the engineer or admin role",
                access.principal.user, access.principal.role
            )))
        }
        _ => Ok(()),
    }
}

fn optional_timestamps(values: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(values).with_timezone("UTC"))
}

fn optional_text(values: impl Iterator<Item = String>) -> ArrayRef {
    Arc::new(StringArray::from(
        values
            .map(|v| (!v.is_empty()).then_some(v))
            .collect::<Vec<_>>(),
    ))
}

impl SystemSchema {
    async fn connections(&self) -> Result<Arc<dyn TableProvider>> {
        check_engineer("read system.connections")?;
        // The configuration is left out: it is the connection API's to show (masked).
        let rows = self.store.list_connections().await?;
        batch(
            vec![
                Field::new("name", DataType::Utf8, false),
                Field::new("source_type", DataType::Utf8, false),
                Field::new("streams", DataType::Utf8, false),
                Field::new("schedule", DataType::Utf8, true),
                Field::new("created_by", DataType::Utf8, false),
                timestamp_field("created_at"),
                timestamp_field("updated_at"),
            ],
            vec![
                text(rows.iter().map(|c| c.name.clone()).collect()),
                text(rows.iter().map(|c| c.source_type.clone()).collect()),
                text(rows.iter().map(|c| c.streams.clone()).collect()),
                optional_text(rows.iter().map(|c| c.schedule.clone())),
                text(rows.iter().map(|c| c.created_by.clone()).collect()),
                timestamps(rows.iter().map(|c| c.created_at).collect()),
                timestamps(rows.iter().map(|c| c.updated_at).collect()),
            ],
        )
    }

    async fn jobs(&self) -> Result<Arc<dyn TableProvider>> {
        check_engineer("read system.jobs")?;
        let rows = self.store.list_jobs(None, JOB_ROWS).await?;
        let ints = |f: fn(&polder_catalog::JobRecord) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
        };
        let duration: Vec<Option<i64>> = rows
            .iter()
            .map(|j| Some(j.finished_at.unwrap_or_else(polder_catalog::now) - j.started_at?))
            .collect();
        batch(
            vec![
                Field::new("job_id", DataType::Utf8, false),
                Field::new("connection", DataType::Utf8, false),
                Field::new("kind", DataType::Utf8, false),
                Field::new("trigger", DataType::Utf8, false),
                Field::new("status", DataType::Utf8, false),
                Field::new("attempt", DataType::Int64, false),
                timestamp_field("created_at"),
                Field::new(
                    "started_at",
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    true,
                ),
                Field::new(
                    "finished_at",
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    true,
                ),
                Field::new("duration_ms", DataType::Int64, true),
                Field::new("records", DataType::Int64, false),
                Field::new("bytes", DataType::Int64, false),
                Field::new("rejects", DataType::Int64, false),
                Field::new("streams", DataType::Utf8, false),
                Field::new("error", DataType::Utf8, true),
                Field::new("log_tail", DataType::Utf8, true),
            ],
            vec![
                text(rows.iter().map(|j| j.id.clone()).collect()),
                text(rows.iter().map(|j| j.connection.clone()).collect()),
                text(rows.iter().map(|j| j.kind.clone()).collect()),
                text(rows.iter().map(|j| j.trigger.clone()).collect()),
                text(rows.iter().map(|j| j.status.clone()).collect()),
                ints(|j| j.attempt),
                timestamps(rows.iter().map(|j| j.created_at).collect()),
                optional_timestamps(rows.iter().map(|j| j.started_at).collect()),
                optional_timestamps(rows.iter().map(|j| j.finished_at).collect()),
                Arc::new(Int64Array::from(duration)),
                ints(|j| j.records),
                ints(|j| j.bytes),
                ints(|j| j.rejects),
                text(rows.iter().map(|j| j.streams.clone()).collect()),
                optional_text(rows.iter().map(|j| j.error.clone())),
                optional_text(rows.iter().map(|j| j.log_tail.clone())),
            ],
        )
    }
}

impl SystemSchema {
    /// Every reflection: what it holds, how fresh it is and how often it served.
    async fn reflections(&self) -> Result<Arc<dyn TableProvider>> {
        let rows = self.store.list_reflections().await?;
        let described: Vec<(String, String, i64)> =
            rows.iter().map(crate::reflection::describe).collect();
        let optional_ints =
            |values: Vec<Option<i64>>| -> ArrayRef { Arc::new(Int64Array::from(values)) };
        batch(
            vec![
                Field::new("name", DataType::Utf8, false),
                Field::new("source", DataType::Utf8, false),
                Field::new("kind", DataType::Utf8, false),
                Field::new("definition", DataType::Utf8, false),
                Field::new("status", DataType::Utf8, false),
                Field::new("status_reason", DataType::Utf8, true),
                Field::new("refresh_policy", DataType::Utf8, false),
                Field::new("staleness_seconds", DataType::Int64, false),
                Field::new("rows", DataType::Int64, true),
                Field::new("size_bytes", DataType::Int64, true),
                Field::new("source_versions", DataType::Utf8, false),
                Field::new("data_version", DataType::Int64, true),
                Field::new(
                    "refreshed_at",
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    true,
                ),
                Field::new("last_refresh_ms", DataType::Int64, true),
                Field::new("last_refresh_kind", DataType::Utf8, true),
                Field::new("usage_count", DataType::Int64, false),
                Field::new(
                    "last_used_at",
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    true,
                ),
                Field::new("owner", DataType::Utf8, false),
            ],
            vec![
                text(rows.iter().map(|r| r.name.clone()).collect()),
                text(rows.iter().map(|r| r.source.clone()).collect()),
                text(rows.iter().map(|r| r.kind.clone()).collect()),
                text(described.iter().map(|d| d.0.clone()).collect()),
                text(rows.iter().map(|r| r.status.clone()).collect()),
                optional_text(
                    rows.iter()
                        .map(|r| r.status_reason.clone().unwrap_or_default()),
                ),
                text(described.iter().map(|d| d.1.clone()).collect()),
                Arc::new(Int64Array::from(
                    described.iter().map(|d| d.2).collect::<Vec<_>>(),
                )),
                optional_ints(rows.iter().map(|r| r.row_count).collect()),
                optional_ints(rows.iter().map(|r| r.size_bytes).collect()),
                text(rows.iter().map(|r| r.source_versions.clone()).collect()),
                optional_ints(rows.iter().map(|r| r.data_version).collect()),
                optional_timestamps(rows.iter().map(|r| r.refreshed_at).collect()),
                optional_ints(rows.iter().map(|r| r.last_refresh_ms).collect()),
                optional_text(
                    rows.iter()
                        .map(|r| r.last_refresh_kind.clone().unwrap_or_default()),
                ),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.usage_count).collect::<Vec<_>>(),
                )),
                optional_timestamps(rows.iter().map(|r| r.last_used_at).collect()),
                text(rows.iter().map(|r| r.owner.clone()).collect()),
            ],
        )
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let provider = match name {
            "audit" => self.audit().await,
            "grants" => self.grants().await,
            "users" => self.users().await,
            "queries" => self.queries().await,
            "row_policies" => self.row_policies().await,
            "column_masks" => self.column_masks().await,
            "connections" => self.connections().await,
            "jobs" => self.jobs().await,
            "reflections" => self.reflections().await,
            _ => return Ok(None),
        };
        provider.map(Some).map_err(EngineError::into_datafusion)
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}
