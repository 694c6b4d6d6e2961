//! Reading objects that other software wrote carelessly, and putting right
//! the flaws that are safe to put right.
//!
//! Viewers export segmentations with a file meta group that lacks
//! FileMetaInformationVersion (0002,0001), or with none at all, and with an
//! empty PixelMeasuresSequence. Strict readers (highdicom, dciodvfy) refuse
//! such files, so what liverseg keeps and sends on is rewritten with a
//! complete meta group and the series' pixel measures; each change is
//! named so it can be audited.

use crate::derived::write::Obj;
use crate::instance::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, first_item, text};
use crate::structure::{self, Encoding};
use dicom_core::Tag;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("not a DICOM object: {0}")]
    NotDicom(String),
    #[error("transfer syntax {0} is not supported")]
    UnsupportedTransferSyntax(String),
    #[error("the data set is malformed: {0}")]
    Structure(#[source] crate::structure::StructureError),
    #[error("the data set cannot be read: {0}")]
    Read(#[source] Box<dicom_object::ReadError>),
    #[error("the repaired object cannot be written: {0}")]
    Write(String),
}

/// A data set read leniently, with what had to be assumed about it.
#[derive(Debug, Clone)]
pub struct Lenient {
    pub dataset: InMemDicomObject,
    pub transfer_syntax: String,
    pub repairs: Vec<String>,
}

/// Reads a Part 10 file, a file whose meta group is incomplete, or a bare
/// data set (little endian, VR explicit or implicit).
pub fn read_lenient(bytes: &[u8]) -> Result<Lenient, RepairError> {
    let mut repairs = Vec::new();
    let meta_start = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        Some(132)
    } else if bytes.len() >= 4 && &bytes[..4] == b"DICM" {
        repairs.push("added the 128-byte preamble".to_string());
        Some(4)
    } else {
        None
    };
    let (start, ts) = match meta_start {
        Some(mut pos) => {
            let (mut ts, mut version) = (None, false);
            while pos + 8 <= bytes.len() && bytes[pos..pos + 2] == [0x02, 0x00] {
                let element = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
                let vr = &bytes[pos + 4..pos + 6];
                let (len, header) = if structure::has_long_length(vr) {
                    let l = bytes
                        .get(pos + 8..pos + 12)
                        .ok_or_else(|| RepairError::NotDicom("truncated file meta".into()))?;
                    (u32::from_le_bytes(l.try_into().unwrap()) as usize, 12)
                } else {
                    (
                        u16::from_le_bytes([bytes[pos + 6], bytes[pos + 7]]) as usize,
                        8,
                    )
                };
                let value = bytes
                    .get(pos + header..pos + header + len)
                    .ok_or_else(|| RepairError::NotDicom("truncated file meta".into()))?;
                match element {
                    0x0001 => version = true,
                    0x0010 => {
                        ts = Some(
                            String::from_utf8_lossy(value)
                                .trim_end_matches(['\0', ' '])
                                .to_string(),
                        )
                    }
                    _ => {}
                }
                pos += header + len;
            }
            if !version {
                repairs.push("added FileMetaInformationVersion (0002,0001)".to_string());
            }
            let ts = match ts {
                Some(ts) => ts,
                None => {
                    repairs.push("file meta named no transfer syntax; assumed".to_string());
                    guess_transfer_syntax(&bytes[pos..])
                }
            };
            (pos, ts)
        }
        None => {
            repairs.push("added the file meta group to a bare data set".to_string());
            (0, guess_transfer_syntax(bytes))
        }
    };
    let syntax = TransferSyntaxRegistry
        .get(&ts)
        .ok_or_else(|| RepairError::UnsupportedTransferSyntax(ts.clone()))?;
    // Checked before dicom-rs reads it: deep nesting and false lengths
    // would otherwise crash or swell the process (see `structure`).
    let encoding =
        Encoding::of(&ts).ok_or_else(|| RepairError::UnsupportedTransferSyntax(ts.clone()))?;
    let data = &bytes[start..];
    let shape = structure::check_stream(
        data,
        Some(data.len() as u64),
        encoding,
        crate::instance::MAX_INFLATED_BYTES,
    )
    .map_err(RepairError::Structure)?;
    let dataset = InMemDicomObject::read_dataset_with_ts(data, syntax)
        .map_err(|e| RepairError::Read(Box::new(e)))?;
    if text(&dataset, tags::SOP_INSTANCE_UID).is_none() {
        return Err(RepairError::NotDicom("no SOP Instance UID".into()));
    }
    let class = text(&dataset, tags::SOP_CLASS_UID).unwrap_or_default();
    shape
        .check_image(&class, encoding)
        .map_err(RepairError::Structure)?;
    Ok(Lenient {
        dataset,
        transfer_syntax: ts,
        repairs,
    })
}

/// Explicit VR little endian when the first element carries a plausible
/// VR, implicit otherwise.
fn guess_transfer_syntax(data: &[u8]) -> String {
    let explicit = data
        .get(4..6)
        .is_some_and(|vr| vr.iter().all(u8::is_ascii_uppercase));
    if explicit {
        crate::sop::EXPLICIT_VR_LE.to_string()
    } else {
        crate::sop::IMPLICIT_VR_LE.to_string()
    }
}

/// Gives a multi-frame object's shared functional groups the series' pixel
/// measures where none are present (missing or empty sequence, or an item
/// without PixelSpacing), and drops empty per-frame pixel measures that
/// would hide them. Returns what was changed.
pub fn fill_pixel_measures(
    obj: &mut InMemDicomObject,
    pixel_spacing: [f64; 2],
    slice_thickness: Option<f64>,
) -> Vec<String> {
    let mut repairs = Vec::new();
    let has_spacing = |g: &InMemDicomObject| {
        first_item(g, tags::PIXEL_MEASURES_SEQUENCE)
            .is_some_and(|m| text(m, tags::PIXEL_SPACING).is_some())
    };
    // Per-frame: remove empty pixel measures so the shared ones apply.
    if let Some(items) = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        && items
            .iter()
            .any(|g| g.get(tags::PIXEL_MEASURES_SEQUENCE).is_some() && !has_spacing(g))
    {
        let fixed: Vec<InMemDicomObject> = items
            .iter()
            .map(|g| {
                let mut g = g.clone();
                if g.get(tags::PIXEL_MEASURES_SEQUENCE).is_some() && !has_spacing(&g) {
                    g.remove_element(tags::PIXEL_MEASURES_SEQUENCE);
                }
                g
            })
            .collect();
        put_sequence(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, fixed);
        repairs.push("removed empty per-frame PixelMeasuresSequence items".to_string());
    }
    let per_frame_all = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .is_some_and(|items| !items.is_empty() && items.iter().all(has_spacing));
    let mut shared = first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)
        .cloned()
        .unwrap_or_else(InMemDicomObject::new_empty);
    if !has_spacing(&shared) && !per_frame_all {
        let mut m = Obj::new();
        m.decimals(tags::PIXEL_SPACING, &pixel_spacing);
        if let Some(t) = slice_thickness {
            m.decimals(tags::SLICE_THICKNESS, &[t]);
        }
        shared.put(DataElement::new(
            tags::PIXEL_MEASURES_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![m.0]),
        ));
        put_sequence(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![shared]);
        repairs.push(format!(
            "filled the empty PixelMeasuresSequence from the series (PixelSpacing {}\\{})",
            pixel_spacing[0], pixel_spacing[1]
        ));
    }
    repairs
}

fn put_sequence(obj: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    obj.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

/// Writes `dataset` as a Part 10 file with a complete meta group, in its
/// own transfer syntax.
pub fn to_part10(dataset: InMemDicomObject, transfer_syntax: &str) -> Result<Vec<u8>, RepairError> {
    let class = text(&dataset, tags::SOP_CLASS_UID).unwrap_or_default();
    let instance = text(&dataset, tags::SOP_INSTANCE_UID).unwrap_or_default();
    let meta = FileMetaTableBuilder::new()
        .information_version([0, 1])
        .media_storage_sop_class_uid(class)
        .media_storage_sop_instance_uid(instance)
        .transfer_syntax(transfer_syntax)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME)
        .build()
        .map_err(|e| RepairError::Write(e.to_string()))?;
    let mut out = Vec::new();
    dataset
        .with_exact_meta(meta)
        .write_all(&mut out)
        .map_err(|e| RepairError::Write(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::PrimitiveValue;

    fn seg_like() -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        o.put(DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(crate::sop::SEGMENTATION_STORAGE),
        ));
        o.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("2.25.1234"),
        ));
        let empty_measures = {
            let mut g = InMemDicomObject::new_empty();
            g.put(DataElement::new(
                tags::PIXEL_MEASURES_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![InMemDicomObject::new_empty()]),
            ));
            g
        };
        put_sequence(
            &mut o,
            tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
            vec![empty_measures],
        );
        // One 1-bit frame of 2 x 4.
        for (tag, v) in [
            (tags::ROWS, 2_u16),
            (tags::COLUMNS, 4),
            (tags::BITS_ALLOCATED, 1),
        ] {
            o.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
        }
        o.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::U8(vec![0x0F, 0].into()),
        ));
        o
    }

    #[test]
    fn a_file_without_meta_version_is_read_and_rewritten_complete() {
        let full = to_part10(seg_like(), crate::sop::EXPLICIT_VR_LE).unwrap();
        // Cut (0002,0001) out of the meta group, as some viewers write it.
        let offset = crate::instance::data_set_offset(&full).unwrap();
        let mut meta = Vec::new();
        let mut pos = 144;
        while pos < offset {
            let element = u16::from_le_bytes([full[pos + 2], full[pos + 3]]);
            let vr = &full[pos + 4..pos + 6];
            let (len, header) = if structure::has_long_length(vr) {
                (
                    u32::from_le_bytes(full[pos + 8..pos + 12].try_into().unwrap()) as usize,
                    12,
                )
            } else {
                (
                    u16::from_le_bytes([full[pos + 6], full[pos + 7]]) as usize,
                    8,
                )
            };
            if element != 0x0001 {
                meta.extend_from_slice(&full[pos..pos + header + len]);
            }
            pos += header + len;
        }
        let mut broken = full[..128].to_vec();
        broken.extend_from_slice(b"DICM");
        broken.extend_from_slice(&meta);
        broken.extend_from_slice(&full[offset..]);

        let read = read_lenient(&broken).unwrap();
        assert!(
            read.repairs.iter().any(|r| r.contains("0002,0001")),
            "{:?}",
            read.repairs
        );
        let mut obj = read.dataset;
        let fixes = fill_pixel_measures(&mut obj, [0.7, 0.7], Some(2.5));
        assert_eq!(fixes.len(), 1, "{fixes:?}");
        let again = to_part10(obj, &read.transfer_syntax).unwrap();
        let parsed = dicom_object::from_reader(&again[128..]).unwrap();
        assert_eq!(parsed.meta().information_version, [0, 1]);
        let shared = first_item(&parsed, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).unwrap();
        let measures = first_item(shared, tags::PIXEL_MEASURES_SEQUENCE).unwrap();
        assert_eq!(
            text(measures, tags::PIXEL_SPACING).as_deref(),
            Some("0.7\\0.7")
        );

        // A bare data set, and garbage.
        let mut bare = Vec::new();
        seg_like()
            .write_dataset_with_ts(
                &mut bare,
                &dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
            )
            .unwrap();
        let read = read_lenient(&bare).unwrap();
        assert_eq!(read.transfer_syntax, crate::sop::IMPLICIT_VR_LE);
        assert!(read_lenient(b"this is not DICOM at all, not even close").is_err());
    }
}
