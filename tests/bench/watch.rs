//! `make bench`, the watcher and the sync wrapper: figures measured side by
//! side in one run, printed as Markdown tables. One file, so that every
//! figure of BENCHMARKS.md comes from one program run.
//!
//! - `mailsync watch`: delivery → name latency (delay 0 and the default),
//!   lines per burst, start-up and peak RSS on large trees, inotify watches
//!   per folder; against `inotifywait -m -r` on the same tree and work.
//! - `mailsync sync`: its own cost per sync, against the backend run
//!   directly on the same no-op single-folder sync, and a bare `python3`
//!   start-up (the floor of the seed's Python wrapper).

#[path = "../common/mod.rs"]
mod common;

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

fn start_mailsync(root: &Path, delay_ms: u64) -> (Running, Duration) {
    let started = Instant::now();
    let running = Running::spawn(Command::new(mailsync_binary()).args([
        "watch",
        "--maildir",
        root.to_str().unwrap(),
        "--delay",
        &delay_ms.to_string(),
    ]));
    let (ready, at) = running
        .lines
        .recv_timeout(Duration::from_secs(60))
        .expect("ready line");
    assert!(ready.is_empty());
    (running, at - started)
}

fn start_inotifywait(root: &Path) -> (Running, Duration) {
    let started = Instant::now();
    let running = Running::spawn(
        Command::new("inotifywait")
            .args([
                "-m",
                "-r",
                "-e",
                "create",
                "-e",
                "moved_to",
                "-e",
                "moved_from",
                "-e",
                "delete",
            ])
            .arg(root),
    );
    loop {
        let (line, at) = running
            .errors
            .recv_timeout(Duration::from_secs(120))
            .expect("inotifywait ready");
        if line.contains("Watches established") {
            return (running, at - started);
        }
    }
}

/// Latency from the rename into new/ to the name on stdout, over 500
/// deliveries: 50 folders, one delivery each every 10 ms, ten rounds, so
/// that no two deliveries to one folder fall within one delay.
fn latencies(delay_ms: u64) -> (f64, f64) {
    let store = tempfile::tempdir().unwrap();
    tree(store.path(), 50);
    let (watch, _) = start_mailsync(store.path(), delay_ms);
    let mut results = Vec::new();
    for _ in 0..10 {
        let mut sent: HashMap<String, Instant> = HashMap::new();
        for n in 0..50 {
            let folder = store.path().join(format!(".f{n}"));
            let unique = format!("bench.{n}.{}", results.len());
            let tmp = folder.join("tmp").join(&unique);
            fs::write(&tmp, "Subject: bench\n\nbody\n").unwrap();
            let at = Instant::now();
            fs::rename(&tmp, folder.join("new").join(&unique)).unwrap();
            sent.insert(format!("f{n}"), at);
            thread::sleep(Duration::from_millis(10));
        }
        while !sent.is_empty() {
            let (name, at) = watch.lines.recv_timeout(Duration::from_secs(10)).expect("a line");
            if let Some(sent_at) = sent.remove(&name) {
                results.push((at - sent_at).as_secs_f64() * 1000.0);
            }
        }
    }
    (
        percentile(&mut results.clone(), 0.5),
        percentile(&mut results, 0.99),
    )
}

fn burst_lines() -> (usize, usize) {
    let store = tempfile::tempdir().unwrap();
    tree(store.path(), 5);
    let folders: Vec<_> = (0..5).map(|n| store.path().join(format!(".f{n}"))).collect();
    let (watch, _) = start_mailsync(store.path(), 200);
    for n in 0..1000 {
        deliver(&folders[n % 5]);
    }
    let ours = watch.count_until_quiet(Duration::from_millis(1500));
    drop(watch);
    let (inotifywait, _) = start_inotifywait(store.path());
    for n in 0..1000 {
        deliver(&folders[n % 5]);
    }
    let theirs = inotifywait.count_until_quiet(Duration::from_millis(1500));
    (ours, theirs)
}

struct Startup {
    folders: usize,
    ours: Duration,
    rss_mib: f64,
    watches: usize,
    theirs: Duration,
    their_watches: usize,
}

fn startup(folders: usize) -> Startup {
    let store = tempfile::tempdir().unwrap();
    tree(store.path(), folders);
    // Warm the dentry cache for both, so neither pays for the other's misses.
    let _ = Command::new("find")
        .arg(store.path())
        .stdout(Stdio::null())
        .status();
    let (watch, ours) = start_mailsync(store.path(), 200);
    let rss_mib = watch.peak_rss_kib() as f64 / 1024.0;
    let watches = watch.inotify_watches();
    drop(watch);
    let (inotifywait, theirs) = start_inotifywait(store.path());
    let their_watches = inotifywait.inotify_watches();
    Startup {
        folders,
        ours,
        rss_mib,
        watches,
        theirs,
        their_watches,
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
        40,
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

fn main() {
    // `cargo bench` passes --bench; a bare word picks one part.
    let only = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with("--"))
        .unwrap_or_default();
    if only == "startup" {
        for folders in [1_000, 10_000] {
            let s = startup(folders);
            println!(
                "{folders} folders: ready in {:.0} ms, {:.1} MiB",
                s.ours.as_secs_f64() * 1000.0,
                s.rss_mib
            );
        }
    }
    if only.is_empty() || only == "watch" {
        println!("### `mailsync watch` against `inotifywait -m -r`\n");
        let (p50_zero, p99_zero) = latencies(0);
        let (p50_default, p99_default) = latencies(200);
        println!("| latency, rename into new/ → name on stdout (500 deliveries) | p50 | p99 |");
        println!("| --- | --- | --- |");
        println!("| `--delay 0` | {p50_zero:.2} ms | {p99_zero:.2} ms |");
        println!("| default `--delay 200` | {p50_default:.1} ms | {p99_default:.1} ms |");

        let (ours, theirs) = burst_lines();
        println!("\n| burst of 1,000 MDA deliveries into 5 folders | lines printed | per delivery |");
        println!("| --- | --- | --- |");
        println!(
            "| `mailsync watch` (default delay) | {ours} | {:.3} |",
            ours as f64 / 1000.0
        );
        println!(
            "| `inotifywait -m -r -e create,moved_to,moved_from,delete` | {theirs} | {:.2} |",
            theirs as f64 / 1000.0
        );

        println!("\n| folders (Maildir++) | `mailsync watch` ready | peak RSS | inotify watches | per folder | `inotifywait -m -r` ready | its watches | start-up ratio |");
        println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
        for folders in [1_000, 10_000] {
            let s = startup(folders);
            println!(
                "| {} | {:.0} ms | {:.1} MiB | {} | {:.2} | {:.0} ms | {} | {:.2} |",
                s.folders,
                s.ours.as_secs_f64() * 1000.0,
                s.rss_mib,
                s.watches,
                s.watches as f64 / (s.folders + 1) as f64,
                s.theirs.as_secs_f64() * 1000.0,
                s.their_watches,
                s.theirs.as_secs_f64() / s.ours.as_secs_f64()
            );
        }
    }
    if only.is_empty() || only == "sync" {
        sync_overhead();
    }
}
