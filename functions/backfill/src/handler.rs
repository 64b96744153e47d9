//! One SQS record: parse, check, copy, report.

use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Diagnostic, LambdaEvent};
use shared::batch::BatchRunner;
use shared::message::BackfillMessage;
use shared::metrics::{Metric, Metrics};
use shared::Failure;
use tokio::time::Instant;

use crate::breaker::Breaker;
use crate::config::Config;
use crate::copy::{copy, CopyOutcome};
use crate::error::BackfillError;
use crate::origin::Origin;
use crate::plan::plan;
use crate::store::ObjectStore;

pub struct Backfill<O, S> {
    pub config: Config,
    pub origin: O,
    pub store: S,
    pub breaker: Breaker,
    pub metrics: Metrics,
}

impl<O: Origin, S: ObjectStore> Backfill<O, S> {
    pub fn new(config: Config, origin: O, store: S) -> Self {
        Backfill {
            breaker: Breaker::new(config.breaker_threshold, config.breaker_cooldown),
            metrics: Metrics::for_function(config.metrics_namespace.clone()),
            config,
            origin,
            store,
        }
    }

    /// Handles one record, logging one line and writing its duration, age and bytes.
    pub async fn handle_record(
        &self,
        record: SqsMessage,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        let started = Instant::now();
        let message = BackfillMessage::parse(record.body.as_deref().unwrap_or_default());
        let age = message.as_ref().ok().map(|m| {
            let age = time::OffsetDateTime::now_utc() - m.enqueued_at;
            age.whole_milliseconds().max(0) as f64
        });
        let result = match message {
            Ok(message) => self.backfill(&message, deadline).await,
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
        if let Ok(CopyOutcome::Copied { bytes, parts }) = &result {
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
                "nothing to copy"
            );
        }
        self.metrics.emit(&[("Outcome", outcome)], &metrics);
        result
    }

    async fn backfill(
        &self,
        message: &BackfillMessage,
        deadline: Instant,
    ) -> Result<CopyOutcome, BackfillError> {
        let span = tracing::Span::current();
        span.record("bucket", message.bucket.as_str());
        span.record("key", message.key.as_str());
        let fetch = plan(message, &self.config)?;
        self.breaker.check()?;
        let result = copy(&self.origin, &self.store, &self.config, &fetch, deadline).await;
        // Only an answer of the origin's speaks of its health: an object found already in the
        // bucket never reached it, so it neither closes the breaker nor resets its count.
        match &result {
            Ok(CopyOutcome::Copied { .. } | CopyOutcome::NotAtOrigin(_)) => {
                self.breaker.record_success()
            }
            Ok(CopyOutcome::AlreadyPresent) => {}
            Err(err) if err.is_origin_failure() => self.breaker.record_failure(),
            Err(_) => {}
        }
        result
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
pub async fn handle_batch<O: Origin, S: ObjectStore>(
    app: &Backfill<O, S>,
    runner: &BatchRunner,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Diagnostic> {
    let deadline = work_deadline(event.context.deadline(), app.config.deadline_margin);
    let response = runner
        .run_until(event.payload, deadline, |record| async move {
            app.handle_record(record, deadline).await.map(drop)
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

    /// An origin that is down.
    struct DownOrigin;

    impl Origin for DownOrigin {
        async fn get(&self, _url: &str) -> Result<OriginResponse, BackfillError> {
            Ok(OriginResponse {
                status: 503,
                headers: http::HeaderMap::new(),
                content_length: Some(0),
                body: Box::pin(futures::stream::empty()),
            })
        }
    }

    /// A bucket that has the keys ending in `present.jpg` and takes no writes (none is reached).
    struct Bucket;

    impl ObjectStore for Bucket {
        async fn exists(
            &self,
            _bucket: &str,
            key: &str,
            _: Instant,
        ) -> Result<bool, BackfillError> {
            Ok(key.ends_with("present.jpg"))
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
            DownOrigin,
            Bucket,
        )
    }

    fn record(id: &str, name: &str) -> SqsMessage {
        let body = serde_json::json!({
            "version": 1,
            "bucket": "overseas-origin",
            "key": format!("images/{name}"),
            "origin": {"protocol": "https", "host": "www.example.com", "port": 443, "path": ""},
            "uri": format!("/images/{name}"),
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
}
