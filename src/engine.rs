//! The watcher engine: inotify watches over one mail store (notify's
//! watchers, see [`WATCHER_SHARDS`]) feeding one engine thread, which turns
//! file-system events into coalesced reports of changed folders. It knows
//! nothing of Emacs, mswatch or Gnus: a [`Sink`] receives the reports.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, unbounded, Receiver, Sender};
use notify::{Config, INotifyWatcher, RecursiveMode, Watcher};

use crate::classify::{self, Classifier, Effect, Tree, WatchedDir};
use crate::coalesce::Coalescer;
use crate::detect::detect_layout;
use crate::naming::{classify_dir, DirRole, Folder, Layout, MailDir};

/// The default coalescing window.
pub const DEFAULT_DELAY: Duration = Duration::from_millis(200);

/// How many queued events are handled before due reports are sent, so a long
/// burst cannot hold reports back.
const MAX_EVENTS_PER_ROUND: usize = 4096;

/// How many inotify instances share the watches. Each `watch` call is a round
/// trip to notify's thread; with one instance the two threads take turns and
/// 30,000 watches take 1.7 s on two cores, with four adding in parallel 0.35 s.
/// A folder's directories all go to one instance.
pub const WATCHER_SHARDS: usize = 4;

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
    WatchLimit {
        root: PathBuf,
        added: usize,
        needed: usize,
    },
    Io(PathBuf, io::Error),
    Notify(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingRoot(path, err) => write!(f, "maildir {} cannot be opened: {err}", path.display()),
            Error::NotADirectory(path) => write!(f, "maildir {} is not a directory", path.display()),
            Error::WatchLimit { root, added, needed } => {
                let limit = read_watch_limit();
                let shown = limit.map_or_else(|| "?".to_string(), |limit| limit.to_string());
                let suggested = limit.map_or(*needed * 2, |limit| (limit + needed).max(limit * 2));
                write!(
                    f,
                    "the inotify watch limit is reached: watching {} needs {needed} watches, only {added} could be added \
                     (fs.inotify.max_user_watches = {shown}); raise it with `sysctl fs.inotify.max_user_watches={suggested}`",
                    root.display()
                )
            }
            Error::Io(path, err) => write!(f, "{}: {err}", path.display()),
            Error::Notify(message) => write!(f, "inotify: {message}"),
        }
    }
}

impl std::error::Error for Error {}

fn read_watch_limit() -> Option<usize> {
    fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// Counters shared with the engine thread.
#[derive(Debug, Default)]
pub struct Stats {
    folders: AtomicU64,
    watches: AtomicU64,
    events_seen: AtomicU64,
    events_ignored: AtomicU64,
    reports: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub folders: u64,
    pub watches: u64,
    pub events_seen: u64,
    pub events_ignored: u64,
    pub reports: u64,
    pub last_error: Option<String>,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            folders: self.folders.load(Ordering::Relaxed),
            watches: self.watches.load(Ordering::Relaxed),
            events_seen: self.events_seen.load(Ordering::Relaxed),
            events_ignored: self.events_ignored.load(Ordering::Relaxed),
            reports: self.reports.load(Ordering::Relaxed),
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
    InjectOverflow,
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
        let root = fs::canonicalize(root).map_err(|err| Error::MissingRoot(root.to_path_buf(), err))?;
        if !root.is_dir() {
            return Err(Error::NotADirectory(root));
        }
        let layout = match options.layout {
            Some(layout) => layout,
            None => detect_layout(&root).map_err(|err| Error::Io(root.clone(), err))?,
        };
        let (fs_tx, fs_rx) = unbounded();
        let mut watchers = Vec::with_capacity(WATCHER_SHARDS);
        for _ in 0..WATCHER_SHARDS {
            let sender = fs_tx.clone();
            let watcher = INotifyWatcher::new(
                move |event| {
                    let _ = sender.send(event);
                },
                Config::default(),
            );
            match watcher {
                Ok(watcher) => watchers.push(watcher),
                Err(err) => {
                    drop(watchers);
                    drop(fs_tx);
                    while fs_rx.recv().is_ok() {}
                    return Err(Error::Notify(err.to_string()));
                }
            }
        }
        drop(fs_tx);
        let stats = Arc::new(Stats::default());
        let max_delay = options.max_delay.unwrap_or(options.delay * 10);
        let mut state = State {
            root: root.clone(),
            layout,
            watchers,
            tree: Dirs::default(),
            classifier: Classifier::default(),
            coalescer: Coalescer::new(options.delay, max_delay),
            report_flags: options.report_flags,
            stats: Arc::clone(&stats),
            sink,
            watch_limit: None,
        };
        state.prewatch(discover(&root, layout));
        // Watch-then-list, for anything made while the bulk watches went in.
        state.walk(&root, Folder::root(), Walk::Initial);
        if let Some(needed) = state.watch_limit {
            let added = state.tree.dirs.len();
            state.shut_down(&fs_rx);
            return Err(Error::WatchLimit { root, added, needed });
        }
        let folders_at_start = state.tree.maildirs();
        let (control, control_rx) = unbounded();
        let thread = thread::Builder::new()
            .name("mailsync-engine".into())
            .spawn(move || state.run(fs_rx, control_rx))
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

    /// Fault injection: behaves exactly as if the kernel's event queue had
    /// overflowed (notify's rescan flag), so every folder is rescanned and
    /// reported once.
    pub fn inject_overflow(&self) {
        let _ = self.control.send(Control::InjectOverflow);
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

/// What the engine knows of the watched directories.
#[derive(Default)]
struct Dirs {
    dirs: HashMap<PathBuf, WatchedDir>,
    folders: HashMap<PathBuf, Folder>,
}

impl Tree for Dirs {
    fn watched(&self, dir: &Path) -> Option<&WatchedDir> {
        self.dirs.get(dir)
    }
}

impl Dirs {
    /// Folders with a watched `new/` or `cur/`, in name order.
    fn maildirs(&self) -> Vec<Folder> {
        let mut found: Vec<Folder> = self
            .dirs
            .values()
            .filter_map(|dir| match dir {
                WatchedDir::Mail { folder_dir, .. } => self.folders.get(folder_dir).cloned(),
                WatchedDir::Folder => None,
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        found.sort();
        found
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Start-up: nothing is reported.
    Initial,
    /// A folder appeared or events were lost: report every maildir found.
    Report,
}

struct State {
    root: PathBuf,
    layout: Layout,
    /// notify's watchers, one inotify instance each; emptied at shut-down.
    watchers: Vec<INotifyWatcher>,
    tree: Dirs,
    classifier: Classifier,
    coalescer: Coalescer<PathBuf>,
    report_flags: bool,
    stats: Arc<Stats>,
    sink: Box<dyn Sink>,
    /// Set to the number of watches needed once the kernel refused one.
    watch_limit: Option<usize>,
}

impl State {
    fn run(mut self, fs_rx: Receiver<notify::Result<notify::Event>>, control_rx: Receiver<Control>) {
        loop {
            let next = match (self.coalescer.next_due(), self.classifier.next_expiry()) {
                (Some(due), Some(expiry)) => Some(due.min(expiry)),
                (due, expiry) => due.or(expiry),
            };
            let timeout = match next {
                Some(at) => crossbeam_channel::at(at),
                None => crossbeam_channel::never(),
            };
            select! {
                recv(control_rx) -> message => match message {
                    Ok(Control::InjectOverflow) => self.on_event(Ok(
                        notify::Event::new(notify::EventKind::Other).set_flag(notify::event::Flag::Rescan),
                    )),
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
                self.apply(effect);
            }
            self.send_due(now);
        }
        self.shut_down(&fs_rx);
    }

    /// Drops the watchers and waits until notify's threads have let go of
    /// their ends of the channel, which they do after closing their descriptors.
    fn shut_down(&mut self, fs_rx: &Receiver<notify::Result<notify::Event>>) {
        self.watchers.clear();
        while fs_rx.recv().is_ok() {}
    }

    fn on_event(&mut self, event: notify::Result<notify::Event>) {
        self.stats.events_seen.fetch_add(1, Ordering::Relaxed);
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                self.warn(format!("inotify error: {err}"));
                return;
            }
        };
        let effects = self
            .classifier
            .classify(&self.tree, classify::from_notify(&event));
        if effects.is_empty() {
            self.stats.events_ignored.fetch_add(1, Ordering::Relaxed);
        }
        for effect in effects {
            self.apply(effect);
        }
    }

    fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::MailChanged(folder_dir) => self.coalescer.touch(folder_dir, Instant::now()),
            Effect::FlagsChanged(folder_dir) if self.report_flags => {
                self.coalescer.touch(folder_dir, Instant::now())
            }
            Effect::FlagsChanged(_) => {
                self.stats.events_ignored.fetch_add(1, Ordering::Relaxed);
            }
            Effect::DirAppeared(path) => self.dir_appeared(path),
            Effect::DirGone(path) => self.drop_tree(&path),
            Effect::Rescan => self.rescan(),
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
            .filter_map(|folder_dir| self.tree.folders.get(&folder_dir).cloned())
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

    fn dir_appeared(&mut self, path: PathBuf) {
        let Some(parent) = path.parent().map(Path::to_path_buf) else {
            return;
        };
        let Some(parent_folder) = self.tree.folders.get(&parent).cloned() else {
            return;
        };
        if !path.is_dir() {
            return;
        }
        let Some(name) = path.file_name() else {
            return;
        };
        match classify_dir(self.layout, &parent_folder, name) {
            DirRole::Folder(folder) => self.walk(&path, folder, Walk::Report),
            DirRole::Mail(which) => {
                self.add_mail_dir(path, parent.clone(), which);
                self.coalescer.touch(parent, Instant::now());
            }
            DirRole::Ignored => {}
        }
        self.report_watch_limit();
    }

    fn rescan(&mut self) {
        let before: HashSet<PathBuf> = self.tree.dirs.keys().cloned().collect();
        let root = self.root.clone();
        self.walk(&root, Folder::root(), Walk::Report);
        for stale in before {
            if !stale.is_dir() {
                self.drop_tree(&stale);
            }
        }
        self.report_watch_limit();
    }

    fn report_watch_limit(&mut self) {
        if let Some(needed) = self.watch_limit.take() {
            let error = Error::WatchLimit {
                root: self.root.clone(),
                added: self.tree.dirs.len(),
                needed,
            };
            self.warn(error.to_string());
        }
    }

    /// Watches `top` (the directory of `folder`) and everything below it that
    /// the layout makes a folder, listing each directory after its watch is
    /// set so that nothing created meanwhile is missed.
    fn walk(&mut self, top: &Path, folder: Folder, walk: Walk) {
        let mut stack = vec![(top.to_path_buf(), folder)];
        while let Some((dir, folder)) = stack.pop() {
            if !self.tree.dirs.contains_key(&dir) {
                if self.watch(&dir, &dir) {
                    self.tree.dirs.insert(dir.clone(), WatchedDir::Folder);
                    self.tree.folders.insert(dir.clone(), folder.clone());
                } else if self.watch_limit.is_none() {
                    continue;
                }
                // Past the watch limit the walk goes on, counting what is needed.
            }
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !is_dir_entry(&entry) {
                    continue;
                }
                let path = entry.path();
                match classify_dir(self.layout, &folder, &entry.file_name()) {
                    DirRole::Folder(child) => stack.push((path, child)),
                    DirRole::Mail(which) => {
                        self.add_mail_dir(path, dir.clone(), which);
                        if walk == Walk::Report {
                            self.coalescer.touch(dir.clone(), Instant::now());
                        }
                    }
                    DirRole::Ignored => {}
                }
            }
        }
        self.update_counts();
    }

    fn add_mail_dir(&mut self, path: PathBuf, folder_dir: PathBuf, which: MailDir) {
        if !self.tree.dirs.contains_key(&path) && self.watch(&path, &folder_dir) {
            self.tree
                .dirs
                .insert(path, WatchedDir::Mail { folder_dir, which });
        }
    }

    /// Adds one inotify watch on `dir`, which belongs to the folder whose
    /// directory is `folder_dir`; false when it could not be added.
    fn watch(&mut self, dir: &Path, folder_dir: &Path) -> bool {
        if let Some(needed) = self.watch_limit.as_mut() {
            *needed += 1;
            return false;
        }
        let shard = shard_of(folder_dir);
        let Some(watcher) = self.watchers.get_mut(shard) else {
            return false;
        };
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => true,
            Err(err) if matches!(err.kind, notify::ErrorKind::MaxFilesWatch) => {
                self.watch_limit = Some(self.tree.dirs.len() + 1);
                false
            }
            // The directory vanished between listing and watching: its
            // parent's event tells the rest.
            Err(_) => false,
        }
    }

    /// Watches what `discover` found, the shards adding in parallel.
    fn prewatch(&mut self, found: Vec<Found>) {
        let mut per_shard: Vec<Vec<Found>> = (0..self.watchers.len()).map(|_| Vec::new()).collect();
        for entry in found {
            per_shard[shard_of(entry.folder_dir())].push(entry);
        }
        let results: Vec<(Vec<Found>, bool)> = thread::scope(|scope| {
            let workers: Vec<_> = self
                .watchers
                .iter_mut()
                .zip(per_shard)
                .map(|(watcher, entries)| {
                    scope.spawn(move || {
                        let mut watched = Vec::with_capacity(entries.len());
                        let mut limit_hit = false;
                        for entry in entries {
                            match watcher.watch(&entry.dir, RecursiveMode::NonRecursive) {
                                Ok(()) => watched.push(entry),
                                Err(err) if matches!(err.kind, notify::ErrorKind::MaxFilesWatch) => {
                                    limit_hit = true;
                                    break;
                                }
                                Err(_) => {}
                            }
                        }
                        (watched, limit_hit)
                    })
                })
                .collect();
            workers
                .into_iter()
                .filter_map(|worker| worker.join().ok())
                .collect()
        });
        let mut limit_hit = false;
        for (watched, shard_hit_limit) in results {
            limit_hit |= shard_hit_limit;
            for entry in watched {
                if let Some(folder) = entry.folder {
                    self.tree.folders.insert(entry.dir.clone(), folder);
                }
                self.tree.dirs.insert(entry.dir, entry.role);
            }
        }
        if limit_hit {
            // The walk that follows counts every directory left unwatched.
            self.watch_limit = Some(self.tree.dirs.len());
        }
        self.update_counts();
    }

    fn drop_tree(&mut self, top: &Path) {
        let gone: Vec<PathBuf> = self
            .tree
            .dirs
            .keys()
            .filter(|dir| dir.starts_with(top))
            .cloned()
            .collect();
        for dir in gone {
            let folder_dir = match self.tree.dirs.get(&dir) {
                Some(WatchedDir::Mail { folder_dir, .. }) => folder_dir.clone(),
                _ => dir.clone(),
            };
            if let Some(watcher) = self.watchers.get_mut(shard_of(&folder_dir)) {
                // Fails harmlessly when the kernel already dropped the watch.
                let _ = watcher.unwatch(&dir);
            }
            self.tree.dirs.remove(&dir);
            self.tree.folders.remove(&dir);
        }
        self.update_counts();
    }

    fn update_counts(&self) {
        self.stats
            .watches
            .store(self.tree.dirs.len() as u64, Ordering::Relaxed);
        self.stats
            .folders
            .store(self.tree.folders.len() as u64, Ordering::Relaxed);
    }
}

/// Whether a listed entry is a directory, from the listing's own file type
/// where it can (no `stat` per entry), following symbolic links.
fn is_dir_entry(entry: &fs::DirEntry) -> bool {
    match entry.file_type() {
        Ok(kind) if kind.is_symlink() => entry.path().is_dir(),
        Ok(kind) => kind.is_dir(),
        Err(_) => entry.path().is_dir(),
    }
}

/// Which watcher holds the directories of the folder whose directory is `folder_dir`.
fn shard_of(folder_dir: &Path) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    folder_dir.hash(&mut hasher);
    (hasher.finish() % WATCHER_SHARDS as u64) as usize
}

/// A directory to watch, found by `discover`.
struct Found {
    dir: PathBuf,
    role: WatchedDir,
    /// The folder, for a folder's own directory.
    folder: Option<Folder>,
}

impl Found {
    fn folder_dir(&self) -> &Path {
        match &self.role {
            WatchedDir::Mail { folder_dir, .. } => folder_dir,
            WatchedDir::Folder => &self.dir,
        }
    }
}

/// Lists, without watching, every directory below `root` that the layout
/// makes a folder, with its `new/` and `cur/`.
fn discover(root: &Path, layout: Layout) -> Vec<Found> {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), Folder::root())];
    while let Some((dir, folder)) = stack.pop() {
        let entries = fs::read_dir(&dir);
        found.push(Found {
            dir: dir.clone(),
            role: WatchedDir::Folder,
            folder: Some(folder.clone()),
        });
        let Ok(entries) = entries else {
            continue;
        };
        for entry in entries.flatten() {
            if !is_dir_entry(&entry) {
                continue;
            }
            let path = entry.path();
            match classify_dir(layout, &folder, &entry.file_name()) {
                DirRole::Folder(child) => stack.push((path, child)),
                DirRole::Mail(which) => found.push(Found {
                    dir: path,
                    role: WatchedDir::Mail {
                        folder_dir: dir.clone(),
                        which,
                    },
                    folder: None,
                }),
                DirRole::Ignored => {}
            }
        }
    }
    found
}
