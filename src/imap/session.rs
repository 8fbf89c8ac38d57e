//! The connections of one account: log in, list the mailboxes with their
//! status, then watch them with NOTIFY on this one connection, or with IDLE
//! connections and STATUS polling. Any failure ends the session; the
//! supervisor makes a new one after a back-off, and the listing it starts
//! with tells the coordinator exactly what changed meanwhile.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use imap_proto::{MailboxDatum, NameAttribute, Response, Status};
use rustls::ClientConfig;

use super::backoff::{jitter, Backoff};
use super::conn::{bye, mailbox_name, quoted, Connection, Login, RESPONSE_TIMEOUT};
use super::error::ImapError;
use super::status::{status_items, MailboxStatus};
use super::{Account, Options, Report, Secret};
use crate::stop::{Stop, Waker};

/// What a session needs besides its connection.
struct Context<'a> {
    account: &'a Account,
    options: &'a Options,
    tls: Option<Arc<ClientConfig>>,
    reports: &'a Sender<Report>,
    /// The server offers NOTIFY but refused it once: IDLE from then on.
    notify_refused: std::cell::Cell<bool>,
}

impl Context<'_> {
    fn report(&self, report: Report) {
        let _ = self.reports.send(report);
    }

    /// A connection, logged in. An OAuth2 token the server refuses is
    /// asked for once more (the token helper or auth-source gives a fresh
    /// one if it had expired); a second refusal stops the account.
    fn connect(&self, waker: &mut Waker) -> Result<Connection, ImapError> {
        let account = self.account;
        let token = account.auth.takes_token();
        let secret = account.password.fetch(&account.label, false, token, waker)?;
        let mut link = Connection::open(&account.endpoint, self.tls.as_ref(), waker)?;
        let login = |link: &mut Connection, waker: &mut Waker, secret: &Secret| {
            let login = Login {
                account: &account.label,
                user: &account.user,
                secret: secret.expose(),
                auth: &account.auth,
            };
            link.login(waker, &account.endpoint, &login)
        };
        match login(&mut link, waker, &secret) {
            Err(ImapError::Auth { .. }) if token => {
                let fresh = account.password.fetch(&account.label, true, token, waker)?;
                login(&mut link, waker, &fresh)?;
            }
            result => {
                result?;
            }
        }
        if !link.has_capability("IMAP4REV1") {
            link.refresh_capabilities(waker)?;
        }
        Ok(link)
    }
}

/// The supervisor's thread: sessions, one after the other, until stopped
/// or refused for good.
pub(super) fn supervise(account: &Account, options: &Options, reports: &Sender<Report>, stop: &Arc<Stop>) {
    let fail = |error: ImapError| {
        let _ = reports.send(Report::Failed(error));
    };
    let mut waker = match Waker::new(Arc::clone(stop)) {
        Ok(waker) => waker,
        Err(err) => return fail(ImapError::lost(&account.endpoint.server(), err)),
    };
    let tls = match account.endpoint.tls_config() {
        Ok(tls) => tls,
        Err(err) => return fail(err),
    };
    let context = Context {
        account,
        options,
        tls,
        reports,
        notify_refused: Default::default(),
    };
    reconnecting(
        &mut waker,
        |waker, backoff| session(&context, waker, backoff),
        |error| match error {
            error if error.is_permanent() => {
                fail(error);
                AfterLoss::End
            }
            ImapError::ClockJumped => {
                context.report(Report::Disconnected(format!(
                    "{}: the clock jumped or the machine resumed; connecting again",
                    account.label
                )));
                AfterLoss::Now
            }
            error => AfterLoss::Wait(error),
        },
        |error, wait| {
            context.report(Report::Disconnected(format!(
                "{}: {error}; connecting again in {:.1} s",
                account.label,
                wait.as_secs_f64()
            )))
        },
    );
}

/// What a loop of sessions does after one ended with an error.
enum AfterLoss {
    /// Give up (the judge has said why).
    End,
    /// Connect again at once.
    Now,
    /// Connect again after the back-off's wait, said with this error.
    Wait(ImapError),
}

/// Runs `session` again and again, each failure judged by `judge`, until
/// a stop; before connecting again after a wait, `say` tells the error and
/// the wait. A session gets the back-off to reset once it is up.
fn reconnecting(
    waker: &mut Waker,
    mut session: impl FnMut(&mut Waker, &mut Backoff) -> Result<Never, ImapError>,
    mut judge: impl FnMut(ImapError) -> AfterLoss,
    mut say: impl FnMut(&ImapError, Duration),
) {
    let mut backoff = Backoff::default();
    loop {
        let error = match session(waker, &mut backoff) {
            Ok(never) => match never {},
            Err(ImapError::Stopped) => return,
            Err(error) => error,
        };
        match judge(error) {
            AfterLoss::End => return,
            AfterLoss::Now => {}
            AfterLoss::Wait(error) => {
                let wait = backoff.next(jitter(), Instant::now());
                say(&error, wait);
                if waker.sleep(wait) {
                    return;
                }
            }
        }
    }
}

enum Never {}

fn session(context: &Context, waker: &mut Waker, backoff: &mut Backoff) -> Result<Never, ImapError> {
    let mut link = context.connect(waker)?;
    if context.options.strip_namespace && link.has_capability("NAMESPACE") {
        if let Some(prefix) = link.personal_namespace(waker)? {
            context.report(Report::Namespace(prefix));
        }
    }
    let (listing, delimiter) = list(context, &mut link, waker)?;
    let names: Vec<String> = listing.iter().map(|(name, _)| name.clone()).collect();
    context.report(Report::Listing(listing, delimiter.clone()));
    if context.options.use_notify && link.has_capability("NOTIFY") && !context.notify_refused.get() {
        match set_notify(context, &mut link, waker) {
            Ok(()) => return notify_session(context, link, waker, backoff, delimiter),
            // Offered and refused: IDLE instead, now and after reconnects,
            // rather than a new login every few seconds.
            Err(ImapError::Refused { message, .. }) => {
                context.notify_refused.set(true);
                context.report(Report::Warning(format!(
                    "{}: the server offers NOTIFY but refused it ({message}); watching with IDLE instead",
                    context.account.label
                )));
            }
            Err(err) => return Err(err),
        }
    }
    idle_session(context, link, waker, backoff, names, delimiter)
}

/// Mailboxes with their status, as the server listed them.
type Listing = Vec<(String, MailboxStatus)>;

/// Every selectable mailbox the selection takes, with its status: one
/// round trip with LIST-STATUS, else LIST then all STATUS commands at once.
fn list(
    context: &Context,
    link: &mut Connection,
    waker: &mut Waker,
) -> Result<(Listing, Option<String>), ImapError> {
    let options = context.options;
    let items = status_items(link.has_capability("CONDSTORE"));
    let list_status = link.has_capability("LIST-STATUS");
    let command = if list_status {
        format!("LIST \"\" \"*\" RETURN (STATUS {items})")
    } else {
        "LIST \"\" \"*\"".to_string()
    };
    // A notification can come in the middle of the listing's answer: a
    // rename's (`* LIST … ("OLDNAME" …)`, which imap-proto cannot read) then
    // shows as an untagged BAD, and the listing may predate it: list again.
    let mut attempts = 0;
    let (responses, _) = loop {
        let (responses, done) = link.command(waker, &command)?;
        attempts += 1;
        let interrupted = responses.iter().any(|response| {
            matches!(
                response,
                Response::Data {
                    status: Status::Bad,
                    ..
                }
            )
        });
        if !interrupted || attempts == 3 {
            break (responses, done);
        }
    };
    let Listed {
        names,
        refused,
        delimiter,
        mut statuses,
    } = listed(responses, options);
    for name in refused {
        context.report(Report::Unusable(name));
    }
    if !list_status {
        statuses = self::statuses(link, waker, &names)?;
    }
    Ok((with_status(names, statuses), delimiter))
}

/// What a LIST said: the selectable mailboxes the selection takes, the
/// server's delimiter, and the statuses LIST-STATUS put among them.
struct Listed {
    names: Vec<String>,
    /// Names no folder can have (empty, or holding a NUL), as sent.
    refused: Vec<String>,
    delimiter: Option<String>,
    statuses: HashMap<String, MailboxStatus>,
}

fn listed(responses: Vec<Response<'static>>, options: &Options) -> Listed {
    let mut listed = Listed {
        names: Vec::new(),
        refused: Vec::new(),
        delimiter: None,
        statuses: HashMap::new(),
    };
    for response in responses {
        match response {
            Response::MailboxData(MailboxDatum::List(data)) => {
                if listed.delimiter.is_none() {
                    listed.delimiter = data.delimiter.as_deref().map(str::to_string);
                }
                let unselectable = data.name_attributes.iter().any(is_unselectable);
                let name = mailbox_name(&data.name);
                if unselectable || !options.selection.contains(&name, data.delimiter.as_deref()) {
                    continue;
                }
                if name.is_empty() || name.contains('\0') {
                    listed.refused.push(name);
                } else {
                    listed.names.push(name);
                }
            }
            Response::MailboxData(MailboxDatum::Status { mailbox, status }) => {
                listed
                    .statuses
                    .insert(mailbox_name(&mailbox), MailboxStatus::from_attributes(&status));
            }
            _ => {}
        }
    }
    listed
}

/// The status of each of `names`: every STATUS command sent at once.
fn statuses(
    link: &mut Connection,
    waker: &mut Waker,
    names: &[String],
) -> Result<HashMap<String, MailboxStatus>, ImapError> {
    let items = status_items(link.has_capability("CONDSTORE"));
    let commands: Vec<String> = names
        .iter()
        .filter_map(|name| quoted(name).map(|name| format!("STATUS {name} {items}")))
        .collect();
    let mut found = HashMap::new();
    for response in link.pipeline(waker, &commands)? {
        if let Response::MailboxData(MailboxDatum::Status { mailbox, status }) = response {
            found.insert(mailbox_name(&mailbox), MailboxStatus::from_attributes(&status));
        }
    }
    Ok(found)
}

/// Names with their status where known.
fn with_status(names: Vec<String>, mut statuses: HashMap<String, MailboxStatus>) -> Listing {
    names
        .into_iter()
        .map(|name| {
            let status = statuses.remove(&name).unwrap_or_default();
            (name, status)
        })
        .collect()
}

fn is_unselectable(attribute: &NameAttribute) -> bool {
    match attribute {
        NameAttribute::NoSelect => true,
        NameAttribute::Extension(name) => name.eq_ignore_ascii_case("\\NonExistent"),
        _ => false,
    }
}

/// Reports what one response of a NOTIFY connection says; true when the
/// mailboxes must be listed again: a mailbox was created, deleted or renamed
/// (`* LIST`; a rename may come with OLDNAME data, and Dovecot sends it only
/// with the next event), or a response could not be read.
fn notified(
    context: &Context,
    response: Response<'static>,
    delimiter: Option<&str>,
) -> Result<bool, ImapError> {
    match response {
        Response::MailboxData(MailboxDatum::Status { mailbox, status }) => {
            let mailbox = mailbox_name(&mailbox);
            if context.options.selection.contains(&mailbox, delimiter) {
                context.report(Report::Status(mailbox, MailboxStatus::from_attributes(&status)));
            }
            Ok(false)
        }
        Response::MailboxData(MailboxDatum::List(_)) => Ok(true),
        Response::Data {
            status: Status::Bye,
            outcome,
        } => Err(bye(
            &context.account.endpoint.server(),
            outcome.information.as_deref(),
        )),
        Response::Data {
            status: Status::Bad, ..
        } => Ok(true),
        // The server stopped notifying: a new connection sets NOTIFY
        // afresh (a second NOTIFY SET on one connection leaves Dovecot
        // 2.3 silent) and its listing reports what changed.
        Response::Data { outcome, .. }
            if outcome
                .information
                .as_deref()
                .is_some_and(|text| text.contains("NOTIFICATIONOVERFLOW")) =>
        {
            Err(ImapError::lost(
                &context.account.endpoint.server(),
                "the server dropped notifications (NOTIFICATIONOVERFLOW)",
            ))
        }
        _ => Ok(false),
    }
}

fn notify_session(
    context: &Context,
    mut link: Connection,
    waker: &mut Waker,
    backoff: &mut Backoff,
    delimiter: Option<String>,
) -> Result<Never, ImapError> {
    context.report(Report::Ready {
        how: "NOTIFY on one connection".into(),
    });
    backoff.up(Instant::now());
    loop {
        let tag = begin_idle(&mut link, waker)?;
        let renew_at = Instant::now() + context.options.idle_renewal;
        let mut resync = false;
        while let Some(response) = link.next(waker, renew_at)? {
            if let Response::Done { .. } = response {
                return Err(ImapError::lost(link.server(), "the server ended IDLE"));
            }
            if notified(context, response, delimiter.as_deref())? {
                resync = true;
                break;
            }
        }
        link.send_line(b"DONE")?;
        let (responses, _) = link.finish(waker, &tag)?;
        for response in responses {
            resync |= notified(context, response, delimiter.as_deref())?;
        }
        if resync {
            // The listing tells the coordinator which mailboxes are new,
            // gone or changed.
            let (listing, given) = list(context, &mut link, waker)?;
            context.report(Report::Listing(listing, given));
        }
    }
}

fn set_notify(context: &Context, link: &mut Connection, waker: &mut Waker) -> Result<(), ImapError> {
    let events = "MessageNew MessageExpunge MailboxName";
    if context.options.report_flags {
        let with_flags = format!("NOTIFY SET (personal ({events} FlagChange))");
        match link.command(waker, &with_flags) {
            Ok(_) => return Ok(()),
            Err(ImapError::Refused { message, .. }) => context.report(Report::Warning(format!(
                "{}: the server does not notify flag changes ({message}); reporting new and removed messages only",
                context.account.label
            ))),
            Err(err) => return Err(err),
        }
    }
    link.command(waker, &format!("NOTIFY SET (personal ({events}))"))?;
    Ok(())
}

/// Sends IDLE and waits for the server's go-ahead.
fn begin_idle(link: &mut Connection, waker: &mut Waker) -> Result<String, ImapError> {
    let tag = link.send_command("IDLE")?;
    loop {
        match link.next(waker, Instant::now() + RESPONSE_TIMEOUT)? {
            Some(Response::Continue(_)) => return Ok(tag),
            Some(Response::Done { outcome, .. }) => {
                return Err(ImapError::Refused {
                    command: "IDLE".into(),
                    message: outcome.information.unwrap_or_default().into_owned(),
                })
            }
            Some(_) => {}
            None => return Err(ImapError::lost(link.server(), "no answer to IDLE")),
        }
    }
}

/// What an IDLE connection tells its session.
enum LinkNews {
    /// Its mailbox is watched.
    Idling,
    /// The server refused one more connection: its mailbox is polled.
    Refused(String),
}

/// How often the poller lists the mailboxes while a new one could still
/// get an IDLE connection of its own: a mailbox made meanwhile is
/// reported, and watched, within about this. Without a spare connection
/// it is listed with the STATUS polls.
const LIST_PERIOD: Duration = Duration::from_secs(1);

/// The IDLE connections of one session, each on a thread of its own;
/// stopped and joined however the session ends.
struct IdleLinks {
    stop: Arc<Stop>,
    news: Sender<LinkNews>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl IdleLinks {
    /// Starts one on `mailbox`.
    fn start(&mut self, context: &Context, mailbox: &str) -> std::io::Result<()> {
        let (account, options, tls, reports) = (
            context.account.clone(),
            context.options.clone(),
            context.tls.clone(),
            context.reports.clone(),
        );
        let (stop, news, mailbox) = (Arc::clone(&self.stop), self.news.clone(), mailbox.to_string());
        let thread = thread::Builder::new()
            .name("mailsync-imap-idle".into())
            .spawn(move || {
                let context = Context {
                    account: &account,
                    options: &options,
                    tls,
                    reports: &reports,
                    notify_refused: Default::default(),
                };
                idle_link(&context, &mailbox, &stop, &news);
            })?;
        self.threads.push(thread);
        Ok(())
    }
}

impl Drop for IdleLinks {
    fn drop(&mut self) {
        self.stop.stop();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Without NOTIFY: IDLE connections for the first mailboxes (INBOX first),
/// STATUS polling of the rest on this one, which also lists the mailboxes
/// to see new and deleted ones.
fn idle_session(
    context: &Context,
    mut link: Connection,
    waker: &mut Waker,
    backoff: &mut Backoff,
    mut names: Vec<String>,
    delimiter: Option<String>,
) -> Result<Never, ImapError> {
    names.sort_by_key(|name| !name.eq_ignore_ascii_case("INBOX"));
    let idle_count = names.len().min(context.options.max_connections.saturating_sub(1));
    let mut polled: HashSet<String> = names.split_off(idle_count).into_iter().collect();
    let mut idling: HashSet<String> = names.into_iter().collect();
    let lost = |err| ImapError::lost(link.server(), err);
    let (news, news_rx) = unbounded();
    let mut links = IdleLinks {
        stop: Stop::new().map_err(lost)?,
        news,
        threads: Vec::new(),
    };
    for mailbox in &idling {
        links.start(context, mailbox).map_err(lost)?;
    }
    let mut waiting = idling.len();
    let deadline = Instant::now() + 2 * RESPONSE_TIMEOUT;
    while waiting > 0 {
        match news_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(LinkNews::Idling) => waiting -= 1,
            Ok(LinkNews::Refused(mailbox)) => {
                waiting -= 1;
                idling.remove(&mailbox);
                polled.insert(mailbox);
            }
            Err(_) if waker.is_stopped() => return Err(ImapError::Stopped),
            Err(_) if Instant::now() > deadline => break,
            Err(_) => {}
        }
    }
    context.report(Report::Ready {
        how: format!(
            "IDLE on {} connections, STATUS every {} s for {}",
            idling.len(),
            context.options.poll.as_secs(),
            polled.len()
        ),
    });
    backoff.up(Instant::now());
    let watched = Watched { idling, polled };
    poll_loop(context, &mut link, waker, &news_rx, links, watched, delimiter)
}

/// Which mailboxes an IDLE connection watches, and which are polled.
struct Watched {
    idling: HashSet<String>,
    polled: HashSet<String>,
}

fn poll_loop(
    context: &Context,
    link: &mut Connection,
    waker: &mut Waker,
    news: &Receiver<LinkNews>,
    mut links: IdleLinks,
    mut watched: Watched,
    mut delimiter: Option<String>,
) -> Result<Never, ImapError> {
    let options = context.options;
    let mut next_status = Instant::now() + options.poll;
    loop {
        let spare = watched.idling.len() + 1 < options.max_connections;
        let listing_due = match spare {
            true => (Instant::now() + LIST_PERIOD).min(next_status),
            false => next_status,
        };
        if waker.sleep(listing_due.saturating_duration_since(Instant::now())) {
            return Err(ImapError::Stopped);
        }
        for told in news.try_iter() {
            if let LinkNews::Refused(mailbox) = told {
                watched.idling.remove(&mailbox);
                watched.polled.insert(mailbox);
            }
        }
        // The listing sees new and deleted mailboxes. A new one's status
        // is asked at once (what changes from then on is news), then it
        // gets an IDLE connection while one is spare. STATUS of the polled
        // ones every `poll`.
        let (responses, _) = link.command(waker, "LIST \"\" \"*\"")?;
        let listed = listed(responses, options);
        delimiter = delimiter.or(listed.delimiter);
        let present: HashSet<&String> = listed.names.iter().collect();
        watched.polled.retain(|name| present.contains(name));
        let new: Vec<String> = listed
            .names
            .iter()
            .filter(|name| !watched.idling.contains(*name) && !watched.polled.contains(*name))
            .cloned()
            .collect();
        let mut asked = new.clone();
        if Instant::now() >= next_status {
            next_status = Instant::now() + options.poll;
            asked.extend(watched.polled.iter().cloned());
        }
        let found = match asked.is_empty() {
            true => HashMap::new(),
            false => statuses(link, waker, &asked)?,
        };
        context.report(Report::Listing(
            with_status(listed.names, found),
            delimiter.clone(),
        ));
        for name in new {
            if watched.idling.len() + 1 < options.max_connections && links.start(context, &name).is_ok() {
                watched.idling.insert(name);
            } else {
                watched.polled.insert(name);
            }
        }
    }
}

/// One IDLE connection on one mailbox, reconnecting by itself.
fn idle_link(context: &Context, mailbox: &str, stop: &Arc<Stop>, news: &Sender<LinkNews>) {
    let Ok(mut waker) = Waker::new(Arc::clone(stop)) else {
        let _ = news.send(LinkNews::Refused(mailbox.to_string()));
        return;
    };
    let told = Cell::new(false);
    reconnecting(
        &mut waker,
        |waker, backoff| idle_on(context, mailbox, waker, &told, news, backoff),
        |error| match error {
            ImapError::Unavailable { .. } if !told.get() => {
                let _ = news.send(LinkNews::Refused(mailbox.to_string()));
                AfterLoss::End
            }
            error if error.is_permanent() => {
                context.report(Report::Failed(error));
                AfterLoss::End
            }
            ImapError::ClockJumped => AfterLoss::Now,
            error => AfterLoss::Wait(error),
        },
        |error, wait| {
            context.report(Report::LinkLost(format!(
                "{} ({mailbox}): {error}; connecting again in {:.1} s",
                context.account.label,
                wait.as_secs_f64()
            )))
        },
    );
}

fn idle_on(
    context: &Context,
    mailbox: &str,
    waker: &mut Waker,
    told: &Cell<bool>,
    news: &Sender<LinkNews>,
    backoff: &mut Backoff,
) -> Result<Never, ImapError> {
    let quoted_name = quoted(mailbox).ok_or_else(|| ImapError::Refused {
        command: "EXAMINE".into(),
        message: format!("the mailbox name {mailbox:?} holds a line break"),
    })?;
    let mut link = context.connect(waker)?;
    let examine = |link: &mut Connection, waker: &mut Waker| -> Result<(), ImapError> {
        let (responses, _) = link.command(waker, &format!("EXAMINE {quoted_name}"))?;
        context.report(Report::Status(
            mailbox.to_string(),
            MailboxStatus::from_examine(&responses),
        ));
        Ok(())
    };
    examine(&mut link, waker)?;
    backoff.up(Instant::now());
    if !told.replace(true) {
        let _ = news.send(LinkNews::Idling);
    }
    loop {
        let tag = begin_idle(&mut link, waker)?;
        let renew_at = Instant::now() + context.options.idle_renewal;
        let mut moved = false;
        while let Some(response) = link.next(waker, renew_at)? {
            match response {
                Response::MailboxData(MailboxDatum::Exists(_))
                | Response::Expunge(_)
                | Response::Vanished { .. } => {
                    moved = true;
                    break;
                }
                Response::Fetch(..) if context.options.report_flags => {
                    context.report(Report::Changed(mailbox.to_string()));
                }
                Response::Data {
                    status: Status::Bye,
                    outcome,
                } => return Err(bye(link.server(), outcome.information.as_deref())),
                Response::Done { .. } => return Err(ImapError::lost(link.server(), "the server ended IDLE")),
                _ => {}
            }
        }
        link.send_line(b"DONE")?;
        link.finish(waker, &tag)?;
        if moved {
            // The new UIDNEXT and count, so a reconnect compares rightly.
            examine(&mut link, waker)?;
        }
    }
}
