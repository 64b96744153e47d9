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
    let tokens = match previous {
        None => limit.burst,
        Some(bucket) => {
            // A clock that went backwards refills nothing.
            let elapsed_s = now_ms.saturating_sub(bucket.at_ms) as f64 / 1000.0;
            (bucket.tokens + elapsed_s * limit.per_second).min(limit.burst)
        }
    };
    if tokens >= 1.0 {
        Decision::Allow(Bucket {
            tokens: tokens - 1.0,
            at_ms: now_ms,
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
}
