//! `mailsync idle` against the floor of any IMAP watcher: a minimal IDLE
//! client (and a minimal NOTIFY client) written here on a raw socket, on the same Dovecot (plain text on
//! 127.0.0.1 for all, so TLS costs nobody anything), watching the same
//! deliveries at the same moment.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};

use super::common::servers::Dovecot;
use super::{cpu_ms, cpu_ns_live, mailsync_binary, percentile, wakeups, Running, Samples};

/// The minimal client: LOGIN, then SELECT INBOX and IDLE (each `* N
/// EXISTS` is a delivery seen), or with `notify` NOTIFY SET and IDLE (each
/// `* STATUS` is).
struct RawClient {
    lines: Receiver<(String, Instant)>,
    _stream: TcpStream,
}

impl RawClient {
    fn start(port: u16, notify: bool) -> RawClient {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let _ = stream.set_nodelay(true);
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut expect = |until: &str| loop {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).unwrap() > 0, "server closed");
            if line.starts_with(until) {
                break;
            }
        };
        expect("* OK");
        let watch: &[u8] = if notify {
            b"b NOTIFY SET (personal (MessageNew MessageExpunge))\r\n"
        } else {
            b"b SELECT INBOX\r\n"
        };
        stream.write_all(b"a LOGIN test secret\r\n").unwrap();
        stream.write_all(watch).unwrap();
        stream.write_all(b"c IDLE\r\n").unwrap();
        expect("+ ");
        let (tx, lines) = unbounded();
        thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                let seen = if notify {
                    line.starts_with("* STATUS")
                } else {
                    line.ends_with(" EXISTS")
                };
                if seen && tx.send((line, Instant::now())).is_err() {
                    break;
                }
            }
        });
        RawClient {
            lines,
            _stream: stream,
        }
    }
}

/// `mailsync idle` on the plain port, every change printed at once.
fn start_idle(dovecot: &Dovecot, notify: bool) -> (Running, Duration) {
    let started = Instant::now();
    let mut command = Command::new(mailsync_binary());
    command.args([
        "idle",
        "--host",
        "127.0.0.1",
        "--tls",
        "none",
        "--user",
        "test",
        "--delay",
        "0",
    ]);
    command.args([
        "--port",
        &dovecot.port.to_string(),
        "--pass-file",
        &dovecot.password_file("secret").to_string_lossy(),
    ]);
    if !notify {
        command.arg("--no-notify");
    }
    let running = Running::spawn(&mut command);
    let (ready, at) = running
        .lines
        .recv_timeout(Duration::from_secs(120))
        .expect("ready line");
    assert!(ready.is_empty(), "{ready}");
    (running, at - started)
}

fn save(dovecot: &Dovecot, mailbox: &str) {
    dovecot.deliver(mailbox, "bench");
}

/// The process's TCP connections to `port`: its IMAP connections.
fn imap_connections(pid: u32, port: u16) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter_map(|target| {
                    let target = target.to_string_lossy().into_owned();
                    Some(target.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .map(|row| row.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.len() > 9)
        .filter(|fields| fields[2].ends_with(&format!(":{port:04X}")) && inodes.contains(fields[9]))
        .count()
}

fn latency_table(deliveries: usize) {
    let dovecot = Dovecot::start(".");
    let (notify, _) = start_idle(&dovecot, true);
    let (idle, _) = start_idle(&dovecot, false);
    let raw_idle = RawClient::start(dovecot.port, false);
    let raw_notify = RawClient::start(dovecot.port, true);
    let names = [
        "raw IDLE client (the floor of IDLE)",
        "`mailsync idle --no-notify` (IDLE)",
        "raw NOTIFY client (the floor of NOTIFY)",
        "`mailsync idle` (NOTIFY)",
    ];
    let mut latencies = vec![Vec::new(); 4];
    let cpu_before = [cpu_ms(idle.child.id()), cpu_ms(notify.child.id())];
    for _ in 0..deliveries {
        let at = Instant::now();
        save(&dovecot, "INBOX");
        let seen = [
            raw_idle.lines.recv_timeout(Duration::from_secs(10)),
            idle.lines.recv_timeout(Duration::from_secs(10)),
            raw_notify.lines.recv_timeout(Duration::from_secs(10)),
            notify.lines.recv_timeout(Duration::from_secs(10)),
        ];
        for (index, line) in seen.into_iter().enumerate() {
            let (_, when) = line.unwrap_or_else(|_| panic!("{} saw no delivery", names[index]));
            latencies[index].push((when - at).as_secs_f64() * 1000.0);
        }
    }
    let cpu = [
        (cpu_ms(idle.child.id()) - cpu_before[0]) / deliveries as f64,
        (cpu_ms(notify.child.id()) - cpu_before[1]) / deliveries as f64,
    ];
    println!(
        "Server delivery → reported: {deliveries} messages saved into INBOX one at a time with `doveadm save`, \
         timed from the start of `doveadm save` (about 15 ms of it is doveadm starting) to the line or the \
         raw client's `* N EXISTS`; all four watch the same deliveries at once, over plain IMAP on 127.0.0.1. \
         Most of each figure is Dovecot's own delay before it tells IDLE and NOTIFY clients.\n"
    );
    println!("| watcher | p50 ms | p99 ms | p50 vs its floor | CPU per delivery, ms |");
    println!("| --- | --- | --- | --- | --- |");
    for (index, name) in names.iter().enumerate() {
        // Each mailsync row is measured against the raw client above it.
        let floor = percentile(&mut latencies[index - index % 2].clone(), 0.5);
        let p50 = percentile(&mut latencies[index], 0.5);
        let p99 = percentile(&mut latencies[index], 0.99);
        let cpu = if index % 2 == 0 {
            "–".to_string()
        } else {
            format!("{:.2}", cpu[index / 2])
        };
        println!("| {name} | {p50:.1} | {p99:.1} | {:.2}× | {cpu} |", p50 / floor);
    }
    println!();
}

fn make_mailboxes(dovecot: &Dovecot, count: usize) {
    let names: Vec<String> = (0..count).map(|index| format!("m{index:04}")).collect();
    for chunk in names.chunks(200) {
        let mut args = vec!["mailbox", "create", "-u", "test"];
        args.extend(chunk.iter().map(String::as_str));
        dovecot.doveadm(&args, None);
    }
}

fn size_table(sizes: &[usize], samples: usize) {
    println!(
        "Start-up at size: `mailsync idle` on an account of N mailboxes (+ INBOX), NOTIFY and IDLE \
         (`--no-notify`, default `--max-connections 8`: 7 IDLE connections, the rest polled), {samples} runs \
         each in alternating order; time until the ready line, IMAP connections held, CPU until ready, peak \
         resident memory. (CPU: of the threads alive at ready; ended ones are not counted.)\n"
    );
    println!("| mailboxes | mode | ready ms | connections | CPU ms | peak RSS MiB |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for &size in sizes {
        let dovecot = Dovecot::start(".");
        make_mailboxes(&dovecot, size);
        let modes = [true, false];
        let mut ready = [Samples::default(), Samples::default()];
        let mut connections = [Samples::default(), Samples::default()];
        let mut cpu = [Samples::default(), Samples::default()];
        let mut rss = [Samples::default(), Samples::default()];
        for run in 0..samples {
            for (index, notify) in super::in_turn(&modes, run) {
                let (running, took) = start_idle(&dovecot, notify);
                let pid = running.child.id();
                ready[index].add(took.as_secs_f64() * 1000.0);
                connections[index].add(imap_connections(pid, dovecot.port) as f64);
                cpu[index].add(cpu_ns_live(pid) / 1e6);
                rss[index].add(running.peak_rss_kib() as f64 / 1024.0);
            }
        }
        for (index, notify) in modes.iter().enumerate() {
            println!(
                "| {size} | {} | {} | {} | {} | {} |",
                if *notify { "NOTIFY" } else { "IDLE" },
                ready[index].show(0),
                connections[index].show(0),
                cpu[index].show(1),
                rss[index].show(1)
            );
        }
    }
    println!();
}

fn idle_table(window: Duration) {
    let dovecot = Dovecot::start(".");
    make_mailboxes(&dovecot, 100);
    let (notify, _) = start_idle(&dovecot, true);
    let (idle, _) = start_idle(&dovecot, false);
    thread::sleep(Duration::from_secs(2));
    let before = [wakeups(notify.child.id()), wakeups(idle.child.id())];
    let cpu_before = [cpu_ms(idle.child.id()), cpu_ms(notify.child.id())];
    thread::sleep(window);
    let woken = [
        wakeups(notify.child.id()) - before[0],
        wakeups(idle.child.id()) - before[1],
    ];
    let cpu = [
        cpu_ms(notify.child.id()) - cpu_before[0],
        cpu_ms(idle.child.id()) - cpu_before[1],
    ];
    let hours = window.as_secs_f64() / 3600.0;
    println!(
        "Idle: 100 mailboxes, nothing delivered for {} s (both at once, after a 2 s settle). By design NOTIFY \
         wakes only to renew IDLE (every 25 minutes: 2.4 an hour, per connection); IDLE mode also polls the \
         mailboxes it has no connection for every 60 s (`--poll`). Dovecot also sends every IDLE connection \
         `* OK Still here` every 2 minutes (its default `imap_idle_notify_interval`): 30 wake-ups an hour per \
         connection that are the server's doing (seen with strace: a 17-byte record on the socket ~2 min after IDLE).\n",
        window.as_secs()
    );
    println!("| mode | wake-ups in the window | per hour | CPU ms in the window |");
    println!("| --- | --- | --- | --- |");
    for (index, name) in ["NOTIFY", "IDLE + polling"].iter().enumerate() {
        println!(
            "| {name} | {} | {:.0} | {:.0} |",
            woken[index],
            woken[index] as f64 / hours,
            cpu[index]
        );
    }
    println!();
}

pub fn tables(samples: usize, idle_window: Duration) {
    println!("### `mailsync idle` against raw IDLE and NOTIFY clients, side by side\n");
    latency_table(60);
    size_table(&[1, 100, 1000], samples.min(3));
    idle_table(idle_window);
}
