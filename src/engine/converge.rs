//! How the watched set converges to what is on disk: traversals, the
//! reconcile after a change of links or of the watch budget, the rebuild
//! after lost events, and the root going away and coming back.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::error::Error;
use super::plan::{plan, Findings};
use super::shards::{Added, BudgetNews, Shards};
use super::state::{give_back_free_memory, Report, State};
use super::tree::{Dirs, Identity, Watched};
use crate::engine::classify::{Classifier, WatchedDir};
use crate::naming::Folder;

/// What a traversal reports, besides watching.
#[derive(Clone, Copy)]
enum Reporting<'a> {
    /// Nothing (start-up).
    Nothing,
    /// Folders newly watched.
    NewlyWatched,
    /// Folders newly watched, and folders newly named: those not named so
    /// in the names known before (a reconcile of the whole tree).
    NewSince(&'a HashMap<Arc<Path>, Vec<Folder>>),
    /// Every folder found (events were lost).
    Every,
}

impl From<Report> for Reporting<'_> {
    fn from(report: Report) -> Self {
        match report {
            Report::None => Reporting::Nothing,
            Report::New => Reporting::NewlyWatched,
            Report::All => Reporting::Every,
        }
    }
}

/// Watch requests gathered during a traversal, sent a batch at a time so
/// that no list of the whole tree is built.
#[derive(Default)]
struct Batch {
    /// (shard, directory)
    requests: Vec<(usize, PathBuf)>,
    roles: Vec<WatchedDir>,
}

impl Batch {
    const SIZE: usize = 512;

    /// Watches what is gathered and records it in `tree`; the folders with
    /// a new `new/` or `cur/` go into `touched` unless the traversal
    /// reports nothing, failures into `failures`. Returns how many the
    /// watch limit left out.
    fn watch(
        &mut self,
        shards: Option<&mut Shards>,
        tree: &mut Dirs,
        reporting: Reporting,
        touched: &mut HashSet<PathBuf>,
        failures: &mut Vec<(PathBuf, String)>,
    ) -> usize {
        let requests = std::mem::take(&mut self.requests);
        let roles = std::mem::take(&mut self.roles);
        let Some(shards) = shards else {
            return 0;
        };
        let results = if requests.len() > 64 {
            shards.watch_all(&requests)
        } else {
            requests
                .iter()
                .map(|(shard, dir)| shards.watch(*shard, dir))
                .collect()
        };
        let mut missing = 0;
        for (((shard, dir), role), added) in requests.into_iter().zip(roles).zip(results) {
            match added {
                Added::Yes => {
                    if let WatchedDir::Mail { folder_dir, .. } = &role {
                        if !matches!(reporting, Reporting::Nothing) {
                            touched.insert(folder_dir.clone());
                        }
                    }
                    tree.insert(dir, Watched { role, shard });
                }
                Added::Limit => missing += 1,
                Added::Vanished => {}
                Added::Failed(message) => failures.push((dir, message)),
            }
        }
        missing
    }
}

impl State {
    /// Watches the whole tree at start-up or once the root is back;
    /// returns how many directories the watch limit left out.
    pub(super) fn watch_everything(&mut self, report: Report) -> usize {
        let root = self.root.clone();
        self.traverse(&root, Folder::root(), report);
        // Listed again once watched, for anything made meanwhile; what the
        // watch limit left out the first time is tried again and counted.
        let again = if report == Report::None {
            Report::None
        } else {
            Report::New
        };
        self.traverse(&root, Folder::root(), again)
    }

    /// After lost events: every watch made anew on fresh inotify instances
    /// (cheaper than one removal per watch, and the only way to be sure),
    /// every folder reported once.
    pub(super) fn rebuild(&mut self) {
        if self.root_missing {
            return;
        }
        if Identity::of(&self.root).is_none() {
            return self.lose_root();
        }
        if !self.renew_shards() {
            return;
        }
        let missing = self.watch_everything(Report::All);
        self.settle_budget(missing);
        give_back_free_memory();
    }

    /// Closes the inotify instances and makes new ones; forgets every watch.
    pub(super) fn renew_shards(&mut self) -> bool {
        if let Some(old) = self.shards.take() {
            old.close();
        }
        self.tree = Dirs::default();
        self.retired.clear();
        self.classifier = Classifier::default();
        self.update_counts();
        match Shards::new() {
            Ok(shards) => {
                self.shards = Some(shards);
                true
            }
            Err(err) => {
                let message = Error::instances(err).to_string();
                self.warn(message);
                false
            }
        }
    }

    /// After a change of links, or to retry what the watch limit left out:
    /// makes the watched set equal to what is on disk, unwatching what is
    /// no longer reached before watching anything new. (No event was lost
    /// here; a directory replaced meanwhile has its own events queued.)
    pub(super) fn reconcile(&mut self) {
        if self.root_missing {
            return;
        }
        if Identity::of(&self.root).is_none() {
            return self.lose_root();
        }
        let root = self.root.clone();
        let mut reached: HashSet<PathBuf> = HashSet::new();
        plan(self.layout, &root, Folder::root(), &mut |planned| {
            reached.insert(planned.dir);
        });
        let unreachable: Vec<PathBuf> = self
            .tree
            .paths()
            .into_iter()
            .filter(|dir| !reached.contains(dir))
            .collect();
        drop(reached);
        self.unwatch_each(unreachable);
        let before = self.tree.take_names();
        let missing = self.visit_and_watch(&root, Folder::root(), Reporting::NewSince(&before));
        self.settle_budget(missing);
        self.update_counts();
    }

    pub(super) fn unwatch_each(&mut self, dirs: Vec<PathBuf>) {
        for dir in dirs {
            if let Some(shard) = self.tree.remove(&dir) {
                self.unwatch(shard, dir);
            }
        }
    }

    /// Traverses and watches `top` and everything below it; returns how
    /// many directories the watch limit left out.
    pub(super) fn traverse(&mut self, top: &Path, folder: Folder, report: Report) -> usize {
        let missing = self.visit_and_watch(top, folder, report.into());
        self.update_counts();
        missing
    }

    /// Visits `top` and below, recording names and links, watches what is
    /// not watched yet, and reports as `reporting` says.
    fn visit_and_watch(&mut self, top: &Path, folder: Folder, reporting: Reporting) -> usize {
        let mut touched: HashSet<PathBuf> = HashSet::new();
        // Watches to add, moved out of the visit a batch at a time.
        let mut batch = Batch::default();
        let mut missing = 0;
        let mut failures = Vec::new();
        // A directory is visited twice only when links lead to it twice.
        let mut requested: HashSet<PathBuf> = HashSet::new();
        let State { tree, shards, .. } = self;
        let findings = plan(self.layout, top, folder, &mut |planned| {
            let folder_dir = planned.role.folder_dir(&planned.dir);
            if let Some(folder) = planned.folder {
                let known = match reporting {
                    Reporting::NewSince(before) => before
                        .get(planned.dir.as_path())
                        .is_some_and(|names| names.contains(&folder)),
                    _ => true,
                };
                if tree.add_name(&planned.dir, folder) && !known {
                    touched.insert(folder_dir.to_path_buf());
                }
            }
            if tree.contains(&planned.dir) {
                if matches!(planned.role, WatchedDir::Mail { .. }) && matches!(reporting, Reporting::Every) {
                    touched.insert(folder_dir.to_path_buf());
                }
                return;
            }
            if planned.sealed {
                if let Some(id) = planned.id {
                    tree.seal(&planned.dir, id);
                }
                return;
            }
            let shard = Shards::shard_of(folder_dir);
            if planned.via_link && !requested.insert(planned.dir.clone()) {
                return;
            }
            batch.requests.push((shard, planned.dir));
            batch.roles.push(planned.role);
            if batch.requests.len() >= Batch::SIZE {
                missing += batch.watch(shards.as_mut(), tree, reporting, &mut touched, &mut failures);
            }
        });
        missing += batch.watch(
            self.shards.as_mut(),
            &mut self.tree,
            reporting,
            &mut touched,
            &mut failures,
        );
        self.warn_about(&findings);
        for (link, target) in findings.links {
            self.tree.add_link(link, target);
        }
        for (dir, message) in failures {
            self.warn_once(
                format!("watch {}", dir.display()),
                format!(
                    "cannot watch {}: {message}; its mail is not reported",
                    dir.display()
                ),
            );
        }
        let now = Instant::now();
        for folder_dir in touched {
            if self.tree.names(&folder_dir).is_empty() {
                continue;
            }
            let has_mail =
                self.tree.contains(&folder_dir.join("new")) || self.tree.contains(&folder_dir.join("cur"));
            if has_mail {
                self.coalescer.touch(folder_dir, now);
            }
        }
        missing
    }

    pub(super) fn warn_about(&mut self, plan: &Findings) {
        for (link, target) in &plan.loops {
            self.warn_once(
                format!("loop {}", link.display()),
                format!(
                    "symbolic link {} leads back to {} (a loop); not followed",
                    link.display(),
                    target.display()
                ),
            );
        }
        for (dir, err) in &plan.unreadable {
            self.warn_once(
                format!("read {}", dir.display()),
                format!("cannot read folder {}: {err}; it is not watched", dir.display()),
            );
        }
    }

    pub(super) fn watch_one(&mut self, dir: &Path, role: WatchedDir) -> Added {
        let shard = Shards::shard_of(role.folder_dir(dir));
        let Some(shards) = self.shards.as_mut() else {
            return Added::Vanished;
        };
        let added = shards.watch(shard, dir);
        if let Added::Yes = added {
            self.tree.insert(dir.to_path_buf(), Watched { role, shard });
        }
        added
    }

    pub(super) fn settle_budget(&mut self, missing: usize) {
        match self.budget.settle(missing) {
            BudgetNews::Nothing => {}
            BudgetNews::LimitReached { missing } => {
                let added = self.tree.len();
                let error = Error::watch_limit(self.root.clone(), added, added + missing);
                self.warn(format!(
                    "{error}; {missing} directories are not watched until then"
                ));
            }
            BudgetNews::Recovered => self.warn(format!(
                "every folder of {} is watched again",
                self.root.display()
            )),
        }
        self.stats
            .unwatched
            .store(self.budget.missing() as u64, Ordering::Relaxed);
    }

    /// The root was removed or moved away: drop every watch (with fresh
    /// inotify instances, which is cheaper than one removal per watch) and
    /// wait for it to come back.
    pub(super) fn lose_root(&mut self) {
        if self.root_missing {
            return;
        }
        self.root_missing = true;
        self.stats.root_missing.store(true, Ordering::Relaxed);
        self.renew_shards();
        self.coalescer.clear();
        let message = format!(
            "maildir {} was removed or moved away; waiting for it to come back",
            self.given_root.display()
        );
        self.warn(message);
        self.update_counts();
    }

    pub(super) fn look_for_root(&mut self) {
        if self.shards.is_none() {
            match Shards::new() {
                Ok(shards) => self.shards = Some(shards),
                Err(_) => return,
            }
        }
        let Ok(root) = fs::canonicalize(&self.given_root) else {
            return;
        };
        if !root.is_dir() {
            return;
        }
        self.root = root;
        self.root_missing = false;
        self.stats.root_missing.store(false, Ordering::Relaxed);
        self.warned.clear();
        let missing = self.watch_everything(Report::All);
        self.settle_budget(missing);
        let message = format!("maildir {} is back; watching it again", self.given_root.display());
        self.warn(message);
    }

    pub(super) fn update_counts(&self) {
        self.stats
            .watches
            .store(self.tree.len() as u64, Ordering::Relaxed);
        self.stats
            .folders
            .store(self.tree.folder_count() as u64, Ordering::Relaxed);
    }
}
