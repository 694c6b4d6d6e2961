//! A CT series decoded into one volume of Hounsfield units, slices ordered
//! by their position along the slice normal (never by file or instance
//! order). Gaps, duplicates, mixed orientations and mixed sizes are refused
//! with a message naming the problem.

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
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    /// SOP Class UIDs in slice order (derived objects reference each slice
    /// by class and instance).
    pub sop_class_uids: Vec<String>,
    /// Each slice's own ImagePositionPatient, in slice order: derived
    /// objects place their frames exactly where the source slices are, not
    /// where `origin` plus a median spacing would put them.
    pub positions: Vec<[f64; 3]>,
    pub hu: Vec<f32>,
}

/// What a slice's header says; its pixels are decoded later, straight
/// into their place in the volume.
struct Slice {
    path: PathBuf,
    uid: String,
    class_uid: String,
    position: [f64; 3],
    orientation: [f64; 6],
    spacing: [f64; 2],
    rows: usize,
    columns: usize,
}

/// Reads a slice's header (after the whole file's structure and pixel data
/// length are checked: [`crate::instance::read_header`]).
fn read_slice(path: &Path, require_ct: bool) -> Result<Slice, VolumeError> {
    let geometry = |reason: &str| VolumeError::Geometry {
        path: path.into(),
        reason: reason.into(),
    };
    let parsed = crate::instance::read_header(path).map_err(|e| VolumeError::Header {
        path: path.into(),
        source: Box::new(e),
    })?;
    let m = parsed.meta;
    if require_ct && parsed.identity.sop_class_uid != crate::sop::CT_IMAGE_STORAGE {
        let what = if parsed.identity.sop_class_uid == crate::sop::ENHANCED_CT_IMAGE_STORAGE {
            "Enhanced CT (multi-frame) is not supported yet".to_string()
        } else {
            format!(
                "not a CT image (SOP Class {}, modality {})",
                parsed.identity.sop_class_uid,
                m.modality.as_deref().unwrap_or("absent")
            )
        };
        return Err(geometry(&what));
    }
    if m.number_of_frames.unwrap_or(1) > 1 {
        return Err(geometry(
            "multi-frame (Enhanced CT) volumes are not supported yet",
        ));
    }
    let (Some(rows), Some(columns)) = (m.rows, m.columns) else {
        return Err(geometry("Rows or Columns is missing"));
    };
    Ok(Slice {
        path: path.into(),
        uid: parsed.identity.sop_instance_uid,
        class_uid: parsed.identity.sop_class_uid,
        position: m
            .image_position
            .ok_or_else(|| geometry("ImagePositionPatient is missing"))?,
        orientation: m
            .image_orientation
            .ok_or_else(|| geometry("ImageOrientationPatient is missing"))?,
        spacing: m
            .pixel_spacing
            .ok_or_else(|| geometry("PixelSpacing is missing"))?,
        rows: rows as usize,
        columns: columns as usize,
    })
}

/// Decodes a slice's pixels into `out` (one plane of the volume), in HU.
fn decode_into(s: &Slice, out: &mut [f32]) -> Result<(), VolumeError> {
    let geometry = |reason: &str| VolumeError::Geometry {
        path: s.path.clone(),
        reason: reason.into(),
    };
    let obj = OpenFileOptions::new()
        .open_file(&s.path)
        .map_err(|e| VolumeError::Read {
            path: s.path.clone(),
            source: Box::new(e),
        })?;
    if obj.get(dicom_dictionary_std::tags::PIXEL_DATA).is_none() {
        return Err(geometry("has no pixel data"));
    }
    let decoded = obj.decode_pixel_data().map_err(|e| VolumeError::Decode {
        path: s.path.clone(),
        source: Box::new(e),
    })?;
    if (decoded.rows() as usize, decoded.columns() as usize) != (s.rows, s.columns) {
        return Err(geometry("the decoded pixels do not match Rows and Columns"));
    }
    // The default conversion applies the modality LUT: stored values become HU.
    let hu: Vec<f32> = decoded
        .to_vec_with_options(&ConvertOptions::new())
        .map_err(|e| VolumeError::Decode {
            path: s.path.clone(),
            source: Box::new(e),
        })?;
    if hu.len() != out.len() {
        return Err(geometry("pixel data is not one grey-level frame"));
    }
    out.copy_from_slice(&hu);
    Ok(())
}

/// Decodes the files of one CT series into a volume.
pub fn load_series(paths: &[PathBuf]) -> Result<Volume, VolumeError> {
    load_images(paths, true)
}

/// A folder's series and what was set aside from it.
#[derive(Debug)]
pub struct Loaded {
    pub volume: Volume,
    /// The image files, in path order.
    pub files: Vec<PathBuf>,
    /// Objects that are not images (a directory record, a report, a
    /// presentation state...): each file and what it is.
    pub skipped: Vec<(PathBuf, &'static str)>,
}

/// What a non-image object in an export folder is, by its Media Storage
/// SOP Class UID; `None` for images (and for classes not known here, which
/// then meet the usual checks).
pub fn non_image_kind(sop_class_uid: &str) -> Option<&'static str> {
    // A class and every class under it (".7" covers the multi-frame
    // secondary captures, ".88" every SR, dose reports and key objects).
    const ROOTS: [(&str, &str); 8] = [
        ("1.2.840.10008.1.3.10", "a directory record (DICOMDIR)"),
        ("1.2.840.10008.5.1.4.1.1.88", "a structured report"),
        ("1.2.840.10008.5.1.4.1.1.11", "a presentation state"),
        ("1.2.840.10008.5.1.4.1.1.7", "a secondary capture"),
        ("1.2.840.10008.5.1.4.1.1.104", "an encapsulated document"),
        ("1.2.840.10008.5.1.4.1.1.66", "raw data or a segmentation"),
        ("1.2.840.10008.5.1.4.1.1.481", "a radiotherapy object"),
        ("1.2.840.10008.5.1.4.1.1.9", "a waveform"),
    ];
    let uid = crate::uid::trim(sop_class_uid);
    ROOTS
        .iter()
        .find(|(root, _)| {
            uid.strip_prefix(root)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
        .map(|(_, kind)| *kind)
}

/// The Media Storage SOP Class UID of a Part 10 file (`None` when the file
/// has no readable file meta group).
fn media_storage_class(path: &Path) -> Option<String> {
    let obj = OpenFileOptions::new()
        .read_until(dicom_dictionary_std::tags::SPECIFIC_CHARACTER_SET)
        .open_file(path)
        .ok()?;
    Some(crate::uid::trim(obj.meta().media_storage_sop_class_uid()).to_string())
}

/// Decodes every DICOM file under `dir` (recursively; hidden files and
/// DICOMDIR skipped) as one series: CT images when `require_ct`, else any
/// single-frame greyscale images (per-slice masks). Any unreadable file, or
/// files from more than one series, is an error naming them.
pub fn load_dir(dir: &Path, require_ct: bool) -> Result<Volume, VolumeError> {
    load_dir_listing(dir, require_ct).map(|l| l.volume)
}

/// [`load_dir`] that sets aside the non-image objects a scanner's or PACS's
/// export folder holds beside the slices (see [`non_image_kind`]) and lists
/// them, instead of failing on them.
pub fn load_dir_listing(dir: &Path, require_ct: bool) -> Result<Loaded, VolumeError> {
    let all = crate::scu::collect_files(dir).map_err(|e| VolumeError::Io {
        path: dir.into(),
        source: e,
    })?;
    if all.is_empty() {
        return Err(VolumeError::Series(format!(
            "{}: no files in the folder",
            dir.display()
        )));
    }
    let mut paths = Vec::with_capacity(all.len());
    let mut skipped = Vec::new();
    for p in all {
        match media_storage_class(&p).as_deref().and_then(non_image_kind) {
            Some(kind) => skipped.push((p, kind)),
            None => paths.push(p),
        }
    }
    if paths.is_empty() {
        let list: Vec<String> = skipped
            .iter()
            .map(|(p, kind)| format!("{} is {kind}", p.display()))
            .collect();
        return Err(VolumeError::Series(format!(
            "{}: no images in the folder ({})",
            dir.display(),
            list.join("; ")
        )));
    }
    // A header-only pass first (it stops before Pixel Data): a folder of two
    // series is named as such before hundreds of MB are decoded, and before
    // the other series' files fail one by one for another reason.
    let mut series: Vec<(String, PathBuf, usize)> = Vec::new();
    for p in &paths {
        let parsed = crate::instance::read_header(p).map_err(|e| VolumeError::Header {
            path: p.clone(),
            source: Box::new(e),
        })?;
        match series
            .iter_mut()
            .find(|(uid, _, _)| *uid == parsed.identity.series_uid)
        {
            Some(entry) => entry.2 += 1,
            None => series.push((parsed.identity.series_uid, p.clone(), 1)),
        }
    }
    if series.len() > 1 {
        let list: Vec<String> = series
            .iter()
            .map(|(uid, first, n)| {
                format!("{n} file(s) of series {uid} (e.g. {})", first.display())
            })
            .collect();
        return Err(VolumeError::Series(format!(
            "{}: more than one series: {}",
            dir.display(),
            list.join("; ")
        )));
    }
    let volume = load_images(&paths, require_ct)?;
    Ok(Loaded {
        volume,
        files: paths,
        skipped,
    })
}

fn load_images(paths: &[PathBuf], require_ct: bool) -> Result<Volume, VolumeError> {
    let mut slices = paths
        .iter()
        .map(|p| read_slice(p, require_ct))
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
    // Every slice decoded straight into its place: holding the decoded
    // slices and then copying them into one volume would need twice the
    // memory (a 500-slice series is 500 MB of HU).
    let mut hu = vec![0f32; dims.iter().product()];
    for (s, plane) in slices.iter().zip(hu.chunks_exact_mut(rows * columns)) {
        decode_into(s, plane)?;
    }
    let origin = slices[0].position;
    let mut uids = Vec::with_capacity(slices.len());
    let mut class_uids = Vec::with_capacity(slices.len());
    let mut positions = Vec::with_capacity(slices.len());
    for s in slices {
        uids.push(s.uid);
        class_uids.push(s.class_uid);
        positions.push(s.position);
    }
    Ok(Volume {
        dims,
        spacing: [slice_spacing, px[0], px[1]],
        origin,
        orientation: iop,
        sop_instance_uids: uids,
        sop_class_uids: class_uids,
        positions,
        hu,
    })
}
