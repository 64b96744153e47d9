//! The load run: thousands of backfill messages (many keys, many duplicates) through the local
//! pipeline (queue, event source mapping, the backfill function in the emulator, a domestic origin
//! that fails some requests), then the invariants: every requested object in S3 whole and
//! byte-identical, or its message in the DLQ; nothing partial; no multipart upload left open;
//! nothing that was already in the bucket overwritten.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use serde_json::json;
use sha2::{Digest, Sha256};
use shared::message::{BackfillMessage, OriginLocation, Protocol, Trigger, MESSAGE_VERSION};
use shared::ObjectKey;

use crate::esm::Deliveries;
use crate::origin::{Hits, FAILED};

pub struct LoadRun {
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub origin_port: u16,
    pub messages: usize,
    pub keys: usize,
    pub deliveries: Deliveries,
    pub origin_hits: Hits,
}

/// Keys already in the bucket before the run, with content the origin does not have.
const PRE_EXISTING: usize = 10;
/// Queued messages kept below this (moto's SQS slows down with deep queues).
const WAVE: usize = 200;

/// Writes the load catalogue: `keys` files, mostly small, every 50th a multipart-sized one.
pub fn catalogue(dir: &Path, keys: usize) -> Result<()> {
    std::fs::create_dir_all(dir.join("load"))?;
    for i in 0..keys {
        let size = if i % 50 == 49 {
            9 * 1024 * 1024 + i
        } else {
            1 + (i * 7919) % 65_536
        };
        seeded_file(&dir.join(format!("load/object-{i:05}.bin")), size, i as u64)?;
    }
    Ok(())
}

/// Writes `size` bytes drawn from `seed` at `path`, unless a file of that size is there already
/// (the same seed always draws the same bytes).
pub fn seeded_file(path: &Path, size: usize, seed: u64) -> Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == size as u64) {
        return Ok(());
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    std::fs::write(path, (0..size).map(|_| rng.u8(..)).collect::<Vec<u8>>())?;
    Ok(())
}

impl LoadRun {
    pub async fn play(&self, catalogue: &Path) -> Result<serde_json::Value> {
        let key = |i: usize| format!("load/object-{i:05}.bin");
        for i in 0..PRE_EXISTING {
            self.s3
                .put_object()
                .bucket(&self.bucket)
                .key(key(i))
                .body(format!("pre-existing {i}").into_bytes().into())
                .send()
                .await?;
        }
        let chosen: Vec<usize> = (0..self.messages)
            .map(|_| fastrand::usize(..self.keys))
            .collect();
        let requested: BTreeSet<usize> = chosen.iter().copied().collect();
        let started = Instant::now();
        for indexes in chosen.chunks(WAVE) {
            wait_below(&self.sqs, &self.queue_url, 50).await?;
            let keys: Vec<String> = indexes.iter().map(|&i| key(i)).collect();
            send_backfills(
                &self.sqs,
                &self.queue_url,
                &self.bucket,
                self.origin_port,
                &keys,
                "load-run",
            )
            .await?;
        }
        wait_below(&self.sqs, &self.queue_url, 1).await?;
        let elapsed = started.elapsed();

        let mut dead_keys = BTreeSet::new();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .send()
                .await?;
            if received.messages().is_empty() {
                break;
            }
            for message in received.messages() {
                let parsed = BackfillMessage::parse(message.body().unwrap_or_default())?;
                dead_keys.insert(parsed.key.into_string());
            }
        }

        let mut lost = Vec::new();
        let mut partial = Vec::new();
        let mut overwritten = Vec::new();
        let mut bytes = 0u64;
        for &i in &requested {
            let expected = if i < PRE_EXISTING {
                format!("pre-existing {i}").into_bytes()
            } else {
                std::fs::read(catalogue.join(key(i)))?
            };
            match self
                .s3
                .get_object()
                .bucket(&self.bucket)
                .key(key(i))
                .send()
                .await
            {
                Ok(object) => {
                    let stored = object.body.collect().await?.into_bytes();
                    if Sha256::digest(&stored) != Sha256::digest(&expected) {
                        if i < PRE_EXISTING {
                            overwritten.push(key(i));
                        } else {
                            partial.push(key(i));
                        }
                    } else if i >= PRE_EXISTING {
                        bytes += stored.len() as u64;
                    }
                }
                Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                    if !dead_keys.contains(&key(i)) {
                        lost.push(key(i));
                    }
                }
                Err(err) => return Err(err).context("reading back an object"),
            }
        }
        let open_uploads = self
            .s3
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix("load/")
            .send()
            .await?
            .uploads()
            .len();
        let (batches, delivered, deleted, failed) = self.deliveries.snapshot();
        let report = json!({
            "messages": self.messages,
            "distinct_keys": requested.len(),
            "pre_existing_keys_requested": requested.iter().filter(|&&i| i < PRE_EXISTING).count(),
            "origin_faults_injected": self.origin_hits.get(FAILED),
            "batches": batches,
            "deliveries": delivered,
            "retries": delivered.saturating_sub(self.messages),
            "deleted": deleted,
            "failed_deliveries": failed,
            "dlq_entries": dead_keys.len(),
            "objects_lost": lost.len(),
            "partial_objects": partial.len(),
            "overwritten": overwritten.len(),
            "open_multipart_uploads": open_uploads,
            "seconds": (elapsed.as_secs_f64() * 10.0).round() / 10.0,
            "messages_per_second": (self.messages as f64 / elapsed.as_secs_f64()).round(),
            "mb_copied": (bytes as f64 / 1e6 * 10.0).round() / 10.0,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        if !lost.is_empty() || !partial.is_empty() || !overwritten.is_empty() || open_uploads > 0 {
            bail!("invariants broken: lost {lost:?}, partial {partial:?}, overwritten {overwritten:?}, {open_uploads} open uploads");
        }
        Ok(report)
    }
}

/// An operator's backfill message for `key` from the local domestic origin.
fn backfill_message(
    bucket: &str,
    origin_port: u16,
    key: &str,
    request_id: &str,
) -> BackfillMessage {
    let key = ObjectKey::new(key).expect("load keys are valid");
    BackfillMessage {
        version: MESSAGE_VERSION,
        bucket: bucket.to_owned(),
        uri: key.to_uri_path(),
        key,
        origin: OriginLocation {
            protocol: Protocol::Http,
            host: "127.0.0.1".into(),
            port: origin_port,
            path: String::new(),
        },
        request_id: request_id.into(),
        enqueued_at: time::OffsetDateTime::now_utc(),
        trigger: Trigger::Operator,
        observed: None,
    }
}

/// Sends a backfill message for each of `keys`, ten to a request.
pub async fn send_backfills(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    bucket: &str,
    origin_port: u16,
    keys: &[String],
    request_id: &str,
) -> Result<()> {
    for chunk in keys.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(n, key)| {
                SendMessageBatchRequestEntry::builder()
                    .id(n.to_string())
                    .message_body(backfill_message(bucket, origin_port, key, request_id).to_json())
                    .build()
                    .expect("id and body are set")
            })
            .collect();
        let sent = sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await?;
        if !sent.failed().is_empty() {
            bail!("SendMessageBatch refused {} entries", sent.failed().len());
        }
    }
    Ok(())
}

/// Waits until the queue holds fewer than `limit` messages, visible or in flight.
pub async fn wait_below(sqs: &aws_sdk_sqs::Client, queue_url: &str, limit: u64) -> Result<()> {
    let started = Instant::now();
    loop {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await?
            .attributes
            .unwrap_or_default();
        let count = |name| {
            attributes
                .get(&name)
                .and_then(|v: &String| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let depth = count(QueueAttributeName::ApproximateNumberOfMessages)
            + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
        if depth < limit {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the queue did not drain ({depth} messages left)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
