//! Liver segmentation, pure and synchronous: a CT volume in patient space
//! goes in, a liver mask on the same grid comes out.
//!
//! - [`grid`]: where voxels lie (LPS) and their canonical layout;
//! - [`preprocess`]: the network's 2.5D input window and the way back;
//! - [`model`]: the manifest and the tract-onnx runner;
//! - [`segment`]: slices in parallel, then [`postprocess`] in 3D and
//!   [`assess`]: is it a liver, is it whole, was the network sure;
//! - [`metrics`]: Dice, HD95 and volumes; [`nifti`]: NIfTI-1 I/O.

pub mod assess;
pub mod grid;
pub mod metrics;
pub mod model;
pub mod nifti;
pub mod postprocess;
pub mod preprocess;
pub mod segment;

pub use grid::Grid;
pub use model::{Manifest, Model};
pub use segment::{Segmentation, segment};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Input { path: PathBuf, reason: String },
    #[error("{0}")]
    NotAxial(String),
    #[error("volume shape: {0}")]
    Shape(String),
    #[error("{what}: model manifest: {reason}")]
    Manifest { what: String, reason: String },
    #[error("{what}: {reason}")]
    Model { what: String, reason: String },
}
