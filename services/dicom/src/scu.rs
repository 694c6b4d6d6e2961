//! A C-STORE SCU: sends Part 10 files to a remote AE, each data set exactly
//! as stored (no transcoding), over one association.

use crate::dimse;
use dicom_ul::Pdu;
use dicom_ul::association::client::ClientAssociationOptions;
use dicom_ul::pdu::{PDataValueType, PresentationContextResultReason};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A remote application entity, written `AE@HOST:PORT`.
pub use liverseg_core::config::DicomNode as Target;

#[derive(Debug, Clone)]
pub struct SendOptions {
    pub calling_ae_title: String,
    pub max_pdu_length: u32,
    pub timeout: Duration,
    /// DICOM TLS (see [`crate::tls::client_config`]); `None`: plain TCP.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            calling_ae_title: "LIVERSEG".into(),
            max_pdu_length: 65536,
            timeout: Duration::from_secs(60),
            tls: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScuError {
    #[error("association with {target} failed: {source}")]
    Associate {
        target: String,
        #[source]
        source: dicom_ul::association::Error,
    },
    #[error("association with {target} broke while sending: {source}")]
    Transfer {
        target: String,
        #[source]
        source: dicom_ul::association::Error,
    },
    #[error("sending data to {target}: {source}")]
    Io {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Dimse(#[from] dimse::DimseError),
    #[error("{target} answered C-ECHO with status {status:#06x}")]
    EchoStatus { target: String, status: u16 },
    #[error("{target} sent an unexpected PDU: {pdu}")]
    Unexpected { target: String, pdu: String },
    #[error("nothing to send: {0}")]
    NothingToSend(String),
}

/// One file that could not be sent, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendReport {
    pub sent: usize,
    /// Sent, but the receiver answered with a warning status.
    pub warnings: usize,
    pub bytes: u64,
    pub failures: Vec<Failure>,
}

/// A file ready to send: its data set bytes as stored.
struct Outgoing {
    path: PathBuf,
    sop_class_uid: String,
    sop_instance_uid: String,
    transfer_syntax: String,
    data_set: Vec<u8>,
}

fn load(path: &Path) -> Result<Outgoing, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let offset = crate::instance::data_set_offset(&bytes)
        .ok_or("not a DICOM Part 10 file (no DICM preamble and meta header)")?;
    let meta = dicom_object::FileMetaTable::from_reader(&bytes[128..offset])
        .map_err(|e| format!("unreadable file meta header: {e}"))?;
    let trim = |s: &str| crate::uid::trim(s).to_string();
    Ok(Outgoing {
        path: path.to_path_buf(),
        sop_class_uid: trim(meta.media_storage_sop_class_uid()),
        sop_instance_uid: trim(meta.media_storage_sop_instance_uid()),
        transfer_syntax: trim(meta.transfer_syntax()),
        data_set: bytes[offset..].to_vec(),
    })
}

/// All regular files under `dir`, recursively, sorted by path (hidden files
/// and DICOMDIR skipped).
pub fn collect_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.eq_ignore_ascii_case("DICOMDIR") {
                continue;
            }
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// C-ECHO to `target`.
pub async fn echo(target: &Target, opts: &SendOptions) -> Result<(), ScuError> {
    let name = target.to_string();
    let options = ClientAssociationOptions::new()
        .calling_ae_title(opts.calling_ae_title.clone())
        .called_ae_title(target.ae_title.clone())
        .with_abstract_syntax(crate::sop::VERIFICATION)
        .read_timeout(opts.timeout)
        .connection_timeout(opts.timeout);
    let associate = |source| ScuError::Associate {
        target: name.clone(),
        source,
    };
    let addr = (target.host.as_str(), target.port);
    match &opts.tls {
        Some(tls) => {
            let assoc = options
                .tls_config(tls.clone())
                .server_name(&target.host)
                .establish_tls_async(addr)
                .await
                .map_err(associate)?;
            echo_on(assoc, name).await
        }
        None => {
            let assoc = options.establish_async(addr).await.map_err(associate)?;
            echo_on(assoc, name).await
        }
    }
}

async fn echo_on<S>(
    mut assoc: dicom_ul::association::AsyncClientAssociation<S>,
    name: String,
) -> Result<(), ScuError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let pc = assoc.presentation_contexts()[0].id;
    send_command(&mut assoc, pc, dimse::echo_request(1)?, &name).await?;
    let (status, _) = receive_status(&mut assoc, &name).await?;
    let _ = assoc.release().await;
    if status != dimse::status::SUCCESS {
        return Err(ScuError::EchoStatus {
            target: name,
            status,
        });
    }
    Ok(())
}

/// Sends `files` over one association. Files that cannot be read, have no
/// accepted presentation context, or are refused by the receiver are
/// reported in `failures`; a broken association is an error.
pub async fn send_files(
    files: &[PathBuf],
    target: &Target,
    opts: &SendOptions,
) -> Result<SendReport, ScuError> {
    let name = target.to_string();
    let mut report = SendReport::default();
    // Reading files is blocking work: keep it off the runtime threads.
    let paths = files.to_vec();
    let loaded = tokio::task::spawn_blocking(move || {
        paths
            .iter()
            .map(|p| (p.clone(), load(p)))
            .collect::<Vec<_>>()
    })
    .await
    .expect("file reading task panicked");
    let mut outgoing = Vec::new();
    for (path, r) in loaded {
        match r {
            Ok(o) => outgoing.push(o),
            Err(reason) => report.failures.push(Failure { path, reason }),
        }
    }
    if outgoing.is_empty() {
        return Err(ScuError::NothingToSend(format!(
            "{} files, none readable as DICOM",
            files.len()
        )));
    }

    // One presentation context per (SOP class, transfer syntax) pair, each
    // proposing only the stored syntax: data sets travel unchanged.
    let mut pairs: Vec<(String, String)> = outgoing
        .iter()
        .map(|o| (o.sop_class_uid.clone(), o.transfer_syntax.clone()))
        .collect();
    pairs.sort();
    pairs.dedup();
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(opts.calling_ae_title.clone())
        .called_ae_title(target.ae_title.clone())
        .max_pdu_length(opts.max_pdu_length)
        .read_timeout(opts.timeout)
        .connection_timeout(opts.timeout);
    for (class, ts) in &pairs {
        options = options.with_presentation_context(class.clone(), vec![ts.clone()]);
    }
    let associate = |source| ScuError::Associate {
        target: name.clone(),
        source,
    };
    let addr = (target.host.as_str(), target.port);
    match &opts.tls {
        Some(tls) => {
            let assoc = options
                .tls_config(tls.clone())
                .server_name(&target.host)
                .establish_tls_async(addr)
                .await
                .map_err(associate)?;
            transfer(assoc, outgoing, report, name).await
        }
        None => {
            let assoc = options.establish_async(addr).await.map_err(associate)?;
            transfer(assoc, outgoing, report, name).await
        }
    }
}

/// Sends every file on an established association, then releases it.
async fn transfer<S>(
    mut assoc: dicom_ul::association::AsyncClientAssociation<S>,
    outgoing: Vec<Outgoing>,
    mut report: SendReport,
    name: String,
) -> Result<SendReport, ScuError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let accepted: Vec<(u8, String, String)> = assoc
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| {
            (
                pc.id,
                pc.abstract_syntax.clone(),
                pc.transfer_syntax.clone(),
            )
        })
        .collect();

    for (i, o) in outgoing.into_iter().enumerate() {
        let Some((pc, _, _)) = accepted
            .iter()
            .find(|(_, class, ts)| *class == o.sop_class_uid && *ts == o.transfer_syntax)
        else {
            report.failures.push(Failure {
                path: o.path,
                reason: format!(
                    "{} refused SOP class {} in {}",
                    name,
                    o.sop_class_uid,
                    crate::sop::transfer_syntax_name(&o.transfer_syntax)
                ),
            });
            continue;
        };
        let message_id = (i % 0xFFFF) as u16 + 1;
        send_command(
            &mut assoc,
            *pc,
            dimse::store_request(message_id, &o.sop_class_uid, &o.sop_instance_uid)?,
            &name,
        )
        .await?;
        {
            let mut writer = assoc.send_pdata(*pc);
            writer
                .write_all(&o.data_set)
                .await
                .map_err(|source| ScuError::Io {
                    target: name.clone(),
                    source,
                })?;
            writer.finish().await.map_err(|source| ScuError::Io {
                target: name.clone(),
                source,
            })?;
        }
        let (status, comment) = receive_status(&mut assoc, &name).await?;
        match status {
            dimse::status::SUCCESS => report.sent += 1,
            0xB000..=0xBFFF => {
                report.sent += 1;
                report.warnings += 1;
            }
            _ => {
                report.failures.push(Failure {
                    path: o.path,
                    reason: format!(
                        "status {status:#06x}{}",
                        comment.map(|c| format!(": {c}")).unwrap_or_default()
                    ),
                });
                continue;
            }
        }
        report.bytes += o.data_set.len() as u64;
    }
    let _ = assoc.release().await;
    Ok(report)
}

async fn send_command<S>(
    assoc: &mut dicom_ul::association::AsyncClientAssociation<S>,
    pc: u8,
    command: Vec<u8>,
    name: &str,
) -> Result<(), ScuError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    assoc
        .send(&dimse::command_pdu(pc, command))
        .await
        .map_err(|source| ScuError::Transfer {
            target: name.to_string(),
            source,
        })
}

/// Reads PDUs until a complete command arrives; returns its status.
async fn receive_status<S>(
    assoc: &mut dicom_ul::association::AsyncClientAssociation<S>,
    name: &str,
) -> Result<(u16, Option<String>), ScuError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let mut command = Vec::new();
    loop {
        let pdu = assoc.receive().await.map_err(|source| ScuError::Transfer {
            target: name.to_string(),
            source,
        })?;
        match pdu {
            Pdu::PData { data } => {
                for pdv in data {
                    if pdv.value_type == PDataValueType::Command {
                        command.extend_from_slice(&pdv.data);
                        if pdv.is_last {
                            return Ok(dimse::response_status(&command)?);
                        }
                    }
                }
            }
            other => {
                return Err(ScuError::Unexpected {
                    target: name.to_string(),
                    pdu: format!("{other:?}").chars().take(200).collect(),
                });
            }
        }
    }
}
