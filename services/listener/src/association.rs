//! One association, from A-ASSOCIATE-RQ to release or abort.
//!
//! PDVs are reassembled by hand: command fragments into a command set, data
//! fragments streamed into the instance being received. Any protocol
//! violation aborts this association only; the service keeps serving.

use crate::Deps;
use crate::access::AllowList;
use crate::completion::Tracker;
use crate::ingest::{Incoming, Ingest, Outcome};
use dicom_ul::Pdu;
use dicom_ul::association::server::{DefaultNegotiation, ServerAssociationOptions};
use dicom_ul::association::{Association, AsyncServerAssociation};
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use liverseg_core::AuditRecord;
use liverseg_core::Config;
use liverseg_core::time::now_millis;
use liverseg_dicom::dimse::{self, Command, status};
use liverseg_dicom::sop;
use liverseg_telemetry::metrics;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, error, info, warn};

/// Shared by every association of one listener.
pub struct Context {
    options: ServerAssociationOptions<'static, AllowList, DefaultNegotiation>,
    /// DICOM TLS is on: every association starts with a TLS handshake.
    tls: bool,
    /// For the audit trail.
    store: Arc<dyn liverseg_store::MetadataStore>,
    ingest: Ingest,
    tracker: Tracker,
    complete_on_release: bool,
}

impl Context {
    /// `tls`: the listener's TLS configuration, when DICOM TLS is on.
    pub fn new(
        config: Arc<Config>,
        deps: Deps,
        tracker: Tracker,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        let l = &config.listener;
        let timeout = Duration::from_secs(l.timeout_seconds);
        let mut options = ServerAssociationOptions::new()
            .ae_access_control(AllowList::new(&l.allowed_calling_aes))
            .ae_title(l.ae_title.clone())
            .max_pdu_length(l.max_pdu_length)
            .read_timeout(timeout)
            .write_timeout(timeout)
            .with_abstract_syntax(sop::VERIFICATION);
        for class in sop::STORAGE_CLASSES {
            options = options.with_abstract_syntax(class);
        }
        // The first syntax the caller proposes that we can decode wins, so
        // data sets usually arrive exactly as the sender holds them.
        for ts in sop::decodable_transfer_syntaxes() {
            options = options.with_transfer_syntax(ts);
        }
        let with_tls = tls.is_some();
        if let Some(tls) = tls {
            options = options.tls_config(tls);
        }
        Context {
            options,
            tls: with_tls,
            store: deps.store.clone(),
            ingest: Ingest::new(config.clone(), deps),
            tracker,
            complete_on_release: l.complete_on_release,
        }
    }

    /// Negotiates (after the TLS handshake, when on) and serves one
    /// association.
    pub async fn serve(&self, socket: TcpStream) {
        let peer = socket
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let refused = if self.tls {
            match self.options.establish_tls_async(socket).await {
                Ok(assoc) => return self.serve_established(assoc, &peer).await,
                Err(e) => e,
            }
        } else {
            match self.options.establish_async(socket).await {
                Ok(assoc) => return self.serve_established(assoc, &peer).await,
                Err(e) => e,
            }
        };
        let reason = refused.to_string();
        not_established(refused);
        self.audit(AuditRecord {
            actor: "unknown".into(),
            action: "associate".into(),
            peer,
            outcome: format!("refused: {reason}"),
            ..AuditRecord::default()
        })
        .await;
    }

    /// Appends to the audit trail; a store that cannot take it is logged
    /// (the instances themselves could not have been stored either).
    async fn audit(&self, mut record: AuditRecord) {
        record.at = now_millis();
        if let Err(e) = self.store.append_audit(&record).await {
            error!(error = %e, action = %record.action, "the audit trail could not be written");
        }
    }

    async fn serve_established<S>(&self, mut assoc: AsyncServerAssociation<S>, peer: &str)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    {
        let calling_ae = assoc.peer_ae_title().trim().to_string();
        let contexts: HashMap<u8, (String, String)> = assoc
            .presentation_contexts()
            .iter()
            .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .map(|pc| {
                (
                    pc.id,
                    (pc.abstract_syntax.clone(), pc.transfer_syntax.clone()),
                )
            })
            .collect();
        metrics::association("accepted");
        let span = tracing::Span::current();
        span.record("calling_ae", calling_ae.as_str());
        info!(%calling_ae, contexts = contexts.len(), "association established");

        let mut session = Session {
            ctx: self,
            calling_ae,
            contexts,
            command: Vec::new(),
            incoming: None,
            touched: BTreeSet::new(),
            refused: 0,
            stored: 0,
        };
        let end = session.run(&mut assoc).await;
        if let Some(incoming) = session.incoming.take() {
            incoming.abandon().await;
        }
        span.record("instances", session.stored);
        span.record(
            "outcome",
            match &end {
                End::Released => "released",
                End::PeerAborted => "aborted by peer",
                End::Broken(_) => "aborted",
            },
        );
        self.audit(AuditRecord {
            actor: session.calling_ae.clone(),
            action: "receive".into(),
            object: session
                .touched
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
            peer: peer.to_string(),
            outcome: match &end {
                End::Released => "ok".to_string(),
                End::PeerAborted => "aborted by the peer".to_string(),
                End::Broken(reason) => format!("aborted: {reason}"),
            },
            detail: format!(
                "{} instances stored in {} series, {} refused",
                session.stored,
                session.touched.len(),
                session.refused
            ),
            ..AuditRecord::default()
        })
        .await;
        match end {
            End::Released => {
                info!(stored = session.stored, "association released");
                if self.complete_on_release {
                    for series in &session.touched {
                        self.tracker.complete_now(series);
                    }
                }
            }
            End::PeerAborted => info!(stored = session.stored, "association aborted by peer"),
            End::Broken(reason) => {
                warn!(stored = session.stored, %reason, "association aborted");
                let _ = assoc.abort().await;
            }
        }
    }
}

/// Rejections (unknown AE, bad PDUs, a failed TLS handshake) were already
/// answered on the wire by dicom-ul; here they are only recorded.
fn not_established(e: dicom_ul::association::Error) {
    metrics::association("rejected");
    tracing::Span::current().record("outcome", "rejected");
    info!(error = %e, "association not established");
}

enum End {
    Released,
    PeerAborted,
    Broken(String),
}

struct Session<'a> {
    ctx: &'a Context,
    calling_ae: String,
    /// Accepted presentation contexts: id -> (abstract syntax, transfer syntax).
    contexts: HashMap<u8, (String, String)>,
    /// Command fragments received so far.
    command: Vec<u8>,
    /// The instance whose data set is arriving.
    incoming: Option<Incoming>,
    /// Series that received instances on this association.
    touched: BTreeSet<String>,
    /// Instances answered with a failure status.
    refused: usize,
    stored: usize,
}

impl Session<'_> {
    async fn run<S>(&mut self, assoc: &mut AsyncServerAssociation<S>) -> End
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    {
        loop {
            let pdu = match assoc.receive().await {
                Ok(pdu) => pdu,
                Err(e) => return End::Broken(format!("receive failed: {e}")),
            };
            match pdu {
                Pdu::PData { data } => {
                    for pdv in data {
                        if let Err(reason) = self.on_pdv(assoc, pdv).await {
                            return End::Broken(reason);
                        }
                    }
                }
                Pdu::ReleaseRQ => {
                    if self.incoming.is_some() {
                        return End::Broken("release requested in the middle of a data set".into());
                    }
                    let _ = assoc.send(&Pdu::ReleaseRP).await;
                    return End::Released;
                }
                Pdu::AbortRQ { .. } => return End::PeerAborted,
                other => return End::Broken(format!("unexpected PDU {}", pdu_name(&other))),
            }
        }
    }

    async fn on_pdv<S>(
        &mut self,
        assoc: &mut AsyncServerAssociation<S>,
        pdv: PDataValue,
    ) -> Result<(), String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    {
        let Some((abstract_syntax, ts)) = self.contexts.get(&pdv.presentation_context_id).cloned()
        else {
            return Err(format!(
                "presentation context {} was not accepted",
                pdv.presentation_context_id
            ));
        };
        match pdv.value_type {
            PDataValueType::Command => {
                if self.incoming.is_some() {
                    return Err("a command arrived before the data set was complete".into());
                }
                self.command.extend_from_slice(&pdv.data);
                if pdv.is_last {
                    let bytes = std::mem::take(&mut self.command);
                    let cmd = Command::parse(&bytes).map_err(|e| e.to_string())?;
                    self.on_command(
                        assoc,
                        pdv.presentation_context_id,
                        &abstract_syntax,
                        &ts,
                        cmd,
                    )
                    .await?;
                }
            }
            PDataValueType::Data => {
                let Some(incoming) = self.incoming.as_mut() else {
                    return Err("a data set arrived without a C-STORE request".into());
                };
                if incoming.context_id != pdv.presentation_context_id {
                    return Err("data set fragments on two presentation contexts".into());
                }
                incoming.write(&pdv.data).await;
                if pdv.is_last {
                    let incoming = self.incoming.take().expect("checked above");
                    let (message_id, class, uid) = (
                        incoming.command.message_id,
                        incoming
                            .command
                            .affected_sop_class_uid
                            .clone()
                            .unwrap_or_default(),
                        incoming
                            .command
                            .affected_sop_instance_uid
                            .clone()
                            .unwrap_or_default(),
                    );
                    let outcome = self.ctx.ingest.finish(incoming, &self.calling_ae).await;
                    let (code, comment) = outcome.status();
                    if let Outcome::Stored { series_uid } | Outcome::Unchanged { series_uid } =
                        &outcome
                    {
                        if matches!(outcome, Outcome::Stored { .. }) {
                            self.ctx.tracker.touch(series_uid);
                        } else {
                            self.ctx.tracker.extend_if_tracked(series_uid);
                        }
                        self.touched.insert(series_uid.clone());
                        self.stored += 1;
                    }
                    if code != status::SUCCESS {
                        self.refused += 1;
                        warn!(
                            status = format!("{code:#06x}"),
                            reason = comment.as_deref().unwrap_or(""),
                            "C-STORE failed"
                        );
                    }
                    let rsp =
                        dimse::store_response(message_id, &class, &uid, code, comment.as_deref())
                            .map_err(|e| e.to_string())?;
                    send_command(assoc, pdv.presentation_context_id, rsp).await?;
                }
            }
        }
        Ok(())
    }

    async fn on_command<S>(
        &mut self,
        assoc: &mut AsyncServerAssociation<S>,
        pc: u8,
        abstract_syntax: &str,
        ts: &str,
        cmd: Command,
    ) -> Result<(), String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    {
        match cmd.command_field {
            dimse::C_ECHO_RQ => {
                debug!("C-ECHO");
                let rsp = dimse::echo_response(cmd.message_id).map_err(|e| e.to_string())?;
                send_command(assoc, pc, rsp).await
            }
            dimse::C_STORE_RQ if cmd.has_data_set => {
                // The data set follows whatever we answer; a refused one is
                // still read (and dropped) so the association stays in step.
                let refusal = match cmd.affected_sop_class_uid.as_deref() {
                    Some(c) if c == abstract_syntax && sop::is_storage_class(c) => None,
                    Some(c) => Some(format!("SOP class {c} not supported on this context")),
                    None => Some("C-STORE without Affected SOP Class UID".to_string()),
                };
                self.incoming = Some(
                    self.ctx
                        .ingest
                        .start(pc, cmd, ts, &self.calling_ae, refusal)
                        .await,
                );
                Ok(())
            }
            other => Err(format!("unsupported DIMSE command {other:#06x}")),
        }
    }
}

async fn send_command<S>(
    assoc: &mut AsyncServerAssociation<S>,
    pc: u8,
    data: Vec<u8>,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    assoc
        .send(&dimse::command_pdu(pc, data))
        .await
        .map_err(|e| format!("send failed: {e}"))
}

fn pdu_name(pdu: &Pdu) -> &'static str {
    match pdu {
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        Pdu::PData { .. } => "P-DATA-TF",
        Pdu::ReleaseRQ => "A-RELEASE-RQ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::AbortRQ { .. } => "A-ABORT",
        Pdu::Unknown { .. } => "unknown",
    }
}

/// Answers an association request we cannot take now (every slot taken,
/// or the disk below its watermark): A-ASSOCIATE-RJ, result transient,
/// source service-provider (presentation), reason local-limit-exceeded
/// (PS3.8 9.3.4), so the caller retries later. With DICOM TLS on, the
/// request arrives encrypted and the connection is only closed.
pub async fn reject_transient(mut socket: TcpStream, tls: bool) {
    if tls {
        let _ = socket.shutdown().await;
        return;
    }
    let read_request = async {
        let mut header = [0u8; 6];
        socket.read_exact(&mut header).await?;
        let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as u64;
        // Drain the request (bounded) so the peer reads our answer.
        let mut sink = tokio::io::sink();
        tokio::io::copy(&mut (&mut socket).take(len.min(1 << 20)), &mut sink).await?;
        Ok::<_, std::io::Error>(())
    };
    if tokio::time::timeout(Duration::from_secs(5), read_request)
        .await
        .is_err()
    {
        return;
    }
    const A_ASSOCIATE_RJ_BUSY: [u8; 10] = [0x03, 0x00, 0, 0, 0, 4, 0x00, 0x02, 0x03, 0x02];
    let _ = socket.write_all(&A_ASSOCIATE_RJ_BUSY).await;
    let _ = socket.shutdown().await;
}
