//! `mailsync sync` end to end: a real Dovecot on 127.0.0.1, real OfflineIMAP
//! and real mbsync, server separators "." and "/". One file, so that the
//! tests sharing a Dovecot set-up stay together.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::mailsync;
use common::servers::{messages, Dovecot};

fn sync(args: &[&str]) -> Output {
    mailsync().arg("sync").args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// `name` on the server, for a local name with levels joined by ".".
fn server_name(dovecot: &Dovecot, local: &str) -> String {
    local.replace('.', dovecot.separator)
}

fn offlineimap_pulls_one_folder_then_everything(separator: &'static str) {
    let dovecot = Dovecot::start(separator);
    let local = dovecot.dir.path().join("local");
    let rc = dovecot.offlineimaprc(&local);
    dovecot.save(&server_name(&dovecot, "foo.bar"), "for foo.bar");
    dovecot.save("other", "for other");
    let rc = rc.to_str().unwrap();

    let output = sync(&["--config", rc, "--remote-separator", separator, "test:foo.bar"]);
    assert_success(&output);
    assert!(text(&output.stdout).starts_with("+ offlineimap -o -u quiet -c "));
    assert_eq!(messages(&local.join("foo.bar")), 1);
    assert_eq!(messages(&local.join("other")), 0, "a folder not named was pulled");

    assert_success(&sync(&["--config", rc, "--remote-separator", separator, "test"]));
    assert_eq!(messages(&local.join("other")), 1);
    assert_eq!(messages(&local.join("foo.bar")), 1);
}

#[test]
fn offlineimap_with_dot_separator() {
    offlineimap_pulls_one_folder_then_everything(".");
}

#[test]
fn offlineimap_with_slash_separator() {
    offlineimap_pulls_one_folder_then_everything("/");
}

fn mbsync_pulls_one_folder_then_everything(separator: &'static str) {
    let dovecot = Dovecot::start(separator);
    let local = dovecot.dir.path().join("local");
    let rc = dovecot.mbsyncrc(&local);
    dovecot.save(&server_name(&dovecot, "foo.bar"), "for foo.bar");
    dovecot.save("other", "for other");
    let rc = rc.to_str().unwrap();

    // The local store is verbatim: its watcher prints foo/bar.
    let output = sync(&[
        "--backend",
        "mbsync",
        "--config",
        rc,
        "--local-separator",
        "/",
        "test:foo/bar",
    ]);
    assert_success(&output);
    assert!(
        text(&output.stdout).contains("test:foo/bar"),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(messages(&local.join("foo/bar")), 1);
    assert_eq!(messages(&local.join("other")), 0, "a folder not named was pulled");

    // A Maildir++-style name with its leading dot reaches the same box.
    dovecot.save(&server_name(&dovecot, "foo.bar"), "second");
    assert_success(&sync(&["--backend", "mbsync", "--config", rc, "test:.foo.bar"]));
    assert_eq!(messages(&local.join("foo/bar")), 2);

    assert_success(&sync(&["--backend", "mbsync", "--config", rc, "test"]));
    assert_eq!(messages(&local.join("other")), 1);
}

#[test]
fn mbsync_with_dot_separator() {
    mbsync_pulls_one_folder_then_everything(".");
}

#[test]
fn mbsync_with_slash_separator() {
    mbsync_pulls_one_folder_then_everything("/");
}

#[test]
fn two_syncs_started_together_both_succeed() {
    let dovecot = Dovecot::start(".");
    let local = dovecot.dir.path().join("local");
    let rc = dovecot.offlineimaprc(&local);
    dovecot.save("INBOX", "hello");
    dovecot.save("other", "hello");
    let rc = rc.to_str().unwrap();
    // Without the wrapper's lock the second OfflineIMAP fails at once with
    // "Could not lock account".
    let runs: Vec<_> = (0..2)
        .map(|_| {
            mailsync()
                .args(["sync", "--config", rc, "test"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for run in runs {
        assert_success(&run.wait_with_output().unwrap());
    }
    assert_eq!(messages(&local.join("INBOX")), 1);
}

/// A recorder in place of emacsclient: notes that a check ran.
fn recorder(dir: &Path) -> (String, std::path::PathBuf) {
    let log = dir.join("checks.log");
    let script = dir.join("record-check");
    fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\n", log.display()),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    (script.to_str().unwrap().to_string(), log)
}

#[test]
fn with_the_server_stopped_the_sync_fails_and_no_check_runs() {
    let mut dovecot = Dovecot::start(".");
    let local = dovecot.dir.path().join("local");
    let rc = dovecot.offlineimaprc(&local);
    let (recorder, log) = recorder(dovecot.dir.path());
    let mbsyncrc = dovecot.mbsyncrc(&local);
    dovecot.stop();
    for (backend, config) in [("offlineimap", rc), ("mbsync", mbsyncrc)] {
        let output = sync(&[
            "--backend",
            backend,
            "--config",
            config.to_str().unwrap(),
            "--check-local",
            "--emacsclient",
            &recorder,
            "test:INBOX",
        ]);
        // The backend ran (`+ …` printed) and failed as it does when the
        // server is gone: exit 1 and no connection, not a missing program.
        let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
        let no_connection = match backend {
            "offlineimap" => "could not open socket",
            _ => "Connection refused",
        };
        assert_eq!(output.status.code(), Some(1), "{backend}: {said}");
        assert!(
            text(&output.stdout).starts_with(&format!("+ {backend} ")),
            "{backend}: {said}"
        );
        assert!(said.contains(no_connection), "{backend}: {said}");
        assert!(!log.exists(), "a check ran after a failed {backend} sync");
    }
}

#[test]
fn a_missing_backend_exits_127_naming_the_option() {
    let output = sync(&["--offlineimap", "/nonexistent/offlineimap", "test:INBOX"]);
    assert_eq!(output.status.code(), Some(127));
    assert!(
        text(&output.stderr).contains("--offlineimap"),
        "{}",
        text(&output.stderr)
    );
    let output = sync(&["--backend", "mbsync", "--mbsync", "/nonexistent/mbsync", "test"]);
    assert_eq!(output.status.code(), Some(127));
    assert!(
        text(&output.stderr).contains("--mbsync"),
        "{}",
        text(&output.stderr)
    );
}

/// A stand-in backend: a script with a fixed behaviour, for faults the real
/// OfflineIMAP cannot be made to show (it exits 1 on every failure).
fn stand_in(dir: &Path, body: &str) -> String {
    let script = dir.join("stand-in-backend");
    fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script.to_str().unwrap().to_string()
}

#[test]
fn a_stand_in_backend_exiting_3_gives_3_and_no_check() {
    let dir = tempfile::tempdir().unwrap();
    let backend = stand_in(dir.path(), "exit 3");
    let (recorder, log) = recorder(dir.path());
    let output = sync(&[
        "--offlineimap",
        &backend,
        "--check-local",
        "--emacsclient",
        &recorder,
        "a:INBOX",
    ]);
    assert_eq!(output.status.code(), Some(3));
    assert!(!log.exists());
}

#[test]
fn the_first_failure_wins_and_later_accounts_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let backend = stand_in(
        dir.path(),
        &format!(
            "echo \"$@\" >> '{}'\ncase \"$*\" in *\"-a bad\"*) exit 5;; esac",
            runs.display()
        ),
    );
    let output = sync(&["--offlineimap", &backend, "bad:INBOX", "good:INBOX", "good:work"]);
    assert_eq!(output.status.code(), Some(5));
    let runs = fs::read_to_string(runs).unwrap();
    assert_eq!(
        runs,
        "-o -u quiet -a bad -f INBOX\n-o -u quiet -a good -f INBOX,work\n"
    );
}

#[test]
fn a_child_killed_by_a_signal_gives_128_plus_n() {
    let dir = tempfile::tempdir().unwrap();
    let backend = stand_in(dir.path(), "kill -KILL $$");
    assert_eq!(
        sync(&["--offlineimap", &backend, "a"]).status.code(),
        Some(128 + 9)
    );
}

#[test]
fn sigterm_is_passed_to_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let backend = stand_in(
        dir.path(),
        &format!("touch '{}'\nexec sleep 30", started.display()),
    );
    let mut child = mailsync()
        .args(["sync", "--offlineimap", &backend, "a"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !started.exists() {
        assert!(std::time::Instant::now() < deadline, "the stand-in never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "sleep was not ended by the forwarded SIGTERM"
    );
}

#[test]
fn bad_specs_exit_2_and_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let backend = stand_in(dir.path(), &format!("touch '{}'", ran.display()));
    for args in [
        vec![],
        vec![":INBOX"],
        vec!["acc:"],
        vec![""],
        vec!["ok:INBOX", "acc:"],
    ] {
        let mut all = vec!["--offlineimap", backend.as_str()];
        all.extend(args.iter().copied());
        let output = sync(&all);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert!(!ran.exists(), "{args:?} ran the backend");
    }
    let output = sync(&["--offlineimap", &backend, "acc:a,b"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("comma"));
    assert!(!ran.exists());
}

#[test]
fn dry_run_prints_quoted_commands_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let backend = stand_in(dir.path(), &format!("touch '{}'", ran.display()));
    let output = sync(&[
        "--dry-run",
        "--offlineimap",
        &backend,
        "--check-local",
        "--server",
        "nnimap+local",
        "work:it's",
        "home",
    ]);
    assert_success(&output);
    assert!(!ran.exists());
    let lines: Vec<String> = text(&output.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0], format!(r"{backend} -o -u quiet -a work -f 'it'\''s'"));
    assert_eq!(
        lines[1],
        r#"emacsclient --eval '(mailsync/gnus-check (quote ("nnimap+local:it'\''s")))'"#
    );
    assert_eq!(lines[2], format!("{backend} -o -u quiet -a home"));
    assert_eq!(lines[3], "emacsclient --eval '(mailsync/gnus-check nil)'");
}

#[test]
fn the_seed_script_names_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_mailsync");
    for name in [
        "mailsync_offlineimap",
        "mailsync_offlineimap_local",
        "mailsync_gnus_watch",
    ] {
        std::os::unix::fs::symlink(binary, dir.path().join(name)).unwrap();
    }
    let output = Command::new(dir.path().join("mailsync_offlineimap"))
        .args(["--dry-run", "acc:INBOX"])
        .output()
        .unwrap();
    assert_eq!(text(&output.stdout), "offlineimap -o -u quiet -a acc -f INBOX\n");
    let output = Command::new(dir.path().join("mailsync_offlineimap_local"))
        .args(["--dry-run", "acc:lists/emacs", "--local-separator", "/"])
        .output()
        .unwrap();
    assert_eq!(
        text(&output.stdout),
        "offlineimap -o -u quiet -a acc -f lists.emacs\nemacsclient --eval '(mailsync/gnus-check (quote (\"lists.emacs\")))'\n"
    );
    let help = Command::new(dir.path().join("mailsync_gnus_watch"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(text(&help.stdout).contains("--check-local"));
}

#[test]
fn help_documents_every_option_with_examples() {
    let help = text(&sync(&["--help"]).stdout);
    let documented = common::help_options(&help);
    for option in [
        "--backend",
        "--offlineimap",
        "--mbsync",
        "--config",
        "--local-separator",
        "--remote-separator",
        "--name-map",
        "--lock-timeout",
        "--dry-run",
        "--check-local",
        "--check-ssh",
        "--check-timeout",
        "--server",
        "--template",
        "--group-inbox",
        "--group-separator",
        "--utf7",
        "--emacsclient",
        "--socket-name",
        "--check-function",
    ] {
        assert!(documented.contains(option), "--help lacks {option}");
    }
    for hidden in ["--inbox", "--separator"] {
        assert!(
            !documented.contains(hidden),
            "--help shows the old spelling {hidden}"
        );
    }
    assert!(
        help.contains("Examples:") && help.contains(".mswatchrc"),
        "{help}"
    );
    // The old spellings still work, as the group options.
    let output = sync(&[
        "--dry-run",
        "--check-local",
        "--separator",
        "/",
        "--inbox",
        "In",
        "a:INBOX",
        "a:x.y",
    ]);
    assert_eq!(
        text(&output.stdout).lines().nth(1).unwrap(),
        r#"emacsclient --eval '(mailsync/gnus-check (quote ("In" "x/y")))'"#
    );
}

/// A Gmail-like server (separator `/`, `[Gmail]/…` folders) whose names
/// OfflineIMAP's `nametrans` changes locally: the name map finds the mapped
/// ones, the separator the others, and exactly those folders are pulled.
#[test]
fn gmail_style_names_reach_their_folders_through_the_name_map() {
    let dovecot = Dovecot::start("/");
    for folder in ["[Gmail]/Sent Mail", "[Gmail]/All Mail", "[Gmail]/Starred"] {
        dovecot.save(folder, "gmail-like");
    }
    let local = dovecot.dir.path().join("local");
    // What Gmail users write: Sent Mail becomes `sent`, All Mail `all`.
    let rc = dovecot.offlineimaprc_with(
        &local,
        "nametrans = lambda f: {'sent': '[Gmail]/Sent Mail', 'all': '[Gmail]/All Mail'}.get(f, f.replace('.', '/'))\n",
        "nametrans = lambda f: {'[Gmail]/Sent Mail': 'sent', '[Gmail]/All Mail': 'all'}.get(f, f.replace('/', '.'))\n\
         createfolders = False\n",
    );
    let map = dovecot.dir.path().join("gmail-map");
    fs::write(
        &map,
        "# local\tremote\nsent\t[Gmail]/Sent Mail\nall\t[Gmail]/All Mail\n",
    )
    .unwrap();
    let args = [
        "--remote-separator",
        "/",
        "--name-map",
        map.to_str().unwrap(),
        "--config",
        rc.to_str().unwrap(),
    ];

    let output = sync(&[&args[..], &["test:sent"]].concat());
    assert_success(&output);
    assert!(
        text(&output.stdout).contains("-f '[Gmail]/Sent Mail'"),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(messages(&local.join("sent")), 1);
    assert_eq!(messages(&local.join("all")), 0, "a folder not named was pulled");
    assert_eq!(
        messages(&local.join("[Gmail].Starred")),
        0,
        "a folder not named was pulled"
    );

    let output = sync(&[&args[..], &["test:[Gmail].Starred"]].concat());
    assert_success(&output);
    assert!(
        text(&output.stdout).contains("-f '[Gmail]/Starred'"),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(messages(&local.join("[Gmail].Starred")), 1);
    assert_eq!(messages(&local.join("all")), 0, "a folder not named was pulled");
}
