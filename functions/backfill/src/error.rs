//! Everything that can stop one backfill, each either retryable or permanent.

use std::time::Duration;

use shared::Failure;

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    InvalidMessage(#[from] shared::message::MessageError),
    #[error("message names bucket {0:?}, not the configured one")]
    WrongBucket(String),
    #[error("origin {0} is not in the allow-list")]
    OriginNotAllowed(String),
    #[error("origin host {host} resolves to a forbidden address {address}")]
    ForbiddenAddress { host: String, address: String },
    #[error("origin URL {url:?} does not parse: {reason}")]
    InvalidOriginUrl { url: String, reason: String },
    #[error("origin path {path:?} is not allowed for {origin}")]
    OriginPathNotAllowed { origin: String, path: String },
    #[error("origin host {host} is the loopback ({address}), which no allow-list entry names")]
    LoopbackNotAllowed { host: String, address: String },
    #[error("uri {uri:?} names no key: {reason}")]
    UriNotAKey {
        uri: String,
        reason: shared::KeyError,
    },
    #[error("message key {key:?} is not the key its uri names ({derived:?})")]
    KeyMismatch { key: String, derived: String },
    #[error("key {key:?} is under {prefix:?}, which the backfill never writes (REFUSED_PREFIXES)")]
    RefusedPrefix { key: String, prefix: String },
    #[error("origin answered {status}")]
    OriginRefused { status: u16 },
    #[error("origin redirected with {status} to another host or in a loop; not followed")]
    RedirectRefused { status: u16 },
    #[error("origin answered {status}")]
    OriginUnavailable {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("origin request failed: {0}")]
    OriginTransport(String),
    #[error("origin sent no first byte within {0:?}")]
    FirstByteTimeout(Duration),
    #[error("origin body stalled for {0:?}")]
    IdleTimeout(Duration),
    #[error("origin body ended after {received} of {expected} bytes")]
    Truncated { received: u64, expected: u64 },
    #[error("object is {size} bytes, more than the {limit} allowed")]
    TooLarge { size: u64, limit: u64 },
    #[error("circuit breaker open after repeated origin failures; retry in {0:?}")]
    CircuitOpen(Duration),
    #[error("the invocation's deadline is near; the copy is abandoned and will be retried")]
    Deadline,
    #[error("concurrent write to the same key (409); will retry")]
    WriteConflict,
    #[error("at {rate} bytes/s per connection and {workers} part workers, {size} bytes would take longer than the {days} day(s) an upload may live")]
    TooSlow {
        size: u64,
        rate: u64,
        workers: u32,
        days: u32,
    },
    #[error("the multipart upload {0} is gone (completed or aborted)")]
    UploadGone(String),
    #[error("the upload does not hold every part yet: {0}")]
    PartsMissing(String),
    #[error("the origin changed {0} times while the object was being copied; giving up")]
    OriginUnstable(u32),
    #[error(transparent)]
    Aws(#[from] shared::Error),
    /// At cold start: the function cannot start without the secret the origin requires.
    #[error("cannot read the origin secret {arn}: {reason}")]
    OriginSecret { arn: String, reason: String },
}

impl BackfillError {
    /// Whether this failure speaks of the origin's health (and so feeds the circuit breaker).
    pub fn is_origin_failure(&self) -> bool {
        matches!(
            self,
            BackfillError::OriginUnavailable { .. }
                | BackfillError::OriginTransport(_)
                | BackfillError::FirstByteTimeout(_)
                | BackfillError::IdleTimeout(_)
                | BackfillError::Truncated { .. }
        )
    }

    /// The origin sent more bytes than its Content-Length announced.
    pub fn longer_than(expected: u64) -> Self {
        BackfillError::OriginTransport(format!(
            "origin sent more than its Content-Length of {expected} bytes"
        ))
    }

    /// A transport error after `received` bytes of a body of known length is a truncation (the
    /// cause is logged); anything else stays as it is.
    pub fn in_body(self, received: u64, expected: Option<u64>) -> Self {
        match (self, expected) {
            (BackfillError::OriginTransport(cause), Some(expected)) => {
                tracing::warn!(%cause, received, expected, "origin body failed");
                BackfillError::Truncated { received, expected }
            }
            (err, _) => err,
        }
    }
}

impl Failure for BackfillError {
    fn is_retryable(&self) -> bool {
        match self {
            BackfillError::InvalidMessage(_)
            | BackfillError::WrongBucket(_)
            | BackfillError::OriginNotAllowed(_)
            | BackfillError::ForbiddenAddress { .. }
            | BackfillError::InvalidOriginUrl { .. }
            | BackfillError::OriginPathNotAllowed { .. }
            | BackfillError::LoopbackNotAllowed { .. }
            | BackfillError::UriNotAKey { .. }
            | BackfillError::KeyMismatch { .. }
            | BackfillError::RefusedPrefix { .. }
            | BackfillError::OriginRefused { .. }
            | BackfillError::RedirectRefused { .. }
            | BackfillError::TooLarge { .. }
            | BackfillError::TooSlow { .. }
            | BackfillError::OriginUnstable(_) => false,
            BackfillError::OriginUnavailable { .. }
            | BackfillError::OriginTransport(_)
            | BackfillError::FirstByteTimeout(_)
            | BackfillError::IdleTimeout(_)
            | BackfillError::Truncated { .. }
            | BackfillError::CircuitOpen(_)
            | BackfillError::Deadline
            | BackfillError::WriteConflict
            | BackfillError::PartsMissing(_)
            | BackfillError::UploadGone(_)
            | BackfillError::OriginSecret { .. } => true,
            BackfillError::Aws(err) => err.is_retryable(),
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            BackfillError::InvalidMessage(_) => "invalid_message",
            BackfillError::WrongBucket(_) => "wrong_bucket",
            BackfillError::OriginNotAllowed(_) => "origin_not_allowed",
            BackfillError::ForbiddenAddress { .. } => "forbidden_address",
            BackfillError::InvalidOriginUrl { .. } => "invalid_origin_url",
            BackfillError::OriginPathNotAllowed { .. } => "origin_path_not_allowed",
            BackfillError::LoopbackNotAllowed { .. } => "loopback_not_allowed",
            BackfillError::UriNotAKey { .. } => "uri_not_a_key",
            BackfillError::KeyMismatch { .. } => "key_mismatch",
            BackfillError::RefusedPrefix { .. } => "refused_prefix",
            BackfillError::OriginRefused { .. } => "origin_refused",
            BackfillError::RedirectRefused { .. } => "redirect_refused",
            BackfillError::OriginUnavailable { .. } => "origin_unavailable",
            BackfillError::OriginTransport(_) => "origin_transport",
            BackfillError::FirstByteTimeout(_) => "origin_first_byte_timeout",
            BackfillError::IdleTimeout(_) => "origin_idle_timeout",
            BackfillError::Truncated { .. } => "origin_truncated",
            BackfillError::TooLarge { .. } => "too_large",
            BackfillError::CircuitOpen(_) => "circuit_open",
            BackfillError::Deadline => "deadline",
            BackfillError::WriteConflict => "write_conflict",
            BackfillError::TooSlow { .. } => "too_slow",
            BackfillError::PartsMissing(_) => "parts_missing",
            BackfillError::UploadGone(_) => "upload_gone",
            BackfillError::OriginUnstable(_) => "origin_unstable",
            BackfillError::Aws(err) => err.reason(),
            BackfillError::OriginSecret { .. } => "origin_secret",
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            BackfillError::OriginUnavailable { retry_after, .. } => *retry_after,
            BackfillError::CircuitOpen(remaining) => Some(*remaining),
            _ => None,
        }
    }
}

impl From<BackfillError> for lambda_runtime::Diagnostic {
    fn from(err: BackfillError) -> Self {
        shared::error::diagnostic(&err)
    }
}
