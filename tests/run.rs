//! `mailsync run` against the real thing: the same .mswatchrc run by the
//! real mswatch 1.2.0 and by `mailsync run`, with real mbsync against a
//! real Dovecot on 127.0.0.1; and its failures with a sync program that
//! fails on purpose (a stand-in: a real mbsync cannot be made to fail
//! and recover on cue), a watcher killed, SIGUSR1, SIGTERM during a sync,
//! configuration errors.

mod common;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::servers::{messages, Dovecot};
use common::{deliver, kill, mailsync, make_maildir, mswatch, set_clock_to_now};

/// Held by the tests that count syncs and by the one that sets the clock
/// (which makes every `mailsync run` on the machine sync everything).
static CLOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn clock_guard() -> std::sync::MutexGuard<'static, ()> {
    CLOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running orchestrator (mswatch or `mailsync run`), its output in a file.
struct Orchestrator {
    child: Child,
    log: PathBuf,
}

impl Orchestrator {
    fn start(program: &Path, args: &[&str], log: PathBuf) -> Orchestrator {
        let mut command = Command::new(program);
        command.args(args);
        Orchestrator::spawn(command, log)
    }

    fn spawn(mut command: Command, log: PathBuf) -> Orchestrator {
        let file = fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Orchestrator { child, log }
    }

    fn said(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_until(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what} did not happen within {limit:?}; the orchestrator said:\n{}",
                self.said()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit code.
    fn terminate(&mut self) -> i32 {
        self.signal_and_wait("-TERM")
    }

    /// `signal` (as kill takes it), then the exit code.
    fn signal_and_wait(&mut self, signal: &str) -> i32 {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("it had ended ({status}) before {signal}:\n{}", self.said());
        }
        kill(self.child.id(), signal);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "did not end on {signal}:\n{}",
                self.said()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sync program that logs each run's arguments, then runs the real one.
fn logging_sync(dir: &Path, real: &str) -> (PathBuf, PathBuf) {
    let script = dir.join("sync.sh");
    let log = dir.join("syncs.log");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec {real} \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    (script, log)
}

/// How many messages the server holds in `mailbox`.
fn on_server(dovecot: &Dovecot, mailbox: &str) -> usize {
    dovecot
        .doveadm(
            &["-f", "flow", "fetch", "-u", "test", "uid", "mailbox", mailbox],
            None,
        )
        .lines()
        .count()
}

/// The lines of a log file (none when it does not exist yet).
fn lines(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// How many messages each folder holds: the local store's, the server's.
type EndState = (Vec<(String, usize)>, Vec<(String, usize)>);

/// Both stores' folders and message counts, for comparing end states.
fn state(local: &Path, dovecot: &Dovecot) -> EndState {
    let mut local_state = Vec::new();
    for folder in ["INBOX", "newbox"] {
        local_state.push((folder.to_string(), messages(&local.join(folder))));
    }
    let mut server_state = Vec::new();
    for folder in ["INBOX", "newbox"] {
        let listing = dovecot.doveadm(
            &["-f", "flow", "fetch", "-u", "test", "flags", "mailbox", folder],
            None,
        );
        server_state.push((folder.to_string(), listing.lines().count()));
    }
    (local_state, server_state)
}

/// The steps both orchestrators go through, with mbsync; returns the syncs
/// made for the server deliveries and the end state.
fn server_local_flag_and_folder_steps(
    orchestrator: &Orchestrator,
    dovecot: &Dovecot,
    local: &Path,
    sync_log: &Path,
    settle: Duration,
) -> (usize, EndState) {
    let limit = Duration::from_secs(30);
    orchestrator.wait_until("the start-up sync", limit, || messages(&local.join("INBOX")) == 1);
    thread::sleep(settle);
    let before = lines(sync_log).len();
    for round in 0..3 {
        dovecot.save("INBOX", &format!("server delivery {round}"));
        orchestrator.wait_until("a server delivery reaching the local maildir", limit, || {
            messages(&local.join("INBOX")) == 2 + round
        });
        thread::sleep(settle);
    }
    let server_syncs = lines(sync_log).len() - before;
    deliver(&local.join("INBOX"));
    orchestrator.wait_until("a local delivery reaching the server", limit, || {
        on_server(dovecot, "INBOX") == 5
    });
    // Gnus marks a message read once that sync is over (a flag changed
    // while the same mailbox syncs is taken for the sync's own: README).
    thread::sleep(settle);
    // Gnus marks a message read: its file moves to cur/ with the S flag.
    let cur = local.join("INBOX/cur");
    let file = ["cur", "new"]
        .iter()
        .flat_map(|sub| fs::read_dir(local.join("INBOX").join(sub)).unwrap())
        .map(|entry| entry.unwrap().path())
        .find(|path| !path.to_string_lossy().contains(":2,S") && !path.to_string_lossy().ends_with('S'))
        .expect("an unread message");
    let name = file.file_name().unwrap().to_str().unwrap().to_string();
    let seen = match name.split_once(":2,") {
        Some((base, flags)) if !flags.contains('S') => format!("{base}:2,{flags}S"),
        Some(_) => name.clone(),
        None => format!("{name}:2,S"),
    };
    fs::rename(&file, cur.join(seen)).unwrap();
    orchestrator.wait_until("the flag reaching the server", limit, || {
        dovecot
            .doveadm(
                &["-f", "flow", "fetch", "-u", "test", "flags", "mailbox", "INBOX"],
                None,
            )
            .contains("\\Seen")
    });
    dovecot.doveadm(&["mailbox", "create", "-u", "test", "newbox"], None);
    dovecot.save("newbox", "in a new folder");
    orchestrator.wait_until("a new server folder reaching the local store", limit, || {
        messages(&local.join("newbox")) == 1
    });
    thread::sleep(settle);
    (server_syncs, state(local, dovecot))
}

/// The sync program the comparison runs, and how the server is watched.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Mbsync,
    Offlineimap,
}

fn mswatchrc(dir: &Path, sync: &Path, local: &Path, server_watch: &str) -> PathBuf {
    let mailsync = env!("CARGO_BIN_EXE_mailsync");
    // Written for mswatch: whole seconds, the subcommands quoted.
    let config = format!(
        "base_delay 1\ninter_delay 1\nmax_delay 4\n\
         sync /bin/sh \"{sync}\"\n\
         mailbox_prefix test :\n\
         store local\n{{\n  watch \"{mailsync}\" \"watch\" --maildir \"{local}\" --layout verbatim --delay 0 --report-flags\n}}\n\
         store server\n{{\n  watch \"{mailsync}\" \"idle\" {server_watch} --delay 0 --report-flags\n}}\n",
        sync = sync.display(),
        local = local.display(),
    );
    let path = dir.join("mswatchrc");
    fs::write(&path, config).unwrap();
    path
}

/// The real mswatch and `mailsync run` on the same file with `backend`:
/// the same end state, and mailsync run's one sync per server delivery.
fn compare_with_mswatch(backend: Backend) {
    let _clock = clock_guard();
    let mswatch = mswatch();
    let mailsync = env!("CARGO_BIN_EXE_mailsync");
    let mut results = Vec::new();
    for orchestrator in ["mswatch", "mailsync run"] {
        let dovecot = Dovecot::start(match backend {
            Backend::Mbsync => "/",
            Backend::Offlineimap => ".",
        });
        dovecot.save("INBOX", "before the start");
        let dir = dovecot.dir.path();
        let local = dir.join("local");
        let (real, server_watch) = match backend {
            Backend::Mbsync => {
                let rc = dovecot.mbsyncrc(&local);
                (
                    format!(
                        "'{mailsync}' sync --backend mbsync --config '{}' --local-separator /",
                        rc.display()
                    ),
                    format!("--mbsync test --config \"{}\"", rc.display()),
                )
            }
            Backend::Offlineimap => {
                // Its folders are the top directories of `local`, as
                // mbsync's with SubFolders Verbatim.
                let rc = dovecot.offlineimaprc(&local);
                (
                    format!("'{mailsync}' sync --config '{}'", rc.display()),
                    format!("--offlineimap test --config \"{}\"", rc.display()),
                )
            }
        };
        make_maildir(&local.join("INBOX"));
        let (sync, sync_log) = logging_sync(dir, &real);
        let config = mswatchrc(dir, &sync, &local, &server_watch);
        let config = config.to_str().unwrap();
        let mut running = if orchestrator == "mswatch" {
            Orchestrator::start(&mswatch, &["-c", config], dir.join("orchestrator.log"))
        } else {
            Orchestrator::start(
                Path::new(mailsync),
                &["run", "--config", config],
                dir.join("orchestrator.log"),
            )
        };
        // mswatch's delays are whole seconds: after each step, as long as
        // it may take to queue and run a second sync.
        let (server_syncs, end) = server_local_flag_and_folder_steps(
            &running,
            &dovecot,
            &local,
            &sync_log,
            Duration::from_millis(3500),
        );
        assert_eq!(running.terminate(), 0, "{}", running.said());
        eprintln!(
            "{backend:?}, {orchestrator}: {server_syncs} syncs for 3 server deliveries; all syncs: {:?}",
            lines(&sync_log)
        );
        results.push((server_syncs, end));
    }
    let (mswatch_syncs, mswatch_end) = &results[0];
    let (run_syncs, run_end) = &results[1];
    assert_eq!(run_end, mswatch_end, "the same end state");
    assert_eq!(run_end.0, run_end.1, "both stores hold the same messages");
    assert_eq!(*run_syncs, 3, "one sync per server delivery");
    assert!(
        mswatch_syncs > run_syncs,
        "mswatch syncs the sync's own write again: {mswatch_syncs}"
    );
}

#[test]
fn the_same_mswatchrc_with_mbsync_gives_the_same_end_state_with_one_sync_per_server_delivery() {
    compare_with_mswatch(Backend::Mbsync);
}

#[test]
fn the_same_mswatchrc_with_offlineimap_gives_the_same_end_state_with_one_sync_per_server_delivery() {
    compare_with_mswatch(Backend::Offlineimap);
}

/// A sync program that fails while `DIR/fail` exists (a stand-in: a real
/// mbsync cannot be made to fail and recover on cue), sleeps while
/// `DIR/slow` exists (saying `waiting` once SIGTERM is answered, and
/// `terminated` when it comes), and logs each run
/// with its time and arguments.
fn scripted_sync(dir: &Path) -> PathBuf {
    let script = dir.join("sync.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nd='{dir}'\necho \"$(date +%s.%N) $*\" >> \"$d/syncs.log\"\n\
             if [ -e \"$d/slow\" ]; then trap 'echo terminated >> \"$d/syncs.log\"; exit 143' TERM; \
             echo waiting >> \"$d/syncs.log\"; sleep 5 & wait $!; fi\n\
             [ -e \"$d/fail\" ] && exit 1\nexit 0\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    script
}

fn sync_times(dir: &Path) -> Vec<(f64, String)> {
    lines(&dir.join("syncs.log"))
        .iter()
        .filter_map(|line| {
            let (time, args) = line.split_once(' ')?;
            Some((time.parse().ok()?, args.to_string()))
        })
        .collect()
}

/// Writes `config` to `dir/mswatchrc`, starts `mailsync run` on it (its
/// output in `dir/run.log`) and waits for the start-up sync.
fn start_run(dir: &Path, config: &str) -> Orchestrator {
    let run = run_config(dir, config);
    run.wait_until("the start-up sync", Duration::from_secs(20), || {
        sync_times(dir).len() == 1
    });
    run
}

/// Writes `config` to `dir/mswatchrc` and starts `mailsync run` on it, its
/// output in `dir/run.log`.
fn run_config(dir: &Path, config: &str) -> Orchestrator {
    let path = dir.join("mswatchrc");
    fs::write(&path, config).unwrap();
    Orchestrator::start(
        Path::new(env!("CARGO_BIN_EXE_mailsync")),
        &["run", "--config", path.to_str().unwrap()],
        dir.join("run.log"),
    )
}

/// A configuration with no delays: `sync` (a script run by /bin/sh) for
/// account `prefix`, store `local` watched by `mailsync LOCAL…` and store
/// `server` by `mailsync SERVER…`.
fn realtime_config(sync: &Path, prefix: &str, local: &str, server: &str) -> String {
    let mailsync = env!("CARGO_BIN_EXE_mailsync");
    format!(
        "base_delay 0\ninter_delay 0\nsync /bin/sh {sync}\nmailbox_prefix {prefix} :\n\
         store local {{\n watch {mailsync} {local}\n}}\nstore server {{\n watch {mailsync} {server}\n}}\n",
        sync = sync.display()
    )
}

#[test]
fn failures_back_off_a_killed_watcher_comes_back_and_sigterm_waits_for_the_sync() {
    let _clock = clock_guard();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (a, b) = (dir.join("a"), dir.join("b"));
    for folder in [a.join("INBOX"), b.join("INBOX"), a.join("slow")] {
        make_maildir(&folder);
    }
    let mailsync = env!("CARGO_BIN_EXE_mailsync");
    let sync = scripted_sync(dir);
    // Store a in this process; store b a child (through env), as any
    // other watcher would be.
    let mut run = start_run(
        dir,
        &format!(
            "base_delay 0\ninter_delay 0.5\ninter_delay 30 slow\nmax_delay 2\n\
             sync /bin/sh {sync}\nmailbox_prefix acct :\n\
             store a {{\n watch {mailsync} watch --maildir {a} --layout verbatim --delay 0\n}}\n\
             store b {{\n watch env {mailsync} watch --maildir {b} --layout verbatim --delay 0\n}}\n",
            sync = sync.display(),
            a = a.display(),
            b = b.display()
        ),
    );
    let limit = Duration::from_secs(20);
    assert_eq!(sync_times(dir)[0].1, "acct", "everything, as the prefix alone");

    // Failing: tried again after 1 s (inter_delay 0.5 s, at least 1 s),
    // then 2 s, then 2 s (max_delay); then it recovers.
    fs::write(dir.join("fail"), "").unwrap();
    deliver(&b.join("INBOX"));
    run.wait_until("four failed attempts", limit, || sync_times(dir).len() == 5);
    fs::remove_file(dir.join("fail")).unwrap();
    run.wait_until("the attempt that succeeds", limit, || {
        run.said().contains("sync INBOX: done")
    });
    let times = sync_times(dir);
    assert!(
        times[1..].iter().all(|(_, args)| args == "acct:INBOX"),
        "{times:?}"
    );
    let gaps: Vec<f64> = times[1..].windows(2).map(|pair| pair[1].0 - pair[0].0).collect();
    assert!(
        gaps[0] >= 0.95 && gaps[1] >= 1.9 && gaps[2] >= 1.9,
        "back-off 1, 2, 2 s: {gaps:?}"
    );
    assert!(gaps[2] < gaps[1] + 1.0, "capped at max_delay: {gaps:?}");
    assert!(run.said().contains("failed (exit status 1)"), "{}", run.said());

    // The child watcher is killed: started again, then everything synced.
    let before = sync_times(dir).len();
    let watcher = Command::new("pgrep")
        .args(["-f", &format!("watch --maildir {}", b.display())])
        .output()
        .unwrap();
    let pid = String::from_utf8(watcher.stdout)
        .unwrap()
        .lines()
        .next()
        .expect("the child watcher")
        .to_string();
    kill(pid.parse().unwrap(), "-KILL");
    run.wait_until("the watcher started again and everything synced", limit, || {
        sync_times(dir)[before..].iter().any(|(_, args)| args == "acct")
    });
    assert!(
        run.said().contains("store b: its watcher stopped"),
        "{}",
        run.said()
    );
    assert!(
        run.said().contains("store b: watching again; syncing everything"),
        "{}",
        run.said()
    );

    // SIGUSR1: a mailbox waiting out its inter_delay (30 s since the
    // full sync) is listed, with why.
    thread::sleep(Duration::from_millis(500));
    deliver(&a.join("slow"));
    thread::sleep(Duration::from_millis(300));
    kill(run.child.id(), "-USR1");
    run.wait_until("the list of what waits", limit, || {
        run.said().contains("waiting: slow: changed in a")
    });
    assert!(
        !sync_times(dir).iter().any(|(_, args)| args == "acct:slow"),
        "{}",
        run.said()
    );

    // SIGTERM while a sync runs: the sync gets SIGTERM, is waited for, and
    // the child watcher ends too.
    fs::write(dir.join("slow"), "").unwrap();
    deliver(&b.join("INBOX"));
    run.wait_until("a slow sync", limit, || {
        lines(&dir.join("syncs.log"))
            .last()
            .is_some_and(|line| line == "waiting")
    });
    assert_eq!(run.terminate(), 0, "{}", run.said());
    assert!(
        lines(&dir.join("syncs.log")).last().unwrap() == "terminated",
        "the sync got SIGTERM"
    );
    let left = Command::new("pgrep")
        .args(["-f", &format!("watch --maildir {}", b.display())])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "the child watcher ended");
}

#[test]
fn one_run_per_configuration_and_sighup_ends_it_as_sigterm_does() {
    let _clock = clock_guard();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let watch = |store: &str| {
        make_maildir(&dir.join(store).join("INBOX"));
        format!(
            "watch --maildir {} --layout verbatim --delay 0",
            dir.join(store).display()
        )
    };
    let (local, server) = (watch("a"), watch("b"));
    let mailsync = env!("CARGO_BIN_EXE_mailsync");
    let mut run = start_run(
        dir,
        &realtime_config(&scripted_sync(dir), "acct", &local, &server),
    );
    let a = dir.join("a");
    // A second run of the same file (by another path to it) says who runs it.
    let config = dir.join(".").join("mswatchrc");
    let second = Command::new(mailsync)
        .args(["run", "--config", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "{said}");
    assert!(
        said.contains(&format!("is already run by pid {}", run.child.id())),
        "{said}"
    );
    // A dry run may watch beside it.
    let mut dry = Orchestrator::start(
        Path::new(mailsync),
        &["run", "--dry", "--config", config.to_str().unwrap()],
        dir.join("dry.log"),
    );
    dry.wait_until("the dry run's start-up", Duration::from_secs(20), || {
        dry.said().contains("would sync")
    });
    assert_eq!(dry.terminate(), 0, "{}", dry.said());

    // SIGHUP during a sync: the sync gets SIGTERM and is waited for.
    fs::write(dir.join("slow"), "").unwrap();
    deliver(&a.join("INBOX"));
    run.wait_until("a slow sync", Duration::from_secs(20), || {
        lines(&dir.join("syncs.log"))
            .last()
            .is_some_and(|line| line == "waiting")
    });
    assert_eq!(run.signal_and_wait("-HUP"), 0, "{}", run.said());
    assert_eq!(
        lines(&dir.join("syncs.log")).last().unwrap(),
        "terminated",
        "the sync got SIGTERM"
    );
}

#[test]
fn a_login_the_server_refuses_ends_the_run_with_status_4_and_is_not_tried_again() {
    let dovecot = Dovecot::start(".");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let local = dir.join("local");
    make_maildir(&local.join("INBOX"));
    let password = dir.join("password");
    fs::write(&password, "wrong\n").unwrap();
    let config = realtime_config(
        &scripted_sync(dir),
        "acct",
        &format!("watch --maildir {} --layout verbatim --delay 0", local.display()),
        &format!(
            "idle --host 127.0.0.1 --port {} --tls none --user test --pass-file {}",
            dovecot.port,
            password.display()
        ),
    );
    let mut run = run_config(dir, &config);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = run.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "it did not end:\n{}", run.said());
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(4), "{}", run.said());
    assert!(
        run.said()
            .contains("store server: the server refused the login of test@127.0.0.1"),
        "{}",
        run.said()
    );
    assert!(!run.said().contains("starting it again"), "{}", run.said());
    assert!(
        sync_times(dir).is_empty(),
        "nothing was synced: {:?}",
        sync_times(dir)
    );
}

#[test]
fn configuration_errors_name_the_line_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mswatchrc");
    fs::write(&config, "base_delay 1\nsync true\nbase_delay soon\n").unwrap();
    let output = mailsync()
        .args(["run", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("mswatchrc: line 3: expected a time in seconds after base_delay, found \"soon\""),
        "{stderr}"
    );
    // A watcher that is mailsync's own with flags it does not take.
    fs::write(
        &config,
        "sync true\nstore a {\n watch mailsync watch --no-such-flag\n}\nstore b {\n watch true\n}\n",
    )
    .unwrap();
    let output = mailsync()
        .args(["run", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("store a: mailsync watch --no-such-flag: unexpected argument"),
        "{stderr}"
    );
    let missing = mailsync()
        .args(["run", "--config", dir.path().join("none").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

#[test]
fn with_offlineimap_one_sync_per_server_delivery_and_dovecot_restarts() {
    let _clock = clock_guard();
    let dovecot = Dovecot::start(".");
    dovecot.save("INBOX", "before the start");
    let dir = dovecot.dir.path();
    let local = dir.join("local");
    let rc = dovecot.offlineimaprc(&local);
    let real = format!(
        "'{}' sync --config '{}'",
        env!("CARGO_BIN_EXE_mailsync"),
        rc.display()
    );
    let (sync, sync_log) = logging_sync(dir, &real);
    let config = realtime_config(
        &sync,
        "test",
        &format!("watch --maildir {} --delay 0 --report-flags", local.display()),
        &format!(
            "idle --offlineimap test --config {} --delay 0 --report-flags",
            rc.display()
        ),
    );
    let mut running = run_config(dir, &config);
    let limit = Duration::from_secs(30);
    // OfflineIMAP makes the local maildir (Maildir++ with sep ".") itself.
    running.wait_until("the start-up sync", limit, || messages(&local.join("INBOX")) == 1);
    thread::sleep(Duration::from_secs(2));
    let before = lines(&sync_log).len();
    for round in 0..3 {
        dovecot.save("INBOX", &format!("server delivery {round}"));
        running.wait_until("a server delivery reaching the local maildir", limit, || {
            messages(&local.join("INBOX")) == 2 + round
        });
        thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(
        lines(&sync_log).len() - before,
        3,
        "one sync per server delivery: {:?}",
        lines(&sync_log)
    );
    // Dovecot restarts: `mailsync idle` in the process connects again, and
    // a message saved meanwhile still arrives.
    dovecot.restart();
    dovecot.save("INBOX", "after the restart");
    running.wait_until("a delivery after Dovecot restarted", limit, || {
        messages(&local.join("INBOX")) == 5
    });
    assert_eq!(running.terminate(), 0, "{}", running.said());
}

#[test]
fn a_clock_that_is_set_syncs_everything_once() {
    // Setting the clock needs root; it is set to what it already reads,
    // which the kernel signals as it does a resume from suspend.
    if !common::is_root_or_skip("setting the clock") {
        return;
    }
    let _clock = clock_guard();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (a, b) = (dir.join("a"), dir.join("b"));
    make_maildir(&a.join("INBOX"));
    make_maildir(&b.join("INBOX"));
    let sync = scripted_sync(dir);
    let mailsync = env!("CARGO_BIN_EXE_mailsync");
    let mut run = start_run(
        dir,
        &format!(
            "base_delay 0\ninter_delay 0\nsync /bin/sh {sync}\nmailbox_prefix acct :\n\
             store a {{\n watch {mailsync} watch --maildir {a} --delay 0\n}}\n\
             store b {{\n watch {mailsync} watch --maildir {b} --delay 0\n}}\n",
            sync = sync.display(),
            a = a.display(),
            b = b.display()
        ),
    );
    let limit = Duration::from_secs(20);
    set_clock_to_now();
    run.wait_until("everything synced again", limit, || sync_times(dir).len() == 2);
    assert_eq!(sync_times(dir)[1].1, "acct");
    assert!(
        run.said().contains("the clock jumped or the machine resumed"),
        "{}",
        run.said()
    );
    assert_eq!(run.terminate(), 0);
}

/// A directory first in `$PATH` whose `mbsync` and `offlineimap` log
/// each run's arguments to `DIR/backend.log`, then run the real one: the
/// syncs a derived set-up makes, counted. When `DIR/during` exists, it
/// is run once by /bin/sh just before the sync ends (a stand-in for a
/// delivery that lands while a sync runs, which a test cannot time).
fn counting_backends(dir: &Path) -> (OsString, PathBuf) {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let log = dir.join("backend.log");
    for program in ["mbsync", "offlineimap"] {
        let script = bin.join(program);
        fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{log}'\n/usr/bin/{program} \"$@\"\nstatus=$?\n\
                 if [ -e '{during}' ]; then sh '{during}'; rm -f '{during}'; fi\nexit $status\n",
                log = log.display(),
                during = dir.join("during").display()
            ),
        )
        .unwrap();
        Command::new("chmod").arg("755").arg(&script).status().unwrap();
    }
    let mut path = OsString::from(&bin);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    (path, log)
}

/// An mbsync channel `name` of `dovecot`'s account into `near` (the
/// MaildirStore's lines), with the password `pass`.
fn mbsync_channel(dovecot: &Dovecot, name: &str, pass: &str, near: &str) -> String {
    format!(
        "IMAPAccount {name}\nHost 127.0.0.1\nPort {port}\nUser test\nPass {pass}\nSSLType None\nAuthMechs LOGIN\n\n\
         IMAPStore {name}-remote\nAccount {name}\n\n\
         MaildirStore {name}-local\n{near}\n\n\
         Channel {name}\nFar :{name}-remote:\nNear :{name}-local:\nPatterns *\nCreate Near\nSyncState *\n\n",
        port = dovecot.port
    )
}

/// `mailsync run ARGS…` with the counting backends first in `$PATH`.
fn run_accounts(dir: &Path, path: &OsString, args: &[&str]) -> Orchestrator {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mailsync"));
    command.arg("run").args(args).env("PATH", path);
    Orchestrator::spawn(command, dir.join("run.log"))
}

/// `mailsync run --mbsync test` with no .mswatchrc, the local store laid
/// out by `near` (its INBOX in `inbox`, its folder foo/bar in `foo_bar`,
/// named `foo_bar_name` there): the first sync makes the store; then each
/// of 20 server deliveries is synced by exactly one mbsync run, and the
/// --then command runs once after each, with the folder's local name; a
/// burst of local deliveries to two folders is one sync and one --then.
fn push_sync_with_mbsync_alone(near: &str, inbox: &str, foo_bar: &str, foo_bar_name: &str) {
    let _clock = clock_guard();
    let dovecot = Dovecot::start("/");
    dovecot.save("INBOX", "before the start");
    dovecot.save("foo/bar", "in a subfolder");
    let dir = dovecot.dir.path();
    let local = dir.join("local");
    let rc = dir.join("mbsyncrc");
    fs::write(
        &rc,
        mbsync_channel(
            &dovecot,
            "test",
            "secret",
            &near.replace("LOCAL", local.to_str().unwrap()),
        ),
    )
    .unwrap();
    let (path, backend_log) = counting_backends(dir);
    let then_log = dir.join("then.log");
    let then = format!("echo \"$MAILSYNC_ACCOUNT [$*]\" >> '{}'", then_log.display());
    let mut run = run_accounts(
        dir,
        &path,
        &[
            "--mbsync",
            "test",
            "--sync-config",
            rc.to_str().unwrap(),
            "--then",
            &then,
        ],
    );
    let (inbox, foo_bar) = (local.join(inbox), local.join(foo_bar));
    let limit = Duration::from_secs(30);
    run.wait_until("the first sync, the start-up sync and --then", limit, || {
        messages(&inbox) == 1 && messages(&foo_bar) == 1 && lines(&then_log).len() == 1
    });
    assert!(
        run.said().contains("local did not exist: made it empty"),
        "{}",
        run.said()
    );
    assert_eq!(lines(&then_log), ["test []"], "everything was synced: no folders");
    let before = lines(&backend_log).len();
    for delivery in 0..20 {
        let (folder, local_folder, name) = match delivery % 2 {
            0 => ("INBOX", &inbox, "INBOX"),
            _ => ("foo/bar", &foo_bar, foo_bar_name),
        };
        let had = messages(local_folder);
        dovecot.save(folder, &format!("server delivery {delivery}"));
        // --then runs once nothing runs, waits or settles: a second sync
        // of this delivery would come before it.
        run.wait_until("the delivery synced and --then run", limit, || {
            messages(local_folder) == had + 1 && lines(&then_log).len() == 2 + delivery
        });
        assert_eq!(lines(&then_log).last().unwrap(), &format!("test [{name}]"));
    }
    let server_syncs = &lines(&backend_log)[before..];
    assert_eq!(
        server_syncs.len(),
        20,
        "exactly one sync per server delivery: {server_syncs:?}\n{}",
        run.said()
    );
    // A burst of local deliveries to two folders: one sync, one --then.
    // It comes once the last sync ended inter_delay ago (else each folder
    // waits out its own and they are synced apart, as mswatch does), and
    // while mailsync run is stopped, so that it reads the burst's events
    // together however slowly this machine writes them. --then wrote its
    // line after that sync ended; the file times are coarse, by a few ms.
    let last_sync_ended = fs::metadata(&then_log).unwrap().modified().unwrap();
    let free = last_sync_ended + mailsync::mswatch::derive::INTER_DELAY + Duration::from_millis(50);
    if let Ok(left) = free.duration_since(std::time::SystemTime::now()) {
        thread::sleep(left);
    }
    common::stop(run.child.id());
    for _ in 0..5 {
        deliver(&inbox);
        deliver(&foo_bar);
    }
    kill(run.child.id(), "-CONT");
    run.wait_until("the local deliveries on the server and --then run", limit, || {
        on_server(&dovecot, "INBOX") == 16
            && on_server(&dovecot, "foo/bar") == 16
            && lines(&then_log).len() == 22
    });
    assert_eq!(
        lines(&then_log).last().unwrap(),
        &format!("test [INBOX {foo_bar_name}]")
    );
    assert_eq!(
        lines(&backend_log).len(),
        before + 21,
        "{:?}",
        lines(&backend_log)
    );
    // A local delivery lands while a sync runs: the sync does not explain
    // it, so INBOX is synced again, and the log says which store, which
    // folder and what changed.
    let during = format!(
        "printf 'Subject: during\\n\\nbody\\n' > '{}/new/during.{}'",
        inbox.display(),
        std::process::id()
    );
    fs::write(dir.join("during"), during).unwrap();
    dovecot.save("INBOX", "while the next sync runs");
    run.wait_until("both deliveries on the server and --then run", limit, || {
        on_server(&dovecot, "INBOX") == 18 && lines(&then_log).len() == 23
    });
    assert!(
        run.said().contains(
            "INBOX: changed in store local during or just after its sync, not by it \
             (1 messages carry no sync program's UID mark (,U=): delivered meanwhile); syncing it again"
        ),
        "{}",
        run.said()
    );
    assert_eq!(
        lines(&backend_log).len(),
        before + 23,
        "{:?}",
        lines(&backend_log)
    );
    assert_eq!(run.terminate(), 0, "{}", run.said());
}

#[test]
fn mbsync_alone_verbatim_one_sync_per_delivery_and_then_once_per_burst() {
    push_sync_with_mbsync_alone(
        "Path LOCAL/\nInbox LOCAL/INBOX\nSubFolders Verbatim",
        "INBOX",
        "foo/bar",
        "foo/bar",
    );
}

#[test]
fn mbsync_alone_maildir_plus_plus_one_sync_per_delivery_and_then_once_per_burst() {
    push_sync_with_mbsync_alone("Inbox LOCAL\nSubFolders Maildir++", "", ".foo.bar", "foo.bar");
}

/// Lines of `dovecot`'s log that tell of a refused login.
fn refused_logins(dovecot: &Dovecot) -> usize {
    dovecot
        .log()
        .lines()
        .filter(|line| line.contains("auth failed"))
        .count()
}

#[test]
fn two_accounts_in_one_process_and_a_refused_login_stops_only_its_own() {
    let _clock = clock_guard();
    let (one, two) = (Dovecot::start("/"), Dovecot::start("/"));
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (local_one, local_two) = (dir.join("one"), dir.join("two"));
    let near = |local: &Path| format!("Path {0}/\nInbox {0}/INBOX\nSubFolders Verbatim", local.display());
    let rc = dir.join("mbsyncrc");
    fs::write(
        &rc,
        mbsync_channel(&one, "one", "secret", &near(&local_one))
            + &mbsync_channel(&two, "two", "wrong", &near(&local_two)),
    )
    .unwrap();
    let (path, backend_log) = counting_backends(dir);
    let mut run = run_accounts(
        dir,
        &path,
        &["--mbsync", "one", "two", "--sync-config", rc.to_str().unwrap()],
    );
    let limit = Duration::from_secs(30);
    run.wait_until("account two stopped", limit, || {
        run.said().contains("two: store server: ")
    });
    let said = run.said();
    assert!(
        said.contains("two: store server: the server refused the login of two"),
        "{said}"
    );
    assert!(said.contains("this account stops, the others go on"), "{said}");
    // Account one syncs on: a server delivery reaches its store.
    one.save("INBOX", "to account one");
    run.wait_until("a delivery to account one", limit, || {
        messages(&local_one.join("INBOX")) == 1
    });
    assert!(
        said.lines().any(|line| line.contains("one: both stores watched")),
        "{said}"
    );
    assert_eq!(
        refused_logins(&two),
        1,
        "one login attempt, never again:\n{}",
        two.log()
    );
    assert!(
        lines(&backend_log).iter().all(|line| !line.contains("two")),
        "account two was never synced: {:?}",
        lines(&backend_log)
    );
    // The run ends with the refused account's status.
    assert_eq!(run.terminate(), 4, "{}", run.said());
    assert_eq!(refused_logins(&two), 1);
}

#[test]
fn derived_set_ups_configuration_errors_dry_runs_and_home() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (path, _) = counting_backends(dir);
    // Where mbsync looks for it: --dry below is given no --sync-config.
    let rc = dir.join(".mbsyncrc");
    fs::write(
        &rc,
        "IMAPAccount work\nHost 127.0.0.1\nPort 1\nUser me\nPass x\nSSLType None\n\n\
         IMAPStore work-remote\nAccount work\n\n\
         MaildirStore work-local\nPath ~/Mail/work/\nInbox ~/Mail/work/INBOX\nSubFolders Verbatim\n\n\
         Channel work\nFar :work-remote:\nNear :work-local:\nCreate Near\n",
    )
    .unwrap();
    let run = |args: &[&str], path: &OsString| {
        let output = mailsync()
            .arg("run")
            .args(args)
            .env("PATH", path)
            .env("HOME", dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // Configuration errors: status 2, said once, nothing started.
    let rc_arg = rc.to_str().unwrap();
    let (code, _, stderr) = run(&["--mbsync", "nosuch", "--sync-config", rc_arg], &path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("no mbsync Channel or IMAPAccount named nosuch"),
        "{stderr}"
    );
    assert!(!stderr.contains("--help"), "not a usage error: {stderr}");
    let (code, _, stderr) = run(
        &["--mbsync", "work", "--sync-config", rc_arg],
        &OsString::from("/nonexistent"),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("mbsync is not installed (Debian: apt-get install isync)"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["--offlineimap", "work", "--sync-config", rc_arg], &path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no [Account work]"), "{stderr}");
    // A store missing before the first sync, which mbsync would not make.
    let no_create = dir.join("mbsyncrc-no-create");
    fs::write(
        &no_create,
        fs::read_to_string(&rc).unwrap().replace("Create Near\n", ""),
    )
    .unwrap();
    let (code, _, stderr) = run(
        &["--mbsync", "work", "--sync-config", no_create.to_str().unwrap()],
        &path,
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("Mail/work does not exist, and mbsync channel work does not make it (no `Create Near` or `Create Both`"),
        "{stderr}"
    );
    assert!(!dir.join("Mail/work").exists(), "nothing made");
    // --dry: the set-up as an .mswatchrc, ~ made $HOME; the store, which
    // does not exist yet, not made (nothing to watch: it ends).
    let (code, said, stderr) = run(&["--mbsync", "work", "--dry"], &path);
    assert_eq!(code, Some(0), "{said}{stderr}");
    let local = dir.join("Mail/work");
    assert!(
        said.contains("Mail/work does not exist: a run would make it empty"),
        "{said}"
    );
    let mailsync = env!("CARGO_BIN_EXE_mailsync");
    for line in [
        format!(
            "  watch {mailsync} \"watch\" --maildir {} --layout verbatim --delay 0",
            local.display()
        ),
        format!(
            "  watch {mailsync} idle --mbsync work --config {}/.mbsyncrc --delay 0",
            dir.display()
        ),
        format!(
            "sync {mailsync} \"sync\" --backend mbsync --config {}/.mbsyncrc --local-separator /",
            dir.display()
        ),
        "base_delay 0.05".into(),
        "inter_delay 1".into(),
        "mailbox_prefix work :".into(),
    ] {
        assert!(said.lines().any(|said| said == line), "{line:?} in:\n{said}");
    }
    assert!(!local.exists());
    // What it printed is an .mswatchrc that `mailsync run --config` takes.
    let printed: Vec<&str> = said
        .lines()
        .take_while(|line| !line.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    let parsed = mailsync::mswatch::config::Config::parse(&printed.join("\n"));
    assert!(parsed.is_ok(), "{parsed:?}\n{said}");
}

/// Whether `notmuch` and `mu` (configured in `dir`) find the message
/// with `subject`.
fn indexed(dir: &Path, subject: &str) -> (bool, bool) {
    let notmuch = Command::new("notmuch")
        .args(["count", &format!("subject:\"{subject}\"")])
        .env("NOTMUCH_CONFIG", dir.join("notmuch-config"))
        .output()
        .unwrap();
    let mu = Command::new("mu")
        .arg("find")
        .arg(format!("--muhome={}", dir.join("mu").display()))
        .arg(format!("subject:\"{subject}\""))
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&notmuch.stdout).trim() == "1",
        mu.status.success() && String::from_utf8_lossy(&mu.stdout).contains(subject),
    )
}

#[test]
fn offlineimap_alone_one_sync_per_delivery_and_notmuch_and_mu_index_after_it() {
    let _clock = clock_guard();
    let dovecot = Dovecot::start(".");
    dovecot.save("INBOX", "before the start");
    let dir = dovecot.dir.path();
    let local = dir.join("local");
    let rc = dovecot.offlineimaprc(&local);
    // The README's recipes: notmuch and mu index the store after each sync.
    fs::write(
        dir.join("notmuch-config"),
        format!(
            "[database]\npath={}\n[user]\nname=Test\nprimary_email=test@example.org\n[new]\ntags=unread;inbox;\n",
            local.display()
        ),
    )
    .unwrap();
    let muhome = dir.join("mu");
    let init = Command::new("mu")
        .arg("init")
        .arg(format!("--maildir={}", local.display()))
        .arg(format!("--muhome={}", muhome.display()))
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let then_log = dir.join("then.log");
    let then = format!(
        "NOTMUCH_CONFIG='{}' notmuch new --quiet && mu index --muhome='{}' --quiet && echo \"$*\" >> '{}'",
        dir.join("notmuch-config").display(),
        muhome.display(),
        then_log.display()
    );
    let (path, backend_log) = counting_backends(dir);
    let mut run = run_accounts(
        dir,
        &path,
        &[
            "--offlineimap",
            "test",
            "--sync-config",
            rc.to_str().unwrap(),
            "--then",
            &then,
        ],
    );
    let limit = Duration::from_secs(60);
    run.wait_until("the start-up sync, indexed", limit, || {
        lines(&then_log).len() == 1
    });
    assert_eq!(indexed(dir, "before the start"), (true, true));
    let before = lines(&backend_log).len();
    for delivery in 0..3 {
        let subject = format!("server delivery {delivery}");
        dovecot.save("INBOX", &subject);
        run.wait_until("the delivery synced and indexed", limit, || {
            lines(&then_log).len() == 2 + delivery
        });
        assert_eq!(
            indexed(dir, &subject),
            (true, true),
            "notmuch and mu find {subject:?}"
        );
        assert_eq!(lines(&then_log).last().unwrap(), "INBOX");
    }
    assert_eq!(
        lines(&backend_log).len() - before,
        3,
        "one sync per delivery: {:?}",
        lines(&backend_log)
    );
    deliver(&local.join("INBOX"));
    run.wait_until("a local delivery reaching the server", limit, || {
        on_server(&dovecot, "INBOX") == 5
    });
    assert_eq!(run.terminate(), 0, "{}", run.said());
}

/// The README's store for Gnus's nnmaildir: nested folders flattened.
#[test]
fn mbsync_alone_flattened_one_sync_per_delivery_and_then_once_per_burst() {
    push_sync_with_mbsync_alone(
        "Path LOCAL/\nInbox LOCAL/INBOX\nSubFolders Verbatim\nFlatten .",
        "INBOX",
        "foo.bar",
        "foo.bar",
    );
}
