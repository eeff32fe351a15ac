//! The OpenAPI document (`openapi.json`, served at `GET /api/v1/openapi.json`) must list exactly
//! the routes of `http::router`: this test reads the router's source and compares both ways.
//! After changing a route, change `openapi/gen_openapi.py` and run
//! `python3 crates/polder-server/openapi/gen_openapi.py > crates/polder-server/src/openapi.json`.

use std::collections::BTreeSet;

/// axum's method routers, as written in `get(..)`, `.post(..)`, `axum::routing::put(..)`.
const METHODS: [&str; 8] = [
    "get", "post", "put", "patch", "delete", "head", "options", "trace",
];
/// Calls whose routes a plain scan cannot see: the test refuses them instead of missing routes.
const UNSUPPORTED_ROUTER_CALLS: [&str; 4] = ["nest", "nest_service", "merge", "route_service"];
const UNSUPPORTED_METHOD_CALLS: [&str; 3] = ["any", "on", "connect"];

/// Index just past the string literal that starts at `start` (a `"`).
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() && bytes[i] != b'"' {
        i += if bytes[i] == b'\\' { 2 } else { 1 };
    }
    i + 1
}

/// The source with `//` and `/* */` comments removed; string literals (paths) are kept.
fn strip_comments(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            let end = skip_string(bytes, i).min(bytes.len());
            out.extend_from_slice(&bytes[i..end]);
            i = end;
        } else if bytes[i..].starts_with(b"//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if bytes[i..].starts_with(b"/*") {
            i = source[i + 2..]
                .find("*/")
                .map_or(bytes.len(), |end| i + 2 + end + 2);
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    // Only whole comments and literals were cut, so the bytes are still UTF-8.
    String::from_utf8(out).expect("comments end on character boundaries")
}

/// Index of the bracket closing the one at `open` (`(`/`)` or `{`/`}`), strings skipped.
fn closing(text: &str, open: usize) -> usize {
    let bytes = text.as_bytes();
    let (up, down) = if bytes[open] == b'(' {
        (b'(', b')')
    } else {
        (b'{', b'}')
    };
    let mut depth = 0;
    let mut i = open;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            i = skip_string(bytes, i);
            continue;
        }
        if bytes[i] == up {
            depth += 1;
        } else if bytes[i] == down {
            depth -= 1;
            if depth == 0 {
                return i;
            }
        }
        i += 1;
    }
    panic!("unbalanced brackets from byte {open}");
}

/// Names called at bracket depth 0 of `text`: `a(..).b(..)` and `x::y::c(..)` give a, b, c.
fn top_level_calls(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut names = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i = skip_string(bytes, i);
                continue;
            }
            b'(' => {
                if depth == 0 {
                    let head = text[..i].trim_end();
                    let start = head
                        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .map_or(0, |at| at + 1);
                    names.push(&head[start..]);
                }
                depth += 1;
            }
            b')' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    names
}

/// `(path, method)` of every `.route(..)` in `fn router`.
fn routed_operations(http_rs: &str) -> BTreeSet<(String, String)> {
    let source = strip_comments(http_rs);
    let start = source.find("fn router(").expect("http.rs has `fn router(`");
    let open = start + source[start..].find('{').expect("router has a body");
    let body = &source[open + 1..closing(&source, open)];
    for call in UNSUPPORTED_ROUTER_CALLS {
        assert!(
            !body.contains(&format!(".{call}(")),
            "the router uses `.{call}(`: extend this test to follow it"
        );
    }
    let mut operations = BTreeSet::new();
    let mut rest = body;
    while let Some(at) = rest.find(".route(") {
        let open = at + ".route".len();
        let close = closing(rest, open);
        let arguments = rest[open + 1..close].trim_start();
        let path = arguments
            .strip_prefix('"')
            .and_then(|tail| tail.split_once('"'))
            .map(|(path, _)| path)
            .unwrap_or_else(|| panic!("a route without a literal path: {arguments}"));
        let handlers = &arguments[path.len() + 2..];
        let names = top_level_calls(handlers);
        if let Some(bad) = names.iter().find(|n| UNSUPPORTED_METHOD_CALLS.contains(n)) {
            panic!("route {path} uses `{bad}(`: extend this test to expand it");
        }
        let methods: Vec<&str> = names.into_iter().filter(|n| METHODS.contains(n)).collect();
        assert!(!methods.is_empty(), "route {path}: no method router found");
        // axum's catch-all `{*rest}` is OpenAPI's `{rest}`.
        let path = path.replace("{*", "{");
        for method in methods {
            operations.insert((path.clone(), method.to_string()));
        }
        rest = &rest[close + 1..];
    }
    assert!(!operations.is_empty(), "no `.route(` calls in `fn router`");
    operations
}

/// `(path, method)` of every operation in the document's `paths`.
fn documented_operations(document: &serde_json::Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"]
        .as_object()
        .expect("the document has `paths`");
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flat_map(|item| item.keys())
                .filter(|key| METHODS.contains(&key.as_str()))
                .map(move |method| (path.clone(), method.clone()))
        })
        .collect()
}

#[test]
fn openapi_document_lists_exactly_the_routed_operations() {
    let routed = routed_operations(include_str!("http.rs"));
    let document: serde_json::Value =
        serde_json::from_str(include_str!("openapi.json")).expect("openapi.json is JSON");
    assert_eq!(document["openapi"], "3.1.0");
    let documented = documented_operations(&document);
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routed but not in openapi.json: {undocumented:?}; in openapi.json but not routed: {unrouted:?}"
    );
}

#[test]
fn router_scan_reads_chained_and_multi_line_routes() {
    let source = r#"
        fn router(state: AppState) -> Router {
            Router::new()
                // .route("/commented", get(nothing))
                .route("/a", get(a))
                .route(
                    "/b/{name}",
                    axum::routing::patch(crate::m::change)
                        .delete(crate::m::remove),
                )
                .route("/c", post(upload).layer(DefaultBodyLimit::disable()))
        }
        fn get_other() { let _ = ".route(\"/not\", get(x))"; }
    "#;
    let found: Vec<(String, String)> = routed_operations(source).into_iter().collect();
    let expected: Vec<(String, String)> = [
        ("/a", "get"),
        ("/b/{name}", "delete"),
        ("/b/{name}", "patch"),
        ("/c", "post"),
    ]
    .iter()
    .map(|(p, m)| (p.to_string(), m.to_string()))
    .collect();
    assert_eq!(found, expected);
}
