-- Polder catalog, version 1: schemas, tables and views.
-- Portable SQL: the same file runs on SQLite (embedded) and PostgreSQL (production).

CREATE TABLE polder_schemas (
    name        TEXT    NOT NULL PRIMARY KEY,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE polder_tables (
    schema_name TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    -- 'table' (a Delta table at `location`) or 'view' (SQL text in `definition`)
    kind        TEXT    NOT NULL,
    location    TEXT,
    definition  TEXT,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (schema_name, name)
);

-- One row. `generation` grows with every catalog change, so a process can tell with one
-- cheap query whether its cached listing is still current.
CREATE TABLE polder_catalog_state (
    id          INTEGER NOT NULL PRIMARY KEY,
    generation  BIGINT  NOT NULL
);

INSERT INTO polder_catalog_state (id, generation) VALUES (1, 0);
