//! The gateway role: everything people and programs reach over HTTP, on one
//! port (`gateway.bind`).
//!
//! * [`dicomweb`]: DICOMweb under `/dicom-web` (QIDO-RS, WADO-RS, STOW-RS,
//!   rendered PNG with the liver overlay) for OHIF and PACS.
//! * [`grpc`]: the `liverseg.v1` gRPC API, health and reflection, with
//!   grpc-web for browsers; told apart from HTTP by its content type.
//! * [`api`]: the JSON API over jobs, series and segmentation versions,
//!   and the liver mesh of a study.
//! * [`viewer`]: the prebuilt OHIF at `/viewer` and the 3D liver page at
//!   `/3d/{study}`.
//! * [`retention`]: removes studies older than `gateway.retention_days`.
//! * [`auth`]: bearer tokens (OIDC JWTs) and roles, one middleware over all
//!   of the above; [`audit`]: views, uploads, corrections, replays and
//!   refusals appended to the audit trail.
//!
//! Uploads (STOW-RS, gRPC) are stored by `liverseg-ingest`, exactly as the
//! listener stores a C-STORE, so a series that arrives by either door is
//! segmented the same way.

pub mod api;
pub mod audit;
pub mod auth;
pub mod dicomweb;
pub mod error;
pub mod grpc;
pub mod retention;
pub mod viewer;

use axum::response::Response;
use liverseg_core::Config;
use liverseg_ingest::completion::Tracker;
use liverseg_ingest::receive::Ingest;
use liverseg_queue::JobQueue;
use liverseg_store::{MetadataStore, blob::FsBlobStore};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What the gateway needs from the outside world.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn MetadataStore>,
    pub queue: Arc<dyn JobQueue>,
    pub blobs: FsBlobStore,
}

/// State shared by every handler.
pub struct Shared {
    pub config: Arc<Config>,
    pub deps: Deps,
    /// Stores uploaded instances (STOW-RS, gRPC).
    pub ingest: Ingest,
    /// Turns uploaded CT series into jobs once they stop growing.
    pub tracker: Tracker,
    pub metadata: dicomweb::metadata::Cache,
    /// The port the gateway listens on, for absolute URLs when a client's
    /// Host header leaves the port out.
    pub port: u16,
    /// Checks bearer tokens; `None` when `auth.jwks` is empty.
    pub auth: Option<Arc<auth::Authenticator>>,
    /// Appends to the audit trail without holding up requests.
    pub audit: audit::Auditor,
}

pub type AppState = Arc<Shared>;

impl Shared {
    pub fn new(
        config: Arc<Config>,
        deps: Deps,
        port: u16,
        auth: Option<Arc<auth::Authenticator>>,
        audit: audit::Auditor,
    ) -> AppState {
        let ingest_deps = liverseg_ingest::Deps {
            store: deps.store.clone(),
            queue: deps.queue.clone(),
            blobs: deps.blobs.clone(),
        };
        Arc::new(Shared {
            ingest: Ingest::new(config.clone(), ingest_deps.clone()),
            tracker: Tracker::new(config.clone(), ingest_deps),
            metadata: dicomweb::metadata::Cache::new(64),
            port,
            auth,
            audit,
            config,
            deps,
        })
    }

    /// The ingestion dependencies (corrections are submitted with them).
    pub fn ingest_deps(&self) -> liverseg_ingest::Deps {
        liverseg_ingest::Deps {
            store: self.deps.store.clone(),
            queue: self.deps.queue.clone(),
            blobs: self.deps.blobs.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
    #[error("recovering unfinished uploads at start-up: {0}")]
    Recover(String),
    #[error("authentication: {0}")]
    Auth(String),
}

/// How long shutdown waits for the audit records still queued.
const AUDIT_DRAIN: Duration = Duration::from_secs(10);

/// Serves the gateway on `listener` until `shutdown`.
pub async fn run(
    config: Arc<Config>,
    deps: Deps,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let auth = if config.auth.enabled() {
        Some(Arc::new(
            auth::Authenticator::start(&config.auth)
                .await
                .map_err(GatewayError::Auth)?,
        ))
    } else {
        None
    };
    let (auditor, writer) = audit::channel(deps.store.clone());
    let audit_stop = CancellationToken::new();
    let mut audit_writer = tokio::spawn(writer.run(audit_stop.clone()));
    let state = Shared::new(config, deps, port, auth, auditor.clone());
    state
        .tracker
        .recover()
        .await
        .map_err(|e| GatewayError::Recover(e.to_string()))?;
    let completion = tokio::spawn(state.tracker.clone().run(shutdown.clone()));
    let sweeper = tokio::spawn(retention::run(state.clone(), shutdown.clone()));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "gateway ready (DICOMweb /dicom-web, gRPC, /viewer, /api/v1)");
    }
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(GatewayError::Serve);
    completion.abort();
    sweeper.abort();
    // Every request has been answered: write what they recorded.
    audit_stop.cancel();
    if tokio::time::timeout(AUDIT_DRAIN, &mut audit_writer)
        .await
        .is_err()
    {
        tracing::error!(
            pending = auditor.pending(),
            "audit records were still unwritten at shutdown"
        );
        audit_writer.abort();
    }
    served
}

/// Every route of the gateway, each request counted, traced and
/// authenticated (the innermost of the two layers: refusals are counted
/// and traced too).
pub fn router(state: AppState) -> axum::Router {
    let http = axum::Router::new()
        .merge(api::router(state.clone()))
        .nest("/dicom-web", dicomweb::router(state.clone()))
        .merge(viewer::router(state.clone()));
    grpc::with_grpc(state.clone(), http)
        .layer(axum::middleware::from_fn_with_state(
            state,
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(observe))
}

/// Counts each request by route template, method and status, and runs it
/// in a root `http.request` span: an upload (STOW-RS, gRPC) starts the
/// trace its series continues. The viewer's static files are counted but
/// not traced (hundreds per page load).
async fn observe(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = route_label(&request);
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = if route.starts_with("/viewer") || route.starts_with("/assets") {
        next.run(request).await
    } else {
        let span = tracing::info_span!(
            parent: None,
            "http.request",
            http.route = %route,
            http.method = %method,
            http.status = tracing::field::Empty,
        );
        let response = next.run(request).instrument(span.clone()).await;
        span.record("http.status", response.status().as_u16());
        response
    };
    liverseg_telemetry::metrics::http_request(
        route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The route template (`/dicom-web/studies/{study}/series`), never the
/// path itself, so UIDs never become label values. gRPC calls are named by
/// service and method, which come from a fixed set.
pub(crate) fn route_label(request: &axum::extract::Request) -> String {
    let Some(matched) = request.extensions().get::<axum::extract::MatchedPath>() else {
        return "unmatched".into();
    };
    let matched = matched.as_str();
    if let Some(service) = matched.strip_suffix("/{*method}") {
        let method = request
            .uri()
            .path()
            .strip_prefix(service)
            .and_then(|m| m.strip_prefix('/'))
            .unwrap_or("");
        if !method.is_empty()
            && method.len() <= 64
            && method.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return format!("{service}/{method}");
        }
    }
    matched.to_string()
}
