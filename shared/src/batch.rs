//! The SQS batch runner: every record of a batch through a handler, concurrently up to a bound, one
//! span per record, with partial batch failures (`ReportBatchItemFailures`).
//!
//! - Success and permanent failures are not reported, so Lambda deletes them; a permanent failure
//!   is logged with its reason and counted.
//! - A retryable failure is reported, and its visibility is extended with backoff by receive count,
//!   so the next attempt waits; after the queue's maxReceiveCount it lands in the DLQ.
//! - A record that would be reported but has no message id fails the whole batch: an empty
//!   `itemIdentifier` would do the same, less clearly.
//! - FIFO queues: the records of one message group (`MessageGroupId`) run in order, the groups at
//!   once up to the bound; at a group's first retryable failure it and every later record of that
//!   group are reported (not attempted), so that order within the group is kept. Other groups go on.
//! - With a deadline ([`BatchRunner::run_until`]): a record that cannot start early enough before
//!   it is handed back at once, reported with a short visibility instead of the backoff, without
//!   reaching the handler (so it counts as no failure of anything the handler uses).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::stream::{self, StreamExt};
use tokio::time::Instant;
use tracing::{field, Instrument};

use crate::aws::QueueArn;
use crate::error::{Error, Failure};
use crate::metrics::{Metric, Metrics};
use crate::retry::{visibility_delay, Backoff};

/// The receive count SQS reports for a record (1 on its first delivery, 0 if absent).
pub fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Why a whole batch failed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("a record that failed has no message id, so the whole batch is retried")]
    MissingMessageId,
}

impl Failure for BatchError {
    fn is_retryable(&self) -> bool {
        true
    }

    fn reason(&self) -> &'static str {
        "missing_message_id"
    }
}

impl From<BatchError> for lambda_runtime::Diagnostic {
    fn from(err: BatchError) -> Self {
        crate::error::diagnostic(&err)
    }
}

/// How one record ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Succeeded,
    Permanent {
        reason: &'static str,
    },
    Retry {
        retry_after: Option<Duration>,
    },
    /// Not started: too little time was left before the deadline. Reported, with a short
    /// visibility.
    HandedBack,
    /// Not attempted: an earlier record of its FIFO message group failed or was handed back.
    NotAttempted,
}

/// Counts of a batch's outcomes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchSummary {
    pub succeeded: usize,
    pub permanent: BTreeMap<&'static str, usize>,
    pub retried: usize,
    pub handed_back: usize,
    pub not_attempted: usize,
}

/// How long the SQS calls of one visibility change (the queue's URL, once, and the change) may
/// take together, by default: they run after the work, in the margin left before the deadline.
pub const VISIBILITY_CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Extends a failed message's visibility timeout, so that its next delivery waits with backoff.
#[derive(Debug)]
pub struct VisibilityExtender {
    client: aws_sdk_sqs::Client,
    backoff: Backoff,
    timeout: Duration,
    queue_urls: tokio::sync::Mutex<HashMap<String, String>>,
}

impl VisibilityExtender {
    pub fn new(client: aws_sdk_sqs::Client, backoff: Backoff) -> Self {
        VisibilityExtender {
            client,
            backoff,
            timeout: VISIBILITY_CALL_TIMEOUT,
            queue_urls: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Bounds each visibility change (its SQS calls and their retries together).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the record's visibility timeout from its receive count; returns the delay set.
    pub async fn extend(
        &self,
        record: &SqsMessage,
        retry_after: Option<Duration>,
    ) -> Result<Duration, Error> {
        let delay = visibility_delay(&self.backoff, receive_count(record), retry_after);
        self.set(record, delay).await?;
        Ok(delay)
    }

    /// Sets the record's visibility timeout to `visibility`, within the call timeout.
    pub async fn set(&self, record: &SqsMessage, visibility: Duration) -> Result<(), Error> {
        tokio::time::timeout(self.timeout, self.change(record, visibility))
            .await
            .unwrap_or_else(|_| {
                Err(Error::Aws {
                    operation: "ChangeMessageVisibility",
                    message: format!("no answer within {:?}", self.timeout),
                    retryable: true,
                })
            })
    }

    async fn change(&self, record: &SqsMessage, visibility: Duration) -> Result<(), Error> {
        let arn = record
            .event_source_arn
            .as_deref()
            .ok_or_else(|| Error::InvalidEvent("record has no eventSourceARN".into()))?;
        let receipt = record
            .receipt_handle
            .as_deref()
            .ok_or_else(|| Error::InvalidEvent("record has no receiptHandle".into()))?;
        let queue_url = self.queue_url(arn).await?;
        self.client
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(visibility.as_secs().try_into().unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| Error::aws("ChangeMessageVisibility", e))?;
        Ok(())
    }

    async fn queue_url(&self, arn: &str) -> Result<String, Error> {
        let mut urls = self.queue_urls.lock().await;
        if let Some(url) = urls.get(arn) {
            return Ok(url.clone());
        }
        let parsed = QueueArn::parse(arn)
            .ok_or_else(|| Error::InvalidEvent(format!("not an SQS queue ARN: {arn}")))?;
        let url = self
            .client
            .get_queue_url()
            .queue_name(&parsed.name)
            .queue_owner_aws_account_id(&parsed.account)
            .send()
            .await
            .map_err(|e| Error::aws("GetQueueUrl", e))?
            .queue_url
            .ok_or_else(|| Error::InvalidEvent(format!("no URL for queue {arn}")))?;
        urls.insert(arn.to_owned(), url.clone());
        Ok(url)
    }
}

/// What becomes of records too close to the deadline to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandBack {
    /// A record starts only with at least this much time left before the deadline.
    pub min_start: Duration,
    /// The visibility a handed-back record gets: short, so another invocation takes it soon.
    pub visibility: Duration,
}

impl Default for HandBack {
    fn default() -> Self {
        HandBack {
            min_start: Duration::from_secs(1),
            visibility: Duration::from_secs(5),
        }
    }
}

/// Runs batches. Build once per sandbox.
#[derive(Debug)]
pub struct BatchRunner {
    concurrency: usize,
    metrics: Metrics,
    visibility: Option<VisibilityExtender>,
    hand_back: HandBack,
}

impl BatchRunner {
    pub fn new(concurrency: usize, metrics: Metrics) -> Self {
        BatchRunner {
            concurrency: concurrency.max(1),
            metrics,
            visibility: None,
            hand_back: HandBack::default(),
        }
    }

    /// Extend the visibility of records that fail retryably.
    pub fn with_visibility(mut self, extender: VisibilityExtender) -> Self {
        self.visibility = Some(extender);
        self
    }

    /// When [`BatchRunner::run_until`] hands records back, and with what visibility.
    pub fn with_hand_back(mut self, hand_back: HandBack) -> Self {
        self.hand_back = hand_back;
        self
    }

    /// Processes `event` and returns the partial batch response.
    pub async fn run<F, Fut, E>(
        &self,
        event: SqsEvent,
        handler: F,
    ) -> Result<SqsBatchResponse, BatchError>
    where
        F: Fn(SqsMessage) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Failure,
    {
        self.run_records(event, None, handler).await
    }

    /// Like [`BatchRunner::run`], but a record that would start with less than the hand-back's
    /// `min_start` left before `deadline` is not started: it is handed back.
    pub async fn run_until<F, Fut, E>(
        &self,
        event: SqsEvent,
        deadline: Instant,
        handler: F,
    ) -> Result<SqsBatchResponse, BatchError>
    where
        F: Fn(SqsMessage) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Failure,
    {
        self.run_records(event, Some(deadline), handler).await
    }

    async fn run_records<F, Fut, E>(
        &self,
        event: SqsEvent,
        deadline: Option<Instant>,
        handler: F,
    ) -> Result<SqsBatchResponse, BatchError>
    where
        F: Fn(SqsMessage) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Failure,
    {
        let records = event.records;
        let fifo = records.iter().any(is_fifo);
        let handler = &handler;
        let outcomes: Vec<(SqsMessage, RecordOutcome)> = if fifo {
            let groups: Vec<Vec<(SqsMessage, RecordOutcome)>> =
                stream::iter(message_groups(records))
                    .map(|group| async move {
                        let mut outcomes = Vec::with_capacity(group.len());
                        let mut held = false;
                        for record in group {
                            let outcome = if held {
                                RecordOutcome::NotAttempted
                            } else {
                                self.process(&record, deadline, handler).await
                            };
                            held |= matches!(
                                outcome,
                                RecordOutcome::Retry { .. } | RecordOutcome::HandedBack
                            );
                            outcomes.push((record, outcome));
                        }
                        outcomes
                    })
                    .buffer_unordered(self.concurrency)
                    .collect()
                    .await;
            groups.into_iter().flatten().collect()
        } else {
            stream::iter(records)
                .map(|record| async move {
                    let outcome = self.process(&record, deadline, handler).await;
                    (record, outcome)
                })
                .buffer_unordered(self.concurrency)
                .collect()
                .await
        };
        let summary = summarize(&outcomes);
        self.emit(&summary);
        respond(outcomes)
    }

    async fn process<F, Fut, E>(
        &self,
        record: &SqsMessage,
        deadline: Option<Instant>,
        handler: &F,
    ) -> RecordOutcome
    where
        F: Fn(SqsMessage) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Failure,
    {
        let span = tracing::info_span!(
            "record",
            message_id = record.message_id.as_deref().unwrap_or(""),
            receive_count = receive_count(record),
            bucket = field::Empty,
            key = field::Empty,
        );
        async {
            let left = deadline.map(|at| at.saturating_duration_since(Instant::now()));
            if left.is_some_and(|left| left < self.hand_back.min_start) {
                let visibility = self.hand_back.visibility;
                let set = match &self.visibility {
                    Some(extender) => match extender.set(record, visibility).await {
                        Ok(()) => Some(visibility.as_secs()),
                        Err(err) => {
                            tracing::warn!(error = %err, "could not shorten visibility");
                            None
                        }
                    },
                    None => None,
                };
                tracing::info!(
                    left_ms = left.unwrap_or_default().as_millis() as u64,
                    visibility_s = set,
                    "too close to the deadline to start: handed back"
                );
                return RecordOutcome::HandedBack;
            }
            match handler(record.clone()).await {
                Ok(()) => RecordOutcome::Succeeded,
                Err(err) if err.is_retryable() => {
                    let retry_after = err.retry_after();
                    let visibility = match &self.visibility {
                        Some(extender) => match extender.extend(record, retry_after).await {
                            Ok(delay) => Some(delay.as_secs()),
                            Err(extend_err) => {
                                // The message still comes back after the queue's own timeout.
                                tracing::warn!(error = %extend_err, "could not extend visibility");
                                None
                            }
                        },
                        None => None,
                    };
                    tracing::warn!(
                        reason = err.reason(),
                        error = %err,
                        visibility_s = visibility,
                        "retryable failure: the message will be delivered again"
                    );
                    RecordOutcome::Retry { retry_after }
                }
                Err(err) => {
                    tracing::error!(
                        reason = err.reason(),
                        error = %err,
                        "permanent failure: the message is dropped"
                    );
                    RecordOutcome::Permanent {
                        reason: err.reason(),
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    fn emit(&self, summary: &BatchSummary) {
        let counts = [
            ("succeeded", summary.succeeded),
            ("retried", summary.retried),
            ("handed_back", summary.handed_back),
            ("not_attempted", summary.not_attempted),
        ];
        for (outcome, count) in counts.into_iter().filter(|(_, count)| *count > 0) {
            self.metrics.emit(
                &[("Outcome", outcome)],
                &[Metric::count("Records", count as u64)],
            );
        }
        for (reason, count) in &summary.permanent {
            self.metrics.emit(
                &[("Outcome", "permanent"), ("Reason", reason)],
                &[Metric::count("Records", *count as u64)],
            );
        }
    }
}

fn is_fifo(record: &SqsMessage) -> bool {
    record
        .event_source_arn
        .as_deref()
        .is_some_and(|arn| arn.ends_with(".fifo"))
        || record.attributes.contains_key("MessageGroupId")
}

/// A FIFO batch's records by message group, in order within each group, the groups in the order
/// they first appear. Records without a group id form one group (order kept, as before groups).
fn message_groups(records: Vec<SqsMessage>) -> Vec<Vec<SqsMessage>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<Vec<SqsMessage>> = Vec::new();
    for record in records {
        let group = record
            .attributes
            .get("MessageGroupId")
            .cloned()
            .unwrap_or_default();
        let at = *index.entry(group).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[at].push(record);
    }
    groups
}

fn summarize(outcomes: &[(SqsMessage, RecordOutcome)]) -> BatchSummary {
    let mut summary = BatchSummary::default();
    for (_, outcome) in outcomes {
        match outcome {
            RecordOutcome::Succeeded => summary.succeeded += 1,
            RecordOutcome::Permanent { reason } => {
                *summary.permanent.entry(reason).or_default() += 1
            }
            RecordOutcome::Retry { .. } => summary.retried += 1,
            RecordOutcome::HandedBack => summary.handed_back += 1,
            RecordOutcome::NotAttempted => summary.not_attempted += 1,
        }
    }
    summary
}

fn respond(outcomes: Vec<(SqsMessage, RecordOutcome)>) -> Result<SqsBatchResponse, BatchError> {
    let mut response = SqsBatchResponse::default();
    for (record, outcome) in outcomes {
        if matches!(
            outcome,
            RecordOutcome::Retry { .. } | RecordOutcome::HandedBack | RecordOutcome::NotAttempted
        ) {
            match record.message_id.filter(|id| !id.is_empty()) {
                Some(id) => response.add_failure(id),
                None => return Err(BatchError::MissingMessageId),
            }
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct TestError(&'static str);

    impl Failure for TestError {
        fn is_retryable(&self) -> bool {
            self.0 == "retry"
        }
        fn reason(&self) -> &'static str {
            self.0
        }
    }

    fn record(id: &str, body: &str, arn: &str) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = Some(id.to_owned());
        record.body = Some(body.to_owned());
        record.event_source_arn = Some(arn.to_owned());
        record
            .attributes
            .insert("ApproximateReceiveCount".into(), "1".into());
        record
    }

    fn event(bodies: &[&str], arn: &str) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| record(&format!("m{i}"), body, arn))
            .collect();
        event
    }

    async fn by_body(record: SqsMessage) -> Result<(), TestError> {
        match record.body.as_deref() {
            Some("ok") => Ok(()),
            Some("retry") => Err(TestError("retry")),
            _ => Err(TestError("permanent")),
        }
    }

    fn failures(response: &SqsBatchResponse) -> Vec<&str> {
        let mut ids: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        ids.sort();
        ids
    }

    const STANDARD: &str = "arn:aws:sqs:us-east-1:123456789012:backfill";
    const FIFO: &str = "arn:aws:sqs:us-east-1:123456789012:backfill.fifo";

    fn runner() -> BatchRunner {
        BatchRunner::new(4, Metrics::new("Test"))
    }

    #[tokio::test]
    async fn only_retryable_failures_are_reported() {
        let response = runner()
            .run(
                event(&["ok", "retry", "bad", "ok", "retry"], STANDARD),
                by_body,
            )
            .await
            .unwrap();
        assert_eq!(failures(&response), ["m1", "m4"]);
    }

    #[tokio::test]
    async fn empty_batch_reports_nothing() {
        let response = runner().run(SqsEvent::default(), by_body).await.unwrap();
        assert!(response.batch_item_failures.is_empty());
    }

    #[tokio::test]
    async fn fifo_stops_at_the_first_retryable_failure() {
        let seen = Mutex::new(Vec::new());
        let response = runner()
            .run(event(&["ok", "bad", "retry", "ok", "ok"], FIFO), |record| {
                seen.lock()
                    .unwrap()
                    .push(record.message_id.clone().unwrap());
                by_body(record)
            })
            .await
            .unwrap();
        assert_eq!(failures(&response), ["m2", "m3", "m4"]);
        // In order, and nothing after the failure was attempted.
        assert_eq!(*seen.lock().unwrap(), ["m0", "m1", "m2"]);
    }

    fn fifo_event(records: &[(&str, &str)]) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = records
            .iter()
            .enumerate()
            .map(|(i, (group, body))| {
                let mut record = record(&format!("m{i}"), body, FIFO);
                record
                    .attributes
                    .insert("MessageGroupId".into(), (*group).to_owned());
                record
            })
            .collect();
        event
    }

    #[tokio::test]
    async fn fifo_holds_back_only_the_failed_records_group() {
        let seen = Mutex::new(Vec::new());
        let batch = fifo_event(&[
            ("a", "ok"),
            ("b", "retry"),
            ("a", "ok"),
            ("b", "ok"),
            ("c", "bad"),
            ("b", "ok"),
            ("a", "retry"),
            ("c", "ok"),
        ]);
        let response = BatchRunner::new(1, Metrics::new("Test"))
            .run(batch, |record| {
                seen.lock()
                    .unwrap()
                    .push(record.message_id.clone().unwrap());
                by_body(record)
            })
            .await
            .unwrap();
        // b's failure holds back m3 and m5; a's last record fails; c's permanent failure holds
        // nothing back.
        assert_eq!(failures(&response), ["m1", "m3", "m5", "m6"]);
        let seen = seen.lock().unwrap();
        let mut attempted = seen.clone();
        attempted.sort();
        assert_eq!(attempted, ["m0", "m1", "m2", "m4", "m6", "m7"]);
        let order = |id: &str| seen.iter().position(|s| s == id).unwrap();
        assert!(order("m0") < order("m2") && order("m2") < order("m6"));
        assert!(order("m4") < order("m7"));
    }

    /// Runs `batch` with a handler that takes 5 ms; returns the response and the most records
    /// that were in the handler at once.
    async fn peak_concurrency(runner: BatchRunner, batch: SqsEvent) -> (SqsBatchResponse, usize) {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let response = runner
            .run(batch, |_| async {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), TestError>(())
            })
            .await
            .unwrap();
        (response, peak.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn fifo_groups_run_at_once_up_to_the_bound() {
        let batch = fifo_event(&[("a", "ok"), ("b", "ok"), ("c", "ok"), ("a", "ok")]);
        let (_, peak) = peak_concurrency(BatchRunner::new(2, Metrics::new("Test")), batch).await;
        assert_eq!(peak, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn records_too_close_to_the_deadline_are_handed_back() {
        let (metrics, captured) = Metrics::new("Test").capturing();
        let runner = BatchRunner::new(1, metrics).with_hand_back(HandBack {
            min_start: Duration::from_secs(5),
            visibility: Duration::from_secs(5),
        });
        let seen = Mutex::new(Vec::new());
        let deadline = Instant::now() + Duration::from_secs(10);
        let response = runner
            .run_until(
                event(&["ok", "ok", "ok", "ok"], STANDARD),
                deadline,
                |record| {
                    seen.lock()
                        .unwrap()
                        .push(record.message_id.clone().unwrap());
                    async {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        Ok::<(), TestError>(())
                    }
                },
            )
            .await
            .unwrap();
        // Started at 0 s and 3 s; at 6 s only 4 s are left.
        assert_eq!(*seen.lock().unwrap(), ["m0", "m1"]);
        assert_eq!(failures(&response), ["m2", "m3"]);
        let handed_back: f64 = captured
            .documents()
            .iter()
            .filter(|doc| doc["Outcome"] == "handed_back")
            .map(|doc| doc["Records"].as_f64().unwrap())
            .sum();
        assert_eq!(handed_back, 2.0);
        assert_eq!(captured.total("Records"), 4.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_handed_back_fifo_record_holds_back_its_group() {
        let runner = BatchRunner::new(1, Metrics::new("Test"));
        let deadline = Instant::now() + Duration::from_millis(500);
        let response = runner
            .run_until(fifo_event(&[("a", "ok"), ("a", "ok")]), deadline, by_body)
            .await
            .unwrap();
        assert_eq!(failures(&response), ["m0", "m1"]);
    }

    #[tokio::test]
    async fn a_visibility_change_that_gets_no_answer_gives_up_in_time() {
        // A socket that accepts connections (the kernel's backlog) and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .endpoint_url(format!("http://{}", silent.local_addr().unwrap()))
            .build();
        let extender = VisibilityExtender::new(
            aws_sdk_sqs::Client::from_conf(config),
            Backoff::new(Duration::from_secs(1), Duration::from_secs(1)),
        )
        .with_timeout(Duration::from_millis(200));
        let mut failed = record("m", "retry", STANDARD);
        failed.receipt_handle = Some("receipt".into());
        let started = std::time::Instant::now();
        let err = extender.extend(&failed, None).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{err}");
        assert!(err.to_string().contains("no answer within"), "{err}");
    }

    #[tokio::test]
    async fn missing_message_id_fails_the_whole_batch() {
        let mut batch = event(&["ok", "retry"], STANDARD);
        batch.records[1].message_id = Some(String::new());
        let err = runner().run(batch, by_body).await.unwrap_err();
        assert!(matches!(err, BatchError::MissingMessageId));
        let diagnostic: lambda_runtime::Diagnostic = err.into();
        assert_eq!(diagnostic.error_type, "Retryable.missing_message_id");
        // A record without id that succeeds needs no identifier.
        let mut batch = event(&["ok", "retry"], STANDARD);
        batch.records[0].message_id = None;
        let response = runner().run(batch, by_body).await.unwrap();
        assert_eq!(failures(&response), ["m1"]);
    }

    #[tokio::test]
    async fn concurrency_is_bounded() {
        let bodies = vec!["ok"; 20];
        let runner = BatchRunner::new(3, Metrics::new("Test"));
        let (response, peak) = peak_concurrency(runner, event(&bodies, STANDARD)).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(peak, 3);
    }

    #[test]
    fn summary_counts_each_outcome() {
        let outcomes = vec![
            (SqsMessage::default(), RecordOutcome::Succeeded),
            (
                SqsMessage::default(),
                RecordOutcome::Permanent { reason: "x" },
            ),
            (
                SqsMessage::default(),
                RecordOutcome::Permanent { reason: "x" },
            ),
            (
                SqsMessage::default(),
                RecordOutcome::Retry { retry_after: None },
            ),
            (SqsMessage::default(), RecordOutcome::NotAttempted),
            (SqsMessage::default(), RecordOutcome::HandedBack),
        ];
        let summary = summarize(&outcomes);
        assert_eq!(summary.succeeded, 1);
        assert_eq!(summary.permanent["x"], 2);
        assert_eq!(summary.retried, 1);
        assert_eq!(summary.handed_back, 1);
        assert_eq!(summary.not_attempted, 1);
    }

    #[test]
    fn receive_count_reads_the_attribute() {
        let mut record = record("m", "ok", STANDARD);
        assert_eq!(receive_count(&record), 1);
        record.attributes.clear();
        assert_eq!(receive_count(&record), 0);
    }
}
