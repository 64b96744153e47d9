//! Keeping copies fresh: changes announced by the domestic side (refresh, purge), the
//! revalidation schedule, and the CloudFront invalidations that follow.
//!
//! Every change of a key runs under the key's lease, as copies do, so one copy, refresh or purge
//! of a key runs at a time across the fleet; a change that finds the lease held is put back on
//! the queue, delayed, rather than dropped (the copy in flight may be of an older version). Its
//! writes are conditional on the object it checked: a new body replaces the copy only with
//! `If-Match` on the copy's ETag, and a delete is `If-Match` too, so a writer whose lease expired
//! under it can never have its newer object replaced by an older one.

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use http::HeaderMap;
use shared::change::{ChangeKind, ChangeMessage, ChangeSource, Scope};
use shared::message::{BackfillMessage, MessageError};
use shared::metrics::Metric;
use shared::ObjectKey;
use tokio::time::{timeout_at, Instant};

use crate::config::OnOriginGone;
use crate::copy::{copy_response, CopyOutcome};
use crate::error::BackfillError;
use crate::freshness::{object_id, revalidation_interval, DynamoFreshness};
use crate::handler::Backfill;
use crate::invalidate::{CloudFront, Invalidation};
use crate::lease::{Leases, Purpose, Taken};
use crate::origin::Origin;
use crate::plan::{plan, Fetch, BACKFILLED_AT, ORIGIN_ETAG, ORIGIN_LAST_MODIFIED};
use crate::ranged::{epoch_at, epoch_now, lease_id, SqsQueue, TaskQueue};
use crate::store::{Deleted, Head, ObjectStore, WriteCondition};
use crate::task::Sweep;

/// What keeping copies fresh needs besides the copy's own parts; each optional.
#[derive(Default)]
pub struct Fresh {
    pub table: Option<DynamoFreshness>,
    /// The change queue (CHANGE_QUEUE_URL): changes put back, a prefix's keys, the schedule's
    /// refreshes.
    pub queue: Option<SqsQueue>,
    pub invalidations: Option<SqsQueue>,
    pub cloudfront: Option<CloudFront>,
}

/// A sweep's claim on an object: if its refresh is lost, the object is due again after this.
const CLAIM_HOLD: u64 = 900;
/// The longest delay of a change put back.
const MAX_PUT_BACK_DELAY: Duration = Duration::from_secs(60);

/// The delay of a change put back for the `busy`-th time: from `first` up to a bound that
/// doubles each time (at most a minute), at `spread` (0..1) between them. The spread is random:
/// changes put back together (a burst of refreshes of one key) come back at different times,
/// rather than meeting at the lease again, all but one of them to be put back once more.
pub fn put_back_delay(first: Duration, busy: u32, spread: f64) -> Duration {
    let bound = first
        .saturating_mul(1 << busy.min(6))
        .min(MAX_PUT_BACK_DELAY)
        .max(first);
    first + (bound - first).mul_f64(spread.clamp(0.0, 1.0))
}

/// Margin for the clocks of SQS and of the lease's holder: a lease taken less than this after a
/// message was sent may have started before it.
const CLOCK_MARGIN_MS: u64 = 1_000;

/// Whether a change in flight makes this one redundant: the same kind, taken (and so looking at
/// the origin, or deleting the copy) after this one was sent.
pub fn covers(held: Purpose, taken_ms: u64, ours: Purpose, sent_ms: Option<u64>) -> bool {
    held == ours
        && held != Purpose::Copy
        && sent_ms.is_some_and(|sent| taken_ms > sent + CLOCK_MARGIN_MS)
}

/// Whether an object is a copy of the origin's: only those are revalidated or purged.
pub fn is_copy(head: &Head) -> bool {
    [BACKFILLED_AT, ORIGIN_ETAG, ORIGIN_LAST_MODIFIED]
        .iter()
        .any(|name| head.metadata.contains_key(*name))
}

/// The conditional GET's validators, from what the copy recorded: `If-None-Match` with the
/// origin's entity tag, `If-Modified-Since` with its Last-Modified (an origin evaluates the
/// first when both are there, RFC 9110 §13.2.2).
pub fn revalidation_headers(head: &Head) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut add = |name, metadata: &str| {
        if let Some(value) = head
            .metadata
            .get(metadata)
            .and_then(|v| http::HeaderValue::from_str(v).ok())
        {
            headers.insert(name, value);
        }
    };
    add(http::header::IF_NONE_MATCH, ORIGIN_ETAG);
    add(http::header::IF_MODIFIED_SINCE, ORIGIN_LAST_MODIFIED);
    headers
}

/// Whether a 200's entity tag is the one the copy recorded (an origin that ignores
/// `If-None-Match`): the copy is current. Weak comparison, as `If-None-Match` uses.
pub fn same_entity(headers: &HeaderMap, head: &Head) -> bool {
    let weak = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    match (
        headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok()),
        head.metadata.get(ORIGIN_ETAG),
    ) {
        (Some(now), Some(recorded)) => weak(now) == weak(recorded),
        _ => false,
    }
}

/// The viewer path of an image's renditions, as a wildcard (`/thumbnails/images/a.jpg/*`): the
/// image processor writes them again, or deletes them, when their source changes. None for an
/// object that is no image, or whose renditions viewers cannot reach under the key prefix.
pub fn renditions_path(
    key: &str,
    thumbnail_prefix: Option<&str>,
    key_prefix: &str,
) -> Option<String> {
    let thumbnail_prefix = thumbnail_prefix?;
    let extension = key.rsplit_once('.')?.1.to_ascii_lowercase();
    if !matches!(extension.as_str(), "jpg" | "jpeg" | "png" | "webp" | "gif") {
        return None;
    }
    let renditions = format!("{thumbnail_prefix}{key}");
    let path = renditions.strip_prefix(key_prefix)?;
    let path = ObjectKey::new(path).ok()?.to_uri_path();
    Some(format!("{path}/*"))
}

/// What a refresh counts, by stats counter.
#[derive(Debug, Default)]
struct Counts(Vec<(&'static str, u64)>);

impl Counts {
    fn add(&mut self, name: &'static str) {
        self.0.push((name, 1));
    }
}

impl<O: Origin, S: ObjectStore, L: Leases, Q: TaskQueue> Backfill<O, S, L, Q> {
    /// A refresh or purge of a key, or of every key under a prefix.
    /// `sent_ms`: when SQS took the message (its `SentTimestamp`), if known.
    pub async fn change(
        &self,
        change: &ChangeMessage,
        holder: &str,
        sent_ms: Option<u64>,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        let span = tracing::Span::current();
        span.record("bucket", change.bucket.as_str());
        let (Some(queue), Some(leases)) = (&self.fresh.queue, &self.leases) else {
            return Err(MessageError::Invalid(
                "a change, but this function has no CHANGE_QUEUE_URL and LEASE_TABLE".into(),
            )
            .into());
        };
        match change.scope() {
            Scope::Prefix(prefix) => {
                span.record("key", prefix);
                self.fan_out(queue, change, prefix, deadline).await
            }
            Scope::Key(key) => {
                span.record("key", key.as_str());
                let copy = change
                    .copy(self.config.key_prefix.as_str())?
                    .expect("a key's change has a copy");
                let fetch = plan(&copy, &self.config)?;
                let id = lease_id(&fetch);
                let expires_at = epoch_at(deadline) + self.config.deadline_margin.as_secs();
                let purpose = match change.kind {
                    ChangeKind::Refresh => Purpose::Refresh,
                    ChangeKind::Purge => Purpose::Purge,
                };
                let lease = match leases
                    .take(&id, holder, purpose, epoch_now(), expires_at, deadline)
                    .await?
                {
                    Taken::Held(lease) => lease,
                    Taken::Live {
                        purpose: held,
                        taken_ms,
                        ..
                    } if covers(held, taken_ms, purpose, sent_ms) => {
                        tracing::info!(
                            "the same change of the key started after this one was sent: nothing to add"
                        );
                        return Ok(CopyOutcome::InFlight);
                    }
                    Taken::Live { .. } => return self.put_back(queue, change, deadline).await,
                };
                let mut counts = Counts::default();
                let result = self
                    .change_key(change, &copy, fetch, &mut counts, deadline)
                    .await;
                let release_by = Instant::now().max(deadline) + self.config.deadline_margin / 2;
                let (released, ()) = tokio::join!(
                    leases.release(&id, lease.generation, None, release_by),
                    self.count(&counts.0, deadline)
                );
                if let Err(err) = released {
                    tracing::warn!(error = %err, "could not release the key's lease; it expires at the invocation's end");
                }
                match result {
                    Ok(CopyOutcome::PutBack) => self.put_back(queue, change, deadline).await,
                    other => other,
                }
            }
        }
    }

    /// Puts a copy back on the change queue, delayed: a change of its key is under way.
    pub async fn put_back_copy(
        &self,
        copy: &BackfillMessage,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        let queue = self.fresh.queue.as_ref().expect("checked by the caller");
        let delay = self.send_back(queue, copy.to_json(), 1, deadline).await?;
        tracing::info!(
            delay_s = delay.as_secs(),
            "a change of the key is under way: the copy is put back"
        );
        Ok(CopyOutcome::PutBack)
    }

    /// Sends the change again, delayed: its key's copy is in flight, or the object changed
    /// under it.
    async fn put_back(
        &self,
        queue: &SqsQueue,
        change: &ChangeMessage,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        let again = ChangeMessage {
            busy: change.busy.saturating_add(1),
            ..change.clone()
        };
        let delay = self
            .send_back(queue, again.to_json(), change.busy, deadline)
            .await?;
        tracing::info!(
            busy = again.busy,
            delay_s = delay.as_secs(),
            "the key's copy is in flight or changed meanwhile: the change is put back"
        );
        Ok(CopyOutcome::PutBack)
    }

    /// Sends `body` to the change queue after [`put_back_delay`] for its `busy`-th time back;
    /// the delay.
    async fn send_back(
        &self,
        queue: &SqsQueue,
        body: String,
        busy: u32,
        deadline: Instant,
    ) -> Result<Duration, BackfillError> {
        let delay = put_back_delay(self.config.freshness.busy_delay, busy, fastrand::f64());
        queue.send_delayed(vec![body], delay, deadline).await?;
        Ok(delay)
    }

    /// One page of a prefix's keys announced one by one, and the rest of the listing after them.
    async fn fan_out(
        &self,
        queue: &SqsQueue,
        change: &ChangeMessage,
        prefix: &str,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        if change.bucket != self.config.bucket {
            return Err(BackfillError::WrongBucket(change.bucket.clone()));
        }
        if let Some(refused) = self.config.refused_prefixes.refusing(prefix) {
            return Err(BackfillError::RefusedPrefix {
                key: prefix.to_owned(),
                prefix: refused.to_owned(),
            });
        }
        let (keys, next) = self
            .store
            .list(
                &change.bucket,
                prefix,
                change.continuation.clone(),
                deadline,
            )
            .await?;
        let key_prefix = self.config.key_prefix.as_str();
        let mut bodies: Vec<String> = keys
            .into_iter()
            .filter(|key| key.starts_with(key_prefix))
            // A wider prefix takes in the refused ones: their keys are not the backfill's.
            .filter(|key| self.config.refused_prefixes.refusing(key).is_none())
            .filter_map(|key| ObjectKey::new(key).ok())
            .map(|key| {
                ChangeMessage {
                    prefix: None,
                    continuation: None,
                    busy: 0,
                    key: Some(key),
                    ..change.clone()
                }
                .to_json()
            })
            .collect();
        let keys = bodies.len();
        if let Some(next) = next {
            bodies.push(
                ChangeMessage {
                    continuation: Some(next),
                    ..change.clone()
                }
                .to_json(),
            );
        }
        queue.send(bodies, deadline).await?;
        Ok(CopyOutcome::FannedOut { keys })
    }

    /// A key's refresh or purge, under its lease; what it did is added to `counts`.
    async fn change_key(
        &self,
        change: &ChangeMessage,
        copy: &BackfillMessage,
        fetch: Fetch,
        counts: &mut Counts,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        let id = object_id(&fetch.bucket, &fetch.key);
        // The freshness item is read beside the HEAD: a revalidation that finds the copy
        // current keeps its time of last change.
        let (head, changed_at) = tokio::join!(
            self.store.head(&fetch.bucket, &fetch.key, deadline),
            self.changed_at(&id, deadline)
        );
        let Some(head) = head?.filter(is_copy) else {
            self.forget(&id, deadline).await?;
            return Ok(CopyOutcome::NoCopy);
        };
        let outcome = match change.kind {
            ChangeKind::Purge => {
                let outcome = self.delete(&fetch, &head, copy, CopyOutcome::Purged, deadline);
                let outcome = outcome.await?;
                if outcome == CopyOutcome::Purged {
                    counts.add("purged");
                }
                outcome
            }
            ChangeKind::Refresh => {
                // An origin that keeps failing is left alone, as by copies.
                self.breaker.check()?;
                let last_change = changed_at.unwrap_or_else(epoch_now);
                self.revalidate(copy, fetch, &head, last_change, counts, deadline)
                    .await?
            }
        };
        tracing::info!(
            change = change.kind.as_str(),
            source = change.source.as_str(),
            "{}",
            outcome.summary()
        );
        Ok(outcome)
    }

    /// When the copy last changed, as the freshness table says; `None` if it does not say (a
    /// failure to read it is logged: the copy is changed all the same).
    async fn changed_at(&self, id: &str, deadline: Instant) -> Option<u64> {
        let table = self.fresh.table.as_ref()?;
        match table.get(id, deadline).await {
            Ok(tracked) => tracked.map(|tracked| tracked.changed_at),
            Err(err) => {
                tracing::warn!(error = %err, "could not read the copy's freshness item");
                None
            }
        }
    }

    /// Adds to the day's counters; a failure is logged.
    pub(crate) async fn count(&self, counters: &[(&str, u64)], deadline: Instant) {
        if let Some(table) = &self.fresh.table {
            if let Err(err) = table.count(epoch_now(), counters, deadline).await {
                tracing::warn!(error = %err, "could not add to the day's counters");
            }
        }
    }

    /// `last_change`: when the copy last changed (kept when it is found current).
    async fn revalidate(
        &self,
        copy: &BackfillMessage,
        fetch: Fetch,
        head: &Head,
        last_change: u64,
        counts: &mut Counts,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        counts.add("origin_requests");
        self.metrics
            .emit(&[], &[Metric::count("OriginRequests", 1)]);
        let response = timeout_at(
            deadline,
            self.origin.get_with(&fetch.url, revalidation_headers(head)),
        )
        .await
        .map_err(|_| BackfillError::Deadline)??;
        counts.add("revalidated");
        let unchanged = response.status == 304
            || (response.status == 200 && same_entity(&response.headers, head));
        if unchanged {
            counts.add("unchanged");
            self.track(copy, last_change, deadline).await;
            return Ok(CopyOutcome::Unchanged);
        }
        if matches!(response.status, 404 | 410) {
            let status = response.status;
            return match self.config.freshness.on_origin_gone {
                OnOriginGone::Keep => {
                    counts.add("kept");
                    self.track(copy, last_change, deadline).await;
                    Ok(CopyOutcome::Kept(status))
                }
                OnOriginGone::Delete => {
                    let outcome = self
                        .delete(&fetch, head, copy, CopyOutcome::Deleted(status), deadline)
                        .await?;
                    if outcome == CopyOutcome::Deleted(status) {
                        counts.add("deleted");
                    }
                    Ok(outcome)
                }
            };
        }
        crate::plan::judge(response.status, &response.headers, SystemTime::now())?;
        let large = response
            .content_length
            .is_none_or(|length| length > self.config.freshness.replace_in_place_max);
        if large {
            // Too large to copy in this invocation: the copy goes, and a copy message brings the
            // new version (split across invocations if it must be).
            drop(response);
            let outcome = self
                .delete(
                    &fetch,
                    head,
                    copy,
                    CopyOutcome::Refreshed { bytes: 0 },
                    deadline,
                )
                .await?;
            if outcome == (CopyOutcome::Refreshed { bytes: 0 }) {
                if let Some(queue) = &self.fresh.queue {
                    queue.send(vec![copy.to_json()], deadline).await?;
                }
                counts.add("refreshed");
            }
            return Ok(outcome);
        }
        let replace = Fetch {
            condition: WriteCondition::Replaces(head.etag.clone()),
            ..fetch
        };
        match copy_response(
            &self.origin,
            &self.store,
            &self.config,
            &replace,
            response,
            deadline,
        )
        .await?
        {
            CopyOutcome::Copied { bytes, .. } => {
                counts.add("refreshed");
                tokio::join!(
                    self.track(copy, epoch_now(), deadline),
                    self.invalidate(copy, deadline)
                );
                Ok(CopyOutcome::Refreshed { bytes })
            }
            // If-Match failed: the object is no longer the one revalidated.
            CopyOutcome::AlreadyPresent => Ok(CopyOutcome::PutBack),
            other => Ok(other),
        }
    }

    /// Deletes the copy checked, `done` when it did (or it was gone already), put back when
    /// another object is there now.
    async fn delete(
        &self,
        fetch: &Fetch,
        head: &Head,
        copy: &BackfillMessage,
        done: CopyOutcome,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        match self
            .store
            .delete_if_match(&fetch.bucket, &fetch.key, &head.etag, deadline)
            .await?
        {
            Deleted::Deleted | Deleted::Gone => {
                self.forget(&object_id(&fetch.bucket, &fetch.key), deadline)
                    .await?;
                self.invalidate(copy, deadline).await;
                Ok(done)
            }
            Deleted::Changed => Ok(CopyOutcome::PutBack),
        }
    }

    async fn forget(&self, id: &str, deadline: Instant) -> Result<(), BackfillError> {
        match &self.fresh.table {
            Some(table) => table.forget(id, deadline).await,
            None => Ok(()),
        }
    }

    /// Records a copy, or a revalidation, with when the copy last changed, and when it is next
    /// due. A failure is logged: the copy is right, only its schedule is late.
    pub async fn track(&self, copy: &BackfillMessage, changed_at: u64, deadline: Instant) {
        let Some(table) = &self.fresh.table else {
            return;
        };
        let now = epoch_now();
        let freshness = &self.config.freshness;
        let interval = revalidation_interval(
            now,
            changed_at,
            freshness.min_revalidation,
            freshness.max_staleness,
        );
        if let Err(err) = table
            .record(copy, changed_at, now, now + interval, deadline)
            .await
        {
            tracing::warn!(error = %err, "could not record the copy's revalidation schedule");
        }
    }

    /// Sends the copy's path to be invalidated. A failure is logged and counted: the change is
    /// made, and CloudFront serves the old version at most until its cache entry expires.
    async fn invalidate(&self, copy: &BackfillMessage, deadline: Instant) {
        let Some(queue) = &self.fresh.invalidations else {
            tracing::info!(path = %copy.uri, "no INVALIDATION_QUEUE_URL: the path is not invalidated");
            return;
        };
        let mut paths = vec![copy.uri.clone()];
        paths.extend(renditions_path(
            copy.key.as_str(),
            self.config.freshness.thumbnail_prefix.as_deref(),
            self.config.key_prefix.as_str(),
        ));
        let body = Invalidation::new(paths).to_json();
        if let Err(err) = queue.send(vec![body], deadline).await {
            self.metrics
                .emit(&[], &[Metric::count("InvalidationsLost", 1)]);
            tracing::error!(error = %err, path = %copy.uri, "could not send the path to invalidate; CloudFront serves the old version until its cache entry expires");
        }
    }

    /// The schedule's tick: the objects most overdue, as many as `period` of the budget allows,
    /// claimed and sent as refreshes.
    pub async fn sweep(
        &self,
        sweep: &Sweep,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        let (Some(table), Some(queue)) = (&self.fresh.table, &self.fresh.queue) else {
            return Err(MessageError::Invalid(
                "a sweep, but this function has no FRESHNESS_TABLE and CHANGE_QUEUE_URL".into(),
            )
            .into());
        };
        let budget = sweep_budget(
            self.config.freshness.revalidation_budget,
            sweep.period_seconds,
        );
        let now = epoch_now();
        let due = table.due(now, budget, deadline).await?;
        // Claims run concurrently, and each batch of ten refreshes goes as soon as it is claimed:
        // the workers start on the first while the rest are claimed.
        let mut claimed = futures::stream::iter(due)
            .map(|due| async move {
                let id = object_id(&due.copy.bucket, due.copy.key.as_str());
                let won = table
                    .claim(&id, due.due_at, now + CLAIM_HOLD, deadline)
                    .await?;
                Ok::<_, BackfillError>(won.then(|| scheduled_refresh(&due.copy, now)))
            })
            .buffer_unordered(SWEEP_CONCURRENCY);
        let mut batch = Vec::new();
        let mut objects = 0;
        while let Some(claim) = claimed.next().await {
            if let Some(body) = claim? {
                batch.push(body);
            }
            if batch.len() == 10 {
                objects += batch.len();
                queue.send(std::mem::take(&mut batch), deadline).await?;
            }
        }
        objects += batch.len();
        queue.send(batch, deadline).await?;
        Ok(CopyOutcome::Swept { objects })
    }
}

/// Claims a sweep makes at once.
const SWEEP_CONCURRENCY: usize = 16;

/// The refresh the schedule sends for a copy it claimed.
fn scheduled_refresh(copy: &BackfillMessage, now: u64) -> String {
    let mut change = ChangeMessage::for_key(
        ChangeKind::Refresh,
        &copy.bucket,
        &copy.origin,
        copy.key.clone(),
        &format!("sweep-{now}"),
        time::OffsetDateTime::now_utc(),
    );
    change.uri = Some(copy.uri.clone());
    change.source = ChangeSource::Schedule;
    change.to_json()
}

/// Refreshes one sweep may send: the budget a minute, for the schedule's period (at least one).
pub fn sweep_budget(per_minute: u32, period_seconds: u64) -> usize {
    ((u64::from(per_minute) * period_seconds / 60).max(1)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(metadata: &[(&str, &str)]) -> Head {
        Head {
            etag: "\"s3\"".into(),
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn only_copies_are_changed_and_their_validators_make_the_get_conditional() {
        assert!(!is_copy(&head(&[("owner", "alice")])));
        assert!(is_copy(&head(&[(BACKFILLED_AT, "2026-12-05T08:00:00Z")])));
        let copy = head(&[
            (ORIGIN_ETAG, "\"v1\""),
            (ORIGIN_LAST_MODIFIED, "Sat, 05 Dec 2026 08:00:00 GMT"),
        ]);
        let headers = revalidation_headers(&copy);
        assert_eq!(headers[http::header::IF_NONE_MATCH], "\"v1\"");
        assert_eq!(
            headers[http::header::IF_MODIFIED_SINCE],
            "Sat, 05 Dec 2026 08:00:00 GMT"
        );
        assert!(revalidation_headers(&head(&[])).is_empty());
        let mut answer = HeaderMap::new();
        answer.insert(http::header::ETAG, "W/\"v1\"".parse().unwrap());
        assert!(same_entity(&answer, &copy));
        answer.insert(http::header::ETAG, "\"v2\"".parse().unwrap());
        assert!(!same_entity(&answer, &copy));
        assert!(!same_entity(&HeaderMap::new(), &copy));
    }

    #[test]
    fn an_images_renditions_are_invalidated_with_it() {
        assert_eq!(
            renditions_path("images/café.JPG", Some("thumbnails/"), "").as_deref(),
            Some("/thumbnails/images/caf%C3%A9.JPG/*")
        );
        assert_eq!(
            renditions_path("video/a.mp4", Some("thumbnails/"), ""),
            None
        );
        assert_eq!(renditions_path("images/a.jpg", None, ""), None);
        assert_eq!(
            renditions_path("mirror/a.png", Some("mirror/thumbs/"), "mirror/").as_deref(),
            Some("/thumbs/mirror/a.png/*")
        );
        assert_eq!(
            renditions_path("mirror/a.png", Some("thumbs/"), "mirror/"),
            None
        );
    }

    #[test]
    fn changes_put_back_wait_longer_each_time_up_to_a_minute() {
        let first = Duration::from_secs(5);
        assert_eq!(put_back_delay(first, 0, 1.0), first);
        assert_eq!(put_back_delay(first, 2, 0.0), first);
        assert_eq!(put_back_delay(first, 2, 1.0), Duration::from_secs(20));
        assert_eq!(put_back_delay(first, 2, 0.5), Duration::from_millis(12_500));
        assert_eq!(put_back_delay(first, 40, 1.0), MAX_PUT_BACK_DELAY);
    }

    #[test]
    fn a_change_is_covered_only_by_the_same_change_taken_after_it_was_sent() {
        let sent = Some(10_000);
        assert!(covers(Purpose::Refresh, 11_001, Purpose::Refresh, sent));
        assert!(!covers(Purpose::Refresh, 10_500, Purpose::Refresh, sent));
        assert!(!covers(Purpose::Purge, 20_000, Purpose::Refresh, sent));
        assert!(!covers(Purpose::Refresh, 20_000, Purpose::Purge, sent));
        assert!(!covers(Purpose::Refresh, 20_000, Purpose::Refresh, None));
    }

    #[test]
    fn a_sweep_spends_its_period_of_the_budget() {
        assert_eq!(sweep_budget(60, 60), 60);
        assert_eq!(sweep_budget(600, 5), 50);
        assert_eq!(sweep_budget(1, 5), 1);
    }
}
