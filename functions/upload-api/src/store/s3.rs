//! The bucket through the AWS SDK: presigned PUT and UploadPart requests with their checksums
//! and lengths signed in, the POST target, multipart bookkeeping, and HeadObject for the writer.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::{Credentials, ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use aws_sdk_s3::types::{
    ChecksumAlgorithm as S3ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload,
    CompletedPart,
};
use aws_smithy_types::DateTime;
use shared::ObjectKey;

use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::error::Error;
use crate::plan::{
    signed_lifetime, CompletePart, UploadedPart, CACHE_CONTROL, CONTENT_DISPOSITION,
    CONTENT_ENCODING, CONTENT_LANGUAGE, EXPIRES_EPOCH_S,
};
use crate::post_policy::SigningCredentials;
use crate::record::{ObjectHead, StoredChecksum};
use crate::store::{CompleteOutcome, ObjectHeads, ObjectStore, PostTarget, SignedRequest};

/// The upload bucket.
#[derive(Debug, Clone)]
pub struct S3Uploads {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// What the client signs with, for POST policies (the SDK signs everything else).
    credentials: SharedCredentialsProvider,
    region: String,
}

impl S3Uploads {
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        credentials: SharedCredentialsProvider,
        region: impl Into<String>,
    ) -> Self {
        S3Uploads {
            client,
            bucket: bucket.into(),
            credentials,
            region: region.into(),
        }
    }

    /// The bucket with the shared SDK configuration's client, credentials and region.
    pub fn from_sdk(sdk: &aws_config::SdkConfig, bucket: impl Into<String>) -> Result<Self, Error> {
        let credentials = sdk.credentials_provider().ok_or_else(|| {
            Error::Credentials("the SDK configuration has no credentials provider".into())
        })?;
        let region = sdk
            .region()
            .map(|r| r.as_ref().to_owned())
            .ok_or_else(|| Error::Credentials("the SDK configuration has no region".into()))?;
        Ok(S3Uploads::new(
            shared::aws::s3_client(sdk),
            bucket,
            credentials,
            region,
        ))
    }
}

fn presigning(expires_in: Duration) -> Result<PresigningConfig, Error> {
    PresigningConfig::expires_in(expires_in)
        .map_err(|e| Error::InvalidRequest(format!("cannot presign for {expires_in:?}: {e}")))
}

/// How to presign with exactly `credentials` (the ones whose expiry was read), for as long as
/// `requested` but no longer than they live: the operation's configuration override, the
/// presigning configuration and the lifetime.
fn signing_with(
    credentials: &Credentials,
    requested: Duration,
) -> Result<(aws_sdk_s3::config::Builder, PresigningConfig, Duration), Error> {
    let now = SystemTime::now();
    let lifetime = signed_lifetime(requested, now, credentials.expiry())?;
    let presigning = PresigningConfig::builder()
        .start_time(now)
        .expires_in(lifetime)
        .build()
        .map_err(|e| Error::InvalidRequest(format!("cannot presign for {lifetime:?}: {e}")))?;
    let config = aws_sdk_s3::config::Builder::default().credentials_provider(credentials.clone());
    Ok((config, presigning, lifetime))
}

fn presign_error<E, R>(
    operation: &'static str,
    err: aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> Error
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    // Presigning sends nothing: a failure is in building or signing the request (such as
    // credentials that cannot be loaded), which a later attempt may not repeat.
    Error::Credentials(format!(
        "{operation}: {}",
        shared::error::sdk_error_message(&err)
    ))
}

fn signed(request: PresignedRequest, expires_in: Duration) -> SignedRequest {
    SignedRequest {
        method: request.method().to_owned(),
        url: request.uri().to_owned(),
        headers: request
            .headers()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
            .collect::<BTreeMap<_, _>>(),
        expires_in,
    }
}

impl S3Uploads {
    /// The credentials to sign with now (the provider refreshes them).
    async fn signing_credentials(&self) -> Result<Credentials, Error> {
        self.credentials
            .provide_credentials()
            .await
            .map_err(|e| Error::Credentials(e.to_string()))
    }
}

impl ObjectStore for S3Uploads {
    async fn presign_put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        size: u64,
        checksum: Checksum,
        expires_in: Duration,
    ) -> Result<SignedRequest, Error> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .cache_control(CACHE_CONTROL)
            .content_disposition(CONTENT_DISPOSITION)
            .content_encoding(CONTENT_ENCODING)
            .content_language(CONTENT_LANGUAGE)
            .expires(DateTime::from_secs(EXPIRES_EPOCH_S));
        let request = match checksum {
            Checksum::Sha256(_) => request
                .checksum_algorithm(S3ChecksumAlgorithm::Sha256)
                .checksum_sha256(checksum.to_base64()),
            Checksum::Crc32c(_) => request
                .checksum_algorithm(S3ChecksumAlgorithm::Crc32C)
                .checksum_crc32_c(checksum.to_base64()),
        };
        let credentials = self.signing_credentials().await?;
        let (config, presigning, lifetime) = signing_with(&credentials, expires_in)?;
        let presigned = request
            .customize()
            .config_override(config)
            .presigned(presigning)
            .await
            .map_err(|e| presign_error("PutObject", e))?;
        Ok(signed(presigned, lifetime))
    }

    async fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
    ) -> Result<SignedRequest, Error> {
        let credentials = self.signing_credentials().await?;
        let (config, presigning, lifetime) = signing_with(&credentials, expires_in)?;
        let presigned = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .customize()
            .config_override(config)
            .presigned(presigning)
            .await
            .map_err(|e| presign_error("GetObject", e))?;
        Ok(signed(presigned, lifetime))
    }

    async fn post_target(&self) -> Result<PostTarget, Error> {
        let credentials = self.signing_credentials().await?;
        // The bucket's URL, addressed as the SDK addresses it (virtual host or path style,
        // custom endpoint), is ListObjectVersions' URL without its query.
        let listing = self
            .client
            .list_object_versions()
            .bucket(&self.bucket)
            .presigned(presigning(Duration::from_secs(60))?)
            .await
            .map_err(|e| presign_error("ListObjectVersions", e))?;
        let url = listing
            .uri()
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        Ok(PostTarget {
            url,
            region: self.region.clone(),
            credentials: SigningCredentials {
                access_key_id: credentials.access_key_id().to_owned(),
                secret_access_key: credentials.secret_access_key().to_owned(),
                session_token: credentials.session_token().map(str::to_owned),
            },
            credentials_expiry: credentials.expiry(),
        })
    }

    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn create_multipart(&self, key: &ObjectKey, content_type: &str) -> Result<String, Error> {
        let output = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .cache_control(CACHE_CONTROL)
            .content_disposition(CONTENT_DISPOSITION)
            .content_encoding(CONTENT_ENCODING)
            .content_language(CONTENT_LANGUAGE)
            .expires(DateTime::from_secs(EXPIRES_EPOCH_S))
            .checksum_algorithm(S3ChecksumAlgorithm::Crc32C)
            .checksum_type(ChecksumType::FullObject)
            .send()
            .await
            .map_err(|e| Error::aws("CreateMultipartUpload", e))?;
        output.upload_id.filter(|id| !id.is_empty()).ok_or_else(|| {
            Error::Shared(shared::Error::Aws {
                operation: "CreateMultipartUpload",
                message: "no upload id in the answer".into(),
                retryable: true,
            })
        })
    }

    async fn presign_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        number: u32,
        size: u64,
        crc32c: u32,
        expires_in: Duration,
    ) -> Result<SignedRequest, Error> {
        let credentials = self.signing_credentials().await?;
        let (config, presigning, lifetime) = signing_with(&credentials, expires_in)?;
        let presigned = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .part_number(i32::try_from(number).unwrap_or(i32::MAX))
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .checksum_algorithm(S3ChecksumAlgorithm::Crc32C)
            .checksum_crc32_c(Checksum::Crc32c(crc32c).to_base64())
            .customize()
            .config_override(config)
            .presigned(presigning)
            .await
            .map_err(|e| presign_error("UploadPart", e))?;
        Ok(signed(presigned, lifetime))
    }

    async fn list_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<Option<Vec<UploadedPart>>, Error> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let result = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key.as_str())
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await;
            let output = match result {
                Ok(output) => output,
                Err(err) if is_no_such_upload(&err) => return Ok(None),
                Err(err) => return Err(Error::aws("ListParts", err)),
            };
            for part in output.parts() {
                let number = part
                    .part_number()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| aws_answer("ListParts", "a part without a number"))?;
                parts.push(UploadedPart {
                    number,
                    size: part
                        .size()
                        .and_then(|s| u64::try_from(s).ok())
                        .ok_or_else(|| aws_answer("ListParts", "a part without a size"))?,
                    etag: part.e_tag().unwrap_or_default().to_owned(),
                    crc32c: part
                        .checksum_crc32_c()
                        .and_then(|v| Checksum::parse(ChecksumAlgorithm::Crc32c, v).ok())
                        .and_then(|c| c.crc32c()),
                });
            }
            match (output.is_truncated(), output.next_part_number_marker()) {
                (Some(true), Some(next)) if !next.is_empty() => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(Some(parts))
    }

    async fn complete(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletePart],
        crc32c: u32,
    ) -> Result<CompleteOutcome, Error> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(i32::try_from(p.number).unwrap_or(i32::MAX))
                            .e_tag(&p.etag)
                            .checksum_crc32_c(Checksum::Crc32c(p.crc32c).to_base64())
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let declared = Checksum::Crc32c(crc32c).to_base64();
        let result = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .multipart_upload(completed)
            .checksum_crc32_c(&declared)
            .checksum_type(ChecksumType::FullObject)
            .send()
            .await;
        match result {
            Ok(output) => Ok(CompleteOutcome::Completed {
                etag: output
                    .e_tag()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_owned(),
                version_id: output
                    .version_id()
                    .filter(|v| !v.is_empty() && *v != "null")
                    .map(str::to_owned),
            }),
            Err(err) if is_no_such_upload(&err) => Ok(CompleteOutcome::NoSuchUpload),
            Err(err) => {
                let code = err
                    .as_service_error()
                    .and_then(|e| aws_smithy_types::error::metadata::ProvideErrorMetadata::code(e));
                // S3's words go to the log; the caller gets the API's own.
                let refusal = match code {
                    Some("BadDigest") | Some("InvalidChecksum") => Some(Error::ChecksumMismatch {
                        declared,
                        actual: "another value, by S3's own computation".into(),
                    }),
                    Some("InvalidPart") => Some(Error::InvalidRequest(
                        "a listed part is not one S3 holds, or its ETag is not the part's".into(),
                    )),
                    Some("InvalidPartOrder") => Some(Error::InvalidRequest(
                        "parts must be listed once each, in ascending order".into(),
                    )),
                    Some("EntityTooSmall") => Some(Error::InvalidRequest(
                        "every part but the last must be at least 5 MiB".into(),
                    )),
                    _ => None,
                };
                match refusal {
                    Some(refusal) => {
                        tracing::warn!(
                            upload_id,
                            s3_error = %shared::error::sdk_error_message(&err),
                            "S3 refused CompleteMultipartUpload"
                        );
                        Err(refusal)
                    }
                    None => Err(Error::aws("CompleteMultipartUpload", err)),
                }
            }
        }
    }

    async fn abort(&self, key: &ObjectKey, upload_id: &str) -> Result<(), Error> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if is_no_such_upload(&err) => Ok(()),
            Err(err) => Err(Error::aws("AbortMultipartUpload", err)),
        }
    }
}

fn is_no_such_upload<E, R>(err: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> bool
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    err.as_service_error()
        .is_some_and(|e| e.code() == Some("NoSuchUpload"))
}

fn aws_answer(operation: &'static str, what: &str) -> Error {
    Error::Shared(shared::Error::Aws {
        operation,
        message: format!("unexpected answer: {what}"),
        retryable: false,
    })
}

/// HeadObject for the metadata writer, in whatever bucket the event names.
#[derive(Debug, Clone)]
pub struct S3Heads {
    client: aws_sdk_s3::Client,
}

impl S3Heads {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Heads { client }
    }
}

impl ObjectHeads for S3Heads {
    async fn head(
        &self,
        bucket: &str,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<Option<ObjectHead>, Error> {
        let result = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key.as_str())
            .set_version_id(version_id.map(str::to_owned))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(err)
                if err
                    .raw_response()
                    .is_some_and(|r| r.status().as_u16() == 404) =>
            {
                return Ok(None)
            }
            Err(err) => return Err(Error::aws("HeadObject", err)),
        };
        let kind = output.checksum_type().map(|t| t.as_str().to_owned());
        let checksum = [
            ("sha256", output.checksum_sha256()),
            ("crc32c", output.checksum_crc32_c()),
            ("crc64nvme", output.checksum_crc64_nvme()),
            ("crc32", output.checksum_crc32()),
            ("sha1", output.checksum_sha1()),
        ]
        .into_iter()
        .find_map(|(algorithm, value)| {
            value.filter(|v| !v.is_empty()).map(|value| StoredChecksum {
                algorithm: algorithm.to_owned(),
                value: value.to_owned(),
                kind: kind.clone(),
            })
        });
        Ok(Some(ObjectHead {
            size: output
                .content_length()
                .and_then(|l| u64::try_from(l).ok())
                .ok_or_else(|| aws_answer("HeadObject", "no Content-Length"))?,
            etag: output
                .e_tag()
                .unwrap_or_default()
                .trim_matches('"')
                .to_owned(),
            content_type: output.content_type().map(str::to_owned),
            checksum,
            version_id: output
                .version_id()
                .filter(|v| !v.is_empty() && *v != "null")
                .map(str::to_owned),
            last_modified: output
                .last_modified()
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).ok()),
        }))
    }
}
