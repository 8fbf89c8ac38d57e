//! What the engine counts, shared with the faces that show it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters shared with the engine thread.
#[derive(Debug, Default)]
pub struct Stats {
    pub(super) folders: AtomicU64,
    pub(super) watches: AtomicU64,
    pub(super) unwatched: AtomicU64,
    pub(super) events_seen: AtomicU64,
    pub(super) events_ignored: AtomicU64,
    pub(super) reports: AtomicU64,
    pub(super) root_missing: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub folders: u64,
    pub watches: u64,
    /// Directories left unwatched by the kernel's watch limit.
    pub unwatched: u64,
    pub events_seen: u64,
    pub events_ignored: u64,
    pub reports: u64,
    /// The root is gone (removed or moved away) and is waited for.
    pub root_missing: bool,
    pub last_error: Option<String>,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            folders: self.folders.load(Ordering::Relaxed),
            watches: self.watches.load(Ordering::Relaxed),
            unwatched: self.unwatched.load(Ordering::Relaxed),
            events_seen: self.events_seen.load(Ordering::Relaxed),
            events_ignored: self.events_ignored.load(Ordering::Relaxed),
            reports: self.reports.load(Ordering::Relaxed),
            root_missing: self.root_missing.load(Ordering::Relaxed),
            last_error: self.last_error.lock().map(|error| error.clone()).unwrap_or(None),
        }
    }

    pub(super) fn set_error(&self, message: &str) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(message.to_string());
        }
    }
}
