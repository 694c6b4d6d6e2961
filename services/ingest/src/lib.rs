//! How DICOM objects enter liverseg, whichever door they use: the
//! listener's C-STORE, the gateway's STOW-RS and its gRPC upload all hand
//! their files to this crate, so an instance is stored, checked and turned
//! into work the same way.
//!
//! * [`receive`]: one instance: temporary file, checks, duplicate policy,
//!   atomic commit, metadata record, all before success is answered.
//! * [`completion`]: when a series is complete, its sanity checks and the
//!   job it becomes.
//! * [`correction`]: a segmentation sent back by a person becomes a new
//!   version of the liver segmentation of its CT series.

pub mod completion;
pub mod correction;
pub mod receive;
pub mod space;

use liverseg_queue::JobQueue;
use liverseg_store::{MetadataStore, blob::FsBlobStore};
use std::sync::Arc;

/// What ingestion needs from the outside world.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn MetadataStore>,
    pub queue: Arc<dyn JobQueue>,
    pub blobs: FsBlobStore,
}
