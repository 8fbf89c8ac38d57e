//! Why a watch could not start, in words that say what to do.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::shards::{read_limit, InstanceError, SHARDS};

/// Why a watch could not start.
#[derive(Debug)]
pub enum Error {
    MissingRoot(PathBuf, io::Error),
    NotADirectory(PathBuf),
    /// `fs.inotify.max_user_watches` is too low for the store.
    WatchLimit {
        root: PathBuf,
        added: usize,
        needed: usize,
        limit: Option<usize>,
    },
    /// No inotify instance could be made (`fs.inotify.max_user_instances`,
    /// or the open-file limit).
    InstanceLimit {
        source: io::Error,
        limit: Option<usize>,
    },
    Io(PathBuf, io::Error),
}

impl Error {
    pub(super) fn watch_limit(root: PathBuf, added: usize, needed: usize) -> Error {
        Error::WatchLimit {
            root,
            added,
            needed,
            limit: read_limit("max_user_watches"),
        }
    }

    pub(super) fn instances(InstanceError(source): InstanceError) -> Error {
        Error::InstanceLimit {
            source,
            limit: read_limit("max_user_instances"),
        }
    }
}

fn shown(limit: Option<usize>) -> String {
    limit.map_or_else(|| "?".to_string(), |limit| limit.to_string())
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingRoot(path, err) => write!(f, "maildir {} cannot be opened: {err}", path.display()),
            Error::NotADirectory(path) => write!(f, "maildir {} is not a directory", path.display()),
            Error::WatchLimit {
                root,
                added,
                needed,
                limit,
            } => {
                let suggested = limit.map_or(*needed * 2, |limit| (limit + needed).max(limit * 2));
                write!(
                    f,
                    "the inotify watch limit is reached: watching {} needs {needed} watches, only {added} could be added \
                     (fs.inotify.max_user_watches = {}); raise it with `sysctl fs.inotify.max_user_watches={suggested}`",
                    root.display(),
                    shown(*limit)
                )
            }
            Error::InstanceLimit { source, limit } => write!(
                f,
                "cannot create an inotify instance ({source}): mailsync needs {SHARDS} per watched store; raise \
                 fs.inotify.max_user_instances (now {}) with `sysctl fs.inotify.max_user_instances={}`, \
                 or the open-file limit (ulimit -n)",
                shown(*limit),
                limit.map_or(512, |limit| (limit * 2).max(limit + 4 * SHARDS))
            ),
            Error::Io(path, err) => write!(f, "{}: {err}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::MissingRoot(_, err) | Error::Io(_, err) | Error::InstanceLimit { source: err, .. } => {
                Some(err)
            }
            _ => None,
        }
    }
}
