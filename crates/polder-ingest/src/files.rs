//! Loading CSV, JSON and Parquet files into a table as one Delta commit.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::prelude::{
    CsvReadOptions, DataFrame, JsonReadOptions, ParquetReadOptions, SessionContext, col,
};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use polder_core::TableName;
use polder_engine::{Engine, WriteMode};
use url::Url;

use crate::Progress;
use crate::counting::CountingStore;
use crate::error::IngestError;

type Result<T, E = IngestError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    /// JSON lines (one object per line), or one JSON array of objects.
    Json,
    Parquet,
}

impl std::str::FromStr for FileFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "csv" => Ok(FileFormat::Csv),
            "json" | "jsonl" | "ndjson" => Ok(FileFormat::Json),
            "parquet" => Ok(FileFormat::Parquet),
            other => Err(format!(
                "unknown format '{other}': expected csv, json or parquet"
            )),
        }
    }
}

/// Format and compression from a file name: `x.csv`, `x.jsonl.gz`, `x.parquet`.
fn detect(name: &str) -> Option<(FileFormat, FileCompressionType)> {
    let lower = name.to_ascii_lowercase();
    let (stem, compression) = match lower.strip_suffix(".gz") {
        Some(stem) => (stem.to_string(), FileCompressionType::GZIP),
        None => match lower.strip_suffix(".zst") {
            Some(stem) => (stem.to_string(), FileCompressionType::ZSTD),
            None => (lower.clone(), FileCompressionType::UNCOMPRESSED),
        },
    };
    let format = if stem.ends_with(".csv") || stem.ends_with(".tsv") {
        FileFormat::Csv
    } else if stem.ends_with(".json") || stem.ends_with(".jsonl") || stem.ends_with(".ndjson") {
        FileFormat::Json
    } else if stem.ends_with(".parquet") || stem.ends_with(".pq") {
        FileFormat::Parquet
    } else {
        return None;
    };
    Some((format, compression))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Add rows; create the table when it does not exist.
    Append,
    /// Replace the table's rows (and schema) in one commit; create it when missing.
    Overwrite,
    /// Create the table; fail when it exists.
    Create,
}

impl std::str::FromStr for ImportMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "append" => Ok(ImportMode::Append),
            "overwrite" => Ok(ImportMode::Overwrite),
            "create" => Ok(ImportMode::Create),
            other => Err(format!(
                "unknown mode '{other}': expected append, overwrite or create"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ImportRequest {
    /// A local path, a directory, a glob (`data/*.csv`), `s3://bucket/prefix` or an HTTP(S) URL.
    pub source: String,
    pub table: TableName,
    pub format: Option<FileFormat>,
    pub mode: ImportMode,
    /// CSV field delimiter (default `,`; `\t` for `.tsv`).
    pub delimiter: Option<u8>,
    /// Whether CSV files start with a header row (default yes).
    pub has_header: bool,
}

impl ImportRequest {
    pub fn new(source: impl Into<String>, table: TableName) -> Self {
        ImportRequest {
            source: source.into(),
            table,
            format: None,
            mode: ImportMode::Append,
            delimiter: None,
            has_header: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportReport {
    pub table: String,
    pub files: usize,
    pub bytes: u64,
    /// Rows the commit added (when the Delta statistics tell).
    pub rows: Option<u64>,
    pub version: i64,
    pub created: bool,
}

/// The files of a source, all in one object store.
pub struct ImportSource {
    /// `file:///`, `s3://bucket/` or `https://host/`: where the store is registered.
    pub(crate) base: Url,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) files: Vec<object_store::ObjectMeta>,
}

impl ImportSource {
    /// Finds the files `source` names.
    pub async fn resolve(engine: &Engine, source: &str) -> Result<ImportSource> {
        let source_error = |message: String| IngestError::Source {
            source_name: source.to_string(),
            message,
        };
        if source.starts_with("s3://") {
            let url = Url::parse(source).map_err(|e| source_error(e.to_string()))?;
            let bucket_url = Url::parse(&format!("s3://{}/", url.host_str().unwrap_or_default()))
                .map_err(|e| source_error(e.to_string()))?;
            let (store, _) = engine
                .lake()
                .store_for(&bucket_url)
                .map_err(|e| source_error(e.to_string()))?;
            let key = url.path().trim_start_matches('/').to_string();
            let files = list_objects(store.as_ref(), &key)
                .await
                .map_err(|e| source_error(e.to_string()))?;
            return Ok(ImportSource {
                base: bucket_url,
                store,
                files,
            });
        }
        if source.starts_with("http://") || source.starts_with("https://") {
            let url = Url::parse(source).map_err(|e| source_error(e.to_string()))?;
            let origin = format!("{}://{}/", url.scheme(), url.host_str().unwrap_or_default());
            let origin = match url.port() {
                Some(port) => format!(
                    "{}://{}:{port}/",
                    url.scheme(),
                    url.host_str().unwrap_or_default()
                ),
                None => origin,
            };
            let base = Url::parse(&origin).map_err(|e| source_error(e.to_string()))?;
            let store: Arc<dyn ObjectStore> = Arc::new(
                object_store::http::HttpBuilder::new()
                    .with_url(origin.clone())
                    .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
                    .build()
                    .map_err(|e| source_error(e.to_string()))?,
            );
            let path = StorePath::parse(url.path().trim_start_matches('/'))
                .map_err(|e| source_error(e.to_string()))?;
            let meta = store
                .head(&path)
                .await
                .map_err(|e| source_error(e.to_string()))?;
            return Ok(ImportSource {
                base,
                store,
                files: vec![meta],
            });
        }

        let local = source.strip_prefix("file://").unwrap_or(source);
        let mut paths: Vec<PathBuf> = Vec::new();
        if local.contains(['*', '?', '[']) {
            let matches =
                glob::glob(local).map_err(|e| source_error(format!("invalid glob: {e}")))?;
            for entry in matches {
                let path = entry.map_err(|e| source_error(e.to_string()))?;
                if path.is_file() {
                    paths.push(path);
                }
            }
        } else {
            let path = PathBuf::from(local);
            let metadata = std::fs::metadata(&path).map_err(|e| source_error(e.to_string()))?;
            if metadata.is_dir() {
                for entry in std::fs::read_dir(&path).map_err(|e| source_error(e.to_string()))? {
                    let entry = entry.map_err(|e| source_error(e.to_string()))?;
                    let name = entry.file_name().to_string_lossy().to_string();
                    if entry.path().is_file() && !name.starts_with('.') && !name.starts_with('_') {
                        paths.push(entry.path());
                    }
                }
            } else {
                paths.push(path);
            }
        }
        paths.sort();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let absolute = std::path::absolute(&path).map_err(|e| source_error(e.to_string()))?;
            let location = StorePath::from_absolute_path(&absolute)
                .map_err(|e| source_error(e.to_string()))?;
            let meta = store
                .head(&location)
                .await
                .map_err(|e| source_error(e.to_string()))?;
            files.push(meta);
        }
        Ok(ImportSource {
            base: Url::parse("file:///").expect("static url"),
            store,
            files,
        })
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    pub(crate) fn url_of(&self, meta: &object_store::ObjectMeta) -> String {
        format!("{}{}", self.base, meta.location)
    }
}

/// Objects under an S3 key: the key itself, everything under it as a prefix, or the matches of
/// a glob in its last part.
async fn list_objects(
    store: &dyn ObjectStore,
    key: &str,
) -> object_store::Result<Vec<object_store::ObjectMeta>> {
    if key.contains(['*', '?', '[']) {
        let (prefix, _) = key.rsplit_once('/').unwrap_or(("", key));
        let pattern = glob::Pattern::new(key).map_err(|e| object_store::Error::Generic {
            store: "s3",
            source: Box::new(e),
        })?;
        let prefix_path = (!prefix.is_empty()).then(|| StorePath::from(prefix));
        let all: Vec<_> = store.list(prefix_path.as_ref()).try_collect().await?;
        return Ok(all
            .into_iter()
            .filter(|m| pattern.matches(m.location.as_ref()))
            .collect());
    }
    let path = StorePath::from(key);
    match store.head(&path).await {
        Ok(meta) => return Ok(vec![meta]),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(err) => return Err(err),
    }
    let mut all: Vec<_> = store.list(Some(&path)).try_collect().await?;
    all.retain(|m| {
        let name = m.location.filename().unwrap_or_default();
        !name.starts_with('.') && !name.starts_with('_')
    });
    all.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(all)
}

/// Column names Delta accepts without column mapping: the characters ` ,;{}()\n\t=` become `_`.
pub(crate) fn delta_safe_name(name: &str) -> String {
    let replaced: String = name
        .chars()
        .map(|c| if " ,;{}()\n\t=".contains(c) { '_' } else { c })
        .collect();
    if replaced.is_empty() {
        "column".to_string()
    } else {
        replaced
    }
}

/// Loads the files of `request.source` into `request.table` in one Delta commit.
pub async fn import_files(
    engine: &Engine,
    request: &ImportRequest,
    progress: Arc<dyn Progress>,
) -> Result<ImportReport> {
    let source = ImportSource::resolve(engine, &request.source).await?;
    if source.files.is_empty() {
        return Err(IngestError::NoFiles(request.source.clone()));
    }
    let first_name = source.files[0].location.to_string();
    let (detected_format, compression) = match detect(&first_name) {
        Some(found) => (Some(found.0), found.1),
        None => (None, FileCompressionType::UNCOMPRESSED),
    };
    let format = request
        .format
        .or(detected_format)
        .ok_or_else(|| IngestError::UnknownFormat(first_name.clone()))?;
    for file in &source.files[1..] {
        let name = file.location.to_string();
        let (other_format, other_compression) = detect(&name).unwrap_or((format, compression));
        if other_format != format || other_compression != compression {
            return Err(IngestError::MixedFormats {
                first: first_name,
                other: name,
            });
        }
    }

    progress.start(source.files.len(), Some(source.total_bytes()));
    // A session of its own, whose object stores count the bytes read; Delta's planner for the write.
    let session = polder_engine::delta_session();
    session.register_object_store(
        &source.base,
        Arc::new(CountingStore::new(source.store.clone(), progress.clone())),
    );
    let urls: Vec<String> = source.files.iter().map(|f| source.url_of(f)).collect();
    let frame = read(&session, urls, format, compression, request, &source).await;
    let frame = match frame {
        Ok(frame) => frame,
        Err(err) => {
            progress.finish();
            return Err(err);
        }
    };
    let renamed: Vec<_> = frame
        .schema()
        .fields()
        .iter()
        .map(|field| {
            col(datafusion::common::Column::from_name(field.name()))
                .alias(delta_safe_name(field.name()))
        })
        .collect();
    let frame = frame
        .select(renamed)
        .map_err(|e| IngestError::Data(polder_engine::datafusion_message(&e)))?;
    let mode = match request.mode {
        ImportMode::Append => WriteMode::Append,
        ImportMode::Overwrite => WriteMode::Overwrite,
        ImportMode::Create => WriteMode::Create,
    };
    let plan = frame.logical_plan().clone();
    let outcome = engine
        .write_table(&request.table, plan, Arc::new(session.state()), mode)
        .await;
    progress.finish();
    let outcome = outcome?;
    Ok(ImportReport {
        table: request.table.to_string(),
        files: source.files.len(),
        bytes: source.total_bytes(),
        rows: outcome.rows_written,
        version: outcome.version,
        created: outcome.created,
    })
}

async fn read(
    session: &SessionContext,
    urls: Vec<String>,
    format: FileFormat,
    compression: FileCompressionType,
    request: &ImportRequest,
    source: &ImportSource,
) -> Result<DataFrame> {
    let data_error = |e: datafusion::error::DataFusionError| {
        IngestError::Data(format!(
            "cannot read {} as {format:?}: {}",
            request.source,
            polder_engine::datafusion_message(&e)
        ))
    };
    match format {
        FileFormat::Csv => {
            let is_tsv = urls
                .first()
                .is_some_and(|u| u.to_ascii_lowercase().contains(".tsv"));
            let delimiter = request
                .delimiter
                .unwrap_or(if is_tsv { b'\t' } else { b',' });
            let options = CsvReadOptions::new()
                .has_header(request.has_header)
                .delimiter(delimiter)
                .file_extension("")
                .file_compression_type(compression);
            session.read_csv(urls, options).await.map_err(data_error)
        }
        FileFormat::Json => {
            let mut options = JsonReadOptions::default()
                .file_extension("")
                .file_compression_type(compression);
            if compression == FileCompressionType::UNCOMPRESSED && starts_with_array(source).await {
                options.newline_delimited = false;
            }
            session.read_json(urls, options).await.map_err(data_error)
        }
        FileFormat::Parquet => {
            let options = ParquetReadOptions::default().file_extension("");
            session
                .read_parquet(urls, options)
                .await
                .map_err(data_error)
        }
    }
}

/// Whether the first file is a JSON array (`[{...}, ...]`) rather than JSON lines.
async fn starts_with_array(source: &ImportSource) -> bool {
    let Some(first) = source.files.first() else {
        return false;
    };
    let end = first.size.min(4096);
    match source.store.get_range(&first.location, 0..end).await {
        Ok(bytes) => bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'['),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_detected_from_names() {
        assert_eq!(detect("a/b.CSV").unwrap().0, FileFormat::Csv);
        assert_eq!(
            detect("x.jsonl.gz").unwrap(),
            (FileFormat::Json, FileCompressionType::GZIP)
        );
        assert_eq!(detect("part-0.parquet").unwrap().0, FileFormat::Parquet);
        assert!(detect("README").is_none());
    }

    #[test]
    fn column_names_become_delta_safe() {
        assert_eq!(delta_safe_name("order id"), "order_id");
        assert_eq!(delta_safe_name("a=b;(c)"), "a_b__c_");
        assert_eq!(delta_safe_name("ok_name"), "ok_name");
    }
}
