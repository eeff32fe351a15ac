//! The results cache: answers of queries kept in memory, keyed by the optimized plan, the
//! version of every table the plan reads and the user (with the catalog generation, which moves
//! with every grant, policy and schema change). A commit to a table gives it a new version, so
//! the next run of a query that read it is a miss and replaces the old entry; nothing stale can
//! be served. Bounded in bytes, least recently used out first. Hits and misses go to
//! `/metrics`.
//!
//! It sits in the session's query planner, so every listener (HTTP, PostgreSQL wire, Flight SQL)
//! goes through it. Plans with a non-deterministic function (`now()`, `random()`), plans over
//! anything but Polder tables and reflections (`system.*`, `information_schema`), and writes are
//! never cached.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source_as_provider;
use datafusion::error::Result as DfResult;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::Stream;

use crate::catalog::CatalogState;
use crate::reflection::{ReflectionTable, acceleration_enabled};
use crate::table::PolderTable;

const DEFAULT_MB: u64 = 256;

struct Entry {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    bytes: usize,
    last_used: u64,
}

/// Query results in memory, least recently used out first.
pub struct ResultsCache {
    capacity: usize,
    entries: Mutex<HashMap<String, Entry>>,
    clock: AtomicU64,
}

impl fmt::Debug for ResultsCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResultsCache")
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl ResultsCache {
    pub fn new(capacity_bytes: usize) -> Arc<Self> {
        Arc::new(ResultsCache {
            capacity: capacity_bytes,
            entries: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
        })
    }

    /// Sized by `POLDER_RESULTS_CACHE_MB` (default 256; 0 turns the cache off).
    pub fn from_env() -> Arc<Self> {
        let mb = std::env::var("POLDER_RESULTS_CACHE_MB")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(DEFAULT_MB);
        Self::new((mb * 1024 * 1024) as usize)
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    fn get(&self, key: &str) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        let mut entries = self.entries.lock().expect("cache lock");
        let entry = entries.get_mut(key)?;
        entry.last_used = self.tick();
        Some((entry.schema.clone(), entry.batches.clone()))
    }

    fn insert(&self, key: String, schema: SchemaRef, batches: Vec<RecordBatch>, bytes: usize) {
        // One answer may take at most a quarter of the cache.
        if bytes > self.capacity / 4 {
            return;
        }
        let mut entries = self.entries.lock().expect("cache lock");
        let mut used: usize = entries.values().map(|e| e.bytes).sum();
        used -= entries.get(&key).map(|e| e.bytes).unwrap_or(0);
        while used + bytes > self.capacity {
            let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(gone) = entries.remove(&oldest) {
                used -= gone.bytes;
            }
        }
        let last_used = self.tick();
        entries.insert(
            key,
            Entry {
                schema,
                batches,
                bytes,
                last_used,
            },
        );
        metrics::gauge!("polder_results_cache_entries").set(entries.len() as f64);
        metrics::gauge!("polder_results_cache_bytes").set((used + bytes) as f64);
    }

    fn hit(&self) {
        metrics::counter!("polder_results_cache_hits_total").increment(1);
    }

    fn miss(&self) {
        metrics::counter!("polder_results_cache_misses_total").increment(1);
    }
}

/// The cache key of `plan`, or `None` when its answer must not be cached.
fn cache_key(
    plan: &LogicalPlan,
    catalog: &CatalogState,
    settings: &datafusion::config::ConfigOptions,
) -> Option<String> {
    let mut cacheable = true;
    let mut versions: Vec<String> = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) => {
                let provider = source_as_provider(&scan.source).ok();
                let provider = provider.as_ref();
                if let Some(table) = provider.and_then(|p| p.downcast_ref::<PolderTable>()) {
                    versions.push(format!(
                        "{}@{}#{}",
                        table.name(),
                        table.version(),
                        table.table_id()
                    ));
                } else if let Some(reflection) =
                    provider.and_then(|p| p.downcast_ref::<ReflectionTable>())
                {
                    versions.push(format!(
                        "reflection {}@{}:{}",
                        reflection.name, reflection.version, reflection.location
                    ));
                } else {
                    cacheable = false;
                }
            }
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Window(_)
            | LogicalPlan::Aggregate(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Join(_)
            | LogicalPlan::Repartition(_)
            | LogicalPlan::Union(_)
            | LogicalPlan::EmptyRelation(_)
            | LogicalPlan::Subquery(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Values(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::Unnest(_) => {}
            _ => cacheable = false,
        }
        if cacheable {
            let _ = node.apply_expressions(|expr| {
                expr.apply(|e| {
                    let volatile = match e {
                        Expr::ScalarFunction(f) => {
                            f.func.signature().volatility != Volatility::Immutable
                        }
                        Expr::Placeholder(_) => true,
                        _ => false,
                    };
                    if volatile {
                        cacheable = false;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            });
        }
        Ok(if cacheable {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    if !cacheable || versions.is_empty() {
        return None;
    }
    let who = crate::access::current()
        .map(|a| {
            format!(
                "{}:{}/{}",
                a.principal.user, a.principal.role, a.reader.user
            )
        })
        .unwrap_or_default();
    // A PostgreSQL-wire session may have its own time zone, which functions read at run time.
    let time_zone = settings.execution.time_zone.clone().unwrap_or_default();
    Some(format!(
        "{who}\n{time_zone}\n{}\n{}\n{}",
        catalog.listing().generation,
        versions.join(","),
        plan.display_indent_schema()
    ))
}

/// The session's query planner: the Delta planner behind the results cache.
pub(crate) struct CachingPlanner {
    inner: Arc<dyn QueryPlanner + Send + Sync>,
    cache: Arc<ResultsCache>,
    catalog: Arc<CatalogState>,
}

impl fmt::Debug for CachingPlanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CachingPlanner")
    }
}

impl CachingPlanner {
    pub fn new(
        inner: Arc<dyn QueryPlanner + Send + Sync>,
        cache: Arc<ResultsCache>,
        catalog: Arc<CatalogState>,
    ) -> Self {
        CachingPlanner {
            inner,
            cache,
            catalog,
        }
    }
}

#[async_trait]
impl QueryPlanner for CachingPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn datafusion::catalog::Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let key = if self.cache.enabled() && acceleration_enabled() {
            cache_key(logical_plan, &self.catalog, session_state.config_options())
        } else {
            None
        };
        let Some(key) = key else {
            return self
                .inner
                .create_physical_plan(logical_plan, session_state)
                .await;
        };
        if let Some((schema, batches)) = self.cache.get(&key) {
            self.cache.hit();
            return Ok(MemorySourceConfig::try_new_exec(&[batches], schema, None)?);
        }
        self.cache.miss();
        let mut plan = self
            .inner
            .create_physical_plan(logical_plan, session_state)
            .await?;
        if plan.output_partitioning().partition_count() != 1 {
            plan = Arc::new(CoalescePartitionsExec::new(plan));
        }
        Ok(Arc::new(CacheFillExec {
            properties: plan.properties().clone(),
            input: plan,
            key,
            cache: self.cache.clone(),
        }))
    }
}

/// Passes its input's batches on and, when the input ends without error, stores them.
#[derive(Debug)]
struct CacheFillExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    key: String,
    cache: Arc<ResultsCache>,
}

impl DisplayAs for CacheFillExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ResultsCacheFillExec")
    }
}

impl ExecutionPlan for CacheFillExec {
    fn name(&self) -> &str {
        "ResultsCacheFillExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(CacheFillExec {
            input: children.remove(0),
            properties: self.properties.clone(),
            key: self.key.clone(),
            cache: self.cache.clone(),
        }))
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        Ok(Box::pin(FillStream {
            schema: input.schema(),
            input,
            kept: Vec::new(),
            bytes: 0,
            limit: self.cache.capacity / 4,
            key: Some(self.key.clone()),
            cache: self.cache.clone(),
        }))
    }
}

struct FillStream {
    schema: SchemaRef,
    input: SendableRecordBatchStream,
    kept: Vec<RecordBatch>,
    bytes: usize,
    limit: usize,
    /// `None` once the answer is known not to be kept.
    key: Option<String>,
    cache: Arc<ResultsCache>,
}

impl Stream for FillStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.input.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(batch))) => {
                if self.key.is_some() {
                    let size = batch.get_array_memory_size();
                    self.bytes += size;
                    if self.bytes > self.limit {
                        self.key = None;
                        self.kept.clear();
                    } else {
                        self.kept.push(batch.clone());
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                self.key = None;
                self.kept.clear();
            }
            Poll::Ready(None) => {
                if let Some(key) = self.key.take() {
                    let batches = std::mem::take(&mut self.kept);
                    let (schema, bytes) = (self.schema.clone(), self.bytes);
                    self.cache.insert(key, schema, batches, bytes);
                }
            }
            Poll::Pending => {}
        }
        polled
    }
}

impl RecordBatchStream for FillStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn batch(n: i64) -> (SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let values: Vec<i64> = (0..n).collect();
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap();
        (schema, batch)
    }

    #[test]
    fn least_recently_used_answers_leave_first() {
        let (schema, one) = batch(1000);
        let size = one.get_array_memory_size();
        let cache = ResultsCache::new(size * 4);
        for key in ["a", "b", "c", "d"] {
            cache.insert(key.into(), schema.clone(), vec![one.clone()], size);
        }
        assert!(cache.get("a").is_some()); // a is now the most recently used
        cache.insert("e".into(), schema.clone(), vec![one.clone()], size);
        let kept: Vec<&str> = ["a", "b", "c", "d", "e"]
            .into_iter()
            .filter(|k| cache.get(k).is_some())
            .collect();
        assert_eq!(kept, ["a", "c", "d", "e"]);
        // An answer over a quarter of the cache is not kept.
        cache.insert("huge".into(), schema, vec![one], size * 2);
        assert!(cache.get("huge").is_none());
    }
}
