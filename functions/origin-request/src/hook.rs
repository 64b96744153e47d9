//! The hook: plan, suppress repeats, send within the budget, then log and count what happened.
//! Whatever happens, the caller gets back the request (or response) to hand to CloudFront.

use std::io::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shared::cloudfront::Event;
use shared::metrics::{Metric, Metrics};
use shared::Failure;
use time::OffsetDateTime;
use tracing::Instrument;

use crate::error::EdgeError;
use crate::plan::{plan, Action, Backfill, Reply, SkipReason};
use crate::queue::{send_within_budget, BackfillQueue};
use crate::repeat::RepeatFilter;

/// The CloudWatch namespace of the hook's metrics, beside the other functions'.
pub const METRICS_NAMESPACE: &str = "OverseasOrigin";

/// Kept out of the send budget for what follows a timeout (the timer's 1 ms resolution, waking the
/// JavaScript thread, handing the reply back), so that the whole call, not only the send, fits in
/// the budget. 2 ms was measured too little on a busy 2-core machine (calls up to 4 ms over).
pub const REPLY_MARGIN: Duration = Duration::from_millis(5);

/// How one event ended.
#[derive(Debug)]
pub enum Outcome {
    Enqueued {
        latency: Duration,
    },
    /// The same key was enqueued by this sandbox within the repeat window.
    SuppressedRepeat,
    Skipped(SkipReason),
    SendFailed {
        error: EdgeError,
        latency: Duration,
    },
}

pub struct Hook<Q> {
    queue: Q,
    repeats: Mutex<RepeatFilter>,
    metrics: Metrics,
    /// Where EMF lines go: stdout in Lambda.
    metrics_out: Mutex<Box<dyn Write + Send>>,
}

impl<Q: BackfillQueue> Hook<Q> {
    pub fn new(queue: Q, metrics: Metrics, metrics_out: Box<dyn Write + Send>) -> Self {
        Hook {
            queue,
            repeats: Mutex::new(RepeatFilter::default()),
            metrics,
            metrics_out: Mutex::new(metrics_out),
        }
    }

    #[cfg(test)]
    pub fn queue(&self) -> &Q {
        &self.queue
    }

    /// Handles one CloudFront event given as JSON and returns the reply as JSON.
    pub async fn handle_json(&self, event: &str) -> Result<String, EdgeError> {
        let event: Event =
            serde_json::from_str(event).map_err(|e| EdgeError::InvalidEvent(e.to_string()))?;
        let (reply, _) = self.handle(event).await?;
        serde_json::to_string(&reply).map_err(|e| EdgeError::InvalidEvent(e.to_string()))
    }

    pub async fn handle(&self, event: Event) -> Result<(Reply, Outcome), EdgeError> {
        let called = tokio::time::Instant::now();
        let plan = plan(event, OffsetDateTime::now_utc())?;
        let outcome = match plan.action {
            Action::Skip(reason) => {
                let outcome = Outcome::Skipped(reason);
                self.report(&outcome);
                outcome
            }
            Action::Enqueue(backfill) => {
                let span = tracing::info_span!(
                    "backfill",
                    request_id = %backfill.request_id,
                    bucket = %backfill.bucket,
                    key = %backfill.key,
                    trigger = backfill.trigger.as_str(),
                );
                let time_left = backfill
                    .send_budget
                    .saturating_sub(called.elapsed() + REPLY_MARGIN);
                let outcome = self
                    .enqueue(&backfill, time_left)
                    .instrument(span.clone())
                    .await;
                span.in_scope(|| self.report(&outcome));
                outcome
            }
        };
        Ok((plan.reply, outcome))
    }

    async fn enqueue(&self, backfill: &Backfill, time_left: Duration) -> Outcome {
        let repeat_key = backfill.repeat_key();
        let started = Instant::now();
        if self
            .repeats()
            .is_repeat(&repeat_key, started, backfill.repeat_window)
        {
            return Outcome::SuppressedRepeat;
        }
        let result = send_within_budget(&self.queue, &backfill.message, time_left).await;
        let latency = started.elapsed();
        match result {
            Ok(()) => {
                self.repeats().record(repeat_key, started);
                Outcome::Enqueued { latency }
            }
            Err(error) => Outcome::SendFailed { error, latency },
        }
    }

    fn repeats(&self) -> MutexGuard<'_, RepeatFilter> {
        // The filter keeps no invariant a panic elsewhere could break: go on using it.
        self.repeats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One log line and one EMF line per outcome. Skips that point at something to fix (bad
    /// configuration, an invalid key) are warnings; ordinary traffic (a POST, a 404) is debug.
    fn report(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Enqueued { latency } => {
                let latency_ms = millis(*latency);
                tracing::info!(latency_ms, "backfill enqueued");
                self.emit(
                    &[],
                    &[
                        Metric::count("BackfillEnqueued", 1),
                        Metric::millis("BackfillSendLatency", latency_ms),
                    ],
                );
            }
            Outcome::SuppressedRepeat => {
                tracing::debug!("backfill suppressed: repeat within the window");
                self.emit(&[], &[Metric::count("BackfillSuppressedRepeat", 1)]);
            }
            Outcome::Skipped(reason) => {
                let label = reason.label();
                if reason.is_anomaly() {
                    tracing::warn!(reason = label, detail = %reason, "backfill skipped");
                } else {
                    tracing::debug!(reason = label, detail = %reason, "backfill skipped");
                }
                self.emit(&[("Reason", label)], &[Metric::count("BackfillSkipped", 1)]);
            }
            Outcome::SendFailed { error, latency } => {
                let latency_ms = millis(*latency);
                let reason = error.reason();
                tracing::warn!(latency_ms, reason, error = %error, "backfill not enqueued; request let through");
                self.emit(
                    &[("Reason", reason)],
                    &[
                        Metric::count("BackfillSendFailed", 1),
                        Metric::millis("BackfillSendLatency", latency_ms),
                    ],
                );
            }
        }
    }

    fn emit(&self, dimensions: &[(&str, &str)], metrics: &[Metric]) {
        let mut out = self
            .metrics_out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A metric that cannot be written must not fail the request it describes.
        let _ = self.metrics.write_to(&mut *out, dimensions, metrics);
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
