//! Connections and requests refused before any user is known — failed TLS handshakes, plain
//! text on a TLS port, protocol garbage, oversized or malformed requests, local paths in an
//! import — go to the audit log as `refused`, with the listener and the client address.
//!
//! A client can open connections faster than the catalog can write rows, so entries are
//! limited per minute; what is over the limit is counted in the log line that reopens it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polder_catalog::{AuditRecord, CatalogStore};

/// Audit entries of refusals per minute, over all listeners.
const PER_MINUTE: u32 = 120;

#[derive(Debug)]
struct Window {
    started: Instant,
    written: u32,
    dropped: u64,
}

/// Writes refusals to the audit log; cheap to clone.
#[derive(Debug, Clone)]
pub struct RefusalLog {
    store: CatalogStore,
    window: Arc<Mutex<Window>>,
}

impl RefusalLog {
    pub fn new(store: CatalogStore) -> Self {
        RefusalLog {
            store,
            window: Arc::new(Mutex::new(Window {
                started: Instant::now(),
                written: 0,
                dropped: 0,
            })),
        }
    }

    /// Records that `listener` refused `peer` because of `reason` (never a credential).
    pub fn record(&self, listener: &str, peer: Option<SocketAddr>, reason: &str) {
        let dropped_before = {
            let mut window = self.window.lock().expect("refusal window lock");
            if window.started.elapsed() > Duration::from_secs(60) {
                window.started = Instant::now();
                window.written = 0;
            }
            if window.written >= PER_MINUTE {
                window.dropped += 1;
                return;
            }
            window.written += 1;
            std::mem::take(&mut window.dropped)
        };
        let client = match peer {
            Some(peer) => format!("{listener} {peer}"),
            None => listener.to_string(),
        };
        let mut message: String = reason.chars().take(500).collect();
        if dropped_before > 0 {
            message.push_str(&format!(
                " ({dropped_before} earlier refusals not recorded: over {PER_MINUTE} per minute)"
            ));
        }
        let entry = AuditRecord::new("-", &client, "refused", "").failed(&message);
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.append_audit(&entry).await {
                tracing::warn!(error = %err, "cannot write the audit log");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refusals_are_audited_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::open(&format!("sqlite://{}/catalog.db", dir.path().display()))
            .await
            .unwrap();
        let log = RefusalLog::new(store.clone());
        let peer: SocketAddr = "127.0.0.1:5555".parse().unwrap();
        for _ in 0..PER_MINUTE + 30 {
            log.record("postgres", Some(peer), "not a PostgreSQL startup message");
        }
        // The writes run in spawned tasks.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut entries = Vec::new();
        while Instant::now() < deadline {
            entries = store.read_audit(1000).await.unwrap();
            if entries.len() >= PER_MINUTE as usize {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(entries.len(), PER_MINUTE as usize);
        let entry = &entries[0];
        assert_eq!(entry.action, "refused");
        assert_eq!(entry.client, "postgres 127.0.0.1:5555");
        assert!(!entry.ok && entry.message.contains("startup message"));
    }
}
