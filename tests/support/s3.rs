//! An S3 server inside the test process: `s3s` over `s3s-fs` (a bucket is
//! a directory, an object a file, in a temp dir), on 127.0.0.1 with a random
//! port, on its own thread and runtime so in-process tests and a spawned
//! `flightpath` binary can both use it. Requests are signed and checked
//! (SigV4) with one test key pair.
//!
//! `s3s-fs` lacks what a store needs from a real server, so [`Server`]
//! wraps it: ListMultipartUploads (it keeps no record of which upload is
//! for which key, so the wrapper records uploads as they are created,
//! completed and aborted), ListObjectsV2 pages of at most 1,000 keys with
//! continuation tokens, a prefix filter that is exact (`s3s-fs` matches
//! `many/` against `manyx`), and NoSuchBucket on a write to a bucket that
//! does not exist (`s3s-fs` creates it). It also keeps what `s3s-fs` drops
//! — content type, cache control, disposition, and user metadata replaced
//! by a copy — gives every listed object its ETag (the MD5, as S3 does for
//! a single-part upload), records which operations it served on which key,
//! and fails the requests of a key on demand ([`S3Server::fail`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use flightpath::storage::Store;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};

/// The one key pair the server accepts.
pub const ACCESS_KEY: &str = "AKIAFLIGHTPATHTEST01";
pub const SECRET_KEY: &str = "flightpath-test-secret-key";
pub const REGION: &str = "us-east-1";

/// A running server; stopped (port closed, connections dropped) on drop.
pub struct S3Server {
    addr: SocketAddr,
    root: tempfile::TempDir,
    journal: Arc<Journal>,
    uploads: Arc<Mutex<Vec<Upload>>>,
    checksummed: Arc<AtomicUsize>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the wrapper records and injects.
#[derive(Default)]
struct Journal {
    /// `(operation, key)` of every object request served, in order.
    ops: Mutex<Vec<(String, String)>>,
    /// Keys whose writes fail (500) this many more times.
    faults: Mutex<std::collections::HashMap<String, usize>>,
    /// Attributes by (bucket, key).
    attrs: Mutex<std::collections::HashMap<(String, String), Attrs>>,
    /// Listed ETags by file, with the size and mtime they were read at.
    #[allow(clippy::type_complexity)]
    etags: Mutex<std::collections::HashMap<PathBuf, ((u64, SystemTime), String)>>,
}

#[derive(Clone, Default)]
struct Attrs {
    content_type: Option<ContentType>,
    cache_control: Option<String>,
    content_disposition: Option<String>,
    metadata: Option<Metadata>,
}

impl Journal {
    /// Records `op` on `key`; an injected failure answers instead.
    fn serve(&self, op: &str, key: &str) -> S3Result<()> {
        self.ops
            .lock()
            .unwrap()
            .push((op.to_string(), key.to_string()));
        if !matches!(op, "PutObject" | "CopyObject" | "UploadPart") {
            return Ok(());
        }
        let mut faults = self.faults.lock().unwrap();
        if let Some(left) = faults.get_mut(key)
            && *left > 0
        {
            *left -= 1;
            return Err(s3s::s3_error!(InternalError, "injected failure"));
        }
        Ok(())
    }

    /// The quoted MD5 of the file at `path`, remembered while its size and
    /// mtime hold (a listing would otherwise read every object it lists).
    fn etag(&self, path: &std::path::Path) -> Option<String> {
        let meta = std::fs::metadata(path).ok()?;
        let stamp = (meta.len(), meta.modified().ok()?);
        if let Some((seen, etag)) = self.etags.lock().unwrap().get(path)
            && *seen == stamp
        {
            return Some(etag.clone());
        }
        let etag = format!("\"{:032x}\"", md5_of(&std::fs::read(path).ok()?));
        self.etags
            .lock()
            .unwrap()
            .insert(path.to_path_buf(), (stamp, etag.clone()));
        Some(etag)
    }

    fn keep(&self, bucket: &str, key: &str, attrs: Attrs) {
        self.attrs
            .lock()
            .unwrap()
            .insert((bucket.to_string(), key.to_string()), attrs);
    }

    fn attrs(&self, bucket: &str, key: &str) -> Attrs {
        self.attrs
            .lock()
            .unwrap()
            .get(&(bucket.to_string(), key.to_string()))
            .cloned()
            .unwrap_or_default()
    }
}

/// An open multipart upload, as the wrapper recorded it.
#[derive(Clone)]
struct Upload {
    bucket: String,
    key: String,
    upload_id: String,
    initiated: SystemTime,
}

impl S3Server {
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::default());
        let uploads = Arc::new(Mutex::new(Vec::new()));
        let checksummed = Arc::new(AtomicUsize::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stopped) = tokio::sync::oneshot::channel();
        let server = Server {
            fs: s3s_fs::FileSystem::new(root.path()).unwrap(),
            root: root.path().to_path_buf(),
            journal: journal.clone(),
            uploads: uploads.clone(),
            checksummed: checksummed.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("s3-server".into())
            .spawn(move || serve(listener, server, stopped))
            .unwrap();
        S3Server {
            addr,
            root,
            journal,
            uploads,
            checksummed,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The store URL of `prefix` (may be empty) in `bucket`.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        let path = if prefix.is_empty() {
            bucket.to_string()
        } else {
            format!("{bucket}/{prefix}")
        };
        format!(
            "s3://{path}?endpoint={}&path_style=true&region={REGION}",
            self.endpoint()
        )
    }

    /// What a spawned `flightpath` needs to sign its requests (and to not
    /// wait on an instance-metadata service that is not there).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The store of `prefix` in `bucket`, signing with the test key (the
    /// process environment is shared by all tests, so it is not used).
    pub async fn store(&self, bucket: &str, prefix: &str) -> Store {
        Store::open(&self.url(bucket, prefix))
            .await
            .unwrap()
            .with_static_credentials(ACCESS_KEY, SECRET_KEY)
    }

    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir(self.bucket_dir(name)).unwrap();
    }

    /// The directory that holds `bucket`'s objects, one file per key: for
    /// tests that change stored bytes behind the server's back.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.path().join(bucket)
    }

    /// Multipart uploads created in `bucket` and neither completed nor
    /// aborted.
    pub fn open_multipart_uploads(&self, bucket: &str) -> usize {
        self.uploads
            .lock()
            .unwrap()
            .iter()
            .filter(|u| u.bucket == bucket)
            .count()
    }
}

impl S3Server {
    /// The operations served on `key` so far (`PutObject`, `CopyObject`,
    /// `GetObject`, `HeadObject`, `UploadPart`, `DeleteObject`, …).
    pub fn ops_on(&self, key: &str) -> Vec<String> {
        self.journal
            .ops
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, k)| k == key)
            .map(|(op, _)| op.clone())
            .collect()
    }

    /// How many times `op` was served, on any key.
    pub fn count(&self, op: &str) -> usize {
        self.journal
            .ops
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, _)| o == op)
            .count()
    }

    /// Forgets the operations recorded so far.
    pub fn clear_ops(&self) {
        self.journal.ops.lock().unwrap().clear();
    }

    /// The next `times` writes of `key` (PutObject, CopyObject, UploadPart;
    /// full key, in any bucket) fail with 500 InternalError.
    pub fn fail(&self, key: &str, times: usize) {
        self.journal
            .faults
            .lock()
            .unwrap()
            .insert(key.to_string(), times);
    }

    /// PutObject and UploadPart requests that carried a checksum (a header
    /// or a trailer): S3-compatible servers other than AWS reject them.
    pub fn checksummed_uploads(&self) -> usize {
        self.checksummed.load(Ordering::Relaxed)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The accept loop, until `stopped`; then the runtime goes and every
/// connection with it.
fn serve(
    listener: std::net::TcpListener,
    server: Server,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(server);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build().into_shared();
        let mut stopped = std::pin::pin!(stopped);
        loop {
            let socket = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((socket, _)) => socket,
                    Err(_) => continue,
                },
                _ = &mut stopped => break,
            };
            let connection = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
    });
    runtime.shutdown_background();
}

/// `s3s-fs` with the operations it lacks (see the module header).
struct Server {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
    journal: Arc<Journal>,
    uploads: Arc<Mutex<Vec<Upload>>>,
    checksummed: Arc<AtomicUsize>,
}

impl Server {
    fn count_checksum<T>(&self, req: &S3Request<T>) {
        let carries_checksum = req.headers.keys().any(|name| {
            let name = name.as_str();
            name.starts_with("x-amz-checksum-")
                || name == "x-amz-trailer"
                || name == "x-amz-sdk-checksum-algorithm"
        });
        if carries_checksum {
            self.checksummed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `s3s-fs` creates a missing bucket on PutObject; S3 refuses.
    fn bucket_exists(&self, bucket: &str) -> S3Result<()> {
        match self.root.join(bucket).is_dir() {
            true => Ok(()),
            false => Err(s3s::s3_error!(NoSuchBucket)),
        }
    }

    fn forget_upload(&self, upload_id: &str) {
        self.uploads
            .lock()
            .unwrap()
            .retain(|u| u.upload_id != upload_id);
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Server")
    }
}

#[async_trait::async_trait]
impl S3 for Server {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.fs.create_bucket(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.fs.list_buckets(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.fs.get_bucket_location(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.bucket_exists(&req.input.bucket)?;
        self.journal.serve("PutObject", &req.input.key)?;
        self.count_checksum(&req);
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let attrs = Attrs {
            content_type: req.input.content_type.clone(),
            cache_control: req.input.cache_control.clone(),
            content_disposition: req.input.content_disposition.clone(),
            metadata: req.input.metadata.clone(),
        };
        let response = self.fs.put_object(req).await?;
        self.journal.keep(&bucket, &key, attrs);
        Ok(response)
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let op = match req.input.range {
            Some(_) => "GetObject range",
            None => "GetObject",
        };
        self.journal.serve(op, &req.input.key)?;
        let attrs = self.journal.attrs(&req.input.bucket, &req.input.key);
        let mut response = self.fs.get_object(req).await?;
        let output = &mut response.output;
        output.content_type = attrs.content_type;
        output.cache_control = attrs.cache_control;
        output.content_disposition = attrs.content_disposition;
        output.metadata = attrs.metadata;
        Ok(response)
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.journal.serve("HeadObject", &req.input.key)?;
        let attrs = self.journal.attrs(&req.input.bucket, &req.input.key);
        let mut response = self.fs.head_object(req).await?;
        let output = &mut response.output;
        output.content_type = attrs.content_type;
        output.cache_control = attrs.cache_control;
        output.content_disposition = attrs.content_disposition;
        output.metadata = attrs.metadata;
        Ok(response)
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.bucket_exists(&req.input.bucket)?;
        self.journal.serve("CopyObject", &req.input.key)?;
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let replace = req
            .input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let attrs = match (&req.input.copy_source, replace) {
            (_, true) => Attrs {
                content_type: req.input.content_type.clone(),
                cache_control: req.input.cache_control.clone(),
                content_disposition: req.input.content_disposition.clone(),
                metadata: req.input.metadata.clone(),
            },
            (CopySource::Bucket { bucket, key, .. }, false) => self.journal.attrs(bucket, key),
            _ => Attrs::default(),
        };
        let response = self.fs.copy_object(req).await?;
        self.journal.keep(&bucket, &key, attrs);
        Ok(response)
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.journal.serve("DeleteObject", &req.input.key)?;
        self.fs.delete_object(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.fs.delete_objects(req).await
    }

    /// Pages of at most `max_keys` (1,000 by default and at most, as S3);
    /// the continuation token is the last key of the page before.
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let prefix = req.input.prefix.clone().unwrap_or_default();
        let bucket_dir = self.root.join(&req.input.bucket);
        let token = req.input.continuation_token.clone();
        let max_keys = req.input.max_keys.unwrap_or(1_000).clamp(1, 1_000) as usize;
        let req = req.map_input(|mut input| {
            input.start_after = token.clone().or(input.start_after);
            input.continuation_token = None;
            input.max_keys = None;
            // `delimiter=` with nothing after it means no delimiter (rclone
            // sends it for a recursive listing); s3s-fs would join each key's
            // parts with the empty string, dropping its slashes.
            input.delimiter = input.delimiter.filter(|d| !d.is_empty());
            input
        });
        let response = self.fs.list_objects_v2(req).await?;
        Ok(response.map_output(|mut output| {
            let mut objects: Vec<Object> = output
                .contents
                .take()
                .unwrap_or_default()
                .into_iter()
                .filter(|o| o.key.as_deref().is_some_and(|k| k.starts_with(&prefix)))
                .collect();
            let truncated = objects.len() > max_keys;
            objects.truncate(max_keys);
            for object in &mut objects {
                let path = bucket_dir.join(object.key.as_deref().unwrap_or_default());
                object.e_tag = self.journal.etag(&path);
            }
            output.next_continuation_token = truncated
                .then(|| objects.last().and_then(|o| o.key.clone()))
                .flatten();
            output.is_truncated = Some(truncated);
            output.key_count = Some(objects.len() as i32);
            output.max_keys = Some(max_keys as i32);
            output.continuation_token = token;
            output.contents = Some(objects);
            output
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        self.bucket_exists(&bucket)?;
        self.journal.serve("CreateMultipartUpload", &key)?;
        self.journal.keep(
            &bucket,
            &key,
            Attrs {
                content_type: req.input.content_type.clone(),
                cache_control: req.input.cache_control.clone(),
                content_disposition: req.input.content_disposition.clone(),
                metadata: req.input.metadata.clone(),
            },
        );
        let response = self.fs.create_multipart_upload(req).await?;
        if let Some(upload_id) = &response.output.upload_id {
            self.uploads.lock().unwrap().push(Upload {
                bucket,
                key,
                upload_id: upload_id.clone(),
                initiated: SystemTime::now(),
            });
        }
        Ok(response)
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.journal.serve("UploadPart", &req.input.key)?;
        self.fs.upload_part(req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.fs.list_parts(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let upload_id = req.input.upload_id.clone();
        let response = self.fs.complete_multipart_upload(req).await?;
        self.forget_upload(&upload_id);
        Ok(response)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let upload_id = req.input.upload_id.clone();
        let known = self
            .uploads
            .lock()
            .unwrap()
            .iter()
            .any(|u| u.upload_id == upload_id);
        if !known {
            return Err(s3s::s3_error!(NoSuchUpload));
        }
        let response = self.fs.abort_multipart_upload(req).await?;
        self.forget_upload(&upload_id);
        Ok(response)
    }

    /// The recorded open uploads of the bucket under the prefix, by key
    /// then upload id, after the markers, at most `max_uploads` (1,000).
    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = input.max_uploads.unwrap_or(1_000).clamp(1, 1_000) as usize;
        let after = (
            input.key_marker.clone().unwrap_or_default(),
            input.upload_id_marker.clone().unwrap_or_default(),
        );
        let mut open: Vec<Upload> = self
            .uploads
            .lock()
            .unwrap()
            .iter()
            .filter(|u| u.bucket == input.bucket && u.key.starts_with(&prefix))
            .filter(|u| (u.key.clone(), u.upload_id.clone()) > after)
            .cloned()
            .collect();
        open.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
        let truncated = open.len() > max;
        open.truncate(max);
        let last = open.last().cloned();
        let uploads = open
            .into_iter()
            .map(|u| MultipartUpload {
                key: Some(u.key),
                upload_id: Some(u.upload_id),
                initiated: Some(u.initiated.into()),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            is_truncated: Some(truncated),
            next_key_marker: last.as_ref().filter(|_| truncated).map(|u| u.key.clone()),
            next_upload_id_marker: last.filter(|_| truncated).map(|u| u.upload_id),
            max_uploads: Some(max as i32),
            uploads: Some(uploads),
            ..Default::default()
        }))
    }
}

/// The MD5 of `bytes`, as a number for `{:x}`.
fn md5_of(bytes: &[u8]) -> u128 {
    use md5::{Digest, Md5};
    u128::from_be_bytes(Md5::digest(bytes).into())
}
