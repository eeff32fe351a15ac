//! `DESCRIBE HISTORY` rows as an Arrow batch.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::error::Result;
use polder_lake::HistoryEntry;

pub(crate) fn history_batch(entries: &[HistoryEntry]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("version", DataType::Int64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("operation", DataType::Utf8, true),
        Field::new("operation_parameters", DataType::Utf8, true),
        Field::new("operation_metrics", DataType::Utf8, true),
        Field::new("user_name", DataType::Utf8, true),
        Field::new("read_version", DataType::Int64, true),
        Field::new("is_blind_append", DataType::Boolean, true),
        Field::new("engine_info", DataType::Utf8, true),
    ]));
    let strings = |get: fn(&HistoryEntry) -> Option<&str>| -> ArrayRef {
        Arc::new(entries.iter().map(get).collect::<StringArray>())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(entries.iter().map(|e| e.version).collect::<Int64Array>()),
        Arc::new(
            entries
                .iter()
                .map(|e| e.timestamp)
                .collect::<TimestampMillisecondArray>()
                .with_timezone("UTC"),
        ),
        strings(|e| e.operation.as_deref()),
        strings(|e| e.parameters.as_deref()),
        strings(|e| e.metrics.as_deref()),
        strings(|e| e.user_name.as_deref()),
        Arc::new(
            entries
                .iter()
                .map(|e| e.read_version)
                .collect::<Int64Array>(),
        ),
        Arc::new(
            entries
                .iter()
                .map(|e| e.is_blind_append)
                .collect::<BooleanArray>(),
        ),
        strings(|e| e.engine_info.as_deref()),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}
