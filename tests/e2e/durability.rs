//! Nothing committed is lost, nothing half-written becomes visible: `kill -9` during writes.

mod support;

use std::time::{Duration, Instant};

use support::Server;

/// Starts a long write in the background over HTTP and returns its thread.
fn start_write(server: &Server, sql: &str) -> std::thread::JoinHandle<(u16, serde_json::Value)> {
    let url = server.url();
    let sql = sql.to_string();
    std::thread::spawn(move || {
        let body = serde_json::json!({ "sql": sql }).to_string();
        match support::try_http_request("POST", &format!("{url}/api/v1/sql"), &[], body.as_bytes())
        {
            Ok((status, bytes)) => (
                status,
                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            ),
            Err(_) => (0, serde_json::Value::Null),
        }
    })
}

/// Waits until the write has put a data file into the table's directory, or two seconds.
fn wait_for_data_files(table_dir: &std::path::Path, before: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let files = std::fs::read_dir(table_dir)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
                })
                .count()
            })
            .unwrap_or(0);
        if files > before || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `sql`, kills the server with -9 once the write has added data files to `table_dir`
/// (beyond `files_before`) and is still running, then starts the server again.
fn kill_9_mid_write(
    server: &mut Server,
    sql: &str,
    table_dir: &std::path::Path,
    files_before: usize,
) {
    let writer = start_write(server, sql);
    wait_for_data_files(table_dir, files_before);
    assert!(
        !writer.is_finished(),
        "the write must still run when the server is killed; raise its row count"
    );
    server.kill9();
    let _ = writer.join();
    server.restart();
}

fn parquet_files(table_dir: &std::path::Path) -> usize {
    std::fs::read_dir(table_dir)
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn kill_9_during_an_insert_leaves_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    server.sql_ok("CREATE TABLE public.ledger (id BIGINT, payload VARCHAR)");
    server.sql_ok("INSERT INTO ledger SELECT v, 'committed' FROM generate_series(1, 1000) AS t(v)");
    let table_dir = dir.path().join("lake/public/ledger");

    // A large insert, killed while it writes data files.
    let before = parquet_files(&table_dir);
    kill_9_mid_write(
        &mut server,
        "INSERT INTO ledger SELECT v, repeat('x', 40) || CAST(v AS VARCHAR) FROM generate_series(1, 300000000) AS t(v)",
        &table_dir,
        before,
    );
    let rows = server.rows("SELECT count(*), min(payload), max(payload) FROM ledger");
    assert_eq!(rows[0][0], 1000, "only the committed rows are visible");
    assert_eq!(rows[0][1], "committed");
    let versions = server.rows("SELECT max(version) FROM table_history('ledger')");
    assert_eq!(versions[0][0], 1, "no commit from the killed insert");

    // The table takes writes again; leftover files of the killed write do not matter.
    server.sql_ok("INSERT INTO ledger VALUES (1001, 'after restart')");
    assert_eq!(server.rows("SELECT count(*) FROM ledger")[0][0], 1001);
}

#[test]
fn kill_9_during_create_table_as_select_leaves_no_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let table_dir = dir.path().join("lake/public/big_copy");
    kill_9_mid_write(
        &mut server,
        "CREATE TABLE public.big_copy AS SELECT v, repeat('y', 40) AS pad FROM generate_series(1, 300000000) AS t(v)",
        &table_dir,
        0,
    );
    let (status, error) = server.sql("SELECT count(*) FROM big_copy");
    assert_eq!(status, 404, "the half-made table does not exist: {error}");
    // The name is free: creating it again works and gives exactly the new rows.
    server.sql_ok("CREATE TABLE public.big_copy AS SELECT 1 AS v");
    assert_eq!(server.rows("SELECT count(*) FROM big_copy")[0][0], 1);
}

#[test]
fn committed_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    server.sql_ok("CREATE TABLE public.journal (n INT)");
    for n in 0..5 {
        server.sql_ok(&format!("INSERT INTO journal VALUES ({n})"));
    }
    server.sql_ok("UPDATE journal SET n = n + 100 WHERE n = 0");
    server.sql_ok("CREATE VIEW public.journal_view AS SELECT n FROM journal WHERE n > 2");
    server.kill9();
    server.restart();
    let rows = server.rows("SELECT n FROM journal ORDER BY n");
    let values: Vec<i64> = rows.iter().map(|r| r[0].as_i64().unwrap()).collect();
    assert_eq!(values, [1, 2, 3, 4, 100]);
    assert_eq!(server.rows("SELECT count(*) FROM journal_view")[0][0], 3);
}
