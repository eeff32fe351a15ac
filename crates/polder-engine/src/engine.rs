//! The engine: one DataFusion session over the catalog and the lake, and the statement loop
//! that sends DDL to the catalog, DML to Delta commits and queries to DataFusion.

use std::sync::Arc;

use datafusion::arrow::array::{Array, TimestampNanosecondArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::common::TableReference;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{DdlStatement, DmlStatement, LogicalPlan, WriteOp};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    AlterTableOperation, CreateView, Ident, ObjectName, ObjectNamePart, Statement,
};
use polder_catalog::{CatalogStore, TableKind};
use polder_core::{CATALOG_NAME, DEFAULT_SCHEMA, S3Config, validate_identifier};
use polder_lake::Lake;

use crate::access;
use crate::catalog::{CatalogState, PolderCatalogList, TableSelector};
use crate::dialect::PolderDialect;
use crate::error::{EngineError, Result};
use crate::rewrite::{
    PendingVersion, aggregate_catalog_subqueries, apply_selectors, collect_versions,
    normalize_like_escapes, rewrite_shorthands, show_statement_query,
};
use crate::table::PolderTable;

/// A function that ignores its arguments and returns NULL; the SQL rewrites put it where they
/// remove an expression that held bound parameters.
pub(crate) const DISCARD_FUNCTION: &str = "polder_discard";

#[derive(Debug, PartialEq, Eq, Hash)]
struct Discard {
    signature: datafusion::logical_expr::Signature,
}

impl datafusion::logical_expr::ScalarUDFImpl for Discard {
    fn name(&self) -> &str {
        DISCARD_FUNCTION
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Null)
    }

    fn invoke_with_args(
        &self,
        _args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        Ok(datafusion::logical_expr::ColumnarValue::Scalar(
            datafusion::scalar::ScalarValue::Null,
        ))
    }
}

/// What a statement that returns no rows did: the command tag clients show (`INSERT`, `CREATE
/// TABLE`, ...) and, for writes, how many rows it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    pub tag: String,
    pub rows: Option<u64>,
}

impl CommandOutcome {
    pub fn new(tag: &str) -> Self {
        CommandOutcome {
            tag: tag.to_string(),
            rows: None,
        }
    }

    pub fn with_rows(mut self, rows: Option<u64>) -> Self {
        self.rows = rows;
        self
    }
}

/// The result of one statement.
#[derive(Debug)]
pub enum StatementOutput {
    /// Rows, not yet computed: execute or stream the frame.
    Query(DataFrame),
    Command(CommandOutcome),
}

/// The SQL engine. Cheap to share behind an `Arc`; every listener uses the same one.
pub struct Engine {
    pub(crate) session: Arc<SessionContext>,
    pub(crate) catalog: Arc<CatalogState>,
    query_log: Arc<crate::query_log::QueryLog>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("catalog", &self.catalog)
            .finish()
    }
}

impl Engine {
    /// Opens the catalog store and the lake and builds the session.
    pub async fn open(catalog_url: &str, lake_url: &str, s3: &S3Config) -> Result<Engine> {
        let store = CatalogStore::open(catalog_url).await?;
        let lake = Lake::open(lake_url, s3)?;
        Engine::from_parts(store, lake).await
    }

    pub async fn from_parts(store: CatalogStore, lake: Lake) -> Result<Engine> {
        let catalog = Arc::new(CatalogState::new(store, lake));
        // DataFusion's own tuning knobs (`DATAFUSION_EXECUTION_TARGET_PARTITIONS`, ...) are read
        // from the environment; the settings below are the ones Polder relies on.
        let base = SessionConfig::from_env().map_err(EngineError::DataFusion)?;
        let mut config = base
            .with_information_schema(true)
            .with_default_catalog_and_schema(CATALOG_NAME, DEFAULT_SCHEMA)
            .with_create_default_catalog_and_schema(false);
        let options = config.options_mut();
        options.sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
        // VARCHAR/TEXT columns are created as plain strings (Delta has one string type; reads
        // come back as Utf8View, which DataFusion processes fastest).
        options.sql_parser.map_string_types_to_utf8view = false;
        // Timestamps with a time zone (TIMESTAMPTZ, now()) are in UTC, as clients expect.
        options.execution.time_zone = Some("UTC".to_string());
        let results = crate::results_cache::ResultsCache::from_env();
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            // Delta's writes plan nodes of their own (metrics observers, merge barriers); query
            // results come from and go to the results cache on the way.
            .with_query_planner(Arc::new(crate::results_cache::CachingPlanner::new(
                polder_lake::deltalake::delta_datafusion::planner::DeltaPlanner::new(),
                results.clone(),
                catalog.clone(),
            )))
            // Reflections: aggregates after type coercion, scans once projections are known.
            .with_analyzer_rule(Arc::new(
                crate::reflection::substitute::SubstituteAggregates {
                    registry: catalog.reflections.clone(),
                },
            ))
            .with_optimizer_rule(Arc::new(crate::reflection::substitute::SubstituteScans {
                registry: catalog.reflections.clone(),
            }))
            .with_catalog_list(Arc::new(PolderCatalogList::new(catalog.clone())))
            .build();
        let session = Arc::new(SessionContext::new_with_state(state));
        session.register_udf(datafusion::logical_expr::ScalarUDF::from(Discard {
            signature: datafusion::logical_expr::Signature::variadic_any(
                datafusion::logical_expr::Volatility::Immutable,
            ),
        }));
        catalog.set_session(&session);
        let query_log = crate::query_log::QueryLog::new(catalog.store.clone());
        if let Some(polder) = session.catalog(CATALOG_NAME) {
            polder.register_schema(
                crate::system::SYSTEM_SCHEMA,
                Arc::new(crate::system::SystemSchema {
                    store: catalog.store.clone(),
                    queries: query_log.clone(),
                }),
            )?;
        }
        catalog.reload().await?;
        Ok(Engine {
            session,
            catalog,
            query_log,
        })
    }

    /// The DataFusion session (listeners add their functions and `pg_catalog` to it).
    pub fn session(&self) -> &SessionContext {
        &self.session
    }

    /// Query history: listeners time each statement with it; `system.queries` reads it.
    pub fn query_log(&self) -> &Arc<crate::query_log::QueryLog> {
        &self.query_log
    }

    pub fn catalog_store(&self) -> &CatalogStore {
        &self.catalog.store
    }

    pub fn lake(&self) -> &Lake {
        &self.catalog.lake
    }

    /// Brings the engine's view of the catalog up to date with the store (changes made by
    /// other processes). Call once per request before planning.
    pub async fn sync(&self) -> Result<()> {
        self.catalog.sync().await
    }

    /// Runs `work` with the table rights of the user `owner` while row policies and column
    /// masks keep applying to the caller — how something one user saved and shared with others
    /// (a chart on a dashboard) runs, as a view's definition does. Without authentication
    /// (no current principal) `work` runs as it is.
    pub async fn run_with_owner_rights<F: std::future::Future>(
        &self,
        owner: &str,
        work: F,
    ) -> Result<F::Output> {
        let Some(current) = crate::access::current() else {
            return Ok(work.await);
        };
        self.sync().await?;
        let Some(role) = self.catalog.security().roles.get(owner).copied() else {
            return Err(EngineError::PermissionDenied(format!(
                "its owner '{owner}' no longer exists"
            )));
        };
        let mut access = crate::access::Access::new(polder_core::Principal::new(
            owner,
            role,
            "shared by its owner",
        ));
        access.reader = current.reader.clone();
        Ok(crate::access::run_with(access, work).await)
    }

    /// Parses SQL in Polder's dialect (PostgreSQL plus time travel and `DESCRIBE HISTORY`).
    pub fn parse(&self, sql: &str) -> Result<Vec<DFStatement>> {
        Ok(self.parse_with_shorthands(sql)?.0)
    }

    /// [`Engine::parse`], and whether Polder's shorthands (`DESCRIBE HISTORY`, `SHOW GRANTS`,
    /// column masks) were rewritten on the way.
    fn parse_with_shorthands(&self, sql: &str) -> Result<(Vec<DFStatement>, bool)> {
        let rewritten = rewrite_shorthands(sql)?;
        let text = rewritten.as_deref().unwrap_or(sql);
        let statements = DFParser::parse_sql_with_dialect(text, &PolderDialect::default())
            .map_err(|e| EngineError::Syntax(crate::error::datafusion_message(&e)))?;
        for statement in &statements {
            refuse_explain_analyze_of_writes(statement)?;
        }
        Ok((statements.into_iter().collect(), rewritten.is_some()))
    }

    /// Runs every statement of `sql` in order and returns each result; the first failure stops
    /// the batch (statements before it stay committed, as in `psql`).
    pub async fn execute_sql(&self, sql: &str) -> Result<Vec<StatementOutput>> {
        self.sync().await?;
        let statements = self.parse(sql)?;
        let mut outputs = Vec::with_capacity(statements.len());
        for statement in statements {
            outputs.push(self.execute(statement).await?);
        }
        Ok(outputs)
    }

    /// Runs one parsed statement, as the principal of [`access::run_as`] when one is set.
    pub async fn execute(&self, statement: DFStatement) -> Result<StatementOutput> {
        self.execute_with_params(statement, None).await
    }

    /// Runs one statement with parameter values (a prepared statement), authorized and
    /// audited like any other; without parameters it is [`Engine::execute`].
    pub async fn execute_with_params(
        &self,
        statement: DFStatement,
        params: Option<&datafusion::common::ParamValues>,
    ) -> Result<StatementOutput> {
        let audited = crate::audit::audited_action(&statement);
        let text = audited.map(|_| statement.to_string());
        let rights = access::authorize_statement(&statement);
        let work = async {
            match params {
                None => self.execute_authorized(statement).await,
                Some(values) => {
                    let plan = self.plan_authorized(statement).await?;
                    self.execute_plan(plan.replace_params_with_values(values)?)
                        .await
                }
            }
        };
        let result = match rights {
            Ok(Some(mut rights)) => {
                rights.statement_audited = audited.is_some();
                access::run_with(rights, work).await
            }
            Ok(None) => work.await,
            Err(denied) => Err(denied),
        };
        if let (Some(action), Some(text)) = (audited, text) {
            crate::audit::record(&self.catalog.store, action, &text, result.as_ref().err()).await;
        }
        result
    }

    async fn execute_authorized(&self, statement: DFStatement) -> Result<StatementOutput> {
        let statement = self.rewrite(statement).await?;
        if let DFStatement::Statement(ast) = &statement
            && let Some(outcome) = self.execute_catalog_statement(ast).await?
        {
            return Ok(StatementOutput::Command(outcome));
        }
        if let DFStatement::CreateExternalTable(_) = &statement {
            return Err(EngineError::Unsupported(
                "CREATE EXTERNAL TABLE; load files with `polder import` or CREATE TABLE ... AS SELECT".to_string(),
            ));
        }
        if let DFStatement::CopyTo(_) = &statement {
            return Err(EngineError::Unsupported(
                "COPY ... TO; export results through the HTTP API (CSV, Parquet, Arrow) or Flight SQL".to_string(),
            ));
        }
        let plan = self.session.state().statement_to_plan(statement).await?;
        self.execute_plan(plan).await
    }

    /// Plans one statement without running it (for clients that describe before executing).
    pub async fn plan(&self, statement: DFStatement) -> Result<LogicalPlan> {
        match access::authorize_statement(&statement)? {
            Some(rights) => access::run_with(rights, self.plan_authorized(statement)).await,
            None => self.plan_authorized(statement).await,
        }
    }

    async fn plan_authorized(&self, statement: DFStatement) -> Result<LogicalPlan> {
        let statement = self.rewrite(statement).await?;
        Ok(self.session.state().statement_to_plan(statement).await?)
    }

    /// Runs a planned statement: DDL on the catalog, DML as one Delta commit, queries lazily.
    pub async fn execute_plan(&self, plan: LogicalPlan) -> Result<StatementOutput> {
        match plan {
            LogicalPlan::Ddl(ddl) => self.execute_ddl(ddl).await.map(StatementOutput::Command),
            LogicalPlan::Dml(dml) => self.execute_dml(dml).await.map(StatementOutput::Command),
            LogicalPlan::Copy(_) => Err(EngineError::Unsupported(
                "COPY ... TO; export results through the HTTP API or Flight SQL".to_string(),
            )),
            LogicalPlan::Statement(
                datafusion::logical_expr::Statement::SetVariable(_)
                | datafusion::logical_expr::Statement::ResetVariable(_),
            ) => Err(EngineError::Unsupported(
                "SET here: the engine's settings are shared by every client; \
                 PostgreSQL-wire sessions keep their own SET values"
                    .to_string(),
            )),
            LogicalPlan::Statement(datafusion::logical_expr::Statement::TransactionStart(_)) => {
                Ok(StatementOutput::Command(CommandOutcome::new("BEGIN")))
            }
            LogicalPlan::Statement(datafusion::logical_expr::Statement::TransactionEnd(end)) => {
                match end.conclusion {
                    datafusion::logical_expr::TransactionConclusion::Commit => {
                        Ok(StatementOutput::Command(CommandOutcome::new("COMMIT")))
                    }
                    datafusion::logical_expr::TransactionConclusion::Rollback => Err(EngineError::Unsupported(
                        "ROLLBACK: every statement commits on its own as one atomic Delta commit".to_string(),
                    )),
                }
            }
            LogicalPlan::Explain(_) => self.explain_with_reflections(plan).await,
            plan => {
                let frame = self.session.execute_logical_plan(plan).await?;
                Ok(StatementOutput::Query(frame))
            }
        }
    }

    /// Runs an `EXPLAIN` and adds a `reflections` row: which reflection served which part of
    /// the plan, and why the others did not.
    async fn explain_with_reflections(&self, plan: LogicalPlan) -> Result<StatementOutput> {
        let frame = self.session.execute_logical_plan(plan).await?;
        let (batches, notes) = crate::reflection::collect_notes(frame.collect()).await;
        let mut batches = batches?;
        let Some(schema) = batches.first().map(|b| b.schema()) else {
            return Ok(StatementOutput::Query(self.session.read_empty()?));
        };
        let text = if notes.is_empty() {
            "no reflection applies to the tables this query reads".to_string()
        } else {
            notes.join("\n")
        };
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let value = if i == 0 { "reflections" } else { text.as_str() };
                let array: datafusion::arrow::array::ArrayRef =
                    Arc::new(datafusion::arrow::array::StringArray::from(vec![value]));
                datafusion::arrow::compute::cast(&array, field.data_type())
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| EngineError::DataFusion(e.into()))?;
        batches.push(
            datafusion::arrow::record_batch::RecordBatch::try_new(schema, columns)
                .map_err(|e| EngineError::DataFusion(e.into()))?,
        );
        Ok(StatementOutput::Query(self.session.read_batches(batches)?))
    }

    /// Wakes the reflection maintenance after a commit made by this process.
    pub(crate) fn committed(&self) {
        self.catalog.reflections.committed.notify_one();
    }

    async fn execute_ddl(&self, ddl: DdlStatement) -> Result<CommandOutcome> {
        match ddl {
            DdlStatement::CreateMemoryTable(create) => {
                if create.temporary {
                    return Err(EngineError::Unsupported("temporary tables".to_string()));
                }
                if !create.column_defaults.is_empty() {
                    return Err(EngineError::Unsupported(
                        "column DEFAULT values; insert the values explicitly".to_string(),
                    ));
                }
                self.create_table(
                    &create.name,
                    &create.input,
                    create.if_not_exists,
                    create.or_replace,
                )
                .await
            }
            DdlStatement::CreateCatalogSchema(create) => {
                let schema = strip_catalog(&create.schema_name)?;
                self.create_schema(&schema, create.if_not_exists).await
            }
            DdlStatement::DropCatalogSchema(drop) => {
                let schema = match &drop.name {
                    datafusion::common::SchemaReference::Bare { schema } => schema.to_string(),
                    datafusion::common::SchemaReference::Full { schema, catalog } => {
                        if catalog.as_ref() != CATALOG_NAME {
                            return Err(EngineError::NotFound(format!(
                                "catalog '{catalog}' does not exist"
                            )));
                        }
                        schema.to_string()
                    }
                };
                self.drop_schema(&schema, drop.if_exists, drop.cascade)
                    .await
            }
            DdlStatement::DropTable(drop) => {
                self.drop_relation(&drop.name, TableKind::Table, drop.if_exists)
                    .await
            }
            DdlStatement::DropView(drop) => {
                self.drop_relation(&drop.name, TableKind::View, drop.if_exists)
                    .await
            }
            DdlStatement::CreateView(view) => {
                // Views are created from the SQL text (see `execute_catalog_statement`); this only
                // happens for plans built elsewhere.
                let definition = view.definition.clone().ok_or_else(|| {
                    EngineError::Unsupported("a view without its SQL definition".to_string())
                })?;
                self.create_view(&view.name, &definition, view.or_replace, false)
                    .await
            }
            other => Err(EngineError::Unsupported(other.name().to_string())),
        }
    }

    async fn execute_dml(&self, dml: DmlStatement) -> Result<CommandOutcome> {
        if let WriteOp::MergeInto(merge) = &dml.op
            && let Some(rows) = self.merge_with_logical_source(&dml, merge).await?
        {
            return Ok(CommandOutcome::new("MERGE").with_rows(Some(rows)));
        }
        let tag = match &dml.op {
            WriteOp::Insert(_) => "INSERT",
            WriteOp::Delete => "DELETE",
            WriteOp::Update => "UPDATE",
            WriteOp::MergeInto(_) => "MERGE",
            WriteOp::Truncate => "TRUNCATE TABLE",
            WriteOp::Ctas => "SELECT",
            _ => "WRITE",
        };
        let frame = self
            .session
            .execute_logical_plan(LogicalPlan::Dml(dml))
            .await?;
        let batches = frame.collect().await;
        self.committed();
        let batches = batches?;
        let mut rows = 0u64;
        for batch in &batches {
            if let Some(counts) = batch
                .column_by_name("count")
                .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            {
                rows += counts.iter().flatten().sum::<u64>();
            }
        }
        Ok(CommandOutcome::new(tag).with_rows(Some(rows)))
    }

    /// Runs MERGE with its source as a logical plan, which deltalake can read twice (once to
    /// narrow the target files to the source's key range, once to join).
    async fn merge_with_logical_source(
        &self,
        dml: &DmlStatement,
        merge: &datafusion::logical_expr::MergeIntoOp,
    ) -> Result<Option<u64>> {
        let provider = datafusion::datasource::source_as_provider(&dml.target)?;
        let Some(table) = provider.downcast_ref::<PolderTable>() else {
            return Ok(None);
        };
        let state = self.session.state();
        let target_schema = datafusion::common::DFSchema::try_from_qualified_schema(
            dml.table_name.clone(),
            &dml.target.schema(),
        )?;
        let merge_schema = Arc::new(target_schema.join(dml.input.schema())?);
        let source = DataFrame::new(state.clone(), dml.input.as_ref().clone());
        let job = table.merge_job(
            Arc::new(state),
            source,
            &merge_schema,
            merge.on.clone(),
            merge.clauses.clone(),
            false,
        )?;
        let rows = job.await;
        self.committed();
        Ok(Some(rows?))
    }

    /// Statements planned from their SQL text rather than by DataFusion.
    async fn execute_catalog_statement(
        &self,
        statement: &Statement,
    ) -> Result<Option<CommandOutcome>> {
        match statement {
            Statement::CreateView(CreateView {
                name,
                columns,
                query,
                or_replace,
                materialized,
                temporary,
                if_not_exists,
                ..
            }) => {
                if *materialized {
                    return Err(EngineError::Unsupported(
                        "materialized views; create a table with CREATE TABLE ... AS SELECT"
                            .to_string(),
                    ));
                }
                if *temporary {
                    return Err(EngineError::Unsupported("temporary views".to_string()));
                }
                if !columns.is_empty() {
                    return Err(EngineError::Unsupported(
                        "a column list in CREATE VIEW; name the columns with AS in the SELECT"
                            .to_string(),
                    ));
                }
                let reference = object_name_to_reference(name)?;
                let outcome = self
                    .create_view(&reference, &query.to_string(), *or_replace, *if_not_exists)
                    .await?;
                Ok(Some(outcome))
            }
            Statement::AlterTable(alter) => {
                let reference = object_name_to_reference(&alter.name)?;
                let mut fields = Vec::new();
                for operation in &alter.operations {
                    match operation {
                        AlterTableOperation::AddColumn { column_def, .. } => {
                            let data_type =
                                self.resolve_type(&column_def.data_type.to_string()).await?;
                            fields.push(Field::new(
                                normalize_ident(&column_def.name),
                                data_type,
                                true,
                            ));
                        }
                        other => {
                            return Err(EngineError::Unsupported(format!(
                                "ALTER TABLE {other}; only ADD COLUMN is supported"
                            )));
                        }
                    }
                }
                Ok(Some(self.add_columns(&reference, fields).await?))
            }
            Statement::Grant(grant) => self.grant(grant).await.map(Some),
            Statement::Revoke(revoke) => self.revoke(revoke).await.map(Some),
            Statement::CreatePolicy(policy) => self.create_policy(policy).await.map(Some),
            Statement::DropPolicy(drop) => self.drop_policy(drop).await.map(Some),
            Statement::Call(call)
                if call
                    .name
                    .to_string()
                    .eq_ignore_ascii_case(crate::reflection::manage::REFLECTION_PROCEDURE) =>
            {
                let text = reflection_call_text(call)?;
                // Boxed: building a reflection is a deep future; keep it off the caller's stack.
                Box::pin(self.reflection_statement(&text)).await.map(Some)
            }
            Statement::Call(call) => match self.column_mask_call(call).await? {
                Some(outcome) => Ok(Some(outcome)),
                None => Err(EngineError::Unsupported(format!(
                    "CALL {}: Polder has no such procedure",
                    call.name
                ))),
            },
            _ => Ok(None),
        }
    }

    /// The Arrow type a SQL type name plans to.
    async fn resolve_type(&self, sql_type: &str) -> Result<DataType> {
        let plan = self
            .session
            .state()
            .create_logical_plan(&format!("SELECT CAST(NULL AS {sql_type}) AS c"))
            .await?;
        Ok(plan.schema().field(0).data_type().clone())
    }

    /// Applies the SQL rewrites of [`crate::rewrite`] to one statement.
    async fn rewrite(&self, statement: DFStatement) -> Result<DFStatement> {
        match statement {
            DFStatement::Statement(ast) => {
                let mut ast = *ast;
                if let Some(query) = show_statement_query(&ast) {
                    ast = DFParser::parse_sql_with_dialect(&query, &PolderDialect::default())
                        .map_err(EngineError::DataFusion)?
                        .pop_front()
                        .and_then(|s| match s {
                            DFStatement::Statement(inner) => Some(*inner),
                            _ => None,
                        })
                        .expect("generated SHOW query parses");
                }
                let pending = collect_versions(&mut ast)?;
                let mut selectors = Vec::with_capacity(pending.len());
                for version in pending {
                    selectors.push(match version {
                        PendingVersion::Version(number) => TableSelector::Version(number),
                        PendingVersion::Timestamp(expr) => TableSelector::Timestamp(
                            self.evaluate_timestamp(&expr.to_string()).await?,
                        ),
                    });
                }
                apply_selectors(&mut ast, selectors)?;
                normalize_like_escapes(&mut ast);
                aggregate_catalog_subqueries(&mut ast);
                Ok(DFStatement::Statement(Box::new(ast)))
            }
            DFStatement::Explain(mut explain) => {
                let inner = Box::pin(self.rewrite(*explain.statement)).await?;
                explain.statement = Box::new(inner);
                Ok(DFStatement::Explain(explain))
            }
            other => Ok(other),
        }
    }

    /// Evaluates a `TIMESTAMP AS OF` expression to milliseconds since the epoch (UTC).
    async fn evaluate_timestamp(&self, expr_sql: &str) -> Result<i64> {
        let frame = self
            .session
            .sql(&format!("SELECT CAST(({expr_sql}) AS TIMESTAMP) AS at"))
            .await
            .map_err(|e| {
                EngineError::InvalidInput(format!(
                    "TIMESTAMP AS OF {expr_sql}: not a timestamp ({})",
                    crate::error::datafusion_message(&e)
                ))
            })?;
        let batches = frame.collect().await.map_err(|e| {
            EngineError::InvalidInput(format!(
                "TIMESTAMP AS OF {expr_sql}: not a timestamp ({})",
                crate::error::datafusion_message(&e)
            ))
        })?;
        let column = batches.first().map(|b| b.column(0).clone());
        let Some(column) = column else {
            return Err(EngineError::InvalidInput(format!(
                "TIMESTAMP AS OF {expr_sql}: no value"
            )));
        };
        let nanos = datafusion::arrow::compute::cast(
            &column,
            &DataType::Timestamp(TimeUnit::Nanosecond, None),
        )
        .map_err(|e| EngineError::InvalidInput(format!("TIMESTAMP AS OF {expr_sql}: {e}")))?;
        let nanos = nanos
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .expect("cast to nanosecond timestamps");
        if nanos.is_empty() || nanos.is_null(0) {
            return Err(EngineError::InvalidInput(format!(
                "TIMESTAMP AS OF {expr_sql}: the timestamp is NULL"
            )));
        }
        Ok(nanos.value(0).div_euclid(1_000_000))
    }

    /// Prepares SQL for a client path that parses and plans it itself (the PostgreSQL wire):
    /// Polder's extensions rewritten, and the rights its first statement runs with. SQL that
    /// does not parse in Polder's dialect is passed on unchanged (the client path then reports
    /// its own error).
    pub async fn rewrite_sql(&self, sql: &str) -> Result<PreparedSql> {
        let (statements, mut changed) = match self.parse_with_shorthands(sql) {
            Ok(parsed) => parsed,
            // Refused on purpose, not a syntax the client library may know better.
            Err(refused @ EngineError::Unsupported(_)) => return Err(refused),
            Err(_) => {
                return Ok(PreparedSql {
                    rewritten: None,
                    rights: Ok(None),
                });
            }
        };
        let rights = statements
            .first()
            .map(access::authorize_statement)
            .transpose()
            .map(Option::flatten);
        let mut texts = Vec::with_capacity(statements.len());
        for statement in statements {
            let before = statement.to_string();
            let after = self.rewrite(statement).await?.to_string();
            changed |= before != after;
            texts.push(after);
        }
        Ok(PreparedSql {
            rewritten: changed.then(|| texts.join(";\n")),
            rights,
        })
    }

    /// Whether `statement` must be run by [`Engine::execute`] rather than by DataFusion alone
    /// (it changes the catalog or writes a table).
    pub fn is_engine_statement(statement: &Statement) -> bool {
        matches!(
            statement,
            Statement::CreateTable(_)
                | Statement::CreateView(_)
                | Statement::CreateSchema { .. }
                | Statement::Drop { .. }
                | Statement::AlterTable(_)
                | Statement::Insert(_)
                | Statement::Update(_)
                | Statement::Delete(_)
                | Statement::Merge(_)
                | Statement::Truncate(_)
                | Statement::Grant(_)
                | Statement::Revoke(_)
                | Statement::CreatePolicy(_)
                | Statement::DropPolicy(_)
                | Statement::Call(_)
                | Statement::StartTransaction { .. }
                | Statement::Commit { .. }
                | Statement::Rollback { .. }
        )
    }
}

/// The statement text of `CALL polder_reflection('<statement>')`.
fn reflection_call_text(call: &datafusion::sql::sqlparser::ast::Function) -> Result<String> {
    use datafusion::sql::sqlparser::ast::{
        Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, Value,
    };
    let FunctionArguments::List(list) = &call.args else {
        return Err(EngineError::Syntax(
            "expected CREATE / DROP / REFRESH REFLECTION".to_string(),
        ));
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(value)))] => {
            match &value.value {
                Value::SingleQuotedString(text) => Ok(text.clone()),
                _ => Err(EngineError::Syntax(
                    "expected CREATE / DROP / REFRESH REFLECTION".to_string(),
                )),
            }
        }
        _ => Err(EngineError::Syntax(
            "expected CREATE / DROP / REFRESH REFLECTION".to_string(),
        )),
    }
}

/// SQL made ready for a client path that plans it itself ([`Engine::rewrite_sql`]).
pub struct PreparedSql {
    /// The SQL to hand on when Polder's extensions changed it.
    pub rewritten: Option<String>,
    /// The rights the first statement runs with (its write target set), or its refusal.
    rights: Result<Option<access::Access>>,
}

impl PreparedSql {
    /// The SQL to plan: the rewritten text, or `original` when nothing changed.
    pub fn sql<'a>(&'a self, original: &'a str) -> &'a str {
        self.rewritten.as_deref().unwrap_or(original)
    }

    /// Runs `work` (the client library planning the SQL) with the statement's rights; refused
    /// at once when the role may not run it.
    pub async fn run_with_rights<F: std::future::Future>(self, work: F) -> Result<F::Output> {
        match self.rights? {
            Some(rights) => Ok(access::run_with(rights, work).await),
            None => Ok(work.await),
        }
    }
}

/// `EXPLAIN ANALYZE` runs the statement it explains; for a write that would be a write that
/// bypasses the write path's checks and audit, so it is refused (plain `EXPLAIN` is fine).
fn refuse_explain_analyze_of_writes(statement: &DFStatement) -> Result<()> {
    let DFStatement::Explain(explain) = statement else {
        return Ok(());
    };
    let is_write = matches!(
        explain.statement.as_ref(),
        DFStatement::Statement(inner) if Engine::is_engine_statement(inner)
    ) || matches!(explain.statement.as_ref(), DFStatement::CopyTo(_));
    if explain.options.analyze && is_write {
        return Err(EngineError::Unsupported(
            "EXPLAIN ANALYZE of a statement that changes something (it would run it); use EXPLAIN"
                .to_string(),
        ));
    }
    Ok(())
}

pub(crate) fn normalize_ident(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// `a`, `s.a` or `c.s.a` as a table reference, normalized as DataFusion does.
pub(crate) fn object_name_to_reference(name: &ObjectName) -> Result<TableReference> {
    let mut parts = Vec::with_capacity(name.0.len());
    for part in &name.0 {
        match part {
            ObjectNamePart::Identifier(ident) => parts.push(normalize_ident(ident)),
            other => return Err(EngineError::Unsupported(format!("name part {other}"))),
        }
    }
    match parts.as_slice() {
        [table] => Ok(TableReference::bare(table.clone())),
        [schema, table] => Ok(TableReference::partial(schema.clone(), table.clone())),
        [catalog, schema, table] => Ok(TableReference::full(
            catalog.clone(),
            schema.clone(),
            table.clone(),
        )),
        _ => Err(EngineError::InvalidInput(format!(
            "'{name}' is not a table name"
        ))),
    }
}

fn strip_catalog(schema_name: &str) -> Result<String> {
    if validate_identifier(schema_name).is_ok() {
        return Ok(schema_name.to_string());
    }
    if let Some((catalog, schema)) = schema_name.split_once('.')
        && validate_identifier(catalog).is_ok()
        && validate_identifier(schema).is_ok()
    {
        if catalog != CATALOG_NAME {
            return Err(EngineError::NotFound(format!(
                "catalog '{catalog}' does not exist"
            )));
        }
        return Ok(schema.to_string());
    }
    validate_identifier(schema_name)?;
    Ok(schema_name.to_string())
}
