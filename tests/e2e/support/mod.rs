//! Shared pieces of the end-to-end tests: start the real `polder` binary on free ports, talk
//! to it with real clients, start real services (an S3-compatible server, PostgreSQL databases).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const POLDER: &str = env!("CARGO_BIN_EXE_polder");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `N` distinct free ports: every listener stays open until all are chosen.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("bound").port())
}

/// Attempts at starting a server before a port taken in the meantime counts as a failure.
const START_ATTEMPTS: usize = 5;

/// A running `polder serve`. Killed when dropped.
pub struct Server {
    pub child: Child,
    pub data_dir: PathBuf,
    pub http: u16,
    pub pg: u16,
    pub flight: u16,
    pub log: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// How to start a server.
#[derive(Default, Clone)]
pub struct ServerConfig {
    pub demo: bool,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl ServerConfig {
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    pub fn demo(mut self) -> Self {
        self.demo = true;
        self
    }
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, ServerConfig::default())
    }

    pub fn start_with(data_dir: &Path, config: ServerConfig) -> Server {
        let mut args = config.args.clone();
        if config.demo {
            args.push("--demo".to_string());
        }
        // Tests run in parallel and pick ports the same way: another test (or any process) can
        // take a port between our choice and the server's bind. Then start again on new ports.
        for attempt in 1..=START_ATTEMPTS {
            let [http, pg, flight] = free_ports::<3>();
            let mut server =
                Server::spawn(data_dir, args.clone(), config.env.clone(), http, pg, flight);
            match server.ready_or_exited() {
                Ok(()) => return server,
                Err(log) if log.contains("Address already in use") && attempt < START_ATTEMPTS => {
                    continue;
                }
                Err(log) => panic!("polder did not become ready; log:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(
        data_dir: &Path,
        args: Vec<String>,
        env: Vec<(String, String)>,
        http: u16,
        pg: u16,
        flight: u16,
    ) -> Server {
        std::fs::create_dir_all(data_dir).unwrap();
        let log = data_dir.join(format!("server-{http}.log"));
        let child = spawn_serve(data_dir, &args, &env, http, pg, flight, &log);
        Server {
            child,
            data_dir: data_dir.to_path_buf(),
            http,
            pg,
            flight,
            log,
            args,
            env,
        }
    }

    /// Waits until `/ready` answers 200 and the other two ports accept connections.
    pub fn wait_ready(&mut self) {
        if let Err(log) = self.ready_or_exited() {
            panic!("polder did not become ready; log:\n{log}");
        }
    }

    /// `Ok` once the server serves on all three ports; its log when it exited or timed out.
    fn ready_or_exited(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(response) = ureq_get(&format!("http://127.0.0.1:{}/ready", self.http))
                && response.0 == 200
                && std::net::TcpStream::connect(("127.0.0.1", self.pg)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", self.flight)).is_ok()
            {
                return Ok(());
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
                return Err(self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    pub fn pg_url(&self) -> String {
        format!("host=127.0.0.1 port={} user=admin dbname=polder", self.pg)
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = Command::new("kill")
            .arg("-9")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// Starts the same server again (same data, same ports) after it stopped.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_serve(
            &self.data_dir,
            &self.args,
            &self.env,
            self.http,
            self.pg,
            self.flight,
            &self.log,
        );
        self.wait_ready();
    }

    /// Runs SQL over HTTP and returns the JSON answer (panics on transport errors only).
    pub fn sql(&self, sql: &str) -> (u16, serde_json::Value) {
        let body = serde_json::json!({ "sql": sql }).to_string();
        let (status, text) = http_request(
            "POST",
            &format!("{}/api/v1/sql", self.url()),
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
        let value = serde_json::from_slice(&text).unwrap_or(serde_json::Value::Null);
        (status, value)
    }

    /// Runs SQL over HTTP and expects success.
    pub fn sql_ok(&self, sql: &str) -> serde_json::Value {
        let (status, value) = self.sql(sql);
        assert_eq!(status, 200, "{sql} failed: {value}");
        value
    }

    /// The rows of a query as JSON arrays of values (in column order).
    pub fn rows(&self, sql: &str) -> Vec<Vec<serde_json::Value>> {
        let value = self.sql_ok(sql);
        let columns: Vec<String> = value["columns"]
            .as_array()
            .expect("a query result")
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        value["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| columns.iter().map(|c| row[c].clone()).collect())
            .collect()
    }
}

fn spawn_serve(
    data_dir: &Path,
    args: &[String],
    env: &[(String, String)],
    http: u16,
    pg: u16,
    flight: u16,
    log: &Path,
) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut command = Command::new(POLDER);
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--http-listen")
        .arg(format!("127.0.0.1:{http}"))
        .arg("--pg-listen")
        .arg(format!("127.0.0.1:{pg}"))
        .arg("--flight-listen")
        .arg(format!("127.0.0.1:{flight}"))
        .args(args)
        .env("POLDER_LOG_LEVEL", "info")
        // Suites about other things run with authentication off (loopback only);
        // tests/e2e/security.rs turns it on.
        .env("POLDER_AUTH_ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(log_file);
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("polder starts")
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal blocking HTTP client over `std::net` (keeps the test helpers free of an async
/// runtime where none is needed).
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    try_http_request(method, url, headers, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

pub fn try_http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".to_string()));
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (key, value) in headers {
        request.push_str(&format!("{key}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let header_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no http header"))?
        + 4;
    let head = String::from_utf8_lossy(&response[..header_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no http status"))?;
    let mut body = response[header_end..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
    out
}

pub fn ureq_get(url: &str) -> std::io::Result<(u16, Vec<u8>)> {
    try_http_request("GET", url, &[], b"")
}

/// Runs the `polder` CLI with the given arguments.
pub fn polder(args: &[&str]) -> std::process::Output {
    Command::new(POLDER)
        .args(args)
        .env("POLDER_LOG_LEVEL", "warn")
        .output()
        .expect("polder runs")
}

/// The Python of the test virtualenv (with moto, boto3), or the system one.
pub fn python() -> PathBuf {
    if let Ok(venv) = std::env::var("POLDER_TEST_VENV") {
        return Path::new(&venv).join("bin/python");
    }
    let default = dirs_home().join(".cache/polder-venv/bin/python");
    if default.exists() {
        return default;
    }
    PathBuf::from("python3")
}

fn dirs_home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".to_string()))
}

/// A real S3-compatible server (moto's) on a loopback port, with one bucket.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    pub bucket: String,
}

impl S3Server {
    pub fn start(bucket: &str) -> S3Server {
        let port = free_port();
        let python = python();
        let child = Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto's S3 server with {}: {e}; run tests/setup.sh first",
                    python.display()
                )
            });
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto's S3 server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let server = S3Server {
            child,
            endpoint,
            bucket: bucket.to_string(),
        };
        server.boto3(&format!("s3.create_bucket(Bucket='{bucket}')"));
        server
    }

    /// Runs a boto3 statement with `s3` bound to a client of this server.
    pub fn boto3(&self, statement: &str) -> String {
        let script = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='test', aws_secret_access_key='test-secret', region_name='us-east-1')\nresult = {statement}\nprint(result)",
            self.endpoint
        );
        let output = Command::new(python())
            .arg("-c")
            .arg(&script)
            .output()
            .expect("python runs");
        assert!(
            output.status.success(),
            "boto3 failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    /// Environment for a polder process using this server as its lake.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".to_string(), "test".to_string()),
            (
                "AWS_SECRET_ACCESS_KEY".to_string(),
                "test-secret".to_string(),
            ),
            ("AWS_REGION".to_string(), "us-east-1".to_string()),
            ("POLDER_S3_ENDPOINT".to_string(), self.endpoint.clone()),
            ("POLDER_S3_PATH_STYLE".to_string(), "true".to_string()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway database on the real PostgreSQL server (127.0.0.1:5432 on the project's machines).
pub struct PgDatabase {
    pub name: String,
}

fn psql_admin(sql: &str) -> std::process::Output {
    let admin = std::env::var("POLDER_TEST_PG_HOST").unwrap_or_else(|_| "127.0.0.1".to_string());
    Command::new("psql")
        .args([
            "-h", &admin, "-p", "5432", "-U", "postgres", "-d", "postgres", "-X", "-q", "-c", sql,
        ])
        .output()
        .expect("psql runs")
}

impl PgDatabase {
    pub fn create() -> PgDatabase {
        let name = format!("polder_e2e_{}_{}", std::process::id(), free_port());
        let output = psql_admin(&format!("CREATE DATABASE {name}"));
        assert!(
            output.status.success(),
            "PostgreSQL on 127.0.0.1:5432 is needed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        PgDatabase { name }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = psql_admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}
