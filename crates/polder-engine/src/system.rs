//! The `system` schema: `system.audit` (admins), `system.grants` (everyone sees the grants
//! that apply to them; admins see all) and `system.users` (admins), read from the catalog
//! store when a statement uses them.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use polder_catalog::CatalogStore;

use crate::access;
use crate::error::{EngineError, Result};

pub(crate) const SYSTEM_SCHEMA: &str = "system";
const TABLES: [&str; 3] = ["audit", "grants", "users"];
/// `system.audit` shows the newest entries; older ones stay in the catalog store.
const AUDIT_ROWS: i64 = 100_000;

#[derive(Debug)]
pub(crate) struct SystemSchema {
    pub store: CatalogStore,
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
            _ => return Ok(None),
        };
        provider.map(Some).map_err(EngineError::into_datafusion)
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}
