//! A Polder table as DataFusion sees it: reads through deltalake's scan, and every write
//! (INSERT, DELETE, UPDATE, MERGE, TRUNCATE) as exactly one Delta commit.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchemaRef, Statistics, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionState;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    Expr, LogicalPlanBuilder, MergeIntoAction, MergeIntoClause, MergeIntoClauseKind,
    TableProviderFilterPushDown, TableType,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::DataFrame;
use polder_lake::deltalake::DeltaTable;
use polder_lake::deltalake::delta_datafusion::DeltaColumn;
use polder_lake::deltalake::operations::merge::MergeBuilder;

use crate::catalog::CatalogState;
use crate::error::EngineError;
use crate::exec::{DeferredWriteExec, PlanTable, WriteJob};

/// A Delta table at one version, readable, and writable when it is the latest version.
#[derive(Debug)]
pub(crate) struct PolderTable {
    name: String,
    table: DeltaTable,
    scan: Arc<dyn TableProvider>,
    writable: bool,
    catalog: Arc<CatalogState>,
}

impl PolderTable {
    pub async fn try_new(
        name: String,
        table: DeltaTable,
        writable: bool,
        catalog: Arc<CatalogState>,
        session: Option<Arc<SessionState>>,
    ) -> Result<Self, EngineError> {
        let snapshot = table
            .snapshot()
            .map_err(|e| polder_lake::LakeError::from_delta(table.table_url().as_str(), e))?
            .snapshot()
            .clone();
        // With the session, the scan follows its Parquet settings (filter pushdown into the
        // Parquet reader off, as DataFusion's default: evaluating filters after decoding is
        // faster for most analytical queries).
        let mut builder = table.table_provider().with_eager_snapshot(snapshot);
        if let Some(session) = session {
            builder = builder.with_session(session);
        }
        let scan = builder.build().await?;
        Ok(PolderTable {
            name,
            table,
            scan: Arc::new(scan),
            writable,
            catalog,
        })
    }

    /// `schema.table`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Delta version this provider reads.
    pub fn version(&self) -> i64 {
        self.table.version().map(|v| v as i64).unwrap_or(-1)
    }

    /// Rows of this version, from the Delta statistics (`None` when a file lacks them).
    pub fn num_rows(&self) -> Option<u64> {
        polder_lake::Lake::stats(&self.table).ok()?.num_rows
    }

    /// The Delta table's id: a table dropped and made again under its name has another one.
    pub fn table_id(&self) -> String {
        self.table
            .snapshot()
            .map(|state| state.metadata().id().to_string())
            .unwrap_or_default()
    }

    fn ensure_writable(&self, operation: &str) -> DfResult<()> {
        if self.writable {
            return Ok(());
        }
        Err(EngineError::InvalidInput(format!(
            "cannot {operation} a past version of '{}': time travel is read-only",
            self.name
        ))
        .into_datafusion())
    }

    fn session_state(state: &dyn Session) -> DfResult<Arc<SessionState>> {
        state
            .as_any()
            .downcast_ref::<SessionState>()
            .map(|s| Arc::new(s.clone()))
            .ok_or_else(|| DataFusionError::Internal("writes need a SessionState".to_string()))
    }

    fn deferred(&self, operation: &str, job: WriteJob) -> Arc<dyn ExecutionPlan> {
        Arc::new(DeferredWriteExec::new(
            format!("{operation} {}", self.name),
            job,
        ))
    }
}

fn lake_error(table: &DeltaTable, err: polder_lake::deltalake::DeltaTableError) -> DataFusionError {
    EngineError::Lake(polder_lake::LakeError::from_delta(
        table.table_url().as_str(),
        err,
    ))
    .into_datafusion()
}

#[async_trait]
impl TableProvider for PolderTable {
    fn schema(&self) -> SchemaRef {
        self.scan.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn statistics(&self) -> Option<Statistics> {
        self.scan.statistics()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.scan.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.scan.supports_filters_pushdown(filters)
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.ensure_writable("insert into")?;
        self.scan.insert_into(state, input, insert_op).await
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.ensure_writable("delete from")?;
        let session = Self::session_state(state)?;
        let table = self.table.clone();
        let catalog = self.catalog.clone();
        let job: WriteJob = Box::pin(async move {
            let mut builder = table.clone().delete().with_session_state(session);
            if let Some(predicate) = conjunction(filters) {
                builder = builder.with_predicate(predicate);
            }
            let (table_after, metrics) = builder.await.map_err(|e| lake_error(&table, e))?;
            catalog.remember(&table_after);
            Ok(metrics.num_deleted_rows.unwrap_or(0) as u64)
        });
        Ok(self.deferred("DELETE", job))
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.ensure_writable("update")?;
        let schema = self.schema();
        for (column, _) in &assignments {
            if schema.field_with_name(column).is_err() {
                return Err(EngineError::InvalidInput(format!(
                    "column '{column}' of '{}' does not exist",
                    self.name
                ))
                .into_datafusion());
            }
        }
        // DataFusion lists every column as an assignment, unchanged ones as `col = col`;
        // only real changes go to deltalake.
        let changed: Vec<(String, Expr)> = assignments
            .into_iter()
            .filter(|(column, expr)| !matches!(expr, Expr::Column(c) if c.name == *column))
            .collect();
        let session = Self::session_state(state)?;
        let table = self.table.clone();
        let catalog = self.catalog.clone();
        let job: WriteJob = Box::pin(async move {
            let mut builder = table.clone().update().with_session_state(session);
            if let Some(predicate) = conjunction(filters) {
                builder = builder.with_predicate(predicate);
            }
            for (column, expr) in changed {
                builder =
                    builder.with_update(DeltaColumn::from(Column::new_unqualified(column)), expr);
            }
            let (table_after, metrics) = builder.await.map_err(|e| lake_error(&table, e))?;
            catalog.remember(&table_after);
            Ok(metrics.num_updated_rows as u64)
        });
        Ok(self.deferred("UPDATE", job))
    }

    async fn truncate(&self, state: &dyn Session) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.delete_from(state, vec![]).await
    }

    async fn merge_into(
        &self,
        state: &dyn Session,
        source: Arc<dyn ExecutionPlan>,
        merge_schema: DFSchemaRef,
        on: Expr,
        clauses: Vec<MergeIntoClause>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // The engine runs MERGE with its logical source (see `Engine::execute_dml`); this path
        // serves plans run by DataFusion directly. A physical source can be read only once, so
        // deltalake gets it as a streaming source.
        let session = Self::session_state(state)?;
        let source_plan = LogicalPlanBuilder::scan(
            MergeQualifiers::SOURCE,
            provider_as_source(Arc::new(PlanTable::new(source))),
            None,
        )?
        .build()?;
        let source_frame = DataFrame::new(session.as_ref().clone(), source_plan);
        let job = self.merge_job(session, source_frame, &merge_schema, on, clauses, true)?;
        Ok(self.deferred("MERGE", job))
    }
}

impl PolderTable {
    /// The MERGE of `source` into this table, as a job that commits once when run.
    ///
    /// `merge_schema` is the target's columns followed by the source's, with the qualifiers the
    /// SQL used; `streaming` says the source can be read only once.
    pub(crate) fn merge_job(
        &self,
        session: Arc<SessionState>,
        source: DataFrame,
        merge_schema: &DFSchemaRef,
        on: Expr,
        clauses: Vec<MergeIntoClause>,
        streaming: bool,
    ) -> DfResult<WriteJob> {
        self.ensure_writable("merge into")?;
        let target_fields = self.schema().fields().len();
        let qualifiers = MergeQualifiers::from_schema(merge_schema, target_fields);
        let on = qualifiers.rewrite(on)?;
        let mut rewritten = Vec::with_capacity(clauses.len());
        for clause in clauses {
            rewritten.push(qualifiers.rewrite_clause(clause)?);
        }
        let target_columns: Vec<String> = self
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        // The source's columns keep their own qualifier; deltalake is told it is `source`.
        let source = source.alias(MergeQualifiers::SOURCE)?;
        let table = self.table.clone();
        let catalog = self.catalog.clone();
        Ok(Box::pin(async move {
            let mut builder = table
                .clone()
                .merge(source, on)
                .with_source_alias(MergeQualifiers::SOURCE)
                .with_target_alias(MergeQualifiers::TARGET)
                .with_streaming(streaming)
                .with_session_state(session);
            for clause in rewritten {
                builder = add_merge_clause(builder, clause, &target_columns)
                    .map_err(|e| lake_error(&table, e))?;
            }
            let (table_after, metrics) = builder.await.map_err(|e| lake_error(&table, e))?;
            catalog.remember(&table_after);
            Ok((metrics.num_target_rows_inserted
                + metrics.num_target_rows_updated
                + metrics.num_target_rows_deleted) as u64)
        }))
    }
}

/// Renames MERGE's column qualifiers to the fixed aliases deltalake is given: target columns
/// become `target.x`, source columns `source.x`, whatever the SQL called them.
struct MergeQualifiers {
    target: Vec<Option<TableReference>>,
    source: Vec<Option<TableReference>>,
}

impl MergeQualifiers {
    const TARGET: &'static str = "target";
    const SOURCE: &'static str = "source";

    fn from_schema(schema: &DFSchemaRef, target_fields: usize) -> Self {
        let mut target = Vec::new();
        let mut source = Vec::new();
        for (index, (qualifier, _)) in schema.iter().enumerate() {
            let qualifier = qualifier.cloned();
            if index < target_fields {
                if !target.contains(&qualifier) {
                    target.push(qualifier);
                }
            } else if !source.contains(&qualifier) {
                source.push(qualifier);
            }
        }
        MergeQualifiers { target, source }
    }

    fn rewrite(&self, expr: Expr) -> DfResult<Expr> {
        expr.transform(|node| {
            let Expr::Column(column) = &node else {
                return Ok(Transformed::no(node));
            };
            let alias = if self.target.contains(&column.relation) {
                Self::TARGET
            } else if self.source.contains(&column.relation) {
                Self::SOURCE
            } else {
                return Ok(Transformed::no(node));
            };
            Ok(Transformed::yes(Expr::Column(Column::new(
                Some(TableReference::bare(alias)),
                column.name.clone(),
            ))))
        })
        .map(|t| t.data)
    }

    fn rewrite_clause(&self, clause: MergeIntoClause) -> DfResult<MergeIntoClause> {
        let predicate = clause.predicate.map(|p| self.rewrite(p)).transpose()?;
        let action = match clause.action {
            MergeIntoAction::Update(assignments) => MergeIntoAction::Update(
                assignments
                    .into_iter()
                    .map(|(column, expr)| Ok((column, self.rewrite(expr)?)))
                    .collect::<DfResult<_>>()?,
            ),
            MergeIntoAction::Insert { columns, values } => MergeIntoAction::Insert {
                columns,
                values: values
                    .into_iter()
                    .map(|v| self.rewrite(v))
                    .collect::<DfResult<_>>()?,
            },
            MergeIntoAction::Delete => MergeIntoAction::Delete,
        };
        Ok(MergeIntoClause {
            kind: clause.kind,
            predicate,
            action,
        })
    }
}

fn merge_column(name: &str) -> DeltaColumn {
    DeltaColumn::from(Column::new_unqualified(name))
}

fn add_merge_clause(
    builder: MergeBuilder,
    clause: MergeIntoClause,
    target_columns: &[String],
) -> Result<MergeBuilder, polder_lake::deltalake::DeltaTableError> {
    use polder_lake::deltalake::DeltaTableError;
    let MergeIntoClause {
        kind,
        predicate,
        action,
    } = clause;
    let unsupported =
        |what: &str| DeltaTableError::Generic(format!("MERGE: {what} is not a valid clause"));
    match (kind, action) {
        (MergeIntoClauseKind::Matched, MergeIntoAction::Update(assignments)) => builder
            .when_matched_update(|mut update| {
                if let Some(predicate) = predicate {
                    update = update.predicate(predicate);
                }
                for (column, expr) in assignments {
                    update = update.update(merge_column(&column), expr);
                }
                update
            }),
        (MergeIntoClauseKind::Matched, MergeIntoAction::Delete) => {
            builder.when_matched_delete(|mut delete| {
                if let Some(predicate) = predicate {
                    delete = delete.predicate(predicate);
                }
                delete
            })
        }
        (kind, MergeIntoAction::Insert { columns, values }) if kind.is_not_matched_by_target() => {
            let columns = if columns.is_empty() {
                target_columns.to_vec()
            } else {
                columns
            };
            if columns.len() != values.len() {
                return Err(DeltaTableError::Generic(format!(
                    "MERGE INSERT lists {} columns but {} values",
                    columns.len(),
                    values.len()
                )));
            }
            builder.when_not_matched_insert(|mut insert| {
                if let Some(predicate) = predicate {
                    insert = insert.predicate(predicate);
                }
                for (column, value) in columns.iter().zip(values) {
                    insert = insert.set(merge_column(column), value);
                }
                insert
            })
        }
        (MergeIntoClauseKind::NotMatchedBySource, MergeIntoAction::Update(assignments)) => builder
            .when_not_matched_by_source_update(|mut update| {
                if let Some(predicate) = predicate {
                    update = update.predicate(predicate);
                }
                for (column, expr) in assignments {
                    update = update.update(merge_column(&column), expr);
                }
                update
            }),
        (MergeIntoClauseKind::NotMatchedBySource, MergeIntoAction::Delete) => builder
            .when_not_matched_by_source_delete(|mut delete| {
                if let Some(predicate) = predicate {
                    delete = delete.predicate(predicate);
                }
                delete
            }),
        (MergeIntoClauseKind::Matched, MergeIntoAction::Insert { .. }) => {
            Err(unsupported("WHEN MATCHED THEN INSERT"))
        }
        (MergeIntoClauseKind::NotMatchedBySource, MergeIntoAction::Insert { .. }) => {
            Err(unsupported("WHEN NOT MATCHED BY SOURCE THEN INSERT"))
        }
        (_, _) => Err(unsupported("WHEN NOT MATCHED THEN UPDATE/DELETE")),
    }
}
