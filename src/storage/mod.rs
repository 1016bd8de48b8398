//! Object stores: a local directory or an S3 bucket (AWS, MinIO, R2,
//! Bucketeer…), behind one [`Store`] that backups and the media sync share.
//!
//! What it owns: reading a store location ([`url`]), key validation, atomic
//! streamed writes (an object is never visible under its key until it is
//! complete), sorted paginated listings, and finding and removing what an
//! interrupted write left behind ([`Store::abandoned`]). What it must not do:
//! know what the objects mean (dumps, manifests, media), print, or put a
//! secret into a message — the endpoint URL carries no credentials and the
//! SDK's messages are masked.

mod dir;
mod error;
mod keys;
mod s3;
mod url;

use std::path::PathBuf;

pub use error::StorageError;
pub use s3::{MAX_PARTS, part_size};

/// A store: where objects live. Cheap to clone (the S3 client is shared).
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// The first part size of multipart uploads; [`s3::FIRST_PART`] unless a
    /// test asked for smaller parts ([`Store::with_part_size`]).
    first_part: u64,
}

#[derive(Clone)]
enum Backend {
    Dir(dir::DirStore),
    S3(s3::S3Store),
}

/// An object as a listing or [`Store::head`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Relative to the store's root/prefix, '/'-separated.
    pub key: String,
    pub size: u64,
    pub last_modified: Option<chrono::DateTime<chrono::Utc>>,
    pub etag: Option<String>,
}

/// What an object carries besides its bytes: the headers S3 keeps with it
/// and its user metadata (`x-amz-meta-*`, names lowercase, without the
/// prefix). A directory store keeps none of it: it reads back empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
}

impl Attributes {
    /// The user metadata as the SDK takes it; `None` when there is none.
    fn user_metadata(&self) -> Option<std::collections::HashMap<String, String>> {
        (!self.metadata.is_empty()).then(|| {
            self.metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }
}

/// A completed write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub key: String,
    pub bytes: u64,
    /// Lowercase hex of the SHA-256 of the bytes written.
    pub sha256: String,
    /// 1 for a single PUT or a file; the part count of a multipart upload.
    pub parts: u32,
}

/// A write that never completed (what a kill -9 leaves behind).
#[derive(Debug, Clone)]
pub struct Abandoned {
    /// The key the write was for, relative to the store's root/prefix.
    pub key: String,
    /// The S3 upload id, or the partial file's path relative to the root.
    pub detail: String,
    pub started: Option<chrono::DateTime<chrono::Utc>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Store").field(&self.location()).finish()
    }
}

impl Store {
    /// `s3://bucket[/prefix][?endpoint=URL&region=R&path_style=true]`,
    /// `file:///abs/dir`, or a directory path (relative to the current
    /// directory; created on first write). Bad URLs: a clear error naming
    /// the part.
    ///
    /// S3 credentials, region and profile come from the standard AWS chain
    /// (environment, shared config files, SSO, instance metadata); `region=`
    /// in the URL wins over the chain, and `us-east-1` is used when neither
    /// names one (what MinIO and most S3-compatible servers expect).
    pub async fn open(location: &str) -> Result<Store, StorageError> {
        let backend = match url::parse(location)? {
            url::Location::Dir(root) => Backend::Dir(dir::DirStore::new(root)),
            url::Location::S3(spec) => Backend::S3(s3::S3Store::connect(spec).await),
        };
        Ok(Store {
            backend,
            first_part: s3::FIRST_PART,
        })
    }

    /// This store with multipart uploads starting at `bytes` per part
    /// instead of 8 MiB (the schedule grows from there the same way). For
    /// tests, which need a body over several parts without writing
    /// gigabytes; S3 itself refuses parts under 5 MiB except the last.
    pub fn with_part_size(mut self, bytes: u64) -> Store {
        self.first_part = bytes.max(1);
        self
    }

    /// This store signing its S3 requests with this access key instead of
    /// the credentials of the AWS chain: for tests inside one process (the
    /// environment is shared by every test) and for embedders. A run takes
    /// its credentials from the chain. No effect on a directory store.
    pub fn with_static_credentials(
        mut self,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Store {
        if let Backend::S3(s3) = &mut self.backend {
            *s3 = s3.with_static_credentials(access_key_id, secret_access_key);
        }
        self
    }

    /// This store without an fsync per write (a directory store; no effect
    /// on S3): for copies a later run can make again, such as media, where
    /// a file torn by a crash differs in size or checksum from its source
    /// and is copied again. Writes stay atomic (a partial file renamed).
    pub fn without_fsync(mut self) -> Store {
        if let Backend::Dir(dir) = self.backend {
            self.backend = Backend::Dir(dir.without_fsync());
        }
        self
    }

    /// Printable and secret-free: the directory, or the `s3://` URL.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Dir(dir) => dir.location(),
            Backend::S3(s3) => s3.location(),
        }
    }

    /// The file that holds `key`, for a directory store (so a restore can
    /// hand `pg_restore -j` a path); `None` for S3 or an invalid key.
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        match &self.backend {
            Backend::Dir(dir) => keys::check(key).ok().map(|()| dir.path_of(key)),
            Backend::S3(_) => None,
        }
    }

    /// Streams `body` to `key`, computing sha256 as it goes; calls
    /// `progress(bytes_so_far)` now and then.
    ///
    /// Never visible under `key` (nor listed) until complete: a directory
    /// store writes a hidden partial file in the same directory, fsyncs,
    /// renames; S3 sends a body that fits in the first part (8 MiB) as one
    /// PutObject, otherwise a multipart upload whose part size grows so that
    /// 10,000 parts reach at least 500 GB ([`part_size`]); on error, and
    /// when the future is dropped (Ctrl-C), the multipart upload is aborted
    /// / the partial file removed. Memory: at most ~2 parts in flight.
    pub async fn put_stream<R: tokio::io::AsyncRead + Unpin + Send>(
        &self,
        key: &str,
        body: R,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Written, StorageError> {
        self.put_stream_with(key, body, progress, &Attributes::default())
            .await
    }

    /// [`Store::put_stream`], the object getting `attributes` (S3; a
    /// directory store has nowhere to keep them).
    pub async fn put_stream_with<R: tokio::io::AsyncRead + Unpin + Send>(
        &self,
        key: &str,
        body: R,
        progress: &(dyn Fn(u64) + Send + Sync),
        attributes: &Attributes,
    ) -> Result<Written, StorageError> {
        self.check_key(key)?;
        match &self.backend {
            Backend::Dir(dir) => dir.put_stream(key, body, progress).await,
            Backend::S3(s3) => {
                s3.put_stream(key, body, progress, self.first_part, attributes)
                    .await
            }
        }
    }

    /// Whether [`Store::copy_from`] can copy from `other` without the bytes
    /// passing through here: both S3, on one endpoint, region and
    /// credentials.
    pub fn same_service(&self, other: &Store) -> bool {
        match (&self.backend, &other.backend) {
            (Backend::S3(a), Backend::S3(b)) => a.same_service(b),
            _ => false,
        }
    }

    /// A server-side copy of `from_key` in `from` (of size `size`) to `key`
    /// here; only when [`Store::same_service`]. The copy keeps the source's
    /// attributes, or takes `replace`.
    pub async fn copy_from(
        &self,
        from: &Store,
        from_key: &str,
        key: &str,
        size: u64,
        replace: Option<&Attributes>,
    ) -> Result<(), StorageError> {
        self.check_key(key)?;
        from.check_key(from_key)?;
        match (&self.backend, &from.backend) {
            (Backend::S3(to), Backend::S3(source)) if to.same_service(source) => {
                to.copy_from(source, from_key, key, size, replace).await
            }
            _ => Err(StorageError::Unsupported {
                location: self.location(),
                what: format!("a server-side copy from {}", from.location()),
            }),
        }
    }

    /// Writes a small object (a manifest) whole; atomic like
    /// [`Store::put_stream`].
    pub async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<Written, StorageError> {
        match &self.backend {
            Backend::S3(s3) if bytes.len() as u64 <= self.first_part => {
                self.check_key(key)?;
                s3.put_bytes(key, bytes).await
            }
            _ => {
                self.put_stream(key, std::io::Cursor::new(bytes), &|_| {})
                    .await
            }
        }
    }

    /// A reader of the object's bytes; [`StorageError::NotFound`] when absent.
    pub async fn get(
        &self,
        key: &str,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Unpin + Send>, StorageError> {
        Ok(self.get_with(key).await?.0)
    }

    /// A reader of the object's bytes, and its attributes.
    pub async fn get_with(
        &self,
        key: &str,
    ) -> Result<(Box<dyn tokio::io::AsyncRead + Unpin + Send>, Attributes), StorageError> {
        self.check_key(key)?;
        match &self.backend {
            Backend::Dir(dir) => Ok((dir.get(key).await?, Attributes::default())),
            Backend::S3(s3) => s3.get(key, None).await,
        }
    }

    /// The object's first `bytes` bytes (fewer when it is shorter): a
    /// ranged GET, for telling a file's type and size from its header.
    pub async fn get_start(&self, key: &str, bytes: u64) -> Result<Vec<u8>, StorageError> {
        use tokio::io::AsyncReadExt;
        self.check_key(key)?;
        let reader = match &self.backend {
            Backend::Dir(dir) => dir.get(key).await?,
            Backend::S3(s3) => s3.get(key, Some(bytes)).await?.0,
        };
        let mut start = Vec::new();
        reader
            .take(bytes)
            .read_to_end(&mut start)
            .await
            .map_err(|source| self.io_error(key, "reading the start of", source))?;
        Ok(start)
    }

    /// The object's bytes, whole; [`StorageError::NotFound`] when absent.
    pub async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        use tokio::io::AsyncReadExt;
        let mut reader = self.get(key).await?;
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .await
            .map_err(|source| self.io_error(key, "reading the object", source))?;
        Ok(bytes)
    }

    /// The object's size and time, or `None` when absent.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        Ok(self.head_with(key).await?.map(|(meta, _)| meta))
    }

    /// The object's size and time and its attributes, or `None` when absent.
    pub async fn head_with(
        &self,
        key: &str,
    ) -> Result<Option<(ObjectMeta, Attributes)>, StorageError> {
        self.check_key(key)?;
        match &self.backend {
            Backend::Dir(dir) => Ok(dir
                .head(key)
                .await?
                .map(|meta| (meta, Attributes::default()))),
            Backend::S3(s3) => s3.head(key).await,
        }
    }

    /// Where the store's objects really are, for telling whether two
    /// stores overlap: `s3://<endpoint>/<bucket>/<prefix>/` (the endpoint
    /// lowercased, `aws` for AWS's; region and path style do not change
    /// where objects are), or `dir:<canonical path>/` (links and `..`
    /// resolved as far as the path exists).
    pub fn identity(&self) -> String {
        match &self.backend {
            Backend::Dir(dir) => {
                let root = dir.root();
                let mut existing = root.to_path_buf();
                let mut rest = Vec::new();
                while !existing.exists() {
                    match (existing.file_name(), existing.parent()) {
                        (Some(name), Some(parent)) => {
                            rest.push(name.to_os_string());
                            existing = parent.to_path_buf();
                        }
                        _ => break,
                    }
                }
                let mut path = existing.canonicalize().unwrap_or(existing);
                for name in rest.iter().rev() {
                    path.push(name);
                }
                format!("dir:{}/", path.display().to_string().trim_end_matches('/'))
            }
            Backend::S3(s3) => s3.identity(),
        }
    }

    /// Whether one store lies inside the other (or they are the same).
    pub fn overlaps(&self, other: &Store) -> bool {
        let (a, b) = (self.identity(), other.identity());
        a.starts_with(&b) || b.starts_with(&a)
    }

    /// Whether this is a directory store.
    pub fn is_dir(&self) -> bool {
        matches!(self.backend, Backend::Dir(_))
    }

    /// Every object whose key starts with `prefix`, in byte order of key,
    /// paginated underneath (S3: ListObjectsV2 pages of 1,000; directory:
    /// walked and sorted). Partial files and anything outside the store's
    /// prefix never appear.
    pub fn list(&self, prefix: &str) -> Listing {
        let state = match keys::check_prefix(prefix) {
            Err(problem) => ListingState::Failed(Some(StorageError::InvalidKey {
                location: self.location(),
                key: prefix.to_string(),
                problem,
            })),
            Ok(()) => match &self.backend {
                Backend::Dir(dir) => ListingState::Dir(dir.list(prefix)),
                Backend::S3(s3) => ListingState::S3(s3.list(prefix)),
            },
        };
        Listing { state }
    }

    /// Deletes `key` (only inside the store's root/prefix); an absent key
    /// is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.check_key(key)?;
        match &self.backend {
            Backend::Dir(dir) => dir.delete(key).await,
            Backend::S3(s3) => s3.delete(key).await,
        }
    }

    /// Uploads that never completed under `prefix` (S3 ListMultipartUploads;
    /// partial files of a directory store) — what a kill -9 leaves — sorted
    /// by key.
    pub async fn abandoned(&self, prefix: &str) -> Result<Vec<Abandoned>, StorageError> {
        keys::check_prefix(prefix).map_err(|problem| StorageError::InvalidKey {
            location: self.location(),
            key: prefix.to_string(),
            problem,
        })?;
        let mut found = match &self.backend {
            Backend::Dir(dir) => dir.abandoned(prefix).await?,
            Backend::S3(s3) => s3.abandoned(prefix).await?,
        };
        found.sort_by(|a, b| (&a.key, &a.detail).cmp(&(&b.key, &b.detail)));
        Ok(found)
    }

    /// Removes what [`Store::abandoned`] found; one already gone is not an
    /// error.
    pub async fn abort(&self, abandoned: &Abandoned) -> Result<(), StorageError> {
        self.check_key(&abandoned.key)?;
        match &self.backend {
            Backend::Dir(dir) => dir.abort(abandoned).await,
            Backend::S3(s3) => s3.abort(abandoned).await,
        }
    }

    fn check_key(&self, key: &str) -> Result<(), StorageError> {
        keys::check(key).map_err(|problem| StorageError::InvalidKey {
            location: self.location(),
            key: key.to_string(),
            problem,
        })
    }

    fn io_error(&self, key: &str, action: &'static str, source: std::io::Error) -> StorageError {
        StorageError::Io {
            location: self.location(),
            key: key.to_string(),
            action,
            source,
        }
    }
}

/// The objects under a prefix, one page fetched at a time.
pub struct Listing {
    state: ListingState,
}

enum ListingState {
    Dir(dir::DirListing),
    S3(s3::S3Listing),
    /// An invalid prefix: the error once, then the end.
    Failed(Option<StorageError>),
}

impl Listing {
    /// The next object, or `None` at the end. After an error the listing
    /// ends.
    pub async fn next(&mut self) -> Option<Result<ObjectMeta, StorageError>> {
        match &mut self.state {
            ListingState::Dir(listing) => listing.next().await,
            ListingState::S3(listing) => listing.next().await,
            ListingState::Failed(error) => error.take().map(Err),
        }
    }

    /// Every object left, or the first error.
    pub async fn collect(mut self) -> Result<Vec<ObjectMeta>, StorageError> {
        let mut all = Vec::new();
        while let Some(object) = self.next().await {
            all.push(object?);
        }
        Ok(all)
    }
}

/// Passes a write's byte count to its `progress` callback at most once per
/// MiB read, and the total once at the end: often enough for a bar, cheap
/// for a callback that locks or logs.
struct Progress<'p> {
    callback: &'p (dyn Fn(u64) + Send + Sync),
    told: u64,
}

impl<'p> Progress<'p> {
    const STEP: u64 = 1 << 20;

    fn new(callback: &'p (dyn Fn(u64) + Send + Sync)) -> Self {
        Progress { callback, told: 0 }
    }

    fn advance(&mut self, bytes: u64) {
        if bytes - self.told >= Self::STEP {
            (self.callback)(bytes);
            self.told = bytes;
        }
    }

    fn finish(&mut self, bytes: u64) {
        if bytes != self.told {
            (self.callback)(bytes);
            self.told = bytes;
        }
    }
}

/// Lowercase hex of a digest (checksums, ETags, cache keys).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_told_once_per_mib_and_at_the_end() {
        const KIB64: u64 = 64 << 10;
        let told = std::sync::Mutex::new(Vec::new());
        let callback = |n| told.lock().unwrap().push(n);
        let mut progress = Progress::new(&callback);
        for bytes in (1..=40).map(|i| i * KIB64) {
            progress.advance(bytes);
        }
        progress.finish(40 * KIB64);
        progress.finish(40 * KIB64);
        assert_eq!(*told.lock().unwrap(), [1 << 20, 2 << 20, 40 * KIB64]);
    }
}
