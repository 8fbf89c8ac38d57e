//! mswatch's job, for `mailsync run`: its configuration file
//! ([`config`]) and when it syncs what ([`schedule`]).

pub mod config;
pub mod schedule;
