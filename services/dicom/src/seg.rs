//! Reading DICOM Segmentation objects: their segments and, for each frame,
//! where it lies (Plane Position) and which segment it carries.
//!
//! Geometry comes from the functional groups (per-frame over shared), never
//! from frame order. BINARY (1 bit, packed across frame boundaries) and
//! FRACTIONAL (8 bit) native pixel data are read; a FRACTIONAL frame counts
//! as set where it exceeds half of MaximumFractionalValue.

use crate::instance::{first_item, floats, int, text};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SegError {
    #[error("{path}: not a readable DICOM file: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: Box<dicom_object::ReadError>,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub number: u32,
    pub label: String,
    /// SegmentedPropertyTypeCodeSequence: (scheme, code value).
    pub property_type: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct SegFrame {
    pub segment: u32,
    pub position: [f64; 3],
    pub orientation: [f64; 6],
    pub pixel_spacing: [f64; 2],
    /// rows x columns, 0/1.
    pub pixels: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Segmentation {
    pub rows: usize,
    pub columns: usize,
    pub segmentation_type: String,
    pub frame_of_reference_uid: Option<String>,
    pub segments: Vec<Segment>,
    pub frames: Vec<SegFrame>,
}

impl Segmentation {
    /// The liver segment: SNOMED CT 10200004 (or SRT T-62000), else a
    /// segment labelled "liver", else the only segment.
    pub fn liver_segment(&self) -> Option<u32> {
        let coded = self.segments.iter().find(|s| {
            s.property_type
                .as_ref()
                .is_some_and(|(_, code)| code == "10200004" || code == "T-62000")
        });
        coded
            .or_else(|| {
                self.segments
                    .iter()
                    .find(|s| s.label.to_ascii_lowercase().contains("liver"))
            })
            .or_else(|| (self.segments.len() == 1).then(|| &self.segments[0]))
            .map(|s| s.number)
    }
}

pub fn read(path: &Path) -> Result<Segmentation, SegError> {
    let obj = OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| SegError::Read {
            path: path.into(),
            source: Box::new(e),
        })?;
    parse(&obj).map_err(|reason| SegError::Invalid {
        path: path.into(),
        reason,
    })
}

fn six(v: Option<Vec<f64>>) -> Option<[f64; 6]> {
    v.and_then(|v| v.get(..6)?.try_into().ok())
}

fn group_value<const N: usize>(
    groups: &[Option<&InMemDicomObject>],
    seq: Tag,
    tag: Tag,
) -> Option<[f64; N]> {
    groups
        .iter()
        .flatten()
        .find_map(|g| first_item(g, seq).and_then(|item| floats(item, tag)))
        .and_then(|v| v.get(..N)?.try_into().ok())
}

fn parse(obj: &InMemDicomObject) -> Result<Segmentation, String> {
    let class = text(obj, tags::SOP_CLASS_UID).unwrap_or_default();
    if class != crate::sop::SEGMENTATION_STORAGE {
        return Err(format!("not a Segmentation (SOP Class {class:?})"));
    }
    let rows = int(obj, tags::ROWS).ok_or("Rows is missing")? as usize;
    let columns = int(obj, tags::COLUMNS).ok_or("Columns is missing")? as usize;
    let n_frames = int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1) as usize;
    let bits = int(obj, tags::BITS_ALLOCATED).ok_or("BitsAllocated is missing")?;
    let seg_type = text(obj, tags::SEGMENTATION_TYPE).unwrap_or_else(|| "BINARY".into());
    let max_fraction = int(obj, tags::MAXIMUM_FRACTIONAL_VALUE).unwrap_or(255) as f64;

    let segments =
        obj.get(tags::SEGMENT_SEQUENCE)
            .and_then(|e| e.items())
            .ok_or("SegmentSequence is missing")?
            .iter()
            .map(|item| Segment {
                number: int(item, tags::SEGMENT_NUMBER).unwrap_or(0),
                label: text(item, tags::SEGMENT_LABEL).unwrap_or_default(),
                property_type: first_item(item, tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE)
                    .and_then(|c| {
                        Some((
                            text(c, tags::CODING_SCHEME_DESIGNATOR).unwrap_or_default(),
                            text(c, tags::CODE_VALUE)?,
                        ))
                    }),
            })
            .collect::<Vec<_>>();

    let pixel = obj.get(tags::PIXEL_DATA).ok_or("has no pixel data")?;
    if pixel.fragments().is_some() {
        return Err("encapsulated (compressed) SEG pixel data is not supported".into());
    }
    let bytes = pixel.to_bytes().map_err(|e| format!("pixel data: {e}"))?;
    let plane = rows * columns;
    let needed_bits = match bits {
        1 => n_frames * plane,
        8 => n_frames * plane * 8,
        b => return Err(format!("BitsAllocated {b} is not 1 or 8")),
    };
    if bytes.len() * 8 < needed_bits {
        return Err(format!(
            "pixel data holds {} bytes, {n_frames} frames of {rows}x{columns} need {}",
            bytes.len(),
            needed_bits.div_ceil(8)
        ));
    }

    let shared = first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .ok_or("PerFrameFunctionalGroupsSequence is missing")?;
    if per_frame.len() != n_frames {
        return Err(format!(
            "{} per-frame functional groups for {n_frames} frames",
            per_frame.len()
        ));
    }
    let top_orientation = six(floats(obj, tags::IMAGE_ORIENTATION_PATIENT));
    let mut frames = Vec::with_capacity(n_frames);
    for (k, fg) in per_frame.iter().enumerate() {
        let groups = [Some(fg), shared];
        let position = group_value::<3>(
            &groups,
            tags::PLANE_POSITION_SEQUENCE,
            tags::IMAGE_POSITION_PATIENT,
        )
        .ok_or_else(|| format!("frame {}: PlanePositionSequence is missing", k + 1))?;
        let orientation = group_value::<6>(
            &groups,
            tags::PLANE_ORIENTATION_SEQUENCE,
            tags::IMAGE_ORIENTATION_PATIENT,
        )
        .or(top_orientation)
        .ok_or_else(|| format!("frame {}: PlaneOrientationSequence is missing", k + 1))?;
        let pixel_spacing =
            group_value::<2>(&groups, tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING)
                .ok_or_else(|| format!("frame {}: PixelSpacing is missing", k + 1))?;
        let segment = [Some(fg), shared]
            .into_iter()
            .flatten()
            .find_map(|g| {
                first_item(g, tags::SEGMENT_IDENTIFICATION_SEQUENCE)
                    .and_then(|s| int(s, tags::REFERENCED_SEGMENT_NUMBER))
            })
            .ok_or_else(|| format!("frame {}: SegmentIdentificationSequence is missing", k + 1))?;
        let pixels: Vec<u8> = if bits == 1 {
            (0..plane)
                .map(|i| {
                    let bit = k * plane + i;
                    (bytes[bit / 8] >> (bit % 8)) & 1
                })
                .collect()
        } else {
            let frame = &bytes[k * plane..(k + 1) * plane];
            if seg_type == "FRACTIONAL" {
                frame
                    .iter()
                    .map(|&v| u8::from(v as f64 > max_fraction / 2.0))
                    .collect()
            } else {
                frame.iter().map(|&v| u8::from(v != 0)).collect()
            }
        };
        frames.push(SegFrame {
            segment,
            position,
            orientation,
            pixel_spacing,
            pixels,
        });
    }
    Ok(Segmentation {
        rows,
        columns,
        segmentation_type: seg_type,
        frame_of_reference_uid: text(obj, tags::FRAME_OF_REFERENCE_UID),
        segments,
        frames,
    })
}
