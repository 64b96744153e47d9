//! The queue the hook sends to, behind a narrow trait, and how long a send goes on.
//!
//! The viewer waits for a send at most its budget; the send itself goes on after that (see
//! [`crate::hook`]): over a connection that is already open the request is written within the
//! first milliseconds and SQS takes the message while the sandbox is frozen, so a reply that is
//! late only means a confirmation read at the sandbox's next invocation. A retryable failure is
//! retried with backoff until [`DETACHED_FOR`] after the miss.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shared::retry::Backoff;
use shared::Failure;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::EdgeError;
use crate::plan::OutgoingMessage;

/// How long a send that outlived its budget is retried: a sandbox frozen between misses resumes
/// it at its next invocation, and a backfill minutes late still saves every later viewer a trip
/// to the domestic origin. Past this the next miss of the object enqueues it afresh.
pub const DETACHED_FOR: Duration = Duration::from_secs(300);
/// One attempt's bound, in time the sandbox was awake (see [`awake_for`]): a new connection, a
/// TLS handshake and the request take three round trips, under a second between the farthest
/// regions; an attempt on a connection whose peer vanished would otherwise wait for TCP to give up
/// (minutes).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The step of [`awake_for`]'s clock.
const AWAKE_TICK: Duration = Duration::from_millis(100);
/// A tick late by more than this spanned a freeze.
const FREEZE_SIGN: Duration = Duration::from_millis(100);
/// The pause before each retry: the first 0 to 20 ms, as before the budget runs out, then doubling
/// to 2 s; jittered so a crowd of sandboxes does not retry in step.
const RETRY: Backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(2));

pub trait BackfillQueue: Send + Sync {
    /// One attempt at sending `message`; `progress.written` is notified once the request is
    /// on its way to SQS over an established connection.
    fn send(
        &self,
        message: &OutgoingMessage,
        progress: &Arc<Progress>,
    ) -> impl Future<Output = Result<(), EdgeError>> + Send;
}

/// What a send tells whoever waits for it before its end.
#[derive(Debug, Default)]
pub struct Progress {
    /// An attempt's request is on its way.
    pub written: Notify,
    /// The first retry failed as well: SQS is unreachable or failing for now, and the send goes
    /// on at the backoff's pace, longer than a viewer should wait.
    pub struggling: Notify,
}

/// Sends `message`, retrying a retryable failure with backoff; no attempt starts after
/// `give_up_at`.
pub async fn send_until<Q: BackfillQueue>(
    queue: &Q,
    message: &OutgoingMessage,
    give_up_at: Instant,
    progress: &Arc<Progress>,
) -> Result<(), EdgeError> {
    let mut retries = 0;
    loop {
        let result = tokio::select! {
            biased;
            result = queue.send(message, progress) => result,
            () = awake_for(ATTEMPT_TIMEOUT) => Err(EdgeError::Timeout(ATTEMPT_TIMEOUT)),
        };
        match result {
            Err(err) if err.is_retryable() => {
                if retries == 1 {
                    progress.struggling.notify_one();
                }
                let pause = RETRY.full_jitter(retries);
                if Instant::now() + pause >= give_up_at {
                    return Err(err);
                }
                tracing::debug!(error = %err, retries, "send failed, retrying");
                retries += 1;
                tokio::time::sleep(pause).await;
            }
            done => return done,
        }
    }
}

/// Ends once `limit` has passed while the process was running. Lambda freezes a sandbox between
/// invocations and the monotonic clock runs on meanwhile, so a plain timer would fire at the
/// thaw, before the answer that came during the freeze is read: a tick that took far longer than
/// asked for spanned a freeze and does not count.
pub async fn awake_for(limit: Duration) {
    let mut awake = Duration::ZERO;
    while awake < limit {
        let tick = AWAKE_TICK.min(limit - awake);
        let started = Instant::now();
        tokio::time::sleep(tick).await;
        let took = started.elapsed();
        if took < tick + FREEZE_SIGN {
            awake += took;
        }
        // What woke with the thaw (the connection's task reading the answer) goes first.
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A queue that records what it is sent and answers from a script.

    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    /// What one attempt does.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Answer {
        /// Written at once, and accepted.
        Accept,
        /// Written at once, answered (accepted) this much later, as over a long round trip.
        Unanswered(Duration),
        /// Fails after a delay, before writing, as an unreachable queue does.
        Fail { retryable: bool, after: Duration },
        /// Writes nothing for this long (then writes and accepts), as a connection that does
        /// not come up.
        Hang(Duration),
    }

    #[derive(Debug, Default)]
    pub struct FakeQueue {
        script: Mutex<VecDeque<Answer>>,
        attempts: Mutex<Vec<OutgoingMessage>>,
        accepted: Mutex<Vec<OutgoingMessage>>,
    }

    impl FakeQueue {
        /// Answers from `script` in order, then accepts.
        pub fn answering(script: &[Answer]) -> Self {
            FakeQueue {
                script: Mutex::new(script.iter().copied().collect()),
                ..FakeQueue::default()
            }
        }

        pub fn attempts(&self) -> usize {
            self.attempts.lock().unwrap().len()
        }

        pub fn accepted(&self) -> Vec<OutgoingMessage> {
            self.accepted.lock().unwrap().clone()
        }
    }

    impl BackfillQueue for FakeQueue {
        async fn send(
            &self,
            message: &OutgoingMessage,
            progress: &Arc<Progress>,
        ) -> Result<(), EdgeError> {
            self.attempts.lock().unwrap().push(message.clone());
            let answer = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Answer::Accept);
            match answer {
                Answer::Accept => progress.written.notify_one(),
                Answer::Unanswered(delay) => {
                    progress.written.notify_one();
                    tokio::time::sleep(delay).await;
                }
                Answer::Hang(delay) => {
                    tokio::time::sleep(delay).await;
                    progress.written.notify_one();
                }
                Answer::Fail { retryable, after } => {
                    tokio::time::sleep(after).await;
                    return Err(EdgeError::Queue(shared::Error::Aws {
                        operation: "SendMessage",
                        message: "scripted failure".into(),
                        retryable,
                    }));
                }
            }
            self.accepted.lock().unwrap().push(message.clone());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{Answer, FakeQueue};
    use super::*;
    use crate::config::QueueTarget;

    fn message() -> OutgoingMessage {
        OutgoingMessage {
            queue: QueueTarget::parse("https://sqs.eu-west-1.amazonaws.com/123456789012/backfill")
                .unwrap(),
            body: "{}".into(),
            fifo: None,
        }
    }

    fn fail(retryable: bool, after_ms: u64) -> Answer {
        Answer::Fail {
            retryable,
            after: Duration::from_millis(after_ms),
        }
    }

    fn signal() -> Arc<Progress> {
        Arc::default()
    }

    fn in_a_minute() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_failures_are_retried_until_one_is_taken() {
        let queue = FakeQueue::answering(&[fail(true, 5), fail(true, 5), fail(true, 5)]);
        send_until(&queue, &message(), in_a_minute(), &signal())
            .await
            .unwrap();
        assert_eq!(queue.attempts(), 4);
        assert_eq!(queue.accepted(), [message()]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_not_retried() {
        let queue = FakeQueue::answering(&[fail(false, 5)]);
        let err = send_until(&queue, &message(), in_a_minute(), &signal())
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "queue_refused");
        assert_eq!(queue.attempts(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn no_attempt_starts_after_the_deadline() {
        let queue = FakeQueue::answering(&[fail(true, 5); 1000]);
        let started = Instant::now();
        let err = send_until(
            &queue,
            &message(),
            started + Duration::from_secs(30),
            &signal(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.reason(), "queue_unavailable");
        assert!(started.elapsed() <= Duration::from_secs(30));
        // 2 s at most between attempts once the backoff has grown.
        assert!(queue.attempts() >= 15, "{}", queue.attempts());
        assert!(queue.accepted().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_freeze_does_not_count_as_time_awake() {
        let started = Instant::now();
        let waited = async {
            awake_for(Duration::from_secs(1)).await;
            started.elapsed()
        };
        // Lambda's freeze, as the clock sees it: 30 s pass at once, 350 ms in.
        let freeze = async {
            tokio::time::sleep(Duration::from_millis(350)).await;
            tokio::time::advance(Duration::from_secs(30)).await;
        };
        let (elapsed, ()) = tokio::join!(waited, freeze);
        // The second awake before and after the freeze, the freeze not counted.
        assert!(elapsed >= Duration::from_secs(31), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(32), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_that_hangs_is_cut_and_tried_again() {
        let queue = FakeQueue::answering(&[Answer::Hang(Duration::from_secs(3600))]);
        let started = Instant::now();
        send_until(&queue, &message(), in_a_minute(), &signal())
            .await
            .unwrap();
        assert!(started.elapsed() >= ATTEMPT_TIMEOUT);
        assert!(started.elapsed() < ATTEMPT_TIMEOUT + Duration::from_millis(100));
        assert_eq!(queue.attempts(), 2);
        assert_eq!(queue.accepted(), [message()]);
    }
}
