//! Production storage: the catalog in PostgreSQL (shared by several servers) and the lake on a
//! real S3-compatible server started on loopback.

mod support;

use support::{PgDatabase, S3Server, Server, ServerConfig};

#[test]
fn two_servers_share_a_postgres_catalog_and_a_lake() {
    let database = PgDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let lake = format!("file://{}/shared-lake", dir.path().display());
    let config = ServerConfig::default()
        .arg("--catalog")
        .arg(database.url())
        .arg("--lake")
        .arg(lake.clone());
    let first = Server::start_with(&dir.path().join("first"), config.clone());
    let second = Server::start_with(&dir.path().join("second"), config);

    first.sql_ok("CREATE SCHEMA finance");
    first.sql_ok("CREATE TABLE finance.invoices (id BIGINT, amount DOUBLE)");
    first.sql_ok("INSERT INTO finance.invoices VALUES (1, 10.0), (2, 20.0)");
    // The second server sees the first one's schema, table and rows ...
    assert_eq!(
        second.rows("SELECT sum(amount) FROM finance.invoices")[0][0],
        30.0
    );
    // ... and writes that the first one sees.
    second.sql_ok("INSERT INTO finance.invoices VALUES (3, 30.0)");
    second.sql_ok("CREATE VIEW finance.large AS SELECT * FROM finance.invoices WHERE amount > 15");
    assert_eq!(first.rows("SELECT count(*) FROM finance.large")[0][0], 2);
    assert_eq!(first.rows("SELECT count(*) FROM finance.invoices")[0][0], 3);

    first.sql_ok("DROP VIEW finance.large");
    let (status, _) = second.sql("SELECT * FROM finance.large");
    assert_eq!(status, 404, "a drop on one server is seen by the other");

    // A catalog that cannot be reached is a clear start-up error, without the password.
    let output = support::polder(&[
        "sql",
        "--catalog",
        "postgres://polder:do-not-print@127.0.0.1:1/nothing",
        "SELECT 1",
    ]);
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("cannot open catalog"), "{message}");
    assert!(!message.contains("do-not-print"), "{message}");
}

#[test]
fn a_lake_on_s3_compatible_storage() {
    let s3 = S3Server::start("polder-lake");
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::default()
        .arg("--lake")
        .arg("s3://polder-lake/warehouse");
    for (key, value) in s3.env() {
        config = config.env(&key, value);
    }
    let mut server = Server::start_with(dir.path(), config);

    server.sql_ok("CREATE TABLE bronze.clicks (id BIGINT, page VARCHAR)");
    server.sql_ok("INSERT INTO bronze.clicks VALUES (1, '/'), (2, '/docs')");
    server.sql_ok("INSERT INTO bronze.clicks VALUES (3, '/pricing')");
    server.sql_ok("UPDATE bronze.clicks SET page = '/home' WHERE id = 1");
    server.sql_ok(
        "CREATE TABLE gold.pages AS SELECT page, count(*) AS n FROM bronze.clicks GROUP BY page",
    );
    assert_eq!(
        server.rows("SELECT count(*) FROM bronze.clicks VERSION AS OF 1")[0][0],
        2
    );
    assert_eq!(
        server.rows("SELECT page FROM bronze.clicks WHERE id = 1")[0][0],
        "/home"
    );

    // The Delta log and data are really in the bucket.
    let listing = s3.boto3("[o['Key'] for o in s3.list_objects_v2(Bucket='polder-lake', Prefix='warehouse/bronze/clicks/_delta_log/')['Contents']]");
    assert!(listing.contains("00000000000000000003.json"), "{listing}");

    // Files in the bucket can be imported.
    s3.boto3("s3.put_object(Bucket='polder-lake', Key='incoming/day1.csv', Body=b'id,page\\n10,/a\\n11,/b\\n')");
    let output = support::polder(&[
        "import",
        "s3://polder-lake/incoming/",
        "--table",
        "bronze.incoming",
        "--server",
        &server.url(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(server.rows("SELECT count(*) FROM bronze.incoming")[0][0], 2);

    // Everything is still there after a restart.
    server.restart();
    assert_eq!(server.rows("SELECT sum(n) FROM gold.pages")[0][0], 3);
    let (status, ready) =
        support::http_request("GET", &format!("{}/ready", server.url()), &[], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&ready));
}

#[test]
fn an_unreachable_s3_endpoint_gives_clear_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::default()
        .arg("--lake")
        .arg("s3://nowhere/lake")
        .env("POLDER_S3_ENDPOINT", "http://127.0.0.1:1")
        .env("POLDER_S3_PATH_STYLE", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "secret-that-must-not-leak");
    // Started by hand: /ready is expected to fail. Its three ports are chosen together; when
    // another test took one in between, the server exits and is started again on new ones.
    let mut attempt = 0;
    let (mut child, port) = loop {
        attempt += 1;
        let [port, pg_port, flight_port] = support::free_ports::<3>();
        let mut child = std::process::Command::new(support::POLDER)
            .args(["serve", "--data-dir", dir.path().to_str().unwrap()])
            .args(["--http-listen", &format!("127.0.0.1:{port}")])
            .args(["--pg-listen", &format!("127.0.0.1:{pg_port}")])
            .args(["--flight-listen", &format!("127.0.0.1:{flight_port}")])
            .args(&config.args)
            .envs(config.env.iter().cloned())
            .env("POLDER_AUTH_ENABLED", "false")
            .env("POLDER_LOG_LEVEL", "warn")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            && child.try_wait().unwrap().is_none()
        {
            assert!(std::time::Instant::now() < deadline, "server did not start");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // A port that answers while our server has exited belongs to someone else.
        std::thread::sleep(std::time::Duration::from_millis(300));
        if child.try_wait().unwrap().is_none() {
            break (child, port);
        }
        assert!(attempt < 5, "the server exited at start five times");
    };
    let url = format!("http://127.0.0.1:{port}");
    let (status, body) = support::http_request("GET", &format!("{url}/ready"), &[], b"");
    let body = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("lake") && body.contains("unavailable"),
        "{body}"
    );
    assert!(!body.contains("secret-that-must-not-leak"));

    let request = serde_json::json!({"sql": "CREATE TABLE public.t AS SELECT 1 AS a"}).to_string();
    let (status, body) = support::http_request(
        "POST",
        &format!("{url}/api/v1/sql"),
        &[],
        request.as_bytes(),
    );
    let body = String::from_utf8_lossy(&body).to_string();
    assert!(status == 503 || status == 500, "{status} {body}");
    assert!(!body.contains("secret-that-must-not-leak"));
    let (status, _) = support::http_request("GET", &format!("{url}/health"), &[], b"");
    assert_eq!(status, 200, "liveness stays up");
    let _ = child.kill();
    let _ = child.wait();
}
