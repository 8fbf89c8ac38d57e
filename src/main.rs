//! `mailsync`: mswatch's watcher and sync program for mail read in Gnus.
//!
//! Invoked as `mailsync_offlineimap`, `mailsync_offlineimap_local` or
//! `mailsync_gnus_watch` (links made by `make install`), it behaves as the
//! rpatterson.mailsync 0.4 scripts of those names did.

mod cli;

fn main() {
    one_malloc_arena();
    std::process::exit(cli::run(std::env::args_os().collect()));
}

/// Makes glibc's malloc serve every thread from one arena. By default each
/// thread that allocates gets an arena of its own, and a watcher's threads
/// (notify's four, the engine's, the workers that add watches in parallel at
/// start-up) each keep their share of the start-up peak; one arena keeps
/// the peak resident size lower (`make bench`'s start-up table shows it).
/// None of these threads allocates often enough after start-up for the
/// shared lock to show.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's settings; called before any
    // thread is made.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
