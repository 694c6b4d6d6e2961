//! The liver volume as a TID 1500 Imaging Measurement Report in a
//! Comprehensive SR, structured as highdicom's `MeasurementReport` with one
//! TID 1411 volumetric ROI group that references the SEG's segment; and,
//! when no liver was found, a report that says so and why, so that nobody
//! at the PACS waits for a result that will not come.
//!
//! A volume the scan does not wholly cover is qualified where a PACS user
//! reads it: the measurement carries Derivation = Minimum (it is a lower
//! bound) and the group a qualitative evaluation naming the cut sides; a
//! result the model was unsure of carries one asking for review.

use super::write::{self, Common, Obj};
use super::{Algorithm, Caveats, Code, Context, DerivedError, Produced, Source};
use dicom_core::VR;
use dicom_dictionary_std::tags;
use liverseg_core::NoLiver;

/// Private coding scheme of liverseg's own concepts (PS3.16 8.2: a
/// designator starting with "99").
pub const LIVERSEG_SCHEME: &str = "99LIVERSEG";

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
    volume_report_with(
        src,
        seg,
        segment_number,
        volume_ml,
        algo,
        ctx,
        &Caveats::default(),
    )
}

/// [`volume_report`] qualified by `caveats` (see the module's text).
pub fn volume_report_with(
    src: &Source,
    seg: &Produced,
    segment_number: u16,
    volume_ml: f64,
    algo: &Algorithm,
    ctx: &Context,
    caveats: &Caveats,
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

    let description = if caveats.is_empty() {
        format!(
            "{} volume, {} {}",
            algo.segment_label, algo.name, algo.version
        )
    } else {
        format!("{} volume: {}", algo.segment_label, caveats.text())
    };
    let evidence = [(
        seg.sop_class_uid.as_str(),
        seg.series_instance_uid.as_str(),
        seg.sop_instance_uid.as_str(),
    )];
    let group = measurement_group(src, seg, segment_number, volume_ml, algo, ctx, caveats);
    let mut measurements = item(
        "CONTAINS",
        "CONTAINER",
        &dcm("126010", "Imaging Measurements"),
    );
    measurements
        .str(tags::CONTINUITY_OF_CONTENT, VR::CS, "CONTINUOUS")
        .item(tags::CONTENT_SEQUENCE, group);
    report(
        src,
        &evidence,
        &description,
        (measurements, !caveats.is_empty()),
        ctx,
    )
}

/// Writes the report that no liver was found in `src`, with the reason: a
/// TID 1500 report whose only content is a qualitative evaluation (the
/// finding "liver not found") and a comment giving the figures.
pub fn no_liver_report(
    src: &Source,
    no_liver: &NoLiver,
    algo: &Algorithm,
    ctx: &Context,
) -> Result<Produced, DerivedError> {
    write::check_source(src)?;
    super::seg::check_algorithm(algo)?;
    let description = format!(
        "{} not found, {} {}",
        algo.segment_label, algo.name, algo.version
    );
    let mut evaluations = item(
        "CONTAINS",
        "CONTAINER",
        &Code::new("UMLS", "C0034375", "Qualitative Evaluations"),
    );
    evaluations
        .str(tags::CONTINUITY_OF_CONTENT, VR::CS, "CONTINUOUS")
        .seq(
            tags::CONTENT_SEQUENCE,
            vec![
                code_item("CONTAINS", &dcm("121071", "Finding"), &no_liver_code()),
                text_item(
                    "CONTAINS",
                    &dcm("121106", "Comment"),
                    &format!("{}: {}", no_liver.reason.as_str(), no_liver.detail),
                ),
                text_item("CONTAINS", &dcm("111001", "Algorithm Name"), &algo.name),
                text_item(
                    "CONTAINS",
                    &dcm("111003", "Algorithm Version"),
                    &algo.version,
                ),
            ],
        );
    report(src, &[], &description, (evaluations, true), ctx)
}

/// (99LIVERSEG, no-liver, "Liver not found").
pub fn no_liver_code() -> Code {
    Code::new(LIVERSEG_SCHEME, "no-liver", "Liver not found")
}

/// (99LIVERSEG, coverage, "Liver coverage by the scan").
pub fn coverage_concept() -> Code {
    Code::new(LIVERSEG_SCHEME, "coverage", "Liver coverage by the scan")
}

/// (99LIVERSEG, review, "Review before use").
pub fn review_concept() -> Code {
    Code::new(LIVERSEG_SCHEME, "review", "Review before use")
}

/// The report around `content` (the Imaging Measurements or Qualitative
/// Evaluations container): SR document modules, observer context, and the
/// evidence (the source series and `evidence`: (class, series, instance)).
/// `private_codes`: the content uses [`LIVERSEG_SCHEME`].
fn report(
    src: &Source,
    evidence: &[(&str, &str, &str)],
    description: &str,
    (content_item, private_codes): (Obj, bool),
    ctx: &Context,
) -> Result<Produced, DerivedError> {
    let sop_instance_uid = ctx.uid("sr-instance");
    let series_instance_uid = ctx.uid("sr-series");
    let common = Common {
        sop_class_uid: crate::sop::COMPREHENSIVE_SR_STORAGE,
        sop_instance_uid: &sop_instance_uid,
        series_instance_uid: &series_instance_uid,
        modality: "SR",
        series_number: super::SR_SERIES_NUMBER,
        series_description: description,
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
    let mut series = vec![write::series_reference(
        &src.series_instance_uid,
        tags::REFERENCED_SOP_SEQUENCE,
        src.images
            .iter()
            .map(|i| (i.sop_class_uid.as_str(), i.sop_instance_uid.as_str())),
    )];
    for (class, series_uid, instance) in evidence {
        series.push(write::series_reference(
            series_uid,
            tags::REFERENCED_SOP_SEQUENCE,
            [(*class, *instance)],
        ));
    }
    let mut study = Obj::new();
    study.seq(tags::REFERENCED_SERIES_SEQUENCE, series).str(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        &src.study_instance_uid,
    );
    o.item(tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE, study);
    if private_codes {
        // Where the concepts of the private scheme come from (SOP Common);
        // only in a report that uses them.
        let mut scheme = Obj::new();
        scheme
            .str(tags::CODING_SCHEME_DESIGNATOR, VR::SH, LIVERSEG_SCHEME)
            .str(tags::CODING_SCHEME_NAME, VR::ST, "liverseg concepts")
            .str(
                tags::CODING_SCHEME_RESPONSIBLE_ORGANIZATION,
                VR::ST,
                super::MANUFACTURER,
            );
        o.item(tags::CODING_SCHEME_IDENTIFICATION_SEQUENCE, scheme);
    }

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
    content.push(content_item);
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
    caveats: &Caveats,
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
    let mut modifiers = vec![
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
    ];
    if !caveats.cut.is_empty() {
        // CID 3488: the measured volume is the least the liver can be.
        modifiers.push(code_item(
            "HAS CONCEPT MOD",
            &dcm("121401", "Derivation"),
            &Code::new("SCT", "255605001", "Minimum"),
        ));
    }
    num.item(tags::MEASURED_VALUE_SEQUENCE, value)
        .seq(tags::CONTENT_SEQUENCE, modifiers);

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
            ]
            .into_iter()
            .chain(qualitative_evaluations(caveats))
            .collect(),
        );
    group
}

/// TID 1411's qualitative evaluations for `caveats`: the cut sides, and a
/// request for review.
fn qualitative_evaluations(caveats: &Caveats) -> Vec<Obj> {
    let mut items = Vec::new();
    if !caveats.cut.is_empty() {
        let sides = liverseg_core::assessment::sides(&caveats.cut);
        let value = Code::new(
            LIVERSEG_SCHEME,
            &format!(
                "partial-{}",
                caveats
                    .cut
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("-")
            ),
            &write::truncate(&format!("Partial, liver cut at {sides}"), 64),
        );
        items.push(code_item("CONTAINS", &coverage_concept(), &value));
    }
    if caveats.uncertain {
        items.push(code_item(
            "CONTAINS",
            &review_concept(),
            &Code::new(LIVERSEG_SCHEME, "uncertain", "Model uncertain"),
        ));
    }
    items
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
