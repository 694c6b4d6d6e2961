//! A CT series decoded into one volume of Hounsfield units, slices ordered
//! by their position along the slice normal (never by file or instance
//! order). Gaps, duplicates, mixed orientations and mixed sizes are refused
//! with a message naming the problem.

use crate::instance::parse_object;
use crate::series::{dot, slice_normal};
use dicom_object::OpenFileOptions;
use dicom_pixeldata::{ConvertOptions, PixelDecoder};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: Box<dicom_object::ReadError>,
    },
    #[error("{path}: {source}")]
    Header {
        path: PathBuf,
        #[source]
        source: Box<crate::instance::InstanceError>,
    },
    #[error("{path}: cannot decode pixel data: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: Box<dicom_pixeldata::Error>,
    },
    #[error("{path}: {reason}")]
    Geometry { path: PathBuf, reason: String },
    #[error("{0}")]
    Series(String),
}

/// Voxels in Hounsfield units, indexed `[slice][row][column]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// slices, rows, columns
    pub dims: [usize; 3],
    /// Slice spacing along the normal, row spacing, column spacing (mm).
    pub spacing: [f64; 3],
    /// ImagePositionPatient of the first slice.
    pub origin: [f64; 3],
    pub orientation: [f64; 6],
    /// SOP Instance UIDs in slice order.
    pub sop_instance_uids: Vec<String>,
    pub hu: Vec<f32>,
}

struct Slice {
    path: PathBuf,
    uid: String,
    position: [f64; 3],
    orientation: [f64; 6],
    spacing: [f64; 2],
    rows: usize,
    columns: usize,
    hu: Vec<f32>,
}

fn read_slice(path: &Path) -> Result<Slice, VolumeError> {
    let geometry = |reason: &str| VolumeError::Geometry {
        path: path.into(),
        reason: reason.into(),
    };
    let obj = OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| VolumeError::Read {
            path: path.into(),
            source: Box::new(e),
        })?;
    let parsed = parse_object(&obj).map_err(|e| VolumeError::Header {
        path: path.into(),
        source: Box::new(e),
    })?;
    let m = parsed.meta;
    if m.number_of_frames.unwrap_or(1) > 1 {
        return Err(geometry(
            "multi-frame (Enhanced CT) volumes are not supported yet",
        ));
    }
    let decoded = obj.decode_pixel_data().map_err(|e| VolumeError::Decode {
        path: path.into(),
        source: Box::new(e),
    })?;
    // The default conversion applies the modality LUT: stored values become HU.
    let hu: Vec<f32> = decoded
        .to_vec_with_options(&ConvertOptions::new())
        .map_err(|e| VolumeError::Decode {
            path: path.into(),
            source: Box::new(e),
        })?;
    let (rows, columns) = (decoded.rows() as usize, decoded.columns() as usize);
    if hu.len() != rows * columns {
        return Err(geometry("pixel data is not one grey-level frame"));
    }
    Ok(Slice {
        path: path.into(),
        uid: parsed.identity.sop_instance_uid,
        position: m
            .image_position
            .ok_or_else(|| geometry("ImagePositionPatient is missing"))?,
        orientation: m
            .image_orientation
            .ok_or_else(|| geometry("ImageOrientationPatient is missing"))?,
        spacing: m
            .pixel_spacing
            .ok_or_else(|| geometry("PixelSpacing is missing"))?,
        rows,
        columns,
        hu,
    })
}

/// Decodes the files of one series into a volume.
pub fn load_series(paths: &[PathBuf]) -> Result<Volume, VolumeError> {
    let mut slices = paths
        .iter()
        .map(|p| read_slice(p))
        .collect::<Result<Vec<_>, _>>()?;
    let first = slices
        .first()
        .ok_or_else(|| VolumeError::Series("the series has no images".into()))?;
    let (iop, rows, columns, px) = (first.orientation, first.rows, first.columns, first.spacing);
    let normal = slice_normal(&iop).ok_or_else(|| VolumeError::Geometry {
        path: first.path.clone(),
        reason: "ImageOrientationPatient is degenerate".into(),
    })?;
    for s in &slices {
        let bad = |reason: String| VolumeError::Geometry {
            path: s.path.clone(),
            reason,
        };
        if s.orientation
            .iter()
            .zip(iop)
            .any(|(a, b)| (a - b).abs() > 1e-3)
        {
            return Err(bad("orientation differs from the rest of the series".into()));
        }
        if (s.rows, s.columns) != (rows, columns) {
            return Err(bad(format!(
                "{}x{} differs from the series' {rows}x{columns}",
                s.rows, s.columns
            )));
        }
        if s.spacing.iter().zip(px).any(|(a, b)| (a - b).abs() > 1e-3) {
            return Err(bad(
                "pixel spacing differs from the rest of the series".into()
            ));
        }
    }
    slices.sort_by(|a, b| dot(a.position, normal).total_cmp(&dot(b.position, normal)));
    let steps: Vec<f64> = slices
        .windows(2)
        .map(|w| dot(w[1].position, normal) - dot(w[0].position, normal))
        .collect();
    let slice_spacing = if steps.is_empty() {
        1.0
    } else {
        let mut sorted = steps.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        for (i, step) in steps.iter().enumerate() {
            if *step < 1e-3 {
                return Err(VolumeError::Series(format!(
                    "{} and {} are at the same position",
                    slices[i].path.display(),
                    slices[i + 1].path.display()
                )));
            }
            if (step - median).abs() > 0.1 * median + 0.01 {
                return Err(VolumeError::Series(format!(
                    "gap in the series: {step:.2} mm between {} and {}, where slices are {median:.2} mm apart",
                    slices[i].path.display(),
                    slices[i + 1].path.display()
                )));
            }
        }
        median
    };
    let dims = [slices.len(), rows, columns];
    let mut hu = Vec::with_capacity(dims.iter().product());
    let mut uids = Vec::with_capacity(slices.len());
    let origin = slices[0].position;
    for s in slices {
        hu.extend_from_slice(&s.hu);
        uids.push(s.uid);
    }
    Ok(Volume {
        dims,
        spacing: [slice_spacing, px[0], px[1]],
        origin,
        orientation: iop,
        sop_instance_uids: uids,
        hu,
    })
}
