-- Polder catalog, version 8: leases — which coordinator holds a cluster-wide role (the
-- scheduler: cron syncs and builds, reflection refreshes, resuming interrupted jobs) and until
-- when. Portable SQL: SQLite and PostgreSQL.
--
-- Migrations are forward-only and additive (new tables and nullable columns), so that during a
-- rolling upgrade coordinators of version N keep working on a catalog that N+1 has migrated.

-- One row per role. A holder renews `expires_at` well before it passes; once it has passed,
-- any coordinator may take the role over, and `term` grows by one, so work can tell which
-- holder it was started under.
CREATE TABLE polder_leases (
    name        TEXT    NOT NULL PRIMARY KEY,
    holder      TEXT    NOT NULL,
    term        BIGINT  NOT NULL,
    acquired_at BIGINT  NOT NULL,
    renewed_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);
