-- Polder catalog, version 3: row access policies, column masks, user attributes (which
-- policies read), encrypted secrets, query history.
-- Portable SQL: the same file runs on SQLite (embedded) and PostgreSQL (production).

CREATE TABLE polder_user_attributes (
    user_name       TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    value           TEXT    NOT NULL,
    PRIMARY KEY (user_name, name)
);

-- A predicate rows must satisfy for the users it applies to (all non-admins when
-- applies_to is empty; else the comma-separated users and roles).
CREATE TABLE polder_row_policies (
    schema_name     TEXT    NOT NULL,
    table_name      TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    predicate       TEXT    NOT NULL,
    applies_to      TEXT    NOT NULL,
    created_by      TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    PRIMARY KEY (schema_name, table_name, name)
);

-- An expression that replaces a column's value for every non-admin user not in exempt
-- (comma-separated users and roles).
CREATE TABLE polder_column_masks (
    schema_name     TEXT    NOT NULL,
    table_name      TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    column_name     TEXT    NOT NULL,
    expression      TEXT    NOT NULL,
    exempt          TEXT    NOT NULL,
    created_by      TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    PRIMARY KEY (schema_name, table_name, name),
    UNIQUE (schema_name, table_name, column_name)
);

-- Credentials sealed with the secrets key (AES-256-GCM); never stored in clear.
CREATE TABLE polder_secrets (
    name            TEXT    NOT NULL PRIMARY KEY,
    sealed          TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    created_by      TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

CREATE TABLE polder_queries (
    id              TEXT    NOT NULL PRIMARY KEY,
    user_name       TEXT    NOT NULL,
    interface       TEXT    NOT NULL,
    client          TEXT    NOT NULL,
    statement       TEXT    NOT NULL,
    started_at      BIGINT  NOT NULL,
    duration_ms     BIGINT  NOT NULL,
    rows_returned   BIGINT,
    status          TEXT    NOT NULL,
    error           TEXT    NOT NULL
);

CREATE INDEX polder_queries_started ON polder_queries (started_at);
CREATE INDEX polder_queries_user ON polder_queries (user_name, started_at);
