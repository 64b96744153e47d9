//! Repeat suppression inside one sandbox: many viewers miss the same object at once, and one
//! backfill per key and window is enough. Memory is bounded by an LRU with a fixed capacity.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;

/// Keys remembered per sandbox. Each entry is a key of up to 1 KiB plus its bucket: a few MiB at
/// most, small beside the smallest Lambda@Edge memory size.
pub const CAPACITY: NonZeroUsize = match NonZeroUsize::new(4096) {
    Some(capacity) => capacity,
    None => unreachable!(),
};

#[derive(Debug)]
pub struct RepeatFilter {
    sent: LruCache<String, Instant>,
}

impl Default for RepeatFilter {
    fn default() -> Self {
        RepeatFilter::with_capacity(CAPACITY)
    }
}

impl RepeatFilter {
    pub fn with_capacity(capacity: NonZeroUsize) -> Self {
        RepeatFilter {
            sent: LruCache::new(capacity),
        }
    }

    /// Whether `key` was enqueued less than `window` before `now`.
    pub fn is_repeat(&mut self, key: &str, now: Instant, window: Duration) -> bool {
        match self.sent.get(key) {
            Some(sent) => now.saturating_duration_since(*sent) < window,
            None => false,
        }
    }

    /// Remembers that `key` was enqueued at `now`.
    pub fn record(&mut self, key: String, now: Instant) {
        self.sent.put(key, now);
    }

    /// Forgets `key` as recorded at `at`: its send failed, so the next miss sends it again. A
    /// later record of the key (a send after the window) stays.
    pub fn forget(&mut self, key: &str, at: Instant) {
        if self.sent.peek(key) == Some(&at) {
            self.sent.pop(key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.sent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    #[test]
    fn a_key_repeats_only_inside_its_window() {
        let mut filter = RepeatFilter::default();
        let start = Instant::now();
        assert!(!filter.is_repeat("b/a.jpg", start, WINDOW));
        filter.record("b/a.jpg".into(), start);
        assert!(filter.is_repeat("b/a.jpg", start + Duration::from_secs(59), WINDOW));
        assert!(!filter.is_repeat("b/a.jpg", start + WINDOW, WINDOW));
        assert!(!filter.is_repeat("b/other.jpg", start, WINDOW));
        // Only the record it made is forgotten by a failed send.
        let later = start + WINDOW;
        filter.record("b/a.jpg".into(), later);
        filter.forget("b/a.jpg", start);
        assert!(filter.is_repeat("b/a.jpg", later, WINDOW));
        filter.forget("b/a.jpg", later);
        assert!(!filter.is_repeat("b/a.jpg", later, WINDOW));
    }

    #[test]
    fn a_zero_window_suppresses_nothing() {
        let mut filter = RepeatFilter::default();
        let now = Instant::now();
        filter.record("b/a.jpg".into(), now);
        assert!(!filter.is_repeat("b/a.jpg", now, Duration::ZERO));
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_key_goes_first() {
        let mut filter = RepeatFilter::with_capacity(NonZeroUsize::new(3).unwrap());
        let now = Instant::now();
        for key in ["k1", "k2", "k3"] {
            filter.record(key.into(), now);
        }
        // Touching k1 makes k2 the least recently used.
        assert!(filter.is_repeat("k1", now, WINDOW));
        filter.record("k4".into(), now);
        assert_eq!(filter.len(), 3);
        assert!(!filter.is_repeat("k2", now, WINDOW));
        for key in ["k1", "k3", "k4"] {
            assert!(filter.is_repeat(key, now, WINDOW), "{key}");
        }
        for i in 0..10_000 {
            filter.record(format!("burst-{i}"), now);
        }
        assert_eq!(filter.len(), 3);
    }
}
