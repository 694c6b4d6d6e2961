//! What the service reads from a received instance, and the Part 10 header
//! it writes in front of the bytes as received.
//!
//! Real anonymised data is untidy: attributes may be missing, empty or
//! badly formatted. Only the four identifying UIDs are required here; every
//! other field is optional and checked later, where it matters.

use crate::structure::{self, Encoding, StructureError};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use liverseg_core::InstanceMeta;
use std::path::{Path, PathBuf};

/// Identifies this implementation in file meta headers and associations.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.106356445393038532899305174700122340008";
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("LIVERSEG_", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("{path}: not a readable DICOM file: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: Box<dicom_object::ReadError>,
    },
    #[error("not a readable Part 10 object: {0}")]
    Decode(#[source] Box<dicom_object::ReadError>),
    #[error("data set lacks {0}")]
    MissingUid(&'static str),
    #[error("{attribute} {value:?} is not a valid UID")]
    InvalidUid {
        attribute: &'static str,
        value: String,
    },
    #[error("file meta header could not be built: {0}")]
    Meta(#[source] Box<dicom_object::meta::Error>),
    /// Malformed bytes ([`structure`]); callers know which file it was.
    #[error(transparent)]
    Structure(StructureError),
}

/// How far a deflated data set may inflate before it is refused (the
/// largest multi-frame CT is a few hundred MB).
pub const MAX_INFLATED_BYTES: u64 = 2 << 30;

/// The identifying UIDs of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_uid: String,
    pub series_uid: String,
}

/// Everything the listener records about an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub identity: Identity,
    pub meta: InstanceMeta,
}

/// The 128-byte preamble, `DICM` and the file meta group for a data set
/// received in transfer syntax `ts`; the data set bytes follow unchanged.
pub fn part10_header(
    sop_class_uid: &str,
    sop_instance_uid: &str,
    ts: &str,
    source_ae: &str,
) -> Result<Vec<u8>, InstanceError> {
    let mut builder = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class_uid)
        .media_storage_sop_instance_uid(sop_instance_uid)
        .transfer_syntax(ts)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME);
    let source_ae = source_ae.trim();
    if !source_ae.is_empty() {
        builder = builder.source_application_entity_title(source_ae);
    }
    let meta = builder
        .build()
        .map_err(|e| InstanceError::Meta(Box::new(e)))?;
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    meta.write(&mut out)
        .map_err(|e| InstanceError::Meta(Box::new(e)))?;
    Ok(out)
}

/// Offset of the data set in a Part 10 file (after preamble and meta
/// group), read from the group length; `None` when `bytes` is not Part 10.
pub fn data_set_offset(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < 144 || &bytes[128..132] != b"DICM" {
        return None;
    }
    // (0002,0000) UL, explicit VR little endian: tag, "UL", length 4, value.
    if bytes[132..136] != [0x02, 0x00, 0x00, 0x00] || &bytes[136..138] != b"UL" {
        return None;
    }
    let group_len = u32::from_le_bytes(bytes[140..144].try_into().ok()?) as usize;
    let offset = 144usize.checked_add(group_len)?;
    (offset <= bytes.len()).then_some(offset)
}

/// Reads the header of a Part 10 file (everything before Pixel Data).
pub fn read_header(path: &Path) -> Result<Parsed, InstanceError> {
    read_header_and_transfer_syntax(path).map(|(parsed, _)| parsed)
}

/// Extracts identity and metadata from a data set.
pub fn parse_object(obj: &InMemDicomObject) -> Result<Parsed, InstanceError> {
    let uid = |tag: Tag, name: &'static str| -> Result<String, InstanceError> {
        let v = text(obj, tag).ok_or(InstanceError::MissingUid(name))?;
        if crate::uid::is_valid(&v) {
            Ok(v)
        } else {
            Err(InstanceError::InvalidUid {
                attribute: name,
                value: v,
            })
        }
    };
    let identity = Identity {
        sop_class_uid: uid(tags::SOP_CLASS_UID, "SOPClassUID")?,
        sop_instance_uid: uid(tags::SOP_INSTANCE_UID, "SOPInstanceUID")?,
        study_uid: uid(tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?,
        series_uid: uid(tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?,
    };

    // Multi-frame objects (Enhanced CT, SEG) keep geometry in functional
    // groups: shared first, else the first frame's.
    let shared = first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let first_frame = first_item(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    let in_groups = |seq: Tag, tag: Tag| {
        [shared, first_frame]
            .into_iter()
            .flatten()
            .find_map(|g| first_item(g, seq).and_then(|item| floats(item, tag)))
    };
    let image_position = floats(obj, tags::IMAGE_POSITION_PATIENT)
        .or_else(|| in_groups(tags::PLANE_POSITION_SEQUENCE, tags::IMAGE_POSITION_PATIENT));
    let image_orientation = floats(obj, tags::IMAGE_ORIENTATION_PATIENT).or_else(|| {
        in_groups(
            tags::PLANE_ORIENTATION_SEQUENCE,
            tags::IMAGE_ORIENTATION_PATIENT,
        )
    });
    let pixel_spacing = floats(obj, tags::PIXEL_SPACING)
        .or_else(|| in_groups(tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING));
    let slice_thickness = floats(obj, tags::SLICE_THICKNESS)
        .or_else(|| in_groups(tags::PIXEL_MEASURES_SEQUENCE, tags::SLICE_THICKNESS));

    let meta = InstanceMeta {
        modality: text(obj, tags::MODALITY),
        instance_number: text(obj, tags::INSTANCE_NUMBER).and_then(|s| s.parse().ok()),
        image_type: text(obj, tags::IMAGE_TYPE)
            .map(|s| {
                s.split('\\')
                    .map(|v| v.trim().to_ascii_uppercase())
                    .collect()
            })
            .unwrap_or_default(),
        rows: int(obj, tags::ROWS),
        columns: int(obj, tags::COLUMNS),
        number_of_frames: int(obj, tags::NUMBER_OF_FRAMES),
        image_position: image_position.and_then(|v| v.get(..3)?.try_into().ok()),
        image_orientation: image_orientation.and_then(|v| v.get(..6)?.try_into().ok()),
        pixel_spacing: pixel_spacing.and_then(|v| v.get(..2)?.try_into().ok()),
        slice_thickness: slice_thickness.and_then(|v| v.first().copied()),
        frame_of_reference_uid: text(obj, tags::FRAME_OF_REFERENCE_UID),
        attributes: index_attributes(obj),
    };
    Ok(Parsed { identity, meta })
}

/// Attributes a DICOMweb search matches or returns (PS3.18 table 10.6.1-5
/// and what OHIF's study list shows), kept with each instance record.
pub const INDEXED: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::STUDY_DATE,
    tags::SERIES_DATE,
    tags::CONTENT_DATE,
    tags::STUDY_TIME,
    tags::SERIES_TIME,
    tags::CONTENT_TIME,
    tags::ACCESSION_NUMBER,
    tags::MODALITY,
    tags::MANUFACTURER,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::STUDY_DESCRIPTION,
    tags::SERIES_DESCRIPTION,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::BODY_PART_EXAMINED,
    tags::STUDY_ID,
    tags::SERIES_NUMBER,
    tags::INSTANCE_NUMBER,
    tags::ROWS,
    tags::COLUMNS,
    tags::BITS_ALLOCATED,
    tags::NUMBER_OF_FRAMES,
    tags::CONTENT_LABEL,
    tags::CONTENT_DESCRIPTION,
];

/// The [`INDEXED`] attributes present in `obj` as DICOM JSON elements
/// (PS3.18 F.2) keyed by tag: PN as `{"Alphabetic": ...}`, IS/DS and binary
/// numbers as JSON numbers, everything else as strings. Empty attributes
/// are kept with no `Value`, as the JSON model requires.
pub fn index_attributes(
    obj: &InMemDicomObject,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    use dicom_core::VR;
    use serde_json::{Value, json};
    let mut out = std::collections::BTreeMap::new();
    for &tag in INDEXED {
        let Some(e) = obj.get(tag) else { continue };
        let vr = e.vr();
        let key = format!("{:04X}{:04X}", tag.group(), tag.element());
        let values: Vec<Value> = match vr {
            VR::US | VR::SS | VR::UL | VR::SL => e
                .to_multi_int::<i64>()
                .map(|v| v.into_iter().map(Value::from).collect())
                .unwrap_or_default(),
            _ => {
                let raw = e.to_str().map(|s| s.into_owned()).unwrap_or_default();
                raw.split('\\')
                    .map(|p| p.trim_matches(|c: char| c == '\0' || c.is_whitespace()))
                    .filter(|p| !p.is_empty())
                    .map(|p| match vr {
                        VR::PN => json!({ "Alphabetic": p.split('=').next().unwrap_or(p) }),
                        VR::IS => p
                            .trim_start_matches('+')
                            .parse::<i64>()
                            .map(Value::from)
                            .unwrap_or_else(|_| Value::from(p)),
                        VR::DS => p
                            .trim_start_matches('+')
                            .parse::<f64>()
                            .ok()
                            .filter(|v| v.is_finite())
                            .map(Value::from)
                            .unwrap_or_else(|| Value::from(p)),
                        _ => Value::from(p),
                    })
                    .collect()
            }
        };
        let mut element = serde_json::Map::new();
        element.insert("vr".into(), Value::from(vr.to_string()));
        if !values.is_empty() {
            element.insert("Value".into(), Value::Array(values));
        }
        out.insert(key, Value::Object(element));
    }
    out
}

/// Identity, metadata and transfer syntax of a Part 10 object in memory,
/// after its structure and pixel data are checked ([`structure`]).
pub fn parse_part10(bytes: &[u8]) -> Result<(Parsed, String), InstanceError> {
    let body = bytes
        .get(128..)
        .filter(|b| b.starts_with(b"DICM"))
        .ok_or_else(|| InstanceError::MissingUid("the Part 10 preamble"))?;
    let checked =
        structure::check_part10(bytes, MAX_INFLATED_BYTES).map_err(InstanceError::Structure)?;
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .from_reader(body)
        .map_err(|e| InstanceError::Decode(Box::new(e)))?;
    let ts = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let parsed = parse_object(&obj)?;
    check_image(&checked, &parsed).map_err(InstanceError::Structure)?;
    Ok((parsed, ts))
}

/// Identity, metadata and the transfer syntax named in a Part 10 file's
/// meta group, after the whole file's structure and pixel data are checked
/// ([`structure`]): dicom-rs then reads only the header.
pub fn read_header_and_transfer_syntax(path: &Path) -> Result<(Parsed, String), InstanceError> {
    let checked =
        structure::check_part10_file(path, MAX_INFLATED_BYTES).map_err(InstanceError::Structure)?;
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|source| InstanceError::Read {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
    let ts = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let parsed = parse_object(&obj)?;
    check_image(&checked, &parsed).map_err(InstanceError::Structure)?;
    Ok((parsed, ts))
}

/// The pixel data check of [`structure::Shape::check_image`] for a parsed
/// instance (skipped for transfer syntaxes unknown here, which dicom-rs has
/// refused already).
fn check_image(checked: &structure::Part10, parsed: &Parsed) -> Result<(), StructureError> {
    match (&checked.shape, Encoding::of(&checked.transfer_syntax)) {
        (Some(shape), Some(encoding)) => {
            shape.check_image(&parsed.identity.sop_class_uid, encoding)
        }
        _ => Ok(()),
    }
}

/// A string value, trimmed of padding; `None` when absent or empty.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let v = obj.get(tag)?.to_str().ok()?;
    let v = v.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!v.is_empty()).then(|| v.to_string())
}

pub fn int(obj: &InMemDicomObject, tag: Tag) -> Option<u32> {
    let e = obj.get(tag)?;
    e.to_int::<u32>()
        .ok()
        .or_else(|| text(obj, tag)?.parse().ok())
}

/// Decimal strings parsed leniently (stray spaces, `+` signs); `None` when
/// any value is missing or not finite, so a broken vector is never half-used.
pub fn floats(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    let s = text(obj, tag)?;
    s.split('\\')
        .map(|p| {
            p.trim()
                .trim_start_matches('+')
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
        })
        .collect()
}

pub fn first_item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.get(tag)?.items()?.first()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};

    fn ct() -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        let put = |o: &mut InMemDicomObject, t: Tag, vr: VR, v: &str| {
            o.put(DataElement::new(t, vr, PrimitiveValue::from(v)));
        };
        put(
            &mut o,
            tags::SOP_CLASS_UID,
            VR::UI,
            crate::sop::CT_IMAGE_STORAGE,
        );
        put(&mut o, tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5");
        put(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3");
        put(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.4");
        put(&mut o, tags::MODALITY, VR::CS, "CT");
        put(&mut o, tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL");
        put(&mut o, tags::INSTANCE_NUMBER, VR::IS, " 0");
        put(
            &mut o,
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            "-172\\-179.5 \\+136.8",
        );
        put(
            &mut o,
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            "1\\0\\0\\0\\1\\0",
        );
        put(&mut o, tags::PIXEL_SPACING, VR::DS, "0.57\\0.57");
        put(&mut o, tags::PATIENT_ID, VR::LO, "");
        o.put(DataElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(512_u16),
        ));
        o
    }

    #[test]
    fn reads_geometry_leniently_and_tolerates_missing_attributes() {
        let p = parse_object(&ct()).unwrap();
        assert_eq!(p.identity.sop_instance_uid, "1.2.3.4.5");
        assert_eq!(p.meta.image_position, Some([-172.0, -179.5, 136.8]));
        assert_eq!(
            p.meta.image_orientation,
            Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        );
        assert_eq!(p.meta.instance_number, Some(0));
        assert_eq!(p.meta.rows, Some(512));
        assert_eq!(p.meta.columns, None);
        assert_eq!(p.meta.frame_of_reference_uid, None);
        assert_eq!(p.meta.image_type, vec!["ORIGINAL", "PRIMARY", "AXIAL"]);
    }

    #[test]
    fn missing_or_invalid_uids_are_named() {
        let mut o = ct();
        o.remove_element(tags::SERIES_INSTANCE_UID);
        assert!(
            parse_object(&o)
                .unwrap_err()
                .to_string()
                .contains("SeriesInstanceUID")
        );
        let mut o = ct();
        o.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("../x"),
        ));
        assert!(matches!(
            parse_object(&o),
            Err(InstanceError::InvalidUid { .. })
        ));
    }

    #[test]
    fn header_plus_data_set_is_a_readable_part10_file() {
        let mut obj = ct();
        // A 512 x 1 image: the pixel data is checked against the matrix.
        obj.put(DataElement::new(
            tags::COLUMNS,
            VR::US,
            PrimitiveValue::from(1_u16),
        ));
        obj.put(DataElement::new(
            tags::BITS_ALLOCATED,
            VR::US,
            PrimitiveValue::from(16_u16),
        ));
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(vec![0; 512].into()),
        ));
        let ts = dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let mut data = Vec::new();
        obj.write_dataset_with_ts(&mut data, &ts).unwrap();
        let mut file = part10_header(
            crate::sop::CT_IMAGE_STORAGE,
            "1.2.3.4.5",
            crate::sop::EXPLICIT_VR_LE,
            "STORESCU",
        )
        .unwrap();
        let offset = data_set_offset(&file).unwrap();
        assert_eq!(offset, file.len());
        file.extend_from_slice(&data);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.dcm");
        std::fs::write(&path, &file).unwrap();
        let back = read_header(&path).unwrap();
        assert_eq!(back.identity.series_uid, "1.2.3.4");
        let full = dicom_object::open_file(&path).unwrap();
        assert_eq!(
            full.meta().source_application_entity_title(),
            Some("STORESCU")
        );
        assert_eq!(&file[offset..], &data[..]);
        assert_eq!(data_set_offset(b"not dicom"), None);
    }
}
