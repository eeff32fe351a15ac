//! Query history: every statement a listener runs, with its user, duration, rows and outcome,
//! readable as `system.queries` (users see their own, admins everyone's).
//!
//! Finishing a statement only appends to memory; a background task writes the history to the
//! catalog store in batches, so the history costs a query no round trip to the catalog.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use polder_catalog::{CatalogStore, QueryRecord};
use polder_core::Principal;

use crate::access;

/// How often pending history goes to the catalog store.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// History older than this is deleted (checked about once an hour).
const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Statement texts longer than this are cut (a generated 1 MB INSERT is not history).
const MAX_STATEMENT_CHARS: usize = 10_000;
/// Records kept in memory while the catalog store cannot be written.
const MAX_PENDING: usize = 100_000;

/// The history of this process's statements, waiting to be written or written.
#[derive(Debug)]
pub struct QueryLog {
    store: CatalogStore,
    pending: Mutex<Vec<QueryRecord>>,
}

impl QueryLog {
    pub(crate) fn new(store: CatalogStore) -> Arc<QueryLog> {
        let log = Arc::new(QueryLog {
            store,
            pending: Mutex::new(Vec::new()),
        });
        // Without a runtime (a synchronous test) nothing is flushed, which nothing needs.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(flush_forever(Arc::downgrade(&log)));
        }
        log
    }

    /// Starts timing a statement run by the current principal.
    pub fn start(self: &Arc<Self>, interface: &str, statement: &str) -> QueryTracker {
        self.start_as(access::current_principal(), interface, statement)
    }

    /// Starts timing a statement run by `principal`.
    pub fn start_as(
        self: &Arc<Self>,
        principal: Principal,
        interface: &str,
        statement: &str,
    ) -> QueryTracker {
        let mut text: String = statement.trim().chars().take(MAX_STATEMENT_CHARS).collect();
        if text.len() < statement.trim().len() {
            text.push_str(" …");
        }
        QueryTracker {
            log: self.clone(),
            started: Instant::now(),
            record: Some(QueryRecord {
                id: uuid::Uuid::new_v4().to_string(),
                user_name: principal.user,
                interface: interface.to_string(),
                client: principal.client,
                statement: text,
                started_at: polder_catalog::now(),
                duration_ms: 0,
                rows: None,
                status: String::new(),
                error: String::new(),
            }),
        }
    }

    fn push(&self, record: QueryRecord) {
        let mut pending = self.pending.lock().expect("query log lock");
        if pending.len() < MAX_PENDING {
            pending.push(record);
        }
    }

    /// Writes pending history to the catalog store; on failure it stays pending.
    pub async fn flush(&self) {
        let batch = std::mem::take(&mut *self.pending.lock().expect("query log lock"));
        if batch.is_empty() {
            return;
        }
        if let Err(err) = self.store.append_queries(&batch).await {
            tracing::warn!(error = %err, "cannot write query history; will retry");
            let mut pending = self.pending.lock().expect("query log lock");
            let room = MAX_PENDING.saturating_sub(pending.len());
            pending.extend(batch.into_iter().take(room));
        }
    }

    /// The newest `limit` statements (of `user` only, when given), including those not written
    /// yet, newest first.
    pub(crate) async fn read(
        &self,
        user: Option<&str>,
        limit: i64,
    ) -> Result<Vec<QueryRecord>, polder_catalog::CatalogError> {
        let mut records = self.store.read_queries(user, limit).await?;
        let pending = self.pending.lock().expect("query log lock").clone();
        records.extend(
            pending
                .into_iter()
                .filter(|r| user.is_none_or(|user| r.user_name == user)),
        );
        records.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
        records.dedup_by(|a, b| a.id == b.id);
        records.truncate(limit.max(0) as usize);
        Ok(records)
    }
}

async fn flush_forever(log: Weak<QueryLog>) {
    let mut last_prune: Option<Instant> = None;
    loop {
        tokio::time::sleep(FLUSH_EVERY).await;
        let Some(log) = log.upgrade() else {
            return;
        };
        log.flush().await;
        if last_prune.is_none_or(|at| at.elapsed() > Duration::from_secs(3600)) {
            last_prune = Some(Instant::now());
            let before = polder_catalog::now() - RETENTION.as_millis() as i64;
            if let Err(err) = log.store.prune_queries(before).await {
                tracing::warn!(error = %err, "cannot prune query history");
            }
        }
    }
}

/// One running statement; dropping it unfinished records it as cancelled.
#[derive(Debug)]
pub struct QueryTracker {
    log: Arc<QueryLog>,
    started: Instant,
    record: Option<QueryRecord>,
}

impl QueryTracker {
    /// Time since the statement started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records the outcome: rows sent or changed (when known) or the error's message.
    pub fn finish(mut self, rows: Option<u64>, error: Option<&str>) {
        self.complete(
            rows,
            match error {
                Some(message) => ("error", message),
                None => ("ok", ""),
            },
        );
    }

    fn complete(&mut self, rows: Option<u64>, (status, error): (&str, &str)) {
        if let Some(mut record) = self.record.take() {
            record.duration_ms = self.started.elapsed().as_millis() as i64;
            record.rows = rows.map(|r| r as i64);
            record.status = status.to_string();
            record.error = error.chars().take(2_000).collect();
            self.log.push(record);
        }
    }
}

impl Drop for QueryTracker {
    fn drop(&mut self) {
        self.complete(None, ("cancelled", ""));
    }
}
