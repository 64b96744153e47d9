//! The service's I/O, behind narrow traits with one AWS adapter each: the bucket (signing and
//! multipart bookkeeping), multipart sessions, file versions and the feed, rate buckets, and the
//! change topic.

pub mod files;
pub mod rate;
pub mod s3;
pub mod sessions;
pub mod sns;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use shared::ObjectKey;

use crate::checksum::Checksum;
use crate::error::Error;
use crate::plan::{CompletePart, UploadedPart};
use crate::post_policy::SigningCredentials;
use crate::ratelimit::Decision;
use crate::record::{FileVersion, ObjectHead};

pub use files::DynamoFiles;
pub use rate::DynamoRateLimiter;
pub use s3::{S3Heads, S3Uploads};
pub use sessions::{DynamoSessions, Session, SessionState};
pub use sns::SnsNotifier;

/// A presigned request: the client sends exactly these headers to this URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// Its life from the moment it was signed: the one asked for, or shorter when the signing
    /// credentials expire sooner ([`crate::plan::signed_lifetime`]).
    pub expires_in: Duration,
}

/// What a presigned POST is sent to and signed with.
#[derive(Debug, Clone)]
pub struct PostTarget {
    pub url: String,
    pub region: String,
    pub credentials: SigningCredentials,
    /// When the credentials expire (none for long-term keys).
    pub credentials_expiry: Option<std::time::SystemTime>,
}

/// How CompleteMultipartUpload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompleteOutcome {
    Completed {
        etag: String,
        version_id: Option<String>,
    },
    /// S3 knows no such upload (completed before, aborted, or expired by the lifecycle rule).
    NoSuchUpload,
}

/// The bucket, as the API uses it.
pub trait ObjectStore: Send + Sync {
    fn presign_put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        size: u64,
        checksum: Checksum,
        expires_in: Duration,
    ) -> impl Future<Output = Result<SignedRequest, Error>> + Send;

    fn post_target(&self) -> impl Future<Output = Result<PostTarget, Error>> + Send;

    /// A presigned GetObject of the key's current object: its owner's download.
    fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
    ) -> impl Future<Output = Result<SignedRequest, Error>> + Send;

    fn bucket(&self) -> &str;

    /// Starts a multipart upload whose whole-object CRC32C S3 checks on completion.
    fn create_multipart(
        &self,
        key: &ObjectKey,
        content_type: &str,
    ) -> impl Future<Output = Result<String, Error>> + Send;

    fn presign_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        number: u32,
        size: u64,
        crc32c: u32,
        expires_in: Duration,
    ) -> impl Future<Output = Result<SignedRequest, Error>> + Send;

    /// Every part S3 holds; `None` when S3 knows no such upload.
    fn list_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> impl Future<Output = Result<Option<Vec<UploadedPart>>, Error>> + Send;

    fn complete(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletePart],
        crc32c: u32,
    ) -> impl Future<Output = Result<CompleteOutcome, Error>> + Send;

    /// Aborts the upload; an upload S3 no longer knows is already gone.
    fn abort(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

/// What S3 holds, as the metadata writer reads it.
pub trait ObjectHeads: Send + Sync {
    /// `None` when the object (or that version of it) does not exist.
    fn head(
        &self,
        bucket: &str,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<Option<ObjectHead>, Error>> + Send;
}

/// Multipart sessions.
pub trait Sessions: Send + Sync {
    fn create(&self, session: &Session) -> impl Future<Output = Result<(), Error>> + Send;

    fn get(&self, upload_id: &str) -> impl Future<Output = Result<Option<Session>, Error>> + Send;

    /// Records the CRC32C signed into each part's URL; `false` if the session is not open.
    fn record_signed(
        &self,
        upload_id: &str,
        parts: &[(u32, u32)],
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Moves an open session to `state`; `false` if it was not open.
    fn finish(
        &self,
        upload_id: &str,
        state: SessionState,
    ) -> impl Future<Output = Result<bool, Error>> + Send;
}

/// Whether a version was new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    New,
    /// Already recorded (a redelivered event): the stored record, and whether its message went
    /// out.
    Existing {
        stored: Box<FileVersion>,
        notified: bool,
    },
}

/// A page of the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangesPage {
    pub changes: Vec<FileVersion>,
    /// The last position read (also when the page's changes were all filtered out).
    pub last_read: Option<String>,
    pub more: bool,
}

/// File versions and the change feed.
pub trait FileIndex: Send + Sync {
    fn record(&self, version: &FileVersion)
        -> impl Future<Output = Result<Recorded, Error>> + Send;

    fn mark_notified(
        &self,
        key: &str,
        version: &str,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Versions of a key, newest first, at most `limit`.
    fn versions(
        &self,
        key: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<FileVersion>, Error>> + Send;

    /// The owner's changes after `after` up to `horizon` (inclusive), of keys under `prefix`;
    /// `after` is not past `horizon`.
    fn changes(
        &self,
        owner: &str,
        prefix: &str,
        after: Option<&str>,
        horizon: &str,
        limit: usize,
    ) -> impl Future<Output = Result<ChangesPage, Error>> + Send;
}

/// Per-caller rate buckets.
pub trait RateLimiter: Send + Sync {
    fn acquire(
        &self,
        caller: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<Decision, Error>> + Send;
}

/// Where new versions are announced.
pub trait ChangeNotifier: Send + Sync {
    fn publish(&self, version: &FileVersion) -> impl Future<Output = Result<(), Error>> + Send;
}

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn string(item: &Item, name: &str) -> Result<String, Error> {
    optional_string(item, name)
        .ok_or_else(|| Error::CorruptRecord(format!("no string attribute {name}")))
}

pub(crate) fn optional_string(item: &Item, name: &str) -> Option<String> {
    item.get(name)?.as_s().ok().cloned()
}

pub(crate) fn number<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, Error> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::CorruptRecord(format!("no number attribute {name}")))
}

pub(crate) fn is_conditional_failure<E, R>(
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> bool
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    err.as_service_error()
        .is_some_and(|e| e.code() == Some("ConditionalCheckFailedException"))
}
