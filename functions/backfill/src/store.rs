//! The overseas bucket: conditional, checksummed writes that never overwrite.

use std::future::Future;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumType, CompletedMultipartUpload, CompletedPart};
use aws_smithy_types::base64;
use bytes::Bytes;

use crate::error::BackfillError;
use crate::plan::ObjectAttributes;

/// Where and what to write.
#[derive(Debug, Clone)]
pub struct Target {
    pub bucket: String,
    pub key: String,
    pub attributes: ObjectAttributes,
}

/// How a conditional write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    /// `If-None-Match: *` failed: another writer got there first. For an idempotent copy, done.
    AlreadyExists,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub number: i32,
    pub etag: String,
    pub crc32c: u32,
}

pub trait ObjectStore: Send + Sync {
    fn exists(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<bool, BackfillError>> + Send;

    fn put(
        &self,
        target: &Target,
        body: Bytes,
        crc32c: u32,
    ) -> impl Future<Output = Result<Written, BackfillError>> + Send;

    fn create_multipart(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<String, BackfillError>> + Send;

    fn upload_part(
        &self,
        target: &Target,
        upload_id: &str,
        number: i32,
        body: Bytes,
        crc32c: u32,
    ) -> impl Future<Output = Result<Part, BackfillError>> + Send;

    /// Completes with the parts and the full-object CRC32C, only if the key does not exist yet.
    fn complete_multipart(
        &self,
        target: &Target,
        upload_id: &str,
        parts: Vec<Part>,
        crc32c: u32,
    ) -> impl Future<Output = Result<Written, BackfillError>> + Send;

    fn abort_multipart(
        &self,
        target: &Target,
        upload_id: &str,
    ) -> impl Future<Output = Result<(), BackfillError>> + Send;
}

pub fn crc32c_header(crc: u32) -> String {
    base64::encode(crc.to_be_bytes())
}

pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Store { client }
    }
}

/// Classifies an S3 error: 412 is "already exists", 409 a concurrent write to retry.
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
    BackfillError::Aws(shared::Error::aws(operation, err))
}

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

impl ObjectStore for S3Store {
    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, BackfillError> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
            // Without s3:ListBucket a missing key answers 403; the role has ListBucket, so a 403
            // here is a real permission problem and is reported as such.
            Err(err) => Err(aws_error("HeadObject", err)),
        }
    }

    async fn put(
        &self,
        target: &Target,
        body: Bytes,
        crc32c: u32,
    ) -> Result<Written, BackfillError> {
        let length = body.len() as i64;
        let request = with_attributes!(
            self.client
                .put_object()
                .bucket(&target.bucket)
                .key(&target.key)
                .if_none_match("*")
                .content_length(length)
                .checksum_crc32_c(crc32c_header(crc32c)),
            &target.attributes
        );
        match request.body(ByteStream::from(body)).send().await {
            Ok(_) => Ok(Written::Created),
            Err(err) => write_error("PutObject", err),
        }
    }

    async fn create_multipart(&self, target: &Target) -> Result<String, BackfillError> {
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
            .send()
            .await
            .map_err(|e| aws_error("UploadPart", e))?;
        Ok(Part {
            number,
            etag: uploaded.e_tag.unwrap_or_default(),
            crc32c,
        })
    }

    async fn complete_multipart(
        &self,
        target: &Target,
        upload_id: &str,
        parts: Vec<Part>,
        crc32c: u32,
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
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&target.bucket)
            .key(&target.key)
            .upload_id(upload_id)
            .if_none_match("*")
            .checksum_type(ChecksumType::FullObject)
            .checksum_crc32_c(crc32c_header(crc32c))
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match completed {
            Ok(_) => Ok(Written::Created),
            Err(err) => write_error("CompleteMultipartUpload", err),
        }
    }

    async fn abort_multipart(&self, target: &Target, upload_id: &str) -> Result<(), BackfillError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&target.bucket)
            .key(&target.key)
            .upload_id(upload_id)
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
