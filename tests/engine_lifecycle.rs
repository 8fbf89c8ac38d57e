//! Start and stop leave nothing behind, also when stopped while the watches
//! are being set: 1,000 cycles leak no descriptors and
//! no threads. Its own test binary, so no other test opens files meanwhile.

mod common;

use std::fs;
use std::time::Duration;

use crossbeam_channel::{unbounded, Sender};
use mailsync::engine::{Engine, Options, Sink, SourceError};
use mailsync::naming::Folder;

/// Says when the engine is ready; drops its reports.
struct Discard(Sender<bool>);

impl Sink for Discard {
    fn ready(&mut self, started: Result<Vec<Folder>, SourceError>) {
        let _ = self.0.send(started.is_ok());
    }
    fn changed(&mut self, _folders: Vec<Folder>) {}
    fn warning(&mut self, _message: String) {}
}

fn count_entries(dir: &str) -> usize {
    fs::read_dir(dir).unwrap().count()
}

/// The count once it has stopped changing: notify's threads end right after
/// they close their descriptors, which `stop` waits for, so a just-stopped
/// thread may still be on its way out.
fn settled_count(dir: &str) -> usize {
    let mut last = count_entries(dir);
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(20));
        let now = count_entries(dir);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

#[test]
fn a_thousand_start_stop_cycles_leak_no_descriptors_or_threads_even_stopped_while_starting() {
    let store = tempfile::tempdir().unwrap();
    common::make_maildir(store.path());
    for n in 0..5 {
        common::make_maildir(&store.path().join(format!(".f{n}")));
    }
    let options = Options {
        delay: Duration::ZERO,
        ..Options::default()
    };
    let (ready, ready_rx) = unbounded();
    // Waits for the watches to be set, or not (a stop while they are being set).
    let start = |wait: bool| {
        while ready_rx.try_recv().is_ok() {}
        let engine = Engine::start(store.path(), options.clone(), Box::new(Discard(ready.clone()))).unwrap();
        if wait {
            assert_eq!(ready_rx.recv_timeout(Duration::from_secs(10)), Ok(true));
        }
        engine
    };
    // One cycle first, so lazily created process-wide state is not counted.
    start(true).stop();
    let fds_before = settled_count("/proc/self/fd");
    let threads_before = settled_count("/proc/self/task");
    for cycle in 0..1000 {
        if cycle % 3 == 2 {
            start(false).stop();
            continue;
        }
        let engine = start(true);
        // The root, its new/ and cur/, and each folder's new/ and cur/ (a
        // Maildir++ folder's own directory needs no watch).
        assert_eq!(engine.stats().watches, 13, "cycle {cycle}");
        if cycle % 2 == 0 {
            common::deliver(&store.path().join(".f1"));
            engine.stop();
        } else {
            drop(engine);
        }
    }
    assert_eq!(settled_count("/proc/self/fd"), fds_before, "descriptors leaked");
    assert_eq!(settled_count("/proc/self/task"), threads_before, "threads leaked");
}
