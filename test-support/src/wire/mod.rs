//! The wire contract: every request the functions and tools send to AWS (S3, SQS, DynamoDB,
//! SNS, Secrets Manager, CloudFront, CloudWatch), recorded as it crosses the wire and checked against the rules AWS applies to it.
//!
//! Local stand-ins accept requests that AWS refuses (moto, s3s-fs, LocalStack and MiniStack all
//! stored a PutObject whose `x-amz-sdk-checksum-algorithm` had no checksum beside it, which S3
//! answers with 400), so a green suite proves nothing about AWS by itself. The [`recorder`] sits
//! between the code under test and the stand-ins, summarises each request ([`Exchange`]: its
//! headers, its body's framing and checksums, the body itself where it is a small API document),
//! and [`rules`] checks the summaries. `scripts/test` runs every suite through a recorder and
//! fails on any violation (`aws-wire check`).

pub mod body;
pub mod cbor;
pub mod classify;
pub mod recorder;
pub mod rules;

use serde::{Deserialize, Serialize};

pub use body::BodySummary;
pub use rules::{Checker, Violation};

/// One request as it crossed the wire, and the status it was answered with.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Exchange {
    /// `s3`, `sqs`, `dynamodb`, `sns`, `secretsmanager`, `cloudfront`, `monitoring`
    /// (CloudWatch), or `unknown`: from the SigV4 credential scope.
    pub service: String,
    /// The API operation (`PutObject`, `SendMessageBatch`, `PutItem`, ...).
    pub operation: String,
    /// `http` or `https`: the scheme the client used.
    pub scheme: String,
    pub method: String,
    pub path: String,
    pub query: String,
    /// Header names in lower case, in the order sent; the signature itself is left out.
    pub headers: Vec<(String, String)>,
    pub body: BodySummary,
    /// The answer's status (0: no answer, the upstream failed).
    pub status: u16,
    /// The answer's body where a later rule needs it (CreateMultipartUpload's upload id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

impl Exchange {
    /// The first value of a header (names are matched in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter's decoded value (`Some("")` for a bare name such as `uploads`).
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(&self.query, name)
    }

    /// One line that names the request in a report.
    pub fn describe(&self) -> String {
        let query = if self.query.is_empty() {
            String::new()
        } else {
            format!("?{}", self.query)
        };
        format!(
            "{} {} {} {}{} -> {}",
            self.service, self.operation, self.method, self.path, query, self.status
        )
    }
}

pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', "%20"))
        .decode_utf8_lossy()
        .into_owned()
}
