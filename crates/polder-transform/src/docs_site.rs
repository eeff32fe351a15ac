//! `polder docs generate`: a static documentation site for a dbt project, like `dbt docs generate`.
//!
//! The site is one self-contained `index.html` (inline CSS and vanilla JS, the page data embedded
//! as JSON) so it works from `file://` and can be served from memory, plus `manifest.json` and
//! `catalog.json` copies for tools that read dbt's artifacts.

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What the site is built from: the manifest (dbt v12 shape), optional run results and the
/// actual column types per relation (`schema.alias` or a relation name) read from the catalog.
pub struct DocsInput<'a> {
    pub manifest: &'a Value,
    pub run_results: Option<&'a Value>,
    pub column_types: &'a BTreeMap<String, Vec<(String, String)>>,
}

/// Writes `index.html`, `manifest.json`, `catalog.json` (and `run_results.json` when given)
/// into `dir`, creating it if needed. Returns the paths written.
pub fn write_docs_site(dir: &Path, input: &DocsInput) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();

    let index_path = dir.join("index.html");
    std::fs::write(&index_path, render_index_html(input))?;
    written.push(index_path);

    let manifest_path = dir.join("manifest.json");
    std::fs::write(&manifest_path, to_json_bytes(input.manifest)?)?;
    written.push(manifest_path);

    let catalog_path = dir.join("catalog.json");
    std::fs::write(&catalog_path, to_json_bytes(&build_catalog(input))?)?;
    written.push(catalog_path);

    if let Some(run_results) = input.run_results {
        let run_results_path = dir.join("run_results.json");
        std::fs::write(&run_results_path, to_json_bytes(run_results)?)?;
        written.push(run_results_path);
    }
    Ok(written)
}

/// The documentation page as one HTML string (for serving from memory).
pub fn render_index_html(input: &DocsInput) -> String {
    let data = build_page_data(input);
    let project_name = data["project"]
        .as_str()
        .unwrap_or("dbt project")
        .to_string();
    let mut html = String::with_capacity(PAGE_CSS.len() + PAGE_JS.len() + 64 * 1024);
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    html.push_str("<meta name=\"color-scheme\" content=\"light dark\">\n<title>");
    html.push_str(&escape_html(&project_name));
    html.push_str(" · docs</title>\n<style>");
    html.push_str(PAGE_CSS);
    html.push_str("</style>\n</head>\n<body>\n");
    html.push_str(PAGE_BODY);
    html.push_str("\n<script type=\"application/json\" id=\"docs-data\">");
    html.push_str(&script_safe_json(&data));
    html.push_str("</script>\n<script>");
    html.push_str(PAGE_JS);
    html.push_str("</script>\n</body>\n</html>\n");
    html
}

fn to_json_bytes(value: &Value) -> std::io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(std::io::Error::other)
}

/// JSON that can sit inside a `<script>` element: `<`, `>` and `&` only ever occur inside JSON
/// strings, so replacing them with `\u` escapes keeps the JSON equal while making `</script>`
/// and `<!--` impossible; U+2028/2029 are escaped for old JS parsers.
fn script_safe_json(value: &Value) -> String {
    let raw = value.to_string();
    let mut out = String::with_capacity(raw.len() + raw.len() / 16);
    for ch in raw.chars() {
        match ch {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            other => out.push(other),
        }
    }
    out
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

fn str_at<'v>(value: &'v Value, key: &str) -> &'v str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(items) = value.and_then(Value::as_array) {
        for item in items {
            if let Some(text) = item.as_str()
                && !out.iter().any(|seen: &String| seen == text)
            {
                out.push(text.to_string());
            }
        }
    }
    out
}

/// Relation names as the catalog keys them: quotes dropped, lowercase.
fn normalize_relation(name: &str) -> String {
    name.chars()
        .filter(|ch| *ch != '"' && *ch != '`')
        .collect::<String>()
        .to_lowercase()
}

/// The names under which a node's relation may appear in `column_types`, most specific first.
fn relation_candidates(node: &Value) -> Vec<String> {
    let schema = str_at(node, "schema");
    let relation_name = str_at(node, "relation_name");
    let mut table = str_at(node, "alias");
    if table.is_empty() {
        table = str_at(node, "identifier");
    }
    if table.is_empty() {
        table = str_at(node, "name");
    }
    let mut candidates = Vec::new();
    if !relation_name.is_empty() {
        candidates.push(normalize_relation(relation_name));
    }
    if !schema.is_empty() && !table.is_empty() {
        candidates.push(normalize_relation(&format!("{schema}.{table}")));
    }
    if !table.is_empty() {
        candidates.push(normalize_relation(table));
    }
    candidates
}

fn display_relation(node: &Value) -> String {
    let schema = str_at(node, "schema");
    let mut table = str_at(node, "alias");
    if table.is_empty() {
        table = str_at(node, "identifier");
    }
    if table.is_empty() {
        table = str_at(node, "name");
    }
    if schema.is_empty() {
        return table.to_string();
    }
    format!("{schema}.{table}")
}

struct CatalogIndex<'a> {
    by_relation: HashMap<String, &'a Vec<(String, String)>>,
}

impl<'a> CatalogIndex<'a> {
    fn new(column_types: &'a BTreeMap<String, Vec<(String, String)>>) -> Self {
        let mut by_relation = HashMap::new();
        for (relation, columns) in column_types {
            by_relation.insert(normalize_relation(relation), columns);
        }
        CatalogIndex { by_relation }
    }

    fn columns_for(&self, node: &Value) -> Option<&'a Vec<(String, String)>> {
        for candidate in relation_candidates(node) {
            if let Some(columns) = self.by_relation.get(&candidate) {
                return Some(columns);
            }
        }
        None
    }
}

/// dbt's catalog.json shape, with the relations found in `column_types`.
fn build_catalog(input: &DocsInput) -> Value {
    let catalog_index = CatalogIndex::new(input.column_types);
    let generated_at = input
        .manifest
        .pointer("/metadata/generated_at")
        .cloned()
        .unwrap_or(Value::Null);
    let mut nodes = Map::new();
    let mut sources = Map::new();
    let add_entry = |target: &mut Map<String, Value>, unique_id: &str, node: &Value| {
        let Some(columns) = catalog_index.columns_for(node) else {
            return;
        };
        let mut column_map = Map::new();
        for (position, (column, data_type)) in columns.iter().enumerate() {
            column_map.insert(
                column.clone(),
                json!({"type": data_type, "index": position + 1, "name": column, "comment": null}),
            );
        }
        let materialized = node.pointer("/config/materialized").and_then(Value::as_str);
        let relation_type = if materialized == Some("view") {
            "VIEW"
        } else {
            "BASE TABLE"
        };
        let mut table = str_at(node, "alias");
        if table.is_empty() {
            table = str_at(node, "identifier");
        }
        if table.is_empty() {
            table = str_at(node, "name");
        }
        target.insert(
            unique_id.to_string(),
            json!({
                "metadata": {"type": relation_type, "schema": str_at(node, "schema"), "name": table,
                              "database": node.get("database").cloned().unwrap_or(Value::Null),
                              "comment": null, "owner": null},
                "columns": column_map,
                "stats": {"has_stats": {"id": "has_stats", "label": "Has Stats?", "value": false,
                                         "include": false, "description": "Indicates whether there are statistics for this table"}},
                "unique_id": unique_id,
            }),
        );
    };
    if let Some(manifest_nodes) = input.manifest.get("nodes").and_then(Value::as_object) {
        for (unique_id, node) in manifest_nodes {
            if matches!(str_at(node, "resource_type"), "model" | "seed" | "snapshot") {
                add_entry(&mut nodes, unique_id, node);
            }
        }
    }
    if let Some(manifest_sources) = input.manifest.get("sources").and_then(Value::as_object) {
        for (unique_id, source) in manifest_sources {
            add_entry(&mut sources, unique_id, source);
        }
    }
    json!({
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/catalog/v1.json",
                     "generated_at": generated_at, "invocation_id": null, "env": {}},
        "nodes": nodes,
        "sources": sources,
        "errors": null,
    })
}

/// A generic or singular test as shown on the node it tests.
struct TestSummary {
    unique_id: String,
    label: String,
    kind: String,
    detail: String,
    column: Option<String>,
    attached_to: Option<String>,
}

fn summarize_test(unique_id: &str, test: &Value) -> TestSummary {
    let metadata = test.get("test_metadata");
    let kind = metadata
        .and_then(|meta| meta.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kwargs = metadata.and_then(|meta| meta.get("kwargs"));
    let label = match kind.as_str() {
        "" => str_at(test, "name").to_string(),
        other => other.replace('_', " "),
    };
    let detail = match (kind.as_str(), kwargs) {
        ("accepted_values", Some(kwargs)) => {
            let values: Vec<String> = kwargs
                .get("values")
                .and_then(Value::as_array)
                .map(|values| values.iter().map(json_scalar_text).collect())
                .unwrap_or_default();
            format!("values: {}", values.join(", "))
        }
        ("relationships", Some(kwargs)) => format!(
            "to {} field {}",
            kwargs.get("to").map(json_scalar_text).unwrap_or_default(),
            kwargs
                .get("field")
                .map(json_scalar_text)
                .unwrap_or_default()
        ),
        _ => str_at(test, "name").to_string(),
    };
    let column = test
        .get("column_name")
        .and_then(Value::as_str)
        .or_else(|| {
            kwargs
                .and_then(|kwargs| kwargs.get("column_name"))
                .and_then(Value::as_str)
        })
        .filter(|column| !column.is_empty())
        .map(str::to_string);
    // `attached_node` is the tested model; older manifests only have depends_on, where the
    // first dependency is the best guess (relationships tests depend on two nodes).
    let attached_to = test
        .get("attached_node")
        .and_then(Value::as_str)
        .filter(|attached| !attached.is_empty())
        .map(str::to_string)
        .or_else(|| {
            string_list(test.pointer("/depends_on/nodes"))
                .into_iter()
                .next()
        });
    TestSummary {
        unique_id: unique_id.to_string(),
        label,
        kind: if kind.is_empty() {
            "singular".to_string()
        } else {
            kind
        },
        detail,
        column,
        attached_to,
    }
}

fn json_scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn run_status_by_id(run_results: Option<&Value>) -> HashMap<String, Value> {
    let mut by_id = HashMap::new();
    let Some(results) = run_results
        .and_then(|run_results| run_results.get("results"))
        .and_then(Value::as_array)
    else {
        return by_id;
    };
    for result in results {
        let unique_id = str_at(result, "unique_id");
        if unique_id.is_empty() {
            continue;
        }
        by_id.insert(
            unique_id.to_string(),
            json!({
                "status": result.get("status").cloned().unwrap_or(Value::Null),
                "time": result.get("execution_time").cloned().unwrap_or(Value::Null),
                "message": result.get("message").cloned().unwrap_or(Value::Null),
                "failures": result.get("failures").cloned().unwrap_or(Value::Null),
            }),
        );
    }
    by_id
}

/// Model folders below the model-path root: `models/staging/stg_x.sql` → `["staging"]`.
fn folder_of(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path
        .split(['/', '\\'])
        .filter(|part| !part.is_empty())
        .map(str::to_string)
        .collect();
    parts.pop();
    if !parts.is_empty() {
        parts.remove(0);
    }
    parts
}

/// Columns in catalog order (actual types) merged with the documented ones; documented
/// columns missing from the catalog follow in their own order.
fn merge_columns(
    node: &Value,
    catalog_columns: Option<&Vec<(String, String)>>,
    tests: &[&TestSummary],
    run_by_id: &HashMap<String, Value>,
) -> Vec<Value> {
    let documented: Vec<(String, &Value)> = node
        .get("columns")
        .and_then(Value::as_object)
        .map(|columns| {
            columns
                .iter()
                .map(|(key, column)| {
                    let name = column.get("name").and_then(Value::as_str).unwrap_or(key);
                    (name.to_string(), column)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut merged: Vec<(String, String, String)> = Vec::new();
    if let Some(catalog_columns) = catalog_columns {
        for (name, data_type) in catalog_columns {
            let description = documented
                .iter()
                .find(|(doc_name, _)| doc_name.eq_ignore_ascii_case(name))
                .map(|(_, column)| str_at(column, "description").to_string())
                .unwrap_or_default();
            merged.push((name.clone(), data_type.clone(), description));
        }
    }
    for (name, column) in &documented {
        if merged
            .iter()
            .any(|(seen, _, _)| seen.eq_ignore_ascii_case(name))
        {
            continue;
        }
        merged.push((
            name.clone(),
            str_at(column, "data_type").to_string(),
            str_at(column, "description").to_string(),
        ));
    }
    let mut out = Vec::new();
    for (name, data_type, description) in merged {
        let column_tests: Vec<Value> = tests
            .iter()
            .filter(|test| {
                test.column
                    .as_deref()
                    .is_some_and(|column| column.eq_ignore_ascii_case(&name))
            })
            .map(|test| test_json(test, run_by_id))
            .collect();
        out.push(json!({"name": name, "type": data_type, "description": description, "tests": column_tests}));
    }
    out
}

fn test_json(test: &TestSummary, run_by_id: &HashMap<String, Value>) -> Value {
    let status = run_by_id
        .get(&test.unique_id)
        .and_then(|run| run.get("status"))
        .cloned()
        .unwrap_or(Value::Null);
    json!({"id": test.unique_id, "label": test.label, "kind": test.kind, "detail": test.detail,
           "column": test.column, "status": status})
}

/// The compact data the page renders from: one entry per source, seed, model, snapshot,
/// exposure and test, with parents/children limited to documented entries.
fn build_page_data(input: &DocsInput) -> Value {
    let manifest = input.manifest;
    let empty = Map::new();
    let manifest_nodes = manifest
        .get("nodes")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let manifest_sources = manifest
        .get("sources")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let manifest_exposures = manifest
        .get("exposures")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let run_by_id = run_status_by_id(input.run_results);
    let catalog_index = CatalogIndex::new(input.column_types);

    let mut tests = Vec::new();
    for (unique_id, node) in manifest_nodes {
        if str_at(node, "resource_type") == "test" {
            tests.push(summarize_test(unique_id, node));
        }
    }

    // (unique_id, resource type, manifest entry) for everything that gets a page.
    let mut entries: Vec<(&str, &str, &Value)> = Vec::new();
    for (unique_id, source) in manifest_sources {
        entries.push((unique_id, "source", source));
    }
    for (unique_id, node) in manifest_nodes {
        let resource_type = str_at(node, "resource_type");
        if matches!(resource_type, "model" | "seed" | "snapshot" | "test") {
            entries.push((unique_id, resource_type, node));
        }
    }
    for (unique_id, exposure) in manifest_exposures {
        entries.push((unique_id, "exposure", exposure));
    }

    let documented: std::collections::HashSet<&str> =
        entries.iter().map(|(id, _, _)| *id).collect();
    let mut parents_of: HashMap<&str, Vec<String>> = HashMap::new();
    let mut children_of: HashMap<String, Vec<String>> = HashMap::new();
    for (unique_id, _, entry) in &entries {
        let mut parents = string_list(entry.pointer("/depends_on/nodes"));
        if parents.is_empty() {
            parents = string_list(
                manifest
                    .get("parent_map")
                    .and_then(|map| map.get(*unique_id)),
            );
        }
        parents.retain(|parent| documented.contains(parent.as_str()));
        for parent in &parents {
            children_of
                .entry(parent.clone())
                .or_default()
                .push(unique_id.to_string());
        }
        parents_of.insert(unique_id, parents);
    }

    let type_of: HashMap<&str, &str> = entries.iter().map(|(id, kind, _)| (*id, *kind)).collect();
    let mut page_nodes = Vec::new();
    for (unique_id, resource_type, entry) in &entries {
        let own_tests: Vec<&TestSummary> = tests
            .iter()
            .filter(|test| test.attached_to.as_deref() == Some(*unique_id))
            .collect();
        let catalog_columns = if *resource_type == "test" {
            None
        } else {
            catalog_index.columns_for(entry)
        };
        let columns = merge_columns(entry, catalog_columns, &own_tests, &run_by_id);
        let table_tests: Vec<Value> = own_tests
            .iter()
            .map(|test| test_json(test, &run_by_id))
            .collect();
        let parents = parents_of.get(unique_id).cloned().unwrap_or_default();
        // Tests are listed with their model, not as downstream dependants.
        let children: Vec<String> = children_of
            .get(*unique_id)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|child| type_of.get(child.as_str()) != Some(&"test"))
            .collect();
        let path = {
            let original = str_at(entry, "original_file_path");
            if original.is_empty() {
                str_at(entry, "path")
            } else {
                original
            }
        };
        let materialized = entry
            .pointer("/config/materialized")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut tags = string_list(entry.get("tags"));
        for tag in string_list(entry.pointer("/config/tags")) {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        let mut page_node = json!({
            "id": unique_id,
            "type": resource_type,
            "name": str_at(entry, "name"),
            "description": str_at(entry, "description"),
            "path": path,
            "folder": folder_of(path),
            "relation": if *resource_type == "exposure" || *resource_type == "test" { String::new() } else { display_relation(entry) },
            "materialized": materialized,
            "tags": tags,
            "columns": columns,
            "tests": table_tests,
            "depends_on": parents,
            "referenced_by": children,
            "raw_code": str_at(entry, "raw_code"),
            "compiled_code": str_at(entry, "compiled_code"),
            "run": run_by_id.get(*unique_id).cloned().unwrap_or(Value::Null),
        });
        let extra = match *resource_type {
            "source" => json!({
                "source_name": str_at(entry, "source_name"),
                "loaded_at_field": entry.get("loaded_at_field").cloned().unwrap_or(Value::Null),
                "freshness": entry.get("freshness").cloned().unwrap_or(Value::Null),
                "source_description": str_at(entry, "source_description"),
            }),
            "exposure" => json!({
                "exposure_type": str_at(entry, "type"),
                "owner": entry.get("owner").cloned().unwrap_or(Value::Null),
                "url": str_at(entry, "url"),
                "maturity": str_at(entry, "maturity"),
                "label": str_at(entry, "label"),
            }),
            "test" => {
                let summary = summarize_test(unique_id, entry);
                json!({"test_kind": summary.kind, "test_detail": summary.detail,
                       "attached_node": summary.attached_to, "column_name": summary.column})
            }
            _ => json!({}),
        };
        if let (Some(target), Some(extra_fields)) = (page_node.as_object_mut(), extra.as_object()) {
            for (key, value) in extra_fields {
                target.insert(key.clone(), value.clone());
            }
        }
        page_nodes.push(page_node);
    }

    let run_generated_at = input
        .run_results
        .and_then(|run_results| run_results.pointer("/metadata/generated_at"))
        .cloned()
        .unwrap_or(Value::Null);
    json!({
        "project": manifest.pointer("/metadata/project_name").and_then(Value::as_str).unwrap_or("dbt project"),
        "generated_at": manifest.pointer("/metadata/generated_at").cloned().unwrap_or(Value::Null),
        "run_generated_at": run_generated_at,
        "has_run_results": input.run_results.is_some(),
        "nodes": page_nodes,
    })
}

/// Static skeleton; everything inside is filled in by `PAGE_JS` from the embedded data.
const PAGE_BODY: &str = r##"<div id="app">
<aside id="sidebar">
  <div class="brand"><a href="#!/overview" id="project-name">dbt project</a><span class="brand-sub">docs</span></div>
  <div class="search"><input id="search" type="search" placeholder="Search models, columns… ( / )" autocomplete="off" spellcheck="false" aria-label="Search"></div>
  <nav id="tree" aria-label="Project tree"></nav>
  <div id="results" hidden></div>
</aside>
<div id="content">
  <header id="topbar">
    <a class="tab" id="tab-overview" href="#!/overview">Overview</a>
    <a class="tab" id="tab-details" href="#!/overview">Details</a>
    <a class="tab" id="tab-lineage" href="#!/lineage">Lineage</a>
    <span class="spacer"></span>
    <span id="generated" class="muted small"></span>
  </header>
  <main id="main"><noscript>This documentation site needs JavaScript.</noscript></main>
</div>
</div>"##;

const PAGE_CSS: &str = r##"
:root{--accent-strong:#1c6fd6;--sel-fg:#fff;--bg:#fff;--panel:#f6f7f9;--panel2:#eef1f4;--fg:#1f2328;--muted:#656d76;--border:#d8dee4;--accent:#1c6fd6;--hover:rgba(28,111,214,.08);--code:#f6f8fa;
--t-source:#2b8a3e;--t-seed:#6c757d;--t-model:#1c6fd6;--t-snapshot:#7048e8;--t-exposure:#e8590c;--t-test:#0c8599;
--ok:#2b8a3e;--bad:#c92a2a;--warn:#e67700;--skip:#868e96;--node-bg:#fff;--edge:#aab4bf;--shadow:0 1px 3px rgba(0,0,0,.08),0 4px 16px rgba(0,0,0,.06)}
@media (prefers-color-scheme:dark){:root{--sel-fg:#0b0d10;--bg:#0f1115;--panel:#161a20;--panel2:#1d232b;--fg:#e6e8eb;--muted:#9aa4af;--border:#2a313b;--accent:#5aa9f5;--hover:rgba(90,169,245,.12);--code:#151a21;
--t-source:#51cf66;--t-seed:#adb5bd;--t-model:#4dabf7;--t-snapshot:#9775fa;--t-exposure:#ffa94d;--t-test:#3bc9db;
--ok:#51cf66;--bad:#ff6b6b;--warn:#fcc419;--skip:#868e96;--node-bg:#1a1f26;--edge:#4a5563;--shadow:0 1px 3px rgba(0,0,0,.4),0 4px 16px rgba(0,0,0,.3)}}
*{box-sizing:border-box}
html,body{margin:0;height:100%;background:var(--bg);color:var(--fg);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:12.5px}
#app{display:grid;grid-template-columns:300px 1fr;height:100vh}
#sidebar{display:flex;flex-direction:column;min-height:0;background:var(--panel);border-right:1px solid var(--border)}
.brand{padding:16px 16px 8px;display:flex;align-items:baseline;gap:8px}
.brand a{font-weight:650;font-size:16px;color:var(--fg)}.brand-sub{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.06em}
.search{padding:4px 12px 10px}
.search input{width:100%;padding:7px 10px;border:1px solid var(--border);border-radius:6px;background:var(--bg);color:var(--fg);font:inherit;outline:none}
.search input:focus{border-color:var(--accent);box-shadow:0 0 0 3px var(--hover)}
#tree,#results{overflow:auto;flex:1;padding:0 6px 16px}
details>summary{list-style:none;cursor:pointer;user-select:none}details>summary::-webkit-details-marker{display:none}
.sec>summary{font-size:11px;font-weight:650;letter-spacing:.07em;text-transform:uppercase;color:var(--muted);padding:10px 10px 4px}
.folder>summary{padding:2px 8px;border-radius:5px;color:var(--fg)}
.folder>summary:hover{background:var(--hover)}
details>summary::before{content:"";display:inline-block;width:5px;height:5px;margin:0 8px 2px 2px;border-right:1.5px solid var(--muted);border-bottom:1.5px solid var(--muted);transform:rotate(-45deg);transition:transform .1s}
details[open]>summary::before{transform:rotate(45deg)}
.folder>.items{padding-left:14px}
.leaf{display:flex;align-items:center;gap:8px;padding:2px 8px 2px 22px;border-radius:5px;color:var(--fg);white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.leaf:hover{background:var(--hover);text-decoration:none}
.leaf.active{background:var(--accent-strong);color:#fff}.leaf.active .dot{box-shadow:0 0 0 2px #fff}
.leaf .nm{overflow:hidden;text-overflow:ellipsis}
.dot{flex:none;width:8px;height:8px;border-radius:50%;background:var(--c,var(--muted))}
.t-source{--c:var(--t-source)}.t-seed{--c:var(--t-seed)}.t-model{--c:var(--t-model)}.t-snapshot{--c:var(--t-snapshot)}.t-exposure{--c:var(--t-exposure)}.t-test{--c:var(--t-test)}
.result{display:block;padding:6px 10px;border-radius:6px;color:var(--fg)}.result:hover,.result.first{background:var(--hover);text-decoration:none}
.result .rn{display:flex;align-items:center;gap:8px;font-weight:550}.result .rc{color:var(--muted);font-size:12px;padding-left:16px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.empty{color:var(--muted);padding:12px}
#content{display:flex;flex-direction:column;min-width:0;min-height:0}
#topbar{display:flex;align-items:center;gap:4px;padding:0 20px;height:46px;border-bottom:1px solid var(--border);flex:none}
.tab{padding:12px 12px;color:var(--muted);border-bottom:2px solid transparent;font-weight:550}
.tab:hover{color:var(--fg);text-decoration:none}.tab.on{color:var(--fg);border-bottom-color:var(--accent)}.tab.off{opacity:.4;pointer-events:none}
.spacer{flex:1}.muted{color:var(--muted)}.small{font-size:12px}
#main{flex:1;overflow:auto;min-height:0;position:relative}
.page{max-width:1100px;padding:24px 32px 64px}
.kind{display:inline-flex;align-items:center;gap:6px;font-size:12px;font-weight:600;text-transform:uppercase;letter-spacing:.06em;color:var(--c)}
h1{font-size:26px;line-height:1.25;margin:4px 0 6px;font-weight:650;word-break:break-word}
h2{font-size:15px;margin:28px 0 10px;font-weight:650;padding-bottom:6px;border-bottom:1px solid var(--border)}
.sub{color:var(--muted);display:flex;flex-wrap:wrap;gap:6px 16px;align-items:center}
.desc{white-space:pre-wrap;max-width:75ch;margin:8px 0 0}
.desc.none{color:var(--muted);font-style:italic}
.props{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:10px;margin:18px 0 4px}
.prop{background:var(--panel);border:1px solid var(--border);border-radius:8px;padding:8px 12px;min-width:0}
.prop .k{font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted)}.prop .v{overflow-wrap:anywhere}
.chip{display:inline-block;padding:1px 8px;border-radius:999px;background:var(--panel2);border:1px solid var(--border);font-size:12px;margin:1px 4px 1px 0;white-space:nowrap}
.badge{display:inline-block;padding:1px 7px;border-radius:4px;font-size:11.5px;font-weight:600;margin:2px 4px 2px 0;border:1px solid var(--border);color:var(--fg);background:var(--panel2);white-space:nowrap}
a.badge:hover{text-decoration:none;border-color:var(--accent)}
.st-pass,.st-success{--s:var(--ok)}.st-fail,.st-error,.st-runtime-error{--s:var(--bad)}.st-warn{--s:var(--warn)}.st-skipped{--s:var(--skip)}
.badge[class*=" st-"]{border-color:var(--s);color:var(--s)}
.status{display:inline-flex;align-items:center;gap:6px;font-weight:600;color:var(--s,var(--muted))}.status::before{content:"";width:8px;height:8px;border-radius:50%;background:var(--s,var(--muted))}
table{border-collapse:collapse;width:100%}
th{text-align:left;font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);font-weight:600;padding:6px 10px;border-bottom:1px solid var(--border)}
td{padding:7px 10px;border-bottom:1px solid var(--border);vertical-align:top}
tr:hover td{background:var(--hover)}
td.cn{font-weight:600;white-space:nowrap}td.ct{color:var(--muted);white-space:nowrap}td.cd{white-space:pre-wrap;max-width:50ch}
.cols2{display:grid;grid-template-columns:1fr 1fr;gap:24px}
.reflist{list-style:none;margin:0;padding:0}.reflist li{padding:3px 0}.reflist a{display:inline-flex;align-items:center;gap:8px}
.codebox{border:1px solid var(--border);border-radius:8px;overflow:hidden}
.codetabs{display:flex;gap:2px;background:var(--panel);border-bottom:1px solid var(--border);padding:0 6px;align-items:center}
.codetabs button{font:inherit;font-size:13px;background:none;border:0;color:var(--muted);padding:8px 10px;cursor:pointer;border-bottom:2px solid transparent}
.codetabs button.on{color:var(--fg);border-bottom-color:var(--accent)}
.codetabs .copy{margin-left:auto;font-size:12px}
pre{margin:0;padding:14px 16px;background:var(--code);overflow:auto;max-height:520px;tab-size:4}
.btn{display:inline-flex;align-items:center;gap:6px;font:inherit;font-size:13px;padding:5px 10px;border:1px solid var(--border);border-radius:6px;background:var(--bg);color:var(--fg);cursor:pointer}
.btn:hover{border-color:var(--accent);text-decoration:none}.btn.on{background:var(--accent-strong);border-color:var(--accent-strong);color:#fff}
.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(140px,1fr));gap:12px;margin:20px 0}
.stat{border:1px solid var(--border);border-radius:10px;padding:12px 14px;background:var(--panel)}
.stat .n{font-size:24px;font-weight:650}.stat .l{color:var(--muted);font-size:12px;display:flex;align-items:center;gap:6px}
/* lineage */
#lineage{position:absolute;inset:0;display:flex;flex-direction:column}
.ltool{display:flex;align-items:center;gap:8px;padding:8px 16px;border-bottom:1px solid var(--border);flex-wrap:wrap;background:var(--bg)}
.legend{display:flex;gap:12px;margin-left:auto;color:var(--muted);font-size:12px}.legend span{display:inline-flex;align-items:center;gap:5px}
.lwrap{position:relative;flex:1;min-height:0;background:var(--panel)}
.lwrap svg{width:100%;height:100%;display:block;cursor:grab;touch-action:none;user-select:none}
.lwrap svg.dragging{cursor:grabbing}
.dag-node{cursor:pointer}
.dag-node rect.box{fill:var(--node-bg);stroke:var(--c);stroke-width:1.4}
.dag-node rect.bar{fill:var(--c)}
.dag-node text{fill:var(--fg);font-size:12.5px;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;pointer-events:none}
.dag-node:hover rect.box{stroke-width:2.4}
.dag-node.sel rect.box{fill:var(--c);stroke-width:2.4}.dag-node.sel text{fill:var(--sel-fg);font-weight:600}
.dag-node.dim,.dag-edge.dim{opacity:.18}
.dag-edge{fill:none;stroke:var(--edge);stroke-width:1.3}
.dag-edge.hi{stroke:var(--accent);stroke-width:2}
.arrow{fill:var(--edge)}.arrow-hi{fill:var(--accent)}
.card{position:absolute;right:16px;top:16px;width:300px;background:var(--bg);border:1px solid var(--border);border-radius:10px;padding:12px 14px;box-shadow:var(--shadow)}
.card h3{margin:2px 0 4px;font-size:15px;word-break:break-word}.card p{margin:6px 0;color:var(--muted);max-height:7.5em;overflow:hidden;white-space:pre-wrap}
.card .row{display:flex;gap:8px;align-items:center;flex-wrap:wrap;margin-top:8px}
.hint{position:absolute;left:16px;bottom:12px;color:var(--muted);font-size:12px;background:var(--bg);padding:3px 8px;border-radius:6px;border:1px solid var(--border)}
@media (max-width:800px){#app{grid-template-columns:1fr;grid-template-rows:40vh 1fr}#sidebar{border-right:0;border-bottom:1px solid var(--border)}.cols2{grid-template-columns:1fr}.page{padding:16px}}
"##;

/// The page logic. `layoutDag` is pure (no DOM) and exported through `module` when run under
/// Node so the tests can check it on large graphs; the rest only runs in a browser.
const PAGE_JS: &str = r###"
(function () {
"use strict";

// ---------- DAG layout (pure) ----------
// Sugiyama-style: longest-path layers, dummy vertices on long edges, barycentric ordering
// sweeps keeping the order with the fewest crossings, then balanced vertical placement.
function layoutDag(ids, edgeList, options) {
  var o = Object.assign({ nodeWidth: 200, nodeHeight: 34, colGap: 84, rowGap: 14, dummyGap: 8,
    sweeps: 12, lastLayer: null }, options || {});
  var n = ids.length, i, l;
  var idx = new Map();
  ids.forEach(function (id, k) { idx.set(id, k); });
  var parents = [], children = [];
  for (i = 0; i < n; i++) { parents.push([]); children.push([]); }
  var seen = new Set(), edges = [];
  edgeList.forEach(function (e) {
    var a = idx.get(e[0]), b = idx.get(e[1]);
    if (a === undefined || b === undefined || a === b) return;
    var key = a + ">" + b;
    if (seen.has(key)) return;
    seen.add(key);
    edges.push([a, b]); children[a].push(b); parents[b].push(a);
  });
  // Longest path from the roots (Kahn); vertices on a cycle keep the layer reached so far.
  var layer = new Array(n).fill(0), indeg = parents.map(function (p) { return p.length; });
  var queue = [];
  for (i = 0; i < n; i++) if (indeg[i] === 0) queue.push(i);
  for (var q = 0; q < queue.length; q++) {
    var v = queue[q];
    children[v].forEach(function (c) {
      if (layer[v] + 1 > layer[c]) layer[c] = layer[v] + 1;
      if (--indeg[c] === 0) queue.push(c);
    });
  }
  var maxLayer = 0;
  for (i = 0; i < n; i++) if (layer[i] > maxLayer) maxLayer = layer[i];
  if (o.lastLayer) {
    for (i = 0; i < n; i++) if (children[i].length === 0 && o.lastLayer(ids[i])) layer[i] = maxLayer;
  }
  // Virtual graph: real vertices 0..n-1, then one dummy per layer crossed by a long edge.
  var vLayer = layer.slice(), vUp = [], vDown = [], dummy = [];
  for (i = 0; i < n; i++) { vUp.push([]); vDown.push([]); dummy.push(false); }
  var routes = [];
  edges.forEach(function (e) {
    var a = e[0], b = e[1];
    if (layer[b] <= layer[a]) { routes.push({ a: a, b: b, chain: [a, b], back: true }); return; }
    var prev = a, chain = [a];
    for (var ll = layer[a] + 1; ll < layer[b]; ll++) {
      var d = vLayer.length;
      vLayer.push(ll); vUp.push([prev]); vDown.push([]); dummy.push(true);
      vDown[prev].push(d); chain.push(d); prev = d;
    }
    vDown[prev].push(b); vUp[b].push(prev); chain.push(b);
    routes.push({ a: a, b: b, chain: chain, back: false });
  });
  var V = vLayer.length;
  var layers = [];
  for (l = 0; l <= maxLayer; l++) layers.push([]);
  for (i = 0; i < V; i++) layers[vLayer[i]].push(i);
  var pos = new Array(V);
  function index(l) { layers[l].forEach(function (v, k) { pos[v] = k; }); }
  for (l = 0; l <= maxLayer; l++) index(l);

  function reorder(l, nb) {
    var arr = layers[l], movable = [], slots = [];
    arr.forEach(function (v, k) {
      var ns = nb[v];
      if (ns.length === 0) return; // vertices without neighbours keep their slot
      var s = 0;
      for (var j = 0; j < ns.length; j++) s += pos[ns[j]];
      movable.push({ v: v, key: s / ns.length, k: k });
      slots.push(k);
    });
    movable.sort(function (x, y) { return x.key - y.key || x.k - y.k; });
    for (var j = 0; j < movable.length; j++) arr[slots[j]] = movable[j].v;
    index(l);
  }
  // Crossings between layer l and l+1, counted with a Fenwick tree: O(E log V).
  function crossings(l) {
    var segs = [];
    layers[l].forEach(function (u) { vDown[u].forEach(function (w) { segs.push([pos[u], pos[w]]); }); });
    segs.sort(function (x, y) { return x[0] - y[0] || x[1] - y[1]; });
    var size = layers[l + 1].length, tree = new Array(size + 1).fill(0), count = 0, total = 0;
    for (var s = 0; s < segs.length; s++) {
      var p = segs[s][1] + 1, le = 0;
      for (var t = p; t > 0; t -= t & -t) le += tree[t];
      count += total - le;
      for (t = p; t <= size; t += t & -t) tree[t]++;
      total++;
    }
    return count;
  }
  function totalCrossings() { var c = 0; for (var ll = 0; ll < maxLayer; ll++) c += crossings(ll); return c; }
  function snapshot() { return layers.map(function (a) { return a.slice(); }); }

  var best = snapshot(), bestCross = totalCrossings();
  for (var it = 0; it < o.sweeps && bestCross > 0; it++) {
    for (l = 1; l <= maxLayer; l++) reorder(l, vUp);
    for (l = maxLayer - 1; l >= 0; l--) reorder(l, vDown);
    var c = totalCrossings();
    if (c < bestCross) { bestCross = c; best = snapshot(); }
  }
  layers = best;
  for (l = 0; l <= maxLayer; l++) index(l);

  // Vertical placement: each vertex wants the mean y of its neighbours; a forward pass
  // (pushing down) and a backward pass (pushing up) both keep the spacing, their mean balances.
  var H = o.nodeHeight;
  function half(v) { return dummy[v] ? 1 : H / 2; }
  function sep(u, v) { return half(u) + half(v) + (dummy[u] || dummy[v] ? o.dummyGap : o.rowGap); }
  var cy = new Array(V);
  layers.forEach(function (arr) {
    var y = 0;
    arr.forEach(function (v, k) { if (k > 0) y += sep(arr[k - 1], v); cy[v] = y; });
  });
  function place(l, nb) {
    var arr = layers[l], m = arr.length;
    if (m === 0) return;
    var want = arr.map(function (v) {
      var ns = nb[v];
      if (ns.length === 0) return null;
      var s = 0;
      for (var j = 0; j < ns.length; j++) s += cy[ns[j]];
      return s / ns.length;
    });
    // Unconnected vertices pack against their neighbours in the layer instead of staying put.
    var k, anchored = want.some(function (w) { return w !== null; });
    for (k = 0; k < m; k++) if (want[k] === null && k > 0 && want[k - 1] !== null) want[k] = want[k - 1] + sep(arr[k - 1], arr[k]);
    for (k = m - 1; k >= 0; k--) if (want[k] === null) want[k] = k < m - 1 && want[k + 1] !== null ? want[k + 1] - sep(arr[k], arr[k + 1]) : (anchored ? 0 : cy[arr[k]]);
    var down = new Array(m), up = new Array(m);
    for (k = 0; k < m; k++) down[k] = k === 0 ? want[0] : Math.max(want[k], down[k - 1] + sep(arr[k - 1], arr[k]));
    for (k = m - 1; k >= 0; k--) up[k] = k === m - 1 ? want[k] : Math.min(want[k], up[k + 1] + -sep(arr[k], arr[k + 1]));
    for (k = 0; k < m; k++) cy[arr[k]] = (down[k] + up[k]) / 2;
  }
  var both = vUp.map(function (u, v) { return u.concat(vDown[v]); });
  for (it = 0; it < 6; it++) {
    for (l = 1; l <= maxLayer; l++) place(l, vUp);
    for (l = maxLayer - 1; l >= 0; l--) place(l, vDown);
  }
  for (l = 0; l <= maxLayer; l++) place(l, both);

  var minY = Infinity, maxY = -Infinity;
  for (i = 0; i < V; i++) { minY = Math.min(minY, cy[i] - half(i)); maxY = Math.max(maxY, cy[i] + half(i)); }
  if (V === 0) { minY = 0; maxY = 0; }
  var W = o.nodeWidth, colW = W + o.colGap;
  var nodes = {};
  for (i = 0; i < n; i++) nodes[ids[i]] = { x: layer[i] * colW, y: cy[i] - H / 2 - minY, w: W, h: H, layer: layer[i] };
  var outEdges = routes.map(function (r) {
    var pts = [[layer[r.a] * colW + W, cy[r.a] - minY]];
    for (var j = 1; j < r.chain.length - 1; j++) {
      var d = r.chain[j], x = vLayer[d] * colW;
      pts.push([x, cy[d] - minY], [x + W, cy[d] - minY]);
    }
    pts.push([layer[r.b] * colW, cy[r.b] - minY]);
    return { from: ids[r.a], to: ids[r.b], points: pts, back: r.back };
  });
  return { nodes: nodes, edges: outEdges, width: n ? (maxLayer + 1) * colW - o.colGap : 0,
    height: maxY - minY, layers: maxLayer + 1, crossings: bestCross };
}

// Smooth path through route points: horizontal tangents at every point.
function edgePath(pts) {
  var d = "M" + pts[0][0].toFixed(1) + "," + pts[0][1].toFixed(1);
  for (var k = 1; k < pts.length; k++) {
    var p = pts[k - 1], q = pts[k], dx = Math.max(Math.abs(q[0] - p[0]) / 2, 20);
    if (p[1] === q[1]) { d += "L" + q[0].toFixed(1) + "," + q[1].toFixed(1); continue; }
    d += "C" + (p[0] + dx).toFixed(1) + "," + p[1].toFixed(1) + " " + (q[0] - dx).toFixed(1) + "," +
      q[1].toFixed(1) + " " + q[0].toFixed(1) + "," + q[1].toFixed(1);
  }
  return d;
}

if (typeof module === "object" && module && module.exports) module.exports = { layoutDag: layoutDag, edgePath: edgePath };
if (typeof document === "undefined") return;

// ---------- data ----------
var DATA = JSON.parse(document.getElementById("docs-data").textContent);
var byId = new Map();
DATA.nodes.forEach(function (n) { byId.set(n.id, n); });
var TYPE_LABEL = { model: "Model", source: "Source", seed: "Seed", snapshot: "Snapshot", exposure: "Exposure", test: "Test" };
var DAG_TYPES = { source: 1, seed: 1, snapshot: 1, model: 1, exposure: 1 };
var TYPE_ORDER = { source: 0, seed: 1, snapshot: 2, model: 3, exposure: 4 };
var SVG_NS = "http://www.w3.org/2000/svg";
var lastSelected = null;

function el(tag, attrs, kids) {
  var e = document.createElement(tag);
  if (attrs) Object.keys(attrs).forEach(function (k) {
    var v = attrs[k];
    if (v === null || v === undefined || v === false) return;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  });
  add(e, kids);
  return e;
}
function add(e, kids) {
  if (kids === null || kids === undefined) return;
  if (!Array.isArray(kids)) kids = [kids];
  kids.forEach(function (c) {
    if (c === null || c === undefined || c === false) return;
    e.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  });
}
function svg(tag, attrs) {
  var e = document.createElementNS(SVG_NS, tag);
  Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
  return e;
}
function nodeHref(n) { return "#!/" + n.type + "/" + encodeURIComponent(n.id); }
function lineageHref(id, focus) { return "#!/lineage" + (id ? "/" + encodeURIComponent(id) : "") + (focus ? "?focus=1" : ""); }
function dot(type) { return el("span", { class: "dot t-" + type }); }
function statusClass(s) { return s ? " st-" + String(s).toLowerCase().replace(/[^a-z]+/g, "-") : ""; }
function fmtTime(t) { return typeof t === "number" ? (t < 10 ? t.toFixed(2) : t.toFixed(1)) + " s" : ""; }
function displayName(n) { return n.type === "source" && n.source_name ? n.source_name + "." + n.name : n.name; }
function byName(a, b) { return displayName(a).localeCompare(displayName(b)); }
function nodeRef(id) {
  var n = byId.get(id);
  if (!n) return el("span", { class: "muted mono", text: id });
  return el("a", { href: nodeHref(n), title: n.id }, [dot(n.type), el("span", { text: displayName(n) })]);
}

// ---------- sidebar ----------
var leafById = new Map();
function leaf(n, label) {
  var a = el("a", { class: "leaf", href: nodeHref(n), title: n.id }, [dot(n.type), el("span", { class: "nm", text: label || n.name })]);
  leafById.set(n.id, a);
  return a;
}
function section(title, kids) {
  var d = el("details", { class: "sec", open: true }, [el("summary", { text: title })]);
  add(d, kids);
  return d;
}
function folder(name, kids, open) {
  var d = el("details", { class: "folder", open: open }, [el("summary", { text: name })]);
  d.appendChild(el("div", { class: "items" }, kids));
  return d;
}
function buildTree() {
  var tree = document.getElementById("tree");
  var of = function (t) { return DATA.nodes.filter(function (n) { return n.type === t; }).sort(byName); };
  var sources = of("source"), models = of("model"), openAll = DATA.nodes.length < 80;
  if (sources.length) {
    var groups = new Map();
    sources.forEach(function (s) { var g = s.source_name || "sources"; if (!groups.has(g)) groups.set(g, []); groups.get(g).push(s); });
    var kids = [];
    Array.from(groups.keys()).sort().forEach(function (g) { kids.push(folder(g, groups.get(g).map(function (s) { return leaf(s); }), openAll)); });
    tree.appendChild(section("Sources", kids));
  }
  [["Seeds", "seed"], ["Snapshots", "snapshot"]].forEach(function (p) {
    var list = of(p[1]);
    if (list.length) tree.appendChild(section(p[0], list.map(function (n) { return leaf(n); })));
  });
  if (models.length) {
    var root = { dirs: new Map(), leaves: [] };
    models.forEach(function (m) {
      var at = root;
      (m.folder || []).forEach(function (f) { if (!at.dirs.has(f)) at.dirs.set(f, { dirs: new Map(), leaves: [] }); at = at.dirs.get(f); });
      at.leaves.push(m);
    });
    var render = function (dir) {
      var out = [];
      Array.from(dir.dirs.keys()).sort().forEach(function (name) { out.push(folder(name, render(dir.dirs.get(name)), openAll)); });
      dir.leaves.forEach(function (m) { out.push(leaf(m)); });
      return out;
    };
    tree.appendChild(section("Models", render(root)));
  }
  var exposures = of("exposure");
  if (exposures.length) tree.appendChild(section("Exposures", exposures.map(function (n) { return leaf(n); })));
  if (!tree.firstChild) tree.appendChild(el("div", { class: "empty", text: "No models, sources or seeds in this project." }));
}
function markActive(id) {
  leafById.forEach(function (a) { a.classList.remove("active"); });
  var a = id && leafById.get(id);
  if (!a) return;
  a.classList.add("active");
  for (var p = a.parentElement; p; p = p.parentElement) if (p.tagName === "DETAILS") p.open = true;
  if (a.scrollIntoView) a.scrollIntoView({ block: "nearest" });
}

// ---------- search ----------
function searchNodes(q) {
  q = q.toLowerCase();
  var hits = [];
  DATA.nodes.forEach(function (n) {
    var name = displayName(n).toLowerCase(), score = -1, ctx = "";
    if (name === q || n.name.toLowerCase() === q) score = 0;
    else if (n.name.toLowerCase().indexOf(q) === 0) score = 1;
    else if (name.indexOf(q) >= 0) score = 2;
    else if (n.id.toLowerCase().indexOf(q) >= 0) { score = 3; ctx = n.id; }
    else {
      var col = (n.columns || []).find(function (c) { return c.name.toLowerCase().indexOf(q) >= 0; });
      if (col) { score = 4; ctx = "column " + col.name; }
      else if ((n.tags || []).some(function (t) { return t.toLowerCase().indexOf(q) >= 0; })) { score = 5; ctx = "tags " + n.tags.join(", "); }
      else if ((n.description || "").toLowerCase().indexOf(q) >= 0) { score = 6; ctx = n.description; }
      else if ((n.raw_code || "").toLowerCase().indexOf(q) >= 0) { score = 7; ctx = "in code"; }
    }
    if (n.type === "test") score += 10; // tests are found, but after what they test
    if (score >= 0) hits.push({ n: n, score: score, ctx: ctx });
  });
  hits.sort(function (a, b) { return a.score - b.score || byName(a.n, b.n); });
  return hits;
}
function runSearch() {
  var q = document.getElementById("search").value.trim(), tree = document.getElementById("tree"), res = document.getElementById("results");
  if (!q) { res.hidden = true; tree.hidden = false; return; }
  tree.hidden = true; res.hidden = false; res.textContent = "";
  var hits = searchNodes(q);
  if (!hits.length) { res.appendChild(el("div", { class: "empty", text: "No matches for “" + q + "”." })); return; }
  hits.slice(0, 200).forEach(function (h, k) {
    res.appendChild(el("a", { class: "result" + (k === 0 ? " first" : ""), href: nodeHref(h.n), title: h.n.id }, [
      el("div", { class: "rn" }, [dot(h.n.type), el("span", { text: displayName(h.n) }), el("span", { class: "muted small", text: TYPE_LABEL[h.n.type] || h.n.type })]),
      h.ctx ? el("div", { class: "rc", text: h.ctx }) : null]));
  });
  if (hits.length > 200) res.appendChild(el("div", { class: "empty", text: (hits.length - 200) + " more…" }));
}

// ---------- pages ----------
function prop(k, v) { return v === null || v === undefined || v === "" ? null : el("div", { class: "prop" }, [el("div", { class: "k", text: k }), el("div", { class: "v" }, v)]); }
function statusEl(s) { return el("span", { class: "status" + statusClass(s), text: s }); }
function testBadge(t) {
  var n = byId.get(t.id);
  return el(n ? "a" : "span", { class: "badge" + statusClass(t.status), href: n ? nodeHref(n) : null,
    title: t.detail + (t.status ? " — " + t.status : "") }, t.label);
}
function codeBox(n) {
  var tabs = [];
  if (n.raw_code) tabs.push(["Source", n.raw_code]);
  if (n.compiled_code) tabs.push(["Compiled", n.compiled_code]);
  if (!tabs.length) return null;
  var pre = el("pre"), code = el("code", { text: tabs[0][1] }), bar = el("div", { class: "codetabs" }), current = tabs[0][1];
  pre.appendChild(code);
  var buttons = tabs.map(function (t, k) {
    return el("button", { class: k === 0 ? "on" : "", type: "button", text: t[0], onclick: function () {
      buttons.forEach(function (b) { b.classList.remove("on"); });
      this.classList.add("on"); code.textContent = t[1]; current = t[1];
    } });
  });
  add(bar, buttons);
  var copy = el("button", { class: "copy", type: "button", text: "Copy", onclick: function () {
    var b = this;
    if (navigator.clipboard) navigator.clipboard.writeText(current).then(function () { b.textContent = "Copied"; setTimeout(function () { b.textContent = "Copy"; }, 1200); }, function () {});
  } });
  bar.appendChild(copy);
  return el("div", { class: "codebox" }, [bar, pre]);
}
function safeUrl(u) { return /^https?:\/\//i.test(u || "") ? u : null; }
function freshnessText(f) {
  if (!f || typeof f !== "object") return null;
  var part = function (k) { var v = f[k]; return v && v.count ? k.replace("_after", "") + " after " + v.count + " " + v.period : null; };
  var s = [part("warn_after"), part("error_after")].filter(Boolean).join(", ");
  return s || null;
}
function renderNode(n) {
  var page = el("div", { class: "page" });
  var run = n.run;
  page.appendChild(el("div", { class: "kind t-" + n.type }, [dot(n.type), TYPE_LABEL[n.type] || n.type]));
  page.appendChild(el("h1", { text: displayName(n) }));
  var sub = el("div", { class: "sub" }, [n.relation ? el("code", { text: n.relation }) : null, el("span", { class: "mono small", text: n.id })]);
  if (DAG_TYPES[n.type]) sub.appendChild(el("a", { class: "btn", href: lineageHref(n.id, true) }, "View lineage"));
  page.appendChild(sub);
  page.appendChild(el("p", { class: "desc" + (n.description ? "" : " none"), text: n.description || "No description." }));
  var owner = n.owner && (n.owner.name || n.owner.email) ? el("span", null, [n.owner.name || "",
    n.owner.email ? el("a", { href: "mailto:" + n.owner.email, text: (n.owner.name ? " <" : "") + n.owner.email + (n.owner.name ? ">" : "") }) : null]) : null;
  var url = safeUrl(n.url);
  var props = el("div", { class: "props" }, [
    prop("Relation", n.relation ? el("code", { text: n.relation }) : null),
    prop("Materialized", n.materialized),
    prop("Source", n.source_name),
    prop("Exposure type", n.exposure_type),
    prop("Maturity", n.maturity),
    prop("Owner", owner),
    prop("URL", url ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: url }) : n.url),
    prop("Loaded at field", n.loaded_at_field),
    prop("Freshness", freshnessText(n.freshness)),
    prop("Tested model", n.attached_node ? nodeRef(n.attached_node) : null),
    prop("Column", n.column_name),
    prop("Test", n.test_detail),
    prop("Tags", n.tags && n.tags.length ? n.tags.map(function (t) { return el("span", { class: "chip", text: t }); }) : null),
    prop("Path", n.path ? el("code", { text: n.path }) : null),
    prop("Last run", run ? el("span", null, [statusEl(run.status), run.time !== null ? " · " + fmtTime(run.time) : ""]) : (DATA.has_run_results ? el("span", { class: "muted", text: "not run" }) : null)),
    prop("Failures", run && run.failures ? String(run.failures) : null),
  ]);
  page.appendChild(props);
  if (run && run.message && run.status !== "success" && run.status !== "pass") page.appendChild(el("pre", { class: "small", text: run.message }));

  if (n.type !== "test") {
    page.appendChild(el("h2", { text: "Columns" }));
    if (n.columns && n.columns.length) {
      var tbody = el("tbody");
      n.columns.forEach(function (c) {
        tbody.appendChild(el("tr", null, [el("td", { class: "cn mono", text: c.name }), el("td", { class: "ct mono", text: c.type || "—" }),
          el("td", { class: "cd", text: c.description || "" }), el("td", null, c.tests.map(testBadge))]));
      });
      page.appendChild(el("table", null, [el("thead", null, el("tr", null, ["Column", "Type", "Description", "Tests"].map(function (h) { return el("th", { text: h }); }))), tbody]));
    } else page.appendChild(el("p", { class: "muted", text: "No columns documented." }));
    var tableTests = (n.tests || []).filter(function (t) { return !t.column; });
    if (tableTests.length) {
      page.appendChild(el("h2", { text: "Tests on the table" }));
      page.appendChild(el("div", null, tableTests.map(testBadge)));
    }
  }
  var list = function (ids) {
    if (!ids.length) return el("p", { class: "muted", text: "None" });
    var sorted = ids.slice().sort(function (a, b) { var x = byId.get(a), y = byId.get(b); return (x && y) ? (TYPE_ORDER[x.type] - TYPE_ORDER[y.type]) || byName(x, y) : a.localeCompare(b); });
    return el("ul", { class: "reflist" }, sorted.map(function (id) { return el("li", null, nodeRef(id)); }));
  };
  page.appendChild(el("div", { class: "cols2" }, [
    el("div", null, [el("h2", { text: "Depends on (" + n.depends_on.length + ")" }), list(n.depends_on)]),
    n.type === "test" ? null : el("div", null, [el("h2", { text: "Referenced by (" + n.referenced_by.length + ")" }), list(n.referenced_by)])]));
  var code = codeBox(n);
  if (code) { page.appendChild(el("h2", { text: "Code" })); page.appendChild(code); }
  return page;
}
function renderOverview() {
  var page = el("div", { class: "page" });
  page.appendChild(el("div", { class: "kind", text: "Project" }));
  page.appendChild(el("h1", { text: DATA.project }));
  page.appendChild(el("p", { class: "muted", text: "Generated " + (DATA.generated_at || "(unknown time)") + ". Pick a model in the tree, search with /, or open the lineage graph." }));
  var counts = {};
  DATA.nodes.forEach(function (n) { counts[n.type] = (counts[n.type] || 0) + 1; });
  var stats = el("div", { class: "stats" });
  ["model", "source", "seed", "snapshot", "exposure", "test"].forEach(function (t) {
    if (!counts[t]) return;
    stats.appendChild(el("div", { class: "stat" }, [el("div", { class: "n", text: counts[t] }), el("div", { class: "l" }, [dot(t), TYPE_LABEL[t] + (counts[t] === 1 ? "" : "s")])]));
  });
  page.appendChild(stats);
  page.appendChild(el("a", { class: "btn", href: lineageHref(null, false) }, "Open the lineage graph"));
  if (DATA.has_run_results) {
    var byStatus = {}, bad = [];
    DATA.nodes.forEach(function (n) {
      if (!n.run) return;
      var s = String(n.run.status);
      byStatus[s] = (byStatus[s] || 0) + 1;
      if (/^(error|fail|warn|runtime error)$/i.test(s)) bad.push(n);
    });
    page.appendChild(el("h2", { text: "Last run" + (DATA.run_generated_at ? " · " + DATA.run_generated_at : "") }));
    page.appendChild(el("div", null, Object.keys(byStatus).sort().map(function (s) { return el("span", { class: "badge" + statusClass(s), text: byStatus[s] + " " + s }); })));
    if (bad.length) {
      page.appendChild(el("h2", { text: "Needs attention" }));
      page.appendChild(el("ul", { class: "reflist" }, bad.map(function (n) {
        return el("li", null, [statusEl(n.run.status), " ", nodeRef(n.id), n.run.message ? el("span", { class: "muted small", text: " — " + n.run.message }) : null]);
      })));
    }
  }
  return page;
}

// ---------- lineage ----------
var fullLayout = null, mounted = null;
function dagIds() { return DATA.nodes.filter(function (n) { return DAG_TYPES[n.type]; }).sort(function (a, b) { return TYPE_ORDER[a.type] - TYPE_ORDER[b.type] || byName(a, b); }).map(function (n) { return n.id; }); }
function dagEdges(idSet) {
  var out = [];
  idSet.forEach(function (id) { byId.get(id).depends_on.forEach(function (p) { if (idSet.has(p)) out.push([p, id]); }); });
  return out;
}
function closure(id, key) {
  var seen = new Set(), stack = [id];
  while (stack.length) {
    var n = byId.get(stack.pop());
    if (!n) continue;
    n[key].forEach(function (x) { if (!seen.has(x) && DAG_TYPES[(byId.get(x) || {}).type]) { seen.add(x); stack.push(x); } });
  }
  return seen;
}
function computeLayout(ids) {
  var set = new Set(ids);
  return layoutDag(ids, dagEdges(set), { lastLayer: function (id) { return byId.get(id).type === "exposure"; } });
}
function renderLineage(route) {
  var sel = route.id && byId.get(route.id) && DAG_TYPES[byId.get(route.id).type] ? route.id : null;
  var focus = !!(route.focus && sel);
  var key = focus ? "focus:" + sel : "all";
  var main = document.getElementById("main");
  if (!mounted || mounted.key !== key || !main.contains(mounted.root)) {
    main.textContent = "";
    var ids;
    if (focus) {
      var up = closure(sel, "depends_on"), down = closure(sel, "referenced_by");
      ids = dagIds().filter(function (id) { return id === sel || up.has(id) || down.has(id); });
    } else ids = dagIds();
    var layout = focus ? computeLayout(ids) : (fullLayout = fullLayout || computeLayout(ids));
    mounted = mountGraph(main, layout, key);
  }
  mounted.select(sel, focus);
}
function mountGraph(main, layout, key) {
  var root = el("div", { id: "lineage" }), tool = el("div", { class: "ltool" }), wrap = el("div", { class: "lwrap" });
  var s = svg("svg", { role: "img", "aria-label": "Lineage graph" });
  var defs = svg("defs");
  [["arrow", "arrow"], ["arrow-hi", "arrow-hi"]].forEach(function (m) {
    var mk = svg("marker", { id: m[0], viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    mk.appendChild(svg("path", { d: "M0,0 L10,5 L0,10 z", class: m[1] }));
    defs.appendChild(mk);
  });
  s.appendChild(defs);
  var gEdges = svg("g"), gNodes = svg("g");
  s.appendChild(gEdges); s.appendChild(gNodes);
  var edgeEls = layout.edges.map(function (e) {
    var p = svg("path", { d: edgePath(e.points), class: "dag-edge", "marker-end": "url(#arrow)" });
    gEdges.appendChild(p);
    return { e: e, p: p };
  });
  var nodeEls = new Map();
  Object.keys(layout.nodes).forEach(function (id) {
    var n = byId.get(id), b = layout.nodes[id];
    var g = svg("g", { class: "dag-node t-" + n.type, transform: "translate(" + b.x.toFixed(1) + "," + b.y.toFixed(1) + ")" });
    g.appendChild(svg("rect", { class: "box", width: b.w, height: b.h, rx: 6 }));
    g.appendChild(svg("rect", { class: "bar", width: 5, height: b.h - 8, x: 4, y: 4, rx: 2 }));
    var label = displayName(n), max = Math.floor((b.w - 26) / 7.1);
    var t = svg("text", { x: 16, y: b.h / 2 + 4.5 });
    t.textContent = label.length > max ? label.slice(0, max - 1) + "…" : label;
    var title = svg("title");
    title.textContent = (TYPE_LABEL[n.type] || n.type) + " " + n.id;
    g.appendChild(t); g.appendChild(title);
    g.setAttribute("data-id", id);
    gNodes.appendChild(g);
    nodeEls.set(id, g);
  });
  var card = el("div", { class: "card", hidden: true });
  var hint = el("div", { class: "hint", text: "Drag to pan · wheel to zoom · click selects · double-click opens" });
  wrap.appendChild(s); wrap.appendChild(card); wrap.appendChild(hint);
  var focusBtn = el("a", { class: "btn" }, "Focus +node+");
  var allBtn = el("a", { class: "btn", href: lineageHref(null, false) }, "Whole project");
  var count = el("span", { class: "muted small", text: Object.keys(layout.nodes).length + " nodes · " + layout.edges.length + " edges" });
  var legend = el("div", { class: "legend" }, ["source", "seed", "snapshot", "model", "exposure"].map(function (t) { return el("span", null, [dot(t), TYPE_LABEL[t]]); }));
  add(tool, [el("button", { class: "btn", type: "button", text: "Fit", title: "Show the whole graph", onclick: function () { fit(0); } }),
    el("button", { class: "btn", type: "button", text: "+", title: "Zoom in", onclick: function () { zoomAt(0.8); } }),
    el("button", { class: "btn", type: "button", text: "−", title: "Zoom out", onclick: function () { zoomAt(1.25); } }),
    focusBtn, allBtn, count, legend]);
  root.appendChild(tool); root.appendChild(wrap);
  main.appendChild(root);

  // viewBox pan/zoom; the box keeps the container's aspect so screen→graph mapping is linear.
  var vb = { x: 0, y: 0, w: 1, h: 1 };
  function apply() { s.setAttribute("viewBox", vb.x + " " + vb.y + " " + vb.w + " " + vb.h); }
  // Fit the whole graph; with `minScale` a large graph stays readable instead, showing its
  // left side (the sources) or centred on `centreId`.
  function fit(minScale, centreId, targetScale) {
    var r = wrap.getBoundingClientRect(), cw = Math.max(r.width, 100), ch = Math.max(r.height, 100), m = 40;
    var w = Math.max(layout.width + 2 * m, 400), h = Math.max(layout.height + 2 * m, 200);
    if (w / h < cw / ch) w = h * cw / ch; else h = w * ch / cw;
    var clamped = minScale && cw / w < minScale;
    if (clamped) { var scale = Math.max(minScale, targetScale || 0); w = cw / scale; h = ch / scale; }
    vb = { x: (layout.width - w) / 2, y: (layout.height - h) / 2, w: w, h: h };
    var c = centreId && layout.nodes[centreId];
    if (clamped && c) { vb.x = c.x + c.w / 2 - w / 2; vb.y = c.y + c.h / 2 - h / 2; }
    else if (clamped) vb.x = -m;
    apply();
  }
  var initialId = null;
  function toGraph(cx, cy) {
    var r = s.getBoundingClientRect();
    return { x: vb.x + (cx - r.left) / r.width * vb.w, y: vb.y + (cy - r.top) / r.height * vb.h };
  }
  function zoomAt(f, cx, cy) {
    var r = s.getBoundingClientRect();
    var p = cx === undefined ? { x: vb.x + vb.w / 2, y: vb.y + vb.h / 2 } : toGraph(cx, cy);
    var w = vb.w * f;
    var limit = Math.max(layout.width, layout.height, 800) * 4;
    if (w < 150 || w > limit) return;
    vb = { x: p.x - (p.x - vb.x) * f, y: p.y - (p.y - vb.y) * f, w: w, h: vb.h * f };
    if (r.width) apply();
  }
  s.addEventListener("wheel", function (ev) { ev.preventDefault(); zoomAt(Math.pow(1.0015, ev.deltaY * (ev.deltaMode === 1 ? 16 : 1)), ev.clientX, ev.clientY); }, { passive: false });
  var drag = null;
  s.addEventListener("pointerdown", function (ev) {
    if (ev.button !== 0) return;
    var g = ev.target.closest ? ev.target.closest(".dag-node") : null;
    drag = { x: ev.clientX, y: ev.clientY, vb: Object.assign({}, vb), moved: false, id: g ? g.getAttribute("data-id") : null };
    try { s.setPointerCapture(ev.pointerId); } catch (e) { /* synthetic or already released pointer */ }
  });
  s.addEventListener("pointermove", function (ev) {
    if (!drag) return;
    var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    drag.moved = true; s.classList.add("dragging");
    var r = s.getBoundingClientRect();
    vb.x = drag.vb.x - dx / r.width * vb.w; vb.y = drag.vb.y - dy / r.height * vb.h;
    apply();
  });
  function endDrag() {
    if (!drag) return;
    var d = drag; drag = null; s.classList.remove("dragging");
    if (d.moved) return;
    if (d.id) location.hash = lineageHref(d.id, key !== "all");
    else if (key === "all") location.hash = lineageHref(null, false);
  }
  s.addEventListener("pointerup", endDrag);
  s.addEventListener("pointercancel", function () { drag = null; s.classList.remove("dragging"); });
  s.addEventListener("dblclick", function (ev) {
    var g = ev.target.closest ? ev.target.closest(".dag-node") : null;
    var n = g && byId.get(g.getAttribute("data-id"));
    if (n) location.hash = nodeHref(n);
  });
  window.addEventListener("resize", function () { if (root.isConnected) fit(0.33, initialId, initialId ? 0.75 : 0.33); });
  var firstSelect = true;

  function select(id, focus) {
    if (firstSelect) { firstSelect = false; initialId = id; fit(id ? 0.45 : 0.33, id, id ? 0.75 : 0.33); }
    var related = null;
    if (id) { related = closure(id, "depends_on"); closure(id, "referenced_by").forEach(function (x) { related.add(x); }); related.add(id); }
    nodeEls.forEach(function (g, nid) {
      g.classList.toggle("sel", nid === id);
      g.classList.toggle("dim", !!related && !related.has(nid));
    });
    edgeEls.forEach(function (x) {
      var on = !!related && related.has(x.e.from) && related.has(x.e.to);
      x.p.classList.toggle("hi", on);
      x.p.classList.toggle("dim", !!related && !on);
      x.p.setAttribute("marker-end", on ? "url(#arrow-hi)" : "url(#arrow)");
      if (on) gEdges.appendChild(x.p); // highlighted edges drawn on top
    });
    focusBtn.classList.toggle("on", !!focus);
    focusBtn.classList.toggle("off", !id);
    if (id) focusBtn.setAttribute("href", lineageHref(id, !focus)); else focusBtn.removeAttribute("href");
    card.textContent = "";
    card.hidden = !id;
    if (!id) return;
    var n = byId.get(id);
    add(card, [el("div", { class: "kind t-" + n.type }, [dot(n.type), TYPE_LABEL[n.type]]), el("h3", { text: displayName(n) }),
      n.relation ? el("code", { class: "small", text: n.relation }) : null,
      el("p", { text: n.description || "No description." }),
      el("div", { class: "row" }, [el("a", { class: "btn", href: nodeHref(n) }, "Open details"),
        el("span", { class: "muted small", text: n.depends_on.length + " up · " + n.referenced_by.length + " down" }),
        n.run ? statusEl(n.run.status) : null])]);
    var b = layout.nodes[id], r = s.getBoundingClientRect();
    if (b && r.width) { // bring the selection into view if it is off screen
      var inside = b.x >= vb.x && b.x + b.w <= vb.x + vb.w && b.y >= vb.y && b.y + b.h <= vb.y + vb.h;
      if (!inside) { vb.x = b.x + b.w / 2 - vb.w / 2; vb.y = b.y + b.h / 2 - vb.h / 2; apply(); }
    }
  }
  return { key: key, root: root, select: select };
}

// ---------- routing ----------
function parseRoute() {
  var h = location.hash || "";
  if (h.slice(0, 3) !== "#!/") return { view: "overview" };
  var rest = h.slice(3), qi = rest.indexOf("?"), path = qi >= 0 ? rest.slice(0, qi) : rest, query = qi >= 0 ? rest.slice(qi + 1) : "";
  var parts = path.split("/").map(function (p) { try { return decodeURIComponent(p); } catch (e) { return p; } });
  var focus = /(^|&)focus=1(&|$)/.test(query);
  if (parts[0] === "lineage") return { view: "lineage", id: parts.slice(1).join("/") || null, focus: focus };
  if (parts.length >= 2 && parts[1]) return { view: "node", id: parts.slice(1).join("/") };
  return { view: "overview" };
}
function setTabs(view) {
  ["overview", "details", "lineage"].forEach(function (t) { document.getElementById("tab-" + t).classList.toggle("on", t === view); });
  var det = document.getElementById("tab-details"), lin = document.getElementById("tab-lineage"), n = lastSelected && byId.get(lastSelected);
  det.classList.toggle("off", !n);
  if (n) det.setAttribute("href", nodeHref(n));
  lin.setAttribute("href", lineageHref(n && DAG_TYPES[n.type] ? n.id : null, view !== "lineage" && !!n));
}
function route() {
  var r = parseRoute(), main = document.getElementById("main");
  if (r.view === "lineage") {
    if (r.id) lastSelected = r.id;
    setTabs("lineage");
    renderLineage(r);
    markActive(r.id);
    document.title = (r.id && byId.get(r.id) ? byId.get(r.id).name + " · " : "") + "Lineage · " + DATA.project;
    return;
  }
  main.textContent = "";
  mounted = null;
  var n = r.view === "node" ? byId.get(r.id) : null;
  if (n) {
    lastSelected = n.id;
    main.appendChild(renderNode(n));
    document.title = displayName(n) + " · " + DATA.project;
    setTabs("details");
  } else {
    if (r.view === "node") main.appendChild(el("div", { class: "page" }, [el("h1", { text: "Not found" }), el("p", { class: "muted", text: "Nothing with id " + r.id + " in this project." })]));
    else main.appendChild(renderOverview());
    document.title = DATA.project + " · docs";
    setTabs("overview");
  }
  markActive(n ? n.id : null);
  main.scrollTop = 0;
}

document.getElementById("project-name").textContent = DATA.project;
document.getElementById("generated").textContent = DATA.generated_at ? "generated " + DATA.generated_at : "";
buildTree();
var search = document.getElementById("search");
search.addEventListener("input", runSearch);
search.addEventListener("keydown", function (ev) {
  if (ev.key === "Escape") { search.value = ""; runSearch(); search.blur(); }
  if (ev.key === "Enter") { var first = document.querySelector("#results .result"); if (first) location.hash = first.getAttribute("href"); }
});
document.addEventListener("keydown", function (ev) {
  if (ev.key === "/" && document.activeElement !== search && !ev.ctrlKey && !ev.metaKey) { ev.preventDefault(); search.focus(); search.select(); }
});
window.addEventListener("hashchange", route);
route();
})();
"###;

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const XSS: &str = "</script><script>alert(1)</script> and <!-- a comment";

    fn sample_manifest() -> Value {
        let generic_test = |id: &str, kind: &str, attached: &str, column: &str, kwargs: Value| {
            (
                id.to_string(),
                json!({"resource_type": "test", "name": id.rsplit('.').next().unwrap_or(id), "unique_id": id,
                       "test_metadata": {"name": kind, "kwargs": kwargs}, "attached_node": attached,
                       "column_name": column, "depends_on": {"nodes": [attached]},
                       "original_file_path": "models/schema.yml", "raw_code": "{{ test_unique() }}"}),
            )
        };
        let mut nodes = Map::new();
        nodes.insert("model.jaffle.stg_orders".into(), json!({
            "resource_type": "model", "name": "stg_orders", "unique_id": "model.jaffle.stg_orders",
            "schema": "main", "alias": "stg_orders", "relation_name": "\"main\".\"stg_orders\"",
            "description": "Orders, cleaned.", "original_file_path": "models/staging/stg_orders.sql",
            "config": {"materialized": "view", "tags": ["staging"]},
            "columns": {"order_id": {"name": "order_id", "description": "Primary key", "data_type": "integer"},
                        "status": {"name": "status", "description": "Order status", "data_type": null},
                        "customer_id": {"name": "customer_id", "description": "", "data_type": "integer"}},
            "depends_on": {"nodes": ["source.jaffle.raw.orders"]},
            "raw_code": "select * from {{ source('raw', 'orders') }}",
            "compiled_code": "select * from raw.orders"}));
        nodes.insert("model.jaffle.stg_customers".into(), json!({
            "resource_type": "model", "name": "stg_customers", "unique_id": "model.jaffle.stg_customers",
            "schema": "main", "alias": "stg_customers", "description": "Customers.",
            "original_file_path": "models/staging/stg_customers.sql", "config": {"materialized": "view"},
            "columns": {"customer_id": {"name": "customer_id", "description": "Primary key"}},
            "depends_on": {"nodes": ["source.jaffle.raw.customers"]},
            "raw_code": "select * from {{ source('raw', 'customers') }}"}));
        nodes.insert("model.jaffle.customers".into(), json!({
            "resource_type": "model", "name": "customers", "unique_id": "model.jaffle.customers",
            "schema": "analytics", "alias": "customers", "description": format!("One row per customer. {XSS}"),
            "original_file_path": "models/marts/core/customers.sql",
            "config": {"materialized": "table", "tags": ["mart"]}, "tags": ["daily"],
            "columns": {"customer_id": {"name": "customer_id", "description": "The customer", "data_type": "int"},
                        "lifetime_value": {"name": "lifetime_value", "description": "Sum of orders"}},
            "depends_on": {"nodes": ["model.jaffle.stg_orders", "model.jaffle.stg_customers"]},
            "raw_code": "select * from {{ ref('stg_customers') }}", "compiled_code": "select 1"}));
        let tests = [
            generic_test(
                "test.jaffle.unique_customers_customer_id",
                "unique",
                "model.jaffle.customers",
                "customer_id",
                json!({"column_name": "customer_id"}),
            ),
            generic_test(
                "test.jaffle.not_null_customers_customer_id",
                "not_null",
                "model.jaffle.customers",
                "customer_id",
                json!({"column_name": "customer_id"}),
            ),
            generic_test(
                "test.jaffle.accepted_values_stg_orders_status",
                "accepted_values",
                "model.jaffle.stg_orders",
                "status",
                json!({"column_name": "status", "values": ["placed", "shipped"]}),
            ),
            generic_test(
                "test.jaffle.relationships_stg_orders_customer_id",
                "relationships",
                "model.jaffle.stg_orders",
                "customer_id",
                json!({"column_name": "customer_id", "to": "ref('stg_customers')", "field": "customer_id"}),
            ),
        ];
        for (id, test) in tests {
            nodes.insert(id, test);
        }
        json!({
            "metadata": {"project_name": "jaffle", "generated_at": "2025-01-01T00:00:00Z"},
            "nodes": nodes,
            "sources": {
                "source.jaffle.raw.orders": {"resource_type": "source", "source_name": "raw", "name": "orders",
                    "unique_id": "source.jaffle.raw.orders", "schema": "raw", "identifier": "orders",
                    "description": "Raw orders", "loaded_at_field": "_loaded_at",
                    "freshness": {"warn_after": {"count": 12, "period": "hour"}, "error_after": {"count": null, "period": null}},
                    "columns": {"id": {"name": "id", "description": "order id"}}},
                "source.jaffle.raw.customers": {"resource_type": "source", "source_name": "raw", "name": "customers",
                    "unique_id": "source.jaffle.raw.customers", "schema": "raw", "identifier": "customers",
                    "description": "", "columns": {}}
            },
            "exposures": {
                "exposure.jaffle.weekly_kpis": {"name": "weekly_kpis", "type": "dashboard", "unique_id": "exposure.jaffle.weekly_kpis",
                    "owner": {"name": "Ana", "email": "ana@example.com"}, "url": "javascript:alert(1)",
                    "depends_on": {"nodes": ["model.jaffle.customers"]}, "description": "KPIs"}
            },
            "parent_map": {}, "child_map": {}
        })
    }

    fn sample_column_types() -> BTreeMap<String, Vec<(String, String)>> {
        let mut types = BTreeMap::new();
        types.insert(
            "analytics.customers".to_string(),
            vec![
                ("customer_id".to_string(), "BIGINT".to_string()),
                ("first_order".to_string(), "DATE".to_string()),
            ],
        );
        types
    }

    fn sample_run_results() -> Value {
        json!({"metadata": {"generated_at": "2025-01-01T01:00:00Z"}, "results": [
            {"unique_id": "model.jaffle.customers", "status": "success", "execution_time": 0.25, "message": "OK", "failures": null},
            {"unique_id": "test.jaffle.unique_customers_customer_id", "status": "fail", "execution_time": 0.01, "message": "Got 2 results", "failures": 2}
        ]})
    }

    /// The JSON embedded in the page, parsed back.
    fn embedded_data(html: &str) -> Value {
        let start_tag = "<script type=\"application/json\" id=\"docs-data\">";
        let start = html.find(start_tag).expect("data script present") + start_tag.len();
        let end = start + html[start..].find("</script>").expect("data script closed");
        serde_json::from_str(&html[start..end]).expect("embedded data is valid JSON")
    }

    fn page_node<'v>(data: &'v Value, id: &str) -> &'v Value {
        data["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|node| node["id"] == id))
            .unwrap_or_else(|| panic!("{id} missing from page data"))
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("polder-docs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    fn inline_app_script(html: &str) -> &str {
        let start = html.rfind("<script>").expect("app script present") + "<script>".len();
        let end = start + html[start..].find("</script>").expect("app script closed");
        &html[start..end]
    }

    fn node_available() -> bool {
        let available = Command::new("node").arg("--version").output().is_ok();
        if !available {
            eprintln!("skipping JavaScript check: `node` is not installed");
        }
        available
    }

    #[test]
    fn page_embeds_nodes_columns_tests_and_lineage() {
        let manifest = sample_manifest();
        let run_results = sample_run_results();
        let column_types = sample_column_types();
        let input = DocsInput {
            manifest: &manifest,
            run_results: Some(&run_results),
            column_types: &column_types,
        };
        let html = render_index_html(&input);
        let data = embedded_data(&html);
        assert_eq!(data["project"], "jaffle");

        let customers = page_node(&data, "model.jaffle.customers");
        assert_eq!(customers["relation"], "analytics.customers");
        assert_eq!(customers["materialized"], "table");
        assert_eq!(customers["folder"], json!(["marts", "core"]));
        assert_eq!(customers["tags"], json!(["daily", "mart"]));
        // Catalog order and types win; documented-only columns follow.
        let columns = customers["columns"].as_array().expect("columns");
        let names: Vec<&str> = columns.iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names, ["customer_id", "first_order", "lifetime_value"]);
        assert_eq!(columns[0]["type"], "BIGINT");
        assert_eq!(columns[0]["description"], "The customer");
        let labels: Vec<&str> = columns[0]["tests"]
            .as_array()
            .expect("tests")
            .iter()
            .filter_map(|t| t["label"].as_str())
            .collect();
        assert_eq!(labels.len(), 2);
        assert!(
            labels.contains(&"unique") && labels.contains(&"not null"),
            "{labels:?}"
        );
        let unique = columns[0]["tests"]
            .as_array()
            .expect("tests")
            .iter()
            .find(|t| t["label"] == "unique")
            .expect("unique test");
        assert_eq!(unique["status"], "fail");
        assert_eq!(customers["run"]["status"], "success");
        // Lineage: tests are not dependants, exposures are.
        assert_eq!(
            customers["referenced_by"],
            json!(["exposure.jaffle.weekly_kpis"])
        );
        assert_eq!(
            customers["depends_on"],
            json!(["model.jaffle.stg_orders", "model.jaffle.stg_customers"])
        );
        let source = page_node(&data, "source.jaffle.raw.orders");
        assert_eq!(source["referenced_by"], json!(["model.jaffle.stg_orders"]));
        assert_eq!(source["relation"], "raw.orders");

        let stg_orders = page_node(&data, "model.jaffle.stg_orders");
        let status_column = stg_orders["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .find(|c| c["name"] == "status")
            .expect("status column");
        assert_eq!(status_column["tests"][0]["label"], "accepted values");
        assert_eq!(
            status_column["tests"][0]["detail"],
            "values: placed, shipped"
        );
        let customer_id = stg_orders["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .find(|c| c["name"] == "customer_id")
            .expect("customer_id");
        assert_eq!(customer_id["tests"][0]["label"], "relationships");
        assert_eq!(
            customer_id["type"], "integer",
            "data_type is used when the catalog has no entry"
        );
        let exposure = page_node(&data, "exposure.jaffle.weekly_kpis");
        assert_eq!(exposure["owner"]["email"], "ana@example.com");
        assert_eq!(exposure["depends_on"], json!(["model.jaffle.customers"]));
    }

    #[test]
    fn script_breakout_in_descriptions_is_escaped() {
        let mut manifest = sample_manifest();
        manifest["metadata"]["project_name"] = json!("<b>jaffle</b>");
        let column_types = BTreeMap::new();
        let input = DocsInput {
            manifest: &manifest,
            run_results: None,
            column_types: &column_types,
        };
        let html = render_index_html(&input);
        assert!(
            !html.contains("</script><script>alert(1)"),
            "raw script breakout leaked into the page"
        );
        assert!(
            !html.contains("<!--"),
            "an HTML comment opener leaked into the page"
        );
        assert!(
            !html.contains("<b>jaffle</b>"),
            "project name not escaped in <title>"
        );
        assert!(html.contains("&lt;b&gt;jaffle&lt;/b&gt;"));
        // Exactly the two script elements close; the JSON still carries the text unchanged.
        assert_eq!(html.matches("</script>").count(), 2);
        let data = embedded_data(&html);
        let description = page_node(&data, "model.jaffle.customers")["description"]
            .as_str()
            .unwrap_or("");
        assert!(description.ends_with(XSS), "{description}");
    }

    #[test]
    fn write_docs_site_writes_page_and_artifacts() {
        let dir = scratch_dir("write");
        let manifest = sample_manifest();
        let run_results = sample_run_results();
        let column_types = sample_column_types();
        let input = DocsInput {
            manifest: &manifest,
            run_results: Some(&run_results),
            column_types: &column_types,
        };
        let site = dir.join("target").join("docs");
        let written = write_docs_site(&site, &input).expect("site written");
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "index.html",
                "manifest.json",
                "catalog.json",
                "run_results.json"
            ]
        );
        for path in &written {
            assert!(path.starts_with(&site) && path.is_file(), "{path:?}");
        }
        let index = std::fs::read_to_string(site.join("index.html")).expect("index");
        assert_eq!(index, render_index_html(&input));
        let manifest_copy: Value =
            serde_json::from_slice(&std::fs::read(site.join("manifest.json")).expect("manifest"))
                .expect("json");
        assert_eq!(manifest_copy, manifest);
        let catalog: Value =
            serde_json::from_slice(&std::fs::read(site.join("catalog.json")).expect("catalog"))
                .expect("json");
        let entry = &catalog["nodes"]["model.jaffle.customers"];
        assert_eq!(entry["metadata"]["schema"], "analytics");
        assert_eq!(entry["metadata"]["type"], "BASE TABLE");
        assert_eq!(entry["columns"]["first_order"]["type"], "DATE");
        assert_eq!(entry["columns"]["first_order"]["index"], 2);
        assert!(
            catalog["nodes"].get("model.jaffle.stg_orders").is_none(),
            "no catalog entry without column types"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn relations_match_quoted_and_case_insensitive_keys() {
        let node = json!({"schema": "Main", "alias": "Orders", "relation_name": "\"db\".\"Main\".\"Orders\""});
        assert_eq!(
            relation_candidates(&node),
            ["db.main.orders", "main.orders", "orders"]
        );
        let mut column_types = BTreeMap::new();
        column_types.insert(
            "\"main\".\"orders\"".to_string(),
            vec![("id".to_string(), "INT".to_string())],
        );
        let index = CatalogIndex::new(&column_types);
        assert_eq!(index.columns_for(&node).map(Vec::len), Some(1));
        assert_eq!(folder_of("models/a/b/x.sql"), ["a", "b"]);
        assert!(folder_of("x.sql").is_empty());
    }

    #[test]
    fn empty_manifest_still_renders() {
        let manifest = json!({});
        let column_types = BTreeMap::new();
        let html = render_index_html(&DocsInput {
            manifest: &manifest,
            run_results: None,
            column_types: &column_types,
        });
        let data = embedded_data(&html);
        assert_eq!(data["nodes"], json!([]));
        assert_eq!(data["project"], "dbt project");
    }

    #[test]
    fn inline_script_is_valid_javascript() {
        if !node_available() {
            return;
        }
        let manifest = sample_manifest();
        let column_types = BTreeMap::new();
        let html = render_index_html(&DocsInput {
            manifest: &manifest,
            run_results: None,
            column_types: &column_types,
        });
        let dir = scratch_dir("check");
        let script = dir.join("app.js");
        std::fs::write(&script, inline_app_script(&html)).expect("write script");
        let output = Command::new("node")
            .arg("--check")
            .arg(&script)
            .output()
            .expect("run node");
        assert!(
            output.status.success(),
            "node --check failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Runs the page's `layoutDag` under Node on a generated 200-node DAG (and a cycle):
    /// it must finish quickly, keep edges left-to-right and never overlap nodes in a layer.
    const LAYOUT_HARNESS: &str = r#"
const fs = require("fs"), vm = require("vm");
const ctx = { module: { exports: {} } };
vm.runInNewContext(fs.readFileSync(process.argv[2], "utf8"), ctx);
const { layoutDag, edgePath } = ctx.module.exports;
function fail(msg) { console.error(msg); process.exit(1); }
let seed = 42;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const ids = [], edges = [];
for (let i = 0; i < 20; i++) ids.push("source.p.raw.s" + i);
for (let i = 0; i < 170; i++) {
  const id = "model.p.m" + i; ids.push(id);
  const k = 1 + Math.floor(rnd() * 3);
  for (let j = 0; j < k; j++) edges.push([ids[Math.floor(rnd() * (ids.length - 1))], id]);
}
for (let i = 0; i < 10; i++) { const id = "exposure.p.e" + i; edges.push([ids[20 + Math.floor(rnd() * 170)], id]); ids.push(id); }
const t0 = Date.now();
const L = layoutDag(ids, edges, { lastLayer: (id) => id.startsWith("exposure.") });
const ms = Date.now() - t0;
if (ms > 3000) fail("layout took " + ms + " ms");
const placed = Object.keys(L.nodes);
if (placed.length !== 200) fail("placed " + placed.length + " nodes");
const byLayer = new Map();
for (const id of placed) {
  const b = L.nodes[id];
  if (![b.x, b.y, b.w, b.h].every(Number.isFinite)) fail("non-finite box for " + id);
  if (!byLayer.has(b.layer)) byLayer.set(b.layer, []);
  byLayer.get(b.layer).push(b);
}
for (const [layer, boxes] of byLayer) {
  boxes.sort((a, b) => a.y - b.y);
  for (let i = 1; i < boxes.length; i++) if (boxes[i].y < boxes[i - 1].y + boxes[i - 1].h) fail("overlap in layer " + layer);
}
const maxLayer = Math.max(...placed.map((id) => L.nodes[id].layer));
for (let i = 0; i < 10; i++) if (L.nodes["exposure.p.e" + i].layer !== maxLayer) fail("exposure not in the last layer");
for (const e of L.edges) {
  if (L.nodes[e.from].x >= L.nodes[e.to].x) fail("edge goes backwards: " + e.from + " -> " + e.to);
  const d = edgePath(e.points);
  if (!d.startsWith("M") || d.includes("NaN")) fail("bad path " + d);
}
const unique = new Set(edges.filter((e) => e[0] !== e[1]).map((e) => e[0] + ">" + e[1]));
if (L.edges.length !== unique.size) fail("edges " + L.edges.length + " != " + unique.size);
const cyc = layoutDag(["a", "b", "c"], [["a", "b"], ["b", "c"], ["c", "a"]]);
if (Object.keys(cyc.nodes).length !== 3) fail("cycle layout lost nodes");
if (Object.keys(layoutDag([], []).nodes).length !== 0) fail("empty layout");
console.log(JSON.stringify({ ms, crossings: L.crossings, layers: L.layers, edges: L.edges.length }));
"#;

    #[test]
    fn layout_handles_200_nodes_without_overlap() {
        if !node_available() {
            return;
        }
        let manifest = json!({});
        let column_types = BTreeMap::new();
        let html = render_index_html(&DocsInput {
            manifest: &manifest,
            run_results: None,
            column_types: &column_types,
        });
        let dir = scratch_dir("layout");
        let script = dir.join("app.js");
        let harness = dir.join("harness.js");
        std::fs::write(&script, inline_app_script(&html)).expect("write script");
        std::fs::write(&harness, LAYOUT_HARNESS).expect("write harness");
        let output = Command::new("node")
            .arg(&harness)
            .arg(&script)
            .output()
            .expect("run node");
        assert!(
            output.status.success(),
            "layout check failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!("layout: {}", String::from_utf8_lossy(&output.stdout).trim());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
