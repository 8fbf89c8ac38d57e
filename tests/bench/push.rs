//! Push sync for an mbsync user, three ways, each on its own Dovecot on
//! 127.0.0.1 with the same 20 mailboxes and real mbsync (counted by a
//! wrapper first in `$PATH`): `mailsync run --mbsync` (no .mswatchrc), the
//! real mswatch 1.2.0 with `mailsync watch`/`mailsync idle` as its
//! watchers, and a goimapnotify-style set-up written here (one IDLE
//! connection per mailbox, the whole channel synced on each EXISTS). How
//! long a server save takes to reach the local maildir, syncs per
//! delivery, connections the server holds, and the cost while idle.

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::common::servers::{messages, Dovecot};
use super::common::try_mswatch;
use super::{cpu_ms, in_turn, mailsync_binary, percentile, wakeups, Running};

const MAILBOXES: usize = 20;

#[derive(Clone, Copy, PartialEq)]
enum Contender {
    MailsyncRun,
    Mswatch,
    /// One IDLE connection per mailbox; `mbsync CHANNEL` on each EXISTS.
    IdlePerFolder,
}

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::MailsyncRun => {
                "`mailsync run --mbsync test` (NOTIFY; `base_delay` 0.05 s, `inter_delay` 1 s)"
            }
            Contender::Mswatch => "mswatch 1.2.0 + `mailsync watch`/`idle` (`base_delay 1`, `inter_delay 1`)",
            Contender::IdlePerFolder => "goimapnotify-style: IDLE per mailbox, `mbsync test` per EXISTS",
        }
    }

    /// How long after a delivery a second sync of it could still come.
    fn settle(self) -> Duration {
        match self {
            Contender::MailsyncRun => Duration::from_millis(2500),
            Contender::Mswatch => Duration::from_secs(4),
            Contender::IdlePerFolder => Duration::from_millis(1500),
        }
    }
}

fn mailbox(index: usize) -> String {
    format!("m{index:02}")
}

/// What runs for one contender, stopped when dropped.
enum Orchestrator {
    Child(Child),
    Idlers {
        /// Shut down to end the IDLE connections.
        sockets: Arc<Mutex<Vec<TcpStream>>>,
        threads: Vec<thread::JoinHandle<()>>,
        /// When each EXISTS came.
        notices: Arc<Mutex<Vec<Instant>>>,
        /// Its threads' ids, for their CPU time and wake-ups.
        tids: Arc<Mutex<Vec<i64>>>,
    },
}

/// CPU ms and wake-ups of thread `tid` of this process.
fn thread_sample(tid: i64) -> (f64, u64) {
    let task = format!("/proc/self/task/{tid}");
    let stat = fs::read_to_string(format!("{task}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat[stat.rfind(')').map_or(0, |end| end + 2)..]
        .split(' ')
        .collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|at| fields.get(*at)?.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf only reads.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let switches = fs::read_to_string(format!("{task}/status"))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("ctxt_switches:"))
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    (ticks * 1000.0 / hz, switches)
}

fn this_thread_id() -> i64 {
    // SAFETY: gettid has no arguments.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        match self {
            Orchestrator::Child(child) => {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            Orchestrator::Idlers { sockets, threads, .. } => {
                for socket in sockets.lock().unwrap().iter() {
                    let _ = socket.shutdown(std::net::Shutdown::Both);
                }
                for thread in threads.drain(..) {
                    let _ = thread.join();
                }
            }
        }
    }
}

struct Bench {
    dovecot: Dovecot,
    local: PathBuf,
    backend_log: PathBuf,
    orchestrator: Orchestrator,
    observer: Running,
}

/// `$PATH` with a directory first whose `mbsync` logs each run, then runs
/// the real one.
fn counting_path(dir: &Path) -> (String, PathBuf) {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let log = dir.join("backend.log");
    let script = bin.join("mbsync");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec /usr/bin/mbsync \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    Command::new("chmod").arg("755").arg(&script).status().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    (path, log)
}

/// A goimapnotify-style watcher of `name` on plain IMAP: LOGIN, SELECT,
/// IDLE; each `* N EXISTS` is sent on `notices`.
/// Blocks in its read, as goimapnotify does: `sockets` gets a handle
/// whose shutdown ends it.
fn idler(
    port: u16,
    name: String,
    notices: mpsc::Sender<Instant>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
    ready: mpsc::Sender<i64>,
) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sockets.lock().unwrap().push(stream.try_clone().unwrap());
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    // A line starting with `tagged`; false when the server hangs up.
    let mut expect = |reader: &mut BufReader<TcpStream>, tagged: &str| loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return false,
            Ok(_) if line.starts_with(tagged) => return true,
            _ => {}
        }
    };
    let ready_to_idle = expect(&mut reader, "* OK")
        && write!(writer, "a LOGIN test secret\r\n").is_ok()
        && expect(&mut reader, "a OK")
        && write!(writer, "b SELECT \"{name}\"\r\n").is_ok()
        && expect(&mut reader, "b OK")
        && write!(writer, "c IDLE\r\n").is_ok()
        && expect(&mut reader, "+ ");
    if !ready_to_idle {
        return;
    }
    let _ = ready.send(this_thread_id());
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line.contains(" EXISTS") => {
                let _ = notices.send(Instant::now());
            }
            Ok(_) => {}
        }
    }
}

/// A Dovecot that lets one client hold an IDLE connection per mailbox
/// (its default allows 10 per user and address).
fn dovecot() -> Dovecot {
    Dovecot::start_with("/", false, "mail_max_userip_connections = 100")
}

fn start(contender: Contender, mswatch: &Path) -> Bench {
    let dovecot = dovecot();
    for index in 0..MAILBOXES {
        dovecot.save(&mailbox(index), "before the start");
    }
    let dir = dovecot.dir.path().to_path_buf();
    let local = dir.join("local");
    let rc = dovecot.mbsyncrc(&local);
    let (path, backend_log) = counting_path(&dir);
    let mailsync = mailsync_binary();
    let log = fs::File::create(dir.join("orchestrator.log")).unwrap();
    let orchestrator = match contender {
        Contender::MailsyncRun | Contender::Mswatch => {
            let mut command = match contender {
                Contender::MailsyncRun => {
                    let mut command = Command::new(&mailsync);
                    command
                        .args(["run", "--quiet", "--mbsync", "test", "--sync-config"])
                        .arg(&rc);
                    command
                }
                _ => {
                    let config = dir.join("mswatchrc");
                    fs::write(
                        &config,
                        format!(
                            "base_delay 1\ninter_delay 1\nmax_delay 4\n\
                             sync \"{mailsync}\" \"sync\" --backend mbsync --config \"{rc}\" --local-separator /\n\
                             mailbox_prefix test :\n\
                             store local\n{{\n  watch \"{mailsync}\" \"watch\" --maildir \"{local}\" --layout verbatim --delay 0\n}}\n\
                             store server\n{{\n  watch \"{mailsync}\" \"idle\" --mbsync test --config \"{rc}\" --delay 0\n}}\n",
                            rc = rc.display(),
                            local = local.display()
                        ),
                    )
                    .unwrap();
                    let mut command = Command::new(mswatch);
                    command.arg("-c").arg(&config);
                    command
                }
            };
            Orchestrator::Child(
                command
                    .env("PATH", &path)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .unwrap(),
            )
        }
        Contender::IdlePerFolder => {
            let sockets = Arc::new(Mutex::new(Vec::new()));
            let notices = Arc::new(Mutex::new(Vec::new()));
            let (told, heard) = mpsc::channel::<Instant>();
            let (ready_tx, ready_rx) = mpsc::channel();
            let mut threads = Vec::new();
            for index in 0..MAILBOXES {
                let (told, sockets, ready) = (told.clone(), Arc::clone(&sockets), ready_tx.clone());
                let (port, name) = (dovecot.port, mailbox(index));
                threads.push(thread::spawn(move || idler(port, name, told, sockets, ready)));
            }
            drop(told);
            let tids = Arc::new(Mutex::new(Vec::new()));
            for _ in 0..MAILBOXES {
                let tid = ready_rx
                    .recv_timeout(Duration::from_secs(30))
                    .expect("an IDLE connection");
                tids.lock().unwrap().push(tid);
            }
            // The runner: the whole channel per notice, one run at a time,
            // notices during a run making one more run after it.
            let (kept, rc, path, runner_tids) =
                (Arc::clone(&notices), rc.clone(), path.clone(), Arc::clone(&tids));
            let sync = move || {
                let _ = Command::new("mbsync")
                    .args(["-q", "-c"])
                    .arg(&rc)
                    .arg("test")
                    .env("PATH", &path)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            };
            sync();
            threads.push(thread::spawn(move || {
                runner_tids.lock().unwrap().push(this_thread_id());
                while let Ok(first) = heard.recv() {
                    kept.lock().unwrap().push(first);
                    while let Ok(more) = heard.try_recv() {
                        kept.lock().unwrap().push(more);
                    }
                    sync();
                }
            }));
            Orchestrator::Idlers {
                sockets,
                threads,
                notices,
                tids,
            }
        }
    };
    // The first sync makes the local store; then the observer watches it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while (0..MAILBOXES).any(|index| messages(&local.join(mailbox(index))) < 1) {
        assert!(
            Instant::now() < deadline,
            "{}: no start-up sync",
            contender.name()
        );
        thread::sleep(Duration::from_millis(50));
    }
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
    thread::sleep(contender.settle());
    Bench {
        dovecot,
        local,
        backend_log,
        orchestrator,
        observer,
    }
}

fn syncs(bench: &Bench) -> usize {
    fs::read_to_string(&bench.backend_log)
        .unwrap_or_default()
        .lines()
        .count()
}

/// The pids of `pid` and every process below it (its threads' children too).
fn tree(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    let mut at = 0;
    while at < pids.len() {
        for task in fs::read_dir(format!("/proc/{}/task", pids[at]))
            .into_iter()
            .flatten()
            .flatten()
        {
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

fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Connections Dovecot holds for user `test` (`doveadm who -1`).
fn connections(bench: &Bench) -> usize {
    bench
        .dovecot
        .doveadm(&["who", "-1", "test"], None)
        .lines()
        .filter(|line| line.starts_with("test "))
        .count()
}

/// CPU ms and wake-ups so far, of what one contender runs.
type Sampler = Box<dyn Fn() -> (f64, u64)>;

#[derive(Default)]
struct Figures {
    latencies: Vec<f64>,
    /// Save → the server's notice reached the IDLE-per-mailbox client.
    notices: Vec<f64>,
    syncs: usize,
    deliveries: usize,
    connections: usize,
    /// Idle CPU ms and wake-ups per hour, and RSS KiB (None for threads
    /// of the bench): the orchestrator's whole tree, or its threads.
    idle: Option<(f64, u64, Option<u64>)>,
}

fn measure(
    contender: Contender,
    mswatch: &Path,
    deliveries: usize,
    idle_window: Option<Duration>,
) -> Figures {
    let bench = start(contender, mswatch);
    let mut figures = Figures {
        deliveries,
        connections: connections(&bench),
        ..Figures::default()
    };
    let before = syncs(&bench);
    for round in 0..deliveries {
        let name = mailbox(round % MAILBOXES);
        let folder = bench.local.join(&name);
        let had = messages(&folder);
        while bench.observer.lines.try_recv().is_ok() {}
        let at = Instant::now();
        bench.dovecot.save(&name, &format!("push {round}"));
        loop {
            let (line, when) = bench
                .observer
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("{}: the message did not reach {name}", contender.name()));
            if line == name && messages(&folder) > had {
                figures.latencies.push((when - at).as_secs_f64() * 1000.0);
                break;
            }
        }
        if let Orchestrator::Idlers { notices, .. } = &bench.orchestrator {
            if let Some(heard) = notices.lock().unwrap().iter().rev().find(|heard| **heard >= at) {
                figures.notices.push((*heard - at).as_secs_f64() * 1000.0);
            }
        }
        thread::sleep(contender.settle());
    }
    figures.syncs = syncs(&bench) - before;
    if let Some(window) = idle_window {
        let add = |(cpu, woken): (f64, u64), (more_cpu, more_woken): (f64, u64)| {
            (cpu + more_cpu, woken + more_woken)
        };
        let (sample, rss): (Sampler, Option<u64>) = match &bench.orchestrator {
            Orchestrator::Child(child) => {
                let pids: HashSet<u32> = tree(child.id()).into_iter().collect();
                let rss = pids.iter().map(|&pid| rss_kib(pid)).sum();
                (
                    Box::new(move || {
                        pids.iter()
                            .map(|&pid| (cpu_ms(pid), wakeups(pid)))
                            .fold((0.0, 0), add)
                    }),
                    Some(rss),
                )
            }
            Orchestrator::Idlers { tids, .. } => {
                let tids = tids.lock().unwrap().clone();
                (
                    Box::new(move || tids.iter().map(|&tid| thread_sample(tid)).fold((0.0, 0), add)),
                    None,
                )
            }
        };
        let start = sample();
        thread::sleep(window);
        let end = sample();
        let hour = 3600.0 / window.as_secs_f64();
        figures.idle = Some((
            (end.0 - start.0) * hour,
            ((end.1 - start.1) as f64 * hour) as u64,
            rss,
        ));
    }
    figures
}

/// One `mbsync test:m00` with nothing to do, ms: the floor's sync part.
fn one_mbsync_run() -> Vec<f64> {
    let dovecot = dovecot();
    dovecot.save("m00", "one");
    let local = dovecot.dir.path().join("local");
    let rc = dovecot.mbsyncrc(&local);
    let run = || {
        let at = Instant::now();
        let status = Command::new("mbsync")
            .args(["-q", "-c"])
            .arg(&rc)
            .arg("test:m00")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        at.elapsed().as_secs_f64() * 1000.0
    };
    run();
    (0..9).map(|_| run()).collect()
}

pub fn table(deliveries: usize, idle_window: Duration) {
    println!(
        "### Push sync for an mbsync user: `mailsync run --mbsync` against mswatch and IDLE per mailbox\n"
    );
    let Some(mswatch) = try_mswatch() else {
        println!("(mswatch 1.2.0 could not be fetched: scripts/fetch-mswatch.sh; table skipped)\n");
        return;
    };
    let contenders = [
        Contender::MailsyncRun,
        Contender::Mswatch,
        Contender::IdlePerFolder,
    ];
    println!(
        "Each contender on its own Dovecot (NOTIFY offered; `mail_max_userip_connections = 100`, as \
         its default 10 refuses an IDLE connection per mailbox) with {MAILBOXES} mailboxes and real mbsync into a \
         Verbatim store, the same mbsyncrc; `mailsync run --mbsync test` reads nothing else; mswatch runs an \
         `.mswatchrc` with its smallest delays (whole seconds) and `mailsync watch`/`mailsync idle` as its \
         watchers; the goimapnotify-style set-up (written in the bench, as goimapnotify configurations \
         usually are) holds one IDLE connection per mailbox and runs `mbsync test`, the whole channel, on \
         each EXISTS (one run at a time; notices during a run make one more). {deliveries} messages saved \
         on the server one at a time, one mailbox after another, in two passes (the second in the opposite \
         order); latency from the start of the save to the message's arrival in the local maildir as an \
         observer `mailsync watch --delay 0` sees it; after each, time for a second sync (2.5 s, 4 s, \
         1.5 s). Syncs: mbsync runs counted by a wrapper in `$PATH`. Connections: what `doveadm who` \
         lists for the user after start-up. Idle (first pass): {} s with nothing happening, scaled to an \
         hour, the orchestrator's whole process tree (the goimapnotify-style set-up: its own threads in the \
         bench process); RSS of that tree at the end of it. The floor: the server's own notice (save → `* EXISTS` on \
         an IDLE connection, from the third row) plus one `mbsync test:m00` with nothing to do \
         (median of 9).\n",
        idle_window.as_secs()
    );
    let mut figures: Vec<Figures> = Vec::new();
    for pass in 0..2 {
        for (at, contender) in in_turn(&contenders, pass) {
            let more = measure(
                contender,
                &mswatch,
                deliveries,
                (pass == 0).then_some(idle_window),
            );
            match figures.get_mut(at) {
                Some(known) => {
                    known.latencies.extend(more.latencies);
                    known.notices.extend(more.notices);
                    known.syncs += more.syncs;
                    known.deliveries += more.deliveries;
                }
                None => figures.push(more),
            }
        }
    }
    println!(
        "| contender | server save → local maildir p50 [min–max] ms | p99 ms | syncs per delivery | \
         connections held | idle CPU ms per hour | idle wake-ups per hour | RSS KiB |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (contender, figures) in contenders.iter().zip(&mut figures) {
        let (min, max) = figures
            .latencies
            .iter()
            .fold((f64::MAX, f64::MIN), |(min, max), &ms| (min.min(ms), max.max(ms)));
        let (cpu, woken, rss) = figures.idle.unwrap_or_default();
        let rss = rss.map_or("(threads of the bench)".to_string(), |rss| rss.to_string());
        println!(
            "| {} | {:.0} [{min:.0}–{max:.0}] | {:.0} | {:.2} | {} | {cpu:.0} | {woken} | {rss} |",
            contender.name(),
            percentile(&mut figures.latencies, 0.5),
            percentile(&mut figures.latencies, 0.99),
            figures.syncs as f64 / figures.deliveries as f64,
            figures.connections,
        );
    }
    let notices = &mut figures[2].notices;
    let mut runs = one_mbsync_run();
    if !notices.is_empty() {
        let (notice, run) = (percentile(notices, 0.5), percentile(&mut runs, 0.5));
        println!(
            "| floor: the server's notice ({notice:.0} ms) + one `mbsync test:m00` run ({run:.0} ms) | {:.0} | | 1.00 | | | | |",
            notice + run
        );
    }
    println!();
}
