//! Bearer-token authentication and role checks for everything on the
//! gateway port: DICOMweb, gRPC (and grpc-web), the JSON API.
//!
//! With `auth.jwks` set, every request but a CORS preflight and the files a
//! browser loads before it can hold a token (the viewer, three.js, the 3D
//! page's HTML) must carry `Authorization: Bearer <JWT>`: an OIDC access
//! token signed with RS256/RS384/RS512/PS256/PS384/PS512 or ES256/ES384 by a
//! key of the provider's JWKS (a file read at start, or an http(s) URL
//! fetched at start and again, at most once a minute, when a token names a
//! key id we do not know), issued by `auth.issuer` for `auth.audience`,
//! within `exp`/`nbf` give or take `auth.leeway_seconds`, with a `sub`.
//! Symmetric keys (`oct`) and `alg: none` are never accepted.
//!
//! The roles at `auth.roles_claim` (a dotted path such as
//! `realm_access.roles`; an array of strings or a space-separated string)
//! give a level: viewer reads, editor also writes, admin also replays and
//! administers. [`RULES`] says, per method and route template (or gRPC
//! method), which level a request needs; a route missing from it needs
//! admin.
//!
//! Refusals: no, bad or expired token: 401 with
//! `WWW-Authenticate: Bearer ...`; too low a level: 403. gRPC requests
//! (`application/grpc*`) get HTTP 200 with `grpc-status` 16
//! (UNAUTHENTICATED) or 7 (PERMISSION_DENIED), as tonic answers. CORS
//! headers are on refusals too, so a browser shows the reason. Every
//! refusal and every DICOMweb view is appended to the audit trail
//! ([`crate::audit`]); tokens are never logged or stored.
//!
//! The caller ([`Caller`]: subject, `preferred_username`, level, peer) is
//! put into the request's extensions for the handlers (and the audit
//! records they write). Without `auth.jwks` everyone is an `anonymous`
//! admin.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use liverseg_core::config::AuthConfig;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tracing::{info, warn};

// ---- levels and the route table -------------------------------------------------------------

/// What a caller may do; each level includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// No token needed.
    Public,
    /// Reads: QIDO, WADO, the JSON API, gRPC reads, health, reflection.
    Viewer,
    /// Also writes: STOW-RS, gRPC SubmitSeries and ResubmitSegmentation.
    Editor,
    /// Also dead letters and replays, and anything not listed.
    Admin,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Public => "public",
            Level::Viewer => "viewer",
            Level::Editor => "editor",
            Level::Admin => "admin",
        }
    }
}

/// Which DICOMweb requests leave a `view` record, and how its object is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// WADO-RS: the most specific UID in the path.
    Wado,
    /// QIDO-RS: the path searched.
    Qido,
    /// The liver mesh of a study (JSON API).
    Mesh,
}

/// One line of the table: `GET` also covers `HEAD`; gRPC methods are
/// `POST` to `/package.Service/Method`; a route ending in `/*` covers every
/// method of a gRPC service.
#[derive(Debug)]
pub struct Rule {
    pub method: &'static str,
    pub route: &'static str,
    pub level: Level,
    /// What the request attempts, for the audit trail.
    pub action: &'static str,
    pub view: Option<View>,
}

const fn rule(
    method: &'static str,
    route: &'static str,
    level: Level,
    action: &'static str,
    view: Option<View>,
) -> Rule {
    Rule {
        method,
        route,
        level,
        action,
        view,
    }
}

/// Every route of the gateway and the level it needs.
#[rustfmt::skip]
pub const RULES: &[Rule] = {
    use Level::*;
    use View::*;
    &[
        // The browser loads these before it has a token (OHIF then gets one
        // through its `oidc` configuration and sends it to DICOMweb).
        rule("GET",  "/viewer",                                  Public, "read", None),
        rule("GET",  "/viewer/",                                 Public, "read", None),
        rule("GET",  "/viewer/{*path}",                          Public, "read", None),
        rule("GET",  "/assets/three/{*path}",                    Public, "read", None),
        rule("GET",  "/3d/{study}",                              Public, "read", None),
        rule("GET",  "/3d/{study}/",                             Public, "read", None),
        // QIDO-RS
        rule("GET",  "/dicom-web/studies",                       Viewer, "view", Some(Qido)),
        rule("GET",  "/dicom-web/series",                        Viewer, "view", Some(Qido)),
        rule("GET",  "/dicom-web/instances",                     Viewer, "view", Some(Qido)),
        rule("GET",  "/dicom-web/studies/{study}/series",        Viewer, "view", Some(Qido)),
        rule("GET",  "/dicom-web/studies/{study}/instances",     Viewer, "view", Some(Qido)),
        rule("GET",  "/dicom-web/studies/{study}/series/{series}/instances", Viewer, "view", Some(Qido)),
        // WADO-RS
        rule("GET",  "/dicom-web/studies/{study}",               Viewer, "view", Some(Wado)),
        rule("GET",  "/dicom-web/studies/{study}/metadata",      Viewer, "view", Some(Wado)),
        rule("GET",  "/dicom-web/studies/{study}/series/{series}", Viewer, "view", Some(Wado)),
        rule("GET",  "/dicom-web/studies/{study}/series/{series}/metadata", Viewer, "view", Some(Wado)),
        rule("GET",  "/dicom-web/studies/{study}/series/{series}/instances/{instance}", Viewer, "view", Some(Wado)),
        rule("GET",  "/dicom-web/studies/{study}/series/{series}/instances/{instance}/metadata", Viewer, "view", Some(Wado)),
        rule("GET",  "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}", Viewer, "view", Some(Wado)),
        rule("GET",  "/dicom-web/studies/{study}/series/{series}/instances/{instance}/rendered", Viewer, "view", Some(Wado)),
        rule("GET",  "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered", Viewer, "view", Some(Wado)),
        rule("GET",  "/dicom-web/studies/{study}/series/{series}/instances/{instance}/bulk/{tag}", Viewer, "view", Some(Wado)),
        // STOW-RS
        rule("POST", "/dicom-web/studies",                       Editor, "receive", None),
        rule("POST", "/dicom-web/studies/{study}",               Editor, "receive", None),
        rule("POST", "/dicom-web/stow",                          Editor, "receive", None),
        // JSON API
        rule("GET",  "/api/v1/jobs",                             Viewer, "read", None),
        rule("GET",  "/api/v1/jobs/{id}",                        Viewer, "read", None),
        rule("GET",  "/api/v1/series/{uid}",                     Viewer, "read", None),
        rule("GET",  "/api/v1/series/{uid}/versions",            Viewer, "read", None),
        rule("GET",  "/api/v1/studies/{study}/liver",            Viewer, "view", Some(Mesh)),
        rule("GET",  "/api/v1/studies/{study}/liver.glb",        Viewer, "view", Some(Mesh)),
        rule("GET",  "/api/v1/studies/{study}/liver.stl",        Viewer, "view", Some(Mesh)),
        // gRPC liverseg.v1.Liverseg (FetchResult's view is recorded by its handler)
        rule("POST", "/liverseg.v1.Liverseg/GetJob",             Viewer, "read", None),
        rule("POST", "/liverseg.v1.Liverseg/WatchJob",           Viewer, "read", None),
        rule("POST", "/liverseg.v1.Liverseg/ListResults",        Viewer, "read", None),
        rule("POST", "/liverseg.v1.Liverseg/FetchResult",        Viewer, "view", None),
        rule("POST", "/liverseg.v1.Liverseg/ListSegVersions",    Viewer, "read", None),
        rule("POST", "/liverseg.v1.Liverseg/SubmitSeries",       Editor, "receive", None),
        rule("POST", "/liverseg.v1.Liverseg/ResubmitSegmentation", Editor, "resubmit", None),
        rule("POST", "/liverseg.v1.Liverseg/ListDeadLetters",    Admin,  "read", None),
        rule("POST", "/liverseg.v1.Liverseg/ReplayJob",          Admin,  "replay", None),
        // Health and reflection
        rule("POST", "/grpc.health.v1.Health/*",                 Viewer, "read", None),
        rule("POST", "/grpc.reflection.v1.ServerReflection/*",   Viewer, "read", None),
        rule("POST", "/grpc.reflection.v1alpha.ServerReflection/*", Viewer, "read", None),
    ]
};

/// A matched route that is not in [`RULES`]: administrators only.
const UNLISTED: Rule = rule("*", "", Level::Admin, "request", None);
/// No route matched (the answer is a 404): any authenticated caller.
const UNMATCHED: Rule = rule("*", "", Level::Viewer, "request", None);

/// The rule for a request to `route` (a template as [`crate::route_label`]
/// names it, or `unmatched`).
pub fn rule_for(method: &Method, route: &str) -> &'static Rule {
    if route == "unmatched" {
        return &UNMATCHED;
    }
    let read = method == Method::GET || method == Method::HEAD;
    RULES
        .iter()
        .find(|r| {
            let method_ok = if r.method == "GET" {
                read
            } else {
                method.as_str() == r.method
            };
            let route_ok = match r.route.strip_suffix("/*") {
                Some(service) => route
                    .strip_prefix(service)
                    .is_some_and(|m| m.starts_with('/') && m.len() > 1),
                None => r.route == route,
            };
            method_ok && route_ok
        })
        .unwrap_or(&UNLISTED)
}

// ---- the caller --------------------------------------------------------------------------------

/// Who sent a request, as the middleware established it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's `sub`, or `anonymous` without authentication.
    pub subject: String,
    pub username: Option<String>,
    pub roles: Vec<String>,
    pub level: Level,
    /// Client address: `IP:port`, or `X-Forwarded-For (via IP:port)`.
    pub peer: String,
}

impl Caller {
    pub const ANONYMOUS: &'static str = "anonymous";

    fn anonymous(peer: String, level: Level) -> Caller {
        Caller {
            subject: Self::ANONYMOUS.into(),
            username: None,
            roles: Vec::new(),
            level,
            peer,
        }
    }

    /// The caller of a request that did not pass the middleware (never in
    /// the served router).
    pub fn unknown() -> Caller {
        Caller::anonymous("unknown".into(), Level::Public)
    }

    /// `user=NAME` when the token named one, for audit details.
    pub fn username_detail(&self) -> String {
        self.username
            .as_deref()
            .map(|u| format!("; user={u}"))
            .unwrap_or_default()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(Caller::unknown))
    }
}

/// The client address: a proxy's `X-Forwarded-For` (its first entry), with
/// the socket it came through; else the socket.
pub fn client_peer(headers: &HeaderMap, socket: Option<SocketAddr>) -> String {
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| v.chars().take(64).collect::<String>());
    match (forwarded, socket) {
        (Some(f), Some(s)) => format!("{f} (via {s})"),
        (Some(f), None) => f,
        (None, Some(s)) => s.to_string(),
        (None, None) => "unknown".into(),
    }
}

// ---- the middleware ----------------------------------------------------------------------------

/// Authenticates and authorises each request, and audits views and
/// refusals. Layered on the whole router, inside the request span.
pub async fn authenticate(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let socket = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let peer = client_peer(request.headers(), socket);
    let route = crate::route_label(&request);
    let method = request.method().clone();
    let rule = rule_for(&method, &route);
    let grpc = grpc_content_type(request.headers());

    if method == Method::OPTIONS || rule.level == Level::Public {
        request
            .extensions_mut()
            .insert(Caller::anonymous(peer, Level::Public));
        return next.run(request).await;
    }
    let path = request.uri().path().to_string();
    let caller = match &state.auth {
        None => Caller::anonymous(peer, Level::Admin),
        Some(auth) => {
            let verified = match bearer(request.headers()) {
                Ok(token) => auth.verify(token).await,
                Err(e) => Err(e),
            };
            match verified {
                Ok(v) => Caller {
                    level: auth.level(&v.roles),
                    subject: v.subject,
                    username: v.username,
                    roles: v.roles,
                    peer,
                },
                Err(e) => {
                    let caller = Caller::anonymous(peer, Level::Public);
                    state.audit.record(
                        &caller,
                        rule.action,
                        &object_of(rule, &path, &route),
                        &e.outcome(),
                        &format!("{method} {route}"),
                    );
                    info!(route = %route, peer = %caller.peer, reason = %e.reason(), "request refused: not authenticated");
                    return e.response(grpc.as_ref());
                }
            }
        }
    };
    if caller.level < rule.level {
        let reason = format!(
            "{} access needed ({}); the token grants {}",
            rule.level.as_str(),
            roles_for(&state.config.auth, rule.level),
            if caller.level == Level::Public {
                "no liverseg role".to_string()
            } else {
                caller.level.as_str().to_string()
            }
        );
        state.audit.record(
            &caller,
            rule.action,
            &object_of(rule, &path, &route),
            &format!("refused: {reason}"),
            &format!("{method} {route}{}", caller.username_detail()),
        );
        info!(route = %route, subject = %caller.subject, peer = %caller.peer, "request refused: role");
        return AuthError::Forbidden(reason).response(grpc.as_ref());
    }
    // Nothing after this point needs (or may log) the token.
    request.headers_mut().remove(header::AUTHORIZATION);
    let query = request.uri().query().map(str::to_string);
    request.extensions_mut().insert(caller.clone());
    let response = next.run(request).await;
    if let Some(view) = rule.view {
        let status = response.status();
        let outcome = if status.is_success() || status.is_redirection() {
            "ok".to_string()
        } else {
            format!("failed: HTTP {}", status.as_u16())
        };
        let mut detail = format!("{method} {route}");
        if view == View::Qido
            && let Some(q) = &query
        {
            // Parameter names only: the values may be patient attributes.
            let mut names: Vec<&str> = q
                .split('&')
                .filter_map(|p| p.split('=').next())
                .filter(|n| !n.is_empty())
                .collect();
            names.sort_unstable();
            names.dedup();
            if !names.is_empty() {
                detail.push_str(&format!("; parameters: {}", names.join(",")));
            }
        }
        if view == View::Wado
            && let Some(frames) = segment_after(&path, "frames")
        {
            detail.push_str(&format!("; frames {frames}"));
        }
        detail.push_str(&caller.username_detail());
        state.audit.record(
            &caller,
            "view",
            &object_of(rule, &path, &route),
            &outcome,
            &detail,
        );
    }
    response
}

/// The path segment after `name` (`studies`, `series`, `instances`, `frames`).
fn segment_after<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let mut parts = path.split('/');
    while let Some(p) = parts.next() {
        if p == name {
            return parts.next().filter(|s| !s.is_empty());
        }
    }
    None
}

/// What a request is about, for the audit trail: the most specific UID of
/// a retrieval, the path of a search, the gRPC method or the route.
fn object_of(rule: &Rule, path: &str, route: &str) -> String {
    let uid = segment_after(path, "instances")
        .or_else(|| segment_after(path, "series"))
        .or_else(|| segment_after(path, "studies"));
    match (rule.view, uid) {
        (Some(View::Qido), _) => path.chars().take(256).collect(),
        (_, Some(uid)) => uid.chars().take(64).collect(),
        _ => route.to_string(),
    }
}

/// `application/grpc`, `application/grpc+proto`, `application/grpc-web...`:
/// the content type to answer a refusal with.
fn grpc_content_type(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get(header::CONTENT_TYPE)
        .filter(|v| {
            v.to_str()
                .is_ok_and(|s| s.to_ascii_lowercase().starts_with("application/grpc"))
        })
        .cloned()
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AuthError::Missing);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::Invalid("the Authorization header is not text".into()))?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Invalid("the bearer token is empty".into()));
    }
    Ok(token)
}

// ---- refusals ----------------------------------------------------------------------------------

/// Why a request was not let through. The texts never contain the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that is malformed, badly signed, expired, for someone else...
    Invalid(String),
    /// The provider's keys could not be loaded: nothing can be checked.
    KeysUnavailable(String),
    /// A valid token without the level the request needs.
    Forbidden(String),
}

impl AuthError {
    pub fn reason(&self) -> String {
        match self {
            AuthError::Missing => "no bearer token".into(),
            AuthError::Invalid(why) => why.clone(),
            AuthError::KeysUnavailable(why) => format!("the signing keys are unavailable: {why}"),
            AuthError::Forbidden(why) => why.clone(),
        }
    }

    /// The audit record's outcome.
    fn outcome(&self) -> String {
        match self {
            AuthError::KeysUnavailable(_) => format!("failed: {}", self.reason()),
            _ => format!("refused: {}", self.reason()),
        }
    }

    /// HTTP 401/403/503 with a JSON body, or a gRPC status for gRPC
    /// requests; CORS headers either way.
    pub fn response(&self, grpc: Option<&HeaderValue>) -> Response {
        let (status, code, challenge) = match self {
            // RFC 6750 3.1: no error code when no credentials were sent.
            AuthError::Missing => (
                StatusCode::UNAUTHORIZED,
                tonic::Code::Unauthenticated,
                Some("Bearer realm=\"liverseg\"".to_string()),
            ),
            AuthError::Invalid(why) => (
                StatusCode::UNAUTHORIZED,
                tonic::Code::Unauthenticated,
                Some(format!(
                    "Bearer realm=\"liverseg\", error=\"invalid_token\", error_description=\"{}\"",
                    quoted(why)
                )),
            ),
            AuthError::Forbidden(why) => (
                StatusCode::FORBIDDEN,
                tonic::Code::PermissionDenied,
                Some(format!(
                    "Bearer realm=\"liverseg\", error=\"insufficient_scope\", error_description=\"{}\"",
                    quoted(why)
                )),
            ),
            AuthError::KeysUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                tonic::Code::Unavailable,
                None,
            ),
        };
        let message = match self {
            AuthError::Missing => {
                "authentication required: send Authorization: Bearer <token>".to_string()
            }
            AuthError::Invalid(why) => format!("invalid token: {why}"),
            AuthError::Forbidden(why) => format!("permission denied: {why}"),
            AuthError::KeysUnavailable(_) => {
                "authentication is unavailable: the identity provider's keys could not be loaded"
                    .to_string()
            }
        };
        let mut response = match grpc {
            Some(content_type) => {
                let mut r: Response =
                    tonic::Status::new(code, message).into_http::<axum::body::Body>();
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, content_type.clone());
                r
            }
            None => ApiError::new(status, message).into_response(),
        };
        let headers = response.headers_mut();
        if let Some(challenge) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("www-authenticate, grpc-status, grpc-message"),
        );
        response
    }
}

/// Text safe inside a quoted-string of a header.
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"' && *c != '\\')
        .take(200)
        .collect()
}

// ---- the authenticator -------------------------------------------------------------------------

/// Algorithms accepted: asymmetric only.
const ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];
/// An unknown key id fetches the JWKS again at most this often...
const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// ...or this often while no key could be loaded at all.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Verified tokens remembered (by SHA-256), so that the hundreds of frame
/// requests of one viewer session do not each verify a signature.
const CACHE_ENTRIES: usize = 4096;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub subject: String,
    pub username: Option<String>,
    pub roles: Vec<String>,
    /// `exp`, Unix seconds.
    pub expires: u64,
}

struct Key {
    kid: Option<String>,
    /// The key's own `alg`, when the JWKS names one.
    alg: Option<Algorithm>,
    family: AlgorithmFamily,
    key: DecodingKey,
}

enum Source {
    File(PathBuf),
    Url(url::Url),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Url(u) => write!(f, "{u}"),
        }
    }
}

/// Checks tokens against the provider's keys.
pub struct Authenticator {
    config: AuthConfig,
    source: Source,
    keys: RwLock<Arc<Vec<Key>>>,
    /// When the keys were last fetched again for an unknown key id
    /// (the fetch at start does not count); held while fetching.
    refetched: tokio::sync::Mutex<Option<Instant>>,
    /// Why the last load failed, while no key is loaded.
    load_error: Mutex<Option<String>>,
    cache: Mutex<HashMap<[u8; 32], Verified>>,
}

impl Authenticator {
    /// Loads the keys. A file that cannot be read or holds no usable key
    /// is an error; an unreachable URL is logged and fetched again when
    /// tokens arrive (they are answered 503 until then).
    pub async fn start(config: &AuthConfig) -> Result<Authenticator, String> {
        let jwks = config.jwks.trim();
        let source = if jwks.starts_with("http://") || jwks.starts_with("https://") {
            Source::Url(
                url::Url::parse(jwks)
                    .map_err(|e| format!("auth.jwks {jwks:?} is not a URL: {e}"))?,
            )
        } else {
            Source::File(PathBuf::from(jwks))
        };
        let auth = Authenticator {
            config: config.clone(),
            source,
            keys: RwLock::new(Arc::new(Vec::new())),
            refetched: tokio::sync::Mutex::new(None),
            load_error: Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
        };
        match auth.load().await {
            Ok(n) => info!(
                jwks = %auth.source,
                keys = n,
                issuer = %config.issuer,
                audience = %config.audience,
                "bearer-token authentication on"
            ),
            Err(e) if matches!(auth.source, Source::File(_)) => {
                return Err(format!("auth.jwks {}: {e}", auth.source));
            }
            Err(e) => {
                warn!(jwks = %auth.source, error = %e, "could not fetch the JWKS; requests are refused until it can be fetched");
            }
        }
        Ok(auth)
    }

    /// Reads or fetches the JWKS and replaces the keys; returns how many.
    async fn load(&self) -> Result<usize, String> {
        let result = match &self.source {
            Source::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("reading the JWKS: {e}")),
            Source::Url(url) => fetch(url).await,
        }
        .and_then(|bytes| parse_jwks(&bytes));
        match result {
            Ok(keys) => {
                let n = keys.len();
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
                *self.load_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                // A key taken out of the set takes its tokens with it.
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
                Ok(n)
            }
            Err(e) => {
                *self.load_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                Err(e)
            }
        }
    }

    fn keys(&self) -> Arc<Vec<Key>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Fetches the JWKS again for a key id we do not know, unless that was
    /// done less than a minute ago. True when new keys were loaded.
    async fn refetch(&self, kid: Option<&str>) -> bool {
        if !matches!(self.source, Source::Url(_)) {
            return false;
        }
        let mut last = self.refetched.lock().await;
        let empty = self.keys().is_empty();
        let interval = if empty {
            RETRY_INTERVAL
        } else {
            REFETCH_INTERVAL
        };
        if last.is_some_and(|t| t.elapsed() < interval) {
            return false;
        }
        // Another request may have fetched the key while this one waited.
        if let Some(kid) = kid
            && self.keys().iter().any(|k| k.kid.as_deref() == Some(kid))
        {
            return true;
        }
        *last = Some(Instant::now());
        match self.load().await {
            Ok(n) => {
                info!(jwks = %self.source, keys = n, "JWKS fetched again (unknown key id)");
                true
            }
            Err(e) => {
                warn!(jwks = %self.source, error = %e, "fetching the JWKS again failed");
                false
            }
        }
    }

    /// The level that `roles` grant.
    pub fn level(&self, roles: &[String]) -> Level {
        let has = |name: &str| !name.is_empty() && roles.iter().any(|r| r == name);
        if has(&self.config.admin_role) {
            Level::Admin
        } else if has(&self.config.editor_role) {
            Level::Editor
        } else if has(&self.config.viewer_role) {
            Level::Viewer
        } else {
            Level::Public
        }
    }

    /// Checks a token: signature, algorithm, issuer, audience, times.
    pub async fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = jsonwebtoken::get_current_timestamp();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(hit) = cache.get(&digest) {
                if hit.expires + self.config.leeway_seconds > now {
                    return Ok(hit.clone());
                }
                cache.remove(&digest);
            }
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            AuthError::Invalid(
                "not a signed JWT with a supported algorithm (alg none and unknown algorithms are refused)"
                    .into(),
            )
        })?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted (only RS*, PS* and ES256/ES384)",
                header.alg
            )));
        }
        let kid = header.kid.as_deref();
        let mut keys = self.keys();
        let known = |keys: &[Key]| match kid {
            Some(kid) => keys.iter().any(|k| k.kid.as_deref() == Some(kid)),
            None => !keys.is_empty(),
        };
        if !known(&keys) && self.refetch(kid).await {
            keys = self.keys();
        }
        if keys.is_empty() {
            let why = self
                .load_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_else(|| "no key loaded".into());
            return Err(AuthError::KeysUnavailable(why));
        }
        let candidates: Vec<&Key> = keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .filter(|k| k.family == header.alg.family() && k.alg.is_none_or(|a| a == header.alg))
            .collect();
        if candidates.is_empty() {
            return Err(AuthError::Invalid(match kid {
                Some(kid) if !known(&keys) => format!("unknown key id {:?}", quoted(kid)),
                _ => format!("no key of the JWKS verifies {:?} tokens", header.alg),
            }));
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.config.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[self.config.issuer.trim()]);
        validation.set_audience(&[self.config.audience.trim()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let mut last = AuthError::Invalid("bad signature".into());
        for key in candidates {
            match jsonwebtoken::decode::<Value>(token, &key.key, &validation) {
                Ok(data) => {
                    let verified = self.claims(&data.claims)?;
                    let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                    if cache.len() >= CACHE_ENTRIES {
                        cache.clear();
                    }
                    cache.insert(digest, verified.clone());
                    return Ok(verified);
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    let why = match e.kind() {
                        K::InvalidSignature => {
                            last = AuthError::Invalid("bad signature".into());
                            continue;
                        }
                        K::ExpiredSignature => "the token has expired".to_string(),
                        K::ImmatureSignature => "the token is not valid yet (nbf)".to_string(),
                        K::InvalidIssuer => "wrong issuer".to_string(),
                        K::InvalidAudience => "wrong audience".to_string(),
                        K::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
                        K::InvalidClaimFormat(c) => format!("the {c} claim is malformed"),
                        K::InvalidAlgorithm => "algorithm and key do not match".to_string(),
                        _ => "malformed token".to_string(),
                    };
                    return Err(AuthError::Invalid(why));
                }
            }
        }
        Err(last)
    }

    fn claims(&self, claims: &Value) -> Result<Verified, AuthError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| AuthError::Invalid("the sub claim is empty".into()))?
            .chars()
            .take(256)
            .collect();
        let username = claims
            .get("preferred_username")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.chars().take(256).collect());
        let roles = lookup(claims, self.config.roles_claim.trim())
            .map(roles_of)
            .unwrap_or_default();
        let expires = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        Ok(Verified {
            subject,
            username,
            roles,
            expires,
        })
    }
}

/// The value at a dotted path (`realm_access.roles`); a key that itself
/// contains dots (`https://example.org/roles`) is found too.
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return None;
    }
    let object = value.as_object()?;
    if let Some(v) = object.get(path) {
        return Some(v);
    }
    path.match_indices('.').find_map(|(i, _)| {
        object
            .get(&path[..i])
            .and_then(|inner| lookup(inner, &path[i + 1..]))
    })
}

/// Roles from an array of strings or a space-separated string.
fn roles_of(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// The signature keys of a JWKS document; other keys are skipped.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<Key>, String> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let entries = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWKS has no \"keys\" array")?;
    let mut keys = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let jwk: Jwk = match serde_json::from_value(entry.clone()) {
            Ok(j) => j,
            Err(e) => {
                warn!(index = i, error = %e, "skipping an unreadable JWKS key");
                continue;
            }
        };
        let kid = jwk.common.key_id.clone();
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
            AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
            _ => {
                // oct (symmetric), OKP and unknown key types are never used.
                warn!(index = i, kid = ?kid, "skipping a JWKS key that is not RSA or EC");
                continue;
            }
        };
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(a) => match Algorithm::try_from(a) {
                Ok(a) if ALGORITHMS.contains(&a) && a.family() == family => Some(a),
                _ => {
                    warn!(index = i, kid = ?kid, alg = %a, "skipping a JWKS key for an algorithm we do not accept");
                    continue;
                }
            },
        };
        match DecodingKey::from_jwk(&jwk) {
            Ok(key) => keys.push(Key {
                kid,
                alg,
                family,
                key,
            }),
            Err(e) => warn!(index = i, kid = ?kid, error = %e, "skipping an unusable JWKS key"),
        }
    }
    if keys.is_empty() {
        return Err("the JWKS holds no RSA or EC signature key".into());
    }
    Ok(keys)
}

// ---- fetching the JWKS -------------------------------------------------------------------------

/// GET `url` (http or https, no redirects), at most 1 MiB, within 10 s.
async fn fetch(url: &url::Url) -> Result<Vec<u8>, String> {
    tokio::time::timeout(FETCH_TIMEOUT, fetch_inner(url))
        .await
        .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))?
}

async fn fetch_inner(url: &url::Url) -> Result<Vec<u8>, String> {
    let host = url.host_str().ok_or("the URL has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().ok_or("the URL has no port")?;
    let authority = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or(host)),
        None => url.host_str().unwrap_or(host).to_string(),
    };
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let request = hyper::Request::get(target)
        .header(header::HOST, authority)
        .header(header::ACCEPT, "application/jwk-set+json, application/json")
        .header(header::USER_AGENT, "liverseg-gateway")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    match url.scheme() {
        "http" => exchange(hyper_util::rt::TokioIo::new(tcp), request).await,
        "https" => {
            let connector = tokio_rustls::TlsConnector::from(tls_config()?);
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| format!("{host}: {e}"))?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}: {e}"))?;
            exchange(hyper_util::rt::TokioIo::new(tls), request).await
        }
        other => Err(format!("scheme {other} is not http or https")),
    }
}

async fn exchange<I>(
    io: I,
    request: hyper::Request<http_body_util::Empty<bytes::Bytes>>,
) -> Result<Vec<u8>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the server answered {status}"));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        Ok(body.to_bytes().to_vec())
    }
    .await;
    driver.abort();
    result
}

/// TLS client configuration: the system's CA bundle (`SSL_CERT_FILE`, or
/// the usual Debian, RHEL and Alpine paths), made once.
fn tls_config() -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::{CertificateDer, pem::PemObject};
    static CONFIG: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let candidates: Vec<PathBuf> = std::env::var_os("SSL_CERT_FILE")
                .map(PathBuf::from)
                .into_iter()
                .chain(
                    [
                        "/etc/ssl/certs/ca-certificates.crt",
                        "/etc/pki/tls/certs/ca-bundle.crt",
                        "/etc/ssl/cert.pem",
                    ]
                    .map(PathBuf::from),
                )
                .collect();
            let mut roots = rustls::RootCertStore::empty();
            for path in &candidates {
                let Ok(pem) = std::fs::read(path) else {
                    continue;
                };
                for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
                    let _ = roots.add(cert);
                }
                if !roots.is_empty() {
                    break;
                }
            }
            if roots.is_empty() {
                return Err(format!(
                    "no CA certificates found (SSL_CERT_FILE or {})",
                    candidates
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(config))
        })
        .clone()
}

/// The role names that grant `level`, for refusal messages.
fn roles_for(config: &AuthConfig, level: Level) -> String {
    match level {
        Level::Admin => format!("role {}", config.admin_role),
        Level::Editor => format!("role {} or {}", config.editor_role, config.admin_role),
        Level::Viewer => format!(
            "role {}, {} or {}",
            config.viewer_role, config.editor_role, config.admin_role
        ),
        Level::Public => "no role".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_levels() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(rule_for(&get, "/viewer/{*path}").level, Level::Public);
        assert_eq!(rule_for(&get, "/3d/{study}").level, Level::Public);
        assert_eq!(rule_for(&get, "/dicom-web/studies").level, Level::Viewer);
        assert_eq!(
            rule_for(&Method::HEAD, "/dicom-web/studies").level,
            Level::Viewer
        );
        assert_eq!(rule_for(&post, "/dicom-web/studies").level, Level::Editor);
        assert_eq!(rule_for(&post, "/dicom-web/stow").level, Level::Editor);
        assert_eq!(
            rule_for(
                &get,
                "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}"
            )
            .view,
            Some(View::Wado)
        );
        assert_eq!(rule_for(&get, "/api/v1/jobs").level, Level::Viewer);
        assert_eq!(
            rule_for(&post, "/liverseg.v1.Liverseg/GetJob").level,
            Level::Viewer
        );
        assert_eq!(
            rule_for(&post, "/liverseg.v1.Liverseg/SubmitSeries").level,
            Level::Editor
        );
        assert_eq!(
            rule_for(&post, "/liverseg.v1.Liverseg/ResubmitSegmentation").level,
            Level::Editor
        );
        assert_eq!(
            rule_for(&post, "/liverseg.v1.Liverseg/ReplayJob").level,
            Level::Admin
        );
        assert_eq!(
            rule_for(&post, "/liverseg.v1.Liverseg/ListDeadLetters").level,
            Level::Admin
        );
        assert_eq!(
            rule_for(&post, "/grpc.health.v1.Health/Check").level,
            Level::Viewer
        );
        assert_eq!(
            rule_for(
                &post,
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
            )
            .level,
            Level::Viewer
        );
        // Not listed: admin; unmatched (a 404 follows): any caller.
        assert_eq!(
            rule_for(&post, "/liverseg.v1.Liverseg/NewMethod").level,
            Level::Admin
        );
        assert_eq!(
            rule_for(&Method::DELETE, "/dicom-web/studies").level,
            Level::Admin
        );
        assert_eq!(
            rule_for(&get, "/liverseg.v1.Liverseg/GetJob").level,
            Level::Admin
        );
        assert_eq!(
            rule_for(&post, "/grpc.health.v1.Health/").level,
            Level::Admin
        );
        assert_eq!(rule_for(&get, "unmatched").level, Level::Viewer);
        assert!(Level::Admin > Level::Editor && Level::Editor > Level::Viewer);
    }

    #[test]
    fn objects_and_segments() {
        let wado = rule_for(
            &Method::GET,
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
        );
        let path = "/dicom-web/studies/1.2/series/1.2.3/instances/1.2.3.4/frames/1,2";
        assert_eq!(object_of(wado, path, "r"), "1.2.3.4");
        assert_eq!(segment_after(path, "frames"), Some("1,2"));
        let series = rule_for(&Method::GET, "/dicom-web/studies/{study}/series/{series}");
        assert_eq!(
            object_of(series, "/dicom-web/studies/1.2/series/1.2.3", "r"),
            "1.2.3"
        );
        let qido = rule_for(&Method::GET, "/dicom-web/studies/{study}/series");
        assert_eq!(
            object_of(qido, "/dicom-web/studies/1.2/series", "r"),
            "/dicom-web/studies/1.2/series"
        );
        let grpc = rule_for(&Method::POST, "/liverseg.v1.Liverseg/ReplayJob");
        assert_eq!(
            object_of(
                grpc,
                "/liverseg.v1.Liverseg/ReplayJob",
                "/liverseg.v1.Liverseg/ReplayJob"
            ),
            "/liverseg.v1.Liverseg/ReplayJob"
        );
    }

    #[test]
    fn roles_at_dotted_paths() {
        let claims = serde_json::json!({
            "roles": ["a", "b"],
            "realm_access": {"roles": ["liverseg-editor"]},
            "scope": "openid liverseg-viewer",
            "https://example.org/roles": ["x"],
            "deep": {"https://example.org/roles": ["y"]},
        });
        let at = |p: &str| lookup(&claims, p).map(roles_of).unwrap_or_default();
        assert_eq!(at("roles"), ["a", "b"]);
        assert_eq!(at("realm_access.roles"), ["liverseg-editor"]);
        assert_eq!(at("scope"), ["openid", "liverseg-viewer"]);
        assert_eq!(at("https://example.org/roles"), ["x"]);
        assert_eq!(at("deep.https://example.org/roles"), ["y"]);
        assert!(at("missing.path").is_empty());
        assert!(at("").is_empty());
    }

    #[test]
    fn bearer_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), Err(AuthError::Missing));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), Err(AuthError::Missing));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  a.b.c "),
        );
        assert_eq!(bearer(&h), Ok("a.b.c"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer"));
        assert!(matches!(bearer(&h), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn peers() {
        let socket: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(client_peer(&h, Some(socket)), "10.0.0.2:5000");
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.5, 10.0.0.1"),
        );
        assert_eq!(
            client_peer(&h, Some(socket)),
            "203.0.113.5 (via 10.0.0.2:5000)"
        );
        assert_eq!(client_peer(&HeaderMap::new(), None), "unknown");
    }

    #[test]
    fn jwks_keeps_only_asymmetric_signature_keys() {
        let jwks = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "alg": "RSA-OAEP", "n": "sXch", "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "RSA", "kid": "hs", "alg": "HS256", "n": "sXch", "e": "AQAB"},
            {"kty": "weird"}
        ]});
        let keys = parse_jwks(jwks.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("ec"));
        assert_eq!(keys[0].family, AlgorithmFamily::Ec);
        assert!(parse_jwks(br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).is_err());
        assert!(parse_jwks(b"not json").is_err());
    }

    #[test]
    fn refusals_answer_http_and_grpc() {
        let r = AuthError::Missing.response(None);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"liverseg\""
        );
        assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let r = AuthError::Invalid("the token has expired".into()).response(None);
        assert!(
            r.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("error=\"invalid_token\"")
        );
        let grpc = HeaderValue::from_static("application/grpc");
        let r = AuthError::Forbidden("admin".into()).response(Some(&grpc));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "7");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/grpc");
        let r = AuthError::Missing.response(Some(&grpc));
        assert_eq!(r.headers()["grpc-status"], "16");
    }
}
