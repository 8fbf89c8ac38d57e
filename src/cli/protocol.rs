//! The mswatch watcher protocol, shared by `mailsync watch` (a maildir)
//! and `mailsync idle` (an IMAP account): one empty line once everything is
//! watched, then the name of each changed folder on a line of its own; exit
//! 0 when standard input closes (mswatch or ssh went away) or on SIGTERM.

use std::collections::{HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use mailsync::naming::{Folder, NameStyle};
use mailsync::sink::{Sink, SourceError};

use super::check::{CheckArgs, Checker};
use super::exit::{CliError, Status};

/// When `mailsync watch` and `mailsync idle` print a change.
#[derive(clap::Args, Debug)]
pub struct Coalescing {
    /// Coalescing window: changes to one folder within it give one line
    #[arg(long, value_name = "MS", default_value_t = mailsync::engine::DEFAULT_DELAY.as_millis() as u64)]
    delay: u64,
    /// A folder that keeps changing is printed at least this often [default: 10 × delay]
    #[arg(long, value_name = "MS")]
    max_delay: Option<u64>,
    /// Also print folders whose messages only changed flags
    #[arg(long)]
    report_flags: bool,
}

impl Coalescing {
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay)
    }

    pub fn max_delay(&self) -> Option<Duration> {
        self.max_delay.map(Duration::from_millis)
    }

    pub fn report_flags(&self) -> bool {
        self.report_flags
    }
}

/// How `mailsync watch` and `mailsync idle` print folder names.
#[derive(clap::Args, Debug)]
pub struct Printing {
    /// Name printed for the top folder
    #[arg(long, short = 'i', value_name = "NAME", default_value = "INBOX")]
    pub inbox: String,
    /// Separator between levels in printed names [default: the store's: "/" for verbatim, else "."; for an IMAP account, the local store's]
    #[arg(long, value_name = "SEP")]
    pub separator: Option<String>,
}

/// What reaches the protocol's main thread.
pub enum Event {
    Stopped(SourceError),
    Ready(Result<Vec<Folder>, SourceError>),
    Changed(Vec<Folder>),
    Warning(String),
    Info(String),
    /// Standard input reached its end: the reader is gone.
    InputClosed,
    /// Standard output is closed: the reader is gone.
    OutputClosed,
    Quit,
    Rescan,
}

/// A source's sink that hands everything to [`serve`].
pub struct ChannelSink {
    events: Sender<Event>,
    /// Whether Gnus checks the folders found at start-up.
    checks: bool,
}

impl ChannelSink {
    pub fn new(events: Sender<Event>, checks: bool) -> ChannelSink {
        ChannelSink { events, checks }
    }
}

impl Sink for ChannelSink {
    fn ready(&mut self, started: Result<Vec<Folder>, SourceError>) {
        let _ = self.events.send(Event::Ready(started));
    }

    fn wants_folders_at_start(&self) -> bool {
        self.checks
    }

    fn changed(&mut self, folders: Vec<Folder>) {
        let _ = self.events.send(Event::Changed(folders));
    }

    fn warning(&mut self, message: String) {
        let _ = self.events.send(Event::Warning(message));
    }

    fn info(&mut self, message: String) {
        let _ = self.events.send(Event::Info(message));
    }

    fn stopped(&mut self, why: SourceError) {
        let _ = self.events.send(Event::Stopped(why));
    }
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

/// A running source of `serve`'s reports: a maildir's engine or an IMAP
/// account's watch.
pub trait Source {
    /// Reports everything once (SIGUSR1).
    fn rescan(&self);
    fn stop(self);
}

impl Source for mailsync::engine::Engine {
    fn rescan(&self) {
        mailsync::engine::Engine::rescan(self)
    }

    fn stop(self) {
        mailsync::engine::Engine::stop(self)
    }
}

impl Source for mailsync::imap::ImapWatch {
    fn rescan(&self) {
        mailsync::imap::ImapWatch::rescan(self)
    }

    fn stop(self) {
        mailsync::imap::ImapWatch::stop(self)
    }
}

/// `mailsync watch` and `mailsync idle`: starts the source `start` makes
/// (given the sink for its reports), speaks the protocol for it, stops it.
/// Returns the exit status; `main` ends the process, the writer thread too
/// (it may be blocked on a reader that stopped reading).
pub fn run_source<S: Source>(
    command: &'static str,
    check: &CheckArgs,
    start: impl FnOnce(&dyn Fn(NameStyle) -> Box<dyn Sink>) -> Result<(S, NameStyle), CliError>,
) -> Status {
    let (events, events_rx) = unbounded();
    let checks = check.asks_for_checks();
    let (source, style) = match start(&|_| Box::new(ChannelSink::new(events.clone(), checks))) {
        Ok(started) => started,
        Err(err) => return err.report(command),
    };
    let checker = match Checker::from_args(check, check.group_map(style.clone()), true) {
        Ok(checker) => checker.map(Arc::new),
        Err(message) => {
            source.stop();
            return CliError::usage(message).report(command);
        }
    };
    let status = serve(command, (events, events_rx), style, checker, &|| source.rescan());
    source.stop();
    status
}

/// Speaks the protocol for a running source until standard input closes,
/// a signal comes or the source stops for good; `rescan` is SIGUSR1's.
fn serve(
    command: &'static str,
    (events, events_rx): (Sender<Event>, Receiver<Event>),
    style: NameStyle,
    checker: Option<Arc<Checker>>,
    rescan: &dyn Fn(),
) -> Status {
    if let Err(err) = forward_signals(events.clone()) {
        return CliError::new(Status::Failed(1), format!("cannot handle signals: {err}")).report(command);
    }
    // The writer checks and prints; this thread only listens, so signals
    // and a closed standard input end the watcher even while the reader
    // has stopped reading or a check hangs.
    let pending = Arc::new(Pending::default());
    let mut status = Status::Success;
    watch_stdin(events.clone());
    // A reader gone before the watcher is ready still gets the outcome of
    // the first try: the ready line, or the error that stopped it or that
    // it retries after (then it quits instead of retrying for nobody).
    let (mut ready, mut retrying, mut input_closed) = (false, false, false);
    while let Ok(event) = events_rx.recv() {
        match event {
            Event::Ready(Ok(_)) if input_closed => {
                let mut out = io::stdout().lock();
                let _ = writeln!(out).and_then(|()| out.flush());
                break;
            }
            Event::Ready(Ok(folders)) => {
                ready = true;
                let at_start: Vec<Vec<u8>> = folders.iter().map(|folder| folder.name(&style)).collect();
                let (pending, checker, style) = (Arc::clone(&pending), checker.clone(), style.clone());
                let gone = events.clone();
                let writer = thread::Builder::new().name("writer".into()).spawn(move || {
                    write_reports(command, &pending, checker.as_deref(), &style, at_start);
                    let _ = gone.send(Event::OutputClosed);
                });
                if let Err(err) = writer {
                    return CliError::new(Status::Failed(1), format!("cannot start: {err}")).report(command);
                }
            }
            Event::Ready(Err(err)) => return CliError::new(Status::Failed(1), err).report(command),
            Event::Stopped(err) => {
                status = CliError::new(Status::Failed(1), err).report(command);
                break;
            }
            Event::Changed(folders) => pending.add(folders),
            Event::Warning(message) => {
                eprintln!("mailsync {command}: {message}");
                if !ready && input_closed {
                    break;
                }
                retrying |= !ready;
            }
            Event::Info(message) => eprintln!("mailsync {command}: {message}"),
            Event::InputClosed if ready || retrying => break,
            Event::InputClosed => input_closed = true,
            Event::OutputClosed => {
                status = Status::Failed(1);
                break;
            }
            Event::Rescan => rescan(),
            Event::Quit => break,
        }
    }
    if let Some(checker) = &checker {
        checker.abort();
    }
    status
}

/// The writer thread: the start-up check, the ready line, then each batch
/// of folders checked and printed. Returns when the reader is gone.
fn write_reports(
    command: &str,
    pending: &Pending,
    checker: Option<&Checker>,
    style: &NameStyle,
    at_start: Vec<Vec<u8>>,
) {
    if let Some(checker) = checker {
        check(command, checker, &at_start);
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if writeln!(out).and_then(|()| out.flush()).is_err() {
        return;
    }
    loop {
        let folders = pending.take();
        if folders.is_empty() {
            continue;
        }
        if let Some(checker) = checker {
            let names: Vec<Vec<u8>> = folders.iter().map(|folder| folder.name(style)).collect();
            check(command, checker, &names);
        }
        if print_folders(command, &mut out, &folders, style).is_err() {
            // mswatch is gone: nobody is left to tell.
            return;
        }
    }
}

/// Asks Emacs to check the groups of `names`; a failure is logged and the
/// names are printed all the same, so mswatch misses nothing.
fn check(command: &str, checker: &Checker, names: &[Vec<u8>]) {
    if let Err(failure) = checker.check(Some(names)) {
        eprintln!("mailsync {command}: Gnus check failed: {}", failure.message);
    }
}

fn print_folders(
    command: &str,
    out: &mut impl Write,
    folders: &[Folder],
    style: &NameStyle,
) -> io::Result<()> {
    for folder in folders {
        let name = folder.name(style);
        if name.contains(&b'\n') {
            eprintln!(
                "mailsync {}: folder {:?} has a newline in its name, which the mswatch protocol cannot carry; not printed",
                command,
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
        let _ = events.send(Event::InputClosed);
    });
}
