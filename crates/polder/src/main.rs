//! `polder`: the command line. Parses flags, loads the configuration and hands over to the
//! crates that do the work; nothing else lives here.

mod backup_cli;
mod client;
mod commands;
mod demo;
mod ingest_cli;
mod output;
mod transform_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use polder_core::{Config, ConfigLayer, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "polder",
    version,
    about = "A data platform in one binary: Delta lake, SQL, PostgreSQL wire, Flight SQL"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalFlags,
    #[command(subcommand)]
    command: Command,
}

/// Settings every command accepts; each overrides `POLDER_*` variables and `polder.toml`.
#[derive(Debug, Args)]
struct GlobalFlags {
    /// Configuration file (default: ./polder.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of the embedded catalog and lake.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<String>,
    /// Catalog store: sqlite://path or postgres://user:password@host/db.
    #[arg(long, global = true, value_name = "URL")]
    catalog: Option<String>,
    /// Lake root: file:///path or s3://bucket/prefix.
    #[arg(long, global = true, value_name = "URL")]
    lake: Option<String>,
    /// S3-compatible endpoint for an s3:// lake.
    #[arg(long, global = true, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, global = true)]
    s3_region: Option<String>,
    /// Address buckets by path (MinIO and most S3-compatible servers).
    #[arg(long, global = true, value_name = "BOOL")]
    s3_path_style: Option<String>,
    /// Log filter (info, debug, polder=debug, ...).
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log format: text or json.
    #[arg(long, global = true)]
    log_format: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the HTTP, PostgreSQL-wire and Flight SQL listeners.
    Serve(ServeArgs),
    /// Run SQL, embedded on the data directory or through a running server.
    Sql(SqlArgs),
    /// Load CSV, JSON or Parquet files into a table (one Delta commit).
    Import(ImportArgs),
    /// Show configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Manage users (on the catalog directly: whoever runs this owns the data directory).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Manage personal access tokens for tools.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Manage stored secrets (source credentials), encrypted in the catalog.
    Secret {
        #[command(subcommand)]
        action: SecretAction,
    },
    /// Manage connections: sources whose streams sync into bronze tables.
    Connection {
        #[command(subcommand)]
        action: ingest_cli::ConnectionAction,
    },
    /// Run a connection's sync now, with a progress bar.
    Sync(ingest_cli::SyncArgs),
    /// List sync jobs (newest first), or show one.
    Jobs(ingest_cli::JobsArgs),
    /// dbt: seed, run and test the selected nodes of a project in DAG order.
    Build(transform_cli::RunArgs),
    /// dbt: build the selected models.
    Run(transform_cli::RunArgs),
    /// dbt: run the selected data tests.
    Test(transform_cli::RunArgs),
    /// dbt: load the selected seeds (CSV files) into tables.
    Seed(transform_cli::RunArgs),
    /// dbt: render the selected models and tests to SQL (target/compiled), running nothing.
    Compile(transform_cli::ProjectArgs),
    /// dbt: list the selected nodes of a project.
    Ls(transform_cli::LsArgs),
    /// Transformation projects known here and their schedules.
    Project {
        #[command(subcommand)]
        action: transform_cli::ProjectAction,
    },
    /// dbt: checks of a project's sources (`source freshness`).
    Source {
        #[command(subcommand)]
        action: transform_cli::SourceAction,
    },
    /// dbt: the project's documentation site (models, columns, tests, lineage).
    Docs {
        #[command(subcommand)]
        action: transform_cli::DocsAction,
    },
    /// Back up the catalog and every table (incremental) to a directory or S3; list and verify
    /// backups.
    Backup(backup_cli::BackupArgs),
    /// Restore a backup (the newest, or as of a time) into an empty catalog and lake.
    Restore(backup_cli::RestoreArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretAction {
    /// Store a secret (replacing one of the same name). The value is read from standard input
    /// (one line) or POLDER_SECRET_VALUE; it is never a flag, so it stays out of shell history.
    Set {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List secrets: names and descriptions, never values.
    List,
    /// Delete a secret.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum UserAction {
    /// Add a user; the password comes from --password, POLDER_NEW_PASSWORD or a prompt-free
    /// generated one that is printed once.
    Add {
        name: String,
        /// admin, engineer, analyst or viewer.
        #[arg(long, default_value = "analyst")]
        role: String,
        #[arg(long, env = "POLDER_NEW_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// List users with their roles.
    List,
    /// Set a user's password.
    Passwd {
        name: String,
        #[arg(long, env = "POLDER_NEW_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Disable a user (its logins and tokens stop working).
    Disable { name: String },
    /// Enable a disabled user.
    Enable { name: String },
    /// Change a user's role.
    Role { name: String, role: String },
    /// Set user attributes that row policies read (`region=EU`), or remove them (`--unset`).
    Attr {
        name: String,
        /// `key=value` pairs.
        values: Vec<String>,
        /// Attribute names to remove.
        #[arg(long)]
        unset: Vec<String>,
    },
    /// Delete a user with its tokens and grants.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenAction {
    /// Create a personal access token for a user; printed once.
    Create {
        user: String,
        #[arg(long, default_value = "")]
        label: String,
        /// Lifetime in days (default: until revoked).
        #[arg(long)]
        days: Option<u64>,
    },
    /// List tokens (ids, owners, expiry; never secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Print the effective configuration, where each value comes from, secrets masked.
    Show,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Load the demo dataset (generated, no download) into bronze, silver and gold.
    #[arg(long)]
    demo: bool,
    /// HTTP listener address.
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<String>,
    /// PostgreSQL wire listener address.
    #[arg(long, value_name = "ADDR")]
    pg_listen: Option<String>,
    /// Flight SQL listener address.
    #[arg(long, value_name = "ADDR")]
    flight_listen: Option<String>,
    /// Serve TLS on every listener with a self-signed certificate (generated once into
    /// <data_dir>/tls); for production, set tls.cert and tls.key.
    #[arg(long)]
    tls_self_signed: bool,
}

#[derive(Debug, Args)]
struct SqlArgs {
    /// The SQL to run (several statements separated by `;`); `-` reads standard input.
    query: String,
    /// Output format.
    #[arg(long, short, default_value = "table", value_parser = ["table", "csv", "json"])]
    format: String,
    /// Send the SQL to a running server (http://host:9047) instead of opening the data directory.
    #[arg(long, env = "POLDER_SERVER", value_name = "URL")]
    server: Option<String>,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// A file, a directory, a glob (quote it), s3://bucket/prefix or an http(s):// URL.
    source: String,
    /// Target table, `schema.table` (created when missing).
    #[arg(long, short)]
    table: String,
    /// File format (default: from the file name).
    #[arg(long, value_parser = ["csv", "json", "parquet"])]
    format: Option<String>,
    /// append (default), overwrite, or create (fail if the table exists).
    #[arg(long, default_value = "append", value_parser = ["append", "overwrite", "create"])]
    mode: String,
    /// CSV delimiter (one character).
    #[arg(long)]
    delimiter: Option<char>,
    /// CSV files have no header row.
    #[arg(long)]
    no_header: bool,
    /// Import through a running server (http://host:9047).
    #[arg(long, env = "POLDER_SERVER", value_name = "URL")]
    server: Option<String>,
}

impl GlobalFlags {
    fn layer(&self) -> Result<ConfigLayer, polder_core::ConfigError> {
        let mut layer = ConfigLayer::new();
        layer.set("data_dir", self.data_dir.clone())?;
        layer.set("catalog", self.catalog.clone())?;
        layer.set("lake", self.lake.clone())?;
        layer.set("s3.endpoint", self.s3_endpoint.clone())?;
        layer.set("s3.region", self.s3_region.clone())?;
        layer.set("s3.path_style", self.s3_path_style.clone())?;
        layer.set("log.level", self.log_level.clone())?;
        layer.set("log.format", self.log_format.clone())?;
        Ok(layer)
    }
}

/// A bare level (`info`, `debug`) applies to Polder's own crates, with the libraries it uses at
/// `warn` (their `info` lines are about internals); full directives are used as given.
fn log_directives(level: &str) -> String {
    let is_bare_level = matches!(level, "error" | "warn" | "info" | "debug" | "trace");
    if !is_bare_level {
        return level.to_string();
    }
    let crates = [
        "polder",
        "polder_core",
        "polder_catalog",
        "polder_lake",
        "polder_engine",
        "polder_ingest",
        "polder_transform",
        "polder_server",
        "polder_backup",
    ];
    let mut directives = vec!["warn".to_string()];
    directives.extend(crates.iter().map(|name| format!("{name}={level}")));
    directives.join(",")
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(log_directives(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut layer = cli.global.layer()?;
    if let Command::Serve(serve) = &cli.command {
        layer.set("http.listen", serve.http_listen.clone())?;
        layer.set("pg.listen", serve.pg_listen.clone())?;
        layer.set("flight.listen", serve.flight_listen.clone())?;
        if serve.tls_self_signed {
            layer.set("tls.self_signed", Some("true".to_string()))?;
        }
    }
    let config = Config::load(&layer, cli.global.config.as_deref())?;
    match cli.command {
        Command::Config {
            action: ConfigAction::Show,
        } => {
            print!("{}", config.render());
            Ok(())
        }
        Command::Serve(args) => {
            init_logging(&config);
            commands::serve(&config, args.demo).await
        }
        Command::Sql(args) => {
            init_logging_quiet(&config);
            commands::sql(&config, &args.query, &args.format, args.server.as_deref()).await
        }
        Command::Import(args) => {
            init_logging_quiet(&config);
            commands::import(&config, &args).await
        }
        Command::User { action } => {
            init_logging_quiet(&config);
            commands::user(&config, action).await
        }
        Command::Token { action } => {
            init_logging_quiet(&config);
            commands::token(&config, action).await
        }
        Command::Secret { action } => {
            init_logging_quiet(&config);
            commands::secret(&config, action).await
        }
        Command::Connection { action } => {
            init_logging_quiet(&config);
            ingest_cli::connection(&config, action).await
        }
        Command::Sync(args) => {
            init_logging_quiet(&config);
            ingest_cli::sync(&config, args).await
        }
        Command::Jobs(args) => {
            init_logging_quiet(&config);
            ingest_cli::jobs(&config, args).await
        }
        Command::Build(args) => {
            init_logging_quiet(&config);
            transform_cli::run_command(&config, polder_transform::Command::Build, args).await
        }
        Command::Run(args) => {
            init_logging_quiet(&config);
            transform_cli::run_command(&config, polder_transform::Command::Run, args).await
        }
        Command::Test(args) => {
            init_logging_quiet(&config);
            transform_cli::run_command(&config, polder_transform::Command::Test, args).await
        }
        Command::Seed(args) => {
            init_logging_quiet(&config);
            transform_cli::run_command(&config, polder_transform::Command::Seed, args).await
        }
        Command::Compile(args) => {
            init_logging_quiet(&config);
            transform_cli::compile(&config, args).await
        }
        Command::Ls(args) => {
            init_logging_quiet(&config);
            transform_cli::ls(&config, args).await
        }
        Command::Project { action } => {
            init_logging_quiet(&config);
            transform_cli::project(&config, action).await
        }
        Command::Source { action } => {
            init_logging_quiet(&config);
            transform_cli::source(&config, action).await
        }
        Command::Docs { action } => {
            init_logging_quiet(&config);
            transform_cli::docs(&config, action).await
        }
        Command::Backup(args) => {
            init_logging_quiet(&config);
            backup_cli::backup(&config, args).await
        }
        Command::Restore(args) => {
            init_logging_quiet(&config);
            backup_cli::restore(&config, args).await
        }
    }
}

/// Client commands print results on stdout; logs stay at warnings unless asked for.
fn init_logging_quiet(config: &Config) {
    let mut quiet = config.clone();
    if config
        .effective
        .iter()
        .any(|s| s.key == "log.level" && s.source == polder_core::SettingSource::Default)
    {
        quiet.log_level = "warn".to_string();
    }
    init_logging(&quiet);
}
