//! The transformation service: what the CLI and the HTTP API call. Loads a project, runs a
//! command, writes dbt's artifacts (`target/manifest.json`, `target/run_results.json`) and
//! keeps each project's lineage, last node results and runs in the catalog.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use polder_catalog::{TransformNodeRecord, TransformProjectRecord, TransformRunRecord};
use polder_engine::Engine;
use serde_json::{Map, Value, json};

use crate::artifacts::{manifest, run_results};
use crate::compile::{CompileContext, CompiledNode};
use crate::error::{Result, TransformError};
use crate::graph::Graph;
use crate::project::{LoadOptions, Project, ResourceType, Target};
use crate::run::{Command, Progress, Relations, RunOptions, RunReport, run};

/// What a scheduled run of a project does.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduledRun {
    pub command: Command,
    pub select: Vec<String>,
    pub exclude: Vec<String>,
    pub full_refresh: bool,
    pub vars: Map<String, Value>,
    pub threads: Option<usize>,
    pub fail_fast: bool,
}

impl Default for ScheduledRun {
    fn default() -> Self {
        ScheduledRun {
            command: Command::Build,
            select: Vec::new(),
            exclude: Vec::new(),
            full_refresh: false,
            vars: Map::new(),
            threads: None,
            fail_fast: false,
        }
    }
}

/// A loaded project and its checked graph.
pub struct LoadedProject {
    pub project: Arc<Project>,
    pub graph: Graph,
}

/// A finished run: the report and the id of its record in the catalog.
pub struct RunOutcome {
    pub run_id: String,
    pub report: RunReport,
}

/// Transformations over one engine.
#[derive(Clone)]
pub struct Transformations {
    engine: Arc<Engine>,
    /// Projects running in this process: a second run of one of them waits its turn no more
    /// than it would with dbt (it is refused, and says why).
    running: Arc<Mutex<HashSet<String>>>,
}

/// A new run's id (dbt's invocation id).
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Holds a project's "running" mark until dropped.
struct RunningMark {
    running: Arc<Mutex<HashSet<String>>>,
    project: String,
}

impl Drop for RunningMark {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(&self.project);
        }
    }
}

impl Transformations {
    pub fn new(engine: Arc<Engine>) -> Self {
        Transformations {
            engine,
            running: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    fn claim(&self, project: &str) -> Result<RunningMark> {
        let mut running = self
            .running
            .lock()
            .map_err(|_| TransformError::Execution("the run registry is poisoned".to_string()))?;
        if !running.insert(project.to_string()) {
            return Err(TransformError::Busy(project.to_string()));
        }
        Ok(RunningMark {
            running: self.running.clone(),
            project: project.to_string(),
        })
    }

    /// Loads and checks a project (graph errors come before anything runs).
    pub fn load(
        &self,
        dir: &Path,
        vars: Map<String, Value>,
        threads: usize,
    ) -> Result<LoadedProject> {
        let options = LoadOptions {
            vars,
            target: Target {
                threads,
                ..Target::default()
            },
        };
        let project = Project::load(dir, &options)?;
        let graph = Graph::build(&project)?;
        Ok(LoadedProject {
            project: Arc::new(project),
            graph,
        })
    }

    /// Runs `options.command` on a loaded project, recording the run and its nodes' results.
    pub async fn execute(
        &self,
        loaded: &LoadedProject,
        options: &RunOptions,
        trigger: &str,
        run_id: &str,
        on_progress: Arc<dyn Fn(Progress) + Send + Sync>,
    ) -> Result<RunOutcome> {
        let project = &loaded.project;
        // A selector that does not parse is bad input, refused before a run is recorded.
        loaded.graph.select(
            project,
            &options.select,
            &options.exclude,
            &options.command.resource_types(),
        )?;
        let _running = self.claim(&project.name)?;
        self.sweep_interrupted().await?;
        self.register(project, trigger).await?;
        let context = CompileContext {
            full_refresh: options.full_refresh,
            run_started_at: Utc::now(),
            invocation_id: run_id.to_string(),
            query_runner: None,
        };
        let run_id = run_id.to_string();
        let args = json!({
            "which": options.command.name(),
            "select": options.select,
            "exclude": options.exclude,
            "full_refresh": options.full_refresh,
            "threads": options.threads,
            "fail_fast": options.fail_fast,
            "vars": project.vars,
        });
        let mut record = TransformRunRecord {
            id: run_id.clone(),
            project: project.name.clone(),
            command: options.command.name().to_string(),
            args: args.to_string(),
            trigger: trigger.to_string(),
            status: "running".to_string(),
            started_at: polder_catalog::now(),
            finished_at: None,
            summary: "{}".to_string(),
            results: "[]".to_string(),
            error: String::new(),
            runner: polder_core::runner::runner_identity(),
        };
        let store = self.engine.catalog_store();
        store
            .create_transform_run(&record)
            .await
            .map_err(catalog_error)?;
        let mut finished = JobMetrics::start();

        let outcome = run(
            self.engine.clone(),
            project.clone(),
            &loaded.graph,
            options,
            context.clone(),
            on_progress,
        )
        .await;
        record.finished_at = Some(polder_catalog::now());
        let report = match outcome {
            Ok(report) => report,
            Err(err) => {
                record.status = "failed".to_string();
                record.error = err.to_string();
                finished.record(&record.status);
                store
                    .update_transform_run(&record)
                    .await
                    .map_err(catalog_error)?;
                return Err(err);
            }
        };
        let results_json = run_results(&report.results, &args, report.elapsed, &run_id);
        write_artifacts(
            project,
            &loaded.graph,
            &report.compiled,
            &run_id,
            Some(&results_json),
        )?;

        for result in &report.results {
            let duration_ms = (result.execution_time * 1000.0).round() as i64;
            store
                .record_transform_node_run(
                    &project.name,
                    &result.unique_id,
                    &result.status,
                    result.message.as_deref().unwrap_or_default(),
                    duration_ms,
                    &run_id,
                )
                .await
                .map_err(catalog_error)?;
        }
        record.status = if report.succeeded() {
            "succeeded"
        } else {
            "failed"
        }
        .to_string();
        finished.record(&record.status);
        record.summary = serde_json::to_string(&report.counts()).unwrap_or_default();
        record.results = results_json
            .get("results")
            .map(Value::to_string)
            .unwrap_or_else(|| "[]".to_string());
        store
            .update_transform_run(&record)
            .await
            .map_err(catalog_error)?;
        Ok(RunOutcome { run_id, report })
    }

    /// Compiles the selected models and tests against the current state of the lake, writes
    /// `target/compiled/...` and the manifest, and returns the compiled nodes.
    pub async fn compile(
        &self,
        loaded: &LoadedProject,
        select: &[String],
        exclude: &[String],
    ) -> Result<BTreeMap<String, CompiledNode>> {
        let project = &loaded.project;
        let relations = Relations::from_catalog(&self.engine).await?;
        let context = CompileContext {
            full_refresh: false,
            run_started_at: Utc::now(),
            invocation_id: uuid::Uuid::new_v4().to_string(),
            query_runner: None,
        };
        let selected = loaded.graph.select(
            project,
            select,
            exclude,
            &[ResourceType::Model, ResourceType::Test],
        )?;
        let mut compiled = BTreeMap::new();
        for id in loaded.graph.execution_order(&selected) {
            let node = project.compile(&id, &relations, &context)?;
            let Some(source) = project.nodes.get(&id) else {
                continue;
            };
            let path = project
                .target_path
                .join("compiled")
                .join(&project.name)
                .join(&source.original_file_path);
            write_file(&path, &node.sql)?;
            compiled.insert(id, node);
        }
        write_artifacts(
            project,
            &loaded.graph,
            &compiled,
            &context.invocation_id,
            None,
        )?;
        Ok(compiled)
    }

    /// The selected nodes, in dbt ls's order (by unique id).
    pub fn list(
        &self,
        loaded: &LoadedProject,
        select: &[String],
        exclude: &[String],
        resource_types: &[ResourceType],
    ) -> Result<Vec<String>> {
        let selected = loaded
            .graph
            .select(&loaded.project, select, exclude, resource_types)?;
        Ok(selected.into_iter().collect())
    }

    /// `source freshness`: checks the selected source tables that have a `loaded_at_field` and
    /// a freshness rule, and writes `target/sources.json`.
    pub async fn freshness(
        &self,
        loaded: &LoadedProject,
        select: &[String],
        exclude: &[String],
    ) -> Result<Vec<crate::freshness::FreshnessResult>> {
        let project = &loaded.project;
        let clock = std::time::Instant::now();
        let selected = loaded
            .graph
            .select(project, select, exclude, &[ResourceType::Source])?;
        let mut results = Vec::new();
        for source in crate::freshness::checkable(project.sources.values(), &selected) {
            results.push(crate::freshness::check(&self.engine, source).await);
        }
        let json =
            crate::freshness::sources_json(&results, clock.elapsed().as_secs_f64(), &new_run_id());
        write_file(
            &project.target_path.join("sources.json"),
            &serde_json::to_string(&json).unwrap_or_default(),
        )?;
        Ok(results)
    }

    /// Writes the documentation site into `target/`, with the column types of every relation
    /// the project built, and returns the index page's path.
    pub async fn docs(&self, loaded: &LoadedProject) -> Result<PathBuf> {
        let project = &loaded.project;
        let manifest = write_artifacts(project, &loaded.graph, &BTreeMap::new(), "docs", None)?;
        let run_results = std::fs::read_to_string(project.target_path.join("run_results.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok());
        let mut column_types = BTreeMap::new();
        for node in project.nodes.values() {
            if !matches!(node.resource_type, ResourceType::Model | ResourceType::Seed) {
                continue;
            }
            let Ok(name) = polder_core::TableName::new(&node.schema, &node.alias) else {
                continue;
            };
            if let Ok(Some(schema)) = self.engine.table_schema(&name).await {
                let columns = schema
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), f.data_type().to_string()))
                    .collect();
                column_types.insert(format!("{}.{}", node.schema, node.alias), columns);
            }
        }
        let input = crate::docs_site::DocsInput {
            manifest: &manifest,
            run_results: run_results.as_ref(),
            column_types: &column_types,
        };
        crate::docs_site::write_docs_site(&project.target_path, &input)
            .map_err(|e| TransformError::io(&project.target_path, e))?;
        Ok(project.target_path.join("index.html"))
    }

    /// Marks runs whose process died (a killed `polder build`, a crashed server) as failed:
    /// what their models committed stays, the rest is at its previous version. Runs of
    /// another host are left alone (there is no heartbeat to judge them by).
    pub async fn sweep_interrupted(&self) -> Result<()> {
        let store = self.engine.catalog_store();
        let running = store
            .transform_runs_in_status("running")
            .await
            .map_err(catalog_error)?;
        for mut run in running {
            let alive =
                polder_core::runner::runner_alive(&run.runner, None, polder_catalog::now(), 0)
                    .unwrap_or(true);
            if alive {
                continue;
            }
            run.status = "failed".to_string();
            run.finished_at = Some(polder_catalog::now());
            run.error = format!(
                "interrupted: the process running it ({}) stopped; models it finished are kept, the others are at their previous version",
                run.runner
            );
            store
                .update_transform_run(&run)
                .await
                .map_err(catalog_error)?;
        }
        Ok(())
    }

    /// Sets or clears (`None`) a project's cron schedule and what a scheduled run does.
    pub async fn set_schedule(
        &self,
        name: &str,
        schedule: Option<&str>,
        run: &ScheduledRun,
    ) -> Result<()> {
        let text = schedule.map(str::trim).unwrap_or_default();
        if !text.is_empty() {
            polder_core::schedule::parse_schedule(text).map_err(|e| TransformError::Project {
                path: PathBuf::from(name),
                message: e.to_string(),
            })?;
        }
        let run_json = serde_json::to_string(run).unwrap_or_else(|_| "{}".to_string());
        let found = self
            .engine
            .catalog_store()
            .set_transform_schedule(name, text, &run_json)
            .await
            .map_err(catalog_error)?;
        if !found {
            return Err(TransformError::UnknownProject(name.to_string()));
        }
        Ok(())
    }

    /// Runs the projects' cron schedules until the process ends: each project fires at its
    /// next scheduled time (UTC) unless a run of it is still going on here.
    pub fn spawn_scheduler(
        self,
        leadership: polder_catalog::Leadership,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                // Only the coordinator holding the scheduler lease runs scheduled builds.
                leadership.became_leader().await;
                if let Err(err) = self.sweep_interrupted().await {
                    tracing::warn!(error = %err, "could not check for interrupted transformation runs");
                }
                let mut planner = polder_core::schedule::CronPlanner::new();
                while leadership.is_leader() {
                    if let Err(err) = self.schedule_tick(&mut planner).await {
                        tracing::warn!(error = %err, "transformation scheduler could not read projects");
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        })
    }

    async fn schedule_tick(&self, planner: &mut polder_core::schedule::CronPlanner) -> Result<()> {
        let now = Utc::now();
        for project in self.projects().await? {
            if project.schedule.is_empty() || !planner.due(&project.name, &project.schedule, now) {
                continue;
            }
            let run: ScheduledRun = serde_json::from_str(&project.schedule_run).unwrap_or_default();
            let this = self.clone();
            tokio::spawn(async move {
                let name = project.name.clone();
                match this.run_scheduled(&project, run).await {
                    Ok(outcome) => {
                        tracing::info!(project = %name, run = %outcome.run_id, succeeded = outcome.report.succeeded(), "scheduled transformation run finished")
                    }
                    Err(err) => {
                        tracing::warn!(project = %name, error = %err, "scheduled transformation run could not run")
                    }
                }
            });
        }
        planner.end_round();
        Ok(())
    }

    async fn run_scheduled(
        &self,
        project: &TransformProjectRecord,
        run: ScheduledRun,
    ) -> Result<RunOutcome> {
        let threads = run.threads.unwrap_or(4).clamp(1, 64);
        let loaded = self.load(Path::new(&project.root), run.vars.clone(), threads)?;
        let options = RunOptions {
            command: run.command,
            select: run.select,
            exclude: run.exclude,
            full_refresh: run.full_refresh,
            threads,
            fail_fast: run.fail_fast,
        };
        let quiet: Arc<dyn Fn(Progress) + Send + Sync> = Arc::new(|_| {});
        self.execute(&loaded, &options, "schedule", &new_run_id(), quiet)
            .await
    }

    /// The directory of a project that has been run here (the API runs projects by name).
    pub async fn project_root(&self, name: &str) -> Result<Option<PathBuf>> {
        let record = self
            .engine
            .catalog_store()
            .get_transform_project(name)
            .await
            .map_err(catalog_error)?;
        Ok(record.map(|r| PathBuf::from(r.root)))
    }

    pub async fn projects(&self) -> Result<Vec<TransformProjectRecord>> {
        self.engine
            .catalog_store()
            .list_transform_projects()
            .await
            .map_err(catalog_error)
    }

    pub async fn nodes(&self, project: &str) -> Result<Vec<TransformNodeRecord>> {
        self.engine
            .catalog_store()
            .list_transform_nodes(project)
            .await
            .map_err(catalog_error)
    }

    pub async fn runs(&self, project: Option<&str>, limit: i64) -> Result<Vec<TransformRunRecord>> {
        self.engine
            .catalog_store()
            .list_transform_runs(project, limit)
            .await
            .map_err(catalog_error)
    }

    pub async fn run_record(&self, id: &str) -> Result<Option<TransformRunRecord>> {
        self.engine
            .catalog_store()
            .get_transform_run(id)
            .await
            .map_err(catalog_error)
    }

    /// Records the project and its nodes' lineage (the UI's DAG) before a run.
    async fn register(&self, project: &Project, actor: &str) -> Result<()> {
        let store = self.engine.catalog_store();
        let now = polder_catalog::now();
        let root = project
            .root
            .canonicalize()
            .unwrap_or_else(|_| project.root.clone());
        store
            .upsert_transform_project(&TransformProjectRecord {
                name: project.name.clone(),
                root: root.display().to_string(),
                schedule: String::new(),
                schedule_run: "{}".to_string(),
                created_by: actor.to_string(),
                created_at: now,
                updated_at: now,
            })
            .await
            .map_err(catalog_error)?;
        // Never run yet: the store keeps the last run of nodes it already knows.
        let record = |unique_id: &str,
                      kind: &str,
                      name: String,
                      relation: String,
                      materialized: &str,
                      depends_on: &[String],
                      description: &str,
                      file_path: &str| {
            TransformNodeRecord {
                project: project.name.clone(),
                unique_id: unique_id.to_string(),
                resource_type: kind.to_string(),
                name,
                relation,
                materialized: materialized.to_string(),
                depends_on: serde_json::to_string(depends_on).unwrap_or_default(),
                description: description.to_string(),
                file_path: file_path.to_string(),
                last_status: String::new(),
                last_message: String::new(),
                last_run_at: None,
                last_duration_ms: None,
                last_run_id: String::new(),
            }
        };
        let mut nodes = Vec::new();
        for node in project.nodes.values() {
            let relation = match node.resource_type {
                ResourceType::Model | ResourceType::Seed => {
                    format!("{}.{}", node.schema, node.alias)
                }
                _ => String::new(),
            };
            nodes.push(record(
                &node.unique_id,
                node.resource_type.as_str(),
                node.name.clone(),
                relation,
                &node.config.materialized,
                &node.depends_on,
                &node.description,
                &node.original_file_path,
            ));
        }
        for source in project.sources.values() {
            nodes.push(record(
                &source.unique_id,
                "source",
                format!("{}.{}", source.source_name, source.name),
                format!("{}.{}", source.schema, source.identifier),
                "",
                &[],
                &source.description,
                &source.original_file_path,
            ));
        }
        for exposure in project.exposures.values() {
            nodes.push(record(
                &exposure.unique_id,
                "exposure",
                exposure.name.clone(),
                String::new(),
                "",
                &exposure.depends_on,
                &exposure.description,
                &exposure.original_file_path,
            ));
        }
        store
            .replace_transform_nodes(&project.name, &nodes)
            .await
            .map_err(catalog_error)
    }
}

/// Writes `target/manifest.json` (and `run_results.json` when given); returns the manifest.
/// `/metrics` for one transformation run (its running gauge, outcome and duration), in the
/// same series as ingestion syncs with `kind="transform"`. A run that ends on an error before
/// its outcome was recorded counts as failed when this is dropped.
struct JobMetrics {
    started: Option<std::time::Instant>,
}

impl JobMetrics {
    fn start() -> Self {
        metrics::gauge!("polder_jobs_running", "kind" => "transform").increment(1.0);
        JobMetrics {
            started: Some(std::time::Instant::now()),
        }
    }

    fn record(&mut self, status: &str) {
        let Some(started) = self.started.take() else {
            return;
        };
        metrics::gauge!("polder_jobs_running", "kind" => "transform").decrement(1.0);
        metrics::counter!("polder_jobs_total", "kind" => "transform", "status" => status.to_string())
            .increment(1);
        metrics::histogram!("polder_job_duration_seconds", "kind" => "transform")
            .record(started.elapsed().as_secs_f64());
    }
}

impl Drop for JobMetrics {
    fn drop(&mut self) {
        self.record("failed");
    }
}

fn write_artifacts(
    project: &Project,
    graph: &Graph,
    compiled: &BTreeMap<String, CompiledNode>,
    invocation_id: &str,
    results: Option<&Value>,
) -> Result<Value> {
    let manifest = manifest(project, graph, compiled, invocation_id, Utc::now());
    write_file(
        &project.target_path.join("manifest.json"),
        &serde_json::to_string(&manifest).unwrap_or_default(),
    )?;
    if let Some(results) = results {
        write_file(
            &project.target_path.join("run_results.json"),
            &serde_json::to_string(results).unwrap_or_default(),
        )?;
    }
    Ok(manifest)
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| TransformError::io(parent, e))?;
    }
    std::fs::write(path, text).map_err(|e| TransformError::io(path, e))
}

fn catalog_error(err: polder_catalog::CatalogError) -> TransformError {
    TransformError::Execution(format!("catalog: {err}"))
}

impl Project {
    /// `3 seeds, 7 models, 21 data tests, 1 source, 1 exposure` (dbt's "Found ..." line).
    pub fn summary(&self) -> String {
        let count = |kind: ResourceType| {
            self.nodes
                .values()
                .filter(|n| n.resource_type == kind)
                .count()
        };
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        [
            plural(count(ResourceType::Model), "model", "models"),
            plural(count(ResourceType::Seed), "seed", "seeds"),
            plural(count(ResourceType::Test), "data test", "data tests"),
            plural(self.sources.len(), "source", "sources"),
            plural(self.exposures.len(), "exposure", "exposures"),
        ]
        .join(", ")
    }

    /// A node's name as `dbt ls` prints it: the dotted fqn, `source:` and `exposure:` prefixed.
    pub fn ls_name(&self, unique_id: &str) -> String {
        if let Some(node) = self.nodes.get(unique_id) {
            return node.fqn.join(".");
        }
        if let Some(source) = self.sources.get(unique_id) {
            return format!(
                "source:{}.{}.{}",
                self.name, source.source_name, source.name
            );
        }
        if let Some(exposure) = self.exposures.get(unique_id) {
            return format!("exposure:{}.{}", self.name, exposure.name);
        }
        unique_id.to_string()
    }
}
