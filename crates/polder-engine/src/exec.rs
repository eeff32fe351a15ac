//! Execution plans the engine adds to DataFusion's.
//!
//! - [`DeferredWriteExec`]: runs a Delta write (DELETE, UPDATE, MERGE) when the plan is
//!   *executed*, not when it is planned, so that `EXPLAIN DELETE ...` changes nothing.
//! - [`PlanTable`]: shows an already planned physical plan as a table, to hand DataFusion's
//!   MERGE source to deltalake (which takes a DataFrame).

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::future::BoxFuture;

/// The future a deferred write runs; it yields the number of rows it changed.
pub(crate) type WriteJob = BoxFuture<'static, DfResult<u64>>;

fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

/// A DML plan whose work happens on `execute`, producing DataFusion's `count` row.
pub(crate) struct DeferredWriteExec {
    description: String,
    job: Mutex<Option<WriteJob>>,
    properties: Arc<PlanProperties>,
}

impl DeferredWriteExec {
    pub fn new(description: String, job: WriteJob) -> Self {
        let schema = count_schema();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        DeferredWriteExec {
            description,
            job: Mutex::new(Some(job)),
            properties: Arc::new(properties),
        }
    }
}

impl fmt::Debug for DeferredWriteExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeferredWriteExec({})", self.description)
    }
}

impl DisplayAs for DeferredWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "DeltaWriteExec: {}", self.description)
    }
}

impl ExecutionPlan for DeferredWriteExec {
    fn name(&self) -> &str {
        "DeltaWriteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
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
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "DeltaWriteExec has one partition, asked for {partition}"
            )));
        }
        let job =
            self.job.lock().expect("job lock").take().ok_or_else(|| {
                DataFusionError::Execution("this write has already run".to_string())
            })?;
        let schema = count_schema();
        let batch_schema = schema.clone();
        let stream = futures::stream::once(async move {
            let rows = job.await?;
            let column: ArrayRef = Arc::new(UInt64Array::from(vec![rows]));
            Ok(RecordBatch::try_new(batch_schema, vec![column])?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// A table whose scan is a given physical plan (usable once per planning).
#[derive(Debug)]
pub(crate) struct PlanTable {
    plan: Arc<dyn ExecutionPlan>,
}

impl PlanTable {
    pub fn new(plan: Arc<dyn ExecutionPlan>) -> Self {
        PlanTable { plan }
    }
}

#[async_trait]
impl TableProvider for PlanTable {
    fn schema(&self) -> SchemaRef {
        self.plan.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match projection {
            None => Ok(self.plan.clone()),
            Some(indices) => {
                let schema = self.plan.schema();
                let exprs = indices
                    .iter()
                    .map(|&i| {
                        let field = schema.field(i);
                        let column: Arc<dyn PhysicalExpr> = Arc::new(
                            datafusion::physical_expr::expressions::Column::new(field.name(), i),
                        );
                        (column, field.name().clone())
                    })
                    .collect::<Vec<_>>();
                Ok(Arc::new(
                    datafusion::physical_plan::projection::ProjectionExec::try_new(
                        exprs,
                        self.plan.clone(),
                    )?,
                ))
            }
        }
    }
}
