//! The watcher engine: inotify watches over one mail store ([`shards`])
//! feeding one engine thread, which turns file-system events into coalesced
//! reports of changed folders. It knows nothing of Emacs, mswatch or Gnus: a
//! [`Sink`] receives the reports.
//!
//! Threads: the engine's own, plus one per inotify instance (notify's).
//!
//! Whatever happens on disk, the watched set converges to what is there:
//! - new folders are traversed ([`plan`]) and watched, then listed once more
//!   to catch what appeared meanwhile; a Maildir++ or nnmaildir folder, which
//!   cannot hold folders, through its `new/` and `cur/` only, its own
//!   directory watched too once one of them goes;
//! - a folder that goes takes its own subtree with it ([`tree`]); one
//!   removed and made again is watched anew, and the old directories' late
//!   events are not taken for the new ones' ([`retired`]);
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

mod classify;
mod converge;
mod error;
mod plan;
mod retired;
mod shards;
mod state;
mod stats;
mod tree;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{unbounded, Sender};

use crate::coalesce::Coalescer;
use crate::detect::detect_layout;
use crate::engine::classify::Classifier;
use crate::naming::Layout;
pub use crate::sink::{Sink, SourceError};

pub use error::Error;
use retired::Retired;
pub use shards::SHARDS;
use shards::{Shards, WatchBudget};
use state::State;
pub use stats::{Stats, StatsSnapshot};
use tree::Dirs;

/// The default coalescing window.
pub const DEFAULT_DELAY: Duration = Duration::from_millis(200);

/// How many queued events are handled before due reports are sent, so a long
/// burst cannot hold reports back.
const MAX_EVENTS_PER_ROUND: usize = 4096;

/// With a coalescing delay of at least ten times this, the engine lets the
/// events of a burst gather this long after the first one wakes it, so a
/// burst costs it one wake-up per batch, not one per event; a report is at
/// most this much later.
const EVENT_BATCH: Duration = Duration::from_millis(2);

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

pub(crate) enum Control {
    Stop,
    Rescan,
}

/// A running watch over one mail store. Dropping it stops the thread.
pub struct Engine {
    root: PathBuf,
    layout: Layout,
    stats: Arc<Stats>,
    control: Sender<Control>,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Watches every folder below `root`. Returns at once, once the root is
    /// found and the inotify instances are made: the watches are set on the
    /// engine's thread, which then calls [`Sink::ready`].
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
        let mut state = State {
            given_root,
            root: root.clone(),
            layout,
            shards: Some(shards),
            tree: Dirs::default(),
            retired: Retired::default(),
            classifier: Classifier::default(),
            coalescer: Coalescer::with_bound(options.delay, options.max_delay),
            report_flags: options.report_flags,
            stats: Arc::clone(&stats),
            sink,
            budget: WatchBudget::default(),
            root_missing: false,
            warned: HashSet::new(),
        };
        let (control, control_rx) = unbounded();
        let thread = thread::Builder::new()
            .name("mailsync-engine".into())
            .spawn(move || {
                if state.start_up() {
                    state.run(control_rx);
                }
            })
            .map_err(|err| Error::Io(PathBuf::from("<thread>"), err))?;
        Ok(Engine {
            root,
            layout,
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
