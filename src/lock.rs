//! A per-account lock that waits, so that two syncs of one account started
//! close together run one after the other instead of the second failing
//! ("Could not lock account").
//!
//! The lock file lives in a directory only the user can write:
//! `$XDG_RUNTIME_DIR` when it is the user's own and private, else
//! `$XDG_CACHE_HOME/mailsync` (`~/.cache/mailsync`), made with mode 0700. The
//! file is opened without following links, and one the user does not own is
//! refused, so another local user can neither make a sync write through a
//! planted link nor hold the lock. The backend inherits the locked
//! descriptor ([`AccountLock::inherit_into`]), so the lock lives as long as
//! the backend does, even when the wrapper is killed.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// Held while a sync of one account runs; released when dropped (and when
/// every backend that inherited it has ended).
#[derive(Debug)]
pub struct AccountLock {
    file: File,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub enum LockError {
    Io(PathBuf, io::Error),
    /// The directory or file is not safely the user's own.
    Unsafe(PathBuf, String),
    TimedOut {
        account: String,
        waited: Duration,
        path: PathBuf,
    },
    /// A signal asked the wait to end.
    Interrupted(i32),
    /// Another `mailsync run` runs this configuration (or account).
    Held {
        what: String,
        pid: Option<u32>,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Io(path, err) => write!(f, "lock {}: {err}", path.display()),
            LockError::Unsafe(path, why) => write!(f, "refusing the lock {}: {why}", path.display()),
            LockError::TimedOut {
                account,
                waited,
                path,
            } => write!(
                f,
                "another sync of account {account} still runs after {} s ({})",
                waited.as_secs(),
                path.display()
            ),
            LockError::Interrupted(signal) => {
                write!(f, "interrupted by signal {signal} while waiting for the lock")
            }
            LockError::Held { what, pid } => {
                let by = pid.map(|pid| format!(" by pid {pid}")).unwrap_or_default();
                write!(
                    f,
                    "{what} is already run{by}; stop that mailsync run first (one run per configuration)"
                )
            }
        }
    }
}

impl std::error::Error for LockError {}

fn uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// Whether `dir` is a real directory (not a link) of the user's, writable by
/// nobody else.
fn private_dir(dir: &Path) -> Result<(), String> {
    let meta = fs::symlink_metadata(dir).map_err(|err| err.to_string())?;
    if !meta.is_dir() {
        return Err("not a directory (or a symbolic link)".into());
    }
    if meta.uid() != uid() {
        return Err(format!("owned by uid {}, not by you (uid {})", meta.uid(), uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!("others may write to it (mode {:o})", meta.mode() & 0o777));
    }
    Ok(())
}

fn env_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}

/// The directory that holds the lock files, made when needed.
pub fn lock_dir() -> Result<PathBuf, LockError> {
    if let Some(runtime) = env_dir("XDG_RUNTIME_DIR") {
        if private_dir(&runtime).is_ok() {
            return Ok(runtime);
        }
    }
    let cache = env_dir("XDG_CACHE_HOME")
        .or_else(|| env_dir("HOME").map(|home| home.join(".cache")))
        .ok_or_else(|| {
            LockError::Unsafe(
                PathBuf::from("~/.cache"),
                "neither XDG_RUNTIME_DIR nor HOME is set".into(),
            )
        })?;
    let dir = cache.join("mailsync");
    if !dir.exists() {
        fs::create_dir_all(&cache).map_err(|err| LockError::Io(cache.clone(), err))?;
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(LockError::Io(dir, err)),
        }
    }
    private_dir(&dir).map_err(|why| LockError::Unsafe(dir.clone(), why))?;
    Ok(dir)
}

fn lock_name(backend: &str, account: &[u8]) -> String {
    let account: String = account
        .iter()
        .map(|&byte| {
            if byte.is_ascii_alphanumeric() || b"-_.".contains(&byte) {
                byte as char
            } else {
                '_'
            }
        })
        .collect();
    format!("mailsync-{}-{backend}-{account}.lock", uid())
}

/// Opens (or makes) the lock file `path`, refusing a link or another user's file.
fn open_lock_file(path: &Path) -> Result<File, LockError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ELOOP) => LockError::Unsafe(path.to_path_buf(), "it is a symbolic link".into()),
            _ => LockError::Io(path.to_path_buf(), err),
        })?;
    let meta = file
        .metadata()
        .map_err(|err| LockError::Io(path.to_path_buf(), err))?;
    if meta.uid() != uid() || !meta.is_file() {
        return Err(LockError::Unsafe(
            path.to_path_buf(),
            format!("owned by uid {}, not by you; remove it", meta.uid()),
        ));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        let _ = file.set_permissions(fs::Permissions::from_mode(0o600));
    }
    Ok(file)
}

/// Takes the lock now or says it is held.
fn try_lock(file: &File, path: &Path) -> Result<bool, LockError> {
    // SAFETY: the descriptor is open for the life of `file`.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(LockError::Io(path.to_path_buf(), err)),
    }
}

/// Held while one `mailsync run` runs one configuration; released when
/// dropped or when the process ends (it is not inherited by syncs).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Takes the lock of the configuration file `config` (by its real path),
/// or of `account` in it, writing this process's id into it, or says
/// which process holds it.
pub fn lock_run(config: &Path, account: Option<&str>) -> Result<RunLock, LockError> {
    use std::io::{Read, Seek, Write};
    let real = fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf());
    // The path's hash (FNV-1a, the same in every build) keeps the name short
    // and unique; its last part keeps it readable.
    let key = [
        real.as_os_str().as_encoded_bytes(),
        account.map_or(&b""[..], |account| account.as_bytes()),
    ]
    .join(&0);
    let hash = key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let base = real
        .file_name()
        .map(|name| name.as_encoded_bytes())
        .unwrap_or(b"config");
    let label = [base, format!("-{hash:016x}").as_bytes()].concat();
    let path = lock_dir()?.join(lock_name("run", &label));
    let mut file = open_lock_file(&path)?;
    if !try_lock(&file, &path)? {
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        return Err(LockError::Held {
            what: match account {
                Some(account) => format!("{account} of {}", config.display()),
                None => config.display().to_string(),
            },
            pid: text.trim().parse().ok(),
        });
    }
    let io = |err| LockError::Io(path.clone(), err);
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(RunLock { _file: file })
}

/// Waits up to `timeout` for the lock of `account`; `interrupted` is asked
/// between tries and ends the wait with the signal it returns.
pub fn lock_account(
    backend: &str,
    account: &[u8],
    timeout: Duration,
    interrupted: &dyn Fn() -> Option<i32>,
) -> Result<AccountLock, LockError> {
    let path = lock_dir()?.join(lock_name(backend, account));
    let file = open_lock_file(&path)?;
    let deadline = Instant::now() + timeout;
    loop {
        if try_lock(&file, &path)? {
            return Ok(AccountLock { file });
        }
        if let Some(signal) = interrupted() {
            return Err(LockError::Interrupted(signal));
        }
        if Instant::now() >= deadline {
            return Err(LockError::TimedOut {
                account: String::from_utf8_lossy(account).into_owned(),
                waited: timeout,
                path,
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
}

impl AccountLock {
    /// Lets the program `command` starts inherit the locked descriptor, so
    /// the lock is held until it ends too.
    pub fn inherit_into(&self, command: &mut Command) {
        let fd = self.file.as_raw_fd();
        // SAFETY: between fork and exec only fcntl, which is async-signal-safe, runs.
        unsafe {
            command.pre_exec(move || {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> Option<i32> {
        None
    }

    #[test]
    fn a_second_lock_waits_for_the_first() {
        let account = format!("lock-test-{}", std::process::id());
        let first = lock_account("test", account.as_bytes(), Duration::from_secs(1), &never).unwrap();
        let err = lock_account("test", account.as_bytes(), Duration::from_millis(100), &never).unwrap_err();
        assert!(matches!(err, LockError::TimedOut { .. }), "{err}");
        let waiter = thread::spawn(move || {
            lock_account("test", account.as_bytes(), Duration::from_secs(5), &never).is_ok()
        });
        thread::sleep(Duration::from_millis(100));
        drop(first);
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn a_signal_ends_the_wait() {
        let account = format!("lock-signal-{}", std::process::id());
        let _first = lock_account("test", account.as_bytes(), Duration::from_secs(1), &never).unwrap();
        let started = Instant::now();
        let err =
            lock_account("test", account.as_bytes(), Duration::from_secs(60), &|| Some(15)).unwrap_err();
        assert!(matches!(err, LockError::Interrupted(15)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn account_names_cannot_escape_the_lock_directory() {
        let name = lock_name("offlineimap", b"../../etc/passwd\xff");
        assert!(!name.contains('/'), "{name}");
    }

    #[test]
    fn a_second_run_of_one_configuration_is_told_who_runs_it() {
        let dir = std::env::temp_dir().join(format!("mailsync-run-lock-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let config = dir.join("mswatchrc");
        fs::write(&config, "").unwrap();
        let first = lock_run(&config, None).unwrap();
        // Another path to the same file is the same configuration.
        let err = lock_run(&dir.join(".").join("mswatchrc"), None).unwrap_err();
        let pid = std::process::id();
        assert!(
            matches!(err, LockError::Held { pid: Some(p), .. } if p == pid),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!("is already run by pid {pid}")),
            "{err}"
        );
        // Accounts of one file are run apart.
        let work = lock_run(&config, Some("mbsync channel work")).unwrap();
        let home = lock_run(&config, Some("mbsync channel home")).unwrap();
        let err = lock_run(&config, Some("mbsync channel work")).unwrap_err();
        assert!(err.to_string().starts_with("mbsync channel work of "), "{err}");
        drop((first, work, home));
        assert!(lock_run(&config, None).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }
}
