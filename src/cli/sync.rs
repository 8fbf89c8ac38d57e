//! `mailsync sync`: mswatch's sync program around OfflineIMAP or mbsync.
//!
//! mswatch appends `PREFIX` (sync everything) or `PREFIX:MAILBOX` arguments,
//! the mailbox as the local watcher printed it. One backend run per account,
//! with that account's folders, accounts one after another, each under a
//! lock that waits. Exit status: 0 when every run succeeded, else the first
//! failing run's; 2 for usage errors (nothing is run); 127 when the backend
//! is not installed; 128+N when a child died of signal N.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clap::{Args, ValueEnum};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use mailsync::backend::{
    default_offlineimap_config, fits_one_exec, mbsync_command, offlineimap_command, offlineimap_local_sep,
    read_name_map, RemoteNames,
};
use mailsync::lock::{lock_account, LockError};
use mailsync::mswatch::sync_args::{parse_specs, AccountSync};
use mailsync::naming::NameStyle;
use mailsync::quote::shell_line;

use super::check::{CheckArgs, Checker};
use super::exit::{CliError, Outcome, Status};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Offlineimap,
    Mbsync,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Offlineimap => "offlineimap",
            Backend::Mbsync => "mbsync",
        }
    }
}

#[derive(Args, Debug)]
#[command(
    about = "Sync mail folders with OfflineIMAP or mbsync (mswatch's sync program)",
    after_help = "SPEC is ACCOUNT (sync the whole account, or mbsync channel) or ACCOUNT:FOLDER, \
        FOLDER as the local watcher prints it. Any mix of accounts and folders is fine.\n\n\
        Examples:\n  \
        mailsync sync work                          # offlineimap -o -u quiet -a work\n  \
        mailsync sync work:INBOX work:lists.emacs   # ... -a work -f INBOX,lists.emacs\n  \
        mailsync sync --remote-separator / work:lists.emacs    # ... -f lists/emacs\n  \
        mailsync sync --backend mbsync gmail:INBOX  # mbsync gmail:INBOX\n  \
        mailsync sync --check-local --server nnimap+local work:INBOX\n      \
        # then: emacsclient --eval '(mailsync/gnus-check (quote (\"nnimap+local:INBOX\")))'\n  \
        mailsync sync --dry-run work:INBOX          # print the commands, run nothing\n\n\
        In ~/.mswatchrc:\n  \
        sync mailsync sync\n  \
        mailbox_prefix work :"
)]
pub struct SyncArgs {
    /// The sync program to drive
    #[arg(long, value_enum, default_value_t = Backend::Offlineimap)]
    backend: Backend,
    /// The offlineimap to run
    #[arg(long, value_name = "PATH", default_value = "offlineimap")]
    offlineimap: PathBuf,
    /// The mbsync to run
    #[arg(long, value_name = "PATH", default_value = "mbsync")]
    mbsync: PathBuf,
    /// The backend's configuration file (passed as -c) [default: the backend's own]
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Separator in local folder names [default: the offlineimaprc's `sep`, else "."]
    #[arg(long, value_name = "SEP")]
    local_separator: Option<String>,
    /// The IMAP server's separator, for OfflineIMAP's -f
    #[arg(long, value_name = "SEP", default_value = ".")]
    remote_separator: String,
    /// Remote names for local names that nametrans changed: LOCAL<TAB>REMOTE lines
    #[arg(long, value_name = "FILE")]
    name_map: Option<PathBuf>,
    /// How long to wait for another sync of the same account, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    lock_timeout: u64,
    /// Print the commands, one per line, and run nothing
    #[arg(long)]
    dry_run: bool,
    /// The old spelling of --group-inbox
    #[arg(long, value_name = "NAME", hide = true)]
    inbox: Option<String>,
    /// The old spelling of --group-separator
    #[arg(long, value_name = "SEP", hide = true)]
    separator: Option<String>,
    #[command(flatten)]
    check: CheckArgs,
    /// ACCOUNT or ACCOUNT:FOLDER, as mswatch appends them
    #[arg(value_name = "SPEC", required = true)]
    specs: Vec<OsString>,
}

/// One account's run, ready to go.
struct Plan {
    account: Vec<u8>,
    folders: Option<Vec<Vec<u8>>>,
    command: Vec<OsString>,
    /// The checks after it, with this account's own folder names.
    checker: Option<Checker>,
}

/// The local separator of `account`: the flag, else the offlineimaprc's
/// `sep`, else ".". Resolved once, used by the backend and the check alike.
fn local_separator(args: &SyncArgs, config_text: Option<&str>, account: &[u8]) -> String {
    if let Some(separator) = &args.local_separator {
        return separator.clone();
    }
    let account = String::from_utf8_lossy(account);
    config_text
        .and_then(|text| offlineimap_local_sep(text, &account))
        .unwrap_or_else(|| ".".to_string())
}

fn plan(args: &SyncArgs, accounts: Vec<AccountSync>, checker: Option<&Checker>) -> Result<Vec<Plan>, String> {
    let config_path = args.config.clone().or_else(|| match args.backend {
        Backend::Offlineimap => default_offlineimap_config(),
        Backend::Mbsync => None,
    });
    let config_text = config_path
        .as_ref()
        .and_then(|path| fs::read_to_string(path).ok());
    let map = match &args.name_map {
        Some(path) => read_name_map(path).map_err(|err| err.to_string())?,
        None => Default::default(),
    };
    accounts
        .into_iter()
        .map(|account| {
            let local = NameStyle::new(
                "INBOX",
                local_separator(args, config_text.as_deref(), &account.account),
            );
            let build = |folders: Option<&[Vec<u8>]>| match args.backend {
                Backend::Offlineimap => {
                    let names = RemoteNames {
                        local: local.clone(),
                        remote: NameStyle::new("INBOX", args.remote_separator.as_str()),
                        map: map.clone(),
                    };
                    offlineimap_command(&args.offlineimap, args.config.as_deref(), &account.account, folders, &names)
                        .map_err(|err| err.to_string())
                }
                Backend::Mbsync => Ok(mbsync_command(
                    &args.mbsync,
                    args.config.as_deref(),
                    &account.account,
                    folders,
                    &local,
                )),
            };
            let mut folders = account.folders;
            let mut command = build(folders.as_deref())?;
            if !fits_one_exec(&command) {
                eprintln!(
                    "mailsync sync: {}: {} folders are more than one command line holds; syncing the whole account",
                    String::from_utf8_lossy(&account.account),
                    folders.as_ref().map_or(0, Vec::len)
                );
                folders = None;
                command = build(None)?;
            }
            Ok(Plan {
                account: account.account,
                folders,
                command,
                checker: checker.map(|checker| checker.with_local(local)),
            })
        })
        .collect()
}

fn line(command: &[OsString]) -> Vec<u8> {
    let words: Vec<&[u8]> = command.iter().map(|word| word.as_encoded_bytes()).collect();
    shell_line(&words)
}

/// `--dry-run`: each command shell-quoted, byte for byte, one per line.
fn show(plans: &[Plan]) -> Status {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for plan in plans {
        let _ = out.write_all(&line(&plan.command));
        let _ = out.write_all(b"\n");
        for command in plan
            .checker
            .iter()
            .flat_map(|checker| checker.commands(plan.folders.as_deref()))
        {
            let _ = out.write_all(&line(&command));
            let _ = out.write_all(b"\n");
        }
    }
    let _ = out.flush();
    Status::Success
}

/// The child being waited for, so signals can be passed on to it.
struct Forwarder {
    child: Arc<AtomicI32>,
    signal: Arc<AtomicI32>,
}

impl Forwarder {
    fn install() -> io::Result<Forwarder> {
        let child = Arc::new(AtomicI32::new(0));
        let signal = Arc::new(AtomicI32::new(0));
        let mut signals = Signals::new([SIGTERM, SIGINT])?;
        let (child_pid, received) = (Arc::clone(&child), Arc::clone(&signal));
        thread::Builder::new().name("signals".into()).spawn(move || {
            for number in signals.forever() {
                received.store(number, Ordering::SeqCst);
                let pid = child_pid.load(Ordering::SeqCst);
                if pid > 0 {
                    // SAFETY: kill only sends a signal.
                    unsafe { libc::kill(pid, number) };
                }
            }
        })?;
        Ok(Forwarder { child, signal })
    }

    fn wait(&self, mut child: Child) -> io::Result<std::process::ExitStatus> {
        self.child.store(child.id() as i32, Ordering::SeqCst);
        let status = child.wait();
        self.child.store(0, Ordering::SeqCst);
        status
    }

    fn interrupted(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            number => Some(number),
        }
    }
}

/// Why a backend could not be started, in words that say what to do.
fn spawn_error(args: &SyncArgs, program: &OsString, err: &io::Error) -> CliError {
    let shown = program.to_string_lossy();
    let option = match args.backend {
        Backend::Offlineimap => "--offlineimap",
        Backend::Mbsync => "--mbsync",
    };
    match err.kind() {
        io::ErrorKind::NotFound if shown.contains('/') => CliError::new(
            Status::NotFound,
            format!("{shown} does not exist; give the right path with {option} PATH"),
        ),
        io::ErrorKind::NotFound => CliError::new(
            Status::NotFound,
            format!("{shown} is not installed (not found on PATH); install it or give its path with {option} PATH"),
        ),
        _ => CliError::new(Status::CannotRun, format!("cannot run {shown}: {err}")),
    }
}

fn execute(args: &SyncArgs, plans: Vec<Plan>) -> Status {
    let forwarder = match Forwarder::install() {
        Ok(forwarder) => forwarder,
        Err(err) => {
            return CliError::new(Status::Failed(1), format!("cannot handle signals: {err}")).report("sync")
        }
    };
    let mut outcome = Outcome::default();
    for plan in plans {
        if let Some(signal) = forwarder.interrupted() {
            return Status::Signal(signal);
        }
        if let Err(status) = sync_account(args, &plan, &forwarder, &mut outcome) {
            return status;
        }
    }
    if let Some(signal) = forwarder.interrupted() {
        outcome.interrupted(signal);
    }
    outcome.status()
}

/// Syncs one account under its lock, then checks its groups; what failed
/// goes into `outcome`. An error is what ends the whole run (a signal, a
/// backend missing for every account).
fn sync_account(
    args: &SyncArgs,
    plan: &Plan,
    forwarder: &Forwarder,
    outcome: &mut Outcome,
) -> Result<(), Status> {
    let timeout = Duration::from_secs(args.lock_timeout);
    let interrupted = || forwarder.interrupted();
    let lock = match lock_account(args.backend.name(), &plan.account, timeout, &interrupted) {
        Ok(lock) => lock,
        Err(LockError::Interrupted(signal)) => return Err(Status::Signal(signal)),
        Err(err) => {
            eprintln!("mailsync sync: {err}");
            outcome.sync_failed(Status::Failed(1));
            return Ok(());
        }
    };
    {
        let mut out = io::stdout().lock();
        let _ = out.write_all(b"+ ");
        let _ = out.write_all(&line(&plan.command));
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }
    let mut command = Command::new(&plan.command[0]);
    command.args(&plan.command[1..]);
    lock.inherit_into(&mut command);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            let status = spawn_error(args, &plan.command[0], &err).report("sync");
            if status == Status::NotFound {
                // The same backend is missing for every account.
                return Err(status);
            }
            outcome.sync_failed(status);
            return Ok(());
        }
    };
    let status = match forwarder.wait(child) {
        Ok(status) => Status::of_child(status),
        Err(err) => {
            eprintln!(
                "mailsync sync: waiting for {}: {err}",
                plan.command[0].to_string_lossy()
            );
            Status::Failed(1)
        }
    };
    drop(lock);
    if !status.is_success() {
        outcome.sync_failed(status);
        return Ok(());
    }
    if let Some(checker) = &plan.checker {
        if let Err(failure) = checker.check(plan.folders.as_deref()) {
            eprintln!(
                "mailsync sync: check after syncing {}: {}",
                String::from_utf8_lossy(&plan.account),
                failure.message
            );
            outcome.check_failed(failure.status);
        }
    }
    Ok(())
}

pub fn run(args: SyncArgs) -> Status {
    let specs: Vec<Vec<u8>> = args
        .specs
        .iter()
        .map(|spec| spec.as_encoded_bytes().to_vec())
        .collect();
    let accounts = match parse_specs(&specs) {
        Ok(accounts) => accounts,
        Err(err) => return CliError::usage(err).report("sync"),
    };
    let mut check = args.check.clone();
    if let Some(inbox) = &args.inbox {
        check.group_inbox = inbox.clone();
    }
    if let Some(separator) = &args.separator {
        check.group_separator = separator.clone();
    }
    // The local side of the map is each account's own (see `plan`).
    let group_map = check.group_map(NameStyle::for_layout(mailsync::naming::Layout::MaildirPlusPlus));
    let checker = match Checker::from_args(&check, group_map, false) {
        Ok(checker) => checker,
        Err(message) => return CliError::usage(message).report("sync"),
    };
    let plans = match plan(&args, accounts, checker.as_ref()) {
        Ok(plans) => plans,
        Err(message) => return CliError::usage(message).report("sync"),
    };
    if args.dry_run {
        return show(&plans);
    }
    execute(&args, plans)
}
