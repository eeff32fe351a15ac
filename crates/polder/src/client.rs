//! The CLI as a client of a running server's HTTP API (`--server`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use polder_core::TableName;
use polder_ingest::ImportReport;

pub enum SqlResult {
    Rows(Vec<RecordBatch>),
    Command { tag: String, rows: Option<u64> },
}

/// An HTTP client that sends `POLDER_TOKEN` (a personal access token) as its bearer token.
fn http_client() -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(token) = std::env::var("POLDER_TOKEN")
        && !token.is_empty()
    {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("POLDER_TOKEN is not a valid token")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}

fn endpoint(server: &str, path: &str) -> String {
    format!("{}{path}", server.trim_end_matches('/'))
}

/// Turns an error answer (`{"error": {"message"}}`) into a readable error.
async fn check(response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or(body);
    bail!("{message} (HTTP {})", status.as_u16())
}

pub async fn sql(server: &str, query: &str) -> anyhow::Result<SqlResult> {
    let client = http_client()?;
    let response = client
        .post(endpoint(server, "/api/v1/sql"))
        .header(
            reqwest::header::ACCEPT,
            "application/vnd.apache.arrow.stream",
        )
        .json(&serde_json::json!({ "sql": query }))
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {server}"))?;
    let response = check(response).await?;
    let is_arrow = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/vnd.apache.arrow.stream"));
    let bytes = response.bytes().await?;
    if is_arrow {
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
        let batches = reader.collect::<Result<Vec<_>, _>>()?;
        return Ok(SqlResult::Rows(batches));
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes)?;
    Ok(SqlResult::Command {
        tag: value["command"].as_str().unwrap_or("OK").to_string(),
        rows: value["rows_affected"].as_u64(),
    })
}

pub async fn import(
    server: &str,
    source: &str,
    table: &TableName,
    format: Option<&str>,
    mode: &str,
) -> anyhow::Result<ImportReport> {
    let client = http_client()?;
    if source.starts_with("s3://")
        || source.starts_with("http://")
        || source.starts_with("https://")
    {
        let response = client
            .post(endpoint(server, "/api/v1/import"))
            .json(&serde_json::json!({"source": source, "table": table.to_string(), "format": format, "mode": mode}))
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {server}"))?;
        return Ok(check(response).await?.json().await?);
    }

    let files = local_files(source)?;
    let [file] = files.as_slice() else {
        bail!(
            "{} files match '{source}': through --server, import one local file per call (each call is one commit), \
             or run `polder import` on the server's data directory, or import from s3:// or https://",
            files.len()
        );
    };
    let size = std::fs::metadata(file)?.len();
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} uploading [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let handle = tokio::fs::File::open(file).await?;
    let progress = bar.clone();
    let stream = tokio_util_stream(handle).map(move |chunk| {
        if let Ok(bytes) = &chunk {
            progress.inc(bytes.len() as u64);
        }
        chunk
    });
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut query: Vec<(&str, String)> = vec![
        ("table", table.to_string()),
        ("mode", mode.to_string()),
        ("filename", file_name),
    ];
    if let Some(format) = format {
        query.push(("format", format.to_string()));
    }
    let response = client
        .post(endpoint(server, "/api/v1/import"))
        .query(&query)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {server}"))?;
    bar.finish_and_clear();
    Ok(check(response).await?.json().await?)
}

/// Reads a file as a stream of chunks for an upload body.
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> {
    futures::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buffer = vec![0u8; 256 * 1024];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(read) => {
                buffer.truncate(read);
                Some((Ok(bytes::Bytes::from(buffer)), file))
            }
            Err(err) => Some((Err(err), file)),
        }
    })
}

fn local_files(source: &str) -> anyhow::Result<Vec<PathBuf>> {
    let path = PathBuf::from(source);
    if path.is_file() {
        return Ok(vec![path]);
    }
    if source.contains(['*', '?', '[']) {
        let mut files = Vec::new();
        for entry in glob_paths(source)? {
            if entry.is_file() {
                files.push(entry);
            }
        }
        return Ok(files);
    }
    if path.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            if entry.path().is_file() {
                files.push(entry.path());
            }
        }
        return Ok(files);
    }
    bail!("no such file: {source}")
}

fn glob_paths(pattern: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in glob::glob(pattern).with_context(|| format!("invalid glob '{pattern}'"))? {
        paths.push(entry?);
    }
    Ok(paths)
}
