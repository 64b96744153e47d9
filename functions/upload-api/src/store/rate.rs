//! Rate buckets in DynamoDB (`UPLOADS_TABLE`, key `id` = `rate#<caller>`). Each request reads the
//! caller's bucket, decides with [`crate::ratelimit::take`], and writes the new state on the
//! condition that nobody wrote since; a lost race reads again.

use crate::config::RateLimit;
use crate::error::Error;
use crate::ratelimit::{take, Bucket, Decision};
use crate::store::{is_conditional_failure, n, number, s, RateLimiter};

/// Reads and conditional writes per request before the caller is asked to retry.
const ATTEMPTS: usize = 4;
/// An idle bucket is deleted by the table's TTL after a day (it would be full again anyway).
const IDLE_TTL_S: u64 = 24 * 3600;

#[derive(Debug, Clone)]
pub struct DynamoRateLimiter {
    client: aws_sdk_dynamodb::Client,
    table: String,
    limit: RateLimit,
}

impl DynamoRateLimiter {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        limit: RateLimit,
    ) -> Self {
        DynamoRateLimiter {
            client,
            table: table.into(),
            limit,
        }
    }
}

impl RateLimiter for DynamoRateLimiter {
    async fn acquire(&self, caller: &str, now_ms: u64) -> Result<Decision, Error> {
        let id = format!("rate#{caller}");
        for _ in 0..ATTEMPTS {
            let stored = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("id", s(&id))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| Error::aws("GetItem", e))?
                .item;
            let previous = match &stored {
                Some(item) => Some(Bucket {
                    tokens: number(item, "tokens")?,
                    at_ms: number(item, "at_ms")?,
                }),
                None => None,
            };
            let bucket = match take(previous, now_ms, self.limit) {
                Decision::Allow(bucket) => bucket,
                deny @ Decision::Deny { .. } => return Ok(deny),
            };
            let mut request = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("id", s(&id))
                .item("tokens", n(bucket.tokens))
                .item("at_ms", n(bucket.at_ms))
                .item("ttl", n(now_ms / 1000 + IDLE_TTL_S));
            request = match previous {
                Some(previous) => request
                    .condition_expression("at_ms = :at AND tokens = :tokens")
                    .expression_attribute_values(":at", n(previous.at_ms))
                    .expression_attribute_values(":tokens", n(previous.tokens)),
                None => request.condition_expression("attribute_not_exists(id)"),
            };
            match request.send().await {
                Ok(_) => return Ok(Decision::Allow(bucket)),
                Err(err) if is_conditional_failure(&err) => continue,
                Err(err) => return Err(Error::aws("PutItem", err)),
            }
        }
        // The bucket changed under every attempt: the caller is busy enough to wait a moment.
        Ok(Decision::Deny {
            retry_after: std::time::Duration::from_secs(1),
        })
    }
}
