//! Any Airbyte source connector as a source ([`crate::airbyte`]): streams and types from its
//! catalog, records typed by each stream's JSON schema, its STATE messages committed with the
//! data of their stream. One `read` serves all selected streams; nothing is committed unless
//! the connector finishes successfully.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::{DiscoveredStream, PendingStream, ReadContext, Source, StreamData, StreamRequest};
use crate::airbyte::{
    AirbyteConnector, AirbyteStream, ConfiguredStream, ConnectorState, DestinationSyncMode,
    Message, configured_catalog,
};
use crate::connection::SyncMode;
use crate::error::{IngestError, Result};
use crate::records::{RecordBatcher, schema_from_json_schema};

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Command {
    Line(String),
    Words(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AirbyteConfig {
    /// The connector program and its leading arguments.
    command: Command,
    /// The connector's own configuration (its spec's connectionSpecification).
    #[serde(default = "empty")]
    config: Value,
}

fn empty() -> Value {
    Value::Object(Default::default())
}

pub(super) struct AirbyteSource {
    connector: AirbyteConnector,
    config: Value,
}

impl AirbyteSource {
    pub fn new(config: &Value) -> Result<Self> {
        let parsed: AirbyteConfig = serde_json::from_value(config.clone())
            .map_err(|e| IngestError::Config(format!("airbyte source: {e}")))?;
        let command = match parsed.command {
            Command::Line(line) => line.split_whitespace().map(str::to_string).collect(),
            Command::Words(words) => words,
        };
        Ok(AirbyteSource {
            connector: AirbyteConnector::new(command)?,
            config: parsed.config,
        })
    }
}

/// JSON pointers (into the connector config) of the fields its spec marks `airbyte_secret`.
pub(super) async fn secret_fields(config: &Value) -> Result<Vec<String>> {
    let source = AirbyteSource::new(config)?;
    let spec = source.connector.spec().await?;
    let mut found = Vec::new();
    if let Some(schema) = spec.get("connectionSpecification") {
        collect_secrets(schema, "", &mut found);
    }
    found.sort();
    found.dedup();
    Ok(found)
}

fn collect_secrets(schema: &Value, prefix: &str, found: &mut Vec<String>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let pointer = format!("{prefix}/{}", name.replace('~', "~0").replace('/', "~1"));
            if property.get("airbyte_secret").and_then(Value::as_bool) == Some(true) {
                found.push(pointer.clone());
            }
            collect_secrets(property, &pointer, found);
        }
    }
    for branches in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema.get(branches).and_then(Value::as_array) {
            for option in options {
                collect_secrets(option, prefix, found);
            }
        }
    }
}

fn discovered(stream: &AirbyteStream) -> DiscoveredStream {
    let schema = schema_from_json_schema(&stream.json_schema)
        .unwrap_or_else(|_| arrow::datatypes::Schema::empty());
    let mut found = DiscoveredStream::from_schema(
        stream.name.clone(),
        &schema,
        stream
            .source_defined_primary_key
            .iter()
            .filter_map(|path| path.first().cloned())
            .collect(),
        stream.default_cursor_field.first().cloned(),
    );
    if !stream
        .supported_sync_modes
        .iter()
        .any(|m| m == "incremental")
    {
        found.sync_modes = vec![SyncMode::FullRefreshOverwrite, SyncMode::FullRefreshAppend];
    }
    found
}

#[async_trait]
impl Source for AirbyteSource {
    async fn check(&self, _context: &ReadContext) -> Result<String> {
        let outcome = self.connector.check(&self.config).await?;
        if outcome.succeeded {
            Ok("the connector's check succeeded".to_string())
        } else {
            Err(IngestError::Source {
                source_name: "airbyte connector".to_string(),
                message: outcome
                    .message
                    .unwrap_or_else(|| "the connector's check failed".to_string()),
            })
        }
    }

    async fn discover(&self, _context: &ReadContext) -> Result<Vec<DiscoveredStream>> {
        Ok(self
            .connector
            .discover(&self.config)
            .await?
            .iter()
            .map(discovered)
            .collect())
    }

    async fn read(
        &self,
        requests: Vec<StreamRequest>,
        context: &ReadContext,
    ) -> Result<Vec<PendingStream>> {
        let offered = self.connector.discover(&self.config).await?;
        let mut configured = Vec::new();
        let mut input = ConnectorState::default();
        for request in &requests {
            let Some(stream) = offered.iter().find(|s| s.name == request.spec.name) else {
                return Err(IngestError::Config(format!(
                    "stream '{}' is not offered by the connector (it offers: {})",
                    request.spec.name,
                    offered
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            let incremental = request.spec.sync_mode.is_incremental();
            if incremental
                && !stream
                    .supported_sync_modes
                    .iter()
                    .any(|m| m == "incremental")
            {
                return Err(IngestError::Config(format!(
                    "stream '{}' does not support incremental syncs; use a full_refresh mode",
                    stream.name
                )));
            }
            let mut selected = ConfiguredStream::new(
                stream.clone(),
                if incremental {
                    crate::airbyte::SyncMode::Incremental
                } else {
                    crate::airbyte::SyncMode::FullRefresh
                },
            );
            selected.destination_sync_mode = match request.spec.sync_mode {
                SyncMode::FullRefreshOverwrite => DestinationSyncMode::Overwrite,
                SyncMode::FullRefreshAppend | SyncMode::IncrementalAppend => {
                    DestinationSyncMode::Append
                }
                SyncMode::IncrementalAppendDeduped => DestinationSyncMode::AppendDedup,
            };
            if let Some(cursor) = &request.spec.cursor_field {
                selected.cursor_field = vec![cursor.clone()];
            }
            if !request.spec.primary_key.is_empty() {
                selected.primary_key = request
                    .spec
                    .primary_key
                    .iter()
                    .map(|k| vec![k.clone()])
                    .collect();
            }
            if incremental
                && let Some(states) = request.state.as_ref().and_then(|s| s.get("airbyte"))
            {
                for state in states.as_array().into_iter().flatten() {
                    input.apply(state);
                }
            }
            configured.push(selected);
        }
        let catalog = configured_catalog(&configured);
        let state_input = input.to_input();
        let mut session = self
            .connector
            .read(&self.config, &catalog, state_input.as_ref())
            .await?;

        let index: HashMap<String, usize> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| (r.spec.name.clone(), i))
            .collect();
        let mut batchers = Vec::new();
        for selected in &configured {
            let schema = Arc::new(schema_from_json_schema(&selected.stream.json_schema)?);
            let batcher = RecordBatcher::new(schema.clone(), super::BATCH_ROWS)?;
            batchers.push((schema, batcher, Vec::new(), 0u64));
        }
        // The newest STATE of each stream (and of all, for GLOBAL / LEGACY states).
        let mut stream_states: Vec<Option<Value>> = vec![None; requests.len()];
        let mut shared_state: Option<Value> = None;
        let mut bytes_seen = 0;
        let read = async {
            while let Some(message) = session.next().await? {
                match message {
                    Message::Record { stream, data, .. } => {
                        let Some(&i) = index.get(&stream) else {
                            continue;
                        };
                        let (_, batcher, batches, count) = &mut batchers[i];
                        *count += 1;
                        let number = *count;
                        batcher.push(&data, || format!("record {number}"));
                        if let Some(batch) = batcher.take_full_batch()? {
                            batches.push(batch);
                        }
                        // Bytes as the connector wrote them, for the progress bar.
                        let bytes = session.bytes_read();
                        context.counters.add(1, bytes - bytes_seen);
                        bytes_seen = bytes;
                    }
                    Message::State(state) => {
                        let name = state
                            .pointer("/stream/stream_descriptor/name")
                            .and_then(Value::as_str);
                        match (state.get("type").and_then(Value::as_str), name) {
                            (Some("STREAM"), Some(name)) => {
                                if let Some(&i) = index.get(name) {
                                    stream_states[i] = Some(state);
                                }
                            }
                            _ => shared_state = Some(state),
                        }
                    }
                    _ => {}
                }
            }
            Ok::<_, IngestError>(())
        }
        .await;
        let stderr = session.stderr_log();
        let finished = match read {
            Ok(()) => session.finish().await.map(drop),
            Err(err) => Err(err),
        };
        if let Ok(mut log) = context.log_tail.lock() {
            *log = stderr.render();
        }
        finished?;

        let mut pending = Vec::new();
        for (i, (schema, mut batcher, mut batches, count)) in batchers.into_iter().enumerate() {
            if let Some(batch) = batcher.finish()? {
                batches.push(batch);
            }
            let new_state = stream_states[i].clone().or_else(|| shared_state.clone());
            let previous = requests[i].state.clone();
            let state = match new_state {
                Some(state) => Some(serde_json::json!({"airbyte": [state]})),
                None => previous.clone(),
            };
            let nothing_new = count == 0 && state == previous;
            let mut data = StreamData::buffered(schema, batches, state);
            data.rejects = batcher.take_rejects();
            data.nothing_new = nothing_new;
            data.primary_key = configured[i]
                .primary_key
                .iter()
                .filter_map(|path| path.first().cloned())
                .collect();
            data.cursor_field = configured[i].cursor_field.first().cloned();
            pending.push(Box::pin(async move { Ok(data) }) as PendingStream);
        }
        Ok(pending)
    }
}
