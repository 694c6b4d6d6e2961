//! `liverseg serve`: opens the backends named by the configuration, binds
//! every socket up front (so a taken port fails at start-up, not later),
//! starts the chosen roles and stops them on SIGINT or SIGTERM.

use crate::admin::{self, Readiness};
use crate::cli::Role;
use anyhow::Context;
use liverseg_core::Config;
use liverseg_core::config::redact_url;
use liverseg_store::blob::FsBlobStore;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

pub async fn serve(config: Arc<Config>, mut roles: Vec<Role>) -> anyhow::Result<ExitCode> {
    roles.sort();
    roles.dedup();
    let role_names: Vec<&str> = roles.iter().map(|r| r.name()).collect();
    let telemetry = liverseg_telemetry::init(&config, &role_names.join(","))?;
    let data_dir = &config.storage.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating storage.data_dir {}", data_dir.display()))?;

    let store = liverseg_store::open(&config.storage.metadata_url, data_dir)
        .await
        .with_context(|| {
            format!(
                "opening metadata store {:?}",
                redact_url(&config.storage.metadata_url)
            )
        })?;
    let queue = liverseg_queue::open(&config.queue.url, data_dir, queue_options(&config))
        .await
        .with_context(|| format!("opening queue {:?}", redact_url(&config.queue.url)))?;
    let blobs = FsBlobStore::open(data_dir).context("opening the blob store")?;
    info!(
        roles = ?roles,
        traces = if telemetry.exporting() { "otlp" } else { "off" },
        metadata = store.backend(),
        queue = queue.backend(),
        data_dir = %data_dir.display(),
        "liverseg {} starting",
        env!("CARGO_PKG_VERSION")
    );

    warn_if_open(&config, &roles);

    let bind = |addr: std::net::SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {what} to {addr}"))
    };
    let shutdown = CancellationToken::new();
    let readiness = Readiness::new(store.clone(), queue.clone(), telemetry.metrics_handle());
    let mut tasks = tokio::task::JoinSet::new();

    if roles.contains(&Role::Listener) {
        let socket = bind(config.listener.bind, "listener.bind").await?;
        let deps = liverseg_listener::Deps {
            store: store.clone(),
            queue: queue.clone(),
            blobs: blobs.clone(),
        };
        let (config, shutdown, ready) =
            (config.clone(), shutdown.clone(), readiness.role("listener"));
        tasks.spawn(async move {
            ready.set();
            liverseg_listener::run(config, deps, socket, shutdown)
                .await
                .map_err(|e| anyhow::anyhow!("listener: {e}"))
        });
    }
    if roles.contains(&Role::Gateway) {
        let socket = bind(config.gateway.bind, "gateway.bind").await?;
        let deps = liverseg_gateway::Deps {
            store: store.clone(),
            queue: queue.clone(),
            blobs: blobs.clone(),
        };
        let (config, shutdown, ready) =
            (config.clone(), shutdown.clone(), readiness.role("gateway"));
        tasks.spawn(async move {
            ready.set();
            liverseg_gateway::run(config, deps, socket, shutdown)
                .await
                .map_err(|e| anyhow::anyhow!("gateway: {e}"))
        });
    }
    if roles.contains(&Role::Worker) {
        // Loading and optimising the network takes a moment: off the runtime.
        let model = tokio::task::spawn_blocking(liverseg_inference::Model::builtin)
            .await
            .context("loading the model")??;
        info!(model = %model.manifest.name, version = %model.manifest.version, "model loaded");
        let pipeline = Arc::new(liverseg_worker::Segmenter::new(
            Arc::new(model),
            config.results.mesh_max_triangles as usize,
        ));
        let deps = liverseg_worker::Deps {
            store: store.clone(),
            queue: queue.clone(),
            blobs: blobs.clone(),
        };
        let (config, shutdown, ready) =
            (config.clone(), shutdown.clone(), readiness.role("worker"));
        tasks.spawn(async move {
            ready.set();
            liverseg_worker::run(config, deps, pipeline, shutdown).await;
            Ok(())
        });
    }
    let admin_socket = bind(config.admin.bind, "admin.bind").await?;
    info!(addr = %config.admin.bind, "admin endpoints /healthz, /readyz and /metrics ready");
    tasks.spawn(admin::run(admin_socket, readiness, shutdown.clone()));

    let mut failed = false;
    tokio::select! {
        _ = stop_signal() => info!("stop signal received; shutting down"),
        Some(ended) = tasks.join_next() => {
            // A role ended on its own: that is a failure; stop the others.
            failed = true;
            match ended {
                Ok(Err(e)) => error!("{e:#}"),
                Ok(Ok(())) => error!("a role stopped unexpectedly"),
                Err(e) => error!("a role panicked: {e}"),
            }
        }
    }
    shutdown.cancel();
    while let Some(ended) = tasks.join_next().await {
        if let Ok(Err(e)) = ended {
            failed = true;
            error!("{e:#}");
        }
    }
    info!("stopped");
    // Spans still buffered go out before the process ends.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub fn queue_options(config: &Config) -> liverseg_queue::QueueOptions {
    liverseg_queue::QueueOptions {
        visibility_timeout: Duration::from_secs(config.queue.visibility_timeout_seconds),
        stream: config.queue.stream.clone(),
        group: config.queue.group.clone(),
    }
}

async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Says loudly when a started role runs without its protection: the
/// laptop default (loopback, no TLS, no tokens) and explicit opt-outs.
fn warn_if_open(config: &Config, roles: &[Role]) {
    let l = &config.listener;
    if roles.contains(&Role::Listener) && !l.tls_enabled() {
        if l.bind.ip().is_loopback() {
            tracing::warn!(
                bind = %l.bind,
                "SECURITY: the DICOM listener accepts plain TCP without TLS (laptop mode: loopback only); set listener.tls_cert and listener.tls_key before exposing it"
            );
        } else {
            tracing::warn!(
                bind = %l.bind,
                "SECURITY: the DICOM listener accepts plain TCP on the network because listener.require_tls = false; patient data crosses the network unencrypted"
            );
        }
    }
    let a = &config.auth;
    if roles.contains(&Role::Gateway) && !a.enabled() {
        if config.gateway.bind.ip().is_loopback() {
            tracing::warn!(
                bind = %config.gateway.bind,
                "SECURITY: DICOMweb and gRPC answer without authentication (laptop mode: loopback only); set auth.jwks, auth.issuer and auth.audience before exposing them"
            );
        } else {
            tracing::warn!(
                bind = %config.gateway.bind,
                "SECURITY: DICOMweb and gRPC answer anyone on the network because auth.required = false"
            );
        }
    }
    if roles.contains(&Role::Worker)
        && !config.delivery.tls
        && !config.delivery.destinations.is_empty()
    {
        tracing::warn!("SECURITY: results go to the PACS over plain DICOM (delivery.tls = false)");
    }
}
