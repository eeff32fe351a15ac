//! Reading MySQL and MariaDB tables into Arrow.
//!
//! [`discover_table`] and [`list_tables`] map columns to Arrow types from
//! `information_schema` (`COLUMN_TYPE` carries precision, scale, signedness and the
//! `tinyint(1)` boolean convention, which result-set metadata does not); [`read_arrow`] streams
//! a `SELECT` over the binary protocol of a prepared statement and decodes the rows into record
//! batches. Types without a decoder here are selected as text, so every column can be read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use sqlx::mysql::{
    MySql, MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlRow, MySqlSslMode,
};
use sqlx::{ConnectOptions, Decode, Executor, Row, ValueRef};

use crate::error::IngestError;

type Result<T, E = IngestError> = std::result::Result<T, E>;

/// How long [`connect`] waits for the server before giving up (a firewalled host otherwise
/// hangs for the operating system's TCP timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Days from 0001-01-01 (chrono's day 1 of the common era) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Where to read from: one MySQL or MariaDB database.
#[derive(Clone, Deserialize)]
pub struct MySqlSourceConfig {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub user: String,
    /// May be empty (a server that trusts the user).
    #[serde(default)]
    pub password: String,
    pub database: String,
    /// `disabled`, `preferred` (the default), `required`, `verify_ca` or `verify_identity`.
    #[serde(default)]
    pub ssl_mode: Option<String>,
}

fn default_port() -> u16 {
    3306
}

impl MySqlSourceConfig {
    /// `mysql host:port/database`: how errors name this source.
    pub fn source_name(&self) -> String {
        format!("mysql {}:{}/{}", self.host, self.port, self.database)
    }
}

impl std::fmt::Debug for MySqlSourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Written by hand so that the password never reaches a log line.
        f.debug_struct("MySqlSourceConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field(
                "password",
                &if self.password.is_empty() { "" } else { "***" },
            )
            .field("database", &self.database)
            .field("ssl_mode", &self.ssl_mode)
            .finish()
    }
}

/// Opens one connection. The session runs with `time_zone = '+00:00'`, so `TIMESTAMP` values
/// arrive in UTC, and with the server's own `sql_mode` (`||` keeps its server meaning in filters).
pub async fn connect(config: &MySqlSourceConfig) -> Result<MySqlConnection> {
    for (field, value) in [
        ("host", &config.host),
        ("user", &config.user),
        ("database", &config.database),
    ] {
        if value.trim().is_empty() {
            return Err(IngestError::Config(format!(
                "the MySQL source needs a {field}"
            )));
        }
    }
    let mut options = MySqlConnectOptions::new()
        .host(&config.host)
        .port(config.port)
        .username(&config.user)
        .database(&config.database)
        .pipes_as_concat(false)
        .timezone(Some("+00:00".to_string()))
        .disable_statement_logging();
    if !config.password.is_empty() {
        options = options.password(&config.password);
    }
    if let Some(mode) = &config.ssl_mode {
        let mode: MySqlSslMode = mode.parse().map_err(|_| {
            IngestError::Config(format!(
                "ssl_mode {mode:?} is not one of disabled, preferred, required, verify_ca, \
                 verify_identity"
            ))
        })?;
        options = options.ssl_mode(mode);
    }
    let source_name = config.source_name();
    let hide_password = |message: String| {
        // The driver does not echo passwords; this is a guard should one ever do so.
        if config.password.is_empty() {
            message
        } else {
            message.replace(&config.password, "***")
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(err)) => Err(IngestError::Source {
            source_name,
            message: hide_password(driver_message(&err)),
        }),
        Err(_) => Err(IngestError::Source {
            source_name,
            message: format!(
                "no answer within {} seconds (host down or port filtered?)",
                CONNECT_TIMEOUT.as_secs()
            ),
        }),
    }
}

/// The server's reason, with its error number and SQLSTATE, or the driver's for I/O errors.
fn driver_message(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => match db.try_downcast_ref::<MySqlDatabaseError>() {
            Some(mysql) => match mysql.code() {
                Some(state) => format!(
                    "{} (error {}, SQLSTATE {state})",
                    mysql.message(),
                    mysql.number()
                ),
                None => format!("{} (error {})", mysql.message(), mysql.number()),
            },
            None => db.message().to_string(),
        },
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

fn source_error(source_name: &str, err: sqlx::Error) -> IngestError {
    IngestError::Source {
        source_name: source_name.to_string(),
        message: driver_message(&err),
    }
}

/// A source column and the Arrow type it is read as.
#[derive(Debug, Clone, PartialEq)]
pub struct MySqlColumn {
    pub name: String,
    /// `information_schema.COLUMNS.COLUMN_TYPE`: `int(10) unsigned`, `decimal(12,2)`, ...
    pub mysql_type: String,
    pub nullable: bool,
    pub data_type: DataType,
}

impl MySqlColumn {
    /// A column of `mysql_type` (a `COLUMN_TYPE` text) with the Arrow type it maps to.
    pub fn new(name: &str, mysql_type: &str, nullable: bool) -> Self {
        MySqlColumn {
            name: name.to_string(),
            mysql_type: mysql_type.to_string(),
            nullable,
            data_type: classify(mysql_type).0,
        }
    }
}

/// A base table or view with its columns in table order.
#[derive(Debug, Clone, PartialEq)]
pub struct MySqlTable {
    pub name: String,
    pub is_view: bool,
    pub columns: Vec<MySqlColumn>,
    /// The primary key's columns in key order (empty for views and tables without one).
    pub primary_key: Vec<String>,
}

/// How a column's wire value is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Boolean,
    Signed,
    /// Unsigned integers and `year`.
    Unsigned,
    /// Exact decimals, sent as text in both protocols.
    Decimal,
    Float,
    Double,
    Date,
    /// `datetime` and `timestamp`.
    DateTime,
    /// `bit(n)`: big-endian bytes.
    Bit,
    Text,
    Binary,
}

/// How a column appears in the SELECT list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Select {
    Plain,
    /// `CAST(col AS CHAR)`: the server's text form (TIME, unknown types).
    CastChar,
    /// `ST_AsText(col)`: geometries as WKT (their CAST is binary WKB).
    GeometryText,
}

/// The Arrow type, decoding and selection of a `COLUMN_TYPE` text.
fn classify(column_type: &str) -> (DataType, Kind, Select) {
    let lower = column_type.trim().to_ascii_lowercase();
    let base_end = lower.find(['(', ' ']).unwrap_or(lower.len());
    let base = &lower[..base_end];
    let unsigned = lower.contains(" unsigned");
    // The numbers in parentheses: display width, length, or precision and scale.
    let arguments: Vec<u32> = match (lower.find('('), lower.find(')')) {
        (Some(open), Some(close)) if open < close && base != "enum" && base != "set" => lower
            [open + 1..close]
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect(),
        _ => Vec::new(),
    };
    let plain = |data_type: DataType, kind: Kind| (data_type, kind, Select::Plain);
    match base {
        "tinyint" if arguments.first() == Some(&1) => plain(DataType::Boolean, Kind::Boolean),
        "bool" | "boolean" => plain(DataType::Boolean, Kind::Boolean),
        "tinyint" if unsigned => plain(DataType::Int16, Kind::Unsigned),
        "tinyint" => plain(DataType::Int16, Kind::Signed),
        "smallint" if unsigned => plain(DataType::Int32, Kind::Unsigned),
        "smallint" => plain(DataType::Int16, Kind::Signed),
        "mediumint" if unsigned => plain(DataType::Int32, Kind::Unsigned),
        "mediumint" => plain(DataType::Int32, Kind::Signed),
        "int" | "integer" if unsigned => plain(DataType::Int64, Kind::Unsigned),
        "int" | "integer" => plain(DataType::Int32, Kind::Signed),
        "bigint" if unsigned => plain(DataType::Decimal128(20, 0), Kind::Unsigned),
        "bigint" => plain(DataType::Int64, Kind::Signed),
        "decimal" | "numeric" | "dec" | "fixed" => {
            let precision = arguments.first().copied().unwrap_or(10);
            let scale = arguments.get(1).copied().unwrap_or(0);
            if (1..=38).contains(&precision) && scale <= precision {
                plain(
                    DataType::Decimal128(precision as u8, scale as i8),
                    Kind::Decimal,
                )
            } else {
                // Beyond Decimal128: the exact digits as text rather than a rounded double.
                plain(DataType::Utf8, Kind::Text)
            }
        }
        "float" => plain(DataType::Float32, Kind::Float),
        "double" | "real" => plain(DataType::Float64, Kind::Double),
        "date" => plain(DataType::Date32, Kind::Date),
        "datetime" => plain(
            DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::DateTime,
        ),
        "timestamp" => plain(
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::DateTime,
        ),
        "year" => plain(DataType::Int32, Kind::Unsigned),
        "bit" => plain(DataType::Int64, Kind::Bit),
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set"
        | "json" => plain(DataType::Utf8, Kind::Text),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            plain(DataType::Binary, Kind::Binary)
        }
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" | "geomcollection" => {
            (DataType::Utf8, Kind::Text, Select::GeometryText)
        }
        // TIME spans beyond a day and can be negative, so it is text; so is anything unknown
        // (MariaDB's inet6 and uuid, vectors, ...).
        _ => (DataType::Utf8, Kind::Text, Select::CastChar),
    }
}

/// `` `name` `` with embedded backticks doubled.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn qualified(database: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(database), quote_ident(table))
}

/// A result column as text, whatever its collation (information_schema differs across
/// servers, and the driver's typed decoding refuses binary-collated text).
fn text_at(row: &MySqlRow, index: usize) -> Result<Option<String>, sqlx::Error> {
    let raw = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(None);
    }
    let bytes = <&[u8] as Decode<MySql>>::decode(raw).map_err(sqlx::Error::Decode)?;
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// The base tables and views of `database` (all of them, or only `only_table`).
async fn load_tables(
    conn: &mut MySqlConnection,
    database: &str,
    only_table: Option<&str>,
) -> Result<Vec<MySqlTable>> {
    let source_name = format!("mysql database {database}");
    let table_filter = if only_table.is_some() {
        " AND c.TABLE_NAME = ?"
    } else {
        ""
    };
    let columns_sql = format!(
        "SELECT c.TABLE_NAME, t.TABLE_TYPE, c.COLUMN_NAME, c.COLUMN_TYPE, c.IS_NULLABLE \
         FROM information_schema.COLUMNS c \
         JOIN information_schema.TABLES t \
           ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
         WHERE c.TABLE_SCHEMA = ? AND t.TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED', 'VIEW'){table_filter} \
         ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION"
    );
    let keys_sql = format!(
        "SELECT c.TABLE_NAME, c.COLUMN_NAME FROM information_schema.STATISTICS c \
         WHERE c.TABLE_SCHEMA = ? AND c.INDEX_NAME = 'PRIMARY'{table_filter} \
         ORDER BY c.TABLE_NAME, c.SEQ_IN_INDEX"
    );
    let mut columns_query = sqlx::query(&columns_sql).bind(database);
    let mut keys_query = sqlx::query(&keys_sql).bind(database);
    if let Some(table) = only_table {
        columns_query = columns_query.bind(table);
        keys_query = keys_query.bind(table);
    }
    let column_rows = columns_query
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| source_error(&source_name, e))?;
    let key_rows = keys_query
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| source_error(&source_name, e))?;

    // Grouped by exact name: information_schema compares names case-insensitively, so `t`
    // and `T` (distinct tables on Linux) may interleave in the sorted rows.
    let mut tables: Vec<MySqlTable> = Vec::new();
    let mut index_of: HashMap<String, usize> = HashMap::new();
    let text = |row: &MySqlRow, i: usize| {
        text_at(row, i)
            .map(Option::unwrap_or_default)
            .map_err(|e| source_error(&source_name, e))
    };
    for row in &column_rows {
        let table_name = text(row, 0)?;
        let index = *index_of.entry(table_name.clone()).or_insert_with(|| {
            tables.push(MySqlTable {
                name: table_name,
                is_view: false,
                columns: Vec::new(),
                primary_key: Vec::new(),
            });
            tables.len() - 1
        });
        let table = &mut tables[index];
        table.is_view = text(row, 1)? == "VIEW";
        table.columns.push(MySqlColumn::new(
            &text(row, 2)?,
            &text(row, 3)?,
            text(row, 4)? == "YES",
        ));
    }
    for row in &key_rows {
        if let Some(&index) = index_of.get(&text(row, 0)?) {
            tables[index].primary_key.push(text(row, 1)?);
        }
    }
    Ok(tables)
}

/// The base tables and views of `database`, sorted by name, each with its columns.
pub async fn list_tables(conn: &mut MySqlConnection, database: &str) -> Result<Vec<MySqlTable>> {
    load_tables(conn, database, None).await
}

/// One table or view of `database`; a Source error saying "no such table" when it is missing.
pub async fn discover_table(
    conn: &mut MySqlConnection,
    database: &str,
    table: &str,
) -> Result<MySqlTable> {
    let mut tables = load_tables(conn, database, Some(table)).await?;
    // Prefer the exact spelling; otherwise the one table the server matched.
    let position = tables
        .iter()
        .position(|t| t.name == table)
        .or(if tables.len() == 1 { Some(0) } else { None });
    match position {
        Some(position) => Ok(tables.swap_remove(position)),
        None => Err(IngestError::Source {
            source_name: format!("mysql table {database}.{table}"),
            message: "no such table or view (or none visible to this user)".to_string(),
        }),
    }
}

/// The Arrow schema of `columns`.
pub fn arrow_schema(columns: &[MySqlColumn]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.data_type.clone(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// The smallest and largest value of an integer `column` (to split a big table into ranges
/// read in parallel). `None` when the table is empty, the column is not an integer, or its
/// values do not fit an i64 (a `bigint unsigned` above 2^63).
pub async fn key_range(
    conn: &mut MySqlConnection,
    database: &str,
    table: &str,
    column: &str,
) -> Result<Option<(i64, i64)>> {
    let found = discover_table(conn, database, table).await?;
    let Some(key) = found.columns.iter().find(|c| c.name == column) else {
        return Err(IngestError::Source {
            source_name: format!("mysql table {database}.{table}"),
            message: format!("no column {column:?}"),
        });
    };
    if !matches!(classify(&key.mysql_type).1, Kind::Signed | Kind::Unsigned)
        || key.mysql_type.to_ascii_lowercase().starts_with("year")
    {
        return Ok(None);
    }
    let quoted = quote_ident(column);
    // As text, so that signed and unsigned columns come back alike.
    let sql = format!(
        "SELECT CAST(MIN({quoted}) AS CHAR), CAST(MAX({quoted}) AS CHAR) FROM {}",
        qualified(database, &found.name)
    );
    let source_name = format!("mysql table {database}.{table}");
    let row = sqlx::query(&sql)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| source_error(&source_name, e))?;
    let bound = |i: usize| -> Result<Option<i64>> {
        let text = text_at(&row, i).map_err(|e| source_error(&source_name, e))?;
        Ok(text.and_then(|t| t.parse::<i64>().ok()))
    };
    Ok(match (bound(0)?, bound(1)?) {
        (Some(min), Some(max)) => Some((min, max)),
        _ => None,
    })
}

/// Streams `SELECT <columns> FROM <database>.<table> [WHERE <filter>] [ORDER BY <order_by>]`
/// as record batches of up to `batch_rows` rows. `filter` and `order_by` are SQL the caller
/// built from checked names. The query is prepared first, so a bad filter fails here; rows are
/// decoded on a task of their own while the caller consumes batches, with at most two batches
/// waiting. Dropping the stream stops the read (and closes the connection).
pub async fn read_arrow(
    mut conn: MySqlConnection,
    database: &str,
    table: &str,
    columns: &[MySqlColumn],
    filter: Option<String>,
    order_by: Option<String>,
    batch_rows: usize,
) -> Result<impl Stream<Item = Result<RecordBatch>> + Send + 'static + use<>> {
    let source_name = format!("mysql table {database}.{table}");
    if columns.is_empty() {
        return Err(IngestError::Config(format!(
            "no columns to read from {database}.{table}"
        )));
    }
    let select = columns
        .iter()
        .map(|column| {
            let quoted = quote_ident(&column.name);
            match classify(&column.mysql_type).2 {
                Select::Plain => quoted,
                Select::CastChar => format!("CAST({quoted} AS CHAR) AS {quoted}"),
                Select::GeometryText => format!("ST_AsText({quoted}) AS {quoted}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!("SELECT {select} FROM {}", qualified(database, table));
    if let Some(filter) = filter {
        sql.push_str(&format!(" WHERE {filter}"));
    }
    if let Some(order_by) = order_by {
        sql.push_str(&format!(" ORDER BY {order_by}"));
    }
    let mut decoder = BatchDecoder::new(columns, batch_rows.max(1))?;
    // Prepared statements are cached per connection: the fetch below reuses this one.
    conn.prepare(sql.as_str())
        .await
        .map_err(|e| source_error(&source_name, e))?;

    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
    tokio::spawn(async move {
        let mut rows = sqlx::query(&sql).fetch(&mut conn);
        while let Some(row) = rows.next().await {
            let full = row
                .map_err(|e| source_error(&source_name, e))
                .and_then(|row| decoder.push_row(&row));
            let outcome = match full {
                Ok(false) => continue,
                Ok(true) => decoder.finish_batch(),
                Err(err) => Err(err),
            };
            let failed = outcome.is_err();
            if sender.send(outcome).await.is_err() || failed {
                return; // the reader is gone, or the read failed
            }
        }
        if decoder.rows > 0 {
            let _ = sender.send(decoder.finish_batch()).await;
        }
    });
    Ok(futures::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|batch| (batch, receiver)) },
    ))
}

/// An Arrow builder per column type.
enum ColumnBuilder {
    Boolean(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Decimal(Decimal128Builder, i8),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
}

struct ColumnDecoder {
    name: String,
    mysql_type: String,
    kind: Kind,
    builder: ColumnBuilder,
}

/// Decodes rows into builders and cuts record batches.
struct BatchDecoder {
    schema: SchemaRef,
    columns: Vec<ColumnDecoder>,
    batch_rows: usize,
    rows: usize,
    rows_before: u64,
}

impl BatchDecoder {
    fn new(columns: &[MySqlColumn], batch_rows: usize) -> Result<Self> {
        let decoders = columns
            .iter()
            .map(|column| column_decoder(column, batch_rows))
            .collect::<Result<Vec<_>>>()?;
        Ok(BatchDecoder {
            schema: arrow_schema(columns),
            columns: decoders,
            batch_rows,
            rows: 0,
            rows_before: 0,
        })
    }

    /// Adds one row; true when the batch is full.
    fn push_row(&mut self, row: &MySqlRow) -> Result<bool> {
        let row_number = self.rows_before + self.rows as u64 + 1;
        if row.len() != self.columns.len() {
            return Err(IngestError::Data(format!(
                "row {row_number} has {} values, expected {}",
                row.len(),
                self.columns.len()
            )));
        }
        for (index, column) in self.columns.iter_mut().enumerate() {
            let value = row
                .try_get_raw(index)
                .and_then(|raw| {
                    // The driver also reports binary zero dates as NULL here.
                    if raw.is_null() {
                        Ok(None)
                    } else {
                        <&[u8] as Decode<MySql>>::decode(raw)
                            .map(Some)
                            .map_err(sqlx::Error::Decode)
                    }
                })
                .map_err(|e| {
                    IngestError::Data(format!("column {}, row {row_number}: {e}", column.name))
                })?;
            column.append(value).map_err(|message| {
                IngestError::Data(format!(
                    "column {} ({}), row {row_number}: {message} (value {})",
                    column.name,
                    column.mysql_type,
                    shown(value.unwrap_or_default())
                ))
            })?;
        }
        self.rows += 1;
        Ok(self.rows >= self.batch_rows)
    }

    fn finish_batch(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|column| match &mut column.builder {
                ColumnBuilder::Boolean(b) => Arc::new(b.finish()) as ArrayRef,
                ColumnBuilder::Int16(b) => Arc::new(b.finish()),
                ColumnBuilder::Int32(b) => Arc::new(b.finish()),
                ColumnBuilder::Int64(b) => Arc::new(b.finish()),
                ColumnBuilder::Decimal(b, _) => Arc::new(b.finish()),
                ColumnBuilder::Float32(b) => Arc::new(b.finish()),
                ColumnBuilder::Float64(b) => Arc::new(b.finish()),
                ColumnBuilder::Date(b) => Arc::new(b.finish()),
                ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
                ColumnBuilder::Utf8(b) => Arc::new(b.finish()),
                ColumnBuilder::Binary(b) => Arc::new(b.finish()),
            })
            .collect();
        self.rows_before += self.rows as u64;
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| IngestError::Data(format!("cannot assemble a record batch: {e}")))
    }
}

fn column_decoder(column: &MySqlColumn, capacity: usize) -> Result<ColumnDecoder> {
    let (_, kind, _) = classify(&column.mysql_type);
    let builder = match (&column.data_type, kind) {
        (DataType::Boolean, Kind::Boolean) => {
            ColumnBuilder::Boolean(BooleanBuilder::with_capacity(capacity))
        }
        (DataType::Int16, Kind::Signed | Kind::Unsigned) => {
            ColumnBuilder::Int16(Int16Builder::with_capacity(capacity))
        }
        (DataType::Int32, Kind::Signed | Kind::Unsigned) => {
            ColumnBuilder::Int32(Int32Builder::with_capacity(capacity))
        }
        (DataType::Int64, Kind::Signed | Kind::Unsigned | Kind::Bit) => {
            ColumnBuilder::Int64(Int64Builder::with_capacity(capacity))
        }
        (DataType::Decimal128(precision, scale), Kind::Decimal | Kind::Unsigned) => {
            let builder = Decimal128Builder::with_capacity(capacity)
                .with_precision_and_scale(*precision, *scale)
                .map_err(|e| IngestError::Config(format!("column {}: {e}", column.name)))?;
            ColumnBuilder::Decimal(builder, *scale)
        }
        (DataType::Float32, Kind::Float) => {
            ColumnBuilder::Float32(Float32Builder::with_capacity(capacity))
        }
        (DataType::Float64, Kind::Double) => {
            ColumnBuilder::Float64(Float64Builder::with_capacity(capacity))
        }
        (DataType::Date32, Kind::Date) => {
            ColumnBuilder::Date(Date32Builder::with_capacity(capacity))
        }
        (DataType::Timestamp(TimeUnit::Microsecond, zone), Kind::DateTime) => {
            ColumnBuilder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity)
                    .with_timezone_opt(zone.clone()),
            )
        }
        (DataType::Utf8, Kind::Text) => {
            ColumnBuilder::Utf8(StringBuilder::with_capacity(capacity, capacity * 16))
        }
        (DataType::Binary, Kind::Binary) => {
            ColumnBuilder::Binary(BinaryBuilder::with_capacity(capacity, capacity * 16))
        }
        (data_type, _) => {
            return Err(IngestError::Config(format!(
                "column {} of type {} cannot be read as {data_type}",
                column.name, column.mysql_type
            )));
        }
    };
    Ok(ColumnDecoder {
        name: column.name.clone(),
        mysql_type: column.mysql_type.clone(),
        kind,
        builder,
    })
}

/// A value for an error message: text when it is text, hex otherwise, cut to 60 characters.
fn shown(bytes: &[u8]) -> String {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => format!("{text:?}"),
        Err(_) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    };
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

impl ColumnDecoder {
    /// Appends one value in the binary protocol's encoding (`None`: NULL).
    fn append(&mut self, value: Option<&[u8]>) -> std::result::Result<(), String> {
        let Some(bytes) = value else {
            match &mut self.builder {
                ColumnBuilder::Boolean(b) => b.append_null(),
                ColumnBuilder::Int16(b) => b.append_null(),
                ColumnBuilder::Int32(b) => b.append_null(),
                ColumnBuilder::Int64(b) => b.append_null(),
                ColumnBuilder::Decimal(b, _) => b.append_null(),
                ColumnBuilder::Float32(b) => b.append_null(),
                ColumnBuilder::Float64(b) => b.append_null(),
                ColumnBuilder::Date(b) => b.append_null(),
                ColumnBuilder::Timestamp(b) => b.append_null(),
                ColumnBuilder::Utf8(b) => b.append_null(),
                ColumnBuilder::Binary(b) => b.append_null(),
            }
            return Ok(());
        };
        let kind = self.kind;
        let out_of_range = |_| "out of range for the column's Arrow type".to_string();
        match &mut self.builder {
            ColumnBuilder::Boolean(b) => b.append_value(integer(kind, bytes)? != 0),
            ColumnBuilder::Int16(b) => {
                b.append_value(i16::try_from(integer(kind, bytes)?).map_err(out_of_range)?)
            }
            ColumnBuilder::Int32(b) => {
                b.append_value(i32::try_from(integer(kind, bytes)?).map_err(out_of_range)?)
            }
            ColumnBuilder::Int64(b) => {
                b.append_value(i64::try_from(integer(kind, bytes)?).map_err(out_of_range)?)
            }
            ColumnBuilder::Decimal(b, scale) => b.append_value(match kind {
                Kind::Decimal => parse_decimal(bytes, *scale)?,
                _ => integer(kind, bytes)?,
            }),
            ColumnBuilder::Float32(b) => b.append_value(match bytes.len() {
                4 => f32::from_le_bytes(fixed(bytes)?),
                _ => f64::from_le_bytes(fixed(bytes)?) as f32,
            }),
            ColumnBuilder::Float64(b) => b.append_value(match bytes.len() {
                4 => f32::from_le_bytes(fixed(bytes)?) as f64,
                _ => f64::from_le_bytes(fixed(bytes)?),
            }),
            ColumnBuilder::Date(b) => b.append_option(binary_datetime(bytes)?.date_days()),
            ColumnBuilder::Timestamp(b) => b.append_option(binary_datetime(bytes)?.micros()),
            ColumnBuilder::Utf8(b) => b.append_value(
                std::str::from_utf8(bytes).map_err(|_| "not valid UTF-8 text".to_string())?,
            ),
            ColumnBuilder::Binary(b) => b.append_value(bytes),
        }
        Ok(())
    }
}

fn fixed<const N: usize>(bytes: &[u8]) -> std::result::Result<[u8; N], String> {
    bytes
        .try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", bytes.len()))
}

/// An integer in the binary protocol: little-endian of the column's width (`mediumint` is sent
/// in 4 bytes), except `bit(n)`, which is a big-endian byte string.
fn integer(kind: Kind, bytes: &[u8]) -> std::result::Result<i128, String> {
    Ok(match (kind, bytes.len()) {
        (Kind::Bit, 0..=8) => {
            // bit(64) values above 2^63 wrap to negative i64s (the same 64 bits).
            let bits = bytes.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64);
            bits as i64 as i128
        }
        (Kind::Signed | Kind::Boolean, 1) => bytes[0] as i8 as i128,
        (Kind::Signed | Kind::Boolean, 2) => i16::from_le_bytes(fixed(bytes)?) as i128,
        (Kind::Signed | Kind::Boolean, 4) => i32::from_le_bytes(fixed(bytes)?) as i128,
        (Kind::Signed | Kind::Boolean, 8) => i64::from_le_bytes(fixed(bytes)?) as i128,
        (Kind::Unsigned, 1) => bytes[0] as i128,
        (Kind::Unsigned, 2) => u16::from_le_bytes(fixed(bytes)?) as i128,
        (Kind::Unsigned, 4) => u32::from_le_bytes(fixed(bytes)?) as i128,
        (Kind::Unsigned, 8) => u64::from_le_bytes(fixed(bytes)?) as i128,
        (_, length) => return Err(format!("an integer of {length} bytes")),
    })
}

/// A decimal's text (`-1234.50`) as an integer scaled by 10^scale.
fn parse_decimal(bytes: &[u8], scale: i8) -> std::result::Result<i128, String> {
    let (negative, digits) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        Some(b'+') => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    let mut value: i128 = 0;
    let mut fraction_digits: Option<i8> = None;
    for &byte in digits {
        match byte {
            b'0'..=b'9' => {
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add((byte - b'0') as i128))
                    .ok_or("too many digits")?;
                if let Some(count) = fraction_digits.as_mut() {
                    *count += 1;
                }
            }
            b'.' if fraction_digits.is_none() => fraction_digits = Some(0),
            _ => return Err("not a decimal number".to_string()),
        }
    }
    let fraction_digits = fraction_digits.unwrap_or(0);
    if digits.is_empty() || fraction_digits > scale {
        return Err(format!("not a decimal with {scale} digits after the point"));
    }
    let value = value
        .checked_mul(10i128.pow((scale - fraction_digits) as u32))
        .ok_or("too many digits")?;
    Ok(if negative { -value } else { value })
}

/// A date and time of day as MySQL sends it (any part may be zero in a "zero date").
#[derive(Debug, Default, PartialEq)]
struct DateTimeParts {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    micros: u32,
}

/// The binary protocol's DATE / DATETIME / TIMESTAMP: a length byte (0, 4, 7 or 11), year
/// (2 bytes), month, day, hour, minute, second, microseconds (4 bytes).
fn binary_datetime(bytes: &[u8]) -> std::result::Result<DateTimeParts, String> {
    let length = *bytes.first().ok_or("an empty date")? as usize;
    if bytes.len() != length + 1 || ![0, 4, 7, 11].contains(&length) {
        return Err(format!("a date of {} bytes", bytes.len()));
    }
    let mut parts = DateTimeParts::default();
    if length >= 4 {
        parts.year = u16::from_le_bytes([bytes[1], bytes[2]]);
        parts.month = bytes[3];
        parts.day = bytes[4];
    }
    if length >= 7 {
        parts.hour = bytes[5];
        parts.minute = bytes[6];
        parts.second = bytes[7];
    }
    if length == 11 {
        parts.micros = u32::from_le_bytes(fixed(&bytes[8..12])?);
    }
    Ok(parts)
}

impl DateTimeParts {
    /// Days since 1970-01-01; `None` for zero dates ('0000-00-00') and others no calendar has,
    /// such as '2024-02-30' (possible with ALLOW_INVALID_DATES).
    fn date_days(&self) -> Option<i32> {
        let date =
            chrono::NaiveDate::from_ymd_opt(self.year as i32, self.month as u32, self.day as u32)?;
        Some(chrono::Datelike::num_days_from_ce(&date) - UNIX_EPOCH_DAYS_FROM_CE)
    }

    /// Microseconds since 1970-01-01 00:00:00; `None` where [`Self::date_days`] is `None`.
    fn micros(&self) -> Option<i64> {
        if self.hour > 23 || self.minute > 59 || self.second > 59 || self.micros > 999_999 {
            return None;
        }
        let seconds = (self.hour as i64 * 60 + self.minute as i64) * 60 + self.second as i64;
        Some(self.date_days()? as i64 * MICROS_PER_DAY + seconds * 1_000_000 + self.micros as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Decimal128Array};
    use arrow::datatypes::{
        Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
        TimestampMicrosecondType,
    };

    fn local() -> MySqlSourceConfig {
        MySqlSourceConfig {
            host: "127.0.0.1".to_string(),
            port: 3306,
            user: "root".to_string(),
            password: String::new(),
            database: "test".to_string(),
            ssl_mode: None,
        }
    }

    /// A table name no other test run uses.
    fn unique(stem: &str) -> String {
        format!("polder_{stem}_{}", std::process::id())
    }

    async fn execute(conn: &mut MySqlConnection, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn read_all(
        table: &MySqlTable,
        filter: Option<&str>,
        order_by: Option<&str>,
        batch_rows: usize,
    ) -> Vec<RecordBatch> {
        let conn = connect(&local()).await.unwrap();
        let stream = read_arrow(
            conn,
            "test",
            &table.name,
            &table.columns,
            filter.map(str::to_string),
            order_by.map(str::to_string),
            batch_rows,
        )
        .await
        .unwrap();
        stream.map(|batch| batch.unwrap()).collect().await
    }

    const EVERY_TYPE: &str = "id bigint NOT NULL, region varchar(8) NOT NULL, flag bool, \
        tiny tinyint, tiny_u tinyint unsigned, small smallint, small_u smallint unsigned, \
        medium mediumint, medium_u mediumint unsigned, regular int, regular_u int unsigned, \
        big bigint, big_u bigint unsigned, price decimal(12,2), huge decimal(50,10), \
        ratio float, score double, approx real, born date, seen datetime(6), \
        stamped timestamp(6) NULL, span time(3), yr year, code char(3), name varchar(40), \
        body text, long_body longtext, mood enum('sad','happy'), tags set('a','b'), doc json, \
        fixed_bin binary(4), raw varbinary(16), blob_col blob, mask bit(10), spot point, \
        addr inet6, PRIMARY KEY (region, id)";

    #[tokio::test]
    async fn discovery_maps_every_type_with_nullability_and_primary_key() {
        let mut conn = connect(&local()).await.unwrap();
        let name = unique("types");
        let view = unique("types_view");
        execute(
            &mut conn,
            &format!(
                "DROP VIEW IF EXISTS {view}; DROP TABLE IF EXISTS {name};
                 CREATE TABLE {name} ({EVERY_TYPE});
                 CREATE VIEW {view} AS SELECT id, name FROM {name};"
            ),
        )
        .await;
        let table = discover_table(&mut conn, "test", &name).await.unwrap();
        let utc = Some("UTC".into());
        let expected = [
            ("id", "bigint(20)", DataType::Int64),
            ("region", "varchar(8)", DataType::Utf8),
            ("flag", "tinyint(1)", DataType::Boolean),
            ("tiny", "tinyint(4)", DataType::Int16),
            ("tiny_u", "tinyint(3) unsigned", DataType::Int16),
            ("small", "smallint(6)", DataType::Int16),
            ("small_u", "smallint(5) unsigned", DataType::Int32),
            ("medium", "mediumint(9)", DataType::Int32),
            ("medium_u", "mediumint(8) unsigned", DataType::Int32),
            ("regular", "int(11)", DataType::Int32),
            ("regular_u", "int(10) unsigned", DataType::Int64),
            ("big", "bigint(20)", DataType::Int64),
            ("big_u", "bigint(20) unsigned", DataType::Decimal128(20, 0)),
            ("price", "decimal(12,2)", DataType::Decimal128(12, 2)),
            ("huge", "decimal(50,10)", DataType::Utf8),
            ("ratio", "float", DataType::Float32),
            ("score", "double", DataType::Float64),
            ("approx", "double", DataType::Float64),
            ("born", "date", DataType::Date32),
            (
                "seen",
                "datetime(6)",
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ),
            (
                "stamped",
                "timestamp(6)",
                DataType::Timestamp(TimeUnit::Microsecond, utc),
            ),
            ("span", "time(3)", DataType::Utf8),
            ("yr", "year(4)", DataType::Int32),
            ("code", "char(3)", DataType::Utf8),
            ("name", "varchar(40)", DataType::Utf8),
            ("body", "text", DataType::Utf8),
            ("long_body", "longtext", DataType::Utf8),
            ("mood", "enum('sad','happy')", DataType::Utf8),
            ("tags", "set('a','b')", DataType::Utf8),
            ("doc", "longtext", DataType::Utf8),
            ("fixed_bin", "binary(4)", DataType::Binary),
            ("raw", "varbinary(16)", DataType::Binary),
            ("blob_col", "blob", DataType::Binary),
            ("mask", "bit(10)", DataType::Int64),
            ("spot", "point", DataType::Utf8),
            ("addr", "inet6", DataType::Utf8),
        ];
        let found: Vec<(&str, &str, DataType)> = table
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.mysql_type.as_str(), c.data_type.clone()))
            .collect();
        assert_eq!(found, expected);
        assert_eq!(
            table.primary_key,
            ["region", "id"],
            "key order, not table order"
        );
        assert!(!table.is_view);
        assert!(!table.columns[0].nullable && !table.columns[1].nullable);
        assert!(table.columns[2..].iter().all(|c| c.nullable));
        let schema = arrow_schema(&table.columns);
        assert_eq!(schema.field(13).data_type(), &DataType::Decimal128(12, 2));
        assert!(!schema.field(0).is_nullable());

        let tables = list_tables(&mut conn, "test").await.unwrap();
        let listed = tables.iter().find(|t| t.name == name).unwrap();
        assert_eq!(listed, &table);
        let listed_view = tables.iter().find(|t| t.name == view).unwrap();
        assert!(listed_view.is_view && listed_view.primary_key.is_empty());
        assert_eq!(listed_view.columns.len(), 2);

        let err = discover_table(&mut conn, "test", &unique("missing"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, IngestError::Source { .. }) && err.to_string().contains("no such table"),
            "{err}"
        );
        execute(&mut conn, &format!("DROP VIEW {view}; DROP TABLE {name};")).await;
    }

    #[tokio::test]
    async fn values_round_trip_exactly() {
        let mut conn = connect(&local()).await.unwrap();
        let name = unique("values");
        // Zero dates need a permissive sql_mode; the TIMESTAMP is written at +02:00.
        execute(
            &mut conn,
            &format!(
                "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} ({EVERY_TYPE});
                 SET SESSION sql_mode = '', time_zone = '+02:00';
                 INSERT INTO {name} VALUES (1, 'eu', true, -128, 255, -32768, 65535, -8388608,
                    16777215, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615,
                    -1234.56, -1234567890123456789012345678901234567890.0123456789, 16777215,
                    0.1, -2.5e-300, '1969-12-31', '2024-02-29 13:14:15.123456',
                    '2024-05-06 09:08:09.654321', '-838:59:59.000', 2155, 'ab', 'grüße 🦀',
                    'line\\none', REPEAT('x', 70000), 'happy', 'a,b', '{{\"k\": [1, 2]}}', 'ab',
                    x'00ff10', x'', b'1010101010', POINT(1, 2), '::1');
                 INSERT INTO {name} (id, region) VALUES (2, 'eu');
                 INSERT INTO {name} (id, region, born, seen, stamped, price, big_u)
                    VALUES (3, 'us', '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00',
                            0.05, 0);"
            ),
        )
        .await;
        let table = discover_table(&mut conn, "test", &name).await.unwrap();
        let batches = read_all(&table, None, Some("id"), 2).await;
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            [2, 1]
        );
        let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        assert_eq!(batch.schema(), arrow_schema(&table.columns));
        let column = |name: &str| batch.column_by_name(name).unwrap().clone();
        let text = |name: &str, row: usize| column(name).as_string::<i32>().value(row).to_string();
        let bytes = |name: &str, row: usize| column(name).as_binary::<i32>().value(row).to_vec();
        let decimal = |name: &str, row: usize| {
            let array = column(name);
            let array = array.as_any().downcast_ref::<Decimal128Array>().unwrap();
            array.value(row)
        };
        let micros = |name: &str, row: usize| {
            column(name)
                .as_primitive::<TimestampMicrosecondType>()
                .value(row)
        };
        let at = |y, mo, d, h, mi, s, us| {
            chrono::NaiveDate::from_ymd_opt(y, mo, d)
                .unwrap()
                .and_hms_micro_opt(h, mi, s, us)
                .unwrap()
                .and_utc()
                .timestamp_micros()
        };

        assert!(column("flag").as_boolean().value(0));
        assert_eq!(column("tiny").as_primitive::<Int16Type>().value(0), -128);
        assert_eq!(column("tiny_u").as_primitive::<Int16Type>().value(0), 255);
        assert_eq!(column("small").as_primitive::<Int16Type>().value(0), -32768);
        assert_eq!(
            column("small_u").as_primitive::<Int32Type>().value(0),
            65535
        );
        assert_eq!(
            column("medium").as_primitive::<Int32Type>().value(0),
            -8388608
        );
        assert_eq!(
            column("medium_u").as_primitive::<Int32Type>().value(0),
            16777215
        );
        assert_eq!(
            column("regular").as_primitive::<Int32Type>().value(0),
            i32::MIN
        );
        assert_eq!(
            column("regular_u").as_primitive::<Int64Type>().value(0),
            4294967295
        );
        assert_eq!(column("big").as_primitive::<Int64Type>().value(0), i64::MIN);
        assert_eq!(decimal("big_u", 0), u64::MAX as i128);
        assert_eq!(decimal("big_u", 2), 0);
        assert_eq!(decimal("price", 0), -123456);
        assert_eq!(decimal("price", 2), 5, "0.05 at scale 2");
        assert_eq!(
            text("huge", 0),
            "-1234567890123456789012345678901234567890.0123456789"
        );
        assert_eq!(
            column("ratio").as_primitive::<Float32Type>().value(0),
            16777215.0,
            "every bit of a FLOAT, not its six-digit text"
        );
        assert_eq!(column("score").as_primitive::<Float64Type>().value(0), 0.1);
        assert_eq!(
            column("approx").as_primitive::<Float64Type>().value(0),
            -2.5e-300
        );
        assert_eq!(column("born").as_primitive::<Date32Type>().value(0), -1);
        assert_eq!(micros("seen", 0), at(2024, 2, 29, 13, 14, 15, 123_456));
        assert_eq!(
            micros("stamped", 0),
            at(2024, 5, 6, 7, 8, 9, 654_321),
            "written at +02:00, read in UTC"
        );
        assert_eq!(text("span", 0), "-838:59:59.000");
        assert_eq!(column("yr").as_primitive::<Int32Type>().value(0), 2155);
        assert_eq!(text("code", 0), "ab");
        assert_eq!(text("name", 0), "grüße 🦀");
        assert_eq!(text("body", 0), "line\none");
        assert_eq!(text("long_body", 0).len(), 70000);
        assert_eq!(text("mood", 0), "happy");
        assert_eq!(text("tags", 0), "a,b");
        assert_eq!(text("doc", 0), r#"{"k": [1, 2]}"#);
        assert_eq!(bytes("fixed_bin", 0), b"ab\0\0", "binary(n) is zero-padded");
        assert_eq!(bytes("raw", 0), [0x00, 0xff, 0x10]);
        assert!(bytes("blob_col", 0).is_empty() && column("blob_col").is_valid(0));
        assert_eq!(
            column("mask").as_primitive::<Int64Type>().value(0),
            0b1010101010
        );
        assert_eq!(text("spot", 0), "POINT(1 2)");
        assert_eq!(text("addr", 0), "::1");

        // Row 2: every nullable column NULL.
        for field in batch.schema().fields().iter().skip(2) {
            assert!(column(field.name()).is_null(1), "{} NULL", field.name());
        }
        // Row 3: zero dates become NULL.
        for name in ["born", "seen", "stamped"] {
            assert!(column(name).is_null(2), "zero {name} is NULL");
        }
        execute(&mut conn, &format!("DROP TABLE {name}")).await;
    }

    #[tokio::test]
    async fn filters_order_and_key_ranges() {
        let mut conn = connect(&local()).await.unwrap();
        let name = unique("ranges");
        let empty = unique("ranges_empty");
        execute(
            &mut conn,
            &format!(
                "DROP TABLE IF EXISTS {name}, {empty};
                 CREATE TABLE {name} (id int unsigned PRIMARY KEY, label varchar(10), born date);
                 INSERT INTO {name} WITH RECURSIVE n(i) AS
                    (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)
                    SELECT (a.i - 1) * 50 + b.i, CONCAT('row', (a.i - 1) * 50 + b.i), NULL
                    FROM n a CROSS JOIN n b;
                 CREATE TABLE {empty} (id bigint PRIMARY KEY);"
            ),
        )
        .await;
        let table = discover_table(&mut conn, "test", &name).await.unwrap();
        let batches = read_all(
            &table,
            Some("id > 100 AND id <= 2100"),
            Some("id DESC"),
            750,
        )
        .await;
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            [750, 750, 500]
        );
        let ids = |batch: &RecordBatch| batch.column(0).as_primitive::<Int64Type>().clone();
        assert_eq!(ids(&batches[0]).value(0), 2100);
        assert_eq!(ids(&batches[2]).value(499), 101);
        assert_eq!(batches[1].column(1).as_string::<i32>().value(0), "row1350");

        assert_eq!(
            key_range(&mut conn, "test", &name, "id").await.unwrap(),
            Some((1, 2500))
        );
        assert_eq!(
            key_range(&mut conn, "test", &name, "label").await.unwrap(),
            None
        );
        assert_eq!(
            key_range(&mut conn, "test", &empty, "id").await.unwrap(),
            None
        );
        let err = key_range(&mut conn, "test", &name, "nope")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no column \"nope\""), "{err}");

        // A bad filter fails when the read starts, naming the server's reason.
        let err = match read_arrow(
            connect(&local()).await.unwrap(),
            "test",
            &name,
            &table.columns,
            Some("no_such_column = 1".to_string()),
            None,
            10,
        )
        .await
        {
            Ok(_) => panic!("a bad filter must fail"),
            Err(err) => err,
        };
        assert!(err.to_string().contains("no_such_column"), "{err}");

        // Dropping a stream part-way ends the read without waiting for the rest.
        let mut stream = Box::pin(
            read_arrow(
                connect(&local()).await.unwrap(),
                "test",
                &name,
                &table.columns,
                None,
                None,
                100,
            )
            .await
            .unwrap(),
        );
        assert_eq!(stream.next().await.unwrap().unwrap().num_rows(), 100);
        drop(stream);
        execute(&mut conn, &format!("DROP TABLE {name}, {empty}")).await;
    }

    #[tokio::test]
    async fn connection_failures_are_clear_and_never_show_the_password() {
        let secret = "Sup3r-Secret-Pw";
        let attempt = |change: &dyn Fn(&mut MySqlSourceConfig)| {
            let mut config = local();
            config.password = secret.to_string();
            change(&mut config);
            async move { connect(&config).await.unwrap_err().to_string() }
        };
        let wrong_password = attempt(&|_| {}).await;
        assert!(
            wrong_password.contains("mysql 127.0.0.1:3306/test")
                && wrong_password.contains("Access denied"),
            "{wrong_password}"
        );
        let unknown_database = attempt(&|c| {
            c.password.clear();
            c.database = "polder_no_such_db".to_string();
        })
        .await;
        assert!(
            unknown_database.contains("Unknown database"),
            "{unknown_database}"
        );
        let unreachable = attempt(&|c| c.port = 1).await;
        assert!(
            unreachable.contains("mysql 127.0.0.1:1/test") && unreachable.contains("refused"),
            "{unreachable}"
        );
        let bad_tls = attempt(&|c| c.ssl_mode = Some("sometimes".to_string())).await;
        assert!(
            bad_tls.starts_with("invalid configuration: ssl_mode"),
            "{bad_tls}"
        );
        for message in [&wrong_password, &unknown_database, &unreachable, &bad_tls] {
            assert!(!message.contains(secret), "{message}");
        }

        let config: MySqlSourceConfig = serde_json::from_str(
            r#"{"host": "db", "user": "app", "password": "Sup3r-Secret-Pw", "database": "shop"}"#,
        )
        .unwrap();
        assert_eq!((config.port, config.ssl_mode.as_deref()), (3306, None));
        assert!(!format!("{config:?}").contains(secret));
    }

    #[test]
    fn column_types_map_to_arrow() {
        let cases = [
            ("TINYINT(1) UNSIGNED", DataType::Boolean),
            ("tinyint unsigned", DataType::Int16),
            ("int", DataType::Int32),
            ("int unsigned zerofill", DataType::Int64),
            ("bigint unsigned", DataType::Decimal128(20, 0)),
            ("decimal(38,38)", DataType::Decimal128(38, 38)),
            ("decimal(39,2)", DataType::Utf8),
            ("decimal", DataType::Decimal128(10, 0)),
            ("float(7,3)", DataType::Float32),
            ("enum('x(1)','y')", DataType::Utf8),
            ("uuid", DataType::Utf8),
        ];
        for (mysql_type, data_type) in cases {
            assert_eq!(classify(mysql_type).0, data_type, "{mysql_type}");
        }
        assert_eq!(classify("time(6)").2, Select::CastChar);
        assert_eq!(quote_ident("we`ird"), "`we``ird`");
    }

    #[test]
    fn decimals_and_dates_decode_exactly() {
        assert_eq!(parse_decimal(b"-1234.56", 2), Ok(-123456));
        assert_eq!(parse_decimal(b"7", 3), Ok(7000));
        assert_eq!(parse_decimal(b"0.5", 2), Ok(50));
        assert!(parse_decimal(b"1.234", 2).is_err());
        assert!(parse_decimal(b"1e5", 0).is_err());
        assert!(parse_decimal(b"-", 0).is_err());

        // Length 0 is the zero date; 2024-02-30 exists only with ALLOW_INVALID_DATES.
        assert_eq!(binary_datetime(&[0]).unwrap().date_days(), None);
        assert_eq!(
            binary_datetime(&[4, 0xe8, 0x07, 2, 30])
                .unwrap()
                .date_days(),
            None
        );
        let leap = binary_datetime(&[7, 0xe8, 0x07, 2, 29, 0, 0, 1]).unwrap();
        assert_eq!(leap.micros(), Some(1_709_164_801_000_000));
        assert!(binary_datetime(&[4, 1, 2]).is_err());

        let mut decoder = column_decoder(&MySqlColumn::new("n", "int(11)", true), 4).unwrap();
        let err = decoder.append(Some(&[1, 2, 3])).unwrap_err();
        assert!(err.contains("3 bytes"), "{err}");
        let mismatch = MySqlColumn {
            data_type: DataType::Date32,
            ..MySqlColumn::new("n", "varchar(3)", true)
        };
        assert!(column_decoder(&mismatch, 4).is_err());
    }

    /// `cargo test --release -- --ignored --nocapture read_speed`
    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "a benchmark: builds a 1,000,000-row table"]
    async fn read_speed() {
        let mut conn = connect(&local()).await.unwrap();
        let name = unique("bench");
        execute(
            &mut conn,
            &format!(
                "DROP TABLE IF EXISTS {name};
                 CREATE TABLE {name} (id bigint PRIMARY KEY, qty int, amount decimal(12,2),
                    score double, ratio float, label varchar(32), note text, created datetime(6),
                    day date, active tinyint(1));
                 INSERT INTO {name} WITH RECURSIVE n(i) AS
                    (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
                    SELECT (a.i - 1) * 1000 + b.i AS seq, b.i, a.i / 7, a.i * 1.5, b.i / 3,
                        CONCAT('label-', a.i), IF(b.i % 5 = 0, NULL, REPEAT('n', b.i % 20)),
                        TIMESTAMPADD(MICROSECOND, ((a.i - 1) * 1000 + b.i) * 1234567, '2020-01-01'),
                        DATE_ADD('2000-01-01', INTERVAL b.i DAY), b.i % 2
                    FROM n a CROSS JOIN n b;"
            ),
        )
        .await;
        let table = discover_table(&mut conn, "test", &name).await.unwrap();
        for _ in 0..3 {
            let started = std::time::Instant::now();
            let batches = read_all(&table, None, None, 8192).await;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            let seconds = started.elapsed().as_secs_f64();
            assert_eq!(rows, 1_000_000);
            println!(
                "read_arrow: {rows} rows in {seconds:.2} s = {:.0} rows/s",
                rows as f64 / seconds
            );
        }
        execute(&mut conn, &format!("DROP TABLE {name}")).await;
    }
}
