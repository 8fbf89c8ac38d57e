//! The engine's thread: its state, its loop, and what each kind of event
//! does. How the watched set converges to the disk is in `converge`.

use std::collections::HashSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::{select, Receiver};

use super::error::Error;
use super::retired::Retired;
use super::shards::{Added, FsEvent, Shards, WatchBudget};
use super::stats::Stats;
use super::tree::Dirs;
use super::{Control, Sink, EVENT_BATCH, MAX_EVENTS_PER_ROUND, ROOT_POLL};
use crate::coalesce::Coalescer;
use crate::engine::classify::{self, Classifier, Effect, FsChange, Tree, WatchedDir};
use crate::naming::{classify_dir, DirRole, Folder, Layout};

/// Which folders a traversal reports.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Report {
    /// Start-up: none.
    None,
    /// Folders newly watched or newly named.
    New,
    /// Every folder found (events were lost).
    All,
}

pub(super) struct State {
    /// The root as the user named it, looked for again when it goes away.
    pub(super) given_root: PathBuf,
    pub(super) root: PathBuf,
    pub(super) layout: Layout,
    /// `None` only while shutting down.
    pub(super) shards: Option<Shards>,
    pub(super) tree: Dirs,
    /// Watches removed lately, whose events may still come.
    pub(super) retired: Retired,
    pub(super) classifier: Classifier,
    pub(super) coalescer: Coalescer<PathBuf>,
    pub(super) report_flags: bool,
    pub(super) stats: Arc<Stats>,
    pub(super) sink: Box<dyn Sink>,
    pub(super) budget: WatchBudget,
    pub(super) root_missing: bool,
    /// Things already warned about (loops, unreadable folders), each once.
    pub(super) warned: HashSet<String>,
}

/// Returns the memory freed after a traversal to the system: setting up
/// tens of thousands of watches on several threads leaves freed blocks in
/// as many malloc arenas, counted in the process's resident size (Emacs's,
/// for the module) until trimmed.
pub(super) fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl State {
    /// Watches the whole store and tells the sink; false when it cannot be
    /// watched (the watch limit), after shutting down.
    pub(super) fn start_up(&mut self) -> bool {
        let missing = self.watch_everything(Report::None);
        if missing > 0 {
            let added = self.tree.len();
            self.shut_down();
            let error = Error::watch_limit(self.root.clone(), added, added + missing);
            self.sink.ready(Err(error.into()));
            return false;
        }
        let found = if self.sink.wants_folders_at_start() {
            self.tree.maildirs()
        } else {
            Vec::new()
        };
        self.sink.ready(Ok(found));
        give_back_free_memory();
        true
    }

    pub(super) fn run(mut self, control_rx: Receiver<Control>) {
        loop {
            let Some(fs_rx) = self.shards.as_ref().map(|shards| shards.events().clone()) else {
                break;
            };
            let now = Instant::now();
            let mut next = [self.coalescer.next_due(), self.classifier.next_expiry()]
                .into_iter()
                .flatten()
                .min();
            if self.root_missing {
                next = Some(next.map_or(now + ROOT_POLL, |at| at.min(now + ROOT_POLL)));
            }
            let timeout = next.map_or_else(crossbeam_channel::never, crossbeam_channel::at);
            let mut woken_by_event = false;
            select! {
                recv(control_rx) -> message => match message {
                    Ok(Control::Rescan) => self.rebuild(),
                    Ok(Control::Stop) | Err(_) => break,
                },
                recv(fs_rx) -> event => match event {
                    Ok(event) => {
                        self.on_event(event);
                        woken_by_event = true;
                    }
                    Err(_) => break,
                },
                recv(timeout) -> _ => {}
            }
            if woken_by_event && self.coalescer.delay() >= EVENT_BATCH * 10 {
                // Let the rest of a burst gather: one wake-up per batch.
                thread::sleep(EVENT_BATCH);
            }
            for _ in 0..MAX_EVENTS_PER_ROUND {
                match fs_rx.try_recv() {
                    Ok(event) => self.on_event(event),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            for effect in self.classifier.expire(now) {
                self.apply(effect, now);
            }
            if self.root_missing {
                self.look_for_root();
            }
            self.send_due(now);
        }
        self.shut_down();
    }

    pub(super) fn shut_down(&mut self) {
        if let Some(shards) = self.shards.take() {
            shards.close();
        }
    }

    pub(super) fn on_event(&mut self, event: FsEvent) {
        self.stats.events_seen.fetch_add(1, Ordering::Relaxed);
        self.retired.receive();
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                self.warn(format!("inotify error: {err}"));
                return;
            }
        };
        let change = classify::from_notify(&event);
        let now = Instant::now();
        // The root itself removed (its DELETE_SELF) or moved (its MOVE_SELF).
        match &change {
            FsChange::Removed { path } | FsChange::MovedFrom { path, cookie: None } if *path == self.root => {
                self.lose_root();
                return;
            }
            _ => {}
        }
        let effects = self.classifier.classify(&self.tree, change, now);
        if effects.is_empty() {
            self.stats.events_ignored.fetch_add(1, Ordering::Relaxed);
        }
        for effect in effects {
            self.apply(effect, now);
        }
    }

    pub(super) fn apply(&mut self, effect: Effect, now: Instant) {
        match effect {
            Effect::MailChanged(folder_dir) => self.coalescer.touch(folder_dir, now),
            Effect::FlagsChanged(folder_dir) if self.report_flags => self.coalescer.touch(folder_dir, now),
            Effect::FlagsChanged(_) => {
                self.stats.events_ignored.fetch_add(1, Ordering::Relaxed);
            }
            Effect::DirAppeared(path) => self.dir_appeared(&path),
            Effect::DirGone(path) => self.dir_gone(&path),
            Effect::Rescan => self.rebuild(),
        }
    }

    pub(super) fn send_due(&mut self, now: Instant) {
        if self.coalescer.is_empty() {
            return;
        }
        let folders: Vec<Folder> = self
            .coalescer
            .take_due(now)
            .into_iter()
            .flat_map(|folder_dir| self.tree.names(&folder_dir).to_vec())
            .collect();
        if !folders.is_empty() {
            self.stats
                .reports
                .fetch_add(folders.len() as u64, Ordering::Relaxed);
            self.sink.changed(folders);
        }
    }

    pub(super) fn warn(&mut self, message: String) {
        self.stats.set_error(&message);
        self.sink.warning(message);
    }

    pub(super) fn warn_once(&mut self, key: String, message: String) {
        if self.warned.insert(key) {
            self.warn(message);
        }
    }

    /// An entry appeared in a folder's directory: a subfolder, a `new/` or
    /// `cur/`, a link, or (ignored) a file.
    pub(super) fn dir_appeared(&mut self, path: &Path) {
        let Some(parent) = path.parent() else {
            return;
        };
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        if meta.file_type().is_symlink() {
            if path.is_dir() {
                self.reconcile();
            }
            return;
        }
        // Files a mail reader writes in a folder's directory end here.
        if !meta.is_dir() || self.tree.contains(path) {
            return;
        }
        if self.budget.short() {
            // A new directory: retry what the watch limit left out, with it.
            return self.reconcile();
        }
        let names = self.tree.names(parent);
        if names.is_empty() {
            return;
        }
        if names.len() > 1 {
            // A folder reached by links too: every name gets the new entry.
            return self.reconcile();
        }
        let Some(name) = path.file_name() else {
            return;
        };
        let parent = parent.to_path_buf();
        match classify_dir(self.layout, &names[0], name) {
            DirRole::Folder(folder) => {
                // List again once watched: notify-rs issue 727, `mkdir -p`
                // and deliveries racing the watches.
                let mut missing = self.traverse(path, folder.clone(), Report::New);
                missing += self.traverse(path, folder, Report::New);
                if missing > 0 {
                    self.reconcile();
                }
            }
            DirRole::Mail(which) => {
                let role = WatchedDir::Mail {
                    folder_dir: parent.clone(),
                    which,
                };
                match self.watch_one(path, role) {
                    Added::Limit => self.reconcile(),
                    _ => self.coalescer.touch(parent, Instant::now()),
                }
            }
            DirRole::Ignored => {}
        }
        self.update_counts();
    }

    /// Removes the watch on `dir`, whose events may still come for a while.
    pub(super) fn unwatch(&mut self, shard: usize, dir: PathBuf) {
        if let Some(shards) = self.shards.as_mut() {
            shards.unwatch(shard, &dir);
            let queued = shards.events().len();
            self.retired.retire(dir, queued);
        }
    }

    /// An entry left a folder's directory.
    pub(super) fn dir_gone(&mut self, path: &Path) {
        if path == self.root {
            return self.lose_root();
        }
        if self.retired.is_stale(path) {
            // The old directory's event; the one there now is watched.
            return;
        }
        if self.tree.is_link(path) {
            return self.reconcile();
        }
        if !self.tree.contains(path) && !self.tree.is_folder(path) {
            return;
        }
        let through_links = self.tree.links_touch(path);
        for (dir, shard) in self.tree.remove_subtree(path) {
            self.unwatch(shard, dir);
        }
        if through_links {
            self.reconcile();
        } else {
            self.unseal(path);
        }
        self.update_counts();
    }

    /// After a `new/` or `cur/` of a sealed folder went (its directory not
    /// watched): the folder's directory is watched from now on, and listed
    /// twice, as a new folder's is, so that what replaces it is seen whether
    /// it is there already or comes meanwhile.
    fn unseal(&mut self, mail_dir: &Path) {
        let (Some(folder_dir), Some(b"new" | b"cur")) =
            (mail_dir.parent(), mail_dir.file_name().map(OsStrExt::as_bytes))
        else {
            return;
        };
        let names = self.tree.names(folder_dir);
        if names.is_empty() || self.tree.watched(folder_dir).is_some() {
            return;
        }
        if names.len() > 1 {
            return self.reconcile();
        }
        if !self.tree.is_sealed_and_there(folder_dir) {
            // Gone, or replaced, with its folder: the root's events say so.
            return;
        }
        let (folder_dir, folder) = (folder_dir.to_path_buf(), names[0].clone());
        match self.watch_one(&folder_dir, WatchedDir::Folder) {
            Added::Yes => {}
            Added::Limit => return self.reconcile(),
            Added::Vanished | Added::Failed(_) => return,
        }
        let mut missing = self.traverse(&folder_dir, folder.clone(), Report::New);
        missing += self.traverse(&folder_dir, folder, Report::New);
        if missing > 0 {
            self.reconcile();
        }
    }
}
