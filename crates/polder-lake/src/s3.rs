//! S3-compatible storage for Delta tables, on `object_store`'s own S3 client.
//!
//! `deltalake`'s `s3` feature would bring the AWS SDK (and a DynamoDB lock client) into the
//! build. Polder does not need it: S3 and the S3-compatible servers people run (MinIO, Ceph,
//! R2) support conditional writes (`If-None-Match: *`), which is all the Delta commit protocol
//! needs to be safe with concurrent writers, and `object_store` speaks them natively. So this
//! module registers an `s3://` object-store factory built from Polder's configuration and
//! uses deltalake's default log store (put-if-absent commits) for it.

use std::sync::Arc;
use std::time::Duration;

use deltalake::DeltaResult;
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use polder_core::S3Config;
use url::Url;

use crate::metered::MeteredStore;

struct S3StoreFactory {
    config: S3Config,
}

impl ObjectStoreFactory for S3StoreFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        _options: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let store = build_s3_store(&self.config, url)?;
        Ok((store, Path::from(url.path())))
    }
}

struct S3LogStoreFactory;

impl LogStoreFactory for S3LogStoreFactory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Builds the S3 client for the bucket of `url`, from the standard `AWS_*` environment first
/// (so that instance profiles and web identity work) and then Polder's explicit settings.
pub(crate) fn build_s3_store(config: &S3Config, url: &Url) -> DeltaResult<ObjectStoreRef> {
    let bucket = url.host_str().unwrap_or_default();
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_region(&config.region)
        .with_virtual_hosted_style_request(!config.path_style)
        .with_allow_http(config.allow_http)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 3,
            // An unreachable endpoint must become an error quickly, not after minutes.
            retry_timeout: Duration::from_secs(15),
        })
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(120))
                .with_allow_http(config.allow_http),
        );
    if let Some(endpoint) = &config.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(key) = &config.access_key_id {
        builder = builder.with_access_key_id(key.expose());
    }
    if let Some(secret) = &config.secret_access_key {
        builder = builder.with_secret_access_key(secret.expose());
    }
    if let Some(token) = &config.session_token {
        builder = builder.with_token(token.expose());
    }
    let store = builder.build()?;
    Ok(Arc::new(MeteredStore::new(Arc::new(store), "s3")))
}

/// Makes `s3://` locations usable by deltalake with this process's S3 settings.
///
/// deltalake's registries are process-wide, like a process's configuration: the last
/// registration is the one used.
pub(crate) fn register_s3(config: &S3Config) {
    let scheme = Url::parse("s3://").expect("static url");
    object_store_factories().insert(
        scheme.clone(),
        Arc::new(S3StoreFactory {
            config: config.clone(),
        }),
    );
    logstore_factories().insert(scheme, Arc::new(S3LogStoreFactory));
}
