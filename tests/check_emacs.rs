//! `--check-local` against a real Emacs server running real Gnus: the right
//! groups are checked, odd names included, and nothing is evaluated.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::servers::{messages, Dovecot};
use common::{deliver, mailsync, make_maildir, Watch};

const ODD: &[u8] = br#"a"b\c (shell-command "touch PWNED")"#;

/// `emacs --batch` with Gnus and an Emacs server (tests/check-server.el).
struct EmacsServer {
    child: Child,
    dir: PathBuf,
}

impl EmacsServer {
    /// Gnus over the nnmaildir store `dir/mail`, which must exist.
    fn start(dir: &Path) -> EmacsServer {
        let repo = env!("CARGO_MANIFEST_DIR");
        let emacs = std::env::var("EMACS").unwrap_or_else(|_| "emacs".into());
        let lisp = format!("{repo}/lisp");
        let child = Command::new(emacs)
            .args(["--batch", "-Q", "-L", repo, "-L", &lisp, "-l"])
            .arg(Path::new(repo).join("tests/check-server.el"))
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run emacs");
        let server = EmacsServer {
            child,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !dir.join("ready").exists() {
            assert!(Instant::now() < deadline, "the Emacs server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn socket(&self) -> String {
        self.dir.join("socket/server").to_str().unwrap().to_string()
    }

    /// The groups checked so far, in order.
    fn checked(&self) -> Vec<Vec<u8>> {
        fs::read(self.dir.join("checked"))
            .unwrap_or_default()
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn pwned(&self) -> bool {
        self.dir.join("PWNED").exists() || self.dir.join("mail/PWNED").exists()
    }
}

impl Drop for EmacsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn group(folder: &[u8]) -> Vec<u8> {
    [b"nnmaildir+test:".as_slice(), folder].concat()
}

/// A Dovecot with INBOX and the oddly named folder, each holding a message,
/// synced once by mbsync into `emacs/mail` under its directory (mbsync makes
/// the folders; Gnus must know them before it starts). Returns the server,
/// the local maildir and the mbsyncrc.
fn synced_by_mbsync() -> (Dovecot, PathBuf, PathBuf) {
    let dovecot = Dovecot::start(".");
    dovecot.save("INBOX", "hello");
    dovecot.save(std::str::from_utf8(ODD).unwrap(), "odd");
    let local = dovecot.dir.path().join("emacs/mail");
    let rc = dovecot.mbsyncrc(&local);
    let status = Command::new("mbsync")
        .arg("-c")
        .arg(&rc)
        .arg("-a")
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    (dovecot, local, rc)
}

#[test]
fn sync_check_local_checks_the_synced_groups_and_evaluates_nothing() {
    let (dovecot, local, rc) = synced_by_mbsync();
    let emacs = EmacsServer::start(&dovecot.dir.path().join("emacs"));
    dovecot.save(std::str::from_utf8(ODD).unwrap(), "second");

    let odd_spec = [b"test:".as_slice(), ODD].concat();
    let output = mailsync()
        .args([
            "sync",
            "--backend",
            "mbsync",
            "--config",
            rc.to_str().unwrap(),
            "--local-separator",
            "/",
        ])
        .args([
            "--check-local",
            "--server",
            "nnmaildir+test",
            "--socket-name",
            &emacs.socket(),
        ])
        .arg("test:INBOX")
        .arg(OsStr::from_bytes(&odd_spec))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(messages(&local.join(OsStr::from_bytes(ODD))), 2);
    assert_eq!(emacs.checked(), vec![group(b"INBOX"), group(ODD)]);
    assert!(!emacs.pwned(), "a folder name was evaluated");
}

#[test]
fn watch_check_local_checks_before_the_ready_line_and_before_each_name() {
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    let caf = b"caf\xe9".to_vec();
    for folder in [b"INBOX".as_slice(), ODD, &caf] {
        make_maildir(&mail.join(OsStr::from_bytes(folder)));
    }
    let emacs = EmacsServer::start(dir.path());
    let watch = Watch::start(&[
        "--maildir",
        mail.to_str().unwrap(),
        "--delay",
        "0",
        "--check-local",
        "--server",
        "nnmaildir+test",
        "--socket-name",
        &emacs.socket(),
    ]);
    // Watch::start returned after the empty line: the start-up check is done.
    let mut at_start = emacs.checked();
    at_start.sort();
    let mut expected = vec![group(b"INBOX"), group(ODD), group(&caf)];
    expected.sort();
    assert_eq!(at_start, expected);

    for folder in [ODD, &caf] {
        deliver(&mail.join(OsStr::from_bytes(folder)));
        let line = watch.line(Duration::from_secs(10)).expect("a name");
        assert_eq!(line, folder);
        // The name was printed only after Emacs had checked its group.
        assert_eq!(emacs.checked().last(), Some(&group(folder)));
    }
    assert!(!emacs.pwned(), "a folder name was evaluated");
}

#[test]
fn watch_prints_names_even_when_the_check_fails() {
    let dir = tempfile::tempdir().unwrap();
    make_maildir(dir.path());
    let watch = Watch::start(&[
        "--maildir",
        dir.path().to_str().unwrap(),
        "--delay",
        "0",
        "--check-local",
        "--socket-name",
        dir.path().join("no-such-socket").to_str().unwrap(),
    ]);
    deliver(dir.path());
    assert_eq!(watch.next(), "INBOX");
    // emacsclient says why on stderr too; mailsync's own line follows.
    let logged = (0..10)
        .map_while(|_| watch.stderr.recv_timeout(Duration::from_secs(10)).ok())
        .any(|line| line.contains("mailsync watch: Gnus check failed"));
    assert!(logged, "the failed check was not logged");
}

#[test]
fn a_hung_emacs_delays_nothing_beyond_the_check_timeout_and_sigterm_ends_the_watcher() {
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    make_maildir(&mail.join("INBOX"));
    let emacs = EmacsServer::start(dir.path());
    // A real hang: the Emacs server stops answering, emacsclient waits on it.
    common::stop(emacs.child.id());
    let started = Instant::now();
    let mut watch = Watch::start(&[
        "--maildir",
        mail.to_str().unwrap(),
        "--delay",
        "0",
        "--check-local",
        "--check-timeout",
        "1",
        "--socket-name",
        &emacs.socket(),
    ]);
    let ready_after = started.elapsed();
    assert!(
        ready_after < Duration::from_secs(4),
        "ready line after {ready_after:?}"
    );
    deliver(&mail.join("INBOX"));
    let line = watch
        .line(Duration::from_secs(4))
        .expect("the name, printed after the timed-out check");
    assert_eq!(line, b"INBOX");
    assert!(
        watch.stderr_text().contains("--check-timeout"),
        "{}",
        watch.stderr_text()
    );
    deliver(&mail.join("INBOX"));
    thread::sleep(Duration::from_millis(200)); // a check now hangs again
    let asked = Instant::now();
    common::kill(watch.child.id(), "-TERM");
    assert_eq!(watch.wait(Duration::from_secs(5)), 0);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "SIGTERM took {:?}",
        asked.elapsed()
    );
    common::kill(emacs.child.id(), "-CONT");
}

/// Dovecot's wire and disk names (modified UTF-7) and the groups Gnus shows.
const UTF7: [(&str, &str); 3] = [
    ("Entw&APw-rfe", "nnimap+local:Entwürfe"),
    ("&ZeVnLIqe-", "nnimap+local:日本語"),
    ("R&-D", "nnimap+local:R&D"),
];

#[test]
fn sync_check_local_names_the_unicode_groups_after_mbsync_and_offlineimap() {
    let dovecot = Dovecot::start(".");
    for (folder, _) in UTF7 {
        dovecot.save(folder, "non-ASCII folder");
    }
    let emacs_dir = dovecot.dir.path().join("emacs");
    fs::create_dir_all(emacs_dir.join("mail")).unwrap();
    let emacs = EmacsServer::start(&emacs_dir);
    let specs: Vec<String> = UTF7.iter().map(|(folder, _)| format!("test:{folder}")).collect();
    let expected: Vec<Vec<u8>> = UTF7.iter().map(|(_, group)| group.as_bytes().to_vec()).collect();
    let check = [
        "--check-local",
        "--server",
        "nnimap+local",
        "--socket-name",
        &emacs.socket(),
    ];

    // One sync with the check, its backend options first.
    let sync = |backend: &[&OsStr]| {
        let output = mailsync()
            .arg("sync")
            .args(backend)
            .args(check)
            .args(&specs)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let mbsyncrc = dovecot.mbsyncrc(&dovecot.dir.path().join("mbsync"));
    let word = OsStr::new;
    sync(&[
        word("--backend"),
        word("mbsync"),
        word("--local-separator"),
        word("/"),
        word("--config"),
        mbsyncrc.as_os_str(),
    ]);
    // mbsync keeps the server's names on disk.
    assert_eq!(messages(&dovecot.dir.path().join("mbsync/Entw&APw-rfe")), 1);
    assert_eq!(emacs.checked(), expected);

    let offlineimaprc = dovecot.offlineimaprc(&dovecot.dir.path().join("offlineimap"));
    sync(&[OsStr::new("--config"), offlineimaprc.as_os_str()]);
    assert_eq!(messages(&dovecot.dir.path().join("offlineimap/R&-D")), 1);
    assert_eq!(emacs.checked(), [expected.clone(), expected].concat());
}

#[test]
fn run_check_local_checks_the_synced_groups_after_each_sync() {
    let (dovecot, local, rc) = synced_by_mbsync();
    let dir = dovecot.dir.path();
    let emacs = EmacsServer::start(&dir.join("emacs"));
    let mailsync = env!("CARGO_BIN_EXE_mailsync");
    let config = dir.join("mswatchrc");
    fs::write(
        &config,
        format!(
            "base_delay 0\ninter_delay 0\n\
             sync {mailsync} sync --backend mbsync --config {rc} --local-separator /\nmailbox_prefix test :\n\
             store local {{\n watch {mailsync} watch --maildir {local} --layout verbatim --delay 0\n}}\n\
             store server {{\n watch {mailsync} idle --mbsync test --config {rc} --delay 0\n}}\n",
            rc = rc.display(),
            local = local.display()
        ),
    )
    .unwrap();
    let log = dir.join("run.log");
    let run = Command::new(mailsync)
        .args(["run", "--config", config.to_str().unwrap()])
        .args([
            "--check-local",
            "--server",
            "nnmaildir+test",
            "--socket-name",
            &emacs.socket(),
        ])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut run = Killed(run);
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what}; mailsync run said:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(50));
        }
    };
    wait("the start-up sync", &|| {
        fs::read_to_string(&log).unwrap_or_default().contains("done")
    });
    // Its check of every group runs after it: mailsync-gnus-check says t,
    // which emacsclient prints.
    wait("the start-up check", &|| {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .any(|line| line == "t")
    });
    let before = emacs.checked().len();
    dovecot.save(std::str::from_utf8(ODD).unwrap(), "second");
    wait("the check after the sync", &|| {
        emacs.checked()[before..].contains(&group(ODD))
    });
    assert_eq!(messages(&local.join(OsStr::from_bytes(ODD))), 2);
    assert!(!emacs.pwned(), "a folder name was evaluated");
    let _ = run.0.kill();
}

/// A child killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
