//! Authentication and authorisation as Bacalhau 1.7+ does them (`pkg/authz`): users with
//! passwords (plain or bcrypt) or API keys, each holding capabilities
//! (`read:job write:job read:node write:node read:agent write:agent`, `read:*`, `write:*`,
//! `*`); a request's path says which resource it touches, `GET` reads and every other method
//! writes. Without users the API is open, as in Bacalhau; `serve` refuses that beyond loopback.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::types::ErrorBody;

/// One `API.Auth.Users` entry of Bacalhau's config.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct UserConfig {
    /// A name for messages.
    #[serde(rename = "Alias", default, skip_serializing_if = "String::is_empty")]
    pub alias: String,
    /// For Basic authentication, with `password`.
    #[serde(rename = "Username", default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// Plain text or a bcrypt hash (`$2a$`, `$2b$`, `$2y$`).
    #[serde(rename = "Password", default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// For `Authorization: Bearer <key>`.
    #[serde(rename = "APIKey", default, skip_serializing_if = "String::is_empty")]
    pub api_key: String,
    /// What the user may do.
    #[serde(rename = "Capabilities", default)]
    pub capabilities: Vec<CapabilityConfig>,
}

/// A set of allowed actions.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct CapabilityConfig {
    /// `read:job`, `write:node`, `read:*`, `*`, ...
    #[serde(rename = "Actions", default)]
    pub actions: Vec<String>,
}

/// The actions Bacalhau knows.
const ACTIONS: &[&str] =
    &["read:job", "write:job", "read:node", "write:node", "read:agent", "write:agent", "read:*", "write:*", "*"];

#[derive(Debug)]
enum Secret {
    Plain(String),
    Bcrypt(String),
}

#[derive(Debug)]
struct User {
    /// Alias, else username, else "API key ending in ...".
    id: String,
    actions: Vec<String>,
}

/// The configured users, ready to check requests against.
#[derive(Debug, Default)]
pub struct Authorizer {
    basic: HashMap<String, (Secret, Arc<User>)>,
    keys: HashMap<String, Arc<User>>,
    /// The cluster token: the orchestrator relaying a job's logs from this node presents it.
    internal: Option<String>,
    /// SHA-256 of `user:password` pairs that passed bcrypt: a CLI sends its password with every
    /// request, and bcrypt costs tens of milliseconds each time. Bounded; cleared when full.
    verified: std::sync::Mutex<HashSet<[u8; 32]>>,
}

/// Verified credentials remembered at most.
const MAX_VERIFIED: usize = 1024;

fn key_id(key: &str) -> String {
    if key.len() <= 5 { format!("API key {key}") } else { format!("API key ending in ...{}", &key[key.len() - 5..]) }
}

impl Authorizer {
    /// Checks the users as Bacalhau does at start-up; the error names the user and the rule.
    pub fn new(users: &[UserConfig], internal_token: Option<String>) -> Result<Self, String> {
        let mut a = Authorizer { internal: internal_token.filter(|t| !t.is_empty()), ..Default::default() };
        let mut aliases = HashSet::new();
        for (i, u) in users.iter().enumerate() {
            let name = if !u.alias.is_empty() {
                u.alias.clone()
            } else if !u.username.is_empty() {
                u.username.clone()
            } else {
                format!("API.Auth.Users[{i}]")
            };
            let bad = |why: String| Err(format!("error initializing users: user {name}: {why}"));
            let basic = !u.username.is_empty() || !u.password.is_empty();
            if basic && !u.api_key.is_empty() {
                return bad("give either Username and Password or APIKey, not both".into());
            }
            if !basic && u.api_key.is_empty() {
                return bad("give Username and Password, or APIKey".into());
            }
            let actions: Vec<String> = u.capabilities.iter().flat_map(|c| c.actions.iter().cloned()).collect();
            if actions.is_empty() {
                return bad("has no Capabilities; add e.g. `Capabilities: [{Actions: [\"read:job\"]}]`".into());
            }
            if let Some(unknown) = actions.iter().find(|x| !ACTIONS.contains(&x.as_str())) {
                return bad(format!("{unknown:?} is not an action; use one of {}", ACTIONS.join(", ")));
            }
            if !u.alias.is_empty() && !aliases.insert(u.alias.to_lowercase()) {
                return bad("the alias is used twice".into());
            }
            if basic {
                let user = u.username.trim();
                if user.is_empty() || user.len() > 100 || !user.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return bad("Username must be 1 to 100 letters and digits".into());
                }
                if u.password.len() < 10 || u.password.len() > 255 {
                    return bad(
                        "Password must be 10 to 255 bytes (or a bcrypt hash from `bacalhau auth hash-password`)".into(),
                    );
                }
                let secret = if is_bcrypt(&u.password) {
                    Secret::Bcrypt(u.password.clone())
                } else {
                    Secret::Plain(u.password.clone())
                };
                let id = if u.alias.is_empty() { user.to_owned() } else { u.alias.clone() };
                let user_entry = Arc::new(User { id, actions });
                if a.basic.insert(user.to_lowercase(), (secret, user_entry)).is_some() {
                    return bad("the username is used twice".into());
                }
            } else {
                if u.api_key.len() < 20 || u.api_key.len() > 255 {
                    return bad("APIKey must be 20 to 255 bytes".into());
                }
                let id = if u.alias.is_empty() { key_id(&u.api_key) } else { u.alias.clone() };
                if a.keys.insert(u.api_key.clone(), Arc::new(User { id, actions })).is_some() {
                    return bad("the API key is used twice".into());
                }
            }
        }
        Ok(a)
    }

    /// Whether any user is configured (otherwise the API is open).
    pub fn enabled(&self) -> bool {
        !self.basic.is_empty() || !self.keys.is_empty()
    }

    /// `Ok` to let the request through; otherwise 401 (no valid credential) or 403.
    fn check(&self, method: &Method, path: &str, authorization: Option<&str>) -> Result<(), Denied> {
        let Some((resource, always_write)) = resource_of(path) else { return Ok(()) };
        let internal_route = path.starts_with("/api/v1/compute/");
        if !(self.enabled() || internal_route && self.internal.is_some()) {
            return Ok(());
        }
        let read = method == Method::GET && !always_write;
        let required = format!("{}:{resource}", if read { "read" } else { "write" });
        let Some(auth) = authorization else {
            return Err(Denied::Unauthorized("Missing Authorization header".into()));
        };
        let user = if let Some(creds) = auth.strip_prefix("Basic ") {
            self.basic_user(creds)?
        } else if let Some(key) = auth.strip_prefix("Bearer ") {
            let key = key.trim();
            if internal_route && method == Method::GET && self.internal.as_deref().is_some_and(|t| ct_eq(t, key)) {
                return Ok(());
            }
            if key.is_empty() {
                return Err(Denied::Unauthorized("empty API key provided".into()));
            }
            // Constant time over the configured keys: a key's prefix must not be guessable from timing.
            let found = self.keys.iter().find(|(k, _)| ct_eq(k, key)).map(|(_, u)| u.clone());
            found.ok_or_else(|| Denied::Unauthorized("invalid API key".into()))?
        } else {
            return Err(Denied::Unauthorized("unsupported authentication method".into()));
        };
        if has_capability(&user.actions, &required) {
            Ok(())
        } else {
            Err(Denied::Forbidden(format!("user '{}' does not have the required capability '{required}'", user.id)))
        }
    }

    fn basic_user(&self, creds: &str) -> Result<Arc<User>, Denied> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(creds.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Denied::Unauthorized("failed to decode basic auth credentials".into()))?;
        let (name, password) = decoded
            .split_once(':')
            .ok_or_else(|| Denied::Unauthorized("invalid basic auth credentials format".into()))?;
        let invalid = || Denied::Unauthorized("invalid basic auth credentials".into());
        let (secret, user) = self.basic.get(&name.to_lowercase()).ok_or_else(invalid)?;
        let ok = match secret {
            Secret::Plain(p) => ct_eq(p, password),
            Secret::Bcrypt(h) => {
                use sha2::Digest as _;
                let digest: [u8; 32] = sha2::Sha256::digest(format!("{}:{password}\n{h}", name.to_lowercase())).into();
                let known = self.verified.lock().is_ok_and(|v| v.contains(&digest));
                known || {
                    let ok = bcrypt::verify(password, h).unwrap_or(false);
                    if ok && let Ok(mut v) = self.verified.lock() {
                        if v.len() >= MAX_VERIFIED {
                            v.clear();
                        }
                        v.insert(digest);
                    }
                    ok
                }
            }
        };
        if ok { Ok(user.clone()) } else { Err(invalid()) }
    }
}

fn is_bcrypt(s: &str) -> bool {
    s.len() >= 60 && (s.starts_with("$2a$") || s.starts_with("$2b$") || s.starts_with("$2y$"))
}

/// Equality whose time does not depend on where the strings differ.
fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Bacalhau's rule: `*`, the exact action, `read:*` for any read, `write:*` for any write.
fn has_capability(actions: &[String], required: &str) -> bool {
    actions.iter().any(|a| {
        a == "*"
            || a == required
            || (a == "read:*" && required.starts_with("read:"))
            || (a == "write:*" && !required.starts_with("read:"))
    })
}

/// The resource a path belongs to, and whether any method needs `write:` there; `None` for the
/// open routes. Bacalhau matches the longest
/// prefix; anything it does not know needs `write:node`, whatever the method. Our own routes
/// are placed the way their users need them: the gateway, CAR uploads and result files are
/// job data (`ipfs add` for a job's input needs `write:job`), pins, garbage collection and the
/// kubo RPC subset are node administration.
pub fn resource_of(path: &str) -> Option<(&'static str, bool)> {
    const OPEN: &[&str] = &[
        "/api/v1/auth",
        "/api/v1/agent/alive",
        "/api/v1/agent/ready",
        "/api/v1/agent/version",
        "/api/v1/agent/authconfig",
        "/api/v1/livez",
        "/api/v1/openapi.json",
    ];
    const TABLE: &[(&str, &str)] = &[
        ("/api/v1/agent", "agent"),
        ("/api/v1/orchestrator/jobs", "job"),
        ("/api/v1/orchestrator/nodes", "node"),
        ("/api/v1/compute/executions", "job"),
        ("/api/v1/local-results", "job"),
        ("/api/v1/ipfs/car", "job"),
        ("/api/v1/ipfs/id", "node"),
        ("/api/v1/ipfs/pins", "node"),
        ("/api/v1/ipfs/gc", "node"),
        ("/ipfs/", "job"),
        ("/api/v0/", "node"),
        ("/metrics", "node"),
    ];
    // The web UI's page and files hold no data: what it shows comes through the API, checked.
    if OPEN.iter().any(|p| path.starts_with(p)) || path == "/" || path.starts_with("/ui/") {
        return None;
    }
    Some(
        TABLE
            .iter()
            .filter(|(p, _)| path.starts_with(p))
            .max_by_key(|(p, _)| p.len())
            .map_or(("node", true), |(_, r)| (*r, false)),
    )
}

/// Refusals: 401 carries no valid credential, 403 a valid one without the capability.
#[derive(Debug)]
enum Denied {
    Unauthorized(String),
    Forbidden(String),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let (status, code, message, hint, reason) = match self {
            Denied::Unauthorized(r) => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "Request Unauthorized",
                "Unauthorized principal. Event has been recorded. Set BACALHAU_API_KEY, or BACALHAU_API_USERNAME and BACALHAU_API_PASSWORD.",
                r,
            ),
            Denied::Forbidden(r) => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                "Request Forbidden",
                "Check if user have access to this resource. Event has been recorded.",
                r,
            ),
        };
        let body = ErrorBody {
            status: status.as_u16(),
            message: message.into(),
            code: code.into(),
            component: "Authorizer".into(),
            hint: hint.into(),
            details: BTreeMap::from([("reason".to_owned(), reason)]),
            ..Default::default()
        };
        (status, axum::Json(body)).into_response()
    }
}

/// The middleware: every request passes here before any handler runs, so a refused write
/// changes nothing.
pub async fn authorize(State(auth): State<Arc<Authorizer>>, req: Request, next: Next) -> Response {
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match auth.check(req.method(), req.uri().path(), authorization) {
        Ok(()) => next.run(req).await,
        Err(denied) => {
            tracing::warn!(method = %req.method(), path = req.uri().path(), "refused: {denied:?}");
            denied.into_response()
        }
    }
}

/// `GET /api/v1/auth`: the legacy methods, none when users are configured (as in Bacalhau).
pub async fn list_methods() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"NextToken": "", "Methods": {}}))
}

/// `GET|POST /api/v1/auth/{method}`: Bacalhau's challenge/ask methods are legacy and not
/// offered; credentials go in the `Authorization` header.
pub async fn method(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let body = ErrorBody {
        status: 404,
        message: format!("no authentication method named {name:?}"),
        code: "NotFound".into(),
        component: "APIServer".into(),
        hint: "send Authorization: Bearer <API key> or Basic credentials instead (BACALHAU_API_KEY, BACALHAU_API_USERNAME/BACALHAU_API_PASSWORD)".into(),
        ..Default::default()
    };
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// `GET /api/v1/agent/authconfig`: no single sign-on provider.
pub async fn authconfig() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"Version": "1.0.0", "Config": {}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, password: &str, actions: &[&str]) -> UserConfig {
        UserConfig {
            username: name.into(),
            password: password.into(),
            capabilities: vec![CapabilityConfig { actions: actions.iter().map(|a| (*a).to_owned()).collect() }],
            ..Default::default()
        }
    }

    fn basic(u: &str, p: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")))
    }

    #[test]
    fn capabilities_follow_bacalhau() {
        let key = UserConfig {
            api_key: "k".repeat(24),
            capabilities: vec![CapabilityConfig { actions: vec!["read:*".into()] }],
            ..Default::default()
        };
        let hash = bcrypt::hash("secretpassword", 4).expect("hash");
        let a = Authorizer::new(
            &[user("alice", "alicepassword", &["read:job", "write:job"]), user("bob", &hash, &["*"]), key],
            None,
        )
        .expect("valid");
        let jobs = "/api/v1/orchestrator/jobs";
        assert!(a.check(&Method::GET, "/api/v1/agent/alive", None).is_ok());
        assert!(matches!(a.check(&Method::GET, jobs, None), Err(Denied::Unauthorized(_))));
        assert!(a.check(&Method::PUT, jobs, Some(&basic("Alice", "alicepassword"))).is_ok());
        assert!(matches!(
            a.check(&Method::PUT, jobs, Some(&basic("alice", "wrongpassword"))),
            Err(Denied::Unauthorized(_))
        ));
        let e = a.check(&Method::PUT, "/api/v1/orchestrator/nodes", Some(&basic("alice", "alicepassword")));
        assert!(matches!(&e, Err(Denied::Forbidden(r)) if r.contains("'write:node'")), "{e:?}");
        assert!(a.check(&Method::POST, "/api/v1/ipfs/gc", Some(&basic("bob", "secretpassword"))).is_ok());
        // Remembered after one bcrypt check; a wrong password is still checked and refused.
        assert!(a.check(&Method::POST, "/api/v1/ipfs/gc", Some(&basic("bob", "secretpassword"))).is_ok());
        assert!(a.check(&Method::POST, "/api/v1/ipfs/gc", Some(&basic("bob", "secretpasswore"))).is_err());
        let bearer = format!("Bearer {}", "k".repeat(24));
        assert!(a.check(&Method::GET, "/api/v1/orchestrator/nodes", Some(&bearer)).is_ok());
        assert!(matches!(
            a.check(&Method::DELETE, "/api/v1/orchestrator/jobs/j-1", Some(&bearer)),
            Err(Denied::Forbidden(_))
        ));
        // Unknown paths need write:node, whatever the method.
        assert!(matches!(a.check(&Method::GET, "/nowhere", Some(&bearer)), Err(Denied::Forbidden(_))));
    }

    #[test]
    fn bad_users_are_refused_at_start() {
        for (u, why) in [
            (user("al ice", "alicepassword", &["*"]), "letters and digits"),
            (user("alice", "short", &["*"]), "10 to 255"),
            (user("alice", "alicepassword", &[]), "has no Capabilities"),
            (user("alice", "alicepassword", &["read:jobs"]), "is not an action"),
        ] {
            let e = Authorizer::new(&[u], None).expect_err(why);
            assert!(e.contains(why), "{e}");
        }
        let e = Authorizer::new(&[user("a", "alicepassword", &["*"]), user("A", "otherpassword", &["*"])], None)
            .expect_err("duplicate");
        assert!(e.contains("used twice"), "{e}");
    }
}
