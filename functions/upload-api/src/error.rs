//! The upload service's failures. A refusal of the caller's request is permanent and becomes a 4xx
//! answer with a machine-readable reason; trouble with AWS is retryable or not as the service said
//! and becomes a 503 (with Retry-After) or a 500. The metadata writer uses the same taxonomy for
//! its batch items, and the client for what the API or S3 answered.

use std::time::Duration;

use serde_json::{json, Value};
use shared::{Failure, KeyError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("missing or malformed Authorization header: expected `Bearer <token>`")]
    Unauthenticated,
    #[error("the bearer token is not valid")]
    InvalidToken,
    #[error("the principal {principal:?} has no upload prefix: {why}")]
    UnknownCaller {
        principal: String,
        why: &'static str,
    },
    #[error("too many requests: retry after {} s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    #[error("no route for {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("invalid key: {0}")]
    InvalidKey(#[from] KeyError),
    #[error("key {0:?} has an empty path segment under the caller's prefix (a leading, trailing or double slash)")]
    EmptySegment(String),
    #[error("key {key:?} is outside the caller's prefix {prefix:?}")]
    KeyOutsidePrefix { key: String, prefix: String },
    #[error("size {size} is not allowed: {why}")]
    SizeNotAllowed { size: u64, why: String },
    #[error("content type {0:?} is not allowed")]
    TypeNotAllowed(String),
    #[error("invalid checksum: {0}")]
    InvalidChecksum(String),
    #[error("an expiry of {requested} s is not allowed: 1 to {max} s")]
    ExpiryNotAllowed { requested: u64, max: u64 },
    #[error("part size {requested} is not allowed: {why}")]
    PartSizeNotAllowed { requested: u64, why: String },
    #[error("no upload {0:?} for this caller")]
    UploadNotFound(String),
    #[error("upload {0:?} has expired")]
    UploadExpired(String),
    #[error("upload {upload_id:?} is already {state}")]
    UploadFinished { upload_id: String, state: String },
    #[error("{} out of range: 1 to {part_count}", PartNumbers(numbers))]
    PartNumberOutOfRange { numbers: Vec<u32>, part_count: u32 },
    #[error("{} missing", PartNumbers(numbers))]
    PartsMissing { numbers: Vec<u32> },
    #[error("part {number} does not match: {why}")]
    PartMismatch { number: u32, why: String },
    #[error("checksum mismatch: declared {declared}, the parts make {actual}")]
    ChecksumMismatch { declared: String, actual: String },
    #[error("no record of {0:?}")]
    FileNotFound(String),
    #[error("invalid cursor {0:?}")]
    InvalidCursor(String),
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    #[error("stored record is unreadable: {0}")]
    CorruptRecord(String),
    #[error("no AWS credentials to sign with: {0}")]
    Credentials(String),
    #[error(transparent)]
    Shared(#[from] shared::Error),
    #[error("the upload API refused ({status} {reason}): {message}")]
    Refused {
        status: u16,
        reason: String,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("S3 refused the transfer ({status}): {message}")]
    TransferRefused { status: u16, message: String },
    #[error("transfer failed: {0}")]
    Transfer(String),
    #[error("{path}: {source}")]
    LocalFile {
        path: String,
        source: std::io::Error,
    },
    #[error("resume state: {0}")]
    ResumeState(String),
}

impl Failure for Error {
    fn is_retryable(&self) -> bool {
        match self {
            Error::RateLimited { .. } | Error::Credentials(_) | Error::Transfer(_) => true,
            Error::Shared(err) => err.is_retryable(),
            Error::Refused { status, .. } | Error::TransferRefused { status, .. } => {
                *status == 429 || *status >= 500
            }
            _ => false,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Error::Unauthenticated => "unauthenticated",
            Error::InvalidToken => "invalid_token",
            Error::UnknownCaller { .. } => "unknown_caller",
            Error::RateLimited { .. } => "rate_limited",
            Error::NoRoute { .. } => "no_route",
            Error::InvalidRequest(_) => "invalid_request",
            Error::InvalidKey(_) | Error::EmptySegment(_) => "invalid_key",
            Error::KeyOutsidePrefix { .. } => "key_outside_prefix",
            Error::SizeNotAllowed { .. } => "size_not_allowed",
            Error::TypeNotAllowed(_) => "type_not_allowed",
            Error::InvalidChecksum(_) => "invalid_checksum",
            Error::ExpiryNotAllowed { .. } => "expiry_not_allowed",
            Error::PartSizeNotAllowed { .. } => "part_size_not_allowed",
            Error::UploadNotFound(_) => "upload_not_found",
            Error::UploadExpired(_) => "upload_expired",
            Error::UploadFinished { .. } => "upload_finished",
            Error::PartNumberOutOfRange { .. } => "part_number_out_of_range",
            Error::PartsMissing { .. } => "parts_missing",
            Error::PartMismatch { .. } => "part_mismatch",
            Error::ChecksumMismatch { .. } => "checksum_mismatch",
            Error::FileNotFound(_) => "file_not_found",
            Error::InvalidCursor(_) => "invalid_cursor",
            Error::InvalidEvent(_) => "invalid_event",
            Error::CorruptRecord(_) => "corrupt_record",
            Error::Credentials(_) => "credentials",
            Error::Shared(err) => err.reason(),
            Error::Refused { .. } => "refused",
            Error::TransferRefused { .. } => "transfer_refused",
            Error::Transfer(_) => "transfer",
            Error::LocalFile { .. } => "local_file",
            Error::ResumeState(_) => "resume_state",
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after } => Some(*retry_after),
            Error::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl Error {
    /// The HTTP status the API answers this failure with.
    pub fn status(&self) -> u16 {
        match self {
            Error::Unauthenticated | Error::InvalidToken => 401,
            Error::UnknownCaller { .. } | Error::KeyOutsidePrefix { .. } => 403,
            Error::NoRoute { .. } | Error::UploadNotFound(_) | Error::FileNotFound(_) => 404,
            Error::UploadFinished { .. } => 409,
            Error::UploadExpired(_) => 410,
            Error::SizeNotAllowed { .. } => 413,
            Error::TypeNotAllowed(_) => 415,
            Error::RateLimited { .. } => 429,
            Error::InvalidRequest(_)
            | Error::InvalidKey(_)
            | Error::EmptySegment(_)
            | Error::InvalidChecksum(_)
            | Error::ExpiryNotAllowed { .. }
            | Error::PartSizeNotAllowed { .. }
            | Error::PartNumberOutOfRange { .. }
            | Error::PartsMissing { .. }
            | Error::PartMismatch { .. }
            | Error::ChecksumMismatch { .. }
            | Error::InvalidCursor(_)
            | Error::InvalidEvent(_) => 400,
            other if other.is_retryable() => 503,
            _ => 500,
        }
    }

    /// What the caller may read: the message of a refusal, but nothing of the service's insides.
    pub fn public_message(&self) -> String {
        if self.status() >= 500 {
            "the service could not complete the request; retry later".to_owned()
        } else {
            self.to_string()
        }
    }

    /// Structured facts of a refusal, for clients that act on them. Lists of parts are cut to
    /// their first [`DETAILED_PARTS`], with the whole `count`.
    pub fn details(&self) -> Option<Value> {
        let first = |numbers: &[u32]| numbers[..numbers.len().min(DETAILED_PARTS)].to_vec();
        match self {
            Error::PartsMissing { numbers } => {
                Some(json!({ "parts": first(numbers), "count": numbers.len() }))
            }
            Error::PartNumberOutOfRange {
                numbers,
                part_count,
            } => Some(json!({
                "parts": first(numbers),
                "count": numbers.len(),
                "part_count": part_count,
            })),
            Error::PartMismatch { number, .. } => Some(json!({ "part": number })),
            Error::ChecksumMismatch { declared, actual } => {
                Some(json!({ "declared": declared, "actual": actual }))
            }
            Error::KeyOutsidePrefix { prefix, .. } => Some(json!({ "prefix": prefix })),
            Error::UploadFinished { state, .. } => Some(json!({ "state": state })),
            _ => None,
        }
    }

    /// Wraps an AWS SDK error, classified by what the service said.
    pub fn aws<E, R>(
        operation: &'static str,
        err: aws_smithy_runtime_api::client::result::SdkError<E, R>,
    ) -> Self
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + shared::error::HttpStatus,
    {
        Error::Shared(shared::Error::aws(operation, err))
    }
}

/// Most part numbers a refusal's details list.
pub const DETAILED_PARTS: usize = 10;
/// Most part numbers a refusal's message (and its log line) names.
const NAMED_PARTS: usize = 3;

/// Part numbers in a message: a few, then how many more (a client may send 10,000 bad ones).
struct PartNumbers<'a>(&'a [u32]);

impl std::fmt::Display for PartNumbers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let numbers = self.0;
        let named = &numbers[..numbers.len().min(NAMED_PARTS)];
        let list = named
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        match (numbers.len(), numbers.len() - named.len()) {
            (1, _) => write!(f, "part {list} is"),
            (_, 0) => {
                let (head, last) = list.rsplit_once(", ").unwrap_or(("", &list));
                write!(f, "parts {head} and {last} are")
            }
            (_, more) => write!(f, "parts {list} and {} more are", thousands(more)),
        }
    }
}

/// 9987 as "9,987".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(err: Error) -> Self {
        shared::error::diagnostic(&err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_permanent_4xx() {
        let refusals = [
            Error::Unauthenticated,
            Error::KeyOutsidePrefix {
                key: "uploads/bob/a".into(),
                prefix: "uploads/alice/".into(),
            },
            Error::SizeNotAllowed {
                size: 1,
                why: "x".into(),
            },
            Error::TypeNotAllowed("text/html".into()),
            Error::UploadExpired("u".into()),
            Error::PartsMissing { numbers: vec![2] },
            Error::ChecksumMismatch {
                declared: "a".into(),
                actual: "b".into(),
            },
        ];
        for err in refusals {
            assert!(!err.is_retryable(), "{err}");
            assert!((400..500).contains(&err.status()), "{err}");
            assert_eq!(err.public_message(), err.to_string());
        }
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let err = Error::RateLimited {
            retry_after: Duration::from_secs(3),
        };
        assert_eq!(err.status(), 429);
        assert!(err.is_retryable());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn aws_trouble_hides_its_details() {
        let throttled = Error::Shared(shared::Error::Aws {
            operation: "PutItem",
            message: "ThrottlingException: slow down".into(),
            retryable: true,
        });
        assert_eq!(throttled.status(), 503);
        assert!(!throttled.public_message().contains("PutItem"));
        let denied = Error::Shared(shared::Error::Aws {
            operation: "PutItem",
            message: "AccessDenied".into(),
            retryable: false,
        });
        assert_eq!(denied.status(), 500);
        assert_eq!(denied.reason(), "aws");
    }

    #[test]
    fn details_name_the_parts() {
        let err = Error::PartsMissing {
            numbers: vec![3, 4],
        };
        assert_eq!(err.details(), Some(json!({"parts": [3, 4], "count": 2})));
        assert_eq!(err.to_string(), "parts 3 and 4 are missing");
        let one = Error::PartsMissing { numbers: vec![7] };
        assert_eq!(one.to_string(), "part 7 is missing");
        let three = Error::PartNumberOutOfRange {
            numbers: vec![0, 4, 5],
            part_count: 3,
        };
        assert_eq!(
            three.to_string(),
            "parts 0, 4 and 5 are out of range: 1 to 3"
        );
    }

    #[test]
    fn many_bad_parts_make_a_short_refusal() {
        let numbers: Vec<u32> = (1..=10_000).collect();
        for err in [
            Error::PartsMissing {
                numbers: numbers.clone(),
            },
            Error::PartNumberOutOfRange {
                numbers: numbers.clone(),
                part_count: 3,
            },
        ] {
            // The log line's `error` field is the message.
            let message = err.to_string();
            assert!(
                message.starts_with("parts 1, 2, 3 and 9,997 more are"),
                "{message}"
            );
            assert!(message.len() < 80, "{message}");
            let details = err.details().unwrap();
            assert_eq!(details["count"], 10_000);
            assert_eq!(details["parts"].as_array().unwrap().len(), DETAILED_PARTS);
            assert!(details.to_string().len() < 120, "{details}");
        }
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
