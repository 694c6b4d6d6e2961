//! DICOM building blocks for liverseg, free of service concerns:
//!
//! * [`dimse`]: DIMSE command sets (C-ECHO, C-STORE) built and parsed by hand,
//!   since dicom-ul stops at the upper layer.
//! * [`scu`]: a C-STORE SCU (`liverseg send`, and results back to the PACS).
//! * [`instance`]: reading what the service needs from a received instance,
//!   and writing a Part 10 header in front of the bytes as received.
//! * [`series`]: geometry of a series and the sanity checks a CT series must
//!   pass before it becomes a job.
//! * [`structure`]: a bounded walk over encoded elements that refuses
//!   deep nesting, lengths past the data and cut-short pixel data before
//!   dicom-rs reads a data set.
//! * [`sop`] and [`uid`]: SOP classes, transfer syntaxes, UID hygiene.
//! * [`seg`]: reading Segmentation objects (truth masks, corrections) and
//!   placing them on a series.
//! * [`repair`]: lenient reading of carelessly written objects and the
//!   fixes that are safe to make.
//! * [`derived`]: writing the SEG, Encapsulated STL and volume SR that go
//!   back to the PACS.

pub mod derived;
pub mod dimse;
pub mod instance;
pub mod repair;
pub mod scu;
pub mod seg;
pub mod series;
pub mod sop;
pub mod structure;
pub mod tls;
pub mod uid;
#[cfg(feature = "pixeldata")]
pub mod volume;

/// The pixel codecs, for callers that decode frames themselves.
#[cfg(feature = "pixeldata")]
pub use dicom_pixeldata;
