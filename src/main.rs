//! `mailsync`: mswatch's watcher and sync program for mail read in Gnus.
//!
//! Invoked as `mailsync_offlineimap`, `mailsync_offlineimap_local` or
//! `mailsync_gnus_watch` (links made by `make install`), it behaves as the
//! rpatterson.mailsync 0.4 scripts of those names did.

mod cli;

fn main() {
    std::process::exit(cli::run(std::env::args_os().collect()));
}
