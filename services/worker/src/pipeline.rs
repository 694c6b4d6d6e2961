//! What the worker does with a series: decode, segment, build the results.
//! Blocking work: the worker runs it on the blocking pool.

use crate::results::{self, Artifact, ResultSet};
use liverseg_core::Job;
use liverseg_dicom::derived::Context;
use liverseg_inference::Model;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tracing::info_span;

/// What one run produced.
#[derive(Debug, Clone)]
pub struct Produced {
    pub artifacts: Vec<Artifact>,
    pub liver_volume_ml: Option<f64>,
    /// The model's verdict on its own result (none for a correction, which
    /// a radiologist made).
    pub assessment: Option<liverseg_core::Assessment>,
    /// Kept with the job (its `detail` once done).
    pub summary: serde_json::Value,
    /// Repairs made to the source's attributes, for the audit trail.
    pub repairs: Vec<String>,
    /// Seconds per stage (decode, inference, seg, mesh, sr), for metrics.
    pub stage_seconds: Vec<(&'static str, f64)>,
    /// Seconds of each network call on one slice.
    pub slice_seconds: Vec<f32>,
}

/// A blocking step over the files of one series.
pub trait Pipeline: Send + Sync + 'static {
    /// The results' provenance: results made by another model are stale.
    fn model_sha256(&self) -> &str;
    fn run(&self, job: &Job, files: &[PathBuf]) -> Result<Produced, String>;
    /// A corrected segmentation of the series in `files`: its mesh and
    /// volume report.
    fn correct(
        &self,
        job: &Job,
        files: &[PathBuf],
        correction: &results::Correction<'_>,
    ) -> Result<Produced, String>;
}

/// Marks the results of correction jobs, which no model made.
pub const CORRECTION_PROVENANCE: &str = "correction";

/// The liver model on a CT series, then the result set.
pub struct Segmenter {
    model: Arc<Model>,
    max_triangles: usize,
    threads: usize,
}

impl Segmenter {
    pub fn new(model: Arc<Model>, max_triangles: usize) -> Self {
        Segmenter {
            model,
            max_triangles,
            threads: liverseg_inference::segment::default_threads(),
        }
    }
}

/// The seed of a job's result UIDs: the same series content and model give
/// the same UIDs, so a re-run replaces rather than duplicates at the PACS.
pub fn uid_seed(series_uid: &str, fingerprint: &str, model_sha256: &str) -> String {
    format!("{series_uid}/{fingerprint}/{model_sha256}")
}

impl Pipeline for Segmenter {
    fn model_sha256(&self) -> &str {
        &self.model.manifest.sha256
    }

    fn run(&self, job: &Job, files: &[PathBuf]) -> Result<Produced, String> {
        let started = Instant::now();
        let mut volume = info_span!("decode", instances = files.len())
            .in_scope(|| liverseg_dicom::volume::load_series(files))
            .map_err(|e| e.to_string())?;
        let decode = started.elapsed().as_secs_f64();
        // The HU (4 bytes a voxel) are needed by the network only: they go
        // before the results are built.
        let hu = std::mem::take(&mut volume.hu);

        let grid = results::volume_grid(&volume);
        let options = liverseg_inference::segment::Options {
            threads: self.threads,
            ..Default::default()
        };
        let span = info_span!(
            "inference",
            slices = volume.dims[0],
            slices_run = tracing::field::Empty
        );
        let seg = span
            .in_scope(|| liverseg_inference::segment(&self.model, &grid, &hu, options, &|_, _| {}))
            .map_err(|e| e.to_string())?;
        drop(hu);
        span.record("slices_run", seg.slices_run);

        let ctx = Context {
            uid_seed: uid_seed(&job.series_uid, &job.fingerprint, self.model_sha256()),
            // The job's creation time, not now: a re-run writes the same bytes.
            created_unix_seconds: job.created_at / 1000,
            software_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let ResultSet {
            artifacts,
            frame_of_reference_repaired,
            mesh,
            seconds,
        } = results::build(
            &volume,
            &files[0],
            &seg.mask,
            seg.liver_volume_ml,
            &seg.assessment,
            &self.model.manifest,
            &ctx,
            self.max_triangles,
        )
        .map_err(|e| e.to_string())?;
        let a = &seg.assessment;
        let liver_found = a.liver_found;
        let m = &self.model.manifest;
        let summary = serde_json::json!({
            "liver_found": liver_found,
            "liver_volume_ml": liver_found.then_some(seg.liver_volume_ml),
            "coverage": a.coverage,
            "flags": a.flags,
            "no_liver": a.no_liver,
            "uncertainty": a.uncertainty,
            "slices": volume.dims[0],
            "slices_run": seg.slices_run,
            "model": {"name": m.name, "version": m.version, "sha256": m.sha256},
            "mesh": mesh.map(|r| serde_json::json!({"triangles": r.triangles, "watertight": r.watertight})),
            "seconds": {
                "decode": decode,
                "inference": seg.total_seconds,
                "seg": seconds.seg,
                "mesh": seconds.mesh,
                "sr": seconds.sr,
            },
        });
        let repairs = if frame_of_reference_repaired {
            vec![
                "the series has no Frame of Reference UID; the results carry a generated one"
                    .into(),
            ]
        } else {
            Vec::new()
        };
        Ok(Produced {
            artifacts,
            liver_volume_ml: liver_found.then_some(seg.liver_volume_ml),
            assessment: Some(seg.assessment),
            summary,
            repairs,
            stage_seconds: vec![
                ("decode", decode),
                ("inference", seg.total_seconds),
                ("seg", seconds.seg),
                ("mesh", seconds.mesh),
                ("sr", seconds.sr),
            ],
            slice_seconds: seg.slice_seconds,
        })
    }

    fn correct(
        &self,
        job: &Job,
        files: &[PathBuf],
        correction: &results::Correction<'_>,
    ) -> Result<Produced, String> {
        let started = Instant::now();
        let volume = info_span!("decode", instances = files.len())
            .in_scope(|| liverseg_dicom::volume::load_series(files))
            .map_err(|e| e.to_string())?;
        let decode = started.elapsed().as_secs_f64();
        let ctx = Context {
            uid_seed: format!("correction/{}", correction.sop_instance_uid),
            created_unix_seconds: job.created_at / 1000,
            software_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let (set, volume_ml) = results::build_correction(
            &volume,
            &files[0],
            correction,
            &self.model.manifest,
            &ctx,
            self.max_triangles,
        )
        .map_err(|e| e.to_string())?;
        let summary = serde_json::json!({
            "correction": {
                "sop_instance_uid": correction.sop_instance_uid,
                "version": correction.version,
            },
            "liver_found": true,
            "liver_volume_ml": volume_ml,
            "slices": volume.dims[0],
            "mesh": set.mesh.map(|r| serde_json::json!({"triangles": r.triangles, "watertight": r.watertight})),
            "seconds": {"decode": decode, "mesh": set.seconds.mesh, "sr": set.seconds.sr},
        });
        Ok(Produced {
            artifacts: set.artifacts,
            liver_volume_ml: Some(volume_ml),
            assessment: None,
            summary,
            repairs: Vec::new(),
            stage_seconds: vec![
                ("decode", decode),
                ("mesh", set.seconds.mesh),
                ("sr", set.seconds.sr),
            ],
            slice_seconds: Vec::new(),
        })
    }
}
