//! Admin HTTP endpoints for Kubernetes probes and Prometheus.
//!
//! * `/healthz`: the process is alive (200 while the runtime answers).
//! * `/readyz`: every started role is up and the metadata store and queue
//!   answer a round trip; 503 with the failing checks otherwise.
//! * `/metrics`: this process's counters and histograms, plus jobs by
//!   state and the queue's depth and lag read from the shared backends at
//!   scrape time (so every replica reports the same values for those).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use liverseg_queue::JobQueue;
use liverseg_store::MetadataStore;
use liverseg_telemetry::metrics as telemetry;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Each started role and whether it serves yet.
type RoleFlags = Arc<Mutex<Vec<(&'static str, Arc<AtomicBool>)>>>;

#[derive(Clone)]
pub struct Readiness {
    store: Arc<dyn MetadataStore>,
    queue: Arc<dyn JobQueue>,
    roles: RoleFlags,
    metrics: PrometheusHandle,
}

/// Set by a role once it serves.
pub struct RoleFlag(Arc<AtomicBool>);

impl RoleFlag {
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Readiness {
    pub fn new(
        store: Arc<dyn MetadataStore>,
        queue: Arc<dyn JobQueue>,
        metrics: PrometheusHandle,
    ) -> Self {
        Readiness {
            store,
            queue,
            roles: Arc::default(),
            metrics,
        }
    }

    pub fn role(&self, name: &'static str) -> RoleFlag {
        let flag = Arc::new(AtomicBool::new(false));
        self.roles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name, flag.clone()));
        RoleFlag(flag)
    }
}

pub async fn run(
    listener: TcpListener,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(readiness);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

/// Refreshes the gauges read from the backends, then renders everything.
/// A backend that does not answer leaves its gauges at their last values
/// (readiness reports the failure).
async fn metrics(State(r): State<Readiness>) -> impl IntoResponse {
    let limit = Duration::from_secs(2);
    if let Ok(Ok(counts)) = tokio::time::timeout(limit, r.store.job_counts()).await {
        telemetry::jobs_by_state(counts.iter().map(|(s, n)| (s.as_str(), *n)));
    }
    let queue = async {
        let stats = r.queue.stats().await?;
        let oldest = r.queue.oldest_age().await?;
        Ok::<_, liverseg_queue::QueueError>((stats, oldest))
    };
    if let Ok(Ok((stats, oldest))) = tokio::time::timeout(limit, queue).await {
        telemetry::queue(stats.waiting, stats.in_flight, oldest);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        r.metrics.render(),
    )
}

async fn ready(State(r): State<Readiness>) -> (StatusCode, Json<serde_json::Value>) {
    let limit = Duration::from_secs(2);
    let check = |ok: Result<Result<(), String>, tokio::time::error::Elapsed>| match ok {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => e,
        Err(_) => "timed out".to_string(),
    };
    let store = check(
        tokio::time::timeout(limit, async {
            r.store.ping().await.map_err(|e| e.to_string())
        })
        .await,
    );
    let queue = check(
        tokio::time::timeout(limit, async {
            r.queue.ping().await.map_err(|e| e.to_string())
        })
        .await,
    );
    let mut checks = serde_json::Map::new();
    checks.insert(format!("metadata ({})", r.store.backend()), store.into());
    checks.insert(format!("queue ({})", r.queue.backend()), queue.into());
    for (name, flag) in r.roles.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let state = if flag.load(Ordering::Acquire) {
            "ok"
        } else {
            "starting"
        };
        checks.insert(format!("role {name}"), state.into());
    }
    let all_ok = checks.values().all(|v| v == "ok");
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({ "ready": all_ok, "checks": checks })),
    )
}
