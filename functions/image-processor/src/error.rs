//! The image processor's failures, each either retryable (the message comes back later) or
//! permanent (recorded in the task table with its reason, logged, counted, never retried).

use std::time::Duration;

use aws_sdk_s3::error::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use shared::{Failure, KeyError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("object is {size} bytes, more than the {limit} allowed")]
    TooLarge { size: u64, limit: u64 },
    #[error("image is {width}x{height} pixels, more than the {limit} allowed")]
    TooManyPixels { width: u64, height: u64, limit: u64 },
    #[error("progressive JPEG with more than {limit} scans: decoding it would take too long")]
    TooManyScans { limit: u32 },
    #[error("not an image this processor reads (JPEG, PNG, WebP, GIF)")]
    NotAnImage,
    #[error("unsupported image: {0}")]
    Unsupported(String),
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),
    #[error("could not encode a rendition: {0}")]
    Encode(String),
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    #[error("invalid key: {0}")]
    InvalidKey(#[from] KeyError),
    #[error("task is being processed by another invocation until its lease ends")]
    TaskBusy { retry_after: Duration },
    #[error("rendition {key} changed while it was being replaced")]
    RenditionConflict { key: String },
    #[error("image work was cancelled: {0}")]
    Worker(String),
    #[error("the invocation's deadline is near; the task is abandoned and will be retried")]
    Deadline,
    #[error(transparent)]
    Shared(#[from] shared::Error),
}

impl Failure for Error {
    fn is_retryable(&self) -> bool {
        match self {
            Error::TaskBusy { .. }
            | Error::RenditionConflict { .. }
            | Error::Worker(_)
            | Error::Deadline => true,
            Error::Shared(err) => err.is_retryable(),
            Error::TooLarge { .. }
            | Error::TooManyPixels { .. }
            | Error::TooManyScans { .. }
            | Error::NotAnImage
            | Error::Unsupported(_)
            | Error::Corrupt(_)
            | Error::Encode(_)
            | Error::InvalidEvent(_)
            | Error::InvalidKey(_) => false,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Error::TooLarge { .. } => "too_large",
            Error::TooManyPixels { .. } => "too_many_pixels",
            Error::TooManyScans { .. } => "too_many_scans",
            Error::NotAnImage => "not_an_image",
            Error::Unsupported(_) => "unsupported_image",
            Error::Corrupt(_) => "corrupt_image",
            Error::Encode(_) => "encode_failed",
            Error::InvalidEvent(_) => "invalid_event",
            Error::InvalidKey(_) => "invalid_key",
            Error::TaskBusy { .. } => "task_in_progress",
            Error::RenditionConflict { .. } => "rendition_conflict",
            Error::Worker(_) => "worker",
            Error::Deadline => "deadline",
            Error::Shared(err) => err.reason(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::TaskBusy { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

impl Error {
    /// An AWS call's failure; one cut by its operation timeout (the only timeout the clients
    /// set that ends a call this way) ran into the deadline.
    pub fn aws<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + shared::error::HttpStatus,
    {
        match err {
            SdkError::TimeoutError(_) => Error::Deadline,
            err => Error::Shared(shared::Error::aws(operation, err)),
        }
    }
}

impl From<aws_sdk_s3::primitives::ByteStreamError> for Error {
    fn from(err: aws_sdk_s3::primitives::ByteStreamError) -> Self {
        Error::Shared(shared::Error::Aws {
            operation: "GetObject body",
            message: err.to_string(),
            retryable: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_problems_are_permanent_and_contention_is_not() {
        for err in [
            Error::NotAnImage,
            Error::Corrupt("Premature end of JPEG file".into()),
            Error::TooManyPixels {
                width: 65_000,
                height: 65_000,
                limit: 100_000_000,
            },
            Error::TooLarge { size: 2, limit: 1 },
        ] {
            assert!(!err.is_retryable(), "{err}");
        }
        let busy = Error::TaskBusy {
            retry_after: Duration::from_secs(30),
        };
        assert!(busy.is_retryable());
        assert_eq!(busy.retry_after(), Some(Duration::from_secs(30)));
        assert_eq!(busy.reason(), "task_in_progress");
        assert!(Error::Deadline.is_retryable());
        assert_eq!(Error::Deadline.reason(), "deadline");
        let throttled = Error::from(shared::Error::Aws {
            operation: "PutItem",
            message: "ThrottlingException".into(),
            retryable: true,
        });
        assert!(throttled.is_retryable());
        assert_eq!(throttled.reason(), "aws");
    }
}
