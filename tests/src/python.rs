//! The Python test helpers (`tests/python/testkit.py`): ONNX Runtime, pydicom,
//! highdicom and nibabel, run as real processes. `LIVERSEG_TEST_PYTHON` names
//! the interpreter (`.ci/run` makes a virtual environment from
//! `tests/python/requirements.txt`); without it the tests that need it skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The interpreter, when one with the helpers' packages is configured.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("LIVERSEG_TEST_PYTHON") {
        Some(p) if Path::new(&p).is_file() => Some(PathBuf::from(p)),
        _ => {
            if std::env::var_os("LIVERSEG_REQUIRE_PEERS").is_some() {
                panic!(
                    "LIVERSEG_TEST_PYTHON is not an interpreter but LIVERSEG_REQUIRE_PEERS is set"
                );
            }
            eprintln!("skipping: LIVERSEG_TEST_PYTHON is not set (bash .ci/run sets it)");
            None
        }
    }
}

pub fn testkit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/testkit.py")
}

/// Runs `testkit.py ARGS`; panics with its output when it fails.
pub fn testkit(python: &Path, args: &[&std::ffi::OsStr]) -> Output {
    let out = Command::new(python)
        .arg(testkit_path())
        .args(args)
        .output()
        .expect("run testkit.py");
    assert!(
        out.status.success(),
        "testkit.py {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The repository's `models/` folder.
pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}
