//! Prometheus metrics: queries, errors, latency, rows and bytes returned, per interface; the
//! recorder, and the descriptions of what the other crates record (jobs, catalog, object store).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use polder_core::ErrorKind;

/// Which listener served a request (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    Http,
    Postgres,
    FlightSql,
}

impl Interface {
    pub fn label(self) -> &'static str {
        match self {
            Interface::Http => "http",
            Interface::Postgres => "postgres",
            Interface::FlightSql => "flight_sql",
        }
    }
}

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("polder_query_duration_seconds".to_string()),
                    &[
                        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                        60.0,
                    ],
                )
                .expect("static bucket list is valid")
                .set_buckets_for_metric(
                    Matcher::Full("polder_job_duration_seconds".to_string()),
                    &[
                        0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                        7200.0, 21600.0,
                    ],
                )
                .expect("static bucket list is valid")
                .set_buckets_for_metric(
                    Matcher::Full("polder_catalog_operation_duration_seconds".to_string()),
                    STORE_LATENCY_BUCKETS,
                )
                .expect("static bucket list is valid")
                .set_buckets_for_metric(
                    Matcher::Full("polder_object_store_request_duration_seconds".to_string()),
                    STORE_LATENCY_BUCKETS,
                )
                .expect("static bucket list is valid")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            metrics::describe_counter!(
                "polder_queries_total",
                "statements run, by interface and outcome"
            );
            metrics::describe_counter!(
                "polder_query_errors_total",
                "statements that failed, by interface and error kind"
            );
            metrics::describe_histogram!(
                "polder_query_duration_seconds",
                "statement latency until the last row was sent"
            );
            metrics::describe_counter!("polder_rows_returned_total", "result rows sent to clients");
            metrics::describe_counter!(
                "polder_bytes_returned_total",
                "result bytes sent to clients"
            );
            describe_jobs_and_stores();
            handle
        })
        .clone()
}

/// Latency buckets of catalog and object-store requests: sub-millisecond (SQLite, local files)
/// to seconds (a remote PostgreSQL or S3 under load).
const STORE_LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The metrics that the ingest, transform, catalog and lake crates record through the facade.
fn describe_jobs_and_stores() {
    metrics::describe_counter!(
        "polder_jobs_total",
        "finished ingestion syncs and transformation runs, by kind and status"
    );
    metrics::describe_histogram!(
        "polder_job_duration_seconds",
        "duration of ingestion syncs and transformation runs, by kind"
    );
    metrics::describe_gauge!(
        "polder_jobs_running",
        "ingestion syncs and transformation runs running in this process, by kind"
    );
    metrics::describe_counter!(
        "polder_ingested_records_total",
        "records loaded into bronze by syncs, by connection"
    );
    metrics::describe_histogram!(
        "polder_catalog_operation_duration_seconds",
        "catalog store latency, by operation"
    );
    metrics::describe_counter!(
        "polder_catalog_errors_total",
        "catalog store failures (not answers such as 'does not exist'), by operation"
    );
    metrics::describe_histogram!(
        "polder_object_store_request_duration_seconds",
        "object store request latency until the response (get) or first item (list), by operation and store"
    );
    metrics::describe_counter!(
        "polder_object_store_errors_total",
        "object store requests that failed (not found and lost put-if-absent races excluded), by operation and store"
    );
}

/// Records one finished statement.
pub fn record_statement(interface: Interface, elapsed: Duration, error: Option<ErrorKind>) {
    let outcome = if error.is_some() { "error" } else { "ok" };
    metrics::counter!("polder_queries_total", "interface" => interface.label(), "outcome" => outcome).increment(1);
    metrics::histogram!("polder_query_duration_seconds", "interface" => interface.label())
        .record(elapsed.as_secs_f64());
    if let Some(kind) = error {
        metrics::counter!("polder_query_errors_total", "interface" => interface.label(), "kind" => kind.code()).increment(1);
    }
}

pub fn record_rows(interface: Interface, rows: u64, bytes: u64) {
    metrics::counter!("polder_rows_returned_total", "interface" => interface.label())
        .increment(rows);
    metrics::counter!("polder_bytes_returned_total", "interface" => interface.label())
        .increment(bytes);
}

/// One statement, timed for the metrics and the query history (`system.queries`) at once.
/// Dropping it unfinished (the client went away) records it as cancelled.
pub struct StatementRun {
    interface: Interface,
    tracker: Option<polder_engine::QueryTracker>,
}

impl StatementRun {
    /// Starts timing `sql`, run by the current principal.
    pub fn start(engine: &polder_engine::Engine, interface: Interface, sql: &str) -> Self {
        StatementRun {
            interface,
            tracker: Some(engine.query_log().start(interface.label(), sql)),
        }
    }

    /// Starts timing `sql`, run by `principal` (the system when authentication is off).
    pub fn start_as(
        engine: &polder_engine::Engine,
        interface: Interface,
        principal: Option<polder_core::Principal>,
        sql: &str,
    ) -> Self {
        let principal = principal.unwrap_or_else(polder_core::Principal::system);
        StatementRun {
            interface,
            tracker: Some(
                engine
                    .query_log()
                    .start_as(principal, interface.label(), sql),
            ),
        }
    }

    /// Finished: `rows` sent or changed, when known.
    pub fn ok(mut self, rows: Option<u64>) {
        if let Some(tracker) = self.tracker.take() {
            record_statement(self.interface, tracker.elapsed(), None);
            tracker.finish(rows, None);
        }
    }

    /// Failed with an error of `kind`.
    pub fn failed(mut self, kind: ErrorKind, message: &str) {
        if let Some(tracker) = self.tracker.take() {
            record_statement(self.interface, tracker.elapsed(), Some(kind));
            tracker.finish(None, Some(message));
        }
    }

    /// Finished with `result`'s outcome.
    pub fn finish<T, E: std::fmt::Display>(
        self,
        result: &Result<T, E>,
        rows: Option<u64>,
        kind: impl Fn(&E) -> ErrorKind,
    ) {
        match result {
            Ok(_) => self.ok(rows),
            Err(err) => self.failed(kind(err), &err.to_string()),
        }
    }
}

impl Drop for StatementRun {
    fn drop(&mut self) {
        if let Some(tracker) = self.tracker.take() {
            record_statement(
                self.interface,
                tracker.elapsed(),
                Some(ErrorKind::Cancelled),
            );
            // The tracker records itself as cancelled when dropped.
        }
    }
}
