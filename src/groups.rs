//! Local folder names to Gnus group names, for `emacsclient` checks: the
//! same mapping the Emacs side makes (server prefix, inbox, separator).

use crate::naming::NameStyle;

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
}

impl GroupMap {
    /// `server` is a Gnus server prefix such as `nnimap+local` (empty: the
    /// native method); `template`, when given, overrides it.
    pub fn new(local: NameStyle, group: NameStyle, server: &str, template: Option<&str>) -> Self {
        let template = match template {
            Some(template) => template.to_string(),
            None if server.is_empty() => "%s".to_string(),
            None => format!("{server}:%s"),
        };
        GroupMap {
            local,
            group,
            template,
        }
    }

    /// The Gnus group of the local folder `name`: the template with its
    /// first `%s` replaced by the folder part.
    pub fn group(&self, name: &[u8]) -> Vec<u8> {
        let folder = self.group_part(name);
        let template = self.template.as_bytes();
        match template.windows(2).position(|pair| pair == b"%s") {
            Some(at) => [&template[..at], &folder, &template[at + 2..]].concat(),
            None => [template, &folder].concat(),
        }
    }

    fn group_part(&self, name: &[u8]) -> Vec<u8> {
        self.local.parse_dotted(name).name(&self.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style(inbox: &str, separator: &str) -> NameStyle {
        NameStyle {
            inbox: inbox.as_bytes().to_vec(),
            separator: separator.as_bytes().to_vec(),
        }
    }

    #[test]
    fn server_prefix_inbox_and_separator() {
        let map = GroupMap::new(style("INBOX", "."), style("INBOX", "."), "nnimap+local", None);
        assert_eq!(map.group(b"INBOX"), b"nnimap+local:INBOX");
        assert_eq!(map.group(b"lists.emacs"), b"nnimap+local:lists.emacs");
        let slashed = GroupMap::new(style("INBOX", "."), style("INBOX", "/"), "nnimap+local", None);
        assert_eq!(slashed.group(b"lists.emacs"), b"nnimap+local:lists/emacs");
    }

    #[test]
    fn the_seed_turned_slashes_into_dots() {
        let map = GroupMap::new(style("INBOX", "/"), style("INBOX", "."), "", None);
        assert_eq!(map.group(b"[Gmail]/Sent Mail"), b"[Gmail].Sent Mail");
    }

    #[test]
    fn templates_and_inbox_names_as_the_seed_watcher_had_them() {
        let map = GroupMap::new(style("INBOX", "."), style("mail.inbox", "."), "", Some("nnml:%s"));
        assert_eq!(map.group(b"INBOX"), b"nnml:mail.inbox");
        assert_eq!(map.group(b"work"), b"nnml:work");
    }

    #[test]
    fn maildir_plus_plus_leading_dots_and_odd_bytes() {
        let map = GroupMap::new(style("INBOX", "."), style("INBOX", "."), "nnmaildir+x", None);
        assert_eq!(map.group(b".work"), b"nnmaildir+x:work");
        assert_eq!(map.group(b"caf\xe9 \"q\""), b"nnmaildir+x:caf\xe9 \"q\"");
    }
}
