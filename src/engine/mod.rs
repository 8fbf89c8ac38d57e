//! The watcher engine: inotify watches over one mail store ([`shards`])
//! feeding one engine thread, which turns file-system events into coalesced
//! reports of changed folders. It knows nothing of Emacs, mswatch or Gnus: a
//! [`Sink`] receives the reports.
//!
//! Threads: the engine's own, plus one per inotify instance (notify's).
//!
//! Whatever happens on disk, the watched set converges to what is there:
//! - new folders are traversed ([`plan`]) and watched, then listed once more
//!   to catch what appeared meanwhile;
//! - a folder that goes takes its own subtree with it ([`tree`]);
//! - after lost events (the kernel's queue overflowed, or SIGUSR1) the
//!   watches are made anew on fresh inotify instances and every folder is
//!   reported once. Nothing less is safe: a folder removed and made again
//!   while events were lost often gets the same inode number back (seen on
//!   ext4), so its identity looks unchanged while the kernel has dropped
//!   its watch, and a renamed folder's watch follows it to its new path;
//! - when links come or go, or the watch limit left directories out, every
//!   watched directory whose identity (device, inode) changed is dropped
//!   first, so that no stale watch removal can take a live folder's watch
//!   with it, then the whole tree is traversed again;
//! - the root removed or moved away is noticed; the engine says so, checks
//!   twice a second for it to come back, then watches and reports it all.

mod plan;
mod shards;
mod tree;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, unbounded, Receiver, Sender};

use crate::classify::{self, Classifier, Effect, FsChange, WatchedDir};
use crate::coalesce::Coalescer;
use crate::detect::detect_layout;
use crate::naming::{classify_dir, DirRole, Folder, Layout};

use plan::{plan, Plan};
pub use shards::SHARDS;
use shards::{read_limit, Added, BudgetNews, FsEvent, InstanceError, Shards, WatchBudget};
use tree::{Dirs, Identity, Watched};

/// The default coalescing window.
pub const DEFAULT_DELAY: Duration = Duration::from_millis(200);

/// How many queued events are handled before due reports are sent, so a long
/// burst cannot hold reports back.
const MAX_EVENTS_PER_ROUND: usize = 4096;

/// How often a removed root is looked for.
const ROOT_POLL: Duration = Duration::from_millis(500);

/// How a watch is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// The layout; detected from the tree when `None`.
    pub layout: Option<Layout>,
    /// Changes to one folder within this window give one report.
    pub delay: Duration,
    /// A folder that keeps changing is reported at least this often
    /// (10 × `delay` when `None`).
    pub max_delay: Option<Duration>,
    /// Also report messages whose flags changed (renames inside `cur/`).
    pub report_flags: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            layout: None,
            delay: DEFAULT_DELAY,
            max_delay: None,
            report_flags: false,
        }
    }
}

/// Receives the engine's reports, on the engine's thread.
pub trait Sink: Send + 'static {
    /// Folders that changed, oldest change first, each once.
    fn changed(&mut self, folders: Vec<Folder>);
    /// Something went wrong while running; watching goes on.
    fn warning(&mut self, message: String);
}

/// Why a watch could not start.
#[derive(Debug)]
pub enum Error {
    MissingRoot(PathBuf, io::Error),
    NotADirectory(PathBuf),
    /// `fs.inotify.max_user_watches` is too low for the store.
    WatchLimit {
        root: PathBuf,
        added: usize,
        needed: usize,
        limit: Option<usize>,
    },
    /// No inotify instance could be made (`fs.inotify.max_user_instances`,
    /// or the open-file limit).
    InstanceLimit {
        source: io::Error,
        limit: Option<usize>,
    },
    Io(PathBuf, io::Error),
}

impl Error {
    fn watch_limit(root: PathBuf, added: usize, needed: usize) -> Error {
        Error::WatchLimit {
            root,
            added,
            needed,
            limit: read_limit("max_user_watches"),
        }
    }

    fn instances(InstanceError(source): InstanceError) -> Error {
        Error::InstanceLimit {
            source,
            limit: read_limit("max_user_instances"),
        }
    }
}

fn shown(limit: Option<usize>) -> String {
    limit.map_or_else(|| "?".to_string(), |limit| limit.to_string())
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingRoot(path, err) => write!(f, "maildir {} cannot be opened: {err}", path.display()),
            Error::NotADirectory(path) => write!(f, "maildir {} is not a directory", path.display()),
            Error::WatchLimit {
                root,
                added,
                needed,
                limit,
            } => {
                let suggested = limit.map_or(*needed * 2, |limit| (limit + needed).max(limit * 2));
                write!(
                    f,
                    "the inotify watch limit is reached: watching {} needs {needed} watches, only {added} could be added \
                     (fs.inotify.max_user_watches = {}); raise it with `sysctl fs.inotify.max_user_watches={suggested}`",
                    root.display(),
                    shown(*limit)
                )
            }
            Error::InstanceLimit { source, limit } => write!(
                f,
                "cannot create an inotify instance ({source}): mailsync needs {SHARDS} per watched store; raise \
                 fs.inotify.max_user_instances (now {}) with `sysctl fs.inotify.max_user_instances={}`, \
                 or the open-file limit (ulimit -n)",
                shown(*limit),
                limit.map_or(512, |limit| (limit * 2).max(limit + 4 * SHARDS))
            ),
            Error::Io(path, err) => write!(f, "{}: {err}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::MissingRoot(_, err) | Error::Io(_, err) | Error::InstanceLimit { source: err, .. } => {
                Some(err)
            }
            _ => None,
        }
    }
}

/// Counters shared with the engine thread.
#[derive(Debug, Default)]
pub struct Stats {
    folders: AtomicU64,
    watches: AtomicU64,
    unwatched: AtomicU64,
    events_seen: AtomicU64,
    events_ignored: AtomicU64,
    reports: AtomicU64,
    root_missing: AtomicBool,
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

    fn set_error(&self, message: &str) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(message.to_string());
        }
    }
}

enum Control {
    Stop,
    Rescan,
}

/// A running watch over one mail store. Dropping it stops the thread.
pub struct Engine {
    root: PathBuf,
    layout: Layout,
    folders_at_start: Vec<Folder>,
    stats: Arc<Stats>,
    control: Sender<Control>,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Watches every folder below `root`; returns once all watches are set.
    pub fn start(root: &Path, options: Options, sink: Box<dyn Sink>) -> Result<Engine, Error> {
        let given_root = root.to_path_buf();
        let root = fs::canonicalize(root).map_err(|err| Error::MissingRoot(given_root.clone(), err))?;
        if !root.is_dir() {
            return Err(Error::NotADirectory(root));
        }
        let layout = match options.layout {
            Some(layout) => layout,
            None => detect_layout(&root).map_err(|err| Error::Io(root.clone(), err))?,
        };
        let shards = Shards::new().map_err(Error::instances)?;
        let stats = Arc::new(Stats::default());
        let max_delay = options.max_delay.unwrap_or(options.delay * 10);
        let mut state = State {
            given_root,
            root: root.clone(),
            layout,
            shards: Some(shards),
            tree: Dirs::default(),
            classifier: Classifier::default(),
            coalescer: Coalescer::new(options.delay, max_delay),
            report_flags: options.report_flags,
            stats: Arc::clone(&stats),
            sink,
            budget: WatchBudget::default(),
            root_missing: false,
            warned: HashSet::new(),
        };
        let missing = state.watch_everything(Report::None);
        if missing > 0 {
            let added = state.tree.len();
            state.shut_down();
            return Err(Error::watch_limit(root, added, added + missing));
        }
        let folders_at_start = state.tree.maildirs();
        let (control, control_rx) = unbounded();
        let thread = thread::Builder::new()
            .name("mailsync-engine".into())
            .spawn(move || state.run(control_rx))
            .map_err(|err| Error::Io(PathBuf::from("<thread>"), err))?;
        Ok(Engine {
            root,
            layout,
            folders_at_start,
            stats,
            control,
            thread: Some(thread),
        })
    }

    /// The watched root, with symbolic links resolved.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The layout in use (given or detected).
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Every maildir folder found at start-up.
    pub fn folders_at_start(&self) -> &[Folder] {
        &self.folders_at_start
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Rescans the whole store and reports every folder once: what the
    /// engine does by itself when the kernel's event queue overflows.
    pub fn rescan(&self) {
        let _ = self.control.send(Control::Rescan);
    }

    /// Stops the thread, closes every descriptor and waits for both.
    pub fn stop(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.control.send(Control::Stop);
            let _ = thread.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// Which folders a traversal reports.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Report {
    /// Start-up: none.
    None,
    /// Folders newly watched or newly named.
    New,
    /// Every folder found (events were lost).
    All,
}

struct State {
    /// The root as the user named it, looked for again when it goes away.
    given_root: PathBuf,
    root: PathBuf,
    layout: Layout,
    /// `None` only while shutting down.
    shards: Option<Shards>,
    tree: Dirs,
    classifier: Classifier,
    coalescer: Coalescer<PathBuf>,
    report_flags: bool,
    stats: Arc<Stats>,
    sink: Box<dyn Sink>,
    budget: WatchBudget,
    root_missing: bool,
    /// Things already warned about (loops, unreadable folders), each once.
    warned: HashSet<String>,
}

impl State {
    fn run(mut self, control_rx: Receiver<Control>) {
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
            select! {
                recv(control_rx) -> message => match message {
                    Ok(Control::Rescan) => self.rebuild(),
                    Ok(Control::Stop) | Err(_) => break,
                },
                recv(fs_rx) -> event => match event {
                    Ok(event) => self.on_event(event),
                    Err(_) => break,
                },
                recv(timeout) -> _ => {}
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

    fn shut_down(&mut self) {
        if let Some(shards) = self.shards.take() {
            shards.close();
        }
    }

    fn on_event(&mut self, event: FsEvent) {
        self.stats.events_seen.fetch_add(1, Ordering::Relaxed);
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

    fn apply(&mut self, effect: Effect, now: Instant) {
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

    fn send_due(&mut self, now: Instant) {
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

    fn warn(&mut self, message: String) {
        self.stats.set_error(&message);
        self.sink.warning(message);
    }

    fn warn_once(&mut self, key: String, message: String) {
        if self.warned.insert(key) {
            self.warn(message);
        }
    }

    /// An entry appeared in a folder's directory: a subfolder, a `new/` or
    /// `cur/`, a link, or (ignored) a file.
    fn dir_appeared(&mut self, path: &Path) {
        if self.budget.short() {
            // Retry what the watch limit left out, with this.
            return self.reconcile(Report::New);
        }
        let Some(parent) = path.parent() else {
            return;
        };
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        if meta.file_type().is_symlink() {
            if path.is_dir() {
                self.reconcile(Report::New);
            }
            return;
        }
        let names = self.tree.names(parent);
        if !meta.is_dir() || names.is_empty() || self.tree.contains(path) {
            return;
        }
        if names.len() > 1 {
            // A folder reached by links too: every name gets the new entry.
            return self.reconcile(Report::New);
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
                    self.reconcile(Report::New);
                }
            }
            DirRole::Mail(which) => {
                let role = WatchedDir::Mail {
                    folder_dir: parent.clone(),
                    which,
                };
                match self.watch_one(path, role) {
                    Added::Limit => self.reconcile(Report::New),
                    _ => self.coalescer.touch(parent, Instant::now()),
                }
            }
            DirRole::Ignored => {}
        }
        self.update_counts();
    }

    /// An entry left a folder's directory.
    fn dir_gone(&mut self, path: &Path) {
        if path == self.root {
            return self.lose_root();
        }
        if self.tree.is_link(path) {
            return self.reconcile(Report::New);
        }
        if !self.tree.contains(path) {
            return;
        }
        let through_links = self.tree.links_touch(path);
        let removed = self.tree.remove_subtree(path);
        if let Some(shards) = self.shards.as_mut() {
            for (dir, shard) in removed {
                shards.unwatch(shard, &dir);
            }
        }
        if through_links {
            self.reconcile(Report::New);
        }
        self.update_counts();
    }

    /// Watches the whole tree at start-up or once the root is back;
    /// returns how many directories the watch limit left out.
    fn watch_everything(&mut self, report: Report) -> usize {
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
    fn rebuild(&mut self) {
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
    }

    /// Closes the inotify instances and makes new ones; forgets every watch.
    fn renew_shards(&mut self) -> bool {
        if let Some(old) = self.shards.take() {
            old.close();
        }
        self.tree = Dirs::default();
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
    /// makes the watched set equal
    /// to what is on disk, dropping stale watches before adding any.
    fn reconcile(&mut self, report: Report) {
        if self.root_missing {
            return;
        }
        if Identity::of(&self.root).is_none() {
            return self.lose_root();
        }
        let stale = self.tree.stale();
        self.unwatch_each(&stale);
        let root = self.root.clone();
        let plan = plan(self.layout, &root, Folder::root());
        let planned: HashSet<&PathBuf> = plan.dirs.iter().map(|planned| &planned.dir).collect();
        let unreachable: Vec<PathBuf> = self
            .tree
            .paths()
            .filter(|dir| !planned.contains(dir))
            .cloned()
            .collect();
        self.unwatch_each(&unreachable);
        let before = self.tree.take_names();
        let missing = self.apply_plan(plan, report, Some(&before));
        self.settle_budget(missing);
        self.update_counts();
    }

    fn unwatch_each(&mut self, dirs: &[PathBuf]) {
        for dir in dirs {
            if let Some(watched) = self.tree.remove(dir) {
                if let Some(shards) = self.shards.as_mut() {
                    shards.unwatch(watched.shard, dir);
                }
            }
        }
    }

    /// Plans and watches `top` and everything below it; returns how many
    /// directories the watch limit left out.
    fn traverse(&mut self, top: &Path, folder: Folder, report: Report) -> usize {
        let plan = plan(self.layout, top, folder);
        let missing = self.apply_plan(plan, report, None);
        self.update_counts();
        missing
    }

    /// Watches what `plan` lists and is not watched yet, records names and
    /// links, and reports as `report` says. `before` holds the names known
    /// before a whole-tree traversal, to tell which are new.
    fn apply_plan(
        &mut self,
        plan: Plan,
        report: Report,
        before: Option<&HashMap<PathBuf, Vec<Folder>>>,
    ) -> usize {
        self.warn_about(&plan);
        let mut touched: HashSet<PathBuf> = HashSet::new();
        for (link, target) in plan.links {
            self.tree.add_link(link, target);
        }
        let mut requests: Vec<(usize, PathBuf)> = Vec::new();
        let mut roles: Vec<WatchedDir> = Vec::new();
        let mut requested: HashSet<PathBuf> = HashSet::new();
        for planned in plan.dirs {
            let folder_dir = match &planned.role {
                WatchedDir::Mail { folder_dir, .. } => folder_dir.clone(),
                WatchedDir::Folder => planned.dir.clone(),
            };
            if let Some(folder) = planned.folder {
                let known = before.is_some_and(|names| {
                    names
                        .get(&planned.dir)
                        .is_some_and(|names| names.contains(&folder))
                });
                if self.tree.add_name(&planned.dir, folder)
                    && before.is_some()
                    && !known
                    && report == Report::New
                {
                    touched.insert(folder_dir.clone());
                }
            }
            let is_mail = matches!(planned.role, WatchedDir::Mail { .. });
            if self.tree.contains(&planned.dir) {
                if is_mail && report == Report::All {
                    touched.insert(folder_dir);
                }
                continue;
            }
            if requested.insert(planned.dir.clone()) {
                requests.push((Shards::shard_of(&folder_dir), planned.dir));
                roles.push(planned.role);
            }
        }
        let Some(shards) = self.shards.as_mut() else {
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
        let mut failures = Vec::new();
        for (((shard, dir), role), added) in requests.into_iter().zip(roles).zip(results) {
            match added {
                Added::Yes => match Identity::of(&dir) {
                    Some(id) => {
                        if let WatchedDir::Mail { folder_dir, .. } = &role {
                            if report != Report::None {
                                touched.insert(folder_dir.clone());
                            }
                        }
                        self.tree.insert(dir, Watched { id, role, shard });
                    }
                    None => shards.unwatch(shard, &dir),
                },
                Added::Limit => missing += 1,
                Added::Vanished => {}
                Added::Failed(message) => failures.push((dir, message)),
            }
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

    fn warn_about(&mut self, plan: &Plan) {
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

    fn watch_one(&mut self, dir: &Path, role: WatchedDir) -> Added {
        let folder_dir = match &role {
            WatchedDir::Mail { folder_dir, .. } => folder_dir.clone(),
            WatchedDir::Folder => dir.to_path_buf(),
        };
        let shard = Shards::shard_of(&folder_dir);
        let Some(shards) = self.shards.as_mut() else {
            return Added::Vanished;
        };
        let added = shards.watch(shard, dir);
        if let Added::Yes = added {
            match Identity::of(dir) {
                Some(id) => self.tree.insert(dir.to_path_buf(), Watched { id, role, shard }),
                None => shards.unwatch(shard, dir),
            }
        }
        added
    }

    fn settle_budget(&mut self, missing: usize) {
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
    fn lose_root(&mut self) {
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

    fn look_for_root(&mut self) {
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

    fn update_counts(&self) {
        self.stats
            .watches
            .store(self.tree.len() as u64, Ordering::Relaxed);
        self.stats
            .folders
            .store(self.tree.folder_count() as u64, Ordering::Relaxed);
    }
}
