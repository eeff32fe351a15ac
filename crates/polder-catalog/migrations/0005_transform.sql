-- Polder catalog, version 5: transformation (dbt) projects, their nodes' lineage and last
-- runs, and the runs themselves. Portable SQL: SQLite and PostgreSQL.

-- A dbt project Polder has run: its name (from dbt_project.yml) and where its files are on
-- the host that ran it. Runs through the API address projects by this name only. `schedule`
-- is a cron expression (or empty) for `polder serve` to run `schedule_run` (JSON: command,
-- selection, flags) by.
CREATE TABLE polder_transform_projects (
    name            TEXT    NOT NULL PRIMARY KEY,
    root            TEXT    NOT NULL,
    schedule        TEXT    NOT NULL,
    schedule_run    TEXT    NOT NULL,
    created_by      TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

-- A node of a project (model, seed, test, source, exposure) as of the last parse: lineage
-- (`depends_on`, a JSON array of unique ids) and the outcome of its last run.
CREATE TABLE polder_transform_nodes (
    project         TEXT    NOT NULL,
    unique_id       TEXT    NOT NULL,
    resource_type   TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    relation        TEXT    NOT NULL,
    materialized    TEXT    NOT NULL,
    depends_on      TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    file_path       TEXT    NOT NULL,
    last_status     TEXT    NOT NULL,
    last_message    TEXT    NOT NULL,
    last_run_at     BIGINT,
    last_duration_ms BIGINT,
    last_run_id     TEXT    NOT NULL,
    PRIMARY KEY (project, unique_id)
);

-- One `polder build|run|test|seed` of a project: who started it, its status and the result
-- of every node (JSON, the shape of run_results.json's `results`).
CREATE TABLE polder_transform_runs (
    id              TEXT    NOT NULL PRIMARY KEY,
    project         TEXT    NOT NULL,
    command         TEXT    NOT NULL,
    args            TEXT    NOT NULL,
    trigger_by      TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    started_at      BIGINT  NOT NULL,
    finished_at     BIGINT,
    summary         TEXT    NOT NULL,
    results         TEXT    NOT NULL,
    error           TEXT    NOT NULL,
    runner          TEXT    NOT NULL
);

CREATE INDEX polder_transform_runs_by_project ON polder_transform_runs (project, started_at);
