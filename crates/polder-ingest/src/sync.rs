//! The sync engine: loads what a source read into `bronze.<connection>_<stream>`, exactly
//! once. Each stream's data and its new state go into ONE Delta commit, tagged with the
//! application transaction `(polder.sync/<connection>/<stream>, n)`: the state a run starts
//! from is read back from the table itself, so a run killed at any moment either committed
//! (and the next run continues after it) or did not (and the next run reads the same records
//! again). Nothing else holds state that could disagree with the data.

use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use datafusion::catalog::TableProvider;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::execution::TaskContext;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{ExprFunctionExt, SortExpr};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{DataFrame, Expr, cast, col, lit};
use futures::StreamExt;
use futures::stream::BoxStream;
use polder_core::TableName;
use polder_engine::{CommitTag, Engine, WriteMode};
use serde::Serialize;
use serde_json::Value;

use crate::connection::{ConnectionSpec, StreamSpec, SyncMode, stream_app_id, stream_table};
use crate::error::{IngestError, Result};
use crate::files::delta_safe_name;
use crate::records::Reject;
use crate::sources::{Batches, ReadContext, StreamData, StreamRequest, open_source};

/// Metadata columns of every bronze table.
pub const EXTRACTED_AT: &str = "_polder_extracted_at";
pub const SYNC_ID: &str = "_polder_sync_id";
/// How far back in a table's history the last sync's state is looked for.
const STATE_DEPTH: usize = 100_000;

/// What happened to one stream in one run.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct StreamOutcome {
    pub stream: String,
    pub table: String,
    pub sync_mode: SyncMode,
    /// `succeeded`, `up_to_date` (nothing new) or `failed`.
    pub status: String,
    pub records: u64,
    pub rejects: u64,
    /// The table's version after the commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Columns added or widened by this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schema_changes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One run's identity, shared by its streams.
pub struct RunIdentity {
    pub sync_id: String,
    pub extracted_at: DateTime<Utc>,
}

/// Syncs every stream of `spec` (credentials resolved); returns each stream's outcome and the
/// first error (the run failed when there is one).
pub async fn sync_connection(
    spec: &ConnectionSpec,
    run: &RunIdentity,
    context: &ReadContext,
) -> (Vec<StreamOutcome>, Option<IngestError>) {
    let engine = context.engine.clone();
    let mut outcomes: Vec<StreamOutcome> = spec
        .streams
        .iter()
        .map(|stream| StreamOutcome {
            stream: stream.name.clone(),
            table: stream_table(&spec.name, &stream.name).to_string(),
            sync_mode: stream.sync_mode,
            status: "failed".to_string(),
            records: 0,
            rejects: 0,
            version: None,
            schema_changes: Vec::new(),
            error: None,
        })
        .collect();
    if spec.streams.is_empty() {
        let err = IngestError::Config(format!(
            "connection '{}' selects no streams; add some with `polder connection edit`",
            spec.name
        ));
        return (outcomes, Some(err));
    }
    let prepared = async {
        engine
            .execute_sql("CREATE SCHEMA IF NOT EXISTS bronze")
            .await?;
        let source = open_source(spec)?;
        let mut requests = Vec::new();
        let mut sequences = Vec::new();
        for stream in &spec.streams {
            let table = stream_table(&spec.name, &stream.name);
            let app_id = stream_app_id(&spec.name, &stream.name);
            let last = engine
                .last_tagged_commit(&table, &app_id, STATE_DEPTH)
                .await?;
            let (sequence, state) = match last {
                Some(tag) => {
                    let state = tag.metadata.get("state").cloned().filter(|s| !s.is_null());
                    (tag.version + 1, state)
                }
                None => (1, None),
            };
            sequences.push(sequence);
            requests.push(StreamRequest {
                spec: stream.clone(),
                state,
            });
        }
        let pending = source.read(requests, context).await?;
        Ok::<_, IngestError>((pending, sequences))
    }
    .await;
    let (pending, sequences) = match prepared {
        Ok(prepared) => prepared,
        Err(err) => {
            for outcome in &mut outcomes {
                outcome.error = Some(err.to_string());
            }
            return (outcomes, Some(err));
        }
    };
    let mut first_error = None;
    for (index, read) in pending.into_iter().enumerate() {
        let stream = &spec.streams[index];
        let outcome = &mut outcomes[index];
        let result = match read.await {
            Ok(data) => {
                load_stream(&engine, spec, stream, data, run, sequences[index], outcome).await
            }
            Err(err) => Err(err),
        };
        if let Err(err) = result {
            tracing::warn!(connection = %spec.name, stream = %stream.name, error = %err, "stream sync failed");
            outcome.status = "failed".to_string();
            outcome.error = Some(err.to_string());
            first_error.get_or_insert(err);
        }
    }
    (outcomes, first_error)
}

/// One partition of a stream that can be executed once.
struct OnceStream {
    schema: SchemaRef,
    stream: Mutex<Option<BoxStream<'static, Result<RecordBatch>>>>,
}

impl std::fmt::Debug for OnceStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnceStream")
    }
}

impl PartitionStream for OnceStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().ok().and_then(|mut slot| slot.take());
        let stream = match taken {
            Some(stream) => stream
                .map(|batch| {
                    batch.map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
                })
                .boxed(),
            None => futures::stream::once(async {
                Err(datafusion::error::DataFusionError::Internal(
                    "a source stream was read twice".to_string(),
                ))
            })
            .boxed(),
        };
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// How the source's columns go into the table: each column's cast, and what changed.
struct Reconciled {
    /// (source column, column in the table, type to store).
    columns: Vec<(String, String, DataType)>,
    /// Table columns to widen before loading: (column, wider type).
    widen: Vec<(String, DataType)>,
    changes: Vec<String>,
}

fn is_metadata(name: &str) -> bool {
    name == EXTRACTED_AT || name == SYNC_ID
}

/// Whether values of `from` fit `to` without loss (so a column can be widened to it).
fn widens(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    match (from, to) {
        (Int8, Int16 | Int32 | Int64 | Float64) => true,
        (Int16, Int32 | Int64 | Float64) => true,
        (Int32, Int64 | Float64) => true,
        (Float32, Float64) => true,
        (Date32, Timestamp(TimeUnit::Microsecond, None)) => true,
        (Decimal128(p1, s1), Decimal128(p2, s2)) => {
            s2 >= s1 && (*p2 as i16 - *s2 as i16) >= (*p1 as i16 - *s1 as i16)
        }
        _ => false,
    }
}

fn reconcile(
    stream: &str,
    table: Option<&SchemaRef>,
    source: &SchemaRef,
    mode: SyncMode,
) -> Result<Reconciled> {
    let mut reconciled = Reconciled {
        columns: Vec::new(),
        widen: Vec::new(),
        changes: Vec::new(),
    };
    for field in source.fields() {
        if is_metadata(field.name()) {
            continue;
        }
        let name = delta_safe_name(field.name());
        let source_type = field.data_type().clone();
        let existing = match (table, mode) {
            (Some(table), m) if m != SyncMode::FullRefreshOverwrite => table
                .field_with_name(&name)
                .ok()
                .map(|f| f.data_type().clone()),
            _ => None,
        };
        let stored = match existing {
            None => {
                if table.is_some() && mode != SyncMode::FullRefreshOverwrite {
                    reconciled.changes.push(format!("added column {name}"));
                }
                source_type
            }
            Some(existing) if existing == source_type => existing,
            Some(existing) if widens(&source_type, &existing) || existing == DataType::Utf8 => {
                existing
            }
            Some(existing) if widens(&existing, &source_type) => {
                reconciled.changes.push(format!(
                    "widened column {name} from {existing} to {source_type}"
                ));
                reconciled.widen.push((name.clone(), source_type.clone()));
                source_type
            }
            Some(existing) => {
                return Err(IngestError::SchemaChange {
                    stream: stream.to_string(),
                    message: format!(
                        "column '{name}' changed from {} to {}, which the table cannot take (only widening is automatic: int → bigint, real → double, more decimal digits); \
                         change the table or re-create it with a full_refresh_overwrite sync",
                        crate::sources::type_name(&existing),
                        crate::sources::type_name(&source_type)
                    ),
                });
            }
        };
        reconciled
            .columns
            .push((field.name().clone(), name, stored));
    }
    Ok(reconciled)
}

/// Rewrites `table` with some columns widened, in one commit (the data stays the same).
async fn widen_table(
    engine: &Engine,
    table: &TableName,
    schema: &SchemaRef,
    widen: &[(String, DataType)],
) -> Result<()> {
    let frame = engine
        .session()
        .table(datafusion::common::TableReference::partial(
            table.schema.as_str(),
            table.table.as_str(),
        ))
        .await
        .map_err(polder_engine::EngineError::from)?;
    let columns: Vec<Expr> = schema
        .fields()
        .iter()
        .map(|field| {
            let column = Expr::Column(Column::from_name(field.name()));
            match widen.iter().find(|(name, _)| name == field.name()) {
                Some((_, wider)) => cast(column, wider.clone()).alias(field.name()),
                None => column,
            }
        })
        .collect();
    let frame = frame
        .select(columns)
        .map_err(polder_engine::EngineError::from)?;
    engine
        .write_table(
            table,
            frame.logical_plan().clone(),
            Arc::new(engine.session().state()),
            WriteMode::Overwrite,
        )
        .await?;
    Ok(())
}

async fn write_rejects(
    engine: &Engine,
    table: &TableName,
    stream: &str,
    rejects: &[Reject],
    run: &RunIdentity,
) -> Result<()> {
    use arrow::array::{StringArray, TimestampMicrosecondArray};
    let schema = Arc::new(Schema::new(vec![
        Field::new(SYNC_ID, DataType::Utf8, false),
        Field::new(
            EXTRACTED_AT,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("stream", DataType::Utf8, false),
        Field::new("position", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]));
    let count = rejects.len();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![run.sync_id.as_str(); count])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![run.extracted_at.timestamp_micros(); count])
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from(vec![stream; count])),
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|r| r.position.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|r| r.reason.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rejects.iter().map(|r| r.raw.as_str()),
            )),
        ],
    )
    .map_err(|e| IngestError::Data(e.to_string()))?;
    let session = polder_engine::delta_session();
    let provider =
        MemTable::try_new(schema, vec![vec![batch]]).map_err(polder_engine::EngineError::from)?;
    let frame = session
        .read_table(Arc::new(provider))
        .map_err(polder_engine::EngineError::from)?;
    engine
        .write_table(
            table,
            frame.logical_plan().clone(),
            Arc::new(session.state()),
            WriteMode::Append,
        )
        .await?;
    Ok(())
}

/// Loads one stream's data into its table in one tagged commit.
async fn load_stream(
    engine: &Engine,
    spec: &ConnectionSpec,
    stream: &StreamSpec,
    data: StreamData,
    run: &RunIdentity,
    sequence: i64,
    outcome: &mut StreamOutcome,
) -> Result<()> {
    let table = stream_table(&spec.name, &stream.name);
    let existing = engine.table_schema(&table).await?;
    if data.nothing_new && existing.is_some() {
        outcome.status = "up_to_date".to_string();
        return Ok(());
    }
    outcome.rejects = data.rejects.len() as u64;
    if !data.rejects.is_empty() {
        let rejects_table = TableName {
            schema: table.schema.clone(),
            table: format!("{}_rejects", table.table),
        };
        write_rejects(engine, &rejects_table, &stream.name, &data.rejects, run).await?;
        if outcome.rejects > spec.options.max_rejects {
            return Err(IngestError::TooManyRejects {
                stream: stream.name.clone(),
                rejects: outcome.rejects,
                allowed: spec.options.max_rejects,
                table: rejects_table.to_string(),
            });
        }
    }
    let reconciled = reconcile(
        &stream.name,
        existing.as_ref(),
        &data.schema,
        stream.sync_mode,
    )?;
    if !reconciled.widen.is_empty()
        && let Some(existing) = &existing
    {
        widen_table(engine, &table, existing, &reconciled.widen).await?;
    }
    outcome.schema_changes = reconciled.changes.clone();

    let stream_counter = Arc::new(crate::sources::Counters::default());
    let provider: Arc<dyn TableProvider> = match data.batches {
        Batches::Buffered(batches) => {
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            stream_counter.add(rows as u64, 0);
            Arc::new(
                MemTable::try_new(data.schema.clone(), vec![batches])
                    .map_err(polder_engine::EngineError::from)?,
            )
        }
        Batches::Streaming(partitions) => {
            let partitions: Vec<Arc<dyn PartitionStream>> = partitions
                .into_iter()
                .map(|stream| {
                    Arc::new(OnceStream {
                        schema: data.schema.clone(),
                        stream: Mutex::new(Some(crate::sources::counted(
                            stream,
                            stream_counter.clone(),
                        ))),
                    }) as Arc<dyn PartitionStream>
                })
                .collect();
            Arc::new(
                StreamingTable::try_new(data.schema.clone(), partitions)
                    .map_err(polder_engine::EngineError::from)?,
            )
        }
    };
    let session = polder_engine::delta_session();
    let frame = session
        .read_table(provider)
        .map_err(polder_engine::EngineError::from)?;
    let mut columns: Vec<Expr> = reconciled
        .columns
        .iter()
        .map(|(source, target, data_type)| {
            cast(Expr::Column(Column::from_name(source)), data_type.clone()).alias(target)
        })
        .collect();
    columns.push(
        lit(ScalarValue::TimestampMicrosecond(
            Some(run.extracted_at.timestamp_micros()),
            Some("UTC".into()),
        ))
        .alias(EXTRACTED_AT),
    );
    columns.push(lit(run.sync_id.clone()).alias(SYNC_ID));
    let frame = frame
        .select(columns)
        .map_err(polder_engine::EngineError::from)?;

    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "state".to_string(),
        data.state.clone().unwrap_or(Value::Null),
    );
    metadata.insert("sync_id".to_string(), Value::String(run.sync_id.clone()));
    metadata.insert("stream".to_string(), Value::String(stream.name.clone()));
    metadata.insert(
        "sync_mode".to_string(),
        Value::String(stream.sync_mode.as_str().to_string()),
    );
    let tag = CommitTag {
        app_id: stream_app_id(&spec.name, &stream.name),
        version: sequence,
        metadata,
    };
    let state = Arc::new(session.state());
    let written = match stream.sync_mode {
        SyncMode::FullRefreshOverwrite => {
            engine
                .write_table_tagged(
                    &table,
                    frame.logical_plan().clone(),
                    state,
                    WriteMode::Overwrite,
                    Some(&tag),
                )
                .await?
        }
        SyncMode::FullRefreshAppend | SyncMode::IncrementalAppend => {
            engine
                .write_table_tagged(
                    &table,
                    frame.logical_plan().clone(),
                    state,
                    WriteMode::Append,
                    Some(&tag),
                )
                .await?
        }
        SyncMode::IncrementalAppendDeduped => {
            let keys: Vec<String> = if stream.primary_key.is_empty() {
                data.primary_key.clone()
            } else {
                stream.primary_key.clone()
            }
            .iter()
            .map(|k| delta_safe_name(k))
            .collect();
            if keys.is_empty() {
                return Err(IngestError::Config(format!(
                    "stream '{}': incremental_append_deduped needs a primary key, and the source defines none; set primary_key",
                    stream.name
                )));
            }
            for key in &keys {
                if !reconciled.columns.iter().any(|(_, name, _)| name == key) {
                    return Err(IngestError::Config(format!(
                        "stream '{}': primary key column '{key}' is not a column of the stream",
                        stream.name
                    )));
                }
            }
            let cursor = stream
                .cursor_field
                .as_deref()
                .or(data.cursor_field.as_deref())
                .map(delta_safe_name);
            let frame = latest_per_key(frame, &keys, cursor.as_deref())?;
            engine
                .merge_table_tagged(&table, frame, &keys, cursor.as_deref(), state, Some(&tag))
                .await?
        }
    };
    drop(data.keep_alive);
    outcome.status = "succeeded".to_string();
    outcome.records = stream_counter.records();
    outcome.version = Some(written.version);
    Ok(())
}

/// Keeps the newest row of each key (by cursor; any one when there is no cursor), so that a
/// MERGE sees each key once.
fn latest_per_key(frame: DataFrame, keys: &[String], cursor: Option<&str>) -> Result<DataFrame> {
    const RANK: &str = "_polder_rank";
    let partition: Vec<Expr> = keys
        .iter()
        .map(|k| Expr::Column(Column::from_name(k)))
        .collect();
    let order: Vec<SortExpr> = cursor
        .map(|c| vec![Expr::Column(Column::from_name(c)).sort(false, false)])
        .unwrap_or_default();
    let rank = row_number()
        .partition_by(partition)
        .order_by(order)
        .build()
        .map_err(polder_engine::EngineError::from)?
        .alias(RANK);
    let names: Vec<Expr> = frame
        .schema()
        .fields()
        .iter()
        .map(|f| Expr::Column(Column::from_name(f.name())))
        .collect();
    let frame = frame
        .window(vec![rank])
        .and_then(|f| f.filter(col(RANK).eq(lit(1u64))))
        .and_then(|f| f.select(names))
        .map_err(polder_engine::EngineError::from)?;
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &[(&str, DataType)]) -> SchemaRef {
        Arc::new(Schema::new(
            fields
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true))
                .collect::<Vec<_>>(),
        ))
    }

    #[test]
    fn new_columns_are_added_and_narrower_ones_cast_up() {
        let table = schema(&[("id", DataType::Int64), ("name", DataType::Utf8)]);
        let source = schema(&[
            ("id", DataType::Int32),
            ("name", DataType::Utf8),
            ("email", DataType::Utf8),
        ]);
        let r = reconcile("s", Some(&table), &source, SyncMode::IncrementalAppend).unwrap();
        assert_eq!(r.columns[0].2, DataType::Int64);
        assert!(r.widen.is_empty());
        assert_eq!(r.changes, vec!["added column email".to_string()]);
    }

    #[test]
    fn wider_source_types_widen_the_table() {
        let table = schema(&[("id", DataType::Int32), ("amount", DataType::Float32)]);
        let source = schema(&[("id", DataType::Int64), ("amount", DataType::Float64)]);
        let r = reconcile("s", Some(&table), &source, SyncMode::FullRefreshAppend).unwrap();
        assert_eq!(
            r.widen,
            vec![
                ("id".to_string(), DataType::Int64),
                ("amount".to_string(), DataType::Float64)
            ]
        );
    }

    #[test]
    fn incompatible_changes_are_refused_unless_overwriting() {
        let table = schema(&[("amount", DataType::Int64)]);
        let source = schema(&[("amount", DataType::Utf8)]);
        let err = reconcile("orders", Some(&table), &source, SyncMode::IncrementalAppend)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("'amount' changed from bigint to text"),
            "{err}"
        );
        assert!(err.contains("nothing was committed"), "{err}");
        assert!(
            reconcile(
                "orders",
                Some(&table),
                &source,
                SyncMode::FullRefreshOverwrite
            )
            .is_ok()
        );
    }
}
