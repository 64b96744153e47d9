//! The error taxonomy: every failure is either retryable (the message goes back to the queue and,
//! after enough attempts, to the DLQ) or permanent (reported once, logged and counted, never
//! retried). Each crate's error type implements [`Failure`] to say which.

use std::time::Duration;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::config::ConfigError;
use crate::key::KeyError;
use crate::message::MessageError;

/// What a failure means for the message that caused it.
pub trait Failure: std::error::Error {
    /// Whether trying again later could succeed.
    fn is_retryable(&self) -> bool;

    /// A short, stable label for logs and metric dimensions ("invalid_message", "origin_5xx").
    fn reason(&self) -> &'static str;

    /// The least time to wait before the next attempt, when the failure says so (a `Retry-After`,
    /// an open circuit breaker).
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// The shared crate's own failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid key: {0}")]
    InvalidKey(#[from] KeyError),
    #[error(transparent)]
    InvalidMessage(#[from] MessageError),
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{operation} failed: {message}")]
    Aws {
        operation: &'static str,
        message: String,
        retryable: bool,
    },
}

impl Error {
    /// Wraps an AWS SDK error, classifying it by what the service said.
    pub fn aws<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + HttpStatus,
    {
        Error::Aws {
            operation,
            retryable: sdk_error_is_retryable(&err),
            message: sdk_error_message(&err),
        }
    }
}

impl Failure for Error {
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Aws {
                retryable: true,
                ..
            }
        )
    }

    fn reason(&self) -> &'static str {
        match self {
            Error::InvalidKey(_) => "invalid_key",
            Error::InvalidMessage(_) => "invalid_message",
            Error::InvalidEvent(_) => "invalid_event",
            Error::Config(_) => "config",
            Error::Aws { .. } => "aws",
        }
    }
}

/// The HTTP status of a raw response, where the SDK kept one.
pub trait HttpStatus {
    fn http_status(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn http_status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Error codes AWS services use for throttling and transient trouble.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "OperationAborted",
    "KMS.ThrottlingException",
];

/// Timeouts, dispatch and response failures, throttling and 5xx are retryable; any other service
/// error (access denied, no such queue, validation) is not.
pub fn sdk_error_is_retryable<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
    R: HttpStatus,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().http_status();
            status >= 500
                || status == 429
                || status == 409
                || service
                    .err()
                    .code()
                    .is_some_and(|code| TRANSIENT_CODES.contains(&code))
        }
        _ => false,
    }
}

/// The service's code and message, or the SDK's own description, in one line.
pub fn sdk_error_message<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(service) => {
            let meta = service.err();
            format!(
                "{}: {}",
                meta.code().unwrap_or("unknown error code"),
                meta.message().unwrap_or("no message")
            )
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

/// The Lambda error response for a failure that ends an invocation: its type says whether the
/// failure is retryable, so that it can be told apart in the logs and by alarms.
#[cfg(feature = "lambda")]
pub fn diagnostic<E: Failure + ?Sized>(err: &E) -> lambda_runtime::Diagnostic {
    let class = if err.is_retryable() {
        "Retryable"
    } else {
        "Permanent"
    };
    lambda_runtime::Diagnostic {
        error_type: format!("{class}.{}", err.reason()),
        error_message: err.to_string(),
    }
}

#[cfg(feature = "lambda")]
impl From<Error> for lambda_runtime::Diagnostic {
    fn from(err: Error) -> Self {
        diagnostic(&err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_are_permanent() {
        let err = Error::from(KeyError::Empty);
        assert!(!err.is_retryable());
        assert_eq!(err.reason(), "invalid_key");
        let err = Error::from(MessageError::MissingVersion);
        assert!(!err.is_retryable());
        assert_eq!(err.to_string(), "message has no \"version\" field");
    }

    #[test]
    fn aws_errors_carry_their_class() {
        let err = Error::Aws {
            operation: "SendMessage",
            message: "Throttling".into(),
            retryable: true,
        };
        assert!(err.is_retryable());
        assert_eq!(err.to_string(), "SendMessage failed: Throttling");
    }

    #[cfg(feature = "lambda")]
    #[test]
    fn diagnostic_names_the_class() {
        let retryable = Error::Aws {
            operation: "PutObject",
            message: "SlowDown: Please reduce your request rate.".into(),
            retryable: true,
        };
        let diagnostic = diagnostic(&retryable);
        assert_eq!(diagnostic.error_type, "Retryable.aws");
        assert_eq!(
            diagnostic.error_message,
            "PutObject failed: SlowDown: Please reduce your request rate."
        );
        let permanent: lambda_runtime::Diagnostic = Error::from(KeyError::DotSegment).into();
        assert_eq!(permanent.error_type, "Permanent.invalid_key");
    }
}
