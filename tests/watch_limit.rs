//! The kernel's inotify limits give clear errors that name the sysctl and the
//! count. These lower fs.inotify limits for a moment, so they need root (CI
//! runs as root; without it each says why and does nothing), run in a test
//! binary of their own, and one at a time.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::{deliver, make_maildir, Watch};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Sets `fs.inotify.NAME` and puts the old value back when dropped.
struct Limit {
    path: String,
    original: String,
}

impl Limit {
    fn set(name: &str, value: usize) -> Limit {
        let path = format!("/proc/sys/fs/inotify/{name}");
        let original = fs::read_to_string(&path).unwrap();
        fs::write(&path, value.to_string()).unwrap();
        Limit { path, original }
    }
}

impl Drop for Limit {
    fn drop(&mut self) {
        fs::write(&self.path, &self.original).expect("restore the inotify limit");
    }
}

fn is_root() -> bool {
    common::is_root_or_skip("changing fs.inotify limits")
}

/// inotify watches and instances that root's processes hold now.
fn roots_inotify_use() -> (usize, usize) {
    let (mut watches, mut instances) = (0, 0);
    for process in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(meta) = fs::metadata(process.path()) else {
            continue;
        };
        if std::os::unix::fs::MetadataExt::uid(&meta) != 0 {
            continue;
        }
        let Ok(fds) = fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if fs::read_link(fd.path()).is_ok_and(|target| target == Path::new("anon_inode:inotify")) {
                instances += 1;
                let info = process.path().join("fdinfo").join(fd.file_name());
                watches += fs::read_to_string(info)
                    .unwrap_or_default()
                    .lines()
                    .filter(|line| line.starts_with("inotify wd:"))
                    .count();
            }
        }
    }
    (watches, instances)
}

/// `mailsync watch` on `store` with `fs.inotify.NAME` set to `value` while it
/// starts; it must fail with status 1. Returns what it said.
fn refused_start(store: &Path, name: &str, value: usize) -> String {
    let output = {
        let _limit = Limit::set(name, value);
        common::mailsync()
            .args(["watch", "--maildir", store.to_str().unwrap()])
            .output()
            .unwrap()
    };
    assert_eq!(output.status.code(), Some(1));
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn hitting_the_watch_limit_at_start_names_the_sysctl_and_the_count() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|err| err.into_inner());
    if !is_root() {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    make_maildir(store.path());
    for n in 0..40 {
        make_maildir(&store.path().join(format!(".f{n}")));
    }
    let stderr = refused_start(store.path(), "max_user_watches", roots_inotify_use().0 + 20);
    assert!(stderr.contains("fs.inotify.max_user_watches"), "{stderr}");
    assert!(
        stderr.contains("needs 83 watches, only 20 could be added"),
        "{stderr}"
    );
}

#[test]
fn hitting_the_watch_limit_while_running_warns_once_and_recovers_when_raised() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|err| err.into_inner());
    if !is_root() {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    make_maildir(root);
    let watch = Watch::start(&["--maildir", root.to_str().unwrap(), "--delay", "0"]);
    let limit = Limit::set("max_user_watches", roots_inotify_use().0 + 5);
    common::stop(watch.child.id());
    for n in 0..10 {
        make_maildir(&root.join(format!(".f{n}")));
    }
    common::kill(watch.child.id(), "-CONT");
    // The root's 3 watches and 2 for each of 10 folders (a Maildir++
    // folder's own directory needs none); 3 + 5 could be had.
    let mut stderr = String::new();
    common::wait_until("the limit said", Duration::from_secs(10), || {
        stderr += &watch.stderr_text();
        stderr.contains("only 8 could be added")
    });
    assert_eq!(
        stderr.matches("the inotify watch limit is reached").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("needs 23 watches, only 8 could be added"),
        "{stderr}"
    );
    for n in 10..15 {
        make_maildir(&root.join(format!(".f{n}")));
    }
    thread::sleep(Duration::from_millis(300));
    assert!(
        !watch.stderr_text().contains("limit"),
        "warned again in the same episode"
    );

    drop(limit);
    // The next new folder retries every folder the limit left out.
    make_maildir(&root.join(".last"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut said = String::new();
    while !said.contains("is watched again") {
        assert!(Instant::now() < deadline, "no recovery: {said}");
        said.push_str(&watch.stderr_text());
        thread::sleep(Duration::from_millis(50));
    }
    watch.lines_until_quiet(Duration::from_millis(300));
    deliver(&root.join(".f9"));
    assert_eq!(watch.next(), "f9");
}

#[test]
fn no_inotify_instance_left_names_max_user_instances() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|err| err.into_inner());
    if !is_root() {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    make_maildir(store.path());
    let stderr = refused_start(store.path(), "max_user_instances", roots_inotify_use().1 + 2);
    assert!(stderr.contains("fs.inotify.max_user_instances"), "{stderr}");
    assert!(stderr.contains("mailsync needs 4 per watched store"), "{stderr}");
}
