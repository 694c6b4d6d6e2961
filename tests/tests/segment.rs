//! `liverseg segment` and `liverseg eval` as a user runs them, on real CT:
//! accuracy floors, transfer syntaxes, storage order, NIfTI input, DICOM SEG
//! truth, and clean failures on bad input.

use liverseg_tests::cli::{eval, liverseg, ok, segment};
use liverseg_tests::python::{python, testkit};
use liverseg_tests::{program, test_data};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Regression floors from leave-one-patient-out cross-validation: each is
/// measured with the fold model that never saw the patient
/// (`models/folds/`), a little below what that fold scored (see the model
/// card in README). The shipped model trained on these patients; scoring it
/// on them would only measure memory.
const IRCADB_01_MIN_DICE: f64 = IRCADB_01_FOLD_FLOOR.0;
const IRCADB_01_MAX_HD95_MM: f64 = IRCADB_01_FOLD_FLOOR.1;
const LITS_117_MIN_DICE: f64 = LITS_117_FOLD_FLOOR.0;
/// (min Dice, max HD95 mm, min share of every expert tumour's voxels inside
/// the predicted liver).
const IRCADB_01_FOLD_FLOOR: (f64, f64, f64) = (0.94, 12.5, 0.78);
const LITS_117_FOLD_FLOOR: (f64, f64, f64) = (0.93, 9.5, 0.25);

/// The fold model trained without `patient`.
fn fold_model(patient: &str) -> PathBuf {
    liverseg_tests::python::models_dir().join(format!("folds/liver-unet-without-{patient}.onnx"))
}

/// `liverseg segment INPUT --model MODEL --out OUT`; returns the summary.
fn segment_with(input: &Path, model: &Path, out: &Path) -> serde_json::Value {
    ok(&liverseg(&[
        "segment".as_ref(),
        input.as_os_str(),
        "--model".as_ref(),
        model.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]));
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

/// Share of the truth's voxels inside the prediction, from `eval`'s Dice
/// and volumes: |P and T| = Dice (|P| + |T|) / 2.
fn inside(pred: &Path, truth: &Path) -> (f64, f64) {
    let r = eval(pred, truth);
    let (d, p, t) = (
        r["dice"].as_f64().unwrap(),
        r["pred_volume_ml"].as_f64().unwrap(),
        r["truth_volume_ml"].as_f64().unwrap(),
    );
    (d * (p + t) / 2.0 / t, t)
}

fn ircadb(data: &Path) -> (PathBuf, PathBuf) {
    let d = data.join("dicom/ircadb_01");
    (d.join("PATIENT_DICOM"), d.join("MASKS_DICOM/liver"))
}

/// The original series' result, computed once per test process.
fn baseline(data: &Path) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        segment(&ircadb(data).0, dir.path());
        dir
    });
    dir.path().join("mask.nii.gz")
}

#[test]
fn ircadb_series_reaches_its_floor() {
    let Some(data) = test_data() else { return };
    let (ct, truth) = ircadb(&data);
    let dir = tempfile::tempdir().unwrap();
    let summary = segment_with(&ct, &fold_model("ircadb_01"), dir.path());
    assert_eq!(summary["slices"], 129);
    assert!(summary["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["model"]["name"], "liverseg-liver-unet");
    let r = eval(&dir.path().join("mask.nii.gz"), &truth);
    let dice = r["dice"].as_f64().unwrap();
    let hd95 = r["hd95_mm"].as_f64().unwrap();
    eprintln!("IRCADb 01: Dice {dice:.4}, HD95 {hd95:.2} mm, {r}");
    assert!(
        dice >= IRCADB_01_MIN_DICE,
        "Dice {dice} below {IRCADB_01_MIN_DICE}"
    );
    assert!(
        hd95 <= IRCADB_01_MAX_HD95_MM,
        "HD95 {hd95} mm above {IRCADB_01_MAX_HD95_MM}"
    );
    // The summary's volume is the mask's.
    let ml = summary["liver_volume_ml"].as_f64().unwrap();
    assert!((ml - r["pred_volume_ml"].as_f64().unwrap()).abs() < 1e-6);
    // Every expert tumour lies inside the liver (the liver label holds its
    // tumours), each as its own mask.
    if let Some(py) = python() {
        let tumours = dir.path().join("tumours");
        let lesions = data.join("dicom/ircadb_01/lesions.npz");
        let out = testkit(
            &py,
            &[
                "tumour-masks".as_ref(),
                lesions.as_os_str(),
                truth.as_os_str(),
                tumours.as_os_str(),
            ],
        );
        let listing: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(listing.len(), 7, "IRCADb 1 has 7 tumours: {listing:?}");
        for t in &listing {
            let (share, ml) = inside(
                &dir.path().join("mask.nii.gz"),
                Path::new(t["dir"].as_str().unwrap()),
            );
            eprintln!(
                "IRCADb 01 tumour of {ml:.1} ml: {:.1} % inside",
                share * 100.0
            );
            assert!(
                share >= IRCADB_01_FOLD_FLOOR.2,
                "{ml:.1} ml tumour: {share:.3} inside, below {}",
                IRCADB_01_FOLD_FLOOR.2
            );
        }
        std::fs::remove_dir_all(&tumours).unwrap();
    }
    // The coarse first pass skips slices far from the liver, and changes nothing.
    assert!(summary["slices_run"].as_u64().unwrap() < 129, "{summary}");
    let every = dir.path().join("every");
    ok(&liverseg(&[
        "segment".as_ref(),
        ct.as_os_str(),
        "--model".as_ref(),
        fold_model("ircadb_01").as_os_str(),
        "--every-slice".as_ref(),
        "--out".as_ref(),
        every.as_os_str(),
    ]));
    let same = eval(&every.join("mask.nii.gz"), &dir.path().join("mask.nii.gz"));
    assert!(same["dice"].as_f64().unwrap() >= 0.999, "{same}");
    std::fs::remove_dir_all(&every).unwrap();
    // The SEG carries the same mask as the NIfTI file.
    let from_seg = eval(&dir.path().join("seg.dcm"), &truth);
    assert_eq!(from_seg["dice"], r["dice"], "{from_seg}");
    // Nothing left behind but the results.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "liver.glb",
            "liver.stl",
            "mask.nii.gz",
            "seg.dcm",
            "sr.dcm",
            "stl.dcm",
            "summary.json"
        ]
    );
}

#[test]
fn compressed_copies_give_the_same_mask() {
    let Some(data) = test_data() else { return };
    let Some(py) = python() else { return };
    let Some(dcmcjpls) = program("dcmcjpls") else {
        return;
    };
    let (ct, _) = ircadb(&data);
    let dir = tempfile::tempdir().unwrap();
    let j2k = dir.path().join("j2k");
    testkit(&py, &["j2k".as_ref(), ct.as_os_str(), j2k.as_os_str()]);
    let jls = dir.path().join("jls");
    std::fs::create_dir_all(&jls).unwrap();
    for entry in std::fs::read_dir(&ct).unwrap() {
        let p = entry.unwrap().path();
        let status = Command::new(&dcmcjpls)
            .arg(&p)
            .arg(jls.join(p.file_name().unwrap()))
            .status()
            .unwrap();
        assert!(status.success(), "dcmcjpls {}", p.display());
    }
    let base = baseline(&data);
    for (name, input) in [("JPEG 2000", &j2k), ("JPEG-LS", &jls)] {
        let out = dir.path().join(format!("out-{name}"));
        segment(input, &out);
        let r = eval(&out.join("mask.nii.gz"), &base);
        assert_eq!(r["dice"], 1.0, "{name}: {r}");
    }
}

#[test]
fn storage_order_and_layout_do_not_change_the_mask() {
    let Some(data) = test_data() else { return };
    let Some(py) = python() else { return };
    let (ct, truth) = ircadb(&data);
    let dir = tempfile::tempdir().unwrap();
    let base = baseline(&data);
    for (name, flags) in [
        ("shuffled", vec!["--shuffle"]),
        (
            "head-to-feet, rows flipped",
            vec!["--reverse", "--flip-rows", "--shuffle"],
        ),
    ] {
        let copy = dir.path().join(name);
        let mut args: Vec<&OsStr> = vec!["restore".as_ref(), ct.as_os_str(), copy.as_os_str()];
        args.extend(flags.iter().map(OsStr::new));
        testkit(&py, &args);
        let out = dir.path().join(format!("out-{name}"));
        segment(&copy, &out);
        // Different voxel order on disk, same voxels in the patient.
        let r = eval(&out.join("mask.nii.gz"), &base);
        assert_eq!(r["dice"], 1.0, "{name}: {r}");
        let t = eval(&out.join("mask.nii.gz"), &truth);
        let b = eval(&base, &truth);
        assert_eq!(t["dice"], b["dice"], "{name}");
    }
}

#[test]
fn lits_volume_from_pypi_reaches_its_floor() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = std::env::var_os("LIVERSEG_PIP_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.path().join("pip"));
    let lits = dir.path().join("lits");
    testkit(
        &py,
        &[
            "lits".as_ref(),
            lits.as_os_str(),
            "--cache".as_ref(),
            cache.as_os_str(),
        ],
    );
    let out = dir.path().join("out");
    let summary = segment_with(&lits.join("ct.nii.gz"), &fold_model("lits_117_ds128"), &out);
    assert_eq!(summary["slices"], 128);
    // A 128^3 crop around the liver: the liver runs past every side of it.
    assert_eq!(summary["coverage"]["complete"], false, "{summary}");
    let r = eval(&out.join("mask.nii.gz"), &lits.join("liver.nii.gz"));
    let dice = r["dice"].as_f64().unwrap();
    eprintln!("LiTS 117: {r}");
    assert!(
        dice >= LITS_117_MIN_DICE,
        "Dice {dice} below {LITS_117_MIN_DICE}"
    );
    assert!(
        r["hd95_mm"].as_f64().unwrap() <= LITS_117_FOLD_FLOOR.1,
        "{r}"
    );
    let mut tumours: Vec<PathBuf> = std::fs::read_dir(&lits)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("tumour_")
        })
        .collect();
    tumours.sort();
    assert!(tumours.len() >= 5, "{tumours:?}");
    for t in &tumours {
        let (share, ml) = inside(&out.join("mask.nii.gz"), t);
        eprintln!(
            "LiTS 117 tumour of {ml:.1} ml: {:.1} % inside",
            share * 100.0
        );
        assert!(
            share >= LITS_117_FOLD_FLOOR.2,
            "{}: {ml:.1} ml tumour, {share:.3} inside",
            t.display()
        );
    }
}

#[test]
fn seg_truth_reads_like_the_mask_folder() {
    let Some(data) = test_data() else { return };
    let Some(py) = python() else { return };
    let (ct, truth) = ircadb(&data);
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("truth-seg.dcm");
    testkit(
        &py,
        &[
            "seg".as_ref(),
            ct.as_os_str(),
            truth.as_os_str(),
            seg.as_os_str(),
        ],
    );
    let r = eval(&seg, &truth);
    assert_eq!(r["dice"], 1.0, "{r}");
    assert_eq!(r["hd95_mm"], 0.0, "{r}");
    // And a prediction against the SEG scores as against the folder.
    let base = baseline(&data);
    assert_eq!(eval(&base, &seg)["dice"], eval(&base, &truth)["dice"]);
}

/// Copies `n` IRCADb slices into `dir`.
fn some_slices(data: &Path, dir: &Path, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (40..40 + n)
        .map(|i| {
            let dst = dir.join(format!("image_{i}"));
            std::fs::copy(ircadb(data).0.join(format!("image_{i}")), &dst).unwrap();
            dst
        })
        .collect()
}

fn rewrite(path: &Path, edit: impl FnOnce(&mut dicom_object::DefaultDicomObject)) {
    let mut obj = dicom_object::open_file(path).unwrap();
    edit(&mut obj);
    obj.write_to_file(path).unwrap();
}

#[test]
fn bad_input_fails_cleanly_and_writes_nothing() {
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::tags;
    let Some(data) = test_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cases: Vec<(&str, PathBuf, String)> = Vec::new();

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    cases.push(("empty folder", empty, "no files".into()));

    let mixed = dir.path().join("mixed");
    some_slices(&data, &mixed, 3);
    liverseg_tests::series::write_ct_series(
        &mixed.join("other"),
        3,
        32,
        liverseg_dicom::sop::EXPLICIT_VR_LE,
        Default::default(),
    );
    cases.push(("two series", mixed, "more than one series".into()));

    let mr = dir.path().join("mr");
    let files = some_slices(&data, &mr, 3);
    for f in &files {
        rewrite(f, |o| {
            o.put(DataElement::new(
                tags::SOP_CLASS_UID,
                VR::UI,
                "1.2.840.10008.5.1.4.1.1.4",
            ));
            o.put(DataElement::new(tags::MODALITY, VR::CS, "MR"));
        });
    }
    cases.push(("non-CT", mr, "not a CT image".into()));

    let nopixels = dir.path().join("nopixels");
    let files = some_slices(&data, &nopixels, 3);
    rewrite(&files[1], |o| {
        o.remove_element(tags::PIXEL_DATA);
    });
    cases.push((
        "missing pixel data",
        nopixels,
        format!("{}: has no pixel data", files[1].display()),
    ));

    let corrupt = dir.path().join("corrupt");
    let files = some_slices(&data, &corrupt, 3);
    let bytes = std::fs::read(&files[2]).unwrap();
    std::fs::write(&files[2], &bytes[..bytes.len() / 3]).unwrap();
    cases.push(("truncated file", corrupt, files[2].display().to_string()));

    let gap = dir.path().join("gap");
    let files = some_slices(&data, &gap, 6);
    std::fs::remove_file(&files[3]).unwrap();
    cases.push(("gap", gap, "gap in the series".into()));

    let garbage = dir.path().join("garbage");
    some_slices(&data, &garbage, 2);
    std::fs::write(garbage.join("notes.txt"), b"not DICOM at all").unwrap();
    cases.push((
        "not DICOM",
        garbage.clone(),
        garbage.join("notes.txt").display().to_string(),
    ));

    // A transfer syntax no codec here decodes (HTJ2K): header and data set
    // bytes as they are, relabelled.
    let htj2k = dir.path().join("htj2k");
    let files = some_slices(&data, &htj2k, 3);
    let bytes = std::fs::read(&files[0]).unwrap();
    let offset = liverseg_dicom::instance::data_set_offset(&bytes).unwrap();
    let id = liverseg_dicom::instance::read_header(&files[0])
        .unwrap()
        .identity;
    let mut relabelled = liverseg_dicom::instance::part10_header(
        &id.sop_class_uid,
        &id.sop_instance_uid,
        "1.2.840.10008.1.2.4.201",
        "TEST",
    )
    .unwrap();
    relabelled.extend_from_slice(&bytes[offset..]);
    std::fs::write(&files[0], relabelled).unwrap();
    cases.push((
        "unsupported transfer syntax",
        htj2k,
        files[0].display().to_string(),
    ));

    let nifti = dir.path().join("broken.nii.gz");
    std::fs::write(&nifti, b"\x1f\x8b not really gzip").unwrap();
    cases.push(("broken NIfTI", nifti.clone(), nifti.display().to_string()));

    for (name, input, expected) in cases {
        let out = dir.path().join(format!("out-{name}"));
        let run = liverseg(&[
            "segment".as_ref(),
            input.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{name}: succeeded");
        assert!(
            stderr.contains(&expected),
            "{name}: stderr lacks {expected:?}:\n{stderr}"
        );
        let left = std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "{name}: files left in {}", out.display());
    }
}
