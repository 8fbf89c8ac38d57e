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

/// The group template of the Gnus server prefix `server`, such as
/// `nnimap+local` (empty: the native method, no prefix).
pub fn server_template(server: &str) -> String {
    if server.is_empty() {
        "%s".to_string()
    } else {
        format!("{server}:%s")
    }
}

impl GroupMap {
    /// Folders spelled `style` on disk, and in the group names, of the
    /// Gnus server `server`.
    pub fn on_server(style: NameStyle, server: &str, utf7: bool) -> Self {
        GroupMap {
            local: style.clone(),
            group: style,
            template: server_template(server),
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

    /// One way of naming: local (inbox, separator), group (inbox,
    /// separator), server, template, UTF-7.
    type Naming = (
        (&'static str, &'static str),
        (&'static str, &'static str),
        &'static str,
        Option<&'static str>,
        bool,
    );

    const PLAIN: Naming = (("INBOX", "."), ("INBOX", "."), "nnimap+local", None, false);
    const UTF7: Naming = (("INBOX", "."), ("INBOX", "."), "nnimap+local", None, true);

    /// Cases as data: how names are made, the local name, the group.
    const CASES: &[(Naming, &[u8], &str)] = &[
        (PLAIN, b"INBOX", "nnimap+local:INBOX"),
        (PLAIN, b"lists.emacs", "nnimap+local:lists.emacs"),
        (
            (("INBOX", "."), ("INBOX", "/"), "nnimap+local", None, false),
            b"lists.emacs",
            "nnimap+local:lists/emacs",
        ),
        // The seed turned slashes into dots.
        (
            (("INBOX", "/"), ("INBOX", "."), "", None, false),
            b"[Gmail]/Sent Mail",
            "[Gmail].Sent Mail",
        ),
        // Templates and inbox names as the seed's watcher had them.
        (
            (("INBOX", "."), ("mail.inbox", "."), "", Some("nnml:%s"), false),
            b"INBOX",
            "nnml:mail.inbox",
        ),
        (
            (("INBOX", "."), ("mail.inbox", "."), "", Some("nnml:%s"), false),
            b"work",
            "nnml:work",
        ),
        // Dovecot's modified UTF-7 names become the groups Gnus shows.
        (UTF7, b"Entw&APw-rfe", "nnimap+local:Entwürfe"),
        (UTF7, b"lists.&ZeVnLIqe-", "nnimap+local:lists.日本語"),
        (UTF7, b"R&-D", "nnimap+local:R&D"),
        // Maildir++'s leading dot.
        (
            (("INBOX", "."), ("INBOX", "."), "nnmaildir+x", None, false),
            b".work",
            "nnmaildir+x:work",
        ),
    ];

    fn map(((local_inbox, local_sep), (group_inbox, group_sep), server, template, utf7): Naming) -> GroupMap {
        GroupMap {
            local: NameStyle::new(local_inbox, local_sep),
            group: NameStyle::new(group_inbox, group_sep),
            template: template.map_or_else(|| server_template(server), str::to_string),
            utf7,
        }
    }

    #[test]
    fn local_names_become_the_groups_gnus_shows() {
        for (naming, name, group) in CASES {
            assert_eq!(
                map(*naming).group(name),
                group.as_bytes(),
                "{}",
                String::from_utf8_lossy(name)
            );
        }
        assert!(utf7_by_default("nnimap+local") && !utf7_by_default("nnmaildir+x"));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_kept() {
        let naming = (("INBOX", "."), ("INBOX", "."), "nnmaildir+x", None, false);
        assert_eq!(map(naming).group(b"caf\xe9 \"q\""), b"nnmaildir+x:caf\xe9 \"q\"");
    }
}
