//! `mailsync watch`: the mswatch watcher protocol on standard output, a
//! drop-in for mswatch's `watch_maildirs`.
//!
//! It prints one empty line once every folder is watched, then the name of
//! each changed folder on a line of its own. Unlike `watch_maildirs` it keeps
//! running when folders are created, deleted or renamed, and it exits 0 when
//! its standard input closes (so no `inputkill` is needed over ssh) or on
//! SIGTERM. SIGUSR1 rescans the whole store and reports every folder once.

use std::fs;
use std::path::PathBuf;

use clap::Args;

use mailsync::detect::detect_layout;
use mailsync::engine::{Engine, Options};
use mailsync::naming::{Layout, NameStyle};
use mailsync::sink::Sink;

use super::check::CheckArgs;
use super::exit::{CliError, Status};
use super::protocol::{run_source, Coalescing, Printing};

#[derive(Args, Debug)]
#[command(
    about = "Watch a maildir and print changed folders (mswatch's watch_maildirs protocol)",
    after_help = "Examples:\n  \
        mailsync watch                         # ~/Maildir (or $MAILDIR), layout detected\n  \
        mailsync watch --maildir ~/Mail --layout verbatim --delay 500\n  \
        mailsync watch --check-local --server nnimap+local   # Gnus checks before each line\n\n\
        In ~/.mswatchrc:\n  \
        store local\n  {\n  watch mailsync watch --maildir /home/me/Maildir\n  }"
)]
pub struct WatchArgs {
    /// The mail store to watch [default: $MAILDIR, else ~/Maildir]
    #[arg(long, short = 'm', value_name = "DIR")]
    maildir: Option<PathBuf>,
    /// Folder layout: maildir++, verbatim or nnmaildir [default: detected]
    #[arg(long, value_name = "LAYOUT")]
    layout: Option<Layout>,
    #[command(flatten)]
    pub(super) coalescing: Coalescing,
    #[command(flatten)]
    printing: Printing,
    #[command(flatten)]
    pub(super) check: CheckArgs,
}

fn default_maildir() -> PathBuf {
    if let Some(maildir) = std::env::var_os("MAILDIR").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(maildir);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join("Maildir")
}

/// Starts the engine `args` describe, its reports going to the sink that
/// `sink` makes for the names the store gives its folders. Returns the
/// engine and those names' style.
pub fn start(
    args: &WatchArgs,
    sink: &dyn Fn(NameStyle) -> Box<dyn Sink>,
) -> Result<(Engine, NameStyle), CliError> {
    let maildir = args.maildir.clone().unwrap_or_else(default_maildir);
    // The layout decides the separator: known before the first report.
    let layout = args.layout.or_else(|| {
        fs::canonicalize(&maildir)
            .ok()
            .and_then(|root| detect_layout(&root).ok())
    });
    let style = NameStyle::new(
        args.printing.inbox.clone(),
        args.printing.separator.clone().unwrap_or_else(|| {
            layout
                .unwrap_or(Layout::MaildirPlusPlus)
                .default_separator()
                .to_string()
        }),
    );
    let options = Options {
        layout,
        delay: args.coalescing.delay(),
        max_delay: args.coalescing.max_delay(),
        report_flags: args.coalescing.report_flags(),
    };
    let engine = Engine::start(&maildir, options, sink(style.clone()))
        .map_err(|err| CliError::new(Status::Failed(1), err))?;
    Ok((engine, style))
}

pub fn run(args: WatchArgs) -> Status {
    run_source("watch", &args.check, |sink| start(&args, sink))
}
