//! Runs the selected nodes of a project against the engine, in dependency order on N
//! threads: models by their materialization, seeds from CSV, tests as failing-row counts.
//!
//! Each materialization is one atomic step of the engine (`CREATE OR REPLACE TABLE ... AS`,
//! `INSERT`, `MERGE`: one Delta commit; `CREATE OR REPLACE VIEW`: one catalog transaction), so a
//! model that fails leaves its previous version in place. A node whose upstream failed is
//! skipped, and so are the children of a model whose error-severity test failed (`build`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use chrono::{DateTime, Utc};
use polder_core::{Principal, TableName};
use polder_engine::{Engine, StatementOutput, WriteMode, access};
use tokio::task::JoinSet;

use crate::artifacts::NodeResult;
use crate::compile::{
    CompileContext, CompiledNode, QueryResult, QueryRunner, RelationKind, RelationLookup,
    test_query,
};
use crate::error::{Result, TransformError};
use crate::graph::Graph;
use crate::project::{Node, Project, ResourceType};
use crate::seeds::read_seed;

/// The dbt command being run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    Build,
    Run,
    Test,
    Seed,
}

impl Command {
    pub fn name(self) -> &'static str {
        match self {
            Command::Build => "build",
            Command::Run => "run",
            Command::Test => "test",
            Command::Seed => "seed",
        }
    }

    /// The resource types the command executes.
    pub fn resource_types(self) -> Vec<ResourceType> {
        match self {
            Command::Build => vec![ResourceType::Model, ResourceType::Seed, ResourceType::Test],
            Command::Run => vec![ResourceType::Model],
            Command::Test => vec![ResourceType::Test],
            Command::Seed => vec![ResourceType::Seed],
        }
    }
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub command: Command,
    pub select: Vec<String>,
    pub exclude: Vec<String>,
    pub full_refresh: bool,
    pub threads: usize,
    pub fail_fast: bool,
}

/// What the runner reports while it works (the CLI prints dbt-style lines from these).
#[derive(Debug, Clone)]
pub enum Progress {
    Started {
        index: usize,
        total: usize,
        description: String,
    },
    Finished {
        index: usize,
        total: usize,
        description: String,
        result: NodeResult,
    },
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub invocation_id: String,
    pub started_at: DateTime<Utc>,
    pub elapsed: f64,
    pub results: Vec<NodeResult>,
    pub compiled: BTreeMap<String, CompiledNode>,
}

impl RunReport {
    /// True when every node succeeded, passed or warned.
    pub fn succeeded(&self) -> bool {
        self.results
            .iter()
            .all(|r| matches!(r.status.as_str(), "success" | "pass" | "warn"))
    }

    /// Counts by dbt's summary names: PASS (successes and passes), WARN, ERROR (errors and
    /// failed tests), SKIP, TOTAL.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::from([("PASS", 0), ("WARN", 0), ("ERROR", 0), ("SKIP", 0)]);
        for result in &self.results {
            let key = match result.status.as_str() {
                "success" | "pass" => "PASS",
                "warn" => "WARN",
                "skipped" => "SKIP",
                _ => "ERROR",
            };
            *counts.entry(key).or_default() += 1;
        }
        counts.insert("TOTAL", self.results.len());
        counts
    }
}

/// The relations that exist (read from the catalog once), kept current as a run creates them.
#[derive(Default)]
pub(crate) struct Relations(Mutex<HashMap<(String, String), RelationKind>>);

impl Relations {
    pub(crate) async fn from_catalog(engine: &Engine) -> Result<Relations> {
        let snapshot = engine
            .catalog_store()
            .snapshot()
            .await
            .map_err(engine_error)?;
        let map = snapshot
            .tables
            .into_iter()
            .map(|entry| {
                let kind = match entry.kind {
                    polder_catalog::TableKind::Table => RelationKind::Table,
                    polder_catalog::TableKind::View => RelationKind::View,
                };
                ((entry.schema, entry.name), kind)
            })
            .collect();
        Ok(Relations(Mutex::new(map)))
    }

    fn set(&self, schema: &str, name: &str, kind: Option<RelationKind>) {
        if let Ok(mut map) = self.0.lock() {
            let key = (schema.to_string(), name.to_string());
            match kind {
                Some(kind) => map.insert(key, kind),
                None => map.remove(&key),
            };
        }
    }
}

impl RelationLookup for Relations {
    fn exists(&self, schema: &str, name: &str) -> Option<RelationKind> {
        self.0
            .lock()
            .ok()
            .and_then(|map| map.get(&(schema.to_string(), name.to_string())).copied())
    }
}

struct Shared {
    engine: Arc<Engine>,
    project: Arc<Project>,
    relations: Relations,
    context: CompileContext,
    schemas_made: Mutex<HashSet<String>>,
}

/// Runs `options.command` on the selected nodes of `project`.
pub async fn run(
    engine: Arc<Engine>,
    project: Arc<Project>,
    graph: &Graph,
    options: &RunOptions,
    context: CompileContext,
    on_progress: Arc<dyn Fn(Progress) + Send + Sync>,
) -> Result<RunReport> {
    let clock = Instant::now();
    let started_at = Utc::now();
    let selected = graph.select(
        &project,
        &options.select,
        &options.exclude,
        &options.command.resource_types(),
    )?;
    let runnable: BTreeSet<String> = selected
        .into_iter()
        .filter(|id| project.nodes.get(id).is_some_and(is_executable))
        .collect();
    let order = graph.execution_order(&runnable);
    let waits = wait_sets(
        &project,
        graph,
        &runnable,
        options.command == Command::Build,
    );

    let relations = Relations::from_catalog(&engine).await?;
    let invocation_id = context.invocation_id.clone();
    let mut context = context;
    if context.query_runner.is_none() {
        context.query_runner = Some(Arc::new(EngineQueries {
            engine: engine.clone(),
        }));
    }
    run_hooks(
        &engine,
        &project,
        &project.on_run_start,
        "on-run-start",
        &context,
    )
    .await?;
    let shared = Arc::new(Shared {
        engine,
        project: project.clone(),
        relations,
        context,
        schemas_made: Mutex::new(HashSet::new()),
    });
    // Spawned nodes run with the rights of whoever started the run.
    let principal: Option<Principal> = access::current().map(|a| a.principal.clone());

    let total = order.len();
    let mut pending: Vec<String> = order;
    let mut statuses: HashMap<String, String> = HashMap::new();
    let mut results: Vec<NodeResult> = Vec::with_capacity(total);
    let mut compiled: BTreeMap<String, CompiledNode> = BTreeMap::new();
    let mut running: JoinSet<(usize, String, NodeResult, Option<CompiledNode>)> = JoinSet::new();
    let mut index = 0;
    let mut cancelled = false;
    let threads = options.threads.max(1);
    loop {
        let mut position = 0;
        while position < pending.len() && running.len() < threads {
            let id = &pending[position];
            let node_waits = waits.get(id).map(Vec::as_slice).unwrap_or_default();
            if !node_waits.iter().all(|w| statuses.contains_key(w)) {
                position += 1;
                continue;
            }
            let id = pending.remove(position);
            let Some(node) = project.nodes.get(&id) else {
                continue;
            };
            index += 1;
            let description = describe(node);
            let blocked_by = node_waits
                .iter()
                .find(|w| statuses.get(*w).is_some_and(|s| blocks(s)));
            if cancelled || blocked_by.is_some() {
                let message = match blocked_by {
                    Some(upstream) => format!("skipped because {upstream} did not succeed"),
                    None => {
                        "skipped: the run stopped at the first failure (--fail-fast)".to_string()
                    }
                };
                let result = NodeResult::skipped(node, &message);
                statuses.insert(id.clone(), result.status.clone());
                on_progress(Progress::Finished {
                    index,
                    total,
                    description,
                    result: result.clone(),
                });
                results.push(result);
                continue;
            }
            on_progress(Progress::Started {
                index,
                total,
                description,
            });
            let shared = shared.clone();
            let principal = principal.clone();
            running.spawn(async move {
                let work = execute_node(shared, id.clone());
                let (result, compiled) = match principal {
                    Some(principal) => access::run_as(principal, work).await,
                    None => work.await,
                };
                (index, id, result, compiled)
            });
        }
        let Some(joined) = running.join_next().await else {
            // Nothing running and nothing ready: every node is done.
            debug_assert!(pending.is_empty(), "nodes left that nothing will run");
            break;
        };
        let (node_index, id, result, node_compiled) =
            joined.map_err(|e| TransformError::Execution(format!("a node's task failed: {e}")))?;
        if let Some(node_compiled) = node_compiled {
            compiled.insert(id.clone(), node_compiled);
        }
        if options.fail_fast && blocks(&result.status) {
            cancelled = true;
        }
        statuses.insert(id.clone(), result.status.clone());
        if let Some(node) = project.nodes.get(&id) {
            on_progress(Progress::Finished {
                index: node_index,
                total,
                description: describe(node),
                result: result.clone(),
            });
        }
        results.push(result);
    }
    run_hooks(
        &shared.engine,
        &project,
        &project.on_run_end,
        "on-run-end",
        &shared.context,
    )
    .await?;
    Ok(RunReport {
        invocation_id,
        started_at,
        elapsed: clock.elapsed().as_secs_f64(),
        results,
        compiled,
    })
}

/// Models that are not ephemeral, seeds and tests are run; the rest only exist in the graph.
fn is_executable(node: &Node) -> bool {
    match node.resource_type {
        ResourceType::Model => node.config.materialized != "ephemeral",
        ResourceType::Seed | ResourceType::Test => true,
        _ => false,
    }
}

/// Statuses that stop what depends on them.
fn blocks(status: &str) -> bool {
    matches!(status, "error" | "fail" | "skipped")
}

/// For each node to run, the nodes to run that must finish first: its ancestors among them,
/// and (in `build`) the tests of its ancestors, unless such a test itself reads the node.
fn wait_sets(
    project: &Project,
    graph: &Graph,
    runnable: &BTreeSet<String>,
    tests_block_children: bool,
) -> HashMap<String, Vec<String>> {
    let ancestors: HashMap<&String, BTreeSet<String>> = runnable
        .iter()
        .map(|id| (id, graph.ancestors(id)))
        .collect();
    let mut waits: HashMap<String, Vec<String>> = HashMap::new();
    for id in runnable {
        let mine: Vec<String> = ancestors[id]
            .iter()
            .filter(|a| runnable.contains(*a))
            .cloned()
            .collect();
        waits.insert(id.clone(), mine);
    }
    if tests_block_children {
        let tests: Vec<&String> = runnable
            .iter()
            .filter(|id| {
                project
                    .nodes
                    .get(*id)
                    .is_some_and(|n| n.resource_type == ResourceType::Test)
            })
            .collect();
        for test in tests {
            let tested = &project.nodes[test].depends_on;
            for id in runnable {
                let node = &project.nodes[id];
                if node.resource_type == ResourceType::Test || ancestors[test].contains(id) {
                    continue;
                }
                if tested.iter().any(|t| ancestors[id].contains(t))
                    && let Some(list) = waits.get_mut(id)
                {
                    list.push(test.clone());
                }
            }
        }
    }
    for list in waits.values_mut() {
        list.sort();
        list.dedup();
    }
    waits
}

/// `sql table model gold.customers`, `seed file bronze.raw_orders`, `test not_null_orders_id`.
pub fn describe(node: &Node) -> String {
    match node.resource_type {
        ResourceType::Model => format!(
            "sql {} model {}.{}",
            node.config.materialized, node.schema, node.alias
        ),
        ResourceType::Seed => format!("seed file {}.{}", node.schema, node.alias),
        ResourceType::Test => format!("test {}", node.name),
        _ => node.unique_id.clone(),
    }
}

async fn execute_node(shared: Arc<Shared>, id: String) -> (NodeResult, Option<CompiledNode>) {
    let started = Utc::now();
    let clock = Instant::now();
    let Some(node) = shared.project.nodes.get(&id) else {
        let result = NodeResult::error_for_id(&id, "the node vanished from the project");
        return (result, None);
    };
    let outcome = match node.resource_type {
        ResourceType::Seed => run_seed(&shared, node).await.map(|done| (done, None)),
        ResourceType::Model => run_model(&shared, node).await,
        ResourceType::Test => run_test(&shared, node).await,
        _ => Err(TransformError::Execution(format!("{id} cannot be run"))),
    };
    let elapsed = clock.elapsed().as_secs_f64();
    match outcome {
        Ok((done, compiled)) => {
            let result = NodeResult {
                unique_id: id,
                status: done.status,
                message: done.message,
                execution_time: elapsed,
                started_at: started,
                completed_at: Utc::now(),
                rows_affected: done.rows,
                failures: done.failures,
                compiled_code: compiled.as_ref().map(|c| c.sql.clone()),
                relation_name: relation_name(node),
            };
            (result, compiled)
        }
        Err(err) => {
            let mut result = NodeResult::error(node, &err.to_string());
            result.execution_time = elapsed;
            result.started_at = started;
            (result, None)
        }
    }
}

fn relation_name(node: &Node) -> Option<String> {
    match node.resource_type {
        ResourceType::Model | ResourceType::Seed => Some(format!("{}.{}", node.schema, node.alias)),
        _ => None,
    }
}

struct Done {
    status: String,
    message: Option<String>,
    rows: Option<u64>,
    failures: Option<u64>,
}

impl Done {
    fn success(message: String, rows: Option<u64>) -> Done {
        Done {
            status: "success".to_string(),
            message: Some(message),
            rows,
            failures: None,
        }
    }
}

async fn ensure_schema(shared: &Shared, node: &Node, schema: &str) -> Result<()> {
    if shared
        .schemas_made
        .lock()
        .map(|made| made.contains(schema))
        .unwrap_or(false)
    {
        return Ok(());
    }
    execute(
        shared,
        node,
        &format!("CREATE SCHEMA IF NOT EXISTS {}", quote(schema)),
        None,
    )
    .await?;
    if let Ok(mut made) = shared.schemas_made.lock() {
        made.insert(schema.to_string());
    }
    Ok(())
}

async fn run_seed(shared: &Shared, node: &Node) -> Result<Done> {
    let path = shared.project.root.join(&node.original_file_path);
    let column_types = node.config.column_types.clone();
    let batch = {
        let path = path.clone();
        let column_types = column_types.clone();
        tokio::task::spawn_blocking(move || read_seed(&path, &column_types))
            .await
            .map_err(|e| TransformError::Execution(e.to_string()))??
    };
    let rows = batch.num_rows() as u64;
    ensure_schema(shared, node, &node.schema).await?;
    if shared.relations.exists(&node.schema, &node.alias) == Some(RelationKind::View) {
        execute(shared, node, &format!("DROP VIEW {}", relation(node)), None).await?;
    }

    // The cast of each `column_types` column is SQL, planned in a session of the seed's own.
    let session = polder_engine::delta_session();
    session
        .register_batch("seed_input", batch.clone())
        .map_err(|e| seed_error(node, &e.to_string()))?;
    let mut select = Vec::new();
    for field in batch.schema_ref().fields() {
        let column = quote(field.name());
        match column_types.get(field.name()) {
            Some(sql_type) => select.push(format!("CAST({column} AS {sql_type}) AS {column}")),
            None => select.push(column),
        }
    }
    let frame = session
        .sql(&format!("SELECT {} FROM seed_input", select.join(", ")))
        .await
        .map_err(|e| seed_error(node, &polder_engine::datafusion_message(&e)))?;
    let plan = frame.logical_plan().clone();
    let name =
        TableName::new(&node.schema, &node.alias).map_err(|e| seed_error(node, &e.to_string()))?;
    shared
        .engine
        .write_table(&name, plan, Arc::new(session.state()), WriteMode::Overwrite)
        .await
        .map_err(|e| sql_error(node, &e.to_string(), None))?;
    shared
        .relations
        .set(&node.schema, &node.alias, Some(RelationKind::Table));
    Ok(Done::success(format!("INSERT {rows}"), Some(rows)))
}

async fn run_model(shared: &Shared, node: &Node) -> Result<(Done, Option<CompiledNode>)> {
    let compiled = shared
        .project
        .compile(&node.unique_id, &shared.relations, &shared.context)?;
    ensure_schema(shared, node, &node.schema).await?;
    let target = relation(node);
    let existing = shared.relations.exists(&node.schema, &node.alias);
    let sql = compiled.sql.trim().trim_end_matches(';').to_string();
    let materialized = compiled.config.materialized.as_str();
    model_hooks(
        shared,
        node,
        &compiled.config.pre_hook,
        compiled.is_incremental,
    )
    .await?;
    let done = match materialized {
        "view" => {
            if existing == Some(RelationKind::Table) {
                // Plan first: a model that does not plan keeps its table.
                plan_columns(shared, node, &sql).await?;
                execute(shared, node, &format!("DROP TABLE {target}"), None).await?;
            }
            execute(
                shared,
                node,
                &format!("CREATE OR REPLACE VIEW {target} AS {sql}"),
                Some(&sql),
            )
            .await?;
            shared
                .relations
                .set(&node.schema, &node.alias, Some(RelationKind::View));
            Done::success("CREATE VIEW".to_string(), None)
        }
        "table" => build_table(shared, node, &target, &sql, existing).await?,
        "incremental" if compiled.is_incremental => {
            incremental(shared, node, &compiled, &target, &sql).await?
        }
        "incremental" => build_table(shared, node, &target, &sql, existing).await?,
        other => {
            return Err(TransformError::Execution(format!(
                "{}: materialization '{other}' is not supported (view, table, incremental, ephemeral are)",
                node.original_file_path
            )));
        }
    };
    model_hooks(
        shared,
        node,
        &compiled.config.post_hook,
        compiled.is_incremental,
    )
    .await?;
    Ok((done, Some(compiled)))
}

/// A model's `pre-hook` or `post-hook` statements, rendered in the model's context and run.
async fn model_hooks(
    shared: &Shared,
    node: &Node,
    hooks: &[String],
    is_incremental: bool,
) -> Result<()> {
    for hook in hooks {
        let sql =
            shared
                .project
                .render_hook(&node.unique_id, hook, is_incremental, &shared.context)?;
        execute(shared, node, &sql, None).await?;
    }
    Ok(())
}

async fn build_table(
    shared: &Shared,
    node: &Node,
    target: &str,
    sql: &str,
    existing: Option<RelationKind>,
) -> Result<Done> {
    if existing == Some(RelationKind::View) {
        plan_columns(shared, node, sql).await?;
        execute(shared, node, &format!("DROP VIEW {target}"), None).await?;
    }
    let rows = execute(
        shared,
        node,
        &format!("CREATE OR REPLACE TABLE {target} AS {sql}"),
        Some(sql),
    )
    .await?;
    shared
        .relations
        .set(&node.schema, &node.alias, Some(RelationKind::Table));
    let message = match rows {
        Some(rows) => format!("SELECT {rows}"),
        None => "CREATE TABLE".to_string(),
    };
    Ok(Done::success(message, rows))
}

/// An incremental run: new rows appended, or merged on the unique key (`merge`; dbt-duckdb's
/// `delete+insert` gives the same table when the new rows' keys are unique, so it is run as a
/// merge too: one commit instead of two).
async fn incremental(
    shared: &Shared,
    node: &Node,
    compiled: &CompiledNode,
    target: &str,
    sql: &str,
) -> Result<Done> {
    let config = &compiled.config;
    let source_columns = plan_columns(shared, node, sql).await?;
    let name = TableName::new(&node.schema, &node.alias)
        .map_err(|e| sql_error(node, &e.to_string(), None))?;
    let target_schema = shared
        .engine
        .table_schema(&name)
        .await
        .map_err(|e| sql_error(node, &e.to_string(), None))?
        .ok_or_else(|| sql_error(node, &format!("{target} is not a table"), None))?;
    let mut target_columns: Vec<String> = target_schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();

    let new_columns: Vec<(String, String)> = source_columns
        .iter()
        .filter(|(name, _)| !target_columns.contains(name))
        .cloned()
        .collect();
    let missing: Vec<&String> = target_columns
        .iter()
        .filter(|c| !source_columns.iter().any(|(name, _)| name == *c))
        .collect();
    match config.on_schema_change.as_deref().unwrap_or("ignore") {
        "ignore" => {}
        "fail" if new_columns.is_empty() && missing.is_empty() => {}
        "fail" => {
            return Err(sql_error(
                node,
                &format!(
                    "the model's columns changed (new: {:?}, gone: {:?}) and on_schema_change is 'fail'",
                    new_columns.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                    missing
                ),
                None,
            ));
        }
        "append_new_columns" | "sync_all_columns" => {
            for (column, sql_type) in &new_columns {
                execute(
                    shared,
                    node,
                    &format!(
                        "ALTER TABLE {target} ADD COLUMN {} {sql_type}",
                        quote(column)
                    ),
                    None,
                )
                .await?;
                target_columns.push(column.clone());
            }
        }
        other => {
            return Err(sql_error(
                node,
                &format!(
                    "on_schema_change '{other}' is not one of ignore, fail, append_new_columns, sync_all_columns"
                ),
                None,
            ));
        }
    }
    // Columns the target has and the new rows lack stay NULL (as dbt's column list does).
    let columns: Vec<String> = target_columns
        .iter()
        .filter(|c| source_columns.iter().any(|(name, _)| name == *c))
        .cloned()
        .collect();
    let column_list = columns
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ");
    let strategy = config.incremental_strategy.clone().unwrap_or_else(|| {
        if config.unique_key.is_empty() {
            "append"
        } else {
            "merge"
        }
        .to_string()
    });
    let statement = match strategy.as_str() {
        "append" => format!(
            "INSERT INTO {target} ({column_list}) SELECT {column_list} FROM ({sql}) AS dbt_incremental_source"
        ),
        "merge" | "delete+insert" => {
            if config.unique_key.is_empty() {
                return Err(sql_error(
                    node,
                    &format!("incremental_strategy '{strategy}' needs a unique_key"),
                    None,
                ));
            }
            let on = config
                .unique_key
                .iter()
                .map(|k| format!("dbt_internal_dest.{0} = dbt_internal_source.{0}", quote(k)))
                .collect::<Vec<_>>()
                .join(" AND ");
            let updates = columns
                .iter()
                .map(|c| format!("{0} = dbt_internal_source.{0}", quote(c)))
                .collect::<Vec<_>>()
                .join(", ");
            let values = columns
                .iter()
                .map(|c| format!("dbt_internal_source.{}", quote(c)))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "MERGE INTO {target} AS dbt_internal_dest USING ({sql}) AS dbt_internal_source ON {on} \
                 WHEN MATCHED THEN UPDATE SET {updates} \
                 WHEN NOT MATCHED THEN INSERT ({column_list}) VALUES ({values})"
            )
        }
        other => {
            return Err(sql_error(
                node,
                &format!(
                    "incremental_strategy '{other}' is not supported (append, merge, delete+insert are)"
                ),
                None,
            ));
        }
    };
    let rows = execute(shared, node, &statement, Some(sql)).await?;
    let tag = if strategy == "append" {
        "INSERT"
    } else {
        "MERGE"
    };
    Ok(Done::success(
        format!("{tag} {}", rows.map(|r| r.to_string()).unwrap_or_default())
            .trim()
            .to_string(),
        rows,
    ))
}

async fn run_test(shared: &Shared, node: &Node) -> Result<(Done, Option<CompiledNode>)> {
    let compiled = shared
        .project
        .compile(&node.unique_id, &shared.relations, &shared.context)?;
    let query = test_query(&compiled);
    let outputs = shared
        .engine
        .execute_sql(&query)
        .await
        .map_err(|e| sql_error(node, &e.to_string(), Some(&compiled.sql)))?;
    let Some(StatementOutput::Query(frame)) = outputs.into_iter().last() else {
        return Err(sql_error(node, "the test query returned no rows", None));
    };
    let batches = frame.collect().await.map_err(|e| {
        sql_error(
            node,
            &polder_engine::datafusion_message(&e),
            Some(&compiled.sql),
        )
    })?;
    let (failures, should_warn, should_error) = read_test_row(&batches).ok_or_else(|| {
        sql_error(
            node,
            "the test query did not return failures, should_warn, should_error",
            None,
        )
    })?;
    let severity = compiled.config.severity.to_ascii_lowercase();
    let status = if severity == "error" && should_error {
        "fail"
    } else if should_warn || (severity != "error" && should_error) {
        "warn"
    } else {
        "pass"
    };
    let message = match status {
        "pass" => None,
        _ => Some(format!(
            "Got {failures} result{}, configured to {} if {}",
            if failures == 1 { "" } else { "s" },
            status,
            if status == "fail" {
                &compiled.config.error_if
            } else {
                &compiled.config.warn_if
            }
        )),
    };
    let done = Done {
        status: status.to_string(),
        message,
        rows: None,
        failures: Some(failures),
    };
    Ok((done, Some(compiled)))
}

fn read_test_row(batches: &[arrow::record_batch::RecordBatch]) -> Option<(u64, bool, bool)> {
    let batch = batches.iter().find(|b| b.num_rows() > 0)?;
    let failures =
        arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Int64).ok()?;
    let failures = failures.as_primitive::<Int64Type>();
    let flag = |i: usize| -> Option<bool> {
        let column = batch.column(i).as_boolean_opt()?;
        Some(!column.is_null(0) && column.value(0))
    };
    let count = if failures.is_null(0) {
        0
    } else {
        failures.value(0).max(0) as u64
    };
    Some((count, flag(1)?, flag(2)?))
}

/// The columns (name, SQL type) a query returns, by planning it without running it.
async fn plan_columns(shared: &Shared, node: &Node, sql: &str) -> Result<Vec<(String, String)>> {
    let outputs = shared
        .engine
        .execute_sql(sql)
        .await
        .map_err(|e| sql_error(node, &e.to_string(), Some(sql)))?;
    let Some(StatementOutput::Query(frame)) = outputs.into_iter().last() else {
        return Err(sql_error(node, "the model is not a query", Some(sql)));
    };
    Ok(frame
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), sql_type(f.data_type())))
        .collect())
}

fn sql_type(data_type: &arrow::datatypes::DataType) -> String {
    use arrow::datatypes::DataType as T;
    match data_type {
        T::Boolean => "BOOLEAN".into(),
        T::Int8 | T::Int16 | T::UInt8 => "SMALLINT".into(),
        T::Int32 | T::UInt16 => "INT".into(),
        T::Int64 | T::UInt32 | T::UInt64 => "BIGINT".into(),
        T::Float16 | T::Float32 => "REAL".into(),
        T::Float64 => "DOUBLE".into(),
        T::Decimal128(p, s) | T::Decimal256(p, s) => format!("DECIMAL({p}, {s})"),
        T::Date32 | T::Date64 => "DATE".into(),
        T::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        T::Timestamp(_, None) => "TIMESTAMP".into(),
        _ => "VARCHAR".into(),
    }
}

/// Runs SQL for a node; the rows a write reports. `model_sql` is the compiled model the
/// statement wraps, quoted in the error when the engine points at a line of it.
async fn execute(
    shared: &Shared,
    node: &Node,
    sql: &str,
    model_sql: Option<&str>,
) -> Result<Option<u64>> {
    let outputs = shared
        .engine
        .execute_sql(sql)
        .await
        .map_err(|e| sql_error(node, &e.to_string(), model_sql))?;
    let mut rows = None;
    for output in outputs {
        match output {
            StatementOutput::Command(outcome) => rows = outcome.rows.or(rows),
            StatementOutput::Query(frame) => {
                frame.collect().await.map_err(|e| {
                    sql_error(node, &polder_engine::datafusion_message(&e), model_sql)
                })?;
            }
        }
    }
    Ok(rows)
}

/// `on-run-start` / `on-run-end` statements of dbt_project.yml, rendered and run in order.
async fn run_hooks(
    engine: &Engine,
    project: &Project,
    hooks: &[String],
    what: &str,
    context: &CompileContext,
) -> Result<()> {
    for (i, hook) in hooks.iter().enumerate() {
        let sql = project.render_sql(&format!("{what}.{i}"), hook, context)?;
        if sql.trim().is_empty() {
            continue;
        }
        let outputs = engine
            .execute_sql(&sql)
            .await
            .map_err(|e| TransformError::Sql {
                node: format!("dbt_project.yml ({what})"),
                message: e.to_string(),
            })?;
        for output in outputs {
            if let StatementOutput::Query(frame) = output {
                frame.collect().await.map_err(|e| TransformError::Sql {
                    node: format!("dbt_project.yml ({what})"),
                    message: polder_engine::datafusion_message(&e),
                })?;
            }
        }
    }
    Ok(())
}

/// `run_query()` while compiling: the statement runs on the engine, on the compiling thread
/// (compilation is synchronous; the runtime is told that this thread blocks).
struct EngineQueries {
    engine: Arc<Engine>,
}

impl QueryRunner for EngineQueries {
    fn query(&self, sql: &str) -> std::result::Result<QueryResult, String> {
        let handle = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err("run_query() needs the multi-threaded runtime".to_string());
        }
        let engine = self.engine.clone();
        tokio::task::block_in_place(|| {
            handle.block_on(async move {
                let outputs = engine.execute_sql(sql).await.map_err(|e| e.to_string())?;
                let Some(StatementOutput::Query(frame)) = outputs.into_iter().last() else {
                    return Ok(QueryResult::default());
                };
                let columns: Vec<String> = frame
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                let batches = frame
                    .collect()
                    .await
                    .map_err(|e| polder_engine::datafusion_message(&e))?;
                let mut buffer = Vec::new();
                {
                    let mut writer = arrow::json::ArrayWriter::new(&mut buffer);
                    for batch in &batches {
                        writer.write(batch).map_err(|e| e.to_string())?;
                    }
                    writer.finish().map_err(|e| e.to_string())?;
                }
                let objects: Vec<serde_json::Map<String, serde_json::Value>> = if buffer.is_empty()
                {
                    Vec::new()
                } else {
                    serde_json::from_slice(&buffer).map_err(|e| e.to_string())?
                };
                let rows = objects
                    .into_iter()
                    .map(|mut object| {
                        columns
                            .iter()
                            .map(|c| object.remove(c).unwrap_or(serde_json::Value::Null))
                            .collect()
                    })
                    .collect();
                Ok(QueryResult { columns, rows })
            })
        })
    }
}

fn relation(node: &Node) -> String {
    format!("{}.{}", quote(&node.schema), quote(&node.alias))
}

/// An identifier as SQL: bare when it is a plain lowercase name, double-quoted otherwise.
pub(crate) fn quote(identifier: &str) -> String {
    let plain = identifier
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && identifier
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        identifier.to_string()
    } else {
        format!("\"{}\"", identifier.replace('"', "\"\""))
    }
}

/// A database error of a node: names the node's file, and when the engine points at a line of
/// the compiled SQL, quotes that line.
fn sql_error(node: &Node, message: &str, compiled_sql: Option<&str>) -> TransformError {
    let mut text = message.to_string();
    if let Some(sql) = compiled_sql
        && let Some(line) = line_number(message)
        && let Some(source_line) = sql.lines().nth(line.saturating_sub(1))
    {
        text = format!("{text}\n  compiled line {line}: {}", source_line.trim());
    }
    TransformError::Sql {
        node: node.original_file_path.clone(),
        message: text,
    }
}

fn seed_error(node: &Node, message: &str) -> TransformError {
    TransformError::Seed {
        path: node.original_file_path.clone().into(),
        message: message.to_string(),
    }
}

fn engine_error(err: impl std::fmt::Display) -> TransformError {
    TransformError::Execution(err.to_string())
}

/// `... at Line: 3, Column: 7` (sqlparser's position) → 3.
fn line_number(message: &str) -> Option<usize> {
    let at = message.find("Line: ")?;
    let digits: String = message[at + 6..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(quote("orders"), "orders");
        assert_eq!(quote("Orders"), "\"Orders\"");
        assert_eq!(quote("order id"), "\"order id\"");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn finds_the_line_the_parser_points_at() {
        assert_eq!(
            line_number("Expected: end of statement, found: x at Line: 12, Column: 3"),
            Some(12)
        );
        assert_eq!(line_number("no position"), None);
    }
}
