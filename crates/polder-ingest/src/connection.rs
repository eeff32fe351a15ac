//! What a connection is: a source (type + configuration + credentials), the streams selected
//! from it with a sync mode each, an optional cron schedule and the run options. Credentials
//! are sealed in the catalog's secret vault and the stored configuration holds only
//! `secret:<name>` references to them, so nothing shows a credential back.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{IngestError, Result};

/// The kinds of source a connection reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceType {
    Postgres,
    Mysql,
    Files,
    Http,
    Airbyte,
}

impl SourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Postgres => "postgres",
            SourceType::Mysql => "mysql",
            SourceType::Files => "files",
            SourceType::Http => "http",
            SourceType::Airbyte => "airbyte",
        }
    }

    pub fn parse(text: &str) -> Result<SourceType> {
        match text.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Ok(SourceType::Postgres),
            "mysql" | "mariadb" => Ok(SourceType::Mysql),
            "files" | "file" => Ok(SourceType::Files),
            "http" | "http_api" | "api" => Ok(SourceType::Http),
            "airbyte" => Ok(SourceType::Airbyte),
            other => Err(IngestError::Config(format!(
                "unknown source type '{other}': use postgres, mysql, files, http or airbyte"
            ))),
        }
    }
}

impl fmt::Display for SourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Airbyte's sync modes, by their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Replace the table with everything the source has.
    #[default]
    FullRefreshOverwrite,
    /// Append everything the source has (a new copy per run).
    FullRefreshAppend,
    /// Append what is new since the last run, by a cursor.
    IncrementalAppend,
    /// Append what is new and keep only the latest version of each primary key (MERGE).
    IncrementalAppendDeduped,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::FullRefreshOverwrite => "full_refresh_overwrite",
            SyncMode::FullRefreshAppend => "full_refresh_append",
            SyncMode::IncrementalAppend => "incremental_append",
            SyncMode::IncrementalAppendDeduped => "incremental_append_deduped",
        }
    }

    pub fn parse(text: &str) -> Result<SyncMode> {
        serde_json::from_value(Value::String(text.to_string())).map_err(|_| {
            IngestError::Config(format!(
                "unknown sync mode '{text}': use full_refresh_overwrite, full_refresh_append, incremental_append or incremental_append_deduped"
            ))
        })
    }

    pub fn is_incremental(self) -> bool {
        matches!(
            self,
            SyncMode::IncrementalAppend | SyncMode::IncrementalAppendDeduped
        )
    }
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One stream selected from the source, and how it syncs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    /// The source's name for it: a table (`orders` or `schema.orders`), an Airbyte stream,
    /// or the name given to a file or API source's records.
    pub name: String,
    #[serde(default)]
    pub sync_mode: SyncMode,
    /// The column whose growth marks new records (incremental modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_field: Option<String>,
    /// The columns that identify a record (deduped mode); the source's own key by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primary_key: Vec<String>,
}

/// How runs behave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncOptions {
    /// Malformed records a stream may reject before its sync fails.
    pub max_rejects: u64,
    /// Attempts after a failed run whose cause may pass (unreachable source, say).
    pub retries: u32,
    /// Seconds before the first retry; doubled for each further one.
    pub retry_backoff_secs: u64,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            max_rejects: 1000,
            retries: 2,
            retry_backoff_secs: 30,
        }
    }
}

/// A connection as users write it (CLI flags, a JSON file, the REST API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    pub name: String,
    pub source: SourceType,
    #[serde(default = "empty_object")]
    pub config: Value,
    #[serde(default)]
    pub streams: Vec<StreamSpec>,
    /// A cron expression (5 fields, UTC; 6 with seconds), or none for manual runs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default)]
    pub options: SyncOptions,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// A stored connection, as shown: credentials appear only as references.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionView {
    #[serde(flatten)]
    pub spec: ConnectionSpec,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Connection names become table names (`bronze.<connection>_<stream>`): lowercase letters,
/// digits and `_`, starting with a letter, at most 48 characters.
pub fn check_connection_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(IngestError::Config(format!(
            "'{name}' is not a connection name: use lowercase letters, digits and '_', starting with a letter (at most 48)"
        )))
    }
}

/// The bronze table a stream lands in: `<connection>_<stream>`, with the stream's name
/// lowercased and anything but letters and digits turned into `_`.
pub fn stream_table(connection: &str, stream: &str) -> polder_core::TableName {
    let mut suffix = String::with_capacity(stream.len());
    for c in stream.chars() {
        if c.is_ascii_alphanumeric() {
            suffix.push(c.to_ascii_lowercase());
        } else if !suffix.ends_with('_') {
            suffix.push('_');
        }
    }
    let suffix = suffix.trim_matches('_');
    let suffix = if suffix.is_empty() { "stream" } else { suffix };
    polder_core::TableName {
        schema: "bronze".to_string(),
        table: format!("{connection}_{suffix}"),
    }
}

/// The Delta application id under which a stream's syncs are committed.
pub fn stream_app_id(connection: &str, stream: &str) -> String {
    format!("polder.sync/{connection}/{stream}")
}

impl ConnectionSpec {
    /// Checks what can be checked without the source: names, modes, schedule.
    pub fn validate(&self) -> Result<()> {
        check_connection_name(&self.name)?;
        if !self.config.is_object() {
            return Err(IngestError::Config(
                "config must be a JSON object".to_string(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for stream in &self.streams {
            if stream.name.trim().is_empty() {
                return Err(IngestError::Config(
                    "a stream has an empty name".to_string(),
                ));
            }
            let table = stream_table(&self.name, &stream.name);
            if !seen.insert(table.table.clone()) {
                return Err(IngestError::Config(format!(
                    "streams '{}' and another one would both load into {table}",
                    stream.name
                )));
            }
        }
        if let Some(schedule) = &self.schedule {
            polder_core::schedule::parse_schedule(schedule)
                .map_err(|e| IngestError::Config(e.to_string()))?;
        }
        Ok(())
    }
}

/// Where a source type keeps credentials: JSON pointers into its configuration. A pointer
/// ending in `/*` covers every member of that object (HTTP headers).
pub(crate) fn secret_pointers(source: SourceType, spec_secrets: &[String]) -> Vec<String> {
    match source {
        SourceType::Postgres | SourceType::Mysql => vec!["/password".to_string()],
        SourceType::Http => vec!["/headers/*".to_string(), "/params/*".to_string()],
        SourceType::Files => Vec::new(),
        SourceType::Airbyte => spec_secrets
            .iter()
            .map(|pointer| format!("/config{pointer}"))
            .collect(),
    }
}

/// The concrete pointers of `pointers` present in `config` with a string value.
pub(crate) fn present_secret_fields(config: &Value, pointers: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for pointer in pointers {
        if let Some(parent) = pointer.strip_suffix("/*") {
            if let Some(Value::Object(members)) = config.pointer(parent) {
                for (key, value) in members {
                    if value.is_string() {
                        found.push(format!("{parent}/{}", escape_pointer(key)));
                    }
                }
            }
        } else if config.pointer(pointer).is_some_and(Value::is_string) {
            found.push(pointer.clone());
        }
    }
    found
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// True for values that point at a credential rather than holding it.
pub(crate) fn is_reference(value: &str) -> bool {
    value.starts_with("secret:") || value.starts_with("env:") || value.starts_with("file:")
}

/// The vault name of a connection's credential at `pointer`.
pub(crate) fn secret_name(connection: &str, pointer: &str) -> String {
    let path: String = pointer
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '.'
            }
        })
        .collect();
    let mut name = format!("connection.{connection}.{path}");
    name.truncate(100);
    name
}

/// Replaces literal credentials in `config` by `secret:` references, returning the values
/// to seal under those names.
pub(crate) fn extract_secrets(
    connection: &str,
    config: &mut Value,
    pointers: &[String],
) -> BTreeMap<String, String> {
    let mut sealed = BTreeMap::new();
    for pointer in present_secret_fields(config, pointers) {
        let Some(slot) = config.pointer_mut(&pointer) else {
            continue;
        };
        let Some(value) = slot.as_str() else { continue };
        if value.is_empty() || is_reference(value) {
            continue;
        }
        let name = secret_name(connection, &pointer);
        sealed.insert(name.clone(), value.to_string());
        *slot = Value::String(format!("secret:{name}"));
    }
    sealed
}

/// Keeps stored references where an edit left a credential shown back unchanged (`********`
/// or the reference itself), so a round trip through `show` and `edit` loses nothing.
pub(crate) fn keep_unchanged_secrets(old: &Value, new: &mut Value, pointers: &[String]) {
    for pointer in present_secret_fields(new, pointers) {
        let unchanged = new
            .pointer(&pointer)
            .and_then(Value::as_str)
            .is_some_and(|v| v == "********");
        if unchanged
            && let (Some(previous), Some(slot)) = (old.pointer(&pointer), new.pointer_mut(&pointer))
        {
            *slot = previous.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stream_tables_are_safe_names() {
        assert_eq!(
            stream_table("shop", "public.Orders").to_string(),
            "bronze.shop_public_orders"
        );
        assert_eq!(stream_table("shop", "users").table, "shop_users");
        assert_eq!(stream_table("shop", "--").table, "shop_stream");
    }

    #[test]
    fn connection_names_are_checked() {
        assert!(check_connection_name("shop_1").is_ok());
        for bad in ["", "Shop", "1shop", "shop-db", "a b", &"x".repeat(49)] {
            assert!(check_connection_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_become_references() {
        let mut config =
            json!({"host": "db", "password": "hunter2", "headers": {"Authorization": "Bearer t"}});
        let pointers = secret_pointers(SourceType::Postgres, &[]);
        let sealed = extract_secrets("shop", &mut config, &pointers);
        assert_eq!(
            sealed.get("connection.shop.password").map(String::as_str),
            Some("hunter2")
        );
        assert_eq!(config["password"], "secret:connection.shop.password");
        assert_eq!(
            config["headers"]["Authorization"], "Bearer t",
            "not a postgres secret field"
        );

        let mut http = json!({"url": "http://x", "headers": {"Authorization": "Bearer t", "X-Env": "env:TOKEN"}});
        let sealed = extract_secrets("api", &mut http, &secret_pointers(SourceType::Http, &[]));
        assert_eq!(sealed.len(), 1, "references are not sealed again");
        assert_eq!(
            http["headers"]["Authorization"],
            "secret:connection.api.headers.Authorization"
        );
        assert_eq!(http["headers"]["X-Env"], "env:TOKEN");
    }

    #[test]
    fn masked_values_keep_the_stored_reference() {
        let old = json!({"password": "secret:connection.shop.password"});
        let mut new = json!({"password": "********", "host": "db2"});
        keep_unchanged_secrets(&old, &mut new, &["/password".to_string()]);
        assert_eq!(new["password"], "secret:connection.shop.password");
    }

    #[test]
    fn modes_parse_by_airbyte_names() {
        assert_eq!(
            SyncMode::parse("incremental_append_deduped").unwrap(),
            SyncMode::IncrementalAppendDeduped
        );
        assert!(SyncMode::parse("upsert").is_err());
    }
}
