//! What the engine knows of the watched directories: one entry per folder
//! directory (whether it, its `new/` and its `cur/` are watched, the inotify
//! instance holding them, the folder's names — more than one when links
//! reach it — and the folder directories watched right below it, so that
//! removing a folder costs its own subtree, not the whole tree), and the
//! links followed. Each path is stored once; `new/` and `cur/` are known
//! by name.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::classify::{Role, Tree, WatchedDir};
use crate::naming::{Folder, MailDir};

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

/// One watched directory, as the engine adds it.
#[derive(Debug)]
pub struct Watched {
    pub role: WatchedDir,
    /// The inotify instance holding its watch.
    pub shard: usize,
}

/// What is known of one folder directory. A folder's `new/` and `cur/` are
/// bits here, not paths of their own: each path is stored once.
#[derive(Debug, Default)]
struct Entry {
    /// Which of the directory itself, `new/` and `cur/` are watched.
    watched: u8,
    /// The inotify instance holding the folder's watches.
    shard: u8,
    /// For a sealed folder (its directory not watched), the directory's
    /// inode when it was sealed: a `new/` or `cur/` lost from that same
    /// directory unseals it; one lost with its directory is the root's news.
    sealed_ino: u64,
    /// The folder's names (more than one when links reach it).
    names: Names,
    /// Folder directories watched right below this one, so that removing a
    /// folder costs its own subtree, not the whole tree. Boxed: most
    /// folders have none, and a pointer is a sixth of an empty set.
    #[expect(clippy::box_collection, reason = "keeps every folder's entry small")]
    children: Option<Box<HashSet<Arc<Path>>>>,
}

/// A folder's names: almost always one, kept in the entry itself.
#[derive(Debug, Default)]
enum Names {
    #[default]
    None,
    One(Folder),
    /// Two or more.
    Many(Vec<Folder>),
}

impl Names {
    fn as_slice(&self) -> &[Folder] {
        match self {
            Names::None => &[],
            Names::One(folder) => std::slice::from_ref(folder),
            Names::Many(folders) => folders,
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Names::None)
    }

    fn push(&mut self, folder: Folder) {
        *self = match std::mem::take(self) {
            Names::None => Names::One(folder),
            Names::One(first) => Names::Many(vec![first, folder]),
            Names::Many(mut folders) => {
                folders.push(folder);
                Names::Many(folders)
            }
        };
    }

    fn into_vec(self) -> Vec<Folder> {
        match self {
            Names::None => Vec::new(),
            Names::One(folder) => vec![folder],
            Names::Many(folders) => folders,
        }
    }
}

const OWN: u8 = 1;

fn bit(which: MailDir) -> u8 {
    match which {
        MailDir::New => 2,
        MailDir::Cur => 4,
    }
}

fn mail_name(which: MailDir) -> &'static str {
    match which {
        MailDir::New => "new",
        MailDir::Cur => "cur",
    }
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.watched == 0 && self.names.is_empty() && self.children.is_none()
    }
}

#[derive(Default)]
pub struct Dirs {
    /// Folder directory → what is watched of it and its names.
    folders: HashMap<Arc<Path>, Entry>,
    /// A `new/` or `cur/` watched at a path other than its folder's
    /// `new/`/`cur/` (the link itself leads elsewhere): path → folder
    /// directory, which, shard.
    strays: HashMap<PathBuf, (PathBuf, MailDir, usize)>,
    /// Links followed: link path → canonical target.
    links: HashMap<PathBuf, PathBuf>,
    /// How many directories are watched.
    count: usize,
    /// How many folders have names.
    named: usize,
}

impl Tree for Dirs {
    fn watched<'a>(&'a self, dir: &'a Path) -> Option<Role<'a>> {
        if self
            .folders
            .get(dir)
            .is_some_and(|entry| entry.watched & OWN != 0)
        {
            return Some(Role::Folder);
        }
        if let Some((folder_dir, which)) = self.mail_slot(dir) {
            return Some(Role::Mail { folder_dir, which });
        }
        self.strays.get(dir).map(|(folder_dir, which, _)| Role::Mail {
            folder_dir,
            which: *which,
        })
    }
}

impl Dirs {
    /// `dir` as the watched `new/` or `cur/` of its parent folder.
    fn mail_slot<'a>(&self, dir: &'a Path) -> Option<(&'a Path, MailDir)> {
        let which = match dir.file_name()?.as_bytes() {
            b"new" => MailDir::New,
            b"cur" => MailDir::Cur,
            _ => return None,
        };
        let folder_dir = dir.parent()?;
        let entry = self.folders.get(folder_dir)?;
        (entry.watched & bit(which) != 0).then_some((folder_dir, which))
    }

    /// The entry of `dir`, made when missing.
    fn entry(&mut self, dir: &Path) -> &mut Entry {
        if !self.folders.contains_key(dir) {
            self.folders.insert(Arc::from(dir), Entry::default());
        }
        self.folders.get_mut(dir).expect("inserted above")
    }

    /// Drops the entry of `dir` when it holds nothing any more.
    fn prune(&mut self, dir: &Path) {
        if self.folders.get(dir).is_some_and(Entry::is_empty) {
            self.folders.remove(dir);
        }
    }

    pub fn contains(&self, dir: &Path) -> bool {
        self.watched(dir).is_some()
    }

    /// Whether `dir` is a folder's directory: watched, or sealed (only its
    /// `new/` and `cur/` watched) and named.
    pub fn is_folder(&self, dir: &Path) -> bool {
        self.folders
            .get(dir)
            .is_some_and(|entry| entry.watched & OWN != 0 || !entry.names.is_empty())
    }

    /// How many directories are watched.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn insert(&mut self, dir: PathBuf, watched: Watched) {
        let already = self.contains(&dir);
        let shard = watched.shard;
        match watched.role {
            WatchedDir::Folder => {
                let entry = self.entry(&dir);
                entry.watched |= OWN;
                entry.shard = shard as u8;
                if let Some(parent) = dir.parent() {
                    let key = self
                        .folders
                        .get_key_value(dir.as_path())
                        .map(|(key, _)| Arc::clone(key))
                        .expect("inserted above");
                    self.entry(parent)
                        .children
                        .get_or_insert_with(Default::default)
                        .insert(key);
                }
            }
            WatchedDir::Mail { folder_dir, which } => {
                if dir.parent() == Some(folder_dir.as_path())
                    && dir.file_name() == Some(mail_name(which).as_ref())
                {
                    let entry = self.entry(&folder_dir);
                    entry.watched |= bit(which);
                    entry.shard = shard as u8;
                } else {
                    self.strays.insert(dir, (folder_dir, which, shard));
                }
            }
        }
        if !already {
            self.count += 1;
        }
    }

    /// Forgets `dir` alone (a folder's directory: its names too); returns
    /// the inotify instance that held its watch.
    pub fn remove(&mut self, dir: &Path) -> Option<usize> {
        if let Some(entry) = self.folders.get_mut(dir).filter(|entry| entry.watched & OWN != 0) {
            entry.watched &= !OWN;
            let shard = usize::from(entry.shard);
            if !entry.names.is_empty() {
                entry.names = Names::None;
                self.named -= 1;
            }
            self.prune(dir);
            if let Some(parent) = dir.parent() {
                if let Some(entry) = self.folders.get_mut(parent) {
                    if let Some(children) = entry.children.as_mut() {
                        children.remove(dir);
                        if children.is_empty() {
                            entry.children = None;
                        }
                    }
                }
                self.prune(parent);
            }
            self.count -= 1;
            return Some(shard);
        }
        if let Some((folder_dir, which)) = self.mail_slot(dir) {
            let entry = self.folders.get_mut(folder_dir).expect("found above");
            entry.watched &= !bit(which);
            let shard = usize::from(entry.shard);
            self.prune(folder_dir);
            self.count -= 1;
            return Some(shard);
        }
        let (_, _, shard) = self.strays.remove(dir)?;
        self.count -= 1;
        Some(shard)
    }

    /// Forgets `top` and every watched directory below it; returns them with
    /// their watchers, for unwatching.
    pub fn remove_subtree(&mut self, top: &Path) -> Vec<(PathBuf, usize)> {
        let mut removed = Vec::new();
        let mut stack = vec![top.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if let Some(children) = self
                .folders
                .get_mut(dir.as_path())
                .and_then(|entry| entry.children.take())
            {
                stack.extend(children.iter().map(|child| child.to_path_buf()));
            }
            for which in [MailDir::New, MailDir::Cur] {
                let mail_dir = dir.join(mail_name(which));
                if let Some(shard) = self.remove(&mail_dir) {
                    removed.push((mail_dir, shard));
                }
            }
            if let Some(shard) = self.remove(&dir) {
                removed.push((dir.clone(), shard));
            }
            // A sealed folder (its directory not watched) has its names still.
            if let Some(entry) = self.folders.get_mut(dir.as_path()) {
                if !entry.names.is_empty() {
                    entry.names = Names::None;
                    self.named -= 1;
                }
            }
            self.prune(&dir);
        }
        removed
    }

    /// Every watched directory.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths = Vec::with_capacity(self.count);
        for (dir, entry) in &self.folders {
            if entry.watched & OWN != 0 {
                paths.push(dir.to_path_buf());
            }
            for which in [MailDir::New, MailDir::Cur] {
                if entry.watched & bit(which) != 0 {
                    paths.push(dir.join(mail_name(which)));
                }
            }
        }
        paths.extend(self.strays.keys().cloned());
        paths
    }

    /// Records that the folder directory `dir` (now `id`) is sealed.
    pub fn seal(&mut self, dir: &Path, id: Identity) {
        self.entry(dir).sealed_ino = id.ino;
    }

    /// Whether `dir` is the directory that was sealed, still there.
    pub fn is_sealed_and_there(&self, dir: &Path) -> bool {
        let sealed = self.folders.get(dir).map_or(0, |entry| entry.sealed_ino);
        sealed != 0 && Identity::of(dir).is_some_and(|now| now.ino == sealed)
    }

    /// Adds a name of the folder whose directory is `dir`; true when new.
    pub fn add_name(&mut self, dir: &Path, folder: Folder) -> bool {
        let entry = self.entry(dir);
        if entry.names.as_slice().contains(&folder) {
            return false;
        }
        let first = entry.names.is_empty();
        entry.names.push(folder);
        if first {
            self.named += 1;
        }
        true
    }

    /// The names of the folder whose directory is `dir`.
    pub fn names(&self, dir: &Path) -> &[Folder] {
        self.folders.get(dir).map_or(&[], |entry| entry.names.as_slice())
    }

    /// Forgets every name and link, for a traversal that finds them anew;
    /// returns the names known until now.
    pub fn take_names(&mut self) -> HashMap<Arc<Path>, Vec<Folder>> {
        self.links.clear();
        self.named = 0;
        let mut before = HashMap::new();
        for (dir, entry) in &mut self.folders {
            if !entry.names.is_empty() {
                before.insert(Arc::clone(dir), std::mem::take(&mut entry.names).into_vec());
            }
        }
        self.folders.retain(|_, entry| !entry.is_empty());
        before
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
        self.named
    }

    /// Every name of every folder with a watched `new/` or `cur/`, in order.
    pub fn maildirs(&self) -> Vec<Folder> {
        let with_mail = self
            .folders
            .iter()
            .filter(|(_, entry)| entry.watched & !OWN != 0)
            .map(|(dir, _)| &**dir)
            .chain(
                self.strays
                    .values()
                    .map(|(folder_dir, _, _)| folder_dir.as_path()),
            );
        let mut found: Vec<Folder> = with_mail
            .flat_map(|dir| self.names(dir).iter().cloned())
            .collect();
        found.sort();
        found.dedup();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn counts_names_and_a_mail_directory_reached_by_a_link() {
        let mut dirs = Dirs::default();
        dirs.insert(PathBuf::from("/m/.a"), watched(WatchedDir::Folder));
        let mail = |which| WatchedDir::Mail {
            folder_dir: PathBuf::from("/m/.a"),
            which,
        };
        dirs.insert(PathBuf::from("/m/.a/new"), watched(mail(MailDir::New)));
        // A cur/ that is a link to a directory elsewhere is watched there.
        dirs.insert(PathBuf::from("/elsewhere/x"), watched(mail(MailDir::Cur)));
        dirs.insert(PathBuf::from("/m/.a/new"), watched(mail(MailDir::New)));
        assert_eq!(dirs.len(), 3);
        assert_eq!(
            dirs.watched(Path::new("/elsewhere/x")),
            Some(Role::Mail {
                folder_dir: Path::new("/m/.a"),
                which: MailDir::Cur
            })
        );
        assert_eq!(dirs.watched(Path::new("/m/.a/cur")), None);
        assert!(dirs.add_name(Path::new("/m/.a"), Folder::from_levels(["a"])));
        assert!(!dirs.add_name(Path::new("/m/.a"), Folder::from_levels(["a"])));
        assert!(dirs.add_name(Path::new("/m/.a"), Folder::from_levels(["b"])));
        assert_eq!(dirs.folder_count(), 1);
        assert_eq!(
            dirs.maildirs(),
            [Folder::from_levels(["a"]), Folder::from_levels(["b"])]
        );
        let mut paths = dirs.paths();
        paths.sort();
        assert_eq!(
            paths,
            [
                Path::new("/elsewhere/x"),
                Path::new("/m/.a"),
                Path::new("/m/.a/new")
            ]
        );
        let before = dirs.take_names();
        assert_eq!(before[Path::new("/m/.a")].len(), 2);
        assert_eq!(dirs.folder_count(), 0);
        assert_eq!(dirs.remove(Path::new("/elsewhere/x")), Some(0));
        assert_eq!(dirs.remove(Path::new("/m/.a/new")), Some(0));
        assert_eq!(dirs.remove(Path::new("/m/.a")), Some(0));
        assert_eq!(dirs.remove(Path::new("/m/.a")), None);
        assert_eq!(dirs.len(), 0);
        assert!(dirs.folders.is_empty(), "no entry is left behind");
    }
}
