//! One-shot `liverseg` commands (no service): `segment` and `eval`.

use crate::service::binary;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `liverseg ARGS` and returns what it did, success or not.
pub fn liverseg(args: &[&OsStr]) -> Output {
    Command::new(binary())
        .args(args)
        .output()
        .expect("run liverseg")
}

/// Asserts that the command succeeded; returns its standard output.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "liverseg failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `liverseg segment INPUT --out OUT`; returns `OUT/summary.json`.
pub fn segment(input: &Path, out: &Path) -> serde_json::Value {
    ok(&liverseg(&[
        "segment".as_ref(),
        input.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]));
    let summary = std::fs::read_to_string(out.join("summary.json")).expect("summary.json");
    serde_json::from_str(&summary).expect("summary is JSON")
}

/// `liverseg eval --json --pred PRED --truth TRUTH`.
pub fn eval(pred: &Path, truth: &Path) -> serde_json::Value {
    let out = ok(&liverseg(&[
        "eval".as_ref(),
        "--json".as_ref(),
        "--pred".as_ref(),
        pred.as_os_str(),
        "--truth".as_ref(),
        truth.as_os_str(),
    ]));
    serde_json::from_str(&out).expect("eval --json prints JSON")
}
