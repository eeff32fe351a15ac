-- Polder catalog, version 6: what people save in the web UI and the API — saved queries,
-- charts and dashboards. Portable SQL: SQLite and PostgreSQL.

-- One saved object. `kind` is `saved_query`, `chart` or `dashboard`; `body` is its JSON
-- (a query's SQL, a chart's spec, a dashboard's tiles, filters and sharing), which the server
-- validates; the catalog keeps it as it is.
CREATE TABLE polder_saved_objects (
    id              TEXT    NOT NULL PRIMARY KEY,
    kind            TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    owner           TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

CREATE INDEX polder_saved_objects_by_kind ON polder_saved_objects (kind, name);
