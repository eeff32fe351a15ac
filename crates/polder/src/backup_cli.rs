//! `polder backup ...` and `polder restore`: backups of the catalog and the lake this
//! configuration points at, to a local directory or S3 (see docs/backup.md).

use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};
use indicatif::{HumanBytes, ProgressBar};
use polder_backup::{
    BackupOptions, Lake, Manifest, Progress, Repository, Retention, Which, apply_retention,
    create_backup, parse_as_of, restore_backup, verify_backups,
};
use polder_catalog::CatalogStore;
use polder_core::Config;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct BackupArgs {
    #[command(subcommand)]
    action: Option<BackupAction>,
    #[command(flatten)]
    create: CreateArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Backup repository: file:///path or s3://bucket/prefix.
    #[arg(long, env = "POLDER_BACKUP_URL", value_name = "URL")]
    to: Option<String>,
    /// After the backup, delete older ones beyond this: <N>d (days), <N>h (hours) or <N>
    /// (a number of backups). The newest is always kept.
    #[arg(long, value_name = "RULE")]
    keep: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BackupAction {
    /// Back up the catalog and every table at its current version (the default action).
    Create(CreateArgs),
    /// List the backups in a repository.
    List {
        /// Backup repository: file:///path or s3://bucket/prefix.
        #[arg(long, env = "POLDER_BACKUP_URL", value_name = "URL")]
        from: Option<String>,
        /// One JSON object per backup.
        #[arg(long)]
        json: bool,
    },
    /// Read every file of a backup again and compare its size and SHA-256 with the manifest.
    Verify {
        /// Backup repository: file:///path or s3://bucket/prefix.
        #[arg(long, env = "POLDER_BACKUP_URL", value_name = "URL")]
        from: Option<String>,
        /// The backup to verify (default: the newest).
        #[arg(long, value_name = "ID", conflicts_with = "all")]
        backup: Option<String>,
        /// Verify every backup.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// Backup repository: file:///path or s3://bucket/prefix.
    #[arg(long, env = "POLDER_BACKUP_URL", value_name = "URL")]
    from: Option<String>,
    /// The backup to restore (default: the newest).
    #[arg(long, value_name = "ID", conflicts_with = "as_of")]
    backup: Option<String>,
    /// Restore the newest backup made at or before this time: RFC 3339 or
    /// YYYY-MM-DD[ HH:MM[:SS]] (UTC).
    #[arg(long, value_name = "TIME")]
    as_of: Option<String>,
}

/// Draws bytes moved on a terminal (nothing when standard error is not one).
struct Bar {
    bar: ProgressBar,
}

impl Bar {
    fn new() -> Bar {
        Bar {
            bar: crate::output::bytes_bar(),
        }
    }
}

impl Progress for Bar {
    fn start(&self, action: &str, files: usize, bytes: u64) {
        self.bar.set_length(bytes);
        self.bar.set_position(0);
        self.bar.set_message(format!(
            "{action} {files} file{}",
            if files == 1 { "" } else { "s" }
        ));
        self.bar.enable_steady_tick(Duration::from_millis(120));
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn repository_url(url: Option<String>, flag: &str) -> anyhow::Result<String> {
    match url {
        Some(url) if !url.is_empty() => Ok(url),
        _ => bail!(
            "no backup repository: pass {flag} file:///path or s3://bucket/prefix, or set POLDER_BACKUP_URL"
        ),
    }
}

fn open_lake(config: &Config) -> anyhow::Result<Lake> {
    Ok(Lake::open(&config.lake_url, &config.s3)?)
}

fn rate(bytes: u64, seconds: f64) -> String {
    format!(
        "{}/s",
        HumanBytes((bytes as f64 / seconds.max(0.001)) as u64)
    )
}

pub(crate) async fn backup(config: &Config, args: BackupArgs) -> anyhow::Result<()> {
    match args.action {
        None => create(config, args.create).await,
        Some(BackupAction::Create(create_args)) => create(config, create_args).await,
        Some(BackupAction::List { from, json }) => list(config, from, json).await,
        Some(BackupAction::Verify { from, backup, all }) => {
            verify(config, from, backup.as_deref(), all).await
        }
    }
}

async fn create(config: &Config, args: CreateArgs) -> anyhow::Result<()> {
    let url = repository_url(args.to, "--to")?;
    // A bad rule is refused before anything is copied.
    let keep: Option<Retention> = args.keep.as_deref().map(str::parse).transpose()?;
    let lake = open_lake(config)?;
    let repository = Repository::open(&url, &lake)?;
    let catalog = CatalogStore::open(config.catalog_url.expose()).await?;
    let bar = Bar::new();
    let manifest = create_backup(
        &catalog,
        &lake,
        &repository,
        &BackupOptions::default(),
        &bar,
    )
    .await?;
    let totals = &manifest.totals;
    println!(
        "backup {} of {} tables: {} files ({}); copied {} files ({}), reused {} files ({}), in {:.1} s ({}) to {}",
        manifest.id,
        totals.tables,
        totals.files,
        HumanBytes(totals.bytes),
        totals.files_copied,
        HumanBytes(totals.bytes_copied),
        totals.files_reused,
        HumanBytes(totals.bytes_reused),
        totals.seconds,
        rate(totals.bytes_copied, totals.seconds),
        repository.url()
    );
    if let Some(keep) = keep {
        let report = apply_retention(&repository, keep, chrono::Utc::now()).await?;
        println!(
            "retention (keep {keep}): deleted {} backup{}{}, {} files ({}); {} kept",
            report.removed.len(),
            if report.removed.len() == 1 { "" } else { "s" },
            if report.removed.is_empty() {
                String::new()
            } else {
                format!(" ({})", report.removed.join(", "))
            },
            report.files_deleted,
            HumanBytes(report.bytes_deleted),
            report.kept
        );
    }
    Ok(())
}

fn summary(manifest: &Manifest) -> serde_json::Value {
    serde_json::json!({
        "id": manifest.id,
        "created_at": manifest.created_at.to_rfc3339(),
        "polder_version": manifest.polder_version,
        "lake_root": manifest.lake_root,
        "tables": manifest.totals.tables,
        "files": manifest.totals.files,
        "bytes": manifest.totals.bytes,
        "files_copied": manifest.totals.files_copied,
        "bytes_copied": manifest.totals.bytes_copied,
        "files_reused": manifest.totals.files_reused,
        "seconds": manifest.totals.seconds,
    })
}

async fn list(config: &Config, from: Option<String>, json: bool) -> anyhow::Result<()> {
    let url = repository_url(from, "--from")?;
    let lake = open_lake(config)?;
    let repository = Repository::open(&url, &lake)?;
    let manifests = repository.manifests().await?;
    if json {
        for manifest in &manifests {
            println!("{}", summary(manifest));
        }
        return Ok(());
    }
    if manifests.is_empty() {
        println!("no backups at {}", repository.url());
        return Ok(());
    }
    println!(
        "{:<22} {:<20} {:>6} {:>8} {:>11} {:>11}",
        "id", "created (UTC)", "tables", "files", "size", "copied"
    );
    for manifest in manifests.iter().rev() {
        println!(
            "{:<22} {:<20} {:>6} {:>8} {:>11} {:>11}",
            manifest.id,
            manifest.created_at.format("%Y-%m-%d %H:%M:%S"),
            manifest.totals.tables,
            manifest.totals.files,
            HumanBytes(manifest.totals.bytes).to_string(),
            HumanBytes(manifest.totals.bytes_copied).to_string()
        );
    }
    Ok(())
}

async fn verify(
    config: &Config,
    from: Option<String>,
    backup: Option<&str>,
    all: bool,
) -> anyhow::Result<()> {
    let url = repository_url(from, "--from")?;
    let lake = open_lake(config)?;
    let repository = Repository::open(&url, &lake)?;
    let which = match (backup, all) {
        (Some(id), _) => Which::One(id),
        (None, true) => Which::All,
        (None, false) => Which::Newest,
    };
    let bar = Bar::new();
    let started = std::time::Instant::now();
    let report = verify_backups(&repository, which, &BackupOptions::default(), &bar).await?;
    let seconds = started.elapsed().as_secs_f64();
    for problem in &report.problems {
        println!(
            "bad {}: {} (needed by {})",
            problem.path,
            problem.message,
            problem.backups.join(", ")
        );
    }
    let what = if report.backups.len() == 1 {
        format!("backup {}", report.backups[0])
    } else {
        format!("{} backups", report.backups.len())
    };
    if !report.problems.is_empty() {
        bail!(
            "{what}: {} of {} files are damaged or missing",
            report.problems.len(),
            report.files
        );
    }
    println!(
        "verified {what}: {} files ({}) intact, in {seconds:.1} s ({})",
        report.files,
        HumanBytes(report.bytes),
        rate(report.bytes, seconds)
    );
    Ok(())
}

pub(crate) async fn restore(config: &Config, args: RestoreArgs) -> anyhow::Result<()> {
    let url = repository_url(args.from, "--from")?;
    let as_of = args.as_of.as_deref().map(parse_as_of).transpose()?;
    let lake = open_lake(config)?;
    let repository = Repository::open(&url, &lake)?;
    let catalog = CatalogStore::open(config.catalog_url.expose()).await?;
    let bar = Bar::new();
    let report = restore_backup(
        &catalog,
        &lake,
        &repository,
        args.backup.as_deref(),
        as_of,
        &BackupOptions::default(),
        &bar,
    )
    .await?;
    println!(
        "restored backup {} (made {}) of {} tables: {} files ({}) and {} catalog rows, in {:.1} s ({}), into catalog {} and lake {}",
        report.backup,
        report.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        report.tables,
        report.files,
        HumanBytes(report.bytes),
        report.catalog_rows,
        report.seconds,
        rate(report.bytes, report.seconds),
        config.catalog_url_masked(),
        lake.root()
    );
    if report.secrets > 0 {
        println!(
            "note: {} stored secret{} can only be opened with the secrets key of the backed-up deployment (secrets.key, POLDER_SECRET_KEY or its key file)",
            report.secrets,
            if report.secrets == 1 { "" } else { "s" }
        );
    }
    Ok(())
}
