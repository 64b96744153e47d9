//! A local event source mapping: what Lambda does between an SQS queue and a function. Long-polls
//! the queue, hands batches to the function (through the Runtime Interface Emulator), deletes the
//! records it did not report as failed, and leaves the failed ones to come back after their
//! visibility timeout, until the queue's redrive policy moves them to the DLQ. Mappings that feed
//! one emulator share its [`Sandbox`]: an emulator runs one invocation at a time. A mapping given
//! the account's concurrency ([`crate::concurrency`]) takes an execution from it for each
//! invocation and, throttled, backs off and tries the same batch again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::concurrency;

/// A throttled invocation is tried again after this, doubling up to [`THROTTLE_BACKOFF_MAX`].
/// (Lambda's pollers back off too; their exact schedule is not published.)
const THROTTLE_BACKOFF_START: Duration = Duration::from_millis(50);
const THROTTLE_BACKOFF_MAX: Duration = Duration::from_secs(1);

pub struct Mapping {
    pub name: &'static str,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub function_url: String,
    pub batch_size: i32,
    /// How long to gather records before invoking with fewer than `batch_size`
    /// (`MaximumBatchingWindowInSeconds`); zero: invoke with what one receive brought.
    pub batching_window: Duration,
    pub sandbox: Sandbox,
    /// The account's concurrency this function draws on (none: unlimited).
    pub concurrency: Option<concurrency::Function>,
}

/// One function sandbox (one Runtime Interface Emulator): the mappings that invoke it take turns.
#[derive(Clone, Default)]
pub struct Sandbox(Arc<tokio::sync::Mutex<()>>);

/// What a mapping delivered.
#[derive(Clone, Default)]
pub struct Deliveries(Arc<Mutex<DeliveryCounts>>);

#[derive(Default)]
pub struct DeliveryCounts {
    pub batches: usize,
    pub records: usize,
    pub deleted: usize,
    pub failed: usize,
    /// Records delivered per message body's `key` field (backfill messages), or its copy's
    /// (part tasks).
    pub by_key: HashMap<String, usize>,
    /// Every body delivered (the demo is small), for checks of what messages carry.
    pub bodies: Vec<String>,
}

impl Deliveries {
    pub fn records_for(&self, key: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .by_key
            .get(key)
            .copied()
            .unwrap_or_default()
    }

    pub fn bodies(&self) -> Vec<String> {
        self.0.lock().unwrap().bodies.clone()
    }

    pub fn snapshot(&self) -> (usize, usize, usize, usize) {
        let counts = self.0.lock().unwrap();
        (
            counts.batches,
            counts.records,
            counts.deleted,
            counts.failed,
        )
    }
}

pub async fn start(mapping: Mapping) -> Result<(JoinHandle<()>, Deliveries)> {
    let arn = mapping
        .sqs
        .get_queue_attributes()
        .queue_url(&mapping.queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("reading the {} queue's ARN", mapping.name))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .context("the queue has no ARN")?;
    let deliveries = Deliveries::default();
    let counts = deliveries.clone();
    let client = reqwest::Client::new();
    let task = tokio::spawn(async move {
        loop {
            if let Err(err) = poll_once(&mapping, &arn, &client, &counts).await {
                eprintln!("event source mapping {}: {err:#}", mapping.name);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    Ok((task, deliveries))
}

async fn poll_once(
    mapping: &Mapping,
    arn: &str,
    client: &reqwest::Client,
    counts: &Deliveries,
) -> Result<()> {
    let mut messages = Vec::new();
    let mut window_ends = None;
    loop {
        let wanted = (mapping.batch_size as usize - messages.len()).min(10) as i32;
        let received = mapping
            .sqs
            .receive_message()
            .queue_url(&mapping.queue_url)
            .max_number_of_messages(wanted)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await?;
        messages.extend(received.messages.unwrap_or_default());
        if messages.is_empty() {
            return Ok(());
        }
        // As Lambda's batching window: it opens with the first record.
        let ends = *window_ends
            .get_or_insert_with(|| tokio::time::Instant::now() + mapping.batching_window);
        if messages.len() >= mapping.batch_size as usize || tokio::time::Instant::now() >= ends {
            break;
        }
    }
    let region = arn.split(':').nth(3).unwrap_or("us-east-1");
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": region,
            })
        })
        .collect();
    {
        let mut counts = counts.0.lock().unwrap();
        counts.batches += 1;
        counts.records += messages.len();
        for message in &messages {
            let key = message.body().and_then(message_key);
            if let Some(key) = key {
                *counts.by_key.entry(key).or_default() += 1;
            }
            counts
                .bodies
                .push(message.body().unwrap_or_default().to_owned());
        }
    }
    let (status, body) = {
        let _execution = match &mapping.concurrency {
            Some(function) => Some(execution(function).await),
            None => None,
        };
        let _turn = mapping.sandbox.0.lock().await;
        let reply = client
            .post(&mapping.function_url)
            .json(&json!({"Records": records}))
            .timeout(Duration::from_secs(900))
            .send()
            .await
            .context("invoking the function")?;
        let status = reply.status();
        (status, reply.json::<Value>().await.unwrap_or(Value::Null))
    };
    // A failed invocation (or a malformed response) fails the whole batch: nothing is deleted.
    let Some(failures) = (status.is_success() && body.get("errorType").is_none())
        .then(|| body.get("batchItemFailures").and_then(Value::as_array))
        .flatten()
    else {
        counts.0.lock().unwrap().failed += messages.len();
        return Ok(());
    };
    let failed: Vec<&str> = failures
        .iter()
        .filter_map(|f| f["itemIdentifier"].as_str())
        .collect();
    if failed.len() != failures.len() || failed.iter().any(|id| id.is_empty()) {
        counts.0.lock().unwrap().failed += messages.len();
        return Ok(());
    }
    let done: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .filter(|m| !failed.contains(&m.message_id().unwrap_or_default()))
        .enumerate()
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle()?)
                .build()
                .ok()
        })
        .collect();
    let deleted = done.len();
    if !done.is_empty() {
        mapping
            .sqs
            .delete_message_batch()
            .queue_url(&mapping.queue_url)
            .set_entries(Some(done))
            .send()
            .await?;
    }
    let mut counts = counts.0.lock().unwrap();
    counts.deleted += deleted;
    counts.failed += failed.len();
    Ok(())
}

/// An execution of `function`, once its pool has room.
async fn execution(function: &concurrency::Function) -> concurrency::Execution {
    let mut wait = THROTTLE_BACKOFF_START;
    loop {
        if let Some(execution) = function.try_invoke() {
            return execution;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(THROTTLE_BACKOFF_MAX);
    }
}

/// The object key a message is about: a backfill message's `key`, a part task's copy's.
fn message_key(body: &str) -> Option<String> {
    let message = serde_json::from_str::<Value>(body).ok()?;
    message["key"]
        .as_str()
        .or_else(|| message["copy"]["key"].as_str())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_backfill_messages_and_part_tasks() {
        assert_eq!(
            message_key(r#"{"version":1,"key":"video/clip.mp4","uri":"/video/clip.mp4"}"#)
                .as_deref(),
            Some("video/clip.mp4")
        );
        let part = json!({"version": 1, "kind": "part", "copy": {"version": 1, "key": "video/clip.mp4"},
            "upload_id": "u1", "generation": 7, "part": 12, "parts": 23});
        assert_eq!(
            message_key(&part.to_string()).as_deref(),
            Some("video/clip.mp4")
        );
        assert_eq!(message_key(r#"{"Event":"s3:TestEvent"}"#), None);
        assert_eq!(message_key("not json"), None);
    }
}
