//! Where a login's password or OAuth2 access token comes from, and the
//! helper command that prints one (mbsync's `PassCmd`, a token helper),
//! run within bounds: a time limit, a cap on what it prints, and killed
//! (with whatever it started) when the account is stopped.

use std::fmt;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::limits;
use super::error::ImapError;
use crate::stop::{Waker, Woken};

/// A password or token, never shown.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: String) -> Secret {
        Secret(text)
    }

    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

/// Gives a password or token when asked, for a source that cannot be run
/// from any thread: Emacs, whose auth-source runs on its own thread.
pub trait AskSecret: Send + Sync + fmt::Debug {
    /// The secret for the next login of `account`; `refused` says the last
    /// one given was refused by the server (so a cached one will not do).
    fn ask(&self, account: &str, refused: bool) -> Result<Secret, ImapError>;
}

/// Where the password (or OAuth2 access token) comes from; asked again
/// for every login, so a changed password or a fresh token is used.
#[derive(Clone, Debug)]
pub enum Password {
    /// A shell command whose first line of output is the password
    /// (mbsync's `PassCmd`), or a token helper's command.
    Command(String),
    /// A file whose first line is the password.
    File(PathBuf),
    /// Written in the sync program's configuration.
    Given(Secret),
    /// Asked of whoever started the watch.
    Asked(Arc<dyn AskSecret>),
}

impl Password {
    /// The secret for a login; `refused` says the previous one was
    /// refused; `token` that it is an OAuth2 token (for messages).
    pub(super) fn fetch(
        &self,
        account: &str,
        refused: bool,
        token: bool,
        waker: &mut Waker,
    ) -> Result<Secret, ImapError> {
        let what = if token { "token" } else { "password" };
        let fail = |message: String| ImapError::Password {
            account: account.to_string(),
            message,
            token,
        };
        let text = match self {
            Password::Given(secret) => return Ok(secret.clone()),
            Password::Asked(asker) => return asker.ask(account, refused),
            Password::File(path) => std::fs::read_to_string(path)
                .map_err(|err| fail(format!("cannot read the {what} file {}: {err}", path.display())))?,
            Password::Command(command) => match first_line_of(command, waker) {
                Ok(line) => line,
                Err(HelperError::Stopped) => return Err(ImapError::Stopped),
                Err(err) => return Err(fail(err.describe(what))),
            },
        };
        let first = text.lines().next().unwrap_or("");
        if first.is_empty() {
            return Err(fail(format!("the {what} is empty")));
        }
        Ok(Secret(first.to_string()))
    }
}

/// Why a helper command gave no line.
#[derive(Debug)]
enum HelperError {
    Spawn(io::Error),
    Read(io::Error),
    /// It printed no line within [`limits::HELPER_TIME`].
    TimedOut,
    /// It printed more than [`limits::HELPER_OUTPUT`] bytes before a line break.
    TooLong,
    Failed(ExitStatus),
    NotUtf8,
    Stopped,
}

impl HelperError {
    fn describe(&self, what: &str) -> String {
        match self {
            HelperError::Spawn(err) => format!("cannot run the {what} command: {err}"),
            HelperError::Read(err) => format!("cannot read what the {what} command printed: {err}"),
            HelperError::TimedOut => format!(
                "the {what} command printed no line in {} s, so it was stopped; run it by hand to see what it waits for",
                limits::HELPER_TIME.as_secs()
            ),
            HelperError::TooLong => format!(
                "the {what} command printed more than {} KiB without a line break, so it was stopped",
                limits::HELPER_OUTPUT >> 10
            ),
            HelperError::Failed(status) => match (status.code(), status.signal()) {
                (Some(code), _) => format!("the {what} command failed (exit status {code})"),
                (None, Some(signal)) => format!("the {what} command was killed by signal {signal}"),
                _ => format!("the {what} command failed"),
            },
            HelperError::NotUtf8 => format!("the {what} command printed bytes that are not UTF-8"),
            HelperError::Stopped => "stopped".into(),
        }
    }
}

/// Runs `command` with `/bin/sh` in a process group of its own and gives
/// its first line. The rest of what it prints is read and dropped, up to
/// the cap; whatever is still running when it has to end (the time limit,
/// the cap, a stop) is killed, the shell and all it started.
fn first_line_of(command: &str, waker: &mut Waker) -> Result<String, HelperError> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .map_err(HelperError::Spawn)?;
    let deadline = Instant::now() + limits::HELPER_TIME;
    // The group is killed only while the shell is not reaped: after, its
    // number may be another process's.
    let (line, ended) = match read_first_line(&mut child, waker, deadline) {
        Ok(read) => read,
        Err(err) => {
            kill_group(&mut child);
            return Err(err);
        }
    };
    if !ended {
        // It went on printing after its line, past the cap: the line stands.
        kill_group(&mut child);
        return Ok(line);
    }
    match wait_for_exit(&mut child, waker, deadline) {
        Ok(status) if status.success() => Ok(line),
        Ok(status) => Err(HelperError::Failed(status)),
        Err(err) => {
            kill_group(&mut child);
            Err(err)
        }
    }
}

/// Reads the child's output up to its end or the cap, and gives its first
/// line and whether the output ended.
fn read_first_line(
    child: &mut Child,
    waker: &mut Waker,
    deadline: Instant,
) -> Result<(String, bool), HelperError> {
    let Some(mut stdout) = child.stdout.take() else {
        return Err(HelperError::Read(io::ErrorKind::BrokenPipe.into()));
    };
    let fd = stdout.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; flags are read then set.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let mut output = Vec::new();
    let mut chunk = [0u8; 4096];
    let ended = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match waker.wait(Some(fd), left).map_err(HelperError::Read)? {
            Woken::Stopped => return Err(HelperError::Stopped),
            Woken::TimedOut => return Err(HelperError::TimedOut),
            Woken::ClockJumped { .. } | Woken::Readable => {}
        }
        match stdout.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => {
                let room = limits::HELPER_OUTPUT - output.len();
                output.extend_from_slice(&chunk[..n.min(room)]);
                if n >= room {
                    break false;
                }
            }
            Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(err) => return Err(HelperError::Read(err)),
        }
    };
    let line = match output.iter().position(|&byte| byte == b'\n') {
        Some(end) => &output[..end],
        None if !ended => return Err(HelperError::TooLong),
        None => &output[..],
    };
    let line = String::from_utf8(line.to_vec()).map_err(|_| HelperError::NotUtf8)?;
    Ok((line, ended))
}

/// Waits for the child to exit once its output ended.
fn wait_for_exit(child: &mut Child, waker: &mut Waker, deadline: Instant) -> Result<ExitStatus, HelperError> {
    loop {
        if let Some(status) = child.try_wait().map_err(HelperError::Read)? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            return Err(HelperError::TimedOut);
        }
        if waker.sleep(Duration::from_millis(10)) {
            return Err(HelperError::Stopped);
        }
    }
}

/// Kills the helper's process group and reaps the shell.
fn kill_group(child: &mut Child) {
    // SAFETY: kill has no pointer arguments; the group is the child's own
    // (process_group(0)), so nothing else is hit.
    unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stop::Stop;

    fn run(command: &str) -> Result<String, String> {
        let mut waker = Waker::new(Stop::new().unwrap()).unwrap();
        first_line_of(command, &mut waker).map_err(|err| err.describe("password"))
    }

    #[test]
    fn the_first_line_is_the_password() {
        assert_eq!(run("printf 'hunter2\\nsecond line\\n'"), Ok("hunter2".into()));
        assert_eq!(run("printf 'no line break'"), Ok("no line break".into()));
    }

    #[test]
    fn a_failing_command_says_its_status() {
        assert_eq!(
            run("echo hunter2; exit 3"),
            Err("the password command failed (exit status 3)".into())
        );
    }

    #[test]
    fn endless_output_without_a_line_break_is_refused_at_the_cap() {
        let err = run("cat /dev/zero").unwrap_err();
        assert!(err.contains("more than 64 KiB without a line break"), "{err}");
    }

    #[test]
    fn a_line_then_endless_output_keeps_the_line() {
        assert_eq!(run("echo hunter2; cat /dev/zero"), Ok("hunter2".into()));
    }

    // A stop kills the command and what it started: tests/idle_hostile.rs,
    // through `mailsync idle` and SIGTERM.

    #[test]
    fn secrets_are_never_shown() {
        let password = Password::Given(Secret::new("hunter2".into()));
        assert!(!format!("{password:?}").contains("hunter2"));
    }
}
