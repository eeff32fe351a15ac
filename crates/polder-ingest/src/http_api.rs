//! Declarative HTTP JSON API source: the user describes the URL, headers, query parameters,
//! where the records are in a response, the pagination and an optional incremental cursor;
//! [`HttpApiReader`] yields pages of JSON records (as Airbyte's low-code connectors do).
//!
//! Header values and query parameters may hold tokens: they never appear in errors or logs
//! (URLs are shown without their query string, and response excerpts have them masked).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue, LINK, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::error::IngestError;

type Result<T, E = IngestError> = std::result::Result<T, E>;

/// Per-request timeout when the configuration gives none.
const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Retries of a request answered with 429 or 5xx (so at most four attempts).
const MAX_RETRIES: u32 = 3;
/// The longest `Retry-After` honoured; a server asking for more gets this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// First backoff delay, doubled on each retry.
const DEFAULT_RETRY_BASE_DELAY: Duration = Duration::from_secs(1);
/// How much of an unexpected response body goes into an error message.
const BODY_EXCERPT_CHARS: usize = 200;
const MAX_REDIRECTS: usize = 10;
/// Secret fragments shorter than this are not masked in excerpts (masking every "1" of a
/// `per_page=1` would garble the text and hide nothing).
const MIN_MASKED_SECRET_LEN: usize = 4;

/// An HTTP JSON API source (one endpoint, one stream of records).
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpApiConfig {
    /// `http` or `https` URL of the endpoint; it may carry query parameters of its own.
    pub url: String,
    /// Request headers, e.g. `Authorization: Bearer ...` (values already resolved by the
    /// caller; treated as secrets). `Accept: application/json` is sent unless given here.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters added to every request built from `url` (treated as secrets too).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Dot path to the array of records, e.g. `data.items` (a numeric segment indexes an
    /// array). A `null` there is an empty page. Without it the body itself is the array of
    /// records, or, when the body is an object, that object is a single record.
    #[serde(default)]
    pub records_path: Option<String>,
    #[serde(default)]
    pub pagination: Pagination,
    /// Incremental reads: dot path, in each record, to its cursor value (a string or a number).
    #[serde(default)]
    pub cursor_field: Option<String>,
    /// Query parameter that receives the saved cursor on every request built from `url`.
    #[serde(default)]
    pub cursor_param: Option<String>,
    /// Stop after this many pages.
    #[serde(default)]
    pub max_pages: Option<u64>,
    /// Per request, in seconds (default 30).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// Shows header and parameter names only: their values may be tokens.
impl fmt::Debug for HttpApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = match Url::parse(&self.url) {
            Ok(url) => display_url(&url),
            Err(_) => "<invalid url>".to_string(),
        };
        f.debug_struct("HttpApiConfig")
            .field("url", &url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("params", &self.params.keys().collect::<Vec<_>>())
            .field("records_path", &self.records_path)
            .field("pagination", &self.pagination)
            .field("cursor_field", &self.cursor_field)
            .field("cursor_param", &self.cursor_param)
            .field("max_pages", &self.max_pages)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// How the next page is requested. Serialized with a `type` tag, e.g.
/// `{"type": "page_number", "param": "page", "size_param": "per_page", "size": 100}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// One request.
    #[default]
    None,
    /// `param` = start, start + 1, ...; with `size` known, a shorter page is the last one.
    /// `size_param`, when given, sends `size`.
    PageNumber {
        param: String,
        #[serde(default = "first_page_number")]
        start: u64,
        #[serde(default)]
        size_param: Option<String>,
        #[serde(default)]
        size: Option<u64>,
    },
    /// `param` = 0, then advanced by the records received; `limit_param` = `limit`.
    Offset {
        param: String,
        limit_param: String,
        limit: u64,
    },
    /// The body holds the next cursor at `cursor_path` (dot path); it is sent as `param`.
    /// Missing, null or empty: the last page.
    Cursor { cursor_path: String, param: String },
    /// The next page's URL (absolute or relative) is at `next_path` (dot path) in the body,
    /// or, without `next_path`, in the `Link` header's `rel="next"`. It is requested as
    /// given: the configured params are not added to it (APIs carry them in their links).
    NextLink {
        #[serde(default)]
        next_path: Option<String>,
    },
}

fn first_page_number() -> u64 {
    1
}

/// One page of records.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Records of the page, in order; empty when the incremental filter dropped all of them.
    pub records: Vec<Value>,
    /// 1 for the first page fetched, then 2, ... (not the API's page parameter).
    pub number: u64,
}

/// What the next request is.
#[derive(Debug, Clone, PartialEq)]
enum NextRequest {
    Url(Url),
    PageNumber(u64),
    Offset(u64),
    Cursor(String),
    Done,
}

/// Reads an HTTP JSON API page by page.
pub struct HttpApiReader {
    config: HttpApiConfig,
    client: reqwest::Client,
    /// `url` with the configured params and the saved cursor parameter.
    base_url: Url,
    headers: HeaderMap,
    /// Values masked in response excerpts.
    secrets: Vec<String>,
    since: Option<Value>,
    next: NextRequest,
    pages_fetched: u64,
    previous_body_hash: Option<u64>,
    max_cursor: Option<Value>,
    bytes_read: u64,
    timeout: Duration,
    retry_base_delay: Duration,
}

impl HttpApiReader {
    /// Validates the configuration (URL parses, http/https only, headers valid, parameter
    /// names distinct, dot paths well formed). `since` is the cursor saved by the last sync:
    /// records whose cursor is not greater are dropped, and it is sent as `cursor_param`.
    pub fn new(config: HttpApiConfig, since: Option<Value>) -> Result<Self> {
        Self::with_retry_base_delay(config, since, DEFAULT_RETRY_BASE_DELAY)
    }

    fn with_retry_base_delay(
        config: HttpApiConfig,
        since: Option<Value>,
        retry_base_delay: Duration,
    ) -> Result<Self> {
        validate(&config, since.as_ref())?;
        // Never echo the URL itself: its query string may hold a token.
        let mut base_url = Url::parse(&config.url)
            .map_err(|error| IngestError::Config(format!("url is not a valid URL: {error}")))?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(IngestError::Config(format!(
                "url must be http or https, not `{}`",
                base_url.scheme()
            )));
        }
        let mut extra_params: Vec<(&str, String)> = config
            .params
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        if let (Some(param), Some(since)) = (&config.cursor_param, &since) {
            extra_params.push((param.as_str(), cursor_text(since).unwrap_or_default()));
        }
        if !extra_params.is_empty() {
            let mut query = base_url.query_pairs_mut();
            for (name, value) in &extra_params {
                query.append_pair(name, value);
            }
        }

        let mut headers = HeaderMap::new();
        let mut secrets = Vec::new();
        for (name, value) in &config.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| IngestError::Config(format!("`{name}` is not a valid header name")))?;
            let mut header_value = HeaderValue::from_str(value).map_err(|_| {
                IngestError::Config(format!("the value of header `{name}` is not valid"))
            })?;
            header_value.set_sensitive(true);
            headers.insert(header_name, header_value);
            secrets.push(value.clone());
            // "Bearer <token>": an API may echo the token alone.
            secrets.extend(value.split_whitespace().map(str::to_string));
        }
        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        }
        secrets.extend(config.params.values().cloned());
        secrets.retain(|secret| secret.len() >= MIN_MASKED_SECRET_LEN);
        // Longest first, so that a whole value is masked before its parts.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));

        let timeout = Duration::from_secs(config.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(same_origin_redirects())
            .user_agent(concat!("polder/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| IngestError::Source {
                source_name: display_url(&base_url),
                message: format!("cannot set up the HTTP client: {error}"),
            })?;

        let next = match &config.pagination {
            Pagination::PageNumber { start, .. } => NextRequest::PageNumber(*start),
            Pagination::Offset { .. } => NextRequest::Offset(0),
            Pagination::None | Pagination::Cursor { .. } | Pagination::NextLink { .. } => {
                NextRequest::Url(base_url.clone())
            }
        };
        Ok(Self {
            config,
            client,
            base_url,
            headers,
            secrets,
            max_cursor: since.clone(),
            since,
            next,
            pages_fetched: 0,
            previous_body_hash: None,
            bytes_read: 0,
            timeout,
            retry_base_delay,
        })
    }

    /// The next page of records; `None` when the pagination ends (an empty page, a short
    /// page, no next cursor or link, a link or cursor repeating the current one, a body
    /// identical to the previous page's, or `max_pages`). After an error the reader ends.
    pub async fn next_page(&mut self) -> Result<Option<Page>> {
        if self
            .config
            .max_pages
            .is_some_and(|max_pages| self.pages_fetched >= max_pages)
        {
            self.next = NextRequest::Done;
        }
        let current = std::mem::replace(&mut self.next, NextRequest::Done);
        let Some(url) = self.request_url(&current) else {
            return Ok(None);
        };
        let page_number = self.pages_fetched + 1;
        let (body_bytes, response_headers) = self.fetch(&url, page_number).await?;
        self.pages_fetched = page_number;
        let shown_url = display_url(&url);

        // An API that ignores the page parameter answers the same body forever.
        let mut hasher = DefaultHasher::new();
        body_bytes.hash(&mut hasher);
        let body_hash = hasher.finish();
        if self.previous_body_hash == Some(body_hash) {
            tracing::warn!(url = %shown_url, page = page_number, "http api returned the previous page again; stopping");
            return Ok(None);
        }
        self.previous_body_hash = Some(body_hash);

        let body: Value = serde_json::from_slice(&body_bytes).map_err(|error| {
            IngestError::Data(format!(
                "page {page_number} of {shown_url} is not JSON ({error}); it starts with: {}",
                self.excerpt(&String::from_utf8_lossy(&body_bytes))
            ))
        })?;
        let continuation =
            self.continuation(&body, &response_headers, &current, &url, page_number)?;
        let records = take_records(
            body,
            self.config.records_path.as_deref(),
            page_number,
            &shown_url,
        )?;
        tracing::debug!(url = %shown_url, page = page_number, records = records.len(), bytes = body_bytes.len(), "fetched http api page");
        if records.is_empty() {
            return Ok(None);
        }

        self.next = match (&self.config.pagination, &current) {
            (Pagination::PageNumber { size, .. }, NextRequest::PageNumber(number)) => {
                if size.is_some_and(|size| (records.len() as u64) < size) {
                    NextRequest::Done
                } else {
                    NextRequest::PageNumber(number + 1)
                }
            }
            (Pagination::Offset { limit, .. }, NextRequest::Offset(offset)) => {
                if (records.len() as u64) < *limit {
                    NextRequest::Done
                } else {
                    NextRequest::Offset(offset + records.len() as u64)
                }
            }
            _ => continuation,
        };
        let records = self.keep_new_records(records, page_number)?;
        Ok(Some(Page {
            records,
            number: page_number,
        }))
    }

    /// The greatest cursor value seen so far (numbers compared as numbers, strings as strings,
    /// so ISO timestamps compare correctly). It starts at `since`: it is the value to save.
    pub fn max_cursor(&self) -> Option<&Value> {
        self.max_cursor.as_ref()
    }

    /// Bytes of successful response bodies read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    fn request_url(&self, request: &NextRequest) -> Option<Url> {
        let (param, value, extra) = match (&self.config.pagination, request) {
            (_, NextRequest::Done) => return None,
            (_, NextRequest::Url(url)) => return Some(url.clone()),
            (
                Pagination::PageNumber {
                    param,
                    size_param,
                    size,
                    ..
                },
                NextRequest::PageNumber(number),
            ) => {
                let extra = size_param.as_deref().zip(*size);
                (param, number.to_string(), extra)
            }
            (
                Pagination::Offset {
                    param,
                    limit_param,
                    limit,
                },
                NextRequest::Offset(offset),
            ) => (
                param,
                offset.to_string(),
                Some((limit_param.as_str(), *limit)),
            ),
            (Pagination::Cursor { param, .. }, NextRequest::Cursor(cursor)) => {
                (param, cursor.clone(), None)
            }
            _ => return None,
        };
        let mut url = self.base_url.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair(param, &value);
            if let Some((extra_param, extra_value)) = extra {
                query.append_pair(extra_param, &extra_value.to_string());
            }
        }
        Some(url)
    }

    /// The next request that a cursor or next-link pagination reads from this page
    /// (`Done` for the other kinds, decided once the records are counted).
    fn continuation(
        &self,
        body: &Value,
        response_headers: &HeaderMap,
        current: &NextRequest,
        url: &Url,
        page_number: u64,
    ) -> Result<NextRequest> {
        let shown_url = display_url(url);
        match &self.config.pagination {
            Pagination::Cursor { cursor_path, .. } => {
                let cursor = match lookup(body, cursor_path) {
                    None | Some(Value::Null) => return Ok(NextRequest::Done),
                    Some(Value::String(text)) => text.clone(),
                    Some(Value::Number(number)) => number.to_string(),
                    Some(other) => {
                        return Err(IngestError::Data(format!(
                            "cursor_path `{cursor_path}` on page {page_number} of {shown_url} is {}, not a string or a number",
                            kind(other)
                        )));
                    }
                };
                if cursor.is_empty() {
                    return Ok(NextRequest::Done);
                }
                if *current == NextRequest::Cursor(cursor.clone()) {
                    tracing::warn!(url = %shown_url, page = page_number, "http api returned the same next cursor again; stopping");
                    return Ok(NextRequest::Done);
                }
                Ok(NextRequest::Cursor(cursor))
            }
            Pagination::NextLink { next_path } => {
                let link = match next_path {
                    Some(path) => match lookup(body, path) {
                        None | Some(Value::Null) => None,
                        Some(Value::String(text)) => Some(text.clone()),
                        Some(other) => {
                            return Err(IngestError::Data(format!(
                                "next_path `{path}` on page {page_number} of {shown_url} is {}, not a URL string",
                                kind(other)
                            )));
                        }
                    },
                    None => next_link_header(response_headers),
                };
                let Some(link) = link.filter(|link| !link.trim().is_empty()) else {
                    return Ok(NextRequest::Done);
                };
                let next_url = url.join(link.trim()).map_err(|error| {
                    IngestError::Data(format!(
                        "the next link on page {page_number} of {shown_url} is not a valid URL: {error}"
                    ))
                })?;
                if next_url.origin() != self.base_url.origin() {
                    // The headers would go along: never hand the credentials to another host.
                    return Err(IngestError::Data(format!(
                        "the next link on page {page_number} of {shown_url} points to another host ({}); refusing to send the credentials there",
                        next_url.origin().ascii_serialization()
                    )));
                }
                if next_url == *url {
                    tracing::warn!(url = %shown_url, page = page_number, "http api next link points to the current page; stopping");
                    return Ok(NextRequest::Done);
                }
                Ok(NextRequest::Url(next_url))
            }
            Pagination::None | Pagination::PageNumber { .. } | Pagination::Offset { .. } => {
                Ok(NextRequest::Done)
            }
        }
    }

    /// GET with retries of 429 and 5xx; returns the body and the response headers.
    async fn fetch(&mut self, url: &Url, page_number: u64) -> Result<(Vec<u8>, HeaderMap)> {
        let shown_url = display_url(url);
        let mut retries = 0;
        loop {
            let sent = self
                .client
                .get(url.clone())
                .headers(self.headers.clone())
                .send()
                .await;
            let response = sent.map_err(|error| self.transport_error(&error, &shown_url))?;
            let status = response.status();
            if status.is_success() {
                let response_headers = response.headers().clone();
                let body = response
                    .bytes()
                    .await
                    .map_err(|error| self.transport_error(&error, &shown_url))?;
                self.bytes_read += body.len() as u64;
                return Ok((body.to_vec(), response_headers));
            }
            let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            if retryable && retries < MAX_RETRIES {
                let delay = retry_delay(response.headers(), self.retry_base_delay, retries);
                retries += 1;
                tracing::warn!(url = %shown_url, page = page_number, status = status.as_u16(), retry = retries, delay_ms = delay.as_millis() as u64, "http api request failed; retrying");
                tokio::time::sleep(delay).await;
                continue;
            }
            let body = response.text().await.unwrap_or_default();
            let after_retries = if retries > 0 {
                format!(" after {retries} retries")
            } else {
                String::new()
            };
            return Err(IngestError::Source {
                source_name: shown_url.clone(),
                message: format!(
                    "HTTP {status} on page {page_number}{after_retries}; response: {}",
                    self.excerpt(&body)
                ),
            });
        }
    }

    /// A connection, timeout or body error, without the URL reqwest puts in its message.
    fn transport_error(&self, error: &reqwest::Error, shown_url: &str) -> IngestError {
        let message = if error.is_timeout() {
            format!(
                "no response within {} s (timeout_secs)",
                self.timeout.as_secs()
            )
        } else {
            let what = if error.is_connect() {
                "cannot connect"
            } else if error.is_redirect() {
                "redirect not followed"
            } else if error.is_body() || error.is_decode() {
                "cannot read the response body"
            } else {
                "request failed"
            };
            let mut causes = vec![what.to_string()];
            let mut cause = std::error::Error::source(error);
            while let Some(inner) = cause {
                causes.push(inner.to_string());
                cause = inner.source();
            }
            self.mask_secrets(&causes.join(": "))
        };
        IngestError::Source {
            source_name: shown_url.to_string(),
            message,
        }
    }

    /// Drops records whose cursor is not greater than `since` and tracks the greatest cursor.
    /// Records without a cursor value are kept (a duplicate is better than a lost record).
    fn keep_new_records(&mut self, records: Vec<Value>, page_number: u64) -> Result<Vec<Value>> {
        let Some(cursor_field) = &self.config.cursor_field else {
            return Ok(records);
        };
        let mut kept = Vec::with_capacity(records.len());
        for (index, record) in records.into_iter().enumerate() {
            let cursor = match lookup(&record, cursor_field) {
                None | Some(Value::Null) => {
                    kept.push(record);
                    continue;
                }
                Some(cursor @ (Value::String(_) | Value::Number(_))) => cursor.clone(),
                Some(other) => {
                    return Err(IngestError::Data(format!(
                        "cursor_field `{cursor_field}` of record {} on page {page_number} is {}; a cursor must be a string or a number",
                        index + 1,
                        kind(other)
                    )));
                }
            };
            let incomparable = |other: &Value| {
                IngestError::Data(format!(
                    "cursor_field `{cursor_field}` of record {} on page {page_number} is {cursor}, which cannot be compared with the cursor {other}",
                    index + 1
                ))
            };
            if let Some(since) = &self.since {
                match compare_cursors(&cursor, since) {
                    Some(Ordering::Greater) => {}
                    Some(_) => continue,
                    None => return Err(incomparable(since)),
                }
            }
            match &self.max_cursor {
                None => self.max_cursor = Some(cursor),
                Some(max_cursor) => match compare_cursors(&cursor, max_cursor) {
                    Some(Ordering::Greater) => self.max_cursor = Some(cursor),
                    Some(_) => {}
                    None => return Err(incomparable(max_cursor)),
                },
            }
            kept.push(record);
        }
        Ok(kept)
    }

    /// The start of a response body for an error message, with secrets masked.
    fn excerpt(&self, body: &str) -> String {
        let start: String = body.trim().chars().take(BODY_EXCERPT_CHARS).collect();
        self.mask_secrets(&start)
    }

    fn mask_secrets(&self, text: &str) -> String {
        let mut masked = text.to_string();
        for secret in &self.secrets {
            masked = masked.replace(secret.as_str(), "***");
        }
        masked
    }
}

/// `check` for connections: fetches the first page and reports what it holds. Errors say
/// what is wrong (unreachable, HTTP status, not JSON, no records array at `records_path`).
pub async fn check(config: &HttpApiConfig) -> Result<String> {
    let mut reader = HttpApiReader::new(config.clone(), None)?;
    let page = reader.next_page().await?;
    let shown_url = display_url(&reader.base_url);
    let records = page.map_or(0, |page| page.records.len());
    Ok(format!(
        "{shown_url} answered with {records} records on the first page ({} bytes)",
        reader.bytes_read()
    ))
}

fn validate(config: &HttpApiConfig, since: Option<&Value>) -> Result<()> {
    let invalid = |message: String| Err(IngestError::Config(message));
    // Parameter names the reader sets itself must not collide with each other or with params.
    let mut reader_params: Vec<(&str, &str)> = Vec::new();
    let mut dot_paths: Vec<(&str, &str)> = Vec::new();
    match &config.pagination {
        Pagination::None => {}
        Pagination::PageNumber {
            param,
            size_param,
            size,
            ..
        } => {
            reader_params.push(("pagination.param", param));
            if let Some(size_param) = size_param {
                reader_params.push(("pagination.size_param", size_param));
                if size.is_none() {
                    return invalid("pagination.size_param needs pagination.size".to_string());
                }
            }
            if *size == Some(0) {
                return invalid("pagination.size must be at least 1".to_string());
            }
        }
        Pagination::Offset {
            param,
            limit_param,
            limit,
        } => {
            reader_params.push(("pagination.param", param));
            reader_params.push(("pagination.limit_param", limit_param));
            if *limit == 0 {
                return invalid("pagination.limit must be at least 1".to_string());
            }
        }
        Pagination::Cursor { cursor_path, param } => {
            reader_params.push(("pagination.param", param));
            dot_paths.push(("pagination.cursor_path", cursor_path));
        }
        Pagination::NextLink { next_path } => {
            if let Some(next_path) = next_path {
                dot_paths.push(("pagination.next_path", next_path));
            }
        }
    }
    if let Some(cursor_param) = &config.cursor_param {
        reader_params.push(("cursor_param", cursor_param));
        if config.cursor_field.is_none() {
            return invalid("cursor_param needs cursor_field".to_string());
        }
    }
    for (index, (field, name)) in reader_params.iter().enumerate() {
        if name.is_empty() {
            return invalid(format!("{field} must not be empty"));
        }
        if config.params.contains_key(*name) {
            return invalid(format!("{field} `{name}` is also set in params"));
        }
        if let Some((other_field, _)) = reader_params[..index]
            .iter()
            .find(|(_, other)| other == name)
        {
            return invalid(format!("{field} and {other_field} are both `{name}`"));
        }
    }
    if config.params.keys().any(String::is_empty) {
        return invalid("params has an empty parameter name".to_string());
    }
    if let Some(records_path) = &config.records_path {
        dot_paths.push(("records_path", records_path));
    }
    if let Some(cursor_field) = &config.cursor_field {
        dot_paths.push(("cursor_field", cursor_field));
    }
    for (field, path) in dot_paths {
        if path.split('.').any(str::is_empty) {
            return invalid(format!(
                "{field} `{path}` is not a dot path (like `data.items`)"
            ));
        }
    }
    if let Some(since) = since {
        if config.cursor_field.is_none() {
            return invalid("a saved cursor needs cursor_field".to_string());
        }
        if cursor_text(since).is_none() {
            return invalid(format!(
                "the saved cursor {since} is not a string or a number"
            ));
        }
    }
    if config.max_pages == Some(0) {
        return invalid("max_pages must be at least 1".to_string());
    }
    if config.timeout_secs == Some(0) {
        return invalid("timeout_secs must be at least 1".to_string());
    }
    Ok(())
}

/// Follows redirects on the same origin only: custom headers (API keys) are not stripped by
/// reqwest on a cross-host redirect, so following one would hand them to that host.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let from_origin = attempt.previous().first().map(Url::origin);
        if from_origin.is_some_and(|origin| origin != attempt.url().origin()) {
            let to = attempt.url().origin().ascii_serialization();
            return attempt.error(format!(
                "refusing to follow a redirect to another host ({to})"
            ));
        }
        attempt.follow()
    })
}

/// `Retry-After` in seconds (capped), else exponential backoff from the base delay.
fn retry_delay(response_headers: &HeaderMap, base_delay: Duration, retries: u32) -> Duration {
    let retry_after = response_headers
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    match retry_after {
        Some(seconds) => Duration::from_secs(seconds).min(MAX_RETRY_AFTER),
        None => base_delay.saturating_mul(2u32.saturating_pow(retries)),
    }
}

/// The URL of `rel="next"` in `Link` headers (RFC 8288), e.g. `<https://x/?page=2>; rel="next"`.
fn next_link_header(response_headers: &HeaderMap) -> Option<String> {
    for value in response_headers.get_all(LINK) {
        let Ok(mut rest) = value.to_str() else {
            continue;
        };
        // Scan `<url>; params` entries by their brackets: a URL may contain commas.
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>').map(|close| open + close) else {
                break;
            };
            let target = &rest[open + 1..close];
            rest = &rest[close + 1..];
            let params_end = rest.find('<').unwrap_or(rest.len());
            let is_next = rest[..params_end].split(';').any(|param| {
                let Some((name, relations)) = param.split_once('=') else {
                    return false;
                };
                name.trim().eq_ignore_ascii_case("rel")
                    && relations
                        .trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|relation| relation.eq_ignore_ascii_case("next"))
            });
            if is_next {
                return Some(target.to_string());
            }
        }
    }
    None
}

/// The records at `records_path` (owned: taken out of the body).
fn take_records(
    body: Value,
    records_path: Option<&str>,
    page_number: u64,
    shown_url: &str,
) -> Result<Vec<Value>> {
    let Some(path) = records_path else {
        return match body {
            Value::Array(records) => Ok(records),
            Value::Object(_) => Ok(vec![body]),
            other => Err(IngestError::Data(format!(
                "page {page_number} of {shown_url} is {}, not an array or an object of records",
                kind(&other)
            ))),
        };
    };
    let top_level_fields = match &body {
        Value::Object(fields) => fields
            .keys()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    };
    let mut body = body;
    match body.pointer_mut(&json_pointer(path)).map(Value::take) {
        Some(Value::Array(records)) => Ok(records),
        Some(Value::Null) => Ok(Vec::new()),
        Some(other) => Err(IngestError::Data(format!(
            "records_path `{path}` on page {page_number} of {shown_url} leads to {}, not an array",
            kind(&other)
        ))),
        None => Err(IngestError::Data(format!(
            "records_path `{path}` is not in the response on page {page_number} of {shown_url} (top-level fields: {top_level_fields})"
        ))),
    }
}

/// The value at a dot path; a numeric segment indexes an array.
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    value.pointer(&json_pointer(path))
}

/// `data.items` as the JSON pointer `/data/items`.
fn json_pointer(path: &str) -> String {
    let mut pointer = String::with_capacity(path.len() + 1);
    for segment in path.split('.') {
        pointer.push('/');
        pointer.push_str(&segment.replace('~', "~0").replace('/', "~1"));
    }
    pointer
}

/// Numbers as numbers, strings as strings; a numeric string against a number as numbers.
/// `None` when the two cannot be compared.
fn compare_cursors(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => {
            if let (Some(left), Some(right)) = (left.as_i64(), right.as_i64()) {
                return Some(left.cmp(&right));
            }
            if let (Some(left), Some(right)) = (left.as_u64(), right.as_u64()) {
                return Some(left.cmp(&right));
            }
            left.as_f64()?.partial_cmp(&right.as_f64()?)
        }
        (Value::String(left), Value::String(right)) => Some(left.cmp(right)),
        (Value::Number(left), Value::String(right)) => left
            .as_f64()?
            .partial_cmp(&right.trim().parse::<f64>().ok()?),
        (Value::String(_), Value::Number(_)) => compare_cursors(right, left).map(Ordering::reverse),
        _ => None,
    }
}

/// A cursor as a query parameter value.
fn cursor_text(cursor: &Value) -> Option<String> {
    match cursor {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A URL as shown in errors and logs: no query string, fragment or user info.
fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    // Fails only for URLs that cannot have credentials, which then have none to hide.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
    use std::sync::{Arc, Mutex};

    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const TOKEN: &str = "t0ken";
    const API_KEY: &str = "s3cr3tkey";
    const ITEM_COUNT: u64 = 7;

    /// A request as the test server saw it.
    #[derive(Debug, Clone)]
    struct SeenRequest {
        path: String,
        query: BTreeMap<String, String>,
    }

    struct Reply {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
        delay: Duration,
    }

    impl Reply {
        fn json(body: Value) -> Self {
            Self::status(200, body.to_string())
        }
        fn status(status: u16, body: impl Into<String>) -> Self {
            Self {
                status,
                headers: Vec::new(),
                body: body.into(),
                delay: Duration::ZERO,
            }
        }
    }

    type Handler = Arc<dyn Fn(&SeenRequest) -> Reply + Send + Sync>;

    struct TestServer {
        base: String,
        requests: Arc<Mutex<Vec<SeenRequest>>>,
    }

    impl TestServer {
        fn requests(&self) -> Vec<SeenRequest> {
            self.requests.lock().unwrap().clone()
        }
    }

    /// A minimal HTTP/1.1 server (one request per connection) requiring the bearer token.
    async fn start_server(handler: Handler) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, handler.clone(), log.clone()));
            }
        });
        TestServer { base, requests }
    }

    async fn serve_connection(
        mut stream: TcpStream,
        handler: Handler,
        log: Arc<Mutex<Vec<SeenRequest>>>,
    ) {
        let mut head = Vec::new();
        let mut chunk = [0u8; 4096];
        while !head.windows(4).any(|window| window == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => head.extend_from_slice(&chunk[..read]),
            }
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let mut lines = head.split("\r\n");
        let target = lines.next().unwrap().split(' ').nth(1).unwrap().to_string();
        let authorization = lines
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| value.trim().to_string());
        let url = Url::parse(&format!("http://test{target}")).unwrap();
        let request = SeenRequest {
            path: url.path().to_string(),
            query: url.query_pairs().into_owned().collect(),
        };
        log.lock().unwrap().push(request.clone());
        let reply = if authorization.as_deref() == Some(&format!("Bearer {TOKEN}")) {
            handler(&request)
        } else {
            // Echoes the credentials, as some APIs do: they must be masked in errors.
            let body = json!({"error": format!("bad credentials {authorization:?}")});
            Reply::status(401, body.to_string())
        };
        tokio::time::sleep(reply.delay).await;
        let mut response = format!(
            "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            reply.status,
            reply.body.len()
        );
        for (name, value) in &reply.headers {
            response.push_str(&format!("{name}: {value}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(&reply.body);
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    fn item(id: u64) -> Value {
        json!({"id": id, "updated_at": format!("2024-01-{id:02}T00:00:00Z"), "name": format!("item {id}")})
    }

    /// Items `first..first + count`, clipped to the data set.
    fn items(first: u64, count: u64) -> Vec<Value> {
        (first..first + count)
            .filter(|id| (1..=ITEM_COUNT).contains(id))
            .map(item)
            .collect()
    }

    fn query_number(request: &SeenRequest, name: &str, default: u64) -> u64 {
        request
            .query
            .get(name)
            .map_or(default, |value| value.parse().unwrap())
    }

    /// The test API: one path per pagination kind and failure.
    fn api(flaky_calls: Arc<AtomicUsize>) -> Handler {
        Arc::new(move |request: &SeenRequest| {
            let page = query_number(request, "page", 1);
            match request.path.as_str() {
                "/paged" => {
                    let per_page = query_number(request, "per_page", 3);
                    let first = (page - 1) * per_page + 1;
                    Reply::json(json!({"data": {"items": items(first, per_page), "page": page}}))
                }
                "/offset" => {
                    let offset = query_number(request, "offset", 0);
                    let limit = query_number(request, "limit", 100);
                    Reply::json(json!(items(offset + 1, limit)))
                }
                "/cursor" => {
                    let after = query_number(request, "after", 0);
                    let records = items(after + 1, 3);
                    let last = records.last().map(|record| record["id"].as_u64().unwrap());
                    let next = last
                        .filter(|last| *last < ITEM_COUNT)
                        .map(|last| last.to_string());
                    Reply::json(json!({"items": records, "meta": {"next": next}}))
                }
                "/next" => {
                    let next = (page < 3).then(|| format!("next?page={}", page + 1));
                    Reply::json(
                        json!({"results": items((page - 1) * 3 + 1, 3), "links": {"next": next}}),
                    )
                }
                "/link" => {
                    let mut reply = Reply::json(json!(items((page - 1) * 3 + 1, 3)));
                    let mut link = r#"</link?page=3>; rel="last""#.to_string();
                    if page < 3 {
                        link.push_str(&format!(r#", </link?page={}>; rel="next""#, page + 1));
                    }
                    reply.headers.push(("Link", link));
                    reply
                }
                "/loop" => Reply::json(json!({"items": items(page, 1), "next": "/loop?page=2"})),
                "/elsewhere" => Reply::json(
                    json!({"items": items(1, 1), "next": "http://other.example/x?page=2"}),
                ),
                "/same-body" => Reply::json(json!(items(1, 2))),
                "/object" => Reply::json(item(1)),
                "/moved" => {
                    let mut reply = Reply::status(302, "");
                    reply.headers.push(("Location", "/object".to_string()));
                    reply
                }
                "/moved-away" => {
                    let mut reply = Reply::status(302, "");
                    reply
                        .headers
                        .push(("Location", "http://other.example/object".to_string()));
                    reply
                }
                "/flaky" => {
                    if flaky_calls.fetch_add(1, AtomicOrdering::SeqCst) == 0 {
                        Reply::status(500, "temporarily broken")
                    } else {
                        Reply::json(json!(items(1, 2)))
                    }
                }
                "/busy" => {
                    if flaky_calls.fetch_add(1, AtomicOrdering::SeqCst) == 0 {
                        let mut reply = Reply::status(429, "slow down");
                        reply.headers.push(("Retry-After", "0".to_string()));
                        reply
                    } else {
                        Reply::json(json!(items(1, 1)))
                    }
                }
                "/down" => Reply::status(503, "maintenance"),
                "/html" => Reply::status(200, "<html><body>Sign in</body></html>"),
                "/slow" => {
                    let mut reply = Reply::json(json!([]));
                    reply.delay = Duration::from_secs(3);
                    reply
                }
                _ => Reply::status(404, format!(r#"{{"error": "no route, key {API_KEY}"}}"#)),
            }
        })
    }

    async fn start_api() -> TestServer {
        start_server(api(Arc::new(AtomicUsize::new(0)))).await
    }

    fn config(server: &TestServer, path: &str) -> HttpApiConfig {
        HttpApiConfig {
            url: format!("{}{path}", server.base),
            headers: BTreeMap::from([("Authorization".to_string(), format!("Bearer {TOKEN}"))]),
            params: BTreeMap::from([("api_key".to_string(), API_KEY.to_string())]),
            records_path: None,
            pagination: Pagination::None,
            cursor_field: None,
            cursor_param: None,
            max_pages: None,
            timeout_secs: None,
        }
    }

    fn reader(config: HttpApiConfig, since: Option<Value>) -> HttpApiReader {
        HttpApiReader::with_retry_base_delay(config, since, Duration::from_millis(5)).unwrap()
    }

    /// Reads every page: the ids of the records, and the record count of each page.
    async fn read_all(reader: &mut HttpApiReader) -> Result<(Vec<u64>, Vec<usize>)> {
        let mut ids = Vec::new();
        let mut page_sizes = Vec::new();
        while let Some(page) = reader.next_page().await? {
            assert_eq!(page.number, page_sizes.len() as u64 + 1);
            page_sizes.push(page.records.len());
            ids.extend(
                page.records
                    .iter()
                    .map(|record| record["id"].as_u64().unwrap()),
            );
        }
        Ok((ids, page_sizes))
    }

    /// The error text, checked to hold no secret.
    fn error_text(error: IngestError) -> String {
        let text = error.to_string();
        for secret in [TOKEN, API_KEY, "wr0ngtoken"] {
            assert!(!text.contains(secret), "secret in error: {text}");
        }
        text
    }

    fn page_number(size: Option<u64>) -> Pagination {
        Pagination::PageNumber {
            param: "page".to_string(),
            start: 1,
            size_param: size.map(|_| "per_page".to_string()),
            size,
        }
    }

    #[tokio::test]
    async fn page_number_with_size_stops_on_the_short_page() {
        let server = start_api().await;
        let mut config = config(&server, "/paged");
        config.records_path = Some("data.items".to_string());
        config.pagination = page_number(Some(3));
        let mut reader = reader(config, None);
        let (ids, page_sizes) = read_all(&mut reader).await.unwrap();
        assert_eq!(ids, (1..=7).collect::<Vec<_>>());
        assert_eq!(page_sizes, [3, 3, 1]);
        let requests = server.requests();
        assert_eq!(requests.len(), 3, "no request after the short page");
        assert_eq!(requests[1].query["page"], "2");
        assert_eq!(requests[1].query["per_page"], "3");
        assert_eq!(requests[1].query["api_key"], API_KEY);
        assert!(reader.bytes_read() > 0);
    }

    #[tokio::test]
    async fn page_number_without_size_stops_on_the_empty_page_or_max_pages() {
        let server = start_api().await;
        let mut config = config(&server, "/paged");
        config.records_path = Some("data.items".to_string());
        config.pagination = page_number(None);
        let (ids, page_sizes) = read_all(&mut reader(config.clone(), None)).await.unwrap();
        assert_eq!(ids.len(), 7);
        assert_eq!(page_sizes, [3, 3, 1]);
        assert_eq!(server.requests().len(), 4, "the empty fourth page ends it");

        config.max_pages = Some(2);
        let (ids, _) = read_all(&mut reader(config, None)).await.unwrap();
        assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
        assert_eq!(server.requests().len(), 6);
    }

    #[tokio::test]
    async fn offset_pagination() {
        let server = start_api().await;
        let mut config = config(&server, "/offset");
        config.pagination = Pagination::Offset {
            param: "offset".to_string(),
            limit_param: "limit".to_string(),
            limit: 2,
        };
        let (ids, page_sizes) = read_all(&mut reader(config, None)).await.unwrap();
        assert_eq!(ids, (1..=7).collect::<Vec<_>>());
        assert_eq!(page_sizes, [2, 2, 2, 1]);
        let offsets: Vec<_> = server
            .requests()
            .iter()
            .map(|r| r.query["offset"].clone())
            .collect();
        assert_eq!(offsets, ["0", "2", "4", "6"]);
    }

    #[tokio::test]
    async fn cursor_pagination_with_a_numeric_incremental_cursor() {
        let server = start_api().await;
        let mut config = config(&server, "/cursor");
        config.records_path = Some("items".to_string());
        config.pagination = Pagination::Cursor {
            cursor_path: "meta.next".to_string(),
            param: "after".to_string(),
        };
        config.cursor_field = Some("id".to_string());
        let (ids, page_sizes) = read_all(&mut reader(config.clone(), None)).await.unwrap();
        assert_eq!(ids, (1..=7).collect::<Vec<_>>());
        assert_eq!(page_sizes, [3, 3, 1]);
        let afters: Vec<_> = server
            .requests()
            .iter()
            .map(|r| r.query.get("after").cloned())
            .collect();
        assert_eq!(afters, [None, Some("3".to_string()), Some("6".to_string())]);

        let mut incremental = reader(config, Some(json!(5)));
        let (ids, page_sizes) = read_all(&mut incremental).await.unwrap();
        assert_eq!(ids, [6, 7]);
        assert_eq!(page_sizes, [0, 1, 1]);
        assert_eq!(incremental.max_cursor(), Some(&json!(7)));
    }

    #[tokio::test]
    async fn incremental_cursor_is_sent_and_filters_when_the_api_does_not() {
        let server = start_api().await;
        let mut config = config(&server, "/paged");
        config.records_path = Some("data.items".to_string());
        config.pagination = page_number(Some(3));
        config.cursor_field = Some("updated_at".to_string());
        config.cursor_param = Some("updated_since".to_string());
        let since = json!("2024-01-04T00:00:00Z");
        let mut reader = reader(config.clone(), Some(since.clone()));
        let (ids, page_sizes) = read_all(&mut reader).await.unwrap();
        assert_eq!(
            ids,
            [5, 6, 7],
            "records up to and including the saved cursor are dropped"
        );
        assert_eq!(page_sizes, [0, 2, 1]);
        assert_eq!(reader.max_cursor(), Some(&json!("2024-01-07T00:00:00Z")));
        let requests = server.requests();
        assert_eq!(requests.len(), 3);
        for request in &requests {
            assert_eq!(request.query["updated_since"], "2024-01-04T00:00:00Z");
        }

        // Nothing new: the saved cursor stays the value to save.
        let mut nothing_new = super::HttpApiReader::new(config, Some(json!("2024-02-01"))).unwrap();
        let (ids, _) = read_all(&mut nothing_new).await.unwrap();
        assert!(ids.is_empty());
        assert_eq!(nothing_new.max_cursor(), Some(&json!("2024-02-01")));
    }

    #[tokio::test]
    async fn next_link_in_the_body_relative() {
        let server = start_api().await;
        let mut config = config(&server, "/next");
        config.records_path = Some("results".to_string());
        config.pagination = Pagination::NextLink {
            next_path: Some("links.next".to_string()),
        };
        let (ids, page_sizes) = read_all(&mut reader(config, None)).await.unwrap();
        assert_eq!(ids, (1..=7).collect::<Vec<_>>());
        assert_eq!(page_sizes, [3, 3, 1]);
        let requests = server.requests();
        assert_eq!(requests.len(), 3);
        assert!(requests.iter().all(|request| request.path == "/next"));
        assert_eq!(requests[2].query["page"], "3");
    }

    #[tokio::test]
    async fn next_link_in_the_link_header() {
        let server = start_api().await;
        let mut config = config(&server, "/link");
        config.pagination = Pagination::NextLink { next_path: None };
        let (ids, page_sizes) = read_all(&mut reader(config, None)).await.unwrap();
        assert_eq!(ids, (1..=7).collect::<Vec<_>>());
        assert_eq!(page_sizes, [3, 3, 1]);
        assert_eq!(server.requests().len(), 3);
    }

    #[tokio::test]
    async fn loops_end_the_pagination() {
        let server = start_api().await;
        let mut config = config(&server, "/loop");
        config.records_path = Some("items".to_string());
        config.pagination = Pagination::NextLink {
            next_path: Some("next".to_string()),
        };
        let (ids, _) = read_all(&mut reader(config, None)).await.unwrap();
        assert_eq!(ids, [1, 2], "page 2 links to itself");
        assert_eq!(server.requests().len(), 2);

        // An API that ignores the page parameter: the repeated body ends it.
        let mut config = self::config(&server, "/same-body");
        config.pagination = page_number(None);
        let (ids, page_sizes) = read_all(&mut reader(config, None)).await.unwrap();
        assert_eq!(ids, [1, 2]);
        assert_eq!(page_sizes, [2]);
        assert_eq!(server.requests().len(), 4);
    }

    #[tokio::test]
    async fn next_link_to_another_host_is_refused() {
        let server = start_api().await;
        let mut config = config(&server, "/elsewhere");
        config.records_path = Some("items".to_string());
        config.pagination = Pagination::NextLink {
            next_path: Some("next".to_string()),
        };
        let error = reader(config, None).next_page().await.unwrap_err();
        let text = error_text(error);
        assert!(
            text.contains("another host (http://other.example)"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn object_body_is_one_record() {
        let server = start_api().await;
        let (ids, page_sizes) = read_all(&mut reader(config(&server, "/object"), None))
            .await
            .unwrap();
        assert_eq!(ids, [1]);
        assert_eq!(page_sizes, [1]);
    }

    #[tokio::test]
    async fn redirects_are_followed_on_the_same_host_only() {
        let server = start_api().await;
        let (ids, _) = read_all(&mut reader(config(&server, "/moved"), None))
            .await
            .unwrap();
        assert_eq!(ids, [1]);
        let error = reader(config(&server, "/moved-away"), None)
            .next_page()
            .await
            .unwrap_err();
        let text = error_text(error);
        assert_eq!(
            text,
            format!(
                "cannot read {}/moved-away: redirect not followed: refusing to follow a redirect to another host (http://other.example)",
                server.base
            )
        );
    }

    #[tokio::test]
    async fn server_errors_and_429_are_retried() {
        let server = start_api().await;
        let (ids, _) = read_all(&mut reader(config(&server, "/flaky"), None))
            .await
            .unwrap();
        assert_eq!(ids, [1, 2]);
        assert_eq!(server.requests().len(), 2);

        let server = start_api().await;
        let (ids, _) = read_all(&mut reader(config(&server, "/busy"), None))
            .await
            .unwrap();
        assert_eq!(ids, [1]);
        assert_eq!(server.requests().len(), 2);

        let server = start_api().await;
        let error = reader(config(&server, "/down"), None)
            .next_page()
            .await
            .unwrap_err();
        assert!(matches!(error, IngestError::Source { .. }));
        let text = error_text(error);
        assert_eq!(
            text,
            format!(
                "cannot read {}/down: HTTP 503 Service Unavailable on page 1 after 3 retries; response: maintenance",
                server.base
            )
        );
        assert_eq!(server.requests().len(), 4);
    }

    #[tokio::test]
    async fn client_errors_name_status_and_url_without_secrets() {
        let server = start_api().await;
        let error = reader(config(&server, "/missing"), None)
            .next_page()
            .await
            .unwrap_err();
        let text = error_text(error);
        assert_eq!(
            text,
            format!(
                r#"cannot read {}/missing: HTTP 404 Not Found on page 1; response: {{"error": "no route, key ***"}}"#,
                server.base
            )
        );
        assert_eq!(server.requests().len(), 1, "404 is not retried");

        let mut wrong_token = config(&server, "/paged");
        wrong_token
            .headers
            .insert("Authorization".to_string(), "Bearer wr0ngtoken".to_string());
        let text = error_text(reader(wrong_token, None).next_page().await.unwrap_err());
        assert!(text.contains("HTTP 401 Unauthorized on page 1"), "{text}");
        assert!(text.contains("bad credentials"), "{text}");

        let mut no_token = config(&server, "/paged");
        no_token.headers.clear();
        let text = error_text(reader(no_token, None).next_page().await.unwrap_err());
        assert!(text.contains("HTTP 401"), "{text}");
    }

    #[tokio::test]
    async fn bad_bodies_are_data_errors() {
        let server = start_api().await;
        let error = reader(config(&server, "/html"), None)
            .next_page()
            .await
            .unwrap_err();
        assert!(matches!(error, IngestError::Data(_)));
        let text = error_text(error);
        assert!(
            text.starts_with(&format!("page 1 of {}/html is not JSON", server.base)),
            "{text}"
        );
        assert!(
            text.ends_with("it starts with: <html><body>Sign in</body></html>"),
            "{text}"
        );

        let mut config = config(&server, "/paged");
        config.records_path = Some("data.rows".to_string());
        let error = reader(config.clone(), None).next_page().await.unwrap_err();
        assert_eq!(
            error_text(error),
            format!(
                "records_path `data.rows` is not in the response on page 1 of {}/paged (top-level fields: data)",
                server.base
            )
        );
        config.records_path = Some("data.page".to_string());
        let error = reader(config.clone(), None).next_page().await.unwrap_err();
        assert_eq!(
            error_text(error),
            format!(
                "records_path `data.page` on page 1 of {}/paged leads to a number, not an array",
                server.base
            )
        );

        // check reports the same problem, and success with the first page's count.
        let error = check(&config).await.unwrap_err();
        assert!(error_text(error).contains("records_path `data.page`"));
        config.records_path = Some("data.items".to_string());
        let report = check(&config).await.unwrap();
        assert!(
            report.starts_with(&format!(
                "{}/paged answered with 3 records on the first page",
                server.base
            )),
            "{report}"
        );
        assert!(!report.contains(API_KEY));
    }

    #[tokio::test]
    async fn unreachable_and_slow_servers_are_source_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let server = TestServer {
            base: format!("http://{address}"),
            requests: Arc::default(),
        };
        let error = reader(config(&server, "/paged"), None)
            .next_page()
            .await
            .unwrap_err();
        assert!(matches!(error, IngestError::Source { .. }));
        let text = error_text(error);
        assert!(
            text.starts_with(&format!(
                "cannot read http://{address}/paged: cannot connect"
            )),
            "{text}"
        );

        let server = start_api().await;
        let mut config = config(&server, "/slow");
        config.timeout_secs = Some(1);
        let error = reader(config, None).next_page().await.unwrap_err();
        let text = error_text(error);
        assert_eq!(
            text,
            format!(
                "cannot read {}/slow: no response within 1 s (timeout_secs)",
                server.base
            )
        );
    }

    #[test]
    fn configuration_from_json_and_validation() {
        let config: HttpApiConfig = serde_json::from_value(json!({
            "url": "https://api.example.com/v1/items?fixed=1",
            "headers": {"Authorization": "Bearer abcdef123"},
            "records_path": "data",
            "pagination": {"type": "page_number", "param": "page", "size_param": "per_page", "size": 50},
        }))
        .unwrap();
        assert_eq!(
            config.pagination,
            Pagination::PageNumber {
                param: "page".to_string(),
                start: 1,
                size_param: Some("per_page".to_string()),
                size: Some(50),
            }
        );
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("abcdef123") && !debug.contains("fixed=1"),
            "{debug}"
        );
        let reader = HttpApiReader::new(config.clone(), None).unwrap();
        let url = reader.request_url(&NextRequest::PageNumber(2)).unwrap();
        assert_eq!(url.query(), Some("fixed=1&page=2&per_page=50"));

        let unknown_field = json!({"url": "https://x", "pagination": {"type": "offset", "param": "o", "limit_param": "l", "limit": 5, "extra": 1}});
        assert!(serde_json::from_value::<HttpApiConfig>(unknown_field).is_err());

        let invalid = |change: fn(&mut HttpApiConfig), since: Option<Value>| {
            let mut changed = config.clone();
            change(&mut changed);
            match HttpApiReader::new(changed, since) {
                Err(IngestError::Config(message)) => message,
                other => panic!(
                    "expected a configuration error, got {:?}",
                    other.map(|_| ())
                ),
            }
        };
        assert_eq!(
            invalid(|c| c.url = "ftp://x/y?token=abc".to_string(), None),
            "url must be http or https, not `ftp`"
        );
        assert!(
            invalid(|c| c.url = "not a url?token=abc".to_string(), None)
                .starts_with("url is not a valid URL")
        );
        assert_eq!(
            invalid(
                |c| {
                    c.params.insert("page".to_string(), "1".to_string());
                },
                None
            ),
            "pagination.param `page` is also set in params"
        );
        assert_eq!(
            invalid(|c| c.cursor_param = Some("since".to_string()), None),
            "cursor_param needs cursor_field"
        );
        assert_eq!(
            invalid(|_| {}, Some(json!("2024"))),
            "a saved cursor needs cursor_field"
        );
        assert_eq!(
            invalid(|c| c.records_path = Some("data..items".to_string()), None),
            "records_path `data..items` is not a dot path (like `data.items`)"
        );
        assert_eq!(
            invalid(
                |c| {
                    c.headers.insert("Bad Name".to_string(), "x".to_string());
                },
                None
            ),
            "`Bad Name` is not a valid header name"
        );
        assert_eq!(
            invalid(|c| c.max_pages = Some(0), None),
            "max_pages must be at least 1"
        );
    }

    #[test]
    fn link_header_and_cursor_comparison() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static(
                r#"<https://x/a?b=1,2>; rel="prev first", <https://x/a?page=3>; rel="next""#,
            ),
        );
        assert_eq!(
            next_link_header(&headers).as_deref(),
            Some("https://x/a?page=3")
        );
        headers.insert(
            LINK,
            HeaderValue::from_static(r#"<https://x/a?page=1>; rel=prev"#),
        );
        assert_eq!(next_link_header(&headers), None);

        assert_eq!(
            compare_cursors(&json!(10), &json!(9)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare_cursors(&json!(1.5), &json!(2)),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare_cursors(&json!(10), &json!("9")),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare_cursors(
                &json!("2024-01-10T00:00:00Z"),
                &json!("2024-01-09T23:59:59Z")
            ),
            Some(Ordering::Greater)
        );
        assert_eq!(compare_cursors(&json!("2024-01-10"), &json!(5)), None);
        assert_eq!(
            retry_delay(&HeaderMap::new(), Duration::from_millis(100), 2),
            Duration::from_millis(400)
        );
        let mut retry_after = HeaderMap::new();
        retry_after.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(
            retry_delay(&retry_after, Duration::from_millis(100), 0),
            MAX_RETRY_AFTER
        );
    }
}
