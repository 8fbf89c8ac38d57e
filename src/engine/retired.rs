//! Events of watches the engine removed, told from those of the watches
//! that replaced them.
//!
//! A folder removed and made again under the same name leaves events of its
//! old directories (their `DELETE_SELF`, the old folder's `DELETE` of its
//! `new/`) in the inotify instance of the folder's shard, while its parent's
//! `DELETE` and `CREATE` come through another. notify turns a descriptor into
//! a path when it reads the event, so events it read before it handled the
//! engine's removal of the old watch reach the engine with the path that,
//! by then, the new directory's watch has: taken at their word, they would
//! unwatch the new folder, whose mail would then go unreported.
//!
//! notify's thread reads and sends events and handles requests one after
//! another, so every event of a removed watch was sent before the removal
//! returned: it is among the events queued at that moment. An event that
//! says a directory went, received no later than that, is about the old one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub(super) struct Retired {
    /// Events received so far.
    received: u64,
    /// A directory unwatched lately, and the number of the last event that
    /// may still come from its old watch.
    last_stale: HashMap<PathBuf, u64>,
    /// The highest of those numbers: past it, nothing is stale.
    horizon: u64,
}

impl Retired {
    /// Counts one event taken from the channel.
    pub(super) fn receive(&mut self) {
        self.received += 1;
        if self.received > self.horizon && !self.last_stale.is_empty() {
            self.last_stale = HashMap::new();
        }
    }

    /// Records that `dir`'s watch was removed while `queued` events waited
    /// in the channel.
    pub(super) fn retire(&mut self, dir: PathBuf, queued: usize) {
        let last = self.received + queued as u64;
        self.horizon = self.horizon.max(last);
        self.last_stale.insert(dir, last);
    }

    /// Whether the event being handled may be from `dir`'s removed watch.
    pub(super) fn is_stale(&self, dir: &Path) -> bool {
        self.last_stale
            .get(dir)
            .is_some_and(|&last| self.received <= last)
    }

    /// Forgets every removed watch: their instances are closed and drained.
    pub(super) fn clear(&mut self) {
        self.last_stale = HashMap::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_until_the_events_queued_at_removal_are_handled() {
        let dir = Path::new("/m/.f/new");
        let mut retired = Retired::default();
        retired.receive();
        // Removed while two more events wait: the one handled now and the
        // next two may be the old watch's.
        retired.retire(dir.to_path_buf(), 2);
        assert!(retired.is_stale(dir));
        retired.receive();
        retired.receive();
        assert!(retired.is_stale(dir));
        retired.receive();
        assert!(!retired.is_stale(dir));
        assert!(retired.last_stale.is_empty());
        assert!(!retired.is_stale(Path::new("/m/.g/new")));
    }

    #[test]
    fn each_removal_opens_its_own_window() {
        let dir = Path::new("/m/.f");
        let mut retired = Retired::default();
        retired.retire(dir.to_path_buf(), 0);
        retired.receive();
        retired.retire(dir.to_path_buf(), 5);
        for _ in 0..5 {
            retired.receive();
        }
        assert!(retired.is_stale(dir));
        retired.receive();
        assert!(!retired.is_stale(dir));
    }
}
