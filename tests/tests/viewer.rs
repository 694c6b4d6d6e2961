//! OHIF and the 3D page, served by the gateway, in headless Chromium
//! (puppeteer-core scripts in tests/browser): the study list shows the
//! processed study, the CT opens with the liver SEG loaded, a SEG exported
//! from OHIF (after an edit) is stored as version 2 with its lineage and
//! Dice (and OHIF reads it back, which it cannot do from a server that keeps
//! its export unrepaired), and the 3D page renders the liver mesh. Screenshots are kept under
//! `$CARGO_TARGET_DIR/liverseg-screenshots/` for people to look at.

use liverseg_tests::http::request;
use liverseg_tests::service::{Processed, ircadb_processed};
use liverseg_tests::{program, test_data, wait_until};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("liverseg-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What the browser tests need, or why they cannot run.
fn prerequisites() -> Result<(PathBuf, PathBuf), String> {
    let viewer = std::env::var_os("LIVERSEG_VIEWER_DIR")
        .map(PathBuf::from)
        .filter(|d| d.join("ohif/index.html").is_file())
        .ok_or("LIVERSEG_VIEWER_DIR does not hold a fetched viewer (deploy/fetch-viewer.sh)")?;
    if !Path::new("/usr/bin/chromium").is_file() {
        return Err("/usr/bin/chromium is not installed".into());
    }
    let node = program("node").ok_or("node is not installed")?;
    if !browser_dir().join("node_modules/puppeteer-core").is_dir() {
        return Err("tests/browser has no node_modules (npm ci there)".into());
    }
    Ok((viewer, node))
}

/// Runs one browser script; its single JSON line, or the failure output.
fn script(node: &Path, name: &str, args: &[&str]) -> Value {
    let out = Command::new(node)
        .arg(browser_dir().join(name))
        .args(args)
        .current_dir(browser_dir())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    assert!(
        out.status.success(),
        "{name} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}: {stdout}"))
}

#[test]
fn ohif_shows_the_seg_exports_a_correction_and_the_liver_renders_in_3d() {
    let Some(data) = test_data() else {
        eprintln!("skipped: LIVERSEG_TEST_DATA is not set");
        return;
    };
    let (viewer_dir, node) = match prerequisites() {
        Ok(p) => p,
        Err(why) if std::env::var_os("LIVERSEG_REQUIRE_PEERS").is_some() => {
            panic!("{why}, but LIVERSEG_REQUIRE_PEERS is set")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let viewer_env = viewer_dir.to_string_lossy().to_string();
    let Processed {
        svc, study, series, ..
    } = ircadb_processed(
        dir.path(),
        &data,
        &[("LIVERSEG__GATEWAY__VIEWER_DIR", &viewer_env)],
    );
    let base = format!("http://127.0.0.1:{}", svc.gateway_port);
    let viewer = format!("{base}/viewer");
    let shots = screenshots();

    // The study list, then the CT with the liver SEG loaded.
    let shot = shots.join("ohif-study.png");
    let r = script(
        &node,
        "ohif-study.mjs",
        &[
            "--viewer",
            &viewer,
            "--study",
            &study,
            "--screenshot",
            shot.to_str().unwrap(),
        ],
    );
    assert_eq!(r["study_listed"], true, "{r}");
    assert_eq!(r["seg_loaded"], true, "{r}");
    assert!(
        r["segments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "Liver"),
        "{r}"
    );
    assert!(shot.is_file());
    eprintln!("screenshot: {}", shot.display());

    // An edit exported from OHIF becomes version 2.
    let shot = shots.join("ohif-export.png");
    let r = script(
        &node,
        "ohif-export.mjs",
        &[
            "--viewer",
            &viewer,
            "--study",
            &study,
            "--screenshot",
            shot.to_str().unwrap(),
            // OHIF must read its own export back from us (repaired).
            "--require-roundtrip",
        ],
    );
    assert_eq!(r["server_roundtrip"]["ok"], true, "{r}");
    let status = r["stow"]["status"].as_u64().unwrap_or(0);
    assert_eq!(status, 200, "{r}");
    let mut versions = Vec::new();
    let stored = wait_until(Duration::from_secs(30), || {
        let reply = request(
            svc.gateway_port,
            "GET",
            &format!("/api/v1/series/{series}/versions"),
            &[],
            b"",
        );
        versions = reply.json().as_array().cloned().unwrap_or_default();
        versions.len() == 2
    });
    assert!(stored, "{versions:?}");
    let v2 = &versions[1];
    assert_eq!(v2["origin"], "correction");
    assert_eq!(v2["predecessor"], versions[0]["sop_instance_uid"]);
    let dice = v2["dice_vs_ai"].as_f64().unwrap();
    // The edit paints a new segment (about 11 000 voxels); OHIF's labelmap
    // holds one label per voxel, so what it paints over the liver leaves
    // the liver: a Dice just under 1.
    assert!(
        (0.99..=1.0).contains(&dice),
        "Dice of a liver with a small segment painted over it: {dice}"
    );
    eprintln!("OHIF export: version 2, Dice vs AI {dice:.4}");
    assert_eq!(v2["history"].as_array().unwrap().len(), 2, "{v2}");

    // The correction's mesh, then the 3D page.
    let done = wait_until(Duration::from_secs(600), || {
        svc.jobs_for(&series)
            .iter()
            .any(|j| j["kind"] == "correction" && j["state"] == "done")
    });
    assert!(done, "{:?}\n{}", svc.jobs_for(&series), svc.log_text());
    let shot = shots.join("liver3d.png");
    let r = script(
        &node,
        "liver3d.mjs",
        &[
            "--url",
            &format!("{base}/3d/{study}"),
            "--screenshot",
            shot.to_str().unwrap(),
        ],
    );
    assert_eq!(r["state"], "rendered", "{r}");
    assert!(r["non_background_pixels"].as_u64().unwrap() > 2000, "{r}");
    eprintln!("screenshot: {}", shot.display());
    let r = script(
        &node,
        "liver3d.mjs",
        &["--url", &format!("{base}/3d/1.2.3"), "--expect", "error"],
    );
    assert_eq!(r["state"], "error", "{r}");
}
