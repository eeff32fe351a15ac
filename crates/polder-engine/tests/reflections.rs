//! Reflections never change an answer: random group-by / filter queries over a table with an
//! aggregate and a raw reflection return the same rows with acceleration on and off (and a good
//! share of them is really served by a reflection), incremental refreshes keep that true, and
//! queries running while writers append and refreshes run only ever see whole states.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use polder_engine::{Engine, StatementOutput, with_acceleration};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

async fn engine(dir: &tempfile::TempDir) -> Arc<Engine> {
    Arc::new(
        Engine::open(
            &format!("sqlite://{}/catalog.db", dir.path().display()),
            &format!("file://{}/lake", dir.path().display()),
            &polder_core::S3Config::default(),
        )
        .await
        .unwrap(),
    )
}

async fn run(engine: &Engine, sql: &str) -> Vec<RecordBatch> {
    // Boxed: the engine's statement futures are large in debug builds, and a test thread's
    // stack is small.
    let mut outputs = Box::pin(engine.execute_sql(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    match outputs.pop() {
        Some(StatementOutput::Query(frame)) => frame
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
        _ => Vec::new(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Float(f64),
    Other(String),
}

/// Rows as comparable cells, sorted (SQL gives no order without ORDER BY).
fn rows(batches: &[RecordBatch]) -> Vec<Vec<Cell>> {
    let mut out = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let cells = batch
                .columns()
                .iter()
                .map(|column: &ArrayRef| {
                    if column.is_null(row) {
                        return Cell::Null;
                    }
                    let text = array_value_to_string(column, row).unwrap();
                    match column.data_type() {
                        DataType::Float32 | DataType::Float64 => Cell::Float(text.parse().unwrap()),
                        _ => Cell::Other(text),
                    }
                })
                .collect();
            out.push(cells);
        }
    }
    out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    out
}

fn same(a: &[Vec<Cell>], b: &[Vec<Cell>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len()
                && x.iter().zip(y).all(|(p, q)| match (p, q) {
                    (Cell::Float(p), Cell::Float(q)) => {
                        (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1.0)
                    }
                    _ => p == q,
                })
        })
}

async fn explain(engine: &Engine, sql: &str) -> String {
    let batches = run(engine, &format!("EXPLAIN {sql}")).await;
    let mut text = String::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            for column in batch.columns() {
                text.push_str(&array_value_to_string(column, row).unwrap());
                text.push('\n');
            }
        }
    }
    text
}

const SALES: &str = "CREATE TABLE shop.sales AS SELECT \
    arrow_cast(CAST(19723 + v % 400 AS INT), 'Date32') AS day, \
    to_timestamp_micros(1704067200000000 + v * 3607000000) AS ts, \
    CASE WHEN v % 17 = 0 THEN NULL WHEN v % 5 = 0 THEN 'NL' WHEN v % 5 = 1 THEN 'DE' WHEN v % 5 = 2 THEN 'FR' WHEN v % 5 = 3 THEN 'BE' ELSE 'ES' END AS country, \
    CASE v % 3 WHEN 0 THEN 'web' WHEN 1 THEN 'shop' ELSE 'phone' END AS channel, \
    CAST((v * 37 % 10000) / 100.0 AS DECIMAL(12,2)) AS amount, \
    CASE WHEN v % 11 = 0 THEN NULL ELSE CAST(v % 13 AS INT) END AS qty, \
    (v % 1000) * 0.37 AS price \
    FROM generate_series(1, 12000) AS t(v)";

const KEYS: [&str; 8] = [
    "country",
    "channel",
    "day",
    "date_trunc('month', day)",
    "date_trunc('year', day)",
    "date_trunc('day', ts)",
    "date_trunc('week', ts)",
    "date_trunc('month', ts)",
];
const AGGREGATES: [&str; 12] = [
    "count(*)",
    "sum(amount)",
    "min(amount)",
    "max(amount)",
    "count(amount)",
    "sum(qty)",
    "avg(qty)",
    "avg(price)",
    "count(DISTINCT country)",
    "max(qty)",
    "min(channel)",
    "sum(price)",
];
const FILTERS: [&str; 9] = [
    "country = 'NL'",
    "country IN ('DE', 'FR')",
    "channel <> 'web'",
    "day >= DATE '2024-06-01'",
    "day < DATE '2024-09-01'",
    "country IS NULL",
    "date_trunc('month', ts) = TIMESTAMP '2024-03-01 00:00:00'",
    // Not on a dimension: the reflection must step aside, the answer stay right.
    "amount > 50",
    "qty = 3",
];

fn pick<'a>(rng: &mut StdRng, from: &[&'a str], at_most: usize) -> Vec<&'a str> {
    let mut chosen = Vec::new();
    let count = rng.random_range(0..=at_most);
    for _ in 0..count {
        let item = from[rng.random_range(0..from.len())];
        if !chosen.contains(&item) {
            chosen.push(item);
        }
    }
    chosen
}

fn random_query(rng: &mut StdRng) -> String {
    let keys = pick(rng, &KEYS, 3);
    let mut aggregates = pick(rng, &AGGREGATES, 4);
    if aggregates.is_empty() {
        aggregates.push("count(*)");
    }
    let filters = pick(rng, &FILTERS, 2);
    let mut select: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    select.extend(aggregates.iter().map(|a| a.to_string()));
    let mut sql = format!("SELECT {} FROM shop.sales", select.join(", "));
    if !filters.is_empty() {
        sql.push_str(&format!(" WHERE {}", filters.join(" AND ")));
    }
    if !keys.is_empty() {
        sql.push_str(&format!(" GROUP BY {}", keys.join(", ")));
    }
    // Sometimes inside a subquery, to reach reflections below the top of the plan.
    if rng.random_bool(0.25) {
        sql = format!("SELECT * FROM ({sql}) AS inner_result");
    }
    sql
}

async fn compare_random_queries(engine: &Engine, rng: &mut StdRng, queries: usize) -> usize {
    let mut served = 0;
    for _ in 0..queries {
        let sql = random_query(rng);
        let plain = with_acceleration(false, run(engine, &sql)).await;
        let accelerated = run(engine, &sql).await;
        let (plain, accelerated) = (rows(&plain), rows(&accelerated));
        assert!(
            same(&plain, &accelerated),
            "{sql}\nwithout acceleration: {plain:?}\nwith: {accelerated:?}\n{}",
            explain(engine, &sql).await
        );
        if explain(engine, &sql).await.contains("served by reflection") {
            served += 1;
        }
    }
    served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_queries_answer_the_same_with_and_without_reflections() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir).await;
    run(&engine, "CREATE SCHEMA shop").await;
    run(&engine, SALES).await;
    run(
        &engine,
        "CREATE REFLECTION sales_cube ON shop.sales AGGREGATE \
         DIMENSIONS (country, channel, day BY DAY, ts BY HOUR) \
         MEASURES (amount (SUM, COUNT, MIN, MAX), qty (SUM, COUNT, MIN, MAX), price (SUM, COUNT)) \
         REFRESH MANUAL",
    )
    .await;
    run(
        &engine,
        "CREATE REFLECTION sales_by_country ON shop.sales RAW COLUMNS (country, day, amount) SORT BY (country) REFRESH MANUAL",
    )
    .await;
    let mut rng = StdRng::seed_from_u64(7);
    let served = compare_random_queries(&engine, &mut rng, 60).await;
    assert!(
        served >= 20,
        "only {served} of 60 queries were served by a reflection"
    );

    // A raw reflection serves a scan of its columns.
    let point = "SELECT day, amount FROM shop.sales WHERE country = 'BE' AND amount > 90";
    assert!(
        explain(&engine, point)
            .await
            .contains("served by reflection sales_by_country")
    );
    assert!(same(
        &rows(&with_acceleration(false, run(&engine, point)).await),
        &rows(&run(&engine, point).await)
    ));

    // New rows: until a refresh the reflections step aside; the refresh is incremental.
    run(
        &engine,
        "INSERT INTO shop.sales SELECT day, ts + INTERVAL '1 day', country, channel, amount + 1, qty, price FROM shop.sales WHERE qty = 5",
    )
    .await;
    let total = "SELECT country, sum(amount), count(*) FROM shop.sales GROUP BY country";
    assert!(explain(&engine, total).await.contains("a refresh is due"));
    assert!(same(
        &rows(&with_acceleration(false, run(&engine, total)).await),
        &rows(&run(&engine, total).await)
    ));
    let report = engine
        .refresh_reflection("sales_cube", false)
        .await
        .unwrap();
    assert_eq!(report.kind, "incremental");
    let report = engine
        .refresh_reflection("sales_by_country", false)
        .await
        .unwrap();
    assert_eq!(report.kind, "incremental");
    assert!(
        explain(&engine, total)
            .await
            .contains("served by reflection sales_cube")
    );
    let served = compare_random_queries(&engine, &mut rng, 30).await;
    assert!(
        served >= 10,
        "only {served} of 30 queries were served after the refresh"
    );

    // A delete is not an append: the next refresh is full, and answers stay equal.
    run(&engine, "DELETE FROM shop.sales WHERE country = 'FR'").await;
    assert_eq!(
        engine
            .refresh_reflection("sales_cube", false)
            .await
            .unwrap()
            .kind,
        "full"
    );
    compare_random_queries(&engine, &mut rng, 20).await;

    // A reflection of a view serves aggregates over the view (named with its schema).
    run(
        &engine,
        "CREATE VIEW shop.paid AS SELECT country, channel, day, amount FROM shop.sales WHERE qty IS NOT NULL",
    )
    .await;
    run(
        &engine,
        "CREATE REFLECTION paid_by_month ON shop.paid AGGREGATE DIMENSIONS (country, day BY MONTH) MEASURES (amount (SUM, COUNT)) REFRESH MANUAL",
    )
    .await;
    let by_view = "SELECT date_trunc('year', day) AS y, country, sum(amount), count(*) FROM shop.paid WHERE country <> 'DE' GROUP BY 1, 2";
    assert!(
        explain(&engine, by_view)
            .await
            .contains("served by reflection paid_by_month")
    );
    assert!(same(
        &rows(&with_acceleration(false, run(&engine, by_view)).await),
        &rows(&run(&engine, by_view).await)
    ));
    // Replacing the view makes its reflection invalid.
    run(
        &engine,
        "CREATE OR REPLACE VIEW shop.paid AS SELECT country, channel, day, amount FROM shop.sales",
    )
    .await;
    assert!(!explain(&engine, by_view).await.contains("served by"));

    // Dropping the source makes the reflection invalid, never wrong.
    run(&engine, "DROP TABLE shop.sales").await;
    run(&engine, SALES).await;
    assert!(explain(&engine, total).await.contains("not used"));
    assert!(same(
        &rows(&with_acceleration(false, run(&engine, total)).await),
        &rows(&run(&engine, total).await)
    ));
    let records = engine.reflection_records().await.unwrap();
    assert!(records.iter().all(|r| r.status == "invalid"), "{records:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_half_refreshed_reflection() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir).await;
    run(&engine, "CREATE SCHEMA feed").await;
    run(
        &engine,
        "CREATE TABLE feed.events AS SELECT CAST(1 AS BIGINT) AS batch, CAST(v % 4 AS INT) AS kind FROM generate_series(1, 100) AS t(v)",
    )
    .await;
    run(
        &engine,
        "CREATE REFLECTION events_by_kind ON feed.events AGGREGATE DIMENSIONS (kind) MEASURES (batch (SUM)) REFRESH MANUAL",
    )
    .await;
    let committed = Arc::new(AtomicI64::new(1));
    let done = Arc::new(AtomicBool::new(false));
    // Batch b adds 100 rows whose `batch` is b: after k batches, count = 100 k and
    // sum = 100 k (k + 1) / 2. Any mix of two states breaks that.
    let writer = {
        let (engine, committed) = (engine.clone(), committed.clone());
        tokio::spawn(async move {
            for b in 2..=25i64 {
                run(
                    &engine,
                    &format!(
                        "INSERT INTO feed.events SELECT CAST({b} AS BIGINT), CAST(v % 4 AS INT) FROM generate_series(1, 100) AS t(v)"
                    ),
                )
                .await;
                committed.store(b, Ordering::SeqCst);
            }
        })
    };
    let refresher = {
        let (engine, done) = (engine.clone(), done.clone());
        tokio::spawn(async move {
            let mut refreshes = 0;
            while !done.load(Ordering::SeqCst) {
                engine
                    .refresh_reflection("events_by_kind", false)
                    .await
                    .unwrap();
                refreshes += 1;
            }
            refreshes
        })
    };
    let mut served = 0;
    let query = "SELECT count(*) AS n, sum(batch) AS total FROM feed.events";
    while !writer.is_finished() || served < 3 {
        let before = committed.load(Ordering::SeqCst);
        let batches = run(&engine, query).await;
        let after = committed.load(Ordering::SeqCst);
        let cells = rows(&batches);
        let (Cell::Other(n), Cell::Other(total)) = (&cells[0][0], &cells[0][1]) else {
            panic!("{cells:?}");
        };
        let (n, total): (i64, i64) = (n.parse().unwrap(), total.parse().unwrap());
        assert_eq!(n % 100, 0, "a partial batch: {n} rows");
        let k = n / 100;
        assert_eq!(
            total,
            100 * k * (k + 1) / 2,
            "count and sum from different states"
        );
        assert!(
            before <= k && k <= after + 1,
            "state {k} outside [{before}, {after}]"
        );
        if explain(&engine, query)
            .await
            .contains("served by reflection")
        {
            served += 1;
        }
        if writer.is_finished() && served < 3 {
            engine
                .refresh_reflection("events_by_kind", false)
                .await
                .unwrap();
        }
    }
    done.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    assert!(refresher.await.unwrap() > 0);
    assert!(served >= 3);
}
