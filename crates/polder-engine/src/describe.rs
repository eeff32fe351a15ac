//! A description of everything in the catalog, for the REST API and the UI.

use serde::Serialize;

use polder_catalog::TableKind;
use polder_lake::Lake;

use crate::engine::Engine;
use crate::error::Result;

#[derive(Debug, Clone, Serialize)]
pub struct CatalogDescription {
    pub catalog: String,
    pub schemas: Vec<SchemaDescription>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SchemaDescription {
    pub name: String,
    pub tables: Vec<TableDescription>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableDescription {
    pub name: String,
    /// `table` or `view`.
    pub kind: String,
    pub columns: Vec<ColumnDescription>,
    /// Rows in the latest version (tables only; from Delta statistics, no data is read).
    pub row_count: Option<u64>,
    /// Latest Delta version (tables only).
    pub version: Option<i64>,
    pub num_files: Option<usize>,
    pub size_bytes: Option<u64>,
    /// SQL of a view.
    pub definition: Option<String>,
    pub created_at: String,
    /// Set when the table or view cannot be read right now (for example a view whose source
    /// was dropped); the rest of the catalog is still described.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnDescription {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
}

impl Engine {
    /// Describes every schema, table and view: columns, and for tables their size and version.
    pub async fn describe_catalog(&self) -> Result<CatalogDescription> {
        self.sync().await?;
        let listing = self.catalog.listing();
        let mut schemas = Vec::with_capacity(listing.schemas.len());
        for (schema_name, tables) in &listing.schemas {
            let mut described = Vec::with_capacity(tables.len());
            for (table_name, entry) in tables {
                let created_at = chrono::DateTime::from_timestamp_millis(entry.created_at)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                let mut description = TableDescription {
                    name: table_name.clone(),
                    kind: entry.kind.to_string(),
                    columns: Vec::new(),
                    row_count: None,
                    version: None,
                    num_files: None,
                    size_bytes: None,
                    definition: entry.definition.clone(),
                    created_at,
                    error: None,
                };
                let reference = datafusion::common::TableReference::partial(
                    schema_name.as_str(),
                    table_name.as_str(),
                );
                let resolved = self.session().table_provider(reference).await;
                // Size and row count only for tables the caller may read, and not for tables
                // whose row policies hide rows from it (the count would tell how many).
                let governed = crate::access::current().is_some_and(|access| {
                    !access.reader.is_admin()
                        && self
                            .catalog
                            .security()
                            .rules_of(schema_name, table_name)
                            .is_some()
                });
                let show_stats = resolved.is_ok() && !governed;
                match resolved {
                    Ok(provider) => {
                        for field in provider.schema().fields() {
                            description.columns.push(ColumnDescription {
                                name: field.name().clone(),
                                data_type: field.data_type().to_string(),
                                nullable: field.is_nullable(),
                            });
                        }
                    }
                    Err(err) => description.error = Some(crate::error::datafusion_message(&err)),
                }
                if entry.kind == TableKind::Table
                    && show_stats
                    && let Some(location) = &entry.location
                {
                    match self
                        .catalog
                        .load_latest(location)
                        .await
                        .and_then(|t| Ok(Lake::stats(&t)?))
                    {
                        Ok(stats) => {
                            description.row_count = stats.num_rows;
                            description.version = Some(stats.version);
                            description.num_files = Some(stats.num_files);
                            description.size_bytes = Some(stats.size_bytes);
                        }
                        Err(err) => description.error = Some(err.to_string()),
                    }
                }
                described.push(description);
            }
            schemas.push(SchemaDescription {
                name: schema_name.clone(),
                tables: described,
            });
        }
        Ok(CatalogDescription {
            catalog: polder_core::CATALOG_NAME.to_string(),
            schemas,
        })
    }
}
