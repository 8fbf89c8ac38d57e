//! What the engine knows of the watched directories: each one's role, the
//! inotify instance holding its watch, the directories watched
//! below it (so removing a folder costs its own subtree, not the whole
//! tree), the names of each folder (more than one when links reach it), and
//! the links followed.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::classify::{Tree, WatchedDir};
use crate::naming::Folder;

/// A directory's identity on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    /// The identity of the directory at `path` now, following links.
    pub fn of(path: &Path) -> Option<Identity> {
        let meta = fs::metadata(path).ok()?;
        meta.is_dir().then(|| Identity {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// One watched directory.
#[derive(Debug)]
pub struct Watched {
    pub role: WatchedDir,
    /// The inotify instance holding its watch.
    pub shard: usize,
}

#[derive(Default)]
pub struct Dirs {
    dirs: HashMap<PathBuf, Watched>,
    /// Folder directories watched right below each directory (by path). A
    /// folder's `new/` and `cur/` are not listed: they are known by name.
    children: HashMap<PathBuf, HashSet<PathBuf>>,
    /// Folder directory → the folder's names.
    names: HashMap<PathBuf, Vec<Folder>>,
    /// Links followed: link path → canonical target.
    links: HashMap<PathBuf, PathBuf>,
}

impl Tree for Dirs {
    fn watched(&self, dir: &Path) -> Option<&WatchedDir> {
        self.dirs.get(dir).map(|watched| &watched.role)
    }
}

/// The directory whose children list holds `dir`: none for `new/` and `cur/`.
fn listed_under<'a>(dir: &'a Path, role: &WatchedDir) -> Option<&'a Path> {
    match role {
        WatchedDir::Mail { .. } => None,
        WatchedDir::Folder => dir.parent(),
    }
}

impl Dirs {
    pub fn contains(&self, dir: &Path) -> bool {
        self.dirs.contains_key(dir)
    }

    /// How many directories are watched.
    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    pub fn insert(&mut self, dir: PathBuf, watched: Watched) {
        if let Some(parent) = listed_under(&dir, &watched.role) {
            self.children
                .entry(parent.to_path_buf())
                .or_default()
                .insert(dir.clone());
        }
        self.dirs.insert(dir, watched);
    }

    /// Forgets `dir` alone; returns its entry.
    pub fn remove(&mut self, dir: &Path) -> Option<Watched> {
        let watched = self.dirs.remove(dir)?;
        if let Some(parent) = listed_under(dir, &watched.role) {
            if let Some(siblings) = self.children.get_mut(parent) {
                siblings.remove(dir);
                if siblings.is_empty() {
                    self.children.remove(parent);
                }
            }
        }
        self.names.remove(dir);
        Some(watched)
    }

    /// Forgets `top` and every watched directory below it; returns them with
    /// their watchers, for unwatching.
    pub fn remove_subtree(&mut self, top: &Path) -> Vec<(PathBuf, usize)> {
        let mut removed = Vec::new();
        let mut stack = vec![top.to_path_buf()];
        while let Some(dir) = stack.pop() {
            stack.extend(self.children.remove(&dir).unwrap_or_default());
            for mail in ["new", "cur"] {
                let mail_dir = dir.join(mail);
                if let Some(watched) = self.remove(&mail_dir) {
                    removed.push((mail_dir, watched.shard));
                }
            }
            if let Some(watched) = self.remove(&dir) {
                removed.push((dir, watched.shard));
            }
        }
        removed
    }

    /// Every watched directory.
    pub fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.dirs.keys()
    }

    /// Adds a name of the folder whose directory is `dir`; true when new.
    pub fn add_name(&mut self, dir: &Path, folder: Folder) -> bool {
        let names = self.names.entry(dir.to_path_buf()).or_default();
        if names.contains(&folder) {
            return false;
        }
        names.push(folder);
        true
    }

    /// The names of the folder whose directory is `dir`.
    pub fn names(&self, dir: &Path) -> &[Folder] {
        self.names.get(dir).map_or(&[], Vec::as_slice)
    }

    /// Forgets every name and link, for a traversal that finds them anew.
    pub fn take_names(&mut self) -> HashMap<PathBuf, Vec<Folder>> {
        self.links.clear();
        std::mem::take(&mut self.names)
    }

    pub fn add_link(&mut self, link: PathBuf, target: PathBuf) {
        self.links.insert(link, target);
    }

    pub fn is_link(&self, path: &Path) -> bool {
        self.links.contains_key(path)
    }

    /// Whether a followed link stands at or below `dir`, or leads there.
    pub fn links_touch(&self, dir: &Path) -> bool {
        self.links
            .iter()
            .any(|(link, target)| link.starts_with(dir) || target.starts_with(dir))
    }

    /// How many folders have names.
    pub fn folder_count(&self) -> usize {
        self.names.len()
    }

    /// Every name of every folder with a watched `new/` or `cur/`, in order.
    pub fn maildirs(&self) -> Vec<Folder> {
        let mut found: Vec<Folder> = self
            .dirs
            .values()
            .filter_map(|watched| match &watched.role {
                WatchedDir::Mail { folder_dir, .. } => Some(folder_dir),
                WatchedDir::Folder => None,
            })
            .flat_map(|folder_dir| self.names(folder_dir).iter().cloned())
            .collect();
        found.sort();
        found.dedup();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::MailDir;

    fn watched(role: WatchedDir) -> Watched {
        Watched { role, shard: 0 }
    }

    #[test]
    fn removing_a_folder_takes_its_subtree_and_nothing_else() {
        let mut dirs = Dirs::default();
        for folder in ["/m", "/m/a", "/m/a/b", "/m/c"] {
            dirs.insert(PathBuf::from(folder), watched(WatchedDir::Folder));
            dirs.insert(
                Path::new(folder).join("new"),
                watched(WatchedDir::Mail {
                    folder_dir: PathBuf::from(folder),
                    which: MailDir::New,
                }),
            );
        }
        let mut removed: Vec<PathBuf> = dirs
            .remove_subtree(Path::new("/m/a"))
            .into_iter()
            .map(|(dir, _)| dir)
            .collect();
        removed.sort();
        let expected: Vec<PathBuf> = ["/m/a", "/m/a/b", "/m/a/b/new", "/m/a/new"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(removed, expected);
        assert_eq!(dirs.len(), 4);
        assert!(dirs.contains(Path::new("/m/c/new")));
        assert!(dirs.remove_subtree(Path::new("/m/a")).is_empty());
    }
}
