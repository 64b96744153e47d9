//! The overseas bucket: conditional, checksummed writes that never overwrite what they did not
//! check: a copy writes only where no object is (`If-None-Match: *`), a refresh replaces only the
//! object it revalidated (`If-Match` on its ETag), and deletes only that object.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use aws_sdk_s3::config::{RequestChecksumCalculation, StalledStreamProtectionConfig};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumType, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::StreamExt;
use http_body::{Frame, SizeHint};
use tokio::time::Instant;

use crate::error::BackfillError;
use crate::origin::BodyStream;
use crate::plan::ObjectAttributes;

/// Where and what to write.
#[derive(Debug, Clone)]
pub struct Target {
    pub bucket: String,
    pub key: String,
    pub attributes: ObjectAttributes,
    pub condition: WriteCondition,
}

/// What a write requires of the key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WriteCondition {
    /// `If-None-Match: *`: no object has the key (a copy).
    #[default]
    Absent,
    /// `If-Match: <etag>`: the object there is still the one with this ETag (a refresh replacing
    /// what it revalidated).
    Replaces(String),
}

/// How a conditional write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    /// The condition failed. `If-None-Match: *`: another writer got there first, which for an
    /// idempotent copy is done. `If-Match`: the object changed or went away since it was
    /// checked (412, or S3's 404 NoSuchKey).
    AlreadyExists,
}

/// An object as HeadObject describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Quoted, as S3 sends it.
    pub etag: String,
    /// The user metadata, names lower-case without `x-amz-meta-`.
    pub metadata: std::collections::HashMap<String, String>,
}

/// How a conditional delete ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// The object is no longer the one checked (412): something newer is there.
    Changed,
    /// No object has the key any more (404).
    Gone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub number: i32,
    pub etag: String,
    pub crc32c: u32,
}

/// A part as ListParts describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPart {
    pub number: i32,
    pub etag: String,
    pub size: u64,
    /// `None` when S3 gave no CRC32C (an upload not created with it).
    pub crc32c: Option<u32>,
}

/// Every call ends by its `deadline`: one cut there fails with [`BackfillError::Deadline`], so that
/// the invocation still answers with its batch response.
pub trait ObjectStore: Send + Sync {
    fn exists(
        &self,
        bucket: &str,
        key: &str,
        deadline: Instant,
    ) -> impl Future<Output = Result<bool, BackfillError>> + Send;

    /// The object's ETag and metadata; `None` if the key has no object.
    fn head(
        &self,
        bucket: &str,
        key: &str,
        deadline: Instant,
    ) -> impl Future<Output = Result<Option<Head>, BackfillError>> + Send;

    /// Deletes the object only if its ETag is still `etag` (DeleteObject `If-Match`).
    fn delete_if_match(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
        deadline: Instant,
    ) -> impl Future<Output = Result<Deleted, BackfillError>> + Send;

    /// One page (up to 1,000) of the keys under `prefix`, and where the next page starts.
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        continuation: Option<String>,
        deadline: Instant,
    ) -> impl Future<Output = Result<(Vec<String>, Option<String>), BackfillError>> + Send;

    fn put(
        &self,
        target: &Target,
        body: Bytes,
        crc32c: u32,
        deadline: Instant,
    ) -> impl Future<Output = Result<Written, BackfillError>> + Send;

    /// One PutObject streamed from the origin's body of exactly `length` bytes, its CRC32C sent
    /// as a trailer. S3 keeps nothing unless the whole body arrives and matches; an origin error
    /// (truncation, more bytes than announced) is returned as such.
    fn put_stream(
        &self,
        target: &Target,
        body: BodyStream,
        length: u64,
        deadline: Instant,
    ) -> impl Future<Output = Result<Written, BackfillError>> + Send;

    fn create_multipart(
        &self,
        target: &Target,
        deadline: Instant,
    ) -> impl Future<Output = Result<String, BackfillError>> + Send;

    fn upload_part(
        &self,
        target: &Target,
        upload_id: &str,
        number: i32,
        body: Bytes,
        crc32c: u32,
        deadline: Instant,
    ) -> impl Future<Output = Result<Part, BackfillError>> + Send;

    /// One part streamed from the origin's body of exactly `length` bytes, its CRC32C computed
    /// on the way and sent as a trailer (S3 keeps the part only if it matches);
    /// [`BackfillError::UploadGone`] if S3 no longer has the upload.
    #[allow(clippy::too_many_arguments)]
    fn upload_part_stream(
        &self,
        target: &Target,
        upload_id: &str,
        number: i32,
        body: BodyStream,
        length: u64,
        deadline: Instant,
    ) -> impl Future<Output = Result<Part, BackfillError>> + Send;

    /// Every part of an upload S3 holds, in order (ListParts, 1,000 a page);
    /// [`BackfillError::UploadGone`] if S3 no longer has the upload.
    fn list_parts(
        &self,
        target: &Target,
        upload_id: &str,
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<ListedPart>, BackfillError>> + Send;

    /// Completes with the parts and the full-object CRC32C, under the target's condition.
    fn complete_multipart(
        &self,
        target: &Target,
        upload_id: &str,
        parts: Vec<Part>,
        crc32c: u32,
        deadline: Instant,
    ) -> impl Future<Output = Result<Written, BackfillError>> + Send;

    fn abort_multipart(
        &self,
        target: &Target,
        upload_id: &str,
        deadline: Instant,
    ) -> impl Future<Output = Result<(), BackfillError>> + Send;
}

pub use shared::checksum::crc32c_value as crc32c_header;

macro_rules! with_attributes {
    ($builder:expr, $attributes:expr) => {{
        let attributes = $attributes;
        let mut builder = $builder
            .set_content_type(attributes.content_type.clone())
            .set_cache_control(attributes.cache_control.clone())
            .set_content_encoding(attributes.content_encoding.clone())
            .set_content_disposition(attributes.content_disposition.clone())
            .set_content_language(attributes.content_language.clone());
        for (name, value) in &attributes.metadata {
            builder = builder.metadata(name, value);
        }
        builder
    }};
}

pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Store { client }
    }

    /// A PutObject of `length` bytes with the target's attributes, under its condition.
    fn conditional_put(
        &self,
        target: &Target,
        length: u64,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        let request = self
            .client
            .put_object()
            .bucket(&target.bucket)
            .key(&target.key)
            .content_length(length as i64);
        let request = match &target.condition {
            WriteCondition::Absent => request.if_none_match("*"),
            WriteCondition::Replaces(etag) => request.if_match(etag),
        };
        with_attributes!(request, &target.attributes)
    }
}

/// A configuration for one call that ends it by `deadline`; none when the deadline has passed.
fn until(
    client: &aws_sdk_s3::Client,
    deadline: Instant,
) -> Result<aws_sdk_s3::config::Builder, BackfillError> {
    let timeouts = shared::aws::timeouts_until(client.config().timeout_config(), deadline)
        .ok_or(BackfillError::Deadline)?;
    Ok(aws_sdk_s3::config::Builder::default().timeout_config(timeouts))
}

/// A write whose body streams from the origin: its checksum computed as it goes (a trailer), and
/// the SDK's upload stall protection off, since a body waiting for the origin is not a stalled
/// upload (see `put_stream`).
fn streamed(bounded: aws_sdk_s3::config::Builder) -> aws_sdk_s3::config::Builder {
    bounded
        .request_checksum_calculation(RequestChecksumCalculation::WhenSupported)
        .stalled_stream_protection(
            StalledStreamProtectionConfig::enabled()
                .upload_enabled(false)
                .build(),
        )
}

/// Classifies an S3 error: 412 (and, for `If-Match`, 404 NoSuchKey: the object checked is gone)
/// is the condition failing, 409 a concurrent write to retry.
fn write_error<E, R>(
    operation: &'static str,
    err: aws_sdk_s3::error::SdkError<E, R>,
) -> Result<Written, BackfillError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + shared::error::HttpStatus,
{
    if let aws_sdk_s3::error::SdkError::ServiceError(service) = &err {
        match service.raw().http_status() {
            412 => return Ok(Written::AlreadyExists),
            404 if service.err().code() == Some("NoSuchKey") => return Ok(Written::AlreadyExists),
            409 => return Err(BackfillError::WriteConflict),
            _ => {}
        }
    }
    Err(aws_error(operation, err))
}

fn aws_error<E, R>(operation: &'static str, err: aws_sdk_s3::error::SdkError<E, R>) -> BackfillError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + shared::error::HttpStatus,
{
    // The client sets no other timeout that ends a call this way: this is the operation timeout.
    if let aws_sdk_s3::error::SdkError::TimeoutError(_) = err {
        return BackfillError::Deadline;
    }
    BackfillError::Aws(shared::Error::aws(operation, err))
}

/// As [`aws_error`], but S3's `NoSuchUpload` (the upload was aborted, or completed) is
/// [`BackfillError::UploadGone`].
fn upload_error<E, R>(
    operation: &'static str,
    upload_id: &str,
    err: aws_sdk_s3::error::SdkError<E, R>,
) -> BackfillError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + shared::error::HttpStatus,
{
    if err.as_service_error().and_then(|e| e.code()) == Some("NoSuchUpload") {
        return BackfillError::UploadGone(upload_id.to_owned());
    }
    aws_error(operation, err)
}

impl ObjectStore for S3Store {
    async fn exists(
        &self,
        bucket: &str,
        key: &str,
        deadline: Instant,
    ) -> Result<bool, BackfillError> {
        Ok(self.head(bucket, key, deadline).await?.is_some())
    }

    async fn head(
        &self,
        bucket: &str,
        key: &str,
        deadline: Instant,
    ) -> Result<Option<Head>, BackfillError> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .customize()
            .config_override(until(&self.client, deadline)?)
            .send()
            .await
        {
            Ok(head) => Ok(Some(Head {
                etag: head.e_tag.unwrap_or_default(),
                metadata: head.metadata.unwrap_or_default(),
            })),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            // Without s3:ListBucket a missing key answers 403; the role has ListBucket, so a 403
            // here is a real permission problem and is reported as such.
            Err(err) => Err(aws_error("HeadObject", err)),
        }
    }

    async fn delete_if_match(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
        deadline: Instant,
    ) -> Result<Deleted, BackfillError> {
        // DeleteObject's If-Match (general purpose buckets, since 2025-09): 204 deleted, 412
        // another object is there now, 404 none is, 409 a concurrent write (retried).
        let deleted = self
            .client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .if_match(etag)
            .customize()
            .config_override(until(&self.client, deadline)?)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(Deleted::Deleted),
            Err(aws_sdk_s3::error::SdkError::ServiceError(service)) => {
                match service.raw().status().as_u16() {
                    412 => Ok(Deleted::Changed),
                    404 => Ok(Deleted::Gone),
                    409 => Err(BackfillError::WriteConflict),
                    _ => Err(aws_error(
                        "DeleteObject",
                        aws_sdk_s3::error::SdkError::ServiceError(service),
                    )),
                }
            }
            Err(err) => Err(aws_error("DeleteObject", err)),
        }
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        continuation: Option<String>,
        deadline: Instant,
    ) -> Result<(Vec<String>, Option<String>), BackfillError> {
        let page = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .max_keys(1000)
            .set_continuation_token(continuation)
            .customize()
            .config_override(until(&self.client, deadline)?)
            .send()
            .await
            .map_err(|e| aws_error("ListObjectsV2", e))?;
        let keys = page
            .contents()
            .iter()
            .filter_map(|object| object.key.clone())
            .collect();
        let next = page
            .next_continuation_token
            .filter(|_| page.is_truncated == Some(true));
        Ok((keys, next))
    }

    async fn put(
        &self,
        target: &Target,
        body: Bytes,
        crc32c: u32,
        deadline: Instant,
    ) -> Result<Written, BackfillError> {
        let request = self
            .conditional_put(target, body.len() as u64)
            .checksum_crc32_c(crc32c_header(crc32c));
        // The CRC32C header is what S3 checks the body against; signing the payload as well
        // would hash every byte a second time with SHA-256 for no more safety.
        match request
            .body(ByteStream::from(body))
            .customize()
            .config_override(until(&self.client, deadline)?)
            .disable_payload_signing()
            .send()
            .await
        {
            Ok(_) => Ok(Written::Created),
            Err(err) => write_error("PutObject", err),
        }
    }

    async fn put_stream(
        &self,
        target: &Target,
        body: BodyStream,
        length: u64,
        deadline: Instant,
    ) -> Result<Written, BackfillError> {
        let bounded = until(&self.client, deadline)?;
        let origin_failure = Arc::new(Mutex::new(None));
        let body = ExactBody::new(body, length, origin_failure.clone());
        let request = self
            .conditional_put(target, length)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C);
        // The shared client computes checksums only where S3 requires one, and PutObject does
        // not: under that setting the SDK would send `x-amz-sdk-checksum-algorithm` with no
        // checksum at all, which S3 refuses with 400 InvalidRequest. For this write the SDK
        // computes the CRC32C as it streams and sends it as an `x-amz-checksum-crc32c` trailer
        // of an aws-chunked body (signed chunks over http, STREAMING-UNSIGNED-PAYLOAD-TRAILER
        // over https).
        //
        // The SDK's upload stall protection counts a body waiting for the origin as 0 B/s and
        // fails the request after its grace period (5 s), however short the origin's pause. It
        // is off for this write: the body fails on the origin's own idle timeout, which alone
        // bounds a pause. (Bodies from memory never wait, so their writes keep it.)
        let sent = request
            .body(ByteStream::new(
                aws_smithy_types::body::SdkBody::from_body_1_x(body),
            ))
            .customize()
            .config_override(streamed(bounded))
            .send()
            .await;
        // The origin failing mid-body also fails the request: that is the cause to report.
        if let Some(failure) = origin_failure.lock().expect("not poisoned").take() {
            return Err(failure);
        }
        match sent {
            Ok(_) => Ok(Written::Created),
            Err(err) => write_error("PutObject", err),
        }
    }

    async fn create_multipart(
        &self,
        target: &Target,
        deadline: Instant,
    ) -> Result<String, BackfillError> {
        let request = with_attributes!(
            self.client
                .create_multipart_upload()
                .bucket(&target.bucket)
                .key(&target.key)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .checksum_type(ChecksumType::FullObject),
            &target.attributes
        );
        let created = request
            .customize()
            .config_override(until(&self.client, deadline)?)
            .send()
            .await
            .map_err(|e| aws_error("CreateMultipartUpload", e))?;
        let request_id = created.request_id().map(str::to_owned);
        created.upload_id.ok_or_else(|| {
            BackfillError::Aws(shared::Error::Aws {
                operation: "CreateMultipartUpload",
                message: format!("no upload id in the answer (request {request_id:?})"),
                retryable: true,
            })
        })
    }

    async fn upload_part(
        &self,
        target: &Target,
        upload_id: &str,
        number: i32,
        body: Bytes,
        crc32c: u32,
        deadline: Instant,
    ) -> Result<Part, BackfillError> {
        let length = body.len() as i64;
        let uploaded = self
            .client
            .upload_part()
            .bucket(&target.bucket)
            .key(&target.key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(length)
            .checksum_crc32_c(crc32c_header(crc32c))
            .body(ByteStream::from(body))
            .customize()
            .config_override(until(&self.client, deadline)?)
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| aws_error("UploadPart", e))?;
        Ok(Part {
            number,
            etag: uploaded.e_tag.unwrap_or_default(),
            crc32c,
        })
    }

    async fn upload_part_stream(
        &self,
        target: &Target,
        upload_id: &str,
        number: i32,
        body: BodyStream,
        length: u64,
        deadline: Instant,
    ) -> Result<Part, BackfillError> {
        let bounded = until(&self.client, deadline)?;
        let origin_failure = Arc::new(Mutex::new(None));
        let body = ExactBody::new(body, length, origin_failure.clone());
        let crc = body.crc.clone();
        // As the streamed PutObject: the SDK computes the CRC32C as it streams and sends it as a
        // trailer, and the stall protection is off because a body waiting on the origin is no
        // stalled upload (the origin's idle timeout bounds that wait).
        let sent = self
            .client
            .upload_part()
            .bucket(&target.bucket)
            .key(&target.key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(length as i64)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .body(ByteStream::new(
                aws_smithy_types::body::SdkBody::from_body_1_x(body),
            ))
            .customize()
            .config_override(streamed(bounded))
            .send()
            .await;
        if let Some(failure) = origin_failure.lock().expect("not poisoned").take() {
            return Err(failure);
        }
        let uploaded = sent.map_err(|e| upload_error("UploadPart", upload_id, e))?;
        let crc32c = *crc.lock().expect("not poisoned");
        // S3 checked the trailer against the bytes it received; its answer names the value.
        if let Some(stored) = uploaded.checksum_crc32_c.as_deref() {
            if shared::checksum::crc32c_parse(stored) != Some(crc32c) {
                return Err(BackfillError::Aws(shared::Error::Aws {
                    operation: "UploadPart",
                    message: format!(
                        "part {number}: S3 stored CRC32C {stored}, not the {} sent",
                        crc32c_header(crc32c)
                    ),
                    retryable: true,
                }));
            }
        }
        Ok(Part {
            number,
            etag: uploaded.e_tag.unwrap_or_default(),
            crc32c,
        })
    }

    async fn list_parts(
        &self,
        target: &Target,
        upload_id: &str,
        deadline: Instant,
    ) -> Result<Vec<ListedPart>, BackfillError> {
        let mut listed = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(&target.bucket)
                .key(&target.key)
                .upload_id(upload_id)
                .max_parts(1000)
                .set_part_number_marker(marker.take())
                .customize()
                .config_override(until(&self.client, deadline)?)
                .send()
                .await
                .map_err(|err| upload_error("ListParts", upload_id, err))?;
            for part in page.parts() {
                listed.push(ListedPart {
                    number: part.part_number.unwrap_or_default(),
                    etag: part.e_tag.clone().unwrap_or_default(),
                    size: part.size.unwrap_or_default().max(0) as u64,
                    crc32c: part
                        .checksum_crc32_c
                        .as_deref()
                        .and_then(shared::checksum::crc32c_parse),
                });
            }
            match page.next_part_number_marker {
                Some(next) if page.is_truncated == Some(true) => marker = Some(next),
                _ => break,
            }
        }
        listed.sort_by_key(|part| part.number);
        Ok(listed)
    }

    async fn complete_multipart(
        &self,
        target: &Target,
        upload_id: &str,
        parts: Vec<Part>,
        crc32c: u32,
        deadline: Instant,
    ) -> Result<Written, BackfillError> {
        let parts = parts
            .into_iter()
            .map(|part| {
                CompletedPart::builder()
                    .part_number(part.number)
                    .e_tag(part.etag)
                    .checksum_crc32_c(crc32c_header(part.crc32c))
                    .build()
            })
            .collect();
        let request = self
            .client
            .complete_multipart_upload()
            .bucket(&target.bucket)
            .key(&target.key)
            .upload_id(upload_id);
        let request = match &target.condition {
            WriteCondition::Absent => request.if_none_match("*"),
            WriteCondition::Replaces(etag) => request.if_match(etag),
        };
        let completed = request
            .checksum_type(ChecksumType::FullObject)
            .checksum_crc32_c(crc32c_header(crc32c))
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .customize()
            .config_override(until(&self.client, deadline)?)
            .send()
            .await;
        match completed {
            Ok(_) => Ok(Written::Created),
            Err(err) => write_error("CompleteMultipartUpload", err),
        }
    }

    async fn abort_multipart(
        &self,
        target: &Target,
        upload_id: &str,
        deadline: Instant,
    ) -> Result<(), BackfillError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&target.bucket)
            .key(&target.key)
            .upload_id(upload_id)
            .customize()
            .config_override(until(&self.client, deadline)?)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Already gone: what aborting wanted.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_no_such_upload()) =>
            {
                Ok(())
            }
            Err(err) => Err(aws_error("AbortMultipartUpload", err)),
        }
    }
}

/// The origin's body as an HTTP body of exactly `expected` bytes. An origin error, a body that
/// ends short or one that runs long ends the request body with an error, so the object is never
/// completed; the cause is left in `failure` for the caller to report.
struct ExactBody {
    /// In a mutex only to be `Sync`, as the SDK's bodies must be; polled through `get_mut`.
    stream: Mutex<BodyStream>,
    expected: u64,
    received: u64,
    failure: Arc<Mutex<Option<BackfillError>>>,
    /// The CRC32C of the bytes passed on so far.
    crc: Arc<Mutex<u32>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the origin's body failed; the upload is abandoned")]
struct OriginBodyFailed;

impl ExactBody {
    fn new(body: BodyStream, expected: u64, failure: Arc<Mutex<Option<BackfillError>>>) -> Self {
        ExactBody {
            stream: Mutex::new(body),
            expected,
            received: 0,
            failure,
            crc: Arc::default(),
        }
    }

    fn fail(&mut self, err: BackfillError) -> Poll<Option<Result<Frame<Bytes>, OriginBodyFailed>>> {
        *self.failure.lock().expect("not poisoned") = Some(err);
        Poll::Ready(Some(Err(OriginBodyFailed)))
    }
}

impl http_body::Body for ExactBody {
    type Data = Bytes;
    type Error = OriginBodyFailed;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let stream = this.stream.get_mut().expect("not poisoned");
        match stream.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                this.received += chunk.len() as u64;
                if this.received > this.expected {
                    return this.fail(BackfillError::longer_than(this.expected));
                }
                let mut crc = this.crc.lock().expect("not poisoned");
                *crc = crc32c::crc32c_append(*crc, &chunk);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(err))) => {
                let err = err.in_body(this.received, Some(this.expected));
                this.fail(err)
            }
            Poll::Ready(None) if this.received < this.expected => {
                let (received, expected) = (this.received, this.expected);
                this.fail(BackfillError::Truncated { received, expected })
            }
            Poll::Ready(None) => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.expected - self.received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::upload_part::UploadPartError;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::error::ErrorMetadata;

    fn s3_error(status: u16, code: &str) -> aws_sdk_s3::error::SdkError<UploadPartError, Response> {
        aws_sdk_s3::error::SdkError::service_error(
            UploadPartError::generic(ErrorMetadata::builder().code(code).message("m").build()),
            Response::new(
                StatusCode::try_from(status).unwrap(),
                aws_smithy_types::body::SdkBody::empty(),
            ),
        )
    }

    /// S3 answers a part of an aborted (or completed) upload with 404 NoSuchUpload (s3s-fs
    /// answers 403 AccessDenied): the copy must restart, not drop the part as a permanent failure.
    #[test]
    fn a_part_of_an_upload_s3_no_longer_has_is_upload_gone() {
        assert!(matches!(
            upload_error("UploadPart", "u1", s3_error(404, "NoSuchUpload")),
            BackfillError::UploadGone(id) if id == "u1"
        ));
        assert!(matches!(
            upload_error("UploadPart", "u1", s3_error(403, "AccessDenied")),
            BackfillError::Aws(_)
        ));
    }
}
