//! Exponential backoff with jitter, for retries inside an invocation and for the visibility
//! timeout of a message that failed (the retry across invocations).

use std::future::Future;
use std::time::Duration;

use crate::error::Failure;

/// SQS's upper bound on a message's visibility timeout.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

/// Exponential backoff: attempt `n` (from 0) may wait up to `base * 2^n`, never more than `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Backoff { base, cap }
    }

    /// The longest wait before attempt `attempt + 1`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// "Full jitter": uniform in `[0, ceiling]`, which spreads a crowd of retries best.
    pub fn full_jitter(&self, attempt: u32) -> Duration {
        random_between(Duration::ZERO, self.ceiling(attempt))
    }

    /// "Equal jitter": uniform in `[ceiling / 2, ceiling]`, for waits that must not be near zero.
    pub fn equal_jitter(&self, attempt: u32) -> Duration {
        random_between(self.equal_jitter_floor(attempt), self.ceiling(attempt))
    }

    /// The shortest wait equal jitter gives before attempt `attempt + 1`.
    pub fn equal_jitter_floor(&self, attempt: u32) -> Duration {
        self.ceiling(attempt) / 2
    }
}

fn random_between(low: Duration, high: Duration) -> Duration {
    if high <= low {
        return high;
    }
    let span = (high - low).as_micros().min(u128::from(u64::MAX)) as u64;
    low + Duration::from_micros(fastrand::u64(0..=span))
}

/// Runs `operation` until it succeeds, fails permanently, or `max_attempts` are used up, sleeping
/// with full jitter (or at least the failure's own `retry_after`) between attempts.
pub async fn retry<T, E, F, Fut>(
    backoff: Backoff,
    max_attempts: u32,
    mut operation: F,
) -> Result<T, E>
where
    E: Failure,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        match operation(attempt).await {
            Ok(value) => return Ok(value),
            Err(err) if err.is_retryable() && attempt + 1 < max_attempts => {
                let wait = backoff
                    .full_jitter(attempt)
                    .max(err.retry_after().unwrap_or_default());
                tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, error = %err, "retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// The shortest [`visibility_delay`] for a receive count (whatever the hint).
pub fn min_visibility_delay(backoff: &Backoff, receive_count: u32) -> Duration {
    backoff
        .equal_jitter_floor(receive_count.saturating_sub(1))
        .min(MAX_VISIBILITY)
}

/// The least time between a message's first delivery and its last one before the queue's redrive
/// (`max_receive_count`) sends it to the DLQ, if every delivery fails at once: the sum of the
/// shortest delays after receives 1 to `max_receive_count - 1`. An outage shorter than this
/// sends no message to the DLQ.
pub fn min_time_to_last_receive(backoff: &Backoff, max_receive_count: u32) -> Duration {
    (1..max_receive_count)
        .map(|receive| min_visibility_delay(backoff, receive))
        .sum()
}

/// How long a message that failed stays invisible before its next delivery, from SQS's
/// `ApproximateReceiveCount` (1 on the first delivery). Equal jitter, so that a retry is never
/// immediate; at least `retry_after`; at most SQS's 12 hours.
pub fn visibility_delay(
    backoff: &Backoff,
    receive_count: u32,
    retry_after: Option<Duration>,
) -> Duration {
    backoff
        .equal_jitter(receive_count.saturating_sub(1))
        .max(retry_after.unwrap_or_default())
        .min(MAX_VISIBILITY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Debug, thiserror::Error)]
    #[error("test failure (retryable: {0})")]
    struct TestFailure(bool);

    impl Failure for TestFailure {
        fn is_retryable(&self) -> bool {
            self.0
        }
        fn reason(&self) -> &'static str {
            "test"
        }
    }

    const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        assert_eq!(BACKOFF.ceiling(0), Duration::from_millis(100));
        assert_eq!(BACKOFF.ceiling(3), Duration::from_millis(800));
        assert_eq!(BACKOFF.ceiling(6), Duration::from_secs(5));
        assert_eq!(BACKOFF.ceiling(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn jitter_stays_in_its_range() {
        for attempt in 0..10 {
            for _ in 0..200 {
                let full = BACKOFF.full_jitter(attempt);
                assert!(full <= BACKOFF.ceiling(attempt));
                let equal = BACKOFF.equal_jitter(attempt);
                assert!(equal >= BACKOFF.ceiling(attempt) / 2 && equal <= BACKOFF.ceiling(attempt));
            }
        }
    }

    #[test]
    fn full_jitter_spreads() {
        let samples: Vec<_> = (0..200).map(|_| BACKOFF.full_jitter(4)).collect();
        let below_half = samples
            .iter()
            .filter(|d| **d < BACKOFF.ceiling(4) / 2)
            .count();
        assert!(
            (40..160).contains(&below_half),
            "{below_half} of 200 below half"
        );
    }

    #[test]
    fn visibility_grows_with_receive_count_and_honours_hints() {
        let backoff = Backoff::new(Duration::from_secs(10), Duration::from_secs(900));
        let first = visibility_delay(&backoff, 1, None);
        assert!(first >= Duration::from_secs(5) && first <= Duration::from_secs(10));
        let fourth = visibility_delay(&backoff, 4, None);
        assert!(fourth >= Duration::from_secs(40) && fourth <= Duration::from_secs(80));
        assert_eq!(
            visibility_delay(&backoff, 1, Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        assert_eq!(
            visibility_delay(&backoff, 1, Some(Duration::from_secs(86_400))),
            MAX_VISIBILITY
        );
        // A receive count of 0 (absent attribute) behaves as a first delivery.
        assert!(visibility_delay(&backoff, 0, None) <= Duration::from_secs(10));
    }

    #[test]
    fn the_time_to_the_last_receive_is_the_sum_of_the_shortest_delays() {
        let backoff = Backoff::new(Duration::from_secs(10), Duration::from_secs(60));
        for receive in 1..8 {
            let floor = min_visibility_delay(&backoff, receive);
            for _ in 0..50 {
                assert!(visibility_delay(&backoff, receive, None) >= floor);
            }
        }
        // 5 + 10 + 20 + 30 (the cap halved): receives 1 to 4, the fifth is the last.
        assert_eq!(
            min_time_to_last_receive(&backoff, 5),
            Duration::from_secs(65)
        );
        assert_eq!(min_time_to_last_receive(&backoff, 1), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_at_success() {
        let calls = Cell::new(0);
        let result = retry(BACKOFF, 5, |attempt| {
            calls.set(calls.get() + 1);
            async move {
                if attempt < 2 {
                    Err(TestFailure(true))
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2);
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_gives_up_after_max_attempts() {
        let calls = Cell::new(0);
        let result: Result<(), _> = retry(BACKOFF, 3, |_| {
            calls.set(calls.get() + 1);
            async { Err(TestFailure(true)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_does_not_repeat_permanent_failures() {
        let calls = Cell::new(0);
        let result: Result<(), _> = retry(BACKOFF, 5, |_| {
            calls.set(calls.get() + 1);
            async { Err(TestFailure(false)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.get(), 1);
    }
}
