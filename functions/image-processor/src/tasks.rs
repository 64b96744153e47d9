//! The task table: one record per task, in the model of Powertools' idempotency records.
//!
//! - A conditional put claims a task as `IN_PROGRESS` with a lease that ends when the claiming
//!   invocation's time does, and a token that only the claimer knows.
//! - Success makes it `COMPLETED`; a permanent failure makes it `FAILED` with the reason; both keep
//!   duplicates away until `expires_at` (the table's TTL attribute). A retryable failure deletes
//!   the claim so the next delivery starts afresh.
//! - A record whose lease ended (the invocation died) or whose TTL passed (DynamoDB deletes
//!   expired items lazily) counts as absent, so it can be claimed again.
//! - A refused claim that finds its own token took effect: its answer was lost and the SDK's
//!   retry of the put was refused by the record the first attempt wrote.

use std::collections::HashMap;
use std::future::Future;

use crate::error::Error;
use crate::task::{Lease, Task};
use aws_sdk_dynamodb::types::AttributeValue;
use tokio::time::Instant;

pub const IN_PROGRESS: &str = "IN_PROGRESS";
pub const COMPLETED: &str = "COMPLETED";
pub const FAILED: &str = "FAILED";

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours; `token` proves it to `complete`, `fail` and `release`.
    Claimed {
        token: String,
    },
    Completed,
    Failed {
        reason: String,
    },
    /// Another invocation holds a live lease until `until_ms`.
    Busy {
        until_ms: u64,
    },
}

/// How a finished task ended, for its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Completed {
        renditions: usize,
    },
    /// A removal done: `deleted` renditions deleted.
    Removed {
        deleted: usize,
    },
    Failed {
        reason: String,
        detail: String,
    },
}

/// Every call ends by its `deadline`: one cut there fails with [`Error::Deadline`].
pub trait TaskTable: Send + Sync {
    fn claim(
        &self,
        task: &Task,
        lease: Lease,
        now_ms: u64,
        deadline: Instant,
    ) -> impl Future<Output = Result<Claim, Error>> + Send;

    /// Records the end of a claimed task; `false` if the claim was lost (its lease ended and
    /// another invocation took the task over).
    fn finish(
        &self,
        id: &str,
        token: &str,
        finish: &Finish,
        expires_at_s: u64,
        deadline: Instant,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Gives a claimed task back, so that the next delivery can claim it at once.
    fn release(
        &self,
        id: &str,
        token: &str,
        deadline: Instant,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

#[derive(Debug, Clone)]
pub struct DynamoTaskTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
    ttl_s: u64,
}

/// Claims retried when the record changes between the put and the read that explains it.
const CLAIM_ATTEMPTS: usize = 3;

impl DynamoTaskTable {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        ttl: std::time::Duration,
    ) -> Self {
        DynamoTaskTable {
            client,
            table: table.into(),
            ttl_s: ttl.as_secs(),
        }
    }

    async fn read(
        &self,
        id: &str,
        deadline: Instant,
    ) -> Result<Option<HashMap<String, AttributeValue>>, Error> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(id))
            .consistent_read(true)
            .customize()
            .config_override(self.until(deadline)?)
            .send()
            .await
            .map_err(|e| Error::aws("GetItem", e))?;
        Ok(output.item)
    }

    /// A configuration for one call that ends it by `deadline`; none when it has passed.
    fn until(&self, deadline: Instant) -> Result<aws_sdk_dynamodb::config::Builder, Error> {
        let timeouts = shared::aws::timeouts_until(self.client.config().timeout_config(), deadline)
            .ok_or(Error::Deadline)?;
        Ok(aws_sdk_dynamodb::config::Builder::default().timeout_config(timeouts))
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn string<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

/// What an existing record means for a claim made at `now_ms` with `token`; `None`: it no longer
/// stands in the way.
fn explain(item: &HashMap<String, AttributeValue>, now_ms: u64, token: &str) -> Option<Claim> {
    if number(item, "expires_at").is_some_and(|at| at * 1000 < now_ms) {
        return None;
    }
    match string(item, "status") {
        Some(IN_PROGRESS) if string(item, "lease_token") == Some(token) => Some(Claim::Claimed {
            token: token.to_owned(),
        }),
        Some(COMPLETED) => Some(Claim::Completed),
        Some(FAILED) => Some(Claim::Failed {
            reason: string(item, "reason").unwrap_or("unknown").to_owned(),
        }),
        Some(IN_PROGRESS) => match number(item, "lease_until") {
            Some(until_ms) if until_ms >= now_ms => Some(Claim::Busy { until_ms }),
            _ => None,
        },
        _ => None,
    }
}

fn token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl TaskTable for DynamoTaskTable {
    async fn claim(
        &self,
        task: &Task,
        lease: Lease,
        now_ms: u64,
        deadline: Instant,
    ) -> Result<Claim, Error> {
        for _ in 0..CLAIM_ATTEMPTS {
            let token = token();
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("id", s(&task.id))
                .item("status", s(IN_PROGRESS))
                .item("lease_until", n(lease.until_ms))
                .item("lease_token", s(&token))
                .item("expires_at", n(now_ms / 1000 + self.ttl_s))
                .item("bucket", s(&task.bucket))
                .item("object_key", s(task.key.as_str()))
                .condition_expression(
                    "attribute_not_exists(id) OR expires_at < :now_s \
                     OR (#status = :in_progress AND lease_until < :now_ms)",
                )
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":now_s", n(now_ms / 1000))
                .expression_attribute_values(":now_ms", n(now_ms))
                .expression_attribute_values(":in_progress", s(IN_PROGRESS))
                .customize()
                .config_override(self.until(deadline)?)
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Claim::Claimed { token }),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    if let Some(claim) = self
                        .read(&task.id, deadline)
                        .await?
                        .and_then(|item| explain(&item, now_ms, &token))
                    {
                        return Ok(claim);
                    }
                }
                Err(err) => return Err(Error::aws("PutItem", err)),
            }
        }
        // The record kept changing under us: someone else is at work on it.
        Ok(Claim::Busy {
            until_ms: now_ms + 1000,
        })
    }

    async fn finish(
        &self,
        id: &str,
        token: &str,
        finish: &Finish,
        expires_at_s: u64,
        deadline: Instant,
    ) -> Result<bool, Error> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id))
            .condition_expression("lease_token = :token")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":expires_at", n(expires_at_s));
        request = match finish {
            Finish::Completed { renditions } => request
                .update_expression(
                    "SET #status = :status, expires_at = :expires_at, renditions = :renditions \
                     REMOVE lease_until, lease_token",
                )
                .expression_attribute_values(":status", s(COMPLETED))
                .expression_attribute_values(":renditions", n(renditions)),
            Finish::Removed { deleted } => request
                .update_expression(
                    "SET #status = :status, expires_at = :expires_at, renditions_deleted = :deleted \
                     REMOVE lease_until, lease_token",
                )
                .expression_attribute_values(":status", s(COMPLETED))
                .expression_attribute_values(":deleted", n(deleted)),
            Finish::Failed { reason, detail } => request
                .update_expression(
                    "SET #status = :status, expires_at = :expires_at, reason = :reason, detail = :detail \
                     REMOVE lease_until, lease_token",
                )
                .expression_attribute_values(":status", s(FAILED))
                .expression_attribute_values(":reason", s(reason))
                .expression_attribute_values(":detail", s(detail)),
        };
        match request
            .customize()
            .config_override(self.until(deadline)?)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(Error::aws("UpdateItem", err)),
        }
    }

    async fn release(&self, id: &str, token: &str, deadline: Instant) -> Result<(), Error> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(id))
            .condition_expression("lease_token = :token")
            .expression_attribute_values(":token", s(token))
            .customize()
            .config_override(self.until(deadline)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Not ours any more: whoever holds it now decides.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(Error::aws("DeleteItem", err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn records_explain_a_refused_claim() {
        let now = 1_700_000_000_000;
        let completed = item(&[("status", s(COMPLETED)), ("expires_at", n(now / 1000 + 60))]);
        assert_eq!(explain(&completed, now, "t"), Some(Claim::Completed));
        let failed = item(&[("status", s(FAILED)), ("reason", s("corrupt_image"))]);
        assert_eq!(
            explain(&failed, now, "t"),
            Some(Claim::Failed {
                reason: "corrupt_image".into()
            })
        );
        let busy = item(&[
            ("status", s(IN_PROGRESS)),
            ("lease_until", n(now + 5000)),
            ("lease_token", s("theirs")),
        ]);
        assert_eq!(
            explain(&busy, now, "t"),
            Some(Claim::Busy {
                until_ms: now + 5000
            })
        );
        let lapsed = item(&[("status", s(IN_PROGRESS)), ("lease_until", n(now - 1))]);
        assert_eq!(explain(&lapsed, now, "t"), None);
        let expired = item(&[("status", s(COMPLETED)), ("expires_at", n(now / 1000 - 1))]);
        assert_eq!(explain(&expired, now, "t"), None);
        // Our own claim, whose answer was lost: the SDK's retry was refused by it.
        assert_eq!(
            explain(&busy, now, "theirs"),
            Some(Claim::Claimed {
                token: "theirs".into()
            })
        );
    }
}
