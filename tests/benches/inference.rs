//! Inference benchmark: ms per slice for the shipped model in tract (our
//! path) and in ONNX Runtime (Python) on the same file, inputs and machine,
//! in the same run; then the whole `liverseg segment` on the IRCADb series
//! with the shipped model against the previous one (1.0.0, kept in
//! `models/previous/` as the anchor), in the same run.
//!
//!     LIVERSEG_TEST_DATA=../shared/data LIVERSEG_TEST_PYTHON=... \
//!         cargo bench -p liverseg-tests --bench inference
//!
//! `LIVERSEG_BENCH_QUICK=1` (CI, through `cargo test --bench inference`)
//! runs every step on fewer inputs, so that the benchmark cannot rot.

use liverseg_tests::python::{ircadb_model_inputs, models_dir, python, testkit};
use liverseg_tests::test_data;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let Some(data) = test_data() else { return };
    let Some(py) = python() else { return };
    let quick = std::env::var_os("LIVERSEG_BENCH_QUICK").is_some();
    let series = data.join("dicom/ircadb_01/PATIENT_DICOM");
    let (volume, model, window) = ircadb_model_inputs(&data);
    let inputs: Vec<Vec<f32>> = (0..volume.dims[0])
        .step_by(if quick { 32 } else { 4 })
        .map(|z| window.input(&volume.hu, z))
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "model {} {} ({} KiB), {} inputs of 3x{g}x{g}, {cores} cores",
        model.manifest.name,
        model.manifest.version,
        std::fs::metadata(models_dir().join("liver-unet.onnx"))
            .unwrap()
            .len()
            / 1024,
        inputs.len(),
        g = model.grid()
    );

    // tract, one slice at a time on one thread: latency.
    for x in inputs.iter().take(3) {
        model.run(x.clone()).unwrap();
    }
    let single: Vec<f64> = inputs
        .iter()
        .map(|x| {
            let t = Instant::now();
            model.run(x.clone()).unwrap();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let tract_1 = median(single);

    // tract, slices in parallel on every core (what `segment` does): throughput.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..cores {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(x) = inputs.get(i) else { break };
                        model.run(x.clone()).unwrap();
                    }
                });
            }
        });
        rounds.push(t.elapsed().as_secs_f64() * 1000.0 / inputs.len() as f64);
    }
    let tract_n = median(rounds);

    // ONNX Runtime on the same file and the same input.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.f32");
    let bytes: Vec<u8> = inputs[inputs.len() / 2]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(&input, bytes).unwrap();
    let ort = |threads: usize| -> f64 {
        let out = testkit(
            &py,
            &[
                "ort-bench".as_ref(),
                models_dir().join("liver-unet.onnx").as_os_str(),
                input.as_os_str(),
                "--threads".as_ref(),
                threads.to_string().as_ref(),
                "--iters".as_ref(),
                if quick { "3" } else { "30" }.as_ref(),
            ],
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["median_ms"].as_f64().unwrap()
    };
    let ort_1 = ort(1);
    let ort_n = ort(cores);
    println!("ms per slice                     tract     ONNX Runtime   ratio (tract / ORT)");
    println!(
        "1 thread, one slice at a time  {tract_1:8.2}   {ort_1:12.2}   {:6.2}x",
        tract_1 / ort_1
    );
    println!(
        "{cores} cores (tract: slices in parallel; ORT: intra-op threads)\n                               {tract_n:8.2}   {ort_n:12.2}   {:6.2}x",
        tract_n / ort_n
    );

    // The whole command on the 129-slice series, the shipped model and the
    // anchor interleaved so that both see the same machine.
    let anchor = models_dir().join("previous/liver-unet-1.0.0.onnx");
    let runs = if quick { 1 } else { 3 };
    let (mut shipped, mut previous) = (Vec::new(), Vec::new());
    let mut last = serde_json::Value::Null;
    for _ in 0..runs {
        for (model, walls) in [(None, &mut shipped), (Some(&anchor), &mut previous)] {
            let out = dir.path().join("out");
            let _ = std::fs::remove_dir_all(&out);
            let mut args: Vec<&std::ffi::OsStr> = vec!["segment".as_ref(), series.as_os_str()];
            if let Some(m) = model {
                args.extend(["--model".as_ref(), m.as_os_str()]);
            }
            args.extend(["--out".as_ref(), out.as_os_str()]);
            let t = Instant::now();
            liverseg_tests::cli::ok(&liverseg_tests::cli::liverseg(&args));
            walls.push(t.elapsed().as_secs_f64());
            if model.is_none() {
                last = serde_json::from_str(
                    &std::fs::read_to_string(out.join("summary.json")).unwrap(),
                )
                .unwrap();
            }
        }
    }
    let (s, p) = (median(shipped), median(previous));
    println!(
        "liverseg segment, IRCADb 01 ({} slices), median of {runs}: shipped model {s:.2} s, 1.0.0 anchor {p:.2} s ({:.2}x); last run: {}",
        last["slices"],
        s / p,
        last["timings"]
    );
}
