//! The edge hook: on the domestic (secondary) origin's attempt of CloudFront's origin group, send
//! one backfill message to SQS, and let the request through.
//!
//! Lambda@Edge runs only Node.js and Python, so this crate is a Node-API addon ([`addon`]) that a
//! few lines of JavaScript (`handler/index.js`) load. The work is split the usual way: [`plan`]
//! decides from the event alone, [`queue`] bounds the send in time, [`sqs`] is the one adapter,
//! and [`hook`] ties them together with repeat suppression, logs and metrics.

pub mod addon;
pub mod config;
pub mod error;
pub mod hook;
pub mod plan;
pub mod queue;
pub mod repeat;
pub mod sqs;

#[cfg(test)]
mod tests;
