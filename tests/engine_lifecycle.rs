//! Start and stop leave nothing behind: 1,000 cycles leak no descriptors and
//! no threads. Its own test binary, so no other test opens files meanwhile.

mod common;

use std::fs;
use std::time::Duration;

use mailsync::engine::{Engine, Options, Sink};
use mailsync::naming::Folder;

struct Discard;

impl Sink for Discard {
    fn changed(&mut self, _folders: Vec<Folder>) {}
    fn warning(&mut self, _message: String) {}
}

fn count_entries(dir: &str) -> usize {
    fs::read_dir(dir).unwrap().count()
}

#[test]
fn a_thousand_start_stop_cycles_leak_no_descriptors_or_threads() {
    let store = tempfile::tempdir().unwrap();
    common::make_maildir(store.path());
    for n in 0..5 {
        common::make_maildir(&store.path().join(format!(".f{n}")));
    }
    let options = Options {
        delay: Duration::ZERO,
        ..Options::default()
    };
    // One cycle first, so lazily created process-wide state is not counted.
    Engine::start(store.path(), options.clone(), Box::new(Discard))
        .unwrap()
        .stop();
    let fds_before = count_entries("/proc/self/fd");
    let threads_before = count_entries("/proc/self/task");
    for cycle in 0..1000 {
        let engine = Engine::start(store.path(), options.clone(), Box::new(Discard)).unwrap();
        assert_eq!(engine.stats().watches, 18, "cycle {cycle}");
        if cycle % 2 == 0 {
            common::deliver(&store.path().join(".f1"));
            engine.stop();
        } else {
            drop(engine);
        }
    }
    // notify's own thread ends right after it closes its descriptors, which
    // `stop` waits for; give the scheduler a moment to reap it.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(count_entries("/proc/self/fd"), fds_before, "descriptors leaked");
    assert_eq!(count_entries("/proc/self/task"), threads_before, "threads leaked");
}
