//! Airbyte source connectors: runs a connector executable with the Airbyte protocol
//! (`spec`, `check`, `discover`, `read`) and hands its messages to the sync engine.
//!
//! A connector is any program that speaks the protocol on stdout, one JSON message a line,
//! for example `source-faker` from the PyPI package `airbyte-source-faker` installed in a
//! virtualenv. The config, catalog and state go to 0600 files in a fresh private directory
//! that is removed when the call or the [`ReadSession`] ends; the child process is killed
//! when a session is dropped, so a cancelled sync leaves no connector running.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::error::{IngestError, Result};

/// How long `spec`, `check` and `discover` may run unless set otherwise.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// A stdout line longer than this is garbage, not a message (records can be many MB).
const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;
/// Large reads keep the number of pipe reads low for connectors that print fast.
const STDOUT_BUFFER_BYTES: usize = 1024 * 1024;
const STDERR_TAIL_LINES: usize = 64;
const STDERR_TAIL_BYTES: usize = 16 * 1024;
/// How much of an offending line an error message quotes.
const PREVIEW_CHARS: usize = 200;
/// After the connector exited, how long a grandchild holding stderr open may delay `finish`.
const STDERR_DRAIN_GRACE: Duration = Duration::from_secs(5);

/// An Airbyte source connector: the program to run and its leading arguments
/// (for example `["/venvs/source-faker/bin/source-faker"]`). It must be able to read the
/// files it is given, so a container needs the temporary directory mounted.
#[derive(Debug, Clone)]
pub struct AirbyteConnector {
    command: Vec<String>,
    source_name: String,
    timeout: Duration,
}

/// The answer of `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Whether the connector could connect with this config.
    pub succeeded: bool,
    /// The connector's explanation (usually only when it failed).
    pub message: Option<String>,
}

/// A stream as `discover` declares it. Fields the protocol adds later (such as
/// `is_resumable`) are kept in `other_fields` and sent back in the configured catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AirbyteStream {
    /// Stream name, for example `users`.
    pub name: String,
    /// Namespace (schema or database) where the source has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// JSON schema of the records.
    pub json_schema: Value,
    /// `full_refresh` and/or `incremental`.
    #[serde(default)]
    pub supported_sync_modes: Vec<String>,
    /// Whether the source picks the cursor itself (then `default_cursor_field` is it).
    #[serde(default)]
    pub source_defined_cursor: bool,
    /// Path of the cursor field, for example `["updated_at"]`.
    #[serde(default)]
    pub default_cursor_field: Vec<String>,
    /// Primary key as a list of field paths, for example `[["id"]]`.
    #[serde(default)]
    pub source_defined_primary_key: Vec<Vec<String>>,
    /// Any other field the connector declared, passed through unchanged.
    #[serde(flatten)]
    pub other_fields: Map<String, Value>,
}

/// How the source reads a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Every record, every time.
    FullRefresh,
    /// Only records past the cursor saved in the state.
    Incremental,
}

/// What the destination does with the records (told to the source; some sources care).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationSyncMode {
    /// Replace the table.
    Overwrite,
    /// Add to the table.
    Append,
    /// Add and keep the latest version of each primary key.
    AppendDedup,
}

/// A stream selected for `read`, with how it is read.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfiguredStream {
    /// The stream as discovered.
    pub stream: AirbyteStream,
    /// Full refresh or incremental.
    pub sync_mode: SyncMode,
    /// What the destination does with the records.
    pub destination_sync_mode: DestinationSyncMode,
    /// Cursor field path (ignored by sources with a source-defined cursor).
    pub cursor_field: Vec<String>,
    /// Primary key field paths.
    pub primary_key: Vec<Vec<String>>,
}

impl ConfiguredStream {
    /// Selects a stream with its source-defined cursor and primary key; incremental
    /// streams are appended, full refreshes overwrite.
    pub fn new(stream: AirbyteStream, sync_mode: SyncMode) -> Self {
        let destination_sync_mode = match sync_mode {
            SyncMode::FullRefresh => DestinationSyncMode::Overwrite,
            SyncMode::Incremental => DestinationSyncMode::Append,
        };
        ConfiguredStream {
            cursor_field: stream.default_cursor_field.clone(),
            primary_key: stream.source_defined_primary_key.clone(),
            stream,
            sync_mode,
            destination_sync_mode,
        }
    }
}

/// Builds the ConfiguredAirbyteCatalog JSON for the selected streams.
pub fn configured_catalog(streams: &[ConfiguredStream]) -> Value {
    let configured: Vec<Value> = streams
        .iter()
        .map(|configured| {
            serde_json::json!({
                "stream": configured.stream,
                "sync_mode": configured.sync_mode,
                "destination_sync_mode": configured.destination_sync_mode,
                "cursor_field": configured.cursor_field,
                "primary_key": configured.primary_key,
            })
        })
        .collect();
    serde_json::json!({ "streams": configured })
}

/// One message from a connector's stdout.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A row of a stream.
    Record {
        stream: String,
        namespace: Option<String>,
        data: Value,
        /// Milliseconds since the epoch when the connector read it.
        emitted_at: i64,
    },
    /// A checkpoint: the message's `state` object as sent (type STREAM, GLOBAL or LEGACY).
    /// Records before it may be committed together with it; see [`ConnectorState`].
    State(Value),
    /// A log line of the connector (already sent to `tracing`).
    Log { level: String, message: String },
    /// The `trace` object: stream status, estimates, errors.
    Trace(Value),
    /// Any other protocol message (SPEC, CATALOG, CONNECTION_STATUS, CONTROL, ..) with its body.
    Other { message_type: String, body: Value },
}

/// The state to pass to the next `read`: the latest STATE of each stream (or the latest
/// GLOBAL / LEGACY state), built from the [`Message::State`]s of a read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectorState {
    per_stream: Vec<Value>,
    global_or_legacy: Option<Value>,
}

impl ConnectorState {
    /// Starts from a state a previous read left (as returned by [`ConnectorState::to_input`]).
    pub fn from_input(input: &Value) -> Self {
        let mut state = ConnectorState::default();
        match input {
            Value::Array(messages) => messages.iter().for_each(|message| state.apply(message)),
            Value::Null => {}
            legacy => state.global_or_legacy = Some(legacy.clone()),
        }
        state
    }

    /// Takes in the `state` object of a STATE message.
    pub fn apply(&mut self, state: &Value) {
        match state.get("type").and_then(Value::as_str) {
            Some("STREAM") => {
                let descriptor = state.pointer("/stream/stream_descriptor");
                self.per_stream
                    .retain(|known| known.pointer("/stream/stream_descriptor") != descriptor);
                self.per_stream.push(state.clone());
            }
            // GLOBAL carries every stream; LEGACY (no type) is one opaque blob.
            _ => self.global_or_legacy = Some(state.clone()),
        }
    }

    /// The `--state` file content, or None when nothing was checkpointed yet.
    pub fn to_input(&self) -> Option<Value> {
        if let Some(state) = &self.global_or_legacy {
            if state.get("type").and_then(Value::as_str) == Some("GLOBAL") {
                return Some(Value::Array(vec![state.clone()]));
            }
            // A legacy state message holds the blob in `data`.
            return Some(state.get("data").cloned().unwrap_or_else(|| state.clone()));
        }
        if self.per_stream.is_empty() {
            return None;
        }
        Some(Value::Array(self.per_stream.clone()))
    }
}

/// What a finished read did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadSummary {
    /// RECORD messages received.
    pub records: u64,
    /// STATE messages received.
    pub state_messages: u64,
    /// Bytes of stdout.
    pub bytes_read: u64,
}

impl AirbyteConnector {
    /// A connector run as `command[0] command[1..] <protocol arguments>`.
    pub fn new(command: Vec<String>) -> Result<Self> {
        // The last word names the connector in the usual forms: a virtualenv's
        // `bin/source-x`, `sh run-source-x.sh`, `python -m source_x`.
        let Some(last_word) = command.last() else {
            return Err(IngestError::Config(
                "the Airbyte connector command is empty".to_string(),
            ));
        };
        let connector_name = Path::new(last_word)
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| last_word.clone());
        Ok(AirbyteConnector {
            source_name: format!("Airbyte connector {connector_name}"),
            command,
            timeout: DEFAULT_COMMAND_TIMEOUT,
        })
    }

    /// Names the source in errors and logs (for example the connection's name) instead of
    /// "Airbyte connector <last word of the command>".
    pub fn with_source_name(mut self, source_name: impl Into<String>) -> Self {
        self.source_name = source_name.into();
        self
    }

    /// Sets how long `spec`, `check` and `discover` may run (`read` has no limit).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The connector's specification (`connectionSpecification`, `documentationUrl`, ..).
    pub async fn spec(&self) -> Result<Value> {
        self.run_to_message(&["spec"], None, "SPEC").await
    }

    /// Asks the connector whether it can connect with `config`.
    pub async fn check(&self, config: &Value) -> Result<CheckOutcome> {
        let status = self
            .run_to_message(&["check"], Some(config), "CONNECTION_STATUS")
            .await?;
        Ok(CheckOutcome {
            succeeded: status.get("status").and_then(Value::as_str) == Some("SUCCEEDED"),
            message: status
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    /// The streams the connector offers with `config`.
    pub async fn discover(&self, config: &Value) -> Result<Vec<AirbyteStream>> {
        let mut catalog = self
            .run_to_message(&["discover"], Some(config), "CATALOG")
            .await?;
        let streams = catalog
            .get_mut("streams")
            .map(Value::take)
            .unwrap_or(Value::Array(Vec::new()));
        serde_json::from_value(streams).map_err(|error| {
            self.source_error(format!("the catalog it discovered is not valid: {error}"))
        })
    }

    /// Starts `read` with a configured catalog (see [`configured_catalog`]) and the state of
    /// the previous read, if any (see [`ConnectorState::to_input`]).
    pub async fn read(
        &self,
        config: &Value,
        catalog: &Value,
        state: Option<&Value>,
    ) -> Result<ReadSession> {
        let files = PrivateDir::create().await.map_err(|error| {
            self.source_error(format!("cannot create its temporary directory: {error}"))
        })?;
        let mut args = vec!["read".to_string()];
        for (flag, file_name, content) in [
            ("--config", "config.json", Some(config)),
            ("--catalog", "catalog.json", Some(catalog)),
            ("--state", "state.json", state),
        ] {
            if let Some(content) = content {
                let path = self.write_private_file(&files, file_name, content).await?;
                args.push(flag.to_string());
                args.push(path.to_string_lossy().into_owned());
            }
        }
        self.start(&args, files)
    }

    fn source_error(&self, message: String) -> IngestError {
        IngestError::Source {
            source_name: self.source_name.clone(),
            message,
        }
    }

    async fn write_private_file(
        &self,
        files: &PrivateDir,
        file_name: &str,
        content: &Value,
    ) -> Result<PathBuf> {
        let bytes = serde_json::to_vec(content)
            .map_err(|error| IngestError::Data(format!("cannot encode {file_name}: {error}")))?;
        files
            .write(file_name, &bytes)
            .await
            .map_err(|error| self.source_error(format!("cannot write its {file_name}: {error}")))
    }

    /// Runs a short command to its end and returns the body of its `wanted` message.
    async fn run_to_message(
        &self,
        command: &[&str],
        config: Option<&Value>,
        wanted: &str,
    ) -> Result<Value> {
        let files = PrivateDir::create().await.map_err(|error| {
            self.source_error(format!("cannot create its temporary directory: {error}"))
        })?;
        let mut args: Vec<String> = command.iter().map(|arg| arg.to_string()).collect();
        if let Some(config) = config {
            let path = self
                .write_private_file(&files, "config.json", config)
                .await?;
            args.push("--config".to_string());
            args.push(path.to_string_lossy().into_owned());
        }
        let mut session = self.start(&args, files)?;
        let command_name = command.join(" ");
        let timeout_name = command_name.clone();
        let run = async move {
            let mut answer = None;
            while let Some(message) = session.next().await? {
                if let Message::Other { message_type, body } = message
                    && message_type == wanted
                {
                    answer = Some(body);
                }
            }
            // A connector that answered but then failed still failed: report it.
            session.wait_for_exit().await?;
            let tail = session.stderr_tail();
            answer.ok_or_else(|| {
                self.source_error(format!(
                    "`{command_name}` ended without a {wanted} message{}",
                    format_stderr_tail(&tail)
                ))
            })
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(result) => result,
            // Dropping the session killed the child.
            Err(_) => Err(self.source_error(format!(
                "`{timeout_name}` did not finish within {:?}",
                self.timeout
            ))),
        }
    }

    fn start(&self, args: &[String], files: PrivateDir) -> Result<ReadSession> {
        let mut command = Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|error| {
            let program = &self.command[0];
            let message = match error.kind() {
                std::io::ErrorKind::NotFound => format!("program {program} does not exist"),
                std::io::ErrorKind::PermissionDenied => {
                    format!("program {program} is not executable")
                }
                _ => format!("cannot start program {program}: {error}"),
            };
            self.source_error(message)
        })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(self.source_error("its stdout or stderr was not captured".to_string()));
        };
        let stderr_tail = Arc::new(Mutex::new(StderrTail::default()));
        let stderr_task = tokio::spawn(drain_stderr(
            stderr,
            Arc::clone(&stderr_tail),
            self.source_name.clone(),
        ));
        Ok(ReadSession {
            child,
            stdout: BufReader::with_capacity(STDOUT_BUFFER_BYTES, stdout),
            line: Vec::new(),
            line_in_progress: false,
            line_number: 0,
            bytes_read: 0,
            stdout_ended: false,
            cut_off_line: None,
            failure: None,
            trace_error: None,
            records: 0,
            state_messages: 0,
            stderr_tail,
            stderr_task: AbortOnDrop(stderr_task),
            source_name: self.source_name.clone(),
            _files: files,
        })
    }
}

/// A running `read`. Drop it to cancel: the connector is killed and its files removed.
pub struct ReadSession {
    // Declared first so the child is killed before its files disappear.
    child: Child,
    stdout: BufReader<ChildStdout>,
    line: Vec<u8>,
    line_in_progress: bool,
    line_number: u64,
    bytes_read: u64,
    stdout_ended: bool,
    /// Start of a last line without a newline that did not parse (likely a crash mid-line).
    cut_off_line: Option<String>,
    /// The error `next` returned, repeated by `finish`.
    failure: Option<String>,
    /// `error.message` of the first TRACE error.
    trace_error: Option<String>,
    records: u64,
    state_messages: u64,
    stderr_tail: Arc<Mutex<StderrTail>>,
    stderr_task: AbortOnDrop,
    source_name: String,
    _files: PrivateDir,
}

enum LineRead {
    Complete,
    /// The stream ended after a line without a newline.
    Unterminated,
    End,
    TooLong,
}

impl ReadSession {
    /// Next message; Ok(None) at the end of stdout (then call [`ReadSession::finish`] to learn
    /// whether the read succeeded). Blank lines are skipped. Cancel-safe (usable in `select!`).
    pub async fn next(&mut self) -> Result<Option<Message>> {
        if let Some(failure) = &self.failure {
            return Err(self.error(failure.clone()));
        }
        loop {
            if self.stdout_ended {
                return Ok(None);
            }
            let read = self.read_line().await.map_err(|error| {
                self.fail(format!("cannot read the connector's output: {error}"))
            })?;
            match read {
                LineRead::End => {
                    self.stdout_ended = true;
                    return Ok(None);
                }
                LineRead::TooLong => {
                    return Err(self.fail(format!(
                        "connector printed a line over {} MiB (stdout line {})",
                        MAX_LINE_BYTES / (1024 * 1024),
                        self.line_number
                    )));
                }
                LineRead::Complete | LineRead::Unterminated => {}
            }
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed: Value = match serde_json::from_slice(&self.line) {
                Ok(parsed) => parsed,
                Err(_) if matches!(read, LineRead::Unterminated) => {
                    // Probably killed mid-line: `finish` tells apart a crash from garbage.
                    self.cut_off_line = Some(preview(&self.line));
                    self.stdout_ended = true;
                    return Ok(None);
                }
                Err(_) => return Err(self.not_a_message()),
            };
            return self.interpret(parsed).map(Some);
        }
    }

    /// Waits for the connector to exit. An error if it exited non-zero, sent a TRACE error or
    /// printed something that is not a message, with the TRACE error's message and the
    /// stderr tail. Unread messages are read (and checked) first.
    pub async fn finish(mut self) -> Result<ReadSummary> {
        self.wait_for_exit().await
    }

    async fn wait_for_exit(&mut self) -> Result<ReadSummary> {
        let mut first_error = None;
        loop {
            match self.next().await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => {
                    first_error = Some(error);
                    break;
                }
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        let status = self
            .child
            .wait()
            .await
            .map_err(|error| self.error(format!("cannot wait for the connector: {error}")))?;
        // The pipe closes when the connector exits; a grandchild holding it open is not
        // worth waiting for.
        let _ = tokio::time::timeout(STDERR_DRAIN_GRACE, &mut self.stderr_task.0).await;
        let tail = self.stderr_tail();
        if !status.success() || self.trace_error.is_some() || self.cut_off_line.is_some() {
            return Err(self.error(self.failure_message(status, &tail)));
        }
        Ok(ReadSummary {
            records: self.records,
            state_messages: self.state_messages,
            bytes_read: self.bytes_read(),
        })
    }

    /// Bytes of stdout read so far (for progress).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The last lines the connector wrote to stderr (at most 64 lines, 16 KiB).
    pub fn stderr_tail(&self) -> String {
        self.stderr_log().render()
    }

    /// The connector's stderr tail, readable after `finish` has drained stderr (taken before
    /// that, the last lines a failing connector writes may still be in the pipe).
    pub fn stderr_log(&self) -> StderrLog {
        StderrLog(Arc::clone(&self.stderr_tail))
    }

    fn failure_message(&self, status: ExitStatus, tail: &str) -> String {
        let mut message = if status.success() {
            "the connector reported an error".to_string()
        } else {
            format!("the connector failed ({status})")
        };
        if let Some(trace_error) = &self.trace_error {
            message.push_str(": ");
            message.push_str(trace_error);
        }
        if let Some(cut_off) = &self.cut_off_line {
            if status.success() && self.trace_error.is_none() {
                message = format!(
                    "connector printed something that is not an Airbyte message (stdout line {}): {cut_off}",
                    self.line_number
                );
            } else {
                message.push_str(&format!(
                    "; its output stopped mid-line (stdout line {})",
                    self.line_number
                ));
            }
        }
        message.push_str(&format_stderr_tail(tail));
        message
    }

    /// Reads one line into `self.line` without the newline, at most [`MAX_LINE_BYTES`].
    /// Cancel-safe: a line cut short by a dropped `next` future is continued next time.
    async fn read_line(&mut self) -> std::io::Result<LineRead> {
        if !self.line_in_progress {
            self.line.clear();
            self.line_number += 1;
            self.line_in_progress = true;
        }
        loop {
            let available = self.stdout.fill_buf().await?;
            if available.is_empty() {
                self.line_in_progress = false;
                return Ok(if self.line.is_empty() {
                    LineRead::End
                } else {
                    LineRead::Unterminated
                });
            }
            let (taken, complete) = match available.iter().position(|byte| *byte == b'\n') {
                Some(newline) => {
                    self.line.extend_from_slice(&available[..newline]);
                    (newline + 1, true)
                }
                None => {
                    self.line.extend_from_slice(available);
                    (available.len(), false)
                }
            };
            self.stdout.consume(taken);
            self.bytes_read += taken as u64;
            if self.line.len() > MAX_LINE_BYTES {
                self.line_in_progress = false;
                return Ok(LineRead::TooLong);
            }
            if complete {
                self.line_in_progress = false;
                return Ok(LineRead::Complete);
            }
        }
    }

    /// Turns a parsed line into a message, taking the parts out without copying them.
    fn interpret(&mut self, mut parsed: Value) -> Result<Message> {
        let Some(object) = parsed.as_object_mut() else {
            return Err(self.not_a_message());
        };
        let Some(message_type) = object.get("type").and_then(Value::as_str) else {
            return Err(self.not_a_message());
        };
        let body_field = match message_type {
            "RECORD" => "record",
            "STATE" => "state",
            "LOG" => "log",
            "TRACE" => "trace",
            "SPEC" => "spec",
            "CONNECTION_STATUS" => "connectionStatus",
            "CATALOG" => "catalog",
            "CONTROL" => "control",
            _ => return Err(self.not_a_message()),
        };
        let message_type = message_type.to_string();
        let body = match object.remove(body_field) {
            Some(body @ Value::Object(_)) => body,
            _ => {
                return Err(
                    self.invalid_message(&message_type, &format!("no `{body_field}` object"))
                );
            }
        };
        match message_type.as_str() {
            "RECORD" => self.record(body),
            "STATE" => {
                self.state_messages += 1;
                Ok(Message::State(body))
            }
            "LOG" => {
                let level = text_field(&body, "level").unwrap_or("INFO").to_string();
                let message = text_field(&body, "message").unwrap_or_default().to_string();
                let source = self.source_name.as_str();
                match level.as_str() {
                    "WARN" | "ERROR" | "FATAL" => tracing::warn!(source, %level, "{message}"),
                    _ => tracing::debug!(source, %level, "{message}"),
                }
                Ok(Message::Log { level, message })
            }
            "TRACE" => {
                self.remember_trace_error(&body);
                Ok(Message::Trace(body))
            }
            _ => Ok(Message::Other { message_type, body }),
        }
    }

    fn record(&mut self, mut body: Value) -> Result<Message> {
        let Some(record) = body.as_object_mut() else {
            return Err(self.invalid_message("RECORD", "no `record` object"));
        };
        let stream = match record.remove("stream") {
            Some(Value::String(stream)) => stream,
            _ => return Err(self.invalid_message("RECORD", "no `stream` name")),
        };
        let data = match record.remove("data") {
            Some(data @ Value::Object(_)) => data,
            _ => return Err(self.invalid_message("RECORD", "`data` is not an object")),
        };
        let namespace = match record.remove("namespace") {
            Some(Value::String(namespace)) => Some(namespace),
            _ => None,
        };
        // Required by the protocol; some connectors send a float.
        let emitted_at = match record.get("emitted_at") {
            Some(Value::Number(number)) => number
                .as_i64()
                .or_else(|| number.as_f64().map(|millis| millis as i64))
                .unwrap_or(0),
            _ => 0,
        };
        self.records += 1;
        Ok(Message::Record {
            stream,
            namespace,
            data,
            emitted_at,
        })
    }

    fn remember_trace_error(&mut self, trace: &Value) {
        if self.trace_error.is_some() || text_field(trace, "type") != Some("ERROR") {
            return;
        }
        let error = trace.get("error");
        let message = error
            .and_then(|error| text_field(error, "message"))
            .unwrap_or("(no message)");
        let internal = error.and_then(|error| text_field(error, "internal_message"));
        // CDK connectors often send a generic message and the cause as internal_message
        // (connectors mask secrets in both).
        let described = match internal {
            Some(internal) if internal != message => {
                format!("{message} ({})", truncate_chars(internal, 500))
            }
            _ => message.to_string(),
        };
        tracing::warn!(source = %self.source_name, "connector reported an error: {described}");
        self.trace_error = Some(described);
    }

    fn not_a_message(&mut self) -> IngestError {
        let message = format!(
            "connector printed something that is not an Airbyte message (stdout line {}): {}",
            self.line_number,
            preview(&self.line)
        );
        self.fail(message)
    }

    fn invalid_message(&mut self, message_type: &str, problem: &str) -> IngestError {
        let message = format!(
            "connector printed an invalid {message_type} message (stdout line {}, {problem}): {}",
            self.line_number,
            preview(&self.line)
        );
        self.fail(message)
    }

    /// Records the failure so that `next` and `finish` report it again.
    fn fail(&mut self, message: String) -> IngestError {
        self.failure = Some(message.clone());
        self.error(message)
    }

    fn error(&self, message: String) -> IngestError {
        IngestError::Source {
            source_name: self.source_name.clone(),
            message,
        }
    }
}

fn text_field<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get(field).and_then(Value::as_str)
}

fn truncate_chars(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

fn preview(line: &[u8]) -> String {
    // Only the start is quoted; decoding a 64 MiB line to show 200 chars would be wasteful.
    let start = &line[..line.len().min(PREVIEW_CHARS * 4)];
    truncate_chars(&String::from_utf8_lossy(start), PREVIEW_CHARS)
}

fn format_stderr_tail(tail: &str) -> String {
    if tail.is_empty() {
        " (it wrote nothing to stderr)".to_string()
    } else {
        format!("; last lines of its stderr:\n{tail}")
    }
}

/// The last lines of stderr within the line and byte limits.
#[derive(Default)]
struct StderrTail {
    lines: VecDeque<String>,
    bytes: usize,
}

impl StderrTail {
    fn push(&mut self, line: &[u8]) {
        let line = truncate_chars(
            String::from_utf8_lossy(line).trim_end(),
            STDERR_TAIL_BYTES / 4,
        );
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > STDERR_TAIL_LINES || self.bytes > STDERR_TAIL_BYTES {
            match self.lines.pop_front() {
                Some(dropped) => self.bytes -= dropped.len(),
                None => break,
            }
        }
    }

    fn render(&self) -> String {
        self.lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Reads stderr to its end so a chatty connector never blocks on a full pipe.
async fn drain_stderr(
    stderr: impl AsyncRead + Unpin,
    tail: Arc<Mutex<StderrTail>>,
    source_name: String,
) {
    let mut stderr = stderr;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    let keep_line = |line: &[u8]| {
        tracing::debug!(source = %source_name, "stderr: {}", String::from_utf8_lossy(line));
        match tail.lock() {
            Ok(mut tail) => tail.push(line),
            Err(poisoned) => poisoned.into_inner().push(line),
        }
    };
    loop {
        let read = match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        for piece in chunk[..read].split_inclusive(|byte| *byte == b'\n') {
            // A line longer than the whole tail only keeps its start.
            if partial.len() < STDERR_TAIL_BYTES {
                partial.extend_from_slice(piece);
            }
            if piece.ends_with(b"\n") {
                keep_line(&partial);
                partial.clear();
            }
        }
    }
    if !partial.is_empty() {
        keep_line(&partial);
    }
}

/// Aborts the stderr reader if the session is dropped before it ended.
/// A shared view of a session's stderr tail.
pub struct StderrLog(Arc<Mutex<StderrTail>>);

impl StderrLog {
    pub fn render(&self) -> String {
        match self.0.lock() {
            Ok(tail) => tail.render(),
            Err(poisoned) => poisoned.into_inner().render(),
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A directory only the current user can read, removed on drop (it holds secrets).
struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    async fn create() -> std::io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "polder-airbyte-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut builder = tokio::fs::DirBuilder::new();
        #[cfg(unix)]
        builder.mode(0o700);
        builder.create(&path).await?;
        Ok(PrivateDir { path })
    }

    async fn write(&self, file_name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.path.join(file_name);
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options.open(&path).await?;
        file.write_all(bytes).await?;
        file.flush().await?;
        Ok(path)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), "cannot remove connector files: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Instant;

    const FAKER: &str = "/root/.cache/polder-airbyte/source-faker/bin/source-faker";

    fn faker() -> Option<AirbyteConnector> {
        if !Path::new(FAKER).exists() {
            println!("skipped: source-faker is not installed at {FAKER}");
            return None;
        }
        AirbyteConnector::new(vec![FAKER.to_string()]).ok()
    }

    fn faker_config(extra: Value) -> Value {
        let mut config = json!({"count": 100, "seed": 42, "parallelism": 1});
        if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
            config.extend(extra);
        }
        config
    }

    /// A connector that runs `body` with /bin/sh (run through sh, not exec'd, so a script
    /// just written cannot fail with "text file busy").
    fn fake_connector(dir: &tempfile::TempDir, body: &str) -> AirbyteConnector {
        let script = dir.path().join("connector.sh");
        std::fs::write(&script, body).expect("write script");
        AirbyteConnector::new(vec![
            "/bin/sh".into(),
            script.to_string_lossy().into_owned(),
        ])
        .expect("connector")
    }

    struct ReadResult {
        records: Vec<(String, Value)>,
        states: Vec<Value>,
        summary: ReadSummary,
    }

    async fn read_all(
        connector: &AirbyteConnector,
        config: &Value,
        sync_mode: SyncMode,
        state: Option<&Value>,
    ) -> Result<ReadResult> {
        let streams = connector.discover(config).await?;
        let selected: Vec<ConfiguredStream> = streams
            .into_iter()
            .map(|stream| ConfiguredStream::new(stream, sync_mode))
            .collect();
        let catalog = configured_catalog(&selected);
        let mut session = connector.read(config, &catalog, state).await?;
        let mut records = Vec::new();
        let mut states = Vec::new();
        while let Some(message) = session.next().await? {
            match message {
                Message::Record { stream, data, .. } => records.push((stream, data)),
                Message::State(state) => states.push(state),
                _ => {}
            }
        }
        let summary = session.finish().await?;
        Ok(ReadResult {
            records,
            states,
            summary,
        })
    }

    fn count_of(records: &[(String, Value)], stream: &str) -> usize {
        records.iter().filter(|(name, _)| name == stream).count()
    }

    fn source_message(error: IngestError) -> String {
        match error {
            IngestError::Source {
                source_name,
                message,
            } => format!("{source_name}: {message}"),
            other => panic!("expected a Source error, got {other:?}"),
        }
    }

    #[test]
    fn empty_command_is_a_config_error() {
        assert!(matches!(
            AirbyteConnector::new(Vec::new()),
            Err(IngestError::Config(_))
        ));
    }

    #[tokio::test]
    async fn faker_spec_check_and_discover() {
        let Some(connector) = faker() else { return };
        let spec = connector.spec().await.expect("spec");
        let properties = &spec["connectionSpecification"]["properties"];
        assert_eq!(properties["count"]["type"], "integer");
        assert_eq!(properties["seed"]["default"], -1);

        let ok = connector
            .check(&faker_config(json!({})))
            .await
            .expect("check");
        assert_eq!(
            ok,
            CheckOutcome {
                succeeded: true,
                message: None
            }
        );
        let bad = connector.check(&json!({"count": 0})).await.expect("check");
        assert!(!bad.succeeded);
        assert!(bad.message.unwrap_or_default().contains("minimum of 1"));

        let streams = connector
            .discover(&faker_config(json!({})))
            .await
            .expect("discover");
        let mut names: Vec<&str> = streams.iter().map(|stream| stream.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["products", "purchases", "users"]);
        for stream in &streams {
            assert_eq!(
                stream.source_defined_primary_key,
                vec![vec!["id".to_string()]]
            );
            assert_eq!(stream.default_cursor_field, vec!["updated_at".to_string()]);
            assert!(stream.source_defined_cursor);
            assert_eq!(stream.supported_sync_modes, ["full_refresh", "incremental"]);
            assert_eq!(stream.json_schema["properties"]["id"]["type"], "integer");
            assert_eq!(stream.other_fields.get("is_resumable"), Some(&json!(true)));
        }
    }

    #[tokio::test]
    async fn faker_full_refresh_is_reproducible_with_a_seed() {
        let Some(connector) = faker() else { return };
        let config = faker_config(json!({}));
        let first = read_all(&connector, &config, SyncMode::FullRefresh, None)
            .await
            .expect("read");
        for stream in ["users", "products", "purchases"] {
            assert_eq!(count_of(&first.records, stream), 100, "{stream}");
        }
        assert_eq!(first.summary.records, 300);
        assert_eq!(first.summary.state_messages, 3);
        assert!(first.summary.bytes_read > 300 * 100);
        // One STREAM state per stream, no GLOBAL or LEGACY.
        for state in &first.states {
            assert_eq!(state["type"], "STREAM");
            assert_eq!(state["stream"]["stream_state"]["seed"], 42);
        }

        // Same seed, same data, except `updated_at`, which faker sets to the time of the read.
        let second = read_all(&connector, &config, SyncMode::FullRefresh, None)
            .await
            .expect("read");
        let without_updated_at = |records: &[(String, Value)]| -> Vec<(String, Value)> {
            let mut records = records.to_vec();
            for (_, data) in &mut records {
                data.as_object_mut().map(|data| data.remove("updated_at"));
            }
            records
        };
        assert_eq!(
            without_updated_at(&first.records),
            without_updated_at(&second.records)
        );
        let user = &first
            .records
            .iter()
            .find(|(name, _)| name == "users")
            .expect("user")
            .1;
        assert_eq!(user["id"], 1);
        assert!(
            user["email"]
                .as_str()
                .is_some_and(|email| email.contains('@'))
        );
    }

    #[tokio::test]
    async fn faker_incremental_with_the_final_state() {
        let Some(connector) = faker() else { return };
        // With always_updated=false faker stops after `count` records: the second read
        // with the final state emits nothing new.
        let config = faker_config(json!({"always_updated": false}));
        let first = read_all(&connector, &config, SyncMode::Incremental, None)
            .await
            .expect("read");
        assert_eq!(first.records.len(), 300);
        let mut state = ConnectorState::default();
        first.states.iter().for_each(|message| state.apply(message));
        let input = state.to_input().expect("a state");
        assert_eq!(input.as_array().map(Vec::len), Some(3));
        let second = read_all(&connector, &config, SyncMode::Incremental, Some(&input))
            .await
            .expect("read");
        assert_eq!(second.records.len(), 0);
        assert_eq!(second.states.len(), 3);
        assert!(second.states.iter().all(|state| state["type"] == "STREAM"));

        // By default (always_updated=true) every record comes again with a new updated_at.
        let config = faker_config(json!({}));
        let again = read_all(&connector, &config, SyncMode::Incremental, Some(&input))
            .await
            .expect("read");
        assert_eq!(again.records.len(), 300);
    }

    #[tokio::test]
    async fn garbage_on_stdout_fails_the_session() {
        let dir = tempfile::tempdir().expect("tempdir");
        let connector = fake_connector(
            &dir,
            r#"echo '{"type":"LOG","log":{"level":"INFO","message":"hi"}}'
echo 'Starting connector version 1.2'
echo '{"type":"RECORD","record":{"stream":"s","data":{"a":1},"emitted_at":1}}'
"#,
        );
        let mut session = connector
            .read(&json!({}), &json!({}), None)
            .await
            .expect("start");
        assert!(matches!(
            session.next().await,
            Ok(Some(Message::Log { .. }))
        ));
        let error = source_message(session.next().await.expect_err("garbage"));
        assert!(
            error.contains(
                "connector printed something that is not an Airbyte message (stdout line 2): Starting connector version 1.2"
            ),
            "{error}"
        );
        let error = source_message(session.finish().await.expect_err("finish fails too"));
        assert!(error.contains("stdout line 2"), "{error}");

        // Valid JSON that is not a message, and a message with a bad body.
        for (line, expected) in [
            (
                r#"{"type":"RECORDS","record":{}}"#,
                "not an Airbyte message (stdout line 1)",
            ),
            (r#"[1,2]"#, "not an Airbyte message (stdout line 1)"),
            (
                r#"{"type":"RECORD","record":{"stream":"s","data":5}}"#,
                "invalid RECORD message",
            ),
        ] {
            let connector = fake_connector(&dir, &format!("echo '{line}'\n"));
            let session = connector
                .read(&json!({}), &json!({}), None)
                .await
                .expect("start");
            let error = source_message(session.finish().await.expect_err(line));
            assert!(error.contains(expected), "{error}");
        }
    }

    #[tokio::test]
    async fn trace_error_and_stderr_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let connector = fake_connector(
            &dir,
            r#"echo '{"type":"RECORD","record":{"stream":"s","data":{"a":1},"emitted_at":1}}'
echo 'Traceback (most recent call last):' >&2
echo 'psycopg2.OperationalError: connection refused' >&2
echo '{"type":"TRACE","trace":{"type":"ERROR","emitted_at":2,"error":{"message":"Cannot connect to the database","failure_type":"config_error"}}}'
exit 1
"#,
        );
        let mut session = connector
            .read(&json!({}), &json!({}), None)
            .await
            .expect("start");
        let mut kinds = Vec::new();
        while let Some(message) = session.next().await.expect("messages are valid") {
            kinds.push(match message {
                Message::Record {
                    stream,
                    data,
                    emitted_at,
                    namespace,
                } => {
                    assert_eq!(
                        (stream.as_str(), data, emitted_at, namespace),
                        ("s", json!({"a": 1}), 1, None)
                    );
                    "record"
                }
                Message::Trace(_) => "trace",
                other => panic!("unexpected {other:?}"),
            });
        }
        assert_eq!(kinds, ["record", "trace"]);
        let error = source_message(session.finish().await.expect_err("exit 1"));
        assert!(error.starts_with("Airbyte connector connector.sh: the connector failed (exit status: 1): Cannot connect to the database"), "{error}");
        assert!(
            error.contains("psycopg2.OperationalError: connection refused"),
            "{error}"
        );

        // spec/check/discover report the same way.
        let error = source_message(connector.check(&json!({})).await.expect_err("check"));
        assert!(error.contains("Cannot connect to the database"), "{error}");
    }

    #[tokio::test]
    async fn crash_mid_stream_is_a_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let connector = fake_connector(
            &dir,
            r#"echo '{"type":"RECORD","record":{"stream":"s","data":{"a":1},"emitted_at":1}}'
printf '{"type":"RECORD","record":{"stream":"s","da'
kill -9 $$
"#,
        );
        let mut session = connector
            .read(&json!({}), &json!({}), None)
            .await
            .expect("start");
        assert!(matches!(
            session.next().await,
            Ok(Some(Message::Record { .. }))
        ));
        assert!(matches!(session.next().await, Ok(None)));
        let error = source_message(session.finish().await.expect_err("killed"));
        assert!(error.contains("the connector failed (signal: 9"), "{error}");
        assert!(
            error.contains("its output stopped mid-line (stdout line 2)"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_cancelled_next_loses_no_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let connector = fake_connector(
            &dir,
            r#"printf '{"type":"RECORD","record":{"stream":"s",'
sleep 1
echo '"data":{"a":1},"emitted_at":1}}'
"#,
        );
        let mut session = connector
            .read(&json!({}), &json!({}), None)
            .await
            .expect("start");
        let cancelled = tokio::time::timeout(Duration::from_millis(200), session.next()).await;
        assert!(cancelled.is_err(), "the line is not complete yet");
        let Ok(Some(Message::Record { data, .. })) = session.next().await else {
            panic!("expected the record");
        };
        assert_eq!(data, json!({"a": 1}));
        assert_eq!(session.finish().await.expect("finish").records, 1);
    }

    #[tokio::test]
    async fn a_missing_program_or_message_is_a_source_error() {
        let connector =
            AirbyteConnector::new(vec!["/nonexistent/bin/source-nothing".into()]).expect("new");
        let error = source_message(connector.spec().await.expect_err("no program"));
        assert_eq!(
            error,
            "Airbyte connector source-nothing: program /nonexistent/bin/source-nothing does not exist"
        );
        let error = connector
            .read(&json!({}), &json!({}), None)
            .await
            .err()
            .expect("no program");
        assert!(source_message(error).contains("does not exist"));

        let dir = tempfile::tempdir().expect("tempdir");
        let connector = fake_connector(&dir, "echo 'usage: connector.sh spec' >&2\n");
        let error = source_message(connector.spec().await.expect_err("no SPEC"));
        assert!(error.contains("`spec` ended without a SPEC message; last lines of its stderr:\nusage: connector.sh spec"), "{error}");

        let connector =
            fake_connector(&dir, "exec sleep 30\n").with_timeout(Duration::from_millis(300));
        let error = source_message(connector.discover(&json!({})).await.expect_err("timeout"));
        assert!(
            error.contains("`discover` did not finish within 300ms"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn files_are_private_and_removed_and_drop_kills_the_connector() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seen = dir.path().join("seen");
        let connector = fake_connector(
            &dir,
            &format!(
                r#"stat -c '%a' "$3" "$5" "$7" > {seen}
echo "$3" >> {seen}
cat "$7" >> {seen}
echo >> {seen}
echo '{{"type":"STATE","state":{{"type":"STREAM","stream":{{"stream_descriptor":{{"name":"s"}},"stream_state":{{"c":1}}}}}}}}'
exec sleep 60
"#,
                seen = seen.display()
            ),
        );
        let state = json!([{"type": "STREAM", "stream": {"stream_descriptor": {"name": "s"}, "stream_state": {"c": 0}}}]);
        let mut session = connector
            .read(
                &json!({"password": "secret"}),
                &json!({"streams": []}),
                Some(&state),
            )
            .await
            .expect("start");
        let Ok(Some(Message::State(emitted))) = session.next().await else {
            panic!("expected a state");
        };
        assert_eq!(emitted["stream"]["stream_state"]["c"], 1);
        let pid = session.child.id().expect("running");
        let seen = std::fs::read_to_string(&seen).expect("script output");
        let lines: Vec<&str> = seen.lines().collect();
        assert_eq!(lines[..3], ["600", "600", "600"]);
        let config_path = PathBuf::from(lines[3]);
        assert_eq!(serde_json::from_str::<Value>(lines[4]).ok(), Some(state));
        let config_dir = config_path.parent().expect("dir").to_path_buf();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&config_dir).expect("dir").permissions(),
        );
        assert_eq!(mode & 0o777, 0o700);

        drop(session);
        assert!(!config_dir.exists(), "temporary files removed");
        let mut gone = false;
        for _ in 0..50 {
            // A killed child that nobody reaped is a zombie: also gone for our purpose.
            let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if status.is_empty() || status.contains(") Z ") {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "connector {pid} still running");
    }

    #[tokio::test]
    async fn chatty_stderr_does_not_block_and_keeps_a_bounded_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let connector = fake_connector(
            &dir,
            r#"i=0; while [ $i -lt 20000 ]; do echo "noise line $i" >&2; i=$((i+1)); done
echo '{"type":"RECORD","record":{"stream":"s","data":{},"emitted_at":1}}'
"#,
        );
        let session = connector
            .read(&json!({}), &json!({}), None)
            .await
            .expect("start");
        let summary = session.finish().await.expect("finish");
        assert_eq!(summary.records, 1);

        let connector = fake_connector(
            &dir,
            r#"i=0; while [ $i -lt 2000 ]; do echo "noise line $i" >&2; i=$((i+1)); done; exit 3"#,
        );
        let session = connector
            .read(&json!({}), &json!({}), None)
            .await
            .expect("start");
        let error = source_message(session.finish().await.expect_err("exit 3"));
        let tail = error
            .split("last lines of its stderr:\n")
            .nth(1)
            .expect("a tail");
        let lines: Vec<&str> = tail.lines().collect();
        assert_eq!(lines.len(), 64);
        assert_eq!(lines.first(), Some(&"noise line 1936"));
        assert_eq!(lines.last(), Some(&"noise line 1999"));
    }

    #[tokio::test]
    async fn a_line_over_64_mib_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let connector = fake_connector(&dir, "head -c 70000000 /dev/zero | tr '\\0' a; echo\n");
        let session = connector
            .read(&json!({}), &json!({}), None)
            .await
            .expect("start");
        let error = source_message(session.finish().await.expect_err("too long"));
        assert!(
            error.contains("connector printed a line over 64 MiB (stdout line 1)"),
            "{error}"
        );
    }

    #[test]
    fn catalog_and_state_shapes() {
        let stream: AirbyteStream = serde_json::from_value(json!({
            "name": "users", "json_schema": {"type": "object"},
            "supported_sync_modes": ["full_refresh", "incremental"],
            "source_defined_cursor": true, "default_cursor_field": ["updated_at"],
            "source_defined_primary_key": [["id"]], "is_resumable": true
        }))
        .expect("stream");
        let catalog = configured_catalog(&[ConfiguredStream::new(stream, SyncMode::Incremental)]);
        assert_eq!(
            catalog,
            json!({"streams": [{
                "stream": {"name": "users", "json_schema": {"type": "object"},
                    "supported_sync_modes": ["full_refresh", "incremental"],
                    "source_defined_cursor": true, "default_cursor_field": ["updated_at"],
                    "source_defined_primary_key": [["id"]], "is_resumable": true},
                "sync_mode": "incremental", "destination_sync_mode": "append",
                "cursor_field": ["updated_at"], "primary_key": [["id"]]
            }]})
        );

        let stream_state = |name: &str, cursor: i64| json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": name}, "stream_state": {"c": cursor}}});
        let mut state = ConnectorState::default();
        assert_eq!(state.to_input(), None);
        for (name, cursor) in [("a", 1), ("b", 1), ("a", 2)] {
            state.apply(&stream_state(name, cursor));
        }
        let input = state.to_input().expect("input");
        assert_eq!(input, json!([stream_state("b", 1), stream_state("a", 2)]));
        assert_eq!(ConnectorState::from_input(&input), state);

        let global =
            json!({"type": "GLOBAL", "global": {"shared_state": {"lsn": 7}, "stream_states": []}});
        state.apply(&global);
        assert_eq!(state.to_input(), Some(json!([global])));
        let mut legacy = ConnectorState::default();
        legacy.apply(&json!({"data": {"users": {"cursor": 3}}}));
        assert_eq!(legacy.to_input(), Some(json!({"users": {"cursor": 3}})));
    }

    // Throughput measurements; run with
    // `cargo test --release -- --ignored --nocapture throughput`.

    async fn count_records(session: &mut ReadSession) -> u64 {
        let mut records = 0u64;
        while let Some(message) = session.next().await.expect("message") {
            if matches!(message, Message::Record { .. }) {
                records += 1;
            }
        }
        records
    }

    /// Parsing speed of this module alone: `yes` repeats a faker `users` record.
    #[tokio::test]
    #[ignore = "benchmark"]
    async fn throughput_of_one_million_records_through_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = r#"{"type":"RECORD","record":{"stream":"users","data":{"id":51,"created_at":"2009-04-08T14:11:23+00:00","updated_at":"2026-11-26T13:30:55+00:00","name":"Ashli","title":"Master","age":50,"email":"rugs1918+51@example.com","telephone":"1-395-792-3858","gender":"Male","language":"Somali","academic_degree":"PhD","nationality":"Swedish","occupation":"Journalist","height":"1.82","blood_type":"B+","weight":84,"address":{"street_number":"1218","street_name":"Worden","city":"Indian Trail","state":"Massachusetts","province":"Vermont","postal_code":"51216","country_code":"BH"}},"emitted_at":1795699855596}}"#;
        let connector = fake_connector(&dir, &format!("yes '{record}' | head -n 1000000\n"));
        let started = Instant::now();
        let mut session = connector
            .read(&json!({}), &json!({}), None)
            .await
            .expect("start");
        let records = count_records(&mut session).await;
        let summary = session.finish().await.expect("finish");
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(records, 1_000_000);
        println!(
            "{records} records, {:.0} MB in {seconds:.2} s: {:.0} rows/s, {:.0} MB/s",
            summary.bytes_read as f64 / 1e6,
            records as f64 / seconds,
            summary.bytes_read as f64 / 1e6 / seconds
        );
    }

    /// End to end with the real source-faker (a few minutes: faker is the bottleneck).
    #[tokio::test]
    #[ignore = "benchmark"]
    async fn throughput_of_one_million_faker_users_end_to_end() {
        let Some(connector) = faker() else { return };
        let config = json!({"count": 1_000_000, "seed": 42, "parallelism": 1});
        let users = connector
            .discover(&config)
            .await
            .expect("discover")
            .into_iter()
            .filter(|stream| stream.name == "users")
            .map(|stream| ConfiguredStream::new(stream, SyncMode::FullRefresh))
            .collect::<Vec<_>>();
        let started = Instant::now();
        let mut session = connector
            .read(&config, &configured_catalog(&users), None)
            .await
            .expect("start");
        let records = count_records(&mut session).await;
        session.finish().await.expect("finish");
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(records, 1_000_000);
        println!(
            "source-faker: {records} users in {seconds:.1} s: {:.0} rows/s",
            records as f64 / seconds
        );
    }
}
