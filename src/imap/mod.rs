//! An IMAP account watched over the network: the second kind of source
//! besides a maildir. With NOTIFY (RFC 5465) one connection watches every
//! mailbox; without it, IDLE (RFC 2177) on one connection per mailbox up to
//! a cap, and STATUS polling of the rest on one more. Reports go through
//! the same coalescing and naming as a maildir's, to the same [`Sink`].
//!
//! Threads: a coordinator (keeps each mailbox's status, coalesces, calls
//! the sink), a supervisor (the main connection, reconnecting with
//! back-off), and in IDLE mode one thread per IDLE connection.

mod auth;
mod backoff;
pub mod config;
mod conn;
mod error;
mod secret;
mod session;
mod status;
mod trust;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};

use crate::coalesce::Coalescer;
use crate::naming::{Folder, NameStyle};
use crate::sink::Sink;

use crate::stop::Stop;
pub use auth::{Auth, Mechanism};
pub use conn::{Endpoint, Tls};
pub use error::ImapError;
pub use secret::{AskSecret, Password, Secret};
pub use status::MailboxStatus;
use status::Mailboxes;

/// One account on one server.
#[derive(Clone, Debug)]
pub struct Account {
    /// How messages name it: the sync program's account name, else user@host.
    pub label: String,
    pub endpoint: Endpoint,
    pub user: String,
    pub password: Password,
    /// The login mechanisms allowed; an OAuth2 one makes the password a token.
    pub auth: Auth,
}

/// Which mailboxes are watched: mbsync's `Patterns` (`*` anything, `%`
/// anything but the delimiter, `!` excludes; the last match decides).
#[derive(Clone, Debug, Default)]
pub struct Selection {
    patterns: Vec<(bool, String)>,
    /// Stripped from a name before it is matched.
    prefix: Option<String>,
}

impl Selection {
    pub fn new<I: IntoIterator<Item = String>>(patterns: I) -> Selection {
        Selection {
            patterns: patterns
                .into_iter()
                .map(|pattern| match pattern.strip_prefix('!') {
                    Some(rest) => (false, rest.to_string()),
                    None => (true, pattern),
                })
                .collect(),
            prefix: None,
        }
    }

    /// The same, its patterns matched against names with `prefix` stripped,
    /// as mbsync matches them under an IMAPStore `Path`.
    pub fn under(mut self, prefix: Option<String>) -> Selection {
        self.prefix = prefix;
        self
    }

    /// Whether the mailbox `name` (the server's spelling) is watched.
    pub fn contains(&self, name: &str, delimiter: Option<&str>) -> bool {
        if self.patterns.is_empty() {
            return true;
        }
        let name = without_prefix(name, self.prefix.as_deref());
        let mut verdict = false;
        for (include, pattern) in &self.patterns {
            if glob(pattern.as_bytes(), name.as_bytes(), delimiter.map(str::as_bytes)) {
                verdict = *include;
            }
        }
        verdict
    }
}

/// `name` with `prefix` stripped (mbsync's IMAPStore `Path`), unless that
/// leaves nothing.
fn without_prefix<'a>(name: &'a str, prefix: Option<&str>) -> &'a str {
    prefix
        .and_then(|prefix| name.strip_prefix(prefix))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(name)
}

fn glob(pattern: &[u8], name: &[u8], delimiter: Option<&[u8]>) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| glob(rest, &name[skip..], delimiter)),
        Some((b'%', rest)) => {
            let mut skip = 0;
            loop {
                if glob(rest, &name[skip..], delimiter) {
                    return true;
                }
                if skip == name.len() || delimiter.is_some_and(|d| name[skip..].starts_with(d)) {
                    return false;
                }
                skip += 1;
            }
        }
        Some((first, rest)) => name.first() == Some(first) && glob(rest, &name[1..], delimiter),
    }
}

/// How a server's mailbox names become the local store's folders, so a
/// report pairs with the local watcher's: INBOX is the root, the server's
/// delimiter splits levels, and names a `nametrans` changed come from the
/// name map (local name → server name, read backwards here).
/// `backend::RemoteNames` goes the other way, for the sync's arguments.
#[derive(Clone, Debug)]
pub struct LocalNames {
    pub local: NameStyle,
    /// Server name → local name.
    pub renamed: HashMap<String, Vec<u8>>,
    /// Keep the server's names whole (one level each): what nnimap's
    /// groups are named by.
    whole: bool,
    /// Stripped from the server's names first (mbsync's IMAPStore `Path`).
    prefix: Option<String>,
}

impl LocalNames {
    /// `map` is the sync's name map: local name → server name.
    pub fn new(local: NameStyle, map: &HashMap<Vec<u8>, Vec<u8>>) -> LocalNames {
        LocalNames {
            local,
            renamed: map
                .iter()
                .map(|(local, remote)| (String::from_utf8_lossy(remote).into_owned(), local.clone()))
                .collect(),
            whole: false,
            prefix: None,
        }
    }

    /// The same, the sync program stripping `prefix` from the server's
    /// names (`INBOX.` on servers whose mailboxes sit below INBOX).
    pub fn stripping(mut self, prefix: Option<String>) -> LocalNames {
        self.prefix = prefix;
        self
    }

    /// Strips `prefix` too, when nothing was given to strip: the server's
    /// own word for its personal namespace.
    fn learn_prefix(&mut self, prefix: String) {
        if self.prefix.is_none() && !self.whole {
            self.prefix = Some(prefix);
        }
    }

    /// The server's own names, INBOX as the root: for nnimap groups.
    pub fn server_names() -> LocalNames {
        LocalNames {
            local: NameStyle::new("INBOX", ""),
            renamed: HashMap::new(),
            whole: true,
            prefix: None,
        }
    }

    pub fn folder(&self, name: &str, delimiter: Option<&str>) -> Folder {
        if let Some(local) = self.renamed.get(name) {
            return self.local.parse(local);
        }
        if name.eq_ignore_ascii_case("INBOX") {
            return Folder::root();
        }
        let name = without_prefix(name, self.prefix.as_deref());
        match delimiter.filter(|delimiter| !delimiter.is_empty() && !self.whole) {
            Some(delimiter) => Folder::from_levels(name.split(delimiter)),
            None => Folder::from_levels([name]),
        }
    }
}

/// How an account is watched.
#[derive(Clone, Debug)]
pub struct Options {
    pub delay: Duration,
    pub max_delay: Option<Duration>,
    /// Also report mailboxes whose messages only changed flags.
    pub report_flags: bool,
    pub selection: Selection,
    /// Connections at most, the STATUS poller's included, when the server
    /// has no NOTIFY.
    pub max_connections: usize,
    /// How often mailboxes without an IDLE connection are asked for STATUS.
    pub poll: Duration,
    /// IDLE is ended and begun again this often (servers drop IDLE after
    /// 30 minutes; RFC 2177 says renew before 29).
    pub idle_renewal: Duration,
    /// Use NOTIFY where the server offers it.
    pub use_notify: bool,
    /// Strip the server's personal namespace (asked with NAMESPACE) from
    /// its names, as a sync program configured for it does (`mailsync
    /// idle --host`: no configuration says the prefix).
    pub strip_namespace: bool,
}

/// Connections per account without NOTIFY: the default, and what may be
/// asked (an IDLE connection and the poller's at least).
pub const MAX_CONNECTIONS: usize = 8;
pub const MAX_CONNECTIONS_RANGE: std::ops::RangeInclusive<usize> = 2..=1000;
/// Seconds between STATUS polls of mailboxes without an IDLE connection.
pub const POLL_SECONDS: u64 = 60;

impl Default for Options {
    fn default() -> Self {
        Options {
            delay: crate::engine::DEFAULT_DELAY,
            max_delay: None,
            report_flags: false,
            selection: Selection::default(),
            max_connections: MAX_CONNECTIONS,
            poll: Duration::from_secs(POLL_SECONDS),
            idle_renewal: Duration::from_secs(25 * 60),
            use_notify: true,
            strip_namespace: false,
        }
    }
}

/// What the connections tell the coordinator.
#[derive(Debug)]
enum Report {
    /// Every watched mailbox (with its status where known) and the
    /// server's delimiter: a mailbox not in it is gone.
    Listing(Vec<(String, MailboxStatus)>, Option<String>),
    /// The server's personal namespace prefix, asked for
    /// [`Options::strip_namespace`].
    Namespace(String),
    /// One mailbox's status now.
    Status(String, MailboxStatus),
    /// A mailbox changed in a way no status shows (flags without CONDSTORE).
    Changed(String),
    /// Every mailbox is watched, by NOTIFY or IDLE (with how many polled).
    Ready {
        how: String,
    },
    /// The main connection was lost or refused for now, and why; it is
    /// made again.
    Disconnected(String),
    /// An IDLE connection of one mailbox was lost, and why.
    LinkLost(String),
    Warning(String),
    /// A listed mailbox no folder can stand for (an empty name, a NUL).
    Unusable(String),
    /// Report every watched mailbox once.
    RescanAll,
    /// The account stops (its login is refused, its certificate not trusted).
    Failed(ImapError),
}

/// How an account's connections are doing.
#[derive(Clone, Debug, Default)]
pub struct Health {
    /// Whether the last news from the server was a listing, not a loss.
    pub connected: bool,
    /// How the mailboxes are watched (NOTIFY, or IDLE and polling).
    pub how: Option<String>,
    pub mailboxes: usize,
    /// Connections lost or refused since the start.
    pub reconnects: u64,
    pub last_error: Option<String>,
}

/// A running watch over one IMAP account. Dropping it stops its threads.
pub struct ImapWatch {
    stop: Arc<Stop>,
    /// To the coordinator, for [`ImapWatch::rescan`]; dropped first on stop
    /// (the coordinator ends when every sender is gone).
    reports: Option<crossbeam_channel::Sender<Report>>,
    threads: Vec<JoinHandle<()>>,
    health: Arc<Mutex<Health>>,
    /// How many messages each mailbox holds, as the server last said.
    counts: Arc<Mutex<HashMap<Folder, u32>>>,
}

impl ImapWatch {
    /// Starts watching; returns at once. The sink hears `ready` once every
    /// mailbox is watched, or why the account cannot be.
    pub fn start(
        account: Account,
        options: Options,
        sink: Box<dyn Sink>,
        names: LocalNames,
    ) -> std::io::Result<ImapWatch> {
        let stop = Stop::new()?;
        let health = Arc::new(Mutex::new(Health::default()));
        let counts = Arc::new(Mutex::new(HashMap::new()));
        // Bounded: a server that floods makes its connection wait for the
        // coordinator (and TCP the server), instead of growing a queue.
        let (reports, reports_rx) = bounded(REPORT_QUEUE);
        let coordinator = {
            let options = options.clone();
            let stop = Arc::clone(&stop);
            let shared = Shared {
                health: Arc::clone(&health),
                counts: Arc::clone(&counts),
            };
            thread::Builder::new()
                .name("mailsync-imap".into())
                .spawn(move || coordinate(reports_rx, sink, names, &options, &stop, &shared))?
        };
        let rescans = reports.clone();
        let supervisor = {
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("mailsync-imap-main".into())
                .spawn(move || session::supervise(&account, &options, &reports, &stop))?
        };
        Ok(ImapWatch {
            stop,
            reports: Some(rescans),
            threads: vec![supervisor, coordinator],
            health,
            counts,
        })
    }

    /// How its connections are doing now.
    pub fn health(&self) -> Health {
        self.health
            .lock()
            .map(|health| health.clone())
            .unwrap_or_default()
    }

    /// How many messages the server last said `folder` holds.
    pub fn messages(&self, folder: &Folder) -> Option<u32> {
        self.counts.lock().ok()?.get(folder).copied()
    }

    /// Stops every connection and waits for the threads.
    pub fn stop(mut self) {
        self.stop_threads();
    }

    /// Reports every watched mailbox once, as after a reconnect that found
    /// everything changed (SIGUSR1 in `mailsync idle`, `mailsync--module-rescan`).
    pub fn rescan(&self) {
        if let Some(reports) = &self.reports {
            // A full queue means the server is flooding: the rescan would
            // wait behind it; asked again, it is taken later.
            let _ = reports.try_send(Report::RescanAll);
        }
    }

    fn stop_threads(&mut self) {
        self.reports = None;
        self.stop.stop();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for ImapWatch {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// Which connection losses are said: one event (a server restart, a kick)
/// drops the main connection and every IDLE connection at once, and is
/// said once, not once per connection; the main connection's losses one
/// after another (each session failing) are each said.
#[derive(Default)]
struct Losses {
    /// When the last loss was said, and whether it was an IDLE connection's.
    said: Option<(Instant, bool)>,
}

/// Losses this close to one said belong to the same event.
const ONE_EVENT: Duration = Duration::from_secs(2);

impl Losses {
    fn worth_saying(&mut self, link: bool, now: Instant) -> bool {
        let recent = self.said.filter(|(at, _)| now.duration_since(*at) < ONE_EVENT);
        let say = match recent {
            None => true,
            Some((_, said_link)) => !link && !said_link,
        };
        if say {
            self.said = Some((now, link));
        }
        say
    }
}

/// Reports waiting for the coordinator, at most.
const REPORT_QUEUE: usize = 4096;

/// What the coordinator keeps up to date for [`ImapWatch`]'s readers.
struct Shared {
    health: Arc<Mutex<Health>>,
    counts: Arc<Mutex<HashMap<Folder, u32>>>,
}

fn coordinate(
    reports: Receiver<Report>,
    sink: Box<dyn Sink>,
    names: LocalNames,
    options: &Options,
    stop: &Stop,
    shared: &Shared,
) {
    let mut coordinator = Coordinator {
        sink,
        names,
        shared,
        stop,
        mailboxes: Mailboxes::new(options.report_flags),
        coalescer: Coalescer::with_bound(options.delay, options.max_delay),
        delimiter: None,
        ready: false,
        unlisted_said: false,
        unusable_said: HashSet::new(),
        losses: Losses::default(),
    };
    while !stop.is_stopped() {
        let report = match coordinator.coalescer.next_due() {
            Some(due) => reports.recv_timeout(due.saturating_duration_since(Instant::now())),
            None => reports.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match report {
            Ok(report) => coordinator.take(report, Instant::now()),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // A failure stopped the account: nothing more is reported.
        if stop.is_stopped() {
            return;
        }
        coordinator.send_due(Instant::now());
    }
}

/// The state of one account's coordinator thread: what the server said of
/// each mailbox, what waits to be reported, and what was said already.
struct Coordinator<'a> {
    sink: Box<dyn Sink>,
    names: LocalNames,
    shared: &'a Shared,
    /// Set when the account fails, which ends the coordinator too.
    stop: &'a Stop,
    mailboxes: Mailboxes,
    coalescer: Coalescer<String>,
    /// The server's hierarchy delimiter, once a listing gave it.
    delimiter: Option<String>,
    /// Whether the first listing was reported as ready.
    ready: bool,
    unlisted_said: bool,
    unusable_said: HashSet<String>,
    losses: Losses,
}

impl Coordinator<'_> {
    fn folder(&self, name: &str) -> Folder {
        self.names.folder(name, self.delimiter.as_deref())
    }

    fn note(&self, change: impl FnOnce(&mut Health)) {
        if let Ok(mut health) = self.shared.health.lock() {
            change(&mut health);
        }
    }

    fn count(&self, name: &str, status: &MailboxStatus) {
        if let (Some(messages), Ok(mut counts)) = (status.messages, self.shared.counts.lock()) {
            counts.insert(self.folder(name), messages);
        }
    }

    /// `name` changed: reported once its window ends (nothing before ready).
    fn touch(&mut self, name: String, now: Instant) {
        if self.ready {
            self.coalescer.touch(name, now);
        }
    }

    fn take(&mut self, report: Report, now: Instant) {
        match report {
            Report::Namespace(prefix) => self.names.learn_prefix(prefix),
            Report::Listing(listed, given) => {
                self.delimiter = given.or(self.delimiter.take());
                for (name, status) in &listed {
                    self.count(name, status);
                }
                for name in self.mailboxes.listing(&listed) {
                    self.touch(name, now);
                }
                let count = self.mailboxes.len();
                self.note(|health| {
                    health.connected = true;
                    health.mailboxes = count;
                });
            }
            // A mailbox the server never listed is no mailbox of the
            // account's (a new one is listed first: NOTIFY's MailboxName).
            Report::Status(name, _) if self.mailboxes.get(&name).is_none() => {
                if !self.unlisted_said {
                    self.unlisted_said = true;
                    self.sink.warning(format!(
                        "the server reported mailbox {name:?}, which it did not list; such reports are ignored"
                    ));
                }
            }
            Report::Status(name, status) => {
                self.count(&name, &status);
                if self.mailboxes.status(&name, &status) {
                    self.touch(name, now);
                }
            }
            Report::Changed(name) => self.touch(name, now),
            Report::Disconnected(message) => self.lost(message, false, now),
            Report::LinkLost(message) => self.lost(message, true, now),
            Report::Ready { how } => self.on_ready(how),
            Report::Warning(message) => self.sink.warning(message),
            Report::RescanAll => {
                let every: Vec<String> = self.mailboxes.names().cloned().collect();
                for name in every {
                    self.touch(name, now);
                }
            }
            // Said once each (and of the first thousand only), not at every listing.
            Report::Unusable(name) => {
                if self.unusable_said.len() < 1000 && self.unusable_said.insert(name.clone()) {
                    self.sink.warning(format!(
                        "mailbox {name:?} is not watched: no folder can be named by an empty name or one holding a NUL"
                    ));
                }
            }
            Report::Failed(error) => self.fail(error),
        }
    }

    fn lost(&mut self, message: String, link: bool, now: Instant) {
        self.note(|health| {
            health.connected = false;
            health.reconnects += 1;
            health.last_error = Some(message.clone());
        });
        if self.losses.worth_saying(link, now) {
            self.sink.warning(message);
        }
    }

    /// The first time: every mailbox and its status, then ready.
    fn on_ready(&mut self, how: String) {
        self.note(|health| health.how = Some(how.clone()));
        if self.ready {
            return;
        }
        self.ready = true;
        let mut folders: Vec<Folder> = self.mailboxes.names().map(|name| self.folder(name)).collect();
        folders.sort();
        self.sink.server_status(
            self.mailboxes
                .iter()
                .map(|(name, status)| (self.folder(name), *status))
                .collect(),
        );
        self.sink
            .info(format!("watching {} mailboxes: {how}", self.mailboxes.len()));
        self.sink.ready(Ok(folders));
    }

    /// The account stops for good: said as a failed start, or a stop.
    fn fail(&mut self, error: ImapError) {
        self.stop.stop();
        let message = error.to_string();
        self.note(|health| {
            health.connected = false;
            health.last_error = Some(message);
        });
        if self.ready {
            self.sink.stopped(Box::new(error));
        } else {
            self.sink.ready(Err(Box::new(error)));
        }
    }

    /// Reports the mailboxes whose window has ended, with their statuses.
    fn send_due(&mut self, now: Instant) {
        let due = self.coalescer.take_due(now);
        if due.is_empty() {
            return;
        }
        let folders: Vec<Folder> = due.iter().map(|name| self.folder(name)).collect();
        // A mailbox gone from the listing has no status: its name alone is reported.
        let statuses = due
            .iter()
            .zip(&folders)
            .filter_map(|(name, folder)| Some((folder.clone(), *self.mailboxes.get(name)?)))
            .collect();
        self.sink.server_status(statuses);
        self.sink.changed(folders);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_select_as_mbsync_does() {
        // (patterns, mailbox, watched)
        let cases: &[(&[&str], &str, bool)] = &[
            (&[], "anything", true),
            (&["*"], "a.b", true),
            (&["INBOX"], "INBOX", true),
            (&["INBOX"], "Sent", false),
            (&["%"], "a", true),
            (&["%"], "a.b", false),
            (&["a.%"], "a.b", true),
            (&["*", "!Trash"], "Trash", false),
            (&["*", "!Trash"], "Trash.old", true),
            (&["*", "!Trash*"], "Trash.old", false),
            (&["!Trash", "*"], "Trash", true),
            (&["[Gmail]/*"], "[Gmail]/Sent Mail", true),
        ];
        for (patterns, name, expected) in cases {
            let selection = Selection::new(patterns.iter().map(|p| p.to_string()));
            assert_eq!(
                selection.contains(name, Some(".")),
                *expected,
                "{patterns:?} on {name}"
            );
        }
    }

    #[test]
    fn server_names_become_the_local_store_s_folders() {
        let local = NameStyle::new("INBOX", "/");
        let map = HashMap::from([(b"Sent".to_vec(), b"[Gmail]/Sent Mail".to_vec())]);
        let names = LocalNames::new(local.clone(), &map);
        // (server name, delimiter, local name)
        let cases = [
            ("INBOX", Some("."), "INBOX"),
            ("inbox", Some("/"), "INBOX"),
            ("a.b", Some("."), "a/b"),
            ("a/b", Some("/"), "a/b"),
            ("a.b", None, "a.b"),
            ("[Gmail]/Sent Mail", Some("/"), "Sent"),
            ("Entw&APw-rfe", Some("."), "Entw&APw-rfe"),
        ];
        for (server, delimiter, expected) in cases {
            let folder = names.folder(server, delimiter);
            assert_eq!(
                String::from_utf8(folder.name(&local)).unwrap(),
                expected,
                "{server}"
            );
        }
    }

    #[test]
    fn for_nnimap_the_server_s_names_stay_whole() {
        let names = LocalNames::server_names();
        let style = NameStyle::new("INBOX", "");
        for (server, expected) in [
            ("INBOX", "INBOX"),
            ("a.b", "a.b"),
            ("[Gmail]/Sent Mail", "[Gmail]/Sent Mail"),
        ] {
            let folder = names.folder(server, Some("."));
            assert_eq!(folder.name(&style), expected.as_bytes(), "{server}");
        }
    }

    #[test]
    fn a_server_prefix_is_stripped_as_mbsync_s_path_is() {
        let names =
            LocalNames::new(NameStyle::new("INBOX", "/"), &HashMap::new()).stripping(Some("INBOX.".into()));
        let style = NameStyle::new("INBOX", "/");
        for (server, local) in [
            ("INBOX", "INBOX"),
            ("INBOX.lists.gnus", "lists/gnus"),
            ("Shared.x", "Shared/x"),
        ] {
            assert_eq!(
                names.folder(server, Some(".")).name(&style),
                local.as_bytes(),
                "{server}"
            );
        }
        let selection = Selection::new(["lists*".to_string()]).under(Some("INBOX.".into()));
        assert!(selection.contains("INBOX.lists.gnus", Some(".")));
        assert!(!selection.contains("INBOX.work", Some(".")));
    }
}
