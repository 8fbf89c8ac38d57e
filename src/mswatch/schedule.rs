//! When mailboxes are synced, by mswatch's rules, with the clock passed in:
//! a change waits `base_delay`, and a mailbox is synced again no sooner
//! than its `inter_delay` after its last attempt; a failed attempt is
//! tried again after a delay that doubles (from `inter_delay`, at least
//! 1 s) up to `max_delay`; everything is synced at start, after a watcher
//! came back, after the clock jumped, and every `poll_period`. One sync
//! runs at a time, with every mailbox that is due, or due within
//! [`Timing::gather`] (changes reported together are synced together,
//! though their reports reach the schedule a moment apart).
//!
//! One sync per change: reports of a mailbox that a sync covers, made
//! while it runs or within its store's settle time after it ended, are
//! held. After a successful sync each held report is asked of
//! `explained` (did the sync's own writes cause it?); only one that is
//! not queues the mailbox again. Nothing loops: a sync that finds nothing
//! to do writes nothing, so it gives no report to ask about.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// Why a mailbox (or everything) waits for a sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// A store reported a change (the store's index).
    Changed(usize),
    /// mailsync run started.
    Start,
    /// A watcher (the store's index) was started again.
    WatcherBack(usize),
    /// `poll_period` passed.
    Poll,
    /// The clock jumped or the machine resumed.
    ClockJumped,
    /// The last attempt failed (how many in a row).
    Retry(u32),
    /// A change reported during a sync of it that the sync does not explain.
    Unexplained(usize),
}

/// What a sync covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    All,
    Mailboxes(Vec<Vec<u8>>),
}

impl Target {
    fn covers(&self, mailbox: &[u8]) -> bool {
        match self {
            Target::All => true,
            Target::Mailboxes(list) => list.iter().any(|name| name == mailbox),
        }
    }
}

/// The settings that time syncs.
#[derive(Clone, Debug)]
pub struct Timing {
    pub base_delay: Duration,
    pub inter_delay: Duration,
    pub inter_delays: HashMap<Vec<u8>, Duration>,
    pub max_delay: Duration,
    pub poll_period: Option<Duration>,
    pub ignore: HashSet<Vec<u8>>,
    /// Per store: how long after a sync its reports may still be the
    /// sync's own (its coalescing delay, the server's notify delay).
    pub settle: [Duration; 2],
}

impl Timing {
    fn inter_delay_of(&self, mailbox: &[u8]) -> Duration {
        self.inter_delays
            .get(mailbox)
            .copied()
            .unwrap_or(self.inter_delay)
    }

    /// How much sooner than due a mailbox may join a sync that starts:
    /// a quarter of `base_delay`, at most 50 ms.
    pub fn gather(&self) -> Duration {
        (self.base_delay / 4).min(Duration::from_millis(50))
    }

    /// The wait after the `failures`-th failure in a row.
    fn retry_delay(&self, inter_delay: Duration, failures: u32) -> Duration {
        let first = inter_delay.max(Duration::from_secs(1));
        let doubled = first.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        doubled.min(self.max_delay.max(first))
    }
}

#[derive(Clone, Debug)]
struct Waiting {
    since: Instant,
    due: Instant,
    why: Why,
}

/// A sync that ran or runs, and the reports of what it covers meanwhile.
#[derive(Debug)]
struct Batch {
    target: Target,
    ended: Option<Instant>,
    /// (store, mailbox) reports held, each once.
    held: Vec<(usize, Vec<u8>)>,
}

/// Whether a sync explains store `usize`'s report of a mailbox; if not,
/// what changed.
pub type Explain<'a> = dyn FnMut(usize, &[u8]) -> Result<(), String> + 'a;

/// What a finished sync's held reports came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// (store, mailbox) reports the sync explained: dropped.
    pub dropped: Vec<(usize, Vec<u8>)>,
    /// Mailboxes queued again, not explained: the store whose report
    /// was not, and why.
    pub queued: Vec<(Vec<u8>, usize, String)>,
}

pub struct Schedule {
    timing: Timing,
    waiting: BTreeMap<Vec<u8>, Waiting>,
    all: Option<Waiting>,
    last_attempt: HashMap<Vec<u8>, Instant>,
    /// When everything was last synced or tried.
    all_attempt: Option<Instant>,
    failures: HashMap<Vec<u8>, u32>,
    all_failures: u32,
    running: Option<Batch>,
    settling: Vec<Batch>,
    next_poll: Option<Instant>,
}

impl Schedule {
    /// A schedule with everything to be synced once (at `now`).
    pub fn new(timing: Timing, now: Instant) -> Schedule {
        let next_poll = timing.poll_period.map(|period| now + period);
        Schedule {
            timing,
            waiting: BTreeMap::new(),
            all: None,
            last_attempt: HashMap::new(),
            all_attempt: None,
            failures: HashMap::new(),
            all_failures: 0,
            running: None,
            settling: Vec::new(),
            next_poll,
        }
    }

    /// Store `store` reports that `mailbox` changed.
    pub fn change(&mut self, now: Instant, store: usize, mailbox: &[u8]) {
        if self.timing.ignore.contains(mailbox) {
            return;
        }
        let holder = self
            .running
            .iter_mut()
            .chain(self.settling.iter_mut())
            .find(|batch| batch.target.covers(mailbox));
        if let Some(batch) = holder {
            let report = (store, mailbox.to_vec());
            if !batch.held.contains(&report) {
                batch.held.push(report);
            }
            return;
        }
        self.queue(now, mailbox, Why::Changed(store));
    }

    fn queue(&mut self, now: Instant, mailbox: &[u8], why: Why) {
        let since = self.waiting.get(mailbox).map_or(now, |waiting| waiting.since);
        let mut due = since + self.timing.base_delay;
        if let Some(last) = self.last_attempt.get(mailbox).max(self.all_attempt.as_ref()) {
            due = due.max(*last + self.timing.inter_delay_of(mailbox));
        }
        let entry = self.waiting.entry(mailbox.to_vec()).or_insert(Waiting {
            since,
            due,
            why: why.clone(),
        });
        entry.due = entry.due.min(due);
    }

    /// Everything is to be synced now.
    pub fn sync_all(&mut self, now: Instant, why: Why) {
        if self.all.is_none() {
            self.all = Some(Waiting {
                since: now,
                due: now,
                why,
            });
        }
    }

    /// When something is next to happen (a sync due, a poll, a settle
    /// time ending); None: only a report or a sync's end can start anything.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let settles = self
            .settling
            .iter()
            .filter_map(|batch| batch.ended)
            .map(|ended| ended + self.settle_time());
        let syncs = if self.running.is_some() {
            None
        } else {
            self.all
                .iter()
                .chain(self.waiting.values())
                .map(|waiting| waiting.due)
                .min()
        };
        settles.chain(syncs).chain(self.next_poll).min()
    }

    fn settle_time(&self) -> Duration {
        self.timing.settle[0].max(self.timing.settle[1])
    }

    /// Whether no sync runs, settles or waits (a poll aside).
    pub fn is_quiet(&self) -> bool {
        self.running.is_none() && self.settling.is_empty() && self.all.is_none() && self.waiting.is_empty()
    }

    /// Starts what is due at `now`, if no sync runs: what to sync.
    pub fn start(&mut self, now: Instant) -> Option<Target> {
        if let Some(poll) = self.next_poll.filter(|poll| *poll <= now) {
            self.sync_all(now, Why::Poll);
            let period = self.timing.poll_period.unwrap_or(Duration::MAX);
            self.next_poll = Some(poll.max(now) + period);
        }
        if self.running.is_some() {
            return None;
        }
        let target = if self.all.as_ref().is_some_and(|all| all.due <= now) {
            self.all = None;
            self.waiting.clear();
            Target::All
        } else {
            let soon = now + self.timing.gather();
            if !self.waiting.values().any(|waiting| waiting.due <= now) {
                return None;
            }
            let mut due: Vec<(Instant, Vec<u8>)> = self
                .waiting
                .iter()
                .filter(|(_, waiting)| waiting.due <= soon)
                .map(|(name, waiting)| (waiting.since, name.clone()))
                .collect();
            if due.is_empty() {
                return None;
            }
            due.sort();
            for (_, name) in &due {
                self.waiting.remove(name);
            }
            Target::Mailboxes(due.into_iter().map(|(_, name)| name).collect())
        };
        self.running = Some(Batch {
            target: target.clone(),
            ended: None,
            held: Vec::new(),
        });
        Some(target)
    }

    /// The mailboxes reported while the running sync runs.
    pub fn held(&self) -> Vec<Vec<u8>> {
        self.running
            .iter()
            .flat_map(|batch| batch.held.iter().map(|(_, name)| name.clone()))
            .collect()
    }

    /// The running sync ended at `now`. A failure queues what it covered
    /// (and what was reported meanwhile) for a retry after the back-off.
    pub fn ended(&mut self, now: Instant, success: bool) {
        let Some(mut batch) = self.running.take() else {
            return;
        };
        batch.ended = Some(now);
        let names: Vec<Vec<u8>> = match &batch.target {
            Target::All => Vec::new(),
            Target::Mailboxes(list) => list.clone(),
        };
        if success {
            if batch.target == Target::All {
                self.all_failures = 0;
                self.failures.clear();
                self.last_attempt.clear();
                self.all_attempt = Some(now);
            }
            for name in &names {
                self.failures.remove(name);
                self.last_attempt.insert(name.clone(), now);
            }
            self.settling.push(batch);
            return;
        }
        match &batch.target {
            Target::All => {
                self.all_failures += 1;
                self.all_attempt = Some(now);
                let due = now
                    + self
                        .timing
                        .retry_delay(self.timing.inter_delay, self.all_failures);
                self.all = Some(Waiting {
                    since: now,
                    due,
                    why: Why::Retry(self.all_failures),
                });
            }
            Target::Mailboxes(_) => {
                for name in names {
                    let failures = self.failures.entry(name.clone()).or_insert(0);
                    *failures += 1;
                    let failures = *failures;
                    self.last_attempt.insert(name.clone(), now);
                    let due = now
                        + self
                            .timing
                            .retry_delay(self.timing.inter_delay_of(&name), failures);
                    self.waiting.insert(
                        name,
                        Waiting {
                            since: now,
                            due,
                            why: Why::Retry(failures),
                        },
                    );
                }
            }
        }
        for (store, name) in batch.held {
            if !self.waiting.contains_key(&name) && self.all.is_none() {
                self.queue(now, &name, Why::Changed(store));
            }
        }
    }

    /// Settles the syncs whose settle time is over at `now`: each held
    /// report is asked of `explained(store, mailbox)`, which says what
    /// changed when the sync does not explain it.
    pub fn settle(&mut self, now: Instant, explained: &mut Explain) -> Settled {
        let settle = self.settle_time();
        let (over, still): (Vec<Batch>, Vec<Batch>) = std::mem::take(&mut self.settling)
            .into_iter()
            .partition(|batch| batch.ended.is_some_and(|ended| ended + settle <= now));
        self.settling = still;
        let mut settled = Settled::default();
        for batch in over {
            for (store, name) in batch.held {
                match explained(store, &name) {
                    Ok(()) => settled.dropped.push((store, name)),
                    Err(_) if settled.queued.iter().any(|(queued, _, _)| *queued == name) => {}
                    Err(what) => {
                        self.queue(now, &name, Why::Unexplained(store));
                        settled.queued.push((name, store, what));
                    }
                }
            }
        }
        settled
    }

    /// What waits, and why, for SIGUSR1: one line each, with the stores
    /// named by `store_name`.
    pub fn waiting(&self, now: Instant, store_name: &dyn Fn(usize) -> String) -> Vec<String> {
        let describe = |name: &[u8], waiting: &Waiting| {
            let why = match &waiting.why {
                Why::Changed(store) => format!("changed in {}", store_name(*store)),
                Why::Start => "start".into(),
                Why::WatcherBack(store) => format!("the watcher of {} started again", store_name(*store)),
                Why::Poll => "poll_period".into(),
                Why::ClockJumped => "the clock jumped".into(),
                Why::Retry(failures) => format!("{failures} failed attempts"),
                Why::Unexplained(store) => format!("changed in {} during its sync", store_name(*store)),
            };
            format!(
                "{}: {why} {:.1} s ago, due in {:.1} s",
                String::from_utf8_lossy(name),
                now.saturating_duration_since(waiting.since).as_secs_f64(),
                waiting.due.saturating_duration_since(now).as_secs_f64()
            )
        };
        let mut lines: Vec<String> = self
            .all
            .iter()
            .map(|all| describe(b"(everything)", all))
            .collect();
        lines.extend(self.waiting.iter().map(|(name, waiting)| describe(name, waiting)));
        if let Some(batch) = &self.running {
            let what = match &batch.target {
                Target::All => "everything".to_string(),
                Target::Mailboxes(list) => list
                    .iter()
                    .map(|name| String::from_utf8_lossy(name).into_owned())
                    .collect::<Vec<_>>()
                    .join(" "),
            };
            lines.push(format!("syncing now: {what}"));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of a case, at a time in milliseconds from the start.
    enum Step {
        /// (ms, store, mailbox)
        Change(u64, usize, &'static str),
        /// What starts at ms: nothing, everything, or these mailboxes.
        Start(u64, Option<&'static [&'static str]>),
        StartAll(u64),
        /// Everything is asked for at ms.
        SyncAll(u64),
        /// The running sync ends at ms, with success or not.
        End(u64, bool),
        /// Settled at ms with these (store, mailbox) reports explained:
        /// the mailboxes queued again.
        Settle(u64, &'static [(usize, &'static str)], &'static [&'static str]),
        /// The next wake-up, in ms.
        Wake(Option<u64>),
    }
    use Step::*;

    fn timing(base: u64, inter: u64, max: u64, poll: Option<u64>) -> Timing {
        Timing {
            base_delay: Duration::from_millis(base),
            inter_delay: Duration::from_millis(inter),
            inter_delays: HashMap::from([(b"slow".to_vec(), Duration::from_secs(30))]),
            max_delay: Duration::from_millis(max),
            poll_period: poll.map(Duration::from_millis),
            ignore: HashSet::from([b"Trash".to_vec()]),
            settle: [Duration::from_millis(100), Duration::from_millis(500)],
        }
    }

    fn run(name: &str, timing: Timing, steps: &[Step]) {
        let zero = Instant::now();
        let at = |ms: u64| zero + Duration::from_millis(ms);
        let mut schedule = Schedule::new(timing, zero);
        for (index, step) in steps.iter().enumerate() {
            let context = format!("{name}, step {index}");
            match step {
                Change(ms, store, mailbox) => schedule.change(at(*ms), *store, mailbox.as_bytes()),
                Start(ms, expected) => {
                    let got = schedule.start(at(*ms));
                    let expected = expected.map(|list| {
                        Target::Mailboxes(list.iter().map(|name| name.as_bytes().to_vec()).collect())
                    });
                    assert_eq!(got, expected, "{context}");
                }
                StartAll(ms) => assert_eq!(schedule.start(at(*ms)), Some(Target::All), "{context}"),
                SyncAll(ms) => schedule.sync_all(at(*ms), Why::Start),
                End(ms, success) => schedule.ended(at(*ms), *success),
                Settle(ms, explained, queued) => {
                    let settled = schedule.settle(at(*ms), &mut |store, mailbox| match explained
                        .iter()
                        .any(|(s, m)| *s == store && m.as_bytes() == mailbox)
                    {
                        true => Ok(()),
                        false => Err("changed".into()),
                    });
                    let queued: Vec<Vec<u8>> = queued.iter().map(|name| name.as_bytes().to_vec()).collect();
                    let got: Vec<Vec<u8>> = settled.queued.into_iter().map(|(name, _, _)| name).collect();
                    assert_eq!(got, queued, "{context}");
                }
                Wake(expected) => {
                    let got = schedule
                        .next_wakeup()
                        .map(|when| when.duration_since(zero).as_millis() as u64);
                    assert_eq!(got, *expected, "{context}");
                }
            }
        }
    }

    #[test]
    fn changes_reported_a_moment_apart_are_synced_together() {
        // base_delay 40 ms: a mailbox due within 10 ms joins the sync.
        run(
            "gathering",
            timing(40, 0, 600_000, None),
            &[
                Change(0, 0, "a"),
                Change(3, 1, "b"),
                Change(20, 0, "c"),
                Wake(Some(40)),
                Start(39, None),
                Start(40, Some(&["a", "b"])),
                End(45, true),
                Start(60, Some(&["c"])),
            ],
        );
    }

    #[test]
    fn changes_wait_base_delay_and_due_mailboxes_go_together() {
        run(
            "batching",
            timing(1000, 0, 600_000, None),
            &[
                Change(0, 0, "a"),
                Change(300, 1, "b"),
                Change(900, 0, "c"),
                Wake(Some(1000)),
                Start(999, None),
                Start(1000, Some(&["a"])),
                Wake(None),
                Change(1050, 0, "d"),
                Start(1400, None), // one sync at a time
                End(1500, true),
                Start(1500, Some(&["b"])),
                End(1600, true),
                Wake(Some(1900)),
                Start(1900, Some(&["c"])),
                End(1950, true),
                Start(2050, Some(&["d"])),
            ],
        );
    }

    #[test]
    fn inter_delay_spaces_syncs_of_one_mailbox() {
        run(
            "inter_delay",
            timing(0, 5000, 600_000, None),
            &[
                Change(0, 0, "a"),
                Start(0, Some(&["a"])),
                End(100, true),
                Settle(600, &[], &[]),
                Change(200, 0, "a"),
                Wake(Some(5100)),
                Change(300, 0, "slow"),
                Start(300, Some(&["slow"])),
                End(400, true),
                Settle(900, &[], &[]),
                Change(1000, 0, "slow"),
                Start(5100, Some(&["a"])),
                End(5200, true),
                Wake(Some(5700)),
                Settle(5700, &[], &[]),
                Wake(Some(30_400)),
            ],
        );
    }

    #[test]
    fn failures_back_off_doubling_up_to_max_delay() {
        run(
            "back-off",
            timing(0, 2000, 10_000, None),
            &[
                Change(0, 0, "a"),
                Start(0, Some(&["a"])),
                End(0, false),
                Wake(Some(2000)),
                Start(2000, Some(&["a"])),
                End(2000, false),
                Wake(Some(6000)),
                Start(6000, Some(&["a"])),
                End(6000, false),
                Wake(Some(14_000)),
                Start(14_000, Some(&["a"])),
                End(14_000, false),
                Wake(Some(24_000)), // capped at max_delay
                Start(24_000, Some(&["a"])),
                End(24_000, true),
                Settle(24_500, &[], &[]),
                Change(30_000, 0, "a"),
                Wake(Some(30_000)), // inter_delay since the last attempt has passed
            ],
        );
        // inter_delay 0: the retries still wait, from 1 s.
        run(
            "back-off from 0",
            timing(0, 0, 3000, None),
            &[
                SyncAll(0),
                StartAll(0),
                End(0, false),
                Wake(Some(1000)),
                StartAll(1000),
                End(1000, false),
                Wake(Some(3000)),
                StartAll(3000),
                End(3000, false),
                Wake(Some(6000)),
            ],
        );
    }

    #[test]
    fn a_syncs_own_writes_do_not_queue_it_again_but_other_changes_do() {
        run(
            "one sync per change",
            timing(0, 0, 600_000, None),
            &[
                Change(0, 1, "INBOX"),
                Start(0, Some(&["INBOX"])),
                // The sync writes into the local store (0) and the server (1).
                Change(50, 0, "INBOX"),
                Change(60, 1, "INBOX"),
                Change(70, 0, "other"), // not covered: queued as usual
                End(100, true),
                Start(100, Some(&["other"])),
                Change(150, 0, "INBOX"), // within the settle time: held
                End(200, true),
                Wake(Some(600)),
                Settle(599, &[], &[]),
                Settle(600, &[(0, "INBOX")], &["INBOX"]), // the server's report is not explained
                Start(600, Some(&["INBOX"])),
                Change(650, 1, "INBOX"),
                End(700, true),
                // The second sync's own report is explained like any.
                Settle(1200, &[(1, "INBOX")], &[]),
                Wake(None),
                Change(1300, 1, "INBOX"),
                Start(1300, Some(&["INBOX"])),
            ],
        );
    }

    #[test]
    fn a_failed_sync_keeps_what_came_meanwhile() {
        run(
            "failure",
            timing(0, 0, 600_000, None),
            &[
                Change(0, 1, "a"),
                Start(0, Some(&["a"])),
                Change(10, 0, "a"),
                End(20, false),
                Wake(Some(1020)),
                Settle(5000, &[], &[]),
                Start(1020, Some(&["a"])),
            ],
        );
    }

    #[test]
    fn everything_at_start_on_polls_and_ignored_mailboxes_only_then() {
        run(
            "all",
            timing(0, 0, 600_000, Some(10_000)),
            &[
                Change(0, 0, "Trash"),
                Wake(Some(10_000)),
                Start(0, None),
                Change(1, 0, "a"),
                Change(2, 0, "b"),
                StartAll(10_000),
                Change(10_050, 0, "a"),
                End(10_100, true),
                Settle(10_600, &[(0, "a")], &[]),
                Wake(Some(20_000)),
                StartAll(20_000),
            ],
        );
    }
}
