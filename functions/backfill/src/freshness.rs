//! The freshness table: every object the function copied, when it was last seen to change, when
//! it was last revalidated and when it is next due; and each day's counters.
//!
//! - Object items: `pk` = `bucket/key`, `copy` (the copy message, JSON: the origin and path to
//!   revalidate against), `backfilled_at`, `changed_at`, `validated_at`, `due_at` (epoch
//!   seconds), `shard` (`due#0`..`due#3`, from a hash of the key).
//! - The index `due` (hash `shard`, range `due_at`) is what the schedule walks: the earliest due
//!   first. Four shards spread its writes over four index partitions.
//! - Stats items: `pk` = `stats#YYYY-MM-DD` (UTC), counters added with `ADD`, kept 90 days.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use shared::message::BackfillMessage;
use tokio::time::Instant;

use crate::error::BackfillError;
use crate::lease::{condition_failed, dynamo_error, n, number, s, text};

/// Shards of the `due` index.
pub const SHARDS: u32 = 4;
pub const DUE_INDEX: &str = "due";
const STATS_TTL: u64 = 90 * 86_400;

/// An object the table tracks.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    pub copy: BackfillMessage,
    pub changed_at: u64,
    pub due_at: u64,
}

/// How often an object is revalidated: a tenth of the time since it last changed (an object
/// unchanged for ten days is looked at daily; one copied a minute ago, soon), within
/// `[min, max]`. `max` is the operator's maximum staleness.
pub fn revalidation_interval(now: u64, changed_at: u64, min: Duration, max: Duration) -> u64 {
    let min = min.as_secs().max(1);
    let max = max.as_secs().max(min);
    (now.saturating_sub(changed_at) / 10).clamp(min, max)
}

/// The item id of an object.
pub fn object_id(bucket: &str, key: &str) -> String {
    format!("{bucket}/{key}")
}

/// The shard of an object's id (FNV-1a: stable across builds, unlike the std hasher).
pub fn shard_of(id: &str) -> String {
    let hash = id.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    format!("due#{}", hash % SHARDS)
}

/// The day's stats item id.
pub fn stats_id(epoch: u64) -> String {
    let day = time::OffsetDateTime::from_unix_timestamp(epoch as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    format!("stats#{day}")
}

pub struct DynamoFreshness {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoFreshness {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        DynamoFreshness { client, table }
    }

    fn until(&self, deadline: Instant) -> Result<aws_sdk_dynamodb::config::Builder, BackfillError> {
        crate::lease::dynamo_until(&self.client, deadline)
    }

    fn key(id: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".to_owned(), s(id))])
    }

    /// The object's item, if the table tracks it.
    pub async fn get(&self, id: &str, deadline: Instant) -> Result<Option<Tracked>, BackfillError> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .consistent_read(true)
            .customize()
            .config_override(self.until(deadline)?)
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", e))?;
        Ok(got.item.as_ref().and_then(tracked))
    }

    /// Records that the object was copied, or revalidated, at `validated_at`.
    pub async fn record(
        &self,
        copy: &BackfillMessage,
        changed_at: u64,
        validated_at: u64,
        due_at: u64,
        deadline: Instant,
    ) -> Result<(), BackfillError> {
        let id = object_id(&copy.bucket, copy.key.as_str());
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&id)))
            .update_expression(
                "SET #copy = :copy, #changed_at = :changed_at, #validated_at = :validated_at, \
                 #due_at = :due_at, #shard = :shard, \
                 #backfilled_at = if_not_exists(#backfilled_at, :validated_at)",
            )
            .expression_attribute_names("#copy", "copy")
            .expression_attribute_names("#changed_at", "changed_at")
            .expression_attribute_names("#validated_at", "validated_at")
            .expression_attribute_names("#due_at", "due_at")
            .expression_attribute_names("#shard", "shard")
            .expression_attribute_names("#backfilled_at", "backfilled_at")
            .expression_attribute_values(":copy", s(&copy.to_json()))
            .expression_attribute_values(":changed_at", n(changed_at))
            .expression_attribute_values(":validated_at", n(validated_at))
            .expression_attribute_values(":due_at", n(due_at))
            .expression_attribute_values(":shard", s(&shard_of(&id)))
            .customize()
            .config_override(self.until(deadline)?)
            .send()
            .await
            .map_err(|e| dynamo_error("UpdateItem", e))?;
        Ok(())
    }

    /// Stops tracking an object (it was deleted).
    pub async fn forget(&self, id: &str, deadline: Instant) -> Result<(), BackfillError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .customize()
            .config_override(self.until(deadline)?)
            .send()
            .await
            .map_err(|e| dynamo_error("DeleteItem", e))?;
        Ok(())
    }

    /// Up to `limit` objects due by `now`, the earliest first, from every shard.
    pub async fn due(
        &self,
        now: u64,
        limit: usize,
        deadline: Instant,
    ) -> Result<Vec<Tracked>, BackfillError> {
        let mut due = Vec::new();
        for shard in 0..SHARDS {
            let mut start = None;
            let mut found = 0;
            // Each shard's earliest `limit`: the merged earliest `limit` are among them.
            while found < limit {
                let page = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(DUE_INDEX)
                    .key_condition_expression("#shard = :shard AND #due_at <= :now")
                    .expression_attribute_names("#shard", "shard")
                    .expression_attribute_names("#due_at", "due_at")
                    .expression_attribute_values(":shard", s(&format!("due#{shard}")))
                    .expression_attribute_values(":now", n(now))
                    .limit((limit - found).min(1000) as i32)
                    .set_exclusive_start_key(start.take())
                    .customize()
                    .config_override(self.until(deadline)?)
                    .send()
                    .await
                    .map_err(|e| dynamo_error("Query", e))?;
                for item in page.items() {
                    if let Some(item) = tracked(item) {
                        due.push(item);
                        found += 1;
                    }
                }
                match page.last_evaluated_key {
                    Some(key) if !key.is_empty() => start = Some(key),
                    _ => break,
                }
            }
        }
        due.sort_by_key(|item| item.due_at);
        due.truncate(limit);
        Ok(due)
    }

    /// Moves an object's next revalidation from `due_at` to `until`, if no one else did: a
    /// schedule's claim, so that two sweeps never send the same object twice.
    pub async fn claim(
        &self,
        id: &str,
        due_at: u64,
        until: u64,
        deadline: Instant,
    ) -> Result<bool, BackfillError> {
        let claimed = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .update_expression("SET #due_at = :until")
            .condition_expression("#due_at = :due_at")
            .expression_attribute_names("#due_at", "due_at")
            .expression_attribute_values(":due_at", n(due_at))
            .expression_attribute_values(":until", n(until))
            .customize()
            .config_override(self.until(deadline)?)
            .send()
            .await;
        match claimed {
            Ok(_) => Ok(true),
            Err(err) if condition_failed(&err) => Ok(false),
            Err(err) => Err(dynamo_error("UpdateItem", err)),
        }
    }

    /// Adds to the day's counters.
    pub async fn count(
        &self,
        now: u64,
        counters: &[(&str, u64)],
        deadline: Instant,
    ) -> Result<(), BackfillError> {
        let counters: Vec<_> = counters.iter().filter(|(_, by)| *by > 0).collect();
        if counters.is_empty() {
            return Ok(());
        }
        let mut adds = Vec::new();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&stats_id(now))));
        for (i, (name, by)) in counters.iter().enumerate() {
            adds.push(format!("#c{i} :c{i}"));
            request = request
                .expression_attribute_names(format!("#c{i}"), *name)
                .expression_attribute_values(format!(":c{i}"), n(*by));
        }
        request
            .update_expression(format!("ADD {} SET #ttl = :ttl", adds.join(", ")))
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":ttl", n(now + STATS_TTL))
            .customize()
            .config_override(self.until(deadline)?)
            .send()
            .await
            .map_err(|e| dynamo_error("UpdateItem", e))?;
        Ok(())
    }
}

fn tracked(item: &HashMap<String, AttributeValue>) -> Option<Tracked> {
    Some(Tracked {
        copy: BackfillMessage::parse(text(item, "copy")?).ok()?,
        changed_at: number(item, "changed_at")?,
        due_at: number(item, "due_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn young_objects_are_revalidated_often_and_none_past_the_maximum() {
        let (min, max) = (Duration::from_secs(60), Duration::from_secs(86_400));
        assert_eq!(revalidation_interval(1_000, 1_000, min, max), 60);
        assert_eq!(revalidation_interval(10_000, 1_000, min, max), 900);
        assert_eq!(revalidation_interval(100 * 86_400, 0, min, max), 86_400);
        // A clock behind the change time counts as just changed.
        assert_eq!(revalidation_interval(0, 1_000, min, max), 60);
        // A maximum below the minimum wins.
        assert_eq!(
            revalidation_interval(10_000, 0, min, Duration::from_secs(30)),
            60
        );
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(
            shard_of("overseas-origin/images/a.jpg"),
            shard_of("overseas-origin/images/a.jpg")
        );
        let used: std::collections::BTreeSet<_> = (0..64)
            .map(|i| shard_of(&format!("overseas-origin/images/{i}.jpg")))
            .collect();
        assert_eq!(used.len(), SHARDS as usize);
        assert_eq!(stats_id(1_764_921_600), "stats#2025-12-05");
    }
}
