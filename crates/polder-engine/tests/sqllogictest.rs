//! Runs the SQL behaviour tests in `tests/sql/*.slt` (sqllogictest format, as DataFusion does)
//! against an engine on a fresh data directory per file.
//!
//! `cargo test -p polder-engine --test sqllogictest [-- <file filter>]`

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use polder_core::S3Config;
use polder_engine::{Engine, EngineError, StatementOutput, datafusion};
use sqllogictest::{DBOutput, DefaultColumnType};

struct EngineConnection {
    engine: Arc<Engine>,
}

fn column_type(data_type: &DataType) -> DefaultColumnType {
    match data_type {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DefaultColumnType::Integer,
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
            DefaultColumnType::FloatingPoint
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for EngineConnection {
    type Error = EngineError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let mut outputs = self.engine.execute_sql(sql).await?;
        let Some(output) = outputs.pop() else {
            return Ok(DBOutput::StatementComplete(0));
        };
        match output {
            StatementOutput::Command(outcome) => {
                Ok(DBOutput::StatementComplete(outcome.rows.unwrap_or(0)))
            }
            StatementOutput::Query(frame) => {
                let schema = frame.schema().as_arrow().clone();
                let batches = frame.collect().await?;
                let types = schema
                    .fields()
                    .iter()
                    .map(|f| column_type(f.data_type()))
                    .collect();
                let options = FormatOptions::default().with_null("NULL");
                let mut rows = Vec::new();
                for batch in &batches {
                    let formatters = batch
                        .columns()
                        .iter()
                        .map(|column| ArrayFormatter::try_new(column.as_ref(), &options))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| {
                            EngineError::from(datafusion::error::DataFusionError::from(e))
                        })?;
                    for row in 0..batch.num_rows() {
                        let mut values = Vec::with_capacity(formatters.len());
                        for formatter in &formatters {
                            let text = formatter.value(row).to_string();
                            values.push(if text.is_empty() {
                                "(empty)".to_string()
                            } else {
                                text
                            });
                        }
                        rows.push(values);
                    }
                }
                Ok(DBOutput::Rows { types, rows })
            }
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "polder"
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/sql exists")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "slt"))
        .filter(|path| {
            filter
                .as_ref()
                .is_none_or(|f| path.to_string_lossy().contains(f.as_str()))
        })
        .collect();
    files.sort();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let result: Result<(), String> = runtime.block_on(async {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let engine = Engine::open(
                &format!("sqlite://{}/catalog.db", dir.path().display()),
                &format!("file://{}/lake", dir.path().display()),
                &S3Config::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
            let engine = Arc::new(engine);
            let mut runner = sqllogictest::Runner::new(move || {
                let engine = engine.clone();
                async move { Ok(EngineConnection { engine }) }
            });
            runner
                .run_file_async(file)
                .await
                .map_err(|e| e.display(true).to_string())
        });
        match result {
            Ok(()) => println!("ok     {name}"),
            Err(message) => {
                println!("FAILED {name}\n{message}");
                failures.push(name);
            }
        }
    }
    if files.is_empty() {
        eprintln!("no .slt files matched");
        std::process::exit(1);
    }
    if !failures.is_empty() {
        eprintln!(
            "{} of {} files failed: {}",
            failures.len(),
            files.len(),
            failures.join(", ")
        );
        std::process::exit(1);
    }
    println!("{} sqllogictest files passed", files.len());
}
