//! `mailsync idle` against a real Dovecot on 127.0.0.1 with TLS (a
//! certificate from a CA the test makes): NOTIFY as Dovecot offers it, IDLE
//! with NOTIFY taken out of its capabilities and a low connection limit,
//! reconnects after a kick and a restart, a stopped watcher, a wrong
//! password, an untrusted certificate, and accounts read from an mbsyncrc
//! and an offlineimaprc.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use common::servers::Dovecot;
use common::{kill, mailsync, set_clock_to_now, stop, Watch};

/// How long a test awaits the first line of a change (a reconnect may be backing off).
const FIRST_LINE: Duration = Duration::from_secs(20);

/// Dovecot's capabilities without NOTIFY (what `imap_capability` replaces).
const WITHOUT_NOTIFY: &str = "imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT \
    THREAD=REFERENCES MULTIAPPEND UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 \
    CONDSTORE QRESYNC ESEARCH SEARCHRES WITHIN LIST-STATUS BINARY MOVE LITERAL+";

fn tls_dovecot(extra: &str) -> Dovecot {
    Dovecot::start_with(".", true, &format!("auth_verbose = yes\n{extra}"))
}

/// `mailsync idle` on the TLS port with the test's CA and `extra` flags.
fn idle_args(dovecot: &Dovecot, password: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--host",
        "127.0.0.1",
        "--port",
        &dovecot.imaps_port.unwrap().to_string(),
        "--ca-file",
        dovecot.ca_file().to_str().unwrap(),
        "--user",
        "test",
        "--pass-file",
        dovecot.password_file(password).to_str().unwrap(),
        "--delay",
        "0",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    args.extend(extra.iter().map(|arg| arg.to_string()));
    args
}

/// An mbsyncrc in the Dovecot's directory for its TLS port, reached as
/// `host`, trusting its CA (`CertificateFile`), a Verbatim store under
/// `local/`; `channel` ends the Channel section.
fn tls_mbsyncrc(dovecot: &Dovecot, host: &str, channel: &str) -> PathBuf {
    let dir = dovecot.dir.path();
    let path = dir.join("mbsyncrc");
    fs::write(
        &path,
        format!(
            "IMAPAccount test\nHost {host}\nPort {port}\nUser test\nPassCmd \"cat {password}\"\nSSLType IMAPS\n\
             CertificateFile {ca}\n\nIMAPStore test-remote\nAccount test\n\n\
             MaildirStore test-local\nPath {dir}/local/\nInbox {dir}/local/INBOX\nSubFolders Verbatim\n\n\
             Channel test\nFar :test-remote:\nNear :test-local:\n{channel}\n",
            port = dovecot.imaps_port.unwrap(),
            password = dovecot.password_file("secret").display(),
            ca = dovecot.ca_file().display(),
            dir = dir.display()
        ),
    )
    .unwrap();
    path
}

/// `mailsync idle --SYNC test -c CONFIG --delay 0`, ready: account "test"
/// of an mbsyncrc (`sync` "mbsync") or an offlineimaprc ("offlineimap").
fn from_config(sync: &str, config: &std::path::Path) -> Watch {
    let flag = format!("--{sync}");
    Watch::start_command(
        "idle",
        &[&flag, "test", "-c", config.to_str().unwrap(), "--delay", "0"],
    )
}

/// Runs the real mbsync on channel "test" of `mbsyncrc` (made by
/// [`tls_mbsyncrc`]), asserting it succeeds; returns the local store.
fn real_mbsync(dovecot: &Dovecot, mbsyncrc: &std::path::Path) -> PathBuf {
    let local = dovecot.dir.path().join("local");
    fs::create_dir_all(&local).unwrap();
    let synced = std::process::Command::new("mbsync")
        .args(["-c", mbsyncrc.to_str().unwrap(), "test"])
        .output()
        .unwrap();
    assert!(
        synced.status.success(),
        "mbsync: {}",
        String::from_utf8_lossy(&synced.stderr)
    );
    local
}

fn start_idle(dovecot: &Dovecot, extra: &[&str]) -> Watch {
    let args = idle_args(dovecot, "secret", extra);
    Watch::start_command("idle", &args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn create(dovecot: &Dovecot, mailbox: &str) {
    dovecot.doveadm(&["mailbox", "create", "-u", "test", mailbox], None);
}

/// Asserts that nothing is printed before a delivery into INBOX.
fn nothing_before_inbox(dovecot: &Dovecot, watch: &Watch) {
    thread::sleep(Duration::from_millis(1500));
    dovecot.deliver("INBOX", "sentinel");
    assert_eq!(
        watch.next(),
        "INBOX",
        "a line came before the sentinel's; stderr: {}",
        watch.stderr_text()
    );
}

#[test]
fn notify_reports_deliveries_new_and_deleted_mailboxes_and_flags_only_when_asked() {
    let dovecot = tls_dovecot("");
    create(&dovecot, "a");
    create(&dovecot, "b.c");
    let plain = start_idle(&dovecot, &["--separator", "/"]);
    let flags = start_idle(&dovecot, &["--separator", "/", "--report-flags"]);
    plain.stderr_until("NOTIFY", Duration::from_secs(5));

    dovecot.deliver("b.c", "one");
    assert_eq!(plain.next(), "b/c");
    assert_eq!(flags.next(), "b/c");
    // Saved by another IMAP client (APPEND), not only by doveadm.
    dovecot.save("a", "two");
    assert_eq!(plain.next(), "a");
    assert_eq!(flags.next(), "a");

    create(&dovecot, "new");
    assert_eq!(plain.next(), "new");
    assert_eq!(flags.next(), "new");
    // Renamed by another client: Dovecot tells NOTIFY clients of a rename
    // only with its next event (here a delivery).
    dovecot.imap(&["RENAME new renamed"]);
    dovecot.deliver("INBOX", "after the rename");
    let after = BTreeSet::from(["INBOX".to_string(), "new".to_string(), "renamed".to_string()]);
    assert_eq!(
        plain.lines_set(FIRST_LINE),
        after,
        "a rename: the old name gone, the new one made"
    );
    assert_eq!(flags.lines_set(FIRST_LINE), after);
    dovecot.imap(&["RENAME renamed new"]);
    dovecot.deliver("INBOX", "after the rename");
    assert_eq!(plain.lines_set(FIRST_LINE), after);
    assert_eq!(flags.lines_set(FIRST_LINE), after);

    dovecot.doveadm(
        &["flags", "add", "-u", "test", "\\Seen", "mailbox", "a", "all"],
        None,
    );
    assert_eq!(flags.next(), "a", "a flag change with --report-flags");
    nothing_before_inbox(&dovecot, &plain);
    assert_eq!(flags.next(), "INBOX", "{}", flags.stderr_text());

    dovecot.doveadm(&["mailbox", "delete", "-u", "test", "new"], None);
    assert_eq!(plain.next(), "new", "a deleted mailbox is reported");
    assert_eq!(plain.close_stdin_and_wait(), 0);
}

#[test]
fn without_notify_idle_connections_up_to_the_limit_and_the_rest_polled() {
    // Dovecot lets 4 connections in: the poller and 3 IDLE connections
    // (INBOX, m00, m01); the server refuses the other 4 asked for, whose
    // mailboxes are polled with the 17 others.
    let dovecot = tls_dovecot(&format!("{WITHOUT_NOTIFY}\nmail_max_userip_connections = 4"));
    for index in 0..20 {
        create(&dovecot, &format!("m{index:02}"));
    }
    let watch = start_idle(&dovecot, &["--max-connections", "8", "--poll", "1"]);
    let stderr = watch.stderr_until("IDLE on ", Duration::from_secs(5)).join("\n");
    let idling: usize = stderr
        .split("IDLE on ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    // Dovecot counts its limit loosely (a connection closing still counts
    // for a moment): some of the 7 IDLE connections asked for are refused.
    assert!((1..7).contains(&idling), "{stderr}");
    assert!(stderr.contains(&format!("for {}", 21 - idling)), "{stderr}");
    let all: BTreeSet<String> = (0..20).map(|index| format!("m{index:02}")).collect();
    for mailbox in &all {
        dovecot.deliver(mailbox, "hello");
    }
    assert_eq!(
        watch.lines_set(FIRST_LINE),
        all,
        "polled and IDLE mailboxes alike"
    );
    create(&dovecot, "later");
    assert_eq!(
        watch.next(),
        "later",
        "a mailbox created meanwhile is found by the poller"
    );
    dovecot.deliver("later", "hello");
    assert_eq!(watch.next(), "later");
    nothing_before_inbox(&dovecot, &watch);
}

#[test]
fn without_notify_a_mailbox_made_meanwhile_gets_an_idle_connection_while_one_is_spare() {
    // Polled every 10 minutes: only the listing (every second while a
    // connection is spare) and an IDLE connection can find it sooner.
    let dovecot = tls_dovecot(WITHOUT_NOTIFY);
    let watch = start_idle(&dovecot, &["--max-connections", "8", "--poll", "600"]);
    let stderr = watch.stderr_until("IDLE on ", Duration::from_secs(5)).join("\n");
    assert!(stderr.contains("IDLE on 1 connections"), "{stderr}");
    let started = Instant::now();
    create(&dovecot, "fresh");
    assert_eq!(
        watch.line(FIRST_LINE).as_deref(),
        Some(&b"fresh"[..]),
        "{}",
        watch.stderr_text()
    );
    let found = started.elapsed();
    // Delivered into: its own IDLE connection tells, not the 10-minute poll.
    let started = Instant::now();
    dovecot.deliver("fresh", "into the new mailbox");
    assert_eq!(watch.line(FIRST_LINE).as_deref(), Some(&b"fresh"[..]));
    eprintln!(
        "a new mailbox reported after {:.2} s, a delivery into it after {:.2} s",
        found.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    nothing_before_inbox(&dovecot, &watch);
}

/// Stops Dovecot, changes two of ten mailboxes, starts it again: exactly
/// those two are reported, once.
fn restart_reports_exactly_what_changed(extra_conf: &str, flags: &[&str]) {
    let dovecot = tls_dovecot(extra_conf);
    for index in 0..10 {
        create(&dovecot, &format!("m{index}"));
    }
    let watch = start_idle(&dovecot, flags);
    // Kicked: the reconnect reports what came meanwhile, and only that.
    dovecot.doveadm(&["kick", "test"], None);
    dovecot.deliver("m5", "after the kick");
    assert_eq!(watch.lines_set(FIRST_LINE), BTreeSet::from(["m5".to_string()]));
    let stderr = watch.stderr_text();
    // Every connection was dropped; the loss is said once.
    assert_eq!(stderr.matches("connecting again").count(), 1, "{stderr}");

    // Stopped: what reaches the maildir meanwhile is reported once it is
    // back. (Dovecot's old processes may serve a connection on through a
    // quick restart; then the next poll or notification finds it.)
    dovecot.stop_only();
    for mailbox in ["m3", "m7"] {
        let folder = dovecot.dir.path().join("server/mail").join(format!(".{mailbox}"));
        let message = common::deliver(&folder);
        let _ = std::process::Command::new("chown")
            .arg("--reference")
            .arg(&folder)
            .arg(&message)
            .status();
    }
    dovecot.restart();
    assert_eq!(
        watch.lines_set(FIRST_LINE),
        BTreeSet::from(["m3".to_string(), "m7".to_string()])
    );
    nothing_before_inbox(&dovecot, &watch);
}

#[test]
fn after_a_restart_or_a_kick_notify_reports_exactly_the_mailboxes_changed_meanwhile() {
    restart_reports_exactly_what_changed("", &[]);
}

#[test]
fn after_a_restart_or_a_kick_idle_reports_exactly_the_mailboxes_changed_meanwhile() {
    restart_reports_exactly_what_changed(WITHOUT_NOTIFY, &["--poll", "1", "--max-connections", "4"]);
}

#[test]
fn a_watcher_stopped_longer_than_its_keepalive_reports_what_came_meanwhile() {
    let dovecot = tls_dovecot("");
    create(&dovecot, "a");
    // Probes after 1 s of silence; the watcher is stopped for 4 s.
    let watch = start_idle(&dovecot, &["--keepalive", "1"]);
    stop(watch.child.id());
    dovecot.deliver("a", "while stopped");
    dovecot.deliver("INBOX", "while stopped");
    thread::sleep(Duration::from_secs(4));
    kill(watch.child.id(), "-CONT");
    assert_eq!(
        watch.lines_set(FIRST_LINE),
        BTreeSet::from(["INBOX".to_string(), "a".to_string()])
    );
}

#[test]
fn a_wrong_password_is_one_attempt_and_exit_1() {
    let dovecot = tls_dovecot("");
    let args = idle_args(&dovecot, "wrong", &[]);
    let output = mailsync().arg("idle").args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refused the login") && stderr.contains("not trying again"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong"), "the password is not shown: {stderr}");
    // It has exited: no attempt comes after the one Dovecot logs.
    common::wait_until("Dovecot's log of the attempt", Duration::from_secs(10), || {
        dovecot.log().contains("Password mismatch")
    });
    assert_eq!(
        dovecot.log().matches("Password mismatch").count(),
        1,
        "{}",
        dovecot.log()
    );
}

#[test]
fn an_untrusted_certificate_is_a_clear_error_and_starttls_works() {
    let dovecot = tls_dovecot("");
    let mut args = idle_args(&dovecot, "secret", &[]);
    let ca = args.iter().position(|arg| arg == "--ca-file").unwrap();
    args.drain(ca..ca + 2);
    let output = mailsync().arg("idle").args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("certificate") && stderr.contains("--ca-file"),
        "{stderr}"
    );
    assert!(
        !dovecot.log().contains("Password mismatch"),
        "no password was sent"
    );

    let mut args = idle_args(&dovecot, "secret", &["--tls", "starttls"]);
    let port = args.iter().position(|arg| arg == "--port").unwrap();
    args[port + 1] = dovecot.port.to_string();
    let watch = Watch::start_command("idle", &args.iter().map(String::as_str).collect::<Vec<_>>());
    dovecot.deliver("INBOX", "over STARTTLS");
    assert_eq!(watch.next(), "INBOX");
}

#[test]
fn sigusr1_prints_every_mailbox_once() {
    let dovecot = tls_dovecot("");
    create(&dovecot, "a");
    create(&dovecot, "b.c");
    let watch = start_idle(&dovecot, &["--separator", "/"]);
    kill(watch.child.id(), "-USR1");
    let every = BTreeSet::from(["INBOX".to_string(), "a".to_string(), "b/c".to_string()]);
    assert_eq!(
        watch.lines_set(FIRST_LINE),
        every,
        "stderr: {}",
        watch.stderr_text()
    );
}

#[test]
fn a_self_signed_certificate_named_as_trusted_is_trusted_from_the_flag_and_the_mbsyncrc() {
    // Made as users make theirs (`openssl req -x509`: CA:TRUE), which mbsync,
    // OfflineIMAP and GnuTLS take when named, as the server's own.
    let dovecot = Dovecot::start_self_signed();
    let watch = start_idle(&dovecot, &[]);
    dovecot.deliver("INBOX", "over TLS with a self-signed certificate");
    assert_eq!(watch.next(), "INBOX");

    let mbsyncrc = tls_mbsyncrc(&dovecot, "localhost", "Patterns *\nCreate Near\nSyncState *");
    // The real mbsync takes the same file.
    real_mbsync(&dovecot, &mbsyncrc);
    let from_rc = from_config("mbsync", &mbsyncrc);
    dovecot.deliver("INBOX", "seen through the mbsyncrc");
    assert_eq!(from_rc.next(), "INBOX");

    // Not named: refused, in words that say where to name it.
    let mut args = idle_args(&dovecot, "secret", &[]);
    let ca = args.iter().position(|arg| arg == "--ca-file").unwrap();
    args.drain(ca..ca + 2);
    let refused = mailsync().arg("idle").args(&args).output().unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(
        said.contains("its certificate is a CA certificate (as `openssl req -x509` makes): if it is the server's own, name its file in --ca-file to trust it"),
        "{said}"
    );
}

#[test]
fn mailboxes_below_inbox_are_named_as_mbsync_names_them_under_its_path() {
    // A server whose mailboxes sit below INBOX (Courier, Cyrus), and the
    // mbsync IMAPStore `Path INBOX.` that such a server needs.
    let dovecot = Dovecot::start_prefixed("INBOX.");
    create(&dovecot, "INBOX.lists.gnus");
    // mbsync 1.4 matches the certificate's DNS names only.
    let mbsyncrc = tls_mbsyncrc(&dovecot, "localhost", "Patterns *\nCreate Near\nSyncState *");
    let text = fs::read_to_string(&mbsyncrc).unwrap();
    fs::write(
        &mbsyncrc,
        text.replace("Account test\n\n", "Account test\nPath INBOX.\n\n"),
    )
    .unwrap();
    // The real mbsync makes the local folder lists/gnus.
    let local = real_mbsync(&dovecot, &mbsyncrc);
    assert!(local.join("lists/gnus/cur").is_dir(), "mbsync made no lists/gnus");
    // mailsync idle names it the same way.
    let watch = from_config("mbsync", &mbsyncrc);
    dovecot.deliver("INBOX.lists.gnus", "below INBOX");
    assert_eq!(watch.next(), "lists/gnus", "stderr: {}", watch.stderr_text());
    dovecot.deliver("INBOX", "the inbox itself");
    assert_eq!(watch.next(), "INBOX");
    // With --host, no configuration names the prefix: the server's
    // NAMESPACE does, and it is stripped as mbsync's Path is.
    let args = idle_args(&dovecot, "secret", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let host = Watch::start_command("idle", &args);
    dovecot.deliver("INBOX.lists.gnus", "below INBOX, watched by --host");
    assert_eq!(host.next(), "lists.gnus", "stderr: {}", host.stderr_text());
}

#[test]
fn accounts_come_from_an_mbsyncrc_or_an_offlineimaprc() {
    let dovecot = tls_dovecot("");
    create(&dovecot, "x.y");
    create(&dovecot, "skip");
    let dir = dovecot.dir.path();
    let password = dovecot.password_file("secret");
    let mbsyncrc = tls_mbsyncrc(&dovecot, "127.0.0.1", "Patterns * !skip");
    let offlineimaprc = dir.join("offlineimaprc");
    fs::write(
        &offlineimaprc,
        format!(
            "[general]\naccounts = test\n\n[Account test]\nlocalrepository = local\nremoterepository = remote\n\n\
             [Repository local]\ntype = Maildir\nlocalfolders = {dir}/local2\nsep = .\n\n\
             [Repository remote]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {port}\nremoteuser = test\n\
             remotepassfile = {password}\nssl = yes\nsslcacertfile = {ca}\n",
            port = dovecot.imaps_port.unwrap(),
            password = password.display(),
            ca = dovecot.ca_file().display(),
            dir = dir.display()
        ),
    )
    .unwrap();
    let mbsync = from_config("mbsync", &mbsyncrc);
    let offlineimap = from_config("offlineimap", &offlineimaprc);
    dovecot.deliver("x.y", "hello");
    assert_eq!(mbsync.next(), "x/y", "mbsync's Verbatim store names it x/y");
    assert_eq!(offlineimap.next(), "x.y", "the offlineimaprc's sep is .");
    dovecot.deliver("skip", "not watched by mbsync");
    assert_eq!(offlineimap.next(), "skip");
    nothing_before_inbox(&dovecot, &mbsync);
}

#[test]
fn no_password_on_the_command_line_and_unreadable_configs_are_clear() {
    let help = mailsync().args(["idle", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let options = common::help_options(&help);
    assert!(
        !options.contains("--pass") && !options.contains("--password"),
        "{help}"
    );
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("offlineimaprc");
    fs::write(
        &rc,
        "[Account a]\nlocalrepository = l\nremoterepository = r\n[Repository r]\ntype = IMAP\nremotehost = h\n\
         remoteuser = u\nremotepasseval = get_password()\n",
    )
    .unwrap();
    let output = mailsync()
        .args(["idle", "--offlineimap", "a", "-c", rc.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("remotepasseval") && stderr.contains("--pass-cmd"),
        "{stderr}"
    );
}

#[test]
fn a_clock_that_is_set_reconnects_at_once() {
    // Setting the clock needs root; it is set to what it already reads, a
    // jump of a few microseconds back, which the kernel signals all the same
    // (as it does on a resume from suspend).
    if !common::is_root_or_skip("setting the clock") {
        return;
    }
    let dovecot = tls_dovecot("");
    let watch = start_idle(&dovecot, &[]);
    set_clock_to_now();
    let mut said = String::new();
    for _ in 0..50 {
        said.push_str(&watch.stderr_text());
        if said.contains("clock jumped") {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(said.contains("clock jumped"), "{said}");
    dovecot.deliver("INBOX", "after the jump");
    assert_eq!(watch.next(), "INBOX");
}
