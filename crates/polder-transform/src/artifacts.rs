//! dbt artifacts: manifest.json (v12) and run_results.json (v6).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json, json};

use crate::compile::CompiledNode;
use crate::graph::Graph;
use crate::jinja::DBT_VERSION;
use crate::project::{Node, Project, ResourceType};

/// The outcome of one node in a run, test or build.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeResult {
    pub unique_id: String,
    /// success | error | skipped | pass | fail | warn
    pub status: String,
    pub message: Option<String>,
    pub execution_time: f64,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub rows_affected: Option<u64>,
    pub failures: Option<u64>,
    pub compiled_code: Option<String>,
    pub relation_name: Option<String>,
}

impl NodeResult {
    /// A node that did not run because something it depends on failed (or --fail-fast).
    pub fn skipped(node: &Node, message: &str) -> NodeResult {
        NodeResult::ended(&node.unique_id, "skipped", message)
    }

    /// A node that failed before or while running.
    pub fn error(node: &Node, message: &str) -> NodeResult {
        NodeResult::ended(&node.unique_id, "error", message)
    }

    /// A failure of a node known only by its id.
    pub fn error_for_id(unique_id: &str, message: &str) -> NodeResult {
        NodeResult::ended(unique_id, "error", message)
    }

    fn ended(unique_id: &str, status: &str, message: &str) -> NodeResult {
        let now = Utc::now();
        NodeResult {
            unique_id: unique_id.to_string(),
            status: status.to_string(),
            message: Some(message.to_string()),
            execution_time: 0.0,
            started_at: now,
            completed_at: now,
            rows_affected: None,
            failures: None,
            compiled_code: None,
            relation_name: None,
        }
    }
}

fn node_json(project: &Project, node: &Node, compiled: Option<&CompiledNode>) -> Json {
    let mut value = json!({
        "resource_type": node.resource_type.as_str(),
        "name": node.name,
        "unique_id": node.unique_id,
        "package_name": node.package_name,
        "path": node.path,
        "original_file_path": node.original_file_path,
        "fqn": node.fqn,
        "database": node.database,
        "schema": node.schema,
        "alias": node.alias,
        "relation_name": if node.resource_type == ResourceType::Test || node.config.materialized == "ephemeral" {
            Json::Null
        } else {
            Json::String(node.relation())
        },
        "config": node.config.to_json(),
        "tags": node.tags,
        "description": node.description,
        "columns": node.columns.iter().map(|(name, c)| (name.clone(), json!({
            "name": c.name, "description": c.description, "data_type": c.data_type,
            "meta": c.meta, "tags": c.tags, "constraints": [], "quote": null,
        }))).collect::<Map<_, _>>(),
        "meta": node.meta,
        "depends_on": {
            "macros": [],
            "nodes": node.depends_on,
        },
        "refs": node.refs.iter().map(|r| json!({"name": r, "package": null, "version": null})).collect::<Vec<_>>(),
        "sources": node.sources.iter().map(|(s, t)| json!([s, t])).collect::<Vec<_>>(),
        "raw_code": node.raw_code,
        "language": "sql",
        "checksum": {"name": "sha256", "checksum": node.checksum},
        "compiled": compiled.is_some(),
        "compiled_path": Json::Null,
        "build_path": Json::Null,
        "unrendered_config": {},
        "created_at": 0.0,
        "docs": {"show": true, "node_color": null},
        "patch_path": Json::Null,
        "contract": {"enforced": false, "alias_types": true, "checksum": null},
    });
    let Some(map) = value.as_object_mut() else {
        return value;
    };
    if let Some(compiled) = compiled {
        map.insert("compiled_code".into(), Json::String(compiled.sql.clone()));
        map.insert("extra_ctes_injected".into(), Json::Bool(true));
        map.insert("extra_ctes".into(), json!([]));
    }
    if let Some(test) = &node.test {
        map.insert("column_name".into(), json!(test.column_name));
        map.insert("attached_node".into(), json!(test.attached_node));
        if test.name != "singular" {
            let mut kwargs = test.kwargs.clone();
            if let Some(column) = &test.column_name {
                kwargs.insert("column_name".into(), Json::String(column.clone()));
            }
            let model = match (&test.attached_node, node.sources.first()) {
                (Some(_), _) => format!(
                    "{{{{ get_where_subquery(ref('{}')) }}}}",
                    node.refs.first().cloned().unwrap_or_default()
                ),
                (None, Some((s, t))) => {
                    format!("{{{{ get_where_subquery(source('{s}', '{t}')) }}}}")
                }
                (None, None) => String::new(),
            };
            kwargs.insert("model".into(), Json::String(model));
            let namespace = match test.namespace.as_deref() {
                Some(ns) if ns != "dbt" => Json::String(ns.to_string()),
                _ => Json::Null,
            };
            map.insert(
                "test_metadata".into(),
                json!({"name": test.name, "kwargs": kwargs, "namespace": namespace}),
            );
        }
    }
    let _ = project;
    value
}

/// `manifest.json` in dbt's v12 shape.
pub fn manifest(
    project: &Project,
    graph: &Graph,
    compiled: &BTreeMap<String, CompiledNode>,
    invocation_id: &str,
    generated_at: DateTime<Utc>,
) -> Json {
    let mut nodes = Map::new();
    for (id, node) in &project.nodes {
        nodes.insert(id.clone(), node_json(project, node, compiled.get(id)));
    }
    let mut sources = Map::new();
    for (id, source) in &project.sources {
        sources.insert(
            id.clone(),
            json!({
                "resource_type": "source",
                "unique_id": id,
                "name": source.name,
                "source_name": source.source_name,
                "identifier": source.identifier,
                "database": source.database,
                "schema": source.schema,
                "package_name": project.name,
                "path": source.original_file_path,
                "original_file_path": source.original_file_path,
                "fqn": source.fqn,
                "description": source.description,
                "source_description": source.source_description,
                "loader": source.loader,
                "loaded_at_field": source.loaded_at_field,
                "freshness": source.freshness,
                "tags": source.tags,
                "meta": source.meta,
                "columns": source.columns,
                "relation_name": source.relation(),
                "config": {"enabled": true},
            }),
        );
    }
    let mut exposures = Map::new();
    for (id, exposure) in &project.exposures {
        exposures.insert(
            id.clone(),
            json!({
                "resource_type": "exposure",
                "unique_id": id,
                "name": exposure.name,
                "type": exposure.type_,
                "owner": exposure.owner,
                "description": exposure.description,
                "label": exposure.label,
                "maturity": exposure.maturity,
                "url": exposure.url,
                "package_name": project.name,
                "path": exposure.original_file_path,
                "original_file_path": exposure.original_file_path,
                "fqn": exposure.fqn,
                "tags": exposure.tags,
                "meta": exposure.meta,
                "depends_on": {"macros": [], "nodes": exposure.depends_on},
                "refs": exposure.refs.iter().map(|r| json!({"name": r, "package": null, "version": null})).collect::<Vec<_>>(),
                "sources": exposure.sources.iter().map(|(s, t)| json!([s, t])).collect::<Vec<_>>(),
                "config": {"enabled": true},
            }),
        );
    }
    let mut macros = Map::new();
    for def in project.macros() {
        macros.insert(
            def.unique_id(),
            json!({
                "name": def.name,
                "resource_type": "macro",
                "package_name": def.package_name,
                "path": def.original_file_path,
                "original_file_path": def.original_file_path,
                "unique_id": def.unique_id(),
                "macro_sql": def.macro_sql,
                "description": def.description,
                "arguments": def.arguments.iter().map(|a| json!({"name": a, "type": null, "description": ""})).collect::<Vec<_>>(),
                "depends_on": {"macros": []},
            }),
        );
    }
    let mut parent_map = Map::new();
    let mut child_map = Map::new();
    for id in graph.all() {
        parent_map.insert(id.clone(), json!(graph.parents(&id)));
        child_map.insert(id.clone(), json!(graph.children(&id)));
    }
    let mut disabled = Map::new();
    for (id, node) in &project.disabled {
        disabled.insert(id.clone(), json!([node_json(project, node, None)]));
    }
    json!({
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
            "dbt_version": DBT_VERSION,
            "generated_at": generated_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "invocation_id": invocation_id,
            "env": {},
            "project_name": project.name,
            "adapter_type": "polder",
            "send_anonymous_usage_stats": false,
        },
        "nodes": nodes,
        "sources": sources,
        "macros": macros,
        "docs": {},
        "exposures": exposures,
        "metrics": {},
        "groups": {},
        "selectors": {},
        "disabled": disabled,
        "parent_map": parent_map,
        "child_map": child_map,
        "group_map": {},
        "saved_queries": {},
        "semantic_models": {},
        "unit_tests": {},
    })
}

/// `run_results.json` in dbt's v6 shape.
pub fn run_results(results: &[NodeResult], args: &Json, elapsed: f64, invocation_id: &str) -> Json {
    let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let items: Vec<Json> = results
        .iter()
        .map(|r| {
            json!({
                "status": r.status,
                "timing": [
                    {"name": "compile", "started_at": time(&r.started_at), "completed_at": time(&r.started_at)},
                    {"name": "execute", "started_at": time(&r.started_at), "completed_at": time(&r.completed_at)},
                ],
                "thread_id": "Thread-1",
                "execution_time": r.execution_time,
                "adapter_response": match r.rows_affected {
                    Some(rows) => json!({"_message": format!("OK {rows}"), "code": "OK", "rows_affected": rows}),
                    None => json!({}),
                },
                "message": r.message,
                "failures": r.failures,
                "unique_id": r.unique_id,
                "compiled": r.compiled_code.is_some(),
                "compiled_code": r.compiled_code,
                "relation_name": r.relation_name,
                "batch_results": null,
            })
        })
        .collect();
    json!({
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
            "dbt_version": DBT_VERSION,
            "generated_at": time(&Utc::now()),
            "invocation_id": invocation_id,
            "env": {},
        },
        "results": items,
        "elapsed_time": elapsed,
        "args": args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_results_shape() {
        let now = Utc::now();
        let results = vec![NodeResult {
            unique_id: "model.p.a".into(),
            status: "success".into(),
            message: Some("OK".into()),
            execution_time: 0.5,
            started_at: now,
            completed_at: now,
            rows_affected: Some(3),
            failures: None,
            compiled_code: Some("select 1".into()),
            relation_name: Some("public.a".into()),
        }];
        let value = run_results(&results, &json!({"which": "run"}), 1.0, "inv");
        assert_eq!(
            value["metadata"]["dbt_schema_version"],
            "https://schemas.getdbt.com/dbt/run-results/v6.json"
        );
        assert_eq!(value["results"][0]["adapter_response"]["rows_affected"], 3);
        assert_eq!(value["results"][0]["timing"][1]["name"], "execute");
        assert_eq!(value["args"]["which"], "run");
    }

    #[test]
    fn manifest_shape_for_jaffle() {
        use crate::compile::{CompileContext, RelationKind, RelationLookup};
        struct Nothing;
        impl RelationLookup for Nothing {
            fn exists(&self, _: &str, _: &str) -> Option<RelationKind> {
                None
            }
        }
        let project = Project::load(
            &crate::test_support::example("jaffle_shop"),
            &Default::default(),
        )
        .expect("load");
        let graph = Graph::build(&project).expect("graph");
        let mut compiled = BTreeMap::new();
        let id = "model.jaffle_shop.orders".to_string();
        let node = project
            .compile(&id, &Nothing, &CompileContext::default())
            .expect("compile");
        compiled.insert(id.clone(), node);
        let manifest = manifest(&project, &graph, &compiled, "inv", Utc::now());
        for key in [
            "metadata",
            "nodes",
            "sources",
            "macros",
            "docs",
            "exposures",
            "metrics",
            "groups",
            "selectors",
            "disabled",
            "parent_map",
            "child_map",
            "group_map",
            "saved_queries",
            "semantic_models",
            "unit_tests",
        ] {
            assert!(manifest.get(key).is_some(), "missing {key}");
        }
        assert_eq!(
            manifest["metadata"]["dbt_schema_version"],
            "https://schemas.getdbt.com/dbt/manifest/v12.json"
        );
        assert_eq!(manifest["metadata"]["project_name"], "jaffle_shop");
        let orders = &manifest["nodes"][&id];
        assert_eq!(orders["relation_name"], "gold.orders");
        assert_eq!(orders["config"]["materialized"], "table");
        assert_eq!(orders["compiled"], true);
        assert!(
            orders["compiled_code"]
                .as_str()
                .is_some_and(|s| s.contains("gift_card_amount"))
        );
        assert_eq!(
            orders["depends_on"]["nodes"],
            json!([
                "model.jaffle_shop.stg_orders",
                "model.jaffle_shop.stg_payments"
            ])
        );
        let test = manifest["nodes"]
            .as_object()
            .and_then(|n| {
                n.values().find(|v| {
                    v["name"] == "relationships_orders_customer_id__customer_id__ref_customers_"
                })
            })
            .expect("relationships test");
        assert_eq!(test["test_metadata"]["name"], "relationships");
        assert_eq!(test["test_metadata"]["kwargs"]["to"], "ref('customers')");
        assert_eq!(test["attached_node"], "model.jaffle_shop.orders");
        assert_eq!(test["config"]["severity"], "ERROR");
        assert!(
            manifest["child_map"]["model.jaffle_shop.customers"]
                .as_array()
                .is_some_and(|c| !c.is_empty())
        );
        assert!(manifest["macros"]["macro.jaffle_shop.cents_to_dollars"].is_object());
    }
}
