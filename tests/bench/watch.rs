//! `make bench`, the watcher and the sync wrapper: figures measured side by
//! side in one run, printed as Markdown tables. One file, so that every
//! figure of BENCHMARKS.md comes from one program run.
//!
//! - `mailsync watch` against `inotifywait -m -r` on the same tree and work,
//!   every table alternating the order of its contenders from run to run and
//!   showing median [min–max] of several runs: delivery → line latency
//!   (with the kernel path, `inotifywait -e moved_to`, as the floor); CPU per
//!   delivery in a burst; what `grep -r` reading every message costs;
//!   start-up time, CPU and peak memory from 1,000 to 100,000 folders, warm
//!   and (as root) cold caches; removing 1,000 folders of 50,000.
//! - `mailsync sync`: its own cost per sync, against the backend run
//!   directly on the same no-op single-folder sync, and a bare `python3`
//!   start-up (the floor of the seed's Python wrapper).
//! - `mailsync idle` ([`imap`]): against a raw IDLE client on the same
//!   Dovecot; start-up, connections and memory at 1 to 1,000 mailboxes;
//!   wake-ups while idle.
//! - A hostile server ([`hostile`]): `mailsync idle` and the module in
//!   Emacs against the stand-in servers; memory and CPU over a window, and
//!   how long SIGTERM and `mailsync-stop` take.

#[path = "../common/mod.rs"]
mod common;
mod hostile;
mod imap;
mod push;
mod run;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};

use common::servers::Dovecot;
use common::{deliver, make_maildir};

fn mailsync_binary() -> String {
    std::env::var("MAILSYNC_BIN")
        .unwrap_or_else(|_| format!("{}/target/release/mailsync", env!("CARGO_MANIFEST_DIR")))
}

fn percentile(values: &mut [f64], fraction: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 * fraction) as usize).min(values.len() - 1)]
}

fn median(values: &mut [f64]) -> f64 {
    percentile(values, 0.5)
}

/// A Maildir++ tree with `folders` folders below an INBOX.
fn tree(root: &Path, folders: usize) {
    make_maildir(root);
    for n in 0..folders {
        make_maildir(&root.join(format!(".f{n}")));
    }
}

/// A running watcher (ours or inotifywait) with its lines timed on arrival.
struct Running {
    child: std::process::Child,
    lines: Receiver<(String, Instant)>,
    errors: Receiver<(String, Instant)>,
}

impl Running {
    fn spawn(command: &mut Command) -> Running {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn watcher");
        let lines = reader(child.stdout.take().unwrap());
        let errors = reader(child.stderr.take().unwrap());
        Running { child, lines, errors }
    }

    fn peak_rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    }

    /// inotify watches held by the process, from its descriptors' fdinfo.
    fn inotify_watches(&self) -> usize {
        let dir = format!("/proc/{}/fdinfo", self.child.id());
        fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|entry| fs::read_to_string(entry.path()).ok())
                    .map(|info| {
                        info.lines()
                            .filter(|line| line.starts_with("inotify wd:"))
                            .count()
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    fn count_until_quiet(&self, quiet: Duration) -> usize {
        let mut count = 0;
        while self.lines.recv_timeout(quiet).is_ok() {
            count += 1;
        }
        count
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reader(stream: impl std::io::Read + Send + 'static) -> Receiver<(String, Instant)> {
    let (tx, rx) = unbounded();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send((line, Instant::now())).is_err() {
                break;
            }
        }
    });
    rx
}

/// The contenders of the watcher benchmarks.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Watcher {
    /// `mailsync watch --delay MS`.
    Mailsync(u64),
    /// `inotifywait -m -r` with these events, printing `%w%f`.
    Inotifywait(&'static [&'static str]),
}

/// What `inotifywait` must see to follow a tree of folders as mailsync does.
const FOLLOWS_TREE: &[&str] = &["create", "moved_to", "moved_from", "delete"];
/// Like for like with mailsync's reports: a message arriving, and nothing else.
const ARRIVALS: &[&str] = &["moved_to"];

impl Watcher {
    fn name(self) -> String {
        match self {
            Watcher::Mailsync(200) => "`mailsync watch` (default delay 200 ms)".into(),
            Watcher::Mailsync(ms) => format!("`mailsync watch --delay {ms}`"),
            Watcher::Inotifywait([]) => "`inotifywait -m -r` (every event)".into(),
            Watcher::Inotifywait(events) => format!("`inotifywait -m -r -e {}`", events.join(",")),
        }
    }

    /// Starts watching `root`; returns once every watch is set, with the
    /// time that took.
    fn start(self, root: &Path) -> (Running, Duration) {
        let started = Instant::now();
        match self {
            Watcher::Mailsync(delay) => {
                let running = Running::spawn(
                    Command::new(mailsync_binary())
                        .args(["watch", "--delay", &delay.to_string(), "--maildir"])
                        .arg(root),
                );
                let (ready, at) = running
                    .lines
                    .recv_timeout(Duration::from_secs(300))
                    .expect("ready line");
                assert!(ready.is_empty());
                (running, at - started)
            }
            Watcher::Inotifywait(events) => {
                let mut command = Command::new("inotifywait");
                command.args(["-m", "-r", "--format", "%w%f"]);
                for event in events {
                    command.args(["-e", event]);
                }
                let running = Running::spawn(command.arg(root));
                loop {
                    let (line, at) = running
                        .errors
                        .recv_timeout(Duration::from_secs(300))
                        .expect("inotifywait ready");
                    if line.contains("Watches established") {
                        return (running, at - started);
                    }
                }
            }
        }
    }
}

/// Several samples of one figure: shown as median [min–max].
#[derive(Default, Clone)]
struct Samples(Vec<f64>);

impl Samples {
    fn add(&mut self, value: f64) {
        self.0.push(value);
    }

    fn median(&self) -> f64 {
        median(&mut self.0.clone())
    }

    fn show(&self, decimals: usize) -> String {
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!(
            "{:.*} [{:.*}–{:.*}]",
            decimals,
            self.median(),
            decimals,
            min,
            decimals,
            max
        )
    }
}

/// Both orders in turn: sample `n` runs the contenders in order when even,
/// reversed when odd, so that drift falls on all alike. Each comes with its
/// place in `contenders`, where its figures go.
fn in_turn<T: Copy>(contenders: &[T], n: usize) -> Vec<(usize, T)> {
    let mut order: Vec<(usize, T)> = contenders.iter().copied().enumerate().collect();
    if n % 2 == 1 {
        order.reverse();
    }
    order
}

fn proc_file(pid: u32, file: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default()
}

/// CPU time of the whole process so far (threads that ended included), ms.
fn cpu_ms(pid: u32) -> f64 {
    let stat = proc_file(pid, "stat");
    // Fields after the command name, which ends with the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap_or(0) + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    // SAFETY: sysconf only reads.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks * 1000.0 / hz
}

/// CPU time of the threads running now, in ns (finer than `cpu_ms`).
fn cpu_ns_live(pid: u32) -> f64 {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|task| fs::read_to_string(task.path().join("schedstat")).ok())
                .filter_map(|stat| stat.split(' ').next()?.parse::<f64>().ok())
                .sum()
        })
        .unwrap_or(0.0)
}

/// Times any thread of the process was woken (context switches).
fn wakeups(pid: u32) -> u64 {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|task| fs::read_to_string(task.path().join("status")).ok())
                .flat_map(|status| {
                    status
                        .lines()
                        .filter(|line| line.contains("ctxt_switches:"))
                        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
                        .collect::<Vec<_>>()
                })
                .sum()
        })
        .unwrap_or(0)
}

fn is_root() -> bool {
    // SAFETY: geteuid only reads.
    unsafe { libc::geteuid() == 0 }
}

/// Empties the page, dentry and inode caches (root only).
fn drop_caches() {
    let _ = Command::new("sync").status();
    fs::write("/proc/sys/vm/drop_caches", "3").expect("drop caches");
}

/// Delivery into `folder` timed from the rename into new/.
fn deliver_timed(folder: &Path, unique: &str) -> Instant {
    let tmp = folder.join("tmp").join(unique);
    fs::write(&tmp, "Subject: bench\n\nbody\n").unwrap();
    let at = Instant::now();
    fs::rename(&tmp, folder.join("new").join(unique)).unwrap();
    at
}

/// The folder a watcher's line names: mailsync prints `fN`, inotifywait
/// `ROOT/.fN/new/NAME`.
fn folder_of(line: &str) -> Option<String> {
    if !line.contains('/') {
        return Some(line.to_string());
    }
    line.split('/')
        .find_map(|part| part.strip_prefix(".f").map(|n| format!("f{n}")))
}

/// Latency from the rename into new/ to the line naming it: 200
/// deliveries, 50 folders in turn, one every 10 ms (so none falls within
/// the delay of the last to its folder). Returns (p50, p99) in ms.
fn latency_sample(watcher: Watcher, root: &Path, round: usize) -> (f64, f64) {
    let (running, _) = watcher.start(root);
    let mut results = Vec::new();
    for batch in 0..2 {
        let mut sent: HashMap<String, Instant> = HashMap::new();
        for n in 0..50 {
            let unique = format!("lat.{round}.{batch}.{n}.{}", std::process::id());
            sent.insert(
                format!("f{n}"),
                deliver_timed(&root.join(format!(".f{n}")), &unique),
            );
            thread::sleep(Duration::from_millis(10));
        }
        while !sent.is_empty() {
            let (line, at) = running
                .lines
                .recv_timeout(Duration::from_secs(10))
                .expect("a line");
            if let Some(sent_at) = folder_of(&line).and_then(|folder| sent.remove(&folder)) {
                results.push((at - sent_at).as_secs_f64() * 1000.0);
            }
        }
    }
    (
        percentile(&mut results.clone(), 0.5),
        percentile(&mut results, 0.99),
    )
}

fn latency_table(samples: usize) {
    let store = tempfile::tempdir().unwrap();
    tree(store.path(), 50);
    let contenders = [
        Watcher::Mailsync(0),
        Watcher::Inotifywait(ARRIVALS),
        Watcher::Mailsync(200),
    ];
    let mut p50s = vec![Samples::default(); contenders.len()];
    let mut p99s = vec![Samples::default(); contenders.len()];
    for n in 0..samples {
        for (at, watcher) in in_turn(&contenders, n) {
            let (p50, p99) = latency_sample(watcher, store.path(), n);
            p50s[at].add(p50);
            p99s[at].add(p99);
        }
    }
    println!("| latency, rename into new/ → line on stdout ({samples} runs × 100 deliveries; median [min–max] of the runs) | p50, ms | p99, ms |");
    println!("| --- | --- | --- |");
    for (at, watcher) in contenders.iter().enumerate() {
        let floor = if matches!(watcher, Watcher::Inotifywait(_)) {
            " — the kernel path, the floor"
        } else {
            ""
        };
        println!(
            "| {}{floor} | {} | {} |",
            watcher.name(),
            p50s[at].show(2),
            p99s[at].show(2)
        );
    }
    println!(
        "\nmailsync `--delay 0` / the floor, p50: {:.2}×. The floor prints every arrival the moment the kernel reports it; mailsync hands it through notify's thread and its engine's, and prints each folder once per delay.",
        p50s[0].median() / p50s[1].median()
    );
}

/// CPU per delivery while 10,000 MDA deliveries go into 100 folders.
/// CPU per delivery in a burst, on the temp dir's file system and on tmpfs.
/// On a disk the deliveries land at the pace of its writes, which varies
/// from run to run: the slower they come, the fewer each wake-up takes in,
/// which shows mostly in mailsync's coalescing. On tmpfs they come as fast as
/// the MDA makes them, at a steady pace: the rows compare the watchers.
fn burst_tables(samples: usize) {
    let shm = Path::new("/dev/shm");
    burst_table(samples, &std::env::temp_dir(), "the temp dir");
    if shm.is_dir() {
        burst_table(samples, shm, "tmpfs (/dev/shm)");
    }
}

fn burst_table(samples: usize, base: &Path, place: &str) {
    const DELIVERIES: usize = 10_000;
    let store = tempfile::tempdir_in(base).unwrap();
    tree(store.path(), 100);
    let folders: Vec<_> = (0..100).map(|n| store.path().join(format!(".f{n}"))).collect();
    let contenders = [
        Watcher::Mailsync(200),
        Watcher::Inotifywait(ARRIVALS),
        Watcher::Mailsync(0),
    ];
    let mut cpu = vec![Samples::default(); contenders.len()];
    let mut lines = vec![Samples::default(); contenders.len()];
    for n in 0..samples {
        for (at, watcher) in in_turn(&contenders, n) {
            let (running, _) = watcher.start(store.path());
            let pid = running.child.id();
            let before = cpu_ns_live(pid);
            for d in 0..DELIVERIES {
                deliver(&folders[d % folders.len()]);
            }
            let printed = running.count_until_quiet(Duration::from_millis(600));
            cpu[at].add((cpu_ns_live(pid) - before) / DELIVERIES as f64 / 1000.0);
            lines[at].add(printed as f64);
            drop(running);
            for folder in &folders {
                for entry in fs::read_dir(folder.join("new")).unwrap().flatten() {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
    println!("\n| {DELIVERIES} MDA deliveries into 100 folders on {place} ({samples} runs, median [min–max]) | watcher CPU per delivery, µs | lines printed |");
    println!("| --- | --- | --- |");
    for (at, watcher) in contenders.iter().enumerate() {
        println!(
            "| {} | {} | {} |",
            watcher.name(),
            cpu[at].show(2),
            lines[at].show(0)
        );
    }
    println!(
        "\nCPU per delivery on {place}, mailsync (default delay) / `inotifywait -e moved_to`: {:.2}×; with `--delay 0`: {:.2}×.",
        cpu[0].median() / cpu[1].median(),
        cpu[2].median() / cpu[1].median()
    );
}

/// One start-up: time to ready, CPU to ready, peak RSS, watches.
struct Start {
    ready_ms: f64,
    cpu_ms: f64,
    rss_mib: f64,
    watches: usize,
}

fn start_once(watcher: Watcher, root: &Path) -> Start {
    let (running, ready) = watcher.start(root);
    let pid = running.child.id();
    Start {
        ready_ms: ready.as_secs_f64() * 1000.0,
        cpu_ms: cpu_ms(pid),
        rss_mib: running.peak_rss_kib() as f64 / 1024.0,
        watches: running.inotify_watches(),
    }
}

/// A tree of `folders` folders made under `base` for the bench, removed after.
fn big_tree(base: &Path, folders: usize) -> tempfile::TempDir {
    let store = tempfile::Builder::new()
        .prefix("mailsync-bench-")
        .tempdir_in(base)
        .unwrap();
    // One mkdir per directory (no create_dir_all): 400,000 of them at 100,000 folders.
    let make = |dir: &Path| {
        fs::create_dir(dir).unwrap();
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir(dir.join(sub)).unwrap();
        }
    };
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir(store.path().join(sub)).unwrap();
    }
    for n in 0..folders {
        make(&store.path().join(format!(".f{n}")));
    }
    store
}

/// Raises `fs.inotify.max_user_watches` while the big trees are watched, and
/// puts it back when dropped.
struct WatchLimit(Option<String>);

impl WatchLimit {
    const FILE: &'static str = "/proc/sys/fs/inotify/max_user_watches";

    fn now() -> usize {
        fs::read_to_string(Self::FILE)
            .ok()
            .and_then(|limit| limit.trim().parse().ok())
            .unwrap_or(0)
    }

    /// At least `needed` watches, where root may set it.
    fn at_least(needed: usize) -> WatchLimit {
        let original = fs::read_to_string(Self::FILE).unwrap_or_default();
        if Self::now() >= needed || !is_root() {
            return WatchLimit(None);
        }
        fs::write(Self::FILE, needed.to_string()).expect("raise max_user_watches");
        WatchLimit(Some(original))
    }
}

impl Drop for WatchLimit {
    fn drop(&mut self) {
        if let Some(original) = &self.0 {
            let _ = fs::write(Self::FILE, original);
        }
    }
}

/// The start-up table; the removal table is measured on the 50,000-folder
/// tree while it exists, and printed after.
fn startup_table(sizes: &[usize], base: &Path, explicit_base: bool) {
    let mut removal = String::new();
    let contenders = [Watcher::Mailsync(200), Watcher::Inotifywait(FOLLOWS_TREE)];
    let cold = is_root();
    println!("\n| folders | caches | runs | ready, ms: mailsync | inotifywait | ratio | CPU to ready, ms: mailsync | inotifywait | ratio | peak RSS, MiB: mailsync | inotifywait | ratio | watches per folder: mailsync, inotifywait |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    // inotifywait -r needs 4 watches per folder; both run at once for a moment.
    let _limit = WatchLimit::at_least(sizes.iter().max().copied().unwrap_or(0) * 8 + 100_000);
    for &folders in sizes {
        if WatchLimit::now() < folders * 4 + 10_000 {
            println!("| {folders} | — | 0 | fs.inotify.max_user_watches ({}) is too low; as root the bench raises it for the run | | | | | | | | | |", WatchLimit::now());
            continue;
        }
        // Beyond 10,000 folders (warm runs only) the tree lives in memory,
        // where making and removing 400,000 directories takes seconds, not
        // the minutes it takes on ext4; with warm caches the watchers see
        // the same.
        let shm = Path::new("/dev/shm");
        let at = if folders > 10_000 && !explicit_base && shm.is_dir() {
            shm
        } else {
            base
        };
        let store = big_tree(at, folders);
        // Cold runs up to 10,000 folders: at 100,000, inotifywait alone
        // takes over a minute per cold start, past the bench's time budget.
        let caches: &[bool] = if cold && folders <= 10_000 {
            &[false, true]
        } else {
            &[false]
        };
        for &cold in caches {
            let runs = match (folders, cold) {
                (0..=10_000, false) => 5,
                _ => 3,
            };
            let mut ready = [Samples::default(), Samples::default()];
            let mut cpu = [Samples::default(), Samples::default()];
            let mut rss = [Samples::default(), Samples::default()];
            let mut watches = [0usize; 2];
            if !cold {
                // Warm the caches for both alike.
                let _ = Command::new("find")
                    .arg(store.path())
                    .stdout(Stdio::null())
                    .status();
            }
            for n in 0..runs {
                for (at, watcher) in in_turn(&contenders, n) {
                    if cold {
                        drop_caches();
                    }
                    let start = start_once(watcher, store.path());
                    ready[at].add(start.ready_ms);
                    cpu[at].add(start.cpu_ms);
                    rss[at].add(start.rss_mib);
                    watches[at] = start.watches;
                }
            }
            println!(
                "| {folders} | {} | {runs} | {} | {} | {:.2} | {} | {} | {:.2} | {} | {} | {:.2} | {:.2}, {:.2} |",
                if cold { "cold" } else { "warm" },
                ready[0].show(0),
                ready[1].show(0),
                ready[0].median() / ready[1].median(),
                cpu[0].show(0),
                cpu[1].show(0),
                cpu[0].median() / cpu[1].median(),
                rss[0].show(1),
                rss[1].show(1),
                rss[0].median() / rss[1].median(),
                watches[0] as f64 / (folders + 1) as f64,
                watches[1] as f64 / (folders + 1) as f64,
            );
        }
        if folders == 50_000 {
            removal = removal_table(store.path(), folders, 3);
        }
    }
    if !cold {
        println!("\n(Cold-cache rows need root, to drop the caches.)");
    }
    println!("\nCold rows (caches dropped before every run) up to 10,000 folders; beyond, inotifywait alone takes over a minute per cold start. Stores of more than 10,000 folders are made on tmpfs (/dev/shm), unless MAILSYNC_BENCH_DIR says where.");
    println!("\nmailsync watches a Maildir++ folder's new/ and cur/ (its own directory too while one of them is missing, and the root); `inotifywait -r` watches every directory, tmp/ too. CPU includes every thread, ended ones too (/proc/PID/stat); peak RSS is VmHWM.");
    print!("{removal}");
}

/// Removing 1,000 folders from a 50,000-folder store, then one delivery.
fn removal_table(store: &Path, folders: usize, samples: usize) -> String {
    const REMOVED: usize = 1_000;
    let contenders = [Watcher::Mailsync(0), Watcher::Inotifywait(FOLLOWS_TREE)];
    let mut cpu = [Samples::default(), Samples::default()];
    let mut late = [Samples::default(), Samples::default()];
    let last = store.join(format!(".f{}", folders - 1));
    for n in 0..samples {
        for (at, watcher) in in_turn(&contenders, n) {
            let (running, _) = watcher.start(store);
            let pid = running.child.id();
            let before = cpu_ns_live(pid);
            for f in 0..REMOVED {
                fs::remove_dir_all(store.join(format!(".f{f}"))).unwrap();
            }
            // A delivery right after: how late is its line?
            let sent = deliver_timed(&last, &format!("after.{n}.{at}"));
            let line_at = loop {
                let (line, at) = running
                    .lines
                    .recv_timeout(Duration::from_secs(600))
                    .expect("the delivery's line");
                let arrival = !line.contains('/') || line.contains("/new/");
                if arrival && folder_of(&line) == Some(format!("f{}", folders - 1)) {
                    break at;
                }
            };
            late[at].add((line_at - sent).as_secs_f64() * 1000.0);
            let _ = running.count_until_quiet(Duration::from_millis(500));
            cpu[at].add((cpu_ns_live(pid) - before) / 1e6);
            drop(running);
            for f in 0..REMOVED {
                make_maildir(&store.join(format!(".f{f}")));
            }
            for entry in fs::read_dir(last.join("new")).unwrap().flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    let mut table = format!("\n| remove {REMOVED} folders from a {folders}-folder store ({samples} runs, median [min–max]) | watcher CPU, ms | a delivery right after → its line, ms |\n| --- | --- | --- |\n");
    for (at, watcher) in contenders.iter().enumerate() {
        table += &format!(
            "| {} | {} | {} |\n",
            watcher.name(),
            cpu[at].show(0),
            late[at].show(1)
        );
    }
    table
}

/// What `grep -r` reading every message of a 10,000-message store costs a watcher.
fn reading_table(samples: usize) {
    let store = tempfile::tempdir().unwrap();
    tree(store.path(), 100);
    for f in 0..100 {
        let folder = store.path().join(format!(".f{f}"));
        for _ in 0..100 {
            deliver(&folder);
        }
    }
    let contenders = [
        Watcher::Mailsync(200),
        Watcher::Inotifywait(ARRIVALS),
        Watcher::Inotifywait(&[]),
    ];
    let mut woken = vec![Samples::default(); contenders.len()];
    let mut cpu = vec![Samples::default(); contenders.len()];
    for n in 0..samples {
        for (at, watcher) in in_turn(&contenders, n) {
            let (running, _) = watcher.start(store.path());
            let pid = running.child.id();
            thread::sleep(Duration::from_millis(300));
            let (wakeups_before, cpu_before) = (wakeups(pid), cpu_ns_live(pid));
            Command::new("grep")
                .args(["-r", "-c", "nothing-matches-this"])
                .arg(store.path())
                .stdout(Stdio::null())
                .status()
                .unwrap();
            thread::sleep(Duration::from_millis(300));
            woken[at].add((wakeups(pid) - wakeups_before) as f64);
            cpu[at].add((cpu_ns_live(pid) - cpu_before) / 1e6);
        }
    }
    println!("\n| `grep -r` reads all 10,000 messages of a 100-folder store ({samples} runs) | watcher threads woken | watcher CPU, ms |");
    println!("| --- | --- | --- |");
    for (at, watcher) in contenders.iter().enumerate() {
        println!(
            "| {} | {} | {} |",
            watcher.name(),
            woken[at].show(0),
            cpu[at].show(2)
        );
    }
}

fn time_once(command: &mut Command) -> f64 {
    let start = Instant::now();
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "a timed run failed");
    start.elapsed().as_secs_f64() * 1000.0
}

/// Medians of `runs` runs of each command, the two taking turns so that
/// drift in the backend's own time falls on both alike.
fn time_pairs(
    runs: usize,
    first: &mut dyn FnMut() -> Command,
    second: &mut dyn FnMut() -> Command,
) -> (f64, f64) {
    let (mut firsts, mut seconds) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        firsts.push(time_once(&mut first()));
        seconds.push(time_once(&mut second()));
    }
    (median(&mut firsts), median(&mut seconds))
}

fn sync_overhead() {
    let dovecot = Dovecot::start(".");
    dovecot.save("INBOX", "bench");
    let local = dovecot.dir.path().join("local");
    let mbsyncrc = dovecot.mbsyncrc(&local.join("mbsync"));
    let offlineimaprc = dovecot.offlineimaprc(&local.join("offlineimap"));
    let binary = mailsync_binary();
    // One sync each first, so the timed ones are no-ops.
    let _ = Command::new("mbsync")
        .arg("-c")
        .arg(&mbsyncrc)
        .arg("test:INBOX")
        .output();
    let _ = Command::new("offlineimap")
        .args(["-o", "-u", "quiet", "-c"])
        .arg(&offlineimaprc)
        .args(["-a", "test", "-f", "INBOX"])
        .output();

    let (mbsync_direct, mbsync_wrapped) = time_pairs(
        40,
        &mut || {
            let mut command = Command::new("mbsync");
            command.arg("-c").arg(&mbsyncrc).arg("test:INBOX");
            command
        },
        &mut || {
            let mut command = Command::new(&binary);
            command
                .args(["sync", "--backend", "mbsync", "--config"])
                .arg(&mbsyncrc)
                .arg("test:INBOX");
            command
        },
    );
    let (offlineimap_direct, offlineimap_wrapped) = time_pairs(
        20,
        &mut || {
            let mut command = Command::new("offlineimap");
            command
                .args(["-o", "-u", "quiet", "-c"])
                .arg(&offlineimaprc)
                .args(["-a", "test", "-f", "INBOX"]);
            command
        },
        &mut || {
            let mut command = Command::new(&binary);
            command
                .args(["sync", "--config"])
                .arg(&offlineimaprc)
                .arg("test:INBOX");
            command
        },
    );
    let (wrapper_alone, python) = time_pairs(
        20,
        &mut || {
            let mut command = Command::new(&binary);
            command.args(["sync", "--backend", "mbsync", "--mbsync", "true", "test:INBOX"]);
            command
        },
        &mut || {
            let mut command = Command::new("python3");
            command.args(["-c", "pass"]);
            command
        },
    );

    println!("\n### `mailsync sync`: the wrapper's own cost per sync (medians)\n");
    println!("| backend, no-op sync of one folder | run directly | through `mailsync sync` | added by the wrapper | ratio |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, direct, wrapped) in [
        ("mbsync (40 runs each)", mbsync_direct, mbsync_wrapped),
        (
            "offlineimap (20 runs each)",
            offlineimap_direct,
            offlineimap_wrapped,
        ),
    ] {
        println!(
            "| {name} | {direct:.1} ms | {wrapped:.1} ms | {:.1} ms | {:.3} |",
            wrapped - direct,
            wrapped / direct
        );
    }
    println!(
        "\n`mailsync sync` around `true` (the wrapper alone: parse, lock, spawn, wait): {wrapper_alone:.2} ms; \
         a bare `python3 -c pass` (the floor of the seed's Python wrapper, before it imports anything): \
         {python:.1} ms, {:.0}× the wrapper.",
        python / wrapper_alone
    );
}

/// Says on stderr how long a part of the bench took, when it ends (the
/// budget of `make bench` is 15 minutes).
struct Took(&'static str, Instant);

impl Took {
    fn new(part: &'static str) -> Took {
        Took(part, Instant::now())
    }
}

impl Drop for Took {
    fn drop(&mut self) {
        eprintln!("bench: {} took {:.0} s", self.0, self.1.elapsed().as_secs_f64());
    }
}

/// A number from the environment (see tests/bench.sh), or `default`.
fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; a bare word picks one part.
    let only = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with("--"))
        .unwrap_or_default();
    let samples = setting("MAILSYNC_BENCH_RUNS", 5) as usize;
    let idle = Duration::from_secs(setting("MAILSYNC_BENCH_IDLE", 10));
    let sizes: Vec<usize> = std::env::var("MAILSYNC_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000,50000,100000".into())
        .split(',')
        .filter_map(|size| size.trim().parse().ok())
        .collect();
    let base = std::env::var_os("MAILSYNC_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    if only.is_empty() || only == "watch" {
        let _took = Took::new("watch");
        println!("### `mailsync watch` against `inotifywait`, side by side\n");
        println!("Each table alternates the order of the contenders from run to run.\n");
        latency_table(samples);
        burst_tables(samples);
        reading_table(3);
    }
    if only.is_empty() || only == "startup" {
        let _took = Took::new("startup");
        startup_table(&sizes, &base, std::env::var_os("MAILSYNC_BENCH_DIR").is_some());
    }
    if only.is_empty() || only == "sync" {
        let _took = Took::new("sync");
        sync_overhead();
    }
    if only.is_empty() || only == "imap" {
        let _took = Took::new("imap");
        imap::tables(samples, idle);
    }
    if only.is_empty() || only == "run" {
        let _took = Took::new("run");
        run::tables(setting("MAILSYNC_BENCH_RUN_DELIVERIES", 2) as usize, idle);
    }
    if only.is_empty() || only == "push" {
        let _took = Took::new("push");
        push::table(setting("MAILSYNC_BENCH_PUSH_DELIVERIES", 20) as usize, idle);
    }
    if only.is_empty() || only == "hostile" {
        let _took = Took::new("hostile");
        hostile::table(
            Duration::from_secs(setting("MAILSYNC_BENCH_HOSTILE", 30)),
            samples,
        );
    }
}
