//! Export and import checked on SQLite and on the real PostgreSQL on 127.0.0.1:5432, and
//! across the two.

use super::*;
use crate::store::TableEntry;
use crate::store::tests::PgDatabase;

fn sqlite_url(dir: &tempfile::TempDir, name: &str) -> String {
    format!("sqlite://{}", dir.path().join(name).display())
}

async fn every_polder_table_is_listed(store: &CatalogStore) {
    let present = store.polder_table_names(&store.pool).await.unwrap();
    assert!(
        present.contains(&"polder_tables".to_string()),
        "{present:?}"
    );
    let unlisted: Vec<&String> = present
        .iter()
        .filter(|name| {
            !BACKED_UP_TABLES.contains(&name.as_str())
                && !NOT_BACKED_UP_TABLES.contains(&name.as_str())
        })
        .collect();
    assert!(
        unlisted.is_empty(),
        "catalog tables {unlisted:?} are neither in BACKED_UP_TABLES nor in NOT_BACKED_UP_TABLES: \
         decide whether backups carry them"
    );
    for name in BACKED_UP_TABLES {
        assert!(
            present.contains(&name.to_string()),
            "{name} is listed but no migration creates it"
        );
    }
}

/// Fills a catalog with one of everything, NULLs, quotes and many rows.
async fn populate(store: &CatalogStore) {
    store.create_schema("sales", false).await.unwrap();
    store
        .create_table(
            &TableEntry::table("sales", "orders", "file:///old/lake/sales/orders/"),
            false,
        )
        .await
        .unwrap();
    store
        .create_table(
            &TableEntry::view(
                "sales",
                "big",
                "SELECT * FROM sales.orders WHERE note = 'it''s'",
            ),
            false,
        )
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO polder_reflections (name, source, kind, definition, owner, location, status, \
         status_reason, data_version, source_versions, refreshed_at, last_refresh_ms, \
         last_refresh_kind, row_count, size_bytes, usage_count, last_used_at, created_at) \
         VALUES ('r', 'sales.orders', 'aggregate', '{\"x\":\"é\"}', 'admin', \
         'file:///old/lake/.reflections/r-1234/', 'ready', NULL, 3, '{}', NULL, NULL, NULL, \
         10, 2048, 0, NULL, 1)",
    )
    .execute(&store.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO polder_jobs (id, connection, kind, trigger_by, status, attempt, created_at, \
         started_at, finished_at, records, bytes, rejects, streams, error, log_tail, runner, \
         heartbeat_at) VALUES ('j1', 'c', 'sync', 'manual', 'succeeded', 2, 5, NULL, 7, 100, \
         2000, 0, '[]', '', 'line\nline', 'host:1', NULL)",
    )
    .execute(&store.pool)
    .await
    .unwrap();
    for index in 0..700 {
        sqlx::query(
            "INSERT INTO polder_audit (at, user_name, client, action, statement, ok, message) \
             VALUES ($1, 'admin', 'cli', 'ddl', $2, 1, '')",
        )
        .bind(index as i64)
        .bind(format!("CREATE TABLE t{index}"))
        .execute(&store.pool)
        .await
        .unwrap();
    }
    store
        .acquire_lease("scheduler", "host:1", std::time::Duration::from_secs(30))
        .await
        .unwrap();
}

/// The export's tables with rows in a stable order (SELECT has none) and without the state
/// row, whose generation an import bumps.
fn comparable(export: &CatalogExport) -> Vec<ExportedTable> {
    let mut tables = export.tables.clone();
    tables.retain(|t| t.name != "polder_catalog_state");
    for table in &mut tables {
        table
            .rows
            .sort_by_key(|row| serde_json::to_string(row).unwrap());
    }
    tables
}

async fn round_trip(source: &CatalogStore, target: &CatalogStore) {
    every_polder_table_is_listed(source).await;
    populate(source).await;
    let export = source.export().await.unwrap();
    assert!(
        export.migration_version >= 8,
        "{}",
        export.migration_version
    );
    assert!(export.table("polder_leases").is_none());
    let audit = export.table("polder_audit").unwrap();
    assert_eq!(audit.rows.len(), 700);
    let jobs = export.table("polder_jobs").unwrap();
    let attempt = jobs
        .columns
        .iter()
        .position(|c| c.name == "attempt")
        .unwrap();
    let started = jobs
        .columns
        .iter()
        .position(|c| c.name == "started_at")
        .unwrap();
    assert_eq!(jobs.rows[0][attempt], serde_json::json!(2));
    assert_eq!(jobs.rows[0][started], Value::Null);

    let locations = export.lake_locations();
    assert_eq!(locations.len(), 2, "{locations:?}");
    assert_eq!(locations[0].kind, LocationKind::Table);
    assert_eq!(
        (locations[0].schema.as_str(), locations[0].name.as_str()),
        ("sales", "orders")
    );
    assert_eq!(locations[1].kind, LocationKind::Reflection);

    // Through JSON, as a backup stores it.
    let text = serde_json::to_string(&export).unwrap();
    let mut restored: CatalogExport = serde_json::from_str(&text).unwrap();
    assert_eq!(restored, export);
    assert_eq!(
        restored.rewrite_lake_root("file:///old/lake/", "s3://bucket/new/"),
        2
    );

    let before = target.generation().await.unwrap();
    target.import(&restored).await.unwrap();
    assert!(target.generation().await.unwrap() > before);
    let again = target.export().await.unwrap();
    let mut expected = export.clone();
    expected.rewrite_lake_root("file:///old/lake/", "s3://bucket/new/");
    assert_eq!(comparable(&again), comparable(&expected));
    let orders = target.get_table("sales", "orders").await.unwrap().unwrap();
    assert_eq!(
        orders.location.as_deref(),
        Some("s3://bucket/new/sales/orders/")
    );
    let reflection = target.get_reflection("r").await.unwrap().unwrap();
    assert_eq!(reflection.location, "s3://bucket/new/.reflections/r-1234/");
    // The lease is runtime state: not carried.
    assert!(target.lease("scheduler").await.unwrap().is_none());

    // A second import into the now non-empty catalog is refused, naming what is there.
    let err = target.import(&restored).await.unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert!(err.to_string().contains("2 tables or views"), "{err}");
}

#[tokio::test]
async fn sqlite_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let source = CatalogStore::open(&sqlite_url(&dir, "a.db")).await.unwrap();
    let target = CatalogStore::open(&sqlite_url(&dir, "b.db")).await.unwrap();
    round_trip(&source, &target).await;
}

#[tokio::test]
async fn postgres_round_trips_and_crosses_backends() {
    let dir = tempfile::tempdir().unwrap();
    let first = PgDatabase::create().await;
    let second = PgDatabase::create().await;
    let pg_source = CatalogStore::open(&first.url).await.unwrap();
    let pg_target = CatalogStore::open(&second.url).await.unwrap();
    round_trip(&pg_source, &pg_target).await;

    // PostgreSQL to SQLite and back.
    let sqlite = CatalogStore::open(&sqlite_url(&dir, "c.db")).await.unwrap();
    let export = pg_source.export().await.unwrap();
    sqlite.import(&export).await.unwrap();
    let via_sqlite = sqlite.export().await.unwrap();
    assert_eq!(comparable(&via_sqlite), comparable(&export));
    let third = PgDatabase::create().await;
    let pg_again = CatalogStore::open(&third.url).await.unwrap();
    pg_again.import(&via_sqlite).await.unwrap();
    assert_eq!(
        comparable(&pg_again.export().await.unwrap()),
        comparable(&export)
    );

    first.drop(vec![pg_source]).await;
    second.drop(vec![pg_target]).await;
    third.drop(vec![pg_again]).await;
}

#[tokio::test]
async fn an_export_from_a_newer_catalog_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = CatalogStore::open(&sqlite_url(&dir, "a.db")).await.unwrap();
    let target = CatalogStore::open(&sqlite_url(&dir, "b.db")).await.unwrap();
    let mut export = source.export().await.unwrap();
    export.migration_version += 1;
    let err = target.import(&export).await.unwrap_err();
    assert!(err.to_string().contains("newer than this polder"), "{err}");
    // Nothing was written: the fresh catalog still imports the real export.
    export.migration_version -= 1;
    target.import(&export).await.unwrap();
}

#[test]
fn unknown_tables_are_exported_last_and_runtime_state_never() {
    let present: Vec<String> = [
        "polder_tables",
        "polder_leases",
        "polder_future",
        "polder_schemas",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        CatalogStore::tables_to_export(&present),
        vec!["polder_schemas", "polder_tables", "polder_future"]
    );
}

#[test]
fn lake_root_rewrite_leaves_other_locations_alone() {
    let mut export = CatalogExport {
        format: EXPORT_FORMAT,
        migration_version: 8,
        backend: "sqlite".to_string(),
        tables: vec![ExportedTable {
            name: "polder_tables".to_string(),
            columns: vec![
                ExportedColumn {
                    name: "name".to_string(),
                    column_type: ColumnType::Text,
                },
                ExportedColumn {
                    name: "location".to_string(),
                    column_type: ColumnType::Text,
                },
            ],
            rows: vec![
                vec![Value::from("a"), Value::from("file:///lake/s/a/")],
                vec![Value::from("b"), Value::from("file:///elsewhere/s/b/")],
                vec![Value::from("v"), Value::Null],
            ],
        }],
    };
    assert_eq!(export.rewrite_lake_root("file:///lake/", "file:///new/"), 1);
    assert_eq!(export.tables[0].rows[0][1], Value::from("file:///new/s/a/"));
    assert_eq!(
        export.tables[0].rows[1][1],
        Value::from("file:///elsewhere/s/b/")
    );
}
