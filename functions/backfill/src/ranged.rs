//! Copies that do not fit one invocation: split into ranges, each a part task on the part queue,
//! each fetched by a ranged, validated GET and streamed into one part of a multipart upload; the
//! part that completes the set completes the upload, conditionally, with the whole object's
//! CRC32C. Lambda and SQS run the parts; the key's lease records the progress.
//!
//! The decision to split is the origin's: the first GET asks for `bytes=0-`, and the first
//! `probe_bytes` of the answer measure the rate one connection gets. A copy that fits the time
//! left goes on in the same response, so no byte is fetched twice.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use bytes::Bytes;
use futures::StreamExt;
use http::HeaderMap;
use shared::retry::Backoff;
use shared::Failure;
use tokio::time::{sleep_until, timeout_at, Instant};

use crate::config::{Config, MAX_PARTS, MAX_PART_SIZE, MIN_PART_SIZE};
use crate::copy::{copy_response, CopyOutcome};
use crate::error::BackfillError;
use crate::lease::{Lease, Leases, UploadRecord, Validator};
use crate::origin::{Origin, OriginResponse};
use crate::plan::{attributes_from, judge, Fetch, ObjectAttributes};
use crate::store::{ObjectStore, Part, Target, Written};
use crate::task::{PartTask, PART};

/// A queue the function sends its own tasks to: part tasks, changes put back or fanned out,
/// paths to invalidate.
pub trait TaskQueue: Send + Sync {
    /// Sends every body, each delivered no sooner than `delay` from now (SQS's `DelaySeconds`,
    /// whole seconds up to 15 minutes), or fails.
    fn send_delayed(
        &self,
        bodies: Vec<String>,
        delay: Duration,
        deadline: Instant,
    ) -> impl Future<Output = Result<(), BackfillError>> + Send;

    /// Sends every body, or fails.
    fn send(
        &self,
        bodies: Vec<String>,
        deadline: Instant,
    ) -> impl Future<Output = Result<(), BackfillError>> + Send {
        self.send_delayed(bodies, Duration::ZERO, deadline)
    }
}

/// A queue on SQS: SendMessageBatch, 10 entries a call (its limit; a task is under 2 KiB, far
/// from the 1 MiB a batch may carry), failed entries sent again.
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: String) -> Self {
        SqsQueue { client, url }
    }
}

/// SQS's longest message delay.
const MAX_DELAY_SECONDS: u64 = 900;

const SEND_ATTEMPTS: u32 = 3;
const SEND_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

impl TaskQueue for SqsQueue {
    async fn send_delayed(
        &self,
        bodies: Vec<String>,
        delay: Duration,
        deadline: Instant,
    ) -> Result<(), BackfillError> {
        let delay_seconds = delay.as_secs().min(MAX_DELAY_SECONDS) as i32;
        for chunk in bodies.chunks(10) {
            let mut pending: Vec<(usize, &String)> = chunk.iter().enumerate().collect();
            let mut attempt = 0;
            while !pending.is_empty() {
                let timeouts =
                    shared::aws::timeouts_until(self.client.config().timeout_config(), deadline)
                        .ok_or(BackfillError::Deadline)?;
                let entries = pending
                    .iter()
                    .map(|(index, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(format!("part{index}"))
                            .message_body(*body)
                            .set_delay_seconds((delay_seconds > 0).then_some(delay_seconds))
                            .build()
                            .expect("id and body are set")
                    })
                    .collect();
                let sent = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .customize()
                    .config_override(
                        aws_sdk_sqs::config::Builder::default().timeout_config(timeouts),
                    )
                    .send()
                    .await
                    .map_err(|e| BackfillError::Aws(shared::Error::aws("SendMessageBatch", e)))?;
                let failed: Vec<String> = sent.failed.iter().map(|f| f.id.clone()).collect();
                pending.retain(|(index, _)| failed.contains(&format!("part{index}")));
                attempt += 1;
                if pending.is_empty() {
                    break;
                }
                if attempt >= SEND_ATTEMPTS {
                    let reasons: Vec<String> = sent
                        .failed
                        .iter()
                        .map(|f| format!("{}: {}", f.code, f.message.as_deref().unwrap_or("")))
                        .collect();
                    return Err(BackfillError::Aws(shared::Error::Aws {
                        operation: "SendMessageBatch",
                        message: format!("entries refused: {}", reasons.join("; ")),
                        retryable: true,
                    }));
                }
                sleep_until((Instant::now() + SEND_BACKOFF.full_jitter(attempt)).min(deadline))
                    .await;
            }
        }
        Ok(())
    }
}

/// No part queue: a function that never splits.
pub struct NoQueue;

impl TaskQueue for NoQueue {
    async fn send_delayed(
        &self,
        _: Vec<String>,
        _: Duration,
        _: Instant,
    ) -> Result<(), BackfillError> {
        Err(BackfillError::Aws(shared::Error::Aws {
            operation: "SendMessageBatch",
            message: "no part queue is configured (PART_QUEUE_URL)".into(),
            retryable: false,
        }))
    }
}

/// `Content-Range: bytes FIRST-LAST/SIZE`.
pub fn parse_content_range(headers: &HeaderMap) -> Option<(u64, u64, u64)> {
    let value = headers.get(http::header::CONTENT_RANGE)?.to_str().ok()?;
    let (range, size) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last, size) = (first.parse().ok()?, last.parse().ok()?, size.parse().ok()?);
    (first <= last && last < size).then_some((first, last, size))
}

/// How a split copy is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    pub part_size: u64,
    pub parts: u32,
}

/// Parts that take about `part_time` each at `rate` bytes/s, in whole MiB, within S3's limits
/// (5 MiB to 5 GiB, at most 10,000 parts). Refused when even `workers` parts at once could not
/// finish within the days an unfinished upload may live.
pub fn plan_parts(
    size: u64,
    rate: f64,
    part_time: Duration,
    workers: u32,
    upload_days: u32,
) -> Result<PartPlan, BackfillError> {
    const MIB: u64 = 1024 * 1024;
    let by_rate = (rate * part_time.as_secs_f64()) as u64;
    let part_size = by_rate
        .max(size.div_ceil(MAX_PARTS))
        .div_ceil(MIB)
        .saturating_mul(MIB)
        .clamp(MIN_PART_SIZE, MAX_PART_SIZE);
    let parts = size.div_ceil(part_size).max(1);
    let at_once = u64::from(workers).min(parts) as f64;
    let seconds = size as f64 / (rate.max(1.0) * at_once);
    if seconds > f64::from(upload_days) * 86_400.0 {
        return Err(BackfillError::TooSlow {
            size,
            rate: rate as u64,
            workers,
            days: upload_days,
        });
    }
    Ok(PartPlan {
        part_size,
        parts: parts as u32,
    })
}

/// The byte range of part `number` (from 1).
pub fn part_range(size: u64, part_size: u64, number: u32) -> (u64, u64) {
    let first = u64::from(number - 1) * part_size;
    (first, (first + part_size).min(size) - 1)
}

/// Whether `remaining` bytes at `rate` fit in `time_left`, with a quarter to spare.
pub fn fits(remaining: u64, rate: f64, time_left: Duration) -> bool {
    remaining as f64 <= rate * time_left.as_secs_f64() * 0.75
}

/// The time a part should take: configured, or a third of the invocation's time, at most 120 s.
pub fn part_time(config: &Config, invocation: Duration) -> Duration {
    config
        .part_seconds
        .unwrap_or((invocation / 3).min(Duration::from_secs(120)))
}

/// Seconds since the epoch, for lease expiry.
pub fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The epoch second at which `deadline` falls.
pub fn epoch_at(deadline: Instant) -> u64 {
    epoch_now() + deadline.saturating_duration_since(Instant::now()).as_secs() + 1
}

pub fn lease_id(fetch: &Fetch) -> String {
    format!("{}/{}", fetch.bucket, fetch.key)
}

/// Times the origin may change under one copy before it is given up.
pub const MAX_RESTARTS: u32 = 3;

/// The copy machinery's parts that a split needs.
pub struct Ranged<'a, O, S, L, Q> {
    pub origin: &'a O,
    pub store: &'a S,
    pub leases: &'a L,
    pub queue: &'a Q,
    pub config: &'a Config,
}

fn range_headers(first: u64, last: Option<u64>, validator: Option<&Validator>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let range = match last {
        Some(last) => format!("bytes={first}-{last}"),
        None => format!("bytes={first}-"),
    };
    headers.insert(http::header::RANGE, range.parse().expect("ASCII"));
    for (name, value) in validator
        .map(Validator::request_headers)
        .into_iter()
        .flatten()
    {
        if let Ok(value) = value.parse() {
            headers.insert(name, value);
        }
    }
    headers
}

async fn get_within<O: Origin>(
    origin: &O,
    url: &str,
    headers: HeaderMap,
    deadline: Instant,
) -> Result<OriginResponse, BackfillError> {
    timeout_at(deadline, origin.get_with(url, headers))
        .await
        .map_err(|_| BackfillError::Deadline)?
}

impl<O: Origin, S: ObjectStore, L: Leases, Q: TaskQueue> Ranged<'_, O, S, L, Q> {
    /// A copy under a lease this invocation holds: the upload the lease records is finished;
    /// otherwise the origin is probed and the copy made here or split.
    pub async fn copy(
        &self,
        fetch: &Fetch,
        copy: &shared::message::BackfillMessage,
        lease: &Lease,
        restarts: u32,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        if let Some(upload) = &lease.upload {
            if let Some(outcome) = self.resume(fetch, copy, lease, upload, deadline).await? {
                return Ok(outcome);
            }
        }
        let invocation = deadline.saturating_duration_since(Instant::now());
        let probe = get_within(
            self.origin,
            &fetch.url,
            range_headers(0, None, None),
            deadline,
        )
        .await?;
        let whole = match (probe.status, parse_content_range(&probe.headers)) {
            (206, Some((0, last, size))) if last + 1 == size => size,
            // A range, but not of the whole object (an origin that caps what one answer
            // carries), or an empty object, which has no byte 0: fetched plainly.
            (206 | 416, _) => {
                let response =
                    get_within(self.origin, &fetch.url, HeaderMap::new(), deadline).await?;
                return self.plain(fetch, response, deadline).await;
            }
            // The origin ignores ranges (200), or anything else: judged and copied as a plain
            // answer.
            _ => return self.plain(fetch, probe, deadline).await,
        };
        if whole > self.config.max_object_size {
            return Err(BackfillError::TooLarge {
                size: whole,
                limit: self.config.max_object_size,
            });
        }
        let validator = Validator::from_headers(&probe.headers);
        let OriginResponse { headers, body, .. } = probe;
        let mut body = body;
        let mut prefix: Vec<Bytes> = Vec::new();
        let mut received = 0u64;
        let mut first_chunk_at = None;
        let probe_end = self.config.probe_bytes.min(whole);
        while received < probe_end {
            let chunk = timeout_at(deadline, body.next())
                .await
                .map_err(|_| BackfillError::Deadline)?;
            match chunk {
                Some(Ok(chunk)) => {
                    first_chunk_at.get_or_insert_with(|| (Instant::now(), chunk.len() as u64));
                    received += chunk.len() as u64;
                    prefix.push(chunk);
                }
                Some(Err(err)) => return Err(err.in_body(received, Some(whole))),
                None => break,
            }
        }
        // The rate after the first chunk, which only measures the first byte's latency.
        let rate = match first_chunk_at {
            Some((at, first)) if received > first => {
                (received - first) as f64 / at.elapsed().as_secs_f64().max(1e-3)
            }
            _ => f64::INFINITY,
        };
        let time_left = deadline.saturating_duration_since(Instant::now());
        let must_fit = validator.is_none() || restarts >= MAX_RESTARTS;
        if received >= whole || must_fit || fits(whole - received, rate, time_left) {
            // The rest of the same answer, after the bytes already read: as a plain 200.
            let rest = futures::stream::iter(prefix.into_iter().map(Ok)).chain(body);
            let response = OriginResponse {
                status: 200,
                headers,
                content_length: Some(whole),
                body: Box::pin(rest),
            };
            return self.plain(fetch, response, deadline).await;
        }
        let validator = validator.expect("checked above");
        let plan = plan_parts(
            whole,
            rate,
            part_time(self.config, invocation),
            self.config.part_workers,
            self.config.upload_days,
        )?;
        tracing::info!(
            size = whole,
            rate_bytes_per_s = rate as u64,
            part_size = plan.part_size,
            parts = plan.parts,
            "splitting the copy"
        );
        let target = Target {
            bucket: fetch.bucket.clone(),
            key: fetch.key.clone(),
            attributes: attributes_from(&headers),
            condition: fetch.condition.clone(),
        };
        let upload_id = self.store.create_multipart(&target, deadline).await?;
        let upload = UploadRecord {
            upload_id,
            validator,
            size: whole,
            part_size: plan.part_size,
            parts: plan.parts,
        };
        // Parts 2.. go to the queue; part 1 is the rest of this very answer, uploaded here.
        let first = task_for(copy, lease, &upload, 1, restarts);
        let started = self
            .enqueue(
                copy,
                lease,
                &upload,
                &BTreeSet::new(),
                Some(1),
                restarts,
                deadline,
            )
            .await;
        match started {
            Ok(Some(_)) => {}
            Ok(None) => {
                self.abort(&target, &upload.upload_id, deadline).await;
                return Ok(CopyOutcome::InFlight);
            }
            Err(err) => {
                self.abort(&target, &upload.upload_id, deadline).await;
                return Err(err);
            }
        }
        let rest = futures::stream::iter(prefix.into_iter().map(Ok)).chain(body);
        // A second is kept to hand part 1 to the queue if it cannot be finished here.
        let part_deadline = deadline
            .checked_sub(HAND_OVER)
            .unwrap_or(deadline)
            .max(Instant::now());
        let uploaded = self
            .store
            .upload_part_stream(
                &plain_target(fetch),
                &upload.upload_id,
                1,
                Box::pin(take_exactly(rest, first.bytes()).fuse()),
                first.bytes(),
                part_deadline,
            )
            .await;
        match uploaded {
            Ok(part) => match self.recorded(fetch, &first, part.crc32c, deadline).await? {
                CopyOutcome::PartUploaded { .. } => Ok(CopyOutcome::Split {
                    parts: upload.parts,
                }),
                outcome => Ok(outcome),
            },
            Err(err) => {
                // Its task carries it on, with a fresh GET of its range.
                tracing::info!(error = %err, "the first part failed here; it goes to the part queue");
                self.queue.send(vec![first.to_json()], deadline).await?;
                Ok(CopyOutcome::Split {
                    parts: upload.parts,
                })
            }
        }
    }

    /// The answer copied in one PutObject, as a copy that fits one invocation is.
    async fn plain(
        &self,
        fetch: &Fetch,
        response: OriginResponse,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        copy_response(
            self.origin,
            self.store,
            self.config,
            fetch,
            response,
            deadline,
        )
        .await
    }

    /// Extends the lease past this invocation if it is still the task's upload's; `false` if not.
    async fn extend(
        &self,
        id: &str,
        task: &PartTask,
        deadline: Instant,
    ) -> Result<bool, BackfillError> {
        let expires_at = epoch_at(deadline) + self.config.lease_grace.as_secs();
        self.leases
            .extend(id, task.generation, &task.upload_id, expires_at, deadline)
            .await
    }

    /// Records a part uploaded; the part that completes the set completes the upload.
    async fn recorded(
        &self,
        fetch: &Fetch,
        task: &PartTask,
        crc32c: u32,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        let done = self
            .leases
            .part_done(
                &lease_id(fetch),
                task.generation,
                &task.upload_id,
                task.part,
                crc32c,
                epoch_at(deadline) + self.config.lease_grace.as_secs(),
                deadline,
            )
            .await?;
        match done {
            None => Ok(CopyOutcome::PartStale),
            Some(done) if done as u32 >= task.parts => self.complete(fetch, task, deadline).await,
            Some(_) => Ok(CopyOutcome::PartUploaded {
                part: task.part,
                bytes: task.bytes(),
            }),
        }
    }

    /// Records the upload in the lease and enqueues a task for each part neither in `done` nor
    /// `kept` (a part the caller uploads itself); the number enqueued, or `None` if the lease
    /// was lost.
    #[allow(clippy::too_many_arguments)]
    async fn enqueue(
        &self,
        copy: &shared::message::BackfillMessage,
        lease: &Lease,
        upload: &UploadRecord,
        done: &BTreeSet<u32>,
        kept: Option<u32>,
        restarts: u32,
        deadline: Instant,
    ) -> Result<Option<u32>, BackfillError> {
        // Past this invocation's end, as every extension of a split copy's lease: the grace is
        // the time its tasks may wait in the queue.
        let expires_at = epoch_at(deadline) + self.config.lease_grace.as_secs();
        if !self
            .leases
            .start_upload(lease, upload, done, expires_at, deadline)
            .await?
        {
            return Ok(None);
        }
        let tasks: Vec<String> = (1..=upload.parts)
            .filter(|part| !done.contains(part) && Some(*part) != kept)
            .map(|part| task_for(copy, lease, upload, part, restarts).to_json())
            .collect();
        let count = tasks.len() as u32;
        self.queue.send(tasks, deadline).await?;
        Ok(Some(count))
    }

    /// A lease taken over from a holder that died mid-split: the same upload goes on if the
    /// origin still has the same version, with only the parts S3 lacks enqueued again. `None`
    /// when it cannot (the origin changed: the old upload is aborted and the copy starts afresh).
    async fn resume(
        &self,
        fetch: &Fetch,
        copy: &shared::message::BackfillMessage,
        lease: &Lease,
        upload: &UploadRecord,
        deadline: Instant,
    ) -> Result<Option<CopyOutcome>, BackfillError> {
        let target = plain_target(fetch);
        let check = get_within(
            self.origin,
            &fetch.url,
            range_headers(0, Some(0), Some(&upload.validator)),
            deadline,
        )
        .await?;
        let status = check.status;
        drop(check);
        match status {
            206 => {}
            404 | 410 => {
                self.abort(&target, &upload.upload_id, deadline).await;
                return Ok(Some(CopyOutcome::NotAtOrigin(status)));
            }
            200 | 412 => {
                tracing::info!(upload_id = %upload.upload_id, "the origin changed since the upload began; starting afresh");
                self.abort(&target, &upload.upload_id, deadline).await;
                return Ok(None);
            }
            status => {
                judge(status, &HeaderMap::new(), SystemTime::now())?;
                return Err(BackfillError::OriginRefused { status });
            }
        }
        let listed = match self
            .store
            .list_parts(&target, &upload.upload_id, deadline)
            .await
        {
            Ok(listed) => listed,
            // The upload is gone (aborted, or removed by the lifecycle rule): start afresh.
            Err(BackfillError::UploadGone(_)) => return Ok(None),
            Err(err) => return Err(err),
        };
        let done: BTreeSet<u32> = listed
            .iter()
            .filter(|part| {
                let number = part.number as u32;
                (1..=upload.parts).contains(&number) && {
                    let (first, last) = part_range(upload.size, upload.part_size, number);
                    part.size == last - first + 1
                }
            })
            .map(|part| part.number as u32)
            .collect();
        tracing::info!(upload_id = %upload.upload_id, done = done.len(), parts = upload.parts, "taking over a split copy");
        match self
            .enqueue(copy, lease, upload, &done, None, 0, deadline)
            .await?
        {
            None => Ok(Some(CopyOutcome::InFlight)),
            Some(0) => {
                let task = task_for(copy, lease, upload, upload.parts, 0);
                self.complete(fetch, &task, deadline).await.map(Some)
            }
            Some(sent) => Ok(Some(CopyOutcome::Split { parts: sent })),
        }
    }

    /// One part task: a ranged GET of this version only, streamed into its part; the part that
    /// completes the set completes the upload.
    pub async fn part(
        &self,
        fetch: &Fetch,
        task: &PartTask,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        let id = lease_id(fetch);
        if !self.extend(&id, task, deadline).await? {
            return Ok(CopyOutcome::PartStale);
        }
        let target = plain_target(fetch);
        let mut attempt = 1;
        let part = loop {
            let response = get_within(
                self.origin,
                &fetch.url,
                range_headers(task.first, Some(task.last), Some(&task.validator)),
                deadline,
            )
            .await?;
            match response.status {
                206 if parse_content_range(&response.headers)
                    == Some((task.first, task.last, task.size)) => {}
                // Another version (If-Match failed, or If-Range sent the whole of it), or a
                // range that is not the one asked: this upload cannot be finished.
                200 | 206 | 412 => {
                    tracing::info!(
                        status = response.status,
                        part = task.part,
                        "the origin's object changed during the copy"
                    );
                    return self.restart(fetch, task, deadline).await;
                }
                404 | 410 => {
                    let status = response.status;
                    if self
                        .leases
                        .release(&id, task.generation, Some(&task.upload_id), deadline)
                        .await?
                    {
                        self.abort(&target, &task.upload_id, deadline).await;
                    }
                    return Ok(CopyOutcome::NotAtOrigin(status));
                }
                status => {
                    judge(status, &response.headers, SystemTime::now())?;
                    return Err(BackfillError::OriginRefused { status });
                }
            }
            let sent = self
                .store
                .upload_part_stream(
                    &target,
                    &task.upload_id,
                    task.part as i32,
                    response.body,
                    task.bytes(),
                    deadline,
                )
                .await;
            match sent {
                Ok(part) => break part,
                // Aborted: by a restart of the copy (the lease moved on, and this task drops
                // out), or by the bucket's lifecycle rule while the copy still holds the lease
                // (then the copy starts again).
                Err(BackfillError::UploadGone(_)) => {
                    tracing::info!(part = task.part, upload_id = %task.upload_id, "the upload is gone");
                    return self.restart(fetch, task, deadline).await;
                }
                Err(err)
                    if err.is_retryable()
                        && attempt < STREAM_ATTEMPTS
                        && !matches!(err, BackfillError::Deadline) =>
                {
                    tracing::info!(error = %err, attempt, part = task.part, "part failed; fetching its range again");
                    sleep_until(
                        (Instant::now() + STREAM_BACKOFF.full_jitter(attempt - 1)).min(deadline),
                    )
                    .await;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        };
        self.recorded(fetch, task, part.crc32c, deadline).await
    }

    /// Every part is done: checks S3 holds each with its planned size, combines their CRC32Cs
    /// into the object's, and completes only if the key is still free.
    async fn complete(
        &self,
        fetch: &Fetch,
        task: &PartTask,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        let id = lease_id(fetch);
        let target = plain_target(fetch);
        let began = Instant::now();
        let listed = match self
            .store
            .list_parts(&target, &task.upload_id, deadline)
            .await
        {
            Ok(listed) => listed,
            // Completed by a duplicate of this task, or aborted by a restart.
            Err(BackfillError::UploadGone(_)) => {
                return self.present_or_restart(fetch, task, deadline).await
            }
            Err(err) => return Err(err),
        };
        let recorded = self.leases.checksums(&id, deadline).await?;
        let part_size = task.part_size;
        let mut parts = Vec::with_capacity(task.parts as usize);
        let mut crc = 0u32;
        for number in 1..=task.parts {
            let (first, last) = part_range(task.size, part_size, number);
            let expected = last - first + 1;
            let listed = listed.iter().find(|p| p.number as u32 == number);
            let Some(listed) = listed.filter(|p| p.size == expected) else {
                return Err(BackfillError::PartsMissing(format!(
                    "part {number} of {} is not listed with {expected} bytes",
                    task.parts
                )));
            };
            // S3 lists each part's CRC32C (some stand-ins do not); the lease recorded it too.
            let part_crc = match (listed.crc32c, recorded.get(&number)) {
                (Some(stored), Some(&ours)) if stored != ours => {
                    return Err(BackfillError::PartsMissing(format!(
                        "part {number}: S3 lists CRC32C {stored:08x}, the lease recorded {ours:08x}"
                    )))
                }
                (Some(crc), _) | (None, Some(&crc)) => crc,
                (None, None) => {
                    return Err(BackfillError::PartsMissing(format!(
                        "part {number} has no CRC32C"
                    )))
                }
            };
            crc = crc32c::crc32c_combine(crc, part_crc, expected as usize);
            parts.push(Part {
                number: number as i32,
                etag: listed.etag.clone(),
                crc32c: part_crc,
            });
        }
        let completed = self
            .store
            .complete_multipart(&target, &task.upload_id, parts, crc, deadline)
            .await;
        tracing::info!(
            parts = task.parts,
            completion_ms = began.elapsed().as_millis() as u64,
            "upload completion answered"
        );
        match completed {
            Ok(Written::Created) => {
                self.leases
                    .release(&id, task.generation, Some(&task.upload_id), deadline)
                    .await?;
                Ok(CopyOutcome::Copied {
                    bytes: task.size,
                    parts: task.parts,
                })
            }
            Ok(Written::AlreadyExists) => {
                self.abort(&target, &task.upload_id, deadline).await;
                self.leases
                    .release(&id, task.generation, Some(&task.upload_id), deadline)
                    .await?;
                Ok(CopyOutcome::AlreadyPresent)
            }
            // A conflicting write raced the completion; S3 asks for a new upload.
            Err(BackfillError::WriteConflict) => {
                self.present_or_restart(fetch, task, deadline).await
            }
            Err(err) => Err(err),
        }
    }

    /// The upload cannot complete: if the key is in the bucket (written by a duplicate of this
    /// task, or by another writer), the copy is done and its lease released; else it restarts.
    async fn present_or_restart(
        &self,
        fetch: &Fetch,
        task: &PartTask,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        if self
            .store
            .exists(&fetch.bucket, &fetch.key, deadline)
            .await?
        {
            self.leases
                .release(
                    &lease_id(fetch),
                    task.generation,
                    Some(&task.upload_id),
                    deadline,
                )
                .await?;
            return Ok(CopyOutcome::AlreadyPresent);
        }
        self.restart(fetch, task, deadline).await
    }

    /// The upload can no longer be finished: the copy is enqueued again (as a restart, counted),
    /// the lease released so that every other task of this upload drops out, the upload aborted.
    async fn restart(
        &self,
        fetch: &Fetch,
        task: &PartTask,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        let id = lease_id(fetch);
        if task.restarts + 1 > MAX_RESTARTS {
            if self
                .leases
                .release(&id, task.generation, Some(&task.upload_id), deadline)
                .await?
            {
                self.abort(&plain_target(fetch), &task.upload_id, deadline)
                    .await;
            }
            return Err(BackfillError::OriginUnstable(task.restarts + 1));
        }
        // Only while this upload holds the lease: a task of an upload already given up drops out.
        if !self.extend(&id, task, deadline).await? {
            return Ok(CopyOutcome::PartStale);
        }
        // The restart goes out before the lease is released, delivered only after the release
        // below has had time to land: a sandbox that dies in between leaves this task to come
        // back and do it again, never a copy that nobody restarts. A restart that finds the lease
        // still held (this upload's, or a newer copy's) ends as in flight, harmlessly.
        let restart = crate::task::Restart::new(task.copy.clone(), task.restarts + 1);
        self.queue
            .send_delayed(vec![restart.to_json()], RESTART_DELAY, deadline)
            .await?;
        // Several tasks of the upload may get here: only the one that releases the lease aborts.
        if !self
            .leases
            .release(&id, task.generation, Some(&task.upload_id), deadline)
            .await?
        {
            return Ok(CopyOutcome::PartStale);
        }
        self.abort(&plain_target(fetch), &task.upload_id, deadline)
            .await;
        Ok(CopyOutcome::Restarted)
    }

    /// Aborts an upload, past the deadline too (within part of the margin kept before the
    /// invocation's end); a failure is left to the bucket's lifecycle rule.
    async fn abort(&self, target: &Target, upload_id: &str, deadline: Instant) {
        let abort_by = Instant::now().max(deadline) + self.config.deadline_margin / 2;
        if let Err(err) = self
            .store
            .abort_multipart(target, upload_id, abort_by)
            .await
        {
            tracing::warn!(error = %err, upload_id, "could not abort the multipart upload; the lifecycle rule will");
        }
    }
}

/// The task of part `part` of `upload`.
fn task_for(
    copy: &shared::message::BackfillMessage,
    lease: &Lease,
    upload: &UploadRecord,
    part: u32,
    restarts: u32,
) -> PartTask {
    let (first, last) = part_range(upload.size, upload.part_size, part);
    PartTask {
        version: shared::message::MESSAGE_VERSION,
        kind: PART.to_owned(),
        copy: copy.clone(),
        upload_id: upload.upload_id.clone(),
        generation: lease.generation,
        part,
        parts: upload.parts,
        part_size: upload.part_size,
        first,
        last,
        size: upload.size,
        validator: upload.validator.clone(),
        restarts,
    }
}

/// The first `length` bytes of a stream, then its end (the rest is never read).
fn take_exactly<S>(
    stream: S,
    length: u64,
) -> impl futures::Stream<Item = Result<Bytes, BackfillError>> + Send
where
    S: futures::Stream<Item = Result<Bytes, BackfillError>> + Send + Unpin,
{
    // The source is dropped with the last byte taken, not when the stream is: an open-ended answer
    // (the holder's `bytes=0-`) closes its connection at once, rather than filling the socket's
    // buffers with bytes nobody reads while S3 answers the part.
    futures::stream::unfold(
        (length > 0).then_some((stream, length)),
        |state| async move {
            let (mut stream, left) = state?;
            match stream.next().await? {
                Ok(mut chunk) => {
                    if chunk.len() as u64 > left {
                        chunk.truncate(left as usize);
                    }
                    let left = left - chunk.len() as u64;
                    Some((Ok(chunk), (left > 0).then_some((stream, left))))
                }
                Err(err) => Some((Err(err), None)),
            }
        },
    )
}

/// How long a restart waits in the queue: the lease it needs is released right after it is sent.
const RESTART_DELAY: Duration = Duration::from_secs(5);

/// The time the holder keeps to enqueue part 1 when it cannot upload it itself.
const HAND_OVER: Duration = Duration::from_secs(1);

/// Attempts at one part within an invocation, each with a fresh ranged GET.
const STREAM_ATTEMPTS: u32 = 3;
const STREAM_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

fn plain_target(fetch: &Fetch) -> Target {
    Target {
        bucket: fetch.bucket.clone(),
        key: fetch.key.clone(),
        attributes: ObjectAttributes::default(),
        condition: fetch.condition.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    /// Dropped when the source stream is: stands for the origin's connection.
    struct Connection(std::sync::Arc<std::sync::atomic::AtomicBool>);

    impl Drop for Connection {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn taking_a_part_closes_the_answer_with_its_last_byte() {
        let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connection = Connection(closed.clone());
        let source = futures::stream::iter(
            [b"abcd".as_slice(), b"efgh", b"ijkl"].map(|chunk| Ok(Bytes::from_static(chunk))),
        )
        .map(move |chunk| {
            let _open = &connection;
            chunk
        });
        let mut part = Box::pin(take_exactly(source, 6));
        futures::executor::block_on(async {
            assert_eq!(part.next().await.unwrap().unwrap(), "abcd");
            assert!(!closed.load(std::sync::atomic::Ordering::SeqCst));
            assert_eq!(part.next().await.unwrap().unwrap(), "ef");
            // Closed while the part stream itself is still held (by the upload awaiting S3).
            assert!(closed.load(std::sync::atomic::Ordering::SeqCst));
            assert!(part.next().await.is_none());
        });
    }

    #[test]
    fn content_ranges_parse_only_when_whole() {
        let headers = |value: &'static str| {
            let mut map = HeaderMap::new();
            map.insert(http::header::CONTENT_RANGE, value.parse().unwrap());
            map
        };
        assert_eq!(
            parse_content_range(&headers("bytes 0-99/100")),
            Some((0, 99, 100))
        );
        assert_eq!(parse_content_range(&headers("bytes 0-99/*")), None);
        assert_eq!(parse_content_range(&headers("bytes 5-4/100")), None);
        assert_eq!(parse_content_range(&headers("bytes 0-100/100")), None);
        assert_eq!(parse_content_range(&HeaderMap::new()), None);
    }

    #[test]
    fn parts_follow_the_rate_within_s3_limits() {
        // 20 MB/s for 10 s: 200 MB, rounded up to whole MiB.
        let plan = plan_parts(4 * 1024 * MIB, 20e6, Duration::from_secs(10), 8, 1).unwrap();
        assert_eq!(plan.part_size, 191 * MIB);
        assert_eq!(plan.parts, 22);
        // A slow origin still gets 5 MiB parts.
        let plan = plan_parts(100 * MIB, 1000.0, Duration::from_secs(1), 1000, 1).unwrap();
        assert_eq!(plan.part_size, 5 * MIB);
        // 48.8 TiB needs 5 GiB parts whatever the rate.
        let largest = crate::config::MAX_OBJECT_SIZE;
        let plan = plan_parts(largest, 1e6, Duration::from_secs(1), 1000, 1000).unwrap();
        assert_eq!((plan.part_size, plan.parts), (MAX_PART_SIZE, 10_000));
        // 1 TB at 1 MB/s with 2 workers: 5.8 days, more than a day.
        let err = plan_parts(1_000_000_000_000, 1e6, Duration::from_secs(120), 2, 1).unwrap_err();
        assert!(matches!(err, BackfillError::TooSlow { .. }), "{err}");
    }

    #[test]
    fn ranges_cover_the_object_once() {
        let (size, part_size) = (25 * MIB + 3, 5 * MIB);
        let parts = size.div_ceil(part_size) as u32;
        let mut next = 0;
        for number in 1..=parts {
            let (first, last) = part_range(size, part_size, number);
            assert_eq!(first, next);
            next = last + 1;
        }
        assert_eq!(next, size);
        assert_eq!(part_range(size, part_size, parts), (25 * MIB, 25 * MIB + 2));
    }

    #[test]
    fn a_copy_fits_with_a_quarter_to_spare() {
        assert!(fits(75, 1.0, Duration::from_secs(100)));
        assert!(!fits(76, 1.0, Duration::from_secs(100)));
        assert!(fits(0, 0.0, Duration::ZERO));
    }
}
