//! Maildir layouts and folder names: the one place that knows how a directory
//! on disk becomes the name a watcher prints, a Gnus group, or an OfflineIMAP
//! folder.
//!
//! A [`Folder`] is a list of levels (raw bytes, since file names on Linux need
//! not be UTF-8); the root of the tree is the folder with no levels, shown as
//! the inbox name. How levels map to directories depends on the [`Layout`].
//!
//! Longer than most modules on purpose: every rule of naming stays in this
//! one place, and a third of it is the tests of those rules.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::str::FromStr;

/// How the folders of one mail store are laid out on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Courier/Dovecot Maildir++: the root is INBOX, subfolders are `.a.b`.
    MaildirPlusPlus,
    /// Nested directories, `a/b/{cur,new,tmp}` (mbsync `SubFolders Verbatim`).
    Verbatim,
    /// Gnus nnmaildir: every direct, non-dot subdirectory is a folder.
    Nnmaildir,
}

impl Layout {
    /// Whether only the root can hold folders (Maildir++, nnmaildir): a
    /// folder's own directory then matters only for its `new/` and `cur/`
    /// coming and going.
    pub fn nests_only_at_root(self) -> bool {
        !matches!(self, Layout::Verbatim)
    }

    /// The name used on the command line and in Lisp.
    pub fn name(self) -> &'static str {
        match self {
            Layout::MaildirPlusPlus => "maildir++",
            Layout::Verbatim => "verbatim",
            Layout::Nnmaildir => "nnmaildir",
        }
    }

    /// The separator between levels in printed names, as mswatch expects.
    pub fn default_separator(self) -> &'static str {
        match self {
            Layout::Verbatim => "/",
            Layout::MaildirPlusPlus | Layout::Nnmaildir => ".",
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Layout {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "maildir++" | "maildirpp" | "maildir" => Ok(Layout::MaildirPlusPlus),
            "verbatim" | "nested" | "fs" => Ok(Layout::Verbatim),
            "nnmaildir" => Ok(Layout::Nnmaildir),
            other => Err(format!(
                "unknown layout `{other}` (expected maildir++, verbatim or nnmaildir)"
            )),
        }
    }
}

/// One mail folder, as a list of levels below the root.
///
/// Kept in one allocation, each level preceded by a NUL byte, which neither a
/// file name nor an IMAP mailbox name can hold: an engine holds one per
/// watched folder, and a list of levels cost three allocations for a folder
/// of one level. The bytes compare as the levels do (NUL sorts first).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Folder {
    encoded: Box<[u8]>,
}

impl fmt::Debug for Folder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.levels()).finish()
    }
}

impl Folder {
    /// The root of the store (INBOX in Maildir++).
    pub fn root() -> Self {
        Folder::default()
    }

    /// A folder from its levels, outermost first.
    pub fn from_levels<I, S>(levels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut encoded = Vec::new();
        for level in levels {
            encoded.push(0);
            encoded.extend_from_slice(level.as_ref().as_bytes());
        }
        Folder {
            encoded: encoded.into_boxed_slice(),
        }
    }

    /// The levels, outermost first; none for the root.
    pub fn levels(&self) -> impl Iterator<Item = &OsStr> {
        self.encoded
            .split(|&byte| byte == 0)
            .skip(1)
            .map(OsStr::from_bytes)
    }

    /// Whether this is the root of the store.
    pub fn is_root(&self) -> bool {
        self.encoded.is_empty()
    }

    /// This folder with one more level below it.
    pub fn child(&self, level: &OsStr) -> Folder {
        let mut encoded = Vec::with_capacity(self.encoded.len() + 1 + level.len());
        encoded.extend_from_slice(&self.encoded);
        encoded.push(0);
        encoded.extend_from_slice(level.as_bytes());
        Folder {
            encoded: encoded.into_boxed_slice(),
        }
    }

    /// The name as bytes: the inbox name for the root, else the levels joined
    /// by the separator.
    pub fn name(&self, style: &NameStyle) -> Vec<u8> {
        if self.is_root() {
            return style.inbox.clone();
        }
        self.joined(&style.separator)
    }

    /// The directory of this folder relative to the root, for a layout.
    pub fn relative_dir(&self, layout: Layout) -> OsString {
        match layout {
            Layout::MaildirPlusPlus if !self.is_root() => {
                let mut dir = b".".to_vec();
                dir.extend(self.joined(b"."));
                OsString::from_vec(dir)
            }
            _ => OsString::from_vec(self.joined(b"/")),
        }
    }

    /// The levels joined by `separator`.
    fn joined(&self, separator: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded.len());
        for (index, level) in self.levels().enumerate() {
            if index > 0 {
                out.extend_from_slice(separator);
            }
            out.extend_from_slice(level.as_bytes());
        }
        out
    }
}

/// How folder names are spelled: the inbox name and the level separator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameStyle {
    pub inbox: Vec<u8>,
    pub separator: Vec<u8>,
}

impl NameStyle {
    pub fn new(inbox: impl Into<Vec<u8>>, separator: impl Into<Vec<u8>>) -> Self {
        NameStyle {
            inbox: inbox.into(),
            separator: separator.into(),
        }
    }

    /// Inbox `INBOX` and the layout's own separator.
    pub fn for_layout(layout: Layout) -> Self {
        NameStyle::new("INBOX", layout.default_separator())
    }

    /// Parses a name that may still carry its Maildir++ directory's leading
    /// dot (`.a.b`, as some watchers print it) into a folder.
    pub fn parse_dotted(&self, name: &[u8]) -> Folder {
        let name = name
            .strip_prefix(b".")
            .filter(|rest| !rest.is_empty())
            .unwrap_or(name);
        self.parse(name)
    }

    /// Parses a printed name back into a folder: the inverse of [`Folder::name`].
    pub fn parse(&self, name: &[u8]) -> Folder {
        if name == self.inbox.as_slice() {
            return Folder::root();
        }
        if self.separator.is_empty() {
            return Folder::from_levels([OsString::from_vec(name.to_vec())]);
        }
        Folder::from_levels(
            split_bytes(name, &self.separator)
                .into_iter()
                .map(|level| OsString::from_vec(level.to_vec())),
        )
    }
}

fn split_bytes<'a>(text: &'a [u8], separator: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut index = 0;
    while index + separator.len() <= text.len() {
        if &text[index..index + separator.len()] == separator {
            parts.push(&text[start..index]);
            index += separator.len();
            start = index;
        } else {
            index += 1;
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Decodes IMAP's modified UTF-7 (RFC 3501, 5.1.3), in which Dovecot and
/// mbsync store non-ASCII mailbox names on disk (`Entw&APw-rfe` is
/// `Entwürfe`, `R&-D` is `R&D`). None when `name` is not valid modified
/// UTF-7 (then it is a name of its own and stays as it is).
pub fn decode_imap_utf7(name: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some((&byte, after)) = rest.split_first() {
        if byte != b'&' {
            if !(0x20..=0x7e).contains(&byte) {
                return None;
            }
            out.push(byte as char);
            rest = after;
            continue;
        }
        let end = after.iter().position(|&b| b == b'-')?;
        let (encoded, tail) = (&after[..end], &after[end + 1..]);
        if encoded.is_empty() {
            out.push('&');
        } else {
            out.push_str(&decode_utf16_base64(encoded)?);
        }
        rest = tail;
    }
    Some(out)
}

/// Modified base64 (`,` for `/`, no padding) of UTF-16BE, to text.
fn decode_utf16_base64(encoded: &[u8]) -> Option<String> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut bytes = Vec::with_capacity(encoded.len());
    for &c in encoded {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b',' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    if bytes.is_empty() || bytes.len() % 2 != 0 || bits != 0 {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    let text = String::from_utf16(&units).ok()?;
    // Printable ASCII must not be encoded: such a name is not modified UTF-7.
    (!text.chars().any(|c| (' '..='~').contains(&c))).then_some(text)
}

/// What a directory found below a folder's directory is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirRole {
    /// A subfolder with its own directory.
    Folder(Folder),
    /// The folder's `new/` or `cur/`, where messages live.
    Mail(MailDir),
    /// Anything else: `tmp/`, `.nnmaildir/`, a mail reader's own files.
    Ignored,
}

/// The two message directories of a maildir that are watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MailDir {
    New,
    Cur,
}

/// Says what the directory `child` inside the directory of `parent` is.
pub fn classify_dir(layout: Layout, parent: &Folder, child: &OsStr) -> DirRole {
    let bytes = child.as_bytes();
    match bytes {
        b"new" => return DirRole::Mail(MailDir::New),
        b"cur" => return DirRole::Mail(MailDir::Cur),
        b"tmp" | b"." | b".." | b".nnmaildir" => return DirRole::Ignored,
        _ => {}
    }
    let dotted = bytes.first() == Some(&b'.');
    match layout {
        Layout::MaildirPlusPlus if dotted && parent.is_root() => DirRole::Folder(Folder::from_levels(
            split_bytes(&bytes[1..], b".")
                .into_iter()
                .map(|level| OsString::from_vec(level.to_vec())),
        )),
        Layout::Verbatim if !dotted => DirRole::Folder(parent.child(child)),
        Layout::Nnmaildir if !dotted && parent.is_root() => DirRole::Folder(parent.child(child)),
        _ => DirRole::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `name` below `parent` is in `layout`.
    fn role(layout: Layout, parent: &Folder, name: &[u8]) -> DirRole {
        classify_dir(layout, parent, os(name))
    }

    fn os(bytes: &[u8]) -> &OsStr {
        OsStr::from_bytes(bytes)
    }

    fn style(inbox: &str, separator: &str) -> NameStyle {
        NameStyle::new(inbox, separator)
    }

    #[test]
    fn maildir_plus_plus_names_drop_the_leading_dot() {
        let role = role(Layout::MaildirPlusPlus, &Folder::root(), b".a.b");
        let DirRole::Folder(folder) = role else {
            panic!("not a folder: {role:?}")
        };
        assert_eq!(
            folder.name(&NameStyle::for_layout(Layout::MaildirPlusPlus)),
            b"a.b"
        );
        assert_eq!(folder.name(&style("INBOX", "/")), b"a/b");
        assert_eq!(folder.relative_dir(Layout::MaildirPlusPlus), ".a.b");
    }

    #[test]
    fn maildir_plus_plus_ignores_undotted_and_nested_directories() {
        let root = Folder::root();
        assert_eq!(
            role(Layout::MaildirPlusPlus, &root, b"courierimapkeys"),
            DirRole::Ignored
        );
        let sub = Folder::from_levels(["a"]);
        assert_eq!(role(Layout::MaildirPlusPlus, &sub, b".b"), DirRole::Ignored);
    }

    #[test]
    fn root_is_the_inbox_under_any_name() {
        assert_eq!(
            Folder::root().name(&NameStyle::for_layout(Layout::Verbatim)),
            b"INBOX"
        );
        assert_eq!(
            Folder::root().name(&style("nnmaildir+local:INBOX", ".")),
            b"nnmaildir+local:INBOX"
        );
        assert_eq!(style("Inbox", ".").parse(b"Inbox"), Folder::root());
    }

    #[test]
    fn verbatim_names_nest_with_slashes() {
        let a = match role(Layout::Verbatim, &Folder::root(), b"a") {
            DirRole::Folder(folder) => folder,
            other => panic!("{other:?}"),
        };
        let ab = match role(Layout::Verbatim, &a, b"b") {
            DirRole::Folder(folder) => folder,
            other => panic!("{other:?}"),
        };
        assert_eq!(ab.name(&NameStyle::for_layout(Layout::Verbatim)), b"a/b");
        assert_eq!(ab.relative_dir(Layout::Verbatim), "a/b");
        assert_eq!(role(Layout::Verbatim, &a, b".hidden"), DirRole::Ignored);
    }

    #[test]
    fn nnmaildir_has_only_direct_subdirectories() {
        let root = Folder::root();
        let DirRole::Folder(foo) = role(Layout::Nnmaildir, &root, b"foo.bar") else {
            panic!()
        };
        assert_eq!(foo.levels().count(), 1);
        assert_eq!(foo.name(&NameStyle::for_layout(Layout::Nnmaildir)), b"foo.bar");
        assert_eq!(role(Layout::Nnmaildir, &foo, b"deeper"), DirRole::Ignored);
        assert_eq!(role(Layout::Nnmaildir, &root, b".nnmaildir"), DirRole::Ignored);
    }

    #[test]
    fn message_directories_are_recognised_and_tmp_is_not_watched() {
        let root = Folder::root();
        for layout in [Layout::MaildirPlusPlus, Layout::Verbatim, Layout::Nnmaildir] {
            assert_eq!(role(layout, &root, b"new"), DirRole::Mail(MailDir::New));
            assert_eq!(role(layout, &root, b"cur"), DirRole::Mail(MailDir::Cur));
            assert_eq!(role(layout, &root, b"tmp"), DirRole::Ignored);
        }
    }

    #[test]
    fn odd_names_survive_byte_for_byte() {
        let odd: [&[u8]; 6] = [
            b"with space",
            b"quote\"d",
            b"it's",
            b"[Gmail]",
            b"latin1-\xe9t\xe9",
            b"(shell-command \"touch PWNED\")",
        ];
        for name in odd {
            let folder = Folder::from_levels([OsStr::from_bytes(name)]);
            assert_eq!(folder.name(&NameStyle::for_layout(Layout::Nnmaildir)), name);
            assert_eq!(NameStyle::for_layout(Layout::Nnmaildir).parse(name), folder);
        }
        let gmail = Folder::from_levels(["[Gmail]", "Sent Mail"]);
        assert_eq!(
            gmail.name(&NameStyle::for_layout(Layout::MaildirPlusPlus)),
            b"[Gmail].Sent Mail"
        );
        assert_eq!(gmail.relative_dir(Layout::MaildirPlusPlus), ".[Gmail].Sent Mail");
        assert_eq!(style("INBOX", ".").parse(b"[Gmail].Sent Mail"), gmail);
    }

    #[test]
    fn folders_keep_their_levels_and_order_as_lists_of_levels() {
        let cases: &[&[&[u8]]] = &[
            &[],
            &[b""],
            &[b"", b""],
            &[b"a"],
            &[b"a", b""],
            &[b"a", b"b"],
            &[b"ab"],
            &[b"a.b"],
            &[b"\xff", b"sent mail"],
        ];
        let folders: Vec<Folder> = cases
            .iter()
            .map(|levels| Folder::from_levels(levels.iter().map(|level| os(level))))
            .collect();
        for (folder, levels) in folders.iter().zip(cases) {
            let back: Vec<&[u8]> = folder.levels().map(OsStr::as_bytes).collect();
            assert_eq!(&back, levels);
            assert_eq!(folder.is_root(), levels.is_empty());
        }
        for (a, levels_a) in folders.iter().zip(cases) {
            for (b, levels_b) in folders.iter().zip(cases) {
                assert_eq!(a.cmp(b), levels_a.cmp(levels_b), "{a:?} against {b:?}");
            }
        }
        let child = Folder::from_levels(["a"]).child(os(b"b"));
        assert_eq!(child, Folder::from_levels(["a", "b"]));
    }

    #[test]
    fn multi_byte_separators_round_trip() {
        let folder = Folder::from_levels(["a", "b", "c"]);
        let style = style("INBOX", "::");
        assert_eq!(folder.name(&style), b"a::b::c");
        assert_eq!(style.parse(b"a::b::c"), folder);
    }

    #[test]
    fn imap_utf7_names_decode_and_others_stay() {
        for (encoded, decoded) in [
            ("Entw&APw-rfe", Some("Entwürfe")),
            ("&ZeVnLIqe-", Some("日本語")),
            ("R&-D", Some("R&D")),
            ("[Gmail].Sent Mail", Some("[Gmail].Sent Mail")),
            ("&AGE-", None), // an encoded "a" is not modified UTF-7
            ("open&", None),
            ("&ZeV!-", None),
            ("a&b-c", None),
        ] {
            assert_eq!(
                decode_imap_utf7(encoded.as_bytes()).as_deref(),
                decoded,
                "{encoded}"
            );
        }
        assert_eq!(decode_imap_utf7(b"caf\xe9"), None);
    }

    #[test]
    fn layouts_parse_from_their_names() {
        for layout in [Layout::MaildirPlusPlus, Layout::Verbatim, Layout::Nnmaildir] {
            assert_eq!(layout.name().parse::<Layout>(), Ok(layout));
        }
        assert!("mh".parse::<Layout>().unwrap_err().contains("unknown layout"));
    }
}
