//! Per-caller token bucket: `burst` tokens at most, refilled at `per_second`; each request takes
//! one. The arithmetic is here; the bucket lives in DynamoDB (`store::rate`), updated with a
//! condition on its previous state so that concurrent invocations cannot both spend one token.

use std::time::Duration;

use crate::config::RateLimit;

/// A bucket's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub tokens: f64,
    pub at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Allowed; the bucket after taking a token.
    Allow(Bucket),
    /// Refused until a token is back.
    Deny { retry_after: Duration },
}

/// Takes one token from `previous` (a full bucket when there is none) at `now_ms`.
pub fn take(previous: Option<Bucket>, now_ms: u64, limit: RateLimit) -> Decision {
    let (tokens, at_ms) = match previous {
        None => (limit.burst, now_ms),
        Some(bucket) => {
            // Invocations' clocks differ: one behind the bucket's refills nothing, and leaves the
            // bucket's time where it was, or the next invocation would refill the skew again.
            let elapsed_s = now_ms.saturating_sub(bucket.at_ms) as f64 / 1000.0;
            let tokens = (bucket.tokens + elapsed_s * limit.per_second).min(limit.burst);
            (tokens, now_ms.max(bucket.at_ms))
        }
    };
    if tokens >= 1.0 {
        Decision::Allow(Bucket {
            tokens: tokens - 1.0,
            at_ms,
        })
    } else {
        let wait_s = (1.0 - tokens) / limit.per_second;
        Decision::Deny {
            // Whole seconds, as Retry-After carries them; at least one.
            retry_after: Duration::from_secs((wait_s.ceil() as u64).max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        per_second: 2.0,
        burst: 3.0,
    };

    fn allowed(decision: Decision) -> Bucket {
        match decision {
            Decision::Allow(bucket) => bucket,
            Decision::Deny { retry_after } => panic!("denied for {retry_after:?}"),
        }
    }

    #[test]
    fn a_burst_then_a_refusal() {
        let mut bucket = None;
        for _ in 0..3 {
            bucket = Some(allowed(take(bucket, 1_000, LIMIT)));
        }
        assert_eq!(
            take(bucket, 1_000, LIMIT),
            Decision::Deny {
                retry_after: Duration::from_secs(1)
            }
        );
        // Half a second later one token is back (2 per second).
        let after = allowed(take(bucket, 1_500, LIMIT));
        assert!(after.tokens.abs() < 1e-9);
    }

    #[test]
    fn refills_stop_at_the_burst() {
        let empty = Bucket {
            tokens: 0.0,
            at_ms: 0,
        };
        let bucket = allowed(take(Some(empty), 3_600_000, LIMIT));
        assert_eq!(bucket.tokens, 2.0);
    }

    #[test]
    fn slow_refills_wait_longer_and_clocks_may_go_back() {
        let slow = RateLimit {
            per_second: 0.1,
            burst: 1.0,
        };
        let empty = Bucket {
            tokens: 0.0,
            at_ms: 10_000,
        };
        assert_eq!(
            take(Some(empty), 5_000, slow),
            Decision::Deny {
                retry_after: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn a_clock_behind_the_bucket_never_refills() {
        // The bucket was last written at 10 s by an invocation whose clock is right; others run
        // 5 s behind it.
        let mut bucket = Some(Bucket {
            tokens: 3.0,
            at_ms: 10_000,
        });
        for now_ms in [5_000, 4_000, 0] {
            let after = allowed(take(bucket, now_ms, LIMIT));
            assert_eq!(after.at_ms, 10_000, "the bucket's time never moves back");
            bucket = Some(after);
        }
        assert_eq!(
            take(bucket, 0, LIMIT),
            Decision::Deny {
                retry_after: Duration::from_secs(1)
            }
        );
        // Back on the right clock, 1 ms later: what 1 ms refills, not the 10 s of skew.
        assert!(matches!(take(bucket, 10_001, LIMIT), Decision::Deny { .. }));
        let later = allowed(take(bucket, 10_500, LIMIT));
        assert!(later.tokens.abs() < 1e-9, "{later:?}");
        // The far past and the far future neither panic nor overflow.
        assert!(matches!(take(bucket, u64::MAX, LIMIT), Decision::Allow(_)));
        assert!(matches!(
            take(
                Some(Bucket {
                    tokens: 0.0,
                    at_ms: u64::MAX
                }),
                0,
                LIMIT
            ),
            Decision::Deny { .. }
        ));
    }
}
