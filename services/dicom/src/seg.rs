//! Reading DICOM Segmentation objects: their segments and, for each frame,
//! where it lies (Plane Position) and which segment it carries.
//!
//! Geometry comes from the functional groups (per-frame over shared), never
//! from frame order. BINARY (1 bit, packed across frame boundaries) and
//! FRACTIONAL (8 bit) native pixel data are read; a FRACTIONAL frame counts
//! as set where it exceeds half of MaximumFractionalValue.

use crate::instance::{first_item, floats, int, text};
use crate::series::{dot, slice_normal};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use liverseg_core::InstanceMeta;
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

/// Reads a Segmentation from a data set already in memory; `Err` says
/// what is wrong, phrased for the sender.
pub fn parse(obj: &InMemDicomObject) -> Result<Segmentation, String> {
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

    let segments = obj
        .get(tags::SEGMENT_SEQUENCE)
        .and_then(|e| e.items())
        .ok_or("SegmentSequence is missing")?
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let number = int(item, tags::SEGMENT_NUMBER)
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("segment {} has no valid SegmentNumber", i + 1))?;
            Ok(Segment {
                number,
                label: text(item, tags::SEGMENT_LABEL).unwrap_or_default(),
                property_type: first_item(item, tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE)
                    .and_then(|c| {
                        Some((
                            text(c, tags::CODING_SCHEME_DESIGNATOR).unwrap_or_default(),
                            text(c, tags::CODE_VALUE)?,
                        ))
                    }),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;

    let pixel = obj.get(tags::PIXEL_DATA).ok_or("has no pixel data")?;
    if pixel.fragments().is_some() {
        return Err("encapsulated (compressed) SEG pixel data is not supported".into());
    }
    let bytes = pixel.to_bytes().map_err(|e| format!("pixel data: {e}"))?;
    // Checked: Rows, Columns and NumberOfFrames come from the sender.
    let overflow = || format!("{n_frames} frames of {rows}x{columns} is too large");
    let plane = rows.checked_mul(columns).ok_or_else(overflow)?;
    let per_pixel = match bits {
        1 => 1,
        8 => 8,
        b => return Err(format!("BitsAllocated {b} is not 1 or 8")),
    };
    let needed_bits = n_frames
        .checked_mul(plane)
        .and_then(|n| n.checked_mul(per_pixel))
        .ok_or_else(overflow)?;
    if bytes.len().saturating_mul(8) < needed_bits {
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
        if !segments.iter().any(|s| s.number == segment) {
            return Err(format!(
                "frame {} refers to segment {segment}, which SegmentSequence does not define",
                k + 1
            ));
        }
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

/// The slices of a CT series that a segmentation must land on.
#[derive(Debug, Clone, PartialEq)]
pub struct Slices {
    pub rows: usize,
    pub columns: usize,
    pub orientation: [f64; 6],
    /// Spacing between rows, then between columns (PixelSpacing order).
    pub pixel_spacing: [f64; 2],
    /// Each slice's ImagePositionPatient, sorted along the slice normal.
    pub positions: Vec<[f64; 3]>,
}

impl Slices {
    /// The geometry of a single-frame series from its instances' metadata,
    /// ordered by position along the normal (never by file or number).
    pub fn from_instances(metas: &[&InstanceMeta]) -> Result<Slices, String> {
        let first = metas.first().ok_or("the series has no instances")?;
        let orientation = first
            .image_orientation
            .ok_or("ImageOrientationPatient is missing")?;
        let normal = slice_normal(&orientation).ok_or("ImageOrientationPatient is degenerate")?;
        let (rows, columns) = match (first.rows, first.columns) {
            (Some(r), Some(c)) if r > 0 && c > 0 => (r as usize, c as usize),
            _ => return Err("Rows or Columns is missing".into()),
        };
        let pixel_spacing = first.pixel_spacing.ok_or("PixelSpacing is missing")?;
        let mut positions = Vec::with_capacity(metas.len());
        for m in metas {
            if m.rows.map(|r| r as usize) != Some(rows)
                || m.columns.map(|c| c as usize) != Some(columns)
            {
                return Err("instances differ in Rows or Columns".into());
            }
            let o = m
                .image_orientation
                .ok_or("ImageOrientationPatient is missing on some instances")?;
            if o.iter().zip(orientation).any(|(a, b)| (a - b).abs() > 1e-3) {
                return Err("instances differ in ImageOrientationPatient".into());
            }
            positions.push(
                m.image_position
                    .ok_or("ImagePositionPatient is missing on some instances")?,
            );
        }
        positions.sort_by(|a, b| dot(*a, normal).total_cmp(&dot(*b, normal)));
        Ok(Slices {
            rows,
            columns,
            orientation,
            pixel_spacing,
            positions,
        })
    }

    pub fn normal(&self) -> [f64; 3] {
        slice_normal(&self.orientation).unwrap_or([0.0, 0.0, 1.0])
    }

    /// Median distance between neighbouring slices (mm); 1 for one slice.
    pub fn slice_spacing(&self) -> f64 {
        let n = self.normal();
        let mut gaps: Vec<f64> = self
            .positions
            .windows(2)
            .map(|w| dot(w[1], n) - dot(w[0], n))
            .collect();
        if gaps.is_empty() {
            return 1.0;
        }
        gaps.sort_by(f64::total_cmp);
        gaps[gaps.len() / 2]
    }

    pub fn voxel_ml(&self) -> f64 {
        self.pixel_spacing[0] * self.pixel_spacing[1] * self.slice_spacing() / 1000.0
    }

    pub fn len(&self) -> usize {
        self.positions.len() * self.rows * self.columns
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slice a plane at `position` coincides with, if any.
    fn slice_at(&self, position: [f64; 3]) -> Option<usize> {
        let n = self.normal();
        let z = dot(position, n);
        let tol = (0.1 * self.slice_spacing()).max(0.01);
        let k = self
            .positions
            .partition_point(|p| dot(*p, n) < z - tol)
            .min(self.positions.len().checked_sub(1)?);
        let d = sub(position, self.positions[k]);
        let (rc, cc) = (
            [
                self.orientation[0],
                self.orientation[1],
                self.orientation[2],
            ],
            [
                self.orientation[3],
                self.orientation[4],
                self.orientation[5],
            ],
        );
        let in_plane_ok = dot(d, rc).abs() < 0.05 * self.pixel_spacing[1]
            && dot(d, cc).abs() < 0.05 * self.pixel_spacing[0];
        (dot(d, n).abs() <= tol && in_plane_ok).then_some(k)
    }
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

/// Paints `segment`'s frames onto `slices` as a `[slice][row][column]`
/// 0/1 mask. Every frame of the segment must lie exactly on a slice, with
/// the series' orientation, pixel spacing and matrix; `Err` names the first
/// frame that does not.
pub fn rasterize(seg: &Segmentation, segment: u32, slices: &Slices) -> Result<Vec<u8>, String> {
    let (r, c) = (slices.rows, slices.columns);
    if (seg.rows, seg.columns) != (r, c) {
        return Err(format!(
            "frames are {}x{}, the series' images {r}x{c}",
            seg.rows, seg.columns
        ));
    }
    let mut out = vec![0u8; slices.len()];
    for (k, f) in seg
        .frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f.segment == segment)
    {
        if f.orientation
            .iter()
            .zip(slices.orientation)
            .any(|(a, b)| (a - b).abs() > 1e-3)
        {
            return Err(format!(
                "frame {}: orientation differs from the series'",
                k + 1
            ));
        }
        if f.pixel_spacing
            .iter()
            .zip(slices.pixel_spacing)
            .any(|(a, b)| (a - b).abs() > 1e-3 * b.max(1.0))
        {
            return Err(format!(
                "frame {}: pixel spacing {:?} differs from the series' {:?}",
                k + 1,
                f.pixel_spacing,
                slices.pixel_spacing
            ));
        }
        let z = slices.slice_at(f.position).ok_or_else(|| {
            format!(
                "frame {} at ({:.2}, {:.2}, {:.2}) does not lie on a slice of the series",
                k + 1,
                f.position[0],
                f.position[1],
                f.position[2]
            )
        })?;
        let plane = &mut out[z * r * c..(z + 1) * r * c];
        for (o, p) in plane.iter_mut().zip(&f.pixels) {
            *o |= *p;
        }
    }
    Ok(out)
}

/// Dice overlap of two 0/1 masks of one grid (1 when both are empty).
pub fn dice(a: &[u8], b: &[u8]) -> f64 {
    let (mut both, mut total) = (0u64, 0u64);
    for (x, y) in a.iter().zip(b) {
        both += u64::from(x & y);
        total += u64::from(*x) + u64::from(*y);
    }
    if total == 0 {
        1.0
    } else {
        2.0 * both as f64 / total as f64
    }
}

#[cfg(test)]
mod geometry_tests {
    use super::*;

    fn slices() -> Slices {
        Slices {
            rows: 2,
            columns: 3,
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            pixel_spacing: [0.5, 0.7],
            positions: (0..4)
                .map(|z| [10.0, 20.0, -2.5 * z as f64])
                .rev()
                .collect(),
        }
    }

    fn frame(z: f64, spacing: [f64; 2]) -> SegFrame {
        SegFrame {
            segment: 1,
            position: [10.0, 20.0, z],
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            pixel_spacing: spacing,
            pixels: vec![1, 0, 1, 0, 1, 0],
        }
    }

    fn seg(frames: Vec<SegFrame>) -> Segmentation {
        Segmentation {
            rows: 2,
            columns: 3,
            segmentation_type: "BINARY".into(),
            frame_of_reference_uid: None,
            segments: vec![],
            frames,
        }
    }

    #[test]
    fn frames_land_on_their_slices_by_position() {
        let s = slices();
        assert!((s.slice_spacing() - 2.5).abs() < 1e-9);
        // Sorted along +z: -7.5 is slice 0, 0.0 slice 3.
        let mask = rasterize(
            &seg(vec![frame(-7.5, [0.5, 0.7]), frame(0.0, [0.5, 0.7])]),
            1,
            &s,
        )
        .unwrap();
        assert_eq!(mask.iter().map(|&v| v as usize).sum::<usize>(), 6);
        assert_eq!(&mask[..6], &[1, 0, 1, 0, 1, 0]);
        assert_eq!(&mask[18..], &[1, 0, 1, 0, 1, 0]);
        assert!((s.voxel_ml() - 0.5 * 0.7 * 2.5 / 1000.0).abs() < 1e-12);
    }

    #[test]
    fn frames_off_the_series_geometry_are_refused() {
        let s = slices();
        let between = rasterize(&seg(vec![frame(-1.25, [0.5, 0.7])]), 1, &s).unwrap_err();
        assert!(between.contains("does not lie on a slice"), "{between}");
        let outside = rasterize(&seg(vec![frame(5.0, [0.5, 0.7])]), 1, &s).unwrap_err();
        assert!(outside.contains("does not lie on a slice"), "{outside}");
        let spacing = rasterize(&seg(vec![frame(0.0, [0.6, 0.7])]), 1, &s).unwrap_err();
        assert!(spacing.contains("pixel spacing"), "{spacing}");
        let mut moved = frame(0.0, [0.5, 0.7]);
        moved.position[0] += 0.7;
        assert!(rasterize(&seg(vec![moved]), 1, &s).is_err());
    }

    #[test]
    fn dice_counts_overlap() {
        assert_eq!(dice(&[1, 1, 0, 0], &[1, 0, 1, 0]), 0.5);
        assert_eq!(dice(&[0, 0], &[0, 0]), 1.0);
    }
}
