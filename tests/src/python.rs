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

/// The IRCADb series, the built-in model and its input window: the fixture
/// of the parity test and the inference benchmark. IRCADb is stored in the
/// canonical layout already, so the window applies to its voxels as they are.
pub fn ircadb_model_inputs(
    data: &Path,
) -> (
    liverseg_dicom::volume::Volume,
    liverseg_inference::Model,
    liverseg_inference::preprocess::Window,
) {
    let series = data.join("dicom/ircadb_01/PATIENT_DICOM");
    let volume = liverseg_dicom::volume::load_dir(&series, true).expect("load the IRCADb series");
    let model = liverseg_inference::Model::builtin().expect("built-in model");
    let window = liverseg_inference::preprocess::Window::new(
        &model.manifest.input,
        &volume.hu,
        volume.dims,
        volume.spacing,
    );
    (volume, model, window)
}
