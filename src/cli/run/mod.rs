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
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use mailsync::mswatch::config::Config;
use mailsync::mswatch::derive;
use mailsync::mswatch::schedule::{Schedule, Target, Timing, Why};
use mailsync::naming::NameStyle;
use mailsync::stop::{Stop, Waker, Woken};

use super::check::{CheckArgs, Checker};
use super::exit::{CliError, Status};
use syncer::Then;
use watchers::{Report, Watcher};

#[derive(Args, Debug)]
#[command(
    about = "Push sync: watch both stores of an account, sync what changed (mswatch without mswatch)",
    after_help = "With --mbsync or --offlineimap, each account's stores are read from the sync\n\
        program's own configuration, and syncs follow changes within a fraction of a second\n\
        (--dry prints the set-up as the .mswatchrc it stands for). Else it reads ~/.mswatchrc\n\
        (or --config) as mswatch 1.2 does, with mswatch's delays; times may be fractional.\n\
        Watchers that are `mailsync watch …` or `mailsync idle …` run inside this process.\n\
        SIGUSR1 prints what waits for a sync; SIGINT, SIGTERM and SIGHUP end it (a running\n\
        sync gets SIGTERM and is waited for). One run per configuration or account: a second\n\
        exits with status 3. Status 2: a configuration error; 4: a login refused.\n\n\
        Examples:\n  \
        mailsync run --mbsync work home         # channels of ~/.mbsyncrc\n  \
        mailsync run --offlineimap work --then 'notmuch new'\n  \
        mailsync run                            # ~/.mswatchrc\n  \
        mailsync run --config ~/.mswatchrc-work --check-local --server nnimap+work"
)]
pub struct RunArgs {
    /// The mswatch configuration [default: ~/.mswatchrc]
    #[arg(long, short = 'c', value_name = "FILE", conflicts_with_all = ["mbsync", "offlineimap"])]
    config: Option<PathBuf>,
    /// Sync these mbsync channels (no .mswatchrc: their stores are read from the mbsyncrc)
    #[arg(long, value_name = "CHANNEL", num_args = 1..)]
    mbsync: Vec<String>,
    /// Sync these OfflineIMAP accounts (no .mswatchrc: read from the offlineimaprc)
    #[arg(long, value_name = "ACCOUNT", num_args = 1..)]
    offlineimap: Vec<String>,
    /// The configuration of --mbsync or --offlineimap [default: ~/.mbsyncrc, or OfflineIMAP's own]
    #[arg(long, value_name = "FILE")]
    sync_config: Option<PathBuf>,
    /// After syncs, once no other sync waits, run this shell command; the synced folders
    /// (local names; none: everything) are its arguments and $MAILSYNC_FOLDERS' lines
    #[arg(long, value_name = "CMD")]
    then: Option<String>,
    /// When --then would run (and after it), print `synced ACCOUNT FOLDER…`, each name in
    /// hexadecimal: for a program that follows the run (Emacs's mailsync-mode)
    #[arg(long)]
    print_synced: bool,
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
    /// The `--then` command ended.
    ThenEnded(Status),
    /// The Gnus check after a sync failed, and why.
    CheckFailed(String),
    Signal(i32),
    ClockJumped,
}

/// A line on standard output, with the local time and the account's
/// `label` (empty when one runs).
fn say(label: &str, message: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{} {label}{message}", timestamp());
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
    let setups = match setups(&args) {
        Ok(setups) => setups,
        Err(message) => return CliError::configuration(message).report("run"),
    };
    if args.dry && args.config.is_none() {
        show_derived(&setups);
    }
    // Each account runs on its own; the process ends with the first
    // failure's status once every one has ended.
    thread::scope(|scope| {
        let runs: Vec<_> = setups
            .into_iter()
            .map(|setup| scope.spawn(|| run_one(setup, &args)))
            .collect();
        runs.into_iter()
            .map(|run| run.join().unwrap_or(Status::Failed(1)))
            .fold(Status::Success, |first, status| match first {
                Status::Success => status,
                failed => failed,
            })
    })
}

fn run_one(setup: Setup, args: &RunArgs) -> Status {
    match make_local_store(&setup, args.dry) {
        Ok(true) => {}
        Ok(false) => return Status::Success,
        Err(message) => return CliError::configuration(format!("{}{message}", setup.label)).report("run"),
    }
    match Run::start(setup, args) {
        Ok(mut run) => {
            run.serve();
            let status = run.failed.unwrap_or(Status::Success);
            run.stop_watchers();
            status
        }
        Err(status) => status,
    }
}

/// One configuration to run: an mswatchrc, or an account's derived set-up.
struct Setup {
    /// Put before its lines when several accounts run.
    label: String,
    config: Config,
    /// The file it comes from, and the account in it: what is locked.
    file: PathBuf,
    account: Option<String>,
    /// A derived set-up's local store, made empty when it is missing,
    /// and why its first sync would not fill it, if it would not.
    local: Option<(PathBuf, Option<String>)>,
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
}

/// What `args` asks to run; an error is a configuration error (status 2).
fn setups(args: &RunArgs) -> Result<Vec<Setup>, String> {
    if args.mbsync.is_empty() && args.offlineimap.is_empty() {
        let path = args.config.clone().unwrap_or_else(|| home().join(".mswatchrc"));
        let text =
            fs::read_to_string(&path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        let config = Config::parse(&text).map_err(|err| format!("{}: {err}", path.display()))?;
        return Ok(vec![Setup {
            label: String::new(),
            config,
            file: path,
            account: None,
            local: None,
        }]);
    }
    if args.sync_config.is_some() && !args.mbsync.is_empty() && !args.offlineimap.is_empty() {
        return Err("--sync-config names one file: run --mbsync and --offlineimap apart".into());
    }
    let mailsync =
        std::env::current_exe().map_err(|err| format!("cannot find where this mailsync is: {err}"))?;
    let several = args.mbsync.len() + args.offlineimap.len() > 1;
    type Derive = fn(&derive::Sources, &str) -> Result<derive::Derived, String>;
    let backends: [(&str, &str, &[String], Derive); 2] = [
        ("mbsync", "channel", &args.mbsync, derive::mbsync),
        ("offlineimap", "account", &args.offlineimap, derive::offlineimap),
    ];
    let mut setups = Vec::new();
    for (program, kind, accounts, derive) in backends {
        if accounts.is_empty() {
            continue;
        }
        if !mailsync::backend::installed(program) {
            return Err(format!(
                "{program} is not installed (Debian: apt-get install {}); --{program} runs it",
                if program == "mbsync" {
                    "isync"
                } else {
                    "offlineimap3"
                }
            ));
        }
        let file = match (&args.sync_config, program) {
            (Some(file), _) => file.clone(),
            (None, "mbsync") => home().join(".mbsyncrc"),
            (None, _) => mailsync::backend::default_offlineimap_config()
                .ok_or("no OfflineIMAP configuration found (give --sync-config)")?,
        };
        let text =
            fs::read_to_string(&file).map_err(|err| format!("cannot read {}: {err}", file.display()))?;
        let sources = derive::Sources {
            mailsync: &mailsync,
            file: &file,
            text: &text,
        };
        for account in accounts {
            let derived = derive(&sources, account)?;
            setups.push(Setup {
                label: if several {
                    format!("{account}: ")
                } else {
                    String::new()
                },
                config: derived.config,
                file: file.clone(),
                account: Some(format!("{program} {kind} {account}")),
                local: Some((derived.local, derived.not_made)),
            });
        }
    }
    Ok(setups)
}

/// Makes a derived set-up's local store, empty, when it does not exist
/// yet (before an account's first sync): the start-up sync fills it. A
/// dry run makes nothing, and has nothing to watch: false.
fn make_local_store(setup: &Setup, dry: bool) -> Result<bool, String> {
    let Some((local, not_made)) = setup.local.as_ref().filter(|(local, _)| !local.exists()) else {
        return Ok(true);
    };
    if let Some(why) = not_made {
        return Err(format!("{} does not exist, and {why}", local.display()));
    }
    if dry {
        say(
            &setup.label,
            &format!(
                "{} does not exist: a run would make it empty for the first sync to fill; \
                 a dry run has nothing to watch before that",
                local.display()
            ),
        );
        return Ok(false);
    }
    fs::create_dir_all(local)
        .map_err(|err| format!("cannot make the local store {}: {err}", local.display()))?;
    say(
        &setup.label,
        &format!(
            "{} did not exist: made it empty; the first sync fills it",
            local.display()
        ),
    );
    Ok(true)
}

/// `--dry` with accounts: each derived set-up, as the .mswatchrc it is.
fn show_derived(setups: &[Setup]) {
    for setup in setups {
        let account = setup.account.as_deref().unwrap_or_default();
        match setup.config.render() {
            Ok(text) => print!(
                "# {account}: this set-up as an .mswatchrc (for mailsync run --config; mswatch \
                 itself takes whole seconds)\n{text}"
            ),
            Err(why) => println!("# {account}: its set-up cannot be shown as an .mswatchrc: {why}"),
        }
    }
}

/// One `mailsync run`: its stores, its schedule and the sync under way.
struct Run {
    /// Put before its lines (several accounts in one process).
    label: String,
    config: Config,
    /// The `--then` command and what waits for it.
    then: Option<Then>,
    /// Held while this process runs the configuration (not by a dry run).
    _lock: Option<mailsync::lock::RunLock>,
    dry: bool,
    quiet: bool,
    events: Sender<Event>,
    events_rx: Receiver<Event>,
    stores: Vec<Store>,
    checker: Option<Arc<Checker>>,
    schedule: Schedule,
    /// Both stores were watched once: changes count from then on.
    started: bool,
    sync: Option<(syncer::Running, Target)>,
    /// A signal asked to stop: the running sync is waited for.
    stopping: bool,
    /// A watcher stopped for good: the run ends with this status.
    failed: Option<Status>,
    /// What each successful sync left in each store's mailbox, to tell
    /// its own late reports from changes made after it.
    snapshots: HashMap<(usize, Vec<u8>), Vec<OsString>>,
}

/// What the loop does after an event.
enum Flow {
    /// Restart watchers, settle and start a sync as due.
    Upkeep,
    /// Nothing more: wait for the next event.
    Wait,
    Stop,
}

/// Both stores of `config`, their watchers started, reporting to `events`.
fn start_watchers(config: &Config, events: &Sender<Event>) -> Result<Vec<Store>, String> {
    let mut stores = Vec::new();
    for (index, store) in config.stores.iter().enumerate() {
        let watcher = Watcher::start(index, &store.watch, events)
            .map_err(|message| format!("store {}: {message}", store.name))?;
        stores.push(Store {
            name: store.name.clone(),
            command: store.watch.clone(),
            watcher: Some(watcher),
            ready: false,
            restart_at: None,
            backoff: FIRST_RESTART,
        });
    }
    Ok(stores)
}

/// When `config` syncs, its stores' reports settling for `settle`.
fn timing(config: &Config, settle: [Duration; 2]) -> Timing {
    let names = |names: &[String]| names.iter().map(|name| name.as_bytes().to_vec()).collect();
    Timing {
        base_delay: config.base_delay,
        inter_delay: config.inter_delay,
        inter_delays: config
            .inter_delays
            .iter()
            .map(|(name, delay)| (name.as_bytes().to_vec(), *delay))
            .collect(),
        max_delay: config.max_delay,
        poll_period: config.poll_period,
        ignore: names(&config.ignore),
        settle,
    }
}

impl Run {
    /// Reads the configuration and starts both stores' watchers; on
    /// failure, the exit status (the error already said).
    fn start(setup: Setup, args: &RunArgs) -> Result<Run, Status> {
        let Setup {
            label,
            config,
            file,
            account,
            local: _,
        } = setup;
        let report =
            |err: CliError| CliError::new(err.status, format!("{label}{}", err.message)).report("run");
        // A dry run syncs nothing: it may watch beside the real one.
        let lock = match (!args.dry)
            .then(|| mailsync::lock::lock_run(&file, account.as_deref()))
            .transpose()
        {
            Ok(lock) => lock,
            Err(err @ mailsync::lock::LockError::Held { .. }) => {
                return Err(report(CliError::new(Status::AlreadyRunning, err)))
            }
            Err(err) => return Err(report(CliError::new(Status::Failed(1), err))),
        };
        let failed = |message: String| report(CliError::new(Status::Failed(1), message));
        let (events, events_rx) = unbounded();
        forward_signals(&events).map_err(|err| failed(format!("cannot handle signals: {err}")))?;
        watch_clock(&events).map_err(|err| failed(format!("cannot watch the clock: {err}")))?;
        let stores = start_watchers(&config, &events).map_err(failed)?;
        // The local style for checks: the first in-process maildir's, else ".".
        let style = stores
            .iter()
            .find_map(|store| match &store.watcher {
                Some(Watcher::Maildir { style, .. }) => Some(style.clone()),
                _ => None,
            })
            .unwrap_or_else(|| NameStyle::new("INBOX", "."));
        let checker = Checker::from_args(&args.check, args.check.group_map(style), false)
            .map_err(|message| report(CliError::usage(message)))?
            .map(Arc::new);
        let settle = |index: usize| {
            stores[index]
                .watcher
                .as_ref()
                .map_or(Duration::ZERO, Watcher::settle_time)
        };
        let timing = timing(&config, [settle(0), settle(1)]);
        Ok(Run {
            label,
            then: (args.then.is_some() || args.print_synced)
                .then(|| Then::new(args.then.clone(), args.print_synced)),
            _lock: lock,
            dry: args.dry,
            quiet: args.quiet,
            events,
            events_rx,
            stores,
            checker,
            schedule: Schedule::new(timing, Instant::now()),
            config,
            started: false,
            sync: None,
            stopping: false,
            failed: None,
            snapshots: HashMap::new(),
        })
    }

    /// Handles events until a signal or the end of every event source.
    fn serve(&mut self) {
        loop {
            let restart = self.stores.iter().filter_map(|store| store.restart_at).min();
            let deadline = [self.schedule.next_wakeup(), restart].into_iter().flatten().min();
            let event = match deadline {
                Some(deadline) => self.events_rx.recv_deadline(deadline),
                None => self.events_rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let now = Instant::now();
            let flow = match event {
                Ok(Event::Watcher(index, report)) => self.on_watcher(index, report, now),
                Ok(Event::SyncEnded(status)) => self.on_sync_ended(status, now),
                Ok(Event::ThenEnded(status)) => {
                    if let Some(then) = &mut self.then {
                        then.ended();
                    }
                    if !status.is_success() {
                        say(&self.label, &format!("the --then command failed ({status})"));
                    }
                    Flow::Upkeep
                }
                Ok(Event::CheckFailed(message)) => {
                    say(&self.label, &format!("Gnus check after a sync failed: {message}"));
                    Flow::Upkeep
                }
                Ok(Event::Signal(SIGUSR1)) => self.say_waiting(now),
                Ok(Event::Signal(_)) => self.on_stop_signal(),
                Ok(Event::ClockJumped) => {
                    say(
                        &self.label,
                        "the clock jumped or the machine resumed; syncing everything",
                    );
                    self.schedule.sync_all(now, Why::ClockJumped);
                    Flow::Upkeep
                }
                Err(RecvTimeoutError::Timeout) => Flow::Upkeep,
                Err(RecvTimeoutError::Disconnected) => Flow::Stop,
            };
            match flow {
                Flow::Stop => break,
                Flow::Wait => continue,
                Flow::Upkeep if self.stopping => continue,
                Flow::Upkeep => {}
            }
            self.restart_due_watchers(now);
            self.settle(now);
            self.start_due_sync(now);
            self.start_then();
        }
        if let Some(then) = &self.then {
            then.terminate();
        }
    }

    /// Runs the `--then` command when syncs succeeded and none runs or waits.
    fn start_then(&mut self) {
        let Some(then) = &mut self.then else {
            return;
        };
        if self.sync.is_some() || !self.schedule.is_quiet() {
            return;
        }
        let account = self
            .config
            .mailbox_prefix
            .as_ref()
            .map_or("", |(prefix, _)| prefix);
        if let Err(message) = then.start_if_wanted(account, &self.events) {
            say(&self.label, &format!("the --then command: {message}"));
        }
    }

    fn on_watcher(&mut self, index: usize, report: Report, now: Instant) -> Flow {
        let store = &mut self.stores[index];
        match report {
            Report::Ready => {
                store.ready = true;
                store.backoff = FIRST_RESTART;
                if self.started {
                    say(
                        &self.label,
                        &format!("store {}: watching again; syncing everything", store.name),
                    );
                    self.schedule.sync_all(now, Why::WatcherBack(index));
                } else if self.stores.iter().all(|store| store.ready) {
                    self.started = true;
                    if !self.quiet {
                        say(&self.label, "both stores watched; syncing everything");
                    }
                    self.schedule.sync_all(now, Why::Start);
                }
            }
            Report::Changed(mailbox) => {
                if self.started {
                    self.schedule.change(now, index, &mailbox);
                }
            }
            Report::Warning(message) => say(&self.label, &format!("store {}: {message}", store.name)),
            Report::Ended(why) => {
                if let Some(watcher) = store.watcher.take() {
                    watcher.stop();
                }
                store.ready = false;
                say(
                    &self.label,
                    &format!(
                        "store {}: its watcher stopped ({why}); starting it again in {:.0} s",
                        store.name,
                        store.backoff.as_secs_f64()
                    ),
                );
                store.restart_at = Some(now + store.backoff);
                store.backoff = (store.backoff * 2).min(self.config.max_delay.max(FIRST_RESTART));
            }
            Report::Failed(why) => {
                let stops = match self.label.is_empty() {
                    true => "mailsync run stops",
                    false => "this account stops, the others go on",
                };
                say(
                    &self.label,
                    &format!(
                        "store {}: {why}; {stops} (started again it would fail the same way): fix this, then start it",
                        store.name
                    ),
                );
                self.failed = Some(Status::Refused);
                return self.on_stop_signal();
            }
        }
        Flow::Upkeep
    }

    fn on_sync_ended(&mut self, status: Status, now: Instant) -> Flow {
        let Some((running, target)) = self.sync.take() else {
            return Flow::Wait;
        };
        let took = now.duration_since(running.started).as_secs_f64();
        let what = describe(&target, &self.config);
        if status.is_success() {
            if let Some(then) = &mut self.then {
                then.synced(&target);
            }
            if !self.quiet {
                say(&self.label, &format!("sync {what}: done in {took:.2} s"));
            }
            // What the sync left in the local store, to tell its own
            // late reports from changes made after it.
            let mailboxes = match &target {
                Target::Mailboxes(list) => list.clone(),
                Target::All => self.schedule.held(),
            };
            for mailbox in mailboxes {
                for (index, store) in self.stores.iter().enumerate() {
                    if let Some(files) = store.watcher.as_ref().and_then(|w| w.message_files(&mailbox)) {
                        self.snapshots.insert((index, mailbox.clone()), files);
                    }
                }
            }
        } else {
            say(
                &self.label,
                &format!("sync {what}: failed ({status}) after {took:.2} s"),
            );
        }
        self.schedule.ended(now, status.is_success());
        if self.stopping {
            Flow::Stop
        } else {
            Flow::Upkeep
        }
    }

    /// SIGUSR1: what waits for a sync.
    fn say_waiting(&self, now: Instant) -> Flow {
        let waiting = self
            .schedule
            .waiting(now, &|index| self.stores[index].name.clone());
        if waiting.is_empty() {
            say(&self.label, "nothing waits for a sync");
        }
        for line in waiting {
            say(&self.label, &format!("waiting: {line}"));
        }
        Flow::Upkeep
    }

    /// SIGINT or SIGTERM: stop now, or once the running sync has ended.
    fn on_stop_signal(&mut self) -> Flow {
        match &self.sync {
            Some((running, _)) => {
                say(&self.label, "stopping: waiting for the running sync to end");
                running.terminate();
                self.stopping = true;
                Flow::Upkeep
            }
            None => Flow::Stop,
        }
    }

    fn restart_due_watchers(&mut self, now: Instant) {
        for (index, store) in self.stores.iter_mut().enumerate() {
            if store.restart_at.is_some_and(|at| at <= now) {
                store.restart_at = None;
                match Watcher::start(index, &store.command, &self.events) {
                    Ok(watcher) => store.watcher = Some(watcher),
                    Err(message) => {
                        let _ = self.events.send(Event::Watcher(index, Report::Ended(message)));
                    }
                }
            }
        }
    }

    /// Ends the settle time of synced mailboxes whose time is up; those
    /// changed meanwhile by someone else are queued again.
    fn settle(&mut self, now: Instant) {
        let Run {
            schedule,
            snapshots,
            stores,
            ..
        } = self;
        let settled = schedule.settle(now, &mut |store, mailbox| {
            let snapshot = snapshots.remove(&(store, mailbox.to_vec()));
            explained(stores, store, mailbox, snapshot)
        });
        for (mailbox, store, what) in settled.queued {
            if !self.quiet {
                say(
                    &self.label,
                    &format!(
                        "{}: changed in store {} during or just after its sync, not by it ({what}); syncing it again",
                        lossy(&mailbox),
                        self.stores[store].name
                    ),
                );
            }
        }
    }

    /// Starts the sync that is due, if none runs.
    fn start_due_sync(&mut self, now: Instant) {
        if self.sync.is_some() || !self.started {
            return;
        }
        let Some(target) = self.schedule.start(now) else {
            return;
        };
        let what = describe(&target, &self.config);
        if self.dry {
            say(&self.label, &format!("would sync {what}"));
            self.schedule.ended(now, true);
            return;
        }
        let mut arguments = arguments(&target, &self.config);
        let mut target = target;
        let command: Vec<OsString> = self.config.sync.iter().map(OsString::from).collect();
        if !mailsync::backend::fits_one_exec(&[command, arguments.clone()].concat()) {
            if let Target::Mailboxes(list) = &target {
                say(
                    &self.label,
                    &format!(
                        "{} mailboxes are more than one command line holds; syncing everything instead",
                        list.len()
                    ),
                );
            }
            target = Target::All;
            arguments = self::arguments(&target, &self.config);
        }
        let check = self.checker.as_ref().map(|checker| {
            let mailboxes = match &target {
                Target::All => None,
                Target::Mailboxes(list) => Some(list.clone()),
            };
            (Arc::clone(checker), mailboxes)
        });
        match syncer::start(&self.config.sync, arguments, check, &self.events) {
            Ok(running) => self.sync = Some((running, target)),
            Err(message) => {
                say(&self.label, &format!("sync {what}: {message}"));
                self.schedule.ended(now, false);
            }
        }
    }

    fn stop_watchers(self) {
        for store in self.stores {
            if let Some(watcher) = store.watcher {
                watcher.stop();
            }
        }
    }
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
/// sync of it (or just after), is that sync's own doing, and if not, what
/// changed:
/// - from a maildir watched here: the folder's message files are still
///   what the sync left (`snapshot`, taken when it ended: nobody changed
///   it since), and every one carries a sync program's UID mark (`,U=`:
///   mbsync and OfflineIMAP put it in the names of the files they keep in
///   step; a file without it is a message no sync has carried yet);
/// - from a server watched here: it holds as many messages as the local
///   folder (watched here too), so nothing arrived that the sync did not
///   carry;
/// - from a child watcher: never (mswatch's behaviour: it syncs again).
fn explained(
    stores: &[Store],
    store: usize,
    mailbox: &[u8],
    snapshot: Option<Vec<OsString>>,
) -> Result<(), String> {
    let marked = |file: &OsString| file.as_encoded_bytes().windows(3).any(|part| part == b",U=");
    match stores[store].watcher.as_ref() {
        Some(watcher @ Watcher::Maildir { .. }) => match (watcher.message_files(mailbox), snapshot) {
            (Some(files), Some(left)) if files != left => {
                let came = files.iter().filter(|file| !left.contains(file)).count();
                let went = left.iter().filter(|file| !files.contains(file)).count();
                Err(format!(
                    "since the sync ended, {came} message files came and {went} went"
                ))
            }
            (Some(files), Some(_)) => match files.iter().filter(|file| !marked(file)).count() {
                0 => Ok(()),
                unmarked => Err(format!(
                    "{unmarked} messages carry no sync program's UID mark (,U=): delivered meanwhile"
                )),
            },
            _ => Err("its message files could not be compared with what the sync left".into()),
        },
        Some(watcher @ Watcher::Imap { .. }) => {
            let local = stores
                .iter()
                .filter_map(|store| store.watcher.as_ref())
                .find_map(|watcher| watcher.message_files(mailbox));
            match (watcher.server_messages(mailbox), local) {
                (Some(remote), Some(files)) if remote as usize == files.len() => Ok(()),
                (Some(remote), Some(files)) => Err(format!(
                    "the server holds {remote} messages, the local folder {}",
                    files.len()
                )),
                _ => Err("the server's and the local folder's messages could not be counted".into()),
            }
        }
        _ => Err("its watcher runs as a child, whose reports say nothing more".into()),
    }
}

fn forward_signals(events: &Sender<Event>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGUSR1, SIGINT, SIGTERM, SIGHUP])?;
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
