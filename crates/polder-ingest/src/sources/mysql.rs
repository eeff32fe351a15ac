//! The MySQL / MariaDB source: tables of one database read into Arrow ([`crate::mysql`]),
//! full or by a cursor bound taken before reading, big tables in parallel key ranges.

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::mysql::MySqlConnection;

use super::{
    Batches, DiscoveredStream, PendingStream, ReadContext, Source, StreamData, StreamRequest,
    counted,
};
use crate::error::{IngestError, Result};
use crate::mysql::{
    MySqlSourceConfig, arrow_schema, connect, discover_table, key_range, list_tables, quote_ident,
    read_arrow,
};

#[derive(Clone, serde::Deserialize)]
struct MySqlConfig {
    #[serde(flatten)]
    connection: MySqlSourceConfig,
    #[serde(default = "default_parallelism")]
    parallelism: usize,
    /// Estimated rows below which one reader is enough.
    #[serde(default = "default_parallel_threshold")]
    parallel_threshold_rows: i64,
}

fn default_parallelism() -> usize {
    4
}

fn default_parallel_threshold() -> i64 {
    200_000
}

pub(super) struct MySqlSource {
    config: MySqlConfig,
}

impl MySqlSource {
    pub fn new(config: &Value) -> Result<Self> {
        let config: MySqlConfig = serde_json::from_value(config.clone())
            .map_err(|e| IngestError::Config(format!("mysql source: {e}")))?;
        Ok(MySqlSource { config })
    }
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

async fn scalar_text(conn: &mut MySqlConnection, sql: &str, what: &str) -> Result<Option<String>> {
    sqlx::query_scalar::<_, Option<String>>(sql)
        .fetch_one(conn)
        .await
        .map_err(|e| IngestError::Source {
            source_name: what.to_string(),
            message: e.to_string(),
        })
}

#[async_trait]
impl Source for MySqlSource {
    async fn check(&self, _context: &ReadContext) -> Result<String> {
        let mut conn = connect(&self.config.connection).await?;
        let tables = list_tables(&mut conn, &self.config.connection.database).await?;
        Ok(format!(
            "connected to {}: {} tables and views",
            self.config.connection.source_name(),
            tables.len()
        ))
    }

    async fn discover(&self, _context: &ReadContext) -> Result<Vec<DiscoveredStream>> {
        let mut conn = connect(&self.config.connection).await?;
        let tables = list_tables(&mut conn, &self.config.connection.database).await?;
        Ok(tables
            .into_iter()
            .map(|table| {
                DiscoveredStream::from_fields(
                    table.name,
                    table
                        .columns
                        .iter()
                        .map(|c| (c.name.as_str(), &c.data_type)),
                    table.primary_key,
                    None,
                )
            })
            .collect())
    }

    async fn read(
        &self,
        requests: Vec<StreamRequest>,
        context: &ReadContext,
    ) -> Result<Vec<PendingStream>> {
        Ok(requests
            .into_iter()
            .map(|request| {
                let config = self.config.clone();
                let context = context.clone();
                Box::pin(read_stream(config, request, context)) as PendingStream
            })
            .collect())
    }
}

async fn read_stream(
    config: MySqlConfig,
    request: StreamRequest,
    context: ReadContext,
) -> Result<StreamData> {
    let database = config.connection.database.clone();
    let table_name = request.spec.name.clone();
    let what = format!("mysql table {database}.{table_name}");
    let mut conn = connect(&config.connection).await?;
    let table = discover_table(&mut conn, &database, &table_name).await?;
    let schema = arrow_schema(&table.columns);
    let from = format!("{}.{}", quote_ident(&database), quote_ident(&table.name));

    let mut filter: Option<String> = None;
    let mut state = None;
    if request.spec.sync_mode.is_incremental() {
        let cursor = request.spec.cursor_field.clone().unwrap_or_default();
        let Some(column) = table.columns.iter().find(|c| c.name == cursor) else {
            return Err(IngestError::Config(format!(
                "stream '{}': cursor column '{cursor}' is not a column of {database}.{table_name}",
                request.spec.name
            )));
        };
        // Integers compared with a quoted string are compared as doubles, inexact above 2^53.
        let integer = matches!(
            column.data_type,
            arrow::datatypes::DataType::Int16
                | arrow::datatypes::DataType::Int32
                | arrow::datatypes::DataType::Int64
        );
        let value = |text: &str| {
            if integer && text.parse::<i64>().is_ok() {
                text.to_string()
            } else {
                literal(text)
            }
        };
        let quoted = quote_ident(&cursor);
        let previous = request
            .state
            .as_ref()
            .and_then(|s| s.get("cursor"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let newest = scalar_text(
            &mut conn,
            &format!("SELECT CAST(MAX({quoted}) AS CHAR) FROM {from}"),
            &what,
        )
        .await?;
        let nothing_new = match &newest {
            None => true,
            Some(newest) => previous.as_deref() == Some(newest.as_str()),
        };
        if nothing_new {
            return Ok(StreamData {
                primary_key: table.primary_key.clone(),
                nothing_new: true,
                ..StreamData::buffered(schema, Vec::new(), request.state)
            });
        }
        let newest = newest.unwrap_or_default();
        let upper = format!("{quoted} <= {}", value(&newest));
        filter = Some(match &previous {
            Some(previous) => format!("{quoted} > {} AND {upper}", value(previous)),
            None => upper,
        });
        state = Some(json!({"cursor_field": cursor, "cursor": newest}));
    }

    let mut ranges = None;
    if config.parallelism > 1 && table.primary_key.len() == 1 {
        let rows = scalar_text(
            &mut conn,
            &format!(
                "SELECT CAST(TABLE_ROWS AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {}",
                literal(&database),
                literal(&table.name)
            ),
            &what,
        )
        .await?
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or(0);
        if rows >= config.parallel_threshold_rows
            && let Some((low, high)) =
                key_range(&mut conn, &database, &table.name, &table.primary_key[0]).await?
        {
            ranges = Some((table.primary_key[0].clone(), low, high));
        }
    }
    let mut partitions = Vec::new();
    match ranges {
        None => {
            let stream = read_arrow(
                conn,
                &database,
                &table.name,
                &table.columns,
                filter,
                None,
                super::BATCH_ROWS,
            )
            .await?;
            partitions.push(counted(stream.boxed(), context.counters.clone()));
        }
        Some((key, low, high)) => {
            drop(conn);
            for (start, end, inclusive) in super::split_key_range(low, high, config.parallelism) {
                let quoted = quote_ident(&key);
                let mut range = format!(
                    "{quoted} >= {start} AND {quoted} {} {end}",
                    if inclusive { "<=" } else { "<" }
                );
                if let Some(filter) = &filter {
                    range = format!("{range} AND {filter}");
                }
                let connection = config.connection.clone();
                let database = database.clone();
                let name = table.name.clone();
                let columns = table.columns.clone();
                let stream = futures::stream::once(async move {
                    let conn = connect(&connection).await?;
                    read_arrow(
                        conn,
                        &database,
                        &name,
                        &columns,
                        Some(range),
                        None,
                        super::BATCH_ROWS,
                    )
                    .await
                })
                .map(|opened| match opened {
                    Ok(stream) => stream.boxed(),
                    Err(err) => futures::stream::once(async move { Err(err) }).boxed(),
                })
                .flatten();
                partitions.push(counted(stream.boxed(), context.counters.clone()));
            }
        }
    }
    Ok(StreamData {
        schema,
        batches: Batches::Streaming(partitions),
        state,
        rejects: Vec::new(),
        cursor_field: None,
        primary_key: table.primary_key,
        nothing_new: false,
        keep_alive: None,
    })
}
