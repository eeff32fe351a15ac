//! The PostgreSQL source: tables of one database, read through binary COPY straight into
//! Arrow ([`crate::postgres`]). One exported snapshot serves every read of a stream, so the
//! cursor bound and the parallel ranges of a big table all see the same data.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::DataType;
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_postgres::{Client, NoTls};

use super::{
    Batches, DiscoveredStream, PendingStream, ReadContext, Source, StreamData, StreamRequest,
    counted,
};
use crate::error::{IngestError, Result};
use crate::postgres::{
    PgColumn, arrow_schema, database_error, discover_table, quote_ident, read_arrow,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresConfig {
    #[serde(default = "default_host")]
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    user: String,
    #[serde(default)]
    password: String,
    database: String,
    /// Where unqualified stream names are looked up.
    #[serde(default = "default_schema")]
    schema: String,
    /// Readers of one big table, over ranges of an integer primary key.
    #[serde(default = "default_parallelism")]
    parallelism: usize,
    /// Estimated rows below which one reader is enough.
    #[serde(default = "default_parallel_threshold")]
    parallel_threshold_rows: u64,
}

fn default_parallel_threshold() -> u64 {
    200_000
}

fn default_host() -> String {
    "127.0.0.1".to_string()
}
fn default_port() -> u16 {
    5432
}
fn default_schema() -> String {
    "public".to_string()
}
fn default_parallelism() -> usize {
    4
}

pub(super) struct PostgresSource {
    config: PostgresConfig,
}

impl PostgresSource {
    pub fn new(config: &Value) -> Result<Self> {
        let config: PostgresConfig = serde_json::from_value(config.clone())
            .map_err(|e| IngestError::Config(format!("postgres source: {e}")))?;
        Ok(PostgresSource { config })
    }

    fn describe(&self) -> String {
        format!(
            "postgres {}:{}/{}",
            self.config.host, self.config.port, self.config.database
        )
    }

    async fn connect(&self) -> Result<Client> {
        connect(&self.config).await
    }

    /// `(schema, table)` of a stream name: `orders` is in the configured schema.
    fn locate(&self, stream: &str) -> (String, String) {
        match stream.split_once('.') {
            Some((schema, table)) => (schema.to_string(), table.to_string()),
            None => (self.config.schema.clone(), stream.to_string()),
        }
    }
}

async fn connect(config: &PostgresConfig) -> Result<Client> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host)
        .port(config.port)
        .user(&config.user)
        .dbname(&config.database)
        .application_name("polder")
        .connect_timeout(Duration::from_secs(10));
    if !config.password.is_empty() {
        pg.password(&config.password);
    }
    let what = format!(
        "postgres {}:{}/{}",
        config.host, config.port, config.database
    );
    let (client, connection) = pg
        .connect(NoTls)
        .await
        .map_err(|e| database_error(&what, e))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "postgres source connection ended");
        }
    });
    Ok(client)
}

async fn primary_key(client: &Client, schema: &str, table: &str) -> Result<Vec<String>> {
    let what = format!("postgres table {schema}.{table}");
    let qualified = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let rows = client
        .query(
            "SELECT a.attname FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&qualified],
        )
        .await
        .map_err(|e| database_error(&what, e))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// `'text'` as a SQL literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn stream_of(columns: &[PgColumn], primary_key: Vec<String>, name: String) -> DiscoveredStream {
    let types: Vec<DataType> = columns.iter().map(PgColumn::data_type).collect();
    DiscoveredStream::from_fields(
        name,
        columns.iter().map(|c| c.name.as_str()).zip(types.iter()),
        primary_key,
        None,
    )
}

#[async_trait]
impl Source for PostgresSource {
    async fn check(&self, _context: &ReadContext) -> Result<String> {
        let client = self.connect().await?;
        let what = self.describe();
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm')",
                &[&self.config.schema],
            )
            .await
            .map_err(|e| database_error(&what, e))?;
        let tables: i64 = row.get(0);
        Ok(format!(
            "connected to {what}: {tables} tables and views in schema {}",
            self.config.schema
        ))
    }

    async fn discover(&self, _context: &ReadContext) -> Result<Vec<DiscoveredStream>> {
        let client = self.connect().await?;
        let what = self.describe();
        let rows = client
            .query(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1",
                &[&self.config.schema],
            )
            .await
            .map_err(|e| database_error(&what, e))?;
        let mut streams = Vec::with_capacity(rows.len());
        for row in rows {
            let table: String = row.get(0);
            let columns = discover_table(&client, &self.config.schema, &table).await?;
            let key = primary_key(&client, &self.config.schema, &table).await?;
            streams.push(stream_of(&columns, key, table));
        }
        Ok(streams)
    }

    async fn read(
        &self,
        requests: Vec<StreamRequest>,
        context: &ReadContext,
    ) -> Result<Vec<PendingStream>> {
        Ok(requests
            .into_iter()
            .map(|request| {
                let (schema, table) = self.locate(&request.spec.name);
                let config = self.config.clone();
                let context = context.clone();
                Box::pin(read_stream(config, schema, table, request, context)) as PendingStream
            })
            .collect())
    }
}

/// Plans one stream's read in a snapshot of its own: the cursor bound, the key ranges, and
/// one lazily started COPY per range.
async fn read_stream(
    config: PostgresConfig,
    schema: String,
    table: String,
    request: StreamRequest,
    context: ReadContext,
) -> Result<StreamData> {
    let what = format!("postgres table {schema}.{table}");
    let db = |e| database_error(&what, e);
    let coordinator = Arc::new(connect(&config).await?);
    coordinator
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(db)?;
    let snapshot: String = coordinator
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(db)?
        .get(0);
    let columns = discover_table(&coordinator, &schema, &table).await?;
    let key = primary_key(&coordinator, &schema, &table).await?;
    let source_schema = arrow_schema(&columns);
    let from = format!("{}.{}", quote_ident(&schema), quote_ident(&table));

    let mut filter: Option<String> = None;
    let mut state = None;
    if request.spec.sync_mode.is_incremental() {
        let cursor = request.spec.cursor_field.clone().unwrap_or_default();
        let Some(column) = columns.iter().find(|c| c.name == cursor) else {
            return Err(IngestError::Config(format!(
                "stream '{}': cursor column '{cursor}' is not a column of {schema}.{table}",
                request.spec.name
            )));
        };
        let previous = request
            .state
            .as_ref()
            .and_then(|s| s.get("cursor"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let newest: Option<String> = coordinator
            .query_one(
                &format!("SELECT max({})::text FROM {from}", quote_ident(&cursor)),
                &[],
            )
            .await
            .map_err(db)?
            .get(0);
        let Some(newest) = newest else {
            return Ok(nothing_new(source_schema, request.state, key));
        };
        if previous.as_deref() == Some(newest.as_str()) {
            return Ok(nothing_new(source_schema, request.state, key));
        }
        let quoted = quote_ident(&cursor);
        let upper = format!("{quoted} <= {}::{}", literal(&newest), column.pg_type);
        filter = Some(match &previous {
            Some(previous) => format!(
                "{quoted} > {}::{} AND {upper}",
                literal(previous),
                column.pg_type
            ),
            None => upper,
        });
        state = Some(json!({"cursor_field": cursor, "cursor": newest}));
    }

    let ranges = key_ranges(
        &coordinator,
        &config,
        &columns,
        &key,
        &from,
        filter.as_deref(),
    )
    .await
    .map_err(db)?;
    let mut partitions = Vec::new();
    match ranges {
        None => {
            let stream = read_arrow(
                &coordinator,
                &columns,
                &from,
                filter.as_deref(),
                super::BATCH_ROWS,
            )
            .await?;
            let owner = coordinator.clone();
            // The stream must keep its connection's client alive until it ends.
            let stream = stream.inspect(move |_| {
                let _ = &owner;
            });
            partitions.push(counted(stream.boxed(), context.counters.clone()));
        }
        Some((column, bounds)) => {
            for (low, high) in bounds {
                let mut range = format!(
                    "{col} >= {low} AND {col} {} {high}",
                    if high.1 { "<=" } else { "<" },
                    col = quote_ident(&column),
                    high = high.0
                );
                if let Some(filter) = &filter {
                    range = format!("{range} AND {filter}");
                }
                let config = config.clone();
                let columns = columns.clone();
                let from = from.clone();
                let snapshot = snapshot.clone();
                let stream = futures::stream::once(async move {
                    let client = Arc::new(connect(&config).await?);
                    let what = format!("postgres {from}");
                    client
                        .batch_execute(&format!(
                            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
                            literal(&snapshot)
                        ))
                        .await
                        .map_err(|e| database_error(&what, e))?;
                    let stream =
                        read_arrow(&client, &columns, &from, Some(&range), super::BATCH_ROWS)
                            .await?;
                    Ok::<_, IngestError>(stream.inspect(move |_| {
                        let _ = &client;
                    }))
                })
                .try_flatten();
                partitions.push(counted(stream.boxed(), context.counters.clone()));
            }
        }
    }
    Ok(StreamData {
        schema: source_schema,
        batches: Batches::Streaming(partitions),
        state,
        rejects: Vec::new(),
        cursor_field: None,
        primary_key: key,
        nothing_new: false,
        // The exported snapshot lives as long as the coordinator's transaction.
        keep_alive: Some(Box::new(coordinator)),
    })
}

fn nothing_new(
    schema: arrow::datatypes::SchemaRef,
    state: Option<Value>,
    key: Vec<String>,
) -> StreamData {
    StreamData {
        primary_key: key,
        nothing_new: true,
        ..StreamData::buffered(schema, Vec::new(), state)
    }
}

/// Bounds of a key column: `low` inclusive, `(high, inclusive)`.
type KeyRanges = (String, Vec<(i64, (i64, bool))>);

/// Splits a big table with a one-column integer primary key into `parallelism` ranges.
async fn key_ranges(
    client: &Client,
    config: &PostgresConfig,
    columns: &[PgColumn],
    key: &[String],
    from: &str,
    filter: Option<&str>,
) -> std::result::Result<Option<KeyRanges>, tokio_postgres::Error> {
    if config.parallelism < 2 || key.len() != 1 {
        return Ok(None);
    }
    let Some(column) = columns.iter().find(|c| c.name == key[0]) else {
        return Ok(None);
    };
    if !matches!(
        column.data_type(),
        DataType::Int16 | DataType::Int32 | DataType::Int64
    ) {
        return Ok(None);
    }
    let estimate: f32 = client
        .query_one(
            "SELECT coalesce(max(reltuples), 0)::real FROM pg_class WHERE oid = to_regclass($1)",
            &[&from],
        )
        .await?
        .get(0);
    if config.parallel_threshold_rows > 0
        && (estimate as f64) < config.parallel_threshold_rows as f64
    {
        return Ok(None);
    }
    let quoted = quote_ident(&column.name);
    let where_clause = filter.map(|f| format!(" WHERE {f}")).unwrap_or_default();
    let row = client
        .query_one(
            &format!("SELECT min({quoted})::int8, max({quoted})::int8 FROM {from}{where_clause}"),
            &[],
        )
        .await?;
    let (Some(low), Some(high)): (Option<i64>, Option<i64>) = (row.get(0), row.get(1)) else {
        return Ok(None);
    };
    let bounds = super::split_key_range(low, high, config.parallelism)
        .into_iter()
        .map(|(start, end, inclusive)| (start, (end, inclusive)))
        .collect();
    Ok(Some((column.name.clone(), bounds)))
}
