//! Configuration with one precedence everywhere: flag > `POLDER_*` environment > `polder.toml`
//! > built-in default (DESIGN.md "Configuration").
//!
//! Every setting is declared once in [`SETTINGS`] with its key, environment variables and
//! default; layers are flat `key -> value` maps, so `polder config show` can say where each
//! effective value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{ErrorKind, HasErrorKind};
use crate::secret::{Secret, mask_url_password};

/// A configuration that cannot be loaded or understood.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file exists but cannot be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML.
    #[error("configuration file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    /// A key in the file (or a flag) names no setting.
    #[error("unknown setting '{key}' in {origin}; known settings: {known}")]
    UnknownKey {
        key: String,
        origin: String,
        known: String,
    },
    /// A setting has a value of the wrong shape.
    #[error("invalid value for '{key}' (from {origin}): {message}")]
    InvalidValue {
        key: String,
        origin: String,
        message: String,
    },
}

impl HasErrorKind for ConfigError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingSource {
    Flag,
    Env(String),
    File(PathBuf),
    Default,
}

impl fmt::Display for SettingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingSource::Flag => f.write_str("flag"),
            SettingSource::Env(name) => write!(f, "env {name}"),
            SettingSource::File(path) => write!(f, "file {}", path.display()),
            SettingSource::Default => f.write_str("default"),
        }
    }
}

/// How a value is shown by `config show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sensitivity {
    Plain,
    /// The whole value is secret.
    Secret,
    /// A URL whose password part is secret.
    Url,
}

struct Setting {
    key: &'static str,
    env: &'static [&'static str],
    sensitivity: Sensitivity,
    help: &'static str,
}

/// Every setting Polder knows. Defaults that depend on other settings live in [`default_for`].
const SETTINGS: &[Setting] = &[
    Setting {
        key: "data_dir",
        env: &["POLDER_DATA_DIR"],
        sensitivity: Sensitivity::Plain,
        help: "directory for the embedded catalog and lake",
    },
    Setting {
        key: "catalog",
        env: &["POLDER_CATALOG"],
        sensitivity: Sensitivity::Url,
        help: "catalog store: sqlite://path or postgres://user:password@host/db",
    },
    Setting {
        key: "lake",
        env: &["POLDER_LAKE"],
        sensitivity: Sensitivity::Plain,
        help: "lake root: file:///path or s3://bucket/prefix",
    },
    Setting {
        key: "http.listen",
        env: &["POLDER_HTTP_LISTEN"],
        sensitivity: Sensitivity::Plain,
        help: "address of the HTTP listener (web UI, REST API, metrics)",
    },
    Setting {
        key: "pg.listen",
        env: &["POLDER_PG_LISTEN"],
        sensitivity: Sensitivity::Plain,
        help: "address of the PostgreSQL wire listener",
    },
    Setting {
        key: "flight.listen",
        env: &["POLDER_FLIGHT_LISTEN"],
        sensitivity: Sensitivity::Plain,
        help: "address of the Arrow Flight SQL listener",
    },
    Setting {
        key: "s3.endpoint",
        env: &[
            "POLDER_S3_ENDPOINT",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL",
        ],
        sensitivity: Sensitivity::Plain,
        help: "S3-compatible endpoint URL (empty for AWS)",
    },
    Setting {
        key: "s3.region",
        env: &["POLDER_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"],
        sensitivity: Sensitivity::Plain,
        help: "S3 region",
    },
    Setting {
        key: "s3.path_style",
        env: &["POLDER_S3_PATH_STYLE"],
        sensitivity: Sensitivity::Plain,
        help: "address buckets by path (MinIO and most S3-compatible servers) instead of by host",
    },
    Setting {
        key: "s3.allow_http",
        env: &["POLDER_S3_ALLOW_HTTP"],
        sensitivity: Sensitivity::Plain,
        help: "allow a plain-HTTP endpoint",
    },
    Setting {
        key: "s3.access_key_id",
        env: &["AWS_ACCESS_KEY_ID"],
        sensitivity: Sensitivity::Secret,
        help: "S3 access key id",
    },
    Setting {
        key: "s3.secret_access_key",
        env: &["AWS_SECRET_ACCESS_KEY"],
        sensitivity: Sensitivity::Secret,
        help: "S3 secret access key",
    },
    Setting {
        key: "s3.session_token",
        env: &["AWS_SESSION_TOKEN"],
        sensitivity: Sensitivity::Secret,
        help: "S3 session token",
    },
    Setting {
        key: "auth.enabled",
        env: &["POLDER_AUTH_ENABLED"],
        sensitivity: Sensitivity::Plain,
        help: "require credentials on every listener (off only on a loopback address)",
    },
    Setting {
        key: "auth.admin_password",
        env: &["POLDER_ADMIN_PASSWORD"],
        sensitivity: Sensitivity::Secret,
        help: "password of the admin user created at the first start (generated if empty)",
    },
    Setting {
        key: "auth.protect_metrics",
        env: &["POLDER_AUTH_PROTECT_METRICS"],
        sensitivity: Sensitivity::Plain,
        help: "require credentials for /metrics too",
    },
    Setting {
        key: "tls.cert",
        env: &["POLDER_TLS_CERT"],
        sensitivity: Sensitivity::Plain,
        help: "PEM certificate chain: every listener serves TLS with it (with tls.key)",
    },
    Setting {
        key: "tls.key",
        env: &["POLDER_TLS_KEY"],
        sensitivity: Sensitivity::Plain,
        help: "PEM private key of tls.cert",
    },
    Setting {
        key: "tls.self_signed",
        env: &["POLDER_TLS_SELF_SIGNED"],
        sensitivity: Sensitivity::Plain,
        help: "serve TLS with a self-signed certificate kept in <data_dir>/tls",
    },
    Setting {
        key: "secrets.key",
        env: &["POLDER_SECRET_KEY"],
        sensitivity: Sensitivity::Secret,
        help: "key that encrypts stored secrets (32 bytes, base64); else secrets.key_file",
    },
    Setting {
        key: "secrets.key_file",
        env: &["POLDER_SECRET_KEY_FILE"],
        sensitivity: Sensitivity::Plain,
        help: "file holding the secrets key (created on first use when missing)",
    },
    Setting {
        key: "cluster.lease_ttl",
        env: &["POLDER_LEASE_TTL"],
        sensitivity: Sensitivity::Plain,
        help: "seconds a coordinator holds the scheduler lease without renewing it (failover time)",
    },
    Setting {
        key: "shutdown.timeout",
        env: &["POLDER_SHUTDOWN_TIMEOUT"],
        sensitivity: Sensitivity::Plain,
        help: "seconds SIGTERM waits for running statements and commits before exiting",
    },
    Setting {
        key: "log.level",
        env: &["POLDER_LOG_LEVEL"],
        sensitivity: Sensitivity::Plain,
        help: "log filter, for example info or polder=debug",
    },
    Setting {
        key: "log.format",
        env: &["POLDER_LOG_FORMAT"],
        sensitivity: Sensitivity::Plain,
        help: "log format: text or json",
    },
];

fn default_for(key: &str, data_dir: &str) -> String {
    let data_dir = data_dir.trim_end_matches('/');
    match key {
        "data_dir" => "./polder-data".to_string(),
        "catalog" => format!("sqlite://{data_dir}/catalog.db"),
        "lake" => format!("file://{data_dir}/lake"),
        "http.listen" => "127.0.0.1:9047".to_string(),
        "pg.listen" => "127.0.0.1:31010".to_string(),
        "flight.listen" => "127.0.0.1:32010".to_string(),
        "s3.region" => "us-east-1".to_string(),
        "s3.path_style" | "s3.allow_http" => "false".to_string(),
        "auth.enabled" => "true".to_string(),
        "auth.protect_metrics" => "false".to_string(),
        "tls.self_signed" => "false".to_string(),
        "secrets.key_file" => format!("{data_dir}/secret.key"),
        "cluster.lease_ttl" => "15".to_string(),
        "shutdown.timeout" => "30".to_string(),
        "log.level" => "info".to_string(),
        "log.format" => "text".to_string(),
        _ => String::new(),
    }
}

fn known_keys() -> String {
    SETTINGS
        .iter()
        .map(|s| s.key)
        .collect::<Vec<_>>()
        .join(", ")
}

fn find_setting(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// One layer of settings (flags, or a file), as flat dotted keys.
#[derive(Debug, Clone, Default)]
pub struct ConfigLayer {
    values: BTreeMap<String, String>,
}

impl ConfigLayer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` if `value` is present; unknown keys are an error.
    pub fn set(&mut self, key: &str, value: Option<String>) -> Result<(), ConfigError> {
        if find_setting(key).is_none() {
            return Err(ConfigError::UnknownKey {
                key: key.to_string(),
                origin: "flags".to_string(),
                known: known_keys(),
            });
        }
        if let Some(value) = value {
            self.values.insert(key.to_string(), value);
        }
        Ok(())
    }

    /// Reads a `polder.toml` file; nested tables become dotted keys (`[s3] region` is `s3.region`).
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, path)
    }

    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.message().to_string(),
            })?;
        let mut layer = ConfigLayer::new();
        flatten_toml("", &table, path, &mut layer.values)?;
        Ok(layer)
    }
}

fn flatten_toml(
    prefix: &str,
    table: &toml::Table,
    path: &Path,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let text = match value {
            toml::Value::Table(inner) => {
                flatten_toml(&key, inner, path, out)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(ConfigError::InvalidValue {
                    key,
                    origin: path.display().to_string(),
                    message: format!("expected a string, number or boolean, got {other}"),
                });
            }
        };
        if find_setting(&key).is_none() {
            return Err(ConfigError::UnknownKey {
                key,
                origin: path.display().to_string(),
                known: known_keys(),
            });
        }
        out.insert(key, text);
    }
    Ok(())
}

/// Connection settings for S3-compatible object storage.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    pub allow_http: bool,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
}

/// Authentication settings.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub enabled: bool,
    /// The first admin's password; generated and printed once when absent.
    pub admin_password: Option<Secret>,
    pub protect_metrics: bool,
}

/// Where the listeners' TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsConfig {
    /// Plain connections.
    Off,
    /// A certificate chain and its key, as PEM files.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate generated once into `<data_dir>/tls`.
    SelfSigned,
}

/// Where the key that encrypts stored secrets comes from.
#[derive(Debug, Clone)]
pub enum SecretKeySource {
    /// The key itself (`POLDER_SECRET_KEY`).
    Value(Secret),
    /// A file holding it, created on first use.
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The effective configuration of one Polder process.
#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Catalog store URL; may hold a password, so print it with [`mask_url_password`].
    pub catalog_url: Secret,
    pub lake_url: String,
    pub http_listen: SocketAddr,
    pub pg_listen: SocketAddr,
    pub flight_listen: SocketAddr,
    pub s3: S3Config,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub secret_key: SecretKeySource,
    /// How long the scheduler lease lasts unrenewed: the longest scheduled work waits for a
    /// coordinator that died.
    pub lease_ttl: Duration,
    /// How long SIGTERM waits for running statements before the process exits.
    pub shutdown_timeout: Duration,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Every setting with its effective value (secrets masked) and source, for `config show`.
    pub effective: Vec<EffectiveSetting>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for setting in &self.effective {
            map.entry(&setting.key, &setting.shown_value);
        }
        map.finish()
    }
}

/// One line of `polder config show`.
#[derive(Debug, Clone)]
pub struct EffectiveSetting {
    pub key: &'static str,
    pub shown_value: String,
    pub source: SettingSource,
    pub help: &'static str,
}

impl Config {
    /// Resolves the configuration from flags, the process environment and an optional file.
    ///
    /// `config_file` is the `--config` path; without it `./polder.toml` is read when present.
    pub fn load(flags: &ConfigLayer, config_file: Option<&Path>) -> Result<Config, ConfigError> {
        let file = match config_file {
            Some(path) => Some((path.to_path_buf(), ConfigLayer::from_toml_file(path)?)),
            None => {
                let default_path = PathBuf::from("polder.toml");
                if default_path.is_file() {
                    Some((
                        default_path.clone(),
                        ConfigLayer::from_toml_file(&default_path)?,
                    ))
                } else {
                    None
                }
            }
        };
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::resolve(flags, &env, file.as_ref().map(|(p, l)| (p.as_path(), l)))
    }

    /// Resolves from explicit layers (used by [`Config::load`] and by tests).
    pub fn resolve(
        flags: &ConfigLayer,
        env: &BTreeMap<String, String>,
        file: Option<(&Path, &ConfigLayer)>,
    ) -> Result<Config, ConfigError> {
        let lookup = |key: &str| -> Option<(String, SettingSource)> {
            if let Some(value) = flags.values.get(key) {
                return Some((value.clone(), SettingSource::Flag));
            }
            let setting = find_setting(key).expect("lookup of a declared setting");
            for name in setting.env {
                if let Some(value) = env.get(*name).filter(|v| !v.is_empty()) {
                    return Some((value.clone(), SettingSource::Env(name.to_string())));
                }
            }
            if let Some((path, layer)) = file
                && let Some(value) = layer.values.get(key)
            {
                return Some((value.clone(), SettingSource::File(path.to_path_buf())));
            }
            None
        };

        let (data_dir, data_dir_source) =
            lookup("data_dir").unwrap_or((default_for("data_dir", ""), SettingSource::Default));
        let mut values: BTreeMap<&'static str, (String, SettingSource)> = BTreeMap::new();
        for setting in SETTINGS {
            let resolved = if setting.key == "data_dir" {
                (data_dir.clone(), data_dir_source.clone())
            } else {
                lookup(setting.key).unwrap_or_else(|| {
                    (default_for(setting.key, &data_dir), SettingSource::Default)
                })
            };
            values.insert(setting.key, resolved);
        }

        let get = |key: &str| values[key].0.clone();
        let invalid = |key: &str, message: String| ConfigError::InvalidValue {
            key: key.to_string(),
            origin: values[key].1.to_string(),
            message,
        };
        let parse_addr = |key: &str| -> Result<SocketAddr, ConfigError> {
            get(key).parse().map_err(|e| {
                invalid(
                    key,
                    format!("expected host:port such as 127.0.0.1:9047 ({e})"),
                )
            })
        };
        let parse_seconds = |key: &str| -> Result<Duration, ConfigError> {
            let text = get(key);
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|seconds| seconds.is_finite() && *seconds > 0.0 && *seconds <= 86_400.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    invalid(
                        key,
                        format!("expected a number of seconds such as 15, got '{text}'"),
                    )
                })
        };
        let parse_bool = |key: &str| -> Result<bool, ConfigError> {
            match get(key).to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" | "" => Ok(false),
                other => Err(invalid(
                    key,
                    format!("expected true or false, got '{other}'"),
                )),
            }
        };
        let optional = |key: &str| Some(get(key)).filter(|v| !v.is_empty());
        // Secret settings may name where the value is (`env:NAME`, `file:PATH`) instead.
        let secret = |key: &str| -> Result<Option<Secret>, ConfigError> {
            match optional(key) {
                None => Ok(None),
                Some(value) => {
                    crate::secret::resolve_reference(&value, |name| env.get(name).cloned())
                        .map(|v| Some(Secret::new(v)))
                        .map_err(|message| invalid(key, message))
                }
            }
        };

        let catalog_url = secret("catalog")?
            .map(|s| s.expose().to_string())
            .unwrap_or_default();
        if !(catalog_url.starts_with("sqlite:")
            || catalog_url.starts_with("postgres://")
            || catalog_url.starts_with("postgresql://"))
        {
            // A value read through a reference may be a bare password put in the wrong file:
            // name the reference, never the value.
            let shown = if crate::secret::is_reference(&get("catalog")) {
                format!("the value of {}", get("catalog"))
            } else {
                format!("'{}'", mask_url_password(&catalog_url))
            };
            return Err(invalid(
                "catalog",
                format!("{shown} is neither sqlite://path nor postgres://..."),
            ));
        }
        let lake_url = get("lake");
        if !(lake_url.starts_with("file://")
            || lake_url.starts_with("s3://")
            || lake_url.starts_with("memory://"))
        {
            return Err(invalid(
                "lake",
                format!("'{lake_url}' is neither file:///path nor s3://bucket/prefix"),
            ));
        }
        let log_format = match get("log.format").as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log.format",
                    format!("expected text or json, got '{other}'"),
                ));
            }
        };
        let endpoint = optional("s3.endpoint");
        let allow_http = parse_bool("s3.allow_http")?
            || endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"));

        let tls = match (
            optional("tls.cert"),
            optional("tls.key"),
            parse_bool("tls.self_signed")?,
        ) {
            (Some(_), _, true) | (_, Some(_), true) => {
                return Err(invalid(
                    "tls.self_signed",
                    "choose either a certificate (tls.cert and tls.key) or a self-signed one"
                        .to_string(),
                ));
            }
            (Some(cert), Some(key), false) => TlsConfig::Files {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            },
            (Some(_), None, false) => {
                return Err(invalid("tls.cert", "tls.key is needed too".to_string()));
            }
            (None, Some(_), false) => {
                return Err(invalid("tls.key", "tls.cert is needed too".to_string()));
            }
            (None, None, true) => TlsConfig::SelfSigned,
            (None, None, false) => TlsConfig::Off,
        };
        let secret_key = match secret("secrets.key")? {
            Some(key) => SecretKeySource::Value(key),
            None => SecretKeySource::File(PathBuf::from(get("secrets.key_file"))),
        };

        let effective = SETTINGS
            .iter()
            .map(|setting| {
                let (value, source) = values[setting.key].clone();
                let shown_value = match setting.sensitivity {
                    Sensitivity::Plain => value,
                    // A reference says where the secret is, not what it is.
                    _ if crate::secret::is_reference(&value) => value,
                    Sensitivity::Url => mask_url_password(&value),
                    Sensitivity::Secret if value.is_empty() => value,
                    Sensitivity::Secret => "****".to_string(),
                };
                EffectiveSetting {
                    key: setting.key,
                    shown_value,
                    source,
                    help: setting.help,
                }
            })
            .collect();

        Ok(Config {
            data_dir: PathBuf::from(&data_dir),
            catalog_url: Secret::new(catalog_url),
            lake_url,
            http_listen: parse_addr("http.listen")?,
            pg_listen: parse_addr("pg.listen")?,
            flight_listen: parse_addr("flight.listen")?,
            s3: S3Config {
                endpoint,
                region: get("s3.region"),
                path_style: parse_bool("s3.path_style")?,
                allow_http,
                access_key_id: secret("s3.access_key_id")?,
                secret_access_key: secret("s3.secret_access_key")?,
                session_token: secret("s3.session_token")?,
            },
            auth: AuthConfig {
                enabled: parse_bool("auth.enabled")?,
                admin_password: secret("auth.admin_password")?,
                protect_metrics: parse_bool("auth.protect_metrics")?,
            },
            tls,
            secret_key,
            lease_ttl: parse_seconds("cluster.lease_ttl")?,
            shutdown_timeout: parse_seconds("shutdown.timeout")?,
            log_level: get("log.level"),
            log_format,
            effective,
        })
    }

    /// The catalog URL with its password masked, for messages.
    pub fn catalog_url_masked(&self) -> String {
        mask_url_password(self.catalog_url.expose())
    }

    /// `polder config show` as aligned text: key, value, source.
    pub fn render(&self) -> String {
        let key_width = self
            .effective
            .iter()
            .map(|s| s.key.len())
            .max()
            .unwrap_or(0);
        let value_width = self
            .effective
            .iter()
            .map(|s| s.shown_value.len())
            .max()
            .unwrap_or(0)
            .min(60);
        let mut out = String::new();
        for setting in &self.effective {
            out.push_str(&format!(
                "{:key_width$}  {:value_width$}  # {}; {}\n",
                setting.key, setting.shown_value, setting.source, setting.help
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_nothing() {
        let config = Config::resolve(&ConfigLayer::new(), &env(&[]), None).unwrap();
        assert_eq!(
            config.catalog_url.expose(),
            "sqlite://./polder-data/catalog.db"
        );
        assert_eq!(config.lake_url, "file://./polder-data/lake");
        assert_eq!(config.http_listen.port(), 9047);
        assert_eq!(config.pg_listen.port(), 31010);
        assert_eq!(config.flight_listen.port(), 32010);
        assert!(config.http_listen.ip().is_loopback());
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let file = ConfigLayer::from_toml_str(
            "lake = \"file:///from-file\"\ncatalog = \"sqlite:///file.db\"\n[http]\nlisten = \"127.0.0.1:1000\"\n[pg]\nlisten = \"127.0.0.1:2000\"",
            Path::new("polder.toml"),
        )
        .unwrap();
        let environment = env(&[
            ("POLDER_CATALOG", "sqlite:///env.db"),
            ("POLDER_HTTP_LISTEN", "127.0.0.1:1001"),
        ]);
        let mut flags = ConfigLayer::new();
        flags
            .set("http.listen", Some("127.0.0.1:1002".into()))
            .unwrap();
        let config = Config::resolve(
            &flags,
            &environment,
            Some((Path::new("polder.toml"), &file)),
        )
        .unwrap();
        assert_eq!(config.http_listen.port(), 1002, "flag wins");
        assert_eq!(
            config.catalog_url.expose(),
            "sqlite:///env.db",
            "env wins over file"
        );
        assert_eq!(
            config.lake_url, "file:///from-file",
            "file wins over default"
        );
        assert_eq!(config.pg_listen.port(), 2000);
        assert_eq!(config.flight_listen.port(), 32010, "default");
        let http = config
            .effective
            .iter()
            .find(|s| s.key == "http.listen")
            .unwrap();
        assert_eq!(http.source, SettingSource::Flag);
    }

    #[test]
    fn data_dir_moves_the_embedded_defaults() {
        let mut flags = ConfigLayer::new();
        flags.set("data_dir", Some("/srv/polder".into())).unwrap();
        let config = Config::resolve(&flags, &env(&[]), None).unwrap();
        assert_eq!(
            config.catalog_url.expose(),
            "sqlite:///srv/polder/catalog.db"
        );
        assert_eq!(config.lake_url, "file:///srv/polder/lake");
    }

    #[test]
    fn secrets_are_masked_in_show_and_debug() {
        let environment = env(&[
            ("POLDER_CATALOG", "postgres://polder:topsecret@db/catalog"),
            ("AWS_SECRET_ACCESS_KEY", "aws-very-secret"),
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ]);
        let config = Config::resolve(&ConfigLayer::new(), &environment, None).unwrap();
        let shown = config.render();
        let debugged = format!("{config:?}");
        for text in [&shown, &debugged] {
            assert!(!text.contains("topsecret"), "{text}");
            assert!(!text.contains("aws-very-secret"), "{text}");
            assert!(!text.contains("AKIAEXAMPLE"), "{text}");
        }
        assert!(shown.contains("postgres://polder:****@db/catalog"));
        assert_eq!(
            config.s3.secret_access_key.as_ref().unwrap().expose(),
            "aws-very-secret"
        );
    }

    #[test]
    fn bad_values_name_the_setting_and_its_source() {
        let environment = env(&[("POLDER_PG_LISTEN", "not-an-address")]);
        let err = Config::resolve(&ConfigLayer::new(), &environment, None).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("pg.listen"), "{message}");
        assert!(message.contains("POLDER_PG_LISTEN"), "{message}");

        let err = ConfigLayer::from_toml_str("[s3]\nendpoit = \"x\"", Path::new("polder.toml"))
            .unwrap_err();
        assert!(err.to_string().contains("unknown setting 's3.endpoit'"));

        let err = ConfigLayer::from_toml_str("lake = [", Path::new("polder.toml")).unwrap_err();
        assert!(err.to_string().contains("not valid TOML"));
    }

    #[test]
    fn http_endpoint_allows_http() {
        let environment = env(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")]);
        let config = Config::resolve(&ConfigLayer::new(), &environment, None).unwrap();
        assert!(config.s3.allow_http);
        assert_eq!(config.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    }
}
