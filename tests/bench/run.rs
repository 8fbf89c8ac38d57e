//! `mailsync run` against the real mswatch 1.2.0, on the same
//! configuration, each with its own Dovecot on 127.0.0.1 and real mbsync:
//! how long a message saved on the server takes to reach the local maildir,
//! how many syncs each delivery costs, and what each costs while nothing
//! happens.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::common::servers::{messages, Dovecot};
use super::common::{deliver, make_maildir, try_mswatch};
use super::{cpu_ms, in_turn, mailsync_binary, percentile, wakeups, Running};

#[derive(Clone, Copy)]
enum Contender {
    /// The real mswatch 1.2.0 with its smallest working delays (1 s).
    Mswatch,
    /// `mailsync run` with this base_delay and inter_delay, in seconds.
    Run(f64),
}

impl Contender {
    fn name(self) -> String {
        match self {
            Contender::Mswatch => "mswatch 1.2.0, `base_delay 1`, `inter_delay 1`".into(),
            Contender::Run(delay) => format!("`mailsync run`, `base_delay {delay}`, `inter_delay {delay}`"),
        }
    }

    fn delay(self) -> f64 {
        match self {
            Contender::Mswatch => 1.0,
            Contender::Run(delay) => delay,
        }
    }
}

/// One contender at work on its own server and local store.
struct Bench {
    dovecot: Dovecot,
    local: PathBuf,
    syncs: PathBuf,
    orchestrator: Child,
    /// `mailsync watch --delay 0` on the local store: sees a message arrive.
    observer: Running,
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.orchestrator.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.orchestrator.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.orchestrator.kill();
        let _ = self.orchestrator.wait();
    }
}

fn start(contender: Contender, mswatch: &Path) -> Bench {
    let dovecot = Dovecot::start("/");
    dovecot.save("INBOX", "before the start");
    let dir = dovecot.dir.path().to_path_buf();
    let local = dir.join("local");
    let rc = dovecot.mbsyncrc(&local);
    make_maildir(&local.join("INBOX"));
    let syncs = dir.join("syncs.log");
    let script = dir.join("sync.sh");
    let mailsync = mailsync_binary();
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{mailsync}' sync --backend mbsync --config '{}' --local-separator / \"$@\" 2>/dev/null\n",
            syncs.display(),
            rc.display()
        ),
    )
    .unwrap();
    let delay = contender.delay();
    let config = dir.join("mswatchrc");
    fs::write(
        &config,
        format!(
            "base_delay {delay}\ninter_delay {delay}\nmax_delay 4\nsync /bin/sh \"{script}\"\nmailbox_prefix test :\n\
             store local\n{{\n  watch \"{mailsync}\" \"watch\" --maildir \"{local}\" --layout verbatim --delay 0 --report-flags\n}}\n\
             store server\n{{\n  watch \"{mailsync}\" \"idle\" --mbsync test --config \"{rc}\" --delay 0 --report-flags\n}}\n",
            script = script.display(),
            local = local.display(),
            rc = rc.display()
        ),
    )
    .unwrap();
    let log = fs::File::create(dir.join("orchestrator.log")).unwrap();
    let mut command = match contender {
        Contender::Mswatch => {
            let mut command = Command::new(mswatch);
            command.arg("-c").arg(&config);
            command
        }
        Contender::Run(_) => {
            let mut command = Command::new(&mailsync);
            command.args(["run", "--quiet", "--config"]).arg(&config);
            command
        }
    };
    let orchestrator = command
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let observer = Running::spawn(
        Command::new(&mailsync)
            .args(["watch", "--layout", "verbatim", "--delay", "0", "--maildir"])
            .arg(&local),
    );
    let (ready, _) = observer
        .lines
        .recv_timeout(Duration::from_secs(30))
        .expect("observer ready");
    assert!(ready.is_empty());
    let deadline = Instant::now() + Duration::from_secs(60);
    while messages(&local.join("INBOX")) < 1 {
        assert!(Instant::now() < deadline, "no start-up sync");
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_secs(3));
    Bench {
        dovecot,
        local,
        syncs,
        orchestrator,
        observer,
    }
}

fn sync_count(bench: &Bench) -> usize {
    fs::read_to_string(&bench.syncs)
        .unwrap_or_default()
        .lines()
        .count()
}

fn server_messages(bench: &Bench) -> usize {
    bench
        .dovecot
        .doveadm(
            &["-f", "flow", "fetch", "-u", "test", "uid", "mailbox", "INBOX"],
            None,
        )
        .lines()
        .count()
}

/// The pids of `pid` and every process below it.
fn tree(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    let mut at = 0;
    while at < pids.len() {
        let tasks = fs::read_dir(format!("/proc/{}/task", pids[at]))
            .into_iter()
            .flatten()
            .flatten();
        for task in tasks {
            let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
            pids.extend(
                children
                    .split_whitespace()
                    .filter_map(|child| child.parse::<u32>().ok()),
            );
        }
        at += 1;
    }
    pids
}

/// Figures of one contender.
struct Figures {
    latencies: Vec<f64>,
    server_syncs: usize,
    local_syncs: usize,
    /// (CPU ms, wake-ups) while idle: the orchestrator, then its whole tree.
    idle: [(f64, u64); 2],
}

/// After each delivery, time for any second sync to come: the contender's
/// delays, a sync, and Dovecot's notice.
fn settle(contender: Contender) -> Duration {
    Duration::from_secs_f64(2.0 * contender.delay() + 1.0)
}

/// One pass of one contender: `deliveries` each way, then (if asked) the
/// idle window.
fn measure(
    contender: Contender,
    mswatch: &Path,
    deliveries: usize,
    idle_window: Option<Duration>,
) -> Figures {
    let bench = start(contender, mswatch);
    let mut latencies = Vec::new();
    let before = sync_count(&bench);
    for round in 0..deliveries {
        while bench.observer.lines.try_recv().is_ok() {}
        let at = Instant::now();
        bench.dovecot.deliver("INBOX", &format!("bench {round}"));
        loop {
            let (line, when) = bench
                .observer
                .lines
                .recv_timeout(Duration::from_secs(30))
                .expect("the message in the local maildir");
            if line == "INBOX" && messages(&bench.local.join("INBOX")) >= 2 + round {
                latencies.push((when - at).as_secs_f64() * 1000.0);
                break;
            }
        }
        thread::sleep(settle(contender));
    }
    let server_syncs = sync_count(&bench) - before;
    let before = sync_count(&bench);
    let first = server_messages(&bench);
    for round in 0..deliveries {
        deliver(&bench.local.join("INBOX"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while server_messages(&bench) <= first + round {
            assert!(
                Instant::now() < deadline,
                "a local message did not reach the server"
            );
            thread::sleep(Duration::from_millis(50));
        }
        thread::sleep(settle(contender));
    }
    let local_syncs = sync_count(&bench) - before;
    let Some(idle_window) = idle_window else {
        return Figures {
            latencies,
            server_syncs,
            local_syncs,
            idle: [(0.0, 0); 2],
        };
    };
    let pid = bench.orchestrator.id();
    let sample = |pids: &[u32]| -> (f64, u64) {
        pids.iter().fold((0.0, 0), |(cpu, woken), &pid| {
            (cpu + cpu_ms(pid), woken + wakeups(pid))
        })
    };
    // What the last delivery set off (a held report asked after its
    // settle time) ends before the window opens.
    thread::sleep(Duration::from_secs(2));
    let pids = tree(pid);
    let start = [sample(&[pid]), sample(&pids)];
    thread::sleep(idle_window);
    let end = [sample(&[pid]), sample(&pids)];
    let hour = 3600.0 / idle_window.as_secs_f64();
    let idle = [0, 1].map(|which| {
        (
            (end[which].0 - start[which].0) * hour,
            ((end[which].1 - start[which].1) as f64 * hour) as u64,
        )
    });
    Figures {
        latencies,
        server_syncs,
        local_syncs,
        idle,
    }
}

pub fn tables(deliveries: usize, idle_window: Duration) {
    println!("### `mailsync run` against the real mswatch 1.2.0, side by side\n");
    let Some(mswatch) = try_mswatch() else {
        println!("(mswatch 1.2.0 could not be fetched: scripts/fetch-mswatch.sh; table skipped)\n");
        return;
    };
    let contenders = [Contender::Mswatch, Contender::Run(1.0), Contender::Run(0.0)];
    let total = 2 * deliveries;
    println!(
        "The same `.mswatchrc` (both watchers `mailsync watch`/`mailsync idle --delay 0 --report-flags`, \
         sync: `mailsync sync --backend mbsync`), each contender on its own Dovecot and local maildir. \
         mswatch's delays are whole seconds and it stops syncing with 0, so it runs with 1 s; \
         `mailsync run` with the same 1 s, and with 0. {total} messages saved on the server one at a time with \
         `doveadm save`, in two passes of {deliveries} (the second runs the contenders in the opposite order); \
         latency from the start of the save to the message's arrival in the local maildir \
         as an observer `mailsync watch --delay 0` sees it (the path into Emacs adds the module's wake-up, \
         about a millisecond: see the Emacs tables); after each delivery the contender is given \
         2 × delay + 1 s for a second sync. After each pass's server deliveries, {deliveries} messages delivered into the local maildir. \
         Syncs counted by a wrapper around the sync program and shown per 100 deliveries. Idle (first pass, after a 2 s settle): \
         {} s with nothing happening, scaled to an hour; \"tree\" adds the watcher processes (mswatch runs \
         them as children, `mailsync run` in its own process). The server's watcher, `mailsync idle`, is also woken by \
         Dovecot itself: it sends every IDLE connection `* OK Still here` every 2 minutes (its default \
         `imap_idle_notify_interval`), 30 times an hour, which a {} s window catches about once in {} windows: \
         a lone wake-up in a row, {} an hour once scaled, is that.\n",
        idle_window.as_secs(),
        idle_window.as_secs(),
        120 / idle_window.as_secs().max(1),
        3600 / idle_window.as_secs().max(1)
    );
    println!(
        "| orchestrator | server save → local maildir p50 [min–max] ms | p99 ms | syncs per 100 server deliveries | \
         syncs per 100 local deliveries | idle CPU ms per hour (tree) | idle wake-ups per hour (tree) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    // Two passes, the second in the opposite order; the idle window in the
    // first.
    let mut figures: Vec<Figures> = Vec::new();
    for pass in 0..2 {
        for (at, contender) in in_turn(&contenders, pass) {
            let idle = (pass == 0).then_some(idle_window);
            let more = measure(contender, &mswatch, deliveries, idle);
            match figures.get_mut(at) {
                Some(known) => {
                    known.latencies.extend(more.latencies);
                    known.server_syncs += more.server_syncs;
                    known.local_syncs += more.local_syncs;
                }
                None => figures.push(more),
            }
        }
    }
    for (contender, figures) in contenders.iter().zip(&mut figures) {
        let per_100 = |syncs: usize| syncs as f64 * 100.0 / (2 * deliveries) as f64;
        let (min, max) = figures
            .latencies
            .iter()
            .fold((f64::MAX, f64::MIN), |(min, max), &ms| (min.min(ms), max.max(ms)));
        println!(
            "| {} | {:.0} [{min:.0}–{max:.0}] | {:.0} | {:.0} | {:.0} | {:.0} ({:.0}) | {} ({}) |",
            contender.name(),
            percentile(&mut figures.latencies, 0.5),
            percentile(&mut figures.latencies, 0.99),
            per_100(figures.server_syncs),
            per_100(figures.local_syncs),
            figures.idle[0].0,
            figures.idle[1].0,
            figures.idle[0].1,
            figures.idle[1].1,
        );
    }
    println!();
}
