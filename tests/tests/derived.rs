//! The derived objects (SEG, Encapsulated STL, volume SR) made from the
//! IRCADb series and its expert liver mask, as others see them: dciodvfy
//! validates each against its IOD, highdicom rebuilds the mask from the SEG
//! (also for an oblique, shuffled copy of the series) and reads the report.

use liverseg_dicom::derived::{self, Algorithm, Context, Produced, Source, codes};
use liverseg_dicom::volume::{Volume, load_dir};
use liverseg_tests::python::{python, testkit};
use liverseg_tests::{program, test_data};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

fn ircadb(data: &Path) -> (PathBuf, PathBuf) {
    let d = data.join("dicom/ircadb_01");
    (d.join("PATIENT_DICOM"), d.join("MASKS_DICOM/liver"))
}

/// The CT volume and the expert mask on its slices (1 = liver), after
/// checking that the mask folder has the CT's geometry slice by slice.
fn load(ct: &Path, masks: &Path) -> (Volume, Vec<u8>) {
    let volume = load_dir(ct, true).expect("load the CT series");
    let truth = load_dir(masks, false).expect("load the mask folder");
    assert_eq!(truth.dims, volume.dims, "mask and CT grids differ");
    for (m, c) in truth.positions.iter().zip(&volume.positions) {
        for k in 0..3 {
            assert!(
                (m[k] - c[k]).abs() < 1e-4,
                "mask slice at {m:?}, CT at {c:?}"
            );
        }
    }
    let mask = truth.hu.iter().map(|&v| u8::from(v > 0.0)).collect();
    (volume, mask)
}

fn header_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.remove(0)
}

fn algorithm() -> Algorithm {
    Algorithm {
        name: "liverseg-unet".into(),
        version: "1.0.0".into(),
        family: codes::artificial_intelligence(),
        segment_label: "Liver".into(),
        category: codes::anatomical_structure(),
        kind: codes::liver(),
    }
}

fn context(seed: &str) -> Context {
    Context {
        uid_seed: seed.into(),
        created_unix_seconds: 1_735_689_600,
        software_version: "0.1.0".into(),
    }
}

/// A binary STL of a tetrahedron: 80-byte header, count, 4 facets.
fn tetrahedron_stl() -> Vec<u8> {
    let v = [
        [0.0f32, 0.0, 0.0],
        [10.0, 0.0, 0.0],
        [0.0, 10.0, 0.0],
        [0.0, 0.0, 10.0],
    ];
    let faces = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]];
    let mut out = vec![0u8; 80];
    out[..20].copy_from_slice(b"liverseg tetrahedron");
    out.extend_from_slice(&(faces.len() as u32).to_le_bytes());
    for f in faces {
        out.extend_from_slice(&[0u8; 12]); // normal: readers recompute it
        for i in f {
            for c in v[i] {
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
        out.extend_from_slice(&[0u8; 2]);
    }
    out
}

fn volume_ml(volume: &Volume, mask: &[u8]) -> f64 {
    let voxel_mm3: f64 = volume.spacing.iter().product();
    mask.iter().filter(|&&v| v != 0).count() as f64 * voxel_mm3 / 1000.0
}

struct Written {
    seg: Produced,
    dir: tempfile::TempDir,
}

fn write(dir: &Path, name: &str, p: &Produced) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, &p.bytes).unwrap();
    path
}

/// Writes the SEG of `mask` over `volume` into a fresh folder.
fn write_seg(volume: &Volume, header: &Path, mask: &[u8], seed: &str) -> Written {
    let src = Source::from_volume(volume, header).expect("describe the source");
    let seg = derived::segmentation(&src, mask, &algorithm(), &context(seed)).expect("SEG");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "seg.dcm", &seg);
    Written { seg, dir }
}

/// Runs dciodvfy on `path`: it must exit 0 and print no error. Returns
/// its warnings for the caller to print.
fn dciodvfy(dciodvfy: &Path, path: &Path) -> Vec<String> {
    let out = Command::new(dciodvfy)
        .arg(path)
        .output()
        .expect("run dciodvfy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("Error")).collect();
    assert!(
        out.status.success() && errors.is_empty(),
        "dciodvfy {} (exit {:?}):\n{text}",
        path.display(),
        out.status.code()
    );
    text.lines()
        .filter(|l| l.starts_with("Warning"))
        .map(String::from)
        .collect()
}

/// highdicom's reading of segment 1 over the given source instances, as
/// `[instance][row][column]` 0/1, and what it said about the SEG.
fn highdicom_mask(
    py: &Path,
    seg: &Path,
    uids: &[String],
    allow_missing: bool,
) -> (Vec<u8>, serde_json::Value) {
    let dir = seg.parent().unwrap();
    let list = dir.join("uids.txt");
    std::fs::write(&list, uids.join("\n")).unwrap();
    let out_path = dir.join("highdicom.u8");
    let mut args: Vec<&OsStr> = vec![
        "seg-pixels".as_ref(),
        seg.as_os_str(),
        list.as_os_str(),
        out_path.as_os_str(),
    ];
    if allow_missing {
        args.push("--allow-missing".as_ref());
    }
    let out = testkit(py, &args);
    let info: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("seg-pixels prints JSON");
    (std::fs::read(&out_path).unwrap(), info)
}

fn assert_same_mask(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "voxel counts differ");
    let (mut both, mut got_n, mut want_n, mut differ) = (0usize, 0usize, 0usize, 0usize);
    for (&g, &w) in got.iter().zip(want) {
        let (g, w) = (g != 0, w != 0);
        both += usize::from(g && w);
        got_n += usize::from(g);
        want_n += usize::from(w);
        differ += usize::from(g != w);
    }
    let dice = 2.0 * both as f64 / (got_n + want_n) as f64;
    eprintln!("highdicom mask: {got_n} voxels, truth {want_n}, Dice {dice}");
    assert!(want_n > 0);
    assert_eq!(differ, 0, "{differ} voxels differ (Dice {dice})");
}

#[test]
fn ircadb_objects_pass_dciodvfy() {
    let Some(data) = test_data() else { return };
    let Some(dciodvfy_bin) = program("dciodvfy") else {
        return;
    };
    let (ct, masks) = ircadb(&data);
    let (volume, mask) = load(&ct, &masks);
    let header = header_file(&ct);
    let src = Source::from_volume(&volume, &header).unwrap();
    // IRCADb lacks the Type 1 Frame of Reference UID: one is made.
    assert!(derived::frame_of_reference(&src, &context("ircadb")).1);
    let ctx = context("ircadb");
    let algo = algorithm();
    let seg = derived::segmentation(&src, &mask, &algo, &ctx).unwrap();
    let stl = derived::encapsulated_stl(&src, &tetrahedron_stl(), "Liver surface", &ctx).unwrap();
    let sr = derived::volume_report(&src, &seg, 1, volume_ml(&volume, &mask), &algo, &ctx).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, p) in [("seg.dcm", &seg), ("stl.dcm", &stl), ("sr.dcm", &sr)] {
        let path = write(dir.path(), name, p);
        let warnings = dciodvfy(&dciodvfy_bin, &path);
        eprintln!("dciodvfy {name}: {} warning(s)", warnings.len());
        for w in &warnings {
            eprintln!("  {w}");
        }
        // The source has no PatientID or StudyID (Type 2, copied empty):
        // dciodvfy only warns that a DICOMDIR would need them.
        for w in &warnings {
            assert!(
                w.contains("would be needed to build DICOMDIR"),
                "{name}: unexpected warning: {w}"
            );
        }
    }
    // Only frames with liver, each the same as the mask on its slice.
    let read = liverseg_dicom::seg::read(&dir.path().join("seg.dcm")).unwrap();
    let plane = volume.dims[1] * volume.dims[2];
    let with_liver: Vec<usize> = (0..volume.dims[0])
        .filter(|&s| mask[s * plane..(s + 1) * plane].contains(&1))
        .collect();
    assert_eq!(read.frames.len(), with_liver.len());
    for (frame, &s) in read.frames.iter().zip(&with_liver) {
        assert_eq!(frame.position, volume.positions[s]);
        assert!(frame.pixels == mask[s * plane..(s + 1) * plane]);
    }
}

#[test]
fn highdicom_rebuilds_the_ircadb_mask() {
    let Some(data) = test_data() else { return };
    let Some(py) = python() else { return };
    let (ct, masks) = ircadb(&data);
    let (volume, mask) = load(&ct, &masks);
    let w = write_seg(&volume, &header_file(&ct), &mask, "ircadb");
    let (got, info) = highdicom_mask(
        &py,
        &w.dir.path().join("seg.dcm"),
        &volume.sop_instance_uids,
        false,
    );
    eprintln!("highdicom: {info}");
    assert_eq!(info["label"], "Liver");
    assert_eq!(info["algorithm_type"], "AUTOMATIC");
    assert_eq!(info["property_type"], "10200004");
    assert_eq!(info["source_instances"], volume.dims[0]);
    assert_same_mask(&got, &mask);
    assert_eq!(
        w.seg.sop_class_uid,
        liverseg_dicom::sop::SEGMENTATION_STORAGE
    );
}

#[test]
fn highdicom_rebuilds_the_mask_of_an_oblique_shuffled_series() {
    let Some(data) = test_data() else { return };
    let Some(py) = python() else { return };
    let (ct, masks) = ircadb(&data);
    let dir = tempfile::tempdir().unwrap();
    let (ct_copy, mask_copy) = (dir.path().join("ct"), dir.path().join("mask"));
    let restore = |src: &Path, dst: &Path, centre: Option<&str>| {
        let mut args: Vec<&OsStr> = vec![
            "restore".as_ref(),
            src.as_os_str(),
            dst.as_os_str(),
            "--shuffle".as_ref(),
            "--oblique".as_ref(),
            "30".as_ref(),
        ];
        if let Some(c) = centre {
            args.extend(["--centre".as_ref(), OsStr::new(c)]);
        }
        let out = testkit(&py, &args);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["centre"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_f64().unwrap().to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    // The mask folder is turned about the CT's centre, by the same rotation.
    let centre = restore(&ct, &ct_copy, None);
    restore(&masks, &mask_copy, Some(&centre));
    let (volume, mask) = load(&ct_copy, &mask_copy);
    let normal = liverseg_dicom::series::slice_normal(&volume.orientation).unwrap();
    assert!(normal[2].abs() < 0.95, "not oblique: normal {normal:?}");
    let w = write_seg(&volume, &header_file(&ct_copy), &mask, "oblique");
    let (got, _) = highdicom_mask(
        &py,
        &w.dir.path().join("seg.dcm"),
        &volume.sop_instance_uids,
        false,
    );
    assert_same_mask(&got, &mask);
    // The original mask, slice for slice: rotation and shuffling moved nothing.
    let (_, original) = load(&ct, &masks);
    assert!(mask == original, "the oblique copy's mask differs");
}

#[test]
fn highdicom_reads_the_volume_report() {
    let Some(data) = test_data() else { return };
    let Some(py) = python() else { return };
    let (ct, masks) = ircadb(&data);
    let (volume, mask) = load(&ct, &masks);
    let src = Source::from_volume(&volume, &header_file(&ct)).unwrap();
    let (ctx, algo) = (context("ircadb"), algorithm());
    let seg = derived::segmentation(&src, &mask, &algo, &ctx).unwrap();
    let ml = volume_ml(&volume, &mask);
    let sr = derived::volume_report(&src, &seg, 1, ml, &algo, &ctx).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "sr.dcm", &sr);
    let out = testkit(&py, &["sr-read".as_ref(), path.as_os_str()]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sr-read prints JSON");
    eprintln!("highdicom: {r}");
    assert_eq!(r["template"], "1500");
    assert_eq!(r["groups"], 1);
    assert_eq!(r["completion"], "COMPLETE");
    assert_eq!(r["verification"], "UNVERIFIED");
    assert_eq!(r["finding"], "10200004");
    assert_eq!(r["tracking_identifier"], "Liver");
    assert_eq!(r["unit"][0], "ml");
    let read = r["volume"][0].as_f64().unwrap();
    assert!((read - ml).abs() < 1e-6 * ml, "volume {read}, written {ml}");
    assert!(ml > 1000.0 && ml < 3000.0, "{ml} ml is not an adult liver");
    assert_eq!(r["segment_sop_instance_uid"], seg.sop_instance_uid.as_str());
    assert_eq!(r["segment_number"], 1);
    assert_eq!(r["source_series"], src.series_instance_uid.as_str());
    assert_eq!(r["finding_category"], "91723000");
    // The group and the SEG's segment share a tracking UID.
    let seg_path = write(dir.path(), "seg.dcm", &seg);
    let seg_obj = dicom_object::open_file(&seg_path).unwrap();
    let segment = &seg_obj
        .element(dicom_dictionary_std::tags::SEGMENT_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()[0];
    let tracking = segment
        .element(dicom_dictionary_std::tags::TRACKING_UID)
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(r["tracking_uid"], tracking.trim_end_matches('\0'));
    // Evidence: the CT series with every slice, and the SEG.
    let evidence = r["evidence"].as_array().unwrap();
    assert!(evidence.iter().any(
        |e| e["series"] == src.series_instance_uid.as_str() && e["instances"] == volume.dims[0]
    ));
    assert!(
        evidence
            .iter()
            .any(|e| e["series"] == seg.series_instance_uid.as_str() && e["instances"] == 1)
    );
}

/// The objects `liverseg segment` writes (the worker's, byte for byte: the
/// same code builds them) carry exactly its mask, for the IRCADb series and
/// for an oblique copy stored under shuffled names.
#[test]
fn highdicom_rebuilds_the_mask_liverseg_segment_wrote() {
    let Some(data) = test_data() else { return };
    let Some(py) = python() else { return };
    let (ct, _) = ircadb(&data);
    let dir = tempfile::tempdir().unwrap();
    let oblique = dir.path().join("oblique");
    let out = testkit(
        &py,
        &[
            "restore".as_ref(),
            ct.as_os_str(),
            oblique.as_os_str(),
            "--shuffle".as_ref(),
            "--oblique".as_ref(),
            "20".as_ref(),
        ],
    );
    assert!(out.status.success());
    for (name, series) in [("ircadb", ct), ("oblique", oblique)] {
        let out_dir = dir.path().join(format!("out-{name}"));
        liverseg_tests::cli::segment(&series, &out_dir);
        if let Some(verifier) = program("dciodvfy") {
            for file in ["seg.dcm", "stl.dcm", "sr.dcm"] {
                // Asserts exit 0 and no error line.
                dciodvfy(&verifier, &out_dir.join(file));
            }
        }
        let volume = load_dir(&series, true).unwrap();
        let (_, mask) = liverseg_inference::nifti::read(&out_dir.join("mask.nii.gz")).unwrap();
        let mask: Vec<u8> = mask.iter().map(|&v| u8::from(v > 0.0)).collect();
        let (got, _) = highdicom_mask(
            &py,
            &out_dir.join("seg.dcm"),
            &volume.sop_instance_uids,
            true,
        );
        eprintln!("{name}:");
        assert_same_mask(&got, &mask);
    }
}
