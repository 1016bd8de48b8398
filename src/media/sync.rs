//! The sync: both listings read as sorted streams and merged key by key,
//! so memory holds a window of each, never a whole bucket. Each source key
//! is decided and acted on in a bounded pool of tasks (`concurrency`
//! requests in flight, and a budget on the bytes held in memory); keys
//! only the target has are collected as deletions and carried out last —
//! only when every listing and every copy succeeded, and only up to
//! `max_delete` unless the run allows more.
//!
//! Deciding a key: a document (or a `placeholder:` match) is compared
//! against its stand-in, anything else against the source object. Equal
//! when the sizes agree and the checksums do: an S3 ETag is an MD5 for a
//! single-part upload; a directory file's MD5 comes from the hash cache
//! (recomputed when its size or mtime changed); a multipart ETag (`…-N`)
//! is compared through the `flightpath-source` metadata flightpath gives
//! every object it writes, else by size and time (the target not older).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt;
use md5::{Digest, Md5};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Error;
use super::cache::HashCache;
use super::placeholder::{self, Placeholder};
use super::select::{self, Selection, Treatment};
use crate::storage::{Attributes, Listing, ObjectMeta, StorageError, Store};

/// The metadata key (`x-amz-meta-flightpath-source`) holding the source's
/// fingerprint an object was written from.
pub const SOURCE_META: &str = "flightpath-source";

/// Objects above this size are multipart uploads into S3 (the store's
/// first part), whose ETag is no MD5.
const MULTIPART_FROM: u64 = 8 << 20;

/// Keys shown per action in the plan and the report.
const SAMPLES: usize = 5;

/// Bytes of object bodies held in memory at once, across all tasks.
const MEMORY_BUDGET: u64 = 48 << 20;

/// What to sync.
#[derive(Debug, Clone)]
pub struct SyncSpec {
    pub selection: Selection,
    pub delete: bool,
    /// At most this many deletions; `None`: 1,000 or 10 % of the target,
    /// whichever is larger.
    pub max_delete: Option<u64>,
    /// `--yes-delete-many`: past `max_delete` anyway.
    pub allow_many_deletes: bool,
    pub concurrency: usize,
}

/// What happens to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Copy,
    Placeholder,
    Skip,
    Delete,
}

impl Action {
    pub fn label(self) -> &'static str {
        match self {
            Action::Copy => "copy",
            Action::Placeholder => "placeholder",
            Action::Skip => "skip",
            Action::Delete => "delete",
        }
    }
}

/// Counts of one top-level prefix (or of all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub copied: u64,
    pub placeholders: u64,
    pub skipped: u64,
    pub deleted: u64,
    /// Bytes copied (or to copy), placeholders included.
    pub bytes: u64,
}

impl Counts {
    fn add(&mut self, action: Action, bytes: u64) {
        match action {
            Action::Copy => self.copied += 1,
            Action::Placeholder => self.placeholders += 1,
            Action::Skip => self.skipped += 1,
            Action::Delete => self.deleted += 1,
        }
        if matches!(action, Action::Copy | Action::Placeholder) {
            self.bytes += bytes;
        }
    }

    fn merge(&mut self, other: &Counts) {
        self.copied += other.copied;
        self.placeholders += other.placeholders;
        self.skipped += other.skipped;
        self.deleted += other.deleted;
        self.bytes += other.bytes;
    }
}

/// What a sync did (or, dry, would do).
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Per top-level prefix (`original_images`, `documents`, `` for keys
    /// at the root).
    pub by_prefix: BTreeMap<String, Counts>,
    /// The first keys of each action.
    pub samples: BTreeMap<Action, Vec<String>>,
    /// Keys that failed, with why (copies, placeholders, deletions).
    pub failed: Vec<(String, String)>,
    /// Copies done inside the S3 service (no bytes through here).
    pub server_side: u64,
    /// Objects under the selection on the target before the sync.
    pub target_objects: u64,
    /// Deletions held back: the listing or a copy failed, or too many.
    pub deletes_withheld: Option<String>,
    pub seconds: f64,
}

impl Outcome {
    pub fn total(&self) -> Counts {
        let mut total = Counts::default();
        for counts in self.by_prefix.values() {
            total.merge(counts);
        }
        total
    }

    fn record(&mut self, key: &str, action: Action, bytes: u64) {
        let prefix = key.split_once('/').map_or("", |(top, _)| top).to_string();
        self.by_prefix.entry(prefix).or_default().add(action, bytes);
        let samples = self.samples.entry(action).or_default();
        if samples.len() < SAMPLES {
            samples.push(key.to_string());
        }
    }
}

/// The two sides and where their hash caches live.
pub struct Sides {
    pub source: Store,
    pub target: Store,
    pub source_cache: Option<Arc<HashCache>>,
    pub target_cache: Option<Arc<HashCache>>,
}

/// Progress callbacks: objects done, bytes moved.
pub trait Report: Send + Sync {
    fn object(&self);
    fn bytes(&self, n: u64);
}

/// Runs the sync (`dry`: decides everything, writes nothing).
pub async fn sync(
    sides: &Sides,
    spec: &SyncSpec,
    dry: bool,
    report: &dyn Report,
    cancel: &CancellationToken,
) -> Result<Outcome, Error> {
    let started = Instant::now();
    let outcome = Mutex::new(Outcome::default());
    let deletes = Mutex::new(Vec::<String>::new());
    let listing_failed = Mutex::new(None::<StorageError>);
    let budget = Semaphore::new((MEMORY_BUDGET >> 10) as usize);
    let merged = Merge::new(
        sides.source.list(""),
        sides.target.list(""),
        spec.selection.clone(),
    );
    let items = futures_util::stream::unfold(merged, |mut merge| async move {
        let item = merge.next().await;
        item.map(|item| (item, merge))
    });
    let work = items
        .take_until(cancel.cancelled())
        .map(|item| {
            let (outcome, deletes, listing_failed, budget) =
                (&outcome, &deletes, &listing_failed, &budget);
            async move {
                match item {
                    Item::Failed(error) => {
                        listing_failed.lock().unwrap().get_or_insert(error);
                    }
                    Item::TargetOnly(meta) => {
                        outcome.lock().unwrap().target_objects += 1;
                        deletes.lock().unwrap().push(meta.key);
                    }
                    Item::Source(source, target) => {
                        if target.is_some() {
                            outcome.lock().unwrap().target_objects += 1;
                        }
                        let key = source.key.clone();
                        match one(sides, spec, &source, target.as_ref(), dry, budget, report).await
                        {
                            Ok(done) => {
                                let mut outcome = outcome.lock().unwrap();
                                outcome.record(&key, done.action, done.bytes);
                                if done.server_side {
                                    outcome.server_side += 1;
                                }
                            }
                            Err(error) => {
                                outcome
                                    .lock()
                                    .unwrap()
                                    .failed
                                    .push((key, error.to_string()));
                            }
                        }
                        report.object();
                    }
                }
            }
        })
        .buffer_unordered(spec.concurrency.max(1));
    work.collect::<Vec<()>>().await;
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    let mut outcome = outcome.into_inner().unwrap();
    if let Some(error) = listing_failed.into_inner().unwrap() {
        return Err(Error::Listing { error });
    }
    if spec.delete {
        let deletes = deletes.into_inner().unwrap();
        let limit = spec
            .max_delete
            .unwrap_or_else(|| 1_000u64.max(outcome.target_objects / 10));
        if !outcome.failed.is_empty() {
            outcome.deletes_withheld = Some(format!(
                "{} deletions withheld: {} objects failed to copy",
                deletes.len(),
                outcome.failed.len()
            ));
        } else if deletes.len() as u64 > limit && !spec.allow_many_deletes {
            return Err(Error::TooManyDeletes {
                count: deletes.len() as u64,
                limit,
                target_objects: outcome.target_objects,
                target: sides.target.location(),
            });
        } else {
            for key in &deletes {
                outcome.record(key, Action::Delete, 0);
            }
            if !dry {
                let failures: Vec<(String, String)> = futures_util::stream::iter(deletes)
                    .map(|key| async move {
                        let result = sides.target.delete(&key).await;
                        if let Some(cache) = &sides.target_cache {
                            cache.forget(&key);
                        }
                        result.err().map(|e| (key, e.to_string()))
                    })
                    .buffer_unordered(spec.concurrency.max(1))
                    .filter_map(|failure| async move { failure })
                    .collect()
                    .await;
                outcome.failed.extend(failures);
            }
        }
    }
    outcome.failed.sort();
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

struct Done {
    action: Action,
    bytes: u64,
    server_side: bool,
}

/// Decides one source key and, unless dry, acts on it.
async fn one(
    sides: &Sides,
    spec: &SyncSpec,
    source: &ObjectMeta,
    target: Option<&ObjectMeta>,
    dry: bool,
    budget: &Semaphore,
    report: &dyn Report,
) -> Result<Done, StorageError> {
    let key = source.key.as_str();
    let treatment = match spec.selection.treatment(key) {
        Treatment::BySignature => {
            let start = sides.source.get_start(key, select::SIGNATURE_BYTES).await?;
            match select::is_media(&start) {
                true => Treatment::Copy,
                false => Treatment::Placeholder,
            }
        }
        decided => decided,
    };
    if treatment == Treatment::Placeholder {
        let stand_in = stand_in(&sides.source, key).await?;
        let fingerprint = md5_hex(&stand_in.bytes);
        if let Some(target) = target
            && target.size == stand_in.bytes.len() as u64
            && target_fingerprint(sides, target).await?.as_deref() == Some(fingerprint.as_str())
        {
            return Ok(Done {
                action: Action::Skip,
                bytes: 0,
                server_side: false,
            });
        }
        let bytes = stand_in.bytes.len() as u64;
        if !dry {
            let attributes = Attributes {
                content_type: Some(stand_in.content_type.clone()),
                metadata: BTreeMap::from([(SOURCE_META.to_string(), "placeholder".to_string())]),
                ..Attributes::default()
            };
            write(
                sides,
                key,
                std::io::Cursor::new(stand_in.bytes),
                &attributes,
                None,
            )
            .await?;
            report.bytes(bytes);
        }
        return Ok(Done {
            action: Action::Placeholder,
            bytes,
            server_side: false,
        });
    }

    // A directory file's fingerprint costs reading it: only when there is
    // something to compare it with, or a multipart upload to label.
    let needs_print = source.etag.is_some()
        || target.is_some()
        || (!sides.target.is_dir() && source.size > MULTIPART_FROM);
    let source_print = match needs_print {
        true => source_fingerprint(sides, source).await?,
        false => String::new(),
    };
    if let Some(target) = target
        && same_content(sides, source, &source_print, target).await?
    {
        return Ok(Done {
            action: Action::Skip,
            bytes: 0,
            server_side: false,
        });
    }
    let server_side = sides.target.same_service(&sides.source);
    if !dry {
        if server_side {
            // A multipart source's ETag does not survive a copy: record it.
            let replace = match source_print.contains('-') {
                true => {
                    let (_, mut attributes) =
                        sides.source.head_with(key).await?.ok_or_else(|| {
                            StorageError::NotFound {
                                location: sides.source.location(),
                                key: key.to_string(),
                            }
                        })?;
                    attributes
                        .metadata
                        .insert(SOURCE_META.to_string(), source_print.clone());
                    Some(attributes)
                }
                false => None,
            };
            sides
                .target
                .copy_from(&sides.source, key, key, source.size, replace.as_ref())
                .await?;
            report.bytes(source.size);
        } else {
            let held = source.size.clamp(64 << 10, 16 << 20);
            let _permit = budget
                .acquire_many((held >> 10) as u32)
                .await
                .expect("the budget is never closed");
            let (reader, mut attributes) = sides.source.get_with(key).await?;
            if attributes.content_type.is_none() {
                attributes.content_type = select::content_type_of(key).map(str::to_string);
            }
            if !source_print.is_empty() {
                attributes
                    .metadata
                    .insert(SOURCE_META.to_string(), source_print.clone());
            }
            write(sides, key, reader, &attributes, Some(report)).await?;
        }
    }
    Ok(Done {
        action: Action::Copy,
        bytes: source.size,
        server_side,
    })
}

/// Writes `body` to the target at `key`; a directory target's hash cache
/// learns the new file's MD5 (and what it was written from).
async fn write<R: AsyncRead + Unpin + Send>(
    sides: &Sides,
    key: &str,
    body: R,
    attributes: &Attributes,
    report: Option<&dyn Report>,
) -> Result<(), StorageError> {
    let hasher = Arc::new(Mutex::new(Md5::new()));
    let body = HashingReader {
        inner: body,
        hasher: hasher.clone(),
    };
    let told = std::sync::atomic::AtomicU64::new(0);
    let progress = |n: u64| {
        if let Some(report) = report {
            let before = told.swap(n, std::sync::atomic::Ordering::Relaxed);
            report.bytes(n.saturating_sub(before));
        }
    };
    sides
        .target
        .put_stream_with(key, body, &progress, attributes)
        .await?;
    if let Some(cache) = &sides.target_cache
        && let Some(meta) = sides.target.head(key).await?
    {
        let md5 = hex(&hasher.lock().unwrap().clone().finalize());
        let source = attributes.metadata.get(SOURCE_META).cloned();
        cache.learn_written(&meta, md5, source);
    }
    Ok(())
}

/// The stand-in of a source object: an image's at its pixel size, a
/// document's by its type.
async fn stand_in(store: &Store, key: &str) -> Result<Placeholder, StorageError> {
    let start = store
        .get_start(key, placeholder::IMAGE_HEADER_BYTES)
        .await?;
    if let Some(dimensions) = placeholder::dimensions(&start) {
        return Ok(placeholder::image(dimensions));
    }
    let content_type = match store.is_dir() {
        true => None,
        false => store
            .head_with(key)
            .await?
            .and_then(|(_, attributes)| attributes.content_type),
    };
    Ok(placeholder::document(key, content_type.as_deref()))
}

/// The source's fingerprint: its ETag without quotes, or a directory
/// file's MD5.
async fn source_fingerprint(sides: &Sides, meta: &ObjectMeta) -> Result<String, StorageError> {
    match (&meta.etag, &sides.source_cache) {
        (Some(etag), _) => Ok(etag.trim_matches('"').to_string()),
        (None, Some(cache)) => cache.md5(&sides.source, meta).await,
        (None, None) => Ok(String::new()),
    }
}

/// The target's content fingerprint, as [`source_fingerprint`].
async fn target_fingerprint(
    sides: &Sides,
    meta: &ObjectMeta,
) -> Result<Option<String>, StorageError> {
    match (&meta.etag, &sides.target_cache) {
        (Some(etag), _) => Ok(Some(etag.trim_matches('"').to_string())),
        (None, Some(cache)) => cache.md5(&sides.target, meta).await.map(Some),
        (None, None) => Ok(None),
    }
}

/// Whether the target already holds the source's content.
async fn same_content(
    sides: &Sides,
    source: &ObjectMeta,
    source_print: &str,
    target: &ObjectMeta,
) -> Result<bool, StorageError> {
    if source.size != target.size {
        return Ok(false);
    }
    let target_print = target_fingerprint(sides, target).await?;
    if target_print.as_deref() == Some(source_print) && !source_print.is_empty() {
        return Ok(true);
    }
    // What the target was written from, when flightpath wrote it.
    let written_from = match &sides.target_cache {
        Some(cache) => cache.source_of(target),
        None => sides
            .target
            .head_with(&target.key)
            .await?
            .and_then(|(_, attributes)| attributes.metadata.get(SOURCE_META).cloned()),
    };
    if written_from.as_deref() == Some(source_print) {
        return Ok(true);
    }
    // Two MD5s that differ are two contents; a multipart ETag says nothing
    // of the content, so the times decide.
    let comparable = |print: &str| !print.is_empty() && !print.contains('-');
    if comparable(source_print) && target_print.as_deref().is_some_and(comparable) {
        return Ok(false);
    }
    Ok(matches!(
        (source.last_modified, target.last_modified),
        (Some(s), Some(t)) if t >= s
    ))
}

/// One step of the merge of the two sorted listings.
enum Item {
    Source(ObjectMeta, Option<ObjectMeta>),
    TargetOnly(ObjectMeta),
    Failed(StorageError),
}

/// Merges the source's and the target's listings (both sorted by key
/// bytes), keeping only selected keys. A listing that fails ends the merge
/// with [`Item::Failed`].
struct Merge {
    source: Listing,
    target: Listing,
    next_source: Option<ObjectMeta>,
    next_target: Option<ObjectMeta>,
    started: bool,
    pending: Option<StorageError>,
    done: bool,
    selection: Selection,
}

impl Merge {
    fn new(source: Listing, target: Listing, selection: Selection) -> Self {
        Merge {
            source,
            target,
            next_source: None,
            next_target: None,
            started: false,
            pending: None,
            done: false,
            selection,
        }
    }

    async fn pull(
        listing: &mut Listing,
        selection: &Selection,
    ) -> Result<Option<ObjectMeta>, StorageError> {
        while let Some(object) = listing.next().await {
            let object = object?;
            if selection.selects(&object.key) {
                return Ok(Some(object));
            }
        }
        Ok(None)
    }

    async fn refill(&mut self, source: bool, target: bool) -> Result<(), StorageError> {
        if source {
            self.next_source = Self::pull(&mut self.source, &self.selection).await?;
        }
        if target {
            self.next_target = Self::pull(&mut self.target, &self.selection).await?;
        }
        Ok(())
    }

    async fn next(&mut self) -> Option<Item> {
        if self.done {
            return None;
        }
        if let Some(error) = self.pending.take() {
            self.done = true;
            return Some(Item::Failed(error));
        }
        if !self.started {
            self.started = true;
            if let Err(error) = self.refill(true, true).await {
                self.done = true;
                return Some(Item::Failed(error));
            }
        }
        let order = match (&self.next_source, &self.next_target) {
            (None, None) => return None,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(s), Some(t)) => s.key.as_bytes().cmp(t.key.as_bytes()),
        };
        let (item, source, target) = match order {
            std::cmp::Ordering::Less => (Item::Source(self.next_source.take()?, None), true, false),
            std::cmp::Ordering::Greater => {
                (Item::TargetOnly(self.next_target.take()?), false, true)
            }
            std::cmp::Ordering::Equal => (
                Item::Source(self.next_source.take()?, self.next_target.take()),
                true,
                true,
            ),
        };
        if let Err(error) = self.refill(source, target).await {
            self.pending = Some(error);
        }
        Some(item)
    }
}

/// Feeds what a reader reads to an MD5.
struct HashingReader<R> {
    inner: R,
    hasher: Arc<Mutex<Md5>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for HashingReader<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &polled {
            self.hasher.lock().unwrap().update(&buf.filled()[before..]);
        }
        polled
    }
}

pub use super::digest::{hex, md5_hex};
