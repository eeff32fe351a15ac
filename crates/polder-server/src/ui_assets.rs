//! The web UI's static files (`ui/` in the repository), embedded into the binary: `/` is the
//! app, `/assets/...` its code and styles, `/vendor/...` the pinned third-party libraries.
//! Debug builds read the files from `ui/` at each request, so UI work needs no rebuild.
//!
//! Files are revalidated by ETag (their SHA-256), so a browser that has them gets a
//! `304 Not Modified` and a new binary's files are never served stale.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::http::error_response;

#[derive(RustEmbed)]
#[folder = "../../ui/"]
struct UiFiles;

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = UiFiles::get(path) else {
        return error_response(
            polder_core::ErrorKind::NotFound,
            &format!("no file '/{path}' in the web UI"),
            None,
        );
    };
    let etag = format!(
        "\"{}\"",
        file.metadata
            .sha256_hash()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let revalidate = HeaderValue::from_static("no-cache");
    let etag_value = HeaderValue::from_str(&etag).expect("hex etag");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    if matches {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag_value),
                (header::CACHE_CONTROL, revalidate),
            ],
        )
            .into_response();
    }
    let content_type = HeaderValue::from_str(file.metadata.mimetype())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::ETAG, etag_value),
            (header::CACHE_CONTROL, revalidate),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        // Release builds hold the files in the binary: send them without copying.
        match file.data {
            std::borrow::Cow::Borrowed(bytes) => axum::body::Body::from(bytes),
            std::borrow::Cow::Owned(bytes) => axum::body::Body::from(bytes),
        },
    )
        .into_response()
}

/// Scripts and connections only from this server: data shown in the UI can never run as code,
/// even if some value slipped into the page as HTML.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// `GET /`: the app's page.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    let mut response = serve("index.html", &headers);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

/// `GET /assets/{*path}`.
pub(crate) async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&format!("assets/{path}"), &headers)
}

/// `GET /vendor/{*path}`.
pub(crate) async fn vendor(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&format!("vendor/{path}"), &headers)
}
