//! The Emacs module against a stand-in server that sends what no real
//! server does (tests/common/fake_imap.rs), in a real Emacs (Debian's 28.2
//! and 30.1 from scripts/fetch-emacs30.sh): `mailsync-imap-servers' watching
//! it as Gnus would reach it. Emacs stays alive, its memory grows within a
//! bound, the log says what the server did, and `mailsync-stop' returns at
//! once, even while the server is streaming.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::fake_imap::{self, FakeImap, Script};

/// The most the module may add to Emacs's peak memory under any of these servers.
const GROWTH_LIMIT_MIB: f64 = 150.0;

/// What the Lisp below prints: the log line found, peak memory added, stop time.
const LISP: &str = r#"
(progn
  (require 'mailsync-gnus)
  (defun hostile-kib (field)
    (with-temp-buffer
      (insert-file-contents "/proc/self/status")
      (re-search-forward (concat "^" field ":[ \t]*\\([0-9]+\\)"))
      (string-to-number (match-string 1))))
  (let* ((port PORT)
         (authinfo (make-temp-file "hostile-authinfo" nil nil
                                   (format "machine 127.0.0.1 port %d login u password pw\n" port)))
         (auth-sources (list authinfo))
         (gnus-select-method '(nnnil ""))
         (gnus-secondary-select-methods
          `((nnimap "fake" (nnimap-address "127.0.0.1") (nnimap-server-port ,port) (nnimap-stream STREAM))))
         (mailsync-imap-servers t)
         (mailsync-maildirs nil)
         (before (hostile-kib "VmHWM"))
         (expected EXPECTED)
         found)
    (mailsync-start)
    ;; With nothing EXPECTED, the server only holds the module up.
    (let ((deadline (+ (float-time) (if expected 60 0))))
      (while (and expected (not found) (< (float-time) deadline))
        (accept-process-output nil 0.05)
        (setq found (with-current-buffer (get-buffer-create "*mailsync-log*")
                      (save-excursion (goto-char (point-min)) (search-forward expected nil t))))))
    ;; Into the next session, which the server floods again.
    (let ((until (+ (float-time) 1.5)))
      (while (< (float-time) until) (accept-process-output nil 0.05)))
    (let ((start (float-time)))
      (mailsync-stop)
      (princ (format "RESULT found=%s growth-mib=%.1f stop-ms=%.1f\n"
                     (if (or found (not expected)) "yes" "no")
                     (/ (- (hostile-kib "VmHWM") before) 1024.0)
                     (* 1000 (- (float-time) start)))))
    (delete-file authinfo)))
"#;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Debian's Emacs and Emacs 30.1, or only `$EMACS` when it is set.
fn emacsen() -> Vec<PathBuf> {
    if let Ok(emacs) = std::env::var("EMACS") {
        return vec![PathBuf::from(emacs)];
    }
    let thirty = Command::new(repo().join("scripts/fetch-emacs30.sh"))
        .output()
        .expect("run scripts/fetch-emacs30.sh");
    assert!(
        thirty.status.success(),
        "scripts/fetch-emacs30.sh: {}",
        String::from_utf8_lossy(&thirty.stderr)
    );
    vec![
        PathBuf::from("emacs"),
        PathBuf::from(String::from_utf8(thirty.stdout).unwrap().trim()),
    ]
}

/// Runs the Lisp above in each Emacs against `script`'s server.
fn in_emacs(capabilities: &'static str, script: Arc<Script>, expected: &str) {
    let server = FakeImap::start_offering(capabilities, script);
    in_emacs_on(server.port, "plain", Some(expected));
}

/// Runs the Lisp above in each Emacs against the server on `port`, reached
/// with nnimap-stream `stream`, until the log says `expected` (None: for 2 s).
fn in_emacs_on(port: u16, stream: &str, expected: Option<&str>) {
    assert!(
        repo().join("mailsync-gnus-module.so").exists(),
        "build the module first (make)"
    );
    for emacs in emacsen() {
        let lisp = LISP
            .replace("PORT", &port.to_string())
            .replace("STREAM", stream)
            .replace(
                "EXPECTED",
                &expected.map_or("nil".into(), |text| format!("{text:?}")),
            );
        let output = Command::new(&emacs)
            .args(["--batch", "-Q", "-L"])
            .arg(repo())
            .arg("--eval")
            .arg(&lisp)
            .output()
            .expect("run emacs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{}: Emacs died: {stderr}",
            emacs.display()
        );
        let result = stdout
            .lines()
            .find_map(|line| line.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("{}: no result; stderr: {stderr}", emacs.display()));
        eprintln!("{}: {result}", emacs.display());
        let field = |name: &str| -> String {
            result
                .split_whitespace()
                .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
                .unwrap()
                .to_string()
        };
        assert_eq!(
            field("found"),
            "yes",
            "{}: {expected:?} never logged",
            emacs.display()
        );
        let growth: f64 = field("growth-mib").parse().unwrap();
        assert!(
            growth < GROWTH_LIMIT_MIB,
            "{}: Emacs grew {growth} MiB",
            emacs.display()
        );
        let stop: f64 = field("stop-ms").parse().unwrap();
        assert!(stop < 1000.0, "{}: mailsync-stop took {stop} ms", emacs.display());
    }
}

#[test]
fn a_list_without_end_leaves_emacs_alive_and_stoppable() {
    let script = fake_imap::streaming_on_list(fake_imap::endless_list);
    in_emacs(fake_imap::CAPABILITIES, script, "went past 250000 responses");
}

#[test]
fn an_endless_line_and_a_terabyte_literal_leave_emacs_alive_and_stoppable() {
    let line = fake_imap::streaming_on_list(fake_imap::endless_line);
    in_emacs(fake_imap::CAPABILITIES, line, "a line longer than 1 MiB");
    let literal = fake_imap::streaming_on_list(fake_imap::terabyte_literal);
    in_emacs(fake_imap::CAPABILITIES, literal, "announced a literal");
}

#[test]
fn a_flood_of_statuses_never_listed_reaches_no_hook() {
    in_emacs(
        fake_imap::WITH_NOTIFY,
        fake_imap::status_flood(None),
        "which it did not list",
    );
}

#[test]
fn a_black_holed_server_and_a_trickled_tls_handshake_do_not_hold_mailsync_stop() {
    use std::os::fd::AsRawFd;
    // A listener whose queue is full: the kernel drops the next SYNs.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: listen on a listening socket only changes its backlog.
    assert_eq!(unsafe { libc::listen(hole.as_raw_fd(), 0) }, 0);
    let address = hole.local_addr().unwrap();
    let _fillers: Vec<_> = (0..3)
        .filter_map(|_| TcpStream::connect_timeout(&address, std::time::Duration::from_millis(300)).ok())
        .collect();
    in_emacs_on(address.port(), "plain", None);

    let trickle = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = trickle.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for socket in trickle.incoming() {
            let Ok(mut socket) = socket else { return };
            std::thread::spawn(move || {
                if socket.write_all(&[0x16, 0x03, 0x03, 0x40, 0x00]).is_ok() {
                    while socket.write_all(&[0]).is_ok() {
                        std::thread::sleep(std::time::Duration::from_millis(200));
                    }
                }
            });
        }
    });
    in_emacs_on(port, "ssl", None);
}
