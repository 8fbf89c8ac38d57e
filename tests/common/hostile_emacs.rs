//! The module in a real Emacs against a server on 127.0.0.1 (a stand-in
//! of tests/common/fake_imap.rs): how much Emacs grew, whether the log said
//! what the server did, and how long `mailsync-stop' took. Used by
//! tests/emacs_hostile.rs and by `make bench`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::repo;

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

/// What one Emacs run measured.
#[derive(Debug)]
pub struct Outcome {
    /// The log said what was expected (or nothing was).
    pub found: bool,
    /// Emacs's peak memory added, MiB.
    pub growth_mib: f64,
    /// How long `mailsync-stop' took, ms.
    pub stop_ms: f64,
}

/// Runs the Lisp above in `emacs` against the server on `port`, reached
/// with nnimap-stream `stream`, until the log says `expected` (None: for 1.5 s).
pub fn run(emacs: &Path, port: u16, stream: &str, expected: Option<&str>) -> Outcome {
    assert!(
        repo().join("mailsync-gnus-module.so").exists(),
        "build the module first (make)"
    );
    let lisp = LISP
        .replace("PORT", &port.to_string())
        .replace("STREAM", stream)
        .replace(
            "EXPECTED",
            &expected.map_or("nil".into(), |text| format!("{text:?}")),
        );
    let output = Command::new(emacs)
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
    Outcome {
        found: field("found") == "yes",
        growth_mib: field("growth-mib").parse().unwrap(),
        stop_ms: field("stop-ms").parse().unwrap(),
    }
}

/// Debian's Emacs and Emacs 30.1, or only `$EMACS` when it is set.
pub fn emacsen() -> Vec<PathBuf> {
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
