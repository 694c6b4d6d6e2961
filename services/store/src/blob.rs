//! Filesystem blob store for DICOM Part 10 files.
//!
//! Keys are relative paths made of `[A-Za-z0-9._-]` segments (UIDs qualify),
//! so nothing received from the network can escape the root. Writes are
//! atomic: a temporary file in the same filesystem, fsync, rename, fsync of
//! the directory; a reader never sees a half-written file, and a write that
//! returned survives a crash. All methods block: call them from
//! `spawn_blocking`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid blob key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("blob store {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl BlobError {
    /// True when the failure is a full disk or quota: the DICOM layer answers
    /// "out of resources" for these rather than "cannot understand".
    pub fn is_out_of_space(&self) -> bool {
        match self {
            BlobError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            ),
            BlobError::InvalidKey { .. } => false,
        }
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BlobError + 'a {
    move |source| BlobError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// Opens (creating) the store under `root`; temporary files live in
    /// `root/.tmp`. Leftovers older than an hour are removed here: they come
    /// from writes that were interrupted and never acknowledged. Younger ones
    /// may belong to another process sharing the directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        let tmp = root.join(".tmp");
        fs::create_dir_all(&tmp).map_err(io_err("create", &tmp))?;
        if let Ok(entries) = fs::read_dir(&tmp) {
            let stale = |e: &fs::DirEntry| {
                e.metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 3600)
            };
            for entry in entries.flatten().filter(stale) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(FsBlobStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A new temporary file on the same filesystem as the blobs (so that the
    /// final rename is atomic).
    pub fn temp_file(&self) -> Result<(File, PathBuf), BlobError> {
        let dir = self.root.join(".tmp");
        let tmp = tempfile::Builder::new()
            .prefix("incoming-")
            .tempfile_in(&dir)
            .map_err(io_err("create temporary file in", &dir))?;
        // Keep the file past the handle's drop; commit() or discard() ends it.
        let (file, path) = tmp.keep().map_err(|e| BlobError::Io {
            op: "keep temporary file",
            path: dir.clone(),
            source: e.error,
        })?;
        Ok((file, path))
    }

    /// Absolute path of a key, after validating it.
    pub fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    pub fn exists(&self, key: &str) -> Result<bool, BlobError> {
        Ok(self.path(key)?.is_file())
    }

    /// Makes a fully written temporary file the blob `key`: fsync the file,
    /// rename it over any previous blob, fsync the directory.
    pub fn commit(&self, tmp_path: &Path, key: &str) -> Result<(), BlobError> {
        let dest = self.path(key)?;
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        File::open(tmp_path)
            .and_then(|f| f.sync_all())
            .map_err(io_err("fsync", tmp_path))?;
        fs::rename(tmp_path, &dest).map_err(io_err("rename into", &dest))?;
        sync_dir(&dir)
    }

    /// Writes `bytes` as blob `key` atomically.
    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError> {
        validate_key(key)?;
        let (mut file, tmp_path) = self.temp_file()?;
        let written = file.write_all(bytes).map_err(io_err("write", &tmp_path));
        drop(file);
        if let Err(e) = written {
            discard(&tmp_path);
            return Err(e);
        }
        self.commit(&tmp_path, key)
            .inspect_err(|_| discard(&tmp_path))
    }

    pub fn read(&self, key: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path(key)?;
        fs::read(&path).map_err(io_err("read", &path))
    }

    pub fn remove(&self, key: &str) -> Result<(), BlobError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &path)(e)),
            _ => Ok(()),
        }
    }
}

/// Removes a temporary file that will not be committed; best effort.
pub fn discard(tmp_path: &Path) {
    let _ = fs::remove_file(tmp_path);
}

fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

fn validate_key(key: &str) -> Result<(), BlobError> {
    let bad = |reason| {
        Err(BlobError::InvalidKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.is_empty() || key.len() > 512 {
        return bad("empty or longer than 512 bytes");
    }
    for seg in key.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." || seg.starts_with('.') {
            return bad("empty, dot or hidden path segment");
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return bad("characters outside [A-Za-z0-9._-]");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_read_overwrite_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        store.put("1.2.3/4.5.dcm", b"first").unwrap();
        assert_eq!(store.read("1.2.3/4.5.dcm").unwrap(), b"first");
        store.put("1.2.3/4.5.dcm", b"second").unwrap();
        assert_eq!(store.read("1.2.3/4.5.dcm").unwrap(), b"second");
        store.remove("1.2.3/4.5.dcm").unwrap();
        assert!(!store.exists("1.2.3/4.5.dcm").unwrap());
        store.remove("1.2.3/4.5.dcm").unwrap();
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path().join(".tmp")).unwrap().count(), 0);
    }

    #[test]
    fn rejects_keys_that_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        for key in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            ".tmp/x",
            "a b",
            "",
        ] {
            assert!(
                matches!(store.put(key, b"x"), Err(BlobError::InvalidKey { .. })),
                "{key:?} accepted"
            );
        }
    }

    #[test]
    fn reopening_clears_only_stale_interrupted_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        let (fresh_file, fresh) = store.temp_file().unwrap();
        let (old_file, old) = store.temp_file().unwrap();
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        old_file.set_modified(two_hours_ago).unwrap();
        drop((fresh_file, old_file));
        FsBlobStore::open(dir.path()).unwrap();
        assert!(fresh.exists(), "a write in progress elsewhere was removed");
        assert!(!old.exists(), "a stale temporary file was kept");
    }
}
