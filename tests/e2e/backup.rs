//! Backups: build data on a running server, back it up (incrementally), damage and verify the
//! repository, destroy everything, restore (as of a time, and the latest) and compare every
//! table and view; retention; the same with a PostgreSQL catalog, an S3 lake and an S3 repository.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use support::{PgDatabase, S3Server, Server, ServerConfig};

/// Runs the CLI with extra environment.
fn polder_env(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(support::POLDER)
        .args(args)
        .env("POLDER_LOG_LEVEL", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("polder runs")
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "polder failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn failed(output: Output) -> String {
    assert!(
        !output.status.success(),
        "polder should have failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every query whose answer must survive a backup and restore.
const QUERIES: &[&str] = &[
    "SELECT * FROM sales.orders ORDER BY id",
    "SELECT * FROM sales.customers ORDER BY id",
    "SELECT * FROM sales.dropme ORDER BY id",
    "SELECT * FROM sales.big_orders ORDER BY id",
    "SELECT * FROM gold.by_region ORDER BY region",
    // answered from the aggregate reflection when it is fresh
    "SELECT region, sum(amount) AS total, count(amount) AS n FROM sales.orders GROUP BY region ORDER BY region",
    "SELECT * FROM sales.orders VERSION AS OF 1 ORDER BY id",
    "SELECT name, kind, status FROM system.reflections ORDER BY name",
];

fn capture(server: &Server) -> Vec<Vec<Vec<Value>>> {
    QUERIES.iter().map(|sql| server.rows(sql)).collect()
}

/// version, timestamp and operation of each commit of `table`.
fn history(server: &Server, table: &str) -> Vec<Vec<Value>> {
    server
        .rows(&format!("DESCRIBE HISTORY {table}"))
        .into_iter()
        .map(|row| row[..3].to_vec())
        .collect()
}

fn chart_names(server: &Server) -> Vec<String> {
    let (status, body) =
        support::http_request("GET", &format!("{}/api/v1/charts", server.url()), &[], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let value: Value = serde_json::from_slice(&body).unwrap();
    let mut names: Vec<String> = value["charts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// `backup list --json`: one object per backup, oldest first.
fn list(repo: &str, env: &[(String, String)], extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["backup", "list", "--json", "--from", repo];
    args.extend_from_slice(extra);
    let mut backups: Vec<Value> = ok(polder_env(&args, env))
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    backups.sort_by_key(|b| b["created_at"].as_str().unwrap().to_string());
    backups
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

fn build_data(server: &Server) {
    for sql in [
        "CREATE SCHEMA sales",
        "CREATE TABLE sales.orders (id BIGINT, region VARCHAR, amount DOUBLE)",
        "INSERT INTO sales.orders VALUES (1, 'eu', 10.5), (2, 'us', 20.0), (3, 'eu', 30.25), (4, 'apac', 5.0)",
        "INSERT INTO sales.orders VALUES (5, 'us', 50.0), (6, 'eu', 60.0)",
        "UPDATE sales.orders SET amount = 21.0 WHERE id = 2",
        "DELETE FROM sales.orders WHERE id = 4",
        "CREATE TABLE sales.customers AS SELECT * FROM (VALUES (1, 'Ada', 'eu'), (2, 'Bob', 'us')) AS t(id, name, region)",
        "CREATE TABLE sales.dropme (id BIGINT, note VARCHAR)",
        "INSERT INTO sales.dropme VALUES (1, 'only in the first backups')",
        "CREATE VIEW sales.big_orders AS SELECT * FROM sales.orders WHERE amount > 20",
        "CREATE VIEW gold.by_region AS SELECT region, count(*) AS n, sum(amount) AS total FROM sales.orders GROUP BY region",
        "CREATE REFLECTION orders_by_region ON sales.orders AGGREGATE DIMENSIONS (region) MEASURES (amount (SUM, COUNT))",
        "CREATE REFLECTION orders_raw ON sales.orders RAW COLUMNS (id, region, amount) PARTITION BY (region)",
    ] {
        server.sql_ok(sql);
    }
}

#[test]
fn back_up_destroy_restore_and_compare_on_sqlite_and_a_local_lake() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_string();
    let repo_dir = dir.path().join("repo");
    let repo = format!("file://{}", repo_dir.display());
    let none: Vec<(String, String)> = Vec::new();

    let server = Server::start(&data);
    build_data(&server);
    let chart = serde_json::json!({"name": "Orders by region", "spec": {
        "type": "bar", "source": {"table": "sales.orders"},
        "dimensions": [{"column": "region"}], "measures": [{"agg": "sum", "column": "amount"}]}});
    let (status, body) = support::http_request(
        "POST",
        &format!("{}/api/v1/charts", server.url()),
        &[("content-type", "application/json")],
        chart.to_string().as_bytes(),
    );
    assert!(
        status == 200 || status == 201,
        "{status} {}",
        String::from_utf8_lossy(&body)
    );
    // A stored secret: restored sealed, readable only with the key kept apart from backups.
    ok(polder_env(
        &["secret", "set", "warehouse", "--data-dir", &data_arg],
        &[("POLDER_SECRET_VALUE".to_string(), "s3cr3t".to_string())],
    ));
    let first = capture(&server);
    let first_history = history(&server, "sales.orders");
    let charts = chart_names(&server);
    assert_eq!(charts, vec!["Orders by region"]);
    assert_eq!(first[7].len(), 2, "two reflections: {:?}", first[7]);

    // Online backup while the server runs.
    let output = ok(support::polder(&[
        "backup",
        "--to",
        &repo,
        "--data-dir",
        &data_arg,
    ]));
    assert!(output.starts_with("backup "), "{output}");
    let backups = list(&repo, &none, &[]);
    assert_eq!(backups.len(), 1);
    let first_files = backups[0]["files"].as_u64().unwrap();
    assert_eq!(backups[0]["files_copied"].as_u64().unwrap(), first_files);
    assert_eq!(backups[0]["tables"], 5, "3 tables and 2 reflections");
    // The partitioned reflection's directories are in the repository.
    assert!(
        files_under(&repo_dir.join("data/.reflections"))
            .iter()
            .any(|p| p.to_string_lossy().contains("region=eu")),
        "partition directories are backed up"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = chrono::Utc::now().to_rfc3339();
    std::thread::sleep(std::time::Duration::from_millis(1100));

    server.sql_ok("INSERT INTO sales.orders VALUES (7, 'apac', 70.0)");
    server.sql_ok("UPDATE sales.customers SET name = 'Bobby' WHERE id = 2");
    let second = capture(&server);
    let second_history = history(&server, "sales.orders");
    assert_ne!(first[0], second[0]);

    // Incremental: only the new files are copied; every file of the first backup is reused.
    let output = ok(polder_env(
        &["backup", "create", "--data-dir", &data_arg],
        &[("POLDER_BACKUP_URL".to_string(), repo.clone())],
    ));
    assert!(output.contains("reused"), "{output}");
    let backups = list(&repo, &none, &[]);
    assert_eq!(backups.len(), 2, "{backups:?}");
    let latest = &backups[1];
    let files = latest["files"].as_u64().unwrap();
    let copied = latest["files_copied"].as_u64().unwrap();
    assert_eq!(latest["files_reused"].as_u64().unwrap(), first_files);
    assert_eq!(copied, files - first_files);
    assert!(copied > 0 && copied < files, "{latest}");
    let table = ok(support::polder(&["backup", "list", "--from", &repo]));
    assert_eq!(table.lines().count(), 3, "header and two backups: {table}");

    let verified = ok(support::polder(&[
        "backup", "verify", "--from", &repo, "--all",
    ]));
    assert!(verified.contains("intact"), "{verified}");

    // A damaged file is found and named; putting it back makes the repository whole again.
    let victim = files_under(&repo_dir.join("data/sales/orders"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .expect("a data file of sales.orders");
    let original = std::fs::read(&victim).unwrap();
    let mut damaged = original.clone();
    damaged[original.len() / 2] ^= 0xff;
    std::fs::write(&victim, &damaged).unwrap();
    let message = failed(support::polder(&[
        "backup", "verify", "--from", &repo, "--all",
    ]));
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(message.contains(name), "{message}");
    assert!(message.contains("damaged or missing"), "{message}");
    std::fs::write(&victim, &original).unwrap();
    ok(support::polder(&[
        "backup", "verify", "--from", &repo, "--all",
    ]));

    // A restore into a catalog that holds data is refused.
    let message = failed(support::polder(&[
        "restore",
        "--from",
        &repo,
        "--data-dir",
        &data_arg,
    ]));
    assert!(message.contains("not empty"), "{message}");
    assert_eq!(message.trim().lines().count(), 1, "{message}");

    // Disaster: the server and its whole data directory are gone (the secrets key was kept).
    drop(server);
    let key = std::fs::read(data.join("secret.key")).unwrap();
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("secret.key"), &key).unwrap();

    let output = ok(support::polder(&[
        "restore",
        "--from",
        &repo,
        "--as-of",
        &between,
        "--data-dir",
        &data_arg,
    ]));
    assert!(
        output.contains(&backups[0]["id"].as_str().unwrap().to_string()),
        "{output}"
    );
    assert!(output.contains("secrets key"), "{output}");
    let restored = Server::start(&data);
    assert_eq!(capture(&restored), first);
    // History, with the original commit times, and time travel by time as well as version.
    assert_eq!(history(&restored, "sales.orders"), first_history);
    let version_one_time = first_history
        .iter()
        .find(|row| row[0] == 1)
        .map(|row| row[1].as_str().unwrap().to_string())
        .unwrap();
    assert_eq!(
        restored.rows(&format!(
            "SELECT * FROM sales.orders TIMESTAMP AS OF '{version_one_time}' ORDER BY id"
        )),
        first[6]
    );
    assert_eq!(chart_names(&restored), charts);
    let secrets = ok(support::polder(&[
        "secret",
        "list",
        "--data-dir",
        &data_arg,
    ]));
    assert!(secrets.contains("warehouse"), "{secrets}");
    drop(restored);

    // The latest backup into another empty directory.
    let other = dir.path().join("other");
    let other_arg = other.to_str().unwrap().to_string();
    ok(support::polder(&[
        "restore",
        "--from",
        &repo,
        "--data-dir",
        &other_arg,
    ]));
    let latest_server = Server::start(&other);
    assert_eq!(capture(&latest_server), second);
    assert_eq!(history(&latest_server, "sales.orders"), second_history);

    // No backup that early: a clear error.
    let message = failed(support::polder(&[
        "restore",
        "--from",
        &repo,
        "--as-of",
        "2001-01-01",
        "--data-dir",
        dir.path().join("never").to_str().unwrap(),
    ]));
    assert!(message.contains("at or before"), "{message}");

    // Retention: keep one. The two older backups go, and with them the files of the table
    // only they held; what is left verifies.
    latest_server.sql_ok("DROP TABLE sales.dropme");
    assert!(!files_under(&repo_dir.join("data/sales/dropme")).is_empty());
    let output = ok(support::polder(&[
        "backup",
        "--to",
        &repo,
        "--keep",
        "1",
        "--data-dir",
        &other_arg,
    ]));
    assert!(output.contains("deleted 2 backups"), "{output}");
    let backups = list(&repo, &none, &[]);
    assert_eq!(backups.len(), 1, "{backups:?}");
    // A backup of a restored lake found its files in the repository: it copied only the
    // Delta log of what changed since.
    assert!(
        backups[0]["files_copied"].as_u64().unwrap() < backups[0]["files"].as_u64().unwrap() / 2,
        "{}",
        backups[0]
    );
    assert!(
        files_under(&repo_dir.join("data/sales/dropme")).is_empty(),
        "files no backup needs are deleted"
    );
    assert!(!files_under(&repo_dir.join("data/sales/orders")).is_empty());
    ok(support::polder(&[
        "backup", "verify", "--from", &repo, "--all",
    ]));

    // Bad input: one readable line each.
    let message = failed(support::polder(&[
        "backup",
        "--to",
        "ftp://host/x",
        "--data-dir",
        &other_arg,
    ]));
    assert!(message.contains("invalid backup location"), "{message}");
    let message = failed(support::polder(&[
        "backup",
        "--to",
        &repo,
        "--keep",
        "forever",
        "--data-dir",
        &other_arg,
    ]));
    assert!(message.contains("invalid retention"), "{message}");
    let empty = format!("file://{}", dir.path().join("empty").display());
    let message = failed(support::polder(&["backup", "verify", "--from", &empty]));
    assert!(message.contains("no backups"), "{message}");
}

#[test]
fn postgres_catalog_and_s3_lake_restore_into_a_new_database_and_bucket() {
    let s3 = S3Server::start("polder-lake");
    s3.boto3("s3.create_bucket(Bucket='polder-backups')");
    s3.boto3("s3.create_bucket(Bucket='polder-restored')");
    let env = s3.env();
    let dir = tempfile::tempdir().unwrap();
    let source_db = PgDatabase::create();
    let source_catalog = source_db.url();

    let mut config = ServerConfig::default()
        .arg("--catalog")
        .arg(source_catalog.clone())
        .arg("--lake")
        .arg("s3://polder-lake/warehouse");
    for (key, value) in &env {
        config = config.env(key, value.clone());
    }
    let server = Server::start_with(&dir.path().join("source"), config);
    for sql in [
        "CREATE SCHEMA finance",
        "CREATE TABLE finance.invoices (id BIGINT, customer VARCHAR, amount DOUBLE)",
        "INSERT INTO finance.invoices VALUES (1, 'acme', 10.0), (2, 'globex', 20.0)",
        "INSERT INTO finance.invoices VALUES (3, 'acme', 30.0)",
        "UPDATE finance.invoices SET amount = 25.0 WHERE id = 2",
        "CREATE VIEW finance.by_customer AS SELECT customer, sum(amount) AS total FROM finance.invoices GROUP BY customer",
        "CREATE REFLECTION invoices_by_customer ON finance.invoices AGGREGATE DIMENSIONS (customer) MEASURES (amount (SUM))",
    ] {
        server.sql_ok(sql);
    }
    let queries = [
        "SELECT * FROM finance.invoices ORDER BY id",
        "SELECT * FROM finance.by_customer ORDER BY customer",
        "SELECT * FROM finance.invoices VERSION AS OF 1 ORDER BY id",
        "SELECT name, status FROM system.reflections",
    ];
    let before: Vec<_> = queries.iter().map(|q| server.rows(q)).collect();

    let work = dir.path().join("cli");
    let work_arg = work.to_str().unwrap();
    let repo = "s3://polder-backups/nightly";
    let output = ok(polder_env(
        &[
            "backup",
            "--to",
            repo,
            "--catalog",
            &source_catalog,
            "--lake",
            "s3://polder-lake/warehouse",
            "--data-dir",
            work_arg,
        ],
        &env,
    ));
    assert!(output.contains(repo), "{output}");
    ok(polder_env(
        &["backup", "verify", "--from", repo, "--data-dir", work_arg],
        &env,
    ));
    let listing = s3.boto3(
        "[o['Key'] for o in s3.list_objects_v2(Bucket='polder-backups', Prefix='nightly/')['Contents']]",
    );
    assert!(
        listing.contains("nightly/data/finance/invoices/_delta_log/00000000000000000000.json"),
        "{listing}"
    );
    assert!(listing.contains("/manifest.json"), "{listing}");
    drop(server);

    let target_db = PgDatabase::create();
    let target_catalog = target_db.url();
    let output = ok(polder_env(
        &[
            "restore",
            "--from",
            repo,
            "--catalog",
            &target_catalog,
            "--lake",
            "s3://polder-restored/copy",
            "--data-dir",
            work_arg,
        ],
        &env,
    ));
    assert!(output.contains("restored backup"), "{output}");
    assert!(!output.contains("test-secret"), "{output}");

    let mut config = ServerConfig::default()
        .arg("--catalog")
        .arg(target_catalog.clone())
        .arg("--lake")
        .arg("s3://polder-restored/copy");
    for (key, value) in &env {
        config = config.env(key, value.clone());
    }
    let restored = Server::start_with(&dir.path().join("restored"), config);
    let after: Vec<_> = queries.iter().map(|q| restored.rows(q)).collect();
    assert_eq!(after, before);
    let listing = s3.boto3(
        "[o['Key'] for o in s3.list_objects_v2(Bucket='polder-restored', Prefix='copy/finance/')['Contents']]",
    );
    assert!(
        listing.contains("copy/finance/invoices/_delta_log/00000000000000000003.json"),
        "{listing}"
    );

    // The restored lake is not empty any more: a second restore into it is refused.
    let another_db = PgDatabase::create();
    let message = failed(polder_env(
        &[
            "restore",
            "--from",
            repo,
            "--catalog",
            &another_db.url(),
            "--lake",
            "s3://polder-restored/copy",
            "--data-dir",
            work_arg,
        ],
        &env,
    ));
    assert!(message.contains("already holds files"), "{message}");

    // A repository bucket that does not exist: one line, no credentials.
    let message = failed(polder_env(
        &[
            "backup",
            "list",
            "--from",
            "s3://no-such-bucket/x",
            "--data-dir",
            work_arg,
        ],
        &env,
    ));
    assert!(message.contains("no-such-bucket"), "{message}");
    assert!(!message.contains("test-secret"), "{message}");
    assert_eq!(message.trim().lines().count(), 1, "{message}");
}
