//! Reading PostgreSQL tables into Arrow through the binary `COPY` protocol: the fastest way
//! out of PostgreSQL (no per-row protocol messages, no text formatting and parsing of numbers).
//!
//! [`discover_table`] maps a table's columns to Arrow types from the catalog (with numeric
//! precision and scale, which a prepared statement does not report); [`read_arrow`] streams
//! `COPY (SELECT ...) TO STDOUT (FORMAT binary)` and decodes it into record batches. Types
//! without a binary decoder here are selected as `::text` and arrive as strings, so every
//! column can be read.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use futures::{Stream, StreamExt};
use tokio_postgres::Client;

use crate::error::IngestError;

type Result<T, E = IngestError> = std::result::Result<T, E>;

/// Days from 1970-01-01 to PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// The fixed start of a binary COPY stream.
const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// How a column is read: its binary wire format, or text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// `numeric(p, s)` with p ≤ 38, into Decimal128(p, s).
    Numeric {
        precision: u8,
        scale: i8,
    },
    /// Unconstrained `numeric`: no fixed scale, read as a double.
    NumericAsDouble,
    /// text, varchar, bpchar, name, json.
    Text,
    /// Any other type (arrays, intervals, enums, ...), selected as `::text`.
    TextCast,
    /// jsonb (a version byte, then text).
    Jsonb,
    Uuid,
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
}

/// A source column: its name, how it is selected and read, and its Arrow field.
#[derive(Debug, Clone, PartialEq)]
pub struct PgColumn {
    pub name: String,
    /// The PostgreSQL type as `format_type` prints it (`numeric(12,2)`, `text`, ...).
    pub pg_type: String,
    pub nullable: bool,
    pub wire: WireType,
}

impl PgColumn {
    pub fn data_type(&self) -> DataType {
        match self.wire {
            WireType::Bool => DataType::Boolean,
            WireType::Int2 => DataType::Int16,
            WireType::Int4 => DataType::Int32,
            WireType::Int8 => DataType::Int64,
            WireType::Float4 => DataType::Float32,
            WireType::Float8 | WireType::NumericAsDouble => DataType::Float64,
            WireType::Numeric { precision, scale } => DataType::Decimal128(precision, scale),
            WireType::Text | WireType::TextCast | WireType::Jsonb | WireType::Uuid => {
                DataType::Utf8
            }
            WireType::Bytea => DataType::Binary,
            WireType::Date => DataType::Date32,
            WireType::Time => DataType::Time64(TimeUnit::Microsecond),
            WireType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            WireType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    /// The column in the SELECT that feeds COPY (cast to text when read as its text form).
    fn select_expr(&self) -> String {
        let quoted = quote_ident(&self.name);
        if self.wire == WireType::TextCast {
            format!("{quoted}::text")
        } else {
            quoted
        }
    }
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(crate) fn database_error(what: &str, err: tokio_postgres::Error) -> IngestError {
    // The driver's message names the server's reason (and never the password).
    let message = match err.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => err.to_string(),
    };
    IngestError::Source {
        source_name: what.to_string(),
        message,
    }
}

/// How a PostgreSQL type (`format_type` text, base type name and typmod) is read.
fn wire_type(base: &str, precision: Option<i32>, scale: Option<i32>) -> WireType {
    match base {
        "bool" => WireType::Bool,
        "int2" => WireType::Int2,
        "int4" => WireType::Int4,
        "int8" => WireType::Int8,
        "float4" => WireType::Float4,
        "float8" => WireType::Float8,
        "numeric" => match (precision, scale) {
            (Some(p), Some(s)) if (1..=38).contains(&p) && (0..=p).contains(&s) => {
                WireType::Numeric {
                    precision: p as u8,
                    scale: s as i8,
                }
            }
            _ => WireType::NumericAsDouble,
        },
        "jsonb" => WireType::Jsonb,
        "uuid" => WireType::Uuid,
        "bytea" => WireType::Bytea,
        "date" => WireType::Date,
        "time" => WireType::Time,
        "timestamp" => WireType::Timestamp,
        "timestamptz" => WireType::TimestampTz,
        "text" | "varchar" | "bpchar" | "name" | "json" => WireType::Text,
        _ => WireType::TextCast,
    }
}

/// The columns of `schema.table`, in table order, with the Arrow type each is read as.
pub async fn discover_table(client: &Client, schema: &str, table: &str) -> Result<Vec<PgColumn>> {
    let what = format!("postgres table {schema}.{table}");
    let rows = client
        .query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, \
                    t.typname, \
                    information_schema._pg_numeric_precision(a.atttypid, a.atttypmod), \
                    information_schema._pg_numeric_scale(a.atttypid, a.atttypmod) \
             FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_type t ON t.oid = a.atttypid \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&schema, &table],
        )
        .await
        .map_err(|e| database_error(&what, e))?;
    if rows.is_empty() {
        return Err(IngestError::Source {
            source_name: what,
            message: "no such table (or no columns visible to this user)".to_string(),
        });
    }
    Ok(rows
        .iter()
        .map(|row| {
            let base: String = row.get(3);
            PgColumn {
                name: row.get(0),
                pg_type: row.get(1),
                nullable: row.get(2),
                wire: wire_type(&base, row.get(4), row.get(5)),
            }
        })
        .collect())
}

/// The Arrow schema of `columns`.
pub fn arrow_schema(columns: &[PgColumn]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.data_type(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// Streams `SELECT <columns> FROM <from> [WHERE <filter>]` as record batches of up to
/// `batch_rows` rows. `from` and `filter` are SQL the caller built from checked names.
pub async fn read_arrow(
    client: &Client,
    columns: &[PgColumn],
    from: &str,
    filter: Option<&str>,
    batch_rows: usize,
) -> Result<impl Stream<Item = Result<RecordBatch>> + Send + 'static + use<>> {
    let select = columns
        .iter()
        .map(PgColumn::select_expr)
        .collect::<Vec<_>>()
        .join(", ");
    let mut query = format!("SELECT {select} FROM {from}");
    if let Some(filter) = filter {
        query.push_str(&format!(" WHERE {filter}"));
    }
    let copy = format!("COPY ({query}) TO STDOUT (FORMAT binary)");
    let what = format!("postgres query on {from}");
    let chunks = client
        .copy_out(&copy)
        .await
        .map_err(|e| database_error(&what, e))?;
    let decoder = CopyDecoder::new(columns.to_vec(), batch_rows.max(1));
    Ok(futures::stream::unfold(
        (Box::pin(chunks), decoder, what, false),
        |(mut chunks, mut decoder, what, finished)| async move {
            if finished {
                return None;
            }
            loop {
                match decoder.next_batch(false) {
                    Err(err) => return Some((Err(err), (chunks, decoder, what, true))),
                    Ok(Some(batch)) => return Some((Ok(batch), (chunks, decoder, what, false))),
                    Ok(None) => {}
                }
                match chunks.next().await {
                    Some(Ok(chunk)) => decoder.push(&chunk),
                    Some(Err(err)) => {
                        let err = database_error(&what, err);
                        return Some((Err(err), (chunks, decoder, what, true)));
                    }
                    None => {
                        let last = decoder.next_batch(true).transpose()?;
                        return Some((last, (chunks, decoder, what, true)));
                    }
                }
            }
        },
    ))
}

/// Decodes a binary COPY stream, chunk by chunk, into record batches.
struct CopyDecoder {
    columns: Vec<PgColumn>,
    schema: SchemaRef,
    batch_rows: usize,
    buffer: BytesMut,
    header_read: bool,
    ended: bool,
    builders: Vec<Box<dyn ArrayBuilder>>,
    rows: usize,
}

fn builder_for(column: &PgColumn, capacity: usize) -> Box<dyn ArrayBuilder> {
    match column.wire {
        WireType::Bool => Box::new(BooleanBuilder::with_capacity(capacity)),
        WireType::Int2 => Box::new(Int16Builder::with_capacity(capacity)),
        WireType::Int4 => Box::new(Int32Builder::with_capacity(capacity)),
        WireType::Int8 => Box::new(Int64Builder::with_capacity(capacity)),
        WireType::Float4 => Box::new(Float32Builder::with_capacity(capacity)),
        WireType::Float8 | WireType::NumericAsDouble => {
            Box::new(Float64Builder::with_capacity(capacity))
        }
        WireType::Numeric { precision, scale } => Box::new(
            Decimal128Builder::with_capacity(capacity)
                .with_precision_and_scale(precision, scale)
                .expect("precision and scale checked in wire_type"),
        ),
        WireType::Text | WireType::TextCast | WireType::Jsonb | WireType::Uuid => {
            Box::new(StringBuilder::with_capacity(capacity, capacity * 16))
        }
        WireType::Bytea => Box::new(BinaryBuilder::with_capacity(capacity, capacity * 16)),
        WireType::Date => Box::new(Date32Builder::with_capacity(capacity)),
        WireType::Time => Box::new(Time64MicrosecondBuilder::with_capacity(capacity)),
        WireType::Timestamp => Box::new(TimestampMicrosecondBuilder::with_capacity(capacity)),
        WireType::TimestampTz => {
            Box::new(TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"))
        }
    }
}

fn data_error(message: String) -> IngestError {
    IngestError::Data(message)
}

impl CopyDecoder {
    fn new(columns: Vec<PgColumn>, batch_rows: usize) -> Self {
        let schema = arrow_schema(&columns);
        let builders = columns.iter().map(|c| builder_for(c, batch_rows)).collect();
        CopyDecoder {
            columns,
            schema,
            batch_rows,
            buffer: BytesMut::new(),
            header_read: false,
            ended: false,
            builders,
            rows: 0,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// Decodes what is buffered; returns a batch when one is full, or at the end (`at_end`)
    /// with the rows left. `None`: more input is needed.
    fn next_batch(&mut self, at_end: bool) -> Result<Option<RecordBatch>> {
        if !self.header_read {
            // Signature, flags (int32), header extension length (int32) and the extension.
            if self.buffer.len() < COPY_SIGNATURE.len() + 8 {
                return self.finish_if(at_end);
            }
            if &self.buffer[..COPY_SIGNATURE.len()] != COPY_SIGNATURE {
                return Err(data_error("not a binary COPY stream".to_string()));
            }
            let extension = u32::from_be_bytes(
                self.buffer[COPY_SIGNATURE.len() + 4..COPY_SIGNATURE.len() + 8]
                    .try_into()
                    .expect("four bytes"),
            ) as usize;
            let header = COPY_SIGNATURE.len() + 8 + extension;
            if self.buffer.len() < header {
                return self.finish_if(at_end);
            }
            self.buffer.advance(header);
            self.header_read = true;
        }
        while !self.ended && self.rows < self.batch_rows {
            match self.tuple_length()? {
                None => break,
                Some(None) => {
                    self.buffer.advance(2);
                    self.ended = true;
                }
                Some(Some(length)) => {
                    let mut tuple = self.buffer.split_to(length);
                    tuple.advance(2);
                    self.decode_tuple(&tuple)?;
                    self.rows += 1;
                }
            }
        }
        if at_end && !self.ended {
            // Rows decoded so far are not a result: the stream must end with its trailer.
            return self.finish_if(at_end);
        }
        if self.rows >= self.batch_rows || (self.ended && self.rows > 0) {
            return self.take_batch().map(Some);
        }
        Ok(None)
    }

    fn finish_if(&self, at_end: bool) -> Result<Option<RecordBatch>> {
        if at_end && !self.ended {
            return Err(data_error(
                "the COPY stream ended in the middle (the connection was lost?)".to_string(),
            ));
        }
        Ok(None)
    }

    /// The byte length of the next whole tuple in the buffer (field count included);
    /// `Some(None)` at the trailer, `None` when the tuple is not all there yet.
    fn tuple_length(&self) -> Result<Option<Option<usize>>> {
        let buffer = &self.buffer[..];
        if buffer.len() < 2 {
            return Ok(None);
        }
        let fields = i16::from_be_bytes([buffer[0], buffer[1]]);
        if fields == -1 {
            return Ok(Some(None));
        }
        if fields as usize != self.columns.len() {
            return Err(data_error(format!(
                "a COPY row has {fields} fields, expected {}",
                self.columns.len()
            )));
        }
        let mut at = 2usize;
        for _ in 0..fields {
            if buffer.len() < at + 4 {
                return Ok(None);
            }
            let length = i32::from_be_bytes(buffer[at..at + 4].try_into().expect("four bytes"));
            at += 4;
            if length > 0 {
                at += length as usize;
            }
        }
        if buffer.len() < at {
            return Ok(None);
        }
        Ok(Some(Some(at)))
    }

    fn decode_tuple(&mut self, mut tuple: &[u8]) -> Result<()> {
        for index in 0..self.columns.len() {
            let length = tuple.get_i32();
            let value = if length < 0 {
                None
            } else {
                let (value, rest) = tuple.split_at(length as usize);
                tuple = rest;
                Some(value)
            };
            append(&self.columns[index], self.builders[index].as_mut(), value).map_err(
                |message| {
                    data_error(format!(
                        "column {} ({}): {message}",
                        self.columns[index].name, self.columns[index].pg_type
                    ))
                },
            )?;
        }
        Ok(())
    }

    fn take_batch(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| data_error(format!("cannot build a batch: {e}")))
    }
}

fn fixed<const N: usize>(value: &[u8]) -> std::result::Result<[u8; N], String> {
    value
        .try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", value.len()))
}

fn downcast<T: 'static>(builder: &mut dyn ArrayBuilder) -> &mut T {
    builder
        .as_any_mut()
        .downcast_mut::<T>()
        .expect("builder made for this wire type")
}

/// Appends one binary value (`None` for NULL) of `column` to its builder.
fn append(
    column: &PgColumn,
    builder: &mut dyn ArrayBuilder,
    value: Option<&[u8]>,
) -> std::result::Result<(), String> {
    macro_rules! put {
        ($builder:ty, $convert:expr) => {{
            let builder = downcast::<$builder>(builder);
            match value {
                None => builder.append_null(),
                Some(bytes) => builder.append_value($convert(bytes)?),
            }
        }};
    }
    match column.wire {
        WireType::Bool => put!(BooleanBuilder, |b: &[u8]| fixed::<1>(b).map(|v| v[0] != 0)),
        WireType::Int2 => put!(Int16Builder, |b: &[u8]| fixed::<2>(b)
            .map(i16::from_be_bytes)),
        WireType::Int4 => put!(Int32Builder, |b: &[u8]| fixed::<4>(b)
            .map(i32::from_be_bytes)),
        WireType::Int8 => put!(Int64Builder, |b: &[u8]| fixed::<8>(b)
            .map(i64::from_be_bytes)),
        WireType::Float4 => put!(Float32Builder, |b: &[u8]| fixed::<4>(b)
            .map(f32::from_be_bytes)),
        WireType::Float8 => put!(Float64Builder, |b: &[u8]| fixed::<8>(b)
            .map(f64::from_be_bytes)),
        WireType::NumericAsDouble => put!(Float64Builder, |b: &[u8]| numeric_to_f64(b)),
        WireType::Numeric { scale, .. } => {
            let builder = downcast::<Decimal128Builder>(builder);
            match value.map(|b| numeric_to_i128(b, scale)).transpose()? {
                // NaN has no decimal: it reads as NULL.
                None | Some(None) => builder.append_null(),
                Some(Some(v)) => builder.append_value(v),
            }
        }
        WireType::Text | WireType::TextCast | WireType::Jsonb => {
            let builder = downcast::<StringBuilder>(builder);
            match value {
                None => builder.append_null(),
                Some(bytes) => {
                    let text = match (column.wire, bytes.split_first()) {
                        (WireType::Text | WireType::TextCast, _) => bytes,
                        (_, Some((1, text))) => text,
                        _ => return Err("unknown jsonb version".to_string()),
                    };
                    builder.append_value(std::str::from_utf8(text).map_err(|e| e.to_string())?);
                }
            }
        }
        WireType::Uuid => {
            let builder = downcast::<StringBuilder>(builder);
            match value.map(fixed::<16>).transpose()? {
                None => builder.append_null(),
                // Formatted on the stack: one allocation-free write per value.
                Some(bytes) => builder.append_value(
                    uuid::Uuid::from_bytes(bytes)
                        .hyphenated()
                        .encode_lower(&mut [0u8; uuid::fmt::Hyphenated::LENGTH]),
                ),
            }
        }
        WireType::Bytea => {
            let builder = downcast::<BinaryBuilder>(builder);
            match value {
                None => builder.append_null(),
                Some(bytes) => builder.append_value(bytes),
            }
        }
        WireType::Date => {
            let builder = downcast::<Date32Builder>(builder);
            match value.map(fixed::<4>).transpose()?.map(i32::from_be_bytes) {
                // ±infinity has no date: NULL rather than a made-up day.
                None | Some(i32::MAX | i32::MIN) => builder.append_null(),
                Some(days) => builder.append_value(days.saturating_add(PG_EPOCH_DAYS)),
            }
        }
        WireType::Time => put!(Time64MicrosecondBuilder, |b: &[u8]| fixed::<8>(b)
            .map(i64::from_be_bytes)),
        WireType::Timestamp | WireType::TimestampTz => {
            let builder = downcast::<TimestampMicrosecondBuilder>(builder);
            match value.map(fixed::<8>).transpose()?.map(i64::from_be_bytes) {
                None | Some(i64::MAX | i64::MIN) => builder.append_null(),
                Some(micros) => builder.append_value(micros.saturating_add(PG_EPOCH_MICROS)),
            }
        }
    }
    Ok(())
}

/// PostgreSQL's binary numeric: digit count, weight (of the first base-10000 digit), sign,
/// display scale, then the base-10000 digits (read in place: no allocation per value).
struct PgNumeric<'a> {
    weight: i16,
    negative: bool,
    nan: bool,
    infinite: bool,
    digits: &'a [u8],
}

impl PgNumeric<'_> {
    fn digits(&self) -> impl Iterator<Item = i16> + '_ {
        self.digits
            .chunks_exact(2)
            .map(|d| i16::from_be_bytes([d[0], d[1]]))
    }
}

fn parse_numeric(bytes: &[u8]) -> std::result::Result<PgNumeric<'_>, String> {
    if bytes.len() < 8 {
        return Err("numeric value too short".to_string());
    }
    let count = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
    let weight = i16::from_be_bytes([bytes[2], bytes[3]]);
    let sign = u16::from_be_bytes([bytes[4], bytes[5]]);
    if bytes.len() != 8 + 2 * count {
        return Err("numeric value of the wrong length".to_string());
    }
    Ok(PgNumeric {
        weight,
        negative: sign == 0x4000 || sign == 0xF000,
        // NaN and the infinities (PostgreSQL 14+) have no digits to read.
        nan: sign == 0xC000,
        infinite: sign == 0xD000 || sign == 0xF000,
        digits: &bytes[8..],
    })
}

/// The value times 10^scale as an integer, `None` for NaN / infinity.
fn numeric_to_i128(bytes: &[u8], scale: i8) -> std::result::Result<Option<i128>, String> {
    const OVERFLOW: &str = "numeric overflow";
    let numeric = parse_numeric(bytes)?;
    if numeric.nan || numeric.infinite {
        return Ok(None);
    }
    // The digits as one integer (Horner), worth 10000^(weight - count + 1), then scaled.
    let mut value: i128 = 0;
    for digit in numeric.digits() {
        value = value
            .checked_mul(10_000)
            .and_then(|v| v.checked_add(digit as i128))
            .ok_or(OVERFLOW)?;
    }
    let count = (numeric.digits.len() / 2) as i32;
    let exponent = 4 * (numeric.weight as i32 - count + 1) + scale as i32;
    if exponent >= 0 {
        value = value
            .checked_mul(10i128.checked_pow(exponent as u32).ok_or(OVERFLOW)?)
            .ok_or(OVERFLOW)?;
    } else {
        // Digits below the column's scale (never sent for a numeric(p, s) column).
        value /= 10i128.pow((-exponent).min(38) as u32);
    }
    Ok(Some(if numeric.negative { -value } else { value }))
}

fn numeric_to_f64(bytes: &[u8]) -> std::result::Result<f64, String> {
    let numeric = parse_numeric(bytes)?;
    if numeric.nan {
        return Ok(f64::NAN);
    }
    if numeric.infinite {
        return Ok(if numeric.negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    let mut value = 0f64;
    for (i, digit) in numeric.digits().enumerate() {
        value += digit as f64 * 10000f64.powi(numeric.weight as i32 - i as i32);
    }
    Ok(if numeric.negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        Array, AsArray, BinaryArray, Decimal128Array, StringArray, TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{Date32Type, Float64Type, Int16Type, Int32Type, Int64Type};

    async fn connect() -> Client {
        let (client, connection) = tokio_postgres::connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
            tokio_postgres::NoTls,
        )
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (the machine's service)");
        tokio::spawn(connection);
        client
    }

    #[tokio::test]
    async fn every_common_type_arrives_as_the_right_arrow_value() {
        let client = connect().await;
        let schema = format!("polder_copy_{}", std::process::id());
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.mixed (
                    id int8 NOT NULL, flag bool, small int2, medium int4, ratio float4, score float8,
                    price numeric(12,2), big numeric(38,0), loose numeric, name text, code varchar(8),
                    doc jsonb, ident uuid, raw bytea, born date, at_time time, seen timestamp,
                    seen_tz timestamptz, span interval, tags text[]);
                 INSERT INTO {schema}.mixed VALUES
                   (1, true, -2, 40000, 1.5, 2.25, -1234.56, 12345678901234567890123456789012345678,
                    12345.0625, 'grüße', 'ab', '{{\"a\": [1, 2]}}', '123e4567-e89b-12d3-a456-426614174000',
                    '\\x00ff', '1999-12-31', '13:45:01.5', '2026-11-26 10:00:00.123456',
                    '2026-11-26 10:00:00+02', '1 day 2 hours', '{{x,y}}'),
                   (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'NaN', NULL, NULL, NULL, NULL, NULL,
                    NULL, NULL, NULL, NULL, NULL, NULL);
                 INSERT INTO {schema}.mixed (id, price, name)
                    SELECT g, g / 100.0, repeat('x', g % 7) FROM generate_series(3, 2500) g;"
            ))
            .await
            .unwrap();
        let columns = discover_table(&client, &schema, "mixed").await.unwrap();
        let wires: Vec<WireType> = columns.iter().map(|c| c.wire).collect();
        assert_eq!(
            wires[6],
            WireType::Numeric {
                precision: 12,
                scale: 2
            }
        );
        assert_eq!(wires[8], WireType::NumericAsDouble);
        assert_eq!(wires[18], WireType::TextCast, "interval is read as text");
        assert_eq!(wires[19], WireType::TextCast, "arrays are read as text");
        assert!(!columns[0].nullable && columns[1].nullable);

        let from = format!("{}.{}", quote_ident(&schema), quote_ident("mixed"));
        let stream = read_arrow(&client, &columns, &from, Some("id <= 2500"), 1000)
            .await
            .unwrap();
        let batches: Vec<RecordBatch> = stream.map(|b| b.unwrap()).collect().await;
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            [1000, 1000, 500]
        );
        let first = &batches[0];
        assert_eq!(first.schema(), arrow_schema(&columns));
        let column = |name: &str| first.column_by_name(name).unwrap().clone();
        assert_eq!(column("id").as_primitive::<Int64Type>().value(0), 1);
        assert!(column("flag").as_boolean().value(0));
        assert!(column("flag").is_null(1));
        assert_eq!(column("small").as_primitive::<Int16Type>().value(0), -2);
        assert_eq!(column("medium").as_primitive::<Int32Type>().value(0), 40000);
        assert_eq!(column("score").as_primitive::<Float64Type>().value(0), 2.25);
        let price = column("price");
        let price = price.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(price.value(0), -123456);
        assert_eq!(price.value(2), 3, "3 / 100.0 = 0.03");
        let big = column("big");
        let big = big.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(big.value(0), 12345678901234567890123456789012345678);
        let loose = column("loose");
        assert!((loose.as_primitive::<Float64Type>().value(0) - 12345.0625).abs() < 1e-12);
        assert!(loose.as_primitive::<Float64Type>().value(1).is_nan());
        let text = |name: &str, row: usize| {
            column(name)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(row)
                .to_string()
        };
        assert_eq!(text("name", 0), "grüße");
        assert_eq!(text("code", 0), "ab");
        assert_eq!(text("doc", 0), r#"{"a": [1, 2]}"#);
        assert_eq!(text("ident", 0), "123e4567-e89b-12d3-a456-426614174000");
        assert_eq!(text("span", 0), "1 day 02:00:00");
        assert_eq!(text("tags", 0), "{x,y}");
        let raw = column("raw");
        assert_eq!(
            raw.as_any().downcast_ref::<BinaryArray>().unwrap().value(0),
            [0u8, 255]
        );
        assert_eq!(column("born").as_primitive::<Date32Type>().value(0), 10956);
        let seen = column("seen");
        let seen = seen
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(seen.value(0), 1_795_687_200_123_456);
        let seen_tz = column("seen_tz");
        let seen_tz = seen_tz
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(
            seen_tz.value(0),
            1_795_680_000_000_000,
            "10:00+02 is 08:00 UTC"
        );
        for name in [
            "ratio", "at_time", "seen", "name", "doc", "ident", "raw", "span",
        ] {
            assert!(column(name).is_null(1), "{name} NULL");
        }
        let total: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(total, 2500);

        // Bounded-text arrays are read as their text, infinities do not become real values.
        client
            .batch_execute(&format!(
                "CREATE TABLE {schema}.edge (labels varchar(20)[], born date, seen timestamp, loose numeric);
                 INSERT INTO {schema}.edge VALUES ('{{a,b}}', 'infinity', '-infinity', '-Infinity');"
            ))
            .await
            .unwrap();
        let edge_columns = discover_table(&client, &schema, "edge").await.unwrap();
        let edge_from = format!("{}.{}", quote_ident(&schema), quote_ident("edge"));
        let edge: Vec<RecordBatch> = read_arrow(&client, &edge_columns, &edge_from, None, 10)
            .await
            .unwrap()
            .map(|b| b.unwrap())
            .collect()
            .await;
        let edge = &edge[0];
        let labels = edge
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(labels.value(0), "{a,b}");
        assert!(edge.column(1).is_null(0) && edge.column(2).is_null(0));
        assert_eq!(
            edge.column(3).as_primitive::<Float64Type>().value(0),
            f64::NEG_INFINITY
        );

        // A source error is a clear error naming the table.
        let err = discover_table(&client, &schema, "missing")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no such table"), "{err}");
        let err = match read_arrow(&client, &columns, &from, Some("no_such_column = 1"), 10).await {
            Ok(_) => panic!("a bad filter must fail"),
            Err(err) => err,
        };
        assert!(err.to_string().contains("no_such_column"), "{err}");
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }

    #[test]
    fn a_stream_cut_short_is_an_error_not_fewer_rows() {
        let columns = vec![PgColumn {
            name: "a".to_string(),
            pg_type: "integer".to_string(),
            nullable: true,
            wire: WireType::Int4,
        }];
        let mut decoder = CopyDecoder::new(columns, 10);
        let mut stream = COPY_SIGNATURE.to_vec();
        stream.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        stream.extend_from_slice(&[0, 1, 0, 0, 0, 4, 0, 0, 0, 7]);
        decoder.push(&stream);
        assert!(decoder.next_batch(false).unwrap().is_none());
        assert!(decoder.next_batch(true).is_err());
    }
}
