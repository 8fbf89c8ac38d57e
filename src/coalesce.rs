//! Per-folder coalescing: many changes to one folder within the delay give one
//! report; a folder that never goes quiet is still reported every `max_delay`.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
struct Pending {
    first: Instant,
    last: Instant,
}

/// A key in the queue of due times. Its time may be earlier than the
/// key's due time now (a change since put it later): it is put back then.
#[derive(Debug)]
struct Queued<K> {
    at: Instant,
    /// Breaks ties in the order the keys were queued.
    order: u64,
    key: K,
}

impl<K> PartialEq for Queued<K> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl<K> Eq for Queued<K> {}

impl<K> PartialOrd for Queued<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Queued<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// Collects changed keys and says when each is due. A change, the next due
/// time and taking what is due cost O(log n) in the keys waiting, so a flood
/// of changes to many keys stays linear.
#[derive(Debug)]
pub struct Coalescer<K> {
    delay: Duration,
    max_delay: Duration,
    pending: HashMap<K, Pending>,
    /// Each waiting key once, by the due time it had when queued.
    queue: BinaryHeap<Reverse<Queued<K>>>,
    queued: u64,
}

impl<K: Hash + Eq + Clone> Coalescer<K> {
    /// `delay` is the quiet time a key needs before it is due; `max_delay`
    /// bounds how long a key that keeps changing can wait.
    /// A coalescer whose bound is `max_delay`, or ten windows when `None`.
    pub fn with_bound(delay: Duration, max_delay: Option<Duration>) -> Self {
        Coalescer::new(delay, max_delay.unwrap_or(delay * 10))
    }

    pub fn new(delay: Duration, max_delay: Duration) -> Self {
        Coalescer {
            delay,
            max_delay: max_delay.max(delay),
            pending: HashMap::new(),
            queue: BinaryHeap::new(),
            queued: 0,
        }
    }

    /// The quiet time a key needs before it is due.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Records a change of `key` at `now`.
    pub fn touch(&mut self, key: K, now: Instant) {
        match self.pending.get_mut(&key) {
            // Its due time can only move later: the queue finds out when it comes.
            Some(pending) => pending.last = now,
            None => {
                let pending = Pending {
                    first: now,
                    last: now,
                };
                self.push(self.due_at(&pending), key.clone());
                self.pending.insert(key, pending);
            }
        }
    }

    fn push(&mut self, at: Instant, key: K) {
        self.queued += 1;
        self.queue.push(Reverse(Queued {
            at,
            order: self.queued,
            key,
        }));
    }

    /// Forgets everything waiting.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.queue.clear();
    }

    /// Whether anything is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn due_at(&self, pending: &Pending) -> Instant {
        (pending.last + self.delay).min(pending.first + self.max_delay)
    }

    /// When the next key may become due, if any is waiting: never later
    /// than it does (sooner when a change put it off; nothing is due then).
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(queued)| queued.at)
    }

    /// Removes and returns the keys due at `now`, oldest change first.
    pub fn take_due(&mut self, now: Instant) -> Vec<K> {
        let mut due: Vec<(Instant, K)> = Vec::new();
        while self.queue.peek().is_some_and(|Reverse(queued)| queued.at <= now) {
            let Some(Reverse(queued)) = self.queue.pop() else {
                break;
            };
            let Some(pending) = self.pending.get(&queued.key).copied() else {
                continue;
            };
            let at = self.due_at(&pending);
            if at <= now {
                self.pending.remove(&queued.key);
                due.push((pending.first, queued.key));
            } else {
                self.push(at, queued.key);
            }
        }
        due.sort_by_key(|(first, _)| *first);
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
    fn a_change_puts_off_a_key_already_queued_and_next_due_is_never_late() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(100 * MS, 1000 * MS);
        coalescer.touch("a", start);
        coalescer.touch("b", start + 50 * MS);
        coalescer.touch("a", start + 80 * MS);
        // a's first due time (100 ms) was put off to 180 ms: at 100 ms nothing is due.
        assert_eq!(coalescer.next_due(), Some(start + 100 * MS));
        assert!(coalescer.take_due(start + 100 * MS).is_empty());
        assert_eq!(coalescer.next_due(), Some(start + 150 * MS));
        assert_eq!(coalescer.take_due(start + 150 * MS), vec!["b"]);
        assert_eq!(coalescer.take_due(start + 180 * MS), vec!["a"]);
        assert!(coalescer.is_empty());
        assert_eq!(coalescer.next_due(), None);
    }

    #[test]
    fn a_flood_of_changes_to_many_keys_stays_linear() {
        // 200,000 keys, each changed 5 times: at O(n) per change this is
        // 10^11 steps; here it takes well under a second.
        let start = Instant::now();
        let mut coalescer = Coalescer::new(100 * MS, 1000 * MS);
        for round in 0..5u32 {
            for key in 0..200_000u32 {
                coalescer.touch(key, start + round * MS);
                let _ = coalescer.next_due();
            }
            assert!(coalescer.take_due(start + round * MS).is_empty());
        }
        let due = coalescer.take_due(start + 200 * MS);
        assert_eq!(due.len(), 200_000);
        assert!(coalescer.is_empty());
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
