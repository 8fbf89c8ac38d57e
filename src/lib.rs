//! mailsync: realtime mail for Gnus.
//!
//! One engine ([`engine`]) watches a mail store with inotify and reports the
//! folders whose mail changed; three thin faces use it: the Emacs dynamic
//! module (`mailsync-gnus-module`), `mailsync watch` (mswatch's watcher
//! protocol) and `mailsync sync` (mswatch's sync program).

pub mod backend;
pub mod classify;
pub mod coalesce;
pub mod detect;
mod emacs_module;
pub mod engine;
pub mod groups;
pub mod imap;
pub mod lock;
pub mod naming;
pub mod quote;
pub mod source;
pub mod specs;
