//! Lake behaviour on the local filesystem (S3 is exercised end to end in `tests/`).

use std::sync::Arc;

use deltalake::arrow::array::{Int64Array, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::protocol::SaveMode;
use polder_core::{ErrorKind, HasErrorKind};

use super::*;

fn batch(values: &[i64]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
}

async fn write(lake: &Lake, location: &str, values: &[i64], mode: SaveMode) -> DeltaTable {
    let table = match lake.load(location).await {
        Ok(table) => table,
        Err(_) => lake.new_table(location).unwrap(),
    };
    table
        .write(vec![batch(values)])
        .with_save_mode(mode)
        .await
        .unwrap()
}

#[tokio::test]
async fn tables_have_versions_history_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(
        &format!("file://{}/lake", dir.path().display()),
        &S3Config::default(),
    )
    .unwrap();
    let location = lake.table_location("bronze", "events");
    assert!(location.as_str().ends_with("/lake/bronze/events/"));
    let location = location.as_str();
    assert!(!lake.exists(location).await.unwrap());

    let before_first_commit = Utc::now() - chrono::Duration::seconds(60);
    write(&lake, location, &[1, 2, 3], SaveMode::ErrorIfExists).await;
    write(&lake, location, &[4, 5], SaveMode::Append).await;
    assert!(lake.exists(location).await.unwrap());

    let latest = lake.load(location).await.unwrap();
    let stats = Lake::stats(&latest).unwrap();
    assert_eq!(stats.version, 1);
    assert_eq!(stats.num_rows, Some(5));
    assert_eq!(stats.num_files, 2);
    assert!(stats.size_bytes > 0);

    let first = lake.load_version(location, 0).await.unwrap();
    assert_eq!(Lake::stats(&first).unwrap().num_rows, Some(3));
    let err = lake.load_version(location, 7).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("latest version is 1"), "{err}");

    let now = lake.load_at(location, Utc::now()).await.unwrap();
    assert_eq!(now.version(), Some(1));
    let err = lake
        .load_at(location, before_first_commit)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    let history = lake.history(&latest, None).await.unwrap();
    let versions: Vec<i64> = history.iter().map(|h| h.version).collect();
    assert_eq!(versions, vec![1, 0]);
    assert_eq!(history[0].operation.as_deref(), Some("WRITE"));
    assert!(history[0].timestamp.unwrap() >= history[1].timestamp.unwrap());
    assert_eq!(lake.history(&latest, Some(1)).await.unwrap().len(), 1);

    // A refresh of an old handle sees the newest commit.
    let mut stale = lake.load_version(location, 0).await.unwrap();
    lake.refresh(&mut stale).await.unwrap();
    assert_eq!(stale.version(), Some(1));

    lake.delete_table(location).await.unwrap();
    assert!(!lake.exists(location).await.unwrap());
    let err = lake.load(location).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn relative_file_lakes_become_absolute_and_bad_urls_are_rejected() {
    let lake = Lake::open("memory://", &S3Config::default()).unwrap();
    assert_eq!(lake.root().scheme(), "memory");
    let err = Lake::open("ftp://somewhere/lake", &S3Config::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = Lake::open("s3:///no-bucket", &S3Config::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn unreachable_s3_is_unavailable_quickly() {
    let config = S3Config {
        endpoint: Some("http://127.0.0.1:1".to_string()),
        region: "us-east-1".to_string(),
        path_style: true,
        allow_http: true,
        access_key_id: Some(polder_core::Secret::new("test")),
        secret_access_key: Some(polder_core::Secret::new("test-secret-key")),
        session_token: None,
    };
    let lake = Lake::open("s3://polder-unreachable/lake", &config).unwrap();
    let started = std::time::Instant::now();
    let err = lake.check().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(!err.to_string().contains("test-secret-key"));
    // Not a timing assertion on speed, only a guard against retrying for minutes.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}
