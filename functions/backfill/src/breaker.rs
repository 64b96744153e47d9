//! A circuit breaker in front of the domestic origin: after a run of failures, records fail fast
//! (and come back later) instead of hammering an origin that is already down.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::BackfillError;

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::default()),
        }
    }

    /// Refuses while open, with the time left until it closes (so the record comes back then,
    /// not a whole cooldown later). Once the cooldown is over, requests go through again; the next
    /// failure opens it at once (the count is still at the threshold), the next success closes it.
    pub fn check(&self) -> Result<(), BackfillError> {
        let state = self.state.lock().expect("breaker lock");
        let now = Instant::now();
        match state.open_until {
            Some(until) if now < until => Err(BackfillError::CircuitOpen(until - now)),
            _ => Ok(()),
        }
    }

    pub fn record_success(&self) {
        let mut state = self.state.lock().expect("breaker lock");
        state.consecutive_failures = 0;
        state.open_until = None;
    }

    pub fn record_failure(&self) {
        let mut state = self.state.lock().expect("breaker lock");
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if state.consecutive_failures >= self.threshold {
            if state.open_until.is_none_or(|until| Instant::now() >= until) {
                tracing::warn!(
                    failures = state.consecutive_failures,
                    cooldown_s = self.cooldown.as_secs(),
                    "origin circuit breaker opened"
                );
            }
            state.open_until = Some(Instant::now() + self.cooldown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_and_recovers() {
        let breaker = Breaker::new(3, Duration::from_secs(30));
        breaker.record_failure();
        breaker.record_failure();
        assert!(breaker.check().is_ok());
        breaker.record_failure();
        let err = breaker.check().unwrap_err();
        assert_eq!(
            shared::Failure::retry_after(&err),
            Some(Duration::from_secs(30))
        );
        tokio::time::advance(Duration::from_secs(12)).await;
        let err = breaker.check().unwrap_err();
        assert_eq!(
            shared::Failure::retry_after(&err),
            Some(Duration::from_secs(18)),
            "the time left, not the whole cooldown"
        );
        tokio::time::advance(Duration::from_secs(19)).await;
        assert!(breaker.check().is_ok(), "half-open after the cooldown");
        breaker.record_failure();
        assert!(breaker.check().is_err(), "one more failure reopens it");
        tokio::time::advance(Duration::from_secs(31)).await;
        breaker.record_success();
        breaker.record_failure();
        assert!(breaker.check().is_ok(), "a success resets the count");
    }
}
