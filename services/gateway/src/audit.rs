//! The gateway's entries in the append-only audit trail
//! (`MetadataStore::append_audit`, exported by `liverseg audit export`).
//!
//! Requests never wait for the store: records go through a channel to one
//! writer task, which appends them in the order they were made. A failed
//! append is tried again, then logged as an error with the record (never
//! dropped silently); at shutdown the writer drains the channel after the
//! last request has been answered.
//!
//! What the gateway records:
//!
//! | action | when | object | by |
//! |---|---|---|---|
//! | `view` | each WADO-RS retrieval (instances, metadata, frames, rendered, bulk data), each QIDO-RS search, the liver mesh, gRPC FetchResult | the most specific UID / the path searched / the study / the job id | [`crate::auth`] middleware; FetchResult handler |
//! | `receive` | a STOW-RS or gRPC SubmitSeries upload | the study UID(s) | the handlers |
//! | `resubmit` | a SEG taken (or refused) as a correction | the SEG's SOP Instance UID | the handlers |
//! | `replay` | gRPC ReplayJob | the job id | the handler |
//! | (what was attempted) | a 401/403 refusal, outcome `refused: ...` | the UID, path or gRPC method | the middleware |

use crate::auth::Caller;
use liverseg_core::AuditRecord;
use liverseg_store::MetadataStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

/// Delays before the second and third attempt of an append.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(500)];

/// Hands records to the writer; cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    tx: mpsc::UnboundedSender<AuditRecord>,
    pending: Arc<AtomicUsize>,
}

/// Appends the records an [`Auditor`] hands over.
pub struct Writer {
    rx: mpsc::UnboundedReceiver<AuditRecord>,
    store: Arc<dyn MetadataStore>,
    pending: Arc<AtomicUsize>,
}

/// An auditor and the writer that must be run for it.
pub fn channel(store: Arc<dyn MetadataStore>) -> (Auditor, Writer) {
    let (tx, rx) = mpsc::unbounded_channel();
    let pending = Arc::new(AtomicUsize::new(0));
    (
        Auditor {
            tx,
            pending: pending.clone(),
        },
        Writer { rx, store, pending },
    )
}

impl Auditor {
    /// Records what `caller` did.
    pub fn record(&self, caller: &Caller, action: &str, object: &str, outcome: &str, detail: &str) {
        self.append(AuditRecord {
            id: 0,
            at: liverseg_core::time::now_millis(),
            actor: caller.subject.clone(),
            action: action.to_string(),
            object: object.to_string(),
            peer: caller.peer.clone(),
            outcome: outcome.to_string(),
            detail: detail.to_string(),
        });
    }

    pub fn append(&self, record: AuditRecord) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if let Err(mpsc::error::SendError(record)) = self.tx.send(record) {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            error!(
                actor = %record.actor,
                action = %record.action,
                object = %record.object,
                peer = %record.peer,
                outcome = %record.outcome,
                "audit record lost: the audit writer has stopped"
            );
        }
    }

    /// Records handed over and not yet written (or given up on).
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }
}

impl Writer {
    /// Appends records until `stop`, then whatever is still queued.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                record = self.rx.recv() => match record {
                    Some(record) => self.write(record).await,
                    None => return,
                },
                _ = stop.cancelled() => break,
            }
        }
        self.rx.close();
        while let Some(record) = self.rx.recv().await {
            self.write(record).await;
        }
    }

    async fn write(&self, record: AuditRecord) {
        let mut attempt = 0;
        loop {
            match self.store.append_audit(&record).await {
                Ok(_) => break,
                Err(e) if attempt < RETRY_DELAYS.len() => {
                    warn!(error = %e, action = %record.action, "appending to the audit trail failed; trying again");
                    tokio::time::sleep(RETRY_DELAYS[attempt]).await;
                    attempt += 1;
                }
                Err(e) => {
                    error!(
                        error = %e,
                        at = record.at,
                        actor = %record.actor,
                        action = %record.action,
                        object = %record.object,
                        peer = %record.peer,
                        outcome = %record.outcome,
                        detail = %record.detail,
                        "audit record could not be written to the metadata store"
                    );
                    break;
                }
            }
        }
        self.pending.fetch_sub(1, Ordering::SeqCst);
    }
}
