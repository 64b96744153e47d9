//! The tool's one error type: what stops a command, and the exit code it ends with.

use std::process::ExitCode;

/// Why a command stopped before it could finish its work.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The command line is wrong in a way clap cannot see (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// An input could not be read or is not what it should be.
    #[error("{0}")]
    Input(String),
    #[error("queue {url} does not exist (or these credentials cannot see it): {detail}")]
    MissingQueue { url: String, detail: String },
    #[error("bucket {bucket} does not exist (or these credentials cannot see it): {detail}")]
    MissingBucket { bucket: String, detail: String },
    #[error("table {table} does not exist (or these credentials cannot see it): {detail}")]
    MissingTable { table: String, detail: String },
    #[error(transparent)]
    Aws(#[from] shared::Error),
}

impl CtlError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CtlError::Usage(_) => ExitCode::from(2),
            _ => ExitCode::from(1),
        }
    }
}

/// How a command that ran to its end went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for was done (exit code 0).
    Done,
    /// Some items failed; the report lists them (exit code 1).
    Failures,
}

impl Outcome {
    pub fn from_failures(failures: usize) -> Self {
        if failures == 0 {
            Outcome::Done
        } else {
            Outcome::Failures
        }
    }

    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Done => ExitCode::SUCCESS,
            Outcome::Failures => ExitCode::from(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_exit_with_2_others_with_1() {
        assert_eq!(CtlError::Usage("bad".into()).exit_code(), ExitCode::from(2));
        assert_eq!(
            CtlError::Input("unreadable".into()).exit_code(),
            ExitCode::from(1)
        );
        assert_eq!(Outcome::from_failures(0), Outcome::Done);
        assert_eq!(Outcome::from_failures(3), Outcome::Failures);
    }
}
