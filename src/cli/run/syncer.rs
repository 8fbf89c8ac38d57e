//! Running the sync program: one run at a time, its end (and the Gnus
//! check after a successful one) told to the run's loop.

use std::ffi::OsString;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::Sender;

use super::Event;
use crate::cli::check::Checker;
use crate::cli::exit::Status;

/// A sync program running.
pub struct Running {
    pid: u32,
    pub started: Instant,
}

impl Running {
    /// Asks it to end (SIGTERM), as mswatch does when it is stopped.
    pub fn terminate(&self) {
        // SAFETY: kill has no pointer arguments.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
    }
}

/// The Gnus check after a successful sync: the checker, and the mailboxes
/// synced (None: all).
pub type Check = (Arc<Checker>, Option<Vec<Vec<u8>>>);

/// Starts `command` with `arguments` appended. Its end is told at once
/// (what it wrote is then final); when it succeeded, `check` runs after,
/// and only its failure is told.
pub fn start(
    command: &[String],
    arguments: Vec<OsString>,
    check: Option<Check>,
    events: &Sender<Event>,
) -> Result<Running, String> {
    let (program, args) = command.split_first().ok_or("the sync command is empty")?;
    let mut child = Command::new(program)
        .args(args)
        .args(arguments)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|err| format!("cannot run {program}: {err}"))?;
    let running = Running {
        pid: child.id(),
        started: Instant::now(),
    };
    let events = events.clone();
    thread::Builder::new()
        .name("sync".into())
        .spawn(move || {
            let status = match child.wait() {
                Ok(status) => Status::of_child(status),
                Err(_) => Status::Failed(1),
            };
            let _ = events.send(Event::SyncEnded(status));
            if let (Some((checker, mailboxes)), true) = (&check, status.is_success()) {
                if let Err(failure) = checker.check(mailboxes.as_deref()) {
                    let _ = events.send(Event::CheckFailed(failure.message));
                }
            }
        })
        .map_err(|err| format!("cannot start: {err}"))?;
    Ok(running)
}
