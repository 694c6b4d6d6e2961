//! The DICOM objects liverseg derives from a CT series and sends back to the
//! PACS, written with dicom-object as Part 10 files (explicit VR little
//! endian):
//!
//! * [`segmentation`]: a BINARY Segmentation (SEG) of the liver;
//! * [`encapsulated_stl`]: the liver surface as an Encapsulated STL;
//! * [`volume_report`]: the liver volume as a TID 1500 Comprehensive SR.
//!
//! The SEG and the SR are laid out as highdicom writes them; the STL (which
//! highdicom does not write) follows PS3.3 A.85.1. Everything an
//! object holds comes from the [`Source`] series, the [`Algorithm`] and the
//! job's [`Context`], so that a re-run writes byte-identical objects with
//! the same UIDs (a PACS then sees the same instances again, not copies).
//!
//! New series get fixed numbers ([`SEG_SERIES_NUMBER`],
//! [`STL_SERIES_NUMBER`], [`SR_SERIES_NUMBER`]), high enough not to collide
//! with the series a scanner numbers, so that they sort after the CT.

mod seg;
mod sr;
mod stl;
pub(crate) mod write;

#[cfg(feature = "pixeldata")]
mod source;

pub use seg::{segmentation, segmentation_with};
pub use sr::{no_liver_report, volume_report, volume_report_with};
pub use stl::{encapsulated_stl, encapsulated_stl_of};

use dicom_object::InMemDicomObject;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// SeriesNumber of every liverseg SEG series.
pub const SEG_SERIES_NUMBER: u32 = 9901;
/// SeriesNumber of every liverseg Encapsulated STL series.
pub const STL_SERIES_NUMBER: u32 = 9902;
/// SeriesNumber of every liverseg volume SR series.
pub const SR_SERIES_NUMBER: u32 = 9903;

/// Manufacturer (General and Enhanced General Equipment).
pub const MANUFACTURER: &str = "liverseg";
/// ManufacturerModelName (Enhanced General Equipment, Type 1).
pub const MANUFACTURER_MODEL_NAME: &str = "liverseg";
/// DeviceSerialNumber (Enhanced General Equipment, Type 1). liverseg is
/// software without a per-installation serial number, and a per-host value
/// would break byte-identical re-runs on another worker: a fixed value.
pub const DEVICE_SERIAL_NUMBER: &str = "0";

/// A coded concept (Code Value, Coding Scheme Designator, Code Meaning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    pub scheme: String,
    pub value: String,
    pub meaning: String,
}

impl Code {
    pub fn new(scheme: &str, value: &str, meaning: &str) -> Code {
        Code {
            scheme: scheme.into(),
            value: value.into(),
            meaning: meaning.into(),
        }
    }
}

/// Codes the derived objects use, and those a liver [`Algorithm`] needs.
pub mod codes {
    use super::Code;

    /// CID 7162 algorithm family: (123110, DCM, "Artificial Intelligence").
    pub fn artificial_intelligence() -> Code {
        Code::new("DCM", "123110", "Artificial Intelligence")
    }
    /// CID 7150 segmented property category of an organ.
    pub fn anatomical_structure() -> Code {
        Code::new("SCT", "91723000", "Anatomical Structure")
    }
    pub fn liver() -> Code {
        Code::new("SCT", "10200004", "Liver")
    }
    pub(crate) fn millimeter() -> Code {
        Code::new("UCUM", "mm", "mm")
    }
    pub(crate) fn milliliter() -> Code {
        Code::new("UCUM", "ml", "milliliter")
    }
    pub(crate) fn volume() -> Code {
        Code::new("SCT", "118565006", "Volume")
    }
}

/// One source slice as derived objects reference and place it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceImage {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// The slice's own ImagePositionPatient.
    pub position: [f64; 3],
}

/// What derived objects copy from and reference in the source CT series.
#[derive(Debug, Clone)]
pub struct Source {
    /// Patient, General Study and Patient Study attributes copied from one
    /// source instance (see [`CONTEXT_ATTRIBUTES`]); the Type 2 ones absent
    /// there are present and empty. Nothing is invented.
    pub context: InMemDicomObject,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    /// `None` when the source lacks it (IRCADb does): see [`frame_of_reference`].
    pub frame_of_reference_uid: Option<String>,
    /// The source's PositionReferenceIndicator (empty when absent), written
    /// only with the source's own Frame of Reference.
    pub position_reference_indicator: String,
    pub rows: usize,
    pub columns: usize,
    /// Row spacing, column spacing (mm), as PixelSpacing.
    pub pixel_spacing: [f64; 2],
    pub slice_thickness: Option<f64>,
    /// Distance between adjacent slice planes (mm).
    pub spacing_between_slices: f64,
    pub orientation: [f64; 6],
    /// In the volume's slice order, which is the mask's slice order.
    pub images: Vec<SourceImage>,
}

/// The algorithm as the SEG (segment description) and the SR describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Algorithm {
    pub name: String,
    pub version: String,
    /// Algorithm family, e.g. [`codes::artificial_intelligence`].
    pub family: Code,
    pub segment_label: String,
    /// Segmented property category, e.g. [`codes::anatomical_structure`].
    pub category: Code,
    /// Segmented property type, e.g. [`codes::liver`].
    pub kind: Code,
}

/// What a result says about itself wherever its volume appears: the sides
/// where the scan cuts the liver (the volume is then only a lower bound) and
/// whether the model was unsure of it. Empty for a whole liver found surely.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caveats {
    pub cut: Vec<liverseg_core::Side>,
    pub uncertain: bool,
}

impl Caveats {
    pub fn is_empty(&self) -> bool {
        self.cut.is_empty() && !self.uncertain
    }

    /// "partial, cut superior and inferior; uncertain".
    pub fn text(&self) -> String {
        liverseg_core::assessment::caveat(&self.cut, self.uncertain)
    }
}

impl From<&liverseg_core::Assessment> for Caveats {
    fn from(a: &liverseg_core::Assessment) -> Caveats {
        Caveats {
            cut: a.coverage.cut.clone(),
            uncertain: a.flags.contains(&liverseg_core::Flag::Uncertain),
        }
    }
}

/// Identity and time of one job's outputs. Everything written is a function
/// of this, the source and the algorithm, so a re-run produces byte-identical
/// objects with the same UIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Unique per job result (e.g. series UID + input fingerprint + model).
    pub uid_seed: String,
    /// Content and instance creation date/time, written in UTC.
    pub created_unix_seconds: i64,
    /// SoftwareVersions of the equipment modules.
    pub software_version: String,
}

impl Context {
    /// The UID of `kind` for this job: `2.25.` and the decimal value of the
    /// first 16 bytes of SHA-256(`uid_seed/kind`), at most 44 characters.
    pub fn uid(&self, kind: &str) -> String {
        hashed_uid(&format!("{}/{kind}", self.uid_seed))
    }
}

/// A 2.25 UID from the first 128 bits of the SHA-256 of `text`.
pub(crate) fn hashed_uid(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    format!("2.25.{}", u128::from_be_bytes(first))
}

/// A derived object as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub series_instance_uid: String,
    /// The Part 10 file: preamble, meta group, explicit VR little endian.
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum DerivedError {
    #[error("{path}: cannot read the source header: {source}")]
    ReadHeader {
        path: PathBuf,
        #[source]
        source: Box<crate::instance::InstanceError>,
    },
    #[error("{path}: cannot read the source header: {source}")]
    OpenHeader {
        path: PathBuf,
        #[source]
        source: Box<dicom_object::ReadError>,
    },
    #[error("{path}: instance {sop_instance_uid} is not one of the volume's slices")]
    HeaderNotInVolume {
        path: PathBuf,
        sop_instance_uid: String,
    },
    #[error("the source series is not usable: {0}")]
    InvalidSource(String),
    #[error("the source has no images")]
    NoImages,
    #[error("{attribute} {value:?} is not a valid UID")]
    InvalidUid {
        attribute: &'static str,
        value: String,
    },
    #[error("{what} is not a finite number")]
    NotFinite { what: &'static str },
    #[error("{attribute} {value:?}: {reason}")]
    InvalidText {
        attribute: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error(
        "the mask has {actual} voxels, the source {expected} ({slices} slices of {rows}x{columns})"
    )]
    MaskLength {
        expected: usize,
        actual: usize,
        slices: usize,
        rows: usize,
        columns: usize,
    },
    #[error("the mask is empty: a SEG needs at least one frame")]
    EmptyMask,
    #[error("the SEG would hold {bytes} bytes of pixel data, more than DICOM allows")]
    TooLarge { bytes: usize },
    #[error("the STL is not a binary or ASCII STL: {0}")]
    InvalidStl(&'static str),
    #[error("{sop_class_uid} is not a Segmentation: the report must reference a SEG")]
    NotASegmentation { sop_class_uid: String },
    #[error("segment number 0: segments are numbered from 1")]
    SegmentNumber,
    #[error("volume {0} ml is not a non-negative finite number")]
    InvalidVolume(f64),
    #[error("file meta header could not be built: {0}")]
    Meta(#[source] Box<dicom_object::meta::Error>),
    #[error("cannot encode the data set: {0}")]
    Write(#[source] Box<dicom_object::WriteError>),
}

/// Patient (C.7.1.1), General Study (C.7.2.1) and Patient Study (C.7.2.2)
/// attributes copied into every derived object; the Type 2 ones carry their
/// VR and are written empty when the source lacks them. The others (Type 3,
/// and the study UID, which [`Source`] holds) are copied only when present.
pub const CONTEXT_ATTRIBUTES: &[(dicom_core::Tag, Option<dicom_core::VR>)] = {
    use dicom_core::VR::*;
    use dicom_dictionary_std::tags::*;
    &[
        // Patient
        (PATIENT_NAME, Some(PN)),
        (PATIENT_ID, Some(LO)),
        (ISSUER_OF_PATIENT_ID, None),
        (ISSUER_OF_PATIENT_ID_QUALIFIERS_SEQUENCE, None),
        (TYPE_OF_PATIENT_ID, None),
        (PATIENT_BIRTH_DATE, Some(DA)),
        (PATIENT_BIRTH_TIME, None),
        (PATIENT_SEX, Some(CS)),
        (OTHER_PATIENT_I_DS_SEQUENCE, None),
        (PATIENT_COMMENTS, None),
        (PATIENT_SPECIES_DESCRIPTION, None),
        (PATIENT_SPECIES_CODE_SEQUENCE, None),
        (PATIENT_BREED_DESCRIPTION, None),
        (PATIENT_BREED_CODE_SEQUENCE, None),
        (BREED_REGISTRATION_SEQUENCE, None),
        (RESPONSIBLE_PERSON, None),
        (RESPONSIBLE_PERSON_ROLE, None),
        (RESPONSIBLE_ORGANIZATION, None),
        (PATIENT_IDENTITY_REMOVED, None),
        (DEIDENTIFICATION_METHOD, None),
        (DEIDENTIFICATION_METHOD_CODE_SEQUENCE, None),
        // General Study
        (STUDY_INSTANCE_UID, None),
        (STUDY_DATE, Some(DA)),
        (STUDY_TIME, Some(TM)),
        (REFERRING_PHYSICIAN_NAME, Some(PN)),
        (REFERRING_PHYSICIAN_IDENTIFICATION_SEQUENCE, None),
        (STUDY_ID, Some(SH)),
        (ACCESSION_NUMBER, Some(SH)),
        (ISSUER_OF_ACCESSION_NUMBER_SEQUENCE, None),
        (STUDY_DESCRIPTION, None),
        (PROCEDURE_CODE_SEQUENCE, None),
        (REQUESTING_SERVICE, None),
        // Patient Study
        (ADMITTING_DIAGNOSES_DESCRIPTION, None),
        (PATIENT_AGE, None),
        (PATIENT_SIZE, None),
        (PATIENT_WEIGHT, None),
        (OCCUPATION, None),
        (ADDITIONAL_PATIENT_HISTORY, None),
    ]
};

/// The [`CONTEXT_ATTRIBUTES`] of a source instance, as [`Source::context`]
/// holds them: absent Type 2 attributes become empty ones.
pub fn copy_context(header: &InMemDicomObject) -> InMemDicomObject {
    let mut context = InMemDicomObject::new_empty();
    for &(tag, type2) in CONTEXT_ATTRIBUTES {
        if let Some(e) = header.get(tag) {
            context.put(e.clone());
        } else if let Some(vr) = type2 {
            context.put(dicom_core::DataElement::new(
                tag,
                vr,
                dicom_core::PrimitiveValue::Empty,
            ));
        }
    }
    context
}

/// The Frame of Reference UID of every derived object: the source's, or,
/// when the source has none (a Type 1 attribute, yet IRCADb lacks it), one
/// made for this job (`repaired` is then true). Derived objects must share
/// a frame of reference for a viewer to overlay them.
pub fn frame_of_reference(src: &Source, ctx: &Context) -> (String, bool) {
    match &src.frame_of_reference_uid {
        Some(uid) => (uid.clone(), false),
        None => (ctx.uid("frame-of-reference"), true),
    }
}

#[cfg(test)]
mod tests;
