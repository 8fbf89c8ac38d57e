//! How long to wait before connecting again: doubling from 1 s up to 5
//! minutes, each wait spread by ±25% so that many clients dropped at once
//! do not come back at once; from 1 s again only after a session that
//! stayed up a while (a server that drops every session right after it is
//! ready must not get a login a second: each may be a password prompt, and
//! providers lock accounts for less).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

pub const FIRST: Duration = Duration::from_secs(1);
pub const LAST: Duration = Duration::from_secs(300);
/// How long a session must stay up for the waits to start from [`FIRST`] again.
pub const STABLE: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    /// When the last session became ready, if it did.
    up_since: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: FIRST,
            up_since: None,
        }
    }
}

/// A number in [0, 1), different each call.
pub fn jitter() -> f64 {
    let bits = RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

impl Backoff {
    /// The next wait after a session ended at `now`, for a `jitter` in [0, 1).
    pub fn next(&mut self, jitter: f64, now: Instant) -> Duration {
        if self
            .up_since
            .take()
            .is_some_and(|up| now.saturating_duration_since(up) >= STABLE)
        {
            self.next = FIRST;
        }
        let base = self.next;
        self.next = (self.next * 2).min(LAST);
        base.mul_f64(0.75 + jitter.clamp(0.0, 1.0) * 0.5)
    }

    /// A session is ready at `now`: if it stays up [`STABLE`], the next
    /// wait starts from 1 s again.
    pub fn up(&mut self, now: Instant) {
        self.up_since = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_five_minutes_spread_by_a_quarter() {
        let start = Instant::now();
        let mut backoff = Backoff::default();
        // (jitter, expected wait in ms)
        let steps = [
            (0.5, 1_000),
            (0.5, 2_000),
            (0.0, 3_000),
            (0.999_999, 9_999),
            (0.5, 16_000),
            (0.5, 32_000),
            (0.5, 64_000),
            (0.5, 128_000),
            (0.5, 256_000),
            (0.5, 300_000),
            (0.0, 225_000),
        ];
        for (jitter, expected) in steps {
            assert_eq!(backoff.next(jitter, start).as_millis(), expected);
        }
        // A session up for a minute: from 1 s again.
        backoff.up(start);
        assert_eq!(backoff.next(0.5, start + STABLE), FIRST);
    }

    #[test]
    fn a_session_dropped_soon_after_it_was_ready_keeps_the_waits_growing() {
        let start = Instant::now();
        let mut backoff = Backoff::default();
        // (seconds up before the drop, expected wait in s); jitter 0.5 = no spread
        let steps = [(1, 1), (1, 2), (59, 4), (60, 1), (0, 2), (600, 1)];
        let mut now = start;
        for (up, expected) in steps {
            backoff.up(now);
            now += Duration::from_secs(up);
            assert_eq!(backoff.next(0.5, now).as_secs(), expected, "up {up} s");
        }
    }

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let values: Vec<f64> = (0..100).map(|_| jitter()).collect();
        assert!(values.iter().all(|value| (0.0..1.0).contains(value)));
        assert!(values.windows(2).any(|pair| pair[0] != pair[1]));
    }
}
