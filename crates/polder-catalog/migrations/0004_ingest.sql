-- Polder catalog, version 4: connections (sources loaded into bronze) and jobs (their runs).
-- Portable SQL: the same file runs on SQLite (embedded) and PostgreSQL (production).

-- A source, the streams selected from it and how they sync. `config` is JSON whose
-- credentials are references (`secret:<name>`, `env:`, `file:`), never values.
CREATE TABLE polder_connections (
    name            TEXT    NOT NULL PRIMARY KEY,
    source_type     TEXT    NOT NULL,
    config          TEXT    NOT NULL,
    streams         TEXT    NOT NULL,
    schedule        TEXT    NOT NULL,
    options         TEXT    NOT NULL,
    created_by      TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

-- One run of a connection's sync. A sync's data and state live in the Delta commits of its
-- tables; this row is the run's report (status, counts per stream, error, connector log).
CREATE TABLE polder_jobs (
    id              TEXT    NOT NULL PRIMARY KEY,
    connection      TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    trigger_by      TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    attempt         INTEGER NOT NULL,
    created_at      BIGINT  NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT,
    records         BIGINT  NOT NULL,
    bytes           BIGINT  NOT NULL,
    rejects         BIGINT  NOT NULL,
    streams         TEXT    NOT NULL,
    error           TEXT    NOT NULL,
    log_tail        TEXT    NOT NULL,
    runner          TEXT    NOT NULL,
    heartbeat_at    BIGINT
);

CREATE INDEX polder_jobs_by_connection ON polder_jobs (connection, created_at);
CREATE INDEX polder_jobs_by_status ON polder_jobs (status);
