//! Helpers shared by the integration tests: maildirs on disk and a running
//! `mailsync watch` whose output lines can be awaited.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Creates `cur/`, `new/` and `tmp/` under `dir`.
pub fn make_maildir(dir: &Path) {
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
}

/// Delivers a message the way an MDA does: written in `tmp/`, renamed into `new/`.
pub fn deliver(folder: &Path) -> PathBuf {
    let unique = format!(
        "{}.{}.test",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = folder.join("tmp").join(&unique);
    fs::write(
        &tmp,
        format!("From: test@example.org\nSubject: {unique}\n\nbody\n"),
    )
    .unwrap();
    let new = folder.join("new").join(&unique);
    fs::rename(&tmp, &new).unwrap();
    new
}

/// The `mailsync` binary under test.
pub fn mailsync() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mailsync"))
}

/// A running `mailsync watch` with its output lines in a channel.
pub struct Watch {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    lines: Receiver<Vec<u8>>,
    pub stderr: Receiver<String>,
}

impl Watch {
    /// Starts `mailsync watch ARGS…` and waits for its ready line.
    pub fn start(args: &[&str]) -> Watch {
        Watch::start_command("watch", args)
    }

    /// Starts `mailsync SUBCOMMAND ARGS…` and waits for its ready line.
    pub fn start_command(subcommand: &str, args: &[&str]) -> Watch {
        let watch = Watch::spawn(subcommand, args);
        let ready = watch.line(Duration::from_secs(20));
        assert!(
            ready.as_deref() == Some(&b""[..]),
            "first line must be empty, got {:?}; stderr: {}",
            ready.map(|line| String::from_utf8_lossy(&line).into_owned()),
            watch.stderr_text()
        );
        watch
    }

    /// Starts `mailsync SUBCOMMAND ARGS…` without waiting.
    pub fn spawn(subcommand: &str, args: &[&str]) -> Watch {
        let mut child = mailsync()
            .arg(subcommand)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mailsync watch");
        let stdin = child.stdin.take();
        let (lines_tx, lines) = unbounded();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        line.pop();
                        if lines_tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let (stderr_tx, stderr) = unbounded();
        let child_stderr = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(child_stderr).lines().map_while(Result::ok) {
                let _ = stderr_tx.send(line);
            }
        });
        Watch {
            child,
            stdin,
            lines,
            stderr,
        }
    }

    /// The next line, or None after `timeout`.
    pub fn line(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The next line as text, failing the test after 10 s.
    pub fn next(&self) -> String {
        String::from_utf8(self.line(Duration::from_secs(10)).expect("a line within 10 s")).unwrap()
    }

    /// Every line until none came for `quiet`.
    pub fn lines_until_quiet(&self, quiet: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            match self.lines.recv_timeout(quiet) {
                Ok(line) => lines.push(String::from_utf8_lossy(&line).into_owned()),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => return lines,
            }
        }
    }

    /// The lines until none came for 2 s after the first (awaited up to
    /// `first`: a reconnect may be backing off), as a set.
    pub fn lines_set(&self, first: Duration) -> std::collections::BTreeSet<String> {
        let Some(line) = self.line(first) else {
            return Default::default();
        };
        let mut lines: std::collections::BTreeSet<String> = self
            .lines_until_quiet(Duration::from_secs(2))
            .into_iter()
            .collect();
        lines.insert(String::from_utf8(line).unwrap());
        lines
    }

    /// Asserts that no line comes before the next delivery into `sentinel`,
    /// whose name must be the next line.
    pub fn expect_nothing_before(&self, sentinel: &Path, sentinel_name: &str) {
        thread::sleep(Duration::from_millis(300));
        deliver(sentinel);
        assert_eq!(self.next(), sentinel_name, "a line came before the sentinel's");
    }

    /// Closes standard input and returns the exit code.
    pub fn close_stdin_and_wait(mut self) -> i32 {
        drop(self.stdin.take());
        self.wait(Duration::from_secs(10))
    }

    pub fn wait(&mut self, limit: Duration) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(start.elapsed() < limit, "mailsync watch did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything written to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// Stderr lines until one contains `needle`, failing after `limit`. (The
    /// ready line and what was said before it on stderr are read by two
    /// threads: the stderr line may come second.)
    pub fn stderr_until(&self, needle: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Ok(line) = self.stderr.recv_timeout(left.min(Duration::from_millis(50))) {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
        }
        panic!("no stderr line with {needle:?} within {limit:?}: {seen:?}");
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub mod fake_imap;
pub mod hostile_emacs;
pub mod servers;

/// The repository's top directory.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where `program` is: in `$PATH`, else in /usr/sbin or /sbin (useradd,
/// sshd), as root's shell finds it.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// Waits for `done`, failing the test with `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` runs (a zombie, killed and not yet reaped, does not).
pub fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Says that the calling test cannot run here, and why. The test then returns
/// and libtest counts it as passed, so the skip is also written to the file
/// named by `MAILSYNC_TEST_SKIPS` (tests/run-all.sh sets it), which counts it
/// as skipped, not passed, in `make test`'s closing line and names it there.
pub fn skip(reason: &str) {
    let test = thread::current().name().unwrap_or("a test").to_string();
    eprintln!("skipped: {reason}");
    if let Some(path) = std::env::var_os("MAILSYNC_TEST_SKIPS") {
        use std::io::Write;
        let line = format!("{test}: {reason}\n");
        // One write of one short line: appends from tests running at once do not mix.
        let appended = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(line.as_bytes()));
        appended.expect("record a skipped test in MAILSYNC_TEST_SKIPS");
    }
}

/// Whether this runs as root; when not, the calling test is recorded as
/// skipped (see [`skip`]), `what` saying what needs root.
pub fn is_root_or_skip(what: &str) -> bool {
    // SAFETY: geteuid only reads.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        skip(&format!("{what} needs root (CI runs as root)"));
    }
    root
}

/// The real mswatch 1.2.0 (Debian 11's build), fetched and unpacked by
/// scripts/fetch-mswatch.sh; None when it cannot be had.
pub fn try_mswatch() -> Option<PathBuf> {
    let output = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-mswatch.sh"))
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

/// The real mswatch, or the test fails saying why.
pub fn mswatch() -> PathBuf {
    try_mswatch().expect("mswatch could not be fetched: run scripts/fetch-mswatch.sh to see why")
}

/// The long options a `--help` text documents, as whole tokens (so that
/// `--separator` is not found inside `--local-separator`).
pub fn help_options(help: &str) -> std::collections::HashSet<String> {
    help.split(|c: char| c.is_whitespace() || ",[]=<>".contains(c))
        .filter(|token| token.starts_with("--") && token.len() > 2)
        .map(str::to_string)
        .collect()
}

/// Sets the system clock to what it reads: a jump of a few microseconds
/// back, which the kernel signals as it does a resume from suspend. Needs root.
pub fn set_clock_to_now() {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: now is a valid timespec.
    unsafe {
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut now);
        assert_eq!(libc::clock_settime(libc::CLOCK_REALTIME, &now), 0);
    }
}

/// Sends `signal` (as `kill` spells it: `-TERM`, `-STOP`, …) to process `pid`.
/// Stops the process `pid` (SIGSTOP) and waits until every one of its
/// threads is stopped: `kill` returns once the signal is sent, and a thread
/// that is running then may still read an event or two before it stops.
pub fn stop(pid: u32) {
    kill(pid, "-STOP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("read the process's threads");
        let all_stopped = tasks.flatten().all(|task| {
            fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                // The state follows the command's closing parenthesis.
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
            })
        });
        if all_stopped {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} did not stop");
        thread::sleep(Duration::from_millis(1));
    }
}

pub fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}
