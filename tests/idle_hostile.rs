//! `mailsync idle` against a stand-in server that sends what no real server
//! does (tests/common/fake_imap.rs): an answer without end, an endless line,
//! a literal of a terabyte. Memory stays bounded, the error says what the
//! server did, the account is tried again later, and SIGTERM ends it at once.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_imap::{self, FakeImap};
use common::{kill, Watch};

/// `args` as the `&str`s `Watch` takes.
fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The most memory `mailsync idle` may reach under any of these servers.
const PEAK_RSS_LIMIT_MIB: u64 = 200;

/// The process's peak resident memory (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

/// Runs `mailsync idle` against `server` until its stderr has said `said`
/// twice (the first session and the one after the back-off); then checks
/// its peak memory and that SIGTERM ends it within a second.
fn bounded_and_stoppable(server: &FakeImap, said: &str) {
    let args = server.idle_args();
    let mut watch = Watch::spawn("idle", &strs(&args));
    let first = watch.stderr_until(said, Duration::from_secs(60));
    watch.stderr_until(said, Duration::from_secs(60));
    let peak = peak_rss_mib(watch.child.id());
    eprintln!("peak RSS {peak} MiB; said: {:?}", first.last());
    assert!(peak < PEAK_RSS_LIMIT_MIB, "peak RSS {peak} MiB");
    let asked = Instant::now();
    kill(watch.child.id(), "-TERM");
    watch.wait(Duration::from_secs(10));
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");
}

#[test]
fn a_list_without_end_is_cut_off_at_the_limit_of_one_answer() {
    let server = FakeImap::start(fake_imap::streaming_on_list(fake_imap::endless_list));
    bounded_and_stoppable(&server, "went past 250000 responses");
}

#[test]
fn an_endless_line_is_cut_off_at_one_mib() {
    let server = FakeImap::start(fake_imap::streaming_on_list(fake_imap::endless_line));
    bounded_and_stoppable(&server, "a line longer than 1 MiB");
}

#[test]
fn a_literal_of_a_terabyte_is_refused_before_it_is_read() {
    let server = FakeImap::start(fake_imap::streaming_on_list(fake_imap::terabyte_literal));
    bounded_and_stoppable(&server, "announced a literal of 999999999999 bytes");
}

#[test]
fn a_flood_of_statuses_for_mailboxes_never_listed_is_ignored_and_said_once() {
    let server = FakeImap::start_offering(fake_imap::WITH_NOTIFY, fake_imap::status_flood(Some(500_000)));
    let args = server.idle_args();
    let mut watch = Watch::start_command("idle", &strs(&args));
    watch.stderr_until("which it did not list", Duration::from_secs(30));
    // All 500,000 read (the server's writes end) and none reported.
    let quiet = watch.lines_until_quiet(Duration::from_secs(3));
    assert!(
        quiet.is_empty(),
        "names printed: {:?}",
        &quiet[..quiet.len().min(5)]
    );
    let peak = peak_rss_mib(watch.child.id());
    eprintln!("peak RSS {peak} MiB");
    assert!(peak < PEAK_RSS_LIMIT_MIB, "peak RSS {peak} MiB");
    let said_again: Vec<String> = watch
        .stderr
        .try_iter()
        .filter(|line| line.contains("did not list"))
        .collect();
    assert!(said_again.is_empty(), "said again: {said_again:?}");
    let asked = Instant::now();
    kill(watch.child.id(), "-TERM");
    watch.wait(Duration::from_secs(10));
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "SIGTERM took {:?}",
        asked.elapsed()
    );
}

/// Starts `mailsync idle` on `port` with `tls`, lets it get stuck for a
/// moment, and asserts that SIGTERM ends it within a second.
fn stuck_then_stopped(port: u16, tls: &str) {
    let mut watch = Watch::spawn("idle", &strs(&fake_imap::idle_args(port, "echo pw", tls)));
    // It is stuck: no ready line (and no error) in 1.5 s.
    assert_eq!(watch.line(Duration::from_millis(1500)), None);
    let asked = Instant::now();
    kill(watch.child.id(), "-TERM");
    watch.wait(Duration::from_secs(40));
    let took = asked.elapsed();
    eprintln!("SIGTERM took {took:?}");
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");
}

#[test]
fn a_black_holed_connect_ends_at_sigterm() {
    let (listener, _fillers) = fake_imap::black_hole();
    stuck_then_stopped(listener.local_addr().unwrap().port(), "none");
}

#[test]
fn a_tls_handshake_trickled_a_byte_at_a_time_ends_at_sigterm() {
    stuck_then_stopped(fake_imap::trickling_tls(), "imaps");
}

/// A NOTIFY server with one mailbox, INBOX, that counts its sessions (the
/// NOTIFY that begins one, the EXAMINE that begins an IDLE connection;
/// LIST comes every second while IDLE connections are spare) and answers
/// the other commands with `answer` (None: OK).
fn counting_sessions(
    answer: fn(&str, &str, &mut TcpStream) -> Option<std::io::Result<()>>,
) -> (FakeImap, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let sessions = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&sessions);
    let server = FakeImap::start_offering(
        fake_imap::WITH_NOTIFY,
        Arc::new(move |tag: &str, command: &str, out: &mut TcpStream| {
            let verb = fake_imap::verb(command);
            // A session begins with NOTIFY; an IDLE connection with EXAMINE.
            if verb == "NOTIFY" || verb == "EXAMINE" {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            if verb == "LIST" {
                return write!(out, "* LIST () \".\" \"INBOX\"\r\n{tag} OK done\r\n");
            }
            answer(&verb, tag, out).unwrap_or_else(|| write!(out, "{tag} OK done\r\n"))
        }),
    );
    (server, sessions)
}

#[test]
fn a_server_that_drops_every_session_once_ready_is_not_logged_in_to_every_second() {
    use std::sync::atomic::Ordering;
    // With NOTIFY: one connection, whose session ends when it is dropped.
    let (server, sessions) = counting_sessions(|verb, _tag, out| match verb {
        // Ready, then dropped.
        "IDLE" => Some(
            out.write_all(b"+ idling\r\n")
                .and_then(|()| Err(std::io::Error::other("dropped"))),
        ),
        _ => None,
    });
    let args = server.idle_args();
    let watch = Watch::start_command("idle", &strs(&args));
    let start = Instant::now();
    // Waits of 1, 2, 4, 8 s (±25%): by the first loss after 8 s (at most
    // 18 s in), 5 sessions at most; a login a second would be 8 to 18.
    while start.elapsed() < Duration::from_secs(8) {
        watch.stderr_until("connecting again", Duration::from_secs(20));
    }
    let count = sessions.load(Ordering::SeqCst);
    eprintln!("{count} sessions in {:?}", start.elapsed());
    assert!(count <= 5, "{count} sessions in {:?}", start.elapsed());
}

#[test]
fn notify_offered_but_refused_falls_back_to_idle_without_reconnecting() {
    use std::sync::atomic::Ordering;
    let (server, sessions) = counting_sessions(|verb, tag, out| match verb {
        "NOTIFY" => Some(write!(out, "{tag} BAD not today\r\n")),
        "IDLE" => Some(out.write_all(b"+ idling\r\n")),
        "EXAMINE" => Some(write!(
            out,
            "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 2] ok\r\n{tag} OK done\r\n"
        )),
        _ => None,
    });
    let args = server.idle_args();
    // Ready: watched with IDLE.
    let watch = Watch::start_command("idle", &strs(&args));
    watch.stderr_until(
        "refused it (not today); watching with IDLE instead",
        Duration::from_secs(10),
    );
    watch.stderr_until("IDLE on", Duration::from_secs(10));
    // No new session while it watches.
    assert!(watch.lines_until_quiet(Duration::from_secs(3)).is_empty());
    // The main session's NOTIFY (refused) and INBOX's IDLE connection.
    assert_eq!(
        sessions.load(Ordering::SeqCst),
        2,
        "stderr: {}",
        watch.stderr_text()
    );
}

/// A listener on 127.0.0.1 that greets every connection with `greeting` and
/// then holds it open.
fn greeter(greeting: &'static [u8]) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            std::thread::spawn(move || {
                let _ = socket.write_all(greeting);
                std::thread::sleep(Duration::from_secs(60));
            });
        }
    });
    port
}

#[test]
fn a_port_that_is_not_imap_is_said_so_in_words() {
    let port = greeter(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
    let watch = Watch::spawn("idle", &strs(&fake_imap::idle_args(port, "echo pw", "none")));
    let said = watch.stderr_until("is this an IMAP port?", Duration::from_secs(10));
    assert!(!said.last().unwrap().contains("Some("), "{said:?}");
}

#[test]
fn a_ca_certificate_served_as_the_server_s_own_is_refused_in_words() {
    // `openssl req -x509` marks its certificate CA:TRUE; Python serves it.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let server = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import socket, ssl, sys\n\
             context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
             context.load_cert_chain(sys.argv[1], sys.argv[2])\n\
             listener = socket.create_server(('127.0.0.1', 0))\n\
             print(listener.getsockname()[1], flush=True)\n\
             listener.settimeout(30)\n\
             while True:\n\
             \x20   try:\n\
             \x20       connection, _ = listener.accept()\n\
             \x20       context.wrap_socket(connection, server_side=True)\n\
             \x20   except Exception:\n\
             \x20       pass\n",
        )
        .arg(&cert)
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut server = Killed(server);
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.0.stdout.take().unwrap()),
        &mut port,
    )
    .unwrap();
    let watch = Watch::spawn(
        "idle",
        &strs(&fake_imap::idle_args(
            port.trim().parse().unwrap(),
            "echo pw",
            "imaps",
        )),
    );
    let said = watch.stderr_until("TLS with", Duration::from_secs(10));
    let line = said.last().unwrap();
    eprintln!("{line}");
    assert!(line.contains("certificate"), "{line}");
    assert!(!line.contains("OtherError") && !line.contains("Other("), "{line}");
}

#[test]
fn a_password_command_that_hangs_is_killed_with_what_it_started_at_sigterm() {
    let server = FakeImap::start(fake_imap::streaming_on_list(fake_imap::endless_list));
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let args = server.idle_args_with(&format!("sleep 1000 & echo $! > '{}'; wait", pid_file.display()));
    let mut watch = Watch::spawn("idle", &strs(&args));
    let mut sleeper = None;
    common::wait_until("the password command started", Duration::from_secs(10), || {
        sleeper = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok());
        sleeper.is_some()
    });
    let sleeper = sleeper.unwrap();
    let asked = Instant::now();
    kill(watch.child.id(), "-TERM");
    watch.wait(Duration::from_secs(10));
    let took = asked.elapsed();
    eprintln!("SIGTERM took {took:?}");
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");
    common::wait_until("the command's sleep killed", Duration::from_secs(5), || {
        !common::is_running(sleeper)
    });
}

#[test]
fn a_password_command_printing_endless_nuls_is_cut_off_and_said_in_words() {
    let server = FakeImap::start(fake_imap::streaming_on_list(fake_imap::endless_list));
    let args = server.idle_args_with("cat /dev/zero");
    let mut watch = Watch::spawn("idle", &strs(&args));
    let said = watch.stderr_until("without a line break", Duration::from_secs(10));
    let line = said.last().unwrap();
    assert_eq!(
        line,
        "mailsync idle: no password for u@127.0.0.1: the password command printed more than 64 KiB without a line break, so it was stopped"
    );
    // Not tried again: the account stops.
    assert_eq!(watch.wait(Duration::from_secs(10)), 1);
}

#[test]
fn a_closed_standard_input_ends_it_while_the_server_is_unreachable() {
    // Nothing listens on the port (bound, then closed): every connect is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut watch = Watch::spawn("idle", &strs(&fake_imap::idle_args(port, "echo pw", "none")));
    watch.stderr_until("connecting again", Duration::from_secs(10));
    // mswatch goes away while mailsync waits to try again.
    drop(watch.stdin.take());
    let closed = Instant::now();
    assert_eq!(watch.wait(Duration::from_secs(10)), 0);
    let took = closed.elapsed();
    eprintln!("exit {took:?} after standard input closed");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn empty_names_and_names_holding_a_nul_are_refused_in_words_and_never_printed() {
    // A NOTIFY server listing INBOX, "" and "x\0y" (a literal), which then
    // says all three changed, INBOX last.
    let server = FakeImap::start_offering(
        fake_imap::WITH_NOTIFY,
        Arc::new(|tag: &str, command: &str, out: &mut TcpStream| {
            let status = "(MESSAGES 1 UIDNEXT 2 UIDVALIDITY 7 UNSEEN 1)";
            match fake_imap::verb(command).as_str() {
                "LIST" => {
                    out.write_all(b"* LIST () \".\" \"INBOX\"\r\n* LIST () \".\" \"\"\r\n")?;
                    out.write_all(b"* LIST () \".\" {3}\r\nx\0y\r\n")?;
                    write!(out, "{tag} OK done\r\n")
                }
                "STATUS" if command.contains("INBOX") => {
                    write!(out, "* STATUS \"INBOX\" {status}\r\n{tag} OK done\r\n")
                }
                "IDLE" => {
                    let changed = "(MESSAGES 2 UIDNEXT 3 UIDVALIDITY 7 UNSEEN 2)";
                    out.write_all(b"+ idling\r\n")?;
                    write!(out, "* STATUS \"\" {changed}\r\n")?;
                    out.write_all(b"* STATUS {3}\r\nx\0y ")?;
                    write!(out, "{changed}\r\n* STATUS \"INBOX\" {changed}\r\n")
                }
                _ => write!(out, "{tag} OK done\r\n"),
            }
        }),
    );
    let args = server.idle_args();
    let watch = Watch::start_command("idle", &strs(&args));
    assert_eq!(watch.next(), "INBOX");
    assert!(watch.lines_until_quiet(Duration::from_secs(1)).is_empty());
    let stderr = watch.stderr_text();
    for name in [r#""""#, r#""x\0y""#] {
        assert!(
            stderr.contains(&format!(
                "mailbox {name} is not watched: no folder can be named by an empty name or one holding a NUL"
            )),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn a_host_holding_a_nul_or_an_unset_reference_is_a_configuration_error_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mbsyncrc = dir.path().join("mbsyncrc");
    std::fs::write(
        &mbsyncrc,
        "IMAPAccount a\nHost imap.example\0org\nUser u\nPass p\n\nIMAPStore a-remote\nAccount a\n\n\
         Channel a\nFar :a-remote:\nNear :a-local:\n",
    )
    .unwrap();
    let offlineimaprc = dir.path().join("offlineimaprc");
    std::fs::write(
        &offlineimaprc,
        "[Account a]\nremoterepository = r\n[Repository r]\ntype = IMAP\nremotehost = imap.%(domain)s\n\
         remoteuser = u\nremotepass = p\n",
    )
    .unwrap();
    for (flag, config, said) in [
        (
            "--mbsync",
            &mbsyncrc,
            "mbsync account a: Host \"imap.example\\0org\" holds '\\0', which no host name holds",
        ),
        (
            "--offlineimap",
            &offlineimaprc,
            "[Account a]: remotehost holds %(domain)s, which names no setting of its section or [DEFAULT]",
        ),
    ] {
        // Said once, at once: not a host to try again later.
        let output = common::mailsync()
            .args(["idle", flag, "a", "-c", config.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(said), "{stderr}");
        assert_eq!(stderr.matches(said).count(), 1, "{stderr}");
    }
}
