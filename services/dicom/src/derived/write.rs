//! Building blocks shared by the derived-object writers: typed element
//! setters, value checks per VR, decimal strings, dates, the modules every
//! object carries, and the Part 10 encoding.

use super::{Code, Context, DerivedError, Source};
use dicom_core::header::Header;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;

/// An object under construction; thin setters over `InMemDicomObject`.
#[derive(Debug, Clone)]
pub(crate) struct Obj(pub InMemDicomObject);

impl Obj {
    pub fn new() -> Obj {
        Obj(InMemDicomObject::new_empty())
    }
    pub fn str(&mut self, tag: Tag, vr: VR, value: &str) -> &mut Self {
        let v = if value.is_empty() {
            PrimitiveValue::Empty
        } else {
            PrimitiveValue::from(value)
        };
        self.0.put(DataElement::new(tag, vr, v));
        self
    }
    pub fn strs(&mut self, tag: Tag, vr: VR, values: &[String]) -> &mut Self {
        self.0.put(DataElement::new(
            tag,
            vr,
            PrimitiveValue::Strs(values.iter().cloned().collect()),
        ));
        self
    }
    pub fn us(&mut self, tag: Tag, value: u16) -> &mut Self {
        self.0
            .put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
        self
    }
    pub fn ul(&mut self, tag: Tag, values: &[u32]) -> &mut Self {
        self.0.put(DataElement::new(
            tag,
            VR::UL,
            PrimitiveValue::U32(values.iter().copied().collect()),
        ));
        self
    }
    pub fn fd(&mut self, tag: Tag, value: f64) -> &mut Self {
        self.0
            .put(DataElement::new(tag, VR::FD, PrimitiveValue::from(value)));
        self
    }
    pub fn int_string(&mut self, tag: Tag, value: impl std::fmt::Display) -> &mut Self {
        self.str(tag, VR::IS, &value.to_string())
    }
    pub fn decimals(&mut self, tag: Tag, values: &[f64]) -> &mut Self {
        let v: Vec<String> = values.iter().map(|&v| ds(v)).collect();
        self.strs(tag, VR::DS, &v)
    }
    pub fn at(&mut self, tag: Tag, value: Tag) -> &mut Self {
        self.0.put(DataElement::new(
            tag,
            VR::AT,
            PrimitiveValue::Tags([value].into_iter().collect()),
        ));
        self
    }
    pub fn bytes(&mut self, tag: Tag, vr: VR, value: Vec<u8>) -> &mut Self {
        self.0
            .put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
        self
    }
    pub fn seq(&mut self, tag: Tag, items: Vec<Obj>) -> &mut Self {
        let items: Vec<InMemDicomObject> = items.into_iter().map(|o| o.0).collect();
        self.0
            .put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
        self
    }
    pub fn item(&mut self, tag: Tag, item: Obj) -> &mut Self {
        self.seq(tag, vec![item])
    }
    /// A code sequence of one item.
    pub fn code(&mut self, tag: Tag, code: &Code) -> &mut Self {
        self.item(tag, code_item(code))
    }
}

/// One Code Sequence item (Basic Code Sequence Macro). Values over 16
/// characters go to Long Code Value, as the macro requires.
pub(crate) fn code_item(code: &Code) -> Obj {
    let mut o = Obj::new();
    if code.value.chars().count() > 16 {
        o.str(tags::LONG_CODE_VALUE, VR::UC, &code.value);
    } else {
        o.str(tags::CODE_VALUE, VR::SH, &code.value);
    }
    o.str(tags::CODING_SCHEME_DESIGNATOR, VR::SH, &code.scheme)
        .str(tags::CODE_MEANING, VR::LO, &code.meaning);
    o
}

/// Checks a caller-supplied value against its VR: not empty, no backslash
/// (the value delimiter) or control characters, within the VR's length.
pub(crate) fn check_text(attribute: &'static str, value: &str, vr: VR) -> Result<(), DerivedError> {
    let bad = |reason| {
        Err(DerivedError::InvalidText {
            attribute,
            value: value.to_string(),
            reason,
        })
    };
    let max = match vr {
        VR::SH | VR::CS => 16,
        VR::LO | VR::PN => 64,
        VR::ST => 1024,
        _ => usize::MAX,
    };
    if value.trim().is_empty() {
        return bad("is empty");
    }
    if value.chars().count() > max {
        return bad("is longer than its VR allows");
    }
    if value.contains('\\') || value.chars().any(char::is_control) {
        return bad("contains a backslash or a control character");
    }
    Ok(())
}

pub(crate) fn check_code(attribute: &'static str, code: &Code) -> Result<(), DerivedError> {
    check_text(attribute, &code.scheme, VR::SH)?;
    check_text(attribute, &code.value, VR::UC)?;
    check_text(attribute, &code.meaning, VR::LO)
}

pub(crate) fn check_uid(attribute: &'static str, value: &str) -> Result<(), DerivedError> {
    if crate::uid::is_valid(value) {
        Ok(())
    } else {
        Err(DerivedError::InvalidUid {
            attribute,
            value: value.to_string(),
        })
    }
}

pub(crate) fn check_finite(what: &'static str, values: &[f64]) -> Result<(), DerivedError> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(DerivedError::NotFinite { what })
    }
}

/// `value` cut to `max` characters (for display-only values built from
/// checked parts, e.g. a series description).
pub(crate) fn truncate(value: &str, max: usize) -> String {
    value.chars().take(max).collect()
}

/// A Decimal String of at most 16 characters: the shortest form that reads
/// back as the same f64 when it fits (a parsed source position is written as
/// it was read), else as many significant digits as fit.
pub(crate) fn ds(v: f64) -> String {
    let v = if v == 0.0 { 0.0 } else { v }; // no "-0"
    let s = format!("{v}");
    if s.len() <= 16 {
        return s;
    }
    let magnitude = v.abs();
    if (1e-4..1e15).contains(&magnitude) {
        for decimals in (0..=16).rev() {
            let s = format!("{v:.decimals$}");
            let s = if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                s
            };
            if s.len() <= 16 {
                return s;
            }
        }
    }
    (0..=15)
        .rev()
        .map(|digits| format!("{v:.digits$e}"))
        .find(|s| s.len() <= 16)
        .unwrap_or_else(|| "0".into())
}

/// DICOM DA, TM and DT values of a Unix time, in UTC.
pub(crate) struct Stamp {
    pub date: String,
    pub time: String,
    pub date_time: String,
}

pub(crate) fn stamp(unix_seconds: i64) -> Stamp {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}{month:02}{day:02}");
    let time = format!(
        "{:02}{:02}{:02}",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    );
    Stamp {
        date_time: format!("{date}{time}"),
        date,
        time,
    }
}

/// Patient, study, SOP Common and equipment attributes every derived
/// object carries, and its new series.
pub(crate) struct Common<'a> {
    pub sop_class_uid: &'a str,
    pub sop_instance_uid: &'a str,
    pub series_instance_uid: &'a str,
    pub modality: &'a str,
    pub series_number: u32,
    pub series_description: &'a str,
}

pub(crate) fn check_source(src: &Source) -> Result<(), DerivedError> {
    if src.images.is_empty() {
        return Err(DerivedError::NoImages);
    }
    check_uid("StudyInstanceUID", &src.study_instance_uid)?;
    check_uid("SeriesInstanceUID", &src.series_instance_uid)?;
    if let Some(uid) = &src.frame_of_reference_uid {
        check_uid("FrameOfReferenceUID", uid)?;
    }
    for image in &src.images {
        check_uid("ReferencedSOPClassUID", &image.sop_class_uid)?;
        check_uid("ReferencedSOPInstanceUID", &image.sop_instance_uid)?;
        check_finite("ImagePositionPatient", &image.position)?;
    }
    check_finite("PixelSpacing", &src.pixel_spacing)?;
    check_finite("ImageOrientationPatient", &src.orientation)?;
    check_finite("SpacingBetweenSlices", &[src.spacing_between_slices])?;
    check_finite(
        "SliceThickness",
        &src.slice_thickness.into_iter().collect::<Vec<_>>(),
    )?;
    Ok(())
}

/// A new object with the copied context, SOP Common, General Series /
/// modality series, General and Enhanced General Equipment.
pub(crate) fn base(src: &Source, ctx: &Context, c: &Common) -> Result<Obj, DerivedError> {
    check_text("SoftwareVersions", &ctx.software_version, VR::LO)?;
    let mut o = Obj(InMemDicomObject::new_empty());
    for e in src.context.iter() {
        o.0.put(unpadded(e));
    }
    // The context carries the study; the object's own study UID wins.
    let now = stamp(ctx.created_unix_seconds);
    o.str(tags::STUDY_INSTANCE_UID, VR::UI, &src.study_instance_uid)
        .str(tags::SOP_CLASS_UID, VR::UI, c.sop_class_uid)
        .str(tags::SOP_INSTANCE_UID, VR::UI, c.sop_instance_uid)
        .str(tags::INSTANCE_CREATION_DATE, VR::DA, &now.date)
        .str(tags::INSTANCE_CREATION_TIME, VR::TM, &now.time)
        .str(tags::MODALITY, VR::CS, c.modality)
        .str(tags::SERIES_INSTANCE_UID, VR::UI, c.series_instance_uid)
        .int_string(tags::SERIES_NUMBER, c.series_number)
        .str(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            &truncate(c.series_description, 64),
        )
        .int_string(tags::INSTANCE_NUMBER, 1)
        .str(tags::CONTENT_DATE, VR::DA, &now.date)
        .str(tags::CONTENT_TIME, VR::TM, &now.time)
        .str(tags::MANUFACTURER, VR::LO, super::MANUFACTURER)
        .str(
            tags::MANUFACTURER_MODEL_NAME,
            VR::LO,
            super::MANUFACTURER_MODEL_NAME,
        )
        .str(
            tags::DEVICE_SERIAL_NUMBER,
            VR::LO,
            super::DEVICE_SERIAL_NUMBER,
        )
        .str(tags::SOFTWARE_VERSIONS, VR::LO, &ctx.software_version);
    Ok(o)
}

/// `e` with its string values' padding removed (recursively): some writers
/// pad with NUL where DICOM wants a space, which the encoder would then copy
/// into values no validator accepts. The encoder pads values itself.
fn unpadded(e: &dicom_object::mem::InMemElement) -> dicom_object::mem::InMemElement {
    let trim = |s: &str| s.trim_end_matches(['\0', ' ']).to_string();
    match e.value() {
        dicom_core::DicomValue::Primitive(PrimitiveValue::Str(s)) => {
            DataElement::new(e.tag(), e.vr(), PrimitiveValue::Str(trim(s)))
        }
        dicom_core::DicomValue::Primitive(PrimitiveValue::Strs(v)) => DataElement::new(
            e.tag(),
            e.vr(),
            PrimitiveValue::Strs(v.iter().map(|s| trim(s)).collect()),
        ),
        dicom_core::DicomValue::Sequence(seq) => {
            let items: Vec<InMemDicomObject> = seq
                .items()
                .iter()
                .map(|item| InMemDicomObject::from_element_iter(item.iter().map(unpadded)))
                .collect();
            DataElement::new(e.tag(), e.vr(), DataSetSequence::from(items))
        }
        _ => e.clone(),
    }
}

/// Frame of Reference module: the source's frame with its indicator, or the
/// repaired one with an empty indicator (nothing is known about it).
pub(crate) fn frame_of_reference(o: &mut Obj, src: &Source, ctx: &Context) {
    let (uid, repaired) = super::frame_of_reference(src, ctx);
    let indicator = if repaired {
        ""
    } else {
        src.position_reference_indicator.as_str()
    };
    o.str(tags::FRAME_OF_REFERENCE_UID, VR::UI, &uid).str(
        tags::POSITION_REFERENCE_INDICATOR,
        VR::LO,
        indicator,
    );
}

/// Declares UTF-8 when any text is not ASCII. Text read from the source was
/// decoded with its own character set, and the encoder follows this
/// attribute, so the copied values are written correctly.
fn declare_character_set(obj: &mut InMemDicomObject) {
    fn non_ascii(obj: &InMemDicomObject) -> bool {
        obj.iter().any(|e| match e.value() {
            dicom_core::DicomValue::Primitive(PrimitiveValue::Str(s)) => !s.is_ascii(),
            dicom_core::DicomValue::Primitive(PrimitiveValue::Strs(v)) => {
                v.iter().any(|s| !s.is_ascii())
            }
            dicom_core::DicomValue::Sequence(seq) => seq.items().iter().any(non_ascii),
            _ => false,
        })
    }
    obj.remove_element(tags::SPECIFIC_CHARACTER_SET);
    if non_ascii(obj) {
        obj.put(DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            PrimitiveValue::from("ISO_IR 192"),
        ));
    }
}

/// The Part 10 file of `obj` in explicit VR little endian.
pub(crate) fn part10(mut obj: Obj, c: &Common) -> Result<super::Produced, DerivedError> {
    declare_character_set(&mut obj.0);
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(c.sop_class_uid)
        .media_storage_sop_instance_uid(c.sop_instance_uid)
        .transfer_syntax(crate::sop::EXPLICIT_VR_LE)
        .implementation_class_uid(crate::instance::IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(crate::instance::IMPLEMENTATION_VERSION_NAME)
        .build()
        .map_err(|e| DerivedError::Meta(Box::new(e)))?;
    let mut bytes = Vec::new();
    obj.0
        .with_exact_meta(meta)
        .write_all(&mut bytes)
        .map_err(|e| DerivedError::Write(Box::new(e)))?;
    Ok(super::Produced {
        sop_class_uid: c.sop_class_uid.to_string(),
        sop_instance_uid: c.sop_instance_uid.to_string(),
        series_instance_uid: c.series_instance_uid.to_string(),
        bytes,
    })
}

/// A Referenced Series Sequence item (Common Instance Reference module) or
/// a Hierarchical Series Reference item, depending on `instances_tag`.
pub(crate) fn series_reference<'a>(
    series_instance_uid: &str,
    instances_tag: Tag,
    instances: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Obj {
    let items = instances
        .into_iter()
        .map(|(class, instance)| {
            let mut i = Obj::new();
            i.str(tags::REFERENCED_SOP_CLASS_UID, VR::UI, class).str(
                tags::REFERENCED_SOP_INSTANCE_UID,
                VR::UI,
                instance,
            );
            i
        })
        .collect();
    let mut s = Obj::new();
    s.seq(instances_tag, items)
        .str(tags::SERIES_INSTANCE_UID, VR::UI, series_instance_uid);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_fit_and_round_trip_when_they_can() {
        assert_eq!(ds(0.569999992847443), "0.56999999284744");
        assert_eq!(ds(0.57), "0.57");
        assert_eq!(ds(43.2000006437302), "43.2000006437302");
        assert_eq!(ds(-0.0), "0");
        assert_eq!(ds(1.600_000_023_841_858), "1.60000002384186");
        assert_eq!(ds(-172.34567890123456), "-172.34567890123");
        assert_eq!(ds(0.1 + 0.2), "0.3");
        for v in [1e-9, -3.3e-7, 1e20, -123456789012345678.0, 1.0 / 3.0] {
            let s = ds(v);
            assert!(s.len() <= 16, "{s}");
            let back: f64 = s.parse().unwrap();
            assert!((back - v).abs() <= v.abs() * 1e-9, "{v} -> {s}");
        }
    }

    #[test]
    fn dates_are_utc_civil_dates() {
        let s = stamp(0);
        assert_eq!((s.date.as_str(), s.time.as_str()), ("19700101", "000000"));
        // 2024-02-29 23:59:59 UTC, a leap day.
        let s = stamp(1_709_251_199);
        assert_eq!(s.date_time, "20240229235959");
        let s = stamp(-1);
        assert_eq!(s.date_time, "19691231235959");
    }
}
