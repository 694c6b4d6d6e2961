//! [`Source::from_volume`]: the source description of a decoded volume.

use super::{DerivedError, Source, SourceImage};
use crate::instance::{parse_object, text};
use crate::volume::Volume;
use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use std::path::Path;

impl Source {
    /// Describes the series of `volume`: geometry and slice references from
    /// the volume (its slice order is the mask's), patient and study from
    /// `header_file`, which must be one of the volume's slices.
    pub fn from_volume(volume: &Volume, header_file: &Path) -> Result<Source, DerivedError> {
        let [slices, rows, columns] = volume.dims;
        if slices == 0 {
            return Err(DerivedError::NoImages);
        }
        if volume.sop_instance_uids.len() != slices
            || volume.sop_class_uids.len() != slices
            || volume.positions.len() != slices
        {
            return Err(DerivedError::InvalidSource(format!(
                "{slices} slices but {} instance UIDs, {} class UIDs, {} positions",
                volume.sop_instance_uids.len(),
                volume.sop_class_uids.len(),
                volume.positions.len()
            )));
        }
        let header = OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(header_file)
            .map_err(|e| DerivedError::OpenHeader {
                path: header_file.into(),
                source: Box::new(e),
            })?;
        let parsed = parse_object(&header).map_err(|e| DerivedError::ReadHeader {
            path: header_file.into(),
            source: Box::new(e),
        })?;
        if !volume
            .sop_instance_uids
            .contains(&parsed.identity.sop_instance_uid)
        {
            return Err(DerivedError::HeaderNotInVolume {
                path: header_file.into(),
                sop_instance_uid: parsed.identity.sop_instance_uid,
            });
        }
        Ok(Source {
            context: super::copy_context(&header),
            study_instance_uid: parsed.identity.study_uid,
            series_instance_uid: parsed.identity.series_uid,
            frame_of_reference_uid: parsed
                .meta
                .frame_of_reference_uid
                .filter(|u| crate::uid::is_valid(u)),
            position_reference_indicator: text(&header, tags::POSITION_REFERENCE_INDICATOR)
                .unwrap_or_default(),
            rows,
            columns,
            pixel_spacing: [volume.spacing[1], volume.spacing[2]],
            slice_thickness: parsed.meta.slice_thickness,
            spacing_between_slices: volume.spacing[0],
            orientation: volume.orientation,
            images: volume
                .sop_class_uids
                .iter()
                .zip(&volume.sop_instance_uids)
                .zip(&volume.positions)
                .map(|((class, instance), position)| SourceImage {
                    sop_class_uid: class.clone(),
                    sop_instance_uid: instance.clone(),
                    position: *position,
                })
                .collect(),
        })
    }
}
