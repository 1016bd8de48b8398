//! A directory store: each key is a file under the root. Writes go to a
//! hidden partial file in the key's own directory (same file system, so the
//! rename is atomic), are fsynced, then renamed over the key, and the
//! directory is fsynced; a [`PartialFile`] guard removes the partial file
//! when the write fails or its future is dropped. It never reads or writes
//! outside the root: keys are checked before they get here, a key whose
//! path goes through a symbolic link is refused, and the walk does not
//! follow them.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::storage::keys::PARTIAL_MARK;
use crate::storage::{Abandoned, ObjectMeta, Progress, StorageError, Written, hex};

/// Bytes read from the body per write, at most.
const CHUNK: usize = 1 << 20;

/// The read buffer a write starts with.
const FIRST_CHUNK: usize = 16 << 10;

#[derive(Clone)]
pub(super) struct DirStore {
    root: PathBuf,
    /// fsync each file and its directory before a write returns (off for
    /// files that a later run can copy again: see [`crate::storage::Store::without_fsync`]).
    durable: bool,
}

impl DirStore {
    pub fn new(root: PathBuf) -> DirStore {
        DirStore {
            root,
            durable: true,
        }
    }

    pub fn without_fsync(mut self) -> DirStore {
        self.durable = false;
        self
    }

    pub fn location(&self) -> String {
        self.root.display().to_string()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path_of(&self, key: &str) -> PathBuf {
        key.split('/')
            .fold(self.root.clone(), |path, segment| path.join(segment))
    }

    /// Refuses a key whose path below the root goes through a symbolic
    /// link (which could lead outside the root); with [`Through::File`], the
    /// file itself may not be one either (reading it would read its target;
    /// the listing does not show it). The root itself may be a link.
    async fn no_link_on_the_way(&self, key: &str, through: Through) -> Result<(), StorageError> {
        let segments: Vec<&str> = key.split('/').collect();
        let checked = match through {
            Through::Directories => segments.len() - 1,
            Through::File => segments.len(),
        };
        let mut path = self.root.clone();
        for segment in &segments[..checked] {
            path.push(segment);
            match tokio::fs::symlink_metadata(&path).await {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(StorageError::InvalidKey {
                        location: self.location(),
                        key: key.to_string(),
                        problem: format!(
                            "goes through the symbolic link `{}`, which a directory store does not follow",
                            path.display()
                        ),
                    });
                }
                Ok(_) => {}
                Err(_) => return Ok(()), // nothing further down exists yet
            }
        }
        Ok(())
    }

    fn io(&self, key: &str, action: &'static str, source: std::io::Error) -> StorageError {
        StorageError::Io {
            location: self.location(),
            key: key.to_string(),
            action,
            source,
        }
    }

    pub async fn put_stream<R: AsyncRead + Unpin + Send>(
        &self,
        key: &str,
        mut body: R,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Written, StorageError> {
        self.no_link_on_the_way(key, Through::Directories).await?;
        let path = self.path_of(key);
        let dir = path.parent().expect("a key has a file name").to_path_buf();
        let name = path
            .file_name()
            .expect("a key has a file name")
            .to_string_lossy()
            .into_owned();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| self.io(key, "creating the directory for", e))?;
        let partial = PartialFile::new(dir.join(partial_name(&name)));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial.path)
            .await
            .map_err(|e| self.io(key, "creating the partial file for", e))?;

        let mut hasher = Sha256::new();
        let mut progress = Progress::new(progress);
        let mut bytes = 0u64;
        // Starts small (many small files at once cost little) and doubles
        // while reads fill it, up to CHUNK for a large body.
        let mut buffer = vec![0u8; FIRST_CHUNK];
        loop {
            let n = body
                .read(&mut buffer)
                .await
                .map_err(|e| self.io(key, "reading the body for", e))?;
            if n == buffer.len() && buffer.len() < CHUNK {
                buffer.resize(buffer.len() * 2, 0);
            }
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            file.write_all(&buffer[..n])
                .await
                .map_err(|e| self.io(key, "writing", e))?;
            bytes += n as u64;
            progress.advance(bytes);
        }
        progress.finish(bytes);
        if self.durable {
            file.sync_all()
                .await
                .map_err(|e| self.io(key, "syncing", e))?;
        }
        drop(file);
        tokio::fs::rename(&partial.path, &path)
            .await
            .map_err(|e| self.io(key, "renaming the partial file into", e))?;
        partial.disarm();
        if self.durable {
            sync_dir(&dir)
                .await
                .map_err(|e| self.io(key, "syncing the directory of", e))?;
        }
        Ok(Written {
            key: key.to_string(),
            bytes,
            sha256: hex(&hasher.finalize()),
            parts: 1,
        })
    }

    pub async fn get(&self, key: &str) -> Result<Box<dyn AsyncRead + Unpin + Send>, StorageError> {
        self.no_link_on_the_way(key, Through::File).await?;
        let path = self.path_of(key);
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(self.not_found(key)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(self.not_found(key)),
            Err(e) => return Err(self.io(key, "reading", e)),
        }
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => self.not_found(key),
                _ => self.io(key, "opening", e),
            })?;
        Ok(Box::new(file))
    }

    fn not_found(&self, key: &str) -> StorageError {
        StorageError::NotFound {
            location: self.location(),
            key: key.to_string(),
        }
    }

    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        self.no_link_on_the_way(key, Through::File).await?;
        match tokio::fs::metadata(self.path_of(key)).await {
            Ok(meta) if meta.is_file() => Ok(Some(meta_of(key.to_string(), &meta))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(key, "reading the metadata of", e)),
        }
    }

    pub fn list(&self, prefix: &str) -> DirListing {
        DirListing {
            store: self.clone(),
            prefix: prefix.to_string(),
            stack: Vec::new(),
            started: false,
            failed: false,
        }
    }

    /// Removes the file, then the directories the removal left empty (up
    /// to, never including, the root).
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.no_link_on_the_way(key, Through::Directories).await?;
        let path = self.path_of(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io(key, "deleting", e)),
        }
        let mut dir = path.parent().map(Path::to_path_buf);
        while let Some(current) = dir.filter(|d| d != &self.root && d.starts_with(&self.root)) {
            if tokio::fs::remove_dir(&current).await.is_err() {
                break; // not empty (or not ours to remove): stop climbing
            }
            dir = current.parent().map(Path::to_path_buf);
        }
        Ok(())
    }

    pub async fn abandoned(&self, prefix: &str) -> Result<Vec<Abandoned>, StorageError> {
        let files = self.walk(prefix).await?;
        Ok(files
            .into_iter()
            .filter_map(|file| {
                let key = file.partial_of.clone()?;
                key.starts_with(prefix).then(|| Abandoned {
                    key,
                    detail: file.relative,
                    started: file.meta.modified().ok().map(Into::into),
                })
            })
            .collect())
    }

    /// Removes the partial file `abandoned.detail` names, after checking it
    /// is one (a partial file of `abandoned.key`, inside the root).
    pub async fn abort(&self, abandoned: &Abandoned) -> Result<(), StorageError> {
        let relative = &abandoned.detail;
        let (dir, name) = relative.rsplit_once('/').unwrap_or(("", relative));
        let (key_dir, key_name) = abandoned
            .key
            .rsplit_once('/')
            .unwrap_or(("", &abandoned.key));
        let is_partial_of_key = dir == key_dir && key_of_partial(name).as_deref() == Some(key_name);
        if !is_partial_of_key {
            return Err(StorageError::InvalidKey {
                location: self.location(),
                key: relative.clone(),
                problem: format!("is not a partial file of `{}`", abandoned.key),
            });
        }
        match tokio::fs::remove_file(self.path_of(relative.as_str())).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(&abandoned.key, "removing the partial file of", e)),
        }
    }

    /// Every regular file under the directory `prefix` reaches into, with
    /// its key relative to the root; symbolic links are not followed. A
    /// root that does not exist yet holds nothing.
    async fn walk(&self, prefix: &str) -> Result<Vec<WalkedFile>, StorageError> {
        let root = self.root.clone();
        let start = prefix
            .rsplit_once('/')
            .map_or("", |(dir, _)| dir)
            .to_string();
        let location = self.location();
        tokio::task::spawn_blocking(move || walk(&root, &start))
            .await
            .expect("the directory walk does not panic")
            .map_err(|(relative, source)| StorageError::Io {
                location,
                key: relative,
                action: "listing",
                source,
            })
    }
}

/// How much of a key's path [`DirStore::no_link_on_the_way`] checks.
#[derive(Clone, Copy)]
enum Through {
    /// Its directories: a write or delete replaces or removes a link itself.
    Directories,
    /// Its directories and the file.
    File,
}

/// A file found by the walk.
struct WalkedFile {
    /// Relative to the root, `/`-separated.
    relative: String,
    /// The key a partial file was writing, if this is one.
    partial_of: Option<String>,
    meta: std::fs::Metadata,
}

fn walk(root: &Path, start: &str) -> Result<Vec<WalkedFile>, (String, std::io::Error)> {
    let mut found = Vec::new();
    let mut pending = vec![start.to_string()];
    while let Some(relative_dir) = pending.pop() {
        let dir = if relative_dir.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&relative_dir)
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Nothing there yet, or a file where the prefix expects a directory.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                continue;
            }
            Err(e) => return Err((relative_dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| (relative_dir.clone(), e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue; // not UTF-8: cannot be a key
            };
            let relative = if relative_dir.is_empty() {
                name.clone()
            } else {
                format!("{relative_dir}/{name}")
            };
            let file_type = entry.file_type().map_err(|e| (relative.clone(), e))?;
            if file_type.is_dir() {
                pending.push(relative);
            } else if file_type.is_file() {
                let meta = entry.metadata().map_err(|e| (relative.clone(), e))?;
                let partial_of =
                    key_of_partial(&name).map(|key_name| match relative_dir.as_str() {
                        "" => key_name,
                        dir => format!("{dir}/{key_name}"),
                    });
                found.push(WalkedFile {
                    relative,
                    partial_of,
                    meta,
                });
            }
        }
    }
    Ok(found)
}

/// The objects under a prefix, in byte order of key, found by a walk that
/// reads one directory at a time: each directory's entries are sorted with
/// a subdirectory compared as `name/` (so `a-b` comes before `a/…`, as in
/// the order of whole keys) and the walk descends depth first. Memory is
/// one sorted directory per level, never the whole tree.
pub(super) struct DirListing {
    store: DirStore,
    prefix: String,
    /// The directories being walked, deepest last: entries left, reversed.
    stack: Vec<Vec<Entry>>,
    started: bool,
    failed: bool,
}

/// One entry of a directory: its key (a directory's with a trailing `/`).
struct Entry {
    key: String,
    dir: bool,
}

impl DirListing {
    pub async fn next(&mut self) -> Option<Result<ObjectMeta, StorageError>> {
        if self.failed {
            return None;
        }
        if !self.started {
            self.started = true;
            let start = self
                .prefix
                .rsplit_once('/')
                .map_or(String::new(), |(dir, _)| format!("{dir}/"));
            if let Err(e) = self.descend(start).await {
                return Some(Err(e));
            }
        }
        loop {
            let frame = self.stack.last_mut()?;
            let Some(entry) = frame.pop() else {
                self.stack.pop();
                continue;
            };
            // Outside the prefix: a directory may still lead into it.
            let inside = entry.key.starts_with(&self.prefix);
            let leads_in = entry.dir && self.prefix.starts_with(&entry.key);
            if !inside && !leads_in {
                continue;
            }
            if entry.dir {
                if let Err(e) = self.descend(entry.key).await {
                    return Some(Err(e));
                }
                continue;
            }
            let path = self.store.path_of(&entry.key);
            match tokio::fs::symlink_metadata(&path).await {
                Ok(meta) if meta.is_file() => return Some(Ok(meta_of(entry.key, &meta))),
                // Gone since the directory was read, or not a file now.
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(self.store.io(&entry.key, "listing", e)));
                }
            }
        }
    }

    /// Reads the directory `dir` (`""` for the root, else ending in `/`)
    /// and pushes its entries, sorted.
    async fn descend(&mut self, dir: String) -> Result<(), StorageError> {
        let path = match dir.strip_suffix('/') {
            Some(relative) => self.store.path_of(relative),
            None => self.store.root.clone(),
        };
        let read = tokio::task::spawn_blocking(move || read_sorted(&path, &dir))
            .await
            .expect("reading a directory does not panic");
        match read {
            Ok(entries) => {
                self.stack.push(entries);
                Ok(())
            }
            Err((relative, e)) => {
                self.failed = true;
                Err(self.store.io(&relative, "listing", e))
            }
        }
    }
}

/// The entries of one directory whose keys start with `dir`, reversed
/// (the first key last, for popping): files and subdirectories, no
/// partial files, no symbolic links, no names that are not UTF-8 or
/// cannot be keys. A directory that does not exist holds nothing.
fn read_sorted(path: &Path, dir: &str) -> Result<Vec<Entry>, (String, std::io::Error)> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err((dir.to_string(), e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| (dir.to_string(), e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with(PARTIAL_MARK) || super::keys::check(&name).is_err() {
            continue;
        }
        let file_type = entry.file_type().map_err(|e| (format!("{dir}{name}"), e))?;
        if file_type.is_dir() {
            found.push(Entry {
                key: format!("{dir}{name}/"),
                dir: true,
            });
        } else if file_type.is_file() {
            found.push(Entry {
                key: format!("{dir}{name}"),
                dir: false,
            });
        }
    }
    found.sort_by(|a, b| b.key.as_bytes().cmp(a.key.as_bytes()));
    Ok(found)
}

fn meta_of(key: String, meta: &std::fs::Metadata) -> ObjectMeta {
    ObjectMeta {
        key,
        size: meta.len(),
        last_modified: meta.modified().ok().map(|t: SystemTime| t.into()),
        etag: None,
    }
}

/// `.flightpath-partial-<16 hex>-<name>`: hidden, unique per write, and
/// naming the file it will become.
fn partial_name(name: &str) -> String {
    format!("{PARTIAL_MARK}{:016x}-{name}", rand::random::<u64>())
}

/// The file name a partial file will become, if `name` is a partial file's.
fn key_of_partial(name: &str) -> Option<String> {
    let rest = name.strip_prefix(PARTIAL_MARK)?;
    let (id, key_name) = rest.split_at_checked(16)?;
    let key_name = key_name.strip_prefix('-')?;
    (id.chars().all(|c| c.is_ascii_hexdigit()) && !key_name.is_empty())
        .then(|| key_name.to_string())
}

/// Removes the partial file when dropped, unless the write completed: an
/// error (`?`) or a dropped future (Ctrl-C) leaves nothing behind. The
/// removal is synchronous, one unlink.
struct PartialFile {
    path: PathBuf,
    armed: bool,
}

impl PartialFile {
    fn new(path: PathBuf) -> PartialFile {
        PartialFile { path, armed: true }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// fsync of a directory, so a rename in it survives a crash.
async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
        .await
        .expect("fsync does not panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names_round_trip_to_their_file_name() {
        let partial = partial_name("2026-01-01.dump");
        assert!(partial.starts_with(".flightpath-partial-"));
        assert_eq!(key_of_partial(&partial).as_deref(), Some("2026-01-01.dump"));
        assert_eq!(key_of_partial(".flightpath-partial-xyz-a"), None);
        assert_eq!(key_of_partial("plain.dump"), None);
    }
}
