//! The free-space watermark (`storage.min_free_bytes`): below it new
//! associations and uploads are refused, so a full disk never turns into
//! half-written instances or a metadata store that cannot commit.

use liverseg_core::Config;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "only {free} bytes free in the data directory, below storage.min_free_bytes ({min}); refusing new data"
)]
pub struct LowDisk {
    pub free: u64,
    pub min: u64,
}

/// Bytes available to this process on the file system holding `dir`.
pub fn available(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// `Err` when the data directory's free space is below the watermark. A
/// file system that cannot be asked is not held against the data: the
/// write itself reports a real failure.
pub async fn check(config: &Config) -> Result<(), LowDisk> {
    let min = config.storage.min_free_bytes;
    if min == 0 {
        return Ok(());
    }
    let dir = config.storage.data_dir.clone();
    // statvfs can block on network file systems: off the runtime.
    let free = tokio::task::spawn_blocking(move || available(&dir))
        .await
        .ok()
        .and_then(Result::ok);
    match free {
        Some(free) if free < min => Err(LowDisk { free, min }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_directory_has_a_size() {
        let dir = tempfile::tempdir().unwrap();
        assert!(available(dir.path()).unwrap() > 0);
    }
}
