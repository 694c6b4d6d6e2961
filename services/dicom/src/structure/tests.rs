use super::*;
use dicom_core::{DataElement, PrimitiveValue};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;

const EXPLICIT_LE: Encoding = Encoding {
    explicit_vr: true,
    big_endian: false,
    deflated: false,
    encapsulated: false,
};

/// One explicit VR little endian element.
fn el(group: u16, element: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(vr);
    if has_short_length(VR::from_binary(*vr).unwrap_or(VR::UN)) {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(value);
    out
}

fn header(group: u16, element: u16, length: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&length.to_le_bytes());
    out
}

/// A sequence of undefined length holding one item of undefined length
/// around `inner`, nested `depth` times.
fn nested(depth: usize, inner: &[u8]) -> Vec<u8> {
    let mut body = inner.to_vec();
    for _ in 0..depth {
        let mut out = Vec::new();
        out.extend_from_slice(&0x0008u16.to_le_bytes());
        out.extend_from_slice(&0x1115u16.to_le_bytes());
        out.extend_from_slice(b"SQ\0\0");
        out.extend_from_slice(&UNDEFINED.to_le_bytes());
        out.extend(header(0xFFFE, 0xE000, UNDEFINED));
        out.extend(&body);
        out.extend(header(0xFFFE, 0xE00D, 0));
        out.extend(header(0xFFFE, 0xE0DD, 0));
        body = out;
    }
    body
}

fn us(v: u16) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// A 2 x 2 CT-like data set with 16-bit native pixels of `pixels` bytes.
fn image(pixels: usize) -> Vec<u8> {
    let mut out = el(0x0008, 0x0060, b"CS", b"CT");
    out.extend(el(0x0028, 0x0002, b"US", &us(1)));
    out.extend(el(0x0028, 0x0010, b"US", &us(2)));
    out.extend(el(0x0028, 0x0011, b"US", &us(2)));
    out.extend(el(0x0028, 0x0100, b"US", &us(16)));
    out.extend(el(0x7FE0, 0x0010, b"OW", &vec![7u8; pixels]));
    out
}

#[test]
fn a_plain_image_passes_and_its_shape_is_read() {
    let shape = check_data_set(&image(8), EXPLICIT_LE).unwrap();
    assert_eq!(shape.rows, Some(2));
    assert_eq!(shape.columns, Some(2));
    assert_eq!(shape.bits_allocated, Some(16));
    assert_eq!(shape.pixel_data, Some(PixelData::Native { length: 8 }));
    shape
        .check_image(crate::sop::CT_IMAGE_STORAGE, EXPLICIT_LE)
        .unwrap();
}

#[test]
fn nesting_is_allowed_to_the_limit_and_refused_past_it() {
    let inner = el(0x0008, 0x0100, b"SH", b"T-62000 ");
    let shape = check_data_set(&nested(MAX_DEPTH, &inner), EXPLICIT_LE).unwrap();
    assert_eq!(shape.depth, MAX_DEPTH);
    let err = check_data_set(&nested(MAX_DEPTH + 1, &inner), EXPLICIT_LE).unwrap_err();
    assert!(matches!(err, StructureError::TooDeep { .. }), "{err}");
    // Thousands of levels are refused as quickly, without recursion.
    let err = check_data_set(&nested(20_000, &inner), EXPLICIT_LE).unwrap_err();
    assert!(matches!(err, StructureError::TooDeep { .. }), "{err}");
}

#[test]
fn a_length_past_the_data_is_refused() {
    let mut data = el(0x0008, 0x0060, b"CS", b"CT");
    data.extend_from_slice(&[0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
    data.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    data.extend_from_slice(b"short");
    let err = check_data_set(&data, EXPLICIT_LE).unwrap_err();
    match err {
        StructureError::Overrun {
            length, available, ..
        } => assert_eq!((length, available), (0xFFFF_FFF0, 5)),
        other => panic!("{other}"),
    }
}

#[test]
fn a_value_may_not_run_past_its_item() {
    // An item of 12 bytes whose element declares 20.
    let mut data = Vec::new();
    data.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
    data.extend_from_slice(&UNDEFINED.to_le_bytes());
    data.extend(header(0xFFFE, 0xE000, 12));
    let mut long = el(0x0008, 0x1150, b"UI", &[b'1'; 20]);
    long.truncate(12);
    data.extend(long);
    data.extend(vec![b'1'; 8]);
    data.extend(header(0xFFFE, 0xE0DD, 0));
    let err = check_data_set(&data, EXPLICIT_LE).unwrap_err();
    assert!(
        matches!(
            err,
            StructureError::Overrun {
                within: "its item or sequence",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn truncation_and_unclosed_sequences_are_refused() {
    let data = image(8);
    for cut in [3, 9, data.len() - 3] {
        assert!(
            check_data_set(&data[..cut], EXPLICIT_LE).is_err(),
            "cut at {cut}"
        );
    }
    let mut open = nested(3, &el(0x0008, 0x0100, b"SH", b"X "));
    open.truncate(open.len() - 16);
    let err = check_data_set(&open, EXPLICIT_LE).unwrap_err();
    assert!(matches!(err, StructureError::Truncated { .. }), "{err}");
}

#[test]
fn an_unknown_vr_is_read_as_un_with_a_long_length_as_dicom_rs_does() {
    // "ZZ" + 2 reserved bytes + a 4-byte length that is far too long.
    let mut data = Vec::new();
    data.extend_from_slice(&[0x08, 0x00, 0x16, 0x00, b'Z', b'Z', 8, 0]);
    data.extend_from_slice(b"1.2.840.10008.5.1.4.1.1.2\0");
    let err = check_data_set(&data, EXPLICIT_LE).unwrap_err();
    assert!(matches!(err, StructureError::Overrun { .. }), "{err}");
}

#[test]
fn implicit_vr_sequences_are_found_through_the_dictionary() {
    // (0008,1115) ReferencedSeriesSequence with a defined length, implicit.
    let inner = {
        let mut v = header(0x0020, 0x000E, 4);
        v.extend_from_slice(b"1.2\0");
        v
    };
    let mut item = header(0xFFFE, 0xE000, inner.len() as u32);
    item.extend(&inner);
    let mut data = header(0x0008, 0x1115, item.len() as u32);
    data.extend(&item);
    let shape = check_data_set(&data, Encoding::IMPLICIT_LE).unwrap();
    assert_eq!(shape.depth, 1);
    // The same item claiming more than the sequence holds.
    let mut bad = header(0x0008, 0x1115, item.len() as u32);
    bad.extend(header(0xFFFE, 0xE000, 400));
    bad.extend(&inner);
    assert!(check_data_set(&bad, Encoding::IMPLICIT_LE).is_err());
}

#[test]
fn pixel_data_is_checked_against_the_matrix() {
    let ct = crate::sop::CT_IMAGE_STORAGE;
    let short = check_data_set(&image(6), EXPLICIT_LE).unwrap();
    let err = short.check_image(ct, EXPLICIT_LE).unwrap_err().to_string();
    assert!(
        err.contains("has 6 bytes") && err.contains("need 8"),
        "{err}"
    );

    let mut none = image(8);
    none.truncate(none.len() - 8 - 12);
    let shape = check_data_set(&none, EXPLICIT_LE).unwrap();
    assert!(shape.check_image(ct, EXPLICIT_LE).is_err());
    // Other classes (an SR, a PDF) need no pixels.
    shape
        .check_image(crate::sop::COMPREHENSIVE_SR_STORAGE, EXPLICIT_LE)
        .unwrap();

    // A 1-bit SEG matrix relabelled as CT.
    let mut seg = el(0x0028, 0x0010, b"US", &us(2));
    seg.extend(el(0x0028, 0x0011, b"US", &us(2)));
    seg.extend(el(0x0028, 0x0100, b"US", &us(1)));
    seg.extend(el(0x7FE0, 0x0010, b"OB", &[0x0F, 0]));
    let shape = check_data_set(&seg, EXPLICIT_LE).unwrap();
    shape
        .check_image(crate::sop::SEGMENTATION_STORAGE, EXPLICIT_LE)
        .unwrap();
    let err = shape.check_image(ct, EXPLICIT_LE).unwrap_err().to_string();
    assert!(err.contains("has 1 bits"), "{err}");

    // Native pixels under a compressed transfer syntax.
    let jpeg = Encoding::of("1.2.840.10008.1.2.4.50").unwrap();
    assert!(jpeg.encapsulated && jpeg.explicit_vr);
    let shape = check_data_set(&image(8), jpeg).unwrap();
    assert!(shape.check_image(ct, jpeg).is_err());
}

#[test]
fn encapsulated_fragments_are_counted() {
    let jpeg = Encoding::of("1.2.840.10008.1.2.4.50").unwrap();
    let mut data = image(0);
    data.truncate(data.len() - 12);
    data.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
    data.extend_from_slice(&UNDEFINED.to_le_bytes());
    data.extend(header(0xFFFE, 0xE000, 0));
    let only_table = {
        let mut d = data.clone();
        d.extend(header(0xFFFE, 0xE0DD, 0));
        d
    };
    data.extend(header(0xFFFE, 0xE000, 4));
    data.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xD9]);
    data.extend(header(0xFFFE, 0xE0DD, 0));
    let shape = check_data_set(&data, jpeg).unwrap();
    assert_eq!(
        shape.pixel_data,
        Some(PixelData::Encapsulated {
            fragments: 2,
            bytes: 4
        })
    );
    shape
        .check_image(crate::sop::CT_IMAGE_STORAGE, jpeg)
        .unwrap();
    let shape = check_data_set(&only_table, jpeg).unwrap();
    assert!(
        shape
            .check_image(crate::sop::CT_IMAGE_STORAGE, jpeg)
            .is_err()
    );
}

/// A Part 10 file written by dicom-rs in `ts`, with a nested sequence.
fn part10(ts: &str) -> Vec<u8> {
    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag, vr, v: PrimitiveValue| obj.put(DataElement::new(tag, vr, v));
    put(
        tags::SOP_CLASS_UID,
        VR::UI,
        crate::sop::CT_IMAGE_STORAGE.into(),
    );
    put(tags::SOP_INSTANCE_UID, VR::UI, "2.25.1".into());
    put(tags::ROWS, VR::US, PrimitiveValue::from(2u16));
    put(tags::COLUMNS, VR::US, PrimitiveValue::from(2u16));
    put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16));
    put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
    put(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(vec![1, 2, 3, 4].into()),
    );
    let mut item = InMemDicomObject::new_empty();
    item.put(DataElement::new(
        tags::REFERENCED_SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from("2.25.2"),
    ));
    obj.put(DataElement::new(
        tags::REFERENCED_IMAGE_SEQUENCE,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(vec![item]),
    ));
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .media_storage_sop_class_uid(crate::sop::CT_IMAGE_STORAGE)
                .media_storage_sop_instance_uid("2.25.1")
                .transfer_syntax(ts),
        )
        .unwrap();
    let mut out = Vec::new();
    file.write_all(&mut out).unwrap();
    out
}

#[test]
fn part10_files_written_by_dicom_rs_pass_in_every_plain_syntax() {
    for ts in [
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.1.99",
    ] {
        let bytes = part10(ts);
        let checked = check_part10(&bytes, 1 << 20).unwrap_or_else(|e| panic!("{ts}: {e}"));
        assert_eq!(checked.transfer_syntax, ts);
        let shape = checked.shape.unwrap();
        assert_eq!(shape.depth, 1, "{ts}");
        assert_eq!(shape.rows, Some(2), "{ts}");
        assert_eq!(
            shape.pixel_data,
            Some(PixelData::Native { length: 8 }),
            "{ts}"
        );
        let encoding = Encoding::of(ts).unwrap();
        assert_eq!(encoding.deflated, ts.ends_with(".99"));
        shape
            .check_image(crate::sop::CT_IMAGE_STORAGE, encoding)
            .unwrap();
        // And the same file cut short anywhere after the meta group.
        let cut = bytes.len() - 5;
        assert!(check_part10(&bytes[..cut], 1 << 20).is_err(), "{ts} cut");
    }
}

#[test]
fn a_deflated_data_set_is_refused_past_the_inflation_limit() {
    let bytes = part10("1.2.840.10008.1.2.1.99");
    let err = check_part10(&bytes, 200).unwrap_err();
    assert!(matches!(err, StructureError::TooLarge { .. }), "{err}");
}

#[test]
fn a_meta_group_with_a_huge_length_is_refused() {
    let mut bytes = part10("1.2.840.10008.1.2.1");
    // (0002,0001) OB: its 4-byte length sits at 132 + 12 + 8.
    let at = 132 + 12 + 8;
    assert_eq!(&bytes[132 + 12..132 + 16], &[0x02, 0x00, 0x01, 0x00]);
    bytes[at..at + 4].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
    assert!(matches!(
        check_part10(&bytes, 1 << 20),
        Err(StructureError::Meta(_))
    ));
    assert!(matches!(
        check_part10(b"not dicom", 1 << 20),
        Err(StructureError::NotPart10(_))
    ));
}
