//! Transformation projects, their nodes (lineage and last run) and their runs, as the catalog
//! stores them. What a project means and how it runs is the transformation crate's business.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::{CatalogError, CatalogStore, now_millis};

type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// A dbt project that has been run here: its name and its directory on the host that ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformProjectRecord {
    pub name: String,
    pub root: String,
    /// A cron expression, or empty when the project runs only when asked.
    pub schedule: String,
    /// JSON: what a scheduled run does (command, selection, flags).
    pub schedule_run: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One node of a project with its lineage and the outcome of its last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformNodeRecord {
    pub project: String,
    pub unique_id: String,
    pub resource_type: String,
    pub name: String,
    /// `schema.name` of what it builds (empty for tests and exposures).
    pub relation: String,
    pub materialized: String,
    /// JSON array of the unique ids it depends on.
    pub depends_on: String,
    pub description: String,
    pub file_path: String,
    /// `success`, `error`, `skipped`, `pass`, `warn`, `fail`, or empty when never run.
    pub last_status: String,
    pub last_message: String,
    pub last_run_at: Option<i64>,
    pub last_duration_ms: Option<i64>,
    pub last_run_id: String,
}

/// One run (`build`, `run`, `test`, `seed`) of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformRunRecord {
    pub id: String,
    pub project: String,
    pub command: String,
    /// JSON: selection, flags.
    pub args: String,
    pub trigger: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// JSON: counts by status.
    pub summary: String,
    /// JSON array of node results.
    pub results: String,
    pub error: String,
    pub runner: String,
}

const NODE_COLUMNS: &str = "project, unique_id, resource_type, name, relation, materialized, depends_on, description, file_path, last_status, last_message, last_run_at, last_duration_ms, last_run_id";
const RUN_COLUMNS: &str = "id, project, command, args, trigger_by, status, started_at, finished_at, summary, results, error, runner";

fn node_from_row(row: &AnyRow) -> Result<TransformNodeRecord> {
    Ok(TransformNodeRecord {
        project: row.try_get(0)?,
        unique_id: row.try_get(1)?,
        resource_type: row.try_get(2)?,
        name: row.try_get(3)?,
        relation: row.try_get(4)?,
        materialized: row.try_get(5)?,
        depends_on: row.try_get(6)?,
        description: row.try_get(7)?,
        file_path: row.try_get(8)?,
        last_status: row.try_get(9)?,
        last_message: row.try_get(10)?,
        last_run_at: row.try_get(11)?,
        last_duration_ms: row.try_get(12)?,
        last_run_id: row.try_get(13)?,
    })
}

fn run_from_row(row: &AnyRow) -> Result<TransformRunRecord> {
    Ok(TransformRunRecord {
        id: row.try_get(0)?,
        project: row.try_get(1)?,
        command: row.try_get(2)?,
        args: row.try_get(3)?,
        trigger: row.try_get(4)?,
        status: row.try_get(5)?,
        started_at: row.try_get(6)?,
        finished_at: row.try_get(7)?,
        summary: row.try_get(8)?,
        results: row.try_get(9)?,
        error: row.try_get(10)?,
        runner: row.try_get(11)?,
    })
}

impl CatalogStore {
    /// Records a project (or moves it to a new directory), keeping its creator and schedule.
    pub async fn upsert_transform_project(&self, project: &TransformProjectRecord) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE polder_transform_projects SET root = $2, updated_at = $3 WHERE name = $1",
        )
        .bind(&project.name)
        .bind(&project.root)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO polder_transform_projects (name, root, schedule, schedule_run, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&project.name)
            .bind(&project.root)
            .bind(&project.schedule)
            .bind(&project.schedule_run)
            .bind(&project.created_by)
            .bind(project.created_at)
            .bind(project.updated_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sets (or with an empty `schedule`, clears) a project's schedule; `false` when there is
    /// no such project.
    pub async fn set_transform_schedule(
        &self,
        name: &str,
        schedule: &str,
        schedule_run: &str,
    ) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE polder_transform_projects SET schedule = $2, schedule_run = $3, updated_at = $4 WHERE name = $1",
        )
        .bind(name)
        .bind(schedule)
        .bind(schedule_run)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() > 0)
    }

    /// Runs in `status` (`running`, say), oldest first.
    pub async fn transform_runs_in_status(&self, status: &str) -> Result<Vec<TransformRunRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM polder_transform_runs WHERE status = $1 ORDER BY started_at"
        ))
        .bind(status)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    pub async fn get_transform_project(
        &self,
        name: &str,
    ) -> Result<Option<TransformProjectRecord>> {
        let row = sqlx::query(
            "SELECT name, root, schedule, schedule_run, created_by, created_at, updated_at FROM polder_transform_projects WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    pub async fn list_transform_projects(&self) -> Result<Vec<TransformProjectRecord>> {
        let rows = sqlx::query(
            "SELECT name, root, schedule, schedule_run, created_by, created_at, updated_at FROM polder_transform_projects ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(project_from_row).collect()
    }

    /// Replaces a project's nodes with a new parse, keeping each surviving node's last run.
    pub async fn replace_transform_nodes(
        &self,
        project: &str,
        nodes: &[TransformNodeRecord],
    ) -> Result<()> {
        let previous = self.list_transform_nodes(project).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM polder_transform_nodes WHERE project = $1")
            .bind(project)
            .execute(&mut *tx)
            .await?;
        for node in nodes {
            let mut node = node.clone();
            if node.last_status.is_empty()
                && let Some(old) = previous.iter().find(|p| p.unique_id == node.unique_id)
            {
                node.last_status = old.last_status.clone();
                node.last_message = old.last_message.clone();
                node.last_run_at = old.last_run_at;
                node.last_duration_ms = old.last_duration_ms;
                node.last_run_id = old.last_run_id.clone();
            }
            sqlx::query(&format!(
                "INSERT INTO polder_transform_nodes ({NODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ))
            .bind(&node.project)
            .bind(&node.unique_id)
            .bind(&node.resource_type)
            .bind(&node.name)
            .bind(&node.relation)
            .bind(&node.materialized)
            .bind(&node.depends_on)
            .bind(&node.description)
            .bind(&node.file_path)
            .bind(&node.last_status)
            .bind(&node.last_message)
            .bind(node.last_run_at)
            .bind(node.last_duration_ms)
            .bind(&node.last_run_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Saves the outcome of one node's run.
    pub async fn record_transform_node_run(
        &self,
        project: &str,
        unique_id: &str,
        status: &str,
        message: &str,
        duration_ms: i64,
        run_id: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE polder_transform_nodes SET last_status = $3, last_message = $4, last_run_at = $5, last_duration_ms = $6, last_run_id = $7 WHERE project = $1 AND unique_id = $2",
        )
        .bind(project)
        .bind(unique_id)
        .bind(status)
        .bind(message)
        .bind(now_millis())
        .bind(duration_ms)
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn list_transform_nodes(&self, project: &str) -> Result<Vec<TransformNodeRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {NODE_COLUMNS} FROM polder_transform_nodes WHERE project = $1 ORDER BY unique_id"
        ))
        .bind(project)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(node_from_row).collect()
    }

    pub async fn create_transform_run(&self, run: &TransformRunRecord) -> Result<()> {
        crate::store::timed("create_transform_run", async {
            sqlx::query(&format!(
                "INSERT INTO polder_transform_runs ({RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ))
            .bind(&run.id)
            .bind(&run.project)
            .bind(&run.command)
            .bind(&run.args)
            .bind(&run.trigger)
            .bind(&run.status)
            .bind(run.started_at)
            .bind(run.finished_at)
            .bind(&run.summary)
            .bind(&run.results)
            .bind(&run.error)
            .bind(&run.runner)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    /// Saves a run's outcome (everything but its identity).
    pub async fn update_transform_run(&self, run: &TransformRunRecord) -> Result<()> {
        crate::store::timed("update_transform_run", async {
            sqlx::query(
                "UPDATE polder_transform_runs SET status = $2, finished_at = $3, summary = $4, results = $5, error = $6 WHERE id = $1",
            )
            .bind(&run.id)
            .bind(&run.status)
            .bind(run.finished_at)
            .bind(&run.summary)
            .bind(&run.results)
            .bind(&run.error)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    pub async fn get_transform_run(&self, id: &str) -> Result<Option<TransformRunRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM polder_transform_runs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// The newest `limit` runs (of one project, when given), newest first.
    pub async fn list_transform_runs(
        &self,
        project: Option<&str>,
        limit: i64,
    ) -> Result<Vec<TransformRunRecord>> {
        let rows = match project {
            Some(project) => {
                sqlx::query(&format!(
                    "SELECT {RUN_COLUMNS} FROM polder_transform_runs WHERE project = $1 ORDER BY started_at DESC, id DESC LIMIT $2"
                ))
                .bind(project)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {RUN_COLUMNS} FROM polder_transform_runs ORDER BY started_at DESC, id DESC LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(run_from_row).collect()
    }
}

fn project_from_row(row: &AnyRow) -> Result<TransformProjectRecord> {
    Ok(TransformProjectRecord {
        name: row.try_get(0)?,
        root: row.try_get(1)?,
        schedule: row.try_get(2)?,
        schedule_run: row.try_get(3)?,
        created_by: row.try_get(4)?,
        created_at: row.try_get(5)?,
        updated_at: row.try_get(6)?,
    })
}
