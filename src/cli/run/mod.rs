//! `mailsync run`: mswatch's loop, built in. It reads an mswatch
//! configuration, runs the two stores' watchers (`mailsync watch` and
//! `mailsync idle` in this process), and runs the sync program when
//! mailboxes change, by mswatch's timing rules (see
//! [`mailsync::mswatch::schedule`]) and with one sync per change: what a
//! sync writes into either store does not make it run again.

mod syncer;
mod watchers;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use crossbeam_channel::{unbounded, RecvTimeoutError, Sender};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use mailsync::mswatch::config::Config;
use mailsync::mswatch::schedule::{Schedule, Target, Timing, Why};
use mailsync::naming::NameStyle;
use mailsync::wake::{Stop, Waker, Woken};

use super::check::{CheckArgs, Checker};
use super::status::{CliError, Status};
use watchers::{Report, Watcher};

#[derive(Args, Debug)]
#[command(
    about = "Run an mswatch configuration without mswatch: watch both stores, sync what changed",
    after_help = "Reads ~/.mswatchrc (or --config) as mswatch 1.2 does; times may be fractional.\n\
        Watchers that are `mailsync watch …` or `mailsync idle …` run inside this process.\n\
        SIGUSR1 prints what waits for a sync; SIGINT and SIGTERM end it (a running sync\n\
        gets SIGTERM and is waited for).\n\n\
        Examples:\n  \
        mailsync run                            # ~/.mswatchrc\n  \
        mailsync run --config ~/.mswatchrc-work --check-local --server nnimap+work"
)]
pub struct RunArgs {
    /// The mswatch configuration [default: ~/.mswatchrc]
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Watch the stores, but print the syncs instead of running them
    #[arg(long, short = 'd')]
    dry: bool,
    /// Print no success messages
    #[arg(long, short = 'q')]
    quiet: bool,
    #[command(flatten)]
    check: CheckArgs,
}

/// What reaches the run's loop.
pub enum Event {
    Watcher(usize, Report),
    /// The sync program ended.
    SyncEnded(Status),
    /// The Gnus check after a sync failed, and why.
    CheckFailed(String),
    Signal(i32),
    ClockJumped,
}

/// A line on standard output, with the local time.
fn say(message: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{} {message}", timestamp());
    let _ = out.flush();
}

fn timestamp() -> String {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let mut local: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both point to valid structures of the right types.
    unsafe {
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut now);
        libc::localtime_r(&now.tv_sec, &mut local);
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        local.tm_year + 1900,
        local.tm_mon + 1,
        local.tm_mday,
        local.tm_hour,
        local.tm_min,
        local.tm_sec,
        now.tv_nsec / 1_000_000
    )
}

fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// One store: its watcher, and when a stopped one starts again.
struct Store {
    name: String,
    command: Vec<String>,
    watcher: Option<Watcher>,
    ready: bool,
    restart_at: Option<Instant>,
    backoff: Duration,
}

const FIRST_RESTART: Duration = Duration::from_secs(1);

pub fn run(args: RunArgs) -> Status {
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".mswatchrc"));
    let config = match fs::read_to_string(&path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))
        .and_then(|text| Config::parse(&text).map_err(|err| format!("{}: {err}", path.display())))
    {
        Ok(config) => config,
        Err(message) => return CliError::usage(message).report("run"),
    };
    let (events, events_rx) = unbounded();
    if let Err(err) = forward_signals(&events) {
        return CliError::new(Status::Failed(1), format!("cannot handle signals: {err}")).report("run");
    }
    if let Err(err) = watch_clock(&events) {
        return CliError::new(Status::Failed(1), format!("cannot watch the clock: {err}")).report("run");
    }
    let mut stores: Vec<Store> = config
        .stores
        .iter()
        .map(|store| Store {
            name: store.name.clone(),
            command: store.watch.clone(),
            watcher: None,
            ready: false,
            restart_at: None,
            backoff: FIRST_RESTART,
        })
        .collect();
    for (index, store) in stores.iter_mut().enumerate() {
        match Watcher::start(index, &store.command, &events) {
            Ok(watcher) => store.watcher = Some(watcher),
            Err(message) => {
                return CliError::new(Status::Failed(1), format!("store {}: {message}", store.name))
                    .report("run")
            }
        }
    }
    // The local style for checks: the first in-process maildir's, else ".".
    let style = stores
        .iter()
        .find_map(|store| match &store.watcher {
            Some(Watcher::Maildir { style, .. }) => Some(style.clone()),
            _ => None,
        })
        .unwrap_or_else(|| NameStyle::new("INBOX", "."));
    let checker = match Checker::from_args(&args.check, args.check.group_map(style), false) {
        Ok(checker) => checker.map(Arc::new),
        Err(message) => return CliError::usage(message).report("run"),
    };
    let settle = |index: usize| {
        stores[index]
            .watcher
            .as_ref()
            .map_or(Duration::ZERO, Watcher::settle_time)
    };
    let timing = Timing {
        base_delay: config.base_delay,
        inter_delay: config.inter_delay,
        inter_delays: config
            .inter_delays
            .iter()
            .map(|(name, delay)| (name.as_bytes().to_vec(), *delay))
            .collect(),
        max_delay: config.max_delay,
        poll_period: config.poll_period,
        ignore: config
            .ignore
            .iter()
            .map(|name| name.as_bytes().to_vec())
            .collect(),
        settle: [settle(0), settle(1)],
    };
    let mut schedule = Schedule::new(timing, Instant::now());
    let mut started = false;
    let mut sync: Option<(syncer::Running, Target)> = None;
    let mut stopping = false;
    let mut snapshots: HashMap<(usize, Vec<u8>), Vec<OsString>> = HashMap::new();
    loop {
        let restart = stores.iter().filter_map(|store| store.restart_at).min();
        let deadline = [schedule.next_wakeup(), restart].into_iter().flatten().min();
        let event = match deadline {
            Some(deadline) => events_rx.recv_deadline(deadline),
            None => events_rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let now = Instant::now();
        match event {
            Ok(Event::Watcher(index, report)) => {
                let store = &mut stores[index];
                match report {
                    Report::Ready => {
                        store.ready = true;
                        store.backoff = FIRST_RESTART;
                        if started {
                            say(&format!(
                                "store {}: watching again; syncing everything",
                                store.name
                            ));
                            schedule.sync_all(now, Why::WatcherBack(index));
                        } else if stores.iter().all(|store| store.ready) {
                            started = true;
                            if !args.quiet {
                                say("both stores watched; syncing everything");
                            }
                            schedule.sync_all(now, Why::Start);
                        }
                    }
                    Report::Changed(mailbox) => {
                        if started {
                            schedule.change(now, index, &mailbox);
                        }
                    }
                    Report::Warning(message) => say(&format!("store {}: {message}", store.name)),
                    Report::Ended(why) => {
                        if let Some(watcher) = store.watcher.take() {
                            watcher.stop();
                        }
                        store.ready = false;
                        say(&format!(
                            "store {}: its watcher stopped ({why}); starting it again in {:.0} s",
                            store.name,
                            store.backoff.as_secs_f64()
                        ));
                        store.restart_at = Some(now + store.backoff);
                        store.backoff = (store.backoff * 2).min(config.max_delay.max(FIRST_RESTART));
                    }
                }
            }
            Ok(Event::SyncEnded(status)) => {
                let Some((running, target)) = sync.take() else {
                    continue;
                };
                let took = now.duration_since(running.started).as_secs_f64();
                let what = describe(&target, &config);
                if status.is_success() {
                    if !args.quiet {
                        say(&format!("sync {what}: done in {took:.2} s"));
                    }
                    // What the sync left in the local store, to tell its own
                    // late reports from changes made after it.
                    let mailboxes = match &target {
                        Target::Mailboxes(list) => list.clone(),
                        Target::All => schedule.held(),
                    };
                    for mailbox in mailboxes {
                        for (index, store) in stores.iter().enumerate() {
                            if let Some(files) =
                                store.watcher.as_ref().and_then(|w| w.message_files(&mailbox))
                            {
                                snapshots.insert((index, mailbox.clone()), files);
                            }
                        }
                    }
                } else {
                    say(&format!("sync {what}: failed ({status}) after {took:.2} s"));
                }
                schedule.ended(now, status.is_success());
                if stopping {
                    break;
                }
            }
            Ok(Event::CheckFailed(message)) => say(&format!("Gnus check after a sync failed: {message}")),
            Ok(Event::Signal(SIGUSR1)) => {
                let waiting = schedule.waiting(now, &|index| stores[index].name.clone());
                if waiting.is_empty() {
                    say("nothing waits for a sync");
                }
                for line in waiting {
                    say(&format!("waiting: {line}"));
                }
            }
            Ok(Event::Signal(_)) => match &sync {
                Some((running, _)) => {
                    say("stopping: waiting for the running sync to end");
                    running.terminate();
                    stopping = true;
                }
                None => break,
            },
            Ok(Event::ClockJumped) => {
                say("the clock jumped or the machine resumed; syncing everything");
                schedule.sync_all(now, Why::ClockJumped);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if stopping {
            continue;
        }
        for (index, store) in stores.iter_mut().enumerate() {
            if store.restart_at.is_some_and(|at| at <= now) {
                store.restart_at = None;
                match Watcher::start(index, &store.command, &events) {
                    Ok(watcher) => store.watcher = Some(watcher),
                    Err(message) => {
                        let _ = events.send(Event::Watcher(index, Report::Ended(message)));
                    }
                }
            }
        }
        let settled = schedule.settle(now, &mut |store, mailbox| {
            let snapshot = snapshots.remove(&(store, mailbox.to_vec()));
            explained(&stores, store, mailbox, snapshot)
        });
        for mailbox in settled.queued {
            if !args.quiet {
                say(&format!(
                    "{}: changed during or just after its sync, not by it; syncing it again",
                    lossy(&mailbox)
                ));
            }
        }
        if sync.is_none() && started {
            if let Some(target) = schedule.start(now) {
                let what = describe(&target, &config);
                if args.dry {
                    say(&format!("would sync {what}"));
                    schedule.ended(now, true);
                    continue;
                }
                let arguments = arguments(&target, &config);
                let check = checker.as_ref().map(|checker| {
                    let mailboxes = match &target {
                        Target::All => None,
                        Target::Mailboxes(list) => Some(list.clone()),
                    };
                    (Arc::clone(checker), mailboxes)
                });
                match syncer::start(&config.sync, arguments, check, &events) {
                    Ok(running) => sync = Some((running, target)),
                    Err(message) => {
                        say(&format!("sync {what}: {message}"));
                        schedule.ended(now, false);
                    }
                }
            }
        }
    }
    for store in stores {
        if let Some(watcher) = store.watcher {
            watcher.stop();
        }
    }
    Status::Success
}

/// The sync program's arguments for `target`, as mswatch appends them.
fn arguments(target: &Target, config: &Config) -> Vec<OsString> {
    let prefixed = |name: &[u8]| -> OsString {
        let mut argument = Vec::new();
        if let Some((prefix, separator)) = &config.mailbox_prefix {
            argument.extend_from_slice(prefix.as_bytes());
            argument.extend_from_slice(separator.as_bytes());
        }
        argument.extend_from_slice(name);
        OsString::from_vec(argument)
    };
    match target {
        Target::All => config
            .mailbox_prefix
            .iter()
            .map(|(prefix, _)| OsString::from(prefix))
            .collect(),
        Target::Mailboxes(list) => list.iter().map(|name| prefixed(name)).collect(),
    }
}

fn describe(target: &Target, config: &Config) -> String {
    match target {
        Target::All => match &config.mailbox_prefix {
            Some((prefix, _)) => format!("{prefix} (everything)"),
            None => "everything".into(),
        },
        Target::Mailboxes(list) => list.iter().map(|name| lossy(name)).collect::<Vec<_>>().join(" "),
    }
}

/// Whether store `store`'s report of `mailbox`, made during a successful
/// sync of it (or just after), is that sync's own doing:
/// - from a maildir watched here: the folder's message files are still
///   what the sync left (`snapshot`, taken when it ended: nobody changed
///   it since), and every one carries a sync program's UID mark (`,U=`:
///   mbsync and OfflineIMAP put it in the names of the files they keep in
///   step; a file without it is a message no sync has carried yet);
/// - from a server watched here: it holds as many messages as the local
///   folder (watched here too), so nothing arrived that the sync did not
///   carry;
/// - from a child watcher: never (mswatch's behaviour: it syncs again).
fn explained(stores: &[Store], store: usize, mailbox: &[u8], snapshot: Option<Vec<OsString>>) -> bool {
    let marked = |file: &OsString| file.as_encoded_bytes().windows(3).any(|part| part == b",U=");
    match stores[store].watcher.as_ref() {
        Some(watcher @ Watcher::Maildir { .. }) => match (watcher.message_files(mailbox), snapshot) {
            (Some(files), Some(left)) => files == left && files.iter().all(marked),
            _ => false,
        },
        Some(watcher @ Watcher::Imap { .. }) => {
            let local = stores
                .iter()
                .filter_map(|store| store.watcher.as_ref())
                .find_map(|watcher| watcher.message_files(mailbox));
            match (watcher.server_messages(mailbox), local) {
                (Some(remote), Some(files)) => remote as usize == files.len(),
                _ => false,
            }
        }
        _ => false,
    }
}

fn forward_signals(events: &Sender<Event>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGUSR1, SIGINT, SIGTERM])?;
    let events = events.clone();
    thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            if events.send(Event::Signal(signal)).is_err() {
                return;
            }
        }
    })?;
    Ok(())
}

/// A thread that says when the clock is set or the machine resumes.
fn watch_clock(events: &Sender<Event>) -> std::io::Result<()> {
    let mut waker = Waker::new(Stop::new()?)?;
    let events = events.clone();
    thread::Builder::new().name("clock".into()).spawn(move || loop {
        match waker.wait(None, Duration::from_secs(86_400)) {
            Ok(Woken::ClockJumped { .. }) => {
                if events.send(Event::ClockJumped).is_err() {
                    return;
                }
            }
            Ok(Woken::TimedOut) | Ok(Woken::Readable) => {}
            Ok(Woken::Stopped) | Err(_) => return,
        }
    })?;
    Ok(())
}
