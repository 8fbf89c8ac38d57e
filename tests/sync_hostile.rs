//! `mailsync sync` against other local users, impatient users and odd
//! names: where its lock lives, signals while it waits, a wrapper killed
//! while its backend runs, one resolution of every name, words that say what
//! is wrong, and quoting that every login shell reads the same.
//!
//! Backends here are stand-ins (scripts, named as such): the faults under
//! test are the wrapper's, and a real sync cannot be made to last on cue.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::mailsync;

fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_string()
}

/// `mailsync sync` with HOME in `home` and no XDG_RUNTIME_DIR, as from cron.
fn sync_in(home: &Path) -> Command {
    let mut command = mailsync();
    command
        .arg("sync")
        .env("HOME", home)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("XDG_CACHE_HOME");
    command
}

fn uid() -> u32 {
    unsafe { libc::getuid() }
}

fn wait_for(path: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        thread::sleep(Duration::from_millis(10));
    }
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn without_xdg_runtime_dir_the_lock_is_in_a_private_cache_dir_not_tmp() {
    let home = tempfile::tempdir().unwrap();
    let backend = script(home.path(), "stand-in", "exit 0");
    let account = format!("acct{}", std::process::id());
    let output = sync_in(home.path())
        .args(["--offlineimap", &backend, &account])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let dir = home.path().join(".cache/mailsync");
    assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    let name = format!("mailsync-{}-offlineimap-{account}.lock", uid());
    assert!(dir.join(&name).is_file());
    assert!(
        !std::env::temp_dir().join(&name).exists(),
        "a lock was made in /tmp"
    );
}

#[test]
fn a_planted_link_or_a_foreign_lock_file_is_refused_and_nothing_runs() {
    let home = tempfile::tempdir().unwrap();
    let ran = home.path().join("ran");
    let backend = script(home.path(), "stand-in", &format!("touch '{}'", ran.display()));
    let dir = home.path().join(".cache/mailsync");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    let victim = home.path().join("victim");
    symlink(
        &victim,
        dir.join(format!("mailsync-{}-offlineimap-a.lock", uid())),
    )
    .unwrap();
    let output = sync_in(home.path())
        .args(["--offlineimap", &backend, "a"])
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(0));
    assert!(text(&output).contains("symbolic link"), "{}", text(&output));
    assert!(!victim.exists(), "the sync wrote through the link");
    assert!(!ran.exists());

    if uid() == 0 {
        let foreign = dir.join(format!("mailsync-{}-offlineimap-b.lock", uid()));
        fs::write(&foreign, "").unwrap();
        Command::new("chown")
            .args(["nobody", foreign.to_str().unwrap()])
            .status()
            .unwrap();
        let output = sync_in(home.path())
            .args(["--offlineimap", &backend, "b"])
            .output()
            .unwrap();
        assert_ne!(output.status.code(), Some(0));
        assert!(text(&output).contains("not by you"), "{}", text(&output));
        assert!(!ran.exists());
    }
    // A cache directory others may write to is refused too.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let output = sync_in(home.path())
        .args(["--offlineimap", &backend, "c"])
        .output()
        .unwrap();
    assert!(text(&output).contains("others may write"), "{}", text(&output));
    assert!(!ran.exists());
}

fn start_holding_sync(home: &Path, account: &str) -> (Child, PathBuf, PathBuf) {
    let started = home.join(format!("{account}-started"));
    let done = home.join(format!("{account}-done"));
    let backend = script(
        home,
        &format!("{account}-long-stand-in"),
        &format!(
            "touch '{}'; sleep 2; touch '{}'",
            started.display(),
            done.display()
        ),
    );
    let child = sync_in(home)
        .args(["--offlineimap", &backend, account])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&started, Duration::from_secs(10));
    (child, started, done)
}

#[test]
fn sigterm_while_waiting_for_the_lock_ends_at_once_and_runs_nothing() {
    let home = tempfile::tempdir().unwrap();
    let (mut first, _, _) = start_holding_sync(home.path(), "held");
    let ran = home.path().join("second-ran");
    let backend = script(home.path(), "second", &format!("touch '{}'", ran.display()));
    let mut second = sync_in(home.path())
        .args(["--offlineimap", &backend, "held"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    common::kill(second.id(), "-TERM");
    let status = second.wait().unwrap();
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "took {:?}",
        asked.elapsed()
    );
    assert_eq!(status.code(), Some(128 + 15));
    first.wait().unwrap();
    assert!(!ran.exists(), "the backend ran after the wait was interrupted");
}

#[test]
fn kill_9_of_the_wrapper_keeps_the_lock_while_its_backend_runs() {
    let home = tempfile::tempdir().unwrap();
    let (mut first, _, done) = start_holding_sync(home.path(), "kept");
    first.kill().unwrap(); // SIGKILL: the wrapper gets no chance to clean up
    first.wait().unwrap();
    let second_started = home.path().join("second-started");
    let backend = script(
        home.path(),
        "second",
        &format!(
            "if [ -e '{}' ]; then touch '{}'; else echo overlapped > '{}'; fi",
            done.display(),
            second_started.display(),
            second_started.display()
        ),
    );
    let output = sync_in(home.path())
        .args(["--offlineimap", &backend, "kept"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        fs::read_to_string(&second_started).unwrap(),
        "",
        "the second sync ran while the first backend still ran"
    );
}

#[test]
fn the_check_names_the_folder_the_backend_synced() {
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("offlineimaprc");
    fs::write(
        &rc,
        "[general]\naccounts = work\n\n[Account work]\nlocalrepository = local\nremoterepository = remote\n\n\
         [Repository local]\ntype = Maildir\nlocalfolders = /tmp/x\nsep = /\n\n\
         [Repository remote]\ntype = IMAP\nremotehost = 127.0.0.1\n",
    )
    .unwrap();
    let output = mailsync()
        .args([
            "sync",
            "--dry-run",
            "--check-local",
            "--server",
            "nnimap+local",
            "--config",
        ])
        .arg(&rc)
        .arg("work:lists/emacs")
        .output()
        .unwrap();
    let lines = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert!(lines[0].ends_with("-a work -f lists.emacs"), "{lines:?}");
    assert_eq!(
        lines[1],
        r#"emacsclient --eval '(mailsync/gnus-check (quote ("nnimap+local:lists.emacs")))'"#
    );
}

#[test]
fn words_that_say_what_is_wrong_and_names_kept_byte_for_byte() {
    let output = mailsync()
        .args(["sync", "--offlineimap", "/nonexistent/x", "a"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(127));
    assert!(
        text(&output).contains("/nonexistent/x does not exist"),
        "{}",
        text(&output)
    );
    assert!(!text(&output).contains("not found on PATH"), "{}", text(&output));

    let dir = tempfile::tempdir().unwrap();
    let args_file = dir.path().join("args");
    let backend = script(
        dir.path(),
        "stand-in",
        &format!(
            "for a; do printf '%s\\n' \"$a\"; done > '{}'",
            args_file.display()
        ),
    );
    let account = OsStr::from_bytes(b"caf\xe9");
    let output = mailsync()
        .args(["sync", "--dry-run", "--offlineimap", &backend])
        .arg(account)
        .output()
        .unwrap();
    assert!(
        output.stdout.windows(7).any(|w| w == b"'caf\xe9'\n"),
        "{:?}",
        String::from_utf8_lossy(&output.stdout)
    );
    let home = tempfile::tempdir().unwrap();
    let output = sync_in(home.path())
        .args(["--offlineimap", &backend])
        .arg(account)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let args = fs::read(&args_file).unwrap();
    assert!(
        args.ends_with(b"-a\ncaf\xe9\n"),
        "{:?}",
        String::from_utf8_lossy(&args)
    );
}

/// The login shells a remote account may have.
const SHELLS: [&str; 5] = ["sh", "dash", "bash", "zsh", "fish"];

#[test]
fn check_ssh_reaches_emacsclient_intact_through_every_login_shell() {
    let dir = tempfile::tempdir().unwrap();
    // ssh hands its command to the remote login shell as `SHELL -c COMMAND`;
    // this stand-in ssh does the same here, with the shell under test.
    script(
        dir.path(),
        "ssh",
        "for last; do :; done\nexec \"$LOGIN_SHELL\" -c \"$last\"",
    );
    let argv = dir.path().join("argv");
    let recorder = script(
        dir.path(),
        "emacsclient recorder",
        &format!("for a; do printf '%s\\0' \"$a\"; done > '{}'", argv.display()),
    );
    let backend = script(dir.path(), "stand-in", "exit 0");
    let folder: &[u8] = b"it's a \"b\\c\" $(touch PWNED) `x` \\' caf\xe9 \xe6\x97\xa5";
    let spec = [b"acct:".as_slice(), folder].concat();
    let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap());
    for shell in SHELLS {
        let Some(found) = common::which(shell) else {
            panic!("{shell} is not installed: run `make test` (scripts/setup.sh installs it)");
        };
        let _ = fs::remove_file(&argv);
        let output = mailsync()
            .args([
                "sync",
                "--offlineimap",
                &backend,
                "--check-ssh",
                "host",
                "--emacsclient",
                &recorder,
            ])
            .arg(OsStr::from_bytes(&spec))
            .env("PATH", &path)
            .env("LOGIN_SHELL", &found)
            .env("HOME", dir.path())
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{shell}: {}", text(&output));
        let words: Vec<Vec<u8>> = fs::read(&argv)
            .unwrap_or_else(|_| panic!("{shell}: the recorder never ran: {}", text(&output)))
            .split(|&b| b == 0)
            .filter(|word| !word.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        let expected_lisp = [
            b"(mailsync/gnus-check (quote (\"".as_slice(),
            &mailsync::quote::lisp_string(folder).as_bytes()[1..],
            b")))",
        ]
        .concat();
        assert_eq!(words, vec![b"--eval".to_vec(), expected_lisp], "{shell}");
        assert!(!dir.path().join("PWNED").exists(), "{shell} evaluated the name");
    }
}

#[test]
fn a_folder_list_longer_than_one_argument_syncs_the_whole_account() {
    // 6,000 folders of 25 bytes: 150 KB joined, over Linux's 128 KiB for
    // one argument (mbsync's CHANNEL:BOX,BOX… and OfflineIMAP's -f are one).
    let specs: Vec<String> = (0..6000)
        .map(|n| format!("work:lists.folder-number-{n:05}"))
        .collect();
    for backend in ["mbsync", "offlineimap"] {
        let output = mailsync()
            .args(["sync", "--dry-run", "--backend", backend])
            .args(&specs)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
        let printed = String::from_utf8_lossy(&output.stdout);
        let expected = match backend {
            "mbsync" => "mbsync work\n",
            _ => "offlineimap -o -u quiet -a work\n",
        };
        assert_eq!(printed, expected, "{backend}");
        assert!(
            text(&output).contains(
                "work: 6000 folders are more than one command line holds; syncing the whole account"
            ),
            "{}",
            text(&output)
        );
    }
    let few = mailsync()
        .args(["sync", "--dry-run", "--backend", "mbsync"])
        .args(&specs[..3])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(few.stdout).unwrap(),
        "mbsync work:lists/folder-number-00000,lists/folder-number-00001,lists/folder-number-00002\n"
    );
}
