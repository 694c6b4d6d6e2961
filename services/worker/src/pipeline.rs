//! What the worker does with a series. The segmentation model plugs in
//! here; until then the pipeline decodes the series into a volume, which
//! proves every instance is decodable and the geometry is sound, and
//! reports its shape.

use liverseg_core::Job;
use std::path::PathBuf;

/// A blocking pipeline step over the files of one series; returns a JSON
/// summary stored with the job, or the reason it failed.
pub trait Pipeline: Send + Sync + 'static {
    fn run(&self, job: &Job, files: &[PathBuf]) -> Result<serde_json::Value, String>;
}

/// Decodes the series into a Hounsfield-unit volume.
pub struct LoadVolume;

impl Pipeline for LoadVolume {
    fn run(&self, _job: &Job, files: &[PathBuf]) -> Result<serde_json::Value, String> {
        let started = std::time::Instant::now();
        let v = liverseg_dicom::volume::load_series(files).map_err(|e| e.to_string())?;
        let (min, max) =
            v.hu.iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), x| {
                    (lo.min(*x), hi.max(*x))
                });
        Ok(serde_json::json!({
            "slices": v.dims[0],
            "rows": v.dims[1],
            "columns": v.dims[2],
            "spacing_mm": v.spacing,
            "hu_range": [min, max],
            "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        }))
    }
}
