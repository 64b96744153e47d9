//! The hook: plan, suppress repeats, send within the budget, then log and count what happened.
//! Whatever happens, the caller gets back the request (or response) to hand to CloudFront.
//!
//! The viewer waits for the send until SQS answers, or until the request is on its way over an
//! established connection, or at most the budget. A send not answered then is only no longer
//! waited for: it goes on as a task of the addon's runtime, through the sandbox's freezes, and
//! reports its own end (`BackfillEnqueued` with `BackfillEnqueuedLate`, or `BackfillSendFailed`).
//! At 150 to 300 ms from the queue's region, a warm connection's request is on the wire within a
//! millisecond and SQS takes it while the sandbox is frozen, so the viewer waits a millisecond,
//! not a round trip; a new connection (a frozen sandbox's usually died while it slept) needs a
//! TCP and a TLS handshake before the request can go, two round trips, and a budget shorter than
//! that leaves the request to the sandbox's next invocations. docs/edge.md has the figures.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shared::cloudfront::Event;
use shared::metrics::{Metric, Metrics};
use shared::Failure;
use time::OffsetDateTime;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::error::EdgeError;
use crate::plan::{plan, Action, Backfill, Reply, SkipReason};
use crate::queue::{send_until, BackfillQueue, Progress, DETACHED_FOR};
use crate::repeat::RepeatFilter;

/// The CloudWatch namespace of the hook's metrics, beside the other functions'.
pub const METRICS_NAMESPACE: &str = "OverseasOrigin";

/// Kept out of the send budget for what follows a timeout (the timer's 1 ms resolution, waking the
/// JavaScript thread, handing the reply back), so that the whole call, not only the send, fits in
/// the budget. 2 ms was measured too little on a busy 2-core machine (calls up to 4 ms over).
pub const REPLY_MARGIN: Duration = Duration::from_millis(5);

/// How long the viewer still waits once the request has been handed to its connection: the
/// bytes reach the socket in the same poll; this covers a worker thread scheduled late.
pub const WRITE_GRACE: Duration = Duration::from_millis(2);

/// Sends that may go on unwaited at once in one sandbox. Past this (SQS unreachable for a while
/// under steady misses) a send ends with its budget, so memory stays bounded.
pub const MAX_DETACHED: usize = 64;

/// How one event ended, as far as the viewer's request is concerned.
#[derive(Debug)]
pub enum Outcome {
    Enqueued {
        latency: Duration,
    },
    /// The request is on its way to SQS, which takes it whether or not the sandbox runs again:
    /// the viewer goes on, and the send's task reads the answer (at the sandbox's next
    /// invocation if it is frozen first) and retries a failure.
    Written {
        waited: Duration,
    },
    /// The budget ran out before the request was on its way (a new connection needs a TCP and a
    /// TLS handshake first): the viewer went on, the send did not stop.
    Detached {
        waited: Duration,
    },
    /// The same key was enqueued, or is being enqueued, by this sandbox within the repeat window.
    SuppressedRepeat,
    Skipped(SkipReason),
    SendFailed {
        error: EdgeError,
        latency: Duration,
    },
}

pub struct Hook<Q> {
    core: Arc<Core<Q>>,
}

/// What a send that outlives its handler call needs.
struct Core<Q> {
    queue: Q,
    repeats: Mutex<RepeatFilter>,
    metrics: Metrics,
    /// Where EMF lines go: stdout in Lambda.
    metrics_out: Mutex<Box<dyn Write + Send>>,
    /// Sends running as tasks of their own.
    in_flight: AtomicUsize,
}

impl<Q: BackfillQueue + 'static> Hook<Q> {
    pub fn new(queue: Q, metrics: Metrics, metrics_out: Box<dyn Write + Send>) -> Self {
        Hook {
            core: Arc::new(Core {
                queue,
                repeats: Mutex::new(RepeatFilter::default()),
                metrics,
                metrics_out: Mutex::new(metrics_out),
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    #[cfg(test)]
    pub fn queue(&self) -> &Q {
        &self.core.queue
    }

    /// Sends still going.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.core.in_flight.load(Ordering::SeqCst)
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
                self.core.report(&outcome);
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
                span.in_scope(|| self.core.report(&outcome));
                outcome
            }
        };
        Ok((plan.reply, outcome))
    }

    async fn enqueue(&self, backfill: &Backfill, time_left: Duration) -> Outcome {
        let repeat_key = backfill.repeat_key();
        let started = Instant::now();
        {
            let mut repeats = self.core.repeats();
            if repeats.is_repeat(&repeat_key, started, backfill.repeat_window) {
                return Outcome::SuppressedRepeat;
            }
            // A send on its way counts: the viewers who miss the key meanwhile add nothing.
            repeats.record(repeat_key.clone(), started);
        }
        let give_up_at = tokio::time::Instant::now() + DETACHED_FOR;
        let message = backfill.message.clone();
        let progress = Arc::new(Progress::default());
        let result = if self.core.in_flight.load(Ordering::SeqCst) >= MAX_DETACHED {
            // Too many sends are already going unwaited: this one ends with its budget.
            tokio::time::timeout(
                time_left,
                send_until(&self.core.queue, &message, give_up_at, &progress),
            )
            .await
            .unwrap_or(Err(EdgeError::Timeout(time_left)))
        } else {
            let (answer, mut answered) = oneshot::channel();
            let in_flight = InFlight::start(Arc::clone(&self.core));
            let key = repeat_key.clone();
            let sending = progress.clone();
            tokio::spawn(
                async move {
                    let core = &in_flight.0;
                    let result = send_until(&core.queue, &message, give_up_at, &sending).await;
                    if let Err(result) = answer.send(result) {
                        // Nobody waits any more: this is the send's end, to report.
                        core.finish_unwaited(&key, started, result);
                    }
                }
                .instrument(tracing::Span::current()),
            );
            let budget = tokio::time::sleep(time_left);
            tokio::pin!(budget);
            let wait = tokio::select! {
                biased;
                answer = &mut answered => Wait::Answered(answer),
                () = progress.written.notified() => Wait::Written,
                () = progress.struggling.notified() => Wait::OutOfTime,
                () = &mut budget => Wait::OutOfTime,
            };
            if matches!(wait, Wait::Written) {
                // The bytes leave the socket within this grace, the budget permitting.
                tokio::select! {
                    () = tokio::time::sleep(WRITE_GRACE) => {}
                    () = &mut budget => {}
                }
            }
            match wait {
                Wait::Answered(Ok(result)) => result,
                Wait::Answered(Err(_)) => {
                    Err(EdgeError::Panic("the send ended without an answer".into()))
                }
                Wait::Written | Wait::OutOfTime => {
                    // An answer that came meanwhile is still the caller's.
                    answered.close();
                    let waited = started.elapsed();
                    match answered.try_recv() {
                        Ok(result) => result,
                        Err(_) if matches!(wait, Wait::Written) => {
                            return Outcome::Written { waited }
                        }
                        Err(_) => return Outcome::Detached { waited },
                    }
                }
            }
        };
        let latency = started.elapsed();
        match result {
            Ok(()) => Outcome::Enqueued { latency },
            Err(error) => {
                self.core.repeats().forget(&repeat_key, started);
                Outcome::SendFailed { error, latency }
            }
        }
    }
}

/// What the viewer's wait for a send ended with.
enum Wait {
    Answered(Result<Result<(), EdgeError>, oneshot::error::RecvError>),
    /// The request is on its way; SQS's answer is not in yet.
    Written,
    /// The budget ran out, or the retry failed too, before the request was on its way.
    OutOfTime,
}

/// One send running as a task of its own, counted while it lives (a panic included).
struct InFlight<Q>(Arc<Core<Q>>);

impl<Q> InFlight<Q> {
    fn start(core: Arc<Core<Q>>) -> Self {
        core.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(core)
    }
}

impl<Q> Drop for InFlight<Q> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<Q: BackfillQueue + 'static> Core<Q> {
    /// The end of a send the viewer no longer waited for. Its time since the miss may span
    /// freezes: logged, not published as the send's latency.
    fn finish_unwaited(&self, repeat_key: &str, started: Instant, result: Result<(), EdgeError>) {
        let since_miss_ms = millis(started.elapsed());
        match result {
            Ok(()) => {
                tracing::info!(since_miss_ms, "backfill enqueued after the viewer went on");
                self.emit(
                    &[],
                    &[
                        Metric::count("BackfillEnqueued", 1),
                        Metric::count("BackfillEnqueuedLate", 1),
                    ],
                );
            }
            Err(error) => {
                self.repeats().forget(repeat_key, started);
                let reason = error.reason();
                tracing::warn!(since_miss_ms, reason, error = %error, "backfill not enqueued after the viewer went on");
                self.emit(
                    &[("Reason", reason)],
                    &[Metric::count("BackfillSendFailed", 1)],
                );
            }
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
                        Metric::millis("BackfillViewerWait", latency_ms),
                    ],
                );
            }
            Outcome::Written { waited } => {
                let waited_ms = millis(*waited);
                tracing::debug!(
                    waited_ms,
                    "backfill request on its way; request let through"
                );
                self.emit(&[], &[Metric::millis("BackfillViewerWait", waited_ms)]);
            }
            Outcome::Detached { waited } => {
                let waited_ms = millis(*waited);
                tracing::info!(
                    waited_ms,
                    "backfill send goes on after the budget; request let through"
                );
                self.emit(
                    &[],
                    &[
                        Metric::count("BackfillSendDetached", 1),
                        Metric::millis("BackfillViewerWait", waited_ms),
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
