//! The model's honesty about its own output, through `liverseg segment` on
//! real CT: a head CT is "no liver found" (a report, no SEG, no mesh), a
//! series that cuts the liver reports a partial liver with the cut side in
//! the summary, the SEG and the SR (read back by highdicom, checked by
//! dciodvfy), and the whole series is complete.

use liverseg_tests::cli::{liverseg, ok, segment};
use liverseg_tests::python::{python, testkit};
use liverseg_tests::{program, test_data};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The head phantom as the scanner exported it (a DIRFILE beside the slices).
fn head_phantom(data: &Path) -> PathBuf {
    data.join("dicom/head_phantom")
}

/// Copies the IRCADb slices whose position along the slice normal is in
/// the upper (`upper`) or lower half of the series into `dir`.
fn half_of_ircadb(data: &Path, dir: &Path, upper: bool) {
    let src = data.join("dicom/ircadb_01/PATIENT_DICOM");
    let mut files: Vec<(f64, PathBuf)> = liverseg_dicom::scu::collect_files(&src)
        .unwrap()
        .into_iter()
        .map(|p| {
            let h = liverseg_dicom::instance::read_header(&p).unwrap();
            (h.meta.image_position.unwrap()[2], p)
        })
        .collect();
    files.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = files.len() / 2;
    let half = if upper { &files[n..] } else { &files[..n] };
    std::fs::create_dir_all(dir).unwrap();
    for (_, p) in half {
        std::fs::copy(p, dir.join(p.file_name().unwrap())).unwrap();
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// dciodvfy must accept `path` (exit 0, no "Error" line).
fn dciodvfy_accepts(path: &Path) {
    let Some(bin) = program("dciodvfy") else {
        return;
    };
    let out = Command::new(bin).arg(path).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !text.lines().any(|l| l.starts_with("Error")),
        "dciodvfy {}:\n{text}",
        path.display()
    );
}

/// highdicom's reading of a report (see tests/python/testkit.py sr-read).
fn sr_read(path: &Path) -> Option<serde_json::Value> {
    let py = python()?;
    let out = testkit(&py, &["sr-read".as_ref(), path.as_os_str()]);
    Some(serde_json::from_slice(&out.stdout).expect("sr-read prints JSON"))
}

#[test]
fn a_head_ct_is_no_liver_found_with_a_report_and_no_seg() {
    let Some(data) = test_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run = liverseg(&[
        "segment".as_ref(),
        head_phantom(&data).as_os_str(),
        "--out".as_ref(),
        dir.path().as_os_str(),
    ]);
    let stdout = ok(&run);
    let stderr = String::from_utf8_lossy(&run.stderr);
    // The directory record beside the slices is set aside and named.
    assert!(
        stderr.contains("DIRFILE") && stderr.contains("directory record"),
        "{stderr}"
    );
    assert!(stdout.contains("no liver found"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    eprintln!("head phantom: {summary}");
    assert_eq!(summary["liver_found"], false, "{summary}");
    assert!(summary["liver_volume_ml"].is_null(), "{summary}");
    assert_eq!(summary["flags"], serde_json::json!(["no_liver"]));
    assert!(summary["no_liver"]["reason"].is_string(), "{summary}");
    // No SEG and no mesh: only the mask (empty), the summary and the report.
    assert_eq!(names(dir.path()), ["mask.nii.gz", "sr.dcm", "summary.json"]);
    let sr = dir.path().join("sr.dcm");
    dciodvfy_accepts(&sr);
    if let Some(r) = sr_read(&sr) {
        eprintln!("highdicom: {r}");
        assert_eq!(r["template"], "1500");
        assert_eq!(r["groups"], 0, "{r}");
        let e = r["evaluations"].as_array().unwrap();
        assert!(
            e.iter()
                .any(|i| i["name"] == "121071" && i["value"] == "no-liver"),
            "{r}"
        );
        let reason = summary["no_liver"]["reason"].as_str().unwrap();
        assert!(
            e.iter().any(|i| i["name"] == "121106"
                && i["text"].as_str().is_some_and(|t| t.starts_with(reason))),
            "{r}"
        );
        assert!(
            r["series_description"]
                .as_str()
                .unwrap()
                .contains("not found"),
            "{r}"
        );
    }
}

#[test]
fn series_that_cut_the_liver_report_a_partial_liver_on_the_cut_side() {
    let Some(data) = test_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The whole series holds the whole liver.
    let full = dir.path().join("full-out");
    let s = segment(&data.join("dicom/ircadb_01/PATIENT_DICOM"), &full);
    assert_eq!(s["liver_found"], true, "{s}");
    assert_eq!(
        s["coverage"],
        serde_json::json!({"complete": true, "cut": []})
    );
    assert!(
        !s["flags"]
            .as_array()
            .unwrap()
            .contains(&"partial_coverage".into())
    );
    let whole_ml = s["liver_volume_ml"].as_f64().unwrap();

    for (upper, cut, not_cut) in [
        (true, "inferior", "superior"),
        (false, "superior", "inferior"),
    ] {
        let input = dir.path().join(if upper { "upper" } else { "lower" });
        half_of_ircadb(&data, &input, upper);
        let out = dir.path().join(format!("{}-out", input.display()));
        let s = segment(&input, &out);
        eprintln!("{}: {s}", input.display());
        assert_eq!(s["liver_found"], true, "{s}");
        assert_eq!(s["coverage"]["complete"], false, "{s}");
        let sides = s["coverage"]["cut"].as_array().unwrap();
        assert!(sides.contains(&cut.into()), "{s}");
        assert!(!sides.contains(&not_cut.into()), "{s}");
        assert!(
            s["flags"]
                .as_array()
                .unwrap()
                .contains(&"partial_coverage".into()),
            "{s}"
        );
        let ml = s["liver_volume_ml"].as_f64().unwrap();
        assert!(ml > 0.0 && ml < whole_ml, "{ml} of {whole_ml}");

        // The SEG's series description says so before anything else.
        let seg = dicom_object::open_file(out.join("seg.dcm")).unwrap();
        let description = seg
            .element(dicom_dictionary_std::tags::SERIES_DESCRIPTION)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            description.contains("partial") && description.contains(cut),
            "{description}"
        );
        // The SR: the volume is a minimum, and the cut side is named.
        let sr = out.join("sr.dcm");
        dciodvfy_accepts(&sr);
        if let Some(r) = sr_read(&sr) {
            eprintln!("highdicom: {r}");
            assert_eq!(r["derivation"], serde_json::json!(["255605001"]), "{r}");
            let q = r["qualitative"].as_array().unwrap();
            assert!(
                q.iter().any(|e| e["name"] == "coverage"
                    && e["value"] == format!("partial-{cut}").as_str()
                    && e["meaning"].as_str().unwrap().contains(cut)),
                "{r}"
            );
            let read = r["volume"][0].as_f64().unwrap();
            assert!((read - ml).abs() < 1e-6 * ml, "{read} vs {ml}");
        }
    }
    // The whole series' SR has no qualifier.
    if let Some(r) = sr_read(&full.join("sr.dcm")) {
        assert_eq!(r["derivation"], serde_json::json!([null]), "{r}");
        let q = r["qualitative"].as_array().unwrap();
        assert!(
            !q.iter()
                .any(|e| e["name"] == "coverage" || e["name"] == "review"),
            "{r}"
        );
    }
}
