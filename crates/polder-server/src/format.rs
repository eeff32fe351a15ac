//! Encoding result batches as JSON, CSV, Arrow IPC stream or Parquet, one chunk per batch, so
//! that large results stream with bounded memory.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::StreamWriter;
use arrow::json::writer::JsonArray;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Json,
    Csv,
    Arrow,
    Parquet,
}

impl OutputFormat {
    pub fn from_name(name: &str) -> Option<OutputFormat> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Some(OutputFormat::Json),
            "csv" => Some(OutputFormat::Csv),
            "arrow" | "ipc" | "arrow-stream" => Some(OutputFormat::Arrow),
            "parquet" => Some(OutputFormat::Parquet),
            _ => None,
        }
    }

    /// The format an `Accept` header asks for, if it names one of ours.
    pub fn from_accept(accept: &str) -> Option<OutputFormat> {
        for part in accept.split(',') {
            let media = part
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            let format = match media.as_str() {
                "application/json" => OutputFormat::Json,
                "text/csv" => OutputFormat::Csv,
                "application/vnd.apache.arrow.stream" => OutputFormat::Arrow,
                "application/vnd.apache.parquet"
                | "application/x-parquet"
                | "application/parquet" => OutputFormat::Parquet,
                _ => continue,
            };
            return Some(format);
        }
        None
    }

    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Json => "application/json",
            OutputFormat::Csv => "text/csv; charset=utf-8",
            OutputFormat::Arrow => "application/vnd.apache.arrow.stream",
            OutputFormat::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// Turns batches into bytes of one format; `begin`, then `batch` per batch, then `end`.
pub enum Encoder {
    Json { rows: u64, first: bool },
    Csv { first: bool },
    Arrow(StreamWriter<Vec<u8>>),
    Parquet(ArrowWriter<Vec<u8>>),
}

/// A row group is flushed to the client once its buffered data reaches this size.
const PARQUET_FLUSH_BYTES: usize = 32 * 1024 * 1024;

impl Encoder {
    pub fn new(
        format: OutputFormat,
        schema: &SchemaRef,
    ) -> Result<(Encoder, Bytes), arrow::error::ArrowError> {
        match format {
            OutputFormat::Json => {
                let columns: Vec<serde_json::Value> = schema
                    .fields()
                    .iter()
                    .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                    .collect();
                let head = format!(
                    "{{\"columns\":{},\"rows\":[",
                    serde_json::Value::Array(columns)
                );
                Ok((
                    Encoder::Json {
                        rows: 0,
                        first: true,
                    },
                    Bytes::from(head),
                ))
            }
            OutputFormat::Csv => {
                // A header even for an empty result, so clients know the columns.
                let mut buffer = Vec::new();
                let header: Vec<String> = schema
                    .fields()
                    .iter()
                    .map(|f| csv_quote(f.name()))
                    .collect();
                buffer.extend_from_slice(header.join(",").as_bytes());
                buffer.push(b'\n');
                Ok((Encoder::Csv { first: true }, Bytes::from(buffer)))
            }
            OutputFormat::Arrow => {
                let mut writer = StreamWriter::try_new(Vec::new(), schema)?;
                let head = Bytes::from(std::mem::take(writer.get_mut()));
                Ok((Encoder::Arrow(writer), head))
            }
            OutputFormat::Parquet => {
                let properties = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .build();
                let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties))
                    .map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))?;
                Ok((Encoder::Parquet(writer), Bytes::new()))
            }
        }
    }

    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, arrow::error::ArrowError> {
        match self {
            Encoder::Json { rows, first } => {
                if batch.num_rows() == 0 {
                    return Ok(Bytes::new());
                }
                let mut buffer = Vec::new();
                {
                    let mut writer = arrow::json::WriterBuilder::new()
                        .with_explicit_nulls(true)
                        .build::<_, JsonArray>(&mut buffer);
                    writer.write(batch)?;
                    writer.finish()?;
                }
                // The writer wraps rows in `[...]`; the response's array is already open.
                let inner = &buffer[1..buffer.len().saturating_sub(1)];
                let mut out = Vec::with_capacity(inner.len() + 1);
                if !*first {
                    out.push(b',');
                }
                out.extend_from_slice(inner);
                *first = false;
                *rows += batch.num_rows() as u64;
                Ok(Bytes::from(out))
            }
            Encoder::Csv { first } => {
                let mut buffer = Vec::new();
                {
                    let mut writer = arrow::csv::WriterBuilder::new()
                        .with_header(false)
                        .build(&mut buffer);
                    writer.write(batch)?;
                }
                *first = false;
                Ok(Bytes::from(buffer))
            }
            Encoder::Arrow(writer) => {
                writer.write(batch)?;
                Ok(Bytes::from(std::mem::take(writer.get_mut())))
            }
            Encoder::Parquet(writer) => {
                writer
                    .write(batch)
                    .map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))?;
                if writer.in_progress_size() >= PARQUET_FLUSH_BYTES {
                    writer
                        .flush()
                        .map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))?;
                }
                Ok(Bytes::from(std::mem::take(writer.inner_mut())))
            }
        }
    }

    /// Closes the output; `error` is reported inside a JSON body (other formats cannot carry it),
    /// and so is `truncated`: the result was cut at the row cap the client asked for.
    pub fn end(
        &mut self,
        error: Option<(&str, &str)>,
        truncated: bool,
    ) -> Result<Bytes, arrow::error::ArrowError> {
        match self {
            Encoder::Json { rows, .. } => {
                let mut tail = format!("],\"row_count\":{rows}");
                if truncated {
                    tail.push_str(",\"truncated\":true");
                }
                if let Some((code, message)) = error {
                    tail.push_str(&format!(
                        ",\"error\":{}",
                        serde_json::json!({"code": code, "message": message})
                    ));
                }
                tail.push('}');
                Ok(Bytes::from(tail))
            }
            Encoder::Csv { .. } => Ok(Bytes::new()),
            Encoder::Arrow(writer) => {
                writer.finish()?;
                Ok(Bytes::from(std::mem::take(writer.get_mut())))
            }
            Encoder::Parquet(writer) => {
                writer
                    .finish()
                    .map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))?;
                Ok(Bytes::from(std::mem::take(writer.inner_mut())))
            }
        }
    }
}

fn csv_quote(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// Encodes whole batches at once (for the CLI and tests).
pub fn encode_all(
    format: OutputFormat,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let (mut encoder, head) = Encoder::new(format, schema)?;
    let mut out = head.to_vec();
    for batch in batches {
        out.extend_from_slice(&encoder.batch(batch)?);
    }
    out.extend_from_slice(&encoder.end(None, false)?);
    Ok(out)
}

/// Rows as JSON objects keyed by column name (NULLs kept), as the JSON result format writes them.
pub fn json_rows(
    batches: &[RecordBatch],
) -> Result<Vec<serde_json::Value>, arrow::error::ArrowError> {
    let mut buffer = Vec::new();
    {
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, JsonArray>(&mut buffer);
        for batch in batches {
            writer.write(batch)?;
        }
        writer.finish()?;
    }
    if buffer.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buffer).map_err(|e| arrow::error::ArrowError::JsonError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn sample() -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name, quoted", DataType::Utf8, true),
        ]));
        let batches = (0..2)
            .map(|i| {
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from(vec![i * 2, i * 2 + 1])),
                        Arc::new(StringArray::from(vec![Some("a"), None])),
                    ],
                )
                .unwrap()
            })
            .collect();
        (schema, batches)
    }

    #[test]
    fn json_is_one_valid_document() {
        let (schema, batches) = sample();
        let bytes = encode_all(OutputFormat::Json, &schema, &batches).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["row_count"], 4);
        assert_eq!(value["rows"].as_array().unwrap().len(), 4);
        assert_eq!(value["rows"][3]["id"], 3);
        assert!(value["rows"][1]["name, quoted"].is_null());
        assert_eq!(value["columns"][0]["type"], "Int64");
    }

    #[test]
    fn csv_has_one_header() {
        let (schema, batches) = sample();
        let text =
            String::from_utf8(encode_all(OutputFormat::Csv, &schema, &batches).unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "id,\"name, quoted\"");
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[1], "0,a");
    }

    #[test]
    fn arrow_and_parquet_round_trip() {
        let (schema, batches) = sample();
        let ipc = encode_all(OutputFormat::Arrow, &schema, &batches).unwrap();
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None).unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 4);

        let parquet_bytes = encode_all(OutputFormat::Parquet, &schema, &batches).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            Bytes::from(parquet_bytes),
        )
        .unwrap()
        .build()
        .unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 4);
    }

    #[test]
    fn accept_headers_pick_formats() {
        assert_eq!(
            OutputFormat::from_accept("text/csv"),
            Some(OutputFormat::Csv)
        );
        assert_eq!(
            OutputFormat::from_accept("application/vnd.apache.arrow.stream, */*"),
            Some(OutputFormat::Arrow)
        );
        assert_eq!(OutputFormat::from_accept("*/*"), None);
    }
}
