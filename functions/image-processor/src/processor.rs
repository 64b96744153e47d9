//! The handler: every S3 notice of a message through decide, claim, then fetch, render and write
//! (a source created) or delete the renditions (a source removed), and record.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use bytes::Bytes;
use lambda_runtime::LambdaEvent;
use shared::batch::{BatchError, BatchRunner};
use shared::metrics::{Metric, Metrics};
use shared::Failure;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::Config;
use crate::error::Error;
use crate::event::{parse_body, Body, Notice};
use crate::imaging::{self, Settings};
use crate::rendition::{
    self, is_current, on_existing, on_removal, OnExisting, OnRemoval, SourceStamp,
};
use crate::store::{Deleted, Fetched, ObjectStore, Put, RenditionWrite};
use crate::task::{decide, Action, Decision, Ignored, Lease, Task};
use crate::tasks::{Claim, Finish, TaskTable};

/// How one notice ended (failures are errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    TestEvent,
    Ignored(Ignored),
    Rendered {
        renditions: usize,
        written: usize,
    },
    AlreadyCompleted,
    /// An earlier delivery failed permanently; that was reported then.
    AlreadyFailed {
        reason: String,
    },
    /// The revision the event names is no longer there (what was rendered of it before it went
    /// is deleted).
    SourceGone,
    /// The source was removed: `deleted` of its renditions deleted, `kept` left (made from a
    /// newer write than the removal).
    Removed {
        deleted: usize,
        kept: usize,
    },
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::TestEvent => "test_event",
            Outcome::Ignored(_) => "ignored",
            Outcome::Rendered { .. } => "rendered",
            Outcome::AlreadyCompleted => "already_completed",
            Outcome::AlreadyFailed { .. } => "already_failed",
            Outcome::SourceGone => "source_gone",
            Outcome::Removed { .. } => "removed",
        }
    }
}

/// Built once per sandbox.
pub struct Processor<S, T> {
    config: Arc<Config>,
    store: S,
    tasks: T,
    metrics: Metrics,
    /// Bounds the images decoded at once: each holds its pixels in memory and a core busy.
    cpu: Arc<Semaphore>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl<S: ObjectStore, T: TaskTable> Processor<S, T> {
    pub fn new(config: Config, store: S, tasks: T, metrics: Metrics) -> Self {
        let cpu = Arc::new(Semaphore::new(config.image_concurrency));
        Processor {
            config: Arc::new(config),
            store,
            tasks,
            metrics,
            cpu,
        }
    }

    /// Every notice of one SQS message, in order. The first failure is returned after the rest
    /// were tried; a retryable one wins over a permanent one, so that the message comes back.
    pub async fn process_message(
        &self,
        record: &SqsMessage,
        deadline_ms: u64,
    ) -> Result<Vec<Outcome>, Error> {
        let body = record
            .body
            .as_deref()
            .ok_or_else(|| Error::InvalidEvent("message has no body".into()))?;
        let notices = match parse_body(body)? {
            Body::TestEvent => {
                tracing::info!("s3:TestEvent dropped");
                return Ok(vec![Outcome::TestEvent]);
            }
            Body::Notices(notices) => notices,
        };
        let mut outcomes = Vec::with_capacity(notices.len());
        let mut failure: Option<Error> = None;
        for notice in &notices {
            match self.process_notice(notice, deadline_ms).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(err) => {
                    if failure
                        .as_ref()
                        .is_none_or(|f| !f.is_retryable() && err.is_retryable())
                    {
                        failure = Some(err);
                    }
                }
            }
        }
        match failure {
            Some(err) => Err(err),
            None => Ok(outcomes),
        }
    }

    async fn process_notice(&self, notice: &Notice, deadline_ms: u64) -> Result<Outcome, Error> {
        let span = tracing::Span::current();
        span.record("bucket", notice.bucket.as_str());
        span.record("key", notice.raw_key.as_str());
        let task = match decide(&self.config, notice)? {
            Decision::Ignore(reason) => {
                tracing::debug!(reason = reason.label(), "notice ignored");
                return Ok(Outcome::Ignored(reason));
            }
            Decision::Process(task) => task,
        };
        span.record("key", task.key.as_str());
        if let Some(event_time) = task.event_time {
            let latency = OffsetDateTime::now_utc() - event_time;
            self.metrics.emit(
                &[],
                &[Metric::millis(
                    "NotificationLatency",
                    latency.as_seconds_f64() * 1000.0,
                )],
            );
        }
        let started = Instant::now();
        // Boxed: the whole chain inlined into one future is too deep for the compiler's layout.
        let result = Box::pin(self.claim_and_process(&task, deadline_ms)).await;
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        let outcome = match &result {
            Ok(outcome) => outcome.label(),
            Err(err) => err.reason(),
        };
        self.metrics.emit(
            &[("Outcome", outcome)],
            &[
                Metric::count("Tasks", 1),
                Metric::millis("ProcessingTime", elapsed),
            ],
        );
        if let Ok(outcome) = &result {
            tracing::info!(
                task = task.id,
                outcome = outcome.label(),
                elapsed_ms = elapsed as u64,
                "task done"
            );
        }
        result
    }

    async fn claim_and_process(&self, task: &Task, deadline_ms: u64) -> Result<Outcome, Error> {
        let now = now_ms();
        let lease = Lease::for_deadline(deadline_ms, now);
        // Every AWS call ends by this, inside the lease and before the invocation's end.
        let deadline = Instant::now()
            + Duration::from_millis(lease.until_ms.saturating_sub(now))
                .saturating_sub(self.config.deadline_margin);
        let token = match self.tasks.claim(task, lease, now, deadline).await? {
            Claim::Claimed { token } => token,
            Claim::Completed => return Ok(Outcome::AlreadyCompleted),
            Claim::Failed { reason } => return Ok(Outcome::AlreadyFailed { reason }),
            Claim::Busy { until_ms } => {
                return Err(Error::TaskBusy {
                    retry_after: Duration::from_millis(until_ms.saturating_sub(now)),
                })
            }
        };
        let expires_at_s = now_ms() / 1000 + self.config.task_ttl.as_secs();
        let result = match task.action {
            Action::Render => self.render_task(task, deadline).await,
            Action::RemoveRenditions { .. } => self.remove_renditions(task, deadline).await,
        };
        match result {
            Ok(outcome) => {
                let finish = match outcome {
                    Outcome::Rendered { renditions, .. } => Finish::Completed { renditions },
                    Outcome::Removed { deleted, .. } => Finish::Removed { deleted },
                    _ => Finish::Completed { renditions: 0 },
                };
                if !self
                    .tasks
                    .finish(&task.id, &token, &finish, expires_at_s, deadline)
                    .await?
                {
                    tracing::warn!(
                        task = task.id,
                        "task record not completed by this invocation: its lease was taken over, \
                         or the completion took effect and its answer was lost"
                    );
                }
                Ok(outcome)
            }
            Err(err) if !err.is_retryable() => {
                let finish = Finish::Failed {
                    reason: err.reason().to_owned(),
                    detail: err.to_string(),
                };
                self.tasks
                    .finish(&task.id, &token, &finish, expires_at_s, deadline)
                    .await?;
                Err(err)
            }
            Err(err) => {
                // Past the deadline too, within a part of the margin kept for it.
                let release_by = Instant::now().max(deadline) + self.config.deadline_margin / 2;
                if let Err(release) = self.tasks.release(&task.id, &token, release_by).await {
                    // The lease still ends with this invocation, so the task is not stuck.
                    tracing::warn!(error = %release, "could not release the task claim");
                }
                Err(err)
            }
        }
    }

    async fn render_task(&self, task: &Task, deadline: Instant) -> Result<Outcome, Error> {
        let limit = self.config.max_object_bytes;
        if let Some(size) = task.size.filter(|size| *size > limit) {
            return Err(Error::TooLarge { size, limit });
        }
        let bytes = match self.store.fetch(task, limit, deadline).await? {
            Fetched::Object { bytes } => bytes,
            Fetched::Gone => return Ok(Outcome::SourceGone),
        };
        let bytes_in = bytes.len() as u64;
        let permit = Arc::clone(&self.cpu)
            .acquire_owned()
            .await
            .map_err(|e| Error::Worker(e.to_string()))?;
        let config = Arc::clone(&self.config);
        let key = task.key.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let settings = Settings::from_config(&config);
            imaging::render(
                &bytes,
                &settings,
                config.largest_width(),
                |displayed, alpha| rendition::plan(&config, &key, displayed, alpha),
            )
        })
        .await
        .map_err(|e| Error::Worker(e.to_string()))??;
        if !rendered.warnings.is_empty() {
            // Recovered from (junk before a marker, a bad APPn segment, an unusable profile):
            // rendered anyway, as browsers show it.
            tracing::warn!(
                decode_warnings = rendered.warnings.join("; "),
                "image rendered despite decoder warnings"
            );
        }
        let decode_warnings = rendered.warnings.len() as u64;
        let stamp = SourceStamp {
            key: task.key.as_str().to_owned(),
            etag: task.etag.clone(),
            version_id: task.version_id.clone(),
            sequencer: task.sequencer.clone(),
        };
        let writes: Vec<RenditionWrite> = rendered
            .renditions
            .into_iter()
            .map(|(spec, body)| RenditionWrite {
                bucket: task.bucket.clone(),
                key: spec.key,
                body: Bytes::from(body),
                content_type: spec.format.content_type(),
                cache_control: self.config.cache_control.clone(),
                stamp: stamp.clone(),
            })
            .collect();
        let bytes_out: u64 = writes.iter().map(|w| w.body.len() as u64).sum();
        let written = futures::future::try_join_all(
            writes.iter().map(|write| self.write(task, write, deadline)),
        )
        .await?;
        // Read after the writes: a removal handled while this task rendered found nothing of
        // it to delete, so if the source is gone now, what this task wrote is left to no one.
        if self
            .store
            .current(&task.bucket, &task.key, deadline)
            .await?
            .is_none()
        {
            let fates = futures::future::try_join_all(writes.iter().map(|write| {
                self.delete_rendition(
                    task,
                    &write.key,
                    // Ours or older: the source is read again after each, so that one made
                    // meanwhile from the key written again is left alone.
                    |theirs| match on_existing(&stamp, theirs) {
                        OnExisting::Keep => OnRemoval::Keep,
                        _ => OnRemoval::IfSourceAbsent,
                    },
                    deadline,
                )
            }))
            .await?;
            let deleted = fates.iter().filter(|f| **f == Fate::Deleted).count();
            tracing::info!(
                deleted,
                "source removed while it was rendered: its renditions deleted"
            );
            self.count_deletions(deleted, None);
            return Ok(Outcome::SourceGone);
        }
        let source = rendered.source;
        self.metrics.emit(
            &[("Format", source.format.label())],
            &[
                Metric::bytes("BytesIn", bytes_in),
                Metric::bytes("BytesOut", bytes_out),
                Metric::count("Pixels", u64::from(source.width) * u64::from(source.height)),
                Metric::count("DecodeWarnings", decode_warnings),
            ],
        );
        Ok(Outcome::Rendered {
            renditions: writes.len(),
            written: written.into_iter().filter(|w| *w).count(),
        })
    }

    /// Writes one rendition without clobbering: `true` if this call wrote it. A rendition deleted
    /// or replaced between the calls (a removal, another task) is looked at again.
    async fn write(
        &self,
        task: &Task,
        write: &RenditionWrite,
        deadline: Instant,
    ) -> Result<bool, Error> {
        for _ in 0..RENDITION_ATTEMPTS {
            if self.store.put_if_absent(write, deadline).await? == Put::Created {
                return Ok(true);
            }
            let Some(existing) = self
                .store
                .existing(&write.bucket, &write.key, deadline)
                .await?
            else {
                continue;
            };
            let replace = match on_existing(&write.stamp, &existing.stamp) {
                OnExisting::Same | OnExisting::Keep => false,
                OnExisting::Replace => true,
                // Read after the rendition: if ours is still the current write, the rendition
                // was made from an older one (a newer write would be current instead).
                OnExisting::IfOursCurrent => self
                    .store
                    .current(&task.bucket, &task.key, deadline)
                    .await?
                    .is_some_and(|current| is_current(&write.stamp, &current)),
            };
            if !replace {
                return Ok(false);
            }
            if self.store.replace(write, &existing.etag, deadline).await? == Put::Created {
                return Ok(true);
            }
        }
        Err(Error::RenditionConflict {
            key: write.key.to_string(),
        })
    }

    /// Every rendition of a removed source that the removal took away: those under the source's
    /// prefix (whatever widths and formats were configured when they were made), each deleted
    /// only if it was made from a write older than the removal.
    async fn remove_renditions(&self, task: &Task, deadline: Instant) -> Result<Outcome, Error> {
        let prefix = rendition::renditions_prefix(&self.config.output_prefix, &task.key);
        let keys = self
            .store
            .keys_under(&task.bucket, &prefix, deadline)
            .await?;
        let fates = futures::future::try_join_all(keys.iter().map(|key| {
            self.delete_rendition(task, key, |theirs| on_removal(task, theirs), deadline)
        }))
        .await?;
        let deleted = fates.iter().filter(|f| **f == Fate::Deleted).count();
        let kept = fates.iter().filter(|f| **f == Fate::Kept).count();
        self.count_deletions(deleted, Some(kept));
        Ok(Outcome::Removed { deleted, kept })
    }

    /// Deletes the rendition at `key` if `verdict` says so of the source it was made from: a
    /// HeadObject reads that, then a DeleteObject conditional on the ETag it read; a rendition
    /// changed in between is read again. For `IfSourceAbsent` the source is read after the
    /// rendition: a rendition written after a source was removed and written again is then
    /// either not the one read (the delete fails on its ETag) or the source is there.
    async fn delete_rendition(
        &self,
        task: &Task,
        key: &shared::ObjectKey,
        verdict: impl Fn(&SourceStamp) -> OnRemoval,
        deadline: Instant,
    ) -> Result<Fate, Error> {
        for _ in 0..RENDITION_ATTEMPTS {
            let Some(existing) = self.store.existing(&task.bucket, key, deadline).await? else {
                return Ok(Fate::Absent);
            };
            let sequencer = existing.stamp.sequencer.as_deref().unwrap_or("-");
            let delete = match verdict(&existing.stamp) {
                OnRemoval::Delete => true,
                OnRemoval::Keep => false,
                OnRemoval::IfSourceAbsent => self
                    .store
                    .current(&task.bucket, &task.key, deadline)
                    .await?
                    .is_none(),
            };
            if !delete {
                tracing::info!(
                    rendition = key.as_str(),
                    source_sequencer = sequencer,
                    "rendition kept: made from a newer write of its source, or from another"
                );
                return Ok(Fate::Kept);
            }
            match self
                .store
                .delete_if_match(&task.bucket, key, &existing.etag, deadline)
                .await?
            {
                Deleted::Deleted => {
                    tracing::info!(
                        rendition = key.as_str(),
                        source_sequencer = sequencer,
                        "rendition deleted"
                    );
                    return Ok(Fate::Deleted);
                }
                Deleted::Gone => return Ok(Fate::Absent),
                Deleted::Changed => {}
            }
        }
        Err(Error::RenditionConflict {
            key: key.to_string(),
        })
    }

    /// `RenditionsDeleted`, and for a removal `RenditionsKept` (renditions of a newer write).
    fn count_deletions(&self, deleted: usize, kept: Option<usize>) {
        let mut metrics = vec![Metric::count("RenditionsDeleted", deleted as u64)];
        if let Some(kept) = kept {
            metrics.push(Metric::count("RenditionsKept", kept as u64));
        }
        self.metrics.emit(&[], &metrics);
    }
}

/// Tries at one rendition before it is a `rendition_conflict` (retried with the message): each
/// try found it changed by another task between two calls.
const RENDITION_ATTEMPTS: usize = 3;

/// What became of one rendition of a removed source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Deleted,
    Kept,
    /// Not there (any more).
    Absent,
}

/// The Lambda handler: the batch through the runner, partial failures reported.
pub async fn handle<S: ObjectStore, T: TaskTable>(
    processor: &Processor<S, T>,
    runner: &BatchRunner,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, BatchError> {
    let deadline_ms = event.context.deadline;
    runner
        .run(event.payload, |record| async move {
            processor
                .process_message(&record, deadline_ms)
                .await
                .map(drop)
        })
        .await
}
