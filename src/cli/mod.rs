//! Command-line parsing and dispatch.

use std::ffi::OsString;
use std::path::Path;

use clap::{Parser, Subcommand};

mod check;
mod exit;
mod idle;
mod protocol;
mod run;
mod sync;
mod watch;

use exit::Status;

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
    Run(run::RunArgs),
}

/// Runs the command line `args` (argv[0] included) and returns the exit code.
///
/// Under the names of rpatterson.mailsync's scripts it behaves as they did;
/// `mailsync-sync` and `mailsync-watch` are the subcommands.
pub fn run(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(rewrite(args)) {
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
        Command::Run(args) => run::run(args),
    }
    .code()
}

/// A store's watch command that `mailsync run` runs in its own process.
enum WatcherCommand {
    Watch(Box<watch::WatchArgs>),
    Idle(Box<idle::IdleArgs>),
}

impl WatcherCommand {
    /// `mailsync watch …` or `mailsync idle …` (also under the seed's and
    /// the keyword-free names) without Gnus checks, which must come before
    /// each line and so keep it a child; None for any other command. Flags
    /// that do not parse are an error.
    fn parse(command: &[String]) -> Result<Option<WatcherCommand>, String> {
        let program = command
            .first()
            .and_then(|program| Path::new(program).file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !matches!(
            program.as_str(),
            "mailsync" | "mailsync-watch" | "mailsync_gnus_watch"
        ) {
            return Ok(None);
        }
        let home = std::env::var("HOME").unwrap_or_default();
        let args: Vec<OsString> = command
            .iter()
            .map(|arg| OsString::from(expand_home(arg, &home)))
            .collect();
        let cli = match Cli::try_parse_from(rewrite(args)) {
            Ok(cli) => cli,
            Err(err) => {
                let rendered = err.render().to_string();
                let first = rendered
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("error: ");
                return Err(format!("{}: {first}", command.join(" ")));
            }
        };
        Ok(match cli.command {
            Command::Watch(args) if !args.check.asks_for_checks() => {
                Some(WatcherCommand::Watch(Box::new(args)))
            }
            Command::Idle(args) if !args.check.asks_for_checks() => {
                Some(WatcherCommand::Idle(Box::new(args)))
            }
            _ => None,
        })
    }
}

/// `arg` with a leading `~/` (or `--flag=~/`) and `$HOME` or `${HOME}` made
/// `home`, as a shell would: a watch line run in-process meets no shell,
/// and a configuration that says `~/Mail` serves on every machine.
fn expand_home(arg: &str, home: &str) -> String {
    let arg = arg.replace("${HOME}", home).replace("$HOME", home);
    match arg.split_once("=~/") {
        Some((flag, rest)) if flag.starts_with("--") => format!("{flag}={home}/{rest}"),
        _ => match arg.strip_prefix("~/") {
            Some(rest) => format!("{home}/{rest}"),
            None if arg == "~" => home.to_string(),
            None => arg,
        },
    }
}

/// The command line as `mailsync SUBCOMMAND …`, however it was invoked.
fn rewrite(args: Vec<OsString>) -> Vec<OsString> {
    let program = args
        .first()
        .and_then(|arg0| Path::new(arg0).file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    match program.as_str() {
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
    }
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

#[cfg(test)]
mod tests {
    use super::expand_home;

    /// Cases as data: a watch line's word, and what it becomes for HOME /h.
    const CASES: &[(&str, &str)] = &[
        ("~/Mail", "/h/Mail"),
        ("~", "/h"),
        ("--maildir=~/Mail", "--maildir=/h/Mail"),
        ("$HOME/Mail", "/h/Mail"),
        ("${HOME}/.mbsyncrc", "/h/.mbsyncrc"),
        ("a~/b", "a~/b"),
        ("~other/Mail", "~other/Mail"),
        ("--folder", "--folder"),
    ];

    #[test]
    fn home_is_expanded_as_a_shell_would() {
        for (word, expanded) in CASES {
            assert_eq!(expand_home(word, "/h"), *expanded, "{word}");
        }
    }
}
