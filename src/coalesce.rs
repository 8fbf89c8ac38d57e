//! Per-folder coalescing: many changes to one folder within the delay give one
//! report; a folder that never goes quiet is still reported every `max_delay`.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
struct Pending {
    first: Instant,
    last: Instant,
}

/// Collects changed keys and says when each is due.
#[derive(Debug)]
pub struct Coalescer<K> {
    delay: Duration,
    max_delay: Duration,
    pending: HashMap<K, Pending>,
}

impl<K: Hash + Eq + Clone> Coalescer<K> {
    /// `delay` is the quiet time a key needs before it is due; `max_delay`
    /// bounds how long a key that keeps changing can wait.
    pub fn new(delay: Duration, max_delay: Duration) -> Self {
        Coalescer {
            delay,
            max_delay: max_delay.max(delay),
            pending: HashMap::new(),
        }
    }

    /// The quiet time a key needs before it is due.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Records a change of `key` at `now`.
    pub fn touch(&mut self, key: K, now: Instant) {
        self.pending
            .entry(key)
            .and_modify(|pending| pending.last = now)
            .or_insert(Pending {
                first: now,
                last: now,
            });
    }

    /// Forgets everything waiting.
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Whether anything is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn due_at(&self, pending: &Pending) -> Instant {
        (pending.last + self.delay).min(pending.first + self.max_delay)
    }

    /// When the next key becomes due, if any is waiting.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|pending| self.due_at(pending)).min()
    }

    /// Removes and returns the keys due at `now`, oldest change first.
    pub fn take_due(&mut self, now: Instant) -> Vec<K> {
        let mut due: Vec<(Instant, K)> = self
            .pending
            .iter()
            .filter(|(_, pending)| self.due_at(pending) <= now)
            .map(|(key, pending)| (pending.first, key.clone()))
            .collect();
        due.sort_by_key(|(first, _)| *first);
        for (_, key) in &due {
            self.pending.remove(key);
        }
        due.into_iter().map(|(_, key)| key).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn changes_within_the_delay_give_one_report() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(100 * MS, 1000 * MS);
        for step in 0..10 {
            coalescer.touch("a", start + step * 10 * MS);
        }
        assert!(coalescer.take_due(start + 150 * MS).is_empty());
        assert_eq!(coalescer.next_due(), Some(start + 190 * MS));
        assert_eq!(coalescer.take_due(start + 190 * MS), vec!["a"]);
        assert!(coalescer.is_empty());
    }

    #[test]
    fn a_folder_that_never_goes_quiet_is_reported_at_max_delay() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(100 * MS, 300 * MS);
        let mut reports = 0;
        for step in 0..100 {
            let now = start + step * 50 * MS;
            coalescer.touch("busy", now);
            reports += coalescer.take_due(now).len();
        }
        // 5 s of changes every 50 ms: a report every 300–350 ms, not none.
        assert!((14..=17).contains(&reports), "{reports} reports");
    }

    #[test]
    fn zero_delay_is_due_at_once_and_keeps_order() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(Duration::ZERO, Duration::ZERO);
        coalescer.touch("b", start);
        coalescer.touch("a", start + MS);
        coalescer.touch("b", start + 2 * MS);
        assert_eq!(coalescer.take_due(start + 2 * MS), vec!["b", "a"]);
    }
}
