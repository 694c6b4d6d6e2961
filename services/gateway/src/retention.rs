//! Retention: studies untouched for `gateway.retention_days` are removed
//! from the index and their files deleted, hourly. Jobs, segmentation
//! versions (with their Dice and volumes) and audit events stay: they are
//! the record of what was done.

use crate::AppState;
use liverseg_core::{AuditEvent, time::now_millis};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub async fn run(state: AppState, shutdown: CancellationToken) {
    let days = state.config.gateway.retention_days;
    if days == 0 {
        return;
    }
    loop {
        if let Err(e) = sweep(&state, days).await {
            tracing::warn!(error = %e, "retention sweep failed; will retry");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

/// Removes the studies older than `days`; returns how many.
pub async fn sweep(state: &AppState, days: u32) -> Result<usize, liverseg_store::StoreError> {
    let cutoff = now_millis() - i64::from(days) * 86_400_000;
    let store = &state.deps.store;
    let expired = store.studies_received_before(cutoff).await?;
    for study in &expired {
        let keys = store.forget_study(study).await?;
        let blobs = state.deps.blobs.clone();
        let n = keys.len();
        let _ = tokio::task::spawn_blocking(move || {
            for k in keys {
                let _ = blobs.remove(&k);
            }
        })
        .await;
        store
            .record_event(&AuditEvent {
                at: now_millis(),
                kind: "study.expired".into(),
                subject: study.clone(),
                detail: format!("{n} instances removed after {days} days"),
            })
            .await?;
        tracing::info!(instances = n, "study removed by retention");
    }
    Ok(expired.len())
}
