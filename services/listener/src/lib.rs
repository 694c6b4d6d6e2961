//! The listener role: a DICOM C-STORE SCP beside the PACS.
//!
//! * [`access`]: who may associate (calling-AE allow-list, called AE).
//! * [`association`]: one association: C-ECHO, C-STORE, release, abort.
//!
//! Storing instances and completing series is `liverseg-ingest`'s work,
//! shared with the gateway's STOW-RS.

pub mod access;
pub mod association;

pub use liverseg_ingest::{Deps, completion, receive as ingest};

use liverseg_core::Config;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("accepting connections on {addr}: {source}")]
    Accept {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("recovering unfinished series and jobs at start-up: {0}")]
    Recover(String),
    #[error("DICOM TLS: {0}")]
    Tls(#[source] liverseg_dicom::tls::TlsError),
}

/// Serves DICOM on `listener` until `shutdown` is cancelled; associations in
/// progress are allowed to finish their current transfer.
pub async fn run(
    config: Arc<Config>,
    deps: Deps,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ListenerError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let tracker = completion::Tracker::new(config.clone(), deps.clone());
    tracker
        .recover()
        .await
        .map_err(|e| ListenerError::Recover(e.to_string()))?;
    let ticker = tokio::spawn(tracker.clone().run(shutdown.clone()));

    let l = &config.listener;
    let tls = if l.tls_enabled() {
        let client_ca =
            (!l.tls_client_ca.as_os_str().is_empty()).then_some(l.tls_client_ca.as_path());
        Some(
            liverseg_dicom::tls::server_config(&l.tls_cert, &l.tls_key, client_ca)
                .map_err(ListenerError::Tls)?,
        )
    } else {
        None
    };
    let ctx = Arc::new(association::Context::new(
        config.clone(),
        deps,
        tracker,
        tls.clone(),
    ));
    let slots = Arc::new(Semaphore::new(config.listener.max_associations as usize));
    info!(
        %addr,
        ae_title = %config.listener.ae_title,
        tls = tls.is_some(),
        client_certificates = !config.listener.tls_client_ca.as_os_str().is_empty(),
        "DICOM listener ready"
    );
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Running out of file descriptors must not end the service.
                Err(e) if is_transient_accept_error(&e) => {
                    warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
                Err(source) => return Err(ListenerError::Accept { addr, source }),
            },
        };
        let _ = socket.set_nodelay(true);
        let ctx = ctx.clone();
        let config = config.clone();
        let tls_on = tls.is_some();
        let permit = slots.clone().try_acquire_owned();
        // Each association starts a trace; the series it brings continue it
        // through completion, the queue, the worker and delivery.
        let span = tracing::info_span!(
            parent: None,
            "dicom.association",
            %peer,
            calling_ae = tracing::field::Empty,
            instances = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        sessions.spawn(
            async move {
                if let Err(low) = liverseg_ingest::space::check(&config).await {
                    liverseg_telemetry::metrics::association("low_disk");
                    tracing::Span::current().record("outcome", "low disk");
                    warn!(%low, "association rejected");
                    association::reject_transient(socket, tls_on).await;
                    return;
                }
                match permit {
                    Ok(permit) => {
                        ctx.serve(socket).await;
                        drop(permit);
                    }
                    Err(_) => {
                        liverseg_telemetry::metrics::association("busy");
                        tracing::Span::current().record("outcome", "busy");
                        warn!("association rejected: concurrent association limit reached");
                        association::reject_transient(socket, tls_on).await
                    }
                }
            }
            .instrument(span),
        );
        // Reap finished sessions so the set does not grow without bound.
        while sessions.try_join_next().is_some() {}
    }
    info!("DICOM listener stopping; waiting for open associations");
    let drain = async { while sessions.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(30), drain)
        .await
        .is_err()
    {
        warn!("associations still open after 30 s; closing them");
    }
    ticker.abort();
    Ok(())
}

fn is_transient_accept_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || e.raw_os_error().is_some_and(|c| c == 24 || c == 23) // EMFILE, ENFILE
}
