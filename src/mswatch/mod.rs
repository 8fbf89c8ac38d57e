//! mswatch's job: its configuration file ([`config`]) and when it syncs
//! what ([`schedule`]), for `mailsync run`; the arguments it appends to
//! the sync command ([`sync_args`]), for `mailsync sync`.

pub mod config;
pub mod schedule;
pub mod sync_args;
