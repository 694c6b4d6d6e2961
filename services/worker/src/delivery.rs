//! Delivery of a job's DICOM results to every configured destination:
//! C-STORE to each `AE@HOST:PORT`, STOW-RS to each DICOMweb root.
//!
//! Each destination is tracked on its own in the metadata store, so a
//! retry sends only to the ones still missing. Sending again is harmless:
//! result UIDs are deterministic, so the PACS stores the same instances.

use liverseg_core::config::{DeliveryConfig, DicomNode};
use liverseg_core::{DeliveryRecord, JobId, ResultObject};
use liverseg_dicom::scu::{SendOptions, send_files};
use liverseg_store::blob::FsBlobStore;
use liverseg_store::{MetadataStore, StoreError};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tracing::{Instrument, info, info_span, warn};

/// One configured destination.
enum Destination<'a> {
    CStore(&'a DicomNode),
    Stow(&'a str),
}

impl Destination<'_> {
    /// The name deliveries are recorded under.
    fn name(&self) -> String {
        match self {
            Destination::CStore(node) => node.to_string(),
            Destination::Stow(root) => root.to_string(),
        }
    }

    async fn send(
        &self,
        paths: &[PathBuf],
        calling_ae: &str,
        timeout: Duration,
        tls: &Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Result<(), String> {
        match self {
            Destination::CStore(node) => {
                let opts = SendOptions {
                    calling_ae_title: calling_ae.to_string(),
                    timeout,
                    tls: tls.clone(),
                    ..Default::default()
                };
                let report = send_files(paths, node, &opts)
                    .await
                    .map_err(|e| e.to_string())?;
                match report.failures.first() {
                    None => Ok(()),
                    Some(f) => Err(format!(
                        "{} of {} objects refused; first: {}",
                        report.failures.len(),
                        paths.len(),
                        f.reason
                    )),
                }
            }
            Destination::Stow(root) => crate::stow::store(root, paths, timeout)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// Sends the DICOM objects among `results` to every configured destination
/// that does not have them yet; returns the state of each configured one.
pub async fn deliver(
    config: &DeliveryConfig,
    calling_ae: &str,
    store: &dyn MetadataStore,
    blobs: &FsBlobStore,
    job: JobId,
    study_uid: &str,
    results: &[ResultObject],
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let objects: Vec<&ResultObject> = results.iter().filter(|r| r.is_dicom()).collect();
    if objects.is_empty() {
        return Ok(Vec::new());
    }
    let earlier = store.deliveries(job).await?;
    let paths: Result<Vec<PathBuf>, String> = objects
        .iter()
        .map(|o| blobs.path(&o.blob_key).map_err(|e| e.to_string()))
        .collect();
    let timeout = Duration::from_secs(config.timeout_seconds);
    // Read per delivery round (off the runtime: PEM files), so renewed
    // certificates are picked up; a broken TLS setting fails the C-STORE
    // destinations like an outage.
    let tls_config = config.clone();
    let tls =
        tokio::task::spawn_blocking(move || liverseg_dicom::tls::delivery_client(&tls_config))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
    let destinations = (config.destinations.iter().map(Destination::CStore))
        .chain(config.stow_urls.iter().map(|u| Destination::Stow(u)));
    let mut states = Vec::new();
    for destination in destinations {
        let name = destination.name();
        if let Some(done) = earlier
            .iter()
            .find(|d| d.destination == name && d.delivered)
        {
            states.push(done.clone());
            continue;
        }
        let protocol = match destination {
            Destination::CStore(_) => "c-store",
            Destination::Stow(_) => "stow-rs",
        };
        let span = info_span!(
            "delivery",
            destination = %name,
            protocol,
            objects = objects.len(),
            outcome = tracing::field::Empty,
        );
        let started = Instant::now();
        let outcome = match (&paths, &tls, &destination) {
            (Err(e), _, _) => Err(e.clone()),
            (_, Err(e), Destination::CStore(_)) => Err(format!("DICOM TLS: {e}")),
            (Ok(paths), tls, _) => {
                let tls = tls.clone().unwrap_or(None);
                destination
                    .send(paths, calling_ae, timeout, &tls)
                    .instrument(span.clone())
                    .await
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        liverseg_telemetry::metrics::delivery(protocol, outcome.is_ok());
        span.record(
            "outcome",
            if outcome.is_ok() {
                "delivered"
            } else {
                "failed"
            },
        );
        span.in_scope(|| match &outcome {
            Ok(()) => info!(seconds, "delivered"),
            Err(e) => warn!(error = %e, seconds, "delivery failed"),
        });
        store
            .append_audit(&liverseg_core::AuditRecord {
                at: liverseg_core::time::now_millis(),
                actor: calling_ae.to_string(),
                action: "send".into(),
                object: study_uid.to_string(),
                peer: name.clone(),
                outcome: match &outcome {
                    Ok(()) => "ok".into(),
                    Err(e) => format!("failed: {e}"),
                },
                detail: format!("job {job}: {} objects by {protocol}", objects.len()),
                ..Default::default()
            })
            .await?;
        let record = store
            .record_delivery(job, &name, outcome.err().as_deref())
            .await?;
        states.push(record);
    }
    Ok(states)
}
