//! notify's watchers: [`SHARDS`] inotify instances sharing the watches.
//!
//! Each `watch` call is a round trip to the watcher's own thread; with one
//! instance the two threads take turns and 30,000 watches take 1.7 s on two
//! cores, with four adding in parallel 0.35 s. A folder's directories always
//! go to the same instance, because the kernel gives the two halves of a
//! rename (`new/` to `cur/`) the same cookie only within one instance: split
//! across two, a mail reader's rename would look like mail arriving.
//!
//! The watches ask the kernel only for what can mean mail or a change of
//! the tree ([`EVENTS`]): creations, deletions and renames. notify 8
//! subscribed every watch to opens, reads, writes and attribute changes as
//! well, so every file Gnus, Dovecot or a backup read under a watched folder
//! woke the engine, and the engine's own listing of a directory (an open)
//! could overflow the kernel's queue during the rescan that followed an
//! overflow. notify 9 (a release candidate, 9.0.0-rc.7, pinned) takes the
//! mask; it also keeps a descriptor that two paths share until both are
//! unwatched.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;

use crossbeam_channel::{unbounded, Receiver};
use notify::{Config, EventKindMask, INotifyWatcher, RecursiveMode, Watcher};

/// How many inotify instances one watched store uses.
pub const SHARDS: usize = 4;

/// The events asked of the kernel: creations and moves in, deletions and
/// moves out, and a watched directory's own move (its deletion always comes).
pub const EVENTS: EventKindMask = EventKindMask::CREATE
    .union(EventKindMask::REMOVE)
    .union(EventKindMask::MODIFY_NAME);

pub type FsEvent = notify::Result<notify::Event>;

/// How a watch request ended.
#[derive(Debug)]
pub enum Added {
    Yes,
    /// The kernel's watch limit (`fs.inotify.max_user_watches`) is reached.
    Limit,
    /// The directory went away before it could be watched.
    Vanished,
    /// Anything else, such as a directory the user may not read.
    Failed(String),
}

/// The watchers of one store and the channel their events arrive on.
pub struct Shards {
    watchers: Vec<INotifyWatcher>,
    events: Receiver<FsEvent>,
}

/// Why the watchers could not be made.
#[derive(Debug)]
pub struct InstanceError(pub io::Error);

impl Shards {
    pub fn new() -> Result<Shards, InstanceError> {
        let (sender, events) = unbounded();
        let mut watchers = Vec::with_capacity(SHARDS);
        for _ in 0..SHARDS {
            let to_engine = sender.clone();
            let watcher = INotifyWatcher::new(
                move |event| {
                    let _ = to_engine.send(event);
                },
                Config::default().with_event_kinds(EVENTS),
            );
            match watcher {
                Ok(watcher) => watchers.push(watcher),
                Err(err) => {
                    let err = match err.kind {
                        notify::ErrorKind::Io(err) => err,
                        other => io::Error::other(format!("{other:?}")),
                    };
                    drop(watchers);
                    drop(sender);
                    while events.recv().is_ok() {}
                    return Err(InstanceError(err));
                }
            }
        }
        Ok(Shards { watchers, events })
    }

    pub fn events(&self) -> &Receiver<FsEvent> {
        &self.events
    }

    /// Which watcher holds the directories of the folder whose directory is
    /// `folder_dir`.
    pub fn shard_of(folder_dir: &Path) -> usize {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        folder_dir.hash(&mut hasher);
        (hasher.finish() % SHARDS as u64) as usize
    }

    /// Watches `dir` on watcher `shard`.
    pub fn watch(&mut self, shard: usize, dir: &Path) -> Added {
        watch_one(&mut self.watchers[shard], dir)
    }

    /// Removes the watch on `dir`; harmless when the kernel already dropped it.
    pub fn unwatch(&mut self, shard: usize, dir: &Path) {
        let _ = self.watchers[shard].unwatch(dir);
    }

    /// Watches every `(shard, dir)`, the shards adding in parallel; returns
    /// each request's result in order.
    pub fn watch_all(&mut self, requests: &[(usize, PathBuf)]) -> Vec<Added> {
        let mut per_shard: Vec<Vec<usize>> = vec![Vec::new(); self.watchers.len()];
        for (index, (shard, _)) in requests.iter().enumerate() {
            per_shard[*shard].push(index);
        }
        let done: Vec<Vec<(usize, Added)>> = thread::scope(|scope| {
            let workers: Vec<_> = self
                .watchers
                .iter_mut()
                .zip(per_shard)
                .map(|(watcher, indices)| {
                    scope.spawn(move || {
                        let mut results = Vec::with_capacity(indices.len());
                        let mut limit = false;
                        for index in indices {
                            let result = if limit {
                                Added::Limit
                            } else {
                                watch_one(watcher, &requests[index].1)
                            };
                            limit = matches!(result, Added::Limit);
                            results.push((index, result));
                        }
                        results
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| worker.join().unwrap_or_default())
                .collect()
        });
        let mut results: Vec<Option<Added>> = (0..requests.len()).map(|_| None).collect();
        for (index, added) in done.into_iter().flatten() {
            results[index] = Some(added);
        }
        results
            .into_iter()
            .map(|added| added.unwrap_or(Added::Failed("watcher thread failed".into())))
            .collect()
    }

    /// Closes every inotify instance and waits until notify's threads have
    /// let go of the channel, which they do after closing their descriptors.
    pub fn close(self) {
        let Shards { watchers, events } = self;
        drop(watchers);
        while events.recv().is_ok() {}
    }
}

fn watch_one(watcher: &mut INotifyWatcher, dir: &Path) -> Added {
    match watcher.watch(dir, RecursiveMode::NonRecursive) {
        Ok(()) => Added::Yes,
        Err(err) => match err.kind {
            notify::ErrorKind::MaxFilesWatch => Added::Limit,
            notify::ErrorKind::PathNotFound => Added::Vanished,
            notify::ErrorKind::Io(ref io) if io.kind() == io::ErrorKind::NotFound => Added::Vanished,
            _ => Added::Failed(err.to_string()),
        },
    }
}

/// The watches one store could not get because of the kernel's limit, over
/// one episode: from the first refusal until every directory is watched again.
#[derive(Debug, Default)]
pub struct WatchBudget {
    /// Directories left unwatched by the last traversal.
    missing: usize,
    /// Whether this episode was already reported.
    reported: bool,
}

/// What a traversal's outcome means for the user.
#[derive(Debug, PartialEq, Eq)]
pub enum BudgetNews {
    Nothing,
    /// The limit was hit: say so once, with the count.
    LimitReached {
        missing: usize,
    },
    /// Everything is watched again after an episode.
    Recovered,
}

impl WatchBudget {
    /// Whether some directories wait for a watch.
    pub fn short(&self) -> bool {
        self.missing > 0
    }

    pub fn missing(&self) -> usize {
        self.missing
    }

    /// Records how many directories the last traversal left unwatched.
    pub fn settle(&mut self, missing: usize) -> BudgetNews {
        self.missing = missing;
        match (missing, self.reported) {
            (0, true) => {
                self.reported = false;
                BudgetNews::Recovered
            }
            (0, false) => BudgetNews::Nothing,
            (missing, false) => {
                self.reported = true;
                BudgetNews::LimitReached { missing }
            }
            (_, true) => BudgetNews::Nothing,
        }
    }
}

/// `fs.inotify.NAME`, when readable.
pub fn read_limit(name: &str) -> Option<usize> {
    fs::read_to_string(format!("/proc/sys/fs/inotify/{name}"))
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_per_episode() {
        let mut budget = WatchBudget::default();
        assert_eq!(budget.settle(0), BudgetNews::Nothing);
        assert_eq!(budget.settle(7), BudgetNews::LimitReached { missing: 7 });
        assert_eq!(budget.settle(9), BudgetNews::Nothing);
        assert!(budget.short());
        assert_eq!(budget.settle(0), BudgetNews::Recovered);
        assert!(!budget.short());
        assert_eq!(budget.settle(2), BudgetNews::LimitReached { missing: 2 });
    }
}
