//! Delivery of a job's DICOM results to every configured destination:
//! C-STORE to each `AE@HOST:PORT`, STOW-RS to each DICOMweb root.
//!
//! Each destination is tracked on its own in the metadata store, so a
//! retry sends only to the ones still missing. Sending again is harmless:
//! result UIDs are deterministic, so the PACS stores the same instances.

use liverseg_core::config::DeliveryConfig;
use liverseg_core::{DeliveryRecord, JobId, ResultObject};
use liverseg_dicom::scu::{SendOptions, send_files};
use liverseg_store::blob::FsBlobStore;
use liverseg_store::{MetadataStore, StoreError};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tracing::{Instrument, info, info_span, warn};

/// Sends the DICOM objects among `results` wherever they have not arrived
/// yet and returns the state of every destination.
pub async fn deliver(
    config: &DeliveryConfig,
    calling_ae: &str,
    store: &dyn MetadataStore,
    blobs: &FsBlobStore,
    job: JobId,
    results: &[ResultObject],
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let objects: Vec<&ResultObject> = results.iter().filter(|r| r.is_dicom()).collect();
    if objects.is_empty() {
        return Ok(Vec::new());
    }
    let done: Vec<String> = store
        .deliveries(job)
        .await?
        .into_iter()
        .filter(|d| d.delivered)
        .map(|d| d.destination)
        .collect();
    let paths: Result<Vec<PathBuf>, String> = objects
        .iter()
        .map(|o| blobs.path(&o.blob_key).map_err(|e| e.to_string()))
        .collect();
    let timeout = Duration::from_secs(config.timeout_seconds);
    let mut states = Vec::new();
    for node in &config.destinations {
        let name = node.to_string();
        if done.contains(&name) {
            continue;
        }
        let span = info_span!("delivery", destination = %name, protocol = "c-store", objects = objects.len());
        let started = Instant::now();
        let outcome = match &paths {
            Err(e) => Err(e.clone()),
            Ok(paths) => {
                let opts = SendOptions {
                    calling_ae_title: calling_ae.to_string(),
                    timeout,
                    ..Default::default()
                };
                c_store(paths, node, &opts).instrument(span.clone()).await
            }
        };
        states.push(record(store, job, &name, outcome, started, &span).await?);
    }
    for root in &config.stow_urls {
        if done.contains(root) {
            continue;
        }
        let span = info_span!("delivery", destination = %root, protocol = "stow-rs", objects = objects.len());
        let started = Instant::now();
        let outcome = match &paths {
            Err(e) => Err(e.clone()),
            Ok(paths) => crate::stow::store(root, paths, timeout)
                .instrument(span.clone())
                .await
                .map_err(|e| e.to_string()),
        };
        states.push(record(store, job, root, outcome, started, &span).await?);
    }
    Ok(states)
}

async fn c_store(
    paths: &[PathBuf],
    node: &liverseg_dicom::scu::Target,
    opts: &SendOptions,
) -> Result<(), String> {
    let report = send_files(paths, node, opts)
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

async fn record(
    store: &dyn MetadataStore,
    job: JobId,
    destination: &str,
    outcome: Result<(), String>,
    started: Instant,
    span: &tracing::Span,
) -> Result<DeliveryRecord, StoreError> {
    let seconds = started.elapsed().as_secs_f64();
    let _entered = span.enter();
    match &outcome {
        Ok(()) => info!(seconds, "delivered"),
        Err(e) => warn!(error = %e, seconds, "delivery failed"),
    }
    drop(_entered);
    store
        .record_delivery(job, destination, outcome.err().as_deref())
        .await
}
