//! The hash cache of a directory side: each file's MD5 (and, for a file a
//! sync wrote, the fingerprint of the object it was written from), keyed
//! by key and valid while the file's size and mtime are unchanged. S3
//! gives an MD5 in every listing (the ETag of a single-part upload); a
//! directory would otherwise be read whole on every run.
//!
//! Kept as one JSON line per file in the run's working directory, never
//! inside the synced directory (it would be synced, listed and deleted).
//! A missing or unreadable cache is an empty one: it only costs reading.
//!
//! What a run learns of the files it writes is appended to a side file as
//! it goes, not held: nothing in the same run asks about a file it has just
//! written, so a first sync of a million files costs no memory for them.
//! `save` folds the side file in; one left by a killed run is read at the
//! next load (its lines hold their own size and mtime, so they are as good
//! as the cache's).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::storage::{ObjectMeta, StorageError, Store};

/// One line of the cache file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Line {
    #[serde(rename = "k")]
    key: String,
    #[serde(rename = "s")]
    size: u64,
    /// Nanoseconds since the epoch.
    #[serde(rename = "t")]
    modified: i64,
    #[serde(rename = "h")]
    md5: String,
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
}

/// An entry as held: about 80 bytes with its key, so a million files cost
/// some 80 MB only when both sides are directories of that size.
#[derive(Debug, Clone)]
struct Entry {
    size: u64,
    modified: i64,
    md5: [u8; 16],
    source: Option<Box<str>>,
}

#[derive(Debug)]
pub struct HashCache {
    path: PathBuf,
    entries: Mutex<HashMap<Box<str>, Entry>>,
    /// The side file of what this run wrote; `None` until the first write
    /// (or when it cannot be written: then entries are held instead).
    written: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
}

fn stamp(meta: &ObjectMeta) -> i64 {
    meta.last_modified
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or(0)
}

fn parse_md5(text: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    if text.len() != 32 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl HashCache {
    /// The cache at `path`; empty when there is none yet.
    pub fn load(path: PathBuf) -> HashCache {
        let mut entries = HashMap::new();
        // The side file of a run that never saved goes after the cache: its
        // lines are newer.
        for file in [path.clone(), side_path(&path)] {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            entries.extend(
                text.lines()
                    .filter_map(|line| serde_json::from_str::<Line>(line).ok())
                    .filter_map(|line| {
                        let entry = Entry {
                            size: line.size,
                            modified: line.modified,
                            md5: parse_md5(&line.md5)?,
                            source: line.source.map(String::into_boxed_str),
                        };
                        Some((line.key.into_boxed_str(), entry))
                    }),
            );
        }
        HashCache {
            path,
            entries: Mutex::new(entries),
            written: Mutex::new(None),
        }
    }

    fn valid(&self, meta: &ObjectMeta) -> Option<Entry> {
        let entries = self.entries.lock().unwrap();
        let entry = entries.get(meta.key.as_str())?;
        (entry.size == meta.size && entry.modified == stamp(meta)).then(|| entry.clone())
    }

    /// The file's MD5 (lowercase hex): cached, or read and remembered.
    pub async fn md5(&self, store: &Store, meta: &ObjectMeta) -> Result<String, StorageError> {
        if let Some(entry) = self.valid(meta) {
            return Ok(super::digest::hex(&entry.md5));
        }
        let mut reader = store.get(&meta.key).await?;
        let mut hasher = Md5::new();
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            let n = reader
                .read(&mut buffer)
                .await
                .map_err(|source| StorageError::Io {
                    location: store.location(),
                    key: meta.key.clone(),
                    action: "hashing",
                    source,
                })?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        let md5 = super::digest::hex(&hasher.finalize());
        self.learn(meta, md5.clone(), None);
        Ok(md5)
    }

    /// The fingerprint of the object this file was written from, while the
    /// file is unchanged.
    pub fn source_of(&self, meta: &ObjectMeta) -> Option<String> {
        self.valid(meta)
            .and_then(|entry| entry.source.map(String::from))
    }

    pub fn learn(&self, meta: &ObjectMeta, md5: String, source: Option<String>) {
        let Some(md5) = parse_md5(&md5) else {
            return;
        };
        let mut entries = self.entries.lock().unwrap();
        let source = source.map(String::into_boxed_str).or_else(|| {
            entries
                .get(meta.key.as_str())
                .filter(|e| e.size == meta.size && e.modified == stamp(meta))
                .and_then(|e| e.source.clone())
        });
        entries.insert(
            meta.key.clone().into_boxed_str(),
            Entry {
                size: meta.size,
                modified: stamp(meta),
                md5,
                source,
            },
        );
    }

    /// What a file this run has just written holds: appended to the side
    /// file rather than held (see the module's notes). A side file that
    /// cannot be written falls back to [`HashCache::learn`].
    pub fn learn_written(&self, meta: &ObjectMeta, md5: String, source: Option<String>) {
        use std::io::Write;
        let Some(digest) = parse_md5(&md5) else {
            return;
        };
        let mut entries = self.entries.lock().unwrap();
        let old = entries.remove(meta.key.as_str());
        let source = source.or_else(|| {
            old.filter(|e| e.size == meta.size && e.modified == stamp(meta))
                .and_then(|e| e.source.map(String::from))
        });
        let mut written = self.written.lock().unwrap();
        if written.is_none() {
            *written = self.open_side().ok().map(std::io::BufWriter::new);
        }
        let line = Line {
            key: meta.key.clone(),
            size: meta.size,
            modified: stamp(meta),
            md5,
            source,
        };
        let appended = written.as_mut().is_some_and(|file| {
            serde_json::to_writer(&mut *file, &line).is_ok() && file.write_all(b"\n").is_ok()
        });
        if !appended {
            *written = None;
            entries.insert(
                line.key.into_boxed_str(),
                Entry {
                    size: line.size,
                    modified: line.modified,
                    md5: digest,
                    source: line.source.map(String::into_boxed_str),
                },
            );
        }
    }

    fn open_side(&self) -> std::io::Result<std::fs::File> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // A side file left by a killed run was read at load: start anew.
        std::fs::File::create(side_path(&self.path))
    }

    pub fn forget(&self, key: &str) {
        self.entries.lock().unwrap().remove(key);
    }

    /// Writes the cache (a temporary file renamed over the old one).
    pub fn save(&self) -> std::io::Result<()> {
        use std::io::Write;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let partial = self.path.with_extension("partial");
        let mut file = std::io::BufWriter::new(std::fs::File::create(&partial)?);
        let entries = self.entries.lock().unwrap();
        let mut keys: Vec<&Box<str>> = entries.keys().collect();
        keys.sort();
        for key in keys {
            let entry = &entries[key];
            let line = Line {
                key: key.to_string(),
                size: entry.size,
                modified: entry.modified,
                md5: super::digest::hex(&entry.md5),
                source: entry.source.as_deref().map(str::to_string),
            };
            serde_json::to_writer(&mut file, &line)?;
            file.write_all(b"\n")?;
        }
        drop(entries);
        // Then what this run wrote, newer than any line above.
        let side = side_path(&self.path);
        if let Some(mut written) = self.written.lock().unwrap().take() {
            written.flush()?;
        }
        if let Ok(mut lines) = std::fs::File::open(&side) {
            std::io::copy(&mut lines, &mut file)?;
        }
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&partial, &self.path)?;
        match std::fs::remove_file(&side) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Where a cache's side file of written files is.
fn side_path(path: &std::path::Path) -> PathBuf {
    path.with_extension("written")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str, size: u64) -> ObjectMeta {
        ObjectMeta {
            key: key.into(),
            size,
            last_modified: chrono::DateTime::from_timestamp(1_700_000_000, 0),
            etag: None,
        }
    }

    const MD5: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn written_files_go_to_the_side_file_and_save_folds_them_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache").join("media");
        let cache = HashCache::load(path.clone());
        cache.learn(&meta("kept.jpg", 3), MD5.into(), None);
        cache.learn_written(&meta("new.jpg", 5), MD5.into(), Some("etag-1".into()));
        // Not held: only the side file knows the written file.
        assert!(cache.valid(&meta("new.jpg", 5)).is_none());
        assert!(side_path(&path).exists());
        cache.save().unwrap();
        assert!(!side_path(&path).exists());
        let again = HashCache::load(path);
        assert!(again.valid(&meta("kept.jpg", 3)).is_some());
        assert_eq!(
            again.source_of(&meta("new.jpg", 5)).as_deref(),
            Some("etag-1")
        );
        // Changed since (another size): not valid.
        assert!(again.valid(&meta("new.jpg", 6)).is_none());
    }

    #[test]
    fn the_side_file_of_a_run_that_never_saved_is_read_at_the_next_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("media");
        let cache = HashCache::load(path.clone());
        cache.learn_written(&meta("a.jpg", 1), MD5.into(), None);
        // Killed before `save`: the buffered lines reach the file as the
        // writer is dropped, as they would as it fills.
        drop(cache);
        let next = HashCache::load(path);
        assert!(next.valid(&meta("a.jpg", 1)).is_some());
    }
}
