//! Authentication and authorization on every listener of one `polder serve` with
//! authentication on: logins, tokens, SCRAM on the PostgreSQL wire (real psql), the Flight SQL
//! handshake, roles and grants through joins, subqueries, CTEs and views, and the audit log.
//! Every refusal leaves the server serving.

mod support;

use std::process::Command;

use arrow_flight::sql::client::FlightSqlServiceClient;
use support::{Server, ServerConfig, http_request};

const ADMIN_PASSWORD: &str = "admin-secret-0451";
const ANN_PASSWORD: &str = "ann-secret-7788";

fn post_json(
    server: &Server,
    path: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer.as_str()));
    }
    let (status, text) = http_request(
        "POST",
        &format!("{}{path}", server.url()),
        &headers,
        body.to_string().as_bytes(),
    );
    (
        status,
        serde_json::from_slice(&text).unwrap_or(serde_json::Value::Null),
    )
}

fn sql_as(server: &Server, token: &str, sql: &str) -> (u16, serde_json::Value) {
    post_json(
        server,
        "/api/v1/sql",
        Some(token),
        serde_json::json!({ "sql": sql }),
    )
}

fn login(server: &Server, user: &str, password: &str) -> Result<String, (u16, serde_json::Value)> {
    let (status, body) = post_json(
        server,
        "/api/v1/login",
        None,
        serde_json::json!({"username": user, "password": password}),
    );
    if status == 200 {
        Ok(body["token"].as_str().expect("a token").to_string())
    } else {
        Err((status, body))
    }
}

fn psql(server: &Server, user: &str, password: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &server.pg.to_string(),
            "-U",
            user,
            "-d",
            "polder",
            "-c",
            sql,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql runs")
}

#[test]
fn every_listener_checks_credentials_roles_and_grants() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        ServerConfig::default()
            .env("POLDER_AUTH_ENABLED", "true")
            .env("POLDER_ADMIN_PASSWORD", ADMIN_PASSWORD),
    );

    // Probes stay open; the API does not.
    assert_eq!(
        support::ureq_get(&format!("{}/health", server.url()))
            .unwrap()
            .0,
        200
    );
    let (status, body) = server.sql("SELECT 1");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthenticated");

    // Wrong password: refused with one message that does not say whether the user exists.
    let (status, body) = login(&server, "admin", "wrong-password").unwrap_err();
    assert_eq!(status, 401);
    assert_eq!(body["error"]["message"], "invalid credentials");
    let (_, unknown) = login(&server, "nobody", "wrong-password").unwrap_err();
    assert_eq!(unknown["error"]["message"], "invalid credentials");
    let (status, _) = sql_as(&server, "polder_bogus_token", "SELECT 1");
    assert_eq!(status, 401);

    let admin = login(&server, "admin", ADMIN_PASSWORD).expect("admin logs in");
    for sql in [
        "CREATE TABLE gold.sales AS SELECT * FROM (VALUES (1, 'EU', 10.0), (2, 'US', 20.0)) AS t(id, region, amount)",
        "CREATE TABLE bronze.secret AS SELECT * FROM (VALUES (1, 'salary')) AS t(id, note)",
        "CREATE VIEW gold.published AS SELECT s.id, s.note FROM bronze.secret s",
    ] {
        let (status, body) = sql_as(&server, &admin, sql);
        assert_eq!(status, 200, "{sql}: {body}");
    }

    // Users through the API (admins only).
    let (status, body) = post_json(
        &server,
        "/api/v1/users",
        Some(&admin),
        serde_json::json!({"name": "ann", "role": "analyst", "password": ANN_PASSWORD}),
    );
    assert_eq!(status, 201, "{body}");
    let (status, _) = post_json(
        &server,
        "/api/v1/users",
        Some(&admin),
        serde_json::json!({"name": "vic", "role": "viewer", "password": "viewer-secret-1"}),
    );
    assert_eq!(status, 201);
    let (status, body) = sql_as(&server, &admin, "GRANT SELECT ON SCHEMA gold TO ann");
    assert_eq!(status, 200, "{body}");

    let ann = login(&server, "ann", ANN_PASSWORD).expect("ann logs in");
    let (status, body) = post_json(
        &server,
        "/api/v1/users",
        Some(&ann),
        serde_json::json!({"name": "mallory", "role": "admin", "password": "mallory-secret"}),
    );
    assert_eq!(status, 403, "an analyst cannot add users: {body}");

    // Granted data reads; ungranted data is refused on every path to it.
    let (status, body) = sql_as(&server, &ann, "SELECT count(*) AS n FROM gold.sales");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0]["n"], 2);
    let (status, body) = sql_as(&server, &ann, "SELECT * FROM gold.published");
    assert_eq!(status, 200, "a view publishes what its owner reads: {body}");
    for sql in [
        "SELECT * FROM bronze.secret",
        "SELECT s.id FROM gold.sales s JOIN bronze.secret x ON s.id = x.id",
        "SELECT * FROM gold.sales WHERE id IN (SELECT id FROM bronze.secret)",
        "WITH x AS (SELECT * FROM bronze.secret) SELECT * FROM x",
        "SELECT * FROM bronze.secret VERSION AS OF 0",
        "DESCRIBE HISTORY bronze.secret",
        "INSERT INTO gold.sales VALUES (3, 'EU', 1.0)",
        "DELETE FROM gold.sales",
        "CREATE TABLE gold.mine (a INT)",
        "DROP TABLE gold.sales",
        "GRANT SELECT ON SCHEMA bronze TO ann",
        "SELECT * FROM system.audit",
    ] {
        let (status, body) = sql_as(&server, &ann, sql);
        assert_eq!(status, 403, "{sql} must be refused: {body}");
        assert_eq!(body["error"]["code"], "permission_denied", "{sql}: {body}");
    }
    // An analyst's own schema is a sandbox for views, but a view of its own reaches only what
    // the analyst may read.
    let (status, body) = sql_as(&server, &ann, "CREATE SCHEMA ann");
    assert_eq!(status, 200, "{body}");
    let (status, body) = sql_as(
        &server,
        &ann,
        "CREATE VIEW ann.big AS SELECT * FROM gold.sales WHERE amount > 15",
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = sql_as(
        &server,
        &ann,
        "CREATE VIEW ann.leak AS SELECT * FROM bronze.secret",
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = sql_as(&server, &ann, "SELECT count(*) AS n FROM ann.big");
    assert_eq!(
        (status, body["rows"][0]["n"].clone()),
        (200, serde_json::json!(1)),
        "{body}"
    );
    let (status, body) = sql_as(&server, &ann, "SHOW GRANTS");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["rows"].as_array().unwrap().len(),
        1,
        "ann sees her own grant: {body}"
    );

    // A viewer runs no SQL over tables.
    let vic = login(&server, "vic", "viewer-secret-1").unwrap();
    let (status, _) = sql_as(&server, &vic, "SELECT * FROM gold.sales");
    assert_eq!(status, 403);

    // Personal access tokens work until revoked.
    let (status, body) = post_json(
        &server,
        "/api/v1/tokens",
        Some(&ann),
        serde_json::json!({"label": "bi"}),
    );
    assert_eq!(status, 201, "{body}");
    let pat = body["token"].as_str().unwrap().to_string();
    let pat_id = body["id"].as_str().unwrap().to_string();
    assert_eq!(sql_as(&server, &pat, "SELECT 1 AS one").0, 200);

    // PostgreSQL wire: SCRAM-SHA-256 with a real psql, the same grants.
    let ok = psql(
        &server,
        "ann",
        ANN_PASSWORD,
        "SELECT count(*) FROM gold.sales",
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "2");
    let wrong = psql(&server, "ann", "not-her-password", "SELECT 1");
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("password authentication failed")
            || String::from_utf8_lossy(&wrong.stderr).contains("authentication"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    let denied = psql(&server, "ann", ANN_PASSWORD, "SELECT * FROM bronze.secret");
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    // A token logs in as user <token id> with the secret as password.
    let secret = pat.rsplit('_').next().unwrap();
    let with_token = psql(&server, &pat_id, secret, "SELECT count(*) FROM gold.sales");
    assert!(
        with_token.status.success(),
        "{}",
        String::from_utf8_lossy(&with_token.stderr)
    );

    let (status, _) = http_request(
        "DELETE",
        &format!("{}/api/v1/tokens/{pat_id}", server.url()),
        &[("authorization", &format!("Bearer {ann}"))],
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(
        sql_as(&server, &pat, "SELECT 1").0,
        401,
        "a revoked token is refused"
    );
    let revoked = psql(&server, &pat_id, secret, "SELECT 1");
    assert!(
        !revoked.status.success(),
        "a revoked token cannot log in over PostgreSQL"
    );

    // Flight SQL: basic handshake, then the bearer on every call.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", server.flight))
                .unwrap()
                .connect()
                .await
                .unwrap();
        let mut anonymous = FlightSqlServiceClient::new(channel.clone());
        let err = anonymous
            .execute("SELECT 1".to_string(), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("Bearer"), "{err}");
        let mut wrong = FlightSqlServiceClient::new(channel.clone());
        assert!(wrong.handshake("ann", "nope-nope-nope").await.is_err());
        let mut client = FlightSqlServiceClient::new(channel);
        client
            .handshake("ann", ANN_PASSWORD)
            .await
            .expect("handshake");
        let info = client
            .execute("SELECT count(*) FROM gold.sales".to_string(), None)
            .await
            .expect("granted query");
        assert_eq!(info.endpoint.len(), 1);
        let err = client
            .execute("SELECT * FROM bronze.secret".to_string(), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("permission denied"), "{err}");
    });

    // Garbage on the PostgreSQL port does not take the server down.
    {
        use std::io::Write;
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", server.pg)).unwrap();
        let _ = socket.write_all(b"\x00\x00\x00\x08garbage-garbage-garbage");
    }

    // The audit log has the failed logins, the refusals and the changes; only admins read it.
    let (status, body) = sql_as(
        &server,
        &admin,
        "SELECT action, count(*) AS n FROM system.audit GROUP BY action ORDER BY action",
    );
    assert_eq!(status, 200, "{body}");
    let actions: Vec<String> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect();
    for expected in ["ddl", "denied", "grant", "login", "login_failed", "user"] {
        assert!(
            actions.contains(&expected.to_string()),
            "audit lacks {expected}: {actions:?}"
        );
    }

    // Secrets never show up in the audit log or the server log.
    let (_, everything) = sql_as(&server, &admin, "SELECT * FROM system.audit");
    let log = server.log_text();
    for secret in [ADMIN_PASSWORD, ANN_PASSWORD, secret] {
        assert!(
            !everything.to_string().contains(secret),
            "the audit log holds a secret"
        );
        assert!(!log.contains(secret), "the server log holds a secret");
    }
    assert_eq!(
        support::ureq_get(&format!("{}/ready", server.url()))
            .unwrap()
            .0,
        200
    );
}

#[test]
fn authentication_off_is_refused_on_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(support::POLDER)
        .args([
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--http-listen",
            "0.0.0.0:0",
        ])
        .env("POLDER_AUTH_ENABLED", "false")
        .output()
        .expect("polder runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("authentication is off"), "{stderr}");
}
