//! The liver volume as a TID 1500 Imaging Measurement Report in a
//! Comprehensive SR, structured as highdicom's `MeasurementReport` with one
//! TID 1411 volumetric ROI group that references the SEG's segment.

use super::write::{self, Common, Obj};
use super::{Algorithm, Code, Context, DerivedError, Produced, Source};
use dicom_core::VR;
use dicom_dictionary_std::tags;

/// Writes the report of `volume_ml` millilitres for segment
/// `segment_number` of `seg` (which must be a SEG of `src`).
pub fn volume_report(
    src: &Source,
    seg: &Produced,
    segment_number: u16,
    volume_ml: f64,
    algo: &Algorithm,
    ctx: &Context,
) -> Result<Produced, DerivedError> {
    write::check_source(src)?;
    super::seg::check_algorithm(algo)?;
    if seg.sop_class_uid != crate::sop::SEGMENTATION_STORAGE {
        return Err(DerivedError::NotASegmentation {
            sop_class_uid: seg.sop_class_uid.clone(),
        });
    }
    write::check_uid("ReferencedSOPInstanceUID", &seg.sop_instance_uid)?;
    write::check_uid("SeriesInstanceUID", &seg.series_instance_uid)?;
    if segment_number == 0 {
        return Err(DerivedError::SegmentNumber);
    }
    if !volume_ml.is_finite() || volume_ml < 0.0 {
        return Err(DerivedError::InvalidVolume(volume_ml));
    }

    let sop_instance_uid = ctx.uid("sr-instance");
    let series_instance_uid = ctx.uid("sr-series");
    let description = format!(
        "{} volume, {} {}",
        algo.segment_label, algo.name, algo.version
    );
    let common = Common {
        sop_class_uid: crate::sop::COMPREHENSIVE_SR_STORAGE,
        sop_instance_uid: &sop_instance_uid,
        series_instance_uid: &series_instance_uid,
        modality: "SR",
        series_number: super::SR_SERIES_NUMBER,
        series_description: &description,
    };
    let mut o = write::base(src, ctx, &common)?;

    // SR Document General: automated output nobody has verified yet.
    o.str(tags::COMPLETION_FLAG, VR::CS, "COMPLETE")
        .str(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED")
        .seq(
            tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
            Vec::new(),
        )
        .seq(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, Vec::new());
    let mut study = Obj::new();
    study
        .seq(
            tags::REFERENCED_SERIES_SEQUENCE,
            vec![
                write::series_reference(
                    &src.series_instance_uid,
                    tags::REFERENCED_SOP_SEQUENCE,
                    src.images
                        .iter()
                        .map(|i| (i.sop_class_uid.as_str(), i.sop_instance_uid.as_str())),
                ),
                write::series_reference(
                    &seg.series_instance_uid,
                    tags::REFERENCED_SOP_SEQUENCE,
                    [(seg.sop_class_uid.as_str(), seg.sop_instance_uid.as_str())],
                ),
            ],
        )
        .str(tags::STUDY_INSTANCE_UID, VR::UI, &src.study_instance_uid);
    o.item(tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE, study);

    // SR Document Content: the root container and its tree.
    o.str(tags::VALUE_TYPE, VR::CS, "CONTAINER")
        .code(
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            &dcm("126000", "Imaging Measurement Report"),
        )
        .str(tags::CONTINUITY_OF_CONTENT, VR::CS, "CONTINUOUS")
        .item(tags::CONTENT_TEMPLATE_SEQUENCE, template("1500"));
    let mut content = vec![
        code_item(
            "HAS CONCEPT MOD",
            &dcm("121049", "Language of Content Item and Descendants"),
            &Code::new("RFC5646", "en-US", "English (United States)"),
        ),
        code_item(
            "HAS OBS CONTEXT",
            &dcm("121005", "Observer Type"),
            &dcm("121007", "Device"),
        ),
        uid_item(
            "HAS OBS CONTEXT",
            &dcm("121012", "Device Observer UID"),
            &device_observer_uid(),
        ),
        text_item(
            "HAS OBS CONTEXT",
            &dcm("121013", "Device Observer Name"),
            super::MANUFACTURER_MODEL_NAME,
        ),
        text_item(
            "HAS OBS CONTEXT",
            &dcm("121014", "Device Observer Manufacturer"),
            super::MANUFACTURER,
        ),
        text_item(
            "HAS OBS CONTEXT",
            &dcm("121015", "Device Observer Model Name"),
            super::MANUFACTURER_MODEL_NAME,
        ),
        text_item(
            "HAS OBS CONTEXT",
            &dcm("121016", "Device Observer Serial Number"),
            super::DEVICE_SERIAL_NUMBER,
        ),
        code_item(
            "HAS CONCEPT MOD",
            &dcm("121058", "Procedure reported"),
            &Code::new("LN", "25045-6", "CT unspecified body region"),
        ),
    ];
    let group = measurement_group(src, seg, segment_number, volume_ml, algo, ctx);
    let mut measurements = item(
        "CONTAINS",
        "CONTAINER",
        &dcm("126010", "Imaging Measurements"),
    );
    measurements
        .str(tags::CONTINUITY_OF_CONTENT, VR::CS, "CONTINUOUS")
        .item(tags::CONTENT_SEQUENCE, group);
    content.push(measurements);
    o.seq(tags::CONTENT_SEQUENCE, content);
    write::part10(o, &common)
}

/// TID 1411 Volumetric ROI Measurements, in highdicom's item order.
fn measurement_group(
    src: &Source,
    seg: &Produced,
    segment_number: u16,
    volume_ml: f64,
    algo: &Algorithm,
    ctx: &Context,
) -> Obj {
    let mut num = item("CONTAINS", "NUM", &super::codes::volume());
    let mut value = Obj::new();
    value
        .code(
            tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
            &super::codes::milliliter(),
        )
        // The decimal string holds at most 16 characters; the exact value
        // goes to Floating Point Value alongside it.
        .fd(tags::FLOATING_POINT_VALUE, volume_ml)
        .decimals(tags::NUMERIC_VALUE, &[volume_ml]);
    num.item(tags::MEASURED_VALUE_SEQUENCE, value).seq(
        tags::CONTENT_SEQUENCE,
        vec![
            text_item(
                "HAS CONCEPT MOD",
                &dcm("111001", "Algorithm Name"),
                &algo.name,
            ),
            text_item(
                "HAS CONCEPT MOD",
                &dcm("111003", "Algorithm Version"),
                &algo.version,
            ),
        ],
    );

    let mut segment = item("CONTAINS", "IMAGE", &dcm("121191", "Referenced Segment"));
    let mut reference = Obj::new();
    reference
        .str(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &seg.sop_class_uid)
        .str(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            &seg.sop_instance_uid,
        )
        .us(tags::REFERENCED_SEGMENT_NUMBER, segment_number);
    segment.item(tags::REFERENCED_SOP_SEQUENCE, reference);

    let mut group = item("CONTAINS", "CONTAINER", &dcm("125007", "Measurement Group"));
    group
        .str(tags::CONTINUITY_OF_CONTENT, VR::CS, "CONTINUOUS")
        .item(tags::CONTENT_TEMPLATE_SEQUENCE, template("1411"))
        .seq(
            tags::CONTENT_SEQUENCE,
            vec![
                text_item(
                    "HAS OBS CONTEXT",
                    &dcm("112039", "Tracking Identifier"),
                    &algo.segment_label,
                ),
                uid_item(
                    "HAS OBS CONTEXT",
                    &dcm("112040", "Tracking Unique Identifier"),
                    &super::seg::tracking_uid(ctx),
                ),
                code_item(
                    "CONTAINS",
                    &Code::new("SCT", "276214006", "Finding category"),
                    &algo.category,
                ),
                code_item("CONTAINS", &dcm("121071", "Finding"), &algo.kind),
                num,
                segment,
                uid_item(
                    "CONTAINS",
                    &dcm("121232", "Source series for segmentation"),
                    &src.series_instance_uid,
                ),
            ],
        );
    group
}

/// The observer device: the same UID in every report liverseg writes.
fn device_observer_uid() -> String {
    super::hashed_uid("liverseg/device-observer")
}

fn dcm(value: &str, meaning: &str) -> Code {
    Code::new("DCM", value, meaning)
}

fn template(id: &str) -> Obj {
    let mut t = Obj::new();
    t.str(tags::MAPPING_RESOURCE, VR::CS, "DCMR")
        .str(tags::TEMPLATE_IDENTIFIER, VR::CS, id);
    t
}

fn item(relationship: &str, value_type: &str, concept: &Code) -> Obj {
    let mut i = Obj::new();
    i.str(tags::RELATIONSHIP_TYPE, VR::CS, relationship)
        .str(tags::VALUE_TYPE, VR::CS, value_type)
        .code(tags::CONCEPT_NAME_CODE_SEQUENCE, concept);
    i
}

fn code_item(relationship: &str, concept: &Code, value: &Code) -> Obj {
    let mut i = item(relationship, "CODE", concept);
    i.code(tags::CONCEPT_CODE_SEQUENCE, value);
    i
}

fn text_item(relationship: &str, concept: &Code, value: &str) -> Obj {
    let mut i = item(relationship, "TEXT", concept);
    i.str(tags::TEXT_VALUE, VR::UT, value);
    i
}

fn uid_item(relationship: &str, concept: &Code, value: &str) -> Obj {
    let mut i = item(relationship, "UIDREF", concept);
    i.str(tags::UID, VR::UI, value);
    i
}
