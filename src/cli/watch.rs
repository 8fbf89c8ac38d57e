//! `mailsync watch`: the mswatch watcher protocol on standard output, a
//! drop-in for mswatch's `watch_maildirs`.
//!
//! It prints one empty line once every folder is watched, then the name of
//! each changed folder on a line of its own. Unlike `watch_maildirs` it keeps
//! running when folders are created, deleted or renamed, and it exits 0 when
//! its standard input closes (so no `inputkill` is needed over ssh) or on
//! SIGTERM. SIGUSR1 rescans the whole store and reports every folder once.

use std::collections::{HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use clap::Args;
use crossbeam_channel::{unbounded, Sender};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use mailsync::engine::{Engine, Error, Options, Sink};
use mailsync::naming::{Folder, Layout, NameStyle};

use super::check::{CheckArgs, Checker};
use super::status::{CliError, Status};

#[derive(Args, Debug)]
#[command(
    about = "Watch a maildir and print changed folders (mswatch's watch_maildirs protocol)",
    after_help = "Examples:\n  \
        mailsync watch                         # ~/Maildir (or $MAILDIR), layout detected\n  \
        mailsync watch --maildir ~/Mail --layout verbatim --delay 500\n  \
        mailsync watch --check-local --server nnimap+local   # Gnus checks before each line\n\n\
        In ~/.mswatchrc:\n  \
        store local\n  {\n  watch mailsync watch --maildir /home/me/Maildir\n  }"
)]
pub struct WatchArgs {
    /// The mail store to watch [default: $MAILDIR, else ~/Maildir]
    #[arg(long, short = 'm', value_name = "DIR")]
    maildir: Option<PathBuf>,
    /// Folder layout: maildir++, verbatim or nnmaildir [default: detected]
    #[arg(long, value_name = "LAYOUT")]
    layout: Option<Layout>,
    /// Coalescing window: changes to one folder within it give one line
    #[arg(long, value_name = "MS", default_value_t = 200)]
    delay: u64,
    /// A folder that keeps changing is printed at least this often [default: 10 × delay]
    #[arg(long, value_name = "MS")]
    max_delay: Option<u64>,
    /// Name printed for the root folder
    #[arg(long, short = 'i', value_name = "NAME", default_value = "INBOX")]
    inbox: String,
    /// Separator between levels [default: "." for maildir++, "/" for verbatim]
    #[arg(long, value_name = "SEP")]
    separator: Option<String>,
    /// Also print folders whose messages only changed flags
    #[arg(long)]
    report_flags: bool,
    #[command(flatten)]
    check: CheckArgs,
}

enum Event {
    Ready(Result<Vec<Folder>, Error>),
    Changed(Vec<Folder>),
    Warning(String),
    Quit,
    Rescan,
}

struct ChannelSink(Sender<Event>);

impl Sink for ChannelSink {
    fn ready(&mut self, started: Result<Vec<Folder>, Error>) {
        let _ = self.0.send(Event::Ready(started));
    }

    fn changed(&mut self, folders: Vec<Folder>) {
        let _ = self.0.send(Event::Changed(folders));
    }

    fn warning(&mut self, message: String) {
        let _ = self.0.send(Event::Warning(message));
    }
}

fn default_maildir() -> PathBuf {
    if let Some(maildir) = std::env::var_os("MAILDIR").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(maildir);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join("Maildir")
}

/// Folders waiting to be printed, each once, oldest first: however long
/// the reader stops reading, this holds at most one entry per folder.
#[derive(Default)]
struct Pending {
    queue: Mutex<(VecDeque<Folder>, HashSet<Folder>)>,
    ready: Condvar,
}

impl Pending {
    fn add(&self, folders: Vec<Folder>) {
        if let Ok(mut guard) = self.queue.lock() {
            let (queue, queued) = &mut *guard;
            for folder in folders {
                if queued.insert(folder.clone()) {
                    queue.push_back(folder);
                }
            }
            self.ready.notify_one();
        }
    }

    /// Waits for folders and takes them all.
    fn take(&self) -> Vec<Folder> {
        let Ok(mut guard) = self.queue.lock() else {
            return Vec::new();
        };
        while guard.0.is_empty() {
            guard = match self.ready.wait(guard) {
                Ok(guard) => guard,
                Err(_) => return Vec::new(),
            };
        }
        guard.1.clear();
        guard.0.drain(..).collect()
    }
}

pub fn run(args: WatchArgs) -> Status {
    let maildir = args.maildir.clone().unwrap_or_else(default_maildir);
    let (events, events_rx) = unbounded();
    let options = Options {
        layout: args.layout,
        delay: Duration::from_millis(args.delay),
        max_delay: args.max_delay.map(Duration::from_millis),
        report_flags: args.report_flags,
    };
    let engine = match Engine::start(&maildir, options, Box::new(ChannelSink(events.clone()))) {
        Ok(engine) => engine,
        Err(err) => return CliError::new(Status::Failed(1), err).report("watch"),
    };
    let style = NameStyle::new(
        args.inbox,
        args.separator
            .unwrap_or_else(|| engine.layout().default_separator().to_string()),
    );
    let group_map = args.check.group_map(style.clone());
    let checker = match Checker::from_args(&args.check, group_map, true) {
        Ok(checker) => checker.map(Arc::new),
        Err(message) => return CliError::usage(message).report("watch"),
    };
    if let Err(err) = forward_signals(events.clone()) {
        return CliError::new(Status::Failed(1), format!("cannot handle signals: {err}")).report("watch");
    }

    // The writer checks and prints; this thread only listens, so signals
    // and a closed standard input end the watcher even while the reader
    // has stopped reading or a check hangs.
    let pending = Arc::new(Pending::default());
    while let Ok(event) = events_rx.recv() {
        match event {
            Event::Ready(Ok(folders)) => {
                // Only now: a reader gone before the watcher is ready still
                // gets the ready line, or the error that stopped it.
                watch_stdin(events.clone());
                let at_start: Vec<Vec<u8>> = folders.iter().map(|folder| folder.name(&style)).collect();
                let (pending, checker, style) = (Arc::clone(&pending), checker.clone(), style.clone());
                let writer = thread::Builder::new()
                    .name("writer".into())
                    .spawn(move || write_reports(&pending, checker.as_deref(), &style, at_start));
                if let Err(err) = writer {
                    return CliError::new(Status::Failed(1), format!("cannot start: {err}")).report("watch");
                }
            }
            Event::Ready(Err(err)) => return CliError::new(Status::Failed(1), err).report("watch"),
            Event::Changed(folders) => pending.add(folders),
            Event::Warning(message) => eprintln!("mailsync watch: {message}"),
            Event::Rescan => engine.rescan(),
            Event::Quit => break,
        }
    }
    if let Some(checker) = &checker {
        checker.abort();
    }
    engine.stop();
    // The writer may be blocked on a reader that stopped reading: do not wait for it.
    std::process::exit(Status::Success.code())
}

/// The writer thread: the start-up check, the ready line, then each batch
/// of folders checked and printed. Exits the process when the reader is gone.
fn write_reports(pending: &Pending, checker: Option<&Checker>, style: &NameStyle, at_start: Vec<Vec<u8>>) {
    if let Some(checker) = checker {
        check(checker, &at_start);
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if writeln!(out).and_then(|()| out.flush()).is_err() {
        std::process::exit(Status::Failed(1).code());
    }
    loop {
        let folders = pending.take();
        if folders.is_empty() {
            continue;
        }
        if let Some(checker) = checker {
            let names: Vec<Vec<u8>> = folders.iter().map(|folder| folder.name(style)).collect();
            check(checker, &names);
        }
        if print_folders(&mut out, &folders, style).is_err() {
            // mswatch is gone: nobody is left to tell.
            std::process::exit(Status::Failed(1).code());
        }
    }
}

/// Asks Emacs to check the groups of `names`; a failure is logged and the
/// names are printed all the same, so mswatch misses nothing.
fn check(checker: &Checker, names: &[Vec<u8>]) {
    if let Err(failure) = checker.check(Some(names)) {
        eprintln!("mailsync watch: Gnus check failed: {}", failure.message);
    }
}

fn print_folders(out: &mut impl Write, folders: &[Folder], style: &NameStyle) -> io::Result<()> {
    for folder in folders {
        let name = folder.name(style);
        if name.contains(&b'\n') {
            eprintln!(
                "mailsync watch: folder {:?} has a newline in its name, which the mswatch protocol cannot carry; not printed",
                String::from_utf8_lossy(&name)
            );
            continue;
        }
        out.write_all(&name)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

fn forward_signals(events: Sender<Event>) -> io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])?;
    thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            let event = if signal == SIGUSR1 {
                Event::Rescan
            } else {
                Event::Quit
            };
            if events.send(event).is_err() {
                break;
            }
        }
    })?;
    Ok(())
}

/// Quits when standard input reaches its end (mswatch or ssh went away).
fn watch_stdin(events: Sender<Event>) {
    let _ = thread::Builder::new().name("stdin".into()).spawn(move || {
        let mut buffer = [0u8; 512];
        let mut stdin = io::stdin();
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = events.send(Event::Quit);
    });
}
