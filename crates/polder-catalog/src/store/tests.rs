//! The same behaviour checked on SQLite and on the real PostgreSQL on 127.0.0.1:5432.

use super::*;

/// Administrative PostgreSQL URL used to create a throwaway database per test.
fn pg_admin_url() -> String {
    std::env::var("POLDER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A throwaway PostgreSQL database (shared with the backup tests).
pub(crate) struct PgDatabase {
    admin: AnyPool,
    name: String,
    pub(crate) url: String,
}

impl PgDatabase {
    pub(crate) async fn create() -> PgDatabase {
        sqlx::any::install_default_drivers();
        let admin_url = pg_admin_url();
        let admin = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&admin_url)
            .await
            .expect("PostgreSQL must run on 127.0.0.1:5432 (set POLDER_TEST_PG_URL otherwise)");
        let name = format!("polder_catalog_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        let base = admin_url.rsplit_once('/').unwrap().0;
        let url = format!("{base}/{name}");
        PgDatabase { admin, name, url }
    }

    pub(crate) async fn drop(self, stores: Vec<CatalogStore>) {
        for store in stores {
            store.pool.close().await;
        }
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&self.admin)
        .await
        .unwrap();
    }
}

async fn exercise(store: &CatalogStore) {
    let snapshot = store.snapshot().await.unwrap();
    let names: Vec<_> = snapshot.schemas.iter().map(|s| s.name.as_str()).collect();
    for schema in DEFAULT_SCHEMAS {
        assert!(
            names.contains(&schema),
            "default schema {schema} in {names:?}"
        );
    }

    let before = store.generation().await.unwrap();
    assert!(store.create_schema("sales", false).await.unwrap());
    assert!(!store.create_schema("sales", true).await.unwrap());
    assert!(matches!(
        store.create_schema("sales", false).await,
        Err(CatalogError::SchemaExists(_))
    ));
    assert!(store.generation().await.unwrap() > before);

    let table = TableEntry::table("sales", "orders", "file:///lake/sales/orders");
    assert!(store.create_table(&table, false).await.unwrap().is_none());
    let err = store.create_table(&table, false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("sales.orders"), "{err}");

    let view = TableEntry::view("sales", "big_orders", "SELECT * FROM sales.orders");
    store.create_table(&view, false).await.unwrap();
    let replaced = TableEntry::view("sales", "big_orders", "SELECT 1");
    let previous = store.create_table(&replaced, true).await.unwrap();
    assert_eq!(
        previous.unwrap().definition.as_deref(),
        Some("SELECT * FROM sales.orders")
    );
    let replacing_table_with_view = TableEntry::view("sales", "orders", "SELECT 1");
    assert!(matches!(
        store.create_table(&replacing_table_with_view, true).await,
        Err(CatalogError::WrongKind { .. })
    ));

    let missing_schema = TableEntry::table("nowhere", "t", "file:///x");
    assert!(matches!(
        store.create_table(&missing_schema, false).await,
        Err(CatalogError::SchemaNotFound(_))
    ));

    let fetched = store.get_table("sales", "orders").await.unwrap().unwrap();
    assert_eq!(
        fetched.location.as_deref(),
        Some("file:///lake/sales/orders")
    );
    assert_eq!(fetched.kind, TableKind::Table);

    assert!(matches!(
        store
            .drop_table("sales", "orders", Some(TableKind::View))
            .await,
        Err(CatalogError::WrongKind { .. })
    ));
    assert!(matches!(
        store.drop_schema("sales", false).await,
        Err(CatalogError::SchemaNotEmpty { count: 2, .. })
    ));
    let dropped = store.drop_schema("sales", true).await.unwrap();
    assert_eq!(dropped.len(), 2);
    assert!(store.get_table("sales", "orders").await.unwrap().is_none());
    assert!(matches!(
        store.drop_table("sales", "orders", None).await,
        Err(CatalogError::TableNotFound(_))
    ));
}

/// Users, tokens, grants and the audit log round-trip with the same types on both backends.
async fn exercise_security(store: &CatalogStore) {
    use crate::{AuditRecord, GrantRecord, TokenRecord, UserRecord};

    let mut user = UserRecord {
        name: "ann".to_string(),
        role: "analyst".to_string(),
        password_hash: "$argon2id$hash".to_string(),
        scram_salt: "c2FsdA==".to_string(),
        scram_salted: "c2FsdGVk".to_string(),
        disabled: false,
        created_at: 1_700_000_000_000,
    };
    let before = store.generation().await.unwrap();
    store.create_user(&user).await.unwrap();
    assert!(
        store.generation().await.unwrap() > before,
        "a user change is a catalog change"
    );
    assert!(matches!(
        store.create_user(&user).await,
        Err(CatalogError::UserExists(_))
    ));
    assert_eq!(store.get_user("ann").await.unwrap().as_ref(), Some(&user));
    user.disabled = true;
    user.role = "engineer".to_string();
    store.update_user(&user).await.unwrap();
    assert_eq!(store.get_user("ann").await.unwrap(), Some(user.clone()));
    assert_eq!(store.user_count().await.unwrap(), 1);

    let token = |id: &str, expires_at: Option<i64>| TokenRecord {
        id: id.to_string(),
        user_name: "ann".to_string(),
        kind: "personal".to_string(),
        label: "bi".to_string(),
        secret_hash: "ab12".to_string(),
        scram_salt: "c2FsdA==".to_string(),
        scram_salted: "c2FsdGVk".to_string(),
        created_at: 1_700_000_000_000,
        expires_at,
        revoked: false,
    };
    store.create_token(&token("t1", None)).await.unwrap();
    store
        .create_token(&token("t2", Some(1_800_000_000_000)))
        .await
        .unwrap();
    assert_eq!(
        store.get_token("t2").await.unwrap(),
        Some(token("t2", Some(1_800_000_000_000)))
    );
    assert!(store.revoke_token("t1").await.unwrap());
    assert!(!store.revoke_token("missing").await.unwrap());
    assert!(store.get_token("t1").await.unwrap().unwrap().revoked);
    assert_eq!(store.list_tokens(Some("ann")).await.unwrap().len(), 2);

    let grant = GrantRecord {
        grantee_kind: "user".to_string(),
        grantee: "ann".to_string(),
        privilege: "SELECT".to_string(),
        schema: "gold".to_string(),
        table: String::new(),
        granted_by: "admin".to_string(),
        created_at: 1_700_000_000_000,
    };
    store
        .add_grants(&[grant.clone(), grant.clone()])
        .await
        .unwrap();
    assert_eq!(store.list_grants().await.unwrap(), vec![grant.clone()]);
    store
        .remove_grants(std::slice::from_ref(&grant))
        .await
        .unwrap();
    assert!(store.list_grants().await.unwrap().is_empty());
    store.add_grants(&[grant]).await.unwrap();

    let entry = AuditRecord::new("ann", "http 127.0.0.1:1", "login_failed", "password")
        .failed("invalid credentials");
    store.append_audit(&entry).await.unwrap();
    assert_eq!(store.read_audit(10).await.unwrap(), vec![entry]);

    // Deleting a user takes its tokens and grants with it.
    store.delete_user("ann").await.unwrap();
    assert!(matches!(
        store.delete_user("ann").await,
        Err(CatalogError::UserNotFound(_))
    ));
    assert!(store.list_tokens(None).await.unwrap().is_empty());
    assert!(store.list_grants().await.unwrap().is_empty());
}

async fn exercise_governance(store: &CatalogStore) {
    use crate::{ColumnMaskRecord, QueryRecord, RowPolicyRecord, SecretRecord, UserRecord};
    use std::collections::BTreeMap;

    store.create_schema("crm", true).await.unwrap();
    store
        .create_table(
            &TableEntry::table("crm", "customers", "file:///lake/crm/c"),
            false,
        )
        .await
        .unwrap();
    let generation = store.generation().await.unwrap();
    let policy = RowPolicyRecord {
        schema: "crm".to_string(),
        table: "customers".to_string(),
        name: "by_region".to_string(),
        predicate: "region = current_user_attribute('region')".to_string(),
        applies_to: vec!["analyst".to_string(), "bob".to_string()],
        created_by: "admin".to_string(),
        created_at: 1,
    };
    store.create_row_policy(&policy).await.unwrap();
    assert!(
        store.generation().await.unwrap() > generation,
        "policies change what readers see"
    );
    // A user named in a policy is not deleted (a new user of that name would inherit it).
    let bob = UserRecord {
        name: "bob".to_string(),
        role: "analyst".to_string(),
        password_hash: "h".to_string(),
        scram_salt: "s".to_string(),
        scram_salted: "k".to_string(),
        disabled: false,
        created_at: 1,
    };
    store.create_user(&bob).await.unwrap();
    let err = store.delete_user("bob").await.unwrap_err();
    assert!(matches!(err, CatalogError::InUse(_)), "{err}");
    assert!(err.to_string().contains("by_region"), "{err}");
    assert!(matches!(
        store.create_row_policy(&policy).await,
        Err(CatalogError::ObjectExists { .. })
    ));
    assert_eq!(
        store.list_row_policies().await.unwrap(),
        vec![policy.clone()]
    );
    let mask = ColumnMaskRecord {
        schema: "crm".to_string(),
        table: "customers".to_string(),
        name: "hide_email".to_string(),
        column: "email".to_string(),
        expression: "'***'".to_string(),
        exempt: vec!["engineer".to_string()],
        created_by: "admin".to_string(),
        created_at: 1,
    };
    store.create_column_mask(&mask).await.unwrap();
    // One mask per column.
    let mut second = mask.clone();
    second.name = "other".to_string();
    assert!(store.create_column_mask(&second).await.is_err());
    assert_eq!(store.list_column_masks().await.unwrap(), vec![mask.clone()]);
    assert!(
        store
            .drop_column_mask("crm", "customers", "hide_email")
            .await
            .unwrap()
    );
    assert!(
        !store
            .drop_column_mask("crm", "customers", "hide_email")
            .await
            .unwrap()
    );
    store.create_column_mask(&mask).await.unwrap();
    // Dropping the table drops its rules.
    store.drop_table("crm", "customers", None).await.unwrap();
    assert!(store.list_row_policies().await.unwrap().is_empty());
    assert!(store.list_column_masks().await.unwrap().is_empty());
    store.delete_user("bob").await.unwrap();

    let user = UserRecord {
        name: "attr_user".to_string(),
        role: "analyst".to_string(),
        password_hash: "h".to_string(),
        scram_salt: "s".to_string(),
        scram_salted: "k".to_string(),
        disabled: false,
        created_at: 1,
    };
    store.create_user(&user).await.unwrap();
    let mut changes = BTreeMap::new();
    changes.insert("region".to_string(), Some("EU".to_string()));
    changes.insert("team".to_string(), Some("sales".to_string()));
    store
        .set_user_attributes("attr_user", &changes)
        .await
        .unwrap();
    let mut unset = BTreeMap::new();
    unset.insert("team".to_string(), None);
    store
        .set_user_attributes("attr_user", &unset)
        .await
        .unwrap();
    let attributes = store.user_attributes().await.unwrap();
    assert_eq!(attributes["attr_user"].len(), 1);
    assert_eq!(attributes["attr_user"]["region"], "EU");
    assert!(matches!(
        store.set_user_attributes("nobody", &changes).await,
        Err(CatalogError::UserNotFound(_))
    ));
    store.delete_user("attr_user").await.unwrap();
    assert!(store.user_attributes().await.unwrap().is_empty());

    let secret = SecretRecord {
        name: "warehouse".to_string(),
        sealed: "v1:abc".to_string(),
        description: "warehouse password".to_string(),
        created_by: "admin".to_string(),
        created_at: 1,
        updated_at: 1,
    };
    assert!(!store.put_secret(&secret).await.unwrap());
    let mut rotated = secret.clone();
    rotated.sealed = "v1:def".to_string();
    rotated.updated_at = 2;
    assert!(store.put_secret(&rotated).await.unwrap());
    let stored = store.get_secret("warehouse").await.unwrap().unwrap();
    assert_eq!(
        (stored.sealed.as_str(), stored.created_at, stored.updated_at),
        ("v1:def", 1, 2)
    );
    assert_eq!(store.list_secrets().await.unwrap().len(), 1);
    assert!(store.delete_secret("warehouse").await.unwrap());
    assert!(store.get_secret("warehouse").await.unwrap().is_none());

    // The vault stores ciphertext only and opens it with its own key alone.
    let key = polder_core::SecretKey::from_text(&polder_core::SecretKey::generate_text()).unwrap();
    let vault = crate::SecretVault::new(store.clone(), key);
    let planted = polder_core::Secret::new("planted-vault-value-8841");
    assert!(
        !vault
            .put("db.password", &planted, "source db", "admin")
            .await
            .unwrap()
    );
    assert_eq!(vault.reveal("db.password").await.unwrap(), planted);
    let raw = store.get_secret("db.password").await.unwrap().unwrap();
    assert!(!raw.sealed.contains("planted-vault-value-8841"));
    let listed = format!("{:?}", vault.list().await.unwrap());
    assert!(
        listed.contains("db.password") && !listed.contains("planted") && !listed.contains("v1:")
    );
    assert!(vault.put("bad name!", &planted, "", "admin").await.is_err());
    let other_key =
        polder_core::SecretKey::from_text(&polder_core::SecretKey::generate_text()).unwrap();
    let wrong = crate::SecretVault::new(store.clone(), other_key);
    let err = wrong.reveal("db.password").await.unwrap_err();
    assert!(err.to_string().contains("secrets key"), "{err}");
    assert!(matches!(
        vault.reveal("missing").await,
        Err(CatalogError::ObjectNotFound { .. })
    ));
    assert!(vault.delete("db.password").await.unwrap());

    let query = |id: &str, user: &str, at: i64| QueryRecord {
        id: id.to_string(),
        user_name: user.to_string(),
        interface: "http".to_string(),
        client: "127.0.0.1".to_string(),
        statement: "SELECT 1".to_string(),
        started_at: at,
        duration_ms: 3,
        rows: Some(1),
        status: "ok".to_string(),
        error: String::new(),
    };
    store
        .append_queries(&[
            query("q1", "ann", 10),
            query("q2", "bob", 20),
            query("q3", "ann", 30),
        ])
        .await
        .unwrap();
    let mine = store.read_queries(Some("ann"), 10).await.unwrap();
    assert_eq!(
        mine.iter().map(|q| q.id.as_str()).collect::<Vec<_>>(),
        ["q3", "q1"]
    );
    assert_eq!(store.read_queries(None, 2).await.unwrap().len(), 2);
    assert_eq!(store.prune_queries(25).await.unwrap(), 2);
    assert_eq!(store.read_queries(None, 10).await.unwrap().len(), 1);

    // Expired tokens and revoked sessions are cleaned up; live ones stay.
    let token = |id: &str, kind: &str, expires_at: Option<i64>, revoked: bool| crate::TokenRecord {
        id: id.to_string(),
        user_name: "ann".to_string(),
        kind: kind.to_string(),
        label: String::new(),
        secret_hash: "h".to_string(),
        scram_salt: "s".to_string(),
        scram_salted: "k".to_string(),
        created_at: 1,
        expires_at,
        revoked,
    };
    for record in [
        token("expired", "session", Some(50), false),
        token("live", "session", Some(500), false),
        token("revoked_session", "session", Some(500), true),
        token("revoked_personal", "personal", None, true),
        token("forever", "personal", None, false),
    ] {
        store.create_token(&record).await.unwrap();
    }
    assert_eq!(store.delete_expired_tokens(100).await.unwrap(), 2);
    let mut left: Vec<String> = store
        .list_tokens(None)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    left.sort();
    // A revoked personal token stays listed (it shows as revoked) until it expires.
    assert_eq!(left, ["forever", "live", "revoked_personal"]);
    for id in left {
        store.revoke_token(&id).await.unwrap();
    }
}

async fn exercise_saved_objects(store: &CatalogStore) {
    use crate::SavedObjectKind;
    let chart = store
        .create_saved_object(
            SavedObjectKind::Chart,
            "Revenue",
            "",
            "ann",
            r#"{"type":"bar"}"#,
        )
        .await
        .unwrap();
    store
        .create_saved_object(SavedObjectKind::Dashboard, "Overview", "", "ann", "{}")
        .await
        .unwrap();
    // Kinds do not mix: a chart's id is not a dashboard's.
    assert!(
        store
            .get_saved_object(SavedObjectKind::Dashboard, &chart.id)
            .await
            .unwrap()
            .is_none()
    );
    let charts = store
        .list_saved_objects(SavedObjectKind::Chart)
        .await
        .unwrap();
    assert_eq!(charts, vec![chart.clone()]);
    let updated = store
        .update_saved_object(
            SavedObjectKind::Chart,
            &chart.id,
            "Revenue by month",
            "d",
            r#"{"type":"line"}"#,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.name, "Revenue by month");
    assert_eq!(updated.body, r#"{"type":"line"}"#);
    assert_eq!(updated.created_at, chart.created_at);
    assert!(
        store
            .update_saved_object(SavedObjectKind::Chart, "missing", "x", "", "{}")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .delete_saved_object(SavedObjectKind::Chart, &chart.id)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_saved_object(SavedObjectKind::Chart, &chart.id)
            .await
            .unwrap()
    );
    assert!(
        store
            .list_saved_objects(SavedObjectKind::Chart)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn exercise_reflections(store: &CatalogStore) {
    use crate::ReflectionRefresh;
    let before = store.generation().await.unwrap();
    assert!(
        store
            .create_reflection(
                "by_day",
                "gold.sales",
                "aggregate",
                "{}",
                "ann",
                "file:///r/by_day"
            )
            .await
            .unwrap()
    );
    // The name is taken: nothing changes.
    assert!(
        !store
            .create_reflection("by_day", "gold.other", "raw", "{}", "bob", "file:///r/x")
            .await
            .unwrap()
    );
    assert!(store.generation().await.unwrap() > before);
    let created = store.get_reflection("by_day").await.unwrap().unwrap();
    assert_eq!(created.status, "building");
    assert_eq!(created.source, "gold.sales");
    assert_eq!(created.data_version, None);
    let refresh = ReflectionRefresh {
        data_version: 3,
        source_versions: r#"{"gold.sales":7}"#.to_string(),
        refreshed_at: 1_000,
        duration_ms: 12,
        kind: "full".to_string(),
        row_count: 40,
        size_bytes: 4096,
    };
    assert!(
        store
            .record_reflection_refresh("by_day", &refresh)
            .await
            .unwrap()
    );
    store
        .add_reflection_usage(&[
            ("by_day".to_string(), 2, 5_000),
            ("by_day".to_string(), 1, 4_000),
        ])
        .await
        .unwrap();
    let ready = store.get_reflection("by_day").await.unwrap().unwrap();
    assert_eq!(ready.status, "ready");
    assert_eq!(ready.data_version, Some(3));
    assert_eq!(ready.source_versions, r#"{"gold.sales":7}"#);
    assert_eq!(ready.usage_count, 3);
    assert_eq!(ready.last_used_at, Some(5_000));
    // An invalid reflection stays invalid: a refresh that finishes late does not revive it.
    assert!(
        store
            .set_reflection_status("by_day", "invalid", Some("gold.sales was dropped"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_reflection_refresh("by_day", &refresh)
            .await
            .unwrap()
    );
    let invalid = store.get_reflection("by_day").await.unwrap().unwrap();
    assert_eq!(
        invalid.status_reason.as_deref(),
        Some("gold.sales was dropped")
    );
    assert_eq!(store.list_reflections().await.unwrap().len(), 1);
    assert!(store.delete_reflection("by_day").await.unwrap());
    assert!(!store.delete_reflection("by_day").await.unwrap());
    assert!(store.list_reflections().await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_catalog_works() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/catalog.db", dir.path().display());
    let store = CatalogStore::open(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    exercise(&store).await;
    exercise_security(&store).await;
    exercise_governance(&store).await;
    exercise_saved_objects(&store).await;
    exercise_reflections(&store).await;

    // Reopening runs no migration twice and keeps the data.
    store.create_schema("kept", false).await.unwrap();
    store.pool.close().await;
    let reopened = CatalogStore::open(&url).await.unwrap();
    let snapshot = reopened.snapshot().await.unwrap();
    assert!(snapshot.schemas.iter().any(|s| s.name == "kept"));
}

#[tokio::test]
async fn postgres_catalog_works_and_is_shared() {
    let database = PgDatabase::create().await;
    let first = CatalogStore::open(&database.url).await.unwrap();
    assert_eq!(first.backend(), Backend::Postgres);
    exercise(&first).await;
    exercise_security(&first).await;
    exercise_governance(&first).await;
    exercise_saved_objects(&first).await;
    exercise_reflections(&first).await;

    // A second process on the same database sees the first one's changes.
    let second = CatalogStore::open(&database.url).await.unwrap();
    first
        .create_table(
            &TableEntry::table("gold", "shared", "file:///lake/gold/shared"),
            false,
        )
        .await
        .unwrap();
    let seen = second.get_table("gold", "shared").await.unwrap();
    assert!(seen.is_some());
    database.drop(vec![first, second]).await;
}

#[tokio::test]
async fn corrupt_sqlite_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    std::fs::write(
        &path,
        b"this is not a sqlite database, just some bytes.......".repeat(100),
    )
    .unwrap();
    let err = CatalogStore::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("cannot"), "{message}");
    assert!(message.contains("not a database"), "{message}");
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable_and_hides_the_password() {
    let err = CatalogStore::open("postgres://polder:hunter2@127.0.0.1:1/catalog")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    let message = err.to_string();
    assert!(!message.contains("hunter2"), "{message}");
    assert!(message.contains("polder:****@127.0.0.1:1"), "{message}");
}

/// Rolling upgrades run version N and N+1 on one catalog: N+1's migrations may only add
/// (tables, nullable or defaulted columns, indexes), never remove or rename what N reads.
#[test]
fn migrations_are_forward_only_and_additive() {
    for (expected_version, migration) in (1..).zip(migrator().iter()) {
        assert_eq!(
            migration.version, expected_version,
            "versions grow one by one"
        );
        let code: String = migration
            .sql
            .lines()
            .map(|line| line.split("--").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
            .to_ascii_uppercase();
        for forbidden in [
            "DROP ",
            "RENAME ",
            "ALTER COLUMN",
            "TRUNCATE ",
            "DELETE FROM ",
        ] {
            assert!(
                !code.contains(forbidden),
                "migration {} ({}) uses {forbidden:?}: migrations must be additive",
                migration.version,
                migration.description
            );
        }
        for statement in code.split(';').filter(|s| s.contains("ADD COLUMN")) {
            assert!(
                !statement.contains("NOT NULL") || statement.contains("DEFAULT"),
                "migration {}: a NOT NULL column without a DEFAULT breaks inserts of the previous version: {statement}",
                migration.version
            );
        }
    }
}
