//! The inotify watch limit gives a clear error naming the sysctl and the
//! number of watches needed. Lowers fs.inotify.max_user_watches for a moment,
//! so it needs root and runs in a test binary of its own.

mod common;

use std::fs;

const LIMIT: &str = "/proc/sys/fs/inotify/max_user_watches";

struct RestoreLimit(String);

impl Drop for RestoreLimit {
    fn drop(&mut self) {
        fs::write(LIMIT, &self.0).expect("restore max_user_watches");
    }
}

#[test]
fn hitting_the_watch_limit_names_the_sysctl_and_the_count() {
    let store = tempfile::tempdir().unwrap();
    common::make_maildir(store.path());
    for n in 0..40 {
        common::make_maildir(&store.path().join(format!(".f{n}")));
    }
    let original = fs::read_to_string(LIMIT).unwrap();
    // Root is required to lower the limit; CI runs as root.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test must run as root (make test under sudo)"
    );
    let output = {
        let _restore = RestoreLimit(original.clone());
        fs::write(LIMIT, "20").unwrap();
        common::mailsync()
            .args(["watch", "--maildir", store.path().to_str().unwrap()])
            .output()
            .unwrap()
    };
    assert_eq!(fs::read_to_string(LIMIT).unwrap(), original);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("fs.inotify.max_user_watches"), "{stderr}");
    assert!(stderr.contains("needs 123 watches"), "{stderr}");
}
