//! An S3 store (AWS S3, MinIO, R2, Bucketeer…) through `aws-sdk-s3`.
//!
//! Credentials, region and profile come from the standard AWS chain; the
//! endpoint and path style from the store URL. Checksums are sent and
//! checked only when an operation requires them: since early 2025 the SDK
//! adds one to every upload by default, which S3-compatible servers other
//! than AWS reject. TLS is rustls on ring, the crate's one TLS stack.
//!
//! Uploads: a body that fits in the first part is one PutObject; a longer
//! one is a multipart upload on the schedule of [`part_size`], reading the
//! next part while the current one is sent (two buffers, reused). An
//! [`OpenUpload`] guard aborts the upload on error and when the future is
//! dropped, so nothing half-written is left open; what a kill -9 leaves is
//! found by [`S3Store::abandoned`].

use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::redact::mask_secrets;
use crate::storage::url::S3Spec;
use crate::storage::{Abandoned, Attributes, ObjectMeta, Progress, StorageError, Written, hex};

/// Sets an object's [`Attributes`] on a request builder: PutObject,
/// CreateMultipartUpload and CopyObject take the same five, but the SDK's
/// builders share no trait for them.
macro_rules! with_attributes {
    ($request:expr, $attributes:expr) => {{
        let attributes: &Attributes = $attributes;
        $request
            .set_content_type(attributes.content_type.clone())
            .set_cache_control(attributes.cache_control.clone())
            .set_content_disposition(attributes.content_disposition.clone())
            .set_content_encoding(attributes.content_encoding.clone())
            .set_metadata(attributes.user_metadata())
    }};
}

/// An object's [`Attributes`] from a GetObject or HeadObject answer (two
/// types with the same getters).
macro_rules! read_attributes {
    ($output:expr) => {{
        let output = &$output;
        Attributes {
            content_type: output.content_type().map(str::to_string),
            cache_control: output.cache_control().map(str::to_string),
            content_disposition: output.content_disposition().map(str::to_string),
            content_encoding: output.content_encoding().map(str::to_string),
            metadata: output
                .metadata()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        }
    }};
}

/// The first parts of a multipart upload are 8 MiB (also the largest body
/// sent as one PutObject).
pub(super) const FIRST_PART: u64 = 8 << 20;

/// S3's limit on the parts of one upload.
pub const MAX_PARTS: u32 = 10_000;

/// Parts per step of the schedule.
const STEP: u32 = 500;

/// The largest object one CopyObject copies (S3's limit: 5 GiB).
const MAX_COPY: u64 = 5 << 30;

/// The part size of a multipart copy above [`MAX_COPY`].
const COPY_PART: u64 = 512 << 20;

/// Keys per ListObjectsV2 page (S3's maximum).
const PAGE: i32 = 1_000;

/// The region used when neither the URL nor the AWS chain names one.
const DEFAULT_REGION: &str = "us-east-1";

/// The size of part `number` (1-based) when the first part is `first`.
///
/// The schedule: `first` for parts 1–500, then `first` more every 500
/// parts — with 8 MiB, 16 MiB for parts 501–1,000, 24 MiB for 1,001–1,500,
/// …, 160 MiB for 9,501–10,000. A stream of unknown length thus starts with
/// small parts (little memory for small dumps), and 10,000 parts hold
/// 8 MiB × 500 × (1 + 2 + … + 20) = 840,000 MiB ≈ 820 GiB, past the 500 GB
/// the contract asks for (the SDK's fixed 8 MiB would stop near 78 GiB). A
/// 500 GiB stream ends at part 7,750 with 128 MiB parts; the largest part,
/// 160 MiB, is far under S3's 5 GiB maximum, and two parts in flight cost
/// at most 320 MiB, only for streams beyond 742 GiB.
pub fn part_size(first: u64, number: u32) -> u64 {
    first * (1 + u64::from(number.saturating_sub(1) / STEP))
}

#[derive(Clone)]
pub(super) struct S3Store {
    spec: Arc<S3Spec>,
    client: Client,
    /// Set once HeadBucket has answered: a later 404 is the key's.
    bucket_seen: Arc<std::sync::atomic::AtomicBool>,
    /// The access key id of [`S3Store::with_static_credentials`]; `None`
    /// for the AWS chain's.
    static_key: Option<String>,
}

impl S3Store {
    pub async fn connect(spec: S3Spec) -> S3Store {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
        if let Some(region) = &spec.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(spec.path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if shared.region().is_none() {
            config = config.region(Region::new(DEFAULT_REGION));
        }
        if let Some(endpoint) = &spec.endpoint {
            config = config.endpoint_url(endpoint);
        }
        S3Store {
            spec: Arc::new(spec),
            client: Client::from_conf(config.build()),
            bucket_seen: Arc::default(),
            static_key: None,
        }
    }

    pub fn with_static_credentials(&self, access_key_id: &str, secret_access_key: &str) -> S3Store {
        let credentials = Credentials::new(access_key_id, secret_access_key, None, None, "static");
        let config = self
            .client
            .config()
            .to_builder()
            .credentials_provider(credentials);
        S3Store {
            spec: self.spec.clone(),
            client: Client::from_conf(config.build()),
            bucket_seen: Arc::default(),
            static_key: Some(access_key_id.to_string()),
        }
    }

    pub fn location(&self) -> String {
        self.spec.url()
    }

    /// See [`crate::storage::Store::identity`].
    pub fn identity(&self) -> String {
        let endpoint = self
            .spec
            .endpoint
            .as_deref()
            .map(|e| e.trim_end_matches('/').to_ascii_lowercase())
            .unwrap_or_else(|| "aws".to_string());
        let prefix = match self.spec.prefix.as_str() {
            "" => String::new(),
            prefix => format!("{prefix}/"),
        };
        format!("s3://{endpoint}/{}/{prefix}", self.spec.bucket)
    }

    /// The object key of `key`: under the store's prefix.
    fn full_key(&self, key: &str) -> String {
        match self.spec.prefix.as_str() {
            "" => key.to_string(),
            prefix => format!("{prefix}/{key}"),
        }
    }

    /// `key` relative to the store's prefix, if it lies under it.
    fn relative_key<'k>(&self, full: &'k str) -> Option<&'k str> {
        match self.spec.prefix.as_str() {
            "" => Some(full),
            prefix => full.strip_prefix(prefix)?.strip_prefix('/'),
        }
    }

    /// An SDK failure as the variant that says what went wrong.
    fn error<E>(&self, key: &str, action: &'static str, error: SdkError<E>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let location = self.location();
        let key = key.to_string();
        let message = mask_secrets(&describe(&error));
        let code = error
            .as_service_error()
            .and_then(|e| e.code())
            .unwrap_or("");
        let status = error.raw_response().map(|r| r.status().as_u16());
        match (&error, code) {
            (_, "NoSuchBucket") => StorageError::NoSuchBucket {
                location,
                bucket: self.spec.bucket.clone(),
            },
            (_, "NoSuchKey" | "NotFound") => StorageError::NotFound { location, key },
            (
                _,
                "AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "AllAccessDisabled",
            ) => StorageError::AccessDenied {
                location,
                key,
                action,
                message,
            },
            _ if status == Some(403) => StorageError::AccessDenied {
                location,
                key,
                action,
                message,
            },
            (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _) => {
                if message.to_ascii_lowercase().contains("credentials") {
                    StorageError::NoCredentials {
                        location,
                        key,
                        action,
                        message,
                    }
                } else {
                    StorageError::Unreachable {
                        location,
                        key,
                        action,
                        endpoint: self.endpoint(),
                        message,
                    }
                }
            }
            _ if message.to_ascii_lowercase().contains("no credentials") => {
                StorageError::NoCredentials {
                    location,
                    key,
                    action,
                    message,
                }
            }
            _ => StorageError::S3 {
                location,
                key,
                action,
                message,
            },
        }
    }

    /// What an unreachable-error names: the endpoint, or AWS's.
    fn endpoint(&self) -> String {
        match &self.spec.endpoint {
            Some(endpoint) => format!("`{endpoint}`"),
            None => "the AWS S3 endpoint".to_string(),
        }
    }

    pub async fn put_stream<R: AsyncRead + Unpin + Send>(
        &self,
        key: &str,
        mut body: R,
        progress: &(dyn Fn(u64) + Send + Sync),
        first_part: u64,
        attributes: &Attributes,
    ) -> Result<Written, StorageError> {
        let mut reader = Hashing {
            hasher: Sha256::new(),
            bytes: 0,
            progress: Progress::new(progress),
        };
        let read_error = |e| StorageError::Io {
            location: self.location(),
            key: key.to_string(),
            action: "reading the body for",
            source: e,
        };
        let mut first = Vec::new();
        reader
            .fill(&mut body, &mut first, part_size(first_part, 1))
            .await
            .map_err(read_error)?;
        let mut second = Vec::new();
        if first.len() as u64 == part_size(first_part, 1) {
            reader
                .fill(&mut body, &mut second, part_size(first_part, 2))
                .await
                .map_err(read_error)?;
        }
        if second.is_empty() {
            self.put_object(key, first, attributes).await?;
            return Ok(reader.written(key, 1));
        }

        let full_key = self.full_key(key);
        let request = self
            .client
            .create_multipart_upload()
            .bucket(&self.spec.bucket)
            .key(&full_key);
        let created = with_attributes!(request, attributes)
            .send()
            .await
            .map_err(|e| self.error(key, "starting the multipart upload of", e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let upload = OpenUpload {
            client: self.client.clone(),
            bucket: self.spec.bucket.clone(),
            key: full_key,
            upload_id,
            armed: true,
        };
        match self
            .upload_parts(
                key,
                &upload,
                &mut body,
                &mut reader,
                first,
                second,
                first_part,
            )
            .await
        {
            Ok(parts) => {
                upload.disarm();
                Ok(reader.written(key, parts))
            }
            Err(error) => {
                upload.abort().await;
                Err(error)
            }
        }
    }

    /// Sends the parts of an open upload and completes it; the part count.
    /// Part `n` is sent while part `n + 1` is read, so two buffers are in
    /// use; the one just sent is reused for the next read.
    #[allow(clippy::too_many_arguments)]
    async fn upload_parts<R: AsyncRead + Unpin + Send>(
        &self,
        key: &str,
        upload: &OpenUpload,
        body: &mut R,
        reader: &mut Hashing<'_>,
        first: Vec<u8>,
        second: Vec<u8>,
        first_part: u64,
    ) -> Result<u32, StorageError> {
        let mut completed = Vec::new();
        // Part 1 alone: part 2 is already read (it told us this is no single PUT).
        let (part, spare) = self.upload_part(key, upload, 1, first).await?;
        completed.push(part);
        let mut current = second;
        let mut spare = spare;
        let mut number = 2u32;
        loop {
            let next_size = part_size(first_part, number + 1);
            let (sent, read) = tokio::join!(
                self.upload_part(key, upload, number, current),
                reader.fill(body, &mut spare, next_size),
            );
            let (part, emptied) = sent?;
            completed.push(part);
            read.map_err(|e| StorageError::Io {
                location: self.location(),
                key: key.to_string(),
                action: "reading the body for",
                source: e,
            })?;
            if spare.is_empty() {
                break;
            }
            if number == MAX_PARTS {
                return Err(StorageError::TooLarge {
                    location: self.location(),
                    key: key.to_string(),
                    limit: (1..=MAX_PARTS).map(|n| part_size(first_part, n)).sum(),
                });
            }
            number += 1;
            current = std::mem::replace(&mut spare, emptied);
        }
        self.client
            .complete_multipart_upload()
            .bucket(&upload.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.error(key, "completing the multipart upload of", e))?;
        Ok(number)
    }

    /// Sends one part; its completion record, and the buffer back (empty)
    /// for the next read.
    async fn upload_part(
        &self,
        key: &str,
        upload: &OpenUpload,
        number: u32,
        data: Vec<u8>,
    ) -> Result<(CompletedPart, Vec<u8>), StorageError> {
        let data = Bytes::from(data);
        let sent = self
            .client
            .upload_part()
            .bucket(&upload.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .part_number(number as i32)
            .content_length(data.len() as i64)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .map_err(|e| self.error(key, "uploading a part of", e))?;
        let part = CompletedPart::builder()
            .part_number(number as i32)
            .set_e_tag(sent.e_tag().map(str::to_string))
            .build();
        Ok((part, reuse(data)))
    }

    /// A body already in memory and no larger than the first part: one
    /// PutObject, without copying it into a part buffer.
    pub async fn put_bytes(&self, key: &str, data: Vec<u8>) -> Result<Written, StorageError> {
        let written = Written {
            key: key.to_string(),
            bytes: data.len() as u64,
            sha256: hex(&Sha256::digest(&data)),
            parts: 1,
        };
        self.put_object(key, data, &Attributes::default()).await?;
        Ok(written)
    }

    async fn put_object(
        &self,
        key: &str,
        data: Vec<u8>,
        attributes: &Attributes,
    ) -> Result<(), StorageError> {
        let length = data.len() as i64;
        let request = self
            .client
            .put_object()
            .bucket(&self.spec.bucket)
            .key(self.full_key(key))
            .content_length(length);
        with_attributes!(request, attributes)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.error(key, "writing", e))?;
        Ok(())
    }

    pub async fn get(
        &self,
        key: &str,
        range: Option<u64>,
    ) -> Result<(Box<dyn AsyncRead + Unpin + Send>, Attributes), StorageError> {
        let object = self
            .client
            .get_object()
            .bucket(&self.spec.bucket)
            .key(self.full_key(key))
            .set_range(range.map(|n| format!("bytes=0-{}", n.max(1) - 1)))
            .send()
            .await
            .map_err(|e| self.error(key, "reading", e))?;
        let attributes = read_attributes!(object);
        Ok((Box::new(object.body.into_async_read()), attributes))
    }

    /// Whether a CopyObject from `other` into this store can work: both on
    /// one endpoint, region and credentials (one service that holds both
    /// buckets).
    pub fn same_service(&self, other: &S3Store) -> bool {
        self.spec.endpoint == other.spec.endpoint
            && self.client.config().region() == other.client.config().region()
            && self.static_key == other.static_key
    }

    /// Copies `from_key` of `from` to `key`, inside the service: CopyObject,
    /// or UploadPartCopy in parts of [`COPY_PART`] above S3's 5 GiB limit of
    /// one copy. `replace`: the attributes to give the copy (the source's
    /// otherwise, as S3 keeps them).
    pub async fn copy_from(
        &self,
        from: &S3Store,
        from_key: &str,
        key: &str,
        size: u64,
        replace: Option<&Attributes>,
    ) -> Result<(), StorageError> {
        let source = copy_source(&from.spec.bucket, &from.full_key(from_key));
        if size <= MAX_COPY {
            let mut request = self
                .client
                .copy_object()
                .bucket(&self.spec.bucket)
                .key(self.full_key(key))
                .copy_source(source);
            if let Some(attributes) = replace {
                request = with_attributes!(
                    request.metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace),
                    attributes
                );
            }
            request
                .send()
                .await
                .map_err(|e| self.error(key, "copying into", e))?;
            return Ok(());
        }
        let attributes = match replace {
            Some(attributes) => attributes.clone(),
            None => from.head_attributes(from_key).await?,
        };
        let full_key = self.full_key(key);
        let request = self
            .client
            .create_multipart_upload()
            .bucket(&self.spec.bucket)
            .key(&full_key);
        let created = with_attributes!(request, &attributes)
            .send()
            .await
            .map_err(|e| self.error(key, "starting the multipart copy into", e))?;
        let upload = OpenUpload {
            client: self.client.clone(),
            bucket: self.spec.bucket.clone(),
            key: full_key,
            upload_id: created.upload_id().unwrap_or_default().to_string(),
            armed: true,
        };
        let mut parts = Vec::new();
        let mut start = 0u64;
        let mut number = 1i32;
        while start < size {
            let end = (start + COPY_PART).min(size) - 1;
            let copied = self
                .client
                .upload_part_copy()
                .bucket(&upload.bucket)
                .key(&upload.key)
                .upload_id(&upload.upload_id)
                .part_number(number)
                .copy_source(copy_source(&from.spec.bucket, &from.full_key(from_key)))
                .copy_source_range(format!("bytes={start}-{end}"))
                .send()
                .await;
            let copied = match copied {
                Ok(copied) => copied,
                Err(e) => {
                    let error = self.error(key, "copying a part into", e);
                    upload.abort().await;
                    return Err(error);
                }
            };
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(
                        copied
                            .copy_part_result()
                            .and_then(|r| r.e_tag())
                            .map(str::to_string),
                    )
                    .build(),
            );
            start = end + 1;
            number += 1;
        }
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&upload.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match completed {
            Ok(_) => {
                upload.disarm();
                Ok(())
            }
            Err(e) => {
                let error = self.error(key, "completing the multipart copy into", e);
                upload.abort().await;
                Err(error)
            }
        }
    }

    async fn head_attributes(&self, key: &str) -> Result<Attributes, StorageError> {
        match self.head(key).await? {
            Some((_, attributes)) => Ok(attributes),
            None => Err(StorageError::NotFound {
                location: self.location(),
                key: key.to_string(),
            }),
        }
    }

    pub async fn head(&self, key: &str) -> Result<Option<(ObjectMeta, Attributes)>, StorageError> {
        let result = self
            .client
            .head_object()
            .bucket(&self.spec.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        match result {
            Ok(head) => Ok(Some((
                ObjectMeta {
                    key: key.to_string(),
                    size: head.content_length().unwrap_or(0).max(0) as u64,
                    last_modified: head.last_modified().and_then(to_chrono),
                    etag: head.e_tag().map(str::to_string),
                },
                read_attributes!(head),
            ))),
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_not_found())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                self.bucket_exists(key).await.map(|()| None)
            }
            Err(e) => Err(self.error(key, "reading the metadata of", e)),
        }
    }

    /// A 404 to HEAD has no body, so no error code: the bucket may be what
    /// is missing. HeadBucket tells them apart, once per store.
    async fn bucket_exists(&self, key: &str) -> Result<(), StorageError> {
        use std::sync::atomic::Ordering;
        if self.bucket_seen.load(Ordering::Relaxed) {
            return Ok(());
        }
        match self
            .client
            .head_bucket()
            .bucket(&self.spec.bucket)
            .send()
            .await
        {
            Ok(_) => {
                self.bucket_seen.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                Err(StorageError::NoSuchBucket {
                    location: self.location(),
                    bucket: self.spec.bucket.clone(),
                })
            }
            Err(e) => Err(self.error(key, "checking the bucket of", e)),
        }
    }

    pub fn list(&self, prefix: &str) -> S3Listing {
        S3Listing {
            store: self.clone(),
            prefix: prefix.to_string(),
            page: Vec::new().into_iter(),
            token: None,
            done: false,
        }
    }

    /// S3 answers 204 for an absent key; some compatible servers answer
    /// NoSuchKey, which is the same outcome.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let result = self
            .client
            .delete_object()
            .bucket(&self.spec.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        match result.map_err(|e| self.error(key, "deleting", e)) {
            Ok(_) | Err(StorageError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    pub async fn abandoned(&self, prefix: &str) -> Result<Vec<Abandoned>, StorageError> {
        let mut found = Vec::new();
        let (mut key_marker, mut upload_marker) = (None, None);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.spec.bucket)
                .prefix(self.full_key_prefix(prefix))
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(upload_marker.take())
                .send()
                .await
                .map_err(|e| self.error(prefix, "listing the unfinished uploads under", e))?;
            for upload in page.uploads() {
                let (Some(full), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let Some(key) = self.relative_key(full) else {
                    continue;
                };
                found.push(Abandoned {
                    key: key.to_string(),
                    detail: id.to_string(),
                    started: upload.initiated().and_then(to_chrono),
                });
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            upload_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && upload_marker.is_none() {
                break;
            }
        }
        Ok(found)
    }

    pub async fn abort(&self, abandoned: &Abandoned) -> Result<(), StorageError> {
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.spec.bucket)
            .key(self.full_key(&abandoned.key))
            .upload_id(&abandoned.detail)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("NoSuchUpload") => Ok(()),
            Err(e) => Err(self.error(&abandoned.key, "aborting the unfinished upload of", e)),
        }
    }

    /// A listing prefix under the store's prefix.
    fn full_key_prefix(&self, prefix: &str) -> String {
        match self.spec.prefix.as_str() {
            "" => prefix.to_string(),
            store => format!("{store}/{prefix}"),
        }
    }
}

/// The objects under a prefix, fetched a ListObjectsV2 page at a time.
pub(super) struct S3Listing {
    store: S3Store,
    prefix: String,
    page: std::vec::IntoIter<ObjectMeta>,
    token: Option<String>,
    done: bool,
}

impl S3Listing {
    pub async fn next(&mut self) -> Option<Result<ObjectMeta, StorageError>> {
        loop {
            if let Some(object) = self.page.next() {
                return Some(Ok(object));
            }
            if self.done {
                return None;
            }
            if let Err(error) = self.fetch().await {
                self.done = true;
                return Some(Err(error));
            }
        }
    }

    async fn fetch(&mut self) -> Result<(), StorageError> {
        let store = &self.store;
        let page = store
            .client
            .list_objects_v2()
            .bucket(&store.spec.bucket)
            .prefix(store.full_key_prefix(&self.prefix))
            .max_keys(PAGE)
            .set_continuation_token(self.token.take())
            .send()
            .await
            .map_err(|e| store.error(&self.prefix, "listing", e))?;
        let objects: Vec<ObjectMeta> = page
            .contents()
            .iter()
            .filter_map(|object| {
                let key = store.relative_key(object.key()?)?;
                Some(ObjectMeta {
                    key: key.to_string(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    last_modified: object.last_modified().and_then(to_chrono),
                    etag: object.e_tag().map(str::to_string),
                })
            })
            .collect();
        self.page = objects.into_iter();
        self.token = page.next_continuation_token().map(str::to_string);
        self.done = page.is_truncated() != Some(true) || self.token.is_none();
        Ok(())
    }
}

/// An open multipart upload. Dropped while armed (the `put_stream` future
/// was dropped mid-upload: Ctrl-C, a cancelled step), it spawns the
/// AbortMultipartUpload on the current runtime — a drop cannot wait; a
/// runtime that shuts down first leaves the upload to
/// [`S3Store::abandoned`]. On an error, [`OpenUpload::abort`] is awaited
/// instead.
struct OpenUpload {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl OpenUpload {
    fn disarm(mut self) {
        self.armed = false;
    }

    /// Aborts now, waiting for the answer; a failure is left to
    /// [`S3Store::abandoned`] (the error that brought us here matters more).
    async fn abort(mut self) {
        self.armed = false;
        let _ = abort_upload(&self.client, &self.bucket, &self.key, &self.upload_id).await;
    }
}

impl Drop for OpenUpload {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, bucket, key, upload_id) = (
            self.client.clone(),
            std::mem::take(&mut self.bucket),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.upload_id),
        );
        runtime.spawn(async move {
            let _ = abort_upload(&client, &bucket, &key, &upload_id).await;
        });
    }
}

async fn abort_upload(client: &Client, bucket: &str, key: &str, upload_id: &str) -> Result<(), ()> {
    client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
        .map(drop)
        .map_err(drop)
}

/// The body's reader side: hashes what it reads, counts it, tells progress.
struct Hashing<'p> {
    hasher: Sha256,
    bytes: u64,
    progress: Progress<'p>,
}

impl Hashing<'_> {
    /// Reads into `buffer` (emptied first) until it holds `size` bytes or
    /// the body ends. The reads stay within the buffer's capacity, so the
    /// buffer never holds more than one part.
    async fn fill<R: AsyncRead + Unpin>(
        &mut self,
        body: &mut R,
        buffer: &mut Vec<u8>,
        size: u64,
    ) -> std::io::Result<()> {
        buffer.clear();
        while (buffer.len() as u64) < size {
            let start = buffer.len();
            if start == buffer.capacity() {
                // Grows by doubling from 64 KiB but never past the part size:
                // a small body costs little, a reused buffer is not regrown.
                let wanted = (size as usize - start).min(start.max(64 << 10));
                buffer.reserve_exact(wanted);
            }
            let n = (&mut *body)
                .take(size - start as u64)
                .read_buf(buffer)
                .await?;
            if n == 0 {
                break;
            }
            self.hasher.update(&buffer[start..]);
            self.bytes += n as u64;
            self.progress.advance(self.bytes);
        }
        Ok(())
    }

    fn written(mut self, key: &str, parts: u32) -> Written {
        self.progress.finish(self.bytes);
        Written {
            key: key.to_string(),
            bytes: self.bytes,
            sha256: hex(&self.hasher.finalize()),
            parts,
        }
    }
}

/// The buffer behind `data` back for reuse, when the SDK let go of its
/// copies; a new one otherwise.
fn reuse(data: Bytes) -> Vec<u8> {
    match data.try_into_mut() {
        Ok(bytes) => {
            let mut buffer = Vec::from(bytes);
            buffer.clear();
            buffer
        }
        Err(_) => Vec::new(),
    }
}

/// The error and its causes, one line (`dispatch failure: io error: …:
/// Connection refused`): what [`DisplayErrorContext`] prints, without the
/// `Debug` dump of the whole error it appends.
fn describe<E: std::error::Error + 'static>(error: &E) -> String {
    let full = DisplayErrorContext(error).to_string();
    let dump = format!(" ({error:?})");
    match full.strip_suffix(&dump) {
        Some(chain) => chain.to_string(),
        None => full,
    }
}

/// `bucket/key` for `x-amz-copy-source`, the key percent-encoded except
/// for `/` (S3 decodes it; spaces, `+`, `%` and non-ASCII must be encoded).
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = String::with_capacity(bucket.len() + key.len() + 1);
    out.push_str(bucket);
    out.push('/');
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn to_chrono(time: &aws_sdk_s3::primitives::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(time.secs(), time.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn the_part_schedule_starts_at_8_mib_and_reaches_500_gib() {
        assert_eq!(part_size(FIRST_PART, 1), 8 * MIB);
        assert_eq!(part_size(FIRST_PART, 500), 8 * MIB);
        assert_eq!(part_size(FIRST_PART, 501), 16 * MIB);
        assert_eq!(part_size(FIRST_PART, MAX_PARTS), 160 * MIB);
        let capacity: u64 = (1..=MAX_PARTS).map(|n| part_size(FIRST_PART, n)).sum();
        assert!(
            capacity >= 500 * GIB,
            "10,000 parts hold only {capacity} bytes"
        );
        assert_eq!(capacity, 840_000 * MIB);
        // Where a 500 GiB stream ends.
        let mut total = 0;
        let last = (1..=MAX_PARTS)
            .find(|&n| {
                total += part_size(FIRST_PART, n);
                total >= 500 * GIB
            })
            .unwrap();
        assert_eq!((last, part_size(FIRST_PART, last)), (7_750, 128 * MIB));
        // Where the largest parts start: beyond 742 GiB.
        let before_last_step: u64 = (1..=9_500).map(|n| part_size(FIRST_PART, n)).sum();
        assert_eq!(before_last_step, 760_000 * MIB);
        let largest = (1..=MAX_PARTS)
            .map(|n| part_size(FIRST_PART, n))
            .max()
            .unwrap();
        assert!(
            largest <= 5 * GIB,
            "a part of {largest} bytes is over S3's 5 GiB maximum"
        );
        // Parts never shrink, and S3's 5 MiB minimum (all parts but the last) holds.
        assert!((2..=MAX_PARTS).all(|n| part_size(FIRST_PART, n) >= part_size(FIRST_PART, n - 1)));
        assert!(part_size(FIRST_PART, 1) >= 5 * MIB);
    }
}
