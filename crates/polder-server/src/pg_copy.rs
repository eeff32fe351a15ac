//! `COPY (query) TO STDOUT` and `COPY table TO STDOUT` on the PostgreSQL wire: the export path
//! psql's `\copy`, psycopg's `cursor.copy()` and many ETL tools use. Rows stream out as they are
//! computed, in PostgreSQL's text, CSV or binary COPY format.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{CopyOption, CopySource, CopyTarget, Statement};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_postgres::arrow_pg::datatypes::arrow_schema_to_pg_fields;
use datafusion_postgres::arrow_pg::encoder::encode_value;
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::{
    CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, Response,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::copy::CopyData;
use futures::StreamExt;
use polder_engine::{Engine, PolderDialect, StatementOutput};

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message,
    )))
}

/// How to write the rows.
enum CopyFormat {
    Text(CopyTextOptions),
    Csv {
        options: CopyCsvOptions,
        header: bool,
    },
    Binary,
}

fn copy_format(options: &[CopyOption]) -> PgWireResult<CopyFormat> {
    let mut format = "text".to_string();
    let mut header = false;
    let mut delimiter: Option<char> = None;
    let mut null: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut escape: Option<char> = None;
    for option in options {
        match option {
            CopyOption::Format(name) => format = name.value.to_lowercase(),
            CopyOption::Header(on) => header = *on,
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Null(text) => null = Some(text.clone()),
            CopyOption::Quote(c) => quote = Some(*c),
            CopyOption::Escape(c) => escape = Some(*c),
            CopyOption::Encoding(encoding)
                if encoding.eq_ignore_ascii_case("utf8")
                    || encoding.eq_ignore_ascii_case("utf-8") => {}
            other => {
                return Err(user_error(
                    "0A000",
                    format!("COPY option {other} is not supported"),
                ));
            }
        }
    }
    match format.as_str() {
        "text" => {
            let mut text = CopyTextOptions::default();
            if let Some(c) = delimiter {
                text.delimiter = c.to_string().into();
            }
            if let Some(n) = null {
                text.null_string = n.into();
            }
            Ok(CopyFormat::Text(text))
        }
        "csv" => {
            let mut csv = CopyCsvOptions::default();
            if let Some(c) = delimiter {
                csv.delimiter = c.to_string().into();
            }
            if let Some(c) = quote {
                csv.quote = c.to_string().into();
            }
            if let Some(c) = escape {
                csv.escape = c.to_string().into();
            }
            if let Some(n) = null {
                csv.null_string = n.into();
            }
            Ok(CopyFormat::Csv {
                options: csv,
                header,
            })
        }
        "binary" => Ok(CopyFormat::Binary),
        other => Err(user_error(
            "22023",
            format!("COPY format \"{other}\" not recognized"),
        )),
    }
}

/// The query of a `COPY ... TO STDOUT` statement, if `sql` is one.
pub(crate) fn parse_copy_to_stdout(sql: &str) -> Option<(String, Vec<CopyOption>)> {
    let mut statements = Parser::parse_sql(&PolderDialect::default(), sql).ok()?;
    if statements.len() != 1 {
        return None;
    }
    let Statement::Copy {
        source,
        to: true,
        target: CopyTarget::Stdout,
        options,
        ..
    } = statements.remove(0)
    else {
        return None;
    };
    let query = match source {
        CopySource::Query(query) => query.to_string(),
        CopySource::Table {
            table_name,
            columns,
        } => {
            let list = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!("SELECT {list} FROM {table_name}")
        }
    };
    Some((query, options))
}

/// Runs the query and streams its rows as COPY data.
pub(crate) async fn copy_to_stdout(
    engine: &Engine,
    query: &str,
    options: &[CopyOption],
) -> PgWireResult<Response> {
    let format = copy_format(options)?;
    let mut statements = engine
        .parse(query)
        .map_err(|e| user_error(e.sqlstate(), e.to_string()))?;
    let Some(statement) = statements.pop().filter(|_| statements.is_empty()) else {
        return Err(user_error(
            "42601",
            "COPY needs exactly one query".to_string(),
        ));
    };
    let frame = match engine.execute(statement).await {
        Ok(StatementOutput::Query(frame)) => frame,
        Ok(StatementOutput::Command(_)) => {
            return Err(user_error("42601", "COPY needs a query".to_string()));
        }
        Err(err) => return Err(user_error(err.sqlstate(), err.to_string())),
    };
    let stream = frame.execute_stream().await.map_err(|e| {
        let err = polder_engine::EngineError::from(e);
        user_error(err.sqlstate(), err.to_string())
    })?;
    let arrow_schema = stream.schema();
    let wire_format = if matches!(format, CopyFormat::Binary) {
        Format::UnifiedBinary
    } else {
        Format::UnifiedText
    };
    let fields = Arc::new(arrow_schema_to_pg_fields(
        &arrow_schema,
        &wire_format,
        None,
    )?);
    let columns = fields.len();
    let (format_code, header, mut encoder) = match format {
        CopyFormat::Text(options) => (0i8, None, CopyEncoder::new_text(fields.clone(), options)),
        CopyFormat::Csv { options, header } => {
            let header_line = header.then(|| {
                let names: Vec<String> = arrow_schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                format!("{}\n", names.join(&*options.delimiter))
            });
            (
                0i8,
                header_line,
                CopyEncoder::new_csv(fields.clone(), options),
            )
        }
        CopyFormat::Binary => (1i8, None, CopyEncoder::new_binary(fields.clone())),
    };
    let header_stream =
        futures::stream::iter(header.map(|line| Ok(CopyData::new(line.into_bytes().into()))));
    let rows = stream.flat_map(move |batch| {
        let encoded: Vec<PgWireResult<CopyData>> = match batch {
            Err(err) => {
                let err = polder_engine::EngineError::from(err);
                vec![Err(user_error(err.sqlstate(), err.to_string()))]
            }
            Ok(batch) => {
                let mut out = Vec::with_capacity(batch.num_rows());
                let schema = batch.schema();
                'rows: for row in 0..batch.num_rows() {
                    for (index, column) in batch.columns().iter().enumerate() {
                        if let Err(err) = encode_value(
                            &mut encoder,
                            column,
                            row,
                            schema.field(index),
                            &fields[index],
                        ) {
                            out.push(Err(err));
                            break 'rows;
                        }
                    }
                    out.push(Ok(encoder.take_copy()));
                }
                out
            }
        };
        futures::stream::iter(encoded)
    });
    Ok(Response::CopyOut(CopyResponse::new(
        format_code,
        columns,
        header_stream.chain(rows),
    )))
}
