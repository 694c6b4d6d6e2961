//! The gateway role: a read-only JSON API over jobs and series for
//! operators and dashboards.
//!
//! * `GET /api/v1/jobs?state=S&limit=N` newest first
//! * `GET /api/v1/jobs/{id}`
//! * `GET /api/v1/series/{uid}`

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use liverseg_core::{JobId, JobState};
use liverseg_store::MetadataStore;
use serde::Deserialize;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn MetadataStore>,
}

/// Serves the API on `listener` until `shutdown`.
pub async fn run(
    deps: Deps,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "gateway ready");
    }
    axum::serve(listener, router(deps))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

pub fn router(deps: Deps) -> Router {
    Router::new()
        .route("/api/v1/jobs", get(list_jobs))
        .route("/api/v1/jobs/{id}", get(get_job))
        .route("/api/v1/series/{uid}", get(get_series))
        .with_state(deps)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn unavailable(e: liverseg_store::StoreError) -> Response {
    tracing::warn!(error = %e, "metadata store failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "metadata store unavailable",
    )
}

#[derive(Deserialize)]
struct JobsQuery {
    state: Option<String>,
    limit: Option<i64>,
}

async fn list_jobs(State(deps): State<Deps>, Query(q): Query<JobsQuery>) -> Response {
    let state = match q.state.as_deref().map(str::parse::<JobState>).transpose() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    match deps.store.list_jobs(state, limit).await {
        Ok(jobs) => Json(jobs).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn get_job(State(deps): State<Deps>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<JobId>() else {
        return error(StatusCode::BAD_REQUEST, format!("{id:?} is not a job id"));
    };
    match deps.store.get_job(id).await {
        Ok(Some(job)) => Json(job).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such job"),
        Err(e) => unavailable(e),
    }
}

async fn get_series(State(deps): State<Deps>, Path(uid): Path<String>) -> Response {
    match deps.store.get_series(&uid).await {
        Ok(Some(s)) => Json(s).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such series"),
        Err(e) => unavailable(e),
    }
}
