//! An object store wrapper that records each request's latency and failures for `/metrics`.
//!
//! Every store the lake hands to deltalake (S3, local files) goes through [`MeteredStore`], so
//! that table reads, writes and commits are measured in one place. The wrapper only delegates:
//! atomic puts, conditional copies and native renames keep the inner store's semantics.

use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Once};
use std::task::{Context, Poll};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use deltalake::DeltaResult;
use deltalake::logstore::{
    DeltaIOStorageBackend, ObjectStoreFactory, ObjectStoreRef, StorageConfig,
    object_store_factories,
};
use futures::stream::{BoxStream, Stream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use url::Url;

/// An object store whose requests are timed (`polder_object_store_request_duration_seconds`)
/// and whose failures are counted (`polder_object_store_errors_total`), labelled with the
/// operation and the kind of store (`s3`, `file`).
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    store: &'static str,
}

impl MeteredStore {
    /// Wraps `inner`; `store` names its kind in the metrics (`s3`, `file`).
    pub fn new(inner: Arc<dyn ObjectStore>, store: &'static str) -> Self {
        MeteredStore { inner, store }
    }

    fn start(&self, operation: &'static str) -> Request {
        Request {
            operation,
            store: self.store,
            started: Instant::now(),
        }
    }
}

// Display and Debug are delegated: deltalake and error messages print the store, and should
// show the real one.
impl fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

/// Whether an error is an answer the protocol expects rather than a failing store: a probe for
/// an absent object (`_last_checkpoint`, a version that is not there yet), a commit that lost
/// the race for its version, an unchanged object. Counting those would make the error rate
/// follow normal traffic.
fn is_expected(err: &object_store::Error) -> bool {
    matches!(
        err,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotModified { .. }
    )
}

/// One timed request.
struct Request {
    operation: &'static str,
    store: &'static str,
    started: Instant,
}

impl Request {
    fn finish<T>(self, result: &Result<T>) {
        self.finish_with(result.as_ref().err());
    }

    fn finish_with(self, error: Option<&object_store::Error>) {
        metrics::histogram!(
            "polder_object_store_request_duration_seconds",
            "operation" => self.operation,
            "store" => self.store
        )
        .record(self.started.elapsed().as_secs_f64());
        if let Some(err) = error {
            count_error(self.operation, self.store, err);
        }
    }
}

fn count_error(operation: &'static str, store: &'static str, err: &object_store::Error) {
    if !is_expected(err) {
        metrics::counter!(
            "polder_object_store_errors_total",
            "operation" => operation,
            "store" => store
        )
        .increment(1);
    }
}

/// A listing (or a stream of deletes): the request is timed until its first item or its end,
/// not until the whole stream is consumed, which depends on the reader as much as on the
/// store. Failures later in the stream are still counted.
struct TimedStream<T> {
    inner: BoxStream<'static, Result<T>>,
    request: Option<Request>,
    operation: &'static str,
    store: &'static str,
}

impl<T> Stream for TimedStream<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // `BoxStream` is `Unpin`, and so is this struct.
        let this = self.get_mut();
        let polled = this.inner.poll_next_unpin(cx);
        if let Poll::Ready(item) = &polled {
            let error = match item {
                Some(Err(err)) => Some(err),
                _ => None,
            };
            match (this.request.take(), error) {
                (Some(request), error) => request.finish_with(error),
                (None, Some(err)) => count_error(this.operation, this.store, err),
                (None, None) => {}
            }
        }
        polled
    }
}

impl MeteredStore {
    fn timed_stream<T: 'static>(
        &self,
        operation: &'static str,
        inner: BoxStream<'static, Result<T>>,
    ) -> BoxStream<'static, Result<T>> {
        TimedStream {
            inner,
            request: Some(self.start(operation)),
            operation,
            store: self.store,
        }
        .boxed()
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let request = self.start("put");
        let result = self.inner.put_opts(location, payload, opts).await;
        request.finish(&result);
        result
    }

    /// Times the start of the upload only; its parts are written by the caller later.
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let request = self.start("put_multipart");
        let result = self.inner.put_multipart_opts(location, opts).await;
        request.finish(&result);
        result
    }

    /// Timed until the response (headers, or the opened file) arrives; the body streams on.
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let operation = if options.head { "head" } else { "get" };
        let request = self.start(operation);
        let result = self.inner.get_opts(location, options).await;
        request.finish(&result);
        result
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let request = self.start("get_ranges");
        let result = self.inner.get_ranges(location, ranges).await;
        request.finish(&result);
        result
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.timed_stream("delete", self.inner.delete_stream(locations))
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.timed_stream("list", self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.timed_stream("list", self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let request = self.start("list_with_delimiter");
        let result = self.inner.list_with_delimiter(prefix).await;
        request.finish(&result);
        result
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let request = self.start("copy");
        let result = self.inner.copy_opts(from, to, options).await;
        request.finish(&result);
        result
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let request = self.start("rename");
        let result = self.inner.rename_opts(from, to, options).await;
        request.finish(&result);
        result
    }
}

/// Builds `file://` stores as deltalake's default factory does, metered.
struct LocalStoreFactory;

impl ObjectStoreFactory for LocalStoreFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let (store, path) = object_store::parse_url_opts(url, &config.raw)?;
        let mut store: ObjectStoreRef = Arc::from(store);
        if let Some(runtime) = &config.runtime {
            store = Arc::new(DeltaIOStorageBackend::new(store, runtime.clone()));
        }
        Ok((Arc::new(MeteredStore::new(store, "file")), path))
    }
}

/// Makes deltalake open `file://` tables through a [`MeteredStore`] (process-wide, like the
/// `s3://` factory in `s3.rs`).
pub(crate) fn register_local_files() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        let scheme = Url::parse("file://").expect("static url");
        object_store_factories().insert(scheme, Arc::new(LocalStoreFactory));
    });
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use futures::TryStreamExt;
    use metrics::{
        Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutMode};

    use super::*;

    /// Remembers how often each histogram and counter (name and labels) was touched.
    #[derive(Default)]
    struct Recorded {
        seen: Mutex<BTreeMap<String, u64>>,
    }

    struct Touch {
        key: String,
        recorded: Arc<Recorded>,
    }

    impl Touch {
        fn bump(&self, by: u64) {
            let mut seen = self.recorded.seen.lock().unwrap();
            *seen.entry(self.key.clone()).or_default() += by;
        }
    }

    impl HistogramFn for Touch {
        fn record(&self, _value: f64) {
            self.bump(1);
        }
    }

    impl CounterFn for Touch {
        fn increment(&self, value: u64) {
            self.bump(value);
        }
        fn absolute(&self, _value: u64) {}
    }

    struct TestRecorder(Arc<Recorded>);

    impl TestRecorder {
        fn touch(&self, key: &Key) -> Arc<Touch> {
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            Arc::new(Touch {
                key: format!("{}{{{}}}", key.name(), labels.join(",")),
                recorded: self.0.clone(),
            })
        }
    }

    impl Recorder for TestRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.touch(key))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.touch(key))
        }
    }

    #[test]
    fn delegates_every_operation_and_records_it() {
        let recorded = Arc::new(Recorded::default());
        let recorder = TestRecorder(recorded.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let store = MeteredStore::new(inner.clone(), "file");
        assert_eq!(store.to_string(), inner.to_string(), "display is delegated");
        assert_eq!(
            format!("{store:?}"),
            format!("{inner:?}"),
            "debug is delegated"
        );

        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let a = Path::from("t/_delta_log/00000000000000000000.json");
                let b = Path::from("t/part-0.parquet");
                store.put(&a, PutPayload::from_static(b"{}")).await.unwrap();
                // Put-if-absent keeps its meaning through the wrapper (Delta commits rely on it).
                let again = store
                    .put_opts(&a, PutPayload::from_static(b"x"), PutMode::Create.into())
                    .await;
                assert!(matches!(
                    again,
                    Err(object_store::Error::AlreadyExists { .. })
                ));
                store.copy(&a, &b).await.unwrap();
                let body = store.get(&b).await.unwrap().bytes().await.unwrap();
                assert_eq!(&body[..], b"{}");
                assert_eq!(store.head(&b).await.unwrap().size, 2);
                let ranges = store.get_ranges(&b, &[0..1, 1..2]).await.unwrap();
                assert_eq!(
                    ranges,
                    vec![Bytes::from_static(b"{"), Bytes::from_static(b"}")]
                );
                let listed: Vec<_> = store
                    .list(Some(&Path::from("t")))
                    .try_collect()
                    .await
                    .unwrap();
                assert_eq!(listed.len(), 2);
                let nothing: Vec<_> = store
                    .list(Some(&Path::from("none")))
                    .try_collect()
                    .await
                    .unwrap();
                assert!(nothing.is_empty());
                let dirs = store
                    .list_with_delimiter(Some(&Path::from("t")))
                    .await
                    .unwrap();
                assert_eq!(dirs.common_prefixes, vec![Path::from("t/_delta_log")]);
                store
                    .rename(&b, &Path::from("t/part-1.parquet"))
                    .await
                    .unwrap();
                store.delete(&a).await.unwrap();
                let missing = store.get(&a).await;
                assert!(matches!(missing, Err(object_store::Error::NotFound { .. })));
                let left: Vec<_> = inner.list(None).try_collect().await.unwrap();
                assert_eq!(left.len(), 1);
                assert_eq!(left[0].location, Path::from("t/part-1.parquet"));
            });
        });

        let seen = recorded.seen.lock().unwrap();
        let count = |operation: &str| {
            seen.get(&format!(
                "polder_object_store_request_duration_seconds{{operation={operation},store=file}}"
            ))
            .copied()
            .unwrap_or(0)
        };
        assert_eq!(count("put"), 2);
        assert_eq!(count("copy"), 1);
        assert_eq!(count("get"), 2);
        assert_eq!(count("head"), 1);
        assert_eq!(count("get_ranges"), 1);
        assert_eq!(count("list"), 2, "an empty listing is timed too");
        assert_eq!(count("list_with_delimiter"), 1);
        assert_eq!(count("rename"), 1);
        assert_eq!(count("delete"), 1);
        // The lost put-if-absent race and the missing object are answers, not store failures.
        assert!(
            !seen
                .keys()
                .any(|k| k.starts_with("polder_object_store_errors_total")),
            "{seen:?}"
        );
    }
}
