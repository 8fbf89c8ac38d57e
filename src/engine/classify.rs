//! Event classification: which file-system changes are new (or removed) mail,
//! which are a mail reader tidying up, and which change the folder tree.
//!
//! New mail is a file created in, or moved into, `new/` or `cur/` from outside
//! the folder; mail leaves when a file is deleted or moved out of the folder.
//! Renames inside one folder (`new/` to `cur/`, flag changes in `cur/`) are what
//! Gnus and Dovecot do when a group is read or checked: they are flag changes,
//! reported only when asked for (a sync program wants them; Gnus would
//! re-check itself on them).
//!
//! Half of this file is its test cases, kept as data (`CASES`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::naming::MailDir;

/// A file-system change, reduced to what classification needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsChange {
    Created {
        path: PathBuf,
        is_dir: bool,
    },
    Removed {
        path: PathBuf,
    },
    MovedFrom {
        path: PathBuf,
        cookie: Option<usize>,
    },
    MovedTo {
        path: PathBuf,
        cookie: Option<usize>,
    },
    /// The kernel's queue overflowed: events were lost.
    Overflow,
    /// Opens, closes, writes, attribute changes: never mail by themselves.
    Other,
}

/// What a watched directory is to the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchedDir {
    /// The directory of a folder (or of a container of folders).
    Folder,
    /// A folder's `new/` or `cur/`; `folder_dir` is the folder's directory.
    Mail { folder_dir: PathBuf, which: MailDir },
}

impl WatchedDir {
    /// The directory of the folder that `dir`, watched in this role, is part of.
    pub fn folder_dir<'a>(&'a self, dir: &'a Path) -> &'a Path {
        match self {
            WatchedDir::Mail { folder_dir, .. } => folder_dir,
            WatchedDir::Folder => dir,
        }
    }
}

/// A watched directory's role, borrowed from the engine's tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role<'a> {
    Folder,
    Mail { folder_dir: &'a Path, which: MailDir },
}

/// Lets the classifier ask what a directory is.
pub trait Tree {
    fn watched<'a>(&'a self, dir: &'a Path) -> Option<Role<'a>>;
}

/// What the engine must do about a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Mail arrived in or left the folder whose directory this is.
    MailChanged(PathBuf),
    /// Only a message's flags changed (a rename inside `cur/`).
    FlagsChanged(PathBuf),
    /// A directory appeared inside a folder's directory.
    DirAppeared(PathBuf),
    /// A watched directory (and all below it) is gone or moved away.
    DirGone(PathBuf),
    /// Events were lost: rescan everything.
    Rescan,
}

/// How long the first half of a rename waits for its second half. The
/// kernel queues both at once, but notify may hand them over in two reads.
pub const RENAME_PAIRING_WINDOW: Duration = Duration::from_millis(10);

/// Turns changes into effects, pairing the two halves of a rename.
#[derive(Debug, Default)]
pub struct Classifier {
    moves_out: HashMap<usize, MoveOut>,
}

#[derive(Debug)]
struct MoveOut {
    folder_dir: PathBuf,
    at: Instant,
}

impl Classifier {
    /// Classifies one change seen at `now`; an empty result means the change
    /// is ignored.
    pub fn classify(&mut self, tree: &dyn Tree, change: FsChange, now: Instant) -> Vec<Effect> {
        match change {
            FsChange::Overflow => vec![Effect::Rescan],
            FsChange::Other => Vec::new(),
            FsChange::Created { path, is_dir } => match parent_of(tree, &path) {
                Some(Role::Mail { folder_dir, .. }) if !is_dir => {
                    vec![Effect::MailChanged(folder_dir.to_path_buf())]
                }
                // A subfolder, or a link that may lead to one: the engine looks.
                Some(Role::Folder) => vec![Effect::DirAppeared(path)],
                _ => Vec::new(),
            },
            FsChange::Removed { path } => {
                if tree.watched(&path).is_some() {
                    return vec![Effect::DirGone(path)];
                }
                match parent_of(tree, &path) {
                    Some(Role::Mail { folder_dir, .. }) => {
                        vec![Effect::MailChanged(folder_dir.to_path_buf())]
                    }
                    // Perhaps a followed link: the engine knows.
                    Some(Role::Folder) => vec![Effect::DirGone(path)],
                    None => Vec::new(),
                }
            }
            FsChange::MovedFrom { path, cookie } => {
                if tree.watched(&path).is_some() {
                    // A watched directory renamed or moved away: a moved
                    // directory without a cookie is its own MOVE_SELF, which
                    // its parent's event covers when its parent is watched
                    // (a sealed folder's directory is not).
                    return match (cookie, parent_of(tree, &path)) {
                        (None, Some(Role::Folder)) => Vec::new(),
                        _ => vec![Effect::DirGone(path)],
                    };
                }
                match (parent_of(tree, &path), cookie) {
                    (Some(Role::Mail { folder_dir, .. }), Some(cookie)) => {
                        let move_out = MoveOut {
                            folder_dir: folder_dir.to_path_buf(),
                            at: now,
                        };
                        self.moves_out.insert(cookie, move_out);
                        Vec::new()
                    }
                    (Some(Role::Mail { folder_dir, .. }), None) => {
                        vec![Effect::MailChanged(folder_dir.to_path_buf())]
                    }
                    (Some(Role::Folder), Some(_)) => vec![Effect::DirGone(path)],
                    _ => Vec::new(),
                }
            }
            FsChange::MovedTo { path, cookie } => {
                let origin = cookie
                    .and_then(|cookie| self.moves_out.remove(&cookie))
                    .map(|move_out| move_out.folder_dir);
                match parent_of(tree, &path) {
                    Some(Role::Mail { folder_dir, which }) => match origin {
                        // new/ to cur/ is a reader seeing a message (and
                        // maybe marking it); cur/ to new/ is nobody's.
                        Some(from_dir) if from_dir == folder_dir => {
                            if which == MailDir::Cur {
                                vec![Effect::FlagsChanged(from_dir)]
                            } else {
                                Vec::new()
                            }
                        }
                        Some(from_dir) => vec![
                            Effect::MailChanged(from_dir),
                            Effect::MailChanged(folder_dir.to_path_buf()),
                        ],
                        None => vec![Effect::MailChanged(folder_dir.to_path_buf())],
                    },
                    Some(Role::Folder) => {
                        let mut effects: Vec<Effect> = origin.map(Effect::MailChanged).into_iter().collect();
                        effects.push(Effect::DirAppeared(path));
                        effects
                    }
                    None => origin.map(Effect::MailChanged).into_iter().collect(),
                }
            }
        }
    }

    /// When the oldest unpaired half of a rename stops waiting, if any waits.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.moves_out
            .values()
            .map(|move_out| move_out.at + RENAME_PAIRING_WINDOW)
            .min()
    }

    /// Ends the pairing window of renames older than it at `now`: a message
    /// moved out whose other half never came has left its folder.
    pub fn expire(&mut self, now: Instant) -> Vec<Effect> {
        let expired: Vec<usize> = self
            .moves_out
            .iter()
            .filter(|(_, move_out)| move_out.at + RENAME_PAIRING_WINDOW <= now)
            .map(|(cookie, _)| *cookie)
            .collect();
        expired
            .into_iter()
            .filter_map(|cookie| self.moves_out.remove(&cookie))
            .map(|move_out| Effect::MailChanged(move_out.folder_dir))
            .collect()
    }
}

fn parent_of<'a>(tree: &'a dyn Tree, path: &'a Path) -> Option<Role<'a>> {
    path.parent().and_then(|parent| tree.watched(parent))
}

/// Converts a notify event into the changes it stands for.
pub fn from_notify(event: &notify::Event) -> FsChange {
    use notify::event::{CreateKind, EventKind, ModifyKind, RenameMode};
    if event.need_rescan() {
        return FsChange::Overflow;
    }
    let Some(path) = event.paths.first().cloned() else {
        return FsChange::Other;
    };
    let cookie = event.tracker();
    match event.kind {
        EventKind::Create(kind) => FsChange::Created {
            path,
            is_dir: kind == CreateKind::Folder,
        },
        EventKind::Remove(_) => FsChange::Removed { path },
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => FsChange::MovedFrom { path, cookie },
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => FsChange::MovedTo { path, cookie },
        _ => FsChange::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use once_cell::sync::Lazy;

    /// The tests' clock: every change is seen at this instant.
    static T0: Lazy<Instant> = Lazy::new(Instant::now);

    /// What the file system did and what must come of it, as data. A case
    /// is a `#` line naming it, one change a line, and `=>` with the
    /// effects (separated by `;`, none when empty) once the pairing window
    /// has ended. Changes: `create PATH`, `mkdir PATH`, `delete PATH`,
    /// `from PATH COOKIE` and `to PATH COOKIE` (a rename's halves, `-` for
    /// no cookie), `overflow`, `other`. Effects: `mail DIR`, `flags DIR`,
    /// `appeared PATH`, `gone PATH`, `rescan`. The tree watched is
    /// `/m` (INBOX) and `/m/.a`, each with `new/` and `cur/`.
    const CASES: &str = r#"
# an MDA's rename from the unwatched tmp/ into new/ is mail
to /m/.a/new/1.host 7
=> mail /m/.a

# a file made in new/ or cur/ is mail
create /m/new/1
create /m/cur/2:2,S
=> mail /m; mail /m

# reading a group (new/ to cur/) is not mail: flags only
from /m/.a/new/1 1
to /m/.a/cur/1:2, 1
=> flags /m/.a

# a flag change is flags only
from /m/cur/1:2, 2
to /m/cur/1:2,S 2
=> flags /m

# a move between folders is mail in both
from /m/cur/1:2, 3
to /m/.a/cur/1:2, 3
=> mail /m; mail /m/.a

# a move out of the tree is mail once the window ends
from /m/cur/1:2, 4
=> mail /m

# a deletion is mail
delete /m/.a/cur/1:2,S
=> mail /m/.a

# tmp/, .nnmaildir/ and opens or writes are not mail
create /m/tmp/1
create /m/.a/.nnmaildir/marks/read/1
other
=>

# a directory in new/ is not mail
mkdir /m/new/odd-dir
=>

# files in a folder's own directory go to the engine, which looks for links
create /m/dovecot-uidlist
delete /m/dovecot-uidlist.lock
=> appeared /m/dovecot-uidlist; gone /m/dovecot-uidlist.lock

# folders made, removed and renamed change the tree
mkdir /m/.b
delete /m/.a
=> appeared /m/.b; gone /m/.a

# a renamed folder is gone under its old name and appears under the new
from /m/.a 5
to /m/.c 5
=> gone /m/.a; appeared /m/.c

# a watched directory's own move (no cookie) is its parent's news
from /m/.a -
=>

# sealed /m/.s (only its new/ and cur/ watched): mail, and its new/ or cur/ gone by its own watch
to /m/.s/new/1.host 8
from /m/.s/new -
delete /m/.s/cur
=> mail /m/.s; gone /m/.s/new; gone /m/.s/cur

# an overflow asks for a rescan
overflow
=> rescan
"#;

    struct FakeTree(HashMap<PathBuf, WatchedDir>);

    impl Tree for FakeTree {
        fn watched<'a>(&'a self, dir: &'a Path) -> Option<Role<'a>> {
            self.0.get(dir).map(|watched| match watched {
                WatchedDir::Folder => Role::Folder,
                WatchedDir::Mail { folder_dir, which } => Role::Mail {
                    folder_dir,
                    which: *which,
                },
            })
        }
    }

    fn tree() -> FakeTree {
        let mut dirs = HashMap::new();
        for folder in ["/m", "/m/.a"] {
            dirs.insert(PathBuf::from(folder), WatchedDir::Folder);
            for (sub, which) in [("new", MailDir::New), ("cur", MailDir::Cur)] {
                dirs.insert(
                    Path::new(folder).join(sub),
                    WatchedDir::Mail {
                        folder_dir: PathBuf::from(folder),
                        which,
                    },
                );
            }
        }
        for (sub, which) in [("new", MailDir::New), ("cur", MailDir::Cur)] {
            dirs.insert(
                Path::new("/m/.s").join(sub),
                WatchedDir::Mail {
                    folder_dir: PathBuf::from("/m/.s"),
                    which,
                },
            );
        }
        FakeTree(dirs)
    }

    fn change(line: &str) -> FsChange {
        let words: Vec<&str> = line.split_whitespace().collect();
        let cookie = || match words[2] {
            "-" => None,
            number => Some(number.parse().unwrap()),
        };
        let path = || PathBuf::from(words[1]);
        match words[0] {
            "create" => FsChange::Created {
                path: path(),
                is_dir: false,
            },
            "mkdir" => FsChange::Created {
                path: path(),
                is_dir: true,
            },
            "delete" => FsChange::Removed { path: path() },
            "from" => FsChange::MovedFrom {
                path: path(),
                cookie: cookie(),
            },
            "to" => FsChange::MovedTo {
                path: path(),
                cookie: cookie(),
            },
            "overflow" => FsChange::Overflow,
            "other" => FsChange::Other,
            other => panic!("unknown change {other}"),
        }
    }

    fn effect(text: &str) -> Effect {
        let (kind, path) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
        let path = PathBuf::from(path);
        match kind {
            "mail" => Effect::MailChanged(path),
            "flags" => Effect::FlagsChanged(path),
            "appeared" => Effect::DirAppeared(path),
            "gone" => Effect::DirGone(path),
            "rescan" => Effect::Rescan,
            other => panic!("unknown effect {other}"),
        }
    }

    #[test]
    fn every_case_gives_its_effects() {
        let tree = tree();
        let cases: Vec<&str> = CASES
            .split("\n\n")
            .map(str::trim)
            .filter(|case| !case.is_empty())
            .collect();
        assert!(cases.len() >= 14, "{} cases", cases.len());
        for case in cases {
            let mut lines = case.lines();
            let name = lines.next().unwrap().trim_start_matches("# ");
            let mut classifier = Classifier::default();
            let mut effects = Vec::new();
            let mut expected = None;
            for line in lines {
                match line.strip_prefix("=>") {
                    Some(list) => {
                        expected = Some(
                            list.split(';')
                                .filter(|item| !item.trim().is_empty())
                                .map(effect)
                                .collect::<Vec<_>>(),
                        )
                    }
                    None => effects.extend(classifier.classify(&tree, change(line), *T0)),
                }
            }
            effects.extend(classifier.expire(*T0 + RENAME_PAIRING_WINDOW));
            assert_eq!(effects, expected.expect("a => line"), "case: {name}");
        }
    }

    #[test]
    fn a_half_rename_waits_exactly_the_pairing_window() {
        let mut classifier = Classifier::default();
        let from = change("from /m/cur/1:2, 4");
        assert!(classifier.classify(&tree(), from, *T0).is_empty());
        assert_eq!(classifier.next_expiry(), Some(*T0 + RENAME_PAIRING_WINDOW));
        assert!(classifier.expire(*T0 + RENAME_PAIRING_WINDOW / 2).is_empty());
        assert_eq!(
            classifier.expire(*T0 + RENAME_PAIRING_WINDOW),
            vec![effect("mail /m")]
        );
        assert_eq!(classifier.next_expiry(), None);
    }

    #[test]
    fn notify_events_map_to_changes() {
        use notify::event::{CreateKind, EventKind, ModifyKind, RenameMode};
        let p = PathBuf::from;
        let created = notify::Event::new(EventKind::Create(CreateKind::Folder)).add_path(p("/m/.x"));
        assert_eq!(from_notify(&created), change("mkdir /m/.x"));
        let to = notify::Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::To)))
            .add_path(p("/m/new/1"))
            .set_tracker(9);
        assert_eq!(from_notify(&to), change("to /m/new/1 9"));
        let both = notify::Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path(p("/m/new/1"))
            .add_path(p("/m/cur/1"));
        assert_eq!(from_notify(&both), FsChange::Other);
        let overflow = notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert_eq!(from_notify(&overflow), FsChange::Overflow);
    }
}
