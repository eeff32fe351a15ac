//! Seeds: CSV files read into Arrow with dbt's type inference (integer, number, date,
//! timestamp, boolean, text; `""` and `null` are NULL), with `column_types` overrides applied
//! as SQL casts when the seed is written.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate, NaiveDateTime};

use crate::error::{Result, TransformError};

/// The type a column's values all parse as, tried in dbt's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inferred {
    Integer,
    Number,
    Date,
    Timestamp,
    Boolean,
    Text,
}

const CANDIDATES: [Inferred; 6] = [
    Inferred::Integer,
    Inferred::Number,
    Inferred::Date,
    Inferred::Timestamp,
    Inferred::Boolean,
    Inferred::Text,
];

fn is_null(value: &str) -> bool {
    value.is_empty() || value.eq_ignore_ascii_case("null")
}

fn parse_integer(value: &str) -> Option<i64> {
    value.parse::<i64>().ok()
}

fn parse_number(value: &str) -> Option<f64> {
    let cleaned: String = value.chars().filter(|c| *c != ',').collect();
    if cleaned.is_empty()
        || cleaned
            .chars()
            .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
    {
        return None;
    }
    cleaned.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn parse_date(value: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()
}

fn parse_timestamp(value: &str) -> Option<NaiveDateTime> {
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
    ] {
        if let Ok(parsed) = NaiveDateTime::parse_from_str(value, format) {
            return Some(parsed);
        }
    }
    DateTime::parse_from_rfc3339(value)
        .ok()
        .map(|t| t.naive_utc())
}

fn parse_boolean(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn fits(kind: Inferred, value: &str) -> bool {
    match kind {
        Inferred::Integer => parse_integer(value).is_some(),
        Inferred::Number => parse_number(value).is_some(),
        Inferred::Date => parse_date(value).is_some(),
        Inferred::Timestamp => parse_timestamp(value).is_some(),
        Inferred::Boolean => parse_boolean(value).is_some(),
        Inferred::Text => true,
    }
}

/// A seed file as one batch. Columns named in `column_types` stay text here; the writer casts
/// them with SQL so that any type the engine knows can be asked for.
pub fn read_seed(path: &Path, column_types: &BTreeMap<String, String>) -> Result<RecordBatch> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_path(path)
        .map_err(|e| seed_error(path, &e.to_string()))?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| seed_error(path, &e.to_string()))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_string())
        .collect();
    if headers.is_empty() || headers.iter().any(String::is_empty) {
        return Err(seed_error(path, "the header row has an empty column name"));
    }
    let mut columns: Vec<Vec<String>> = vec![Vec::new(); headers.len()];
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| seed_error(path, &format!("row {}: {e}", row + 2)))?;
        for (i, value) in record.iter().enumerate() {
            columns[i].push(value.to_string());
        }
    }

    let mut fields = Vec::with_capacity(headers.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(headers.len());
    for (name, values) in headers.iter().zip(&columns) {
        let kind = if column_types.contains_key(name) {
            Inferred::Text
        } else {
            infer(values)
        };
        let (data_type, array) = build(kind, values);
        fields.push(Field::new(name, data_type, true));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| seed_error(path, &e.to_string()))
}

fn infer(values: &[String]) -> Inferred {
    let present: Vec<&str> = values
        .iter()
        .map(String::as_str)
        .filter(|v| !is_null(v))
        .collect();
    if present.is_empty() {
        return Inferred::Text;
    }
    for kind in CANDIDATES {
        if present.iter().all(|v| fits(kind, v)) {
            return kind;
        }
    }
    Inferred::Text
}

fn build(kind: Inferred, values: &[String]) -> (DataType, ArrayRef) {
    match kind {
        Inferred::Integer => {
            let mut builder = Int64Builder::with_capacity(values.len());
            for v in values {
                builder.append_option(if is_null(v) { None } else { parse_integer(v) });
            }
            (DataType::Int64, Arc::new(builder.finish()))
        }
        Inferred::Number => {
            let mut builder = Float64Builder::with_capacity(values.len());
            for v in values {
                builder.append_option(if is_null(v) { None } else { parse_number(v) });
            }
            (DataType::Float64, Arc::new(builder.finish()))
        }
        Inferred::Date => {
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
            let mut builder = Date32Builder::with_capacity(values.len());
            for v in values {
                let days = if is_null(v) {
                    None
                } else {
                    parse_date(v).map(|d| (d - epoch).num_days() as i32)
                };
                builder.append_option(days);
            }
            (DataType::Date32, Arc::new(builder.finish()))
        }
        Inferred::Timestamp => {
            let mut builder = TimestampMicrosecondBuilder::with_capacity(values.len());
            for v in values {
                let micros = if is_null(v) {
                    None
                } else {
                    parse_timestamp(v).map(|t| t.and_utc().timestamp_micros())
                };
                builder.append_option(micros);
            }
            (
                DataType::Timestamp(TimeUnit::Microsecond, None),
                Arc::new(builder.finish()),
            )
        }
        Inferred::Boolean => {
            let mut builder = BooleanBuilder::with_capacity(values.len());
            for v in values {
                builder.append_option(if is_null(v) { None } else { parse_boolean(v) });
            }
            (DataType::Boolean, Arc::new(builder.finish()))
        }
        Inferred::Text => {
            let mut builder = StringBuilder::with_capacity(values.len(), values.len() * 8);
            for v in values {
                if is_null(v) {
                    builder.append_null();
                } else {
                    builder.append_value(v);
                }
            }
            (DataType::Utf8, Arc::new(builder.finish()))
        }
    }
}

fn seed_error(path: &Path, message: &str) -> TransformError {
    TransformError::Seed {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn seed(text: &str, types: &[(&str, &str)]) -> RecordBatch {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        let types = types
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        read_seed(file.path(), &types).expect("seed reads")
    }

    #[test]
    fn infers_types_like_dbt() {
        let batch = seed(
            "id,amount,day,at,flag,name,empty\n1,1.5,2024-01-02,2024-01-02 03:04:05,true,a,\n2,,2024-02-03,2024-02-03 00:00:00,FALSE,null,\n",
            &[],
        );
        let types: Vec<&DataType> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.data_type())
            .collect();
        assert_eq!(
            types,
            vec![
                &DataType::Int64,
                &DataType::Float64,
                &DataType::Date32,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
                &DataType::Boolean,
                &DataType::Utf8,
                &DataType::Utf8,
            ]
        );
        assert_eq!(batch.column(1).null_count(), 1);
        assert_eq!(batch.column(5).null_count(), 1);
    }

    #[test]
    fn column_types_keep_text_for_the_cast() {
        let batch = seed("zip,n\n01234,5\n", &[("zip", "varchar(5)")]);
        assert_eq!(batch.schema_ref().field(0).data_type(), &DataType::Utf8);
        assert_eq!(batch.schema_ref().field(1).data_type(), &DataType::Int64);
    }

    #[test]
    fn a_ragged_row_is_an_error_with_its_row_number() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(b"a,b\n1,2\n3\n").expect("write");
        let error = read_seed(file.path(), &BTreeMap::new()).expect_err("ragged");
        assert!(error.to_string().contains("row 3"), "{error}");
    }
}
