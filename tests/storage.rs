//! The storage layer (`flightpath::storage`): the same test bodies against a
//! directory store and against the in-process S3 server, each through the
//! public API only. What an interrupted write leaves behind is made the way
//! a kill -9 makes it: a `put_stream` future that is forgotten mid-upload
//! (neither completed nor dropped, so no guard runs).

use std::future::Future;
use std::time::Duration;

use flightpath::storage::{StorageError, Store, Written};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::support::s3::S3Server;

/// Part size for the multipart tests: a body of a few hundred KiB spans
/// several parts.
const TEST_PART: u64 = 64 << 10;

/// A store under test, with what its tests need beside it.
struct Backend {
    /// The store, rooted one level below `outer`.
    store: Store,
    /// A store at the level above `store`: what lies outside `store`.
    outer: Store,
    kind: Kind,
}

enum Kind {
    Dir(tempfile::TempDir),
    S3(S3Server),
}

impl Backend {
    async fn dir() -> Backend {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("store");
        let store = Store::open(root.to_str().unwrap()).await.unwrap();
        let outer = Store::open(temp.path().to_str().unwrap()).await.unwrap();
        Backend {
            store: store.with_part_size(TEST_PART),
            outer,
            kind: Kind::Dir(temp),
        }
    }

    async fn s3() -> Backend {
        let server = S3Server::start();
        server.create_bucket("flightpath-test");
        let store = server.store("flightpath-test", "store").await;
        let outer = server.store("flightpath-test", "").await;
        Backend {
            store: store.with_part_size(TEST_PART),
            outer,
            kind: Kind::S3(server),
        }
    }

    /// Writes that are open right now: multipart uploads the server holds,
    /// or partial files on disk (counted without the store's help).
    fn open_writes(&self) -> usize {
        match &self.kind {
            Kind::S3(server) => server.open_multipart_uploads("flightpath-test"),
            Kind::Dir(temp) => walk_files(temp.path())
                .iter()
                .filter(|name| name.contains(".flightpath-partial-"))
                .count(),
        }
    }
}

fn walk_files(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk_files(&path));
        } else {
            found.push(path.to_string_lossy().into_owned());
        }
    }
    found
}

/// Deterministic bytes that are not a repeating pattern a bug could hide in.
fn body(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn no_progress(_: u64) {}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Waits until `condition` holds (the other side works on its own thread or
/// task); fails the test if it never does.
async fn eventually(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    for _ in 0..2_000 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

/// Starts a `put_stream` of `key` whose body sends `sent` bytes and then
/// stalls (never ends), and polls it until the write is open (a partial
/// file, a multipart upload with a part in). Returns the future, still
/// pending, for the caller to drop or forget.
async fn stalled_put<'s>(
    backend: &'s Backend,
    key: &'s str,
    sent: usize,
) -> (
    std::pin::Pin<Box<dyn Future<Output = Result<Written, StorageError>> + Send + 's>>,
    tokio::io::DuplexStream,
) {
    let (mut writer, reader) = tokio::io::duplex(1 << 16);
    let mut put: std::pin::Pin<Box<dyn Future<Output = _> + Send + 's>> =
        Box::pin(backend.store.put_stream(key, reader, &no_progress));
    let feed = async {
        writer.write_all(&body(sent)).await.unwrap();
        eventually("the write is open", async || backend.open_writes() == 1).await;
    };
    tokio::select! {
        done = &mut put => panic!("the stalled put finished: {done:?}"),
        () = feed => {}
    }
    (put, writer)
}

/// One test per backend for each body below.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dir() {
                super::$name(super::Backend::dir().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn s3() {
                super::$name(super::Backend::s3().await).await;
            }
        }
    )*};
}

on_both!(
    a_stream_over_several_parts_round_trips,
    a_small_body_is_one_put,
    listing_is_sorted_prefixed_and_paginated,
    a_dropped_put_leaves_nothing,
    a_failing_body_leaves_nothing,
    a_killed_put_is_found_and_aborted,
    delete_stays_inside_the_store,
    a_missing_key_is_not_found,
    keys_cannot_escape,
);

async fn a_stream_over_several_parts_round_trips(backend: Backend) {
    let bytes = body(5 * TEST_PART as usize + 12_345);
    let seen = std::sync::Mutex::new(Vec::new());
    let written = backend
        .store
        .put_stream("dumps/big.dump", &bytes[..], &|n| {
            seen.lock().unwrap().push(n)
        })
        .await
        .unwrap();
    assert_eq!(written.key, "dumps/big.dump");
    assert_eq!(written.bytes, bytes.len() as u64);
    assert_eq!(written.sha256, sha256(&bytes));
    let expected_parts = match backend.kind {
        Kind::S3(_) => 6,
        Kind::Dir(_) => 1,
    };
    assert_eq!(written.parts, expected_parts);
    let seen = seen.into_inner().unwrap();
    assert_eq!(
        seen.last(),
        Some(&(bytes.len() as u64)),
        "progress ends at the total"
    );
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "progress goes forward: {seen:?}"
    );

    let back = backend.store.get_bytes("dumps/big.dump").await.unwrap();
    assert!(
        back == bytes,
        "the bytes read back differ from those written"
    );
    let head = backend.store.head("dumps/big.dump").await.unwrap().unwrap();
    assert_eq!(head.size, bytes.len() as u64);
    assert_eq!(head.key, "dumps/big.dump");
    assert_eq!(backend.open_writes(), 0);
    if let Kind::S3(server) = &backend.kind {
        assert_eq!(
            server.checksummed_uploads(),
            0,
            "checksums are sent only when required"
        );
    }
}

async fn a_small_body_is_one_put(backend: Backend) {
    let exact = body(TEST_PART as usize);
    let written = backend
        .store
        .put_bytes("manifest.json", exact.clone())
        .await
        .unwrap();
    assert_eq!(written.parts, 1, "a body of exactly one part is one PUT");
    assert_eq!(written.sha256, sha256(&exact));
    assert_eq!(
        backend.store.get_bytes("manifest.json").await.unwrap(),
        exact
    );

    let empty = backend.store.put_bytes("empty", Vec::new()).await.unwrap();
    assert_eq!((empty.bytes, empty.parts), (0, 1));
    assert_eq!(empty.sha256, sha256(b""));
    assert_eq!(backend.store.get_bytes("empty").await.unwrap(), b"");

    // Overwriting replaces the object whole.
    backend
        .store
        .put_bytes("manifest.json", b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(
        backend.store.get_bytes("manifest.json").await.unwrap(),
        b"{}"
    );

    let streamed = backend
        .store
        .put_stream("small.dump", &exact[..100], &no_progress)
        .await
        .unwrap();
    assert_eq!((streamed.bytes, streamed.parts), (100, 1));
    assert_eq!(
        backend.store.get_bytes("small.dump").await.unwrap(),
        &exact[..100]
    );
    if let Kind::S3(server) = &backend.kind {
        assert_eq!(
            server.checksummed_uploads(),
            0,
            "checksums are sent only when required"
        );
    }
}

async fn listing_is_sorted_prefixed_and_paginated(backend: Backend) {
    use futures_util::StreamExt;
    // More than one ListObjectsV2 page of 1,000.
    let many: Vec<String> = (0..1_005).rev().map(|i| format!("many/{i:04}")).collect();
    futures_util::stream::iter(&many)
        .for_each_concurrent(16, |key| async {
            backend
                .store
                .put_bytes(key, key.as_bytes().to_vec())
                .await
                .unwrap();
        })
        .await;
    // Byte order, not path order: `-` (0x2d) < `/` (0x2f) < `0` (0x30).
    for key in ["a0", "a/b", "a-b", "manyx"] {
        backend.store.put_bytes(key, vec![1, 2, 3]).await.unwrap();
    }
    backend.outer.put_bytes("outside", vec![0]).await.unwrap();
    let (_killed, _writer) = stalled_put(&backend, "many/partial", 3 * TEST_PART as usize).await;

    let listed = backend.store.list("many/").collect().await.unwrap();
    let mut expected = many.clone();
    expected.sort();
    assert_eq!(
        listed.iter().map(|o| o.key.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(
        listed.iter().all(|o| o.size == 9),
        "sizes: {:?}",
        &listed[..3]
    );

    let all = backend.store.list("").collect().await.unwrap();
    let keys: Vec<&str> = all.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(&keys[..3], ["a-b", "a/b", "a0"]);
    assert_eq!(keys.last(), Some(&"manyx"));
    assert_eq!(keys.len(), 1_005 + 4, "{:?}", &keys[keys.len() - 3..]);
    assert!(
        !keys
            .iter()
            .any(|k| k.contains("partial") || k.contains("outside"))
    );

    let mut listing = backend.store.list("man");
    let mut count = 0;
    while let Some(object) = listing.next().await {
        assert!(object.unwrap().key.starts_with("man"));
        count += 1;
    }
    assert_eq!(count, 1_006);
    assert!(
        backend
            .store
            .list("nothing/")
            .collect()
            .await
            .unwrap()
            .is_empty()
    );
    // A prefix that runs through an object as if it were a directory.
    let through = backend.store.list("a0/x").collect().await.unwrap();
    assert!(through.is_empty(), "{through:?}");
}

async fn a_dropped_put_leaves_nothing(backend: Backend) {
    let (put, writer) = stalled_put(&backend, "dumps/cancelled.dump", 3 * TEST_PART as usize).await;
    drop(put);
    drop(writer);
    eventually("the dropped upload is aborted", async || {
        backend.open_writes() == 0
    })
    .await;
    assert!(backend.store.abandoned("").await.unwrap().is_empty());
    assert_eq!(
        backend.store.head("dumps/cancelled.dump").await.unwrap(),
        None
    );
    assert!(backend.store.list("").collect().await.unwrap().is_empty());
}

/// A body that fails after `0` more bytes: a pg_dump that died.
struct Failing;

impl tokio::io::AsyncRead for Failing {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Err(std::io::Error::other("pg_dump exited with status 1")))
    }
}

async fn a_failing_body_leaves_nothing(backend: Backend) {
    use tokio::io::AsyncReadExt;
    let bytes = body(3 * TEST_PART as usize + 7);
    let error = backend
        .store
        .put_stream(
            "dumps/failed.dump",
            (&bytes[..]).chain(Failing),
            &no_progress,
        )
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, StorageError::Io { .. }), "{error:?}");
    assert!(
        message.contains("dumps/failed.dump") && message.contains("pg_dump exited with status 1"),
        "{message}"
    );
    assert_eq!(
        backend.open_writes(),
        0,
        "the failed upload was aborted before the error returned"
    );
    assert_eq!(backend.store.head("dumps/failed.dump").await.unwrap(), None);
}

async fn a_killed_put_is_found_and_aborted(backend: Backend) {
    let (put, writer) = stalled_put(&backend, "dumps/killed.dump", 3 * TEST_PART as usize).await;
    // What kill -9 leaves: no destructor runs.
    std::mem::forget(put);
    std::mem::forget(writer);

    let found = backend.store.abandoned("dumps/").await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].key, "dumps/killed.dump");
    assert!(found[0].started.is_some());
    assert!(backend.store.abandoned("other/").await.unwrap().is_empty());
    assert!(
        backend.store.list("").collect().await.unwrap().is_empty(),
        "an unfinished upload is never listed"
    );

    backend.store.abort(&found[0]).await.unwrap();
    assert_eq!(backend.open_writes(), 0);
    assert!(backend.store.abandoned("").await.unwrap().is_empty());
    // Aborting again is not an error: it is gone either way.
    backend.store.abort(&found[0]).await.unwrap();
}

async fn delete_stays_inside_the_store(backend: Backend) {
    backend
        .outer
        .put_bytes("k", b"outer".to_vec())
        .await
        .unwrap();
    backend
        .store
        .put_bytes("k", b"inner".to_vec())
        .await
        .unwrap();
    backend
        .store
        .put_bytes("deep/er/k", b"inner".to_vec())
        .await
        .unwrap();

    backend.store.delete("k").await.unwrap();
    backend.store.delete("deep/er/k").await.unwrap();
    backend.store.delete("never/was").await.unwrap();

    assert_eq!(backend.store.head("k").await.unwrap(), None);
    assert_eq!(backend.outer.get_bytes("k").await.unwrap(), b"outer");
    assert!(backend.store.list("").collect().await.unwrap().is_empty());
    let outer: Vec<String> = backend
        .outer
        .list("")
        .collect()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(outer, ["k"]);
    if let Kind::Dir(temp) = &backend.kind {
        assert!(
            !temp.path().join("store/deep").exists(),
            "emptied directories are removed"
        );
        assert!(temp.path().join("store").exists(), "the root stays");
    }
}

async fn a_missing_key_is_not_found(backend: Backend) {
    let error = backend.store.get("no/such.dump").await.err().unwrap();
    assert!(
        matches!(&error, StorageError::NotFound { key, .. } if key == "no/such.dump"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&backend.store.location()) && message.contains("no/such.dump"),
        "{message}"
    );
    assert!(
        backend
            .store
            .get_bytes("no/such.dump")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(backend.store.head("no/such.dump").await.unwrap(), None);
}

async fn keys_cannot_escape(backend: Backend) {
    for key in ["../k", "/k", "a//b", "a/./b", "", "dir/"] {
        let error = backend.store.put_bytes(key, vec![1]).await.unwrap_err();
        assert!(
            matches!(error, StorageError::InvalidKey { .. }),
            "{key:?}: {error:?}"
        );
        assert!(backend.store.get(key).await.is_err());
        assert!(backend.store.delete(key).await.is_err());
        assert_eq!(backend.store.local_path(key), None);
    }
    assert!(backend.store.list("../").collect().await.is_err());
    assert!(backend.outer.list("").collect().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_directory_store_keeps_files_at_their_keys() {
    let temp = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("file://{}", temp.path().join("backups").display()))
        .await
        .unwrap();
    assert_eq!(
        store.location(),
        temp.path().join("backups").display().to_string()
    );
    assert!(
        !temp.path().join("backups").exists(),
        "opening creates nothing"
    );
    store
        .put_bytes("staging/one.dump", b"dump".to_vec())
        .await
        .unwrap();
    let path = store.local_path("staging/one.dump").unwrap();
    assert_eq!(path, temp.path().join("backups/staging/one.dump"));
    assert_eq!(std::fs::read(path).unwrap(), b"dump");
    assert_eq!(
        format!("{store:?}"),
        format!("Store({:?})", store.location())
    );
}

#[tokio::test]
async fn a_directory_store_that_cannot_be_created_says_where() {
    let temp = tempfile::tempdir().unwrap();
    std::fs::write(temp.path().join("file"), b"").unwrap();
    let store = Store::open(temp.path().join("file").to_str().unwrap())
        .await
        .unwrap();
    let message = store.put_bytes("k", vec![1]).await.unwrap_err().to_string();
    assert!(
        message.contains(&store.location()) && message.contains("`k`"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_missing_bucket_says_so() {
    let server = S3Server::start();
    let store = server.store("no-such-bucket", "p").await;
    let error = store.put_bytes("k", vec![1]).await.unwrap_err();
    assert!(
        matches!(error, StorageError::NoSuchBucket { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("bucket `no-such-bucket` does not exist"),
        "{message}"
    );
    assert!(
        store
            .list("")
            .collect()
            .await
            .unwrap_err()
            .to_string()
            .contains("does not exist")
    );
    assert!(matches!(
        store.head("k").await.unwrap_err(),
        StorageError::NoSuchBucket { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_stopped_server_is_unreachable() {
    let server = S3Server::start();
    server.create_bucket("flightpath-test");
    let store = server.store("flightpath-test", "").await;
    let endpoint = server.endpoint();
    drop(server);
    let error = store.put_bytes("k", vec![1]).await.unwrap_err();
    assert!(
        matches!(error, StorageError::Unreachable { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("could not reach `{endpoint}`")),
        "{message}"
    );
    assert!(message.contains("check `endpoint=`"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_wrong_credentials_are_refused_without_showing_them() {
    let server = S3Server::start();
    server.create_bucket("flightpath-test");
    let url = server.url("flightpath-test", "");
    let store = Store::open(&url)
        .await
        .unwrap()
        .with_static_credentials(crate::support::s3::ACCESS_KEY, "not-the-secret-key");
    let error = store.put_bytes("k", vec![1]).await.unwrap_err();
    assert!(
        matches!(error, StorageError::AccessDenied { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(!message.contains("not-the-secret-key"), "{message}");
    assert!(message.contains("AWS_ACCESS_KEY_ID"), "{message}");
    assert!(!store.location().contains("secret") && !format!("{store:?}").contains("secret"));
}

#[tokio::test]
async fn abort_never_removes_an_object() {
    let backend = Backend::dir().await;
    backend
        .store
        .put_bytes("dumps/k", b"kept".to_vec())
        .await
        .unwrap();
    for detail in [
        "dumps/k",
        "k",
        "../store/dumps/k",
        "dumps/.flightpath-partial-zz-k",
    ] {
        let not_partial = flightpath::storage::Abandoned {
            key: "dumps/k".to_string(),
            detail: detail.to_string(),
            started: None,
        };
        let error = backend.store.abort(&not_partial).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("is not a partial file of `dumps/k`"),
            "{error}"
        );
    }
    assert_eq!(backend.store.get_bytes("dumps/k").await.unwrap(), b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_objects_are_files_in_the_bucket_directory() {
    let server = S3Server::start();
    server.create_bucket("flightpath-test");
    let store = server.store("flightpath-test", "store").await;
    store
        .put_bytes("dumps/k", b"original".to_vec())
        .await
        .unwrap();
    let file = server.bucket_dir("flightpath-test").join("store/dumps/k");
    assert_eq!(std::fs::read(&file).unwrap(), b"original");
    std::fs::write(&file, b"changed!").unwrap();
    assert_eq!(store.get_bytes("dumps/k").await.unwrap(), b"changed!");
    let env = server.env();
    assert!(env.iter().any(|(k, _)| k == "AWS_ACCESS_KEY_ID"));
    assert!(
        server
            .url("flightpath-test", "store")
            .starts_with("s3://flightpath-test/store?endpoint=http://127.0.0.1:")
    );
}

#[tokio::test]
async fn a_directory_store_does_not_follow_links_out_of_its_root() {
    let temp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(temp.path().join("elsewhere")).unwrap();
    std::fs::write(temp.path().join("elsewhere/secret"), b"not the store's").unwrap();
    std::fs::create_dir_all(temp.path().join("store")).unwrap();
    std::os::unix::fs::symlink(
        temp.path().join("elsewhere"),
        temp.path().join("store/link"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        temp.path().join("elsewhere/secret"),
        temp.path().join("store/file"),
    )
    .unwrap();
    let store = Store::open(temp.path().join("store").to_str().unwrap())
        .await
        .unwrap();

    for key in ["link/secret", "file"] {
        let error = store.get(key).await.err().unwrap();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert!(store.head(key).await.is_err());
    }
    assert!(store.put_bytes("link/new", b"x".to_vec()).await.is_err());
    assert!(store.delete("link/secret").await.is_err());
    assert!(store.list("").collect().await.unwrap().is_empty());
    assert_eq!(
        std::fs::read(temp.path().join("elsewhere/secret")).unwrap(),
        b"not the store's"
    );
    assert!(!temp.path().join("elsewhere/new").exists());
}
