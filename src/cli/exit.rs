//! How `mailsync` ends: exit statuses as a type, the one rule that merges
//! the statuses of several steps, and the binary's one error type.

use std::fmt;

/// An exit status, as mswatch and shells read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Success,
    /// A step failed with this status (a child's own, or 1).
    Failed(i32),
    /// The command line was wrong; nothing was run.
    Usage,
    /// A configuration file was wrong or cannot be read; nothing was run.
    Configuration,
    /// Another `mailsync run` runs this configuration.
    AlreadyRunning,
    /// A watcher stopped for good (a login refused): running it again
    /// cannot mend it.
    Refused,
    /// A program was found but could not be run.
    CannotRun,
    /// A program was not found.
    NotFound,
    /// A signal ended it (or the child it waited for).
    Signal(i32),
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Signal(signal) => write!(f, "killed by signal {signal}"),
            other => write!(f, "exit status {}", other.code()),
        }
    }
}

impl Status {
    pub fn code(self) -> i32 {
        match self {
            Status::Success => 0,
            Status::Failed(code) => code,
            Status::Usage | Status::Configuration => 2,
            Status::AlreadyRunning => 3,
            Status::Refused => 4,
            Status::CannotRun => 126,
            Status::NotFound => 127,
            Status::Signal(signal) => 128 + signal,
        }
    }

    /// A child's exit status as a shell shows it: its code, or 128+N for signal N.
    pub fn of_child(status: std::process::ExitStatus) -> Status {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(0), _) => Status::Success,
            (Some(code), _) => Status::Failed(code),
            (None, Some(signal)) => Status::Signal(signal),
            (None, None) => Status::Failed(1),
        }
    }

    pub fn is_success(self) -> bool {
        self == Status::Success
    }
}

/// The statuses of a run of several steps (syncs, then checks), merged by
/// one rule: a signal wins over everything; else the first failed sync;
/// else the first failed check; else success. A failed check never hides
/// a failed sync.
#[derive(Debug, Default)]
pub struct Outcome {
    sync: Option<Status>,
    check: Option<Status>,
    signal: Option<i32>,
}

impl Outcome {
    pub fn sync_failed(&mut self, status: Status) {
        self.sync.get_or_insert(status);
    }

    pub fn check_failed(&mut self, status: Status) {
        self.check.get_or_insert(status);
    }

    pub fn interrupted(&mut self, signal: i32) {
        self.signal.get_or_insert(signal);
    }

    pub fn status(&self) -> Status {
        match (self.signal, self.sync, self.check) {
            (Some(signal), _, _) => Status::Signal(signal),
            (None, Some(status), _) | (None, None, Some(status)) => status,
            (None, None, None) => Status::Success,
        }
    }
}

/// What ends a `mailsync` command early: the words for the user and the status.
#[derive(Debug)]
pub struct CliError {
    pub status: Status,
    pub message: String,
}

impl CliError {
    pub fn new(status: Status, message: impl fmt::Display) -> CliError {
        CliError {
            status,
            message: message.to_string(),
        }
    }

    pub fn usage(message: impl fmt::Display) -> CliError {
        CliError::new(Status::Usage, message)
    }

    pub fn configuration(message: impl fmt::Display) -> CliError {
        CliError::new(Status::Configuration, message)
    }

    /// Says it on stderr, prefixed by the subcommand; returns the status.
    pub fn report(self, subcommand: &str) -> Status {
        eprintln!("mailsync {subcommand}: {}", self.message);
        if self.status == Status::Usage {
            eprintln!("Try 'mailsync {subcommand} --help'.");
        }
        self.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_wins_then_the_first_sync_then_the_first_check() {
        let mut outcome = Outcome::default();
        assert_eq!(outcome.status(), Status::Success);
        outcome.check_failed(Status::Failed(7));
        assert_eq!(outcome.status().code(), 7);
        outcome.sync_failed(Status::Failed(3));
        outcome.sync_failed(Status::Failed(5));
        assert_eq!(outcome.status().code(), 3);
        outcome.interrupted(15);
        assert_eq!(outcome.status().code(), 143);
    }
}
