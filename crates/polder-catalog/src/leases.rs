//! Leases: one coordinator at a time holds a cluster-wide role (the scheduler), through a row
//! in the catalog that its holder renews and anyone may take over once it has expired. This is
//! how several `polder serve` processes sharing one PostgreSQL catalog run scheduled work
//! exactly once; with the embedded SQLite catalog the one process simply always holds it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use sqlx::Row;
use sqlx::any::AnyRow;
use tokio::sync::watch;

use crate::store::{CatalogError, CatalogStore, now_millis};

type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// The role whose holder runs cron schedules, reflection refreshes and resumes interrupted jobs.
pub const SCHEDULER_LEASE: &str = "scheduler";

/// Who holds a lease, since when and until when (milliseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub name: String,
    /// `host:pid` of the holder.
    pub holder: String,
    /// Grows by one each time another process takes the lease over.
    pub term: i64,
    pub acquired_at: i64,
    pub renewed_at: i64,
    pub expires_at: i64,
}

fn lease_from_row(row: &AnyRow) -> Result<LeaseRecord> {
    Ok(LeaseRecord {
        name: row.try_get(0)?,
        holder: row.try_get(1)?,
        term: row.try_get(2)?,
        acquired_at: row.try_get(3)?,
        renewed_at: row.try_get(4)?,
        expires_at: row.try_get(5)?,
    })
}

impl CatalogStore {
    /// Takes the lease `name` for `holder` (when free or expired) or renews it (when `holder`
    /// has it), until `ttl` from now, in one statement; two processes racing for it cannot
    /// both win. `Ok(Some)` when `holder` holds it afterwards, `Ok(None)` when another does.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseRecord>> {
        let now = now_millis();
        let expires_at = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let changed = sqlx::query(
            "INSERT INTO polder_leases (name, holder, term, acquired_at, renewed_at, expires_at) \
             VALUES ($1, $2, 1, $3, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET \
               term = CASE WHEN polder_leases.holder = excluded.holder \
                      THEN polder_leases.term ELSE polder_leases.term + 1 END, \
               acquired_at = CASE WHEN polder_leases.holder = excluded.holder \
                      THEN polder_leases.acquired_at ELSE excluded.acquired_at END, \
               holder = excluded.holder, \
               renewed_at = excluded.renewed_at, \
               expires_at = excluded.expires_at \
             WHERE polder_leases.holder = excluded.holder \
                OR polder_leases.expires_at < excluded.renewed_at",
        )
        .bind(name)
        .bind(holder)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        Ok(self
            .lease(name)
            .await?
            .filter(|lease| lease.holder == holder))
    }

    /// Gives the lease up at once (a clean shutdown), so another process need not wait for it
    /// to expire. `true` when `holder` had it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<bool> {
        // Expired rather than deleted, so that the next holder's term still grows.
        let released = sqlx::query(
            "UPDATE polder_leases SET expires_at = 0 \
             WHERE name = $1 AND holder = $2 AND expires_at > 0",
        )
        .bind(name)
        .bind(holder)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(released > 0)
    }

    /// Ends `lease` now if it is still exactly as read (same holder and expiry), so that it
    /// can be taken over at once; `true` when it was ended.
    pub async fn expire_lease(&self, lease: &LeaseRecord) -> Result<bool> {
        let expired = sqlx::query(
            "UPDATE polder_leases SET expires_at = 0 \
             WHERE name = $1 AND holder = $2 AND expires_at = $3",
        )
        .bind(&lease.name)
        .bind(&lease.holder)
        .bind(lease.expires_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(expired > 0)
    }

    /// The lease `name` as stored (possibly expired), if anyone ever took it.
    pub async fn lease(&self, name: &str) -> Result<Option<LeaseRecord>> {
        let row = sqlx::query(
            "SELECT name, holder, term, acquired_at, renewed_at, expires_at \
             FROM polder_leases WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(lease_from_row).transpose()
    }
}

/// This process's view of one lease: kept current by a background task that renews it every
/// third of its time to live. Cheap to clone; every scheduler asks [`Leadership::is_leader`]
/// before it starts work.
#[derive(Clone)]
pub struct Leadership {
    inner: Arc<LeadershipState>,
    changes: watch::Receiver<bool>,
}

struct LeadershipState {
    store: CatalogStore,
    name: String,
    holder: String,
    ttl: Duration,
    /// Until when (ms) this process may act as the holder: the end of the last successful
    /// renewal's lease, minus a margin, so that it stops before anyone else may start.
    valid_until: AtomicI64,
    term: AtomicI64,
    stopped: AtomicBool,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("name", &self.inner.name)
            .field("holder", &self.inner.holder)
            .field("leader", &self.is_leader())
            .finish()
    }
}

impl Leadership {
    /// Competes for the lease `name` as `holder` from now on, renewing it every `ttl / 3`.
    pub fn spawn(store: CatalogStore, name: &str, holder: &str, ttl: Duration) -> Leadership {
        let (sender, changes) = watch::channel(false);
        let inner = Arc::new(LeadershipState {
            store,
            name: name.to_string(),
            holder: holder.to_string(),
            ttl,
            valid_until: AtomicI64::new(0),
            term: AtomicI64::new(0),
            stopped: AtomicBool::new(false),
        });
        let state = inner.clone();
        tokio::spawn(async move {
            let period = (state.ttl / 3).max(Duration::from_millis(50));
            loop {
                if state.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let attempt_started = now_millis();
                match state
                    .store
                    .acquire_lease(&state.name, &state.holder, state.ttl)
                    .await
                {
                    Ok(Some(_)) if state.stopped.load(Ordering::SeqCst) => {
                        // Resigned while this renewal was on its way: give it back.
                        let _ = state.store.release_lease(&state.name, &state.holder).await;
                        return;
                    }
                    Ok(Some(lease)) => {
                        // Counted from before the statement was sent: the stored expiry is
                        // later than that, never earlier.
                        let margin = i64::try_from(period.as_millis()).unwrap_or(0) / 2;
                        let ttl_ms = i64::try_from(state.ttl.as_millis()).unwrap_or(i64::MAX);
                        state.valid_until.store(
                            attempt_started.saturating_add(ttl_ms) - margin,
                            Ordering::SeqCst,
                        );
                        let previous = state.term.swap(lease.term, Ordering::SeqCst);
                        if previous != lease.term {
                            tracing::info!(lease = %state.name, holder = %state.holder, term = lease.term, "this coordinator now runs scheduled work");
                        }
                    }
                    Ok(None) => {
                        if state.valid_until.swap(0, Ordering::SeqCst) > 0 {
                            tracing::warn!(lease = %state.name, "another coordinator holds the scheduler lease now");
                        }
                        // A holder on this host whose process is gone (a crash, then a restart)
                        // is known dead: no need to wait for its lease to run out.
                        if let Ok(Some(lease)) = state.store.lease(&state.name).await
                            && polder_core::runner::runner_alive(
                                &lease.holder,
                                None,
                                now_millis(),
                                0,
                            ) == Some(false)
                            && let Ok(true) = state.store.expire_lease(&lease).await
                        {
                            tracing::info!(lease = %state.name, holder = %lease.holder, "the scheduler lease's holder on this host is gone; taking over");
                            continue;
                        }
                    }
                    Err(err) => {
                        // The catalog is unreachable: keep acting only until the lease we had
                        // runs out (checked by is_leader), then stop.
                        tracing::warn!(lease = %state.name, error = %err, "cannot renew the scheduler lease");
                    }
                }
                let leader = state.valid_until.load(Ordering::SeqCst) > now_millis();
                sender.send_if_modified(|current| {
                    let changed = *current != leader;
                    *current = leader;
                    changed
                });
                tokio::time::sleep(period).await;
            }
        });
        Leadership { inner, changes }
    }

    /// Whether this process holds the role right now (a lease it could not renew in time
    /// counts as lost).
    pub fn is_leader(&self) -> bool {
        !self.inner.stopped.load(Ordering::SeqCst)
            && self.inner.valid_until.load(Ordering::SeqCst) > now_millis()
    }

    /// The term of the lease this process last held (0: never).
    pub fn term(&self) -> i64 {
        self.inner.term.load(Ordering::SeqCst)
    }

    /// Waits until this process holds the role (at once when it does).
    pub async fn became_leader(&self) {
        let mut changes = self.changes.clone();
        loop {
            if self.is_leader() {
                return;
            }
            if changes.changed().await.is_err() {
                // The renewal task ended (resigned): this process never leads again.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops competing and gives the lease up, so that another coordinator takes over at once.
    pub async fn resign(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.valid_until.store(0, Ordering::SeqCst);
        match self
            .inner
            .store
            .release_lease(&self.inner.name, &self.inner.holder)
            .await
        {
            Ok(true) => tracing::info!(lease = %self.inner.name, "scheduler lease released"),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(lease = %self.inner.name, error = %err, "cannot release the scheduler lease; it expires by itself")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, CatalogStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/catalog.db", dir.path().display());
        let store = CatalogStore::open(&url).await.expect("catalog opens");
        (dir, store)
    }

    #[tokio::test]
    async fn one_holder_at_a_time_until_the_lease_expires() {
        let (_dir, store) = store().await;
        let ttl = Duration::from_millis(300);
        let first = store.acquire_lease("role", "a:1", ttl).await.unwrap();
        assert_eq!(first.as_ref().map(|l| l.term), Some(1));
        assert!(
            store
                .acquire_lease("role", "b:2", ttl)
                .await
                .unwrap()
                .is_none()
        );
        // Renewing keeps the term.
        let renewed = store
            .acquire_lease("role", "a:1", ttl)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(renewed.term, 1);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let taken = store
            .acquire_lease("role", "b:2", ttl)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((taken.holder.as_str(), taken.term), ("b:2", 2));
        // The old holder cannot renew a lease someone else took over.
        assert!(
            store
                .acquire_lease("role", "a:1", ttl)
                .await
                .unwrap()
                .is_none()
        );
        assert!(!store.release_lease("role", "a:1").await.unwrap());
        assert!(store.release_lease("role", "b:2").await.unwrap());
        let free_again = store
            .acquire_lease("role", "a:1", ttl)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(free_again.term, 3, "a released lease is taken over at once");
    }

    #[tokio::test]
    async fn leadership_moves_when_the_holder_resigns() {
        let (_dir, store) = store().await;
        let ttl = Duration::from_millis(600);
        let first = Leadership::spawn(store.clone(), "scheduler", "a:1", ttl);
        tokio::time::timeout(Duration::from_secs(5), first.became_leader())
            .await
            .expect("the only candidate leads");
        let second = Leadership::spawn(store.clone(), "scheduler", "b:2", ttl);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(first.is_leader() && !second.is_leader());
        first.resign().await;
        assert!(!first.is_leader());
        tokio::time::timeout(Duration::from_secs(5), second.became_leader())
            .await
            .expect("the other candidate takes over after a resignation");
        assert_eq!(second.term(), 2, "a takeover starts a new term");
    }
}
