//! Command-line parsing and dispatch.

use std::ffi::OsString;

use clap::{Parser, Subcommand};

mod watch;

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
}

/// Runs the command line `args` (argv[0] included) and returns the exit status.
pub fn run(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { 2 } else { 0 };
        }
    };
    match cli.command {
        Command::Watch(args) => watch::run(args),
    }
}
