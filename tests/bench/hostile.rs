//! `mailsync idle` and the Emacs module against servers that send what no
//! real server does (the stand-ins of tests/common/fake_imap.rs): memory
//! and CPU over a window, and how long SIGTERM and `mailsync-stop` take.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::common::fake_imap::{self, FakeImap, Script};
use super::common::hostile_emacs;
use super::{cpu_ms, mailsync_binary, median, proc_file, Running};

/// One hostile server: how `mailsync idle` and Emacs reach it, and what the
/// log says of it (None: nothing; the server only holds the connection up).
struct Case {
    name: &'static str,
    port: u16,
    tls: &'static str,
    expected: Option<&'static str>,
}

/// A `/proc/PID/status` field, in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    proc_file(pid, "status")
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn idle(case: &Case) -> Running {
    Running::spawn(
        Command::new(mailsync_binary())
            .arg("idle")
            .args(fake_imap::idle_args(case.port, "echo pw", case.tls)),
    )
}

/// SIGTERM, then the time until it exited, ms.
fn stop_ms(running: &mut Running) -> f64 {
    let asked = Instant::now();
    // SAFETY: kill has no pointer arguments.
    unsafe { libc::kill(running.child.id() as libc::pid_t, libc::SIGTERM) };
    while running.child.try_wait().ok().flatten().is_none() {
        assert!(asked.elapsed() < Duration::from_secs(60), "no exit after SIGTERM");
        thread::sleep(Duration::from_micros(200));
    }
    asked.elapsed().as_secs_f64() * 1000.0
}

/// One row: RSS at moments of the window, peak, CPU, stop times.
fn row(case: &Case, window: Duration, stops: usize, emacs: &Path) {
    let mut running = idle(case);
    let pid = running.child.id();
    let started = Instant::now();
    let moments = [Duration::from_secs(1), window / 3, window * 2 / 3, window];
    let mut rss = Vec::new();
    for moment in moments {
        thread::sleep(moment.saturating_sub(started.elapsed()));
        rss.push(status_mib(pid, "VmRSS:"));
    }
    let cpu = cpu_ms(pid) / started.elapsed().as_secs_f64() / 10.0;
    let peak = status_mib(pid, "VmHWM:");
    let mut stop = vec![stop_ms(&mut running)];
    for _ in 1..stops {
        let mut running = idle(case);
        thread::sleep(Duration::from_secs(2));
        stop.push(stop_ms(&mut running));
    }
    let mut emacs_stop = Vec::new();
    let mut growth = Vec::new();
    let stream = if case.tls == "imaps" { "ssl" } else { "plain" };
    for _ in 0..stops.min(3) {
        let outcome = hostile_emacs::run(emacs, case.port, stream, case.expected);
        assert!(
            outcome.found,
            "{}: the log never said {:?}",
            case.name, case.expected
        );
        emacs_stop.push(outcome.stop_ms);
        growth.push(outcome.growth_mib);
    }
    let range = |values: &mut Vec<f64>| {
        let (low, high) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(low, high), &v| (low.min(v), high.max(v)));
        format!("{:.1} ({:.1}–{:.1})", median(values), low, high)
    };
    println!(
        "| {} | {} | {:.1} | {:.1} | {} | {} | {} |",
        case.name,
        rss.iter()
            .map(|mib| format!("{mib:.1}"))
            .collect::<Vec<_>>()
            .join(" / "),
        peak,
        cpu,
        range(&mut stop),
        range(&mut growth),
        range(&mut emacs_stop),
    );
}

pub fn table(window: Duration, stops: usize) {
    let serve =
        |capabilities: &'static str, script: Arc<Script>| FakeImap::start_offering(capabilities, script);
    let list = serve(
        fake_imap::CAPABILITIES,
        fake_imap::streaming_on_list(fake_imap::endless_list),
    );
    let line = serve(
        fake_imap::CAPABILITIES,
        fake_imap::streaming_on_list(fake_imap::endless_line),
    );
    let literal = serve(
        fake_imap::CAPABILITIES,
        fake_imap::streaming_on_list(fake_imap::terabyte_literal),
    );
    let flood = serve(fake_imap::WITH_NOTIFY, fake_imap::status_flood(None));
    let (hole, _fillers) = fake_imap::black_hole();
    let cases = [
        Case {
            name: "LIST answer without end",
            port: list.port,
            tls: "none",
            expected: Some("went past 250000 responses"),
        },
        Case {
            name: "a line without end",
            port: line.port,
            tls: "none",
            expected: Some("a line longer than 1 MiB"),
        },
        Case {
            name: "a literal of 999,999,999,999 bytes",
            port: literal.port,
            tls: "none",
            expected: Some("announced a literal"),
        },
        Case {
            name: "STATUS flood, mailboxes never listed",
            port: flood.port,
            tls: "none",
            expected: Some("which it did not list"),
        },
        Case {
            name: "connect black-holed",
            port: hole.local_addr().unwrap().port(),
            tls: "none",
            expected: None,
        },
        Case {
            name: "TLS handshake, a byte every 200 ms",
            port: fake_imap::trickling_tls(),
            tls: "imaps",
            expected: None,
        },
    ];
    let emacs = Path::new("emacs");
    println!("### A hostile server: memory, CPU and stop times\n");
    println!(
        "`mailsync idle` against each stand-in server of tests/common/fake_imap.rs for {} s: its resident \
         memory at 1 s and at a third, two thirds and the end of the window, its peak (VmHWM), and its CPU \
         over the window (all threads, % of one core). Then SIGTERM → exit: the first from the window's \
         process, {} more from processes 2 s into the same server, median (min–max). Last, the module in \
         Debian's Emacs against the same server (`mailsync-imap-servers`), {} runs: Emacs's peak memory \
         added and how long `mailsync-stop` took. The servers send as fast as loopback takes it.\n",
        window.as_secs(),
        stops - 1,
        stops.min(3)
    );
    println!(
        "| server | RSS, MiB: 1 s / ⅓ / ⅔ / end | peak RSS, MiB | CPU, % of a core | SIGTERM → exit, ms | \
         Emacs: peak added, MiB | `mailsync-stop`, ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    for case in &cases {
        row(case, window, stops, emacs);
    }
    println!(
        "\nBounds (src/imap/conn.rs `limits`): a line 1 MiB, a literal 64 MiB (a larger one is refused when \
         announced), 250,000 responses or 64 MiB per command; connect and TLS handshake each woken by a stop."
    );
}
