//! The queue the hook sends to, behind a narrow trait, and the send's time budget: at most one
//! quick retry, and never longer than the budget, since work left running after the handler
//! returns may never finish.

use std::future::Future;
use std::time::Duration;

use shared::retry::Backoff;
use shared::Failure;

use crate::error::EdgeError;
use crate::plan::OutgoingMessage;

/// The pause before the one retry: short, and jittered so a crowd of sandboxes does not retry in
/// step.
const QUICK_RETRY: Backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(20));

pub trait BackfillQueue: Send + Sync {
    /// One attempt at sending `message`.
    fn send(&self, message: &OutgoingMessage)
        -> impl Future<Output = Result<(), EdgeError>> + Send;
}

/// Sends `message`, retrying once after a retryable failure, giving up after `time_left`.
pub async fn send_within_budget<Q: BackfillQueue>(
    queue: &Q,
    message: &OutgoingMessage,
    time_left: Duration,
) -> Result<(), EdgeError> {
    let attempts = async {
        match queue.send(message).await {
            Err(err) if err.is_retryable() => {
                tracing::debug!(error = %err, "send failed, retrying once");
                tokio::time::sleep(QUICK_RETRY.full_jitter(0)).await;
                queue.send(message).await
            }
            first => first,
        }
    };
    tokio::time::timeout(time_left, attempts)
        .await
        .unwrap_or(Err(EdgeError::Timeout(time_left)))
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
        Accept,
        /// Fails after a delay, as an unreachable or erroring queue does.
        Fail {
            retryable: bool,
            after: Duration,
        },
        /// Answers nothing for this long (then accepts).
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
        async fn send(&self, message: &OutgoingMessage) -> Result<(), EdgeError> {
            self.attempts.lock().unwrap().push(message.clone());
            let answer = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Answer::Accept);
            match answer {
                Answer::Accept => {}
                Answer::Hang(delay) => tokio::time::sleep(delay).await,
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

    const BUDGET: Duration = Duration::from_millis(300);

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

    #[tokio::test(start_paused = true)]
    async fn a_retryable_failure_is_retried_once() {
        let queue = FakeQueue::answering(&[fail(true, 5)]);
        send_within_budget(&queue, &message(), BUDGET)
            .await
            .unwrap();
        assert_eq!(queue.attempts(), 2);
        assert_eq!(queue.accepted(), [message()]);
    }

    #[tokio::test(start_paused = true)]
    async fn only_one_retry() {
        let queue = FakeQueue::answering(&[fail(true, 5), fail(true, 5), Answer::Accept]);
        let err = send_within_budget(&queue, &message(), BUDGET)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "queue_unavailable");
        assert_eq!(queue.attempts(), 2);
        assert!(queue.accepted().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_not_retried() {
        let queue = FakeQueue::answering(&[fail(false, 5)]);
        let err = send_within_budget(&queue, &message(), BUDGET)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "queue_refused");
        assert_eq!(queue.attempts(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_queue_costs_the_budget_and_no_more() {
        let queue = FakeQueue::answering(&[Answer::Hang(Duration::from_secs(30))]);
        let started = tokio::time::Instant::now();
        let err = send_within_budget(&queue, &message(), BUDGET)
            .await
            .unwrap_err();
        assert_eq!(started.elapsed(), BUDGET);
        assert!(matches!(err, EdgeError::Timeout(b) if b == BUDGET));
        assert!(queue.accepted().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_retry_is_cut_by_the_budget_too() {
        let queue = FakeQueue::answering(&[fail(true, 250), Answer::Hang(Duration::from_secs(1))]);
        let started = tokio::time::Instant::now();
        let err = send_within_budget(&queue, &message(), BUDGET)
            .await
            .unwrap_err();
        assert_eq!(started.elapsed(), BUDGET);
        assert_eq!(err.reason(), "timeout");
        assert_eq!(queue.attempts(), 2);
    }
}
