//! Direct uploads and file sync for the overseas bucket.
//!
//! The API (behind a Lambda function URL) hands out short-lived, narrowly scoped upload
//! permissions: presigned PUT and POST for single objects, and resumable multipart uploads whose
//! parts are signed with their checksums and checked against S3 before completion. Bytes go from
//! the client to S3, never through a function. The metadata writer records each new object's
//! version from its S3 event and announces it on SNS; the API serves the latest version of a key
//! and a change feed per caller.
//!
//! Pure decisions (`plan`, `record`, `ratelimit`, `auth`, `routes`, `checksum`, `post_policy`),
//! I/O behind narrow traits (`store`) with one AWS adapter each, the handlers (`service` with
//! `function_url`, and `metadata`), and a client of the API (`client`).

pub mod api;
pub mod auth;
pub mod checksum;
pub mod client;
pub mod cloudfront;
pub mod config;
pub mod error;
pub mod function_url;
pub mod metadata;
pub mod plan;
pub mod post_policy;
pub mod ratelimit;
pub mod record;
pub mod routes;
pub mod service;
pub mod store;

pub use config::{ApiConfig, MetadataConfig};
pub use error::Error;
pub use metadata::MetadataWriter;
pub use service::Api;
