//! Connections and jobs as the catalog stores them. What a connection's configuration means,
//! and how a job runs, is the ingestion crate's business; here they are rows.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::{CatalogError, CatalogStore, now_millis};

type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// A connection: a source, its streams and how they sync. `config`, `streams` and `options`
/// are JSON texts; credentials in `config` are references, never values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    pub name: String,
    pub source_type: String,
    pub config: String,
    pub streams: String,
    /// A cron expression, or empty for manual runs only.
    pub schedule: String,
    pub options: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One run of a connection's sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub id: String,
    pub connection: String,
    /// `sync` (other kinds of work will come).
    pub kind: String,
    /// Who or what started it: `manual:<user>`, `schedule`, `api:<user>`.
    pub trigger: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub attempt: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub records: i64,
    pub bytes: i64,
    pub rejects: i64,
    /// JSON array: per-stream counts, versions and errors.
    pub streams: String,
    pub error: String,
    /// The tail of the connector's stderr (Airbyte connectors), kept with failed jobs.
    pub log_tail: String,
    /// The process that runs it (`host:pid`).
    pub runner: String,
    pub heartbeat_at: Option<i64>,
}

const CONNECTION_COLUMNS: &str =
    "name, source_type, config, streams, schedule, options, created_by, created_at, updated_at";
const JOB_COLUMNS: &str = "id, connection, kind, trigger_by, status, attempt, created_at, started_at, finished_at, records, bytes, rejects, streams, error, log_tail, runner, heartbeat_at";

fn connection_from_row(row: &AnyRow) -> Result<ConnectionRecord> {
    Ok(ConnectionRecord {
        name: row.try_get(0)?,
        source_type: row.try_get(1)?,
        config: row.try_get(2)?,
        streams: row.try_get(3)?,
        schedule: row.try_get(4)?,
        options: row.try_get(5)?,
        created_by: row.try_get(6)?,
        created_at: row.try_get(7)?,
        updated_at: row.try_get(8)?,
    })
}

fn job_from_row(row: &AnyRow) -> Result<JobRecord> {
    Ok(JobRecord {
        id: row.try_get(0)?,
        connection: row.try_get(1)?,
        kind: row.try_get(2)?,
        trigger: row.try_get(3)?,
        status: row.try_get(4)?,
        attempt: row.try_get(5)?,
        created_at: row.try_get(6)?,
        started_at: row.try_get(7)?,
        finished_at: row.try_get(8)?,
        records: row.try_get(9)?,
        bytes: row.try_get(10)?,
        rejects: row.try_get(11)?,
        streams: row.try_get(12)?,
        error: row.try_get(13)?,
        log_tail: row.try_get(14)?,
        runner: row.try_get(15)?,
        heartbeat_at: row.try_get(16)?,
    })
}

impl CatalogStore {
    /// Stores a new connection; `ObjectExists` when the name is taken.
    pub async fn create_connection(&self, connection: &ConnectionRecord) -> Result<()> {
        let exists = sqlx::query("SELECT 1 FROM polder_connections WHERE name = $1")
            .bind(&connection.name)
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        if exists {
            return Err(CatalogError::ObjectExists {
                kind: "connection",
                name: connection.name.clone(),
            });
        }
        sqlx::query(&format!(
            "INSERT INTO polder_connections ({CONNECTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&connection.name)
        .bind(&connection.source_type)
        .bind(&connection.config)
        .bind(&connection.streams)
        .bind(&connection.schedule)
        .bind(&connection.options)
        .bind(&connection.created_by)
        .bind(connection.created_at)
        .bind(connection.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces a connection's definition (not its name or creator).
    pub async fn update_connection(&self, connection: &ConnectionRecord) -> Result<()> {
        let updated = sqlx::query(
            "UPDATE polder_connections SET source_type = $2, config = $3, streams = $4, schedule = $5, options = $6, updated_at = $7 WHERE name = $1",
        )
        .bind(&connection.name)
        .bind(&connection.source_type)
        .bind(&connection.config)
        .bind(&connection.streams)
        .bind(&connection.schedule)
        .bind(&connection.options)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(CatalogError::ObjectNotFound {
                kind: "connection",
                name: connection.name.clone(),
            });
        }
        Ok(())
    }

    pub async fn get_connection(&self, name: &str) -> Result<Option<ConnectionRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM polder_connections WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(connection_from_row).transpose()
    }

    pub async fn list_connections(&self) -> Result<Vec<ConnectionRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM polder_connections ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(connection_from_row).collect()
    }

    /// Deletes a connection (its jobs stay as history); `false` when there was none.
    pub async fn delete_connection(&self, name: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM polder_connections WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Records a new job.
    pub async fn create_job(&self, job: &JobRecord) -> Result<()> {
        crate::store::timed("create_job", async {
            sqlx::query(&format!(
                "INSERT INTO polder_jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
            ))
            .bind(&job.id)
            .bind(&job.connection)
            .bind(&job.kind)
            .bind(&job.trigger)
            .bind(&job.status)
            .bind(job.attempt)
            .bind(job.created_at)
            .bind(job.started_at)
            .bind(job.finished_at)
            .bind(job.records)
            .bind(job.bytes)
            .bind(job.rejects)
            .bind(&job.streams)
            .bind(&job.error)
            .bind(&job.log_tail)
            .bind(&job.runner)
            .bind(job.heartbeat_at)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    /// Saves a job's progress or outcome (everything but its identity).
    pub async fn update_job(&self, job: &JobRecord) -> Result<()> {
        crate::store::timed("update_job", async {
            sqlx::query(
                "UPDATE polder_jobs SET status = $2, started_at = $3, finished_at = $4, records = $5, bytes = $6, rejects = $7, streams = $8, error = $9, log_tail = $10, runner = $11, heartbeat_at = $12 WHERE id = $1",
            )
            .bind(&job.id)
            .bind(&job.status)
            .bind(job.started_at)
            .bind(job.finished_at)
            .bind(job.records)
            .bind(job.bytes)
            .bind(job.rejects)
            .bind(&job.streams)
            .bind(&job.error)
            .bind(&job.log_tail)
            .bind(&job.runner)
            .bind(job.heartbeat_at)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    pub async fn get_job(&self, id: &str) -> Result<Option<JobRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM polder_jobs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// The newest `limit` jobs (of one connection, when given), newest first.
    pub async fn list_jobs(&self, connection: Option<&str>, limit: i64) -> Result<Vec<JobRecord>> {
        let rows = match connection {
            Some(connection) => {
                sqlx::query(&format!(
                    "SELECT {JOB_COLUMNS} FROM polder_jobs WHERE connection = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
                ))
                .bind(connection)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {JOB_COLUMNS} FROM polder_jobs ORDER BY created_at DESC, id DESC LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(job_from_row).collect()
    }

    /// Jobs in `status` (`running`, say), oldest first.
    pub async fn jobs_in_status(&self, status: &str) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM polder_jobs WHERE status = $1 ORDER BY created_at"
        ))
        .bind(status)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }
}
