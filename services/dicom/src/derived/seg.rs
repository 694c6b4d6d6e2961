//! The liver mask as a BINARY Segmentation (PS3.3 A.51), laid out as
//! highdicom writes one: one segment, one frame per source slice that holds
//! liver, each frame placed by its source slice's own position and
//! referencing that slice.

use super::write::{self, Common, Obj, check_code, check_text};
use super::{Algorithm, Caveats, Context, DerivedError, Produced, Source};
use dicom_core::VR;
use dicom_dictionary_std::tags;

/// The single segment's number.
const SEGMENT_NUMBER: u16 = 1;

/// Writes the SEG of `mask` (`[slice][row][column]` over `src.images`,
/// non-zero = inside). Only slices holding liver become frames; an all-zero
/// mask is an error, since a SEG without frames is not valid.
pub fn segmentation(
    src: &Source,
    mask: &[u8],
    algo: &Algorithm,
    ctx: &Context,
) -> Result<Produced, DerivedError> {
    segmentation_with(src, mask, algo, ctx, &Caveats::default())
}

/// [`segmentation`] whose series and content descriptions say what a
/// viewer's user must know first: a liver the scan cuts, a result the model
/// was unsure of.
pub fn segmentation_with(
    src: &Source,
    mask: &[u8],
    algo: &Algorithm,
    ctx: &Context,
    caveats: &Caveats,
) -> Result<Produced, DerivedError> {
    write::check_source(src)?;
    check_algorithm(algo)?;
    let plane = src.rows * src.columns;
    if src.rows == 0 || src.columns == 0 || src.rows > 65_535 || src.columns > 65_535 {
        return Err(DerivedError::InvalidSource(format!(
            "{}x{} is not a valid image size",
            src.rows, src.columns
        )));
    }
    let expected = src.images.len() * plane;
    if mask.len() != expected {
        return Err(DerivedError::MaskLength {
            expected,
            actual: mask.len(),
            slices: src.images.len(),
            rows: src.rows,
            columns: src.columns,
        });
    }
    let frames: Vec<usize> = (0..src.images.len())
        .filter(|&s| mask[s * plane..(s + 1) * plane].iter().any(|&v| v != 0))
        .collect();
    if frames.is_empty() {
        return Err(DerivedError::EmptyMask);
    }
    let pixel_data = pack_frames(mask, plane, &frames)?;

    let (sop_instance_uid, series_instance_uid) = identity(ctx);
    // LO holds 64 characters: the caveat goes first, the model's name and
    // version are in the segment's algorithm attributes anyway.
    let description = if caveats.is_empty() {
        format!(
            "{} segmentation, {} {}",
            algo.segment_label, algo.name, algo.version
        )
    } else {
        format!("{} seg: {}", algo.segment_label, caveats.text())
    };
    let description = write::truncate(&description, 64);
    let common = Common {
        sop_class_uid: crate::sop::SEGMENTATION_STORAGE,
        sop_instance_uid: &sop_instance_uid,
        series_instance_uid: &series_instance_uid,
        modality: "SEG",
        series_number: super::SEG_SERIES_NUMBER,
        series_description: &description,
    };
    let mut o = write::base(src, ctx, &common)?;
    write::frame_of_reference(&mut o, src, ctx);

    // Segmentation Image module, with the Content Identification macro.
    o.strs(
        tags::IMAGE_TYPE,
        VR::CS,
        &["DERIVED".to_string(), "PRIMARY".to_string()],
    )
    .str(
        tags::CONTENT_LABEL,
        VR::CS,
        &content_label(&algo.segment_label),
    )
    .str(
        tags::CONTENT_DESCRIPTION,
        VR::LO,
        &write::truncate(&description, 64),
    )
    // A device, not a person: the family-name component only ("^" keeps
    // validators from reading a bare word as the retired free-text form).
    .str(
        tags::CONTENT_CREATOR_NAME,
        VR::PN,
        &format!("{}^", super::MANUFACTURER),
    )
    .str(tags::SEGMENTATION_TYPE, VR::CS, "BINARY")
    .str(tags::SEGMENTS_OVERLAP, VR::CS, "NO")
    .str(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00")
    .item(tags::SEGMENT_SEQUENCE, segment(algo, ctx));

    // Image Pixel: 1 bit, frames packed back to back.
    o.us(tags::SAMPLES_PER_PIXEL, 1)
        .str(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2")
        .us(tags::ROWS, src.rows as u16)
        .us(tags::COLUMNS, src.columns as u16)
        .us(tags::BITS_ALLOCATED, 1)
        .us(tags::BITS_STORED, 1)
        .us(tags::HIGH_BIT, 0)
        .us(tags::PIXEL_REPRESENTATION, 0)
        .int_string(tags::NUMBER_OF_FRAMES, frames.len())
        .bytes(tags::PIXEL_DATA, VR::OB, pixel_data);

    // Multi-frame Dimension: frames indexed by segment, then by position.
    let dimension_uid = ctx.uid("seg-dimension-organization");
    let mut organization = Obj::new();
    organization.str(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dimension_uid);
    let index = |pointer, group, label: &str| {
        let mut i = Obj::new();
        i.str(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dimension_uid)
            .at(tags::DIMENSION_INDEX_POINTER, pointer)
            .at(tags::FUNCTIONAL_GROUP_POINTER, group)
            .str(tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label);
        i
    };
    o.item(tags::DIMENSION_ORGANIZATION_SEQUENCE, organization)
        .seq(
            tags::DIMENSION_INDEX_SEQUENCE,
            vec![
                index(
                    tags::REFERENCED_SEGMENT_NUMBER,
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                    "Segment Number",
                ),
                index(
                    tags::IMAGE_POSITION_PATIENT,
                    tags::PLANE_POSITION_SEQUENCE,
                    "Image Position Patient",
                ),
            ],
        );

    o.item(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, shared_groups(src));
    o.seq(
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        frames
            .iter()
            .enumerate()
            .map(|(k, &slice)| frame_groups(src, slice, k + 1))
            .collect(),
    );

    // Common Instance Reference: the whole source series.
    o.item(
        tags::REFERENCED_SERIES_SEQUENCE,
        write::series_reference(
            &src.series_instance_uid,
            tags::REFERENCED_INSTANCE_SEQUENCE,
            src.images
                .iter()
                .map(|i| (i.sop_class_uid.as_str(), i.sop_instance_uid.as_str())),
        ),
    );
    write::part10(o, &common)
}

/// This job's SEG: (SOP Instance UID, Series Instance UID).
pub(crate) fn identity(ctx: &Context) -> (String, String) {
    (ctx.uid("seg-instance"), ctx.uid("seg-series"))
}

/// The tracking UID shared by the SEG's segment and the SR's measurement
/// group, so that viewers can tie the volume to the segment.
pub(crate) fn tracking_uid(ctx: &Context) -> String {
    ctx.uid("liver-tracking")
}

pub(crate) fn check_algorithm(algo: &Algorithm) -> Result<(), DerivedError> {
    check_text("AlgorithmName", &algo.name, VR::LO)?;
    check_text("AlgorithmVersion", &algo.version, VR::LO)?;
    check_text("SegmentLabel", &algo.segment_label, VR::LO)?;
    check_code("AlgorithmFamilyCodeSequence", &algo.family)?;
    check_code("SegmentedPropertyCategoryCodeSequence", &algo.category)?;
    check_code("SegmentedPropertyTypeCodeSequence", &algo.kind)
}

/// Packs the chosen slices' planes as 1-bit pixels, frame after frame with
/// no padding between frames (PS3.5 8.1.1), least significant bit first,
/// the whole padded to an even length.
fn pack_frames(mask: &[u8], plane: usize, frames: &[usize]) -> Result<Vec<u8>, DerivedError> {
    let bits = frames.len() * plane;
    let len = bits.div_ceil(8).next_multiple_of(2);
    if len > u32::MAX as usize - 1 {
        return Err(DerivedError::TooLarge { bytes: len });
    }
    let mut out = vec![0u8; len];
    let mut bit = 0usize;
    for &slice in frames {
        for &v in &mask[slice * plane..(slice + 1) * plane] {
            if v != 0 {
                out[bit / 8] |= 1 << (bit % 8);
            }
            bit += 1;
        }
    }
    Ok(out)
}

/// A Content Label (CS: upper case, digits, space, underscore; 16 chars).
fn content_label(segment_label: &str) -> String {
    let label: String = segment_label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .take(16)
        .collect();
    if label.trim_matches('_').is_empty() {
        "SEGMENTATION".into()
    } else {
        label
    }
}

fn segment(algo: &Algorithm, ctx: &Context) -> Obj {
    let mut identification = Obj::new();
    identification
        .code(tags::ALGORITHM_FAMILY_CODE_SEQUENCE, &algo.family)
        .str(tags::ALGORITHM_VERSION, VR::LO, &algo.version)
        .str(tags::ALGORITHM_NAME, VR::LO, &algo.name);
    let mut s = Obj::new();
    s.us(tags::SEGMENT_NUMBER, SEGMENT_NUMBER)
        .str(tags::SEGMENT_LABEL, VR::LO, &algo.segment_label)
        .code(
            tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
            &algo.category,
        )
        .code(tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE, &algo.kind)
        .str(tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "AUTOMATIC")
        .str(tags::SEGMENT_ALGORITHM_NAME, VR::LO, &algo.name)
        .item(
            tags::SEGMENTATION_ALGORITHM_IDENTIFICATION_SEQUENCE,
            identification,
        )
        .str(tags::TRACKING_ID, VR::UT, &algo.segment_label)
        .str(tags::TRACKING_UID, VR::UI, &tracking_uid(ctx));
    // Viewers colour the segment with it (OHIF warns when it is missing):
    // the liver's usual colour, sRGB (221, 130, 101), in scaled CIELab.
    s.0.put(dicom_core::DataElement::new(
        tags::RECOMMENDED_DISPLAY_CIE_LAB_VALUE,
        VR::US,
        dicom_core::dicom_value!(U16, [40632, 40896, 40382]),
    ));
    s
}

fn shared_groups(src: &Source) -> Obj {
    let mut measures = Obj::new();
    measures
        .decimals(tags::PIXEL_SPACING, &src.pixel_spacing)
        // A source without SliceThickness: the frames are as thick as the
        // slices are apart (Slice Thickness is required in a SEG).
        .decimals(
            tags::SLICE_THICKNESS,
            &[src.slice_thickness.unwrap_or(src.spacing_between_slices)],
        )
        .decimals(tags::SPACING_BETWEEN_SLICES, &[src.spacing_between_slices]);
    let mut orientation = Obj::new();
    orientation.decimals(tags::IMAGE_ORIENTATION_PATIENT, &src.orientation);
    let mut g = Obj::new();
    g.item(tags::PIXEL_MEASURES_SEQUENCE, measures)
        .item(tags::PLANE_ORIENTATION_SEQUENCE, orientation);
    g
}

/// Functional groups of frame `number` (1-based), made from source `slice`.
fn frame_groups(src: &Source, slice: usize, number: usize) -> Obj {
    let image = &src.images[slice];
    let mut source = Obj::new();
    source
        .str(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &image.sop_class_uid)
        .str(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            &image.sop_instance_uid,
        )
        .str(tags::SPATIAL_LOCATIONS_PRESERVED, VR::CS, "YES")
        .code(
            tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
            &super::Code::new(
                "DCM",
                "121322",
                "Source image for image processing operation",
            ),
        );
    let mut derivation = Obj::new();
    derivation.item(tags::SOURCE_IMAGE_SEQUENCE, source).code(
        tags::DERIVATION_CODE_SEQUENCE,
        &super::Code::new("DCM", "113076", "Segmentation"),
    );
    let mut content = Obj::new();
    // Positions are indexed in frame order, which is slice order.
    content.ul(
        tags::DIMENSION_INDEX_VALUES,
        &[u32::from(SEGMENT_NUMBER), number as u32],
    );
    let mut position = Obj::new();
    position.decimals(tags::IMAGE_POSITION_PATIENT, &image.position);
    let mut segment = Obj::new();
    segment.us(tags::REFERENCED_SEGMENT_NUMBER, SEGMENT_NUMBER);
    let mut g = Obj::new();
    g.item(tags::DERIVATION_IMAGE_SEQUENCE, derivation)
        .item(tags::FRAME_CONTENT_SEQUENCE, content)
        .item(tags::PLANE_POSITION_SEQUENCE, position)
        .item(tags::SEGMENT_IDENTIFICATION_SEQUENCE, segment);
    g
}
