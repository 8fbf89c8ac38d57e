//! The one directory traversal: visits, without watching anything, every
//! directory below a folder that the layout makes a folder, with its `new/`
//! and `cur/`. The caller's visitor decides what to do with each, so no
//! list of the whole tree is ever built.
//!
//! Symbolic links to directories are followed, as mswatch follows them: the
//! directory is planned under its canonical path (the path notify reports
//! events under) and named as the link names it, so a folder reached through
//! a link is reported under the link's name and its target under its own. A
//! subfolder that is, by (device, inode), a directory already on the way down
//! to it leads back up: through a link, or a bind mount, that is a loop, and
//! it is listed in [`Plan::loops`] and not followed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::tree::Identity;
use crate::engine::classify::WatchedDir;
use crate::naming::{classify_dir, DirRole, Folder, Layout};

/// A directory to watch.
#[derive(Debug)]
pub struct Planned {
    /// The canonical path of the directory.
    pub dir: PathBuf,
    pub role: WatchedDir,
    /// The folder's name, for a folder's own directory.
    pub folder: Option<Folder>,
    /// Reached through a link: it may be visited again under another name.
    pub via_link: bool,
    /// A folder's directory that needs no watch of its own: the layout
    /// allows it no subfolders, and its `new/` and `cur/` are there (each
    /// watched, and its loss seen on its own watch).
    pub sealed: bool,
    /// A folder directory's identity on disk, when known.
    pub id: Option<Identity>,
}

/// What a traversal found besides the directories.
#[derive(Debug, Default)]
pub struct Findings {
    /// Links followed: (link path, canonical target).
    pub links: Vec<(PathBuf, PathBuf)>,
    /// Links not followed because they lead back up: (link path, target).
    pub loops: Vec<(PathBuf, PathBuf)>,
    /// Directories that could not be listed.
    pub unreadable: Vec<(PathBuf, io::Error)>,
}

/// The folder directories on the way down to one, innermost first.
struct Way {
    id: Option<Identity>,
    up: Option<Rc<Way>>,
}

impl Way {
    fn passes(&self, id: Identity) -> bool {
        let mut way = Some(self);
        while let Some(step) = way {
            if step.id == Some(id) {
                return true;
            }
            way = step.up.as_deref();
        }
        false
    }
}

/// A folder directory being listed, on the way down.
struct Level {
    dir: PathBuf,
    folder: Folder,
    way: Rc<Way>,
    linked: bool,
    entries: fs::ReadDir,
}

/// Visits the directory `top` (canonical) of `folder` and everything below
/// it, each directory once per name it has (a folder reached by a link too
/// is visited under both names). Depth first with each level's listing
/// read as it goes, so what is held is one open listing per level of
/// nesting, never every folder of a wide level (which, for a store of
/// 100,000 folders, is tens of MiB).
pub fn plan(layout: Layout, top: &Path, folder: Folder, visit: &mut dyn FnMut(Planned)) -> Findings {
    let mut walk = Walk {
        layout,
        visit,
        findings: Findings::default(),
        levels: Vec::new(),
    };
    let start = Rc::new(Way {
        id: Identity::of(top),
        up: None,
    });
    walk.enter(top.to_path_buf(), folder, start, false);
    while let Some(level) = walk.levels.last_mut() {
        match level.entries.next() {
            None => {
                walk.levels.pop();
            }
            Some(Ok(entry)) => walk.step(&entry),
            Some(Err(_)) => {}
        }
    }
    walk.findings
}

/// A traversal under way: the listings open on the way down.
struct Walk<'v> {
    layout: Layout,
    visit: &'v mut dyn FnMut(Planned),
    findings: Findings,
    levels: Vec<Level>,
}

/// A directory entry that is a directory, or a link to one: its path, the
/// directory (a link's canonical target), and whether it is a link.
fn directory_of(entry: &fs::DirEntry) -> Option<(PathBuf, PathBuf, bool)> {
    let path = entry.path();
    let is_link = match entry.file_type() {
        Ok(kind) if kind.is_dir() => false,
        Ok(kind) if kind.is_symlink() => true,
        Ok(_) => return None,
        Err(_) => match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => false,
            Ok(meta) if meta.file_type().is_symlink() => true,
            _ => return None,
        },
    };
    if !is_link {
        return Some((path.clone(), path, false));
    }
    // A dangling link leads nowhere.
    let target = fs::canonicalize(&path).ok()?;
    Some((path, target, true))
}

impl Walk<'_> {
    /// One entry of the innermost open listing.
    fn step(&mut self, entry: &fs::DirEntry) {
        let Some(level) = self.levels.last() else {
            return;
        };
        let role = classify_dir(self.layout, &level.folder, &entry.file_name());
        if role == DirRole::Ignored {
            return;
        }
        let Some((path, child_dir, is_link)) = directory_of(entry) else {
            return;
        };
        let mut id = None;
        if let DirRole::Folder(_) = role {
            // Only a folder is descended into, so only a folder can lead back.
            let Some(folder_id) = Identity::of(&child_dir) else {
                return; // not a directory, or gone
            };
            if level.way.passes(folder_id) {
                self.findings.loops.push((path, child_dir));
                return;
            }
            id = Some(folder_id);
        } else if is_link && !child_dir.is_dir() {
            return;
        }
        let linked = level.linked || is_link;
        let (way, folder_dir) = (Rc::clone(&level.way), level.dir.clone());
        if is_link {
            self.findings.links.push((path, child_dir.clone()));
        }
        match role {
            DirRole::Folder(child) => {
                let down = Rc::new(Way { id, up: Some(way) });
                self.enter(child_dir, child, down, linked);
            }
            DirRole::Mail(which) => (self.visit)(Planned {
                dir: child_dir,
                role: WatchedDir::Mail { folder_dir, which },
                folder: None,
                via_link: linked,
                sealed: false,
                id: None,
            }),
            DirRole::Ignored => {}
        }
    }

    /// Visits the folder directory `dir` and opens its listing as the next level.
    fn enter(&mut self, dir: PathBuf, folder: Folder, way: Rc<Way>, linked: bool) {
        let entries = fs::read_dir(&dir);
        let sealed = self.layout.nests_only_at_root()
            && !folder.is_root()
            && ["new", "cur"]
                .iter()
                .all(|name| fs::symlink_metadata(dir.join(name)).is_ok_and(|meta| meta.is_dir()));
        (self.visit)(Planned {
            dir: dir.clone(),
            role: WatchedDir::Folder,
            folder: Some(folder.clone()),
            via_link: linked,
            sealed,
            id: way.id,
        });
        match entries {
            Ok(entries) => self.levels.push(Level {
                dir,
                folder,
                way,
                linked,
                entries,
            }),
            // Removed between being found and being listed: its parent's
            // events say so; nothing to warn about.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => self.findings.unreadable.push((dir, err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn maildir(path: &Path) {
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(path.join(sub)).unwrap();
        }
    }

    /// Every directory visited, and the findings.
    fn plan_all(layout: Layout, top: &Path) -> (Vec<Planned>, Findings) {
        let mut dirs = Vec::new();
        let findings = plan(layout, top, Folder::root(), &mut |planned| dirs.push(planned));
        (dirs, findings)
    }

    fn names(dirs: &[Planned]) -> Vec<String> {
        let mut names: Vec<String> = dirs
            .iter()
            .filter_map(|planned| planned.folder.as_ref())
            .map(|folder| {
                String::from_utf8_lossy(&folder.name(&crate::naming::NameStyle::for_layout(Layout::Verbatim)))
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_folder_gone_before_it_is_listed_is_not_unreadable() {
        let store = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(store.path()).unwrap();
        let (_, plan) = plan_all(Layout::MaildirPlusPlus, &root.join(".gone"));
        assert!(plan.unreadable.is_empty(), "{:?}", plan.unreadable);
    }

    #[test]
    fn links_up_the_tree_are_loops_and_not_followed() {
        let store = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(store.path()).unwrap();
        maildir(&root);
        maildir(&root.join("z"));
        symlink("..", root.join("z/up1")).unwrap();
        symlink("..", root.join("z/up2")).unwrap();
        let (dirs, plan) = plan_all(Layout::Verbatim, &root);
        assert_eq!(names(&dirs), ["INBOX", "z"]);
        assert_eq!(plan.loops.len(), 2);
        assert!(plan.links.is_empty());
    }

    #[test]
    fn links_between_branches_that_meet_again_are_cut() {
        let store = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(store.path()).unwrap();
        maildir(&root.join("a"));
        maildir(&root.join("b"));
        symlink(root.join("b"), root.join("a/x")).unwrap();
        symlink(root.join("a"), root.join("b/y")).unwrap();
        let (dirs, plan) = plan_all(Layout::Verbatim, &root);
        // a, b, a/x (= b), b/y (= a); a/x/y and b/y/x lead back.
        assert_eq!(names(&dirs), ["INBOX", "a", "a/x", "b", "b/y"]);
        assert_eq!(plan.loops.len(), 2);
    }

    #[test]
    fn a_linked_folder_is_planned_under_its_target_with_the_links_name() {
        let store = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(store.path()).unwrap();
        let outside = tempfile::tempdir().unwrap();
        let elsewhere = fs::canonicalize(outside.path()).unwrap().join("real");
        maildir(&root);
        maildir(&elsewhere);
        symlink(&elsewhere, root.join(".linked")).unwrap();
        let (dirs, plan) = plan_all(Layout::MaildirPlusPlus, &root);
        let linked = dirs
            .iter()
            .find(|planned| planned.folder == Some(Folder::from_levels(["linked"])))
            .unwrap();
        assert_eq!(linked.dir, elsewhere);
        assert!(dirs
            .iter()
            .any(|planned| planned.dir == elsewhere.join("new") && planned.via_link));
        assert!(!linked.via_link || linked.dir == elsewhere);
        assert_eq!(plan.links, vec![(root.join(".linked"), elsewhere)]);
    }
}
