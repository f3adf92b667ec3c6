//! What stands between a browser and the API: a page on another site must not be able to
//! drive a node on the user's machine or network.
//!
//! - `Host` must be one of the node's names or an IP address. A DNS-rebinding page reaches us
//!   under its own name, which is refused.
//! - A foreign `Origin` is refused: browsers send it with every cross-site request, so a page
//!   elsewhere can neither read answers nor send writes.
//! - A write may not carry a body type a plain HTML form can send (`text/plain`,
//!   `application/x-www-form-urlencoded`, `multipart/form-data`), except kubo's
//!   `dag/import`, whose protocol is multipart. Such requests skip the browser's preflight,
//!   so this closes CSRF even where `Origin` is missing.
//!
//! Also here: every error answer is Bacalhau's JSON error body, including those axum's
//! extractors and limits make (a 413 for a huge body, a 415, a 422 for bad JSON).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::types::ErrorBody;

/// The names the node answers to.
#[derive(Clone, Debug, Default)]
pub struct Names {
    names: BTreeSet<String>,
}

impl Names {
    /// `localhost` and the given names (the API host, the advertised host, the hostname).
    pub fn new(extra: impl IntoIterator<Item = String>) -> Self {
        let mut names: BTreeSet<String> = extra.into_iter().map(|n| n.trim().to_ascii_lowercase()).collect();
        names.insert("localhost".into());
        names.retain(|n| !n.is_empty());
        Self { names }
    }

    /// These names and one more.
    pub fn with(mut self, name: String) -> Self {
        let name = name.trim().to_ascii_lowercase();
        if !name.is_empty() {
            self.names.insert(name);
        }
        self
    }

    fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let bare = strip_port(&host);
        bare.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() || self.names.contains(bare)
    }
}

/// `host`, `host:port`, `[v6]:port` → the host part.
fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.find(']').map_or(h, |i| &h[..=i]);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) && !host.contains(':') => host,
        _ => h,
    }
}

fn refuse(status: StatusCode, code: &str, message: String, hint: &str) -> Response {
    let body = ErrorBody {
        status: status.as_u16(),
        message,
        code: code.into(),
        component: "APIServer".into(),
        hint: hint.into(),
        ..Default::default()
    };
    (status, axum::Json(body)).into_response()
}

/// The browser checks above.
pub async fn browser_guard(State(names): State<Arc<Names>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok())
        && !names.allows(host)
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("this node does not answer to the name {host:?}"),
            "use the node's address or one of its names (serve --advertise HOST adds one)",
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        let same = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|h| h.eq_ignore_ascii_case(origin_host));
        if !same && origin != "null" {
            return refuse(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("requests from the web page at {origin} are not accepted"),
                "use the bacalhau CLI or an API client; browsers may only use the node's own pages",
            );
        }
        if origin == "null" && req.method() != Method::GET {
            return refuse(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "writes from an opaque origin are not accepted".into(),
                "",
            );
        }
    }
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if write && req.uri().path() != "/api/v0/dag/import" {
        let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if matches!(essence.as_str(), "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data") {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "BadRequest",
                format!("a write with Content-Type {ctype:?} is not accepted"),
                "send the body as application/json",
            );
        }
    }
    next.run(req).await
}

/// Turns any error answer that is not JSON into Bacalhau's JSON error body, keeping its status.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json || status == StatusCode::RANGE_NOT_SATISFIABLE
    {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let (code, hint) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "ResourceExhausted",
            "the body is larger than this route accepts (10 MiB for job specs); put big inputs in IPFS or a URL and refer to them",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("BadRequest", "send the body as application/json"),
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => {
            ("BadRequest", "check the request body against /api/v1/openapi.json")
        }
        StatusCode::METHOD_NOT_ALLOWED => ("BadRequest", "see /api/v1/openapi.json for the methods each route takes"),
        s if s.is_server_error() => ("InternalError", "check the server's log"),
        _ => ("BadRequest", ""),
    };
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text.trim().to_owned()
    };
    let mut fixed = refuse(status, code, message, hint);
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            fixed.headers_mut().insert(k.clone(), v.clone());
        }
    }
    fixed.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    fixed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_allow_addresses_and_known_names_only() {
        let n = Names::new(["node1.example".to_owned()]);
        for ok in ["localhost:1234", "127.0.0.1:1234", "[::1]:1234", "10.0.0.5", "NODE1.example:80"] {
            assert!(n.allows(ok), "{ok}");
        }
        for bad in ["evil.example:1234", "attacker.test", "localhost.evil.example"] {
            assert!(!n.allows(bad), "{bad}");
        }
    }
}
