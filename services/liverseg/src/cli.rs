//! Command-line interface.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "liverseg",
    version,
    about = "Liver segmentation beside the PACS"
)]
pub struct Args {
    /// TOML file layered over the built-in defaults (environment variables
    /// LIVERSEG__SECTION__KEY are layered over both).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service.
    Serve {
        /// Roles this process runs (comma list).
        #[arg(long, value_delimiter = ',', default_value = "listener,worker,gateway")]
        roles: Vec<Role>,
    },
    /// Send DICOM files (C-STORE) to a remote AE (over TLS with delivery.tls).
    Send {
        /// Files or folders (searched recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Destination, as AE@HOST:PORT.
        #[arg(long, value_name = "AE@HOST:PORT")]
        to: liverseg_dicom::scu::Target,
        /// Our AE title (default: listener.ae_title).
        #[arg(long)]
        calling_ae: Option<String>,
    },
    /// Check that a remote AE answers (C-ECHO).
    Echo {
        #[arg(value_name = "AE@HOST:PORT")]
        target: liverseg_dicom::scu::Target,
    },
    /// Jobs in the metadata store.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Segment the liver in one CT series (a folder of DICOM files) or a
    /// NIfTI file; writes OUT/mask.nii.gz and OUT/summary.json.
    Segment {
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// An ONNX model with its manifest beside it (default: the built-in model).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Threads running slices in parallel (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Run the network on every slice instead of first finding the
        /// liver's extent with a coarse pass (every 10 mm).
        #[arg(long)]
        every_slice: bool,
    },
    /// Compare a predicted liver mask with the truth: Dice, HD95, volumes.
    /// Each may be a NIfTI mask, a DICOM SEG or a folder of per-slice DICOM masks.
    Eval {
        #[arg(long)]
        pred: PathBuf,
        #[arg(long)]
        truth: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The append-only audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Ask the running service's admin endpoint (admin.bind) whether it is
    /// ready; exit 0 when it is, 1 otherwise (a container health check).
    Health {
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Print the effective configuration (secrets redacted).
    Config,
    /// Print the version.
    Version,
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Only jobs in this state (received, queued, running, done, failed, dead).
        #[arg(long)]
        state: Option<liverseg_core::JobState>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One job with its results and deliveries, as JSON.
    Show { id: liverseg_core::JobId },
    /// Run a dead (or failed) job again: its results are kept when they
    /// exist, and only destinations that lack them are sent to.
    Replay { id: liverseg_core::JobId },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Every record after id AFTER, oldest first, as JSON lines on standard
    /// output (one object per line: id, at, actor, action, object, peer,
    /// outcome, detail). Resume an export with the last id it printed.
    Export {
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Listener,
    Worker,
    Gateway,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Listener => "listener",
            Role::Worker => "worker",
            Role::Gateway => "gateway",
        }
    }
}
