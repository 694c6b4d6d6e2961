//! tract (our runtime) against ONNX Runtime on the same model file and the
//! same real input: a pre-processed IRCADb slice through the liver.

use liverseg_tests::python::{ircadb_model_inputs, models_dir, python, testkit};
use liverseg_tests::test_data;

#[test]
fn tract_matches_onnx_runtime() {
    let Some(data) = test_data() else { return };
    let Some(py) = python() else { return };
    let (volume, model, window) = ircadb_model_inputs(&data);
    let dir = tempfile::tempdir().unwrap();
    for z in [20usize, 64, 100] {
        let input = window.input(&volume.hu, z);
        let ours = model.run(input.clone()).unwrap();
        let in_path = dir.path().join(format!("in{z}.f32"));
        let out_path = dir.path().join(format!("out{z}.f32"));
        let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&in_path, bytes).unwrap();
        testkit(
            &py,
            &[
                "ort-run".as_ref(),
                models_dir().join("liver-unet.onnx").as_os_str(),
                in_path.as_os_str(),
                out_path.as_os_str(),
            ],
        );
        let theirs: Vec<f32> = std::fs::read(&out_path)
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(theirs.len(), ours.len());
        let max_diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let range = theirs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        // Decisions may differ only where the logit is within the tolerance of 0.
        let flips = ours
            .iter()
            .zip(&theirs)
            .filter(|(a, b)| (**a > 0.0) != (**b > 0.0) && b.abs() > 1e-3)
            .count();
        let liver = theirs.iter().filter(|v| **v > 0.0).count();
        eprintln!(
            "slice {z}: max |tract - ORT| = {max_diff:.2e} (logits up to {range:.1}), {liver} liver pixels"
        );
        assert!(max_diff < 1e-3, "slice {z}: max difference {max_diff}");
        assert_eq!(flips, 0, "slice {z}");
    }
}
