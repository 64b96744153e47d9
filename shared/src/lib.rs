//! What the edge hook, the backfill function and the image processor share.

pub mod aws;
#[cfg(feature = "lambda")]
pub mod batch;
pub mod change;
#[cfg(feature = "s3")]
pub mod checksum;
pub mod cloudfront;
pub mod config;
pub mod error;
pub mod key;
pub mod logging;
pub mod message;
pub mod metrics;
pub mod origin_secret;
pub mod retry;
pub mod s3_event;

pub use error::{Error, Failure};
pub use key::{KeyError, ObjectKey};
pub use message::BackfillMessage;
