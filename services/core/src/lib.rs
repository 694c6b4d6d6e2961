//! Shared vocabulary of liverseg: identifiers, domain records, the typed
//! configuration and its layered loader. Every other crate depends on this
//! one; it depends on no service crate.

pub mod assessment;
pub mod config;
pub mod domain;
pub mod geometry;
pub mod time;

pub use assessment::{Assessment, Coverage, Flag, NoLiver, NoLiverReason, Side};
pub use config::{Config, ConfigError};
pub use domain::*;
