//! notify's watchers: [`SHARDS`] inotify instances sharing the watches.
//!
//! Each request is a round trip to the watcher's own thread, so start-up
//! sends them in batches ([`Shards::watch_all`]: a message per 512 watches,
//! not per watch), to four instances adding in parallel. A folder's directories always
//! go to the same instance, because the kernel gives the two halves of a
//! rename (`new/` to `cur/`) the same cookie only within one instance: split
//! across two, a mail reader's rename would look like mail arriving.
//!
//! The watches ask the kernel only for what can mean mail or a change of
//! the tree ([`EVENTS`]): creations, deletions and renames, not opens,
//! reads, writes or attribute changes, so a file Gnus, Dovecot or a backup
//! reads under a watched folder does not wake the engine, and the engine's
//! own listing of a directory cannot fill the kernel's queue while it
//! rescans after an overflow. The mask needs notify 9 (9.0.0-rc.7, pinned,
//! vendor/notify), which also keeps a descriptor that two paths share
//! until both are unwatched.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;

use crossbeam_channel::{unbounded, Receiver};
use notify::{Config, EventKindMask, INotifyWatcher, PathOp, RecursiveMode, Watcher};

/// How many inotify instances one watched store uses.
pub const SHARDS: usize = 4;

/// The events asked of the kernel: creations and moves in, deletions and
/// moves out, and a watched directory's own move (its deletion always comes).
pub const EVENTS: EventKindMask = EventKindMask::CREATE
    .union(EventKindMask::REMOVE)
    .union(EventKindMask::MODIFY_NAME);

pub type FsEvent = notify::Result<notify::Event>;

/// How a watch request ended.
#[derive(Clone, Debug)]
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
                .map(|(watcher, indices)| scope.spawn(move || watch_batch(watcher, requests, &indices)))
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
        Err(err) => refusal(&err),
    }
}

/// Why notify did not add a watch.
fn refusal(err: &notify::Error) -> Added {
    match &err.kind {
        notify::ErrorKind::MaxFilesWatch => Added::Limit,
        notify::ErrorKind::PathNotFound => Added::Vanished,
        notify::ErrorKind::Io(io) if io.kind() == io::ErrorKind::NotFound => Added::Vanished,
        _ => Added::Failed(err.to_string()),
    }
}

/// How many watch requests go to notify's thread in one message. One
/// message per watch costs two thread switches each (most of the start-up
/// CPU at 10,000 folders); a bounded batch keeps the copies notify makes of
/// it small.
const BATCH: usize = 512;

/// Watches the directories `requests[i]` for each of `indices` on one
/// watcher, a batch per message; after the kernel's limit is met the rest
/// are not tried.
fn watch_batch(
    watcher: &mut INotifyWatcher,
    requests: &[(usize, PathBuf)],
    indices: &[usize],
) -> Vec<(usize, Added)> {
    let mut results = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(BATCH) {
        if matches!(results.last(), Some((_, Added::Limit))) {
            results.extend(chunk.iter().map(|&index| (index, Added::Limit)));
            continue;
        }
        let mut rest = chunk;
        while !rest.is_empty() {
            let ops = rest
                .iter()
                .map(|&index| PathOp::watch_non_recursive(requests[index].1.clone()))
                .collect();
            let Err(err) = watcher.update_paths(ops) else {
                results.extend(rest.iter().map(|&index| (index, Added::Yes)));
                break;
            };
            if err.origin.is_none() {
                // The reply was lost: nothing is known of the batch.
                let why = Added::Failed(err.source.to_string());
                results.extend(rest.iter().map(|&index| (index, why.clone())));
                break;
            }
            // Every request before the one refused was applied; the rest
            // come back unapplied.
            let applied = rest.len() - err.remaining.len() - 1;
            results.extend(rest[..applied].iter().map(|&index| (index, Added::Yes)));
            let refused = refusal(&err.source);
            let limit = matches!(refused, Added::Limit);
            results.push((rest[applied], refused));
            rest = &rest[applied + 1..];
            if limit {
                results.extend(rest.iter().map(|&index| (index, Added::Limit)));
                break;
            }
        }
    }
    results
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
