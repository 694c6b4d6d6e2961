//! A segmentation sent back by a person (an OHIF export, a STOW-RS or
//! C-STORE of a corrected SEG, a gRPC resubmission) becomes the next version
//! of the liver segmentation of the CT series it references.
//!
//! Everything is checked before anything is written: the object must be a
//! SEG with a liver segment whose every frame lies on a slice of a CT series
//! held here. The known flaws of viewer exports are repaired (incomplete file
//! meta, empty PixelMeasuresSequence) and the upload as received is kept
//! beside the repaired object. The version records its Dice and volume
//! change against the AI result, and a `correction` job then derives the
//! mesh and volume report and delivers all three to the PACS.

use crate::Deps;
use crate::completion::enqueue;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use liverseg_core::{
    AlgorithmStep, AuditEvent, InstanceRecord, Job, JobKind, SegOrigin, SegVersion, SeriesState,
    time::now_millis,
};
use liverseg_dicom::instance::{first_item, parse_object, text};
use liverseg_dicom::repair::{self, RepairError};
use liverseg_dicom::seg::{self, Slices};
use liverseg_dicom::sop;
use liverseg_store::{NewJob, StoreError};
use sha2::{Digest, Sha256};
use tracing::info;

/// How a correction reached liverseg, for its history and the audit trail.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `stow`, `cstore` or `grpc`.
    pub via: &'static str,
    /// The sender: calling AE title or remote address.
    pub peer: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CorrectionError {
    #[error("not a readable DICOM object: {0}")]
    Unreadable(#[source] RepairError),
    #[error("not a Segmentation (SOP Class {0:?})")]
    NotSegmentation(String),
    #[error("the segmentation names no source series (ReferencedSeriesSequence or source images)")]
    NoReference,
    #[error("the referenced series {0} is not held here")]
    UnknownSeries(String),
    #[error("series {series} cannot carry a segmentation: {reason}")]
    UnusableSeries { series: String, reason: String },
    #[error("the segmentation is invalid: {0}")]
    Invalid(String),
    #[error("the segmentation does not match the geometry of series {series}: {reason}")]
    Geometry { series: String, reason: String },
    #[error("no liver segment among the segmentation's {0} segments")]
    NoLiver(usize),
    #[error("the liver segment marks no voxel of series {0}")]
    EmptyLiver(String),
    #[error(
        "SOP Instance UID {0} is already stored with other content; a correction needs a new SOP Instance UID"
    )]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] liverseg_queue::QueueError),
    #[error("local storage failed: {0}")]
    Storage(String),
}

impl From<crate::completion::CompletionError> for CorrectionError {
    fn from(e: crate::completion::CompletionError) -> Self {
        match e {
            crate::completion::CompletionError::Store(e) => CorrectionError::Store(e),
            crate::completion::CompletionError::Queue(e) => CorrectionError::Queue(e),
        }
    }
}

impl CorrectionError {
    /// The sender's fault (a 4xx, a DIMSE refusal) rather than ours.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            CorrectionError::Store(_) | CorrectionError::Queue(_) | CorrectionError::Storage(_)
        )
    }
}

/// A stored correction.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub version: SegVersion,
    pub job: Job,
    /// False when the same object had been submitted before.
    pub new: bool,
    pub repairs: Vec<String>,
}

/// What the checks found, before anything is written.
struct Checked {
    bytes: Vec<u8>,
    sha256: String,
    record: InstanceRecord,
    mask_voxels: u64,
    voxel_ml: f64,
    step: AlgorithmStep,
    repairs: Vec<String>,
    mask: Vec<u8>,
}

/// Validates, repairs and stores a corrected segmentation as a new version,
/// then queues the job that derives its mesh and report.
pub async fn submit(
    deps: &Deps,
    upload: Vec<u8>,
    origin: &Origin,
) -> Result<Accepted, CorrectionError> {
    let upload_sha = hex::encode(Sha256::digest(&upload));
    let (lenient, upload) = blocking(move || {
        repair::read_lenient(&upload)
            .map(|l| (l, upload))
            .map_err(CorrectionError::Unreadable)
    })
    .await?;
    let class = text(&lenient.dataset, tags::SOP_CLASS_UID).unwrap_or_default();
    if class != sop::SEGMENTATION_STORAGE {
        return Err(CorrectionError::NotSegmentation(class));
    }
    let series_uid = referenced_series(deps, &lenient.dataset).await?;
    let instances = deps.store.series_instances(&series_uid).await?;
    let images: Vec<&InstanceRecord> = instances
        .iter()
        .filter(|i| i.sop_class_uid != sop::SEGMENTATION_STORAGE)
        .collect();
    if images.is_empty() {
        return Err(CorrectionError::UnknownSeries(series_uid));
    }
    let study_uid = images[0].study_uid.clone();
    let metas: Vec<_> = images.iter().map(|i| &i.meta).collect();
    let slices =
        Slices::from_instances(&metas).map_err(|reason| CorrectionError::UnusableSeries {
            series: series_uid.clone(),
            reason,
        })?;
    let series_for = series_uid.clone();
    let thickness = images[0].meta.slice_thickness;
    let frame_of_reference = images[0].meta.frame_of_reference_uid.clone();
    let study_for = study_uid.clone();
    let via = origin.via;
    let checked_slices = slices.clone();
    let mut checked = blocking(move || {
        check(
            lenient,
            &checked_slices,
            &series_for,
            &study_for,
            frame_of_reference.as_deref(),
            thickness,
            via,
        )
    })
    .await?;
    let sop_uid = checked.record.sop_instance_uid.clone();

    if let Some(existing) = deps.store.seg_version(&sop_uid).await? {
        if existing.sha256 != checked.sha256 {
            return Err(CorrectionError::Conflict(sop_uid));
        }
        let job = match existing.job_id {
            Some(id) => deps.store.get_job(id).await?,
            None => None,
        };
        if let Some(job) = job {
            return Ok(Accepted {
                version: existing,
                job,
                new: false,
                repairs: checked.repairs,
            });
        }
    }

    // Against the AI result, on the same slices.
    let versions = deps.store.seg_versions(&series_uid).await?;
    let ai = versions.iter().find(|v| v.origin == SegOrigin::Ai).cloned();
    let (dice, ai_ml) = match ai {
        Some(ai) => {
            let blobs = deps.blobs.clone();
            let mask = std::mem::take(&mut checked.mask); // not needed after this
            let slices = slices.clone();
            blocking(move || {
                let bytes = blobs
                    .read(&ai.blob_key)
                    .map_err(|e| CorrectionError::Storage(e.to_string()))?;
                let ai_mask = mask_of(&bytes, &slices).map_err(|e| {
                    CorrectionError::Storage(format!("the AI result cannot be read: {e}"))
                })?;
                let ai_ml =
                    ai_mask.iter().map(|&v| v as u64).sum::<u64>() as f64 * slices.voxel_ml();
                Ok((Some(seg::dice(&mask, &ai_mask)), Some(ai_ml)))
            })
            .await?
        }
        None => (None, None),
    };
    let volume_ml = checked.mask_voxels as f64 * checked.voxel_ml;

    // Write: the repaired object, the upload as received, the index record.
    let key = format!("corrections/{series_uid}/{sop_uid}.dcm");
    let original_key = format!("corrections/{series_uid}/{sop_uid}.received.dcm");
    {
        let blobs = deps.blobs.clone();
        let (key, original_key, bytes) = (key.clone(), original_key.clone(), checked.bytes.clone());
        let keep_original = !checked.repairs.is_empty();
        blocking(move || {
            blobs
                .put(&key, &bytes)
                .map_err(|e| CorrectionError::Storage(e.to_string()))?;
            if keep_original {
                blobs
                    .put(&original_key, &upload)
                    .map_err(|e| CorrectionError::Storage(e.to_string()))?;
            }
            Ok(())
        })
        .await?;
    }
    let mut record = checked.record.clone();
    record.blob_key = key.clone();
    record.calling_ae = origin.peer.chars().take(64).collect();
    deps.store.put_instance(&record).await?;
    deps.store
        .set_series_state(&record.series_uid, SeriesState::Stored, None)
        .await?;

    let (job, _) = deps
        .store
        .create_job(&NewJob {
            kind: JobKind::Correction,
            study_uid: study_uid.clone(),
            series_uid: series_uid.clone(),
            fingerprint: format!("correction:{sop_uid}"),
            instance_count: images.len() as i64,
        })
        .await?;
    let predecessor_history = versions
        .last()
        .map(|v| v.history.clone())
        .unwrap_or_default();
    let mut history = predecessor_history;
    history.push(checked.step.clone());
    let version = deps
        .store
        .add_seg_version(&SegVersion {
            sop_instance_uid: sop_uid.clone(),
            series_uid: record.series_uid.clone(),
            source_series_uid: series_uid.clone(),
            study_uid,
            version: 0,
            predecessor: None,
            origin: SegOrigin::Correction,
            job_id: Some(job.id),
            blob_key: key,
            sha256: checked.sha256.clone(),
            history,
            dice_vs_ai: dice,
            volume_ml: Some(volume_ml),
            volume_change_ml: ai_ml.map(|ai| volume_ml - ai),
            created_at: now_millis(),
        })
        .await?;
    if job.state == liverseg_core::JobState::Received {
        enqueue(deps, job.id, &series_uid).await?;
    }
    let detail = format!(
        "version {} of series {series_uid} via {} from {}; dice vs AI {}; volume {:.1} ml ({}); upload sha256 {}; repairs: {}",
        version.version,
        origin.via,
        origin.peer,
        dice.map(|d| format!("{d:.4}"))
            .unwrap_or_else(|| "n/a".into()),
        volume_ml,
        version
            .volume_change_ml
            .map(|d| format!("{d:+.1} ml"))
            .unwrap_or_else(|| "no AI result".into()),
        &upload_sha[..16],
        if checked.repairs.is_empty() {
            "none".to_string()
        } else {
            checked.repairs.join("; ")
        }
    );
    deps.store
        .record_event(&AuditEvent {
            at: now_millis(),
            kind: "seg.correction".into(),
            subject: sop_uid.clone(),
            detail,
        })
        .await?;
    info!(
        %series_uid,
        version = version.version,
        dice_vs_ai = ?dice,
        via = origin.via,
        "correction stored"
    );
    let job = deps.store.get_job(job.id).await?.unwrap_or(job);
    Ok(Accepted {
        version,
        job,
        new: true,
        repairs: checked.repairs,
    })
}

/// The liver mask of a stored SEG on `slices`.
fn mask_of(bytes: &[u8], slices: &Slices) -> Result<Vec<u8>, String> {
    let read = repair::read_lenient(bytes).map_err(|e| e.to_string())?;
    let seg = seg::parse(&read.dataset)?;
    let liver = seg
        .liver_segment()
        .ok_or_else(|| "no liver segment".to_string())?;
    seg::rasterize(&seg, liver, slices)
}

/// All checks and repairs, blocking (the pixel data is decoded).
fn check(
    lenient: repair::Lenient,
    slices: &Slices,
    series_uid: &str,
    study_uid: &str,
    frame_of_reference: Option<&str>,
    thickness: Option<f64>,
    via: &'static str,
) -> Result<Checked, CorrectionError> {
    let repair::Lenient {
        mut dataset,
        transfer_syntax,
        mut repairs,
    } = lenient;
    let geometry = |reason: String| CorrectionError::Geometry {
        series: series_uid.to_string(),
        reason,
    };
    if text(&dataset, tags::STUDY_INSTANCE_UID).as_deref() != Some(study_uid) {
        return Err(geometry("it belongs to another study".into()));
    }
    if let (Some(series_for), Some(seg_for)) = (
        frame_of_reference,
        text(&dataset, tags::FRAME_OF_REFERENCE_UID),
    ) && series_for != seg_for
    {
        return Err(geometry(format!(
            "its Frame of Reference UID {seg_for} is not the series' {series_for}"
        )));
    }
    repairs.extend(repair::fill_pixel_measures(
        &mut dataset,
        slices.pixel_spacing,
        thickness.or(Some(slices.slice_spacing())),
    ));
    let parsed = parse_object(&dataset).map_err(|e| CorrectionError::Invalid(e.to_string()))?;
    let segmentation = seg::parse(&dataset).map_err(CorrectionError::Invalid)?;
    let liver = segmentation
        .liver_segment()
        .ok_or(CorrectionError::NoLiver(segmentation.segments.len()))?;
    let mask = seg::rasterize(&segmentation, liver, slices).map_err(geometry)?;
    // A liver CT always shows liver: an empty correction is an export
    // gone wrong, not a finding, and would score Dice 0 against the AI.
    if !mask.iter().any(|&v| v != 0) {
        return Err(CorrectionError::EmptyLiver(series_uid.to_string()));
    }
    let step = algorithm_step(&dataset, liver, via);
    let bytes = repair::to_part10(dataset, &transfer_syntax)
        .map_err(|e| CorrectionError::Invalid(e.to_string()))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let record = InstanceRecord {
        sop_instance_uid: parsed.identity.sop_instance_uid.clone(),
        sop_class_uid: parsed.identity.sop_class_uid.clone(),
        series_uid: parsed.identity.series_uid.clone(),
        study_uid: parsed.identity.study_uid.clone(),
        transfer_syntax_uid: transfer_syntax,
        blob_key: String::new(),
        sha256: sha256.clone(),
        size_bytes: bytes.len() as i64,
        received_at: now_millis(),
        calling_ae: String::new(),
        meta: parsed.meta,
    };
    Ok(Checked {
        mask_voxels: mask.iter().map(|&v| v as u64).sum(),
        voxel_ml: slices.voxel_ml(),
        bytes,
        sha256,
        record,
        step,
        repairs,
        mask,
    })
}

/// The liver segment's algorithm as the SEG declares it, and who wrote it.
fn algorithm_step(obj: &InMemDicomObject, segment: u32, via: &'static str) -> AlgorithmStep {
    let item = obj
        .get(tags::SEGMENT_SEQUENCE)
        .and_then(|e| e.items())
        .and_then(|items| {
            items
                .iter()
                .find(|i| liverseg_dicom::instance::int(i, tags::SEGMENT_NUMBER) == Some(segment))
        });
    let field = |tag| item.and_then(|i| text(i, tag));
    let software = [
        text(obj, tags::MANUFACTURER),
        text(obj, tags::SOFTWARE_VERSIONS),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let family = item
        .and_then(|i| first_item(i, tags::SEGMENTATION_ALGORITHM_IDENTIFICATION_SEQUENCE))
        .and_then(|a| text(a, tags::ALGORITHM_VERSION));
    AlgorithmStep {
        algorithm_type: field(tags::SEGMENT_ALGORITHM_TYPE).unwrap_or_else(|| "MANUAL".into()),
        name: field(tags::SEGMENT_ALGORITHM_NAME),
        version: family,
        software: (!software.is_empty()).then_some(software),
        via: via.to_string(),
        at: now_millis(),
    }
}

/// The CT series a SEG segments: its ReferencedSeriesSequence, else the
/// series of the source images its frames were derived from.
async fn referenced_series(deps: &Deps, obj: &InMemDicomObject) -> Result<String, CorrectionError> {
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
    let source_images: Vec<String> = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .map(|frames| {
            frames
                .iter()
                .filter_map(|f| {
                    let derivation = first_item(f, tags::DERIVATION_IMAGE_SEQUENCE)?;
                    let source = first_item(derivation, tags::SOURCE_IMAGE_SEQUENCE)?;
                    text(source, tags::REFERENCED_SOP_INSTANCE_UID)
                })
                .take(3)
                .collect()
        })
        .unwrap_or_default();
    for uid in source_images {
        if let Some(rec) = deps.store.get_instance(&uid).await? {
            candidates.push(rec.series_uid);
        }
    }
    if candidates.is_empty() {
        return Err(CorrectionError::NoReference);
    }
    for series in &candidates {
        if deps.store.get_series(series).await?.is_some() {
            return Ok(series.clone());
        }
    }
    Err(CorrectionError::UnknownSeries(candidates[0].clone()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CorrectionError> + Send + 'static,
) -> Result<T, CorrectionError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CorrectionError::Storage(format!("worker thread failed: {e}")))?
}
