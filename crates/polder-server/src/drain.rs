//! Graceful shutdown: on SIGTERM a coordinator stops taking new connections and statements,
//! lets the statements and commits already running finish (bounded by a timeout), and only
//! then exits — so a rolling restart behind a load balancer loses no answer and no commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};

/// Whether the server is draining, and how many statements are still running.
#[derive(Debug)]
pub(crate) struct Drain {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
    started: watch::Sender<bool>,
}

/// One running statement: counted until it is dropped (after its last row was sent).
#[derive(Debug)]
pub(crate) struct InFlight {
    drain: Arc<Drain>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.drain.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.drain.idle.notify_waiters();
        }
    }
}

impl Drain {
    pub fn new() -> Arc<Drain> {
        let (started, _) = watch::channel(false);
        Arc::new(Drain {
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            started,
        })
    }

    /// Counts a statement in; `None` once draining has begun (the caller refuses it).
    pub fn enter(self: &Arc<Self>) -> Option<InFlight> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight {
            drain: self.clone(),
        };
        // Checked after counting in, so that a statement either is refused or is waited for.
        if self.draining.load(Ordering::SeqCst) {
            return None;
        }
        Some(guard)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Begins draining: listeners stop accepting, new statements are refused.
    pub fn begin(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.started.send_replace(true);
    }

    /// Resolves once draining has begun (the listeners' graceful-shutdown signal).
    pub async fn begun(&self) {
        let mut started = self.started.subscribe();
        // The sender lives as long as `self`, so this only ends when draining begins.
        let _ = started.wait_for(|begun| *begun).await;
    }

    /// Resolves once no statement is running.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_for_running_statements_and_refuses_new_ones() {
        let drain = Drain::new();
        let running = drain.enter().expect("not draining yet");
        drain.begin();
        assert!(drain.enter().is_none(), "new statements are refused");
        assert_eq!(drain.in_flight(), 1, "a refused statement is not counted");
        let waiter = tokio::spawn({
            let drain = drain.clone();
            async move { drain.idle().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "still waiting for the running statement"
        );
        drop(running);
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("idle once the last statement ends")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(2), drain.begun())
            .await
            .expect("begun resolves after begin");
    }
}
