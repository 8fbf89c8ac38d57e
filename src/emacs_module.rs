//! The Emacs face of the engine: the dynamic module `mailsync-gnus-module`.
//!
//! `mailsync--module-start` watches one mail store, `mailsync--module-watch-imap`
//! one IMAP account; each returns a handle (a user-ptr whose finalizer
//! stops and joins the source's threads). Reports are
//! queued here; the engine's thread wakes Emacs by writing one byte to a pipe
//! process opened with `open_channel`, at most one byte in flight, so nothing
//! runs in Emacs while nothing happens. The pipe's filter calls
//! `mailsync--module-poll`, which drains the queue on Emacs's thread.
//!
//! Errors reach Lisp as signals the module defines, never as panics:
//! `mailsync-setting-error` (an option the module cannot take) and
//! `mailsync-store-error` (the store or account cannot be watched), both
//! kinds of `mailsync-error`, itself a kind of `user-error`. `mailsync--module-version`
//! tells mailsync-gnus.el which interface this build has, so a stale module
//! left by an old build says "rebuild, then restart Emacs" instead of failing
//! with an arity error.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use emacs::{defun, Env, IntoLisp, Result, ResultExt, Value};

use crate::engine::{Engine, Options, Sink};
use crate::groups::GroupMap;
use crate::imap::{
    self, Account, AskSecret, Auth, Endpoint, ImapError, ImapWatch, LocalNames, MailboxStatus, Password,
    Secret, Tls,
};
use crate::naming::{Folder, Layout, NameStyle};

emacs::plugin_is_GPL_compatible!();

/// The interface mailsync-gnus.el talks to: bump it whenever a
/// `mailsync--module-*` function changes its arguments or results.
pub const MODULE_VERSION: i64 = 7;

// The module's errors: `mailsync-error` (a `user-error`) and its kinds.
emacs::define_errors! {
    mailsync_error "mailsync" (user_error)
    mailsync_setting_error "mailsync: a setting is wrong" (mailsync_error)
    mailsync_store_error "mailsync: the store cannot be watched" (mailsync_error)
}

#[emacs::module(
    name = "mailsync-gnus-module",
    defun_prefix = "mailsync-",
    mod_in_name = false
)]
fn init(_env: &Env) -> Result<()> {
    Ok(())
}

/// What the engine's thread hands to Emacs's thread, and the pipe that
/// wakes Emacs to take it.
struct Mailbox {
    /// How the start went, until `poll` takes it: the folders found, or why not.
    started: Mutex<Option<std::result::Result<Vec<Folder>, String>>>,
    folders: Mutex<Vec<Folder>>,
    /// What an IMAP server last said of the mailboxes listed or reported
    /// since the last `poll`, the latest for each.
    statuses: Mutex<HashMap<Folder, MailboxStatus>>,
    warnings: Mutex<Vec<String>>,
    /// An IMAP account's login waits for a password from auth-source:
    /// [`SECRET_WANTED`] or [`SECRET_REFUSED`], until `poll` takes it.
    secret_wanted: AtomicU8,
    /// Set while a wake-up byte is in flight; cleared by `poll` before it drains.
    wake_pending: AtomicBool,
    wake: Mutex<Box<dyn Write + Send>>,
}

const SECRET_WANTED: u8 = 1;
/// Wanted, and the last one given was refused: auth-source's cache will not do.
const SECRET_REFUSED: u8 = 2;

impl Mailbox {
    fn new(wake: Box<dyn Write + Send>) -> Mailbox {
        Mailbox {
            started: Mutex::default(),
            folders: Mutex::default(),
            statuses: Mutex::default(),
            warnings: Mutex::default(),
            secret_wanted: AtomicU8::new(0),
            wake_pending: AtomicBool::new(false),
            wake: Mutex::new(wake),
        }
    }

    fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            // A failed write means the pipe process was deleted: Emacs is
            // stopping this watch, and the queue is dropped with it.
            let _ = lock(&self.wake).write_all(b"!");
        }
    }
}

struct EmacsSink {
    mailbox: Arc<Mailbox>,
    /// Whether Lisp wants the names of every folder found at start-up (for
    /// its start-up check): 10,000 folders give 10,000 strings.
    folders_at_start: bool,
}

impl Sink for EmacsSink {
    fn ready(&mut self, started: std::result::Result<Vec<Folder>, crate::sink::SourceError>) {
        *lock(&self.mailbox.started) = Some(started.map_err(|err| err.to_string()));
        self.mailbox.wake();
    }

    fn changed(&mut self, folders: Vec<Folder>) {
        lock(&self.mailbox.folders).extend(folders);
        self.mailbox.wake();
    }

    fn server_status(&mut self, statuses: Vec<(Folder, MailboxStatus)>) {
        // No wake-up of its own: `ready` or `changed` follows at once.
        lock(&self.mailbox.statuses).extend(statuses);
    }

    fn warning(&mut self, message: String) {
        lock(&self.mailbox.warnings).push(message);
        self.mailbox.wake();
    }

    fn wants_folders_at_start(&self) -> bool {
        self.folders_at_start
    }

    /// Stopped for good after it was ready (a login the server now refuses):
    /// told as a failed start is, so Lisp stops the watch and warns, as
    /// `mailsync idle` exits.
    fn stopped(&mut self, why: crate::sink::SourceError) {
        *lock(&self.mailbox.started) = Some(Err(why.to_string()));
        self.mailbox.wake();
    }
}

/// How long a login waits for Emacs to give a password; then it is tried
/// again later, as when the server is unreachable.
const ASK_TIMEOUT: Duration = Duration::from_secs(60);

/// An IMAP account's password, from auth-source on Emacs's thread: the
/// one read at the start for the first login, then asked for again at each
/// login (a reconnect, a refused OAuth2 token), so a token that expired is
/// replaced by the fresh one auth-source gives.
struct EmacsSecret {
    mailbox: Arc<Mailbox>,
    first: Mutex<Option<Secret>>,
    /// `mailsync--module-give-secret`'s answers; closed when the watch stops.
    answers: Receiver<Option<String>>,
}

impl std::fmt::Debug for EmacsSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<asked of Emacs>")
    }
}

impl AskSecret for EmacsSecret {
    fn ask(&self, account: &str, refused: bool) -> std::result::Result<Secret, ImapError> {
        if !refused {
            if let Some(first) = lock(&self.first).take() {
                return Ok(first);
            }
        }
        // An answer that came after an earlier ask gave up is stale.
        while self.answers.try_recv().is_ok() {}
        let wanted = if refused { SECRET_REFUSED } else { SECRET_WANTED };
        self.mailbox.secret_wanted.store(wanted, Ordering::Release);
        self.mailbox.wake();
        match self.answers.recv_timeout(ASK_TIMEOUT) {
            Ok(Some(secret)) => Ok(Secret::new(secret)),
            Ok(None) => Err(ImapError::Password {
                account: account.to_string(),
                message: "auth-source has none".into(),
                token: false,
            }),
            Err(RecvTimeoutError::Timeout) => Err(ImapError::Unavailable {
                server: "Emacs".into(),
                message: format!("no password from auth-source in {} s", ASK_TIMEOUT.as_secs()),
            }),
            Err(RecvTimeoutError::Disconnected) => Err(ImapError::Stopped),
        }
    }
}

/// What a handle watches.
enum Source {
    Maildir(Engine),
    Imap(ImapWatch),
}

/// The Lisp handle of one watched store or account.
pub struct Watch {
    source: Option<Source>,
    mailbox: Arc<Mailbox>,
    /// Where an IMAP account's password goes when it asks for one.
    secrets: Option<Sender<Option<String>>>,
    /// Folder → the name Gnus shows (the folder part) and its group.
    names: GroupMap,
}

fn millis(value: i64) -> Duration {
    Duration::from_millis(value.max(0) as u64)
}

/// The interface version of this module (see `mailsync--module-version').
#[defun]
fn module_version() -> Result<i64> {
    Ok(MODULE_VERSION)
}

/// This build's version and the defaults it applies when an option is
/// nil: a plist of :version (the package's), :delay-ms, :max-connections,
/// :connections-range (MIN . MAX) and :poll-seconds. mailsync-gnus.el shows
/// them; its tests check that its own defaults agree.
#[defun]
fn module_defaults(env: &Env) -> Result<Value<'_>> {
    let range = imap::MAX_CONNECTIONS_RANGE;
    plist(
        env,
        vec![
            (":version", env!("CARGO_PKG_VERSION").into_lisp(env)?),
            (
                ":delay-ms",
                count(env, crate::engine::DEFAULT_DELAY.as_millis() as u64)?,
            ),
            (":max-connections", count(env, imap::MAX_CONNECTIONS as u64)?),
            (
                ":connections-range",
                env.cons(
                    count(env, *range.start() as u64)?,
                    count(env, *range.end() as u64)?,
                )?,
            ),
            (":poll-seconds", count(env, imap::POLL_SECONDS)?),
        ],
    )
}

/// `(plist-get PLIST KEY)`.
fn option<'e>(env: &'e Env, plist: Value<'e>, key: &str) -> Result<Value<'e>> {
    env.call("plist-get", (plist, env.intern(key)?))
}

fn string_option(env: &Env, plist: Value, key: &str) -> Result<Option<String>> {
    option(env, plist, key)?.into_rust()
}

/// Start watching the mail store ROOT; return a handle at once.
///
/// The watches are set on the engine's thread; `mailsync--module-poll'
/// tells when they are. WAKE is a pipe process whose filter calls
/// `mailsync--module-poll'.
/// OPTIONS is a plist: :layout (a string, maildir++, verbatim or
/// nnmaildir; nil to detect it), :inbox and :separator (how folder names
/// are spelled; nil for INBOX and \".\"), :server (the Gnus server prefix
/// of the store's groups; nil or \"\" for the native method), :utf7 (names
/// on disk are IMAP modified UTF-7, to decode; when absent, yes for an
/// nnimap :server), :delay-ms (the coalescing window),
/// :max-delay-ms (its bound; nil for 10 windows), :report-flags,
/// :folders-at-start (`mailsync--module-poll' names every folder found
/// once the store is watched; without it, none).
#[defun(user_ptr)]
fn module_start(env: &Env, root: String, wake: Value, options: Value) -> Result<Watch> {
    let layout = string_option(env, options, ":layout")?
        .map(|name| name.parse::<Layout>())
        .transpose()
        .or_signal(env, mailsync_setting_error)?;
    let style = NameStyle::new(
        string_option(env, options, ":inbox")?.unwrap_or_else(|| "INBOX".into()),
        string_option(env, options, ":separator")?.unwrap_or_else(|| ".".into()),
    );
    let server = string_option(env, options, ":server")?.unwrap_or_default();
    let utf7 = if env
        .call("plist-member", (options, env.intern(":utf7")?))?
        .is_not_nil()
    {
        option(env, options, ":utf7")?.is_not_nil()
    } else {
        crate::groups::utf7_by_default(&server)
    };
    let coalescing = coalescing(env, options)?;
    let engine_options = Options {
        layout,
        delay: coalescing.delay,
        max_delay: coalescing.max_delay,
        report_flags: coalescing.report_flags,
    };
    let folders_at_start = option(env, options, ":folders-at-start")?.is_not_nil();
    let (mailbox, sink) = sink(env, wake, folders_at_start)?;
    let engine =
        Engine::start(&PathBuf::from(root), engine_options, sink).or_signal(env, mailsync_store_error)?;
    Ok(Watch {
        source: Some(Source::Maildir(engine)),
        mailbox,
        secrets: None,
        names: GroupMap::on_server(style, &server, utf7),
    })
}

/// The queue a source fills, and its sink, which wakes Emacs through WAKE.
fn sink(env: &Env, wake: Value, folders_at_start: bool) -> Result<(Arc<Mailbox>, Box<dyn Sink>)> {
    let mailbox = Arc::new(Mailbox::new(Box::new(env.open_channel(wake)?)));
    let sink = EmacsSink {
        mailbox: Arc::clone(&mailbox),
        folders_at_start,
    };
    Ok((mailbox, Box::new(sink)))
}

/// Start watching an IMAP account; return a handle at once.
///
/// The connections are made on the module's threads;
/// `mailsync--module-poll' tells when every mailbox is watched, and
/// reports mailboxes by their server names (UTF-7 decoded, as nnimap
/// names its groups). WAKE is as for `mailsync--module-start'.
/// ACCOUNT is a plist: :label (how messages name it), :server (the Gnus
/// server prefix of its groups, \"nnimap+NAME\"; \"\" for the native
/// method), :host, :port,
/// :tls ("imaps", "starttls" or "none"), :user, :password (or an OAuth2
/// access token), :auth (nil, or the mechanisms allowed: \"xoauth2\",
/// \"oauthbearer\", \"plain\", \"login\"), :ca-files (PEM files to trust
/// besides the system's), :delay-ms, :max-delay-ms, :report-flags, :max-connections,
/// :poll-seconds.
/// Each later login asks for the password again: `mailsync--module-poll'
/// says so, and `mailsync--module-give-secret' answers.
#[defun(user_ptr)]
fn module_watch_imap(env: &Env, wake: Value, account: Value) -> Result<Watch> {
    let required = |key: &str| -> Result<String> {
        match string_option(env, account, key)? {
            Some(value) => Ok(value),
            None => env.signal(mailsync_setting_error, (format!("the account has no {key}"),)),
        }
    };
    let host = required(":host")?;
    let user = required(":user")?;
    let password = required(":password")?;
    let tls: Tls = required(":tls")?.parse().or_signal(env, mailsync_setting_error)?;
    let port: Option<i64> = option(env, account, ":port")?.into_rust()?;
    let port = match port.map(u16::try_from) {
        Some(Ok(port)) => port,
        Some(Err(_)) => return env.signal(mailsync_setting_error, ("the port is out of range",)),
        None => tls.default_port(),
    };
    let mut ca_files = Vec::new();
    let mut files = option(env, account, ":ca-files")?;
    while files.is_not_nil() {
        ca_files.push(PathBuf::from(env.call("car", [files])?.into_rust::<String>()?));
        files = env.call("cdr", [files])?;
    }
    let label = string_option(env, account, ":label")?.unwrap_or_else(|| format!("{user}@{host}"));
    let server = string_option(env, account, ":server")?.unwrap_or_default();
    let options = imap_options(env, account)?;
    let auth = match string_option(env, account, ":auth")? {
        Some(names) => Auth::from_names(&names).or_signal(env, mailsync_setting_error)?,
        None => Auth::default(),
    };
    let (mailbox, sink) = sink(env, wake, true)?;
    let (secrets, answers) = bounded(1);
    let asker = EmacsSecret {
        mailbox: Arc::clone(&mailbox),
        first: Mutex::new(Some(Secret::new(password))),
        answers,
    };
    let account = Account {
        label,
        endpoint: Endpoint::new(host, port, tls, ca_files).trusting_from("gnutls-trustfiles"),
        user,
        password: Password::Asked(Arc::new(asker)),
        auth,
    };
    let watch = ImapWatch::start(account, options, sink, LocalNames::server_names())
        .or_signal(env, mailsync_store_error)?;
    let style = NameStyle::new("INBOX", "");
    Ok(Watch {
        source: Some(Source::Imap(watch)),
        mailbox,
        secrets: Some(secrets),
        names: GroupMap::on_server(style, &server, true),
    })
}

/// What a store's or an account's plist says of coalescing: :delay-ms,
/// :max-delay-ms (nil: the engine's defaults) and :report-flags.
struct Coalescing {
    delay: Duration,
    max_delay: Option<Duration>,
    report_flags: bool,
}

fn coalescing(env: &Env, plist: Value) -> Result<Coalescing> {
    let delay: Option<i64> = option(env, plist, ":delay-ms")?.into_rust()?;
    let max_delay: Option<i64> = option(env, plist, ":max-delay-ms")?.into_rust()?;
    Ok(Coalescing {
        delay: delay.map_or(crate::engine::DEFAULT_DELAY, millis),
        max_delay: max_delay.map(millis),
        report_flags: option(env, plist, ":report-flags")?.is_not_nil(),
    })
}

/// An IMAP account's watching options from its plist: coalescing,
/// :max-connections and :poll-seconds (nil: the defaults; out of range, an
/// error naming the Emacs variable).
fn imap_options(env: &Env, account: Value) -> Result<imap::Options> {
    let max_connections: Option<i64> = option(env, account, ":max-connections")?.into_rust()?;
    let poll: Option<i64> = option(env, account, ":poll-seconds")?.into_rust()?;
    let range = imap::MAX_CONNECTIONS_RANGE;
    let max_connections = match max_connections.map(|n| usize::try_from(n).ok().filter(|n| range.contains(n)))
    {
        None => imap::MAX_CONNECTIONS,
        Some(Some(n)) => n,
        Some(None) => {
            let message = format!(
                "mailsync-imap-max-connections is {}: give {} to {}",
                max_connections.unwrap_or_default(),
                range.start(),
                range.end()
            );
            return env.signal(mailsync_setting_error, (message,));
        }
    };
    let poll = match poll {
        None => imap::POLL_SECONDS,
        Some(seconds) if seconds >= 1 => seconds as u64,
        Some(seconds) => {
            let message = format!("mailsync-imap-poll-interval is {seconds}: give 1 or more seconds");
            return env.signal(mailsync_setting_error, (message,));
        }
    };
    let coalescing = coalescing(env, account)?;
    Ok(imap::Options {
        delay: coalescing.delay,
        max_delay: coalescing.max_delay,
        report_flags: coalescing.report_flags,
        max_connections,
        poll: Duration::from_secs(poll),
        ..imap::Options::default()
    })
}

/// A folder name for Lisp: a string when it is UTF-8, else a unibyte string
/// of its raw bytes (Lisp decodes it as file names are decoded).
fn name_into_lisp<'e>(env: &'e Env, name: Vec<u8>) -> Result<Value<'e>> {
    match String::from_utf8(name) {
        Ok(text) => text.into_lisp(env),
        Err(err) => err.into_bytes().into_lisp(env),
    }
}

fn list<'e>(env: &'e Env, items: Vec<Value<'e>>) -> Result<Value<'e>> {
    let mut list = ().into_lisp(env)?;
    for item in items.into_iter().rev() {
        list = env.cons(item, list)?;
    }
    Ok(list)
}

/// Take what happened since the last call: a list (FOLDERS WARNINGS START
/// SECRET STATUSES GROUPS).
///
/// FOLDERS is a list of folder names, each once, oldest change first;
/// GROUPS their Gnus groups, in the same order. WARNINGS a list of
/// messages from the watching thread. START is nil, or once: (ready
/// FOLDERS GROUPS) when all watches were set, FOLDERS being every folder
/// found (of an IMAP account, or of a store started with
/// :folders-at-start; none otherwise) and GROUPS theirs, or (failed
/// MESSAGE) when the store cannot be watched, or stopped for good (the
/// watch has stopped then). SECRET is nil, or `wanted' when an IMAP
/// account's login waits for its password (`mailsync--module-give-secret'),
/// or `refused' when it waits because the last one was refused. STATUSES,
/// for an IMAP account, says what the server last said of the mailboxes
/// of START or FOLDERS: a list of (GROUP UIDVALIDITY UIDNEXT MESSAGES
/// UNSEEN), each number nil when the server gave none.
#[defun]
fn module_poll<'e>(env: &'e Env, watch: &Watch) -> Result<Value<'e>> {
    watch.mailbox.wake_pending.store(false, Ordering::Release);
    let start = match lock(&watch.mailbox.started).take() {
        None => ().into_lisp(env)?,
        Some(Ok(folders)) => {
            let (names, groups) = names_and_groups(env, watch, folders)?;
            env.list((env.intern("ready")?, names, groups))?
        }
        Some(Err(message)) => env.list((env.intern("failed")?, message))?,
    };
    let folders = std::mem::take(&mut *lock(&watch.mailbox.folders));
    let warnings = std::mem::take(&mut *lock(&watch.mailbox.warnings));
    let mut seen = HashSet::new();
    let folders: Vec<Folder> = folders
        .into_iter()
        .filter(|folder| seen.insert(folder.clone()))
        .collect();
    let (names, groups) = names_and_groups(env, watch, folders)?;
    let warnings = warnings
        .into_iter()
        .map(|message| message.into_lisp(env))
        .collect::<Result<Vec<_>>>()?;
    let secret = match watch.mailbox.secret_wanted.swap(0, Ordering::AcqRel) {
        SECRET_WANTED => env.intern("wanted")?,
        SECRET_REFUSED => env.intern("refused")?,
        _ => ().into_lisp(env)?,
    };
    let statuses = std::mem::take(&mut *lock(&watch.mailbox.statuses))
        .into_iter()
        .map(|(folder, status)| {
            let number = |value: Option<u32>| value.map(i64::from);
            env.list((
                name_into_lisp(env, watch.names.group_of(&folder))?,
                number(status.uid_validity),
                number(status.uid_next),
                number(status.messages),
                number(status.unseen),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    env.list((
        names,
        list(env, warnings)?,
        start,
        secret,
        list(env, statuses)?,
        groups,
    ))
}

/// The names Gnus shows for `folders`, and their groups, as two lists.
fn names_and_groups<'e>(env: &'e Env, watch: &Watch, folders: Vec<Folder>) -> Result<(Value<'e>, Value<'e>)> {
    let mut names = Vec::with_capacity(folders.len());
    let mut groups = Vec::with_capacity(folders.len());
    for folder in &folders {
        names.push(name_into_lisp(env, watch.names.folder_name(folder))?);
        groups.push(name_into_lisp(env, watch.names.group_of(folder))?);
    }
    Ok((list(env, names)?, list(env, groups)?))
}

/// Give WATCH's IMAP account the password (or token) SECRET it asked for;
/// nil when there is none (the account then stops with that error).
#[defun]
fn module_give_secret(watch: &Watch, secret: Option<String>) -> Result<()> {
    if let Some(secrets) = &watch.secrets {
        // Full: an answer is already waiting; this one is a repeat.
        let _ = secrets.try_send(secret);
    }
    Ok(())
}

/// A queue's lock, even when a thread panicked holding it: each queue is
/// whole between two of its operations, so what it holds is still good.
fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Stop WATCH: its thread is joined and its descriptors closed.
#[defun]
fn module_stop(watch: &mut Watch) -> Result<()> {
    // A login waiting for a password hears that the watch stops.
    watch.secrets = None;
    match watch.source.take() {
        Some(Source::Maildir(engine)) => engine.stop(),
        Some(Source::Imap(account)) => account.stop(),
        None => {}
    }
    Ok(())
}

/// Return WATCH's counters as a plist.
///
/// Keys: :running :root :layout :folders :watches :unwatched :events
/// :ignored :reports :root-missing :last-error; for an IMAP account
/// :running :imap :connected :how :mailboxes :reconnects :last-error.
#[defun]
fn module_stats<'e>(env: &'e Env, watch: &Watch) -> Result<Value<'e>> {
    let engine = match watch.source.as_ref() {
        None => return env.list((env.intern(":running")?, ())),
        Some(Source::Imap(account)) => return imap_stats(env, account),
        Some(Source::Maildir(engine)) => engine,
    };
    let stats = engine.stats();
    plist(
        env,
        vec![
            (":running", flag(env, true)?),
            (
                ":root",
                engine.root().to_string_lossy().into_owned().into_lisp(env)?,
            ),
            (":layout", engine.layout().name().into_lisp(env)?),
            (":folders", count(env, stats.folders)?),
            (":watches", count(env, stats.watches)?),
            (":unwatched", count(env, stats.unwatched)?),
            (":events", count(env, stats.events_seen)?),
            (":ignored", count(env, stats.events_ignored)?),
            (":reports", count(env, stats.reports)?),
            (":root-missing", flag(env, stats.root_missing)?),
            (":last-error", stats.last_error.into_lisp(env)?),
        ],
    )
}

fn imap_stats<'e>(env: &'e Env, account: &ImapWatch) -> Result<Value<'e>> {
    let health = account.health();
    plist(
        env,
        vec![
            (":running", flag(env, true)?),
            (":imap", flag(env, true)?),
            (":connected", flag(env, health.connected)?),
            (":how", health.how.into_lisp(env)?),
            (":mailboxes", count(env, health.mailboxes as u64)?),
            (":reconnects", count(env, health.reconnects)?),
            (":last-error", health.last_error.into_lisp(env)?),
        ],
    )
}

/// A plist of `pairs`, keys as keywords.
fn plist<'e>(env: &'e Env, pairs: Vec<(&str, Value<'e>)>) -> Result<Value<'e>> {
    let mut items = Vec::with_capacity(pairs.len() * 2);
    for (key, value) in pairs {
        items.push(env.intern(key)?);
        items.push(value);
    }
    list(env, items)
}

fn flag(env: &Env, on: bool) -> Result<Value<'_>> {
    if on {
        env.intern("t")
    } else {
        ().into_lisp(env)
    }
}

fn count(env: &Env, n: u64) -> Result<Value<'_>> {
    i64::try_from(n).unwrap_or(i64::MAX).into_lisp(env)
}

/// Rescan WATCH's whole store and report every folder once (for an IMAP
/// account, every mailbox). This is what happens by itself when the
/// kernel's event queue overflows.
#[defun]
fn module_rescan(watch: &Watch) -> Result<()> {
    match watch.source.as_ref() {
        Some(Source::Maildir(engine)) => engine.rescan(),
        Some(Source::Imap(account)) => account.rescan(),
        None => {}
    }
    Ok(())
}
