//! dcmtk command-line peers (echoscu, storescu, storescp), run as real
//! processes against loopback.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `echoscu` from `calling` to `called` at 127.0.0.1:`port`; `None` when
/// dcmtk is not installed.
pub fn echoscu(port: u16, called: &str, calling: &str) -> Option<Output> {
    let bin = crate::program("echoscu")?;
    Some(
        Command::new(bin)
            .args([
                "-aet",
                calling,
                "-aec",
                called,
                "-to",
                "10",
                "127.0.0.1",
                &port.to_string(),
            ])
            .output()
            .expect("run echoscu"),
    )
}

/// `storescu` sending every file under each path (recursively, any name),
/// proposing exactly the contexts the files need (`-R`), so data sets keep
/// their transfer syntax. Verbose, so the log names each acknowledged file.
pub fn storescu(
    port: u16,
    called: &str,
    calling: &str,
    paths: &[&Path],
    extra: &[&str],
) -> Option<Output> {
    let bin = crate::program("storescu")?;
    Some(
        Command::new(bin)
            .args([
                "-v", "-aet", calling, "-aec", called, "+sd", "+r", "-R", "-to", "30",
            ])
            .args(extra)
            .arg("127.0.0.1")
            .arg(port.to_string())
            .args(paths)
            .output()
            .expect("run storescu"),
    )
}

/// Files that `storescu -v` reports as acknowledged with success: each
/// "Sending file: X" followed by "Received Store Response (Success)".
pub fn acknowledged_files(storescu_log: &str) -> Vec<String> {
    let mut current: Option<String> = None;
    let mut out = Vec::new();
    for line in storescu_log.lines() {
        if let Some(rest) = line.split("Sending file: ").nth(1) {
            current = Some(rest.trim().to_string());
        } else if line.contains("Received Store Response")
            && line.contains("Success")
            && let Some(f) = current.take()
        {
            out.push(f);
        }
    }
    out
}

/// Copies every DICOM file under `source` into `to` (as 0000.dcm, 0001.dcm
/// ...) and runs `dcmodify -nb ARGS` over the copies, e.g. to give them a
/// patient name or new UIDs; returns the copies. Panics when dcmtk is
/// missing or dcmodify fails.
pub fn modified_copy(source: &Path, to: &Path, args: &[String]) -> Vec<PathBuf> {
    std::fs::create_dir_all(to).unwrap();
    let mut files = Vec::new();
    for (i, f) in liverseg_dicom::scu::collect_files(source)
        .unwrap()
        .iter()
        .enumerate()
    {
        let dest = to.join(format!("{i:04}.dcm"));
        std::fs::copy(f, &dest).unwrap();
        files.push(dest);
    }
    let out = Command::new(crate::program("dcmodify").expect("dcmtk is installed"))
        .arg("-nb")
        .args(args)
        .args(&files)
        .output()
        .expect("run dcmodify");
    assert!(
        out.status.success(),
        "dcmodify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_sent_files_with_successful_responses() {
        let log = "I: Sending file: /a/1\nI: Received Store Response (Success)\n\
                   I: Sending file: /a/2\nE: Store Failed, file: /a/2\nI: Received Store Response (Out of Resources)\n\
                   I: Sending file: /a/3\n";
        assert_eq!(acknowledged_files(log), vec!["/a/1".to_string()]);
    }
}
