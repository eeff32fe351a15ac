//! Loading a dbt project: dbt_project.yml, config hierarchy, YAML properties, parse renders,
//! generic tests, schema/alias naming.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use md5::Digest as _;
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::error::{Result, TransformError};
use crate::jinja::{JinjaEnv, MacroDef, Mode, Recorder, Relation, RenderSpec, Resolver};

/// Where the project's relations live; from `polder transform --target` and defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// Target name (`polder`).
    pub name: String,
    /// Default schema of models (`public`).
    pub schema: String,
    /// Database (catalog) name (`polder`); SQL addresses relations as `schema.alias`.
    pub database: String,
    /// Parallel nodes the runner may run.
    pub threads: usize,
    /// Adapter type reported to Jinja (`target.type`) and artifacts.
    #[serde(rename = "type")]
    pub type_: String,
}

impl Default for Target {
    fn default() -> Self {
        Target {
            name: "polder".into(),
            schema: "public".into(),
            database: "polder".into(),
            threads: 4,
            type_: "polder".into(),
        }
    }
}

/// Options of a load: `--vars` and the target.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--vars`: override project vars.
    pub vars: Map<String, Json>,
    pub target: Target,
}

/// Kinds of graph members, serialized as dbt spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    Model,
    Seed,
    Test,
    Source,
    Exposure,
}

impl ResourceType {
    pub fn as_str(&self) -> &'static str {
        match self {
            ResourceType::Model => "model",
            ResourceType::Seed => "seed",
            ResourceType::Test => "test",
            ResourceType::Source => "source",
            ResourceType::Exposure => "exposure",
        }
    }

    pub fn parse(text: &str) -> Option<ResourceType> {
        Some(match text {
            "model" => ResourceType::Model,
            "seed" => ResourceType::Seed,
            "test" | "data_test" => ResourceType::Test,
            "source" => ResourceType::Source,
            "exposure" => ResourceType::Exposure,
            _ => return None,
        })
    }
}

/// A documented column of a model, seed or source table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ColumnInfo {
    pub name: String,
    pub description: String,
    pub data_type: Option<String>,
    pub meta: Map<String, Json>,
    pub tags: Vec<String>,
}

/// The effective configuration of a node after dbt's precedence was applied.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub materialized: String,
    pub schema: Option<String>,
    pub alias: Option<String>,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub unique_key: Vec<String>,
    pub incremental_strategy: Option<String>,
    pub on_schema_change: Option<String>,
    pub full_refresh: Option<bool>,
    /// `error` or `warn` (lowercase).
    pub severity: String,
    pub where_clause: Option<String>,
    pub warn_if: String,
    pub error_if: String,
    pub limit: Option<u64>,
    pub column_types: BTreeMap<String, String>,
    pub pre_hook: Vec<String>,
    pub post_hook: Vec<String>,
    /// Every other key (meta, database, persist_docs, store_failures, fail_calc, ...).
    pub extra: Map<String, Json>,
}

impl NodeConfig {
    /// Builds the typed config from the merged dbt config dict.
    pub fn from_map(map: &Map<String, Json>) -> NodeConfig {
        let text = |key: &str| match map.get(key) {
            Some(Json::String(s)) => Some(s.clone()),
            Some(Json::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        let list = |key: &str| -> Vec<String> {
            match map.get(key) {
                Some(Json::Array(items)) => items.iter().filter_map(hook_text).collect(),
                Some(Json::Null) | None => Vec::new(),
                Some(single) => hook_text(single).into_iter().collect(),
            }
        };
        let known = [
            "materialized",
            "schema",
            "alias",
            "tags",
            "enabled",
            "unique_key",
            "incremental_strategy",
            "on_schema_change",
            "full_refresh",
            "severity",
            "where",
            "warn_if",
            "error_if",
            "limit",
            "column_types",
            "pre-hook",
            "post-hook",
        ];
        let extra = map
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        NodeConfig {
            materialized: text("materialized").unwrap_or_else(|| "view".into()),
            schema: text("schema"),
            alias: text("alias"),
            tags: list("tags"),
            enabled: !matches!(map.get("enabled"), Some(Json::Bool(false))),
            unique_key: list("unique_key"),
            incremental_strategy: text("incremental_strategy"),
            on_schema_change: text("on_schema_change"),
            full_refresh: map.get("full_refresh").and_then(Json::as_bool),
            severity: text("severity")
                .map(|s| s.to_lowercase())
                .unwrap_or_else(|| "error".into()),
            where_clause: text("where"),
            warn_if: text("warn_if").unwrap_or_else(|| "!= 0".into()),
            error_if: text("error_if").unwrap_or_else(|| "!= 0".into()),
            limit: map.get("limit").and_then(Json::as_u64),
            column_types: match map.get("column_types") {
                Some(Json::Object(types)) => types
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect(),
                _ => BTreeMap::new(),
            },
            pre_hook: list("pre-hook"),
            post_hook: list("post-hook"),
            extra,
        }
    }

    /// The config as dbt's manifest dict (`where`, `pre-hook`, ...).
    pub fn to_json(&self) -> Json {
        let mut map = Map::new();
        map.insert("enabled".into(), Json::Bool(self.enabled));
        map.insert(
            "materialized".into(),
            Json::String(self.materialized.clone()),
        );
        map.insert("schema".into(), opt_json(&self.schema));
        map.insert("alias".into(), opt_json(&self.alias));
        map.insert("tags".into(), Json::from(self.tags.clone()));
        map.insert(
            "unique_key".into(),
            match self.unique_key.as_slice() {
                [] => Json::Null,
                [one] => Json::String(one.clone()),
                many => Json::from(many.to_vec()),
            },
        );
        map.insert(
            "incremental_strategy".into(),
            opt_json(&self.incremental_strategy),
        );
        map.insert(
            "on_schema_change".into(),
            Json::String(
                self.on_schema_change
                    .clone()
                    .unwrap_or_else(|| "ignore".into()),
            ),
        );
        map.insert(
            "full_refresh".into(),
            self.full_refresh.map(Json::Bool).unwrap_or(Json::Null),
        );
        map.insert(
            "column_types".into(),
            Json::Object(
                self.column_types
                    .iter()
                    .map(|(k, v)| (k.clone(), Json::String(v.clone())))
                    .collect(),
            ),
        );
        let hooks = |items: &[String]| {
            Json::from(
                items
                    .iter()
                    .map(|sql| serde_json::json!({"sql": sql, "transaction": true, "index": null}))
                    .collect::<Vec<_>>(),
            )
        };
        map.insert("pre-hook".into(), hooks(&self.pre_hook));
        map.insert("post-hook".into(), hooks(&self.post_hook));
        if self.materialized == "test" {
            map.insert(
                "severity".into(),
                Json::String(self.severity.to_uppercase()),
            );
            map.insert("where".into(), opt_json(&self.where_clause));
            map.insert("warn_if".into(), Json::String(self.warn_if.clone()));
            map.insert("error_if".into(), Json::String(self.error_if.clone()));
            map.insert(
                "limit".into(),
                self.limit.map(Json::from).unwrap_or(Json::Null),
            );
            map.entry("fail_calc")
                .or_insert(Json::String("count(*)".into()));
        }
        for (key, value) in &self.extra {
            map.insert(key.clone(), value.clone());
        }
        Json::Object(map)
    }

    /// dbt's `fail_calc` of a test (`count(*)` unless configured).
    pub fn fail_calc(&self) -> String {
        self.extra
            .get("fail_calc")
            .and_then(Json::as_str)
            .unwrap_or("count(*)")
            .to_string()
    }
}

impl Serialize for NodeConfig {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

fn opt_json(value: &Option<String>) -> Json {
    value.clone().map(Json::String).unwrap_or(Json::Null)
}

/// A hook may be a string or `{sql: ..., transaction: ...}`.
fn hook_text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Object(map) => map.get("sql").and_then(Json::as_str).map(str::to_string),
        Json::Null => None,
        other => Some(other.to_string()),
    }
}

/// What a test node tests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestInfo {
    /// `unique`, `not_null`, a custom generic test name, or `singular`.
    pub name: String,
    /// Test arguments as written (`values`, `to: "ref('x')"`, `field`...), without model/column_name.
    pub kwargs: Map<String, Json>,
    pub column_name: Option<String>,
    /// Unique id of the model/seed the test is defined on.
    pub attached_node: Option<String>,
    /// `dbt` for built-in tests, the project name for custom ones.
    pub namespace: Option<String>,
}

/// A model, seed or test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub unique_id: String,
    pub resource_type: ResourceType,
    pub name: String,
    pub package_name: String,
    /// File relative to the project root.
    pub original_file_path: String,
    /// File relative to its resource folder (models/, seeds/, tests/).
    pub path: String,
    pub fqn: Vec<String>,
    pub schema: String,
    pub alias: String,
    pub config: NodeConfig,
    pub raw_code: String,
    /// Unique ids of models, seeds and sources this node reads.
    pub depends_on: Vec<String>,
    /// Names passed to `ref()`.
    pub refs: Vec<String>,
    pub sources: Vec<(String, String)>,
    pub description: String,
    pub columns: BTreeMap<String, ColumnInfo>,
    pub tags: Vec<String>,
    pub test: Option<TestInfo>,
    /// sha256 of the file.
    pub checksum: String,
    pub meta: Map<String, Json>,
    pub database: String,
}

impl Node {
    /// The relation in SQL: `schema.alias` (identifiers quoted when needed).
    pub fn relation(&self) -> String {
        Relation::new(&self.database, &self.schema, &self.alias).render_sql()
    }

    /// The node as the `model` dict Jinja sees.
    pub(crate) fn jinja_dict(&self) -> Json {
        serde_json::json!({
            "name": self.name,
            "unique_id": self.unique_id,
            "resource_type": self.resource_type.as_str(),
            "package_name": self.package_name,
            "path": self.path,
            "original_file_path": self.original_file_path,
            "fqn": self.fqn,
            "database": self.database,
            "schema": self.schema,
            "alias": self.alias,
            "config": self.config.to_json(),
            "tags": self.tags,
            "description": self.description,
            "raw_code": self.raw_code,
            "refs": self.refs.iter().map(|r| serde_json::json!({"name": r, "package": null, "version": null})).collect::<Vec<_>>(),
            "depends_on": {"nodes": self.depends_on},
            "columns": self.columns,
            "meta": self.meta,
            "version": null,
        })
    }
}

/// A `period` based freshness threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FreshnessRule {
    pub count: u64,
    /// minute, hour or day.
    pub period: String,
}

/// Source freshness thresholds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Freshness {
    pub warn_after: Option<FreshnessRule>,
    pub error_after: Option<FreshnessRule>,
    pub filter: Option<String>,
}

/// One table of a `sources:` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceTable {
    pub unique_id: String,
    pub source_name: String,
    pub name: String,
    pub identifier: String,
    pub schema: String,
    pub database: String,
    pub description: String,
    pub source_description: String,
    pub loader: String,
    pub loaded_at_field: Option<String>,
    pub freshness: Option<Freshness>,
    pub tags: Vec<String>,
    pub meta: Map<String, Json>,
    pub columns: BTreeMap<String, ColumnInfo>,
    pub original_file_path: String,
    pub fqn: Vec<String>,
}

impl SourceTable {
    pub fn relation(&self) -> String {
        Relation::new(&self.database, &self.schema, &self.identifier).render_sql()
    }
}

/// An `exposures:` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exposure {
    pub unique_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub owner: Json,
    pub depends_on: Vec<String>,
    pub refs: Vec<String>,
    pub sources: Vec<(String, String)>,
    pub url: Option<String>,
    pub description: String,
    pub maturity: Option<String>,
    pub label: Option<String>,
    pub original_file_path: String,
    pub fqn: Vec<String>,
    pub tags: Vec<String>,
    pub meta: Map<String, Json>,
}

/// A loaded, parsed project.
#[derive(Debug)]
pub struct Project {
    pub name: String,
    pub version: String,
    pub root: PathBuf,
    pub target_path: PathBuf,
    pub nodes: BTreeMap<String, Node>,
    pub sources: BTreeMap<String, SourceTable>,
    pub exposures: BTreeMap<String, Exposure>,
    /// Nodes dropped by `enabled: false`, by unique id.
    pub disabled: BTreeMap<String, Node>,
    /// Resolved vars: project vars (global and scoped to this project) overridden by --vars.
    pub vars: Map<String, Json>,
    pub target: Target,
    /// `on-run-start` / `on-run-end` SQL from dbt_project.yml, unrendered.
    pub on_run_start: Vec<String>,
    pub on_run_end: Vec<String>,
    pub(crate) jinja: JinjaEnv,
    pub(crate) resolver: Arc<Resolver>,
}

/// Config keys dbt accepts without a `+` in dbt_project.yml.
const KNOWN_CONFIGS: &[&str] = &[
    "materialized",
    "schema",
    "database",
    "alias",
    "tags",
    "enabled",
    "unique_key",
    "incremental_strategy",
    "on_schema_change",
    "full_refresh",
    "severity",
    "where",
    "warn_if",
    "error_if",
    "limit",
    "fail_calc",
    "store_failures",
    "column_types",
    "docs",
    "persist_docs",
    "meta",
    "pre-hook",
    "post-hook",
    "quote_columns",
    "delimiter",
    "contract",
    "grants",
    "group",
    "access",
    "sql_header",
];
/// Configs whose values are dicts (merged, not overwritten).
const MAP_CONFIGS: &[&str] = &[
    "column_types",
    "docs",
    "persist_docs",
    "meta",
    "grants",
    "contract",
];
/// Keys of a generic test's dict that are config, not arguments.
const TEST_CONFIG_ARGS: &[&str] = &[
    "severity",
    "tags",
    "enabled",
    "where",
    "limit",
    "warn_if",
    "error_if",
    "fail_calc",
    "store_failures",
    "store_failures_as",
    "meta",
    "database",
    "schema",
    "alias",
];

/// Merges one config key the way dbt does: tags union, hooks append, dicts merge.
pub(crate) fn merge_config_value(map: &mut Map<String, Json>, key: &str, value: Json) {
    let key = crate::jinja::normalize_config_key(key);
    let as_list = |v: Json| match v {
        Json::Array(items) => items,
        Json::Null => Vec::new(),
        single => vec![single],
    };
    match key.as_str() {
        "tags" | "pre-hook" | "post-hook" => {
            let mut items = map.remove(&key).map(as_list).unwrap_or_default();
            for item in as_list(value) {
                if key != "tags" || !items.contains(&item) {
                    items.push(item);
                }
            }
            map.insert(key, Json::Array(items));
        }
        k if MAP_CONFIGS.contains(&k) => match (map.get_mut(k), value) {
            (Some(Json::Object(existing)), Json::Object(update)) => existing.extend(update),
            (_, update) => {
                map.insert(key, update);
            }
        },
        _ => {
            map.insert(key, value);
        }
    }
}

/// Configs from a dbt_project.yml resource tree (`models:`) along a node's fqn.
fn tree_configs(tree: Option<&Json>, fqn: &[String]) -> Vec<(String, Json)> {
    let mut out = Vec::new();
    let Some(mut level) = tree else {
        return out;
    };
    collect_level_configs(level, &mut out);
    for segment in fqn {
        match level.get(segment) {
            Some(child @ Json::Object(_)) => {
                level = child;
                collect_level_configs(level, &mut out);
            }
            _ => break,
        }
    }
    out
}

fn collect_level_configs(level: &Json, out: &mut Vec<(String, Json)>) {
    let Json::Object(map) = level else {
        return;
    };
    for (key, value) in map {
        if let Some(config) = key.strip_prefix('+') {
            out.push((config.to_string(), value.clone()));
        } else if KNOWN_CONFIGS.contains(&key.as_str())
            && (!value.is_object() || MAP_CONFIGS.contains(&key.as_str()))
        {
            out.push((key.clone(), value.clone()));
        }
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| TransformError::io(path, e))
}

/// Parses YAML into JSON values, keeping the error line.
fn parse_yaml(path: &Path, text: &str) -> Result<Json> {
    if text.trim().is_empty() {
        return Ok(Json::Null);
    }
    serde_norway::from_str::<Json>(text).map_err(|e| TransformError::Yaml {
        path: path.to_path_buf(),
        line: e.location().map(|l| l.line()),
        message: e.to_string(),
    })
}

/// Files under `dir` with one of `extensions`, sorted, recursively.
fn walk(dir: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| TransformError::io(&current, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| TransformError::io(&current, e))?;
            let path = entry.path();
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(text.as_bytes()))
}

/// Python's `repr` of a value whose leaves were all made `str` (as dbt hashes test metadata):
/// dicts with sorted keys, lists, and strings quoted the way Python quotes them.
fn python_repr_of_strings(value: &Json) -> String {
    match value {
        Json::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}: {}",
                        python_str_repr(k),
                        python_repr_of_strings(&map[k])
                    )
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Json::Array(items) => {
            let items: Vec<String> = items.iter().map(python_repr_of_strings).collect();
            format!("[{}]", items.join(", "))
        }
        Json::String(text) => python_str_repr(text),
        Json::Null => python_str_repr("None"),
        Json::Bool(true) => python_str_repr("True"),
        Json::Bool(false) => python_str_repr("False"),
        Json::Number(number) => python_str_repr(&number.to_string()),
    }
}

fn python_str_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn md5_hex(text: &str) -> String {
    format!("{:x}", md5::Md5::digest(text.as_bytes()))
}

fn string_list(value: Option<&Json>, key: &str) -> Vec<String> {
    match value.and_then(|v| v.get(key)) {
        Some(Json::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Some(Json::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn str_field(value: &Json, key: &str) -> Option<String> {
    match value.get(key) {
        Some(Json::String(s)) => Some(s.clone()),
        Some(Json::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn object_field(value: &Json, key: &str) -> Map<String, Json> {
    match value.get(key) {
        Some(Json::Object(map)) => map.clone(),
        _ => Map::new(),
    }
}

/// Columns of a YAML properties entry.
fn parse_columns(entry: &Json) -> BTreeMap<String, ColumnInfo> {
    let mut columns = BTreeMap::new();
    if let Some(Json::Array(items)) = entry.get("columns") {
        for item in items {
            let Some(name) = str_field(item, "name") else {
                continue;
            };
            columns.insert(
                name.clone(),
                ColumnInfo {
                    name,
                    description: str_field(item, "description").unwrap_or_default(),
                    data_type: str_field(item, "data_type"),
                    meta: object_field(item, "meta"),
                    tags: string_list(Some(item), "tags"),
                },
            );
        }
    }
    columns
}

/// A generic test as written in YAML.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TestSpec {
    pub test_name: String,
    pub namespace: Option<String>,
    pub kwargs: Map<String, Json>,
    pub config: Map<String, Json>,
    pub custom_name: Option<String>,
    pub description: String,
}

/// Reads one entry of a `tests:`/`data_tests:` list (all of dbt's forms).
pub(crate) fn parse_test_entry(entry: &Json) -> std::result::Result<TestSpec, String> {
    let (full_name, args) = match entry {
        Json::String(name) => (name.clone(), Map::new()),
        Json::Object(map) if map.contains_key("test_name") => {
            let name = map
                .get("test_name")
                .and_then(Json::as_str)
                .ok_or("test_name must be a string")?;
            let mut args = map.clone();
            args.remove("test_name");
            (name.to_string(), args)
        }
        Json::Object(map) if map.len() == 1 => {
            let (name, value) = map.iter().next().ok_or("empty test entry")?;
            let args = match value {
                Json::Object(args) => args.clone(),
                Json::Null => Map::new(),
                other => {
                    return Err(format!(
                        "arguments of test {name} must be a mapping, got {other}"
                    ));
                }
            };
            (name.clone(), args)
        }
        other => return Err(format!("cannot read test entry {other}")),
    };
    let (namespace, test_name) = match full_name.split_once('.') {
        Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
        None => (None, full_name.clone()),
    };
    let mut spec = TestSpec {
        test_name,
        namespace,
        kwargs: Map::new(),
        config: Map::new(),
        custom_name: None,
        description: String::new(),
    };
    for (key, value) in args {
        match key.as_str() {
            "config" => {
                if let Json::Object(config) = value {
                    for (k, v) in config {
                        merge_config_value(&mut spec.config, &k, v);
                    }
                }
            }
            "arguments" => {
                if let Json::Object(arguments) = value {
                    spec.kwargs.extend(arguments);
                }
            }
            "name" => spec.custom_name = value.as_str().map(str::to_string),
            "description" => spec.description = value.as_str().unwrap_or_default().to_string(),
            k if TEST_CONFIG_ARGS.contains(&k) => merge_config_value(&mut spec.config, k, value),
            _ => {
                spec.kwargs.insert(key, value);
            }
        }
    }
    Ok(spec)
}

/// dbt's synthesized generic test name (and the 63-char truncation with an md5).
pub(crate) fn generic_test_name(
    prefix: &str,
    resource_name: &str,
    column_name: Option<&str>,
    kwargs: &Map<String, Json>,
) -> GenericTestName {
    let mut all: BTreeMap<&str, &Json> = kwargs.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let column_json = column_name.map(|c| Json::String(c.to_string()));
    if let Some(column) = &column_json {
        all.insert("column_name", column);
    }
    let render = |v: &Json| match v {
        Json::String(s) => s.clone(),
        Json::Bool(true) => "True".into(),
        Json::Bool(false) => "False".into(),
        Json::Null => "None".into(),
        other => other.to_string(),
    };
    let mut flat = Vec::new();
    for (key, value) in all {
        if key == "model" || key == "config" {
            continue;
        }
        match value {
            Json::Object(map) => flat.extend(map.values().map(render)),
            Json::Array(items) => flat.extend(items.iter().map(render)),
            other => flat.push(render(other)),
        }
    }
    let clean: Vec<String> = flat.iter().map(|arg| clean_arg(arg)).collect();
    let identifier = format!("{prefix}_{resource_name}");
    let full = format!("{identifier}_{}", clean.join("__"));
    let alias = if full.len() >= 64 {
        let short: String = identifier.chars().take(30).collect();
        format!("{short}_{}", md5_hex(&full))
    } else {
        full.clone()
    };
    GenericTestName { full, alias }
}

/// A generic test's name (dbt keeps it whole in the unique id, fqn and output) and its alias
/// (the relation and file name: shortened with an md5 when the name reaches 64 characters).
pub(crate) struct GenericTestName {
    pub full: String,
    pub alias: String,
}

/// Replaces every run of characters outside `[0-9a-zA-Z_]` by one underscore.
fn clean_arg(arg: &str) -> String {
    let mut out = String::new();
    let mut in_run = false;
    for c in arg.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    out
}

struct ParseInputs {
    vars: Arc<Map<String, Json>>,
    target: Arc<Target>,
    resolver: Arc<Resolver>,
}

impl Project {
    /// Loads and parses the project in `dir`.
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<Project> {
        let root = dir.to_path_buf();
        let project_file = root.join("dbt_project.yml");
        if !project_file.is_file() {
            return Err(TransformError::Project {
                path: project_file,
                message: "dbt_project.yml not found".into(),
            });
        }
        let text = read_text(&project_file)?;
        let mut yaml = parse_yaml(&project_file, &text)?;
        render_project_strings(&mut yaml, &options.vars, &project_file)?;
        let project_err = |message: String| TransformError::Project {
            path: project_file.clone(),
            message,
        };
        if !yaml.is_object() {
            return Err(project_err("dbt_project.yml must be a mapping".into()));
        }
        let name = str_field(&yaml, "name").ok_or_else(|| project_err("missing `name`".into()))?;
        let version = str_field(&yaml, "version").unwrap_or_default();
        let paths = |key: &str, legacy: Option<&str>, default: &str| -> Vec<String> {
            let mut list = string_list(Some(&yaml), key);
            if list.is_empty()
                && let Some(legacy) = legacy
            {
                list = string_list(Some(&yaml), legacy);
            }
            if list.is_empty() {
                list.push(default.to_string());
            }
            list
        };
        let model_paths = paths("model-paths", Some("source-paths"), "models");
        let seed_paths = paths("seed-paths", Some("data-paths"), "seeds");
        let test_paths = paths("test-paths", None, "tests");
        let macro_paths = paths("macro-paths", None, "macros");
        let target_path =
            root.join(str_field(&yaml, "target-path").unwrap_or_else(|| "target".into()));

        // Vars: global project vars, then vars scoped to this project, then --vars.
        let mut vars = Map::new();
        if let Some(Json::Object(project_vars)) = yaml.get("vars") {
            for (key, value) in project_vars {
                if !(key == &name && value.is_object()) {
                    vars.insert(key.clone(), value.clone());
                }
            }
            if let Some(Json::Object(scoped)) = project_vars.get(&name) {
                vars.extend(scoped.clone());
            }
        }
        vars.extend(options.vars.clone());

        // Macros: macro-paths and test-paths/generic.
        let mut macro_files = Vec::new();
        for dir in &macro_paths {
            for file in walk(&root.join(dir), &["sql", "jinja", "j2"])? {
                macro_files.push((relative(&root, &file), read_text(&file)?));
            }
        }
        for dir in &test_paths {
            for file in walk(&root.join(dir).join("generic"), &["sql"])? {
                macro_files.push((relative(&root, &file), read_text(&file)?));
            }
        }
        let mut jinja = JinjaEnv::new(&name, &macro_files)?;

        // YAML properties.
        let mut yaml_files = Vec::new();
        for dir in model_paths
            .iter()
            .chain(&seed_paths)
            .chain(&macro_paths)
            .chain(&test_paths)
        {
            for file in walk(&root.join(dir), &["yml", "yaml"])? {
                if !yaml_files.contains(&file) {
                    yaml_files.push(file);
                }
            }
        }
        let mut properties = Properties::default();
        for file in &yaml_files {
            let text = read_text(file)?;
            let doc = parse_yaml(file, &text)?;
            properties.add(&relative(&root, file), &doc, file)?;
        }

        let target = Arc::new(options.target.clone());
        let inputs = ParseInputs {
            vars: Arc::new(vars.clone()),
            target: target.clone(),
            resolver: Arc::new(Resolver::default()),
        };
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        let mut disabled: BTreeMap<String, Node> = BTreeMap::new();
        let mut seen_names: BTreeMap<String, String> = BTreeMap::new();

        // Models.
        for dir in &model_paths {
            let base = root.join(dir);
            for file in walk(&base, &["sql"])? {
                let original_file_path = relative(&root, &file);
                let path = relative(&base, &file);
                let model_name = stem(&file);
                if let Some(other) =
                    seen_names.insert(model_name.clone(), original_file_path.clone())
                {
                    return Err(TransformError::Graph(format!(
                        "duplicate model name '{model_name}': {other} and {original_file_path}"
                    )));
                }
                let raw_code = read_text(&file)?;
                let fqn = fqn_for(&name, &path, &model_name);
                let props = properties.models.get(&model_name);
                let mut config = Map::new();
                config.insert("materialized".into(), Json::String("view".into()));
                for (k, v) in tree_configs(yaml.get("models"), &fqn) {
                    merge_config_value(&mut config, &k, v);
                }
                if let Some((entry, _)) = props {
                    apply_properties_config(&mut config, entry);
                }
                jinja.add_file(&original_file_path, &raw_code)?;
                let mut node = Node {
                    unique_id: format!("model.{name}.{model_name}"),
                    resource_type: ResourceType::Model,
                    name: model_name.clone(),
                    package_name: name.clone(),
                    original_file_path: original_file_path.clone(),
                    path,
                    fqn,
                    schema: target.schema.clone(),
                    alias: model_name.clone(),
                    config: NodeConfig::from_map(&config),
                    checksum: sha256_hex(&raw_code),
                    raw_code,
                    depends_on: Vec::new(),
                    refs: Vec::new(),
                    sources: Vec::new(),
                    description: props
                        .and_then(|(e, _)| str_field(e, "description"))
                        .unwrap_or_default(),
                    columns: props.map(|(e, _)| parse_columns(e)).unwrap_or_default(),
                    tags: Vec::new(),
                    test: None,
                    meta: props
                        .map(|(e, _)| object_field(e, "meta"))
                        .unwrap_or_default(),
                    database: target.database.clone(),
                };
                let recorded = parse_render(&jinja, &inputs, &node, &config)?;
                for (k, v) in recorded.config {
                    merge_config_value(&mut config, &k, v);
                }
                node.config = NodeConfig::from_map(&config);
                node.tags = node.config.tags.clone();
                node.refs = recorded.refs.into_iter().map(|(_, n)| n).collect();
                node.sources = recorded.sources;
                if node.config.enabled {
                    nodes.insert(node.unique_id.clone(), node);
                } else {
                    disabled.insert(node.unique_id.clone(), node);
                }
            }
        }

        // Seeds.
        for dir in &seed_paths {
            let base = root.join(dir);
            for file in walk(&base, &["csv"])? {
                let original_file_path = relative(&root, &file);
                let path = relative(&base, &file);
                let seed_name = stem(&file);
                if let Some(other) =
                    seen_names.insert(seed_name.clone(), original_file_path.clone())
                {
                    return Err(TransformError::Graph(format!(
                        "duplicate resource name '{seed_name}': {other} and {original_file_path}"
                    )));
                }
                let contents = read_text(&file)?;
                let fqn = fqn_for(&name, &path, &seed_name);
                let props = properties.seeds.get(&seed_name);
                let mut config = Map::new();
                config.insert("materialized".into(), Json::String("seed".into()));
                for (k, v) in tree_configs(yaml.get("seeds"), &fqn) {
                    merge_config_value(&mut config, &k, v);
                }
                if let Some((entry, _)) = props {
                    apply_properties_config(&mut config, entry);
                }
                let node_config = NodeConfig::from_map(&config);
                let node = Node {
                    unique_id: format!("seed.{name}.{seed_name}"),
                    resource_type: ResourceType::Seed,
                    name: seed_name.clone(),
                    package_name: name.clone(),
                    original_file_path,
                    path,
                    fqn,
                    schema: target.schema.clone(),
                    alias: seed_name.clone(),
                    tags: node_config.tags.clone(),
                    config: node_config,
                    raw_code: String::new(),
                    depends_on: Vec::new(),
                    refs: Vec::new(),
                    sources: Vec::new(),
                    description: props
                        .and_then(|(e, _)| str_field(e, "description"))
                        .unwrap_or_default(),
                    columns: props.map(|(e, _)| parse_columns(e)).unwrap_or_default(),
                    test: None,
                    checksum: sha256_hex(&contents),
                    meta: props
                        .map(|(e, _)| object_field(e, "meta"))
                        .unwrap_or_default(),
                    database: target.database.clone(),
                };
                if node.config.enabled {
                    nodes.insert(node.unique_id.clone(), node);
                } else {
                    disabled.insert(node.unique_id.clone(), node);
                }
            }
        }

        // Sources.
        let mut sources = BTreeMap::new();
        for (entry, file) in &properties.sources {
            for table in parse_sources(&name, entry, file, &target)? {
                if let Some(existing) = sources.insert(table.unique_id.clone(), table) {
                    return Err(TransformError::Graph(format!(
                        "source {}.{} is defined twice",
                        existing.source_name, existing.name
                    )));
                }
            }
        }

        // Schema and alias names (dbt applies them after parsing, through macros).
        let mut renamed = Vec::new();
        for node in nodes.values() {
            let (schema, alias) = naming(&jinja, &inputs, node)?;
            renamed.push((node.unique_id.clone(), schema, alias));
        }
        for (unique_id, schema, alias) in renamed {
            if let Some(node) = nodes.get_mut(&unique_id) {
                node.schema = schema;
                node.alias = alias;
            }
        }

        // Resolution tables for refs and sources, then depends_on.
        let mut resolver = Resolver::default();
        for node in nodes.values() {
            let mut relation = Relation::new(&node.database, &node.schema, &node.alias);
            let ephemeral = node.config.materialized == "ephemeral";
            relation.kind = match node.config.materialized.as_str() {
                "view" => "view".into(),
                "ephemeral" => "cte".into(),
                _ => "table".into(),
            };
            if ephemeral {
                relation.rendered = Some(format!("__dbt__cte__{}", node.name));
            }
            resolver.refs.insert(
                node.name.clone(),
                (node.unique_id.clone(), relation, ephemeral),
            );
        }
        for node in disabled.values() {
            resolver.disabled.insert(node.name.clone());
        }
        for table in sources.values() {
            let relation = Relation::new(&table.database, &table.schema, &table.identifier);
            resolver.sources.insert(
                (table.source_name.clone(), table.name.clone()),
                (table.unique_id.clone(), relation),
            );
        }

        // Singular tests.
        let mut test_nodes = Vec::new();
        for dir in &test_paths {
            let base = root.join(dir);
            for file in walk(&base, &["sql"])? {
                let path = relative(&base, &file);
                if path.starts_with("generic/") {
                    continue;
                }
                let original_file_path = relative(&root, &file);
                let test_name = stem(&file);
                let raw_code = read_text(&file)?;
                let fqn = fqn_for(&name, &path, &test_name);
                let mut config = test_defaults();
                for (k, v) in tree_configs(yaml.get("data_tests").or(yaml.get("tests")), &fqn) {
                    merge_config_value(&mut config, &k, v);
                }
                jinja.add_file(&original_file_path, &raw_code)?;
                let mut node = Node {
                    unique_id: format!("test.{name}.{test_name}"),
                    resource_type: ResourceType::Test,
                    name: test_name.clone(),
                    package_name: name.clone(),
                    original_file_path,
                    path,
                    fqn,
                    schema: target.schema.clone(),
                    alias: test_name.clone(),
                    config: NodeConfig::from_map(&config),
                    checksum: sha256_hex(&raw_code),
                    raw_code,
                    depends_on: Vec::new(),
                    refs: Vec::new(),
                    sources: Vec::new(),
                    description: String::new(),
                    columns: BTreeMap::new(),
                    tags: Vec::new(),
                    test: Some(TestInfo {
                        name: "singular".into(),
                        kwargs: Map::new(),
                        column_name: None,
                        attached_node: None,
                        namespace: None,
                    }),
                    meta: Map::new(),
                    database: target.database.clone(),
                };
                let recorded = parse_render(&jinja, &inputs, &node, &config)?;
                for (k, v) in recorded.config {
                    merge_config_value(&mut config, &k, v);
                }
                node.config = NodeConfig::from_map(&config);
                node.tags = node.config.tags.clone();
                node.refs = recorded.refs.into_iter().map(|(_, n)| n).collect();
                node.sources = recorded.sources;
                test_nodes.push(node);
            }
        }

        // Generic tests from YAML.
        let mut builder = TestBuilder {
            project: &name,
            jinja: &jinja,
            inputs: &inputs,
            tests_tree: yaml.get("data_tests").or(yaml.get("tests")),
            out: Vec::new(),
        };
        for (kind, props) in [("model", &properties.models), ("seed", &properties.seeds)] {
            for (resource_name, (entry, file)) in props {
                let unique_id = format!("{kind}.{name}.{resource_name}");
                if !nodes.contains_key(&unique_id) {
                    continue;
                }
                builder.tests_for(entry, file, resource_name, &unique_id, None)?;
            }
        }
        for table in sources.values() {
            let Some((entry, file)) =
                properties.source_table_entry(&table.source_name, &table.name)
            else {
                continue;
            };
            let resource = format!("{}_{}", table.source_name, table.name);
            builder.tests_for(
                entry,
                file,
                &resource,
                &table.unique_id,
                Some((table.source_name.clone(), table.name.clone())),
            )?;
        }
        test_nodes.extend(builder.out);
        for node in test_nodes {
            if !node.config.enabled {
                disabled.insert(node.unique_id.clone(), node);
                continue;
            }
            if nodes.contains_key(&node.unique_id) {
                return Err(TransformError::Graph(format!(
                    "duplicate test '{}' in {}",
                    node.name, node.original_file_path
                )));
            }
            nodes.insert(node.unique_id.clone(), node);
        }

        // depends_on from refs and sources (missing ones are reported by the graph).
        for node in nodes.values_mut() {
            let mut depends = Vec::new();
            if let Some(attached) = node.test.as_ref().and_then(|t| t.attached_node.clone()) {
                depends.push(attached);
            }
            for name_ref in &node.refs {
                if let Some((unique_id, _, _)) = resolver.refs.get(name_ref)
                    && !depends.contains(unique_id)
                {
                    depends.push(unique_id.clone());
                }
            }
            for pair in &node.sources {
                if let Some((unique_id, _)) = resolver.sources.get(pair)
                    && !depends.contains(unique_id)
                {
                    depends.push(unique_id.clone());
                }
            }
            node.depends_on = depends;
        }

        // Exposures.
        let mut exposures = BTreeMap::new();
        for (entry, file) in &properties.exposures {
            let exposure = parse_exposure(&name, entry, file, &jinja, &inputs, &resolver)?;
            exposures.insert(exposure.unique_id.clone(), exposure);
        }

        // dbt's `graph` variable: nodes, sources and exposures by unique id.
        let graph_nodes: Map<String, Json> = nodes
            .iter()
            .map(|(id, node)| (id.clone(), node.jinja_dict()))
            .collect();
        let graph_sources: Map<String, Json> = sources
            .iter()
            .map(|(id, source)| {
                let mut value = serde_json::to_value(source).unwrap_or(Json::Null);
                if let Some(map) = value.as_object_mut() {
                    map.insert("resource_type".into(), Json::String("source".into()));
                    map.insert("relation_name".into(), Json::String(source.relation()));
                }
                (id.clone(), value)
            })
            .collect();
        let graph_exposures: Map<String, Json> = exposures
            .iter()
            .map(|(id, exposure)| {
                (
                    id.clone(),
                    serde_json::to_value(exposure).unwrap_or(Json::Null),
                )
            })
            .collect();
        jinja.set_graph(serde_json::json!({
            "nodes": graph_nodes, "sources": graph_sources, "exposures": graph_exposures,
            "metrics": {}, "groups": {}, "semantic_models": {}, "saved_queries": {},
        }));

        Ok(Project {
            name,
            version,
            root,
            target_path,
            nodes,
            sources,
            exposures,
            disabled,
            vars,
            target: options.target.clone(),
            on_run_start: hook_list(yaml.get("on-run-start")),
            on_run_end: hook_list(yaml.get("on-run-end")),
            jinja,
            resolver: Arc::new(resolver),
        })
    }

    /// Macros defined by the project (built-ins excluded).
    pub fn macros(&self) -> Vec<&MacroDef> {
        self.jinja
            .macros()
            .iter()
            .filter(|m| m.package_name == self.name)
            .collect()
    }

    /// A node, source or exposure name for messages.
    pub fn display_name(&self, unique_id: &str) -> String {
        if let Some(node) = self.nodes.get(unique_id) {
            return node.name.clone();
        }
        if let Some(source) = self.sources.get(unique_id) {
            return format!("{}.{}", source.source_name, source.name);
        }
        if let Some(exposure) = self.exposures.get(unique_id) {
            return exposure.name.clone();
        }
        unique_id.to_string()
    }

    /// The vars as the Jinja context sees them.
    pub(crate) fn vars_arc(&self) -> Arc<Map<String, Json>> {
        Arc::new(self.vars.clone())
    }
}

fn hook_list(value: Option<&Json>) -> Vec<String> {
    match value {
        Some(Json::Array(items)) => items.iter().filter_map(hook_text).collect(),
        Some(single) => hook_text(single).into_iter().collect(),
        None => Vec::new(),
    }
}

fn test_defaults() -> Map<String, Json> {
    let mut config = Map::new();
    config.insert("materialized".into(), Json::String("test".into()));
    config.insert("severity".into(), Json::String("ERROR".into()));
    config
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string()
}

/// `[project, folders..., name]` from a path relative to the resource folder.
fn fqn_for(project: &str, relative_path: &str, name: &str) -> Vec<String> {
    let mut fqn = vec![project.to_string()];
    let parts: Vec<&str> = relative_path.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        fqn.push((*part).to_string());
    }
    fqn.push(name.to_string());
    fqn
}

/// YAML `config:` (and top-level tags/meta) of a properties entry.
fn apply_properties_config(config: &mut Map<String, Json>, entry: &Json) {
    if let Some(Json::Object(yaml_config)) = entry.get("config") {
        for (k, v) in yaml_config {
            merge_config_value(config, k, v.clone());
        }
    }
    for key in ["tags", "meta", "docs"] {
        if let Some(value) = entry.get(key) {
            merge_config_value(config, key, value.clone());
        }
    }
}

/// Renders `{{ ... }}` in dbt_project.yml strings (env_var, var from --vars); hooks stay raw.
fn render_project_strings(
    yaml: &mut Json,
    cli_vars: &Map<String, Json>,
    path: &Path,
) -> Result<()> {
    fn visit(
        value: &mut Json,
        env: &minijinja::Environment,
        ctx: &minijinja::Value,
        path: &Path,
    ) -> Result<()> {
        match value {
            Json::String(text) if text.contains("{{") || text.contains("{%") => {
                let rendered =
                    env.render_str(text, ctx.clone())
                        .map_err(|e| TransformError::Jinja {
                            path: path.to_path_buf(),
                            line: None,
                            message: e.to_string(),
                            text: text.clone(),
                        })?;
                *value = Json::String(rendered);
            }
            Json::Array(items) => {
                for item in items {
                    visit(item, env, ctx, path)?;
                }
            }
            Json::Object(map) => {
                for (key, item) in map.iter_mut() {
                    let bare = key.trim_start_matches('+');
                    if matches!(bare, "pre-hook" | "post-hook" | "pre_hook" | "post_hook")
                        || key.starts_with("on-run")
                    {
                        continue;
                    }
                    visit(item, env, ctx, path)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let mut env = minijinja::Environment::new();
    env.add_function("env_var", |name: String, default: Option<String>| {
        match (std::env::var(&name), default) {
            (Ok(value), _) => Ok(value),
            (Err(_), Some(default)) => Ok(default),
            (Err(_), None) => Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("Env var required but not provided: '{name}'"),
            )),
        }
    });
    let vars = crate::jinja::to_value(cli_vars);
    env.add_function(
        "var",
        move |name: String,
              default: Option<minijinja::Value>|
              -> std::result::Result<minijinja::Value, minijinja::Error> {
            match (vars.get_attr(&name), default) {
                (Ok(v), _) if !v.is_undefined() => Ok(v),
                (_, Some(default)) => Ok(default),
                _ => Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("Required var '{name}' not found in config"),
                )),
            }
        },
    );
    let ctx = minijinja::Value::from(());
    visit(yaml, &env, &ctx, path)
}

/// Parse-mode render of a model or singular test: learns refs, sources and config().
fn parse_render(
    jinja: &JinjaEnv,
    inputs: &ParseInputs,
    node: &Node,
    config: &Map<String, Json>,
) -> Result<crate::jinja::Recorded> {
    let recorder = Arc::new(Recorder::default());
    let spec = RenderSpec {
        mode: Mode::Parse,
        recorder: recorder.clone(),
        resolver: inputs.resolver.clone(),
        vars: inputs.vars.clone(),
        target: inputs.target.clone(),
        this: Relation::new(&node.database, &node.schema, &node.alias),
        config: Arc::new(config.clone()),
        model: node.jinja_dict(),
        is_incremental: false,
        run_started_at: chrono::Utc::now(),
        invocation_id: String::new(),
        full_refresh: false,
        query_runner: None,
        extra: Vec::new(),
    };
    let ctx = jinja.context(&spec);
    jinja.render_file(&node.original_file_path, ctx)?;
    Ok(recorder.take())
}

/// Calls generate_schema_name / generate_alias_name for a model or seed.
fn naming(jinja: &JinjaEnv, inputs: &ParseInputs, node: &Node) -> Result<(String, String)> {
    let recorder = Arc::new(Recorder::default());
    let spec = RenderSpec {
        mode: Mode::Parse,
        recorder,
        resolver: inputs.resolver.clone(),
        vars: inputs.vars.clone(),
        target: inputs.target.clone(),
        this: Relation::new(&node.database, &node.schema, &node.alias),
        config: Arc::new(
            node.config
                .to_json()
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ),
        model: node.jinja_dict(),
        is_incremental: false,
        run_started_at: chrono::Utc::now(),
        invocation_id: String::new(),
        full_refresh: false,
        query_runner: None,
        extra: vec![
            (
                "__custom_schema".into(),
                crate::jinja::to_value(&node.config.schema),
            ),
            (
                "__custom_alias".into(),
                crate::jinja::to_value(&node.config.alias),
            ),
            ("__node".into(), crate::jinja::to_value(node.jinja_dict())),
        ],
    };
    let ctx = jinja.context(&spec);
    let schema = jinja
        .eval(
            &node.original_file_path,
            "generate_schema_name(__custom_schema, __node)",
            ctx.clone(),
        )?
        .to_string()
        .trim()
        .to_string();
    let alias = jinja
        .eval(
            &node.original_file_path,
            "generate_alias_name(__custom_alias, __node)",
            ctx,
        )?
        .to_string()
        .trim()
        .to_string();
    Ok((schema, alias))
}

/// YAML properties of all files: entries with the file they came from.
#[derive(Default)]
struct Properties {
    models: BTreeMap<String, (Json, String)>,
    seeds: BTreeMap<String, (Json, String)>,
    sources: Vec<(Json, String)>,
    exposures: Vec<(Json, String)>,
}

impl Properties {
    fn add(&mut self, file: &str, doc: &Json, path: &Path) -> Result<()> {
        let bad = |message: String| TransformError::Yaml {
            path: path.to_path_buf(),
            line: None,
            message,
        };
        if doc.is_null() {
            return Ok(());
        }
        if !doc.is_object() {
            return Err(bad("a properties file must be a mapping".into()));
        }
        for (key, target) in [("models", &mut self.models), ("seeds", &mut self.seeds)] {
            match doc.get(key) {
                Some(Json::Array(entries)) => {
                    for entry in entries {
                        let name = str_field(entry, "name")
                            .ok_or_else(|| bad(format!("an entry of `{key}` has no name")))?;
                        if let Some((_, other)) = target.get(&name) {
                            return Err(bad(format!(
                                "{key} entry '{name}' is also described in {other}"
                            )));
                        }
                        target.insert(name, (entry.clone(), file.to_string()));
                    }
                }
                Some(Json::Null) | None => {}
                Some(_) => return Err(bad(format!("`{key}` must be a list"))),
            }
        }
        for (key, target) in [
            ("sources", &mut self.sources),
            ("exposures", &mut self.exposures),
        ] {
            match doc.get(key) {
                Some(Json::Array(entries)) => {
                    for entry in entries {
                        target.push((entry.clone(), file.to_string()));
                    }
                }
                Some(Json::Null) | None => {}
                Some(_) => return Err(bad(format!("`{key}` must be a list"))),
            }
        }
        Ok(())
    }

    fn source_table_entry(&self, source: &str, table: &str) -> Option<(&Json, &String)> {
        for (entry, file) in &self.sources {
            if str_field(entry, "name").as_deref() != Some(source) {
                continue;
            }
            if let Some(Json::Array(tables)) = entry.get("tables") {
                for t in tables {
                    if str_field(t, "name").as_deref() == Some(table) {
                        return Some((t, file));
                    }
                }
            }
        }
        None
    }
}

fn parse_freshness(value: Option<&Json>) -> Option<Option<Freshness>> {
    let value = value?;
    if value.is_null() {
        // Explicit null disables inherited freshness.
        return Some(None);
    }
    let rule = |key: &str| {
        let rule = value.get(key)?;
        Some(FreshnessRule {
            count: rule.get("count").and_then(Json::as_u64)?,
            period: str_field(rule, "period")?,
        })
    };
    Some(Some(Freshness {
        warn_after: rule("warn_after"),
        error_after: rule("error_after"),
        filter: str_field(value, "filter"),
    }))
}

fn parse_sources(
    project: &str,
    entry: &Json,
    file: &str,
    target: &Target,
) -> Result<Vec<SourceTable>> {
    let bad = |message: String| TransformError::Yaml {
        path: PathBuf::from(file),
        line: None,
        message,
    };
    let source_name = str_field(entry, "name").ok_or_else(|| bad("a source has no name".into()))?;
    let source_config = object_field(entry, "config");
    if matches!(source_config.get("enabled"), Some(Json::Bool(false))) {
        return Ok(Vec::new());
    }
    let schema = str_field(entry, "schema").unwrap_or_else(|| source_name.clone());
    let database = str_field(entry, "database").unwrap_or_else(|| target.database.clone());
    let source_freshness =
        parse_freshness(entry.get("freshness").or(source_config.get("freshness"))).flatten();
    let source_loaded_at = str_field(entry, "loaded_at_field");
    let source_tags = string_list(Some(entry), "tags");
    let folders: Vec<String> = file
        .split('/')
        .skip(1)
        .collect::<Vec<_>>()
        .split_last()
        .map(|(_, d)| d.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default();
    let mut tables = Vec::new();
    let Some(Json::Array(table_entries)) = entry.get("tables") else {
        return Ok(tables);
    };
    for table in table_entries {
        let name = str_field(table, "name")
            .ok_or_else(|| bad(format!("a table of source {source_name} has no name")))?;
        let table_config = object_field(table, "config");
        if matches!(table_config.get("enabled"), Some(Json::Bool(false))) {
            continue;
        }
        let freshness =
            match parse_freshness(table.get("freshness").or(table_config.get("freshness"))) {
                Some(explicit) => explicit,
                None => source_freshness.clone(),
            };
        let mut tags = source_tags.clone();
        for tag in string_list(Some(table), "tags") {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        let mut fqn = vec![project.to_string()];
        fqn.extend(folders.iter().cloned());
        fqn.push(source_name.clone());
        fqn.push(name.clone());
        tables.push(SourceTable {
            unique_id: format!("source.{project}.{source_name}.{name}"),
            source_name: source_name.clone(),
            identifier: str_field(table, "identifier").unwrap_or_else(|| name.clone()),
            name,
            schema: schema.clone(),
            database: database.clone(),
            description: str_field(table, "description").unwrap_or_default(),
            source_description: str_field(entry, "description").unwrap_or_default(),
            loader: str_field(entry, "loader").unwrap_or_default(),
            loaded_at_field: str_field(table, "loaded_at_field").or(source_loaded_at.clone()),
            freshness,
            tags,
            meta: object_field(table, "meta"),
            columns: parse_columns(table),
            original_file_path: file.to_string(),
            fqn,
        });
    }
    Ok(tables)
}

fn parse_exposure(
    project: &str,
    entry: &Json,
    file: &str,
    jinja: &JinjaEnv,
    inputs: &ParseInputs,
    resolver: &Resolver,
) -> Result<Exposure> {
    let bad = |message: String| TransformError::Yaml {
        path: PathBuf::from(file),
        line: None,
        message,
    };
    let name = str_field(entry, "name").ok_or_else(|| bad("an exposure has no name".into()))?;
    let recorder = Arc::new(Recorder::default());
    for dependency in string_list(Some(entry), "depends_on") {
        let spec = kwarg_spec(inputs, recorder.clone(), Mode::Parse, Vec::new());
        jinja.eval(file, &dependency, jinja.context(&spec))?;
    }
    let recorded = recorder.take();
    let refs: Vec<String> = recorded.refs.into_iter().map(|(_, n)| n).collect();
    let mut depends_on = Vec::new();
    for r in &refs {
        match resolver.refs.get(r) {
            Some((unique_id, _, _)) => depends_on.push(unique_id.clone()),
            None => {
                return Err(TransformError::Graph(format!(
                    "exposure '{name}' ({file}) depends on '{r}' which was not found"
                )));
            }
        }
    }
    for pair in &recorded.sources {
        match resolver.sources.get(pair) {
            Some((unique_id, _)) => depends_on.push(unique_id.clone()),
            None => {
                return Err(TransformError::Graph(format!(
                    "exposure '{name}' ({file}) depends on source '{}.{}' which was not found",
                    pair.0, pair.1
                )));
            }
        }
    }
    Ok(Exposure {
        unique_id: format!("exposure.{project}.{name}"),
        type_: str_field(entry, "type").unwrap_or_else(|| "dashboard".into()),
        owner: entry.get("owner").cloned().unwrap_or(Json::Null),
        depends_on,
        refs,
        sources: recorded.sources,
        url: str_field(entry, "url"),
        description: str_field(entry, "description").unwrap_or_default(),
        maturity: str_field(entry, "maturity"),
        label: str_field(entry, "label"),
        original_file_path: file.to_string(),
        fqn: vec![project.to_string(), name.clone()],
        tags: string_list(Some(entry), "tags"),
        meta: object_field(entry, "meta"),
        name,
    })
}

/// A parse/compile spec for evaluating test kwargs and exposure dependencies.
fn kwarg_spec(
    inputs: &ParseInputs,
    recorder: Arc<Recorder>,
    mode: Mode,
    extra: Vec<(String, minijinja::Value)>,
) -> RenderSpec {
    RenderSpec {
        mode,
        recorder,
        resolver: inputs.resolver.clone(),
        vars: inputs.vars.clone(),
        target: inputs.target.clone(),
        this: Relation::new("", "", ""),
        config: Arc::new(Map::new()),
        model: Json::Null,
        is_incremental: false,
        run_started_at: chrono::Utc::now(),
        invocation_id: String::new(),
        full_refresh: false,
        query_runner: None,
        extra,
    }
}

/// Whether a test argument is Jinja to evaluate (`ref('x')`, `source('a','b')`, `{{ ... }}`).
pub(crate) fn kwarg_expression(value: &Json) -> Option<String> {
    let text = value.as_str()?.trim();
    if text.starts_with("ref(") || text.starts_with("source(") {
        return Some(text.to_string());
    }
    if let Some(inner) = text.strip_prefix("{{").and_then(|t| t.strip_suffix("}}")) {
        return Some(inner.trim().to_string());
    }
    None
}

struct TestBuilder<'a> {
    project: &'a str,
    jinja: &'a JinjaEnv,
    inputs: &'a ParseInputs,
    tests_tree: Option<&'a Json>,
    out: Vec<Node>,
}

impl TestBuilder<'_> {
    fn tests_for(
        &mut self,
        entry: &Json,
        file: &str,
        resource_name: &str,
        attached: &str,
        source: Option<(String, String)>,
    ) -> Result<()> {
        let list = |value: &Json| -> Vec<Json> {
            let mut all = Vec::new();
            for key in ["data_tests", "tests"] {
                if let Some(Json::Array(items)) = value.get(key) {
                    all.extend(items.iter().cloned());
                }
            }
            all
        };
        for test in list(entry) {
            self.add(&test, file, resource_name, attached, None, source.clone())?;
        }
        if let Some(Json::Array(columns)) = entry.get("columns") {
            for column in columns {
                let Some(column_name) = str_field(column, "name") else {
                    continue;
                };
                for test in list(column) {
                    self.add(
                        &test,
                        file,
                        resource_name,
                        attached,
                        Some(&column_name),
                        source.clone(),
                    )?;
                }
            }
        }
        Ok(())
    }

    fn add(
        &mut self,
        test: &Json,
        file: &str,
        resource_name: &str,
        attached: &str,
        column_name: Option<&str>,
        source: Option<(String, String)>,
    ) -> Result<()> {
        let spec = parse_test_entry(test).map_err(|message| TransformError::Yaml {
            path: PathBuf::from(file),
            line: None,
            message,
        })?;
        let macro_name = format!("test_{}", spec.test_name);
        let namespace = match spec.namespace.as_deref() {
            None => None,
            Some(ns) if ns == self.project || ns == crate::jinja::BUILTIN_PACKAGE => {
                Some(ns.to_string())
            }
            Some(ns) => {
                return Err(TransformError::Project {
                    path: PathBuf::from(file),
                    message: format!(
                        "test '{ns}.{}' needs package '{ns}', which is not installed (packages are not supported)",
                        spec.test_name
                    ),
                });
            }
        };
        if !self.jinja.has_macro(&macro_name) {
            return Err(TransformError::Project {
                path: PathBuf::from(file),
                message: format!(
                    "unknown test '{}': no {{% test {} %}} block found",
                    spec.test_name, spec.test_name
                ),
            });
        }
        let prefix = if source.is_some() {
            format!("source_{}", spec.test_name)
        } else {
            spec.test_name.clone()
        };
        let prefix = match &namespace {
            Some(ns) if ns != self.project && ns != crate::jinja::BUILTIN_PACKAGE => {
                format!("{ns}_{prefix}")
            }
            _ => prefix,
        };
        let (name, alias) = match &spec.custom_name {
            Some(custom) => (custom.clone(), custom.clone()),
            None => {
                let generated =
                    generic_test_name(&prefix, resource_name, column_name, &spec.kwargs);
                (generated.full, generated.alias)
            }
        };
        // dbt's id: the last 10 hex digits of md5(name + Python repr of the test metadata with
        // sorted keys and every leaf as a string), so ids match the ones dbt gives.
        let mut hashed_kwargs = spec.kwargs.clone();
        if let Some(column) = column_name {
            hashed_kwargs.insert("column_name".into(), Json::String(column.to_string()));
        }
        let model_expression = match &source {
            Some((s, t)) => format!("{{{{ get_where_subquery(source('{s}', '{t}')) }}}}"),
            None => format!("{{{{ get_where_subquery(ref('{resource_name}')) }}}}"),
        };
        hashed_kwargs.insert("model".into(), Json::String(model_expression));
        let metadata = serde_json::json!({
            "name": spec.test_name,
            "kwargs": hashed_kwargs,
            "namespace": match &namespace {
                Some(ns) if ns != crate::jinja::BUILTIN_PACKAGE => Json::String(ns.clone()),
                _ => Json::Null,
            },
        });
        let hash_input = format!("{name}{}", python_repr_of_strings(&metadata));
        let digest = md5_hex(&hash_input);
        let unique_id = format!(
            "test.{}.{name}.{}",
            self.project,
            &digest[digest.len() - 10..]
        );

        // Record refs/sources used in arguments (relationships `to: ref('x')`).
        let recorder = Arc::new(Recorder::default());
        for value in spec.kwargs.values() {
            if let Some(expr) = kwarg_expression(value) {
                let render_spec =
                    kwarg_spec(self.inputs, recorder.clone(), Mode::Parse, Vec::new());
                self.jinja
                    .eval(file, &expr, self.jinja.context(&render_spec))?;
            }
        }
        let recorded = recorder.take();
        let mut refs = Vec::new();
        let mut sources = Vec::new();
        match &source {
            Some(pair) => sources.push(pair.clone()),
            None => refs.push(resource_name.to_string()),
        }
        for (_, r) in recorded.refs {
            if !refs.contains(&r) {
                refs.push(r);
            }
        }
        for pair in recorded.sources {
            if !sources.contains(&pair) {
                sources.push(pair);
            }
        }

        let folder_parts: Vec<String> = {
            let parts: Vec<&str> = file.split('/').collect();
            parts
                .iter()
                .skip(1)
                .take(parts.len().saturating_sub(2))
                .map(|s| s.to_string())
                .collect()
        };
        let mut fqn = vec![self.project.to_string()];
        fqn.extend(folder_parts);
        fqn.push(name.clone());
        let mut config = test_defaults();
        for (k, v) in tree_configs(self.tests_tree, &fqn) {
            merge_config_value(&mut config, &k, v);
        }
        for (k, v) in &spec.config {
            merge_config_value(&mut config, k, v.clone());
        }
        let node_config = NodeConfig::from_map(&config);
        let raw_code = format!("{{{{ {macro_name}(**_dbt_generic_test_kwargs) }}}}");
        self.out.push(Node {
            unique_id,
            resource_type: ResourceType::Test,
            name: name.clone(),
            package_name: self.project.to_string(),
            original_file_path: file.to_string(),
            path: format!("{alias}.sql"),
            fqn,
            schema: self.inputs.target.schema.clone(),
            alias,
            tags: node_config.tags.clone(),
            config: node_config,
            checksum: sha256_hex(&raw_code),
            raw_code,
            depends_on: Vec::new(),
            refs,
            sources,
            description: spec.description.clone(),
            columns: BTreeMap::new(),
            test: Some(TestInfo {
                name: spec.test_name.clone(),
                kwargs: spec.kwargs.clone(),
                column_name: column_name.map(str::to_string),
                attached_node: if source.is_some() {
                    None
                } else {
                    Some(attached.to_string())
                },
                namespace: Some(namespace.unwrap_or_else(|| {
                    if self.jinja.has_project_macro(&macro_name) {
                        self.project.to_string()
                    } else {
                        crate::jinja::BUILTIN_PACKAGE.to_string()
                    }
                })),
            }),
            meta: Map::new(),
            database: self.inputs.target.database.clone(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    const PROJECT: &str = "name: shop\nversion: '1.0'\nconfig-version: 2\nprofile: shop\nrequire-dbt-version: '>=1.8.0'\nclean-targets: [target]\n";

    #[test]
    fn config_precedence_and_tag_accumulation() {
        let yml = format!(
            "{PROJECT}models:\n  +tags: [all]\n  shop:\n    +materialized: table\n    marts:\n      materialized: view\n      tags: [marts]\n      finance:\n        +schema: finance\n        +tags: fin\n"
        );
        let (_dir, project) = load(&[
            ("dbt_project.yml", &yml),
            (
                "models/marts/finance/revenue.sql",
                "{{ config(materialized='incremental', unique_key=['id', 'day'], tags=['hourly']) }}\nselect 1 as id",
            ),
            ("models/marts/finance/costs.sql", "select 1 as id"),
            (
                "models/marts/finance/props.yml",
                "version: 2\nmodels:\n  - name: costs\n    config:\n      materialized: ephemeral\n      tags: [yaml]\n",
            ),
            ("models/base.sql", "select 1 as id"),
        ]);
        let revenue = &project.nodes["model.shop.revenue"];
        assert_eq!(revenue.config.materialized, "incremental");
        assert_eq!(revenue.config.unique_key, vec!["id", "day"]);
        assert_eq!(revenue.tags, vec!["all", "marts", "fin", "hourly"]);
        assert_eq!(revenue.config.schema.as_deref(), Some("finance"));
        assert_eq!(revenue.schema, "public_finance");
        assert_eq!(revenue.fqn, vec!["shop", "marts", "finance", "revenue"]);
        let costs = &project.nodes["model.shop.costs"];
        assert_eq!(costs.config.materialized, "ephemeral");
        assert_eq!(costs.tags, vec!["all", "marts", "fin", "yaml"]);
        let base = &project.nodes["model.shop.base"];
        assert_eq!(base.config.materialized, "table");
        assert_eq!(base.schema, "public");
        assert_eq!(base.relation(), "public.base");
    }

    #[test]
    fn vars_precedence_cli_over_scoped_over_global() {
        let yml = format!(
            "{PROJECT}vars:\n  a: global\n  b: global\n  shop:\n    b: scoped\n    c: scoped\n"
        );
        let dir = write_project(&[
            ("dbt_project.yml", &yml),
            (
                "models/m.sql",
                "select '{{ var('a') }}-{{ var('b') }}-{{ var('c') }}-{{ var('d', 'dflt') }}' as v",
            ),
        ]);
        let mut options = LoadOptions::default();
        options.vars.insert("c".into(), Json::String("cli".into()));
        let project = Project::load(dir.path(), &options).expect("load");
        let sql = compile(&project, "model.shop.m");
        assert_eq!(sql, "select 'global-scoped-cli-dflt' as v");
    }

    #[test]
    fn missing_var_is_a_jinja_error_with_file_and_line() {
        let err = load_err(&[
            ("dbt_project.yml", PROJECT),
            ("models/m.sql", "select 1\n, {{ var('nope') }} as x"),
        ]);
        assert!(err.contains("models/m.sql line 2"), "{err}");
        assert!(err.contains("Required var 'nope' not found"), "{err}");
        assert!(err.contains("> , {{ var('nope') }} as x"), "{err}");
    }

    #[test]
    fn jinja_syntax_error_names_file_line_and_text() {
        let err = load_err(&[
            ("dbt_project.yml", PROJECT),
            ("models/m.sql", "select 1\nfrom x\n{% if %}\n"),
        ]);
        assert!(err.contains("models/m.sql line 3"), "{err}");
        assert!(err.contains("{% if %}"), "{err}");
    }

    #[test]
    fn error_inside_a_macro_names_the_macro_file() {
        let err = load_err(&[
            ("dbt_project.yml", PROJECT),
            (
                "macros/boom.sql",
                "{% macro ok() %}1{% endmacro %}\n\n{% macro boom() %}\n  {{ exceptions.raise_compiler_error('bad input') }}\n{% endmacro %}\n",
            ),
            ("models/m.sql", "select {{ boom() }}"),
        ]);
        assert!(err.contains("macros/boom.sql line 4"), "{err}");
        assert!(err.contains("bad input"), "{err}");
    }

    #[test]
    fn macros_namespaces_dispatch_and_return() {
        let (_dir, project) = load(&[
            ("dbt_project.yml", PROJECT),
            (
                "macros/util.sql",
                "{% macro double(x) %}{{ return(x * 2) }}{% endmacro %}\n{% macro polder__concat(fields) %}concat({{ fields | join(', ') }}){% endmacro %}\n{% macro my_thing() %}{{ return(adapter.dispatch('my_thing', 'shop')()) }}{% endmacro %}\n{% macro default__my_thing() %}default{% endmacro %}\n",
            ),
            (
                "models/m.sql",
                "select {{ double(21) }} as a, {{ shop.double(1) }} as b, {{ dbt.concat(['x', 'y']) }} as c, '{{ my_thing() }}' as d, {{ dbt.safe_cast('x', dbt.type_int()) }} as e",
            ),
        ]);
        let sql = compile(&project, "model.shop.m");
        assert_eq!(
            sql,
            "select 42 as a, 2 as b, concat(x, y) as c, 'default' as d, try_cast(x as integer) as e"
        );
        assert!(project.macros().iter().any(|m| m.name == "double"));
    }

    #[test]
    fn generate_schema_name_override_is_used() {
        let (_dir, project) = load(&[
            ("dbt_project.yml", PROJECT),
            (
                "macros/schema.sql",
                "{% macro generate_schema_name(custom_schema_name, node) -%}\n{%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}\n{%- endmacro %}\n",
            ),
            (
                "models/a.sql",
                "{{ config(schema='marts', alias='alpha') }}select 1",
            ),
            ("models/b.sql", "select * from {{ ref('a') }}"),
        ]);
        let a = &project.nodes["model.shop.a"];
        assert_eq!((a.schema.as_str(), a.alias.as_str()), ("marts", "alpha"));
        assert_eq!(
            compile(&project, "model.shop.b"),
            "select * from marts.alpha"
        );
    }

    #[test]
    fn duplicate_model_names_name_both_files() {
        let err = load_err(&[
            ("dbt_project.yml", PROJECT),
            ("models/a/orders.sql", "select 1"),
            ("models/b/orders.sql", "select 2"),
        ]);
        assert!(
            err.contains("models/a/orders.sql") && err.contains("models/b/orders.sql"),
            "{err}"
        );
    }

    #[test]
    fn generic_tests_forms_names_and_configs() {
        let (_dir, project) = load(&[
            (
                "dbt_project.yml",
                &format!("{PROJECT}data_tests:\n  shop:\n    +severity: warn\n"),
            ),
            (
                "models/orders.sql",
                "select 1 as id, 'a' as status, 1 as customer_id",
            ),
            ("models/customers.sql", "select 1 as id"),
            (
                "tests/generic/positive.sql",
                "{% test is_positive(model, column_name, strict=true) %}\nselect * from {{ model }} where {{ column_name }} {{ '<=' if strict else '<' }} 0\n{% endtest %}",
            ),
            (
                "models/schema.yml",
                "version: 2\nmodels:\n  - name: orders\n    data_tests:\n      - dbt.unique:\n          column_name: id\n    columns:\n      - name: id\n        tests:\n          - not_null:\n              config:\n                where: \"status = 'a'\"\n                severity: error\n          - is_positive:\n              strict: false\n      - name: status\n        data_tests:\n          - accepted_values:\n              arguments:\n                values: [a, b]\n              config:\n                error_if: '>10'\n                limit: 3\n      - name: customer_id\n        tests:\n          - relationships:\n              to: ref('customers')\n              field: id\n",
            ),
        ]);
        let by_name = |name: &str| {
            project
                .nodes
                .values()
                .find(|n| n.name == name)
                .unwrap_or_else(|| {
                    panic!(
                        "no test {name}: {:?}",
                        project.nodes.keys().collect::<Vec<_>>()
                    )
                })
        };
        let not_null = by_name("not_null_orders_id");
        assert_eq!(not_null.config.severity, "error");
        assert_eq!(
            not_null.config.where_clause.as_deref(),
            Some("status = 'a'")
        );
        assert!(
            not_null
                .unique_id
                .starts_with("test.shop.not_null_orders_id.")
        );
        let sql = compile(&project, &not_null.unique_id);
        assert!(
            sql.contains("from (select * from public.orders where status = 'a') dbt_subquery"),
            "{sql}"
        );
        let accepted = by_name("accepted_values_orders_status__a__b");
        assert_eq!(accepted.config.severity, "warn");
        assert_eq!(accepted.config.error_if, ">10");
        assert_eq!(accepted.config.limit, Some(3));
        let sql = compile(&project, &accepted.unique_id);
        assert!(
            sql.contains("where value_field not in (\n    'a','b'\n)"),
            "{sql}"
        );
        let relationships = by_name("relationships_orders_customer_id__id__ref_customers_");
        assert!(
            relationships
                .depends_on
                .contains(&"model.shop.customers".to_string())
        );
        assert!(
            relationships
                .depends_on
                .contains(&"model.shop.orders".to_string())
        );
        let positive = by_name("is_positive_orders_id__False");
        let sql = compile(&project, &positive.unique_id);
        assert_eq!(sql.trim(), "select * from public.orders where id < 0");
        let unique = by_name("unique_orders_id");
        assert_eq!(
            unique.test.as_ref().and_then(|t| t.column_name.clone()),
            None
        );
        assert!(compile(&project, &unique.unique_id).contains("id as unique_field"));
    }

    #[test]
    fn long_test_names_are_truncated_with_md5() {
        let name = generic_test_name(
            "accepted_values",
            "orders",
            Some("status"),
            &serde_json::json!({"values": ["placed", "shipped", "completed", "return_pending", "returned"]})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        // The alias dbt gives this test in the classic jaffle shop; the name stays whole.
        assert_eq!(
            name.alias,
            "accepted_values_orders_1ce6ab157c285f7cd2ac656013faf758"
        );
        assert_eq!(
            name.full,
            "accepted_values_orders_status__placed__shipped__completed__return_pending__returned"
        );
    }

    #[test]
    fn unknown_generic_test_is_reported() {
        let err = load_err(&[
            ("dbt_project.yml", PROJECT),
            ("models/m.sql", "select 1 as id"),
            (
                "models/s.yml",
                "version: 2\nmodels:\n  - name: m\n    columns:\n      - name: id\n        tests: [is_even]\n",
            ),
        ]);
        assert!(
            err.contains("models/s.yml") && err.contains("is_even"),
            "{err}"
        );
    }

    #[test]
    fn bad_yaml_reports_the_line() {
        let dir = write_project(&[
            ("dbt_project.yml", PROJECT),
            (
                "models/s.yml",
                "version: 2\nmodels:\n  - name: m\n   bad: [\n",
            ),
        ]);
        match Project::load(dir.path(), &LoadOptions::default()) {
            Err(TransformError::Yaml { path, line, .. }) => {
                assert!(path.ends_with("models/s.yml"));
                assert!(line.is_some());
            }
            other => panic!("expected a yaml error, got {other:?}"),
        }
    }

    #[test]
    fn sources_freshness_and_exposures() {
        let (_dir, project) = load(&[
            ("dbt_project.yml", PROJECT),
            (
                "models/stg.sql",
                "select * from {{ source('raw', 'events') }} join {{ source('raw', 'users') }} using (id)",
            ),
            (
                "models/sources.yml",
                "version: 2\nsources:\n  - name: raw\n    schema: landing\n    loaded_at_field: _loaded_at\n    freshness:\n      warn_after: {count: 12, period: hour}\n      error_after: {count: 1, period: day}\n    tables:\n      - name: events\n        identifier: Events_V2\n        columns:\n          - name: id\n            tests: [not_null]\n      - name: users\n        freshness: null\nexposures:\n  - name: dash\n    type: dashboard\n    owner: {name: Ann, email: ann@example.com}\n    maturity: high\n    depends_on:\n      - ref('stg')\n      - source('raw', 'events')\n",
            ),
        ]);
        let events = &project.sources["source.shop.raw.events"];
        assert_eq!(events.relation(), "landing.\"Events_V2\"");
        let freshness = events.freshness.as_ref().expect("freshness");
        assert_eq!(freshness.warn_after.as_ref().map(|r| r.count), Some(12));
        assert_eq!(events.loaded_at_field.as_deref(), Some("_loaded_at"));
        assert!(project.sources["source.shop.raw.users"].freshness.is_none());
        assert_eq!(
            compile(&project, "model.shop.stg"),
            "select * from landing.\"Events_V2\" join landing.users using (id)"
        );
        let stg = &project.nodes["model.shop.stg"];
        assert_eq!(
            stg.depends_on,
            vec!["source.shop.raw.events", "source.shop.raw.users"]
        );
        assert!(
            project
                .nodes
                .values()
                .any(|n| n.name == "source_not_null_raw_events_id")
        );
        let dash = &project.exposures["exposure.shop.dash"];
        assert_eq!(
            dash.depends_on,
            vec!["model.shop.stg", "source.shop.raw.events"]
        );
    }

    #[test]
    fn disabled_models_are_dropped() {
        let (_dir, project) = load(&[
            (
                "dbt_project.yml",
                &format!("{PROJECT}models:\n  shop:\n    old:\n      +enabled: false\n"),
            ),
            ("models/old/legacy.sql", "select 1"),
            ("models/new.sql", "{{ config(enabled=false) }}select 1"),
            ("models/kept.sql", "select 1"),
        ]);
        assert_eq!(
            project.nodes.keys().collect::<Vec<_>>(),
            vec!["model.shop.kept"]
        );
        assert!(project.disabled.contains_key("model.shop.legacy"));
        assert!(project.disabled.contains_key("model.shop.new"));
    }

    #[test]
    fn project_yml_env_var_rendering_and_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        match Project::load(dir.path(), &LoadOptions::default()) {
            Err(TransformError::Project { message, .. }) => {
                assert!(message.contains("dbt_project.yml"))
            }
            other => panic!("expected project error, got {other:?}"),
        }
        let yml = format!(
            "{PROJECT}vars:\n  home_set: \"{{{{ env_var('POLDER_TRANSFORM_TEST_UNSET', 'fallback') }}}}\"\n"
        );
        let (_dir, project) = load(&[
            ("dbt_project.yml", &yml),
            ("models/m.sql", "select '{{ var('home_set') }}'"),
        ]);
        assert_eq!(compile(&project, "model.shop.m"), "select 'fallback'");
    }
}
