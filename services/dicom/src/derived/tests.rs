use super::*;
use crate::instance::text;
use dicom_core::header::HasLength;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;

/// A source instance's header: NUL padding as some writers leave it, no
/// PatientID nor AccessionNumber (Type 2: must come out present and empty).
fn header(patient_name: &str) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    let mut put = |t: Tag, vr: VR, v: &str| o.put(DataElement::new(t, vr, PrimitiveValue::from(v)));
    put(tags::PATIENT_NAME, VR::PN, patient_name);
    put(tags::PATIENT_SEX, VR::CS, "F\0");
    put(tags::PATIENT_AGE, VR::AS, "045Y");
    put(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3");
    put(tags::STUDY_DATE, VR::DA, "20240101");
    put(tags::MODALITY, VR::CS, "CT"); // not copied: series level
    o
}

/// `slices` axial slices of rows x columns, 2.5 mm apart, no Frame of
/// Reference (as IRCADb).
fn source(rows: usize, columns: usize, slices: usize) -> Source {
    Source {
        context: copy_context(&header("Doe^Jane\0")),
        study_instance_uid: "1.2.3".into(),
        series_instance_uid: "1.2.3.4".into(),
        frame_of_reference_uid: None,
        position_reference_indicator: String::new(),
        rows,
        columns,
        pixel_spacing: [0.8, 0.7],
        slice_thickness: Some(2.5),
        spacing_between_slices: 2.5,
        orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        images: (0..slices)
            .map(|s| SourceImage {
                sop_class_uid: crate::sop::CT_IMAGE_STORAGE.into(),
                sop_instance_uid: format!("1.2.3.4.{}", s + 1),
                position: [-100.0, -90.5, 10.0 + 2.5 * s as f64],
            })
            .collect(),
    }
}

fn algo() -> Algorithm {
    Algorithm {
        name: "unet".into(),
        version: "2.1".into(),
        family: codes::artificial_intelligence(),
        segment_label: "Liver".into(),
        category: codes::anatomical_structure(),
        kind: codes::liver(),
    }
}

fn ctx(seed: &str) -> Context {
    Context {
        uid_seed: seed.into(),
        created_unix_seconds: 1_709_251_199,
        software_version: "0.1.0".into(),
    }
}

/// A mask with an irregular pattern on `slices` only.
fn mask(src: &Source, slices: &[usize]) -> Vec<u8> {
    let (r, c) = (src.rows, src.columns);
    (0..src.images.len() * r * c)
        .map(|i| {
            let (s, y, x) = (i / (r * c), (i / c) % r, i % c);
            u8::from(slices.contains(&s) && (y * 7 + x * 3 + s) % 4 != 0)
        })
        .collect()
}

fn parse(p: &Produced) -> (tempfile::TempDir, std::path::PathBuf, InMemDicomObject) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.dcm");
    std::fs::write(&path, &p.bytes).unwrap();
    let file = OpenFileOptions::new().open_file(&path).unwrap();
    assert_eq!(file.meta().transfer_syntax(), crate::sop::EXPLICIT_VR_LE);
    assert_eq!(
        file.meta().media_storage_sop_instance_uid(),
        p.sop_instance_uid
    );
    let obj = file.into_inner();
    (dir, path, obj)
}

fn item(o: &InMemDicomObject, tag: Tag) -> &InMemDicomObject {
    crate::instance::first_item(o, tag).unwrap_or_else(|| panic!("{tag} has no item"))
}

fn code_value(o: &InMemDicomObject) -> String {
    text(item(o, tags::CONCEPT_NAME_CODE_SEQUENCE), tags::CODE_VALUE).unwrap()
}

/// The SR content item under `o` whose concept name has `code`.
fn child<'a>(o: &'a InMemDicomObject, code: &str) -> &'a InMemDicomObject {
    o.get(tags::CONTENT_SEQUENCE)
        .and_then(|e| e.items())
        .and_then(|items| items.iter().find(|i| code_value(i) == code))
        .unwrap_or_else(|| panic!("no content item {code}"))
}

#[test]
fn seg_reads_back_as_the_mask_on_the_source_positions() {
    // 5 x 7 = 35 pixels a frame: frames start mid-byte.
    let src = source(5, 7, 4);
    let m = mask(&src, &[1, 3]);
    let seg = segmentation(&src, &m, &algo(), &ctx("job-1")).unwrap();
    assert_eq!(seg.sop_class_uid, crate::sop::SEGMENTATION_STORAGE);
    let (_dir, path, obj) = parse(&seg);
    let read = crate::seg::read(&path).unwrap();
    assert_eq!((read.rows, read.columns), (5, 7));
    assert_eq!(read.segmentation_type, "BINARY");
    assert_eq!(read.liver_segment(), Some(1));
    assert_eq!(read.segments[0].label, "Liver");
    // Only the slices holding liver, each on its slice's own position.
    assert_eq!(read.frames.len(), 2);
    for (frame, s) in read.frames.iter().zip([1, 3]) {
        assert_eq!(frame.position, src.images[s].position);
        assert_eq!(frame.orientation, src.orientation);
        assert_eq!(frame.pixel_spacing, src.pixel_spacing);
        assert_eq!(frame.segment, 1);
        assert_eq!(frame.pixels[..], m[s * 35..(s + 1) * 35]);
    }
    // The made Frame of Reference, as frame_of_reference() reports it.
    let (for_uid, repaired) = frame_of_reference(&src, &ctx("job-1"));
    assert!(repaired);
    assert_eq!(
        read.frame_of_reference_uid.as_deref(),
        Some(for_uid.as_str())
    );
    // Each frame references its source slice.
    let frames = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .unwrap()
        .items()
        .unwrap();
    for (fg, s) in frames.iter().zip([1, 3]) {
        let source = item(
            item(fg, tags::DERIVATION_IMAGE_SEQUENCE),
            tags::SOURCE_IMAGE_SEQUENCE,
        );
        assert_eq!(
            text(source, tags::REFERENCED_SOP_INSTANCE_UID).unwrap(),
            src.images[s].sop_instance_uid
        );
    }
    assert_eq!(text(&obj, tags::NUMBER_OF_FRAMES).as_deref(), Some("2"));
    assert_eq!(text(&obj, tags::SERIES_NUMBER).as_deref(), Some("9901"));
    assert_eq!(text(&obj, tags::CONTENT_DATE).as_deref(), Some("20240229"));
    assert_eq!(text(&obj, tags::CONTENT_TIME).as_deref(), Some("235959"));
    let referenced = item(&obj, tags::REFERENCED_SERIES_SEQUENCE);
    assert_eq!(
        referenced
            .get(tags::REFERENCED_INSTANCE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn seg_packs_one_bit_pixels_across_frame_boundaries() {
    let src = source(3, 3, 3); // 9 bits a frame
    let m = mask(&src, &[0, 1, 2]);
    let seg = segmentation(&src, &m, &algo(), &ctx("job-1")).unwrap();
    let (_dir, _path, obj) = parse(&seg);
    let pixels = obj.get(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    // 27 bits: 4 bytes, padded to an even length.
    assert_eq!(pixels.len(), 4);
    for (i, &v) in m.iter().enumerate() {
        assert_eq!((pixels[i / 8] >> (i % 8)) & 1, v, "bit {i}");
    }
    assert_eq!(pixels[3] >> 3, 0, "padding bits are zero");
}

#[test]
fn same_inputs_give_the_same_bytes_and_another_seed_other_uids() {
    let src = source(5, 7, 4);
    let m = mask(&src, &[2]);
    let a = segmentation(&src, &m, &algo(), &ctx("job-1")).unwrap();
    let b = segmentation(&src, &m, &algo(), &ctx("job-1")).unwrap();
    assert_eq!(a, b);
    let c = segmentation(&src, &m, &algo(), &ctx("job-2")).unwrap();
    assert_ne!(a.sop_instance_uid, c.sop_instance_uid);
    assert_ne!(a.series_instance_uid, c.series_instance_uid);
    let stl = binary_stl(1);
    let s1 = encapsulated_stl(&src, &stl, "Liver surface", &ctx("job-1")).unwrap();
    let s2 = encapsulated_stl(&src, &stl, "Liver surface", &ctx("job-1")).unwrap();
    assert_eq!(s1, s2);
    let r1 = volume_report(&src, &a, 1, 1500.25, &algo(), &ctx("job-1")).unwrap();
    let r2 = volume_report(&src, &b, 1, 1500.25, &algo(), &ctx("job-1")).unwrap();
    assert_eq!(r1, r2);
    let all = [&a, &s1, &r1];
    for (i, x) in all.iter().enumerate() {
        for y in &all[i + 1..] {
            assert_ne!(x.sop_instance_uid, y.sop_instance_uid);
            assert_ne!(x.series_instance_uid, y.series_instance_uid);
        }
    }
}

#[test]
fn uids_are_sha256_of_seed_and_kind_under_2_25() {
    // python: int.from_bytes(sha256(b"job-1/seg-instance").digest()[:16], "big")
    assert_eq!(
        ctx("job-1").uid("seg-instance"),
        "2.25.292025506612314900597696780569843641586"
    );
    let long = ctx(&"x".repeat(500));
    for kind in ["seg-instance", "seg-series", "frame-of-reference", ""] {
        let uid = long.uid(kind);
        assert!(crate::uid::is_valid(&uid) && uid.len() <= 64, "{uid}");
    }
    assert_ne!(ctx("a").uid("b"), ctx("a").uid("c"));
}

#[test]
fn seg_refuses_bad_inputs() {
    let src = source(5, 7, 4);
    let good = mask(&src, &[1]);
    let c = ctx("job-1");
    let err = |src: &Source, m: &[u8], a: &Algorithm| segmentation(src, m, a, &c).unwrap_err();
    assert!(matches!(
        err(&src, &good[1..], &algo()),
        DerivedError::MaskLength {
            expected: 140,
            actual: 139,
            ..
        }
    ));
    assert!(matches!(
        err(&src, &[0; 140], &algo()),
        DerivedError::EmptyMask
    ));
    for label in ["", "Liver\\Spleen", &"L".repeat(65), "Liver\n"] {
        let a = Algorithm {
            segment_label: label.into(),
            ..algo()
        };
        assert!(matches!(
            err(&src, &good, &a),
            DerivedError::InvalidText {
                attribute: "SegmentLabel",
                ..
            }
        ));
    }
    let a = Algorithm {
        kind: Code::new("SCT", "10200004", ""),
        ..algo()
    };
    assert!(matches!(
        err(&src, &good, &a),
        DerivedError::InvalidText { .. }
    ));
    let mut bad = src.clone();
    bad.images[2].sop_instance_uid = "1.2.x".into();
    assert!(matches!(
        err(&bad, &good, &algo()),
        DerivedError::InvalidUid {
            attribute: "ReferencedSOPInstanceUID",
            ..
        }
    ));
    let mut bad = src.clone();
    bad.images[0].position[1] = f64::NAN;
    assert!(matches!(
        err(&bad, &good, &algo()),
        DerivedError::NotFinite { .. }
    ));
    let mut bad = src.clone();
    bad.images.clear();
    assert!(matches!(err(&bad, &[], &algo()), DerivedError::NoImages));
    let mut bad = src.clone();
    bad.rows = 0;
    assert!(matches!(
        err(&bad, &[], &algo()),
        DerivedError::InvalidSource(_)
    ));
}

#[test]
fn context_is_copied_without_padding_and_type_2_attributes_are_kept_empty() {
    let src = source(5, 7, 2);
    let seg = segmentation(&src, &mask(&src, &[0]), &algo(), &ctx("job-1")).unwrap();
    let (_dir, path, obj) = parse(&seg);
    let raw = std::fs::read(&path).unwrap();
    // PatientSex "F" padded with a space, as CS requires, not a NUL.
    let sex = raw
        .windows(8)
        .position(|w| w == b"\x10\x00\x40\x00CS\x02\x00")
        .unwrap();
    assert_eq!(&raw[sex + 8..sex + 10], b"F ");
    assert_eq!(text(&obj, tags::PATIENT_NAME).as_deref(), Some("Doe^Jane"));
    assert_eq!(text(&obj, tags::PATIENT_AGE).as_deref(), Some("045Y"));
    for tag in [
        tags::PATIENT_ID,
        tags::PATIENT_BIRTH_DATE,
        tags::ACCESSION_NUMBER,
        tags::STUDY_ID,
        tags::STUDY_TIME,
        tags::REFERRING_PHYSICIAN_NAME,
    ] {
        let e = obj.get(tag).unwrap_or_else(|| panic!("{tag} is missing"));
        assert!(e.is_empty(), "{tag} has a value");
    }
    assert_eq!(text(&obj, tags::MODALITY).as_deref(), Some("SEG"));
    assert!(obj.get(tags::SPECIFIC_CHARACTER_SET).is_none());

    // Non-ASCII names are declared and written as UTF-8.
    let mut src = source(5, 7, 2);
    src.context = copy_context(&header("Müller^Jürgen"));
    let seg = segmentation(&src, &mask(&src, &[0]), &algo(), &ctx("job-1")).unwrap();
    let (_dir, _path, obj) = parse(&seg);
    assert_eq!(
        text(&obj, tags::SPECIFIC_CHARACTER_SET).as_deref(),
        Some("ISO_IR 192")
    );
    assert_eq!(
        text(&obj, tags::PATIENT_NAME).as_deref(),
        Some("Müller^Jürgen")
    );
}

#[test]
fn the_sources_frame_of_reference_is_kept_with_its_indicator() {
    let mut src = source(5, 7, 2);
    src.frame_of_reference_uid = Some("1.2.3.9".into());
    src.position_reference_indicator = "XY".into();
    assert_eq!(
        frame_of_reference(&src, &ctx("job-1")),
        ("1.2.3.9".to_string(), false)
    );
    let seg = segmentation(&src, &mask(&src, &[0]), &algo(), &ctx("job-1")).unwrap();
    let stl = encapsulated_stl(&src, &binary_stl(2), "Liver surface", &ctx("job-1")).unwrap();
    for p in [&seg, &stl] {
        let (_dir, _path, obj) = parse(p);
        assert_eq!(
            text(&obj, tags::FRAME_OF_REFERENCE_UID).as_deref(),
            Some("1.2.3.9")
        );
        assert_eq!(
            text(&obj, tags::POSITION_REFERENCE_INDICATOR).as_deref(),
            Some("XY")
        );
    }
    // Repaired: the made UID, and nothing known about its reference point.
    src.frame_of_reference_uid = None;
    let (_dir, _path, obj) =
        parse(&segmentation(&src, &mask(&src, &[0]), &algo(), &ctx("job-1")).unwrap());
    assert_eq!(
        text(&obj, tags::FRAME_OF_REFERENCE_UID),
        Some(ctx("job-1").uid("frame-of-reference"))
    );
    assert!(
        obj.get(tags::POSITION_REFERENCE_INDICATOR)
            .unwrap()
            .is_empty()
    );
}

/// A binary STL of `n` degenerate facets.
fn binary_stl(n: u32) -> Vec<u8> {
    let mut out = vec![b' '; 80];
    out.extend_from_slice(&n.to_le_bytes());
    out.extend(std::iter::repeat_n(0u8, 50 * n as usize));
    out
}

#[test]
fn stl_document_holds_the_file_and_references_the_jobs_seg() {
    let src = source(5, 7, 2);
    let c = ctx("job-1");
    let seg = segmentation(&src, &mask(&src, &[0]), &algo(), &c).unwrap();
    // An ASCII STL of odd length: padded, its own length stated.
    let ascii = b"solid liver\nendsolid liver\n".to_vec();
    assert_eq!(ascii.len() % 2, 1);
    let stl = encapsulated_stl(&src, &ascii, "Liver surface", &c).unwrap();
    assert_eq!(stl.sop_class_uid, crate::sop::ENCAPSULATED_STL_STORAGE);
    let (_dir, _path, obj) = parse(&stl);
    let doc = obj
        .get(tags::ENCAPSULATED_DOCUMENT)
        .unwrap()
        .to_bytes()
        .unwrap();
    assert_eq!(doc.len(), ascii.len() + 1);
    assert_eq!(doc[..ascii.len()], ascii[..]);
    assert_eq!(
        obj.get(tags::ENCAPSULATED_DOCUMENT_LENGTH)
            .unwrap()
            .to_int::<u32>()
            .unwrap() as usize,
        ascii.len()
    );
    assert_eq!(text(&obj, tags::MODALITY).as_deref(), Some("M3D"));
    assert_eq!(
        text(&obj, tags::MIME_TYPE_OF_ENCAPSULATED_DOCUMENT).as_deref(),
        Some("model/stl")
    );
    let source = item(&obj, tags::SOURCE_INSTANCE_SEQUENCE);
    assert_eq!(
        text(source, tags::REFERENCED_SOP_INSTANCE_UID),
        Some(seg.sop_instance_uid.clone())
    );
    let series = item(&obj, tags::REFERENCED_SERIES_SEQUENCE);
    assert_eq!(
        text(series, tags::SERIES_INSTANCE_UID),
        Some(seg.series_instance_uid.clone())
    );
    let (_d, seg_path, _) = parse(&seg);
    assert_eq!(
        text(&obj, tags::FRAME_OF_REFERENCE_UID),
        crate::seg::read(&seg_path).unwrap().frame_of_reference_uid
    );

    for bad in [Vec::new(), binary_stl(0), binary_stl(3)[..200].to_vec()] {
        assert!(matches!(
            encapsulated_stl(&src, &bad, "Liver surface", &c),
            Err(DerivedError::InvalidStl(_))
        ));
    }
    assert!(matches!(
        encapsulated_stl(&src, &binary_stl(1), "", &c),
        Err(DerivedError::InvalidText { .. })
    ));
}

#[test]
fn volume_report_states_the_volume_and_references_the_segment() {
    let src = source(5, 7, 3);
    let c = ctx("job-1");
    let seg = segmentation(&src, &mask(&src, &[1]), &algo(), &c).unwrap();
    let sr = volume_report(&src, &seg, 1, 1523.456, &algo(), &c).unwrap();
    assert_eq!(sr.sop_class_uid, crate::sop::COMPREHENSIVE_SR_STORAGE);
    let (_dir, _path, root) = parse(&sr);
    assert_eq!(code_value(&root), "126000");
    assert_eq!(
        text(
            item(&root, tags::CONTENT_TEMPLATE_SEQUENCE),
            tags::TEMPLATE_IDENTIFIER
        )
        .as_deref(),
        Some("1500")
    );
    assert_eq!(
        text(&root, tags::COMPLETION_FLAG).as_deref(),
        Some("COMPLETE")
    );
    let group = child(child(&root, "126010"), "125007");
    let num = child(group, "118565006");
    let value = item(num, tags::MEASURED_VALUE_SEQUENCE);
    assert_eq!(
        text(value, tags::NUMERIC_VALUE).as_deref(),
        Some("1523.456")
    );
    assert_eq!(
        value
            .get(tags::FLOATING_POINT_VALUE)
            .unwrap()
            .to_float64()
            .unwrap(),
        1523.456
    );
    assert_eq!(
        text(
            item(value, tags::MEASUREMENT_UNITS_CODE_SEQUENCE),
            tags::CODE_VALUE
        )
        .as_deref(),
        Some("ml")
    );
    let segment = item(child(group, "121191"), tags::REFERENCED_SOP_SEQUENCE);
    assert_eq!(
        text(segment, tags::REFERENCED_SOP_INSTANCE_UID),
        Some(seg.sop_instance_uid.clone())
    );
    assert_eq!(
        segment
            .get(tags::REFERENCED_SEGMENT_NUMBER)
            .unwrap()
            .to_int::<u16>()
            .unwrap(),
        1
    );
    assert_eq!(
        text(child(group, "121232"), tags::UID),
        Some(src.series_instance_uid.clone())
    );
    // The SEG's segment and the group share a tracking UID.
    let (_d, _p, seg_obj) = parse(&seg);
    assert_eq!(
        text(item(&seg_obj, tags::SEGMENT_SEQUENCE), tags::TRACKING_UID),
        text(child(group, "112040"), tags::UID)
    );

    let err =
        |seg: &Produced, n: u16, ml: f64| volume_report(&src, seg, n, ml, &algo(), &c).unwrap_err();
    let stl = encapsulated_stl(&src, &binary_stl(1), "Liver surface", &c).unwrap();
    assert!(matches!(
        err(&stl, 1, 1.0),
        DerivedError::NotASegmentation { .. }
    ));
    assert!(matches!(err(&seg, 0, 1.0), DerivedError::SegmentNumber));
    for ml in [f64::NAN, -1.0, f64::INFINITY] {
        assert!(matches!(err(&seg, 1, ml), DerivedError::InvalidVolume(_)));
    }
}

#[cfg(feature = "pixeldata")]
mod from_volume {
    use super::*;
    use crate::volume::Volume;
    use dicom_object::meta::FileMetaTableBuilder;

    fn volume() -> Volume {
        Volume {
            dims: [2, 5, 7],
            spacing: [2.5, 0.8, 0.7],
            origin: [0.0, 0.0, 10.0],
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            sop_instance_uids: vec!["1.2.3.4.1".into(), "1.2.3.4.2".into()],
            sop_class_uids: vec![crate::sop::CT_IMAGE_STORAGE.into(); 2],
            positions: vec![[0.0, 0.0, 10.0], [0.0, 0.0, 12.5]],
            hu: vec![0.0; 70],
        }
    }

    fn header_file(dir: &std::path::Path, sop_instance_uid: &str) -> std::path::PathBuf {
        let mut o = header("Doe^Jane");
        let mut put =
            |t: Tag, vr: VR, v: &str| o.put(DataElement::new(t, vr, PrimitiveValue::from(v)));
        put(tags::SOP_CLASS_UID, VR::UI, crate::sop::CT_IMAGE_STORAGE);
        put(tags::SOP_INSTANCE_UID, VR::UI, sop_instance_uid);
        put(tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.4");
        put(tags::SLICE_THICKNESS, VR::DS, "3");
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(crate::sop::CT_IMAGE_STORAGE)
            .media_storage_sop_instance_uid(sop_instance_uid)
            .transfer_syntax(crate::sop::EXPLICIT_VR_LE)
            .build()
            .unwrap();
        let path = dir.join(sop_instance_uid);
        o.with_exact_meta(meta).write_to_file(&path).unwrap();
        path
    }

    #[test]
    fn describes_the_volume_with_the_headers_context() {
        let dir = tempfile::tempdir().unwrap();
        let src = Source::from_volume(&volume(), &header_file(dir.path(), "1.2.3.4.2")).unwrap();
        assert_eq!(src.series_instance_uid, "1.2.3.4");
        assert_eq!(src.study_instance_uid, "1.2.3");
        assert_eq!(src.frame_of_reference_uid, None);
        assert_eq!((src.rows, src.columns), (5, 7));
        assert_eq!(src.pixel_spacing, [0.8, 0.7]);
        assert_eq!(src.slice_thickness, Some(3.0));
        assert_eq!(src.spacing_between_slices, 2.5);
        assert_eq!(src.images.len(), 2);
        assert_eq!(src.images[1].position, [0.0, 0.0, 12.5]);
        assert_eq!(src.images[1].sop_instance_uid, "1.2.3.4.2");
        assert!(src.context.get(tags::PATIENT_ID).unwrap().is_empty());
        assert!(src.context.get(tags::MODALITY).is_none());
    }

    #[test]
    fn refuses_a_header_from_elsewhere_and_an_inconsistent_volume() {
        let dir = tempfile::tempdir().unwrap();
        let other = header_file(dir.path(), "1.2.3.4.9");
        assert!(matches!(
            Source::from_volume(&volume(), &other),
            Err(DerivedError::HeaderNotInVolume { .. })
        ));
        let mut v = volume();
        v.positions.pop();
        let own = header_file(dir.path(), "1.2.3.4.1");
        assert!(matches!(
            Source::from_volume(&v, &own),
            Err(DerivedError::InvalidSource(_))
        ));
        assert!(matches!(
            Source::from_volume(&volume(), &dir.path().join("missing")),
            Err(DerivedError::OpenHeader { .. })
        ));
    }
}
