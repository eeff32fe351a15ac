//! `polder source freshness`: how long ago each selected source table was last loaded (the
//! newest value of its `loaded_at_field`), judged against its `warn_after` / `error_after`,
//! and written to `target/sources.json` in dbt's shape.

use std::collections::BTreeSet;
use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, Utc};
use polder_engine::{Engine, StatementOutput};
use serde_json::{Value, json};

use crate::project::{Freshness, FreshnessRule, SourceTable};
use crate::run::quote;

/// The freshness of one source table.
#[derive(Debug, Clone, PartialEq)]
pub struct FreshnessResult {
    pub unique_id: String,
    /// `source_name.table_name`.
    pub name: String,
    /// `pass`, `warn`, `error` or `runtime error` (dbt's words).
    pub status: String,
    pub max_loaded_at: Option<DateTime<Utc>>,
    pub snapshotted_at: DateTime<Utc>,
    pub age_seconds: Option<f64>,
    pub message: Option<String>,
    pub criteria: Freshness,
    pub execution_time: f64,
}

/// The source tables among `selected` that have a `loaded_at_field` and a freshness rule.
pub fn checkable<'a>(
    sources: impl Iterator<Item = &'a SourceTable>,
    selected: &BTreeSet<String>,
) -> Vec<&'a SourceTable> {
    sources
        .filter(|s| selected.contains(&s.unique_id))
        .filter(|s| s.loaded_at_field.is_some())
        .filter(|s| {
            s.freshness
                .as_ref()
                .is_some_and(|f| f.warn_after.is_some() || f.error_after.is_some())
        })
        .collect()
}

/// Checks one source table.
pub async fn check(engine: &Engine, source: &SourceTable) -> FreshnessResult {
    let clock = Instant::now();
    let snapshotted_at = Utc::now();
    let criteria = source.freshness.clone().unwrap_or_default();
    let mut result = FreshnessResult {
        unique_id: source.unique_id.clone(),
        name: format!("{}.{}", source.source_name, source.name),
        status: "runtime error".to_string(),
        max_loaded_at: None,
        snapshotted_at,
        age_seconds: None,
        message: None,
        criteria: criteria.clone(),
        execution_time: 0.0,
    };
    let field = source.loaded_at_field.clone().unwrap_or_default();
    let filter = criteria
        .filter
        .as_deref()
        .map(|f| format!(" WHERE {f}"))
        .unwrap_or_default();
    let sql = format!(
        "SELECT max(CAST({field} AS TIMESTAMP)) AS max_loaded_at FROM {}.{}{filter}",
        quote(&source.schema),
        quote(&source.identifier)
    );
    match newest(engine, &sql).await {
        Err(message) => result.message = Some(format!("{}: {message}", source.original_file_path)),
        Ok(None) => {
            result.status = "error".to_string();
            result.message = Some(format!("{} has no rows with a {field}", result.name));
        }
        Ok(Some(max_loaded_at)) => {
            let age = (snapshotted_at - max_loaded_at).num_milliseconds() as f64 / 1000.0;
            let exceeds = |rule: &Option<FreshnessRule>| {
                rule.as_ref()
                    .is_some_and(|r| age > (r.count as f64) * period_seconds(&r.period))
            };
            result.status = if exceeds(&criteria.error_after) {
                "error"
            } else if exceeds(&criteria.warn_after) {
                "warn"
            } else {
                "pass"
            }
            .to_string();
            result.max_loaded_at = Some(max_loaded_at);
            result.age_seconds = Some(age);
        }
    }
    result.execution_time = clock.elapsed().as_secs_f64();
    result
}

fn period_seconds(period: &str) -> f64 {
    match period.trim_end_matches('s') {
        "minute" => 60.0,
        "hour" => 3600.0,
        "day" => 86_400.0,
        _ => f64::INFINITY,
    }
}

async fn newest(engine: &Engine, sql: &str) -> Result<Option<DateTime<Utc>>, String> {
    let outputs = engine.execute_sql(sql).await.map_err(|e| e.to_string())?;
    let Some(StatementOutput::Query(frame)) = outputs.into_iter().last() else {
        return Err("the freshness query returned nothing".to_string());
    };
    let batches = frame
        .collect()
        .await
        .map_err(|e| polder_engine::datafusion_message(&e))?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let column = arrow::compute::cast(
        batch.column(0),
        &DataType::Timestamp(TimeUnit::Microsecond, None),
    )
    .map_err(|e| e.to_string())?;
    let column = column.as_primitive::<TimestampMicrosecondType>();
    if column.is_null(0) {
        return Ok(None);
    }
    Ok(DateTime::from_timestamp_micros(column.value(0)))
}

/// `target/sources.json` (dbt's sources v3 shape).
pub fn sources_json(results: &[FreshnessResult], elapsed: f64, invocation_id: &str) -> Value {
    let rule = |r: &Option<FreshnessRule>| match r {
        Some(r) => json!({"count": r.count, "period": r.period}),
        None => json!({"count": null, "period": null}),
    };
    let entries: Vec<Value> = results
        .iter()
        .map(|r| {
            let criteria = json!({
                "warn_after": rule(&r.criteria.warn_after),
                "error_after": rule(&r.criteria.error_after),
                "filter": r.criteria.filter,
            });
            let mut entry = json!({
                "unique_id": r.unique_id,
                "status": r.status,
                "criteria": criteria,
                "thread_id": "Thread-1",
                "execution_time": r.execution_time,
                "timing": [],
                "adapter_response": {},
            });
            match (r.max_loaded_at, r.age_seconds) {
                (Some(max), Some(age)) => {
                    entry["max_loaded_at"] = json!(max.to_rfc3339());
                    entry["snapshotted_at"] = json!(r.snapshotted_at.to_rfc3339());
                    entry["max_loaded_at_time_ago_in_s"] = json!(age);
                }
                _ => {
                    entry["error"] = json!(r.message);
                }
            }
            entry
        })
        .collect();
    json!({
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/sources/v3.json",
            "dbt_version": crate::jinja::DBT_VERSION,
            "generated_at": Utc::now().to_rfc3339(),
            "invocation_id": invocation_id,
            "env": {},
        },
        "results": entries,
        "elapsed_time": elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_in_seconds() {
        assert_eq!(period_seconds("minute"), 60.0);
        assert_eq!(period_seconds("hours"), 3600.0);
        assert_eq!(period_seconds("day"), 86_400.0);
        assert!(period_seconds("fortnight").is_infinite());
    }

    #[test]
    fn sources_json_has_dbt_fields() {
        let now = Utc::now();
        let result = FreshnessResult {
            unique_id: "source.p.raw.orders".into(),
            name: "raw.orders".into(),
            status: "warn".into(),
            max_loaded_at: Some(now),
            snapshotted_at: now,
            age_seconds: Some(7200.0),
            message: None,
            criteria: Freshness {
                warn_after: Some(FreshnessRule {
                    count: 1,
                    period: "hour".into(),
                }),
                error_after: None,
                filter: None,
            },
            execution_time: 0.01,
        };
        let value = sources_json(&[result], 0.1, "inv");
        assert_eq!(value["results"][0]["status"], "warn");
        assert_eq!(value["results"][0]["criteria"]["warn_after"]["count"], 1);
        assert_eq!(value["results"][0]["max_loaded_at_time_ago_in_s"], 7200.0);
        assert!(
            value["metadata"]["dbt_schema_version"]
                .as_str()
                .is_some_and(|v| v.ends_with("sources/v3.json"))
        );
    }
}
