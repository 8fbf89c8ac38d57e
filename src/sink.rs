//! What every source of changes (a maildir watched with inotify, an IMAP
//! account watched over the network) tells the face that runs it: the Emacs
//! module, `mailsync watch` or `mailsync idle`.

use crate::imap::MailboxStatus;
use crate::naming::Folder;

/// Why a source could not start, or stopped for good: a value that says what
/// to do in its `Display`.
pub type SourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Receives a source's reports, on the source's own thread.
pub trait Sink: Send + 'static {
    /// Called once, first: once every folder is watched, the folders found
    /// (a source may give none to a sink that does not
    /// [`Sink::wants_folders_at_start`]), or why the source cannot watch (it
    /// has stopped then).
    fn ready(&mut self, started: Result<Vec<Folder>, SourceError>);
    /// Whether [`Sink::ready`] needs every folder found at start-up: a list
    /// as long as the store, which a sink that checks nothing at start-up
    /// does without (it is given an empty list).
    fn wants_folders_at_start(&self) -> bool {
        true
    }
    /// Folders that changed, oldest change first, each once.
    fn changed(&mut self, folders: Vec<Folder>);
    /// What an IMAP server last said of mailboxes (UIDVALIDITY, UIDNEXT,
    /// MESSAGES, UNSEEN), told just before [`Sink::ready`] for every mailbox
    /// listed and before [`Sink::changed`] for the mailboxes it names: enough
    /// for a mail reader to update a count without asking the server again.
    /// Maildir sources never call it; most sinks need only the names.
    fn server_status(&mut self, _statuses: Vec<(Folder, MailboxStatus)>) {}
    /// Something went wrong while running; watching goes on.
    fn warning(&mut self, message: String);
    /// How the source watches, said once when it is ready (the command
    /// line prints it; Emacs shows it in `mailsync-status` instead).
    fn info(&mut self, _message: String) {}
    /// The source stopped for good after it was ready (an IMAP account
    /// whose login the server now refuses). By default a warning.
    fn stopped(&mut self, why: SourceError) {
        self.warning(format!("stopped: {why}"));
    }
}
