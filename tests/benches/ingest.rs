//! Ingest benchmark: the same series, sent by the same dcmtk `storescu`, to
//! `liverseg serve` and to dcmtk `storescp` (both writing to disk on this
//! machine). Prints instances/s and MB/s for each and the ratio.
//!
//!     LIVERSEG_TEST_DATA=../shared/data cargo bench -p liverseg-tests --bench ingest
//!
//! liverseg does more per instance than storescp (fsync of file and
//! directory, a metadata transaction with `synchronous=FULL`), which is
//! what a C-STORE success means here.

use liverseg_tests::service::Service;
use liverseg_tests::{free_port, program, test_data, wait_until};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;

fn send(port: u16, called: &str, dir: &Path) -> f64 {
    let start = Instant::now();
    let out =
        liverseg_tests::dcmtk::storescu(port, called, "BENCH", &[dir], &[]).expect("storescu");
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    secs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let Some(data) = test_data() else { return };
    let (Some(_), Some(storescp)) = (program("storescu"), program("storescp")) else {
        return;
    };
    let series = data.join("dicom/ircadb_01/PATIENT_DICOM");
    let files = liverseg_dicom::scu::collect_files(&series).unwrap();
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    let n = files.len() as f64;

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..ROUNDS {
        // A fresh service each round: a resend would only hit the duplicate path.
        let tmp = tempfile::tempdir().unwrap();
        let svc = Service::start(tmp.path(), &[("LIVERSEG__LOG__LEVEL", "warn")]);
        ours.push(send(svc.dicom_port, "LIVERSEG", &series));
        drop(svc);

        let tmp = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut scp = Command::new(&storescp)
            .args(["-aet", "STORESCP", "-od"])
            .arg(tmp.path())
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start storescp");
        assert!(wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }));
        theirs.push(send(port, "STORESCP", &series));
        let _ = scp.kill();
        let _ = scp.wait();
    }
    let (a, b) = (median(ours), median(theirs));
    let mb = bytes as f64 / 1e6;
    println!(
        "series: {} instances, {:.1} MB, median of {ROUNDS} rounds",
        files.len(),
        mb
    );
    println!(
        "liverseg serve : {:7.1} instances/s  {:6.1} MB/s  ({a:.2} s)",
        n / a,
        mb / a
    );
    println!(
        "dcmtk storescp : {:7.1} instances/s  {:6.1} MB/s  ({b:.2} s)",
        n / b,
        mb / b
    );
    println!("ratio liverseg/storescp (throughput): {:.2}x", b / a);
}
