//! mailsync: realtime mail for Gnus.
//!
//! One engine ([`engine`]) watches a mail store with inotify and reports the
//! folders whose mail changed, and [`imap`] watches an account on a server
//! (NOTIFY or IDLE); thin faces use them: the Emacs dynamic module
//! (`mailsync-gnus-module`), `mailsync watch` and `mailsync idle` (mswatch's
//! watcher protocol), `mailsync sync` (mswatch's sync program) and
//! `mailsync run` (mswatch's loop, with [`mswatch`]'s configuration and
//! schedule).

pub mod backend;
pub mod coalesce;
pub mod detect;
mod emacs_module;
pub mod engine;
pub mod groups;
pub mod imap;
pub mod ini;
pub mod lock;
pub mod mswatch;
pub mod naming;
pub mod quote;
pub mod sink;
pub mod stop;
