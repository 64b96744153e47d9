//! S3 event notifications as they arrive in an SQS message body. Parsed by the shared crate, which
//! the upload metadata writer uses too: straight from S3, through SNS raw delivery, or wrapped in an
//! SNS notification; `s3:TestEvent` recognised; unknown fields ignored.

pub use shared::s3_event::{parse_body, Body, Notice};
