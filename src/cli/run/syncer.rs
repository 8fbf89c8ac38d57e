//! Running the sync program (one run at a time, its end and the Gnus
//! check after a successful one told to the run's loop), and the `--then`
//! command after syncs.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::Sender;

use mailsync::mswatch::schedule::Target;

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
    let child = Command::new(program)
        .args(args)
        .args(arguments)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|err| format!("cannot run {program}: {err}"))?;
    let events = events.clone();
    watch_child(child, "sync", move |status| {
        let _ = events.send(Event::SyncEnded(status));
        if let (Some((checker, mailboxes)), true) = (&check, status.is_success()) {
            if let Err(failure) = checker.check(mailboxes.as_deref()) {
                let _ = events.send(Event::CheckFailed(failure.message));
            }
        }
    })
}

/// Waits for `child` on a thread named `name`, then calls `ended`.
fn watch_child(
    mut child: Child,
    name: &str,
    ended: impl FnOnce(Status) + Send + 'static,
) -> Result<Running, String> {
    let running = Running {
        pid: child.id(),
        started: Instant::now(),
    };
    thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let status = match child.wait() {
                Ok(status) => Status::of_child(status),
                Err(_) => Status::Failed(1),
            };
            ended(status);
        })
        .map_err(|err| format!("cannot start: {err}"))?;
    Ok(running)
}

/// After syncs, once nothing else waits: the `--then` command, run with
/// every folder synced since it last started, and the `synced` line of
/// `--print-synced` (after the command, which may index what was synced).
/// Syncs ending while the command runs make one more run after it,
/// however many they are.
pub struct Then {
    command: Option<String>,
    print: bool,
    folders: BTreeSet<Vec<u8>>,
    /// Everything was synced: no folders are named.
    everything: bool,
    wanted: bool,
    running: Option<(Running, String)>,
}

impl Then {
    pub fn new(command: Option<String>, print: bool) -> Then {
        Then {
            command,
            print,
            folders: BTreeSet::new(),
            everything: false,
            wanted: false,
            running: None,
        }
    }

    /// A sync of `target` succeeded.
    pub fn synced(&mut self, target: &Target) {
        self.wanted = true;
        match target {
            Target::All => self.everything = true,
            Target::Mailboxes(list) => self.folders.extend(list.iter().cloned()),
        }
    }

    /// Runs it if a sync succeeded since it last started and it does not
    /// run; the caller knows that no sync runs or waits. `account` is
    /// given as `$MAILSYNC_ACCOUNT`.
    pub fn start_if_wanted(&mut self, account: &str, events: &Sender<Event>) -> Result<(), String> {
        if !self.wanted || self.running.is_some() {
            return Ok(());
        }
        let folders: Vec<Vec<u8>> = match self.everything {
            true => Vec::new(),
            false => self.folders.iter().cloned().collect(),
        };
        self.wanted = false;
        self.everything = false;
        self.folders.clear();
        let line = synced_line(account, &folders);
        let Some(command) = &self.command else {
            self.print_line(&line);
            return Ok(());
        };
        let lines = folders.join(&b'\n');
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .arg("mailsync-then")
            .args(folders.into_iter().map(OsString::from_vec))
            .env("MAILSYNC_FOLDERS", OsString::from_vec(lines))
            .env("MAILSYNC_ACCOUNT", account)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot run /bin/sh: {err}"))?;
        let events = events.clone();
        let running = watch_child(child, "then", move |status| {
            let _ = events.send(Event::ThenEnded(status));
        })?;
        self.running = Some((running, line));
        Ok(())
    }

    /// The command ended: its `synced` line is printed (whatever its
    /// status: the sync itself succeeded).
    pub fn ended(&mut self) {
        if let Some((_, line)) = self.running.take() {
            self.print_line(&line);
        }
    }

    fn print_line(&self, line: &str) {
        if self.print {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    /// Asks a running command to end (SIGTERM), when the run stops.
    pub fn terminate(&self) {
        if let Some((running, _)) = &self.running {
            running.terminate();
        }
    }
}

/// `synced ACCOUNT FOLDER…`, each name in lower-case hexadecimal (a name
/// may hold any byte but `/` and NUL, spaces and line breaks too).
fn synced_line(account: &str, folders: &[Vec<u8>]) -> String {
    let hex = |bytes: &[u8]| bytes.iter().map(|byte| format!("{byte:02x}")).collect::<String>();
    let mut line = format!("synced {}", hex(account.as_bytes()));
    for folder in folders {
        line.push(' ');
        line.push_str(&hex(folder));
    }
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn synced_lines_name_everything_in_hexadecimal() {
        assert_eq!(super::synced_line("work", &[]), "synced 776f726b");
        assert_eq!(
            super::synced_line("", &[b"a b\n".to_vec(), b"\xff".to_vec()]),
            "synced  6120620a ff"
        );
    }
}
