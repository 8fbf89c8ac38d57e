//! Asking Emacs to check Gnus groups through `emacsclient`, locally or on
//! another host through ssh, as rpatterson.mailsync's checkers did, but with
//! every name a correctly quoted Lisp string.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;

use mailsync::groups::{server_template, utf7_by_default, GroupMap};
use mailsync::naming::NameStyle;
use mailsync::quote::{is_lisp_symbol, lisp_call, shell_line};

use super::exit::Status;

/// Options shared by `sync` and `watch` for the Gnus checks.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Ask the local Emacs (emacsclient) to check the groups of the folders
    #[arg(long)]
    pub check_local: bool,
    /// Ask the Emacs on HOST to check them too, through ssh (repeatable)
    #[arg(long, value_name = "HOST")]
    pub check_ssh: Vec<String>,
    /// An option for the ssh of --check-ssh, as ssh -o takes it, e.g. Port=2222 (repeatable)
    #[arg(long, value_name = "OPTION")]
    pub ssh_option: Vec<String>,
    /// Gnus server prefix of the groups, e.g. nnimap+local [default: none]
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub server: String,
    /// Group name pattern, %s standing for the folder, e.g. 'nnml:%s' (overrides --server)
    #[arg(long, value_name = "TEMPLATE")]
    pub template: Option<String>,
    /// Group name of the root folder (INBOX), for checks
    #[arg(long, value_name = "NAME", default_value = "INBOX")]
    pub group_inbox: String,
    /// Separator between levels in group names, for checks
    #[arg(long, value_name = "SEP", default_value = ".")]
    pub group_separator: String,
    /// Folder names on disk are IMAP modified UTF-7 (Dovecot, mbsync), decoded for group names [default: yes for an nnimap --server]
    #[arg(long, value_name = "YES|NO")]
    pub utf7: Option<Switch>,
    /// The emacsclient to run
    #[arg(long, value_name = "PATH", default_value = "emacsclient")]
    pub emacsclient: PathBuf,
    /// The Emacs server socket (passed as --socket-name) [default: emacsclient's own]
    #[arg(long, value_name = "NAME")]
    pub socket_name: Option<String>,
    /// The Lisp function that checks a list of groups
    #[arg(long, value_name = "FUNCTION", default_value = "mailsync/gnus-check")]
    pub check_function: String,
    /// A check still running after this many seconds is killed and counts as failed
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub check_timeout: f64,
}

/// A yes or no on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    Yes,
    No,
}

impl CheckArgs {
    /// Whether any Gnus check is asked for.
    pub fn asks_for_checks(&self) -> bool {
        self.check_local || !self.check_ssh.is_empty()
    }

    /// The one mapping of local folder names (spelled `local`) to groups.
    pub fn group_map(&self, local: NameStyle) -> GroupMap {
        let utf7 = match self.utf7 {
            Some(switch) => switch == Switch::Yes,
            None => utf7_by_default(&self.server),
        };
        GroupMap {
            local,
            group: NameStyle::new(self.group_inbox.as_str(), self.group_separator.as_str()),
            template: self
                .template
                .clone()
                .unwrap_or_else(|| server_template(&self.server)),
            utf7,
        }
    }
}

/// Where a check is sent.
#[derive(Debug, Clone)]
enum Target {
    Local,
    Ssh(String),
}

/// A failed check: its exit status and what went wrong.
#[derive(Debug)]
pub struct CheckFailure {
    pub status: Status,
    pub message: String,
}

/// Runs the checks of one configuration.
#[derive(Debug, Clone)]
pub struct Checker {
    targets: Vec<Target>,
    args: CheckArgs,
    map: GroupMap,
    /// Where emacsclient's own output goes: `watch` must keep stdout for mswatch.
    quiet: bool,
    /// The process id of the check running now (0: none), for [`Checker::abort`].
    running: Arc<AtomicI32>,
}

impl Checker {
    /// None when no check was asked for; an error for a function name that
    /// is not a plain Lisp symbol.
    pub fn from_args(args: &CheckArgs, map: GroupMap, quiet: bool) -> Result<Option<Checker>, String> {
        let mut targets = Vec::new();
        if args.check_local {
            targets.push(Target::Local);
        }
        targets.extend(args.check_ssh.iter().cloned().map(Target::Ssh));
        if targets.is_empty() {
            return Ok(None);
        }
        if !is_lisp_symbol(&args.check_function) {
            return Err(format!(
                "--check-function `{}` is not a Lisp symbol",
                args.check_function
            ));
        }
        if !(args.check_timeout.is_finite() && args.check_timeout > 0.0) {
            return Err(format!(
                "--check-timeout {} is not a positive number of seconds",
                args.check_timeout
            ));
        }
        Ok(Some(Checker {
            targets,
            args: args.clone(),
            map,
            quiet,
            running: Arc::new(AtomicI32::new(0)),
        }))
    }

    /// The same checks for folders whose local names are spelled `local`.
    pub fn with_local(&self, local: NameStyle) -> Checker {
        let mut checker = self.clone();
        checker.map.local = local;
        checker
    }

    /// The Gnus groups of local `folders`.
    pub fn groups(&self, folders: &[Vec<u8>]) -> Vec<Vec<u8>> {
        folders.iter().map(|folder| self.map.group(folder)).collect()
    }

    fn emacsclient(&self, folders: Option<&[Vec<u8>]>) -> Vec<OsString> {
        let groups = folders.map(|folders| self.groups(folders));
        let mut command: Vec<OsString> = vec![self.args.emacsclient.clone().into()];
        if let Some(socket) = &self.args.socket_name {
            command.push("--socket-name".into());
            command.push(socket.into());
        }
        command.push("--eval".into());
        command.push(lisp_call(&self.args.check_function, groups.as_deref()).into());
        command
    }

    /// The command lines that check `folders` (all groups when `None`).
    pub fn commands(&self, folders: Option<&[Vec<u8>]>) -> Vec<Vec<OsString>> {
        let local = self.emacsclient(folders);
        self.targets
            .iter()
            .map(|target| match target {
                Target::Local => local.clone(),
                Target::Ssh(host) => {
                    let remote: Vec<Vec<u8>> = local
                        .iter()
                        .map(|word| word.as_encoded_bytes().to_vec())
                        .collect();
                    let mut ssh: Vec<OsString> = vec!["ssh".into(), "-o".into(), "BatchMode=yes".into()];
                    for option in &self.args.ssh_option {
                        ssh.push("-o".into());
                        ssh.push(option.into());
                    }
                    // `--` so that a host cannot be read as an option.
                    ssh.push("--".into());
                    ssh.push(host.into());
                    ssh.push(OsString::from_vec(shell_line(&remote)));
                    ssh
                }
            })
            .collect()
    }

    /// Runs every check of `folders`; all run, the first failure is returned.
    pub fn check(&self, folders: Option<&[Vec<u8>]>) -> Result<(), CheckFailure> {
        let mut first_failure = None;
        for command in self.commands(folders) {
            let mut child = Command::new(&command[0]);
            child.args(&command[1..]).stdin(Stdio::null());
            if self.quiet {
                child.stdout(Stdio::null());
            }
            let program = command[0].to_string_lossy();
            let failure = match child.spawn().and_then(|child| self.wait(child)) {
                Ok(Some(status)) if status.success() => None,
                Ok(Some(status)) => Some(CheckFailure {
                    status: Status::of_child(status),
                    message: format!("{program} failed ({status})"),
                }),
                Ok(None) => Some(CheckFailure {
                    // 124, as timeout(1) reports one.
                    status: Status::Failed(124),
                    message: format!(
                        "{program} did not finish within {} s (--check-timeout); killed",
                        self.args.check_timeout
                    ),
                }),
                Err(err) => Some(CheckFailure {
                    status: Status::NotFound,
                    message: format!(
                        "cannot run {}: {err} (give its path with --emacsclient)",
                        command[0].to_string_lossy()
                    ),
                }),
            };
            if first_failure.is_none() {
                first_failure = failure;
            }
        }
        first_failure.map_or(Ok(()), Err)
    }

    /// Waits for `child` up to the check timeout; kills it after that (None).
    fn wait(&self, mut child: Child) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.running.store(child.id() as i32, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs_f64(self.args.check_timeout);
        let result = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(Some(status)),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Ok(None);
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(err) => break Err(err),
            }
        };
        self.running.store(0, Ordering::SeqCst);
        result
    }

    /// Kills the check running now, if any (the watcher is ending).
    pub fn abort(&self) {
        let pid = self.running.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill only sends a signal.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}
