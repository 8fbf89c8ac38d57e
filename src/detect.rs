//! Layout detection: looks at a mail store on disk and says how its folders
//! are laid out.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::naming::Layout;

/// Whether `dir` is a maildir (has `cur/` or `new/`).
pub fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() || dir.join("new").is_dir()
}

/// Guesses the layout of the store at `root`.
///
/// - any subfolder with `.nnmaildir/` → nnmaildir (Gnus has been there);
/// - a dot-subfolder that is a maildir → Maildir++;
/// - a maildir below a subfolder (nesting) → verbatim;
/// - a root with no maildir of its own but maildir subfolders → nnmaildir;
/// - anything else (one maildir, an empty store) → Maildir++.
pub fn detect_layout(root: &Path) -> std::io::Result<Layout> {
    let mut dotted_maildirs = false;
    let mut plain_maildirs = false;
    let mut nested = false;
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name();
        let bytes = name.as_bytes();
        if matches!(bytes, b"cur" | b"new" | b"tmp" | b".nnmaildir") || !entry.path().is_dir() {
            continue;
        }
        let path = entry.path();
        if bytes.first() == Some(&b'.') {
            dotted_maildirs |= is_maildir(&path);
            continue;
        }
        if path.join(".nnmaildir").is_dir() {
            return Ok(Layout::Nnmaildir);
        }
        plain_maildirs |= is_maildir(&path);
        if !nested {
            nested = fs::read_dir(&path)?.filter_map(Result::ok).any(|child| {
                !matches!(child.file_name().as_bytes(), b"cur" | b"new" | b"tmp") && is_maildir(&child.path())
            });
        }
    }
    Ok(if dotted_maildirs {
        Layout::MaildirPlusPlus
    } else if nested {
        Layout::Verbatim
    } else if plain_maildirs && !is_maildir(root) {
        Layout::Nnmaildir
    } else if plain_maildirs {
        Layout::Verbatim
    } else {
        Layout::MaildirPlusPlus
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maildir(path: &Path) {
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(path.join(sub)).unwrap();
        }
    }

    #[test]
    fn detects_each_layout() {
        let store = tempfile::tempdir().unwrap();
        let root = store.path();

        let plusplus = root.join("pp");
        maildir(&plusplus);
        maildir(&plusplus.join(".lists.emacs"));
        assert_eq!(detect_layout(&plusplus).unwrap(), Layout::MaildirPlusPlus);

        let verbatim = root.join("verbatim");
        maildir(&verbatim);
        maildir(&verbatim.join("lists/emacs"));
        assert_eq!(detect_layout(&verbatim).unwrap(), Layout::Verbatim);

        let flat_with_inbox = root.join("flat");
        maildir(&flat_with_inbox);
        maildir(&flat_with_inbox.join("lists"));
        assert_eq!(detect_layout(&flat_with_inbox).unwrap(), Layout::Verbatim);

        let nnmaildir = root.join("nnmaildir");
        maildir(&nnmaildir.join("INBOX"));
        maildir(&nnmaildir.join("work"));
        assert_eq!(detect_layout(&nnmaildir).unwrap(), Layout::Nnmaildir);

        let used_by_gnus = root.join("gnus");
        maildir(&used_by_gnus);
        maildir(&used_by_gnus.join("a"));
        fs::create_dir_all(used_by_gnus.join("a/.nnmaildir")).unwrap();
        assert_eq!(detect_layout(&used_by_gnus).unwrap(), Layout::Nnmaildir);

        let empty = root.join("empty");
        fs::create_dir_all(&empty).unwrap();
        assert_eq!(detect_layout(&empty).unwrap(), Layout::MaildirPlusPlus);
    }

    #[test]
    fn a_missing_root_is_an_error() {
        assert!(detect_layout(Path::new("/nonexistent/mailsync/root")).is_err());
    }
}
