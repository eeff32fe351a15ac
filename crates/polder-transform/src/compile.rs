//! Compiling one node to SQL at run time: is_incremental, ephemeral CTEs, test SQL.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::error::{Result, TransformError};
use crate::jinja::{Mode, Recorder, Relation, RenderSpec};
use crate::project::{Node, NodeConfig, Project, ResourceType, kwarg_expression};

/// What kind of relation exists in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    Table,
    View,
}

/// Tells the compiler which relations exist (for `is_incremental()`).
pub trait RelationLookup: Send + Sync {
    fn exists(&self, schema: &str, name: &str) -> Option<RelationKind>;
}

/// Rows returned to `run_query()` during compilation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// Runs SQL for `run_query()` while compiling (the runner passes its engine).
pub trait QueryRunner: Send + Sync {
    fn query(&self, sql: &str) -> std::result::Result<QueryResult, String>;
}

/// Per-invocation facts the Jinja context exposes.
#[derive(Clone)]
pub struct CompileContext {
    /// `--full-refresh`.
    pub full_refresh: bool,
    pub run_started_at: DateTime<Utc>,
    pub invocation_id: String,
    /// Executes `run_query()`; without one, `run_query()` returns none.
    pub query_runner: Option<Arc<dyn QueryRunner>>,
}

impl std::fmt::Debug for CompileContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileContext")
            .field("full_refresh", &self.full_refresh)
            .field("run_started_at", &self.run_started_at)
            .field("invocation_id", &self.invocation_id)
            .field("query_runner", &self.query_runner.is_some())
            .finish()
    }
}

impl Default for CompileContext {
    fn default() -> Self {
        CompileContext {
            full_refresh: false,
            run_started_at: Utc::now(),
            invocation_id: uuid::Uuid::new_v4().to_string(),
            query_runner: None,
        }
    }
}

/// A node's SQL, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledNode {
    pub unique_id: String,
    /// The SELECT (with ephemeral CTEs injected); empty for seeds.
    pub sql: String,
    pub is_incremental: bool,
    /// `log()`, `print()` and `exceptions.warn()` output.
    pub logs: Vec<String>,
    pub config: NodeConfig,
    /// `schema.alias` of the node.
    pub relation_name: String,
}

impl Project {
    /// Compiles one node (model, test, seed) against the current database state.
    pub fn compile(
        &self,
        unique_id: &str,
        relations: &dyn RelationLookup,
        ctx: &CompileContext,
    ) -> Result<CompiledNode> {
        let node = self
            .nodes
            .get(unique_id)
            .ok_or_else(|| TransformError::Graph(format!("unknown node '{unique_id}'")))?;
        let is_incremental = node.config.materialized == "incremental"
            && relations.exists(&node.schema, &node.alias) == Some(RelationKind::Table)
            // dbt: a model's full_refresh config wins over the --full-refresh flag.
            && !node.config.full_refresh.unwrap_or(ctx.full_refresh);
        let mut logs = Vec::new();
        let mut ctes: Vec<(String, String)> = Vec::new();
        let sql = if node.resource_type == ResourceType::Seed {
            String::new()
        } else {
            let mut stack = vec![unique_id.to_string()];
            let body =
                self.render_node(node, is_incremental, ctx, &mut logs, &mut ctes, &mut stack)?;
            inject_ctes(&body, &ctes)
        };
        Ok(CompiledNode {
            unique_id: unique_id.to_string(),
            sql,
            is_incremental,
            logs,
            config: node.config.clone(),
            relation_name: node.relation(),
        })
    }

    /// Renders a node's SQL; ephemeral models it refs are compiled into `ctes` (deepest first).
    fn render_node(
        &self,
        node: &Node,
        is_incremental: bool,
        ctx: &CompileContext,
        logs: &mut Vec<String>,
        ctes: &mut Vec<(String, String)>,
        stack: &mut Vec<String>,
    ) -> Result<String> {
        let recorder = Arc::new(Recorder::default());
        let mut extra = Vec::new();
        let generic = node.test.as_ref().filter(|t| t.name != "singular").cloned();
        if let Some(test) = &generic {
            extra.push((
                "__kwargs".to_string(),
                self.test_kwargs(node, test, &recorder, ctx)?,
            ));
        }
        let spec = self.render_spec(node, recorder.clone(), is_incremental, ctx, extra);
        let context = self.jinja.context(&spec);
        let sql = match &generic {
            Some(test) => {
                let call = format!("test_{}(**__kwargs)", test.name);
                self.jinja
                    .eval(&node.original_file_path, &call, context)?
                    .to_string()
            }
            None => self.jinja.render_file(&node.original_file_path, context)?,
        };
        let recorded = recorder.take();
        logs.extend(recorded.logs);
        for ephemeral_id in recorded.ephemerals {
            if ctes.iter().any(|(id, _)| *id == ephemeral_id) {
                continue;
            }
            if stack.contains(&ephemeral_id) {
                return Err(TransformError::Graph(format!(
                    "ephemeral cycle: {} -> {ephemeral_id}",
                    stack.join(" -> ")
                )));
            }
            let ephemeral = self.nodes.get(&ephemeral_id).ok_or_else(|| {
                TransformError::Graph(format!("unknown ephemeral model '{ephemeral_id}'"))
            })?;
            stack.push(ephemeral_id.clone());
            let body = self.render_node(ephemeral, false, ctx, logs, ctes, stack)?;
            stack.pop();
            let cte = format!("__dbt__cte__{} as (\n{}\n)", ephemeral.name, body.trim());
            ctes.push((ephemeral_id, cte));
        }
        Ok(sql)
    }

    fn render_spec(
        &self,
        node: &Node,
        recorder: Arc<Recorder>,
        is_incremental: bool,
        ctx: &CompileContext,
        extra: Vec<(String, minijinja::Value)>,
    ) -> RenderSpec {
        let mut this = Relation::new(&node.database, &node.schema, &node.alias);
        this.kind = match node.config.materialized.as_str() {
            "view" => "view".into(),
            _ => "table".into(),
        };
        RenderSpec {
            mode: Mode::Compile,
            recorder,
            resolver: self.resolver.clone(),
            vars: self.vars_arc(),
            target: Arc::new(self.target.clone()),
            this,
            config: Arc::new(
                node.config
                    .to_json()
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            model: node.jinja_dict(),
            is_incremental,
            run_started_at: ctx.run_started_at,
            invocation_id: ctx.invocation_id.clone(),
            full_refresh: ctx.full_refresh,
            query_runner: ctx.query_runner.clone(),
            extra,
        }
    }

    /// The keyword arguments of a generic test macro: model (with `where`), column_name,
    /// and the YAML arguments with `ref()`/`source()` evaluated to relations.
    fn test_kwargs(
        &self,
        node: &Node,
        test: &crate::project::TestInfo,
        recorder: &Arc<Recorder>,
        ctx: &CompileContext,
    ) -> Result<minijinja::Value> {
        let mut model = match (&test.attached_node, node.sources.first()) {
            (Some(attached), _) => {
                let parent = self.nodes.get(attached).ok_or_else(|| {
                    TransformError::Graph(format!(
                        "test '{}' ({}) is attached to '{attached}', which does not exist",
                        node.name, node.original_file_path
                    ))
                })?;
                let mut relation = Relation::new(&parent.database, &parent.schema, &parent.alias);
                if parent.config.materialized == "ephemeral" {
                    relation.rendered = Some(format!("__dbt__cte__{}", parent.name));
                    recorder.note_ephemeral(attached);
                }
                relation
            }
            (None, Some((source, table))) => {
                let (_, relation) = self
                    .resolver
                    .sources
                    .get(&(source.clone(), table.clone()))
                    .ok_or_else(|| {
                        TransformError::Graph(format!(
                            "test '{}' ({}) uses source '{source}.{table}', which does not exist",
                            node.name, node.original_file_path
                        ))
                    })?;
                relation.clone()
            }
            (None, None) => Relation::new("", "", ""),
        };
        if let Some(where_clause) = &node.config.where_clause {
            model.rendered = Some(format!(
                "(select * from {} where {}) dbt_subquery",
                model.render_sql(),
                where_clause
            ));
        }
        let mut kwargs: std::collections::BTreeMap<String, minijinja::Value> =
            std::collections::BTreeMap::new();
        kwargs.insert("model".into(), minijinja::Value::from_object(model));
        if let Some(column) = &test.column_name {
            kwargs.insert("column_name".into(), minijinja::Value::from(column.clone()));
        }
        for (key, value) in &test.kwargs {
            let evaluated = match kwarg_expression(value) {
                Some(expr) => {
                    let spec = self.render_spec(node, recorder.clone(), false, ctx, Vec::new());
                    self.jinja
                        .eval(&node.original_file_path, &expr, self.jinja.context(&spec))?
                }
                None => crate::jinja::to_value(value),
            };
            kwargs.insert(key.clone(), evaluated);
        }
        Ok(minijinja::Value::from(kwargs))
    }

    /// Renders a pre-/post-hook (or any SQL snippet) in the node's compile context, so
    /// `{{ this }}`, `{{ target.schema }}` and macros work in hooks.
    pub fn render_hook(
        &self,
        unique_id: &str,
        sql: &str,
        is_incremental: bool,
        ctx: &CompileContext,
    ) -> Result<String> {
        let node = self
            .nodes
            .get(unique_id)
            .ok_or_else(|| TransformError::Graph(format!("unknown node '{unique_id}'")))?;
        let recorder = Arc::new(Recorder::default());
        let spec = self.render_spec(node, recorder, is_incremental, ctx, Vec::new());
        let name = format!("{} (hook)", node.original_file_path);
        self.jinja.render_str(&name, sql, self.jinja.context(&spec))
    }

    /// Renders SQL outside any node (`on-run-start`/`on-run-end`, `run-operation` bodies).
    pub fn render_sql(&self, name: &str, sql: &str, ctx: &CompileContext) -> Result<String> {
        let spec = RenderSpec {
            mode: Mode::Compile,
            recorder: Arc::new(Recorder::default()),
            resolver: self.resolver.clone(),
            vars: self.vars_arc(),
            target: Arc::new(self.target.clone()),
            this: Relation::new(&self.target.database, &self.target.schema, ""),
            config: Arc::new(serde_json::Map::new()),
            model: serde_json::Value::Null,
            is_incremental: false,
            run_started_at: ctx.run_started_at,
            invocation_id: ctx.invocation_id.clone(),
            full_refresh: ctx.full_refresh,
            query_runner: ctx.query_runner.clone(),
            extra: Vec::new(),
        };
        self.jinja.render_str(name, sql, self.jinja.context(&spec))
    }

    /// Writes a compiled node under `target/compiled/<project>/...` like `dbt compile`.
    pub fn write_compiled(&self, compiled: &CompiledNode) -> Result<PathBuf> {
        let node = self.nodes.get(&compiled.unique_id).ok_or_else(|| {
            TransformError::Graph(format!("unknown node '{}'", compiled.unique_id))
        })?;
        let mut path = self.target_path.join("compiled").join(&self.name);
        path.push(&node.original_file_path);
        if node.original_file_path.ends_with(".yml") || node.original_file_path.ends_with(".yaml") {
            path.push(&node.path);
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| TransformError::io(parent, e))?;
        }
        std::fs::write(&path, &compiled.sql).map_err(|e| TransformError::io(&path, e))?;
        Ok(path)
    }
}

/// Prepends CTEs to a query like dbt's `_inject_ctes_into_sql`: merged into the query's own
/// leading `WITH` when it has one, else as a new `with` clause.
pub fn inject_ctes(sql: &str, ctes: &[(String, String)]) -> String {
    if ctes.is_empty() {
        return sql.to_string();
    }
    let joined = ctes
        .iter()
        .map(|(_, cte)| cte.as_str())
        .collect::<Vec<_>>()
        .join(",\n");
    match leading_with(sql) {
        Some((prefix_end, with_end)) => {
            let rest = &sql[with_end..];
            let trimmed = rest.trim_start();
            // `with recursive` keeps its keyword in front.
            let (keyword_tail, rest) = if trimmed.len() >= 9
                && trimmed[..9].eq_ignore_ascii_case("recursive")
                && !trimmed[9..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                (" recursive", &trimmed[9..])
            } else {
                ("", rest)
            };
            format!("{}with{keyword_tail} {joined},{rest}", &sql[..prefix_end])
        }
        None => format!("with {joined}\n{sql}"),
    }
}

/// Finds a leading `with` keyword after whitespace and comments: (start, end) byte offsets.
fn leading_with(sql: &str) -> Option<(usize, usize)> {
    let bytes = sql.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if sql[i..].starts_with("--") {
            i = sql[i..]
                .find('\n')
                .map(|n| i + n + 1)
                .unwrap_or(bytes.len());
            continue;
        }
        if sql[i..].starts_with("/*") {
            i = sql[i..]
                .find("*/")
                .map(|n| i + n + 2)
                .unwrap_or(bytes.len());
            continue;
        }
        break;
    }
    let word_end = i + 4;
    if word_end <= bytes.len()
        && sql[i..word_end].eq_ignore_ascii_case("with")
        && bytes
            .get(word_end)
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
    {
        Some((i, word_end))
    } else {
        None
    }
}

/// Wraps a compiled test into dbt's `get_test_sql`: failures, should_warn, should_error.
pub fn test_query(compiled: &CompiledNode) -> String {
    let fail_calc = compiled.config.fail_calc();
    let limit = compiled
        .config
        .limit
        .map(|n| format!("\nlimit {n}"))
        .unwrap_or_default();
    format!(
        "select\n  {fail_calc} as failures,\n  {fail_calc} {warn_if} as should_warn,\n  {fail_calc} {error_if} as should_error\nfrom (\n{sql}{limit}\n) dbt_internal_test",
        warn_if = compiled.config.warn_if,
        error_if = compiled.config.error_if,
        sql = compiled.sql.trim().trim_end_matches(';').trim_end(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn cte(name: &str, body: &str) -> (String, String) {
        (name.to_string(), format!("{name} as (\n{body}\n)"))
    }

    #[test]
    fn injects_ctes_before_plain_select() {
        let sql = inject_ctes(
            "select * from __dbt__cte__a",
            &[cte("__dbt__cte__a", "select 1 as x")],
        );
        assert_eq!(
            sql,
            "with __dbt__cte__a as (\nselect 1 as x\n)\nselect * from __dbt__cte__a"
        );
    }

    #[test]
    fn merges_into_existing_with_after_comments() {
        let sql = inject_ctes(
            "-- note\n/* c */ WITH b as (select 2) select * from b",
            &[
                cte("__dbt__cte__a", "select 1"),
                cte("__dbt__cte__c", "select 3"),
            ],
        );
        assert_eq!(
            sql,
            "-- note\n/* c */ with __dbt__cte__a as (\nselect 1\n),\n__dbt__cte__c as (\nselect 3\n), b as (select 2) select * from b"
        );
    }

    #[test]
    fn keeps_recursive_keyword() {
        let sql = inject_ctes(
            "with recursive r as (select 1) select * from r",
            &[cte("e", "select 1")],
        );
        assert!(sql.starts_with("with recursive e as ("), "{sql}");
        assert!(sql.ends_with(", r as (select 1) select * from r"), "{sql}");
    }

    #[test]
    fn a_column_named_without_is_not_a_with() {
        assert!(leading_with("withdrawals").is_none());
        assert!(leading_with("  with x as (select 1) select 1").is_some());
    }

    #[test]
    fn test_query_honours_thresholds_and_limit() {
        let mut config = NodeConfig::from_map(&Map::new());
        config.warn_if = ">10".into();
        config.limit = Some(5);
        let compiled = CompiledNode {
            unique_id: "test.p.t".into(),
            sql: "select 1".into(),
            is_incremental: false,
            logs: Vec::new(),
            config,
            relation_name: String::new(),
        };
        let sql = test_query(&compiled);
        assert!(sql.contains("count(*) >10 as should_warn"), "{sql}");
        assert!(sql.contains("count(*) != 0 as should_error"), "{sql}");
        assert!(
            sql.contains("select 1\nlimit 5\n) dbt_internal_test"),
            "{sql}"
        );
    }
}

#[cfg(test)]
mod project_tests {
    use super::*;
    use crate::graph::Graph;
    use crate::project::LoadOptions;
    use crate::test_support::*;

    #[test]
    fn jaffle_loads_and_compiles_everything() {
        let project =
            Project::load(&example("jaffle_shop"), &LoadOptions::default()).expect("load jaffle");
        let graph = Graph::build(&project).expect("graph");
        let models: Vec<&str> = project
            .nodes
            .values()
            .filter(|n| n.resource_type == ResourceType::Model)
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(
            models,
            vec![
                "customers",
                "daily_revenue",
                "int_order_totals",
                "orders",
                "stg_customers",
                "stg_orders",
                "stg_payments"
            ]
        );
        let tests = project
            .nodes
            .values()
            .filter(|n| n.resource_type == ResourceType::Test)
            .count();
        assert_eq!(tests, 21);
        for id in project.nodes.keys() {
            let compiled = project
                .compile(id, &Relations::default(), &CompileContext::default())
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            assert!(!compiled.sql.contains("{{"), "{id}: {}", compiled.sql);
        }
        let orders = compile(&project, "model.jaffle_shop.orders");
        assert!(orders.contains("as gift_card_amount"), "{orders}");
        assert!(orders.contains("from silver.stg_orders"), "{orders}");
        let payments = compile(&project, "model.jaffle_shop.stg_payments");
        assert!(
            payments.contains("cast(amount / 100.0 as numeric(16, 2)) as amount"),
            "{payments}"
        );
        let order = graph.execution_order(&graph.all());
        let position = |id: &str| order.iter().position(|x| x == id).expect(id);
        assert!(position("seed.jaffle_shop.raw_orders") < position("model.jaffle_shop.stg_orders"));
        assert!(position("model.jaffle_shop.stg_orders") < position("model.jaffle_shop.orders"));
        assert_eq!(
            project.nodes["model.jaffle_shop.orders"]
                .config
                .materialized,
            "table"
        );
        assert_eq!(
            project.nodes["model.jaffle_shop.stg_orders"]
                .config
                .materialized,
            "view"
        );
    }

    const PROJECT: &str = "name: shop\nversion: '1.0'\nconfig-version: 2\n";

    #[test]
    fn ephemeral_models_become_ordered_deduplicated_ctes() {
        let (_dir, project) = load(&[
            ("dbt_project.yml", PROJECT),
            (
                "models/base.sql",
                "{{ config(materialized='ephemeral') }}select 1 as id",
            ),
            (
                "models/mid.sql",
                "{{ config(materialized='ephemeral') }}select id from {{ ref('base') }}",
            ),
            (
                "models/top.sql",
                "select * from {{ ref('mid') }} join {{ ref('base') }} using (id)",
            ),
            (
                "models/withy.sql",
                "-- leading comment\nWITH x AS (select * from {{ ref('mid') }})\nselect * from x",
            ),
        ]);
        let top = compile(&project, "model.shop.top");
        assert_eq!(
            top,
            "with __dbt__cte__base as (\nselect 1 as id\n),\n__dbt__cte__mid as (\nselect id from __dbt__cte__base\n)\nselect * from __dbt__cte__mid join __dbt__cte__base using (id)"
        );
        let withy = compile(&project, "model.shop.withy");
        assert!(
            withy.starts_with("-- leading comment\nwith __dbt__cte__base as (\nselect 1 as id\n),\n__dbt__cte__mid as ("),
            "{withy}"
        );
        assert!(
            withy.ends_with("), x AS (select * from __dbt__cte__mid)\nselect * from x"),
            "{withy}"
        );
        assert_eq!(
            project.nodes["model.shop.top"].depends_on,
            vec!["model.shop.mid", "model.shop.base"]
        );
    }

    #[test]
    fn is_incremental_depends_on_relation_and_full_refresh() {
        let (_dir, project) = load(&[
            ("dbt_project.yml", PROJECT),
            (
                "models/events.sql",
                "{{ config(materialized='incremental', unique_key='id') }}select * from src{% if is_incremental() %} where ts > (select max(ts) from {{ this }}){% endif %}",
            ),
            (
                "models/pinned.sql",
                "{{ config(materialized='incremental', full_refresh=false) }}select 1{% if is_incremental() %} -- inc{% endif %}",
            ),
        ]);
        let id = "model.shop.events";
        let empty = Relations::default();
        let mut existing = Relations::default();
        existing
            .0
            .insert(("public".into(), "events".into()), RelationKind::Table);
        existing
            .0
            .insert(("public".into(), "pinned".into()), RelationKind::Table);
        let ctx = CompileContext::default();
        let first = project.compile(id, &empty, &ctx).expect("compile");
        assert!(!first.is_incremental);
        assert_eq!(first.sql, "select * from src");
        let next = project.compile(id, &existing, &ctx).expect("compile");
        assert!(next.is_incremental);
        assert_eq!(
            next.sql,
            "select * from src where ts > (select max(ts) from public.events)"
        );
        assert_eq!(next.config.unique_key, vec!["id"]);
        let full = CompileContext {
            full_refresh: true,
            ..CompileContext::default()
        };
        assert!(
            !project
                .compile(id, &existing, &full)
                .expect("compile")
                .is_incremental
        );
        let mut as_view = Relations::default();
        as_view
            .0
            .insert(("public".into(), "events".into()), RelationKind::View);
        assert!(
            !project
                .compile(id, &as_view, &ctx)
                .expect("compile")
                .is_incremental
        );
        // full_refresh: false in config wins over --full-refresh, as in dbt.
        assert!(
            project
                .compile("model.shop.pinned", &existing, &full)
                .expect("compile")
                .is_incremental
        );
    }

    #[test]
    fn context_objects_render_like_dbt() {
        let (_dir, project) = load(&[
            ("dbt_project.yml", PROJECT),
            (
                "macros/m.sql",
                "{% macro show() %}{{ log('from macro ' ~ this.identifier, info=true) }}{{ model.name }}{% endmacro %}",
            ),
            (
                "models/ctx.sql",
                "{{ config(materialized='table', meta={'owner': 'ann'}) }}select '{{ this }}' as a, '{{ target.schema }}/{{ target.type }}' as b, '{{ config.get('materialized') }}' as c, '{{ show() }}' as d, '{{ run_started_at.strftime('%Y') }}' as e, {{ execute }} as f, '{{ invocation_id }}' as g, '{{ config.get('missing', 'dflt') }}' as h, '{{ 'ABC'.lower() }}' as i, '{{ tojson({'k': 1}) }}' as j, '{{ fromjson('[1,2]')[1] }}' as k, '{{ dbt_version }}' as l",
            ),
        ]);
        let ctx = CompileContext {
            full_refresh: false,
            run_started_at: chrono::DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
                .expect("date")
                .with_timezone(&Utc),
            invocation_id: "inv-1".into(),
            query_runner: None,
        };
        let compiled = project
            .compile("model.shop.ctx", &Relations::default(), &ctx)
            .expect("compile");
        assert_eq!(
            compiled.sql,
            "select 'public.ctx' as a, 'public/polder' as b, 'table' as c, 'ctx' as d, '2024' as e, True as f, 'inv-1' as g, 'dflt' as h, 'abc' as i, '{\"k\":1}' as j, '2' as k, '1.8.0' as l"
        );
        assert_eq!(compiled.logs, vec!["from macro ctx"]);
        assert_eq!(compiled.config.extra["meta"]["owner"], "ann");
    }

    #[test]
    fn singular_tests_compile_and_wrap() {
        let (_dir, project) = load(&[
            ("dbt_project.yml", PROJECT),
            ("models/m.sql", "select 1 as id"),
            (
                "tests/no_negative.sql",
                "{{ config(severity='warn', warn_if='>5') }}select * from {{ ref('m') }} where id < 0",
            ),
        ]);
        let test = &project.nodes["test.shop.no_negative"];
        assert_eq!(test.depends_on, vec!["model.shop.m"]);
        let compiled = project
            .compile(
                "test.shop.no_negative",
                &Relations::default(),
                &CompileContext::default(),
            )
            .expect("compile");
        assert_eq!(compiled.sql, "select * from public.m where id < 0");
        assert_eq!(compiled.config.severity, "warn");
        let wrapped = test_query(&compiled);
        assert!(wrapped.contains("count(*) >5 as should_warn"), "{wrapped}");
    }

    struct FakeEngine;

    impl QueryRunner for FakeEngine {
        fn query(&self, sql: &str) -> std::result::Result<QueryResult, String> {
            if !sql.contains("distinct status") {
                return Err(format!("unexpected sql {sql}"));
            }
            Ok(QueryResult {
                columns: vec!["status".into()],
                rows: vec![
                    vec![serde_json::json!("open")],
                    vec![serde_json::json!("shut")],
                ],
            })
        }
    }

    #[test]
    fn run_query_append_and_update_work_like_dbt() {
        let (_dir, project) = load(&[
            ("dbt_project.yml", PROJECT),
            (
                "macros/statuses.sql",
                "{% macro statuses() %}\n{% set found = [] %}\n{% if execute %}\n{% set results = run_query('select distinct status from t') %}\n{% for row in results.rows %}{% do found.append(row['status']) %}{% endfor %}\n{% do found.extend(results.columns[0].values()) %}\n{% endif %}\n{{ return(found) }}\n{% endmacro %}",
            ),
            (
                "models/pivot.sql",
                "{% set seen = {} %}{% for s in statuses() %}{% do seen.update({s: loop.index}) %}{% endfor %}select {% for k, v in seen.items() %}{{ v }} as {{ k }}{% if not loop.last %}, {% endif %}{% endfor %}{% set n = statuses() | length %} -- {{ n }}",
            ),
        ]);
        let with_engine = CompileContext {
            query_runner: Some(Arc::new(FakeEngine)),
            ..CompileContext::default()
        };
        let compiled = project
            .compile("model.shop.pivot", &Relations::default(), &with_engine)
            .expect("compile");
        assert_eq!(compiled.sql, "select 3 as open, 4 as shut -- 4");
        // Without an engine run_query returns none, so using its result fails where it is used.
        let err = project
            .compile(
                "model.shop.pivot",
                &Relations::default(),
                &CompileContext::default(),
            )
            .expect_err("no engine");
        assert!(
            matches!(&err, TransformError::Jinja { path, line: Some(6), .. } if path.ends_with("macros/statuses.sql")),
            "{err}"
        );
    }

    #[test]
    fn graph_variable_hooks_and_thread_safety() {
        let (_dir, project) = load(&[
            ("dbt_project.yml", PROJECT),
            (
                "models/a.sql",
                "{{ config(post_hook=\"grant select on {{ this }} to reporter\") }}select {{ graph.nodes.values() | selectattr('resource_type', 'equalto', 'model') | list | length }} as models",
            ),
            ("models/b.sql", "select 1"),
        ]);
        assert_eq!(compile(&project, "model.shop.a"), "select 2 as models");
        assert!(project.on_run_start.is_empty());
        let node = &project.nodes["model.shop.a"];
        assert_eq!(
            node.config.post_hook,
            vec!["grant select on {{ this }} to reporter"]
        );
        let hook = project
            .render_hook(
                "model.shop.a",
                &node.config.post_hook[0],
                false,
                &CompileContext::default(),
            )
            .expect("hook");
        assert_eq!(hook, "grant select on public.a to reporter");
        fn assert_send_sync<T: Send + Sync>(_: &T) {}
        assert_send_sync(&project);
        let statement = project
            .render_sql(
                "on-run-end",
                "{% call statement('s', fetch_result=true) %}select 1{% endcall %}{{ load_result('s')['data'] | length }} {{ target.name }}",
                &CompileContext::default(),
            )
            .expect("render");
        assert_eq!(statement, "0 polder");
    }

    #[test]
    fn write_compiled_and_unquoted_accepted_values() {
        let (dir, project) = load(&[
            ("dbt_project.yml", PROJECT),
            ("models/m.sql", "select 1 as n"),
            (
                "models/s.yml",
                "version: 2\nmodels:\n  - name: m\n    columns:\n      - name: n\n        tests:\n          - accepted_values: {values: [1, 2], quote: false}\n",
            ),
        ]);
        let test = project
            .nodes
            .values()
            .find(|n| n.resource_type == ResourceType::Test)
            .expect("test");
        assert_eq!(test.name, "accepted_values_m_n__False__1__2");
        let compiled = project
            .compile(
                &test.unique_id,
                &Relations::default(),
                &CompileContext::default(),
            )
            .expect("compile");
        assert!(
            compiled.sql.contains("not in (\n    1,2\n)"),
            "{}",
            compiled.sql
        );
        let path = project.write_compiled(&compiled).expect("write");
        assert_eq!(
            path,
            dir.path()
                .join("target/compiled/shop/models/s.yml/accepted_values_m_n__False__1__2.sql")
        );
        let model = project
            .compile(
                "model.shop.m",
                &Relations::default(),
                &CompileContext::default(),
            )
            .expect("compile");
        let path = project.write_compiled(&model).expect("write");
        assert_eq!(
            std::fs::read_to_string(path).expect("read"),
            "select 1 as n"
        );
    }
}
