//! `polder connection ...`, `polder sync` and `polder jobs`: ingestion on the data directory
//! (the same catalog, vault and lake `polder serve` uses).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use polder_core::Config;
use polder_ingest::{
    ConnectionPatch, ConnectionSpec, Counters, Ingestion, JobView, SourceType, StreamSpec,
    SyncMode, SyncOptions,
};
use serde_json::Value;

use crate::commands::{cli_actor, open_engine, open_vault};

#[derive(Debug, Subcommand)]
pub(crate) enum ConnectionAction {
    /// Add a connection. Literal credentials in --source-config are sealed in the vault and stored as
    /// `secret:` references; `secret:NAME`, `env:VAR` and `file:PATH` references are kept.
    /// Without --stream, every stream the source offers is selected (full_refresh_overwrite).
    Add {
        name: String,
        /// postgres, mysql, files, http or airbyte (not needed with --file).
        #[arg(long)]
        source: Option<String>,
        /// The source's configuration as JSON, or @file.json.
        #[arg(long = "source-config", value_name = "JSON")]
        source_config: Option<String>,
        /// A stream: NAME[:MODE[:CURSOR[:KEY[+KEY...]]]], e.g.
        /// `orders:incremental_append_deduped:updated_at:id` (repeat for more).
        #[arg(long = "stream", value_name = "SPEC")]
        streams: Vec<String>,
        /// Cron schedule (UTC), e.g. '*/15 * * * *'.
        #[arg(long)]
        schedule: Option<String>,
        /// Malformed records a stream may reject before its sync fails.
        #[arg(long)]
        max_rejects: Option<u64>,
        /// Retries of a failed run whose cause may pass.
        #[arg(long)]
        retries: Option<u32>,
        /// The whole connection as a JSON file (name, source, config, streams, schedule, options).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["source", "source_config"])]
        file: Option<std::path::PathBuf>,
    },
    /// List connections.
    List,
    /// Show a connection as JSON (credentials as references only).
    Show { name: String },
    /// Change a connection: --source-config is merged into the stored one (null removes a field);
    /// --stream replaces the streams.
    Edit {
        name: String,
        /// Merged into the stored configuration (JSON; null removes a field).
        #[arg(long = "source-config", value_name = "JSON")]
        source_config: Option<String>,
        #[arg(long = "stream", value_name = "SPEC")]
        streams: Vec<String>,
        #[arg(long, conflicts_with = "no_schedule")]
        schedule: Option<String>,
        /// Remove the schedule (manual runs only).
        #[arg(long)]
        no_schedule: bool,
        #[arg(long)]
        max_rejects: Option<u64>,
        #[arg(long)]
        retries: Option<u32>,
    },
    /// Delete a connection and its stored credentials (its tables and jobs stay).
    Delete { name: String },
    /// Connect to the source and read a little.
    Check { name: String },
    /// List the streams the source offers, with columns, keys and cursor candidates.
    Discover {
        name: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct SyncArgs {
    pub connection: String,
    /// Retries of a failed run (default: the connection's).
    #[arg(long)]
    pub retries: Option<u32>,
    /// Print the finished job as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct JobsArgs {
    /// Only this connection's jobs.
    pub connection: Option<String>,
    /// Show one job in full (JSON).
    #[arg(long, value_name = "JOB_ID")]
    pub id: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

async fn open(config: &Config) -> anyhow::Result<Ingestion> {
    let engine = Arc::new(open_engine(config).await?);
    let vault = open_vault(config, engine.catalog_store().clone())?;
    Ok(Ingestion::new(engine, vault))
}

fn json_argument(text: &str) -> anyhow::Result<Value> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => text.to_string(),
    };
    serde_json::from_str(&text).context("--source-config is not valid JSON")
}

/// `NAME[:MODE[:CURSOR[:KEY+KEY]]]`.
fn parse_stream(text: &str) -> anyhow::Result<StreamSpec> {
    let mut parts = text.splitn(4, ':');
    let name = parts.next().unwrap_or_default().to_string();
    let sync_mode = match parts.next().filter(|m| !m.is_empty()) {
        Some(mode) => SyncMode::parse(mode)?,
        None => SyncMode::default(),
    };
    let cursor_field = parts.next().filter(|c| !c.is_empty()).map(str::to_string);
    let primary_key = parts
        .next()
        .map(|k| {
            k.split('+')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if name.is_empty() {
        bail!("--stream '{text}' has no stream name");
    }
    Ok(StreamSpec {
        name,
        sync_mode,
        cursor_field,
        primary_key,
    })
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn when(millis: Option<i64>) -> String {
    millis
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".to_string())
}

pub(crate) async fn connection(config: &Config, action: ConnectionAction) -> anyhow::Result<()> {
    let ingestion = open(config).await?;
    match action {
        ConnectionAction::Add {
            name,
            source,
            source_config,
            streams,
            schedule,
            max_rejects,
            retries,
            file,
        } => {
            let mut spec = match file {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let mut spec: ConnectionSpec = serde_json::from_str(&text)
                        .with_context(|| format!("{} is not a connection", path.display()))?;
                    spec.name = name;
                    spec
                }
                None => {
                    let Some(source) = source else {
                        bail!(
                            "--source is needed (postgres, mysql, files, http or airbyte), or --file"
                        );
                    };
                    ConnectionSpec {
                        name,
                        source: SourceType::parse(&source)?,
                        config: match source_config {
                            Some(text) => json_argument(&text)?,
                            None => Value::Object(Default::default()),
                        },
                        streams: Vec::new(),
                        schedule: None,
                        options: SyncOptions::default(),
                    }
                }
            };
            if !streams.is_empty() {
                spec.streams = streams
                    .iter()
                    .map(|s| parse_stream(s))
                    .collect::<anyhow::Result<_>>()?;
            }
            if schedule.is_some() {
                spec.schedule = schedule;
            }
            if let Some(max) = max_rejects {
                spec.options.max_rejects = max;
            }
            if let Some(retries) = retries {
                spec.options.retries = retries;
            }
            let view = ingestion.add_connection(spec, &cli_actor()).await?;
            println!(
                "added connection '{}' ({}) with {} stream(s): {}",
                view.spec.name,
                view.spec.source,
                view.spec.streams.len(),
                view.spec
                    .streams
                    .iter()
                    .map(|s| format!("{} ({})", s.name, s.sync_mode))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        ConnectionAction::List => {
            let connections = ingestion.connections().await?;
            println!(
                "{:<24} {:<9} {:<7} {:<16} updated",
                "name", "source", "streams", "schedule"
            );
            for c in connections {
                println!(
                    "{:<24} {:<9} {:<7} {:<16} {}",
                    c.spec.name,
                    c.spec.source,
                    c.spec.streams.len(),
                    c.spec.schedule.as_deref().unwrap_or("manual"),
                    when(Some(c.updated_at))
                );
            }
        }
        ConnectionAction::Show { name } => print_json(&ingestion.connection(&name).await?)?,
        ConnectionAction::Edit {
            name,
            source_config,
            streams,
            schedule,
            no_schedule,
            max_rejects,
            retries,
        } => {
            let mut patch = ConnectionPatch {
                config: source_config.as_deref().map(json_argument).transpose()?,
                ..Default::default()
            };
            if !streams.is_empty() {
                patch.streams = Some(
                    streams
                        .iter()
                        .map(|s| parse_stream(s))
                        .collect::<anyhow::Result<_>>()?,
                );
            }
            if no_schedule {
                patch.schedule = Some(None);
            } else if schedule.is_some() {
                patch.schedule = Some(schedule);
            }
            if max_rejects.is_some() || retries.is_some() {
                let mut options = ingestion.connection(&name).await?.spec.options;
                if let Some(max) = max_rejects {
                    options.max_rejects = max;
                }
                if let Some(retries) = retries {
                    options.retries = retries;
                }
                patch.options = Some(options);
            }
            let view = ingestion
                .edit_connection(&name, patch, &cli_actor())
                .await?;
            println!("changed connection '{}'", view.spec.name);
        }
        ConnectionAction::Delete { name } => {
            ingestion.delete_connection(&name).await?;
            println!("deleted connection '{name}' (its bronze tables and job history stay)");
        }
        ConnectionAction::Check { name } => {
            let message = ingestion.check(&name).await?;
            println!("ok: {message}");
        }
        ConnectionAction::Discover { name, json } => {
            let streams = ingestion.discover(&name).await?;
            if json {
                return print_json(&streams);
            }
            for stream in streams {
                println!(
                    "{}  (primary key: {}; cursor candidates: {})",
                    stream.name,
                    if stream.primary_key.is_empty() {
                        "none".to_string()
                    } else {
                        stream.primary_key.join(", ")
                    },
                    if stream.cursor_candidates.is_empty() {
                        "none".to_string()
                    } else {
                        stream.cursor_candidates.join(", ")
                    }
                );
                for (column, data_type) in &stream.columns {
                    println!("    {column:<32} {data_type}");
                }
            }
        }
    }
    Ok(())
}

fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

pub(crate) async fn sync(config: &Config, args: SyncArgs) -> anyhow::Result<()> {
    let ingestion = open(config).await?;
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    };
    let ticker = {
        let bar = bar.clone();
        let counters = counters.clone();
        let name = args.connection.clone();
        tokio::spawn(async move {
            loop {
                let seconds = started.elapsed().as_secs_f64().max(0.001);
                let records = counters.records();
                bar.set_message(format!(
                    "syncing {name}: {records} records, {} ({:.0} records/s)",
                    human_bytes(counters.bytes()),
                    records as f64 / seconds
                ));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let result = ingestion
        .sync(
            &args.connection,
            &format!("manual:{}", cli_actor()),
            counters.clone(),
            args.retries,
        )
        .await;
    ticker.abort();
    bar.finish_and_clear();
    let job = result?;
    if args.json {
        print_json(&job)?;
    } else {
        print_job_summary(&job, started.elapsed());
    }
    if !job.succeeded() {
        bail!("sync of '{}' failed: {}", job.connection, job.error);
    }
    Ok(())
}

fn print_job_summary(job: &JobView, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64().max(0.001);
    println!(
        "job {} {}: {} records, {}, {} rejects in {:.1} s ({:.0} records/s)",
        job.id,
        job.status,
        job.records,
        human_bytes(job.bytes.max(0) as u64),
        job.rejects,
        seconds,
        job.records as f64 / seconds
    );
    println!(
        "  {:<28} {:<27} {:<10} {:>10} {:>8} {:>8}",
        "stream", "mode", "status", "records", "rejects", "version"
    );
    for stream in &job.streams {
        println!(
            "  {:<28} {:<27} {:<10} {:>10} {:>8} {:>8}",
            stream.stream,
            stream.sync_mode.as_str(),
            stream.status,
            stream.records,
            stream.rejects,
            stream
                .version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".to_string())
        );
        for change in &stream.schema_changes {
            println!("      schema: {change}");
        }
        if let Some(error) = &stream.error {
            println!("      error: {error}");
        }
    }
}

pub(crate) async fn jobs(config: &Config, args: JobsArgs) -> anyhow::Result<()> {
    let ingestion = open(config).await?;
    ingestion.sweep_interrupted().await?;
    if let Some(id) = args.id {
        return print_json(&ingestion.job(&id).await?);
    }
    let jobs = ingestion
        .jobs(args.connection.as_deref(), args.limit)
        .await?;
    if args.json {
        return print_json(&jobs);
    }
    println!(
        "{:<24} {:<20} {:<10} {:<20} {:>9} {:>10} {:>8}  error",
        "job", "connection", "status", "started", "seconds", "records", "rejects"
    );
    for job in jobs {
        println!(
            "{:<24} {:<20} {:<10} {:<20} {:>9.1} {:>10} {:>8}  {}",
            job.id,
            job.connection,
            job.status,
            when(job.started_at),
            job.duration_ms.unwrap_or_default() as f64 / 1000.0,
            job.records,
            job.rejects,
            job.error.chars().take(80).collect::<String>()
        );
    }
    Ok(())
}
