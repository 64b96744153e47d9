//! One SQS record: parse, check, copy, report.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Diagnostic, LambdaEvent};
use shared::batch::BatchRunner;
use shared::message::{BackfillMessage, MessageError};
use shared::metrics::{Metric, Metrics};
use shared::Failure;
use tokio::time::Instant;

use crate::breaker::Breaker;
use crate::config::Config;
use crate::copy::{copy, CopyOutcome};
use crate::error::BackfillError;
use crate::invalidate::{batch_paths, caller_reference, Invalidation, MAX_PATHS, MAX_WILDCARDS};
use crate::lease::{Leases, MemoryLeases, Purpose, Taken};
use crate::origin::Origin;
use crate::plan::{plan, Fetch};
use crate::ranged::{epoch_at, epoch_now, lease_id, NoQueue, Ranged, TaskQueue};
use crate::refresh::Fresh;
use crate::store::ObjectStore;
use crate::task::{PartTask, Task};

pub struct Backfill<O, S, L = MemoryLeases, Q = NoQueue> {
    pub config: Config,
    pub origin: O,
    pub store: S,
    pub breaker: Breaker,
    pub metrics: Metrics,
    /// The key leases: one copy in flight per key. None: copies are not coalesced.
    pub leases: Option<L>,
    /// The part queue: copies too slow for one invocation are split. None: never split.
    pub queue: Option<Q>,
    /// What keeping copies fresh needs: refreshes, purges, the schedule, invalidations.
    pub fresh: Fresh,
}

impl<O: Origin, S: ObjectStore> Backfill<O, S> {
    pub fn new(config: Config, origin: O, store: S) -> Self {
        Backfill {
            breaker: Breaker::new(config.breaker_threshold, config.breaker_cooldown),
            metrics: Metrics::for_function(config.metrics_namespace.clone()),
            config,
            origin,
            store,
            leases: None,
            queue: None,
            fresh: Fresh::default(),
        }
    }
}

impl<O, S, L, Q> Backfill<O, S, L, Q> {
    /// With key leases and, to split copies, a part queue.
    pub fn with_leases<L2: Leases, Q2: TaskQueue>(
        self,
        leases: L2,
        queue: Option<Q2>,
    ) -> Backfill<O, S, L2, Q2> {
        Backfill {
            config: self.config,
            origin: self.origin,
            store: self.store,
            breaker: self.breaker,
            metrics: self.metrics,
            leases: Some(leases),
            queue,
            fresh: self.fresh,
        }
    }
}

impl<O: Origin, S: ObjectStore, L: Leases, Q: TaskQueue> Backfill<O, S, L, Q> {
    /// Handles one record, logging one line and writing its duration, age and bytes.
    pub async fn handle_record(
        &self,
        record: SqsMessage,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        let started = Instant::now();
        let task = Task::parse(record.body.as_deref().unwrap_or_default());
        let age = task.as_ref().ok().and_then(Task::enqueued_at).map(|at| {
            let age = time::OffsetDateTime::now_utc() - at;
            age.whole_milliseconds().max(0) as f64
        });
        let holder = record.message_id.as_deref().unwrap_or("unknown");
        let task_copy = task.as_ref().ok().and_then(|task| task.copy().cloned());
        let result = match task {
            Ok(Task::Copy(message)) => self.backfill(&message, 0, holder, deadline).await,
            Ok(Task::Restart(restart)) => {
                self.backfill(&restart.copy, restart.restarts, holder, deadline)
                    .await
            }
            Ok(Task::Part(task)) => self.part(&task, deadline).await,
            Ok(Task::Change(change)) => {
                let sent_ms = record
                    .attributes
                    .get("SentTimestamp")
                    .and_then(|ms| ms.parse().ok());
                let result = self.change(&change, holder, sent_ms, deadline).await;
                self.record_origin_health(&result);
                result
            }
            Ok(Task::Sweep(sweep)) => self.sweep(&sweep, deadline).await,
            // Invalidations are taken a batch at a time (handle_batch), never one by one.
            Ok(Task::Invalidate(_)) => Err(MessageError::Invalid(
                "an invalidation outside an invalidation batch".into(),
            )
            .into()),
            Err(err) => Err(err.into()),
        };
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        let outcome = match &result {
            Ok(outcome) => outcome.label(),
            Err(err) => err.reason(),
        };
        // `Records` is the batch runner's, which sees every outcome (records it handed back or
        // never attempted too): counting here as well would count each record twice.
        let mut metrics = vec![Metric::millis("Duration", elapsed)];
        if let Some(age) = age {
            metrics.push(Metric::millis("MessageAge", age));
        }
        if let Ok(CopyOutcome::PartUploaded { part, bytes }) = &result {
            metrics.push(Metric::bytes("PartBytes", *bytes));
            tracing::info!(
                outcome,
                part,
                bytes,
                duration_ms = elapsed as u64,
                "part uploaded"
            );
        } else if let Ok(CopyOutcome::Copied { bytes, parts }) = &result {
            metrics.push(Metric::bytes("Bytes", *bytes));
            tracing::info!(
                outcome,
                bytes,
                parts,
                duration_ms = elapsed as u64,
                age_ms = age.map(|a| a as u64),
                "backfilled"
            );
        } else if let Ok(outcome) = &result {
            tracing::info!(
                outcome = outcome.label(),
                duration_ms = elapsed as u64,
                age_ms = age.map(|a| a as u64),
                "{}",
                outcome.summary()
            );
        }
        self.metrics.emit(&[("Outcome", outcome)], &metrics);
        // After the outcome's line: the copy is done whether or not its schedule is recorded.
        if let (Ok(CopyOutcome::Copied { .. }), Some(copy)) = (&result, &task_copy) {
            self.track(copy, epoch_now(), deadline).await;
        }
        result
    }

    async fn backfill(
        &self,
        message: &BackfillMessage,
        restarts: u32,
        holder: &str,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        let span = tracing::Span::current();
        span.record("bucket", message.bucket.as_str());
        span.record("key", message.key.as_str());
        let fetch = plan(message, &self.config)?;
        self.breaker.check()?;
        let result = match &self.leases {
            None => copy(&self.origin, &self.store, &self.config, &fetch, deadline).await,
            Some(leases) => {
                self.leased(leases, &fetch, message, restarts, holder, deadline)
                    .await
            }
        };
        self.record_origin_health(&result);
        result
    }

    /// A copy under the key's lease: if another invocation holds it, nothing is fetched.
    async fn leased(
        &self,
        leases: &L,
        fetch: &Fetch,
        message: &BackfillMessage,
        restarts: u32,
        holder: &str,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        if self
            .store
            .exists(&fetch.bucket, &fetch.key, deadline)
            .await?
        {
            return Ok(CopyOutcome::AlreadyPresent);
        }
        let id = lease_id(fetch);
        // Held until just after this invocation's end: a holder that dies frees the key then.
        let expires_at = epoch_at(deadline) + self.config.deadline_margin.as_secs();
        let lease = match leases
            .take(
                &id,
                holder,
                Purpose::Copy,
                epoch_now(),
                expires_at,
                deadline,
            )
            .await?
        {
            Taken::Held(lease) => lease,
            Taken::Live {
                purpose: Purpose::Refresh | Purpose::Purge,
                ..
            } if self.fresh.queue.is_some() => {
                // A change of the key is under way: it may delete the copy, or find none to
                // change, so this copy is put back rather than taken as done.
                return self.put_back_copy(message, deadline).await;
            }
            Taken::Live { expires_at, .. } => {
                tracing::info!(
                    lease_expires_at = expires_at,
                    "the key's copy is in flight elsewhere"
                );
                return Ok(CopyOutcome::InFlight);
            }
        };
        // A copy that finished between the first look and the take: nothing to fetch.
        let result = if self
            .store
            .exists(&fetch.bucket, &fetch.key, deadline)
            .await?
        {
            Ok(CopyOutcome::AlreadyPresent)
        } else {
            match &self.queue {
                Some(queue) => {
                    self.ranged(leases, queue)
                        .copy(fetch, message, &lease, restarts, deadline)
                        .await
                }
                None => copy(&self.origin, &self.store, &self.config, fetch, deadline).await,
            }
        };
        // A split copy keeps the lease: its parts carry it on.
        if !matches!(result, Ok(CopyOutcome::Split { .. })) {
            let release_by = Instant::now().max(deadline) + self.config.deadline_margin / 2;
            if let Err(err) = leases
                .release(&id, lease.generation, None, release_by)
                .await
            {
                tracing::warn!(error = %err, "could not release the key's lease; it expires at the invocation's end");
            }
        }
        result
    }

    async fn part(&self, task: &PartTask, deadline: Instant) -> Result<CopyOutcome, BackfillError> {
        let span = tracing::Span::current();
        span.record("bucket", task.copy.bucket.as_str());
        span.record("key", task.copy.key.as_str());
        let (Some(leases), Some(queue)) = (&self.leases, &self.queue) else {
            return Err(MessageError::Invalid(
                "a part task, but this function has no LEASE_TABLE and PART_QUEUE_URL".into(),
            )
            .into());
        };
        let fetch = plan(&task.copy, &self.config)?;
        self.breaker.check()?;
        let result = self
            .ranged(leases, queue)
            .part(&fetch, task, deadline)
            .await;
        self.record_origin_health(&result);
        result
    }

    fn ranged<'a>(&'a self, leases: &'a L, queue: &'a Q) -> Ranged<'a, O, S, L, Q> {
        Ranged {
            origin: &self.origin,
            store: &self.store,
            leases,
            queue,
            config: &self.config,
        }
    }

    /// Only an answer of the origin's speaks of its health: an object found already in the
    /// bucket, or a lease held elsewhere, never reached it, so they neither close the breaker
    /// nor reset its count.
    fn record_origin_health(&self, result: &Result<CopyOutcome, BackfillError>) {
        match result {
            Ok(
                CopyOutcome::Copied { .. }
                | CopyOutcome::NotAtOrigin(_)
                | CopyOutcome::Split { .. }
                | CopyOutcome::PartUploaded { .. }
                | CopyOutcome::Restarted
                | CopyOutcome::Unchanged
                | CopyOutcome::Refreshed { .. }
                | CopyOutcome::Deleted(_)
                | CopyOutcome::Kept(_),
            ) => self.breaker.record_success(),
            Ok(
                CopyOutcome::AlreadyPresent
                | CopyOutcome::InFlight
                | CopyOutcome::PartStale
                | CopyOutcome::Purged
                | CopyOutcome::NoCopy
                | CopyOutcome::PutBack
                | CopyOutcome::FannedOut { .. }
                | CopyOutcome::Swept { .. }
                | CopyOutcome::Invalidated { .. },
            ) => {}
            Err(err) if err.is_origin_failure() => self.breaker.record_failure(),
            Err(_) => {}
        }
    }
}

/// A batch's invalidation records, made one CreateInvalidation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalidated {
    /// The message ids of the records it took.
    pub ids: HashSet<String>,
    /// Whether CloudFront took them (the error's text if not: every record is retried).
    pub result: Result<(), String>,
}

impl<O: Origin, S: ObjectStore, L: Leases, Q: TaskQueue> Backfill<O, S, L, Q> {
    /// The batch's invalidations as one CreateInvalidation: `None` when it has none.
    pub async fn invalidate_batch(
        &self,
        records: &[SqsMessage],
        deadline: Instant,
    ) -> Option<Invalidated> {
        let batch: Vec<(&str, Invalidation)> = records
            .iter()
            .filter_map(
                |record| match Task::parse(record.body.as_deref().unwrap_or_default()) {
                    Ok(Task::Invalidate(invalidation)) => Some((
                        record.message_id.as_deref().unwrap_or_default(),
                        invalidation,
                    )),
                    _ => None,
                },
            )
            .collect();
        if batch.is_empty() {
            return None;
        }
        let ids = batch.iter().map(|(id, _)| (*id).to_owned()).collect();
        let result = self.invalidate_paths(&batch, deadline).await;
        Some(Invalidated { ids, result })
    }

    async fn invalidate_paths(
        &self,
        batch: &[(&str, Invalidation)],
        deadline: Instant,
    ) -> Result<(), String> {
        let paths = batch_paths(
            batch
                .iter()
                .flat_map(|(_, invalidation)| invalidation.paths.iter().map(String::as_str)),
            MAX_PATHS,
            MAX_WILDCARDS,
        );
        let Some(cloudfront) = &self.fresh.cloudfront else {
            tracing::warn!(
                paths = paths.len(),
                "no DISTRIBUTION_ID: the changed paths are not invalidated"
            );
            return Ok(());
        };
        let reference = caller_reference(batch.iter().map(|(id, _)| *id));
        let count = paths.len();
        match cloudfront.invalidate(paths, reference, deadline).await {
            Ok(id) => {
                tracing::info!(
                    invalidation = %id,
                    paths = count,
                    messages = batch.len(),
                    "CloudFront invalidation created"
                );
                self.metrics.emit(
                    &[("Outcome", CopyOutcome::Invalidated { paths: count }.label())],
                    &[Metric::count("InvalidatedPaths", count as u64)],
                );
                self.count(&[("invalidated_paths", count as u64)], deadline)
                    .await;
                Ok(())
            }
            Err(err) => {
                tracing::warn!(error = %err, paths = count, "CloudFront refused the invalidation; the batch is retried");
                Err(err.to_string())
            }
        }
    }
}

/// The instant to stop work: the invocation's deadline less the margin.
pub fn work_deadline(deadline: SystemTime, margin: Duration) -> Instant {
    let remaining = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Instant::now() + remaining.saturating_sub(margin)
}

/// The Lambda handler: a batch of backfill messages, with partial failures.
pub async fn handle_batch<O: Origin, S: ObjectStore, L: Leases, Q: TaskQueue>(
    app: &Backfill<O, S, L, Q>,
    runner: &BatchRunner,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Diagnostic> {
    let deadline = work_deadline(event.context.deadline(), app.config.deadline_margin);
    // The invalidation queue's records are one CreateInvalidation, whose answer is each one's.
    let invalidated = app.invalidate_batch(&event.payload.records, deadline).await;
    let invalidated = &invalidated;
    let response = runner
        .run_until(event.payload, deadline, |record| async move {
            let id = record.message_id.as_deref().unwrap_or_default();
            match invalidated {
                Some(batch) if batch.ids.contains(id) => batch.result.clone().map_err(|message| {
                    BackfillError::Aws(shared::Error::Aws {
                        operation: "CreateInvalidation",
                        message,
                        retryable: true,
                    })
                }),
                _ => app.handle_record(record, deadline).await.map(drop),
            }
        })
        .await?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::OriginResponse;
    use crate::store::{Part, Target, Written};
    use bytes::Bytes;
    use shared::config::Env;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An origin that is down, counting the requests it gets.
    #[derive(Default)]
    struct DownOrigin(AtomicUsize);

    impl Origin for DownOrigin {
        async fn get_with(
            &self,
            _url: &str,
            _: http::HeaderMap,
        ) -> Result<OriginResponse, BackfillError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(OriginResponse {
                status: 503,
                headers: http::HeaderMap::new(),
                content_length: Some(0),
                body: Box::pin(futures::stream::empty()),
            })
        }
    }

    /// A bucket that has the keys ending in `present.jpg` and takes no writes (none is reached),
    /// counting the lookups.
    #[derive(Default)]
    struct Bucket(AtomicUsize);

    impl ObjectStore for Bucket {
        async fn exists(
            &self,
            _bucket: &str,
            key: &str,
            _: Instant,
        ) -> Result<bool, BackfillError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(key.ends_with("present.jpg"))
        }
        async fn head(
            &self,
            _: &str,
            _: &str,
            _: Instant,
        ) -> Result<Option<crate::store::Head>, BackfillError> {
            unreachable!("no change is sent")
        }
        async fn delete_if_match(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: Instant,
        ) -> Result<crate::store::Deleted, BackfillError> {
            unreachable!("no change is sent")
        }
        async fn list(
            &self,
            _: &str,
            _: &str,
            _: Option<String>,
            _: Instant,
        ) -> Result<(Vec<String>, Option<String>), BackfillError> {
            unreachable!("no change is sent")
        }
        async fn put(
            &self,
            _: &Target,
            _: Bytes,
            _: u32,
            _: Instant,
        ) -> Result<Written, BackfillError> {
            unreachable!("the origin never answers 200")
        }
        async fn put_stream(
            &self,
            _: &Target,
            _: crate::origin::BodyStream,
            _: u64,
            _: Instant,
        ) -> Result<Written, BackfillError> {
            unreachable!("the origin never answers 200")
        }
        async fn create_multipart(&self, _: &Target, _: Instant) -> Result<String, BackfillError> {
            unreachable!("the origin never answers 200")
        }
        async fn upload_part(
            &self,
            _: &Target,
            _: &str,
            _: i32,
            _: Bytes,
            _: u32,
            _: Instant,
        ) -> Result<Part, BackfillError> {
            unreachable!("the origin never answers 200")
        }
        async fn upload_part_stream(
            &self,
            _: &Target,
            _: &str,
            _: i32,
            _: crate::origin::BodyStream,
            _: u64,
            _: Instant,
        ) -> Result<Part, BackfillError> {
            unreachable!("the origin never answers 200")
        }
        async fn list_parts(
            &self,
            _: &Target,
            _: &str,
            _: Instant,
        ) -> Result<Vec<crate::store::ListedPart>, BackfillError> {
            unreachable!("the origin never answers 200")
        }
        async fn complete_multipart(
            &self,
            _: &Target,
            _: &str,
            _: Vec<Part>,
            _: u32,
            _: Instant,
        ) -> Result<Written, BackfillError> {
            unreachable!("the origin never answers 200")
        }
        async fn abort_multipart(
            &self,
            _: &Target,
            _: &str,
            _: Instant,
        ) -> Result<(), BackfillError> {
            unreachable!("the origin never answers 200")
        }
    }

    fn app(extra: &[(&'static str, &'static str)]) -> Backfill<DownOrigin, Bucket> {
        let mut pairs = vec![
            ("BUCKET", "overseas-origin"),
            ("ALLOWED_ORIGINS", "https://www.example.com"),
        ];
        pairs.extend_from_slice(extra);
        Backfill::new(
            Config::from_env(&Env::from_pairs(pairs)).unwrap(),
            DownOrigin::default(),
            Bucket::default(),
        )
    }

    fn record(id: &str, name: &str) -> SqsMessage {
        record_of(id, &format!("images/{name}"))
    }

    fn record_of(id: &str, key: &str) -> SqsMessage {
        let body = serde_json::json!({
            "version": 1,
            "bucket": "overseas-origin",
            "key": key,
            "origin": {"protocol": "https", "host": "www.example.com", "port": 443, "path": ""},
            "uri": format!("/{key}"),
            "request_id": "r",
            "enqueued_at": "2026-11-25T08:00:00Z",
            "trigger": "origin-request",
        });
        let mut record = SqsMessage::default();
        record.message_id = Some(id.to_owned());
        record.body = Some(body.to_string());
        record
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[tokio::test]
    async fn an_object_already_present_does_not_reset_the_breaker() {
        let app = app(&[("BREAKER_THRESHOLD", "2")]);
        let err = app.handle_record(record("1", "a.jpg"), later()).await;
        assert!(matches!(err, Err(BackfillError::OriginUnavailable { .. })));
        let outcome = app.handle_record(record("2", "present.jpg"), later()).await;
        assert_eq!(outcome.unwrap(), CopyOutcome::AlreadyPresent);
        let err = app.handle_record(record("3", "b.jpg"), later()).await;
        assert!(matches!(err, Err(BackfillError::OriginUnavailable { .. })));
        let err = app
            .handle_record(record("4", "c.jpg"), later())
            .await
            .unwrap_err();
        assert!(matches!(err, BackfillError::CircuitOpen(_)), "{err}");
    }

    #[tokio::test]
    async fn each_record_is_counted_once() {
        let (metrics, captured) = Metrics::new("Test").capturing();
        let mut app = app(&[]);
        app.metrics = metrics.clone();
        let runner = BatchRunner::new(4, metrics);
        let mut event = SqsEvent::default();
        event.records = vec![
            record("1", "a.jpg"),
            record("2", "present.jpg"),
            record("3", "also-present.jpg"),
        ];
        let app = &app;
        let response = runner
            .run(event, |record| async move {
                app.handle_record(record, later()).await.map(drop)
            })
            .await
            .unwrap();
        assert_eq!(response.batch_item_failures.len(), 1);
        assert_eq!(captured.total("Records"), 3.0);
        assert_eq!(
            captured
                .documents()
                .iter()
                .filter(|doc| doc.get("Duration").is_some())
                .count(),
            3,
            "one duration per record"
        );
    }

    #[tokio::test]
    async fn a_refused_prefix_is_permanent_and_asks_neither_origin_nor_bucket() {
        let (metrics, captured) = Metrics::new("Test").capturing();
        let app = app(&[("REFUSED_PREFIXES", "uploads/,thumbnails/")]);
        let runner = BatchRunner::new(4, metrics);
        let mut event = SqsEvent::default();
        event.records = vec![
            record_of("1", "uploads/bob/x.jpg"),
            record_of("2", "thumbnails/images/a.jpg/160.jpg"),
        ];
        let app = &app;
        let response = runner
            .run(event, |record| async move {
                app.handle_record(record, later()).await.map(drop)
            })
            .await
            .unwrap();
        assert!(response.batch_item_failures.is_empty());
        let permanent: Vec<_> = captured
            .documents()
            .into_iter()
            .filter(|doc| doc["Outcome"] == "permanent")
            .map(|doc| (doc["Reason"].clone(), doc["Records"].as_f64()))
            .collect();
        assert_eq!(
            permanent,
            [(serde_json::json!("refused_prefix"), Some(2.0))]
        );
        assert_eq!(app.origin.0.load(Ordering::SeqCst), 0);
        assert_eq!(app.store.0.load(Ordering::SeqCst), 0);
    }
}
