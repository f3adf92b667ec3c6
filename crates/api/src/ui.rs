//! The web UI: three static files built into the binary (no CDN, no build step), served at `/`
//! and `/ui/`. The page is a client of the public REST API and nothing else, so what a user
//! may see and do there is exactly what their credentials allow through the API.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::server::ApiError;

const INDEX: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const APP_CSS: &str = include_str!("../ui/app.css");

/// Only this node's own scripts, styles and API; no frames, no plugins, no inline script, so
/// a job name or a log line that looks like markup stays text even if a bug rendered it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data: blob:; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The file's tag, computed once per file: the files are part of the binary.
fn etag(name: &str) -> &'static str {
    static TAGS: OnceLock<[(&'static str, String); 3]> = OnceLock::new();
    let tag = |b: &str| {
        let digest = Sha256::digest(b.as_bytes());
        format!("\"{}\"", digest[..12].iter().map(|x| format!("{x:02x}")).collect::<String>())
    };
    let tags = TAGS.get_or_init(|| [("index.html", tag(INDEX)), ("app.js", tag(APP_JS)), ("app.css", tag(APP_CSS))]);
    tags.iter().find(|(n, _)| *n == name).map_or("\"\"", |(_, t)| t.as_str())
}

fn serve(name: &str, body: &'static str, content_type: &'static str, req: &HeaderMap) -> Response {
    let tag = etag(name);
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(v) = HeaderValue::from_str(tag) {
        headers.insert(header::ETAG, v);
    }
    if req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(tag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, body).into_response()
}

/// `GET /`.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    serve("index.html", INDEX, "text/html; charset=utf-8", &headers)
}

/// `GET /ui/{file}`.
pub(crate) async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match file.as_str() {
        "app.js" => serve("app.js", APP_JS, "text/javascript; charset=utf-8", &headers),
        "app.css" => serve("app.css", APP_CSS, "text/css; charset=utf-8", &headers),
        _ => ApiError::not_found(format!("the web UI has no file {file:?}"), "open / for the web UI").into_response(),
    }
}

/// `GET /` when the UI is off.
pub(crate) async fn disabled() -> ApiError {
    ApiError::not_found(
        "the web UI is off on this node",
        "start serve with WebUI.Enabled=true (-c WebUI.Enabled=true), or use the CLI or the REST API under /api/v1",
    )
}
