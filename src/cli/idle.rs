//! `mailsync idle`: the mswatch watcher protocol for a remote IMAP account,
//! for servers that give no shell for `watch_maildirs`. Mailboxes are
//! printed under the names the local store gives them, so mswatch pairs
//! them with the local watcher's lines.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use mailsync::backend::{default_offlineimap_config, read_name_map};
use mailsync::imap::config::{check_host, from_mbsync, from_offlineimap, Found};
use mailsync::imap::{
    self, Account, Auth, Endpoint, ImapWatch, LocalNames, Options, Password, Selection, Tls,
};
use mailsync::naming::NameStyle;
use mailsync::sink::Sink;

use super::check::CheckArgs;
use super::exit::{CliError, Status};
use super::protocol::{run_source, Coalescing, Printing};

#[derive(Args, Debug)]
#[command(
    about = "Watch an IMAP account (NOTIFY or IDLE) and print changed mailboxes (mswatch's watcher protocol)",
    after_help = "Examples:\n  \
        mailsync idle --mbsync work               # channel `work` of ~/.mbsyncrc\n  \
        mailsync idle --offlineimap work          # [Account work] of ~/.offlineimaprc\n  \
        mailsync idle --host imap.example.org --user me --pass-cmd 'pass show mail'\n\n\
        In ~/.mswatchrc, instead of `watch ssh server watch_maildirs`:\n  \
        store remote\n  {\n  watch mailsync idle --mbsync work\n  }\n\n\
        Passwords are never taken on the command line: --pass-cmd, --pass-file,\n\
        or the sync program's configuration. For OAuth2 (Gmail, Microsoft 365)\n\
        the command is a token helper that prints an access token:\n  \
        mailsync idle --host outlook.office365.com --user me@example.com \\\n    \
        --auth xoauth2 --pass-cmd 'oama access me@example.com'"
)]
pub struct IdleArgs {
    /// Take the account from this mbsync Channel (or IMAPAccount)
    #[arg(long, value_name = "CHANNEL", conflicts_with_all = ["offlineimap", "host"])]
    mbsync: Option<String>,
    /// Take the account from this OfflineIMAP account
    #[arg(long, value_name = "ACCOUNT", conflicts_with = "host")]
    offlineimap: Option<String>,
    /// The sync program's configuration [default: ~/.mbsyncrc, or OfflineIMAP's own]
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// The IMAP server
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Its port [default: 993 with --tls imaps, else 143]
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// The user name
    #[arg(long, value_name = "USER", requires = "host")]
    user: Option<String>,
    /// A shell command that prints the password (first line)
    #[arg(long, value_name = "CMD", conflicts_with = "pass_file")]
    pass_cmd: Option<String>,
    /// A file holding the password (first line)
    #[arg(long, value_name = "FILE")]
    pass_file: Option<PathBuf>,
    /// Login mechanisms allowed, the preferred first (comma-separated): xoauth2 or oauthbearer
    /// (the password command prints an OAuth2 access token), plain, login [default: the sync
    /// program's setting, else plain where offered, else login]
    #[arg(long, value_name = "MECH", value_parser = Auth::from_names)]
    auth: Option<Auth>,
    /// imaps (TLS from the start), starttls, or none (plain text: only on a trusted network)
    #[arg(long, value_name = "MODE", default_value = "imaps")]
    tls: Tls,
    /// Trust the certificates in this PEM file besides the system's (repeatable)
    #[arg(long, value_name = "FILE")]
    ca_file: Vec<PathBuf>,
    /// Watch only mailboxes matching this mbsync-style pattern (`*`, `%`, `!` excludes; repeatable)
    #[arg(long, value_name = "PATTERN")]
    folder: Vec<String>,
    #[command(flatten)]
    pub(super) coalescing: Coalescing,
    #[command(flatten)]
    printing: Printing,
    /// Local names for server names that nametrans changed: LOCAL<TAB>REMOTE lines (as for `mailsync sync`)
    #[arg(long, value_name = "FILE")]
    name_map: Option<PathBuf>,
    /// Connections at most without NOTIFY (IDLE ones and one for STATUS polling)
    #[arg(long, value_name = "N", default_value_t = imap::MAX_CONNECTIONS as u16,
          value_parser = clap::value_parser!(u16).range(*imap::MAX_CONNECTIONS_RANGE.start() as i64..=*imap::MAX_CONNECTIONS_RANGE.end() as i64))]
    max_connections: u16,
    /// Seconds between STATUS polls of mailboxes without an IDLE connection
    #[arg(long, value_name = "SECS", default_value_t = imap::POLL_SECONDS, value_parser = clap::value_parser!(u64).range(1..))]
    poll: u64,
    /// Use IDLE even where the server offers NOTIFY
    #[arg(long)]
    no_notify: bool,
    /// Seconds of silence before the kernel probes the server; a dead
    /// connection is found after 4 unanswered probes, a sixth of this apart
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    keepalive: u64,
    #[command(flatten)]
    pub(super) check: CheckArgs,
}

/// The account the flags describe.
fn account(args: &IdleArgs) -> Result<Found, String> {
    if let Some(channel) = &args.mbsync {
        let path = match &args.config {
            Some(path) => path.clone(),
            None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".mbsyncrc"),
        };
        let text =
            fs::read_to_string(&path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        return from_mbsync(&text, channel);
    }
    if let Some(name) = &args.offlineimap {
        let path = args
            .config
            .clone()
            .or_else(default_offlineimap_config)
            .ok_or("no OfflineIMAP configuration found (give --config)")?;
        let text =
            fs::read_to_string(&path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        return from_offlineimap(&text, name);
    }
    let host = args
        .host
        .clone()
        .ok_or("give --mbsync CHANNEL, --offlineimap ACCOUNT, or --host with --user and --pass-cmd")?;
    check_host(&host).map_err(|why| format!("--host {why}"))?;
    let user = args.user.clone().ok_or("--host needs --user")?;
    let password = match (&args.pass_cmd, &args.pass_file) {
        (Some(command), _) => Password::Command(command.clone()),
        (None, Some(file)) => Password::File(file.clone()),
        (None, None) => {
            return Err(
                "--host needs --pass-cmd or --pass-file (never a password on the command line)".into(),
            )
        }
    };
    let port = args.port.unwrap_or(args.tls.default_port());
    Ok(Found {
        account: Account {
            label: format!("{user}@{host}"),
            endpoint: Endpoint::new(host, port, args.tls, Vec::new()),
            user,
            password,
            auth: Auth::default(),
        },
        patterns: Vec::new(),
        local_separator: None,
        server_prefix: None,
    })
}

/// Starts watching the account `args` describe, its reports going to the
/// sink that `sink` makes for the names the local store gives mailboxes.
/// Returns the watch and those names' style.
pub fn start(
    args: &IdleArgs,
    sink: &dyn Fn(NameStyle) -> Box<dyn Sink>,
) -> Result<(ImapWatch, NameStyle), CliError> {
    let Found {
        mut account,
        patterns,
        local_separator,
        server_prefix,
    } = account(args).map_err(CliError::configuration)?;
    // Flags given win over the configuration's.
    if let Some(port) = args.port {
        account.endpoint.port = port;
    }
    if !args.ca_file.is_empty() {
        account.endpoint.ca_files = args.ca_file.clone();
    }
    account.endpoint.keepalive = Duration::from_secs(args.keepalive);
    if let Some(command) = &args.pass_cmd {
        account.password = Password::Command(command.clone());
    } else if let Some(file) = &args.pass_file {
        account.password = Password::File(file.clone());
    }
    if let Some(auth) = &args.auth {
        account.auth = auth.clone();
    }
    let map = match &args.name_map {
        Some(path) => read_name_map(path).map_err(CliError::configuration)?,
        None => Default::default(),
    };
    let style = NameStyle::new(
        args.printing.inbox.clone(),
        args.printing
            .separator
            .clone()
            .or(local_separator)
            .unwrap_or_else(|| ".".into()),
    );
    let selection = Selection::new(if args.folder.is_empty() {
        patterns
    } else {
        args.folder.clone()
    })
    .under(server_prefix.clone());
    let options = Options {
        delay: args.coalescing.delay(),
        max_delay: args.coalescing.max_delay(),
        report_flags: args.coalescing.report_flags(),
        selection,
        max_connections: usize::from(args.max_connections),
        poll: Duration::from_secs(args.poll),
        use_notify: !args.no_notify,
        // With --host no configuration says what the server's names sit
        // under: the server does (NAMESPACE).
        strip_namespace: args.host.is_some(),
        ..Options::default()
    };
    let names = LocalNames::new(style.clone(), &map).stripping(server_prefix);
    let watch = ImapWatch::start(account, options, sink(style.clone()), names)
        .map_err(|err| CliError::new(Status::Failed(1), format!("cannot start: {err}")))?;
    Ok((watch, style))
}

pub fn run(args: IdleArgs) -> Status {
    run_source("idle", &args.check, |sink| start(&args, sink))
}
