//! Event classification: which file-system changes are new (or removed) mail,
//! which are a mail reader tidying up, and which change the folder tree.
//!
//! New mail is a file created in, or moved into, `new/` or `cur/` from outside
//! the folder; mail leaves when a file is deleted or moved out of the folder.
//! Renames inside one folder (`new/` to `cur/`, flag changes in `cur/`) are what
//! Gnus and Dovecot do when a group is read or checked: they are not reported,
//! or Gnus would re-check itself in a loop.

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

/// Lets the classifier ask what a directory is.
pub trait Tree {
    fn watched(&self, dir: &Path) -> Option<&WatchedDir>;
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
    which: MailDir,
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
                Some(WatchedDir::Mail { folder_dir, .. }) if !is_dir => {
                    vec![Effect::MailChanged(folder_dir.clone())]
                }
                // A subfolder, or a link that may lead to one: the engine looks.
                Some(WatchedDir::Folder) => vec![Effect::DirAppeared(path)],
                _ => Vec::new(),
            },
            FsChange::Removed { path } => {
                if tree.watched(&path).is_some() {
                    return vec![Effect::DirGone(path)];
                }
                match parent_of(tree, &path) {
                    Some(WatchedDir::Mail { folder_dir, .. }) => {
                        vec![Effect::MailChanged(folder_dir.clone())]
                    }
                    // Perhaps a followed link: the engine knows.
                    Some(WatchedDir::Folder) => vec![Effect::DirGone(path)],
                    None => Vec::new(),
                }
            }
            FsChange::MovedFrom { path, cookie } => {
                if tree.watched(&path).is_some() {
                    // A watched directory renamed or moved away: a moved
                    // directory without a cookie is its own MOVE_SELF, which
                    // its parent's event already covers.
                    return match cookie {
                        Some(_) => vec![Effect::DirGone(path)],
                        None => Vec::new(),
                    };
                }
                match (parent_of(tree, &path), cookie) {
                    (Some(WatchedDir::Mail { folder_dir, which }), Some(cookie)) => {
                        let move_out = MoveOut {
                            folder_dir: folder_dir.clone(),
                            which: *which,
                            at: now,
                        };
                        self.moves_out.insert(cookie, move_out);
                        Vec::new()
                    }
                    (Some(WatchedDir::Mail { folder_dir, .. }), None) => {
                        vec![Effect::MailChanged(folder_dir.clone())]
                    }
                    (Some(WatchedDir::Folder), Some(_)) => vec![Effect::DirGone(path)],
                    _ => Vec::new(),
                }
            }
            FsChange::MovedTo { path, cookie } => {
                let origin = cookie
                    .and_then(|cookie| self.moves_out.remove(&cookie))
                    .map(|move_out| (move_out.folder_dir, move_out.which));
                match parent_of(tree, &path) {
                    Some(WatchedDir::Mail { folder_dir, which }) => match origin {
                        Some((from_dir, from_which)) if &from_dir == folder_dir => {
                            if from_which == MailDir::Cur && *which == MailDir::Cur {
                                vec![Effect::FlagsChanged(from_dir)]
                            } else {
                                Vec::new()
                            }
                        }
                        Some((from_dir, _)) => vec![
                            Effect::MailChanged(from_dir),
                            Effect::MailChanged(folder_dir.clone()),
                        ],
                        None => vec![Effect::MailChanged(folder_dir.clone())],
                    },
                    Some(WatchedDir::Folder) => {
                        let mut effects: Vec<Effect> = origin
                            .map(|(from_dir, _)| Effect::MailChanged(from_dir))
                            .into_iter()
                            .collect();
                        effects.push(Effect::DirAppeared(path));
                        effects
                    }
                    None => origin
                        .map(|(from_dir, _)| Effect::MailChanged(from_dir))
                        .into_iter()
                        .collect(),
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

fn parent_of<'t>(tree: &'t dyn Tree, path: &Path) -> Option<&'t WatchedDir> {
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

    trait AtT0 {
        fn classify0(&mut self, tree: &dyn Tree, change: FsChange) -> Vec<Effect>;
    }

    impl AtT0 for Classifier {
        fn classify0(&mut self, tree: &dyn Tree, change: FsChange) -> Vec<Effect> {
            self.classify(tree, change, *T0)
        }
    }

    struct FakeTree(HashMap<PathBuf, WatchedDir>);

    impl Tree for FakeTree {
        fn watched(&self, dir: &Path) -> Option<&WatchedDir> {
            self.0.get(dir)
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
        FakeTree(dirs)
    }

    fn p(path: &str) -> PathBuf {
        PathBuf::from(path)
    }

    fn moved(
        classifier: &mut Classifier,
        tree: &FakeTree,
        from: &str,
        to: &str,
        cookie: usize,
    ) -> Vec<Effect> {
        let mut effects = classifier.classify0(
            tree,
            FsChange::MovedFrom {
                path: p(from),
                cookie: Some(cookie),
            },
        );
        effects.extend(classifier.classify0(
            tree,
            FsChange::MovedTo {
                path: p(to),
                cookie: Some(cookie),
            },
        ));
        effects.extend(classifier.expire(*T0 + RENAME_PAIRING_WINDOW));
        effects
    }

    #[test]
    fn mda_delivery_from_unwatched_tmp_is_mail() {
        let tree = tree();
        let mut classifier = Classifier::default();
        let effects = classifier.classify0(
            &tree,
            FsChange::MovedTo {
                path: p("/m/.a/new/1.host"),
                cookie: Some(7),
            },
        );
        assert_eq!(effects, vec![Effect::MailChanged(p("/m/.a"))]);
    }

    #[test]
    fn file_created_in_new_or_cur_is_mail() {
        let tree = tree();
        let mut classifier = Classifier::default();
        for path in ["/m/new/1", "/m/cur/2:2,S"] {
            let effects = classifier.classify0(
                &tree,
                FsChange::Created {
                    path: p(path),
                    is_dir: false,
                },
            );
            assert_eq!(effects, vec![Effect::MailChanged(p("/m"))]);
        }
    }

    #[test]
    fn reading_a_group_is_not_mail() {
        let tree = tree();
        let mut classifier = Classifier::default();
        assert!(moved(&mut classifier, &tree, "/m/.a/new/1", "/m/.a/cur/1:2,", 1).is_empty());
    }

    #[test]
    fn flag_change_is_reported_as_flags_only() {
        let tree = tree();
        let mut classifier = Classifier::default();
        assert_eq!(
            moved(&mut classifier, &tree, "/m/cur/1:2,", "/m/cur/1:2,S", 2),
            vec![Effect::FlagsChanged(p("/m"))]
        );
    }

    #[test]
    fn move_between_folders_reports_both() {
        let tree = tree();
        let mut classifier = Classifier::default();
        assert_eq!(
            moved(&mut classifier, &tree, "/m/cur/1:2,", "/m/.a/cur/1:2,", 3),
            vec![Effect::MailChanged(p("/m")), Effect::MailChanged(p("/m/.a"))]
        );
    }

    #[test]
    fn move_out_of_the_tree_is_reported_when_the_pairing_window_ends() {
        let tree = tree();
        let mut classifier = Classifier::default();
        let effects = classifier.classify0(
            &tree,
            FsChange::MovedFrom {
                path: p("/m/cur/1:2,"),
                cookie: Some(4),
            },
        );
        assert!(effects.is_empty());
        let moved_at = classifier.next_expiry().unwrap() - RENAME_PAIRING_WINDOW;
        assert!(
            classifier.expire(moved_at).is_empty(),
            "expired before the window ended"
        );
        assert_eq!(
            classifier.expire(moved_at + RENAME_PAIRING_WINDOW),
            vec![Effect::MailChanged(p("/m"))]
        );
        assert!(classifier.expire(moved_at + RENAME_PAIRING_WINDOW).is_empty());
        assert_eq!(classifier.next_expiry(), None);
    }

    #[test]
    fn deleting_a_message_is_mail() {
        let tree = tree();
        let mut classifier = Classifier::default();
        let effects = classifier.classify0(
            &tree,
            FsChange::Removed {
                path: p("/m/.a/cur/1:2,S"),
            },
        );
        assert_eq!(effects, vec![Effect::MailChanged(p("/m/.a"))]);
    }

    #[test]
    fn reader_files_in_the_folder_root_and_tmp_are_ignored() {
        let tree = tree();
        let mut classifier = Classifier::default();
        for path in ["/m/tmp/1", "/m/.a/.nnmaildir/marks/read/1"] {
            assert!(
                classifier
                    .classify0(
                        &tree,
                        FsChange::Created {
                            path: p(path),
                            is_dir: false
                        }
                    )
                    .is_empty(),
                "{path}"
            );
        }
        assert!(classifier.classify0(&tree, FsChange::Other).is_empty());
        // Files in a folder's own directory go to the engine, which looks
        // whether they are links to folders (and ignores them otherwise).
        assert_eq!(
            classifier.classify0(
                &tree,
                FsChange::Created {
                    path: p("/m/dovecot-uidlist"),
                    is_dir: false
                }
            ),
            vec![Effect::DirAppeared(p("/m/dovecot-uidlist"))]
        );
        assert!(classifier
            .classify0(
                &tree,
                FsChange::Created {
                    path: p("/m/new/odd-dir"),
                    is_dir: true
                }
            )
            .is_empty());
    }

    #[test]
    fn directories_coming_and_going_change_the_tree() {
        let tree = tree();
        let mut classifier = Classifier::default();
        assert_eq!(
            classifier.classify0(
                &tree,
                FsChange::Created {
                    path: p("/m/.b"),
                    is_dir: true
                }
            ),
            vec![Effect::DirAppeared(p("/m/.b"))]
        );
        assert_eq!(
            classifier.classify0(&tree, FsChange::Removed { path: p("/m/.a") }),
            vec![Effect::DirGone(p("/m/.a"))]
        );
        assert_eq!(
            moved(&mut classifier, &tree, "/m/.a", "/m/.c", 5),
            vec![Effect::DirGone(p("/m/.a")), Effect::DirAppeared(p("/m/.c"))]
        );
        assert!(classifier
            .classify0(
                &tree,
                FsChange::MovedFrom {
                    path: p("/m/.a"),
                    cookie: None
                }
            )
            .is_empty());
    }

    #[test]
    fn overflow_asks_for_a_rescan() {
        let mut classifier = Classifier::default();
        assert_eq!(
            classifier.classify0(&tree(), FsChange::Overflow),
            vec![Effect::Rescan]
        );
        let event = notify::Event::new(notify::EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert_eq!(from_notify(&event), FsChange::Overflow);
    }

    #[test]
    fn notify_events_map_to_changes() {
        use notify::event::{CreateKind, EventKind, ModifyKind, RenameMode};
        let created = notify::Event::new(EventKind::Create(CreateKind::Folder)).add_path(p("/m/.x"));
        assert_eq!(
            from_notify(&created),
            FsChange::Created {
                path: p("/m/.x"),
                is_dir: true
            }
        );
        let to = notify::Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::To)))
            .add_path(p("/m/new/1"))
            .set_tracker(9);
        assert_eq!(
            from_notify(&to),
            FsChange::MovedTo {
                path: p("/m/new/1"),
                cookie: Some(9)
            }
        );
        let both = notify::Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path(p("/m/new/1"))
            .add_path(p("/m/cur/1"));
        assert_eq!(from_notify(&both), FsChange::Other);
    }
}
