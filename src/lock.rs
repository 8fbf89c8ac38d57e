//! A per-account lock that waits, so that two syncs of one account started
//! close together run one after the other instead of the second failing
//! ("Could not lock account").

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

/// Held while a sync of one account runs; released when dropped.
#[derive(Debug)]
pub struct AccountLock {
    _file: File,
}

fn lock_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

fn lock_path(backend: &str, account: &str) -> PathBuf {
    let account: String = account
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    lock_dir().join(format!("mailsync-{uid}-{backend}-{account}.lock"))
}

/// Waits up to `timeout` for the lock of `account`.
pub fn lock_account(backend: &str, account: &str, timeout: Duration) -> io::Result<AccountLock> {
    let path = lock_path(backend, account);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: the descriptor is open for the life of `file`.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(AccountLock { _file: file });
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "another sync of account {account} still runs after {} s ({})",
                    timeout.as_secs(),
                    path.display()
                ),
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_waits_for_the_first() {
        let account = format!("lock-test-{}", std::process::id());
        let first = lock_account("test", &account, Duration::from_secs(1)).unwrap();
        let err = lock_account("test", &account, Duration::from_millis(100)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let waiter = thread::spawn(move || lock_account("test", &account, Duration::from_secs(5)).is_ok());
        thread::sleep(Duration::from_millis(100));
        drop(first);
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn account_names_cannot_escape_the_lock_directory() {
        let path = lock_path("offlineimap", "../../etc/passwd");
        assert_eq!(path.parent().unwrap(), lock_dir());
    }
}
