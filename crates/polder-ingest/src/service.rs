//! Ingestion as the CLI, the REST API and the scheduler use it: connections (stored in the
//! catalog, credentials sealed in the vault), their checks and discovery, and sync jobs with
//! retries, progress and history.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use polder_catalog::{CatalogError, ConnectionRecord, JobRecord, SecretVault};
use polder_core::schedule::CronPlanner;
use polder_engine::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connection::{
    ConnectionSpec, ConnectionView, SourceType, StreamSpec, SyncOptions, extract_secrets,
    is_reference, keep_unchanged_secrets, present_secret_fields, secret_pointers,
};
use crate::error::{IngestError, Result};
use crate::sources::{Counters, DiscoveredStream, ReadContext, open_source};
use crate::sync::{RunIdentity, StreamOutcome, sync_connection};

/// How often a running job saves its counts (and proves its runner alive).
const HEARTBEAT: Duration = Duration::from_secs(2);
/// The trigger of a sync started again after its coordinator died.
pub const RESUME_TRIGGER: &str = "resume";
/// A job whose runner on another host has not saved for this long is considered dead.
const STALE_AFTER_MS: i64 = 20_000;
/// Bytes of a connector's log kept with a failed job.
const LOG_TAIL_BYTES: usize = 16 * 1024;

/// What the catalog's `options` column holds besides the user's options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StoredOptions {
    #[serde(default)]
    options: SyncOptions,
    /// Credential fields an Airbyte connector's spec declares (JSON pointers into `config`).
    #[serde(default)]
    connector_secrets: Vec<String>,
}

/// A change to a stored connection; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPatch {
    /// Merged into the configuration (a JSON merge patch: `null` removes a field; credentials
    /// shown as `********` keep their stored value).
    #[serde(default)]
    pub config: Option<Value>,
    #[serde(default)]
    pub streams: Option<Vec<StreamSpec>>,
    /// `Some(None)` (JSON `null` or an empty string) removes the schedule.
    #[serde(default, deserialize_with = "schedule_patch")]
    pub schedule: Option<Option<String>>,
    #[serde(default)]
    pub options: Option<SyncOptions>,
}

fn schedule_patch<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Option<String>>, D::Error> {
    let value: Option<String> = Option::deserialize(deserializer)?;
    Ok(Some(value.filter(|s| !s.trim().is_empty())))
}

/// A job as shown by `polder jobs` and the API.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobView {
    pub id: String,
    pub connection: String,
    pub kind: String,
    pub trigger: String,
    pub status: String,
    pub attempt: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub duration_ms: Option<i64>,
    pub records: i64,
    pub bytes: i64,
    pub rejects: i64,
    pub streams: Vec<StreamOutcome>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub log_tail: String,
    /// `host:pid` of the coordinator that ran (or runs) it.
    pub runner: String,
}

impl JobView {
    fn from_record(record: JobRecord) -> JobView {
        let streams = serde_json::from_str(&record.streams).unwrap_or_default();
        let duration_ms = record
            .started_at
            .map(|started| record.finished_at.unwrap_or_else(polder_catalog::now) - started);
        JobView {
            id: record.id,
            connection: record.connection,
            kind: record.kind,
            trigger: record.trigger,
            status: record.status,
            attempt: record.attempt,
            created_at: record.created_at,
            started_at: record.started_at,
            finished_at: record.finished_at,
            duration_ms,
            records: record.records,
            bytes: record.bytes,
            rejects: record.rejects,
            streams,
            error: record.error,
            log_tail: record.log_tail,
            runner: record.runner,
        }
    }

    pub fn succeeded(&self) -> bool {
        self.status == "succeeded"
    }
}

/// Ingestion over one engine and vault.
pub struct Ingestion {
    engine: Arc<Engine>,
    vault: SecretVault,
    /// `host:pid` of this process, written into the jobs it runs.
    runner: String,
    /// Connections with a sync running in this process.
    running: Mutex<HashSet<String>>,
}

/// Whether the process that owns a job may still be running it (jobs always have a heartbeat).
fn runner_alive(runner: &str, heartbeat_at: Option<i64>) -> bool {
    polder_core::runner::runner_alive(runner, heartbeat_at, polder_catalog::now(), STALE_AFTER_MS)
        .unwrap_or(false)
}

fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

impl Ingestion {
    pub fn new(engine: Arc<Engine>, vault: SecretVault) -> Self {
        Ingestion {
            engine,
            vault,
            runner: polder_core::runner::runner_identity(),
            running: Mutex::new(HashSet::new()),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    fn read_context(&self) -> ReadContext {
        ReadContext {
            engine: self.engine.clone(),
            counters: Arc::new(Counters::default()),
            log_tail: Arc::new(Mutex::new(String::new())),
        }
    }

    fn store(&self) -> &polder_catalog::CatalogStore {
        self.engine.catalog_store()
    }

    async fn record(&self, name: &str) -> Result<ConnectionRecord> {
        self.store()
            .get_connection(name)
            .await?
            .ok_or_else(|| IngestError::NotFound {
                kind: "connection",
                name: name.to_string(),
            })
    }

    fn view(record: ConnectionRecord) -> Result<(ConnectionView, StoredOptions)> {
        let stored: StoredOptions = serde_json::from_str(&record.options).unwrap_or_default();
        let spec = ConnectionSpec {
            name: record.name,
            source: SourceType::parse(&record.source_type)?,
            config: serde_json::from_str(&record.config)
                .map_err(|e| IngestError::Config(format!("stored config: {e}")))?,
            streams: serde_json::from_str(&record.streams)
                .map_err(|e| IngestError::Config(format!("stored streams: {e}")))?,
            schedule: (!record.schedule.is_empty()).then_some(record.schedule),
            options: stored.options.clone(),
        };
        Ok((
            ConnectionView {
                spec,
                created_by: record.created_by,
                created_at: record.created_at,
                updated_at: record.updated_at,
            },
            stored,
        ))
    }

    /// The configuration with every credential reference replaced by its value: for the
    /// source only, never stored or shown.
    async fn resolve(
        &self,
        spec: &ConnectionSpec,
        stored: &StoredOptions,
    ) -> Result<ConnectionSpec> {
        let mut resolved = spec.clone();
        let pointers = secret_pointers(spec.source, &stored.connector_secrets);
        for pointer in present_secret_fields(&spec.config, &pointers) {
            let Some(slot) = resolved.config.pointer_mut(&pointer) else {
                continue;
            };
            let Some(reference) = slot.as_str().map(str::to_string) else {
                continue;
            };
            if !is_reference(&reference) {
                continue;
            }
            let value = if let Some(name) = reference.strip_prefix("secret:") {
                self.vault
                    .reveal(name)
                    .await
                    .map_err(|e| {
                        IngestError::Config(format!(
                            "connection '{}': credential {reference}: {e}",
                            spec.name
                        ))
                    })?
                    .expose()
                    .to_string()
            } else {
                polder_core::secret::resolve_reference(&reference, |n| std::env::var(n).ok())
                    .map_err(|e| IngestError::Config(format!("connection '{}': {e}", spec.name)))?
            };
            *slot = Value::String(value);
        }
        Ok(resolved)
    }

    /// Seals the literal credentials of `spec.config` and stores references instead.
    async fn seal(
        &self,
        spec: &mut ConnectionSpec,
        stored: &StoredOptions,
        by: &str,
    ) -> Result<()> {
        let pointers = secret_pointers(spec.source, &stored.connector_secrets);
        let sealed: BTreeMap<String, String> =
            extract_secrets(&spec.name, &mut spec.config, &pointers);
        for (name, value) in sealed {
            self.vault
                .put(
                    &name,
                    &polder_core::Secret::new(value),
                    &format!("credential of connection {}", spec.name),
                    by,
                )
                .await?;
        }
        Ok(())
    }

    /// Non-Airbyte incremental streams need a cursor the user names.
    fn check_streams(spec: &ConnectionSpec) -> Result<()> {
        if spec.source == SourceType::Airbyte {
            return Ok(());
        }
        for stream in &spec.streams {
            if stream.sync_mode.is_incremental()
                && stream.cursor_field.is_none()
                && spec.source != SourceType::Files
            {
                return Err(IngestError::Config(format!(
                    "stream '{}': {} needs cursor_field (the column whose growth marks new records)",
                    stream.name, stream.sync_mode
                )));
            }
        }
        Ok(())
    }

    /// Stores a new connection. With no streams given, every discovered stream is selected
    /// (full_refresh_overwrite).
    pub async fn add_connection(
        &self,
        mut spec: ConnectionSpec,
        by: &str,
    ) -> Result<ConnectionView> {
        spec.validate()?;
        if self.store().get_connection(&spec.name).await?.is_some() {
            return Err(CatalogError::ObjectExists {
                kind: "connection",
                name: spec.name.clone(),
            }
            .into());
        }
        let mut stored = StoredOptions {
            options: spec.options.clone(),
            connector_secrets: Vec::new(),
        };
        if spec.source == SourceType::Airbyte {
            stored.connector_secrets = crate::sources::airbyte_secret_fields(&spec.config).await?;
        }
        if spec.streams.is_empty() {
            let resolved = self.resolve(&spec, &stored).await?;
            let discovered = open_source(&resolved)?
                .discover(&self.read_context())
                .await?;
            spec.streams = discovered
                .into_iter()
                .map(|s| StreamSpec {
                    name: s.name,
                    sync_mode: Default::default(),
                    cursor_field: None,
                    primary_key: Vec::new(),
                })
                .collect();
            spec.validate()?;
        }
        Self::check_streams(&spec)?;
        self.seal(&mut spec, &stored, by).await?;
        let now = polder_catalog::now();
        let record = ConnectionRecord {
            name: spec.name.clone(),
            source_type: spec.source.as_str().to_string(),
            config: spec.config.to_string(),
            streams: serde_json::to_string(&spec.streams).unwrap_or_default(),
            schedule: spec.schedule.clone().unwrap_or_default(),
            options: serde_json::to_string(&stored).unwrap_or_default(),
            created_by: by.to_string(),
            created_at: now,
            updated_at: now,
        };
        self.store().create_connection(&record).await?;
        Ok(Self::view(record)?.0)
    }

    /// Changes a stored connection.
    pub async fn edit_connection(
        &self,
        name: &str,
        patch: ConnectionPatch,
        by: &str,
    ) -> Result<ConnectionView> {
        let record = self.record(name).await?;
        let (view, mut stored) = Self::view(record.clone())?;
        let mut spec = view.spec;
        if let Some(config) = &patch.config {
            let previous = spec.config.clone();
            merge_patch(&mut spec.config, config);
            let pointers = secret_pointers(spec.source, &stored.connector_secrets);
            keep_unchanged_secrets(&previous, &mut spec.config, &pointers);
        }
        if let Some(streams) = patch.streams {
            spec.streams = streams;
        }
        if let Some(schedule) = patch.schedule {
            spec.schedule = schedule;
        }
        if let Some(options) = patch.options {
            spec.options = options.clone();
            stored.options = options;
        }
        spec.validate()?;
        Self::check_streams(&spec)?;
        if spec.source == SourceType::Airbyte && patch.config.is_some() {
            let resolved = self.resolve(&spec, &stored).await?;
            stored.connector_secrets =
                crate::sources::airbyte_secret_fields(&resolved.config).await?;
        }
        self.seal(&mut spec, &stored, by).await?;
        let updated = ConnectionRecord {
            config: spec.config.to_string(),
            streams: serde_json::to_string(&spec.streams).unwrap_or_default(),
            schedule: spec.schedule.clone().unwrap_or_default(),
            options: serde_json::to_string(&stored).unwrap_or_default(),
            updated_at: polder_catalog::now(),
            ..record
        };
        self.store().update_connection(&updated).await?;
        Ok(Self::view(updated)?.0)
    }

    /// Deletes a connection and its sealed credentials; its tables and job history stay.
    pub async fn delete_connection(&self, name: &str) -> Result<()> {
        self.record(name).await?;
        let prefix = format!("connection.{name}.");
        for secret in self.vault.list().await? {
            if secret.name.starts_with(&prefix) {
                self.vault.delete(&secret.name).await?;
            }
        }
        self.store().delete_connection(name).await?;
        Ok(())
    }

    pub async fn connection(&self, name: &str) -> Result<ConnectionView> {
        Ok(Self::view(self.record(name).await?)?.0)
    }

    pub async fn connections(&self) -> Result<Vec<ConnectionView>> {
        self.store()
            .list_connections()
            .await?
            .into_iter()
            .map(|r| Self::view(r).map(|v| v.0))
            .collect()
    }

    async fn resolved(&self, name: &str) -> Result<ConnectionSpec> {
        let (view, stored) = Self::view(self.record(name).await?)?;
        self.resolve(&view.spec, &stored).await
    }

    /// Connects to the source and reads a little.
    pub async fn check(&self, name: &str) -> Result<String> {
        let spec = self.resolved(name).await?;
        open_source(&spec)?.check(&self.read_context()).await
    }

    /// The streams the source offers now.
    pub async fn discover(&self, name: &str) -> Result<Vec<DiscoveredStream>> {
        let spec = self.resolved(name).await?;
        open_source(&spec)?.discover(&self.read_context()).await
    }

    pub async fn jobs(&self, connection: Option<&str>, limit: i64) -> Result<Vec<JobView>> {
        Ok(self
            .store()
            .list_jobs(connection, limit)
            .await?
            .into_iter()
            .map(JobView::from_record)
            .collect())
    }

    pub async fn job(&self, id: &str) -> Result<JobView> {
        self.store()
            .get_job(id)
            .await?
            .map(JobView::from_record)
            .ok_or_else(|| IngestError::NotFound {
                kind: "job",
                name: id.to_string(),
            })
    }

    /// Marks jobs whose runner died (a killed process) as failed, so that history tells the
    /// truth and the connection can run again.
    pub async fn sweep_interrupted(&self) -> Result<()> {
        self.mark_interrupted().await.map(|_| ())
    }

    /// The jobs that are running: those whose runner is alive. Those of dead runners are
    /// left for the scheduler's sweep, which marks them and resumes them in one place.
    async fn live_running_jobs(&self) -> Result<Vec<JobRecord>> {
        let mut live = self.store().jobs_in_status("running").await?;
        live.retain(|job| runner_alive(&job.runner, job.heartbeat_at));
        Ok(live)
    }

    /// The running jobs whose runner died, marked failed (interrupted) here and returned.
    async fn mark_interrupted(&self) -> Result<Vec<JobRecord>> {
        let mut interrupted = Vec::new();
        for mut job in self.store().jobs_in_status("running").await? {
            if runner_alive(&job.runner, job.heartbeat_at) {
                continue;
            }
            job.status = "failed".to_string();
            job.finished_at = Some(job.heartbeat_at.unwrap_or(job.created_at));
            job.error = format!(
                "interrupted: the process running it ({}) stopped; what it committed is kept, the next run continues from there",
                job.runner
            );
            self.store().update_job(&job).await?;
            interrupted.push(job);
        }
        Ok(interrupted)
    }

    /// Runs a sync of `name` now, with the connection's retries (or `retries` when given);
    /// `counters` see the records and bytes as they flow. Returns the last attempt's job.
    pub async fn sync(
        &self,
        name: &str,
        trigger: &str,
        counters: Arc<Counters>,
        retries: Option<u32>,
    ) -> Result<JobView> {
        let (view, _) = Self::view(self.record(name).await?)?;
        let retries = retries.unwrap_or(view.spec.options.retries);
        let backoff = view.spec.options.retry_backoff_secs;
        let mut attempt = 1;
        loop {
            let (job, transient) = self
                .sync_once(name, trigger, attempt, counters.clone())
                .await?;
            if job.succeeded() || !transient || attempt > retries as i64 {
                return Ok(job);
            }
            let wait = backoff.saturating_mul(1 << (attempt - 1).min(10));
            tracing::warn!(connection = %name, attempt, wait_secs = wait, error = %job.error, "sync failed; retrying");
            tokio::time::sleep(Duration::from_secs(wait)).await;
            attempt += 1;
        }
    }

    /// One attempt: a job record, the sync, the outcome saved. The second value says whether
    /// a failure may pass on its own.
    async fn sync_once(
        &self,
        name: &str,
        trigger: &str,
        attempt: i64,
        counters: Arc<Counters>,
    ) -> Result<(JobView, bool)> {
        if let Some(other) = self
            .live_running_jobs()
            .await?
            .into_iter()
            .find(|j| j.connection == name)
        {
            return Err(IngestError::Engine(polder_engine::EngineError::Conflict(
                format!(
                    "a sync of connection '{name}' is already running (job {}, {})",
                    other.id, other.runner
                ),
            )));
        }
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if !running.insert(name.to_string()) {
                return Err(IngestError::Engine(polder_engine::EngineError::Conflict(
                    format!("a sync of connection '{name}' is already running"),
                )));
            }
        }
        let result = self.run_job(name, trigger, attempt, counters).await;
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        result
    }

    async fn run_job(
        &self,
        name: &str,
        trigger: &str,
        attempt: i64,
        counters: Arc<Counters>,
    ) -> Result<(JobView, bool)> {
        let now = polder_catalog::now();
        let started: DateTime<Utc> = Utc::now();
        let mut job = JobRecord {
            id: format!(
                "{}-{}",
                started.format("%Y%m%d%H%M%S"),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            connection: name.to_string(),
            kind: "sync".to_string(),
            trigger: trigger.to_string(),
            status: "running".to_string(),
            attempt,
            created_at: now,
            started_at: Some(now),
            finished_at: None,
            records: 0,
            bytes: 0,
            rejects: 0,
            streams: "[]".to_string(),
            error: String::new(),
            log_tail: String::new(),
            runner: self.runner.clone(),
            heartbeat_at: Some(now),
        };
        self.store().create_job(&job).await?;
        let timer = std::time::Instant::now();
        metrics::gauge!("polder_jobs_running", "kind" => "ingest").increment(1.0);
        let base_records = counters.records();
        let base_bytes = counters.bytes();

        let heartbeat = {
            let store = self.store().clone();
            let mut beat = job.clone();
            let counters = counters.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    beat.records = (counters.records() - base_records) as i64;
                    beat.bytes = (counters.bytes() - base_bytes) as i64;
                    beat.heartbeat_at = Some(polder_catalog::now());
                    if let Err(err) = store.update_job(&beat).await {
                        tracing::debug!(error = %err, "could not save a job's progress");
                    }
                }
            })
        };
        let log_tail = Arc::new(Mutex::new(String::new()));
        let outcome = async {
            let spec = self.resolved(name).await?;
            let context = ReadContext {
                engine: self.engine.clone(),
                counters: counters.clone(),
                log_tail: log_tail.clone(),
            };
            let run = RunIdentity {
                sync_id: job.id.clone(),
                extracted_at: started,
            };
            Ok::<_, IngestError>(sync_connection(&spec, &run, &context).await)
        }
        .await;
        heartbeat.abort();
        let (streams, error) = match outcome {
            Ok((streams, error)) => (streams, error),
            Err(err) => (Vec::new(), Some(err)),
        };
        job.finished_at = Some(polder_catalog::now());
        job.heartbeat_at = job.finished_at;
        job.records = streams.iter().map(|s| s.records as i64).sum();
        job.bytes = (counters.bytes() - base_bytes) as i64;
        job.rejects = streams.iter().map(|s| s.rejects as i64).sum();
        job.streams = serde_json::to_string(&streams).unwrap_or_else(|_| "[]".to_string());
        let transient = error.as_ref().is_some_and(IngestError::is_transient);
        match &error {
            None => job.status = "succeeded".to_string(),
            Some(err) => {
                job.status = "failed".to_string();
                job.error = err.to_string();
                let tail = log_tail.lock().map(|t| t.clone()).unwrap_or_default();
                let start = tail.len().saturating_sub(LOG_TAIL_BYTES);
                let start = (start..tail.len())
                    .find(|&i| tail.is_char_boundary(i))
                    .unwrap_or(tail.len());
                job.log_tail = tail[start..].to_string();
            }
        }
        metrics::gauge!("polder_jobs_running", "kind" => "ingest").decrement(1.0);
        metrics::counter!("polder_jobs_total", "kind" => "ingest", "status" => job.status.clone())
            .increment(1);
        metrics::histogram!("polder_job_duration_seconds", "kind" => "ingest")
            .record(timer.elapsed().as_secs_f64());
        metrics::counter!("polder_ingested_records_total", "connection" => name.to_string())
            .increment(job.records.max(0) as u64);
        self.store().update_job(&job).await?;
        Ok((JobView::from_record(job), transient))
    }

    /// Runs the connections' cron schedules until the process ends: each connection fires at
    /// its next scheduled time (UTC) unless a sync of it is still running.
    pub fn spawn_scheduler(
        self: Arc<Self>,
        leadership: polder_catalog::Leadership,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                // Only the coordinator holding the scheduler lease runs schedules, so that
                // several coordinators on one catalog sync each connection once per fire.
                leadership.became_leader().await;
                // A new term plans schedules from now on: a fire missed while no coordinator
                // held the lease is not made up (it runs at the next fire).
                let mut planner = CronPlanner::new();
                while leadership.is_leader() {
                    // Before the schedules, so that an interrupted sync is resumed rather
                    // than raced by its connection's next scheduled one.
                    self.resume_interrupted().await;
                    if let Err(err) = self.schedule_tick(&mut planner).await {
                        tracing::warn!(error = %err, "scheduler could not read connections");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        })
    }

    /// Marks the jobs whose runner died as failed and starts each of them again here, once: a
    /// sync continues from the state its last commit saved, so nothing is loaded twice. A
    /// job that was itself such a resumption is not resumed again (a sync that kills its
    /// process would otherwise go round the coordinators).
    async fn resume_interrupted(self: &Arc<Self>) {
        let interrupted = match self.mark_interrupted().await {
            Ok(jobs) => jobs,
            Err(err) => {
                tracing::warn!(error = %err, "could not check for interrupted jobs");
                return;
            }
        };
        for job in interrupted {
            if job.trigger == RESUME_TRIGGER {
                continue;
            }
            tracing::info!(connection = %job.connection, job = %job.id, runner = %job.runner, "resuming a sync whose coordinator stopped");
            let this = self.clone();
            tokio::spawn(async move {
                match this
                    .sync(
                        &job.connection,
                        RESUME_TRIGGER,
                        Arc::new(Counters::default()),
                        None,
                    )
                    .await
                {
                    Ok(resumed) => {
                        tracing::info!(connection = %job.connection, job = %resumed.id, status = %resumed.status, records = resumed.records, "resumed sync finished")
                    }
                    Err(err) => {
                        tracing::warn!(connection = %job.connection, error = %err, "resumed sync could not start")
                    }
                }
            });
        }
    }

    async fn schedule_tick(self: &Arc<Self>, planner: &mut CronPlanner) -> Result<()> {
        let now = Utc::now();
        for record in self.store().list_connections().await? {
            if record.schedule.is_empty() || !planner.due(&record.name, &record.schedule, now) {
                continue;
            }
            let busy = self
                .running
                .lock()
                .map(|r| r.contains(&record.name))
                .unwrap_or(true);
            if busy {
                tracing::info!(connection = %record.name, "scheduled sync skipped: the previous one is still running");
                continue;
            }
            let this = self.clone();
            let name = record.name.clone();
            tokio::spawn(async move {
                match this
                    .sync(&name, "schedule", Arc::new(Counters::default()), None)
                    .await
                {
                    Ok(job) => {
                        tracing::info!(connection = %name, job = %job.id, status = %job.status, records = job.records, "scheduled sync finished")
                    }
                    Err(err) => {
                        tracing::warn!(connection = %name, error = %err, "scheduled sync could not start")
                    }
                }
            });
        }
        planner.end_round();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_replaces_and_removes() {
        let mut config = json!({"host": "a", "port": 1, "nested": {"x": 1, "y": 2}});
        merge_patch(
            &mut config,
            &json!({"host": "b", "port": null, "nested": {"y": 3}}),
        );
        assert_eq!(config, json!({"host": "b", "nested": {"x": 1, "y": 3}}));
    }

    #[test]
    fn dead_local_runners_are_detected() {
        let host = polder_core::runner::host_name();
        assert!(runner_alive(
            &format!("{host}:{}", std::process::id()),
            None
        ));
        assert!(!runner_alive(
            &format!("{host}:999999999"),
            Some(polder_catalog::now())
        ));
        assert!(runner_alive("elsewhere:1", Some(polder_catalog::now())));
        assert!(!runner_alive(
            "elsewhere:1",
            Some(polder_catalog::now() - STALE_AFTER_MS - 1)
        ));
    }
}
