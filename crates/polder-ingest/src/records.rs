//! Loosely typed records (JSON values, CSV rows) into Arrow record batches, keeping the records
//! that do not fit as rejects (position, reason, raw text) instead of failing the whole load.
//!
//! Schemas come from an Airbyte stream's JSON schema ([`schema_from_json_schema`]) or are
//! inferred from sample records ([`infer_schema`], and the first 1000 records of a file in
//! [`read_csv`] / [`read_json_lines`]). Without serde_json's `preserve_order` feature (not
//! enabled in this workspace) JSON objects iterate their keys sorted, so fields taken from one
//! object come out in alphabetical order.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array,
    LargeStringArray, StringArray,
};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use chrono::{Datelike, NaiveDate, NaiveTime, TimeDelta};
use serde_json::{Map, Value};

use crate::error::{IngestError, Result};

/// Raw text kept with a reject is cut to this many bytes.
const MAX_RAW_BYTES: usize = 64 * 1024;
/// A value quoted in a reject reason is cut to this many bytes.
const MAX_VALUE_IN_REASON: usize = 120;
/// Records sampled to infer a file's schema.
const INFERENCE_SAMPLE: usize = 1000;

/// A record that did not load: where it came from, why, and its raw text (cut to 64 KiB).
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    /// Where the record is, e.g. `orders.csv:line 12` or `users stream, record 5`.
    pub position: String,
    /// Why it did not load, e.g. `column "amount": expected a number, got "abc"`.
    pub reason: String,
    /// The record as read (compact JSON for JSON records, the line(s) for CSV).
    pub raw: String,
}

// ---------------------------------------------------------------------------------------------
// Schemas

/// Arrow schema from an Airbyte stream's JSON schema (`{"properties": {...}}`).
///
/// All fields are nullable. Objects, arrays, unions and properties without a type become Utf8
/// columns holding JSON text. Fields come out sorted by name (serde_json keeps no key order here).
pub fn schema_from_json_schema(json_schema: &Value) -> Result<Schema> {
    let Some(properties) = json_schema.get("properties").and_then(Value::as_object) else {
        return Err(IngestError::Data(
            "the stream's JSON schema has no \"properties\" object".to_string(),
        ));
    };
    let fields: Vec<Field> = properties
        .iter()
        .map(|(name, property)| Field::new(name, json_schema_type(property), true))
        .collect();
    Ok(Schema::new(fields))
}

/// Arrow type of one JSON schema property.
fn json_schema_type(property: &Value) -> DataType {
    let utc_timestamp = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let naive_timestamp = DataType::Timestamp(TimeUnit::Microsecond, None);
    // Airbyte protocol v1 describes types with references to its well-known types.
    if let Some(reference) = property.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        return match name {
            "Integer" => DataType::Int64,
            "Number" => DataType::Float64,
            "Boolean" => DataType::Boolean,
            "Date" => DataType::Date32,
            "TimestampWithTimezone" => utc_timestamp,
            "TimestampWithoutTimezone" => naive_timestamp,
            _ => DataType::Utf8,
        };
    }
    let non_null: Vec<&str> = match property.get("type") {
        Some(Value::String(single)) => vec![single.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let non_null: Vec<&str> = non_null.into_iter().filter(|t| *t != "null").collect();
    let airbyte_type = property.get("airbyte_type").and_then(Value::as_str);
    match non_null.as_slice() {
        ["integer"] => DataType::Int64,
        ["number"] if airbyte_type == Some("integer") => DataType::Int64,
        ["number"] => DataType::Float64,
        // Integers mixed with numbers widen as in inference.
        ["integer", "number"] | ["number", "integer"] => DataType::Float64,
        ["boolean"] => DataType::Boolean,
        ["string"] => match property.get("format").and_then(Value::as_str) {
            Some("date-time") if airbyte_type == Some("timestamp_without_timezone") => {
                naive_timestamp
            }
            Some("date-time") => utc_timestamp,
            Some("date") => DataType::Date32,
            _ => DataType::Utf8,
        },
        _ => DataType::Utf8,
    }
}

/// The kind of values a column has shown so far while inferring a schema.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Inferred {
    Null,
    Integer,
    Float,
    Boolean,
    Date,
    NaiveTimestamp,
    UtcTimestamp,
    Text,
}

impl Inferred {
    /// The kind that holds values of both kinds.
    fn merge(self, other: Inferred) -> Inferred {
        use Inferred::*;
        match (self, other) {
            (Null, kind) | (kind, Null) => kind,
            (a, b) if a == b => a,
            (Integer, Float) | (Float, Integer) => Float,
            (Date, NaiveTimestamp) | (NaiveTimestamp, Date) => NaiveTimestamp,
            (Date | NaiveTimestamp, UtcTimestamp) | (UtcTimestamp, Date | NaiveTimestamp) => {
                UtcTimestamp
            }
            _ => Text,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Inferred::Integer => DataType::Int64,
            Inferred::Float => DataType::Float64,
            Inferred::Boolean => DataType::Boolean,
            Inferred::Date => DataType::Date32,
            Inferred::NaiveTimestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Inferred::UtcTimestamp => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            Inferred::Null | Inferred::Text => DataType::Utf8,
        }
    }

    fn of_json(value: &Value) -> Inferred {
        match value {
            Value::Null => Inferred::Null,
            Value::Bool(_) => Inferred::Boolean,
            Value::Number(number) if number.is_i64() => Inferred::Integer,
            // Beyond i64: text keeps every digit, a float would not.
            Value::Number(number) if number.is_u64() => Inferred::Text,
            Value::Number(_) => Inferred::Float,
            Value::String(text) => Inferred::of_temporal(text).unwrap_or(Inferred::Text),
            Value::Object(_) | Value::Array(_) => Inferred::Text,
        }
    }

    /// Kind of a CSV field; the empty string is null.
    fn of_csv(text: &str) -> Inferred {
        let trimmed = text.trim();
        if text.is_empty() {
            return Inferred::Null;
        }
        let unsigned = trimmed.strip_prefix(['-', '+']).unwrap_or(trimmed);
        let starts_numeric = unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.');
        if starts_numeric && trimmed.parse::<i64>().is_ok() {
            // Leading zeros mark codes (zip codes, ids) whose zeros matter.
            let leading_zero = unsigned.len() > 1 && unsigned.starts_with('0');
            return if leading_zero {
                Inferred::Text
            } else {
                Inferred::Integer
            };
        }
        // Digits only but beyond i64 stay text rather than lose digits in a float.
        if starts_numeric && unsigned.contains(['.', 'e', 'E']) && trimmed.parse::<f64>().is_ok() {
            return Inferred::Float;
        }
        if trimmed.eq_ignore_ascii_case("true") || trimmed.eq_ignore_ascii_case("false") {
            return Inferred::Boolean;
        }
        Inferred::of_temporal(trimmed).unwrap_or(Inferred::Text)
    }

    fn of_temporal(text: &str) -> Option<Inferred> {
        let parsed = parse_temporal(text)?;
        Some(match (parsed.time, parsed.offset_seconds) {
            (None, _) => Inferred::Date,
            (Some(_), None) => Inferred::NaiveTimestamp,
            (Some(_), Some(_)) => Inferred::UtcTimestamp,
        })
    }
}

/// Schema inferred from sample records (JSON objects; other values are skipped), fields in order
/// of first appearance. See the module documentation for the key order within one object.
pub fn infer_schema(records: &[Value]) -> Schema {
    infer_from_values(records.iter())
}

fn infer_from_values<'a>(records: impl Iterator<Item = &'a Value>) -> Schema {
    let mut columns: Vec<(String, Inferred)> = Vec::new();
    let mut index_of: HashMap<String, usize> = HashMap::new();
    for record in records {
        let Value::Object(object) = record else {
            continue;
        };
        for (name, value) in object {
            let kind = Inferred::of_json(value);
            match index_of.get(name.as_str()) {
                Some(&index) => columns[index].1 = columns[index].1.merge(kind),
                None => {
                    index_of.insert(name.clone(), columns.len());
                    columns.push((name.clone(), kind));
                }
            }
        }
    }
    let fields: Vec<Field> = columns
        .into_iter()
        .map(|(name, kind)| Field::new(name, kind.data_type(), true))
        .collect();
    Schema::new(fields)
}

/// Replaces the types of named fields of an inferred schema.
fn apply_overrides(
    schema: Schema,
    overrides: &[(String, DataType)],
    source_name: &str,
) -> Result<Schema> {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for (name, data_type) in overrides {
        let Some(field) = fields.iter_mut().find(|f| f.name() == name) else {
            return Err(IngestError::Config(format!(
                "type override for column \"{name}\": {source_name} has no such column"
            )));
        };
        *field = field.clone().with_data_type(data_type.clone());
    }
    Ok(Schema::new(fields))
}

// ---------------------------------------------------------------------------------------------
// Parsing values

/// A date with an optional time of day and UTC offset, as read from ISO 8601 text.
struct Temporal {
    date: NaiveDate,
    time: Option<NaiveTime>,
    offset_seconds: Option<i32>,
}

/// Parses `YYYY-MM-DD`, optionally followed by `T` or a space, `HH:MM[:SS[.fraction]]` and an
/// offset (`Z`, `UTC`, `+HH`, `+HHMM`, `+HH:MM`). Hand-written because inference tries it on
/// every string value.
fn parse_temporal(text: &str) -> Option<Temporal> {
    let bytes = text.as_bytes();
    let digits = |range: Range<usize>| -> Option<u32> {
        let part = bytes.get(range)?;
        let mut number = 0u32;
        for byte in part {
            if !byte.is_ascii_digit() {
                return None;
            }
            number = number * 10 + u32::from(byte - b'0');
        }
        Some(number)
    };
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year = i32::try_from(digits(0..4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, digits(5..7)?, digits(8..10)?)?;
    if bytes.len() == 10 {
        return Some(Temporal {
            date,
            time: None,
            offset_seconds: None,
        });
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') || bytes.get(13) != Some(&b':') {
        return None;
    }
    let (hour, minute) = (digits(11..13)?, digits(14..16)?);
    let mut at = 16;
    let mut second = 0;
    if bytes.get(at) == Some(&b':') {
        second = digits(at + 1..at + 3)?;
        at += 3;
    }
    let mut nanos = 0u32;
    if matches!(bytes.get(at), Some(b'.' | b',')) {
        at += 1;
        let start = at;
        while bytes.get(at).is_some_and(u8::is_ascii_digit) {
            // Digits beyond nanoseconds are dropped.
            if at - start < 9 {
                nanos = nanos * 10 + u32::from(bytes[at] - b'0');
            }
            at += 1;
        }
        if at == start {
            return None;
        }
        nanos *= 10u32.pow(9u32.saturating_sub((at - start) as u32));
    }
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    let rest = text[at..].strip_prefix(' ').unwrap_or(&text[at..]);
    let two_digits = |high: u8, low: u8| -> Option<i32> {
        let both = high.is_ascii_digit() && low.is_ascii_digit();
        both.then(|| i32::from(high - b'0') * 10 + i32::from(low - b'0'))
    };
    let offset_seconds = match rest.as_bytes() {
        [] => None,
        b"Z" | b"z" | b"UTC" => Some(0),
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let (hours, minutes) = match tail {
                [h1, h2] => (two_digits(*h1, *h2)?, 0),
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => {
                    (two_digits(*h1, *h2)?, two_digits(*m1, *m2)?)
                }
                _ => return None,
            };
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = hours * 3600 + minutes * 60;
            Some(if *sign == b'-' { -seconds } else { seconds })
        }
        _ => return None,
    };
    Some(Temporal {
        date,
        time: Some(time),
        offset_seconds,
    })
}

/// A timestamp in `unit` since the epoch; offsets are converted to UTC.
fn timestamp_value(temporal: &Temporal, unit: TimeUnit) -> Option<i64> {
    let local = temporal
        .date
        .and_time(temporal.time.unwrap_or(NaiveTime::MIN));
    let offset = TimeDelta::seconds(i64::from(temporal.offset_seconds.unwrap_or(0)));
    let utc = local.checked_sub_signed(offset)?.and_utc();
    match unit {
        TimeUnit::Second => Some(utc.timestamp()),
        TimeUnit::Millisecond => Some(utc.timestamp_millis()),
        TimeUnit::Microsecond => Some(utc.timestamp_micros()),
        TimeUnit::Nanosecond => utc.timestamp_nanos_opt(),
    }
}

/// Days from 0001-01-01 to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// A decimal number (`-12.50`, `1e3`) as an integer scaled by `10^scale`, rounded half away
/// from zero; None when it is not a number or needs more than `precision` digits.
fn parse_decimal(text: &str, precision: u8, scale: i8) -> Option<i128> {
    let text = text.trim();
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (significand, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = significand.split_once('.').unwrap_or((significand, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let mut mantissa: i128 = 0;
    for byte in whole.bytes().chain(fraction.bytes()) {
        if !byte.is_ascii_digit() {
            return None;
        }
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(i128::from(byte - b'0'))?;
    }
    let shift = exponent
        .checked_add(i32::from(scale))?
        .checked_sub(i32::try_from(fraction.len()).ok()?)?;
    let scaled = if shift >= 0 {
        mantissa.checked_mul(10i128.checked_pow(u32::try_from(shift).ok()?)?)?
    } else if -shift > 38 {
        0
    } else {
        let divisor = 10i128.pow(shift.unsigned_abs());
        let (quotient, remainder) = (mantissa / divisor, mantissa % divisor);
        if remainder >= divisor - remainder {
            quotient + 1
        } else {
            quotient
        }
    };
    if scaled >= 10i128.checked_pow(u32::from(precision))? {
        return None;
    }
    Some(if negative { -scaled } else { scaled })
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        t if t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("t") || t == "1" => {
            Some(true)
        }
        f if f.eq_ignore_ascii_case("false") || f.eq_ignore_ascii_case("f") || f == "0" => {
            Some(false)
        }
        _ => None,
    }
}

/// Cuts `text` to at most `max_bytes` on a character boundary.
fn truncate_text(mut text: String, max_bytes: usize) -> String {
    if text.len() > max_bytes {
        let mut cut = max_bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Columns

/// One value on its way into a column.
#[derive(Clone, Copy)]
enum Cell<'a> {
    Null,
    Json(&'a Value),
    /// A CSV field (already known to be non-empty).
    Text(&'a str),
}

impl Cell<'_> {
    /// The value as quoted in a reject reason: JSON, cut short.
    fn describe(self) -> String {
        let mut text = match self {
            Cell::Null => "null".to_string(),
            Cell::Json(value) => value.to_string(),
            Cell::Text(text) => Value::from(text).to_string(),
        };
        if text.len() > MAX_VALUE_IN_REASON {
            text = truncate_text(text, MAX_VALUE_IN_REASON);
            text.push('…');
        }
        text
    }
}

/// Values of one column of the batch being built, in plain vectors so that a record that fails
/// half-way can be taken back (truncated) without touching Arrow builders.
enum ColumnValues {
    /// All integer widths (range-checked on the way in, cast at the end).
    Integer {
        min: i64,
        max: i64,
        values: Vec<i64>,
    },
    Float(Vec<f64>),
    Boolean(Vec<bool>),
    Text {
        offsets: Vec<i64>,
        data: String,
    },
    Timestamp {
        unit: TimeUnit,
        values: Vec<i64>,
    },
    Date(Vec<i32>),
    Decimal {
        precision: u8,
        scale: i8,
        values: Vec<i128>,
    },
}

struct Column {
    name: String,
    data_type: DataType,
    nullable: bool,
    validity: Vec<bool>,
    values: ColumnValues,
}

impl Column {
    fn new(field: &Field) -> Result<Column> {
        let integer = |min: i64, max: i64| ColumnValues::Integer {
            min,
            max,
            values: Vec::new(),
        };
        let values = match field.data_type() {
            DataType::Int8 => integer(i8::MIN.into(), i8::MAX.into()),
            DataType::Int16 => integer(i16::MIN.into(), i16::MAX.into()),
            DataType::Int32 => integer(i32::MIN.into(), i32::MAX.into()),
            DataType::Int64 => integer(i64::MIN, i64::MAX),
            DataType::UInt8 => integer(0, u8::MAX.into()),
            DataType::UInt16 => integer(0, u16::MAX.into()),
            DataType::UInt32 => integer(0, u32::MAX.into()),
            DataType::UInt64 => integer(0, i64::MAX),
            DataType::Float32 | DataType::Float64 => ColumnValues::Float(Vec::new()),
            DataType::Boolean => ColumnValues::Boolean(Vec::new()),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnValues::Text {
                offsets: vec![0],
                data: String::new(),
            },
            DataType::Timestamp(unit, _) => ColumnValues::Timestamp {
                unit: *unit,
                values: Vec::new(),
            },
            DataType::Date32 => ColumnValues::Date(Vec::new()),
            DataType::Decimal128(precision, scale) => ColumnValues::Decimal {
                precision: *precision,
                scale: *scale,
                values: Vec::new(),
            },
            other => {
                return Err(IngestError::Data(format!(
                    "column \"{}\": loading records into {other} columns is not supported",
                    field.name()
                )));
            }
        };
        Ok(Column {
            name: field.name().clone(),
            data_type: field.data_type().clone(),
            nullable: field.is_nullable(),
            validity: Vec::new(),
            values,
        })
    }

    /// Appends one value, or says why it does not fit (the column is then unchanged).
    fn append(&mut self, cell: Cell) -> std::result::Result<(), String> {
        let cell = match cell {
            Cell::Json(Value::Null) => Cell::Null,
            // Outside text columns a JSON string is read like a CSV field; blank means null.
            Cell::Json(Value::String(text))
                if !matches!(self.values, ColumnValues::Text { .. }) =>
            {
                if text.trim().is_empty() {
                    Cell::Null
                } else {
                    Cell::Text(text)
                }
            }
            other => other,
        };
        if let Cell::Null = cell {
            if !self.nullable {
                return Err("missing value in a column that does not allow nulls".to_string());
            }
            self.push_default();
            self.validity.push(false);
            return Ok(());
        }
        let expected = |what: &str| format!("expected {what}, got {}", cell.describe());
        match &mut self.values {
            ColumnValues::Integer { min, max, values } => {
                let number = match cell {
                    Cell::Json(Value::Number(number)) => number.as_i64().or_else(|| {
                        let float = number.as_f64()?;
                        let whole = float.fract() == 0.0 && float.abs() < 9.2e18;
                        whole.then_some(float as i64)
                    }),
                    Cell::Text(text) => text.trim().parse::<i64>().ok(),
                    _ => None,
                };
                match number {
                    Some(n) if (*min..=*max).contains(&n) => values.push(n),
                    _ if *min == i64::MIN && *max == i64::MAX => {
                        return Err(expected("an integer"));
                    }
                    _ => return Err(expected(&format!("an integer from {min} to {max}"))),
                }
            }
            ColumnValues::Float(values) => {
                let number = match cell {
                    Cell::Json(Value::Number(number)) => number.as_f64(),
                    Cell::Text(text) => text.trim().parse::<f64>().ok(),
                    _ => None,
                };
                values.push(number.ok_or_else(|| expected("a number"))?);
            }
            ColumnValues::Boolean(values) => {
                let flag = match cell {
                    Cell::Json(Value::Bool(flag)) => Some(*flag),
                    Cell::Text(text) => parse_bool(text),
                    _ => None,
                };
                values.push(flag.ok_or_else(|| expected("true or false"))?);
            }
            ColumnValues::Text { offsets, data } => {
                // Writing into the shared buffer avoids a String per value.
                match cell {
                    Cell::Text(text) => data.push_str(text),
                    Cell::Json(Value::String(text)) => data.push_str(text),
                    Cell::Json(Value::Bool(flag)) => {
                        data.push_str(if *flag { "true" } else { "false" })
                    }
                    Cell::Json(other) => {
                        let _ = write!(data, "{other}");
                    }
                    Cell::Null => {}
                }
                offsets.push(data.len() as i64);
            }
            ColumnValues::Timestamp { unit, values } => {
                let timestamp = match cell {
                    Cell::Text(text) => {
                        parse_temporal(text.trim()).map(|t| timestamp_value(&t, *unit))
                    }
                    _ => None,
                };
                match timestamp {
                    Some(Some(value)) => values.push(value),
                    Some(None) => return Err(format!("{} is out of range", cell.describe())),
                    None => return Err(expected("a timestamp such as 2024-01-31T12:00:00Z")),
                }
            }
            ColumnValues::Date(values) => {
                let day = match cell {
                    Cell::Text(text) => parse_temporal(text.trim())
                        .filter(|t| t.time.is_none())
                        .map(|t| t.date.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE),
                    _ => None,
                };
                values.push(day.ok_or_else(|| expected("a date such as 2024-01-31"))?);
            }
            ColumnValues::Decimal {
                precision,
                scale,
                values,
            } => {
                let decimal = match cell {
                    Cell::Json(Value::Number(number)) => {
                        parse_decimal(&number.to_string(), *precision, *scale)
                    }
                    Cell::Text(text) => parse_decimal(text, *precision, *scale),
                    _ => None,
                };
                let what = format!("a decimal number that fits Decimal128({precision}, {scale})");
                values.push(decimal.ok_or_else(|| expected(&what))?);
            }
        }
        self.validity.push(true);
        Ok(())
    }

    fn push_default(&mut self) {
        match &mut self.values {
            ColumnValues::Integer { values, .. } | ColumnValues::Timestamp { values, .. } => {
                values.push(0)
            }
            ColumnValues::Float(values) => values.push(0.0),
            ColumnValues::Boolean(values) => values.push(false),
            ColumnValues::Text { offsets, data } => offsets.push(data.len() as i64),
            ColumnValues::Date(values) => values.push(0),
            ColumnValues::Decimal { values, .. } => values.push(0),
        }
    }

    /// Takes back values beyond the first `rows`.
    fn truncate(&mut self, rows: usize) {
        self.validity.truncate(rows);
        match &mut self.values {
            ColumnValues::Integer { values, .. } | ColumnValues::Timestamp { values, .. } => {
                values.truncate(rows)
            }
            ColumnValues::Float(values) => values.truncate(rows),
            ColumnValues::Boolean(values) => values.truncate(rows),
            ColumnValues::Text { offsets, data } => {
                offsets.truncate(rows + 1);
                data.truncate(offsets[rows] as usize);
            }
            ColumnValues::Date(values) => values.truncate(rows),
            ColumnValues::Decimal { values, .. } => values.truncate(rows),
        }
    }

    /// The buffered values as an Arrow array of the column's type; the column starts empty.
    fn take_array(&mut self, capacity: usize) -> Result<ArrayRef> {
        let validity = std::mem::replace(&mut self.validity, Vec::with_capacity(capacity));
        let nulls = if validity.iter().all(|valid| *valid) {
            None
        } else {
            Some(NullBuffer::from(validity))
        };
        let arrow_error = |e: arrow::error::ArrowError| {
            IngestError::Data(format!("column \"{}\": {e}", self.name))
        };
        let array: ArrayRef = match &mut self.values {
            ColumnValues::Integer { values, .. } | ColumnValues::Timestamp { values, .. } => {
                let values = std::mem::replace(values, Vec::with_capacity(capacity));
                Arc::new(Int64Array::new(ScalarBuffer::from(values), nulls))
            }
            ColumnValues::Float(values) => {
                let values = std::mem::replace(values, Vec::with_capacity(capacity));
                Arc::new(Float64Array::new(ScalarBuffer::from(values), nulls))
            }
            ColumnValues::Boolean(values) => {
                let values = std::mem::replace(values, Vec::with_capacity(capacity));
                Arc::new(BooleanArray::new(BooleanBuffer::from(values), nulls))
            }
            ColumnValues::Date(values) => {
                let values = std::mem::replace(values, Vec::with_capacity(capacity));
                Arc::new(Date32Array::new(ScalarBuffer::from(values), nulls))
            }
            ColumnValues::Decimal {
                precision,
                scale,
                values,
            } => {
                let values = std::mem::replace(values, Vec::with_capacity(capacity));
                let array = Decimal128Array::new(ScalarBuffer::from(values), nulls)
                    .with_precision_and_scale(*precision, *scale)
                    .map_err(arrow_error)?;
                Arc::new(array)
            }
            ColumnValues::Text { offsets, data } => {
                let offsets = std::mem::replace(offsets, vec![0]);
                let data = Buffer::from_vec(std::mem::take(data).into_bytes());
                if self.data_type == DataType::LargeUtf8 {
                    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                    Arc::new(LargeStringArray::try_new(offsets, data, nulls).map_err(arrow_error)?)
                } else {
                    let narrow: Option<Vec<i32>> =
                        offsets.iter().map(|o| i32::try_from(*o).ok()).collect();
                    let Some(narrow) = narrow else {
                        return Err(IngestError::Data(format!(
                            "column \"{}\": more than 2 GiB of text in one batch; use smaller batches",
                            self.name
                        )));
                    };
                    let offsets = OffsetBuffer::new(ScalarBuffer::from(narrow));
                    Arc::new(StringArray::try_new(offsets, data, nulls).map_err(arrow_error)?)
                }
            }
        };
        if array.data_type() == &self.data_type {
            return Ok(array);
        }
        // Narrower integers, Float32, timestamps and Utf8View: values already fit, the cast
        // only changes the representation.
        cast(&array, &self.data_type).map_err(arrow_error)
    }
}

// ---------------------------------------------------------------------------------------------
// The batcher

/// Builds record batches of a fixed schema from records, row by row; records that do not fit
/// become [`Reject`]s.
pub struct RecordBatcher {
    schema: SchemaRef,
    batch_rows: usize,
    columns: Vec<Column>,
    rows: usize,
    rejects: Vec<Reject>,
    field_names: HashSet<String>,
    extra_fields: Vec<String>,
}

impl RecordBatcher {
    /// A batcher for `schema`, cutting batches of `batch_rows` rows (at least 1).
    ///
    /// Fails when a column's type cannot be loaded from records: supported are integers
    /// (UInt64 up to i64::MAX), Float32/64, Boolean, Utf8/LargeUtf8/Utf8View, timestamps,
    /// Date32 and Decimal128.
    pub fn new(schema: SchemaRef, batch_rows: usize) -> Result<Self> {
        let columns = schema
            .fields()
            .iter()
            .map(|field| Column::new(field))
            .collect::<Result<Vec<_>>>()?;
        let field_names = schema.fields().iter().map(|f| f.name().clone()).collect();
        Ok(RecordBatcher {
            schema,
            batch_rows: batch_rows.max(1),
            columns,
            rows: 0,
            rejects: Vec::new(),
            field_names,
            extra_fields: Vec::new(),
        })
    }

    /// The schema of the batches.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Adds one record (a JSON object; missing fields are null). A record that is not an object
    /// or has a value that does not fit its column is kept as a reject at `position()` and
    /// `false` is returned.
    pub fn push(&mut self, record: &Value, position: impl FnOnce() -> String) -> bool {
        let Value::Object(object) = record else {
            let reason = format!("expected a JSON object, got {}", json_kind(record));
            self.reject(position(), reason, record.to_string());
            return false;
        };
        let mut found = 0;
        let outcome = self.push_row(|_, name| {
            let value = object.get(name);
            found += usize::from(value.is_some());
            Ok(value.map_or(Cell::Null, Cell::Json))
        });
        if let Err(reason) = outcome {
            self.reject(position(), reason, record.to_string());
            return false;
        }
        // Cheap check first: every key was a column.
        if found < object.len() {
            self.note_extra_fields(object);
        }
        true
    }

    /// Rows buffered and not yet taken.
    pub fn buffered_rows(&self) -> usize {
        self.rows
    }

    /// A full batch when `batch_rows` rows are buffered (call after each push), else None.
    pub fn take_full_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.rows >= self.batch_rows {
            self.take_batch().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Whatever is buffered, as a batch (None when nothing is).
    pub fn finish(&mut self) -> Result<Option<RecordBatch>> {
        if self.rows == 0 {
            return Ok(None);
        }
        self.take_batch().map(Some)
    }

    /// The rejects so far (the batcher forgets them).
    pub fn take_rejects(&mut self) -> Vec<Reject> {
        std::mem::take(&mut self.rejects)
    }

    /// Names of fields seen in loaded records that the schema lacks, in order of first
    /// appearance (for schema evolution).
    pub fn extra_fields(&self) -> Vec<String> {
        self.extra_fields.clone()
    }

    /// Appends one row whose cells `cell_of(column index, column name)` gives; on failure
    /// takes back the columns already appended and returns the reason naming the column.
    fn push_row<'a>(
        &mut self,
        mut cell_of: impl FnMut(usize, &str) -> std::result::Result<Cell<'a>, String>,
    ) -> std::result::Result<(), String> {
        for index in 0..self.columns.len() {
            let column = &mut self.columns[index];
            let appended = cell_of(index, &column.name).and_then(|cell| column.append(cell));
            if let Err(reason) = appended {
                let reason = format!("column \"{}\": {reason}", column.name);
                for done in &mut self.columns[..index] {
                    done.truncate(self.rows);
                }
                return Err(reason);
            }
        }
        self.rows += 1;
        Ok(())
    }

    fn reject(&mut self, position: String, reason: String, raw: String) {
        let raw = truncate_text(raw, MAX_RAW_BYTES);
        self.rejects.push(Reject {
            position,
            reason,
            raw,
        });
    }

    fn note_extra_fields(&mut self, object: &Map<String, Value>) {
        for name in object.keys() {
            if !self.field_names.contains(name) && !self.extra_fields.contains(name) {
                self.extra_fields.push(name.clone());
            }
        }
    }

    fn take_batch(&mut self) -> Result<RecordBatch> {
        let rows = std::mem::take(&mut self.rows);
        let capacity = self.batch_rows.min(64 * 1024);
        let mut arrays = Vec::with_capacity(self.columns.len());
        for column in &mut self.columns {
            arrays.push(column.take_array(capacity)?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)
            .map_err(|e| IngestError::Data(format!("cannot build a batch of records: {e}")))
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// JSON lines

/// Reads JSON lines (one object per line; blank lines skipped). Lines that are not valid JSON
/// and records that do not fit are rejects at `<source_name>:line N`. Without `schema`, it is
/// inferred from the first 1000 records, then `overrides` replace the types of named columns.
pub fn read_json_lines(
    bytes: &[u8],
    source_name: &str,
    overrides: &[(String, DataType)],
    schema: Option<SchemaRef>,
    batch_rows: usize,
) -> Result<(SchemaRef, Vec<RecordBatch>, Vec<Reject>)> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut lines = bytes
        .split(|byte| *byte == b'\n')
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim_ascii()))
        .filter(|(_, line)| !line.is_empty());
    let position = |line: usize| format!("{source_name}:line {line}");
    let mut invalid = Vec::new();
    let mut parse = |line: usize, text: &[u8]| -> Option<Value> {
        match serde_json::from_slice::<Value>(text) {
            Ok(value) => Some(value),
            Err(e) => {
                // serde_json reports "... at line 1 column N"; the line is the file's.
                let message = e.to_string();
                let message = message
                    .rsplit_once(" at line ")
                    .map_or(message.as_str(), |m| m.0);
                invalid.push(Reject {
                    position: position(line),
                    reason: format!("invalid JSON at column {}: {message}", e.column()),
                    raw: truncate_text(String::from_utf8_lossy(text).into_owned(), MAX_RAW_BYTES),
                });
                None
            }
        }
    };

    let mut sample: Vec<(usize, Value)> = Vec::new();
    let schema = match schema {
        Some(schema) => schema,
        None => {
            while sample.len() < INFERENCE_SAMPLE {
                let Some((line, text)) = lines.next() else {
                    break;
                };
                if let Some(value) = parse(line, text) {
                    sample.push((line, value));
                }
            }
            let inferred = infer_from_values(sample.iter().map(|(_, value)| value));
            Arc::new(apply_overrides(inferred, overrides, source_name)?)
        }
    };

    let mut batcher = RecordBatcher::new(schema.clone(), batch_rows)?;
    let mut batches = Vec::new();
    for (line, value) in &sample {
        batcher.push(value, || position(*line));
        batches.extend(batcher.take_full_batch()?);
    }
    for (line, text) in lines {
        if let Some(value) = parse(line, text) {
            batcher.push(&value, || position(line));
            batches.extend(batcher.take_full_batch()?);
        }
    }
    batches.extend(batcher.finish()?);
    let mut rejects = invalid;
    rejects.extend(batcher.take_rejects());
    // Invalid lines and records that do not fit were found apart; report them in file order.
    rejects.sort_by_key(|reject| line_of(&reject.position));
    Ok((schema, batches, rejects))
}

fn line_of(position: &str) -> u64 {
    position
        .rsplit_once("line ")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// CSV

/// How to read a CSV file.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// Field separator, e.g. `b','`, `b';'`, `b'\t'`.
    pub delimiter: u8,
    /// Whether the first line names the columns (otherwise `column_1`, `column_2`, ...).
    pub has_header: bool,
    /// Types that replace inferred ones, by column name (ignored when a schema is given).
    pub overrides: Vec<(String, DataType)>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            has_header: true,
            overrides: Vec::new(),
        }
    }
}

/// Reads CSV bytes into batches. Without `schema`, it is inferred from the first 1000 records
/// (empty fields are null), then the options' overrides are applied. With a schema and a header,
/// columns are matched by name (header columns the schema lacks are skipped); without a header,
/// by position. Records with the wrong number of fields, unbalanced quotes, invalid UTF-8 or a
/// value that does not parse in its column's type are rejects at `<source_name>:line N` (the
/// file's line, header counted).
pub fn read_csv(
    bytes: &[u8],
    source_name: &str,
    options: &CsvOptions,
    schema: Option<SchemaRef>,
    batch_rows: usize,
) -> Result<(SchemaRef, Vec<RecordBatch>, Vec<Reject>)> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut row = csv::ByteRecord::new();
    let mut records = CsvRecords::new(bytes, options.delimiter, source_name);
    let header = if options.has_header {
        records.read_header(&mut row)?
    } else {
        None
    };

    let schema = match schema {
        Some(schema) => schema,
        None => {
            let inferred = infer_csv_schema(bytes, options, source_name, header.as_deref())?;
            Arc::new(apply_overrides(inferred, &options.overrides, source_name)?)
        }
    };
    let mut batcher = RecordBatcher::new(schema.clone(), batch_rows)?;
    // For each schema field, the CSV column it is read from.
    let source_column: Vec<Option<usize>> = match &header {
        Some(names) => {
            for name in names {
                if !batcher.field_names.contains(name) {
                    batcher.extra_fields.push(name.clone());
                }
            }
            let fields = schema.fields();
            fields
                .iter()
                .map(|f| names.iter().position(|n| n == f.name()))
                .collect()
        }
        None => {
            records.expected_fields = Some(schema.fields().len());
            (0..schema.fields().len()).map(Some).collect()
        }
    };

    let mut batches = Vec::new();
    while let Some(outcome) = records.next(&mut row)? {
        let record = match outcome {
            Ok(record) => record,
            Err(reject) => {
                batcher.rejects.push(reject);
                continue;
            }
        };
        let pushed = batcher.push_row(|index, _| {
            let Some(field) = source_column[index].and_then(|at| row.get(at)) else {
                return Ok(Cell::Null);
            };
            match std::str::from_utf8(field) {
                Ok("") => Ok(Cell::Null),
                Ok(text) => Ok(Cell::Text(text)),
                Err(_) => Err("the value is not valid UTF-8".to_string()),
            }
        });
        if let Err(reason) = pushed {
            let raw = String::from_utf8_lossy(&bytes[record.raw]).into_owned();
            batcher.reject(records.position(record.line), reason, raw);
            continue;
        }
        batches.extend(batcher.take_full_batch()?);
    }
    batches.extend(batcher.finish()?);
    Ok((schema, batches, batcher.take_rejects()))
}

fn infer_csv_schema(
    bytes: &[u8],
    options: &CsvOptions,
    source_name: &str,
    header: Option<&[String]>,
) -> Result<Schema> {
    let mut row = csv::ByteRecord::new();
    let mut records = CsvRecords::new(bytes, options.delimiter, source_name);
    let mut kinds = Vec::new();
    if let Some(names) = header {
        records.read_header(&mut row)?;
        kinds = vec![Inferred::Null; names.len()];
    }
    let mut sampled = 0;
    'records: while sampled < INFERENCE_SAMPLE {
        let Some(outcome) = records.next(&mut row)? else {
            break;
        };
        if outcome.is_err() {
            continue;
        }
        let mut row_kinds = Vec::with_capacity(row.len());
        for field in &row {
            let Ok(text) = std::str::from_utf8(field) else {
                continue 'records;
            };
            row_kinds.push(Inferred::of_csv(text));
        }
        if kinds.is_empty() {
            kinds = vec![Inferred::Null; row_kinds.len()];
        }
        for (kind, row_kind) in kinds.iter_mut().zip(row_kinds) {
            *kind = kind.merge(row_kind);
        }
        sampled += 1;
    }
    let fields: Vec<Field> = kinds
        .iter()
        .enumerate()
        .map(|(index, kind)| {
            let name = header.map_or_else(|| format!("column_{}", index + 1), |h| h[index].clone());
            Field::new(name, kind.data_type(), true)
        })
        .collect();
    Ok(Schema::new(fields))
}

/// Checks one record's quoting strictly, which the `csv` crate does not: a quoted field must be
/// closed, and its closing quote followed by the delimiter or the end of the record. A quote
/// inside an unquoted field (`5" screen`) is taken literally, as the `csv` crate does.
fn quoting_problem(raw: &[u8], delimiter: u8) -> Option<&'static str> {
    let mut at = 0;
    let mut field_start = true;
    while at < raw.len() {
        if !(field_start && raw[at] == b'"') {
            field_start = raw[at] == delimiter;
            at += 1;
            continue;
        }
        at += 1;
        loop {
            match raw.get(at) {
                None => return Some("unbalanced quotes: a quoted field is not closed"),
                Some(b'"') if raw.get(at + 1) == Some(&b'"') => at += 2,
                Some(b'"') => break,
                Some(_) => at += 1,
            }
        }
        at += 1;
        match raw.get(at) {
            None => return None,
            Some(byte) if *byte == delimiter => at += 1,
            Some(_) => return Some("bad quoting: text follows the closing quote of a field"),
        }
    }
    None
}

/// Where one CSV record sits in the file.
struct CsvRecord {
    /// 1-based line of the file where the record starts.
    line: u64,
    /// Its bytes in the file, without the line terminator.
    raw: Range<usize>,
}

/// CSV records of a file, one at a time, each checked on its own: the `csv` crate parses
/// (flexibly, so that a bad record is not an error of the reader), this checks the field count
/// and the quotes, and restarts the reader after a record that an unclosed quote ran on with.
struct CsvRecords<'a> {
    bytes: &'a [u8],
    delimiter: u8,
    source_name: &'a str,
    /// Byte offset in `bytes` where the current reader started, and that byte's line.
    segment_start: usize,
    segment_line: u64,
    reader: csv::Reader<&'a [u8]>,
    /// Fields every record must have (the header's, the schema's or the first record's).
    expected_fields: Option<usize>,
}

impl<'a> CsvRecords<'a> {
    fn new(bytes: &'a [u8], delimiter: u8, source_name: &'a str) -> Self {
        CsvRecords {
            bytes,
            delimiter,
            source_name,
            segment_start: 0,
            segment_line: 1,
            reader: Self::reader(bytes, delimiter),
            expected_fields: None,
        }
    }

    fn reader(bytes: &'a [u8], delimiter: u8) -> csv::Reader<&'a [u8]> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(bytes)
    }

    fn position(&self, line: u64) -> String {
        format!("{}:line {line}", self.source_name)
    }

    /// Reads the header's column names (None for an empty file); fixes the field count.
    fn read_header(&mut self, row: &mut csv::ByteRecord) -> Result<Option<Vec<String>>> {
        if self.next_raw(row)?.is_none() {
            return Ok(None);
        }
        let mut names: Vec<String> = Vec::with_capacity(row.len());
        for (index, field) in row.iter().enumerate() {
            let Ok(name) = std::str::from_utf8(field) else {
                return Err(IngestError::Data(format!(
                    "{}: the header line is not valid UTF-8",
                    self.source_name
                )));
            };
            let name = name.trim();
            let name = if name.is_empty() {
                format!("column_{}", index + 1)
            } else {
                name.to_string()
            };
            if names.contains(&name) {
                return Err(IngestError::Data(format!(
                    "{}: column \"{name}\" appears twice in the header",
                    self.source_name
                )));
            }
            names.push(name);
        }
        self.expected_fields = Some(names.len());
        Ok(Some(names))
    }

    /// The next record, or a reject for a malformed one; None at the end.
    fn next(
        &mut self,
        row: &mut csv::ByteRecord,
    ) -> Result<Option<std::result::Result<CsvRecord, Reject>>> {
        let Some(record) = self.next_raw(row)? else {
            return Ok(None);
        };
        let bytes = self.bytes;
        let raw = &bytes[record.raw.clone()];
        let first_newline = raw.iter().position(|byte| *byte == b'\n');
        let bad_quoting = quoting_problem(raw, self.delimiter);
        let reason = match (bad_quoting, self.expected_fields) {
            // Over several lines, a quote opened on the first line ran on.
            (Some(_), _) if first_newline.is_some() => {
                "unbalanced quotes: a quoted field is not closed".to_string()
            }
            (Some(problem), _) => problem.to_string(),
            (None, Some(expected)) if row.len() != expected => {
                format!("expected {expected} fields, found {}", row.len())
            }
            (None, Some(_)) => return Ok(Some(Ok(record))),
            (None, None) => {
                self.expected_fields = Some(row.len());
                return Ok(Some(Ok(record)));
            }
        };
        let mut raw_range = record.raw.clone();
        if let Some(newline) = first_newline.filter(|_| bad_quoting.is_some()) {
            // Reject the first line only and read on from the next, rather than lose the lines
            // the open quote swallowed.
            let resume_at = record.raw.start + newline + 1;
            raw_range.end = record.raw.start + newline;
            if bytes[..raw_range.end].ends_with(b"\r") {
                raw_range.end -= 1;
            }
            self.segment_start = resume_at;
            self.segment_line = record.line + 1;
            self.reader = Self::reader(&bytes[resume_at..], self.delimiter);
        }
        let raw = String::from_utf8_lossy(&bytes[raw_range]).into_owned();
        Ok(Some(Err(Reject {
            position: self.position(record.line),
            reason,
            raw: truncate_text(raw, MAX_RAW_BYTES),
        })))
    }

    /// The next record as the `csv` crate parses it, with its line and bytes.
    fn next_raw(&mut self, row: &mut csv::ByteRecord) -> Result<Option<CsvRecord>> {
        let before = self.reader.position().clone();
        let more = self
            .reader
            .read_byte_record(row)
            .map_err(|e| IngestError::Source {
                source_name: self.source_name.to_string(),
                message: e.to_string(),
            })?;
        if !more {
            return Ok(None);
        }
        let end = self.segment_start + self.reader.position().byte() as usize;
        let mut start = self.segment_start + before.byte() as usize;
        let mut line = self.segment_line + before.line() - 1;
        // The reader's position before a record includes the line ends (and blank lines) in
        // front of it.
        while start < end && matches!(self.bytes[start], b'\r' | b'\n') {
            line += u64::from(self.bytes[start] == b'\n');
            start += 1;
        }
        let mut raw_end = end;
        while raw_end > start && matches!(self.bytes[raw_end - 1], b'\r' | b'\n') {
            raw_end -= 1;
        }
        Ok(Some(CsvRecord {
            line,
            raw: start..raw_end,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `name: Type` of every field, e.g. `id: Int64, at: Timestamp(µs, "UTC")`.
    fn schema_text(schema: &Schema) -> String {
        let fields = schema
            .fields()
            .iter()
            .map(|f| format!("{}: {}", f.name(), f.data_type()));
        fields.collect::<Vec<_>>().join(", ")
    }

    /// A column's values as text (`null` for nulls; timestamps as UTC without their zone,
    /// which needs no time zone database).
    fn column_text(batch: &RecordBatch, name: &str) -> Vec<String> {
        let mut array = batch.column_by_name(name).unwrap().clone();
        if let DataType::Timestamp(unit, Some(_)) = array.data_type() {
            array = cast(&array, &DataType::Timestamp(*unit, None)).unwrap();
        }
        let array = cast(&array, &DataType::Utf8).unwrap();
        let array = array.as_any().downcast_ref::<StringArray>().unwrap();
        array
            .iter()
            .map(|v| v.unwrap_or("null").to_string())
            .collect()
    }

    fn row_counts(batches: &[RecordBatch]) -> Vec<usize> {
        batches.iter().map(RecordBatch::num_rows).collect()
    }

    fn summary(rejects: &[Reject]) -> Vec<(&str, &str)> {
        rejects
            .iter()
            .map(|r| (r.position.as_str(), r.reason.as_str()))
            .collect()
    }

    #[test]
    fn json_schema_maps_airbyte_types() {
        let json_schema = json!({"type": "object", "properties": {
            "id": {"type": "integer"},
            "amount": {"type": ["null", "number"]},
            "count": {"type": "number", "airbyte_type": "integer"},
            "active": {"type": ["boolean", "null"]},
            "created": {"type": "string", "format": "date-time"},
            "local": {"type": "string", "format": "date-time",
                      "airbyte_type": "timestamp_without_timezone"},
            "day": {"type": ["null", "string"], "format": "date"},
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "address": {"type": "object"},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "untyped": {},
            "mixed": {"type": ["string", "integer"]},
            "ratio": {"type": ["integer", "number", "null"]},
            "updated": {"$ref": "WellKnownTypes.json#/definitions/TimestampWithTimezone"},
        }});
        let schema = schema_from_json_schema(&json_schema).unwrap();
        assert!(schema.fields().iter().all(|f| f.is_nullable()));
        // serde_json without preserve_order: fields sorted by name.
        assert_eq!(
            schema_text(&schema),
            "active: Boolean, address: Utf8, amount: Float64, count: Int64, \
             created: Timestamp(µs, \"UTC\"), day: Date32, either: Utf8, id: Int64, \
             local: Timestamp(µs), mixed: Utf8, name: Utf8, ratio: Float64, tags: Utf8, \
             untyped: Utf8, updated: Timestamp(µs, \"UTC\")"
        );
        let error = schema_from_json_schema(&json!({"type": "object"})).unwrap_err();
        assert!(error.to_string().contains("no \"properties\""), "{error}");
    }

    #[test]
    fn inference_widens_and_falls_back_to_text() {
        let records = [
            json!({"n": 1, "x": 1, "ts": "2024-01-31T12:00:00Z", "local": "2024-01-31 12:00:00",
                   "day": "2024-01-31", "flag": true, "c": 1, "obj": {"a": 1}, "nothing": null}),
            json!({"n": 2, "x": 2.5, "ts": "2024-02-01T00:00:00.123+02:00",
                   "local": "2024-02-01T08:30", "day": "2024-02-01", "flag": false, "c": "one"}),
            json!({"late": 7, "big": u64::MAX}),
            json!(["not an object"]),
        ];
        assert_eq!(
            schema_text(&infer_schema(&records)),
            "c: Utf8, day: Date32, flag: Boolean, local: Timestamp(µs), n: Int64, nothing: Utf8, \
             obj: Utf8, ts: Timestamp(µs, \"UTC\"), x: Float64, big: Utf8, late: Int64"
        );
        // Dates mixed with timestamps become timestamps; one other string makes text.
        let mixed = [
            json!({"a": "2024-01-31", "b": "2024-01-31"}),
            json!({"a": "2024-01-31T10:00:00+01:00", "b": "soon"}),
        ];
        assert_eq!(
            schema_text(&infer_schema(&mixed)),
            "a: Timestamp(µs, \"UTC\"), b: Utf8"
        );
    }

    #[test]
    fn batcher_loads_good_records_and_rejects_bad_ones() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("amount", DataType::Float64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("at", Inferred::UtcTimestamp.data_type(), true),
            Field::new("day", DataType::Date32, true),
        ]));
        let mut batcher = RecordBatcher::new(schema, 2).unwrap();
        let records = [
            json!({"id": 1, "amount": 9.5, "name": "ann", "at": "2024-01-31T12:00:00+02:00",
                   "day": "2024-01-31"}),
            // Fails in "amount" after "id" was appended: that must be taken back.
            json!({"id": 2, "amount": "abc", "name": "bob"}),
            json!({"id": "3", "amount": "1.25", "name": 42, "at": "2024-01-31 10:00:00.5",
                   "color": "red"}),
            json!("just a string"),
            json!({"id": 4.0, "name": {"nested": [1, 2]}, "size": 3, "day": ""}),
            json!({"amount": 1}),
            json!({"id": 5, "day": "2024-13-01"}),
        ];
        let mut batches = Vec::new();
        let mut accepted = Vec::new();
        for (index, record) in records.iter().enumerate() {
            accepted.push(batcher.push(record, || format!("record {}", index + 1)));
            batches.extend(batcher.take_full_batch().unwrap());
            if index == 2 {
                // Two good rows so far: the first batch is out, nothing is buffered.
                assert_eq!((batches.len(), batcher.buffered_rows()), (1, 0));
            }
        }
        assert_eq!(accepted, [true, false, true, false, true, false, false]);
        assert_eq!(batcher.buffered_rows(), 1);
        batches.extend(batcher.finish().unwrap());
        assert!(batcher.finish().unwrap().is_none());
        assert_eq!(row_counts(&batches), [2, 1]);

        let (first, second) = (&batches[0], &batches[1]);
        assert_eq!(column_text(first, "id"), ["1", "3"]);
        assert_eq!(column_text(first, "amount"), ["9.5", "1.25"]);
        assert_eq!(column_text(first, "name"), ["ann", "42"]);
        // 12:00 at +02:00 is 10:00 UTC; a value without offset is taken as UTC.
        assert_eq!(
            column_text(first, "at"),
            ["2024-01-31T10:00:00", "2024-01-31T10:00:00.500"]
        );
        assert_eq!(column_text(first, "day"), ["2024-01-31", "null"]);
        assert_eq!(column_text(second, "id"), ["4"]);
        assert_eq!(column_text(second, "name"), [r#"{"nested":[1,2]}"#]);
        assert_eq!(column_text(second, "amount"), ["null"]);
        assert_eq!(column_text(second, "day"), ["null"]);

        let rejects = batcher.take_rejects();
        assert_eq!(
            summary(&rejects),
            [
                (
                    "record 2",
                    r#"column "amount": expected a number, got "abc""#
                ),
                ("record 4", "expected a JSON object, got a string"),
                (
                    "record 6",
                    r#"column "id": missing value in a column that does not allow nulls"#
                ),
                (
                    "record 7",
                    r#"column "day": expected a date such as 2024-01-31, got "2024-13-01""#
                ),
            ]
        );
        assert_eq!(rejects[0].raw, r#"{"amount":"abc","id":2,"name":"bob"}"#);
        assert!(batcher.take_rejects().is_empty());
        assert_eq!(batcher.extra_fields(), ["color", "size"]);
    }

    #[test]
    fn narrow_integers_decimals_and_raw_truncation() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("small", DataType::Int8, true),
            Field::new("price", DataType::Decimal128(10, 2), true),
            Field::new("note", DataType::LargeUtf8, true),
        ]));
        let mut batcher = RecordBatcher::new(schema, 100).unwrap();
        assert!(batcher.push(
            &json!({"small": -128, "price": 12.345, "note": "x"}),
            String::new
        ));
        assert!(batcher.push(&json!({"small": "7", "price": "-0.125"}), String::new));
        assert!(batcher.push(&json!({"price": 1e3}), String::new));
        assert!(!batcher.push(&json!({"small": 300}), String::new));
        assert!(!batcher.push(&json!({"price": "123456789.1"}), String::new));
        let long_note = "é".repeat(40_000);
        assert!(!batcher.push(&json!({"small": 1.5, "note": long_note}), String::new));
        let batch = batcher.finish().unwrap().unwrap();
        assert_eq!(
            schema_text(&batch.schema()),
            "small: Int8, price: Decimal128(10, 2), note: LargeUtf8"
        );
        assert_eq!(column_text(&batch, "small"), ["-128", "7", "null"]);
        assert_eq!(column_text(&batch, "price"), ["12.35", "-0.13", "1000.00"]);

        let rejects = batcher.take_rejects();
        assert_eq!(
            rejects[0].reason,
            r#"column "small": expected an integer from -128 to 127, got 300"#
        );
        assert!(
            rejects[1].reason.contains("fits Decimal128(10, 2)"),
            "{}",
            rejects[1].reason
        );
        assert!(
            rejects[2].reason.ends_with("got 1.5"),
            "{}",
            rejects[2].reason
        );
        assert!(rejects[2].raw.len() <= MAX_RAW_BYTES && rejects[2].raw.len() > 65_000);

        let binary = Schema::new(vec![Field::new("b", DataType::Binary, true)]);
        let error = RecordBatcher::new(Arc::new(binary), 10).err().unwrap();
        assert!(error.to_string().contains(r#"column "b""#), "{error}");
    }

    #[test]
    fn temporal_and_decimal_parsing() {
        let micros = |text: &str| {
            parse_temporal(text).and_then(|t| timestamp_value(&t, TimeUnit::Microsecond))
        };
        assert_eq!(micros("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(micros("1970-01-01T01:00:00+0100"), Some(0));
        assert_eq!(micros("1969-12-31 23:00:00-01:00"), Some(0));
        assert_eq!(micros("1970-01-01T00:00:00.000001234Z"), Some(1));
        assert_eq!(micros("1970-01-01T00:01"), Some(60_000_000));
        assert_eq!(micros("1970-01-02"), Some(86_400_000_000));
        for bad in [
            "1970-01-01T",
            "1970-1-01",
            "1970-01-01T25:00",
            "1970-01-01T00:00+1",
            "x",
        ] {
            assert!(parse_temporal(bad).is_none(), "{bad}");
        }
        assert_eq!(parse_decimal("1.005", 5, 2), Some(101));
        assert_eq!(parse_decimal("-1.5e-1", 5, 1), Some(-2));
        assert_eq!(parse_decimal("999.99", 5, 2), Some(99_999));
        assert_eq!(parse_decimal("1000", 5, 2), None);
        assert_eq!(parse_decimal("1.2.3", 5, 2), None);
        assert_eq!(parse_decimal(".", 5, 2), None);
    }

    #[test]
    fn csv_infers_types_and_rejects_malformed_records() {
        let text = "id,name,amount,zip,when\n\
                    1,ann,1.5,01234,2024-01-31\n\
                    2,\"bob, jr\",2,,2024-02-01\n\
                    \n\
                    3,carl\n\
                    4,\"dora\nsecond line\",4,4444,2024-02-03\r\n\
                    5,\"eve,5,5,2024-02-04\n\
                    6,fay,6,6,2024-02-05\n\
                    7,gus 5\" tall,7,7,2024-02-06\n\
                    8,\"hal\"x,8,8,2024-02-07\n";
        let options = CsvOptions::default();
        let (schema, batches, rejects) =
            read_csv(text.as_bytes(), "people.csv", &options, None, 2).unwrap();
        assert_eq!(
            schema_text(&schema),
            "id: Int64, name: Utf8, amount: Float64, zip: Utf8, when: Date32"
        );
        assert_eq!(row_counts(&batches), [2, 2, 1]);
        assert_eq!(column_text(&batches[0], "id"), ["1", "2"]);
        assert_eq!(column_text(&batches[0], "name"), ["ann", "bob, jr"]);
        assert_eq!(column_text(&batches[0], "zip"), ["01234", "null"]);
        assert_eq!(column_text(&batches[1], "id"), ["4", "6"]);
        assert_eq!(
            column_text(&batches[1], "name"),
            ["dora\nsecond line", "fay"]
        );
        // The unclosed quote on line 8 costs that line only; line 9 still loads.
        assert_eq!(
            summary(&rejects),
            [
                ("people.csv:line 5", "expected 5 fields, found 2"),
                (
                    "people.csv:line 8",
                    "unbalanced quotes: a quoted field is not closed"
                ),
                (
                    "people.csv:line 11",
                    "bad quoting: text follows the closing quote of a field"
                ),
            ]
        );
        assert_eq!(rejects[0].raw, "3,carl");
        assert_eq!(rejects[1].raw, "5,\"eve,5,5,2024-02-04");
        assert_eq!(rejects[2].raw, "8,\"hal\"x,8,8,2024-02-07");
    }

    #[test]
    fn csv_with_schema_rejects_values_that_do_not_parse() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("amount", DataType::Int64, true),
            Field::new("id", DataType::Int32, true),
            Field::new("missing", DataType::Utf8, true),
        ]));
        // Columns are matched by header name; "extra" is not in the schema.
        let text = b"id;amount;extra\n1;10;x\n2;abc;y\n3;\xff;z\n;;\n";
        let options = CsvOptions {
            delimiter: b';',
            ..CsvOptions::default()
        };
        let (_, batches, rejects) =
            read_csv(text, "pay.csv", &options, Some(schema.clone()), 100).unwrap();
        assert_eq!(column_text(&batches[0], "amount"), ["10", "null"]);
        assert_eq!(column_text(&batches[0], "id"), ["1", "null"]);
        assert_eq!(column_text(&batches[0], "missing"), ["null", "null"]);
        assert_eq!(
            summary(&rejects),
            [
                (
                    "pay.csv:line 3",
                    r#"column "amount": expected an integer, got "abc""#
                ),
                (
                    "pay.csv:line 4",
                    r#"column "amount": the value is not valid UTF-8"#
                ),
            ]
        );
        assert_eq!(rejects[0].raw, "2;abc;y");

        // Without a header, columns are taken by position.
        let options = CsvOptions {
            has_header: false,
            ..CsvOptions::default()
        };
        let (_, batches, rejects) =
            read_csv(b"5,6,seven\n8,9\n", "h.csv", &options, Some(schema), 10).unwrap();
        assert_eq!(column_text(&batches[0], "amount"), ["5"]);
        assert_eq!(
            summary(&rejects),
            [("h.csv:line 2", "expected 3 fields, found 2")]
        );
    }

    #[test]
    fn csv_header_only_overrides_and_no_header() {
        let options = CsvOptions::default();
        let (schema, batches, rejects) = read_csv(b"a,b\r\n", "e.csv", &options, None, 10).unwrap();
        assert_eq!(schema_text(&schema), "a: Utf8, b: Utf8");
        assert!(batches.is_empty() && rejects.is_empty());
        let (schema, batches, _) = read_csv(b"", "empty.csv", &options, None, 10).unwrap();
        assert!(schema.fields().is_empty() && batches.is_empty());
        let error = read_csv(b"a,a\n1,2\n", "d.csv", &options, None, 10).unwrap_err();
        assert!(
            error.to_string().contains(r#"column "a" appears twice"#),
            "{error}"
        );

        let overrides = vec![
            ("code".into(), DataType::Int64),
            ("n".into(), DataType::Utf8),
        ];
        let options = CsvOptions {
            overrides,
            ..CsvOptions::default()
        };
        let (schema, batches, rejects) =
            read_csv(b"code,n\n007,1\nx,2\n", "o.csv", &options, None, 10).unwrap();
        assert_eq!(schema_text(&schema), "code: Int64, n: Utf8");
        assert_eq!(column_text(&batches[0], "code"), ["7"]);
        assert_eq!(
            summary(&rejects),
            [(
                "o.csv:line 3",
                r#"column "code": expected an integer, got "x""#
            )]
        );
        let overrides = vec![("nope".into(), DataType::Int64)];
        let options = CsvOptions {
            overrides,
            ..CsvOptions::default()
        };
        let error = read_csv(b"a\n1\n", "o.csv", &options, None, 10).unwrap_err();
        assert!(error.to_string().contains(r#"column "nope""#), "{error}");

        let options = CsvOptions {
            has_header: false,
            delimiter: b'\t',
            ..CsvOptions::default()
        };
        let (schema, batches, _) =
            read_csv(b"1\ttrue\n2\tFALSE\n", "t.tsv", &options, None, 10).unwrap();
        assert_eq!(schema_text(&schema), "column_1: Int64, column_2: Boolean");
        assert_eq!(column_text(&batches[0], "column_2"), ["true", "false"]);
    }

    #[test]
    fn json_lines_reject_invalid_lines() {
        let text = b"{\"id\": 1, \"v\": 1.5}\n\n{\"id\": 2, \"v\": 2}\n{\"id\": 3,\n[1]\n\
                     {\"id\": \"four\", \"v\": null}\r\n{\"id\": 5, \"w\": true}\n";
        let overrides = [("id".to_string(), DataType::Int32)];
        let (schema, batches, rejects) =
            read_json_lines(text, "events.jsonl", &overrides, None, 2).unwrap();
        assert_eq!(schema_text(&schema), "id: Int32, v: Float64, w: Boolean");
        assert_eq!(row_counts(&batches), [2, 1]);
        assert_eq!(column_text(&batches[1], "w"), ["true"]);
        assert_eq!(
            summary(&rejects),
            [
                (
                    "events.jsonl:line 4",
                    "invalid JSON at column 9: EOF while parsing a value"
                ),
                (
                    "events.jsonl:line 5",
                    "expected a JSON object, got an array"
                ),
                (
                    "events.jsonl:line 6",
                    r#"column "id": expected an integer from -2147483648 to 2147483647, got "four""#
                ),
            ]
        );
        assert_eq!(rejects[0].raw, "{\"id\": 3,");
    }

    /// Throughput check: `cargo test --release -- --ignored --nocapture million`.
    #[test]
    #[ignore]
    fn million_records_convert_quickly() {
        let records: Vec<Value> = (0..1_000_000)
            .map(|i| {
                json!({"id": i, "name": format!("user {i}"), "score": i as f64 / 3.0,
                            "active": i % 2 == 0, "at": "2024-01-31T12:00:00Z"})
            })
            .collect();
        let schema = Arc::new(infer_schema(&records[..1000]));
        let started = std::time::Instant::now();
        let mut batcher = RecordBatcher::new(schema, 65_536).unwrap();
        let mut rows = 0;
        for record in &records {
            batcher.push(record, String::new);
            rows += batcher
                .take_full_batch()
                .unwrap()
                .map_or(0, |b| b.num_rows());
        }
        rows += batcher.finish().unwrap().map_or(0, |b| b.num_rows());
        let elapsed = started.elapsed();
        println!("1M records in {elapsed:?}");
        assert_eq!(rows, 1_000_000);
        assert!(elapsed.as_secs_f64() < 2.0);
    }
}
