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

    /// Handles one record, logging one line and writing its metrics.
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
        let mut metrics = vec![
            Metric::count("Records", 1),
            Metric::millis("Duration", elapsed),
        ];
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
        match &result {
            Ok(_) => self.breaker.record_success(),
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
        .run(event.payload, |record| async move {
            app.handle_record(record, deadline).await.map(drop)
        })
        .await?;
    Ok(response)
}
