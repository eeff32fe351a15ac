//! The files source: CSV, JSON lines and Parquet from a path, a glob, an `s3://` prefix or
//! an HTTP(S) URL (the same resolution as `polder import`), typed by inference with explicit
//! overrides; malformed rows become rejects; incremental syncs load only files not seen yet.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use object_store::ObjectStoreExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{DiscoveredStream, PendingStream, ReadContext, Source, StreamData, StreamRequest};
use crate::error::{IngestError, Result};
use crate::files::ImportSource;
use crate::records::{CsvOptions, Reject, read_csv, read_json_lines};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Format {
    Csv,
    Json,
    Parquet,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesConfig {
    /// A local path or glob, `s3://bucket/prefix` (or glob), or an `http(s)://` URL.
    path: String,
    /// Told from the file names when absent (`.csv`, `.json`/`.jsonl`/`.ndjson`, `.parquet`).
    #[serde(default)]
    format: Option<Format>,
    #[serde(default)]
    delimiter: Option<String>,
    #[serde(default = "yes")]
    has_header: bool,
    /// Column types that override inference, e.g. `{"zip": "text", "amount": "decimal(12,2)"}`.
    #[serde(default)]
    columns: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

pub(super) struct FilesSource {
    config: FilesConfig,
    overrides: Vec<(String, DataType)>,
}

/// A SQL type name as an Arrow type, for overrides.
fn parse_type(name: &str) -> Result<DataType> {
    let lower = name.trim().to_ascii_lowercase();
    let data_type = match lower.as_str() {
        "text" | "string" | "varchar" => DataType::Utf8,
        "boolean" | "bool" => DataType::Boolean,
        "smallint" | "int2" => DataType::Int16,
        "int" | "integer" | "int4" => DataType::Int32,
        "bigint" | "int8" | "long" => DataType::Int64,
        "real" | "float4" | "float" => DataType::Float32,
        "double" | "float8" | "double precision" => DataType::Float64,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamptz" | "timestamp with time zone" => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        other => {
            let decimal = other
                .strip_prefix("decimal(")
                .or_else(|| other.strip_prefix("numeric("))
                .and_then(|rest| rest.strip_suffix(')'))
                .and_then(|args| {
                    let (p, s) = args.split_once(',').unwrap_or((args, "0"));
                    Some((p.trim().parse::<u8>().ok()?, s.trim().parse::<i8>().ok()?))
                });
            match decimal {
                Some((p, s)) if (1..=38).contains(&p) && s >= 0 && (s as u8) <= p => {
                    DataType::Decimal128(p, s)
                }
                _ => {
                    return Err(IngestError::Config(format!(
                        "unknown column type '{name}': use text, boolean, smallint, integer, bigint, real, double, decimal(p,s), date, timestamp or timestamptz"
                    )));
                }
            }
        }
    };
    Ok(data_type)
}

fn format_of(name: &str) -> Option<Format> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".csv") || lower.ends_with(".tsv") {
        Some(Format::Csv)
    } else if lower.ends_with(".json") || lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
        Some(Format::Json)
    } else if lower.ends_with(".parquet") {
        Some(Format::Parquet)
    } else {
        None
    }
}

impl FilesSource {
    pub fn new(config: &Value) -> Result<Self> {
        let config: FilesConfig = serde_json::from_value(config.clone())
            .map_err(|e| IngestError::Config(format!("files source: {e}")))?;
        let overrides = config
            .columns
            .iter()
            .map(|(column, type_name)| Ok((column.clone(), parse_type(type_name)?)))
            .collect::<Result<Vec<_>>>()?;
        if let Some(delimiter) = &config.delimiter
            && delimiter.len() != 1
        {
            return Err(IngestError::Config(format!(
                "delimiter must be one character, not '{delimiter}'"
            )));
        }
        Ok(FilesSource { config, overrides })
    }

    fn csv_options(&self) -> CsvOptions {
        CsvOptions {
            delimiter: self
                .config
                .delimiter
                .as_ref()
                .map(|d| d.as_bytes()[0])
                .unwrap_or(b','),
            has_header: self.config.has_header,
            overrides: self.overrides.clone(),
        }
    }

    fn format(&self, file: &str) -> Result<Format> {
        self.config
            .format
            .or_else(|| format_of(file))
            .ok_or_else(|| IngestError::UnknownFormat(file.to_string()))
    }

    /// Reads one file into batches (and rejects), in the schema of earlier files when given.
    fn parse(
        &self,
        name: &str,
        bytes: bytes::Bytes,
        schema: Option<SchemaRef>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>, Vec<Reject>)> {
        match self.format(name)? {
            Format::Csv => read_csv(&bytes, name, &self.csv_options(), schema, super::BATCH_ROWS),
            Format::Json => {
                read_json_lines(&bytes, name, &self.overrides, schema, super::BATCH_ROWS)
            }
            Format::Parquet => {
                use arrow::array::RecordBatchReader;
                use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .and_then(|b| b.with_batch_size(super::BATCH_ROWS).build())
                    .map_err(|e| {
                        IngestError::Data(format!("{name}: not a readable Parquet file ({e})"))
                    })?;
                let file_schema = reader.schema();
                let batches = reader
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| IngestError::Data(format!("{name}: {e}")))?;
                Ok((file_schema, batches, Vec::new()))
            }
        }
    }
}

#[async_trait]
impl Source for FilesSource {
    async fn check(&self, context: &ReadContext) -> Result<String> {
        let (files, schema) = self.probe(context).await?;
        Ok(format!(
            "{files} file(s) match {}; the first has {} columns",
            self.config.path,
            schema.fields().len()
        ))
    }

    async fn discover(&self, context: &ReadContext) -> Result<Vec<DiscoveredStream>> {
        let (_, schema) = self.probe(context).await?;
        Ok(vec![DiscoveredStream::from_schema(
            "records".to_string(),
            &schema,
            Vec::new(),
            None,
        )])
    }

    async fn read(
        &self,
        requests: Vec<StreamRequest>,
        context: &ReadContext,
    ) -> Result<Vec<PendingStream>> {
        if requests.len() > 1 {
            return Err(IngestError::Config(
                "a files connection has one stream; make one connection per set of files"
                    .to_string(),
            ));
        }
        let mut pending = Vec::new();
        for request in requests {
            let data = self.read_stream(request, context).await;
            pending.push(Box::pin(async move { data }) as PendingStream);
        }
        Ok(pending)
    }
}

impl FilesSource {
    /// Lists the files and reads the first one: enough to check and discover.
    async fn probe(&self, context: &ReadContext) -> Result<(usize, SchemaRef)> {
        let source = ImportSource::resolve(&context.engine, &self.config.path).await?;
        let Some(first) = source.files.first() else {
            return Err(IngestError::NoFiles(self.config.path.clone()));
        };
        let url = source.url_of(first);
        let bytes = fetch(&source, first).await?;
        let (schema, _, _) = self.parse(&url, bytes, None)?;
        Ok((source.files.len(), schema))
    }

    async fn read_stream(
        &self,
        request: StreamRequest,
        context: &ReadContext,
    ) -> Result<StreamData> {
        let source = ImportSource::resolve(&context.engine, &self.config.path).await?;
        if source.files.is_empty() {
            return Err(IngestError::NoFiles(self.config.path.clone()));
        }
        let mut seen: BTreeMap<String, Value> = request
            .state
            .as_ref()
            .and_then(|s| s.get("files"))
            .and_then(Value::as_object)
            .map(|m| m.clone().into_iter().collect())
            .unwrap_or_default();
        let incremental = request.spec.sync_mode.is_incremental();
        let mut schema: Option<SchemaRef> = None;
        let mut batches = Vec::new();
        let mut rejects = Vec::new();
        let mut loaded = 0;
        for file in &source.files {
            let url = source.url_of(file);
            if incremental && seen.contains_key(&url) {
                continue;
            }
            let bytes = fetch(&source, file).await?;
            context.counters.add(0, bytes.len() as u64);
            let (file_schema, file_batches, file_rejects) =
                self.parse(&url, bytes, schema.clone())?;
            let rows: usize = file_batches.iter().map(RecordBatch::num_rows).sum();
            context.counters.add(rows as u64, 0);
            if schema.is_none() {
                schema = Some(file_schema.clone());
            }
            if Some(&file_schema) != schema.as_ref() {
                // Parquet files carry their own schema; batches of one table need one.
                return Err(IngestError::Data(format!(
                    "{url} has other columns than the first file of this sync; load it with its own connection"
                )));
            }
            batches.extend(file_batches);
            rejects.extend(file_rejects);
            seen.insert(url, json!(file.size));
            loaded += 1;
        }
        let state = Some(json!({ "files": seen }));
        let Some(schema) = schema else {
            // Every file was loaded before.
            return Ok(StreamData {
                nothing_new: true,
                ..StreamData::buffered(
                    Arc::new(arrow::datatypes::Schema::empty()),
                    Vec::new(),
                    request.state,
                )
            });
        };
        tracing::debug!(files = loaded, "files read for a sync");
        let mut data = StreamData::buffered(schema, batches, state);
        data.rejects = rejects;
        Ok(data)
    }
}

/// The whole content of one file of a source.
async fn fetch(source: &ImportSource, file: &object_store::ObjectMeta) -> Result<bytes::Bytes> {
    let read = match source.store.get(&file.location).await {
        Ok(result) => result.bytes().await,
        Err(err) => Err(err),
    };
    read.map_err(|e| IngestError::Source {
        source_name: source.url_of(file),
        message: e.to_string(),
    })
}
