//! The HTTP JSON API source: one stream of records from a declaratively described API
//! ([`crate::http_api`]), typed by inference, with records that do not fit as rejects.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{DiscoveredStream, PendingStream, ReadContext, Source, StreamData, StreamRequest};
use crate::error::{IngestError, Result};
use crate::http_api::{HttpApiConfig, HttpApiReader};
use crate::records::{RecordBatcher, infer_schema};

/// Records sampled to infer the stream's columns.
const SAMPLE: usize = 1000;

pub(super) struct HttpSource {
    config: HttpApiConfig,
}

impl HttpSource {
    pub fn new(config: &Value) -> Result<Self> {
        let config: HttpApiConfig = serde_json::from_value(config.clone())
            .map_err(|e| IngestError::Config(format!("http source: {e}")))?;
        // Validates the URL, parameters and pagination now rather than at the first sync.
        HttpApiReader::new(config.clone(), None)?;
        Ok(HttpSource { config })
    }
}

#[async_trait]
impl Source for HttpSource {
    async fn check(&self, _context: &ReadContext) -> Result<String> {
        crate::http_api::check(&self.config).await
    }

    async fn discover(&self, _context: &ReadContext) -> Result<Vec<DiscoveredStream>> {
        let mut reader = HttpApiReader::new(self.config.clone(), None)?;
        let records = reader
            .next_page()
            .await?
            .map(|p| p.records)
            .unwrap_or_default();
        let schema = infer_schema(&records[..records.len().min(SAMPLE)]);
        Ok(vec![DiscoveredStream::from_schema(
            "records".to_string(),
            &schema,
            Vec::new(),
            self.config.cursor_field.clone(),
        )])
    }

    async fn read(
        &self,
        requests: Vec<StreamRequest>,
        context: &ReadContext,
    ) -> Result<Vec<PendingStream>> {
        if requests.len() > 1 {
            return Err(IngestError::Config(
                "an http connection has one stream; make one connection per endpoint".to_string(),
            ));
        }
        let mut pending = Vec::new();
        for request in requests {
            let data = read_stream(&self.config, request, context).await;
            pending.push(Box::pin(async move { data }) as PendingStream);
        }
        Ok(pending)
    }
}

async fn read_stream(
    config: &HttpApiConfig,
    request: StreamRequest,
    context: &ReadContext,
) -> Result<StreamData> {
    let incremental = request.spec.sync_mode.is_incremental();
    let mut config = config.clone();
    if let Some(cursor) = &request.spec.cursor_field {
        config.cursor_field = Some(cursor.clone());
    }
    if incremental && config.cursor_field.is_none() {
        return Err(IngestError::Config(format!(
            "stream '{}': {} needs cursor_field",
            request.spec.name, request.spec.sync_mode
        )));
    }
    let since = if incremental {
        request
            .state
            .as_ref()
            .and_then(|s| s.get("cursor"))
            .cloned()
            .filter(|c| !c.is_null())
    } else {
        None
    };
    let mut reader = HttpApiReader::new(config.clone(), since.clone())?;
    let mut records: Vec<(u64, usize, Value)> = Vec::new();
    let mut bytes_seen = 0;
    while let Some(page) = reader.next_page().await? {
        let bytes = reader.bytes_read();
        context
            .counters
            .add(page.records.len() as u64, bytes - bytes_seen);
        bytes_seen = bytes;
        records.extend(
            page.records
                .into_iter()
                .enumerate()
                .map(|(i, r)| (page.number, i + 1, r)),
        );
    }
    let sample: Vec<Value> = records.iter().take(SAMPLE).map(|r| r.2.clone()).collect();
    let schema = Arc::new(infer_schema(&sample));
    let state = config
        .cursor_field
        .as_ref()
        .map(|_| json!({"cursor": reader.max_cursor().cloned()}));
    if records.is_empty() || schema.fields().is_empty() {
        return Ok(StreamData {
            nothing_new: true,
            ..StreamData::buffered(schema, Vec::new(), state)
        });
    }
    let mut batcher = RecordBatcher::new(schema.clone(), super::BATCH_ROWS)?;
    let mut batches = Vec::new();
    for (page, index, record) in &records {
        batcher.push(record, || format!("page {page}, record {index}"));
        if let Some(batch) = batcher.take_full_batch()? {
            batches.push(batch);
        }
    }
    if let Some(batch) = batcher.finish()? {
        batches.push(batch);
    }
    let mut data = StreamData::buffered(schema, batches, state);
    data.rejects = batcher.take_rejects();
    Ok(data)
}
