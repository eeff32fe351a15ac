//! The runner on a real engine (embedded catalog, local lake): materializations, seeds,
//! incremental merges, tests, failures that keep the previous version, skipped descendants.

use std::path::Path;
use std::sync::Arc;

use polder_engine::{Engine, StatementOutput};
use polder_transform::{Command, Progress, RunOptions, RunReport, Transformations, new_run_id};
use serde_json::Map;

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A small shop: a seed, a staging view, an ephemeral filter, a table mart, an incremental
/// model merged on its key, and tests of every severity.
fn shop(root: &Path) {
    write(
        root,
        "dbt_project.yml",
        "name: shop\nversion: '1.0'\nconfig-version: 2\nprofile: ignored\nvars:\n  min_amount: 0\nmodels:\n  shop:\n    staging:\n      +materialized: view\n      +schema: silver\n    marts:\n      +materialized: table\n      +schema: gold\nseeds:\n  shop:\n    +schema: bronze\n    raw_orders:\n      +column_types:\n        code: varchar\n",
    );
    write(
        root,
        "macros/generate_schema_name.sql",
        "{% macro generate_schema_name(custom_schema_name, node) -%}\n  {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}\n{%- endmacro %}\n",
    );
    write(
        root,
        "seeds/raw_orders.csv",
        "id,customer,amount,status,code,ordered_at\n1,ann,100,placed,007,2024-01-01\n2,bob,250,shipped,008,2024-01-02\n3,ann,75,placed,009,2024-01-03\n",
    );
    write(
        root,
        "models/staging/stg_orders.sql",
        "select id as order_id, customer, amount, status, code, ordered_at from {{ ref('raw_orders') }}\nwhere amount >= {{ var('min_amount') }}\n",
    );
    write(
        root,
        "models/staging/big_orders.sql",
        "{{ config(materialized='ephemeral') }}\nselect * from {{ ref('stg_orders') }} where amount > 90\n",
    );
    write(
        root,
        "models/marts/customers.sql",
        "with o as (select * from {{ ref('big_orders') }})\nselect customer, count(*) as orders, sum(amount) as total from o group by customer\n",
    );
    write(
        root,
        "models/marts/order_log.sql",
        "{{ config(materialized='incremental', unique_key='order_id') }}\nselect order_id, status, amount from {{ ref('stg_orders') }}\n{% if is_incremental() %}where order_id >= (select max(order_id) from {{ this }}){% endif %}\n",
    );
    write(
        root,
        "models/marts/schema.yml",
        "version: 2\nmodels:\n  - name: customers\n    columns:\n      - name: customer\n        tests: [unique, not_null]\n  - name: order_log\n    columns:\n      - name: status\n        tests:\n          - accepted_values:\n              values: ['placed', 'shipped']\n              config:\n                severity: warn\n",
    );
}

async fn engine(dir: &Path) -> Arc<Engine> {
    Arc::new(
        Engine::open(
            &format!("sqlite://{}/catalog.db", dir.display()),
            &format!("file://{}/lake", dir.display()),
            &polder_core::S3Config::default(),
        )
        .await
        .expect("engine opens"),
    )
}

async fn build(transformations: &Transformations, root: &Path, options: RunOptions) -> RunReport {
    let loaded = transformations
        .load(root, Map::new(), options.threads)
        .expect("project loads");
    let quiet: Arc<dyn Fn(Progress) + Send + Sync> = Arc::new(|_| {});
    transformations
        .execute(&loaded, &options, "test", &new_run_id(), quiet)
        .await
        .expect("run completes")
        .report
}

fn options(command: Command) -> RunOptions {
    RunOptions {
        command,
        select: Vec::new(),
        exclude: Vec::new(),
        full_refresh: false,
        threads: 4,
        fail_fast: false,
    }
}

async fn rows(engine: &Engine, sql: &str) -> Vec<String> {
    let outputs = engine.execute_sql(sql).await.expect("query runs");
    let Some(StatementOutput::Query(frame)) = outputs.into_iter().last() else {
        panic!("not a query: {sql}");
    };
    let batches = frame.collect().await.expect("query collects");
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .expect("format")
        .to_string();
    text.lines()
        .skip(3)
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

fn status_of<'a>(report: &'a RunReport, id: &str) -> &'a str {
    report
        .results
        .iter()
        .find(|r| r.unique_id == id)
        .map(|r| r.status.as_str())
        .unwrap_or("absent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_a_project_then_merges_increments_and_keeps_failed_models_at_their_last_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("shop");
    shop(&root);
    let engine = engine(dir.path()).await;
    let transformations = Transformations::new(engine.clone());

    let report = build(&transformations, &root, options(Command::Build)).await;
    assert!(report.succeeded(), "{:#?}", report.results);
    assert_eq!(status_of(&report, "seed.shop.raw_orders"), "success");
    assert_eq!(status_of(&report, "model.shop.stg_orders"), "success");
    assert_eq!(
        status_of(&report, "model.shop.big_orders"),
        "absent",
        "ephemeral models do not run"
    );
    assert_eq!(
        rows(
            &engine,
            "SELECT customer, orders, total FROM gold.customers ORDER BY customer"
        )
        .await,
        vec!["ann,1,100", "bob,1,250"]
    );
    // column_types kept the leading zeros of `code`.
    assert_eq!(
        rows(&engine, "SELECT code FROM silver.stg_orders ORDER BY code").await,
        vec!["007", "008", "009"]
    );
    assert!(root.join("target/manifest.json").is_file());
    assert!(root.join("target/run_results.json").is_file());

    // New and changed source rows: the incremental model merges them on its key.
    write(
        &root,
        "seeds/raw_orders.csv",
        "id,customer,amount,status,code,ordered_at\n1,ann,100,placed,007,2024-01-01\n2,bob,250,shipped,008,2024-01-02\n3,ann,75,shipped,009,2024-01-03\n4,cid,500,returned,010,2024-01-04\n",
    );
    let report = build(&transformations, &root, options(Command::Build)).await;
    let warned = report
        .results
        .iter()
        .find(|r| r.unique_id.starts_with("test.shop.accepted_values"))
        .expect("the test ran");
    assert_eq!(warned.status, "warn", "{warned:?}");
    assert!(
        report.succeeded(),
        "a warning is not a failure: {:#?}",
        report.results
    );
    assert_eq!(
        rows(
            &engine,
            "SELECT order_id, status FROM gold.order_log ORDER BY order_id"
        )
        .await,
        vec!["1,placed", "2,shipped", "3,shipped", "4,returned"]
    );

    // A broken mart: it fails, names its file, keeps its previous table; its tests are skipped.
    let before = rows(&engine, "SELECT * FROM gold.customers ORDER BY customer").await;
    write(
        &root,
        "models/marts/customers.sql",
        "select customer, count(*) as orders, sum(no_such_column) as total from {{ ref('stg_orders') }} group by customer\n",
    );
    let report = build(&transformations, &root, options(Command::Build)).await;
    assert!(!report.succeeded());
    let failed = report
        .results
        .iter()
        .find(|r| r.unique_id == "model.shop.customers")
        .expect("ran");
    assert_eq!(failed.status, "error");
    let message = failed.message.clone().unwrap_or_default();
    assert!(
        message.contains("models/marts/customers.sql") && message.contains("no_such_column"),
        "{message}"
    );
    assert_eq!(
        rows(&engine, "SELECT * FROM gold.customers ORDER BY customer").await,
        before
    );
    let skipped: Vec<&str> = report
        .results
        .iter()
        .filter(|r| r.status == "skipped")
        .map(|r| r.unique_id.as_str())
        .collect();
    assert!(
        skipped
            .iter()
            .any(|id| id.starts_with("test.shop.unique_customers")),
        "{skipped:?}"
    );
    assert_eq!(
        status_of(&report, "model.shop.order_log"),
        "success",
        "unrelated models still run"
    );

    // --full-refresh rebuilds the incremental model from scratch (one row per key, no merge).
    let mut full = options(Command::Run);
    full.full_refresh = true;
    full.select = vec!["order_log".to_string()];
    let report = build(&transformations, &root, full).await;
    assert_eq!(report.results.len(), 1, "{:#?}", report.results);
    assert!(report.succeeded());
    assert_eq!(
        rows(&engine, "SELECT count(*) FROM gold.order_log").await,
        vec!["4"]
    );

    // The catalog keeps each node's last outcome for the UI.
    let nodes = transformations.nodes("shop").await.expect("nodes");
    let customers = nodes
        .iter()
        .find(|n| n.unique_id == "model.shop.customers")
        .expect("stored");
    assert_eq!(customers.last_status, "error");
    assert!(
        customers.depends_on.contains("model.shop.stg_orders"),
        "{}",
        customers.depends_on
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_skips_what_has_not_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("shop");
    shop(&root);
    write(
        &root,
        "models/staging/stg_orders.sql",
        "select * from {{ ref('raw_orders') }} where nope\n",
    );
    let engine = engine(dir.path()).await;
    let transformations = Transformations::new(engine);
    let mut fast = options(Command::Build);
    fast.fail_fast = true;
    fast.threads = 1;
    let report = build(&transformations, &root, fast).await;
    assert_eq!(status_of(&report, "model.shop.stg_orders"), "error");
    assert!(
        report
            .results
            .iter()
            .filter(|r| r.status == "skipped")
            .count()
            >= 3,
        "{:#?}",
        report.results
    );
    assert!(
        report
            .results
            .iter()
            .all(|r| r.status != "success" || r.unique_id == "seed.shop.raw_orders")
    );
}

/// dbt's cross-database macros render SQL that Polder's engine runs, with the values dbt's
/// PostgreSQL implementations give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_database_macros_run_on_the_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("macros");
    write(
        &root,
        "dbt_project.yml",
        "name: m\nversion: '1.0'\nconfig-version: 2\nmodels:\n  m:\n    +materialized: table\n",
    );
    write(
        &root,
        "models/dates.sql",
        "select\n\
         {{ dbt.datediff(\"cast('2024-01-31' as date)\", \"cast('2024-03-01' as date)\", 'day') }} as days,\n\
         {{ dbt.datediff(\"cast('2024-01-31' as date)\", \"cast('2024-03-01' as date)\", 'month') }} as months,\n\
         {{ dbt.datediff(\"cast('2023-12-31' as date)\", \"cast('2024-01-01' as date)\", 'year') }} as years,\n\
         {{ dbt.datediff(\"cast('2024-01-01 10:00:00' as timestamp)\", \"cast('2024-01-01 12:30:00' as timestamp)\", 'hour') }} as hours,\n\
         cast({{ dbt.dateadd('day', 3, \"cast('2024-02-27' as date)\") }} as date) as plus_three,\n\
         cast({{ dbt.date_trunc('month', \"cast('2024-02-17' as date)\") }} as date) as month_start,\n\
         cast({{ dbt.last_day(\"cast('2024-02-17' as date)\", 'month') }} as date) as month_end\n",
    );
    write(
        &root,
        "models/strings.sql",
        "with t as (select 'a,b,c' as s, 'it''s' as q union all select 'x,y', 'no')\n\
         select\n\
         {{ dbt.split_part('s', \"','\", 2) }} as second_part,\n\
         {{ dbt.concat(['s', \"'!'\"]) }} as shout,\n\
         {{ dbt.length('s') }} as len,\n\
         {{ dbt.position(\"','\", 's') }} as comma_at,\n\
         {{ dbt.right('s', 2) }} as tail,\n\
         {{ dbt.replace('s', \"','\", \"';'\") }} as semis,\n\
         {{ dbt.safe_cast(\"'12'\", dbt.type_int()) }} as twelve,\n\
         {{ dbt.string_literal(dbt.escape_single_quotes(\"it's\")) }} as literal,\n\
         length({{ dbt.hash('s') }}) as hash_length\n\
         from t\n",
    );
    write(
        &root,
        "models/aggregates.sql",
        "with t as (select 1 as g, 'b' as v, true as f union all select 1, 'a', false)\n\
         select g, {{ dbt.listagg('v', \"'/'\", 'order by v') }} as vs, {{ dbt.bool_or('f') }} as any_f,\n\
         {{ dbt.cast_bool_to_text('true') }} as t_text, {{ dbt.any_value('v') }} is not null as has_value\n\
         from t group by g\n",
    );
    let engine = engine(dir.path()).await;
    let transformations = Transformations::new(engine.clone());
    let report = build(&transformations, &root, options(Command::Run)).await;
    assert!(report.succeeded(), "{:#?}", report.results);
    assert_eq!(
        rows(&engine, "SELECT days, months, years, hours, plus_three, month_start, month_end FROM public.dates").await,
        vec!["30,2,1,2,2024-03-01,2024-02-01,2024-02-29"]
    );
    assert_eq!(
        rows(&engine, "SELECT second_part, shout, len, comma_at, tail, semis, twelve, literal, hash_length FROM public.strings ORDER BY len").await,
        vec!["y,x,y!,3,2,,y,x;y,12,it's,32", "b,a,b,c!,5,2,,c,a;b;c,12,it's,32"]
    );
    assert_eq!(
        rows(
            &engine,
            "SELECT vs, any_f, t_text, has_value FROM public.aggregates"
        )
        .await,
        vec!["a/b,true,true,true"]
    );
}
