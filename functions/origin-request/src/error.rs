//! The hook's one error type. None of these reaches the viewer: the handler answers with the
//! request (or response) it was given.

use std::time::Duration;

use shared::Failure;

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("the event has no record")]
    NoRecord,
    #[error("the event is not a CloudFront event: {0}")]
    InvalidEvent(String),
    #[error(transparent)]
    Queue(#[from] shared::Error),
    #[error("the send did not finish in {0:?}")]
    Timeout(Duration),
    #[error("the hook panicked: {0}")]
    Panic(String),
}

impl Failure for EdgeError {
    fn is_retryable(&self) -> bool {
        match self {
            EdgeError::Queue(err) => err.is_retryable(),
            EdgeError::Timeout(_) => true,
            EdgeError::NoRecord | EdgeError::InvalidEvent(_) | EdgeError::Panic(_) => false,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            EdgeError::NoRecord => "no_record",
            EdgeError::InvalidEvent(_) => "invalid_event",
            EdgeError::Queue(err) if err.is_retryable() => "queue_unavailable",
            EdgeError::Queue(_) => "queue_refused",
            EdgeError::Timeout(_) => "timeout",
            EdgeError::Panic(_) => "panic",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_errors_keep_their_class() {
        let throttled = EdgeError::from(shared::Error::Aws {
            operation: "SendMessage",
            message: "Throttling".into(),
            retryable: true,
        });
        assert!(throttled.is_retryable());
        assert_eq!(throttled.reason(), "queue_unavailable");
        let denied = EdgeError::from(shared::Error::Aws {
            operation: "SendMessage",
            message: "AccessDenied: no".into(),
            retryable: false,
        });
        assert!(!denied.is_retryable());
        assert_eq!(denied.reason(), "queue_refused");
        assert_eq!(denied.to_string(), "SendMessage failed: AccessDenied: no");
        let timeout = EdgeError::Timeout(Duration::from_millis(300));
        assert!(timeout.is_retryable());
        assert_eq!(timeout.to_string(), "the send did not finish in 300ms");
    }
}
