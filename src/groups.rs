//! Local folder names to Gnus group names: the one implementation, used by
//! the Emacs module (which hands Lisp finished names) and by the
//! `emacsclient` checks of the command line (server prefix, inbox,
//! separator, and Dovecot's modified UTF-7 decoded).

use crate::naming::{decode_imap_utf7, Folder, NameStyle};

/// How a local folder name becomes a Gnus group name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMap {
    /// How local names are spelled (what the watcher prints, or mswatch hands over).
    pub local: NameStyle,
    /// How the group's folder part is spelled.
    pub group: NameStyle,
    /// The group name with `%s` standing for the folder part, e.g.
    /// `nnimap+local:%s`.
    pub template: String,
    /// Names on disk are IMAP modified UTF-7 (Dovecot's and mbsync's
    /// default), which Gnus shows decoded.
    pub utf7: bool,
}

/// Whether names of a store read by the Gnus server `server` are modified
/// UTF-7 on disk, when not said: yes for nnimap (Dovecot serves the store).
pub fn utf7_by_default(server: &str) -> bool {
    server.starts_with("nnimap")
}

impl GroupMap {
    /// `server` is a Gnus server prefix such as `nnimap+local` (empty: the
    /// native method); `template`, when given, overrides it.
    pub fn new(local: NameStyle, group: NameStyle, server: &str, template: Option<&str>, utf7: bool) -> Self {
        let template = match template {
            Some(template) => template.to_string(),
            None if server.is_empty() => "%s".to_string(),
            None => format!("{server}:%s"),
        };
        GroupMap {
            local,
            group,
            template,
            utf7,
        }
    }

    /// The folder part of the group name of `folder`.
    pub fn folder_name(&self, folder: &Folder) -> Vec<u8> {
        let name = folder.name(&self.group);
        match self.utf7.then(|| decode_imap_utf7(&name)).flatten() {
            Some(decoded) => decoded.into_bytes(),
            None => name,
        }
    }

    /// The Gnus group of the local folder `name`: the template with its
    /// first `%s` replaced by the folder part.
    pub fn group(&self, name: &[u8]) -> Vec<u8> {
        self.group_of(&self.local.parse_dotted(name))
    }

    /// The Gnus group of `folder`.
    pub fn group_of(&self, folder: &Folder) -> Vec<u8> {
        let folder = self.folder_name(folder);
        let template = self.template.as_bytes();
        match template.windows(2).position(|pair| pair == b"%s") {
            Some(at) => [&template[..at], &folder, &template[at + 2..]].concat(),
            None => [template, &folder].concat(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style(inbox: &str, separator: &str) -> NameStyle {
        NameStyle::new(inbox, separator)
    }

    #[test]
    fn server_prefix_inbox_and_separator() {
        let map = GroupMap::new(
            style("INBOX", "."),
            style("INBOX", "."),
            "nnimap+local",
            None,
            false,
        );
        assert_eq!(map.group(b"INBOX"), b"nnimap+local:INBOX");
        assert_eq!(map.group(b"lists.emacs"), b"nnimap+local:lists.emacs");
        let slashed = GroupMap::new(
            style("INBOX", "."),
            style("INBOX", "/"),
            "nnimap+local",
            None,
            false,
        );
        assert_eq!(slashed.group(b"lists.emacs"), b"nnimap+local:lists/emacs");
    }

    #[test]
    fn the_seed_turned_slashes_into_dots() {
        let map = GroupMap::new(style("INBOX", "/"), style("INBOX", "."), "", None, false);
        assert_eq!(map.group(b"[Gmail]/Sent Mail"), b"[Gmail].Sent Mail");
    }

    #[test]
    fn templates_and_inbox_names_as_the_seed_watcher_had_them() {
        let map = GroupMap::new(
            style("INBOX", "."),
            style("mail.inbox", "."),
            "",
            Some("nnml:%s"),
            false,
        );
        assert_eq!(map.group(b"INBOX"), b"nnml:mail.inbox");
        assert_eq!(map.group(b"work"), b"nnml:work");
    }

    #[test]
    fn dovecots_utf7_names_become_the_groups_gnus_shows() {
        let map = GroupMap::new(
            style("INBOX", "."),
            style("INBOX", "."),
            "nnimap+local",
            None,
            true,
        );
        assert_eq!(map.group(b"Entw&APw-rfe"), "nnimap+local:Entwürfe".as_bytes());
        assert_eq!(
            map.group(b"lists.&ZeVnLIqe-"),
            "nnimap+local:lists.日本語".as_bytes()
        );
        assert_eq!(map.group(b"R&-D"), b"nnimap+local:R&D");
        assert!(utf7_by_default("nnimap+local") && !utf7_by_default("nnmaildir+x"));
    }

    #[test]
    fn maildir_plus_plus_leading_dots_and_odd_bytes() {
        let map = GroupMap::new(
            style("INBOX", "."),
            style("INBOX", "."),
            "nnmaildir+x",
            None,
            false,
        );
        assert_eq!(map.group(b".work"), b"nnmaildir+x:work");
        assert_eq!(map.group(b"caf\xe9 \"q\""), b"nnmaildir+x:caf\xe9 \"q\"");
    }
}
