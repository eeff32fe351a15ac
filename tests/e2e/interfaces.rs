//! The three listeners of one `polder serve`: HTTP, PostgreSQL wire, Flight SQL. Each answers
//! the same SQL with the same results, answers bad input in its own convention, and keeps
//! serving.

mod support;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables};
use futures::TryStreamExt;
use support::{Server, ServerConfig, http_request};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn flight_client(server: &Server) -> FlightSqlServiceClient<tonic::transport::Channel> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", server.flight))
            .unwrap()
            .connect()
            .await
            .expect("flight sql connects");
    FlightSqlServiceClient::new(channel)
}

async fn flight_query(
    client: &mut FlightSqlServiceClient<tonic::transport::Channel>,
    sql: &str,
) -> Result<Vec<RecordBatch>, String> {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(|e| e.to_string())?;
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("a ticket");
        let stream = client.do_get(ticket).await.map_err(|e| e.to_string())?;
        let mut part: Vec<RecordBatch> = stream.try_collect().await.map_err(|e| e.to_string())?;
        batches.append(&mut part);
    }
    Ok(batches)
}

/// Rows as text, the common ground for comparing interfaces.
fn batches_to_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    rows
}

fn json_to_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "NULL".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn http_api_formats_probes_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());

    let created =
        server.sql_ok("CREATE TABLE public.readings (sensor VARCHAR, value DOUBLE, taken DATE)");
    assert_eq!(created["command"], "CREATE TABLE");
    let inserted = server.sql_ok("INSERT INTO readings VALUES ('a', 1.5, DATE '2026-01-01'), ('b', NULL, DATE '2026-01-02'), ('c, \"quoted\"', 3.25, NULL)");
    assert_eq!(inserted["rows_affected"], 3);

    let query = "SELECT sensor, value, taken FROM readings ORDER BY sensor";
    let json = server.sql_ok(query);
    assert_eq!(json["row_count"], 3);
    assert_eq!(json["columns"][1]["name"], "value");
    assert_eq!(json["rows"][0]["value"], 1.5);
    assert!(json["rows"][1]["value"].is_null());

    let body = serde_json::json!({ "sql": query }).to_string();
    let url = format!("{}/api/v1/sql", server.url());
    let (status, csv) = http_request("POST", &url, &[("accept", "text/csv")], body.as_bytes());
    assert_eq!(status, 200);
    let csv = String::from_utf8(csv).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("sensor,value,taken"));
    assert_eq!(lines.next(), Some("a,1.5,2026-01-01"));
    assert_eq!(lines.count(), 2);
    assert!(csv.contains("\"c, \"\"quoted\"\"\",3.25,"), "{csv}");

    let (status, arrow_bytes) = http_request(
        "POST",
        &url,
        &[("accept", "application/vnd.apache.arrow.stream")],
        body.as_bytes(),
    );
    assert_eq!(status, 200);
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow_bytes), None).unwrap();
    let arrow_batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();

    let (status, parquet_bytes) = http_request(
        "POST",
        &format!("{url}?format=parquet"),
        &[],
        body.as_bytes(),
    );
    assert_eq!(status, 200);
    let parquet_batches: Vec<RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(
            parquet_bytes,
        ))
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let from_json: Vec<Vec<String>> = server
        .rows(query)
        .iter()
        .map(|r| r.iter().map(json_to_text).collect())
        .collect();
    assert_eq!(batches_to_rows(&arrow_batches), from_json);
    assert_eq!(batches_to_rows(&parquet_batches), from_json);

    // Bad input: a clear JSON error with the status of its kind, and the server keeps serving.
    let (status, error) = server.sql("SELEC 1");
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "invalid_input");
    assert_eq!(error["error"]["sqlstate"], "42601");
    let (status, error) = server.sql("SELECT * FROM missing_table");
    assert_eq!(status, 404, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing_table")
    );
    let (status, error) = server.sql("SELECT 1 / 0");
    assert_eq!(status, 400, "{error}");
    let (status, _) = http_request("POST", &url, &[], b"not json");
    assert_eq!(status, 400);
    let (status, _) = http_request("POST", &format!("{url}?format=xml"), &[], body.as_bytes());
    assert_eq!(status, 400);
    let (status, _) = http_request("GET", &format!("{}/api/v1/nothing", server.url()), &[], b"");
    assert_eq!(status, 404);

    // Probes and the catalog.
    let (status, health) = http_request("GET", &format!("{}/health", server.url()), &[], b"");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&health).contains("ok"));
    let (status, ready) = http_request("GET", &format!("{}/ready", server.url()), &[], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&ready));
    let (status, catalog) =
        http_request("GET", &format!("{}/api/v1/catalog", server.url()), &[], b"");
    assert_eq!(status, 200);
    let catalog: serde_json::Value = serde_json::from_slice(&catalog).unwrap();
    let public = catalog["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "public")
        .unwrap();
    let readings = public["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "readings")
        .unwrap();
    assert_eq!(readings["row_count"], 3);
    assert_eq!(readings["version"], 1);
    assert_eq!(readings["columns"].as_array().unwrap().len(), 3);

    let (status, metrics) = http_request("GET", &format!("{}/metrics", server.url()), &[], b"");
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("polder_queries_total{interface=\"http\",outcome=\"ok\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("polder_query_errors_total"), "{metrics}");
    assert!(
        metrics.contains("polder_query_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains("polder_rows_returned_total{interface=\"http\"}"),
        "{metrics}"
    );
}

#[test]
fn postgres_wire_extended_protocol_and_sqlstates() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    runtime().block_on(async {
        let (client, connection) = tokio_postgres::connect(&server.pg_url(), tokio_postgres::NoTls).await.expect("pg connects");
        tokio::spawn(connection);

        client.batch_execute("CREATE SCHEMA crm; CREATE TABLE crm.people (id BIGINT, name VARCHAR, score DOUBLE)").await.unwrap();
        let inserted = client
            .execute("INSERT INTO crm.people VALUES ($1, $2, $3)", &[&1i64, &"ann", &9.5f64])
            .await
            .unwrap();
        assert_eq!(inserted, 1);
        let statement = client.prepare("INSERT INTO crm.people VALUES ($1, $2, $3)").await.unwrap();
        for (id, name) in [(2i64, "bob"), (3, "cid")] {
            client.execute(&statement, &[&id, &name, &(id as f64)]).await.unwrap();
        }
        let rows = client.query("SELECT name, score FROM crm.people WHERE id >= $1 ORDER BY id", &[&2i64]).await.unwrap();
        let names: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        assert_eq!(names, ["bob", "cid"]);
        assert_eq!(rows[0].get::<_, f64>(1), 2.0);

        let updated = client.execute("UPDATE crm.people SET score = score + $1 WHERE name = $2", &[&1.0f64, &"ann"]).await.unwrap();
        assert_eq!(updated, 1);
        let deleted = client.execute("DELETE FROM crm.people WHERE id = $1", &[&3i64]).await.unwrap();
        assert_eq!(deleted, 1);
        let score: f64 = client.query_one("SELECT score FROM crm.people WHERE id = 1", &[]).await.unwrap().get(0);
        assert_eq!(score, 10.5);

        for (sql, state) in [
            ("SELECT * FROM crm.nope", "42P01"),
            ("SELEC 1", "42601"),
            ("SELECT 1 / 0", "22012"),
            ("SELECT missing_column FROM crm.people", "42703"),
            ("CREATE SCHEMA crm", "42P06"),
        ] {
            let err = client.simple_query(sql).await.expect_err(sql);
            let code = err.code().map(|c| c.code().to_string());
            assert_eq!(code.as_deref(), Some(state), "{sql}: {err}");
            let err = client.query(sql, &[]).await.expect_err(sql);
            assert!(err.code().is_some(), "{sql} over the extended protocol has a SQLSTATE: {err}");
        }
        // The connection still works after errors.
        let count: i64 = client.query_one("SELECT count(*) FROM crm.people", &[]).await.unwrap().get(0);
        assert_eq!(count, 2);

        // Time travel and history over the wire.
        let old_count: i64 = client.query_one("SELECT count(*) FROM crm.people VERSION AS OF 2", &[]).await.unwrap().get(0);
        assert_eq!(old_count, 2);
        let history = client.simple_query("DESCRIBE HISTORY crm.people").await.unwrap();
        let history_rows = history.iter().filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))).count();
        assert_eq!(history_rows, 6, "create, 3 inserts, update, delete");
    });
}

#[test]
fn flight_sql_queries_commands_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    runtime().block_on(async {
        let mut client = flight_client(&server).await;
        let affected = client
            .execute_update("CREATE TABLE public.metrics_flight AS SELECT * FROM (VALUES (1, 'x'), (2, 'y')) AS v(id, tag)".to_string(), None)
            .await
            .unwrap();
        assert_eq!(affected, 2);
        let affected = client.execute_update("INSERT INTO metrics_flight VALUES (3, 'z')".to_string(), None).await.unwrap();
        assert_eq!(affected, 1);
        let batches = flight_query(&mut client, "SELECT id, tag FROM metrics_flight ORDER BY id").await.unwrap();
        assert_eq!(batches_to_rows(&batches), vec![vec!["1", "x"], vec!["2", "y"], vec!["3", "z"]]);

        // A command sent as a query runs too, and reports what it did.
        let done = flight_query(&mut client, "DELETE FROM metrics_flight WHERE id = 3").await.unwrap();
        assert_eq!(batches_to_rows(&done), vec![vec!["DELETE", "1"]]);

        let err = flight_query(&mut client, "SELECT * FROM nowhere").await.unwrap_err();
        assert!(err.contains("nowhere"), "{err}");

        let info = client.get_catalogs().await.unwrap();
        let catalogs: Vec<RecordBatch> = client.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap().try_collect().await.unwrap();
        assert_eq!(batches_to_rows(&catalogs), vec![vec!["polder"]]);
        let info = client
            .get_db_schemas(CommandGetDbSchemas {
                catalog: None,
                db_schema_filter_pattern: None,
            })
            .await
            .unwrap();
        let schemas: Vec<RecordBatch> = client.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap().try_collect().await.unwrap();
        let schema_names: Vec<String> = batches_to_rows(&schemas).into_iter().map(|r| r[1].clone()).collect();
        for expected in ["bronze", "silver", "gold", "public"] {
            assert!(schema_names.contains(&expected.to_string()), "{schema_names:?}");
        }
        let info = client
            .get_tables(CommandGetTables {
                catalog: None,
                db_schema_filter_pattern: Some("public".to_string()),
                table_name_filter_pattern: None,
                table_types: vec![],
                include_schema: true,
            })
            .await
            .unwrap();
        let tables: Vec<RecordBatch> = client.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap().try_collect().await.unwrap();
        let rows = batches_to_rows(&tables);
        assert!(rows.iter().any(|r| r[2] == "metrics_flight" && r[3] == "TABLE"), "{rows:?}");
        assert_eq!(tables[0].num_columns(), 5, "include_schema adds the table schema column");
    });
}

#[test]
fn every_interface_gives_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), ServerConfig::default().demo());
    let queries = [
        "SELECT order_date, orders, revenue FROM gold.daily_revenue ORDER BY order_date LIMIT 20",
        "SELECT category, sum(units) AS units, sum(revenue) AS revenue FROM gold.monthly_revenue_by_category GROUP BY category ORDER BY category",
        "SELECT c.country, count(*) AS customers FROM silver.customers c GROUP BY c.country ORDER BY customers DESC, c.country",
        "SELECT count(*) AS n, min(ordered_at) AS first, max(ordered_at) AS last FROM bronze.shop_orders",
    ];
    runtime().block_on(async {
        let (pg, connection) = tokio_postgres::connect(&server.pg_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut flight = flight_client(&server).await;
        for sql in queries {
            let flight_rows = batches_to_rows(&flight_query(&mut flight, sql).await.unwrap());
            let http_value = server.sql_ok(sql);
            let columns: Vec<String> = http_value["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect();
            let http_rows: Vec<Vec<String>> = http_value["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| columns.iter().map(|c| json_to_text(&row[c])).collect())
                .collect();
            let pg_rows: Vec<Vec<String>> = pg
                .simple_query(sql)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|i| row.get(i).unwrap_or("NULL").to_string())
                            .collect(),
                    ),
                    _ => None,
                })
                .collect();
            assert!(!flight_rows.is_empty(), "{sql}");
            assert_eq!(flight_rows.len(), http_rows.len(), "{sql}");
            assert_eq!(flight_rows.len(), pg_rows.len(), "{sql}");
            // Text renderings differ between protocols only in timestamp spelling; compare the
            // values after normalising that.
            // Numbers compare as numbers (JSON writes 7875.40 as 7875.4).
            let normalise = |v: &String| match v.parse::<f64>() {
                Ok(number) => format!("{number}"),
                Err(_) => {
                    let text = v.replace('T', " ");
                    let text = text
                        .trim_end_matches('Z')
                        .trim_end_matches("+00:00")
                        .trim_end_matches("+00");
                    // 07:26:05.000000 and 07:26:05 are the same instant.
                    match text.split_once('.') {
                        Some((whole, fraction)) if fraction.chars().all(|c| c == '0') => {
                            whole.to_string()
                        }
                        _ => text.to_string(),
                    }
                }
            };
            for ((f, h), p) in flight_rows.iter().zip(&http_rows).zip(&pg_rows) {
                let f: Vec<String> = f.iter().map(normalise).collect();
                let h: Vec<String> = h.iter().map(normalise).collect();
                let p: Vec<String> = p.iter().map(normalise).collect();
                assert_eq!(f, h, "{sql}: flight vs http");
                assert_eq!(f, p, "{sql}: flight vs postgres");
            }
        }
    });
}

#[test]
fn clients_that_leave_mid_stream_do_not_hurt_the_server() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // A large result: the client reads a little and hangs up.
    let body = serde_json::json!({"sql": "SELECT v, v * 2 AS w FROM generate_series(1, 20000000) AS t(v)"}).to_string();
    for _ in 0..3 {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.http)).unwrap();
        write!(stream, "POST /api/v1/sql HTTP/1.1\r\nhost: x\r\naccept: text/csv\r\ncontent-length: {}\r\n\r\n{}", body.len(), body).unwrap();
        let mut buffer = [0u8; 4096];
        let read = stream.read(&mut buffer).unwrap();
        assert!(read > 0);
        drop(stream);
    }
    runtime().block_on(async {
        let (pg, connection) = tokio_postgres::connect(&server.pg_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(connection);
        let query = pg.simple_query("SELECT v FROM generate_series(1, 20000000) AS t(v)");
        let _ = tokio::time::timeout(std::time::Duration::from_millis(300), query).await;
        task.abort();
    });
    // Still serving on every interface.
    let value = server.sql_ok("SELECT 41 + 1 AS answer");
    assert_eq!(value["rows"][0]["answer"], 42);
    runtime().block_on(async {
        let (pg, connection) = tokio_postgres::connect(&server.pg_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let answer: i64 = pg.query_one("SELECT 6 * 7", &[]).await.unwrap().get(0);
        assert_eq!(answer, 42);
    });
}
