//! Command-line parsing and dispatch.

use std::ffi::OsString;
use std::path::Path;

use clap::{Parser, Subcommand};

mod check;
mod idle;
mod protocol;
mod status;
mod sync;
mod watch;

use status::Status;

/// Realtime mail for Gnus: an mswatch watcher and sync program.
#[derive(Parser, Debug)]
#[command(name = "mailsync", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Watch(watch::WatchArgs),
    Idle(idle::IdleArgs),
    Sync(sync::SyncArgs),
}

/// Runs the command line `args` (argv[0] included) and returns the exit code.
///
/// Under the names of rpatterson.mailsync's scripts it behaves as they did;
/// `mailsync-sync` and `mailsync-watch` are the subcommands.
pub fn run(args: Vec<OsString>) -> i32 {
    let program = args
        .first()
        .and_then(|arg0| Path::new(arg0).file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let args = match program.as_str() {
        // Names without mswatch's keywords `sync` and `watch` as words.
        "mailsync-sync" => with_subcommand(args, "sync", &[], &[]),
        "mailsync-watch" => with_subcommand(args, "watch", &[], &[]),
        "mailsync_offlineimap" => with_subcommand(args, "sync", &[], &[]),
        "mailsync_offlineimap_local" => with_subcommand(args, "sync", &["--check-local"], &[]),
        "mailsync_gnus_watch" => with_subcommand(
            args,
            "watch",
            &["--check-local"],
            &[
                ("-t", "--template"),
                ("-i", "--group-inbox"),
                ("-e", "--check-function"),
            ],
        ),
        _ => args,
    };
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                Status::Usage
            } else {
                Status::Success
            }
            .code();
        }
    };
    match cli.command {
        Command::Watch(args) => watch::run(args),
        Command::Idle(args) => idle::run(args),
        Command::Sync(args) => sync::run(args),
    }
    .code()
}

/// `prog ARGS…` as `mailsync SUBCOMMAND EXTRA… ARGS…`, with the seed's short
/// options renamed.
fn with_subcommand(
    args: Vec<OsString>,
    subcommand: &str,
    extra: &[&str],
    renames: &[(&str, &str)],
) -> Vec<OsString> {
    let mut rewritten = vec![OsString::from("mailsync"), OsString::from(subcommand)];
    rewritten.extend(extra.iter().map(OsString::from));
    rewritten.extend(args.into_iter().skip(1).map(|arg| {
        match renames.iter().find(|(short, _)| arg.as_os_str() == *short) {
            Some((_, long)) => OsString::from(long),
            None => arg,
        }
    }));
    rewritten
}
