//! The SQS batch runner: every record of a batch through a handler, concurrently up to a bound, one
//! span per record, with partial batch failures (`ReportBatchItemFailures`).
//!
//! - Success and permanent failures are not reported, so Lambda deletes them; a permanent failure
//!   is logged with its reason and counted.
//! - A retryable failure is reported, and its visibility is extended with backoff by receive count,
//!   so the next attempt waits; after the queue's maxReceiveCount it lands in the DLQ.
//! - A record that would be reported but has no message id fails the whole batch: an empty
//!   `itemIdentifier` would do the same, less clearly.
//! - FIFO queues: records run in order; at the first retryable failure it and every later record are
//!   reported, so that order within a message group is kept.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::stream::{self, StreamExt};
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
    /// Not attempted: an earlier record of this FIFO batch failed.
    NotAttempted,
}

/// Counts of a batch's outcomes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchSummary {
    pub succeeded: usize,
    pub permanent: BTreeMap<&'static str, usize>,
    pub retried: usize,
    pub not_attempted: usize,
}

/// Extends a failed message's visibility timeout, so that its next delivery waits with backoff.
#[derive(Debug)]
pub struct VisibilityExtender {
    client: aws_sdk_sqs::Client,
    backoff: Backoff,
    queue_urls: tokio::sync::Mutex<HashMap<String, String>>,
}

impl VisibilityExtender {
    pub fn new(client: aws_sdk_sqs::Client, backoff: Backoff) -> Self {
        VisibilityExtender {
            client,
            backoff,
            queue_urls: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Sets the record's visibility timeout from its receive count; returns the delay set.
    pub async fn extend(
        &self,
        record: &SqsMessage,
        retry_after: Option<Duration>,
    ) -> Result<Duration, Error> {
        let arn = record
            .event_source_arn
            .as_deref()
            .ok_or_else(|| Error::InvalidEvent("record has no eventSourceARN".into()))?;
        let receipt = record
            .receipt_handle
            .as_deref()
            .ok_or_else(|| Error::InvalidEvent("record has no receiptHandle".into()))?;
        let delay = visibility_delay(&self.backoff, receive_count(record), retry_after);
        let queue_url = self.queue_url(arn).await?;
        self.client
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(delay.as_secs().try_into().unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| Error::aws("ChangeMessageVisibility", e))?;
        Ok(delay)
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

/// Runs batches. Build once per sandbox.
#[derive(Debug)]
pub struct BatchRunner {
    concurrency: usize,
    metrics: Metrics,
    visibility: Option<VisibilityExtender>,
}

impl BatchRunner {
    pub fn new(concurrency: usize, metrics: Metrics) -> Self {
        BatchRunner {
            concurrency: concurrency.max(1),
            metrics,
            visibility: None,
        }
    }

    /// Extend the visibility of records that fail retryably.
    pub fn with_visibility(mut self, extender: VisibilityExtender) -> Self {
        self.visibility = Some(extender);
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
        let records = event.records;
        let fifo = records.iter().any(is_fifo);
        let outcomes: Vec<(SqsMessage, RecordOutcome)> = if fifo {
            let mut outcomes = Vec::with_capacity(records.len());
            let mut failed = false;
            for record in records {
                let outcome = if failed {
                    RecordOutcome::NotAttempted
                } else {
                    self.process(&record, &handler).await
                };
                failed |= matches!(outcome, RecordOutcome::Retry { .. });
                outcomes.push((record, outcome));
            }
            outcomes
        } else {
            stream::iter(records)
                .map(|record| async {
                    let outcome = self.process(&record, &handler).await;
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

    async fn process<F, Fut, E>(&self, record: &SqsMessage, handler: &F) -> RecordOutcome
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

fn summarize(outcomes: &[(SqsMessage, RecordOutcome)]) -> BatchSummary {
    let mut summary = BatchSummary::default();
    for (_, outcome) in outcomes {
        match outcome {
            RecordOutcome::Succeeded => summary.succeeded += 1,
            RecordOutcome::Permanent { reason } => {
                *summary.permanent.entry(reason).or_default() += 1
            }
            RecordOutcome::Retry { .. } => summary.retried += 1,
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
            RecordOutcome::Retry { .. } | RecordOutcome::NotAttempted
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
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let bodies = vec!["ok"; 20];
        let response = BatchRunner::new(3, Metrics::new("Test"))
            .run(event(&bodies, STANDARD), |_| async {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), TestError>(())
            })
            .await
            .unwrap();
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(peak.load(Ordering::SeqCst), 3);
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
        ];
        let summary = summarize(&outcomes);
        assert_eq!(summary.succeeded, 1);
        assert_eq!(summary.permanent["x"], 2);
        assert_eq!(summary.retried, 1);
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
