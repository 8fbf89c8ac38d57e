//! The two stores' watchers. `mailsync watch …` and `mailsync idle …` run
//! inside this process, on the engine and the IMAP watch; any other
//! command runs as a child speaking mswatch's protocol (one empty line
//! when it watches, then one mailbox per line), as mswatch runs it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use mailsync::engine::Engine;
use mailsync::imap::ImapWatch;
use mailsync::naming::{Folder, NameStyle};
use mailsync::sink::{Sink, SourceError};

use super::Event;
use crate::cli::{idle, watch, WatcherCommand};

/// What a watcher tells the run.
#[derive(Debug)]
pub enum Report {
    /// It watches everything now.
    Ready,
    Changed(Vec<u8>),
    Warning(String),
    /// It stopped, and why: it is started again.
    Ended(String),
    /// It stopped for good (a login refused, a certificate not trusted):
    /// starting it again cannot mend it.
    Failed(String),
}

/// A running watcher.
pub enum Watcher {
    Maildir {
        engine: Engine,
        /// How the store names its folders.
        style: NameStyle,
        folders: Folders,
        delay: Duration,
    },
    Imap {
        watch: ImapWatch,
        folders: Folders,
        delay: Duration,
    },
    Child(Child),
}

/// The folder each name an in-process source reported stands for (a name
/// alone can be ambiguous: "INBOX" is the root of one layout and a folder
/// of another).
#[derive(Clone, Default)]
pub struct Folders(Arc<Mutex<HashMap<Vec<u8>, Folder>>>);

impl Folders {
    fn remember(&self, name: &[u8], folder: &Folder) {
        if let Ok(mut folders) = self.0.lock() {
            folders.insert(name.to_vec(), folder.clone());
        }
    }

    fn get(&self, name: &[u8]) -> Option<Folder> {
        self.0.lock().ok()?.get(name).cloned()
    }
}

/// Hands an in-process source's news to the run, as the store's mailbox names.
struct StoreSink {
    store: usize,
    /// Its source stops only for good (an IMAP account: a failure it
    /// could retry, it retries itself).
    lasting: bool,
    style: NameStyle,
    folders: Folders,
    events: Sender<Event>,
}

impl StoreSink {
    fn send(&self, report: Report) {
        let _ = self.events.send(Event::Watcher(self.store, report));
    }
}

impl Sink for StoreSink {
    fn ready(&mut self, started: Result<Vec<Folder>, SourceError>) {
        match started {
            Ok(_) => self.send(Report::Ready),
            Err(err) => self.stopped(err),
        }
    }

    fn wants_folders_at_start(&self) -> bool {
        false
    }

    fn changed(&mut self, folders: Vec<Folder>) {
        for folder in folders {
            let name = folder.name(&self.style);
            self.folders.remember(&name, &folder);
            self.send(Report::Changed(name));
        }
    }

    fn warning(&mut self, message: String) {
        self.send(Report::Warning(message));
    }

    fn stopped(&mut self, why: SourceError) {
        self.send(match self.lasting {
            true => Report::Failed(why.to_string()),
            false => Report::Ended(why.to_string()),
        });
    }
}

impl Watcher {
    /// Starts store `store`'s `command`. An in-process command whose flags
    /// do not parse is an error here, as it would be for mswatch's child.
    pub fn start(store: usize, command: &[String], events: &Sender<Event>) -> Result<Watcher, String> {
        let folders = Folders::default();
        let sink = |style: NameStyle, lasting: bool| StoreSink {
            store,
            lasting,
            style,
            folders: folders.clone(),
            events: events.clone(),
        };
        match WatcherCommand::parse(command)? {
            Some(WatcherCommand::Watch(args)) => {
                let (engine, style) =
                    watch::start(&args, &|style| Box::new(sink(style, false))).map_err(|err| err.message)?;
                Ok(Watcher::Maildir {
                    engine,
                    style,
                    folders,
                    delay: args.coalescing.delay(),
                })
            }
            Some(WatcherCommand::Idle(args)) => {
                let (watch, _) =
                    idle::start(&args, &|style| Box::new(sink(style, true))).map_err(|err| err.message)?;
                Ok(Watcher::Imap {
                    watch,
                    folders,
                    delay: args.coalescing.delay(),
                })
            }
            None => start_child(store, command, events),
        }
    }

    /// How long after a change its report may come: its coalescing
    /// window, and for a server its own delay before it tells (Dovecot:
    /// 0.2–0.5 s). Zero for a child: its reports are never explained.
    pub fn settle_time(&self) -> Duration {
        match self {
            Watcher::Maildir { delay, .. } => *delay + Duration::from_millis(100),
            Watcher::Imap { delay, .. } => *delay + Duration::from_millis(1000),
            Watcher::Child(_) => Duration::ZERO,
        }
    }

    /// The message files of `mailbox` in this (maildir) store, None when
    /// it is not an in-process maildir, has not reported the mailbox, or
    /// the folder cannot be read.
    pub fn message_files(&self, mailbox: &[u8]) -> Option<Vec<OsString>> {
        let Watcher::Maildir { engine, folders, .. } = self else {
            return None;
        };
        let folder = folders.get(mailbox)?;
        let dir: PathBuf = engine.root().join(folder.relative_dir(engine.layout()));
        let mut files = Vec::new();
        for sub in ["cur", "new"] {
            for entry in fs::read_dir(dir.join(sub)).ok()? {
                let name = entry.ok()?.file_name();
                if !name.as_encoded_bytes().starts_with(b".") {
                    files.push(name);
                }
            }
        }
        files.sort();
        Some(files)
    }

    /// How many messages the server holds in `mailbox` (an IMAP watcher).
    pub fn server_messages(&self, mailbox: &[u8]) -> Option<u32> {
        let Watcher::Imap { watch, folders, .. } = self else {
            return None;
        };
        watch.messages(&folders.get(mailbox)?)
    }

    /// Stops it: threads joined, or the child told (its input closed,
    /// then SIGTERM) and waited for.
    pub fn stop(self) {
        match self {
            Watcher::Maildir { engine, .. } => engine.stop(),
            Watcher::Imap { watch, .. } => watch.stop(),
            Watcher::Child(mut child) => {
                drop(child.stdin.take());
                // SAFETY: kill has no pointer arguments.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(3);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn start_child(store: usize, command: &[String], events: &Sender<Event>) -> Result<Watcher, String> {
    let (program, args) = command.split_first().ok_or("the watch command is empty")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|err| format!("cannot run {program}: {err}"))?;
    let stdout = child.stdout.take().ok_or("no output from the watcher")?;
    let events = events.clone();
    thread::Builder::new()
        .name(format!("watcher-{store}"))
        .spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut ready = false;
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                let report = if line.is_empty() {
                    if ready {
                        continue;
                    }
                    ready = true;
                    Report::Ready
                } else {
                    Report::Changed(line)
                };
                if events.send(Event::Watcher(store, report)).is_err() {
                    return;
                }
            }
            let _ = events.send(Event::Watcher(
                store,
                Report::Ended("it closed its output".into()),
            ));
        })
        .map_err(|err| format!("cannot start: {err}"))?;
    Ok(Watcher::Child(child))
}
