//! The real `mailsync watch` binary on temporary maildirs in each layout.

mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::thread;
use std::time::Duration;

use common::{deliver, mailsync, make_maildir, Watch};

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn maildir_plus_plus_delivery_is_reported_by_name() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    make_maildir(root);
    make_maildir(&root.join(".lists.emacs"));
    let watch = Watch::start(&["--maildir", arg(root), "--delay", "0"]);
    deliver(root);
    assert_eq!(watch.next(), "INBOX");
    deliver(&root.join(".lists.emacs"));
    assert_eq!(watch.next(), "lists.emacs");
    assert_eq!(watch.close_stdin_and_wait(), 0);
}

#[test]
fn inbox_name_and_separator_are_options() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    make_maildir(root);
    make_maildir(&root.join(".a.b"));
    let watch = Watch::start(&[
        "--maildir",
        arg(root),
        "--delay",
        "0",
        "--inbox",
        "Inbox",
        "--separator",
        "/",
    ]);
    deliver(root);
    assert_eq!(watch.next(), "Inbox");
    deliver(&root.join(".a.b"));
    assert_eq!(watch.next(), "a/b");
}

#[test]
fn verbatim_delivery_is_reported_with_slashes() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    make_maildir(root);
    make_maildir(&root.join("lists/emacs"));
    let watch = Watch::start(&["--maildir", arg(root), "--delay", "0"]);
    deliver(&root.join("lists/emacs"));
    assert_eq!(watch.next(), "lists/emacs");
    deliver(root);
    assert_eq!(watch.next(), "INBOX");
}

#[test]
fn nnmaildir_delivery_is_reported_by_directory_name() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    make_maildir(&root.join("INBOX"));
    make_maildir(&root.join("mail.misc"));
    let watch = Watch::start(&["--maildir", arg(root), "--delay", "0", "--layout", "nnmaildir"]);
    deliver(&root.join("mail.misc"));
    assert_eq!(watch.next(), "mail.misc");
    deliver(&root.join("INBOX"));
    assert_eq!(watch.next(), "INBOX");
}

#[test]
fn reading_and_flagging_and_tmp_writes_are_not_reported() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    make_maildir(root);
    make_maildir(&root.join(".sentinel"));
    let message = root.join("new/1.host");
    fs::write(&message, "x").unwrap();
    let watch = Watch::start(&["--maildir", arg(root), "--delay", "0"]);
    // A half-written message in tmp/.
    fs::write(root.join("tmp/2.host"), "partial").unwrap();
    // A mail reader reading: new/ → cur/, then flagging it seen and replied.
    fs::rename(&message, root.join("cur/1.host:2,")).unwrap();
    fs::rename(root.join("cur/1.host:2,"), root.join("cur/1.host:2,S")).unwrap();
    fs::rename(root.join("cur/1.host:2,S"), root.join("cur/1.host:2,RS")).unwrap();
    // Mail-reader bookkeeping in the folder root.
    fs::write(root.join("dovecot-uidlist"), "3 V1 N2").unwrap();
    fs::create_dir_all(root.join(".nnmaildir/marks/read")).unwrap();
    watch.expect_nothing_before(&root.join(".sentinel"), "sentinel");
}

#[test]
fn flag_changes_are_reported_when_asked() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    make_maildir(root);
    fs::write(root.join("cur/1.host:2,"), "x").unwrap();
    let watch = Watch::start(&["--maildir", arg(root), "--delay", "0", "--report-flags"]);
    fs::rename(root.join("cur/1.host:2,"), root.join("cur/1.host:2,S")).unwrap();
    assert_eq!(watch.next(), "INBOX");
}

#[test]
fn a_burst_gives_a_few_lines_per_folder_and_every_folder() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    make_maildir(root);
    let folders: Vec<_> = (0..5).map(|n| root.join(format!(".f{n}"))).collect();
    for folder in &folders {
        make_maildir(folder);
    }
    let watch = Watch::start(&["--maildir", arg(root), "--delay", "200"]);
    for n in 0..1000 {
        deliver(&folders[n % folders.len()]);
    }
    let lines = watch.lines_until_quiet(Duration::from_millis(1500));
    let mut per_folder: HashMap<String, usize> = HashMap::new();
    for line in &lines {
        *per_folder.entry(line.clone()).or_default() += 1;
    }
    for n in 0..5 {
        let count = per_folder.get(&format!("f{n}")).copied().unwrap_or(0);
        assert!(
            (1..=3).contains(&count),
            "folder f{n} printed {count} times: {lines:?}"
        );
    }
    assert_eq!(per_folder.len(), 5, "{lines:?}");
}

#[test]
fn a_nested_folder_made_at_once_and_filled_at_once_is_reported() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    make_maildir(root);
    let watch = Watch::start(&["--maildir", arg(root), "--delay", "100", "--layout", "verbatim"]);
    let deep = root.join("a/b/c");
    fs::create_dir_all(deep.join("tmp")).unwrap();
    fs::create_dir_all(deep.join("new")).unwrap();
    fs::create_dir_all(deep.join("cur")).unwrap();
    fs::write(deep.join("new/1.host"), "mail").unwrap();
    let lines = watch.lines_until_quiet(Duration::from_millis(800));
    assert!(lines.contains(&"a/b/c".to_string()), "{lines:?}");
    // And it stays watched.
    deliver(&deep);
    assert_eq!(watch.next(), "a/b/c");
}

#[test]
fn a_new_or_cur_replaced_in_place_and_a_folder_made_step_by_step_are_watched() {
    // In Maildir++ and nnmaildir a folder's own directory is not watched
    // while its new/ and cur/ are there: their going must bring it back.
    for (layout, dot) in [("maildir++", "."), ("nnmaildir", "")] {
        let store = tempfile::tempdir().unwrap();
        let root = store.path();
        let folder = root.join(format!("{dot}a"));
        make_maildir(&folder);
        let watch = Watch::start(&["--maildir", arg(root), "--delay", "0", "--layout", layout]);
        // new/ renamed away and made again at once.
        fs::rename(folder.join("new"), folder.join("new.old")).unwrap();
        fs::create_dir(folder.join("new")).unwrap();
        watch.lines_until_quiet(Duration::from_millis(300));
        deliver(&folder);
        assert_eq!(watch.next(), "a", "{layout}: a delivery into the new new/");
        // cur/ removed, and made again a moment later.
        fs::remove_dir_all(folder.join("cur")).unwrap();
        thread::sleep(Duration::from_millis(200));
        fs::create_dir(folder.join("cur")).unwrap();
        watch.lines_until_quiet(Duration::from_millis(300));
        fs::write(folder.join("cur/1.host:2,S"), "mail").unwrap();
        assert_eq!(watch.next(), "a", "{layout}: a message made in the new cur/");
        // A folder made step by step: its directory, then tmp/, new/, cur/.
        let b = root.join(format!("{dot}b"));
        fs::create_dir(&b).unwrap();
        for sub in ["tmp", "new", "cur"] {
            thread::sleep(Duration::from_millis(100));
            fs::create_dir(b.join(sub)).unwrap();
        }
        watch.lines_until_quiet(Duration::from_millis(300));
        deliver(&b);
        assert_eq!(
            watch.next(),
            "b",
            "{layout}: a delivery into a folder made step by step"
        );
        // The old new/, moved aside, is no longer the folder's.
        fs::write(folder.join("new.old/2.host"), "mail").unwrap();
        watch.expect_nothing_before(&b, "b");
        assert_eq!(watch.stderr_text(), "", "{layout}");
    }
}

#[test]
fn folders_removed_or_renamed_cause_no_error_and_watching_goes_on() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    make_maildir(root);
    make_maildir(&root.join(".doomed"));
    make_maildir(&root.join(".old"));
    deliver(&root.join(".doomed"));
    let mut watch = Watch::start(&["--maildir", arg(root), "--delay", "0"]);
    fs::remove_dir_all(root.join(".doomed")).unwrap();
    fs::rename(root.join(".old"), root.join(".renamed")).unwrap();
    // The removal may be reported (its messages left); the watcher goes on.
    watch.lines_until_quiet(Duration::from_millis(500));
    deliver(&root.join(".renamed"));
    assert!(watch
        .lines_until_quiet(Duration::from_millis(500))
        .contains(&"renamed".to_string()));
    deliver(root);
    assert_eq!(watch.next(), "INBOX");
    assert!(watch.child.try_wait().unwrap().is_none(), "watcher exited");
    assert_eq!(watch.stderr_text(), "");
}

#[test]
fn a_forced_overflow_reports_every_folder_once() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    make_maildir(root);
    for n in 0..20 {
        make_maildir(&root.join(format!(".f{n}")));
    }
    let watch = Watch::start(&["--maildir", arg(root), "--delay", "50"]);
    // SIGUSR1 is the fault-injection hook: the engine handles it exactly as
    // notify's rescan flag after an IN_Q_OVERFLOW.
    common::kill(watch.child.id(), "-USR1");
    let mut lines = watch.lines_until_quiet(Duration::from_millis(800));
    lines.sort();
    let mut expected: Vec<String> = (0..20).map(|n| format!("f{n}")).collect();
    expected.push("INBOX".to_string());
    expected.sort();
    assert_eq!(lines, expected);
}

#[test]
fn closing_stdin_exits_zero() {
    let store = tempfile::tempdir().unwrap();
    make_maildir(store.path());
    let watch = Watch::start(&["--maildir", arg(store.path())]);
    assert_eq!(watch.close_stdin_and_wait(), 0);
}

#[test]
fn sigterm_exits_zero() {
    let store = tempfile::tempdir().unwrap();
    make_maildir(store.path());
    let mut watch = Watch::start(&["--maildir", arg(store.path())]);
    common::kill(watch.child.id(), "-TERM");
    assert_eq!(watch.wait(Duration::from_secs(10)), 0);
}

#[test]
fn a_missing_maildir_is_a_one_line_error() {
    let output = mailsync()
        .args(["watch", "--maildir", "/nonexistent/mailsync-test"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/mailsync-test"), "{stderr}");
}

#[test]
fn maildir_defaults_to_the_environment() {
    let store = tempfile::tempdir().unwrap();
    make_maildir(store.path());
    let output = mailsync()
        .arg("watch")
        .env("MAILDIR", store.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, b"\n");
}

#[test]
fn names_that_are_not_utf8_are_printed_byte_for_byte() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    make_maildir(root);
    let odd = root.join(std::ffi::OsStr::from_bytes(b".caf\xe9 \"quoted\" [Gmail]"));
    make_maildir(&odd);
    let watch = Watch::start(&["--maildir", arg(root), "--delay", "0"]);
    deliver(&odd);
    assert_eq!(
        watch.line(Duration::from_secs(10)).unwrap(),
        b"caf\xe9 \"quoted\" [Gmail]"
    );
}

#[test]
fn help_and_version() {
    let help = mailsync().args(["watch", "--help"]).output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    let documented = common::help_options(&text);
    for option in [
        "--maildir",
        "--layout",
        "--delay",
        "--max-delay",
        "--inbox",
        "--separator",
        "--report-flags",
        "--check-local",
        "--check-timeout",
        "--group-inbox",
        "--group-separator",
        "--utf7",
    ] {
        assert!(documented.contains(option), "--help lacks {option}");
    }
    let version = mailsync().arg("--version").output().unwrap();
    assert!(String::from_utf8(version.stdout)
        .unwrap()
        .starts_with("mailsync "));
}
