//! The shipped model: its manifest and the tract-onnx runner.

use crate::Error;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use tract_onnx::prelude::*;

/// The model built into the binary (`models/liver-unet.onnx`).
pub const BUILTIN_ONNX: &[u8] = include_bytes!("../../../models/liver-unet.onnx");
/// Its manifest (`models/liver-unet.json`).
pub const BUILTIN_MANIFEST: &str = include_str!("../../../models/liver-unet.json");

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub input: InputSpec,
    pub output: OutputSpec,
    pub label: Label,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InputSpec {
    pub shape: [usize; 4],
    pub grid: usize,
    pub spacing_mm: f64,
    pub hu_window: [f32; 2],
    pub normalisation: Normalisation,
    pub air_hu: f32,
    pub body_hu: f32,
    pub neighbour_mm: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Normalisation {
    pub center_hu: f32,
    pub half_width_hu: f32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutputSpec {
    pub threshold_logit: f32,
    pub background_logit: f32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Label {
    pub name: String,
    pub category: Code,
    #[serde(rename = "type")]
    pub kind: Code,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Code {
    pub scheme: String,
    pub code: String,
    pub meaning: String,
}

type Plan = std::sync::Arc<TypedSimplePlan>;

/// A loaded, optimised network with a concrete `[1, 3, grid, grid]` input.
/// `run` takes `&self`: one `Model` serves every worker thread.
pub struct Model {
    pub manifest: Manifest,
    plan: Plan,
}

impl Model {
    /// The model built into the binary.
    pub fn builtin() -> Result<Model, Error> {
        Model::from_parts(BUILTIN_ONNX, BUILTIN_MANIFEST, "built-in model")
    }

    /// A model file and the manifest beside it (same name, `.json`).
    pub fn from_file(onnx: &Path) -> Result<Model, Error> {
        let manifest_path = onnx.with_extension("json");
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| Error::Io {
                path: p.into(),
                source: e,
            })
        };
        let bytes = read(onnx)?;
        let manifest = String::from_utf8(read(&manifest_path)?).map_err(|_| Error::Manifest {
            what: manifest_path.display().to_string(),
            reason: "not UTF-8".into(),
        })?;
        Model::from_parts(&bytes, &manifest, &onnx.display().to_string())
    }

    fn from_parts(onnx: &[u8], manifest: &str, what: &str) -> Result<Model, Error> {
        let manifest: Manifest = serde_json::from_str(manifest).map_err(|e| Error::Manifest {
            what: what.into(),
            reason: e.to_string(),
        })?;
        let digest = hex::encode(Sha256::digest(onnx));
        if digest != manifest.sha256 {
            return Err(Error::Manifest {
                what: what.into(),
                reason: format!(
                    "sha256 {digest} does not match the manifest's {}",
                    manifest.sha256
                ),
            });
        }
        let [n, c, h, w] = manifest.input.shape;
        if n != 1 || c != 3 || h != manifest.input.grid || w != manifest.input.grid {
            return Err(Error::Manifest {
                what: what.into(),
                reason: format!(
                    "input shape {:?} is not [1, 3, grid, grid]",
                    manifest.input.shape
                ),
            });
        }
        let model_err = |e: TractError| Error::Model {
            what: what.into(),
            reason: format!("{e:#}"),
        };
        let plan = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(onnx))
            .and_then(|m| m.with_input_fact(0, f32::fact([n, c, h, w]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(model_err)?;
        Ok(Model { manifest, plan })
    }

    pub fn grid(&self) -> usize {
        self.manifest.input.grid
    }

    /// One 2.5D input `[3, grid, grid]` to logits `[grid, grid]`.
    pub fn run(&self, input: Vec<f32>) -> Result<Vec<f32>, Error> {
        let g = self.grid();
        let err = |e: TractError| Error::Model {
            what: self.manifest.name.clone(),
            reason: format!("{e:#}"),
        };
        let tensor = Tensor::from_shape(&[1, 3, g, g], &input).map_err(err)?;
        let out = self.plan.run(tvec!(tensor.into())).map_err(err)?;
        let view = out[0].to_plain_array_view::<f32>().map_err(err)?;
        if view.len() != g * g {
            return Err(Error::Model {
                what: self.manifest.name.clone(),
                reason: format!("output has {} values, expected {}", view.len(), g * g),
            });
        }
        Ok(view.iter().copied().collect())
    }
}
