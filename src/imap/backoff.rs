//! How long to wait before connecting again: doubling from 1 s up to 5
//! minutes, each wait spread by ±25% so that many clients dropped at once
//! do not come back at once.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

pub const FIRST: Duration = Duration::from_secs(1);
pub const LAST: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST }
    }
}

/// A number in [0, 1), different each call.
pub fn jitter() -> f64 {
    let bits = RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

impl Backoff {
    /// The next wait, for a `jitter` in [0, 1).
    pub fn next(&mut self, jitter: f64) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(LAST);
        base.mul_f64(0.75 + jitter.clamp(0.0, 1.0) * 0.5)
    }

    /// After a connection that worked: start from 1 s again.
    pub fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_five_minutes_spread_by_a_quarter() {
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
            assert_eq!(backoff.next(jitter).as_millis(), expected);
        }
        backoff.reset();
        assert_eq!(backoff.next(0.5), FIRST);
    }

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let values: Vec<f64> = (0..100).map(|_| jitter()).collect();
        assert!(values.iter().all(|value| (0.0..1.0).contains(value)));
        assert!(values.windows(2).any(|pair| pair[0] != pair[1]));
    }
}
