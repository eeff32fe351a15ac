//! Sources behind one interface: check a connection, discover its streams, read selected
//! streams from a saved state. The sync engine ([`crate::sync`]) does the rest the same way
//! for every source: schema changes, sync modes, exactly-once commits, rejects.

mod airbyte;
mod files;
mod http;
mod mysql;
mod postgres;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use polder_engine::Engine;
use serde::Serialize;
use serde_json::Value;

use crate::connection::{ConnectionSpec, SourceType, StreamSpec, SyncMode};
use crate::error::Result;
use crate::records::Reject;

/// A stream as discovery finds it.
#[derive(Debug, Clone, Serialize)]
pub struct DiscoveredStream {
    pub name: String,
    /// `(column, type)`, the type as Polder will store it.
    pub columns: Vec<(String, String)>,
    pub primary_key: Vec<String>,
    /// The cursor the source itself defines (Airbyte streams), if any.
    pub default_cursor: Option<String>,
    /// Columns that can serve as a cursor (timestamps, dates, integers).
    pub cursor_candidates: Vec<String>,
    pub sync_modes: Vec<SyncMode>,
}

impl DiscoveredStream {
    /// A stream of `fields` (name, Arrow type), offering every sync mode.
    pub(crate) fn from_fields<'a>(
        name: String,
        fields: impl IntoIterator<Item = (&'a str, &'a arrow::datatypes::DataType)>,
        primary_key: Vec<String>,
        default_cursor: Option<String>,
    ) -> DiscoveredStream {
        let fields: Vec<_> = fields.into_iter().collect();
        DiscoveredStream {
            name,
            columns: fields
                .iter()
                .map(|(n, t)| (n.to_string(), type_name(t)))
                .collect(),
            cursor_candidates: fields
                .iter()
                .filter(|(_, t)| can_be_cursor(t))
                .map(|(n, _)| n.to_string())
                .collect(),
            primary_key,
            default_cursor,
            sync_modes: ALL_MODES.to_vec(),
        }
    }

    /// The same stream from an Arrow schema.
    pub(crate) fn from_schema(
        name: String,
        schema: &arrow::datatypes::Schema,
        primary_key: Vec<String>,
        default_cursor: Option<String>,
    ) -> DiscoveredStream {
        DiscoveredStream::from_fields(
            name,
            schema
                .fields()
                .iter()
                .map(|f| (f.name().as_str(), f.data_type())),
            primary_key,
            default_cursor,
        )
    }
}

/// Database, file and API sources support every mode.
pub(crate) const ALL_MODES: [SyncMode; 4] = [
    SyncMode::FullRefreshOverwrite,
    SyncMode::FullRefreshAppend,
    SyncMode::IncrementalAppend,
    SyncMode::IncrementalAppendDeduped,
];

/// What the sync engine asks a source for: one stream, from its saved state.
#[derive(Debug, Clone)]
pub struct StreamRequest {
    pub spec: StreamSpec,
    /// The state committed with the stream's last sync (`None` on the first).
    pub state: Option<Value>,
}

/// Record batches of a stream: streamed once (a database read, straight into the write) or
/// already in memory (sources whose rejects and state are known only after reading).
pub enum Batches {
    Streaming(Vec<BoxStream<'static, Result<RecordBatch>>>),
    Buffered(Vec<RecordBatch>),
}

/// One stream's data for one sync.
pub struct StreamData {
    pub schema: SchemaRef,
    pub batches: Batches,
    /// The state to commit with the data.
    pub state: Option<Value>,
    /// Records that did not load, with reasons.
    pub rejects: Vec<Reject>,
    /// The source's primary key (used when the stream names none).
    pub primary_key: Vec<String>,
    /// The source's cursor (used when the stream names none).
    pub cursor_field: Option<String>,
    /// True when the source knows there is nothing new (the state did not move).
    pub nothing_new: bool,
    /// Held until the data is written (a database snapshot the reads share, say).
    pub keep_alive: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl StreamData {
    pub fn buffered(schema: SchemaRef, batches: Vec<RecordBatch>, state: Option<Value>) -> Self {
        StreamData {
            schema,
            batches: Batches::Buffered(batches),
            state,
            rejects: Vec::new(),
            primary_key: Vec::new(),
            cursor_field: None,
            nothing_new: false,
            keep_alive: None,
        }
    }
}

/// A stream's read, started when awaited.
pub type PendingStream = BoxFuture<'static, Result<StreamData>>;

/// Counts of a running sync, shared with whoever shows progress.
#[derive(Debug, Default)]
pub struct Counters {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
}

impl Counters {
    pub fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// What a read may use besides the source: the engine (for object stores of file sources),
/// the shared counters and the connector's log tail.
#[derive(Clone)]
pub struct ReadContext {
    pub engine: Arc<Engine>,
    pub counters: Arc<Counters>,
    /// The tail of a connector's stderr, set when the read ends.
    pub log_tail: Arc<std::sync::Mutex<String>>,
}

/// Rows per record batch read from a source.
pub const BATCH_ROWS: usize = 65_536;

#[async_trait]
pub trait Source: Send + Sync {
    /// Connects and reads a little; a human sentence on success.
    async fn check(&self, context: &ReadContext) -> Result<String>;
    /// The streams the source offers.
    async fn discover(&self, context: &ReadContext) -> Result<Vec<DiscoveredStream>>;
    /// Reads the requested streams, one pending read per request, in order. Sources that
    /// read everything at once (Airbyte connectors) finish before returning.
    async fn read(
        &self,
        requests: Vec<StreamRequest>,
        context: &ReadContext,
    ) -> Result<Vec<PendingStream>>;
}

/// Builds the source of a connection whose credentials are resolved.
pub fn open_source(spec: &ConnectionSpec) -> Result<Box<dyn Source>> {
    Ok(match spec.source {
        SourceType::Postgres => Box::new(postgres::PostgresSource::new(&spec.config)?),
        SourceType::Mysql => Box::new(mysql::MySqlSource::new(&spec.config)?),
        SourceType::Files => Box::new(files::FilesSource::new(&spec.config)?),
        SourceType::Http => Box::new(http::HttpSource::new(&spec.config)?),
        SourceType::Airbyte => Box::new(airbyte::AirbyteSource::new(&spec.config)?),
    })
}

/// The credential fields an Airbyte connector's spec marks `airbyte_secret`, as JSON pointers
/// into its config (asks the connector).
pub async fn airbyte_secret_fields(config: &Value) -> Result<Vec<String>> {
    airbyte::secret_fields(config).await
}

/// Counts the rows and bytes of each batch as it passes.
pub(crate) fn counted(
    stream: BoxStream<'static, Result<RecordBatch>>,
    counters: Arc<Counters>,
) -> BoxStream<'static, Result<RecordBatch>> {
    use futures::StreamExt;
    stream
        .inspect(move |batch| {
            if let Ok(batch) = batch {
                counters.add(
                    batch.num_rows() as u64,
                    batch.get_array_memory_size() as u64,
                );
            }
        })
        .boxed()
}

/// `[low, high]` of an integer key cut into at most `parts` ranges of equal width, each as
/// `(start, end, end_inclusive)`: every key falls in exactly one, the last one ends at `high`.
pub(crate) fn split_key_range(low: i64, high: i64, parts: usize) -> Vec<(i64, i64, bool)> {
    let parts = parts.max(1) as i128;
    let step = ((high as i128 - low as i128 + 1) + parts - 1) / parts;
    let mut ranges = Vec::new();
    let mut start = low as i128;
    while start <= high as i128 {
        let end = start + step;
        if end > high as i128 {
            ranges.push((start as i64, high, true));
        } else {
            ranges.push((start as i64, end as i64, false));
        }
        start = end;
    }
    ranges
}

/// Type names as Polder shows them (SQL-ish, like `DESCRIBE`).
pub(crate) fn type_name(data_type: &arrow::datatypes::DataType) -> String {
    use arrow::datatypes::DataType;
    match data_type {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Binary | DataType::LargeBinary => "bytea".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        other => other.to_string().to_lowercase(),
    }
}

/// Whether a column of this type can order records as a cursor.
pub(crate) fn can_be_cursor(data_type: &arrow::datatypes::DataType) -> bool {
    use arrow::datatypes::DataType;
    matches!(
        data_type,
        DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Date32
            | DataType::Timestamp(_, _)
            | DataType::Decimal128(_, _)
    )
}

#[cfg(test)]
mod tests {
    use super::split_key_range;

    #[test]
    fn key_ranges_cover_every_key_once() {
        assert_eq!(
            split_key_range(1, 10, 3),
            vec![(1, 5, false), (5, 9, false), (9, 10, true)]
        );
        assert_eq!(split_key_range(7, 7, 4), vec![(7, 7, true)]);
        assert_eq!(split_key_range(i64::MIN, i64::MAX, 2).len(), 2);
    }
}
