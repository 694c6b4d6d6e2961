//! The liver surface as an Encapsulated STL (PS3.3 A.85.1): the STL file as
//! made, in the SEG's frame of reference, referencing this job's SEG.

use super::write::{self, Common, Obj, check_text};
use super::{Context, DerivedError, Produced, Source};
use dicom_core::VR;
use dicom_dictionary_std::tags;

/// Writes `stl` (binary or ASCII, coordinates in mm in the patient space of
/// `src`) as an Encapsulated STL titled `title`.
///
/// The surface is made from the job's segmentation, so the object names the
/// SEG of the same `ctx` as its source (Source Instance Sequence): that
/// SEG's UIDs are a function of `ctx` alone.
pub fn encapsulated_stl(
    src: &Source,
    stl: &[u8],
    title: &str,
    ctx: &Context,
) -> Result<Produced, DerivedError> {
    let (seg_instance, seg_series) = super::seg::identity(ctx);
    encapsulated_stl_of(src, stl, title, (&seg_instance, &seg_series), ctx)
}

/// The same, for the surface of another SEG than the one `ctx` writes (a
/// radiologist's correction).
pub fn encapsulated_stl_of(
    src: &Source,
    stl: &[u8],
    title: &str,
    (seg_instance, seg_series): (&str, &str),
    ctx: &Context,
) -> Result<Produced, DerivedError> {
    write::check_source(src)?;
    check_text("DocumentTitle", title, VR::ST)?;
    check_stl(stl)?;
    if stl.len() >= u32::MAX as usize - 1 {
        return Err(DerivedError::TooLarge { bytes: stl.len() });
    }
    let sop_instance_uid = ctx.uid("stl-instance");
    let series_instance_uid = ctx.uid("stl-series");
    let common = Common {
        sop_class_uid: crate::sop::ENCAPSULATED_STL_STORAGE,
        sop_instance_uid: &sop_instance_uid,
        series_instance_uid: &series_instance_uid,
        modality: "M3D",
        series_number: super::STL_SERIES_NUMBER,
        series_description: title,
    };
    let mut o = write::base(src, ctx, &common)?;
    write::frame_of_reference(&mut o, src, ctx);

    let mut seg = Obj::new();
    seg.str(
        tags::REFERENCED_SOP_CLASS_UID,
        VR::UI,
        crate::sop::SEGMENTATION_STORAGE,
    )
    .str(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, seg_instance);

    // The document is padded to an even length; its own length is stated.
    let mut document = stl.to_vec();
    if document.len() % 2 == 1 {
        document.push(0);
    }
    let now = write::stamp(ctx.created_unix_seconds);
    o.str(tags::ACQUISITION_DATE_TIME, VR::DT, &now.date_time)
        .str(tags::BURNED_IN_ANNOTATION, VR::CS, "NO")
        .str(tags::DOCUMENT_TITLE, VR::ST, title)
        .seq(tags::CONCEPT_NAME_CODE_SEQUENCE, Vec::new())
        .str(
            tags::MIME_TYPE_OF_ENCAPSULATED_DOCUMENT,
            VR::LO,
            "model/stl",
        )
        .item(tags::SOURCE_INSTANCE_SEQUENCE, seg)
        .bytes(tags::ENCAPSULATED_DOCUMENT, VR::OB, document)
        .ul(tags::ENCAPSULATED_DOCUMENT_LENGTH, &[stl.len() as u32])
        // Manufacturing 3D Model: STL has no units; liverseg writes mm.
        .code(
            tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
            &super::codes::millimeter(),
        )
        // Common Instance Reference: the SEG it was made from.
        .item(
            tags::REFERENCED_SERIES_SEQUENCE,
            write::series_reference(
                seg_series,
                tags::REFERENCED_INSTANCE_SEQUENCE,
                [(crate::sop::SEGMENTATION_STORAGE, seg_instance)],
            ),
        );
    write::part10(o, &common)
}

/// A binary STL (80-byte header, triangle count, 50 bytes a triangle) or an
/// ASCII one (`solid` ... `endsolid`).
fn check_stl(stl: &[u8]) -> Result<(), DerivedError> {
    if stl.is_empty() {
        return Err(DerivedError::InvalidStl("it is empty"));
    }
    if stl.len() >= 84 {
        let triangles = u32::from_le_bytes([stl[80], stl[81], stl[82], stl[83]]) as usize;
        if triangles.checked_mul(50).and_then(|n| n.checked_add(84)) == Some(stl.len()) {
            return if triangles == 0 {
                Err(DerivedError::InvalidStl("it has no triangles"))
            } else {
                Ok(())
            };
        }
    }
    let text = String::from_utf8_lossy(&stl[..stl.len().min(1024)]);
    let tail = String::from_utf8_lossy(&stl[stl.len().saturating_sub(1024)..]);
    if text.trim_start().starts_with("solid") && tail.contains("endsolid") {
        Ok(())
    } else {
        Err(DerivedError::InvalidStl(
            "its length does not match its triangle count and it is not ASCII STL",
        ))
    }
}
