//! mswatch's job: its configuration file ([`config`]), or one derived
//! from a sync program's ([`derive`]), and when it syncs what
//! ([`schedule`]), for `mailsync run`; the arguments it appends to the
//! sync command ([`sync_args`]), for `mailsync sync`.

pub mod config;
pub mod derive;
pub mod schedule;
pub mod sync_args;
