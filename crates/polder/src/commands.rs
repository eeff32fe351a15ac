//! What each subcommand does, in terms of the library crates.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::ProgressBar;
use polder_core::{Config, TableName};
use polder_engine::{Engine, StatementOutput};
use polder_ingest::{FileFormat, ImportMode, ImportRequest, Progress};
use polder_server::{Authenticator, ServerOptions};

use crate::output::{OutputKind, render_batches, render_command};
use crate::{ImportArgs, client, demo};

pub(crate) async fn open_engine(config: &Config) -> anyhow::Result<Engine> {
    let engine = Engine::open(config.catalog_url.expose(), &config.lake_url, &config.s3).await?;
    Ok(engine)
}

pub async fn serve(config: &Config, with_demo: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let engine = Arc::new(open_engine(config).await?);
    if with_demo {
        demo::ensure_loaded(&engine)
            .await
            .context("loading the demo dataset")?;
        demo::ensure_dashboard(&engine)
            .await
            .context("saving the demo dashboard")?;
    }
    let upload_dir = config.data_dir.join("uploads");
    let auth = if config.auth.enabled {
        let auth = Authenticator::new(engine.catalog_store().clone());
        let configured = config.auth.admin_password.as_ref().map(|p| p.expose());
        if let Some(generated) = auth.bootstrap_admin(configured).await? {
            // Printed once on the terminal, never logged: set POLDER_ADMIN_PASSWORD to choose it.
            eprintln!(
                "created user 'admin' with password: {generated}\n  (shown only now; change it with `polder user passwd admin`)"
            );
        }
        Some(auth)
    } else {
        for (name, address) in [
            ("http.listen", config.http_listen),
            ("pg.listen", config.pg_listen),
            ("flight.listen", config.flight_listen),
        ] {
            if !address.ip().is_loopback() {
                bail!(
                    "{name} is {address}, which is reachable from other machines, but authentication is off; \
                     turn it on (auth.enabled = true) or listen on 127.0.0.1"
                );
            }
        }
        tracing::warn!("authentication is off: every client has full rights (loopback only)");
        None
    };
    let tls = match &config.tls {
        polder_core::TlsConfig::Off => None,
        polder_core::TlsConfig::Files { cert, key } => {
            Some(polder_server::TlsIdentity::from_pem_files(cert, key)?)
        }
        polder_core::TlsConfig::SelfSigned => {
            let (identity, cert_path) =
                polder_server::TlsIdentity::self_signed(&config.data_dir.join("tls"), &[])?;
            eprintln!(
                "TLS with a self-signed certificate: {} (give it to clients to verify the server: sslrootcert=, --cacert, tls_root_certs)",
                cert_path.display()
            );
            Some(identity)
        }
    };
    let secrets = open_vault(config, engine.catalog_store().clone())?;
    let tls_on = tls.is_some();
    let mut server = polder_server::start(
        engine,
        ServerOptions {
            http: config.http_listen,
            pg: config.pg_listen,
            flight: config.flight_listen,
            upload_dir,
            auth,
            protect_metrics: config.auth.protect_metrics,
            tls,
            secrets,
            run_schedules: true,
            lease_ttl: config.lease_ttl,
        },
    )
    .await?;
    tracing::info!(
        http = %server.http,
        postgres = %server.pg,
        flight_sql = %server.flight,
        catalog = %config.catalog_url_masked(),
        lake = %config.lake_url,
        startup_ms = started.elapsed().as_millis() as u64,
        "polder is ready"
    );
    let (http_scheme, pg_ssl, flight_scheme) = if tls_on {
        ("https", " \"sslmode=require\"", "grpc+tls")
    } else {
        ("http", "", "grpc")
    };
    eprintln!(
        "polder is ready in {} ms\n  web/API     {http_scheme}://{}\n  PostgreSQL  psql -h {} -p {} -U admin{pg_ssl}\n  Flight SQL  {flight_scheme}://{}",
        started.elapsed().as_millis(),
        server.http,
        server.pg.ip(),
        server.pg.port(),
        server.flight
    );
    let failed = tokio::select! {
        result = server.wait() => Some(result),
        () = shutdown_signal() => None,
    };
    if let Some(result) = failed {
        return result.map_err(Into::into);
    }
    tracing::info!(
        timeout_secs = config.shutdown_timeout.as_secs_f64(),
        "shutting down: draining running statements"
    );
    server.shutdown(config.shutdown_timeout).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

pub async fn sql(
    config: &Config,
    query: &str,
    format: &str,
    server: Option<&str>,
) -> anyhow::Result<()> {
    let query = if query == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
        text
    } else {
        query.to_string()
    };
    let kind = OutputKind::parse(format);
    let mut stdout = std::io::stdout().lock();
    if let Some(server) = server {
        let result = client::sql(server, &query).await?;
        match result {
            client::SqlResult::Rows(batches) => render_batches(&mut stdout, kind, &batches)?,
            client::SqlResult::Command { tag, rows } => render_command(&mut stdout, &tag, rows)?,
        }
        return Ok(());
    }
    let engine = open_engine(config).await?;
    let outputs = engine.execute_sql(&query).await?;
    let count = outputs.len();
    for (index, output) in outputs.into_iter().enumerate() {
        match output {
            StatementOutput::Command(outcome) => {
                render_command(&mut stdout, &outcome.tag, outcome.rows)?
            }
            StatementOutput::Query(frame) => {
                let batches = frame
                    .collect()
                    .await
                    .map_err(polder_engine::EngineError::from)?;
                render_batches(&mut stdout, kind, &batches)?;
            }
        }
        if index + 1 < count && kind == OutputKind::Table {
            writeln!(stdout)?;
        }
    }
    Ok(())
}

/// Draws the import's progress: bytes of source read out of the total.
struct BarProgress {
    bar: ProgressBar,
}

impl BarProgress {
    fn new() -> Self {
        let bar = crate::output::bytes_bar();
        bar.enable_steady_tick(Duration::from_millis(120));
        BarProgress { bar }
    }
}

impl Progress for BarProgress {
    fn start(&self, files: usize, total_bytes: Option<u64>) {
        self.bar.set_length(total_bytes.unwrap_or(0));
        self.bar.set_message(format!(
            "reading {files} file{}",
            if files == 1 { "" } else { "s" }
        ));
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
        if self.bar.length().is_some_and(|l| self.bar.position() >= l) {
            self.bar.set_message("committing");
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

pub async fn import(config: &Config, args: &ImportArgs) -> anyhow::Result<()> {
    let table = TableName::parse(&args.table)?;
    let format = args
        .format
        .as_deref()
        .map(|f| f.parse::<FileFormat>())
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let mode: ImportMode = args.mode.parse().map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let report = if let Some(server) = &args.server {
        client::import(
            server,
            &args.source,
            &table,
            args.format.as_deref(),
            &args.mode,
        )
        .await?
    } else {
        if args.delimiter.is_some_and(|d| !d.is_ascii()) {
            bail!("the delimiter must be one ASCII character");
        }
        let engine = open_engine(config).await?;
        let mut request = ImportRequest::new(args.source.clone(), table);
        request.format = format;
        request.mode = mode;
        request.delimiter = args.delimiter.map(|d| d as u8);
        request.has_header = !args.no_header;
        let progress: Arc<dyn Progress> = Arc::new(BarProgress::new());
        polder_ingest::import_files(&engine, &request, progress).await?
    };
    let rows = report
        .rows
        .map(|r| format!("{r} rows"))
        .unwrap_or_else(|| "rows".to_string());
    println!(
        "{} {} into {} from {} file{} ({} bytes) in {:.1}s, table version {}",
        if report.created {
            "created with"
        } else {
            "loaded"
        },
        rows,
        report.table,
        report.files,
        if report.files == 1 { "" } else { "s" },
        report.bytes,
        started.elapsed().as_secs_f64(),
        report.version
    );
    Ok(())
}

/// The stored secrets, sealed with the configured key (created on first use when it comes
/// from a key file).
pub(crate) fn open_vault(
    config: &Config,
    store: polder_catalog::CatalogStore,
) -> anyhow::Result<polder_catalog::SecretVault> {
    let key = match &config.secret_key {
        polder_core::SecretKeySource::Value(text) => {
            polder_core::SecretKey::from_text(text.expose())
                .context("secrets.key (POLDER_SECRET_KEY)")?
        }
        polder_core::SecretKeySource::File(path) => polder_core::SecretKey::load_or_create(path)?,
    };
    Ok(polder_catalog::SecretVault::new(store, key))
}

pub async fn secret(config: &Config, action: crate::SecretAction) -> anyhow::Result<()> {
    use crate::SecretAction;
    let store = polder_catalog::CatalogStore::open(config.catalog_url.expose()).await?;
    let vault = open_vault(config, store.clone())?;
    let (what, result): (String, anyhow::Result<()>) = match action {
        SecretAction::Set { name, description } => {
            let value = match std::env::var("POLDER_SECRET_VALUE") {
                Ok(value) if !value.is_empty() => value,
                _ => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("reading the secret from standard input")?;
                    line.trim_end_matches(['\n', '\r']).to_string()
                }
            };
            let result = vault
                .put(
                    &name,
                    &polder_core::Secret::new(value),
                    &description,
                    &cli_actor(),
                )
                .await;
            if let Ok(replaced) = &result {
                println!(
                    "{} secret '{name}'",
                    if *replaced { "replaced" } else { "stored" }
                );
            }
            (
                format!("set secret {name}"),
                result.map(|_| ()).map_err(Into::into),
            )
        }
        SecretAction::List => {
            println!("{:<32} {:<20} description", "name", "updated");
            for info in vault.list().await? {
                let updated = chrono::DateTime::from_timestamp_millis(info.updated_at)
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default();
                println!("{:<32} {:<20} {}", info.name, updated, info.description);
            }
            return Ok(());
        }
        SecretAction::Delete { name } => {
            let result = match vault.delete(&name).await {
                Ok(true) => {
                    println!("deleted secret '{name}'");
                    Ok(())
                }
                Ok(false) => Err(anyhow::anyhow!("secret '{name}' does not exist")),
                Err(err) => Err(err.into()),
            };
            (format!("delete secret {name}"), result)
        }
    };
    let mut entry = polder_catalog::AuditRecord::new(&cli_actor(), "cli", "secret", &what);
    if let Err(err) = &result {
        entry = entry.failed(&err.to_string());
    }
    store.append_audit(&entry).await?;
    result
}

async fn open_authenticator(config: &Config) -> anyhow::Result<Authenticator> {
    let store = polder_catalog::CatalogStore::open(config.catalog_url.expose()).await?;
    Ok(Authenticator::new(store))
}

/// Who changes users and tokens from the CLI, as the audit log names them.
pub(crate) fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "local".to_string())
    )
}

pub async fn user(config: &Config, action: crate::UserAction) -> anyhow::Result<()> {
    use crate::UserAction;
    let auth = open_authenticator(config).await?;
    let (what, result) = match action {
        UserAction::Add {
            name,
            role,
            password,
        } => {
            let role: polder_core::Role = role.parse().map_err(anyhow::Error::msg)?;
            let (password, generated) = match password {
                Some(password) => (password, false),
                None => (polder_server::auth::generate_password(), true),
            };
            let result = auth.add_user(&name, role, &password).await;
            if result.is_ok() {
                if generated {
                    println!("created user '{name}' ({role}) with password: {password}");
                } else {
                    println!("created user '{name}' ({role})");
                }
            }
            (format!("add user {name} ({role})"), result)
        }
        UserAction::List => {
            let users = auth.store().list_users().await?;
            let attributes = auth.store().user_attributes().await?;
            println!("{:<24} {:<10} {:<9} attributes", "name", "role", "state");
            for user in users {
                let state = if user.disabled { "disabled" } else { "active" };
                let described: Vec<String> = attributes
                    .get(&user.name)
                    .into_iter()
                    .flatten()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect();
                println!(
                    "{:<24} {:<10} {:<9} {}",
                    user.name,
                    user.role,
                    state,
                    described.join(" ")
                );
            }
            return Ok(());
        }
        UserAction::Passwd { name, password } => {
            let Some(password) = password else {
                bail!("give the new password with --password or POLDER_NEW_PASSWORD");
            };
            let result = auth.set_password(&name, &password).await;
            (format!("set password of {name}"), result)
        }
        UserAction::Disable { name } => {
            let result = auth.set_disabled(&name, true).await;
            (format!("disable user {name}"), result)
        }
        UserAction::Enable { name } => {
            let result = auth.set_disabled(&name, false).await;
            (format!("enable user {name}"), result)
        }
        UserAction::Role { name, role } => {
            let role: polder_core::Role = role.parse().map_err(anyhow::Error::msg)?;
            let result = auth.set_role(&name, role).await;
            (format!("set role of {name} to {role}"), result)
        }
        UserAction::Delete { name } => {
            let result = auth.delete_user(&name).await;
            (format!("delete user {name}"), result)
        }
        UserAction::Attr {
            name,
            values,
            unset,
        } => {
            let mut changes = std::collections::BTreeMap::new();
            for pair in &values {
                let Some((key, value)) = pair.split_once('=') else {
                    bail!("expected key=value, got '{pair}'");
                };
                changes.insert(key.trim().to_string(), Some(value.to_string()));
            }
            for key in unset {
                changes.insert(key, None);
            }
            if let Some(bad) = changes
                .keys()
                .find(|key| !polder_server::auth::is_attribute_name(key))
            {
                bail!("'{bad}' is not an attribute name: use letters, digits and '_'");
            }
            let result = auth
                .store()
                .set_user_attributes(&name, &changes)
                .await
                .map_err(polder_server::AuthError::from);
            if result.is_ok() {
                println!("updated attributes of '{name}'");
            }
            let described: Vec<String> = changes
                .iter()
                .map(|(key, value)| match value {
                    Some(value) => format!("{key}={value}"),
                    None => format!("-{key}"),
                })
                .collect();
            (
                format!("set attributes of {name}: {}", described.join(", ")),
                result,
            )
        }
    };
    auth.audit_change(&cli_actor(), "cli", "user", &what, result.as_ref().err())
        .await;
    result?;
    Ok(())
}

pub async fn token(config: &Config, action: crate::TokenAction) -> anyhow::Result<()> {
    use crate::TokenAction;
    let auth = open_authenticator(config).await?;
    match action {
        TokenAction::Create { user, label, days } => {
            let ttl = days.map(|d| Duration::from_secs(d * 86_400));
            let issued = auth.issue_token(&user, "personal", &label, ttl).await?;
            let what = format!("create token {} for {user}", issued.id);
            auth.audit_change(&cli_actor(), "cli", "user", &what, None)
                .await;
            println!("{}", issued.token);
            eprintln!(
                "token id {} for '{user}' (shown only now; on the PostgreSQL wire log in as user {} with the part after it as password)",
                issued.id, issued.id
            );
        }
        TokenAction::List => {
            println!(
                "{:<14} {:<20} {:<9} {:<24} state",
                "id", "user", "kind", "label"
            );
            for token in auth.store().list_tokens(None).await? {
                let state = if token.revoked {
                    "revoked"
                } else if token
                    .expires_at
                    .is_some_and(|at| at <= chrono::Utc::now().timestamp_millis())
                {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<14} {:<20} {:<9} {:<24} {state}",
                    token.id, token.user_name, token.kind, token.label
                );
            }
        }
        TokenAction::Revoke { id } => {
            if !auth.revoke_token(&id).await? {
                bail!("no token '{id}'");
            }
            auth.audit_change(
                &cli_actor(),
                "cli",
                "user",
                &format!("revoke token {id}"),
                None,
            )
            .await;
            println!("revoked {id}");
        }
    }
    Ok(())
}
