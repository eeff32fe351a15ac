-- Polder catalog, version 7: reflections — accelerated copies of a table or view (raw: chosen
-- columns, sorted/partitioned; aggregate: dimensions x measures) that the planner reads instead
-- of the source when that gives the same answer. Portable SQL: SQLite and PostgreSQL.

-- One reflection. `definition` is its JSON (kind, columns or dimensions/measures, layout,
-- refresh policy, staleness), which the engine validates; `location` is its Delta table in the
-- lake's reserved area. `data_version` is the reflection table's version readers use, and
-- `source_versions` (JSON {"schema.table": version}) the source versions it was built from:
-- both change in one statement, so a reader never pairs data with the wrong versions.
CREATE TABLE polder_reflections (
    name                TEXT    NOT NULL PRIMARY KEY,
    source              TEXT    NOT NULL,
    kind                TEXT    NOT NULL,
    definition          TEXT    NOT NULL,
    owner               TEXT    NOT NULL,
    location            TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    status_reason       TEXT,
    data_version        BIGINT,
    source_versions     TEXT    NOT NULL,
    refreshed_at        BIGINT,
    last_refresh_ms     BIGINT,
    last_refresh_kind   TEXT,
    row_count           BIGINT,
    size_bytes          BIGINT,
    usage_count         BIGINT  NOT NULL,
    last_used_at        BIGINT,
    created_at          BIGINT  NOT NULL
);

CREATE INDEX polder_reflections_by_source ON polder_reflections (source);
