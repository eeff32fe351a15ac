//! The command line: `polder sql`, `polder import`, `polder config show`, embedded on the data
//! directory while a server runs on it, or through the server.

mod support;

use std::process::Command;

use support::{POLDER, Server, http_request, polder};

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn embedded_cli_and_a_running_server_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let server = Server::start(&data);

    // The CLI writes on the data directory while the server runs on it ...
    let output = polder(&[
        "sql",
        "--data-dir",
        data_arg,
        "CREATE TABLE public.cli_made AS SELECT 1 AS id, 'one' AS label",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "SELECT 1");
    // ... and the server sees the new table at once.
    assert_eq!(server.rows("SELECT label FROM cli_made")[0][0], "one");

    // The other way round: the server writes, the embedded CLI reads.
    server.sql_ok("INSERT INTO cli_made VALUES (2, 'two')");
    let output = polder(&[
        "sql",
        "--data-dir",
        data_arg,
        "--format",
        "csv",
        "SELECT id, label FROM cli_made ORDER BY id",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "id,label\n1,one\n2,two\n");

    // Through the server, in each output format.
    let output = polder(&[
        "sql",
        "--server",
        &server.url(),
        "--format",
        "json",
        "SELECT id FROM cli_made ORDER BY id",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "{\"id\":1}\n{\"id\":2}\n");
    let output = polder(&[
        "sql",
        "--server",
        &server.url(),
        "SELECT count(*) AS n FROM cli_made",
    ]);
    let table = stdout(&output);
    assert!(
        table.contains("| n |") && table.contains("| 2 |") && table.contains("(1 row)"),
        "{table}"
    );

    // Errors: one readable line and a non-zero exit, embedded and through the server.
    let output = polder(&["sql", "--data-dir", data_arg, "SELEC 1"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).starts_with("error: syntax error"),
        "{}",
        stderr(&output)
    );
    let output = polder(&["sql", "--server", &server.url(), "SELECT * FROM not_there"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("not_there"), "{}", stderr(&output));
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
}

#[test]
fn import_files_embedded_and_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(
        files.join("jan.csv"),
        "city,temp c,day\nUtrecht,4.5,2026-01-01\nGent,5.0,2026-01-02\n",
    )
    .unwrap();
    std::fs::write(
        files.join("feb.csv"),
        "city,temp c,day\nLille,7.25,2026-02-01\n",
    )
    .unwrap();
    std::fs::write(
        files.join("events.jsonl"),
        "{\"id\": 1, \"kind\": \"open\"}\n{\"id\": 2, \"kind\": \"close\", \"extra\": true}\n",
    )
    .unwrap();
    std::fs::write(
        files.join("array.json"),
        "[{\"id\": 10, \"kind\": \"x\"}, {\"id\": 11, \"kind\": \"y\"}]",
    )
    .unwrap();
    let server = Server::start(&data);

    // A glob of two CSV files: one commit, columns made Delta-safe.
    let glob = format!("{}/*.csv", files.display());
    let output = polder(&[
        "import",
        &glob,
        "--table",
        "bronze.weather",
        "--data-dir",
        data_arg,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("3 rows"), "{}", stdout(&output));
    let rows = server.rows("SELECT city, temp_c FROM bronze.weather ORDER BY city");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0][0], "Gent");
    assert_eq!(
        server.rows("SELECT count(*) FROM table_history('bronze.weather')")[0][0],
        1
    );

    // Appending adds a commit; overwrite replaces the rows.
    let one = files.join("feb.csv");
    let output = polder(&[
        "import",
        one.to_str().unwrap(),
        "--table",
        "bronze.weather",
        "--data-dir",
        data_arg,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.rows("SELECT count(*) FROM bronze.weather")[0][0], 4);
    let output = polder(&[
        "import",
        one.to_str().unwrap(),
        "--table",
        "bronze.weather",
        "--mode",
        "overwrite",
        "--data-dir",
        data_arg,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.rows("SELECT count(*) FROM bronze.weather")[0][0], 1);
    assert_eq!(
        server.rows("SELECT count(*) FROM bronze.weather VERSION AS OF 1")[0][0],
        4
    );

    // JSON lines and a JSON array.
    let output = polder(&[
        "import",
        files.join("events.jsonl").to_str().unwrap(),
        "--table",
        "bronze.events",
        "--data-dir",
        data_arg,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let output = polder(&[
        "import",
        files.join("array.json").to_str().unwrap(),
        "--table",
        "bronze.events",
        "--data-dir",
        data_arg,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.rows("SELECT count(*) FROM bronze.events")[0][0], 4);

    // Parquet, exported by Polder itself and imported through the server (uploaded).
    let body = serde_json::json!({"sql": "SELECT city, temp_c FROM bronze.weather"}).to_string();
    let (status, parquet) = http_request(
        "POST",
        &format!("{}/api/v1/sql?format=parquet", server.url()),
        &[],
        body.as_bytes(),
    );
    assert_eq!(status, 200);
    let parquet_path = files.join("export.parquet");
    std::fs::write(&parquet_path, parquet).unwrap();
    let output = polder(&[
        "import",
        parquet_path.to_str().unwrap(),
        "--table",
        "silver.weather",
        "--server",
        &server.url(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        server.rows("SELECT city FROM silver.weather")[0][0],
        "Lille"
    );

    // From an HTTP URL (a plain file server), through the server.
    let file_port = support::free_port();
    let mut file_server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &file_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
            files.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", file_port)).is_err()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let url = format!("http://127.0.0.1:{file_port}/jan.csv");
    let output = polder(&[
        "import",
        &url,
        "--table",
        "bronze.from_url",
        "--server",
        &server.url(),
    ]);
    let _ = file_server.kill();
    let _ = file_server.wait();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.rows("SELECT count(*) FROM bronze.from_url")[0][0], 2);

    // Bad input: clear errors, nothing created.
    let output = polder(&[
        "import",
        "/no/such/file.csv",
        "--table",
        "bronze.nothing",
        "--data-dir",
        data_arg,
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("/no/such/file.csv"),
        "{}",
        stderr(&output)
    );
    std::fs::write(files.join("broken.parquet"), "this is not parquet").unwrap();
    let output = polder(&[
        "import",
        files.join("broken.parquet").to_str().unwrap(),
        "--table",
        "bronze.broken",
        "--data-dir",
        data_arg,
    ]);
    assert!(!output.status.success());
    let (status, _) = server.sql("SELECT * FROM bronze.broken");
    assert_eq!(status, 404, "a failed import creates no table");
    let output = polder(&[
        "import",
        one.to_str().unwrap(),
        "--table",
        "bronze.weather",
        "--mode",
        "create",
        "--data-dir",
        data_arg,
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("already exists"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        server.rows("SELECT count(*) FROM bronze.weather")[0][0],
        1,
        "the table is unchanged"
    );
}

#[test]
fn configuration_precedence_and_secret_masking() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("polder.toml"),
        "lake = \"file:///from/file\"\n[pg]\nlisten = \"127.0.0.1:40001\"\n[http]\nlisten = \"127.0.0.1:40002\"\n",
    )
    .unwrap();
    let output = Command::new(POLDER)
        .current_dir(dir.path())
        .args([
            "config",
            "show",
            "--catalog",
            "postgres://polder:flag-secret@db.internal/catalog",
        ])
        .env("POLDER_HTTP_LISTEN", "127.0.0.1:40003")
        .env("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(!text.contains("flag-secret"), "{text}");
    assert!(!text.contains("aws-secret-value"), "{text}");
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("catalog").contains("postgres://polder:****@db.internal/catalog")
            && line("catalog").contains("flag"),
        "{text}"
    );
    assert!(
        line("http.listen").contains("127.0.0.1:40003")
            && line("http.listen").contains("env POLDER_HTTP_LISTEN"),
        "{text}"
    );
    assert!(
        line("pg.listen").contains("127.0.0.1:40001") && line("pg.listen").contains("polder.toml"),
        "{text}"
    );
    assert!(line("lake").contains("file:///from/file"), "{text}");
    assert!(
        line("flight.listen").contains("127.0.0.1:32010")
            && line("flight.listen").contains("default"),
        "{text}"
    );
    assert!(line("s3.secret_access_key").contains("****"), "{text}");

    let output = Command::new(POLDER)
        .current_dir(dir.path())
        .args(["config", "show"])
        .env("POLDER_PG_LISTEN", "nonsense")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("pg.listen"), "{}", stderr(&output));
}

#[test]
fn a_corrupt_catalog_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("catalog.db"), "definitely not sqlite".repeat(500)).unwrap();
    let output = polder(&["sql", "--data-dir", data.to_str().unwrap(), "SELECT 1"]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("cannot open catalog") && message.contains("not a database"),
        "{message}"
    );
    assert_eq!(message.trim().lines().count(), 1, "{message}");

    let output = Command::new(POLDER)
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--http-listen",
            "127.0.0.1:0",
            "--pg-listen",
            "127.0.0.1:0",
            "--flight-listen",
            "127.0.0.1:0",
        ])
        .env("POLDER_LOG_LEVEL", "warn")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("not a database"),
        "{}",
        stderr(&output)
    );

    // A missing catalog is simply a new one; the lake is untouched.
    std::fs::remove_file(data.join("catalog.db")).unwrap();
    let output = polder(&["sql", "--data-dir", data.to_str().unwrap(), "SHOW SCHEMAS"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("bronze"));
}
