//! `polder build|run|test|seed|compile|ls|docs`: dbt projects run on the data directory (the
//! same catalog and lake `polder serve` uses), with dbt's flags and dbt-style output.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use polder_core::Config;
use polder_transform::{
    Command as RunCommand, LoadedProject, NodeResult, Progress, ResourceType, RunOptions,
    Transformations,
};
use serde_json::{Map, Value};

use crate::commands::{cli_actor, open_engine};

/// What every project command takes.
#[derive(Debug, Args)]
pub(crate) struct ProjectArgs {
    /// The dbt project (the folder with dbt_project.yml).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub project_dir: PathBuf,
    /// Nodes to include (dbt's selection syntax: `model`, `+model`, `model+`, `tag:x`,
    /// `path:models/marts`, `config.materialized:table`...); repeat or separate by spaces.
    #[arg(short = 's', long = "select", alias = "models", short_alias = 'm', value_name = "SELECTOR", num_args = 1..)]
    pub select: Vec<String>,
    /// Nodes to leave out (same syntax).
    #[arg(long, value_name = "SELECTOR", num_args = 1..)]
    pub exclude: Vec<String>,
    /// Project variables as JSON or YAML-style JSON: '{"start_date": "2024-01-01"}'.
    #[arg(long, value_name = "JSON")]
    pub vars: Option<String>,
}

/// Flags of the commands that run nodes.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Rebuild incremental models and reload seeds from scratch.
    #[arg(long)]
    pub full_refresh: bool,
    /// Nodes run at once.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Stop at the first failure (the rest is skipped).
    #[arg(short = 'x', long)]
    pub fail_fast: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Only these resource types (model, seed, test, source, exposure); repeatable.
    #[arg(long = "resource-type", value_name = "TYPE")]
    pub resource_types: Vec<String>,
    /// Print unique ids instead of dotted names.
    #[arg(long)]
    pub unique_id: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DocsAction {
    /// Write the documentation site into the project's target folder.
    Generate {
        #[command(flatten)]
        project: ProjectArgs,
    },
    /// Write it and serve it on a local port.
    Serve {
        #[command(flatten)]
        project: ProjectArgs,
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SourceAction {
    /// How long ago each selected source table was loaded, against its freshness rules
    /// (writes target/sources.json; non-zero exit when one is past error_after).
    Freshness {
        #[command(flatten)]
        project: ProjectArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProjectAction {
    /// Projects known on this catalog (every project a run command has run), with schedules.
    List,
    /// A project's runs, newest first: who started them, status, counts, error.
    Runs {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a project on a cron schedule inside `polder serve` (UTC), or stop that.
    Schedule {
        /// The project's name (from its dbt_project.yml).
        name: String,
        /// A cron expression: 5 fields, or 6 with seconds first, e.g. '0 * * * *'.
        #[arg(long, conflicts_with = "none", required_unless_present = "none")]
        cron: Option<String>,
        /// Stop the schedule.
        #[arg(long)]
        none: bool,
        /// What a scheduled run does: build, run, test or seed.
        #[arg(long, default_value = "build")]
        command: String,
        #[arg(short = 's', long = "select", value_name = "SELECTOR", num_args = 1..)]
        select: Vec<String>,
        #[arg(long, value_name = "SELECTOR", num_args = 1..)]
        exclude: Vec<String>,
        #[arg(long)]
        full_refresh: bool,
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long, value_name = "JSON")]
        vars: Option<String>,
    },
}

fn parse_vars(text: Option<&str>) -> anyhow::Result<Map<String, Value>> {
    let Some(text) = text else {
        return Ok(Map::new());
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => bail!("--vars must be a JSON object, like '{{\"key\": \"value\"}}'"),
        Err(err) => bail!("--vars is not valid JSON: {err}"),
    }
}

async fn open(config: &Config) -> anyhow::Result<Transformations> {
    let engine = Arc::new(open_engine(config).await?);
    Ok(Transformations::new(engine))
}

fn load(
    transformations: &Transformations,
    args: &ProjectArgs,
    threads: usize,
) -> anyhow::Result<LoadedProject> {
    let vars = parse_vars(args.vars.as_deref())?;
    Ok(transformations.load(&args.project_dir, vars, threads)?)
}

fn stamp() -> String {
    chrono::Local::now().format("%H:%M:%S").to_string()
}

/// `1 of 12 OK created sql table model gold.customers ...... [SELECT 100 in 0.12s]`.
fn line(index: usize, total: usize, text: &str, status: &str) -> String {
    let head = format!("{index} of {total} {text} ");
    let width = 72usize.saturating_sub(head.chars().count());
    format!("{}  {head}{} [{status}]", stamp(), ".".repeat(width.max(3)))
}

fn finished_text(description: &str, result: &NodeResult) -> (String, String) {
    let seconds = format!("{:.2}s", result.execution_time);
    let is_test = description.starts_with("test ");
    let name = description.strip_prefix("test ").unwrap_or(description);
    let failures = result.failures.unwrap_or(0);
    match result.status.as_str() {
        "success" if description.starts_with("seed ") => (
            format!("OK loaded {description}"),
            format!("{} in {seconds}", result.message.as_deref().unwrap_or("OK")),
        ),
        "success" => (
            format!("OK created {description}"),
            format!("{} in {seconds}", result.message.as_deref().unwrap_or("OK")),
        ),
        "pass" => (format!("PASS {name}"), format!("PASS in {seconds}")),
        "warn" => (
            format!("WARN {failures} {name}"),
            format!("WARN {failures} in {seconds}"),
        ),
        "fail" => (
            format!("FAIL {failures} {name}"),
            format!("FAIL {failures} in {seconds}"),
        ),
        "skipped" if is_test => (format!("SKIP {description}"), "SKIP".to_string()),
        "skipped" => (
            format!("SKIP relation {}", relation_of(description)),
            "SKIP".to_string(),
        ),
        _ if is_test => (format!("ERROR {name}"), format!("ERROR in {seconds}")),
        _ => (
            format!("ERROR creating {description}"),
            format!("ERROR in {seconds}"),
        ),
    }
}

fn relation_of(description: &str) -> &str {
    description.rsplit(' ').next().unwrap_or(description)
}

pub(crate) async fn run_command(
    config: &Config,
    command: RunCommand,
    args: RunArgs,
) -> anyhow::Result<()> {
    let clock = Instant::now();
    let transformations = open(config).await?;
    println!(
        "{}  Running with polder={}",
        stamp(),
        env!("CARGO_PKG_VERSION")
    );
    let loaded = load(&transformations, &args.project, args.threads)?;
    println!("{}  Found {}", stamp(), loaded.project.summary());
    println!("{}", stamp());
    let options = RunOptions {
        command,
        select: split_selectors(&args.project.select),
        exclude: split_selectors(&args.project.exclude),
        full_refresh: args.full_refresh,
        threads: args.threads,
        fail_fast: args.fail_fast,
    };
    let on_progress: Arc<dyn Fn(Progress) + Send + Sync> = Arc::new(|progress| {
        let text = match progress {
            Progress::Started {
                index,
                total,
                description,
            } => line(index, total, &format!("START {description}"), "RUN"),
            Progress::Finished {
                index,
                total,
                description,
                result,
            } => {
                let (text, status) = finished_text(&description, &result);
                line(index, total, &text, &status)
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    });
    let outcome = transformations
        .execute(
            &loaded,
            &options,
            &cli_actor(),
            &polder_transform::new_run_id(),
            on_progress,
        )
        .await?;
    let report = &outcome.report;
    println!("{}", stamp());
    println!(
        "{}  Finished running {} node(s) in {:.2}s.",
        stamp(),
        report.results.len(),
        clock.elapsed().as_secs_f64()
    );
    let counts = report.counts();
    let problems: Vec<&NodeResult> = report
        .results
        .iter()
        .filter(|r| matches!(r.status.as_str(), "error" | "fail" | "warn"))
        .collect();
    println!("{}", stamp());
    if report.succeeded() && counts["WARN"] == 0 {
        println!("{}  Completed successfully", stamp());
    } else {
        println!(
            "{}  Completed with {} error(s) and {} warning(s):",
            stamp(),
            counts["ERROR"],
            counts["WARN"]
        );
        for result in problems {
            println!("{}", stamp());
            let what = match result.status.as_str() {
                "warn" => "Warning in",
                "fail" => "Failure in",
                _ => "Error in",
            };
            let node = loaded.project.nodes.get(&result.unique_id);
            let path = node
                .map(|n| n.original_file_path.as_str())
                .unwrap_or_default();
            let name = node.map(|n| n.name.as_str()).unwrap_or(&result.unique_id);
            println!("{}  {what} {name} ({path})", stamp());
            for message_line in result.message.as_deref().unwrap_or_default().lines() {
                println!("{}    {message_line}", stamp());
            }
        }
    }
    println!("{}", stamp());
    println!(
        "{}  Done. PASS={} WARN={} ERROR={} SKIP={} TOTAL={}",
        stamp(),
        counts["PASS"],
        counts["WARN"],
        counts["ERROR"],
        counts["SKIP"],
        counts["TOTAL"]
    );
    if !report.succeeded() {
        std::io::stdout().flush().ok();
        std::process::exit(1);
    }
    Ok(())
}

/// `-s "a b"` and `-s a -s b` both select a and b (a space is dbt's union).
fn split_selectors(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split_whitespace())
        .map(str::to_string)
        .collect()
}

pub(crate) async fn compile(config: &Config, args: ProjectArgs) -> anyhow::Result<()> {
    let transformations = open(config).await?;
    let loaded = load(&transformations, &args, 1)?;
    let compiled = transformations
        .compile(
            &loaded,
            &split_selectors(&args.select),
            &split_selectors(&args.exclude),
        )
        .await?;
    let single = compiled.len() == 1;
    for (id, node) in &compiled {
        if single {
            println!("{}", node.sql);
        } else {
            println!("{}  compiled {id}", stamp());
        }
    }
    if !single {
        println!(
            "{}  Compiled {} node(s) into {}",
            stamp(),
            compiled.len(),
            loaded.project.target_path.join("compiled").display()
        );
    }
    Ok(())
}

pub(crate) async fn ls(config: &Config, args: LsArgs) -> anyhow::Result<()> {
    let transformations = open(config).await?;
    let loaded = load(&transformations, &args.project, 1)?;
    let mut types = Vec::new();
    for name in &args.resource_types {
        types.push(match name.as_str() {
            "model" => ResourceType::Model,
            "seed" => ResourceType::Seed,
            "test" | "data_test" => ResourceType::Test,
            "source" => ResourceType::Source,
            "exposure" => ResourceType::Exposure,
            other => {
                bail!("--resource-type '{other}' is not model, seed, test, source or exposure")
            }
        });
    }
    if types.is_empty() {
        types = vec![
            ResourceType::Model,
            ResourceType::Seed,
            ResourceType::Test,
            ResourceType::Source,
            ResourceType::Exposure,
        ];
    }
    let ids = transformations.list(
        &loaded,
        &split_selectors(&args.project.select),
        &split_selectors(&args.project.exclude),
        &types,
    )?;
    for id in ids {
        if args.unique_id {
            println!("{id}");
        } else {
            println!("{}", loaded.project.ls_name(&id));
        }
    }
    Ok(())
}

pub(crate) async fn docs(config: &Config, action: DocsAction) -> anyhow::Result<()> {
    let transformations = open(config).await?;
    let (args, port) = match &action {
        DocsAction::Generate { project } => (project, None),
        DocsAction::Serve { project, port } => (project, Some(*port)),
    };
    let loaded = load(&transformations, args, 1)?;
    let index = transformations.docs(&loaded).await?;
    println!("{}  Catalog written to {}", stamp(), index.display());
    let Some(port) = port else {
        return Ok(());
    };
    let dir = index
        .parent()
        .context("the site has no folder")?
        .to_path_buf();
    println!(
        "{}  Serving docs at http://127.0.0.1:{port}/ (Ctrl+C to stop)",
        stamp()
    );
    polder_server::serve_static_dir(&dir, ("127.0.0.1", port)).await?;
    Ok(())
}

pub(crate) async fn source(config: &Config, action: SourceAction) -> anyhow::Result<()> {
    let SourceAction::Freshness { project } = action;
    let transformations = open(config).await?;
    let loaded = load(&transformations, &project, 1)?;
    let results = transformations
        .freshness(
            &loaded,
            &split_selectors(&project.select),
            &split_selectors(&project.exclude),
        )
        .await?;
    let total = results.len();
    if total == 0 {
        println!(
            "{}  No source has a loaded_at_field and a freshness rule to check.",
            stamp()
        );
    }
    let mut failed = false;
    for (i, result) in results.iter().enumerate() {
        let word = match result.status.as_str() {
            "pass" => "PASS",
            "warn" => "WARN",
            "error" => "ERROR STALE",
            _ => "ERROR",
        };
        failed |= result.status != "pass" && result.status != "warn";
        let age = result
            .age_seconds
            .map(|a| format!(", loaded {} ago", human_age(a)))
            .unwrap_or_default();
        println!(
            "{}",
            line(
                i + 1,
                total,
                &format!("{word} freshness of {}{age}", result.name),
                &format!("{word} in {:.2}s", result.execution_time)
            )
        );
        if let Some(message) = &result.message {
            println!("{}    {message}", stamp());
        }
    }
    println!(
        "{}  Done. {} source table(s) checked, written to {}",
        stamp(),
        total,
        loaded.project.target_path.join("sources.json").display()
    );
    if failed {
        std::io::stdout().flush().ok();
        std::process::exit(1);
    }
    Ok(())
}

fn human_age(seconds: f64) -> String {
    let seconds = seconds.max(0.0) as u64;
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

pub(crate) async fn project(config: &Config, action: ProjectAction) -> anyhow::Result<()> {
    let transformations = open(config).await?;
    match action {
        ProjectAction::List => {
            println!("{:<24} {:<18} {:<8} root", "name", "schedule", "run");
            for project in transformations.projects().await? {
                let run: polder_transform::ScheduledRun =
                    serde_json::from_str(&project.schedule_run).unwrap_or_default();
                let schedule = if project.schedule.is_empty() {
                    "manual".to_string()
                } else {
                    project.schedule.clone()
                };
                println!(
                    "{:<24} {:<18} {:<8} {}",
                    project.name,
                    schedule,
                    run.command.name(),
                    project.root
                );
            }
        }
        ProjectAction::Runs { name, limit, json } => {
            let runs = transformations.runs(Some(&name), limit).await?;
            if json {
                let values: Vec<Value> = runs
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "id": r.id, "command": r.command, "trigger": r.trigger, "status": r.status,
                            "started_at": r.started_at, "finished_at": r.finished_at,
                            "summary": serde_json::from_str::<Value>(&r.summary).unwrap_or(Value::Null),
                            "error": r.error,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&values)?);
                return Ok(());
            }
            println!(
                "{:<36} {:<6} {:<10} {:<19} {:>9}  summary",
                "id", "cmd", "status", "started", "seconds"
            );
            for run in runs {
                let started = chrono::DateTime::from_timestamp_millis(run.started_at)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default();
                let seconds = run
                    .finished_at
                    .map(|f| format!("{:.2}", (f - run.started_at) as f64 / 1000.0))
                    .unwrap_or_else(|| "-".to_string());
                let summary = if run.error.is_empty() {
                    run.summary.clone()
                } else {
                    run.error.clone()
                };
                println!(
                    "{:<36} {:<6} {:<10} {:<19} {:>9}  {summary}",
                    run.id, run.command, run.status, started, seconds
                );
            }
        }
        ProjectAction::Schedule {
            name,
            cron,
            none,
            command,
            select,
            exclude,
            full_refresh,
            threads,
            vars,
        } => {
            let command = match command.as_str() {
                "build" => RunCommand::Build,
                "run" => RunCommand::Run,
                "test" => RunCommand::Test,
                "seed" => RunCommand::Seed,
                other => bail!("--command '{other}' is not build, run, test or seed"),
            };
            let run = polder_transform::ScheduledRun {
                command,
                select: split_selectors(&select),
                exclude: split_selectors(&exclude),
                full_refresh,
                vars: parse_vars(vars.as_deref())?,
                threads,
                fail_fast: false,
            };
            let schedule = if none { None } else { cron.as_deref() };
            transformations.set_schedule(&name, schedule, &run).await?;
            match schedule {
                Some(cron) => println!(
                    "project '{name}' runs `{}` on '{cron}' (UTC) in `polder serve`",
                    command.name()
                ),
                None => println!("project '{name}' runs only when asked"),
            }
        }
    }
    Ok(())
}
