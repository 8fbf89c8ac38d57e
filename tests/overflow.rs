//! A real inotify queue overflow while folders are removed, replaced and
//! renamed: nothing is lost. `fs.inotify.max_queued_events` is lowered just
//! while the watcher makes its inotify instances (each takes the limit when
//! it is made) and put back at once, so this needs root and a test binary
//! of its own. Without root it says why and does nothing.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{deliver, make_maildir, Watch};

const QUEUE: &str = "/proc/sys/fs/inotify/max_queued_events";

/// The folders on disk now, as `mailsync watch` names them.
fn on_disk(root: &Path) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = fs::read_dir(root)
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
        .filter_map(|name| name.strip_prefix('.').map(str::to_string))
        .collect();
    names.insert("INBOX".to_string());
    names
}

fn one_round(round: usize) {
    let store = tempfile::tempdir().unwrap();
    let root = store.path();
    make_maildir(root);
    for n in 0..40 {
        make_maildir(&root.join(format!(".f{n}")));
    }
    let original = fs::read_to_string(QUEUE).unwrap();
    fs::write(QUEUE, "16").unwrap();
    let started =
        std::panic::catch_unwind(|| Watch::start(&["--maildir", root.to_str().unwrap(), "--delay", "200"]));
    fs::write(QUEUE, &original).unwrap();
    let watch = started.unwrap();
    watch.lines_until_quiet(Duration::from_millis(500));

    common::stop(watch.child.id());
    for n in 0..300 {
        deliver(&root.join(format!(".f{}", n % 40)));
    }
    // Removed and made again.
    for n in 0..5 {
        fs::remove_dir_all(root.join(format!(".f{n}"))).unwrap();
        make_maildir(&root.join(format!(".f{n}")));
    }
    // Renamed away, a new folder under the old name.
    for n in 5..10 {
        fs::rename(root.join(format!(".f{n}")), root.join(format!(".g{n}"))).unwrap();
        make_maildir(&root.join(format!(".f{n}")));
    }
    // A batch of 20 renamed.
    for n in 10..30 {
        fs::rename(root.join(format!(".f{n}")), root.join(format!(".h{n}"))).unwrap();
    }
    for n in 0..5 {
        make_maildir(&root.join(format!(".new{n}")));
    }
    common::kill(watch.child.id(), "-CONT");

    let expected = on_disk(root);
    let mut printed: HashMap<String, usize> = HashMap::new();
    for line in watch.lines_until_quiet(Duration::from_millis(1500)) {
        *printed.entry(line).or_default() += 1;
    }
    for folder in &expected {
        let times = printed.get(folder).copied().unwrap_or(0);
        assert_eq!(
            times,
            1,
            "round {round}: {folder} printed {times} times after the overflow: {printed:?}\nSTDERR:\n{}",
            watch.stderr_text()
        );
    }
    assert!(
        watch.stderr_text().is_empty() || !watch.stderr_text().contains("error"),
        "round {round}: {}",
        watch.stderr_text()
    );

    // Every folder on disk is still watched: mail delivered now is seen.
    for folder in &expected {
        let dir = if folder == "INBOX" {
            root.to_path_buf()
        } else {
            root.join(format!(".{folder}"))
        };
        deliver(&dir);
    }
    let seen: BTreeSet<String> = watch
        .lines_until_quiet(Duration::from_millis(800))
        .into_iter()
        .collect();
    let lost: Vec<&String> = expected.difference(&seen).collect();
    assert!(lost.is_empty(), "round {round}: folders lost: {lost:?}");
    assert_eq!(seen, expected, "round {round}");
}

#[test]
fn a_real_overflow_with_folder_churn_loses_no_folder_in_twenty_rounds() {
    if !common::is_root_or_skip("lowering fs.inotify.max_queued_events") {
        return;
    }
    for round in 0..20 {
        one_round(round);
    }
}
