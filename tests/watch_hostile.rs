//! `mailsync watch` against what users and other programs do to a store:
//! symbolic links (loops included), the root removed or moved away, folders
//! replaced while the watcher is busy, a reader that stops reading, a folder
//! it may not read.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{deliver, make_maildir, Watch};

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

#[test]
fn symlink_loops_are_cut_with_one_warning_each() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    make_maildir(root);
    make_maildir(&root.join("z"));
    symlink("..", root.join("z/up1")).unwrap();
    symlink("..", root.join("z/up2")).unwrap();
    let started = Instant::now();
    let watch = Watch::start(&["--maildir", arg(root), "--layout", "verbatim", "--delay", "0"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "ready took {:?}",
        started.elapsed()
    );
    assert!(rss_kib(watch.child.id()) < 64 * 1024, "memory grew");
    deliver(&root.join("z"));
    assert_eq!(watch.next(), "z");
    let mut warnings = String::new();
    common::wait_until("both loops said", Duration::from_secs(10), || {
        warnings += &watch.stderr_text();
        warnings.matches("(a loop); not followed").count() >= 2
    });
    assert_eq!(
        warnings.matches("(a loop); not followed").count(),
        2,
        "{warnings}"
    );
    assert!(
        warnings.contains("z/up1") && warnings.contains("z/up2"),
        "{warnings}"
    );
}

#[test]
fn a_linked_folder_is_reported_under_the_links_name_and_its_target_under_its_own() {
    let store = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = store.path();
    make_maildir(root);
    make_maildir(&root.join(".work"));
    make_maildir(&outside.path().join("real"));
    symlink(outside.path().join("real"), root.join(".linked")).unwrap();
    symlink(root.join(".work"), root.join(".alias")).unwrap();
    let watch = Watch::start(&["--maildir", arg(root), "--delay", "100"]);
    deliver(&outside.path().join("real"));
    assert_eq!(watch.next(), "linked");
    deliver(&root.join(".work"));
    let mut lines = watch.lines_until_quiet(Duration::from_millis(500));
    lines.sort();
    assert_eq!(lines, ["alias", "work"]);

    // A link made while running is followed the same way.
    make_maildir(&outside.path().join("later"));
    symlink(outside.path().join("later"), root.join(".later")).unwrap();
    thread::sleep(Duration::from_millis(300));
    watch.lines_until_quiet(Duration::from_millis(300));
    deliver(&outside.path().join("later"));
    assert_eq!(watch.lines_until_quiet(Duration::from_millis(500)), ["later"]);

    // Removing a link never stops reports for its target.
    fs::remove_file(root.join(".alias")).unwrap();
    thread::sleep(Duration::from_millis(300));
    watch.lines_until_quiet(Duration::from_millis(300));
    deliver(&root.join(".work"));
    assert_eq!(watch.lines_until_quiet(Duration::from_millis(500)), ["work"]);
}

#[test]
fn the_root_moved_away_or_removed_is_waited_for_then_reported_whole() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("Maildir");
    make_maildir(&root);
    make_maildir(&root.join(".a"));
    let watch = Watch::start(&["--maildir", arg(&root), "--delay", "50"]);

    fs::rename(&root, parent.path().join("Maildir.old")).unwrap();
    watch.stderr_until("was removed or moved away", Duration::from_secs(5));
    deliver(&parent.path().join("Maildir.old/.a"));
    assert!(
        watch.lines_until_quiet(Duration::from_millis(400)).is_empty(),
        "the moved-away root is still watched"
    );

    make_maildir(&root);
    make_maildir(&root.join(".b"));
    watch.stderr_until("is back", Duration::from_secs(5));
    let mut lines = watch.lines_until_quiet(Duration::from_millis(500));
    lines.sort();
    assert_eq!(lines, ["INBOX", "b"]);
    deliver(&root.join(".b"));
    assert_eq!(watch.next(), "b");

    fs::remove_dir_all(&root).unwrap();
    watch.stderr_until("was removed or moved away", Duration::from_secs(5));
    make_maildir(&root);
    watch.stderr_until("is back", Duration::from_secs(5));
    assert_eq!(watch.lines_until_quiet(Duration::from_millis(500)), ["INBOX"]);
    deliver(&root);
    assert_eq!(watch.next(), "INBOX");
}

/// Folders removed and made again while the watcher is stopped, so that the
/// old directories' events (read by the folders' inotify instances) and the
/// root's (read by another) reach the engine in either order: the folders
/// made again are watched. Before the engine told the old directories'
/// events from the new ones' (`engine::retired`), 3 rounds in 4 lost folders
/// this way (40 rounds of 40 folders), so ten rounds show it.
#[test]
fn folders_replaced_while_the_watcher_is_stopped_stay_watched() {
    let folders: Vec<String> = (0..40).map(|n| format!("f{n}")).collect();
    for round in 0..10 {
        let store = tempfile::tempdir().unwrap();
        let root = store.path();
        make_maildir(root);
        for folder in &folders {
            make_maildir(&root.join(format!(".{folder}")));
        }
        let watch = Watch::start(&["--maildir", arg(root), "--delay", "50"]);
        common::stop(watch.child.id());
        for folder in &folders {
            fs::remove_dir_all(root.join(format!(".{folder}"))).unwrap();
            make_maildir(&root.join(format!(".{folder}")));
        }
        common::kill(watch.child.id(), "-CONT");
        watch.lines_until_quiet(Duration::from_millis(400));
        for folder in &folders {
            deliver(&root.join(format!(".{folder}")));
        }
        let seen: BTreeSet<String> = watch
            .lines_until_quiet(Duration::from_millis(400))
            .into_iter()
            .collect();
        let lost: Vec<&String> = folders.iter().filter(|folder| !seen.contains(*folder)).collect();
        assert!(lost.is_empty(), "round {round}: mail not reported in {lost:?}");
        assert_eq!(watch.stderr_text(), "", "round {round}");
    }
}

#[test]
fn a_reader_that_stops_reading_holds_one_name_per_folder_and_sigterm_still_ends_it() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    make_maildir(root);
    let long = "x".repeat(60);
    let folders: Vec<_> = (0..2000).map(|n| root.join(format!(".{long}{n}"))).collect();
    for folder in &folders {
        make_maildir(folder);
    }
    // Standard output is a pipe nobody reads: 2,000 names of 64 bytes fill it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailsync"))
        .args(["watch", "--maildir", arg(root), "--delay", "20"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_secs(2));
    common::kill(child.id(), "-USR1");
    thread::sleep(Duration::from_millis(500));
    let before = rss_kib(child.id());
    for round in 0..10 {
        for folder in folders.iter().step_by(2) {
            deliver(folder);
        }
        if round == 0 {
            thread::sleep(Duration::from_millis(200));
        }
    }
    thread::sleep(Duration::from_millis(500));
    let after = rss_kib(child.id());
    assert!(
        after < before + 8 * 1024,
        "memory grew from {before} KiB to {after} KiB while the reader slept"
    );
    let asked = Instant::now();
    common::kill(child.id(), "-TERM");
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(asked.elapsed() < Duration::from_secs(3), "SIGTERM was not obeyed");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_unreadable_folder_is_named_in_a_warning() {
    let store = tempfile::tempdir().unwrap();
    let root = store.path().join("mail");
    make_maildir(&root);
    make_maildir(&root.join(".secret"));
    make_maildir(&root.join(".open"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_mailsync"));
    // As root every folder is readable: the watcher runs as nobody there.
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::process::CommandExt;
        Command::new("chown")
            .args(["-R", "nobody", arg(&root)])
            .status()
            .unwrap();
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o755)).unwrap();
        command.uid(65534).gid(65534);
    }
    fs::set_permissions(root.join(".secret"), fs::Permissions::from_mode(0o000)).unwrap();
    let output = command
        .args(["watch", "--maildir", arg(&root)])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    fs::set_permissions(root.join(".secret"), fs::Permissions::from_mode(0o755)).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(".secret"), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(!stderr.contains(".open"), "{stderr}");
}

#[test]
fn a_bind_mount_loop_is_cut_by_device_and_inode() {
    if !common::is_root_or_skip("a bind mount") {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    make_maildir(root);
    make_maildir(&root.join("a"));
    fs::create_dir_all(root.join("a/back")).unwrap();
    // No link to resolve: the same directory under another path.
    let mounted = Command::new("mount")
        .args(["--bind", arg(root), arg(&root.join("a/back"))])
        .status()
        .is_ok_and(|status| status.success());
    if !mounted {
        common::skip("mount --bind is not allowed here");
        return;
    }
    let watch = std::panic::catch_unwind(|| {
        let watch = Watch::start(&["--maildir", arg(root), "--layout", "verbatim", "--delay", "0"]);
        deliver(&root.join("a"));
        assert_eq!(watch.next(), "a");
        thread::sleep(Duration::from_millis(200));
        assert!(
            watch.stderr_text().contains("(a loop); not followed"),
            "{}",
            watch.stderr_text()
        );
        watch
    });
    let _ = Command::new("umount").arg(root.join("a/back")).status();
    drop(watch.unwrap());
}
