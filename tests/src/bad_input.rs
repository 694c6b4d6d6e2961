//! The library entry points that bad input reaches, one per door, shared by
//! the replay test (`tests/bad_input.rs`), the corpus generator
//! (`src/corpus.rs`) and the fuzz targets (`fuzz/fuzz_targets/*.rs`, which
//! include this file by path, so it uses only crates they depend on:
//! liverseg-dicom, dicom-ul, dicom-core, dicom-object,
//! dicom-dictionary-std, multer, futures and bytes).
//!
//! Each function walks the same calls, in the same order, as the service
//! does with the bytes, without the network, the metadata store or the
//! blob store:
//!
//! * [`pdu_stream`]: the DICOM listener (`services/listener/src/
//!   association.rs`): dicom-ul `read_pdu` as the association reads the
//!   wire (strict, `listener.max_pdu_length`), PDV reassembly, DIMSE
//!   `Command::parse`, and the C-STORE data set read behind the Part 10
//!   header the listener writes.
//! * [`dataset`]: a Part 10 file as STOW-RS and gRPC uploads are checked
//!   (`read_header_and_transfer_syntax`, storage class, decodable transfer
//!   syntax), and as `parse_part10` reads it; [`cstore_plan`] is how the
//!   replay sends the same file as a C-STORE data set.
//! * [`multipart`]: the STOW-RS request (`services/gateway/src/dicomweb/
//!   stow.rs`): its Content-Type check (a copy: the function is private to
//!   the gateway), multer with the same constraints, then [`dataset`] per
//!   part.
//! * [`seg`]: a resubmitted segmentation (`services/ingest/src/
//!   correction.rs`): lenient read and repair, reference to the series,
//!   `parse_object`, the SEG reader, the liver segment, rasterisation on the
//!   series' slices and the rewrite as Part 10, against the fixed series of
//!   [`base`].
//!
//! Every function returns `Err` with the reason the service would give
//! (and, for HTTP, the status); `Ok` means the service would store it.

#![allow(dead_code)]

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use liverseg_dicom::dimse::{self, Command};
use liverseg_dicom::instance::{self, first_item, text};
use liverseg_dicom::seg::{self, Slices};
use liverseg_dicom::{repair, sop};
use std::collections::HashMap;

/// `listener.max_pdu_length` (config/default.toml).
pub const MAX_PDU_LENGTH: u32 = 65536;
/// The listener's AE title (config/default.toml).
pub const AE_TITLE: &str = "LIVERSEG";
/// Data set bytes kept per C-STORE by [`pdu_stream`] (the listener streams
/// them to disk; a fuzz input is never larger).
const MAX_DATA_SET: usize = 16 << 20;

/// The CT series every generated SEG refers to, and the UIDs of the other
/// generated objects: fixed, so that the corpus is reproducible and the
/// replay can store the series before sending the SEGs.
pub mod base {
    use liverseg_dicom::seg::Slices;

    /// Series held by the service in the SEG replay.
    pub const STUDY: &str = "2.25.7001";
    pub const SERIES: &str = "2.25.7002";
    pub const FRAME_OF_REFERENCE: &str = "2.25.7003";
    /// The valid SEG that the malformed ones are made from.
    pub const SEG_SERIES: &str = "2.25.7004";
    pub const SEG_INSTANCE: &str = "2.25.7005";
    /// Objects the dataset and multipart inputs are made from (another
    /// study, so that nothing they carry can touch the SEG replay).
    pub const OTHER_STUDY: &str = "2.25.7101";
    pub const OTHER_SERIES: &str = "2.25.7102";
    pub const OTHER_INSTANCE: &str = "2.25.7103";

    pub const SLICES: usize = 8;
    pub const SIZE: usize = 16;
    pub const PIXEL_SPACING: f64 = 0.8;
    pub const SLICE_THICKNESS: f64 = 2.5;
    pub const ORIENTATION: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];

    pub fn slice_uid(i: usize) -> String {
        format!("2.25.70100{i}")
    }

    pub fn position(i: usize) -> [f64; 3] {
        [-6.4, -6.4, -200.0 + SLICE_THICKNESS * i as f64]
    }

    /// The slices of the base series, as the service derives them from
    /// the stored instances.
    pub fn slices() -> Slices {
        Slices {
            rows: SIZE,
            columns: SIZE,
            orientation: ORIENTATION,
            pixel_spacing: [PIXEL_SPACING, PIXEL_SPACING],
            positions: (0..SLICES).map(position).collect(),
        }
    }
}

// ---------------------------------------------------------------- PDUs

/// What a byte stream did to the listener when it was fully served.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PduSummary {
    pub pdus: usize,
    pub commands: usize,
    pub data_sets: usize,
}

/// Serves `bytes` as one association's incoming stream, as the listener
/// does: `Ok` only for a protocol-correct association that ends in an
/// A-RELEASE and whose every C-STORE data set would be stored.
pub fn pdu_stream(bytes: &[u8]) -> Result<PduSummary, String> {
    use dicom_ul::Pdu;
    use dicom_ul::pdu::PDataValueType;

    let mut rest = bytes;
    let mut summary = PduSummary::default();
    // Accepted presentation contexts: id -> (abstract syntax, transfer syntax).
    let mut contexts: Option<HashMap<u8, (String, String)>> = None;
    let mut command: Vec<u8> = Vec::new();
    // The C-STORE whose data set is arriving: (context, command, data).
    let mut incoming: Option<(u8, Command, Vec<u8>)> = None;
    let mut refused = None;
    loop {
        if rest.is_empty() {
            return Err("the stream ended before A-RELEASE-RQ".into());
        }
        let mut cursor = std::io::Cursor::new(rest);
        let pdu = match dicom_ul::pdu::read_pdu(&mut cursor, MAX_PDU_LENGTH, true) {
            Ok(Some(pdu)) => pdu,
            Ok(None) => return Err(format!("PDU {} is truncated", summary.pdus + 1)),
            Err(e) => return Err(format!("PDU {}: {e}", summary.pdus + 1)),
        };
        let used = usize::try_from(cursor.position()).map_err(|e| e.to_string())?;
        rest = rest.get(used..).ok_or("read_pdu went past the input")?;
        summary.pdus += 1;
        let Some(accepted) = contexts.as_ref() else {
            let Pdu::AssociationRQ(rq) = pdu else {
                return Err(format!("{} before A-ASSOCIATE-RQ", pdu_name(&pdu)));
            };
            contexts = Some(negotiate(&rq)?);
            continue;
        };
        match pdu {
            Pdu::PData { data } => {
                for pdv in data {
                    let Some((abstract_syntax, ts)) = accepted.get(&pdv.presentation_context_id)
                    else {
                        return Err(format!(
                            "presentation context {} was not accepted",
                            pdv.presentation_context_id
                        ));
                    };
                    match pdv.value_type {
                        PDataValueType::Command => {
                            if incoming.is_some() {
                                return Err(
                                    "a command arrived before the data set was complete".into()
                                );
                            }
                            command.extend_from_slice(&pdv.data);
                            if !pdv.is_last {
                                continue;
                            }
                            let cmd = Command::parse(&std::mem::take(&mut command))
                                .map_err(|e| e.to_string())?;
                            summary.commands += 1;
                            match cmd.command_field {
                                dimse::C_ECHO_RQ => {}
                                dimse::C_STORE_RQ if cmd.has_data_set => {
                                    if cmd.affected_sop_class_uid.as_deref()
                                        != Some(abstract_syntax.as_str())
                                    {
                                        refused.get_or_insert_with(|| {
                                            "SOP class not supported on this context".to_string()
                                        });
                                    }
                                    incoming = Some((pdv.presentation_context_id, cmd, Vec::new()));
                                }
                                other => {
                                    return Err(format!("unsupported DIMSE command {other:#06x}"));
                                }
                            }
                        }
                        PDataValueType::Data => {
                            let Some((pc, cmd, data)) = incoming.as_mut() else {
                                return Err("a data set arrived without a C-STORE request".into());
                            };
                            if *pc != pdv.presentation_context_id {
                                return Err(
                                    "data set fragments on two presentation contexts".into()
                                );
                            }
                            if data.len() + pdv.data.len() <= MAX_DATA_SET {
                                data.extend_from_slice(&pdv.data);
                            }
                            if pdv.is_last {
                                summary.data_sets += 1;
                                if let Err(e) = cstore_data_set(cmd, ts, data) {
                                    refused.get_or_insert(e);
                                }
                                incoming = None;
                            }
                        }
                    }
                }
            }
            Pdu::ReleaseRQ if incoming.is_some() => {
                return Err("release requested in the middle of a data set".into());
            }
            Pdu::ReleaseRQ => {
                return match refused {
                    Some(reason) => Err(format!("a C-STORE was refused: {reason}")),
                    None => Ok(summary),
                };
            }
            Pdu::AbortRQ { .. } => return Err("aborted by the peer".into()),
            other => return Err(format!("unexpected PDU {}", pdu_name(&other))),
        }
    }
}

/// The presentation contexts the listener accepts from `rq`, or why the
/// association is refused.
fn negotiate(rq: &dicom_ul::pdu::AssociationRQ) -> Result<HashMap<u8, (String, String)>, String> {
    // dicom-ul's acceptor compares both exactly; access.rs the AE title.
    if rq.protocol_version != 1 {
        return Err(format!("protocol version {}", rq.protocol_version));
    }
    if rq.application_context_name != "1.2.840.10008.3.1.1.1" {
        return Err("application context name not supported".into());
    }
    if rq.called_ae_title.trim() != AE_TITLE {
        return Err(format!("called AE title {:?}", rq.called_ae_title));
    }
    let decodable = sop::decodable_transfer_syntaxes();
    let accepted: HashMap<u8, (String, String)> = rq
        .presentation_contexts
        .iter()
        .filter_map(|pc| {
            let abstract_syntax = liverseg_dicom::uid::trim(&pc.abstract_syntax).to_string();
            let ours =
                abstract_syntax == sop::VERIFICATION || sop::is_storage_class(&abstract_syntax);
            let ts = pc
                .transfer_syntaxes
                .iter()
                .map(|t| liverseg_dicom::uid::trim(t).to_string())
                .find(|t| decodable.contains(t))?;
            ours.then_some((pc.id, (abstract_syntax, ts)))
        })
        .collect();
    if accepted.is_empty() {
        return Err("no acceptable presentation context".into());
    }
    Ok(accepted)
}

fn pdu_name(pdu: &dicom_ul::Pdu) -> &'static str {
    use dicom_ul::Pdu;
    match pdu {
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        Pdu::PData { .. } => "P-DATA-TF",
        Pdu::ReleaseRQ => "A-RELEASE-RQ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::AbortRQ { .. } => "A-ABORT",
        Pdu::Unknown { .. } => "unknown PDU",
    }
}

/// A C-STORE data set as the listener stores it (`receive.rs`): the
/// Part 10 header it writes from the command and the context, the data set
/// behind it, the header read back, the UIDs compared with the command's.
pub fn cstore_data_set(cmd: &Command, ts: &str, data: &[u8]) -> Result<instance::Parsed, String> {
    let uid = cmd.affected_sop_instance_uid.clone().unwrap_or_default();
    if !liverseg_dicom::uid::is_valid(&uid) {
        return Err("invalid Affected SOP Instance UID".into());
    }
    let class = cmd.affected_sop_class_uid.clone().unwrap_or_default();
    if !sop::is_storage_class(&class) {
        return Err(format!("SOP class {class} not supported"));
    }
    let mut file = instance::part10_header(&class, &uid, ts, "FUZZ").map_err(|e| e.to_string())?;
    file.extend_from_slice(data);
    let (parsed, _) = instance::parse_part10(&file).map_err(|e| e.to_string())?;
    if parsed.identity.sop_instance_uid != uid {
        return Err("SOP Instance UID in data set differs from command".into());
    }
    if parsed.identity.sop_class_uid != class {
        return Err("SOP Class UID in data set differs from command".into());
    }
    if class == sop::SEGMENTATION_STORAGE {
        correction(&file)?;
    }
    Ok(parsed)
}

// ------------------------------------------------------------- data sets

/// How a Part 10 file fares at each door.
#[derive(Debug)]
pub struct DatasetOutcome {
    /// STOW-RS and gRPC uploads: `read_header_and_transfer_syntax` on the
    /// file, then the storage class and transfer syntax checks.
    pub stow: Result<instance::Parsed, String>,
    /// `parse_part10` on the same bytes (the worker's reader).
    pub part10: Result<instance::Parsed, String>,
    /// The file's data set sent as a C-STORE (see [`cstore_plan`]).
    pub cstore: Result<instance::Parsed, String>,
}

/// Runs a Part 10 file through every reader the service has for it.
pub fn dataset(bytes: &[u8]) -> DatasetOutcome {
    let plan = cstore_plan(bytes);
    let cmd = store_command(&plan);
    DatasetOutcome {
        stow: stow_file(bytes),
        part10: instance::parse_part10(bytes)
            .map(|(p, _)| p)
            .map_err(|e| e.to_string()),
        cstore: cstore_data_set(&cmd, &plan.transfer_syntax, plan.data_set),
    }
}

/// A STOW-RS part as `Ingest::accept_file` checks it before storing.
pub fn stow_file(bytes: &[u8]) -> Result<instance::Parsed, String> {
    let path = scratch_file();
    std::fs::write(&path, bytes).map_err(|e| format!("scratch file: {e}"))?;
    let read = instance::read_header_and_transfer_syntax(&path);
    let _ = std::fs::remove_file(&path);
    let (parsed, ts) = read.map_err(|e| e.to_string())?;
    if !sop::is_storage_class(&parsed.identity.sop_class_uid) {
        return Err("SOP class not accepted (CT, Enhanced CT and SEG are)".into());
    }
    if !sop::decodable_transfer_syntaxes().contains(&ts) {
        return Err(format!("transfer syntax {ts} cannot be decoded here"));
    }
    if parsed.identity.sop_class_uid == sop::SEGMENTATION_STORAGE {
        correction(bytes)?;
    }
    Ok(parsed)
}

/// A file for readers that take a path: one per process and thread.
fn scratch_file() -> std::path::PathBuf {
    let thread = format!("{:?}", std::thread::current().id())
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>();
    std::env::temp_dir().join(format!(
        "liverseg-bad-input-{}-{thread}.dcm",
        std::process::id()
    ))
}

/// What the replay sends as a C-STORE for a Part 10 file: the bytes after
/// the file meta group (the whole input when there is none), announced
/// with the UIDs and transfer syntax the meta group names (CT Image
/// Storage, a fixed instance UID and explicit VR little endian where it
/// names none usable).
#[derive(Debug, Clone)]
pub struct CStorePlan<'a> {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: String,
    pub data_set: &'a [u8],
}

/// The C-STORE-RQ announcing a planned data set.
pub fn store_command(plan: &CStorePlan<'_>) -> Command {
    Command {
        command_field: dimse::C_STORE_RQ,
        message_id: 1,
        affected_sop_class_uid: Some(plan.sop_class_uid.clone()),
        affected_sop_instance_uid: Some(plan.sop_instance_uid.clone()),
        has_data_set: true,
    }
}

pub fn cstore_plan(bytes: &[u8]) -> CStorePlan<'_> {
    let offset = instance::data_set_offset(bytes);
    // The meta group is scanned within its bytes (a sending SCU would know
    // these values; dicom-rs's meta reader would trust a flipped length).
    let meta = |element: u16| {
        offset
            .and_then(|end| meta_text(&bytes[..end], element))
            .map(|v| liverseg_dicom::uid::trim(&v).to_string())
    };
    let class = meta(0x0002)
        .filter(|c| sop::is_storage_class(c))
        .unwrap_or_else(|| sop::CT_IMAGE_STORAGE.to_string());
    let uid = meta(0x0003)
        .filter(|u| liverseg_dicom::uid::is_valid(u))
        .unwrap_or_else(|| base::OTHER_INSTANCE.to_string());
    let ts = meta(0x0010)
        .filter(|t| t == sop::IMPLICIT_VR_LE)
        .unwrap_or_else(|| sop::EXPLICIT_VR_LE.to_string());
    CStorePlan {
        sop_class_uid: class,
        sop_instance_uid: uid,
        transfer_syntax: ts,
        data_set: &bytes[offset.unwrap_or(0)..],
    }
}

/// A text value of group 0002 in `meta` (a Part 10 file up to its data
/// set), read without trusting a length beyond the bytes there.
fn meta_text(meta: &[u8], element: u16) -> Option<String> {
    let mut pos = 132;
    while pos + 8 <= meta.len() {
        let at = |i: usize| u16::from_le_bytes([meta[pos + i], meta[pos + i + 1]]);
        let (group, this) = (at(0), at(2));
        let long = matches!(
            &meta[pos + 4..pos + 6],
            b"OB" | b"OW" | b"OF" | b"SQ" | b"UN" | b"UT" | b"UC" | b"UR"
        );
        let (len, header) = if long {
            let l = meta.get(pos + 8..pos + 12)?;
            (u32::from_le_bytes(l.try_into().ok()?) as usize, 12)
        } else {
            (usize::from(at(6)), 8)
        };
        let value = meta.get(pos + header..(pos + header).checked_add(len)?)?;
        if group == 0x0002 && this == element {
            return Some(String::from_utf8_lossy(value).into_owned());
        }
        pos += header + len;
    }
    None
}

// ------------------------------------------------------------- multipart

/// A refusal as the gateway answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRefusal {
    pub status: u16,
    pub reason: String,
}

fn refusal(status: u16, reason: impl Into<String>) -> HttpRefusal {
    HttpRefusal {
        status,
        reason: reason.into(),
    }
}

/// Splits a multipart corpus input: the Content-Type header value on the
/// first line, the request body after it.
pub fn split_multipart_input(input: &[u8]) -> (String, &[u8]) {
    let (head, body) = match input.iter().position(|&b| b == b'\n') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[][..]),
    };
    let head = head.strip_suffix(b"\r").unwrap_or(head);
    (String::from_utf8_lossy(head).into_owned(), body)
}

/// A STOW-RS request with this Content-Type and body: `Ok` with the SOP
/// Instance UIDs that would be stored, else the status and reason of the
/// answer.
pub fn multipart(input: &[u8]) -> Result<Vec<String>, HttpRefusal> {
    let (content_type, body) = split_multipart_input(input);
    let boundary = stow_boundary(&content_type)?;
    let parts = multipart_parts(&boundary, body)?;
    let mut stored = Vec::new();
    let mut first = None;
    for part in &parts {
        match stow_file(part) {
            Ok(p) => stored.push(p.identity.sop_instance_uid),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    if stored.is_empty() {
        return Err(refusal(
            409,
            format!(
                "no instance was stored: {}",
                first.unwrap_or_else(|| "refused".into())
            ),
        ));
    }
    Ok(stored)
}

/// The boundary of a STOW-RS request (the logic of the gateway's private
/// `stow::boundary`, kept in step by the replay against the service).
pub fn stow_boundary(content_type: &str) -> Result<String, HttpRefusal> {
    // `HeaderValue::to_str` accepts visible ASCII, space and tab only.
    let visible = |c: char| c == '\t' || (' '..='~').contains(&c);
    if content_type.is_empty() || !content_type.chars().all(visible) {
        return Err(refusal(415, "Content-Type is missing"));
    }
    let mut params = content_type.split(';');
    let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
    if media != "multipart/related" {
        return Err(refusal(
            415,
            format!("Content-Type {media:?} is not multipart/related"),
        ));
    }
    let (mut boundary, mut part_type) = (None, None);
    for p in params {
        if let Some((k, v)) = p.split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "boundary" => boundary = Some(v),
                "type" => part_type = Some(v.to_ascii_lowercase()),
                _ => {}
            }
        }
    }
    if let Some(t) = part_type.filter(|t| t != "application/dicom") {
        return Err(refusal(
            415,
            format!("parts of type {t:?} are not accepted"),
        ));
    }
    boundary
        .filter(|b| !b.is_empty())
        .ok_or_else(|| refusal(400, "the multipart Content-Type has no boundary"))
}

/// The parts of a body, read by multer as the gateway reads them (the
/// body arrives in 8 KiB chunks here, so that parts span chunks).
pub fn multipart_parts(boundary: &str, body: &[u8]) -> Result<Vec<Vec<u8>>, HttpRefusal> {
    use futures::StreamExt;
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body
        .chunks(8192)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let stream = futures::stream::iter(chunks).boxed();
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(2 << 30));
    let mut multipart =
        multer::Multipart::with_constraints(stream, boundary.to_string(), constraints);
    let malformed = |e: multer::Error| match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            refusal(413, "the upload exceeds gateway.max_upload_bytes")
        }
        e => refusal(400, format!("malformed multipart body: {e}")),
    };
    futures::executor::block_on(async {
        let mut parts = Vec::new();
        while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
            if let Some(ct) = field.content_type()
                && ct.essence_str() != "application/dicom"
            {
                return Err(refusal(415, format!("a part of type {ct} was sent")));
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                bytes.extend_from_slice(&chunk);
            }
            parts.push(bytes);
        }
        if parts.is_empty() {
            return Err(refusal(400, "the multipart body has no parts"));
        }
        Ok(parts)
    })
}

// ------------------------------------------------------------------ SEG

/// A resubmitted segmentation as `liverseg_ingest::correction::submit`
/// checks it when the series of [`base`] is held: `Ok` with the liver
/// voxels when it would become a new version.
pub fn seg(bytes: &[u8]) -> Result<u64, String> {
    correction(bytes)
}

fn correction(bytes: &[u8]) -> Result<u64, String> {
    let lenient = repair::read_lenient(bytes).map_err(|e| format!("not readable: {e}"))?;
    let class = text(&lenient.dataset, tags::SOP_CLASS_UID).unwrap_or_default();
    if class != sop::SEGMENTATION_STORAGE {
        return Err(format!("not a Segmentation (SOP Class {class:?})"));
    }
    referenced_series(&lenient.dataset)?;
    let slices = base::slices();
    let repair::Lenient {
        mut dataset,
        transfer_syntax,
        ..
    } = lenient;
    if text(&dataset, tags::STUDY_INSTANCE_UID).as_deref() != Some(base::STUDY) {
        return Err("geometry: it belongs to another study".into());
    }
    if let Some(seg_for) = text(&dataset, tags::FRAME_OF_REFERENCE_UID)
        && seg_for != base::FRAME_OF_REFERENCE
    {
        return Err(format!("geometry: Frame of Reference UID {seg_for}"));
    }
    repair::fill_pixel_measures(
        &mut dataset,
        slices.pixel_spacing,
        Some(base::SLICE_THICKNESS),
    );
    instance::parse_object(&dataset).map_err(|e| format!("invalid: {e}"))?;
    let segmentation = seg::parse(&dataset).map_err(|e| format!("invalid: {e}"))?;
    let liver = segmentation
        .liver_segment()
        .ok_or_else(|| format!("no liver segment among {}", segmentation.segments.len()))?;
    let mask = rasterize(&segmentation, liver, &slices)?;
    if !mask.iter().any(|&v| v != 0) {
        return Err("the liver segment marks no voxel".into());
    }
    repair::to_part10(dataset, &transfer_syntax).map_err(|e| format!("invalid: {e}"))?;
    Ok(mask.iter().map(|&v| u64::from(v)).sum())
}

fn rasterize(s: &seg::Segmentation, liver: u32, slices: &Slices) -> Result<Vec<u8>, String> {
    seg::rasterize(s, liver, slices).map_err(|e| format!("geometry: {e}"))
}

/// The series a SEG names, as `correction::referenced_series` finds it
/// when only the series of [`base`] is held.
fn referenced_series(obj: &InMemDicomObject) -> Result<(), String> {
    let mut candidates: Vec<String> = obj
        .get(tags::REFERENCED_SERIES_SEQUENCE)
        .and_then(|e| e.items())
        .map(|items| {
            items
                .iter()
                .filter_map(|i| text(i, tags::SERIES_INSTANCE_UID))
                .collect()
        })
        .unwrap_or_default();
    let held: Vec<String> = (0..base::SLICES).map(base::slice_uid).collect();
    if let Some(frames) = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
    {
        let sources = frames
            .iter()
            .filter_map(|f| {
                let derivation = first_item(f, tags::DERIVATION_IMAGE_SEQUENCE)?;
                let source = first_item(derivation, tags::SOURCE_IMAGE_SEQUENCE)?;
                text(source, tags::REFERENCED_SOP_INSTANCE_UID)
            })
            .take(3);
        for uid in sources {
            if held.contains(&uid) {
                candidates.push(base::SERIES.to_string());
            }
        }
    }
    if candidates.is_empty() {
        return Err("the segmentation names no source series".into());
    }
    if candidates.iter().any(|c| c == base::SERIES) {
        Ok(())
    } else {
        Err(format!(
            "the referenced series {} is not held here",
            candidates[0]
        ))
    }
}
