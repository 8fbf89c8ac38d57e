//! An account as the user's sync program already describes it: an
//! IMAPAccount (through its Channel) in `~/.mbsyncrc`, or an `[Account]`
//! with its remote repository in `~/.offlineimaprc`. Only what can be read
//! without running the program's own code is read; the rest is a clear
//! error that names the flag to use instead.

use std::collections::HashMap;
use std::path::PathBuf;

use super::{Account, Auth, Endpoint, Mechanism, Password, Secret, Tls};
use crate::ini;

/// An account and how its local store names folders.
#[derive(Debug)]
pub struct Found {
    pub account: Account,
    /// mbsync `Patterns` of the channel (empty: every mailbox).
    pub patterns: Vec<String>,
    /// The local store's separator between levels, when the config says.
    pub local_separator: Option<String>,
    /// What the sync program strips from the server's mailbox names (mbsync's
    /// IMAPStore `Path`, OfflineIMAP's `reference`): `INBOX.` on servers
    /// whose mailboxes sit below INBOX (Courier, Cyrus).
    pub server_prefix: Option<String>,
}

/// One `Keyword value` section of an mbsyncrc.
#[derive(Debug, Default)]
struct Section {
    kind: String,
    name: String,
    /// Lower-cased keys; a key given twice keeps every value.
    values: HashMap<String, Vec<String>>,
}

impl Section {
    fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .and_then(|values| values.last())
            .map(String::as_str)
    }
}

const SECTION_KINDS: [&str; 6] = [
    "imapaccount",
    "imapstore",
    "maildirstore",
    "channel",
    "group",
    "imap4account",
];

/// Strips one pair of double quotes (mbsync's quoting; `\"` inside).
fn unquote(text: &str) -> String {
    let text = text.trim();
    match text.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => text.to_string(),
    }
}

/// Splits `Patterns` values: words, or quoted strings holding spaces.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut any = false;
    for ch in text.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' | '\t' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut current));
                    any = false;
                }
            }
            _ => {
                current.push(ch);
                any = true;
            }
        }
    }
    if any {
        out.push(current);
    }
    out
}

fn mbsync_sections(text: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once([' ', '\t']).unwrap_or((line, ""));
        let key = key.to_ascii_lowercase();
        if SECTION_KINDS.contains(&key.as_str()) {
            sections.push(Section {
                kind: key,
                name: unquote(value),
                values: HashMap::new(),
            });
        } else if let Some(section) = sections.last_mut() {
            section
                .values
                .entry(key)
                .or_default()
                .push(value.trim().to_string());
        }
    }
    sections
}

/// The account of mbsync channel `name` (or of IMAPAccount `name`).
pub fn from_mbsync(text: &str, name: &str) -> Result<Found, String> {
    let sections = mbsync_sections(text);
    let channel = match find_section(&sections, &["channel"], name) {
        Some(channel) => Some(mbsync_channel(&sections, channel)?),
        None => None,
    };
    let store = channel.as_ref().map(|channel| channel.far);
    let account = match store.and_then(|store| store.get("account")) {
        Some(account) => find_section(&sections, MBSYNC_ACCOUNT, &unquote(account))
            .ok_or_else(|| format!("mbsync IMAPAccount {account} is not in the configuration"))?,
        // An IMAPStore may hold the account's settings itself.
        None => match store {
            Some(store) => store,
            None => find_section(&sections, MBSYNC_ACCOUNT, name)
                .ok_or_else(|| format!("no mbsync Channel or IMAPAccount named {name}"))?,
        },
    };
    let (patterns, local_separator) = channel
        .map(|channel| (channel.patterns, channel.local_separator))
        .unwrap_or_default();
    Ok(Found {
        account: mbsync_account(account)?,
        patterns,
        local_separator,
        server_prefix: store
            .and_then(|store| store.get("path"))
            .map(unquote)
            .filter(|path| !path.is_empty()),
    })
}

/// The section kinds that can hold an mbsync account's settings.
const MBSYNC_ACCOUNT: &[&str] = &["imapaccount", "imap4account"];

fn find_section<'a>(sections: &'a [Section], kinds: &[&str], wanted: &str) -> Option<&'a Section> {
    sections
        .iter()
        .find(|section| kinds.contains(&section.kind.as_str()) && section.name == wanted)
}

/// What an mbsync Channel says of its stores.
struct MbsyncChannel<'a> {
    /// The Far store, an IMAPStore.
    far: &'a Section,
    patterns: Vec<String>,
    /// The Near MaildirStore's separator between levels, when it has one.
    local_separator: Option<String>,
}

fn mbsync_channel<'a>(sections: &'a [Section], channel: &Section) -> Result<MbsyncChannel<'a>, String> {
    let name = &channel.name;
    let store_of = |reference: &str| {
        reference
            .trim_matches(':')
            .split(':')
            .next()
            .unwrap_or("")
            .to_string()
    };
    let far = channel
        .get("far")
        .or_else(|| channel.get("master"))
        .ok_or_else(|| format!("mbsync channel {name} has no Far store"))?;
    let near = channel.get("near").or_else(|| channel.get("slave")).map(store_of);
    let patterns = ["patterns", "pattern"]
        .iter()
        .filter_map(|key| channel.values.get(*key))
        .flatten()
        .flat_map(|value| words(value))
        .collect();
    let local_separator = near
        .and_then(|near| find_section(sections, &["maildirstore"], &near))
        .and_then(|store| MaildirStore::read(store).ok())
        .map(|store| store.separator().to_string());
    let far_store = store_of(far);
    let far = find_section(sections, &["imapstore"], &far_store)
        .ok_or_else(|| format!("mbsync channel {name}: its Far store {far_store} is not an IMAPStore"))?;
    Ok(MbsyncChannel {
        far,
        patterns,
        local_separator,
    })
}

/// The account an mbsync IMAPAccount (or IMAPStore) section describes.
fn mbsync_account(account: &Section) -> Result<Account, String> {
    let name = &account.name;
    if account.get("tunnel").is_some() {
        return Err(format!(
            "mbsync account {name}: Tunnel is not supported; give --host, --user and --pass-cmd"
        ));
    }
    let tls = match account.get("tlstype").or_else(|| account.get("ssltype")) {
        Some(kind) => match kind.to_ascii_lowercase().as_str() {
            "imaps" => Tls::Implicit,
            "starttls" => Tls::StartTls,
            "none" => Tls::None,
            other => return Err(format!("mbsync account {name}: unknown TLSType {other}")),
        },
        None => Tls::StartTls,
    };
    let host = account
        .get("host")
        .map(unquote)
        .ok_or_else(|| format!("mbsync account {name} has no Host"))?;
    check_host(&host).map_err(|why| format!("mbsync account {name}: Host {why}"))?;
    let port = match account.get("port") {
        Some(port) => port
            .parse()
            .map_err(|_| format!("mbsync account {name}: Port {port} is not a number"))?,
        None => tls.default_port(),
    };
    let user = account.get("user").map(unquote).ok_or_else(|| {
        format!("mbsync account {name} has no User (UserCmd is not supported: give --user)")
    })?;
    let password = if let Some(command) = account.get("passcmd") {
        Password::Command(unquote(command.trim_start_matches('+')))
    } else if let Some(pass) = account.get("pass") {
        Password::Given(Secret::new(unquote(pass)))
    } else {
        return Err(format!(
            "mbsync account {name} has neither Pass nor PassCmd (mbsync would ask; give --pass-cmd)"
        ));
    };
    let auth = match account.get("authmechs") {
        Some(names) => Auth::from_names(&unquote(names))
            .map_err(|err| format!("mbsync account {name}: AuthMechs: {err}"))?,
        None => Auth::default(),
    };
    let ca_files = account
        .get("certificatefile")
        .map(|file| PathBuf::from(expand_home(&unquote(file))))
        .into_iter()
        .collect();
    Ok(Account {
        label: name.clone(),
        endpoint: Endpoint::new(host, port, tls, ca_files).trusting_from("CertificateFile in ~/.mbsyncrc"),
        user,
        password,
        auth,
    })
}

/// How an mbsync MaildirStore lays out folders below its `Path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubFolders {
    /// `SubFolders Verbatim` (or none: then only one level): `a/b`.
    Verbatim,
    /// `SubFolders Maildir++`: `Path` is INBOX, folders are `.a.b` in it.
    MaildirPlusPlus,
    /// `SubFolders Legacy`: `a/.b`.
    Legacy,
}

/// The local store of an mbsync channel: its Near `MaildirStore`.
#[derive(Clone, Debug, PartialEq)]
pub struct MaildirStore {
    pub name: String,
    /// Where its folders are (`Path`, `~` expanded, no trailing `/`).
    pub path: Option<PathBuf>,
    /// Where INBOX is (`Inbox`, mbsync's default `~/Maildir`).
    pub inbox: PathBuf,
    pub subfolders: SubFolders,
    /// `Flatten`: nested folders are one directory, levels joined by it.
    pub flatten: Option<String>,
}

impl MaildirStore {
    fn read(section: &Section) -> Result<MaildirStore, String> {
        let path_of = |value: &str| {
            let path = expand_home(&unquote(value));
            PathBuf::from(path.trim_end_matches('/'))
        };
        let subfolders = match section.get("subfolders").map(str::to_ascii_lowercase).as_deref() {
            None | Some("verbatim") => SubFolders::Verbatim,
            Some("maildir++") => SubFolders::MaildirPlusPlus,
            Some("legacy") => SubFolders::Legacy,
            Some(other) => {
                return Err(format!(
                    "mbsync MaildirStore {}: unknown SubFolders {other}",
                    section.name
                ))
            }
        };
        Ok(MaildirStore {
            name: section.name.clone(),
            path: section.get("path").map(path_of),
            inbox: path_of(section.get("inbox").unwrap_or("~/Maildir")),
            subfolders,
            flatten: section
                .get("flatten")
                .map(unquote)
                .filter(|flatten| !flatten.is_empty()),
        })
    }

    /// The separator between levels in the names of its folders, as
    /// `mailsync watch` prints them and `mailsync sync` reads them.
    pub fn separator(&self) -> &str {
        match (&self.flatten, self.subfolders) {
            (Some(flatten), _) => flatten,
            (None, SubFolders::MaildirPlusPlus) => ".",
            (None, _) => "/",
        }
    }
}

/// Whether mbsync makes channel `channel`'s missing local mailboxes: a
/// `Create Near` or `Create Both` (1.3's `Slave`) in the channel, or among
/// the global options before the first section. mbsync adds them up.
pub fn mbsync_creates_near(text: &str, channel: &str) -> bool {
    let creates = |value: &str| {
        ["near", "both", "slave"]
            .iter()
            .any(|side| value.trim().eq_ignore_ascii_case(side))
    };
    let global = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .take_while(|line| {
            let key = line.split([' ', '\t']).next().unwrap_or("");
            !SECTION_KINDS.contains(&key.to_ascii_lowercase().as_str())
        })
        .filter_map(|line| line.split_once([' ', '\t']))
        .any(|(key, value)| key.eq_ignore_ascii_case("create") && creates(value));
    let sections = mbsync_sections(text);
    global
        || find_section(&sections, &["channel"], channel).is_some_and(|section| {
            section
                .values
                .get("create")
                .is_some_and(|values| values.iter().any(|value| creates(value)))
        })
}

/// The Near `MaildirStore` of mbsync channel `channel`.
pub fn mbsync_near_store(text: &str, channel: &str) -> Result<MaildirStore, String> {
    let sections = mbsync_sections(text);
    let section = find_section(&sections, &["channel"], channel)
        .ok_or_else(|| format!("no mbsync Channel named {channel}"))?;
    let near = section
        .get("near")
        .or_else(|| section.get("slave"))
        .ok_or_else(|| format!("mbsync channel {channel} has no Near store"))?;
    let (store, sub) = near
        .trim_start_matches(':')
        .split_once(':')
        .unwrap_or((near.trim_matches(':'), ""));
    if !sub.is_empty() {
        return Err(format!(
            "mbsync channel {channel}: its Near store names a folder ({near}); write an .mswatchrc for it"
        ));
    }
    let found = find_section(&sections, &["maildirstore"], store)
        .ok_or_else(|| format!("mbsync channel {channel}: its Near store {store} is not a MaildirStore"))?;
    MaildirStore::read(found)
}

fn expand_home(path: &str) -> String {
    match path.strip_prefix("~/") {
        Some(rest) => format!("{}/{rest}", std::env::var("HOME").unwrap_or_default()),
        None => path.to_string(),
    }
}

/// Why `host` cannot name a server, if it cannot: a configuration error,
/// never retried as a network one.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("is empty".into());
    }
    match host.chars().find(|c| c.is_control() || c.is_whitespace()) {
        Some(c) => Err(format!("{host:?} holds {c:?}, which no host name holds")),
        None => Ok(()),
    }
}

fn yes(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Some(true),
        "no" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// The remote repository's settings read here.
const REMOTE_KEYS: [&str; 12] = [
    "reference",
    "type",
    "remotehost",
    "remoteport",
    "remoteuser",
    "remotepass",
    "remotepassfile",
    "ssl",
    "starttls",
    "sslcacertfile",
    "auth_mechanisms",
    "oauth2_access_token",
];

/// The remote repository of OfflineIMAP account `name`.
pub fn from_offlineimap(text: &str, name: &str) -> Result<Found, String> {
    let sections = ini::parse(text);
    let account = sections
        .get(&ini::fold(&format!("account {name}")))
        .ok_or_else(|| format!("no [Account {name}] in the OfflineIMAP configuration"))?;
    let section = |key: &str| -> Result<&HashMap<String, String>, String> {
        let repository = account
            .get(key)
            .ok_or_else(|| format!("[Account {name}] has no {key}"))?;
        sections
            .get(&ini::fold(&format!("repository {repository}")))
            .ok_or_else(|| format!("no [Repository {repository}] in the OfflineIMAP configuration"))
    };
    let written = section("remoterepository")?;
    let local_separator = section("localrepository")
        .ok()
        .and_then(|local| local.get("sep").cloned());
    for python in [
        "remotepasseval",
        "remoteusereval",
        "remotehosteval",
        "remoteporteval",
    ] {
        if written.contains_key(python) {
            return Err(format!(
                "[Account {name}] uses {python}, which needs OfflineIMAP's Python; give --host, --user and --pass-cmd instead"
            ));
        }
    }
    let remote = ini::resolve(written, &REMOTE_KEYS).map_err(|why| format!("[Account {name}]: {why}"))?;
    let (user, password, auth) = offlineimap_login(name, written, &remote)?;
    Ok(Found {
        account: Account {
            label: name.to_string(),
            endpoint: offlineimap_endpoint(name, &remote)?,
            user,
            password,
            auth,
        },
        patterns: Vec::new(),
        local_separator,
        server_prefix: remote
            .get("reference")
            .filter(|reference| !reference.is_empty())
            .cloned(),
    })
}

/// Where an OfflineIMAP remote repository's server is, and how it is reached.
fn offlineimap_endpoint(name: &str, remote: &HashMap<String, String>) -> Result<Endpoint, String> {
    let gmail = remote
        .get("type")
        .is_some_and(|kind| kind.eq_ignore_ascii_case("gmail"));
    let host = match remote.get("remotehost") {
        Some(host) => host.clone(),
        None if gmail => "imap.gmail.com".to_string(),
        None => {
            return Err(format!(
                "[Account {name}]: the remote repository has no remotehost"
            ))
        }
    };
    check_host(&host).map_err(|why| format!("[Account {name}]: remotehost {why}"))?;
    let ssl = remote.get("ssl").and_then(|value| yes(value)).unwrap_or(true);
    let starttls = remote
        .get("starttls")
        .and_then(|value| yes(value))
        .unwrap_or(true);
    let tls = match (ssl, starttls) {
        (true, _) => Tls::Implicit,
        (false, true) => Tls::StartTls,
        (false, false) => Tls::None,
    };
    let port = match remote.get("remoteport") {
        Some(port) => port
            .parse()
            .map_err(|_| format!("[Account {name}]: remoteport {port} is not a number"))?,
        None => tls.default_port(),
    };
    let ca_files = remote
        .get("sslcacertfile")
        .filter(|file| file.as_str() != "OS-DEFAULT")
        .map(|file| PathBuf::from(expand_home(file)))
        .into_iter()
        .collect();
    Ok(Endpoint::new(host, port, tls, ca_files).trusting_from("sslcacertfile in ~/.offlineimaprc"))
}

/// Who logs in to an OfflineIMAP remote repository (as `written`, and with
/// its values resolved), with what secret and mechanisms.
fn offlineimap_login(
    name: &str,
    written: &HashMap<String, String>,
    remote: &HashMap<String, String>,
) -> Result<(String, Password, Auth), String> {
    let user = remote
        .get("remoteuser")
        .cloned()
        .ok_or_else(|| format!("[Account {name}]: the remote repository has no remoteuser (give --user)"))?;
    // OfflineIMAP gets tokens itself from a refresh token or Python; only
    // a token written out is read here, else a token helper is needed.
    for oauth in [
        "oauth2_access_token_eval",
        "oauth2_refresh_token",
        "oauth2_refresh_token_eval",
    ] {
        if written.contains_key(oauth) {
            return Err(format!(
                "[Account {name}] uses {oauth}; give a token helper with --pass-cmd and --auth xoauth2 instead"
            ));
        }
    }
    let token = remote.get("oauth2_access_token");
    let auth = match (token, remote.get("auth_mechanisms")) {
        (Some(_), _) => Auth::new(vec![Mechanism::XOAuth2]),
        // Without a token, the secret is a password: OfflineIMAP tries
        // XOAUTH2 only with OAuth2 settings.
        (None, Some(names)) => Auth::from_names(names)
            .map(Auth::without_tokens)
            .map_err(|err| format!("[Account {name}]: auth_mechanisms: {err}"))?,
        (None, None) => Auth::default(),
    };
    let password = if let Some(token) = token {
        Password::Given(Secret::new(token.clone()))
    } else if let Some(pass) = remote.get("remotepass") {
        Password::Given(Secret::new(pass.clone()))
    } else if let Some(file) = remote.get("remotepassfile") {
        Password::File(PathBuf::from(expand_home(file)))
    } else {
        return Err(format!(
            "[Account {name}]: no remotepass or remotepassfile (OfflineIMAP would ask or use a keyring); give --pass-cmd"
        ));
    };
    Ok((user, password, auth))
}

/// The local repository of an OfflineIMAP account: a `Maildir` one.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalRepository {
    pub name: String,
    /// `localfolders`, `~` expanded: each folder a directory in it.
    pub folders: PathBuf,
    /// `sep`: joins the levels of a folder's name (default `.`).
    pub sep: String,
}

/// The local repository of OfflineIMAP account `name`; an error when
/// reading it needs OfflineIMAP's Python (`nametrans`, `folderfilter`).
pub fn offlineimap_local_repository(text: &str, name: &str) -> Result<LocalRepository, String> {
    let sections = ini::parse(text);
    let account = sections
        .get(&ini::fold(&format!("account {name}")))
        .ok_or_else(|| format!("no [Account {name}] in the OfflineIMAP configuration"))?;
    let mut repositories = Vec::new();
    for key in ["localrepository", "remoterepository"] {
        let repository = account
            .get(key)
            .ok_or_else(|| format!("[Account {name}] has no {key}"))?;
        let section = sections
            .get(&ini::fold(&format!("repository {repository}")))
            .ok_or_else(|| format!("no [Repository {repository}] in the OfflineIMAP configuration"))?;
        if let Some(python) = ["nametrans", "folderfilter"]
            .into_iter()
            .find(|key| section.contains_key(*key))
        {
            return Err(format!(
                "[Repository {repository}] has {python}, which is Python that mailsync cannot run; \
                 write an .mswatchrc whose watchers name folders as it does (mailsync idle --name-map, --folder)"
            ));
        }
        repositories.push((repository.clone(), section));
    }
    let (repository, local) = &repositories[0];
    let local = ini::resolve(local, &["type", "localfolders", "sep"])
        .map_err(|why| format!("[Repository {repository}]: {why}"))?;
    match local.get("type") {
        Some(kind) if kind.eq_ignore_ascii_case("maildir") => {}
        other => {
            return Err(format!(
                "[Repository {repository}] is of type {}, not Maildir: mailsync watches maildirs",
                other.map_or("(none)", String::as_str)
            ))
        }
    }
    let folders = local
        .get("localfolders")
        .ok_or_else(|| format!("[Repository {repository}] has no localfolders"))?;
    Ok(LocalRepository {
        name: repository.clone(),
        folders: PathBuf::from(expand_home(folders.trim_end_matches('/'))),
        sep: local.get("sep").cloned().unwrap_or_else(|| ".".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MBSYNCRC: &str = r#"
# a comment
IMAPAccount work
Host imap.example.org
User "me@example.org"
PassCmd +"pass show mail/work"
TLSType IMAPS
CertificateFile ~/ca.pem

IMAPStore work-remote
Account work

MaildirStore work-local
Path ~/Mail/work/
Inbox ~/Mail/work/INBOX
SubFolders Verbatim

Channel work
Far :work-remote:
Near :work-local:
Patterns * !Trash "Sent Items"
Create Near

IMAPStore inline
Host 10.0.0.1
Port 1143
User bob
Pass "se\"cret"
SSLType None

Channel inline
Master :inline:
Slave :nowhere:

IMAPAccount gmail
Host imap.gmail.com
User me@gmail.com
PassCmd "oama access me@gmail.com"
AuthMechs XOAUTH2
TLSType IMAPS
"#;

    #[test]
    fn whether_mbsync_makes_the_local_mailboxes() {
        // (mbsyncrc, channel, makes them)
        let cases = [
            (MBSYNCRC, "work", true),
            (MBSYNCRC, "inline", false),
            ("Channel c\nFar :f:\nNear :n:\nCreate Far\n", "c", false),
            (
                "Channel c\nFar :f:\nNear :n:\nCreate Far\nCreate Near\n",
                "c",
                true,
            ),
            ("Channel c\nFar :f:\nNear :n:\ncreate both\n", "c", true),
            ("Channel c\nMaster :f:\nSlave :n:\nCreate Slave\n", "c", true),
            // A global option, before the first section, holds for every channel.
            (
                "# defaults\nCreate Near\n\nChannel c\nFar :f:\nNear :n:\n",
                "c",
                true,
            ),
            (
                "Channel c\nFar :f:\nNear :n:\n\nChannel d\nCreate Near\n",
                "c",
                false,
            ),
        ];
        for (text, channel, makes) in cases {
            assert_eq!(mbsync_creates_near(text, channel), makes, "{channel} in {text:?}");
        }
    }

    #[test]
    fn an_mbsync_channel_gives_its_account_patterns_and_separator() {
        let found = from_mbsync(MBSYNCRC, "work").unwrap();
        assert_eq!(found.account.label, "work");
        assert_eq!(found.account.endpoint.host, "imap.example.org");
        assert_eq!(found.account.endpoint.port, 993);
        assert_eq!(found.account.endpoint.tls, Tls::Implicit);
        assert!(found.account.endpoint.ca_files[0].ends_with("ca.pem"));
        assert_eq!(found.account.user, "me@example.org");
        assert!(matches!(found.account.password, Password::Command(ref c) if c == "pass show mail/work"));
        assert_eq!(found.patterns, ["*", "!Trash", "Sent Items"]);
        assert_eq!(found.local_separator.as_deref(), Some("/"));
    }

    #[test]
    fn an_imapstore_may_hold_the_account_itself() {
        let found = from_mbsync(MBSYNCRC, "inline").unwrap();
        assert_eq!(
            (found.account.endpoint.host.as_str(), found.account.endpoint.port),
            ("10.0.0.1", 1143)
        );
        assert_eq!(found.account.endpoint.tls, Tls::None);
        assert!(matches!(found.account.password, Password::Given(ref s) if s.expose() == "se\"cret"));
        assert_eq!(found.local_separator, None);
        // The account by its own name: every mailbox.
        assert!(from_mbsync(MBSYNCRC, "work-remote").is_err());
        assert!(from_mbsync(MBSYNCRC, "work").is_ok());
        assert!(from_mbsync(MBSYNCRC, "nope").unwrap_err().contains("nope"));
    }

    #[test]
    fn authmechs_chooses_oauth2_and_a_token_command() {
        let found = from_mbsync(MBSYNCRC, "gmail").unwrap();
        assert_eq!(found.account.auth, Auth::new(vec![Mechanism::XOAuth2]));
        assert!(found.account.auth.takes_token());
        assert!(
            matches!(found.account.password, Password::Command(ref c) if c == "oama access me@gmail.com")
        );
        assert_eq!(
            from_mbsync(MBSYNCRC, "work").unwrap().account.auth,
            Auth::default()
        );
        let unknown = from_mbsync(
            &MBSYNCRC.replace("AuthMechs XOAUTH2", "AuthMechs GSSAPI"),
            "gmail",
        );
        assert!(unknown.unwrap_err().contains("AuthMechs"));
    }

    #[test]
    fn offlineimap_accounts_and_what_cannot_be_read() {
        let text = "[general]\naccounts = A\n\n[Account A]\nlocalrepository = A-local\nremoterepository = A-remote\n\n\
                    [Repository A-local]\ntype = Maildir\nsep = /\n\n\
                    [Repository A-remote]\ntype = IMAP\nremotehost = mail.example.org\nremoteuser = ann\n\
                    remotepassfile = ~/.pw\nssl = no\n\n\
                    [Account B]\nlocalrepository = A-local\nremoterepository = B-remote\n\n\
                    [Repository B-remote]\ntype = IMAP\nremotehost = h\nremoteuser = u\nremotepasseval = get_pw()\n";
        let found = from_offlineimap(text, "A").unwrap();
        assert_eq!(found.account.endpoint.tls, Tls::StartTls);
        assert_eq!(found.account.endpoint.port, 143);
        assert!(matches!(found.account.password, Password::File(ref p) if p.ends_with(".pw")));
        assert_eq!(found.local_separator.as_deref(), Some("/"));
        assert_eq!(found.account.auth, Auth::default());
        let error = from_offlineimap(text, "B").unwrap_err();
        assert!(
            error.contains("remotepasseval") && error.contains("--pass-cmd"),
            "{error}"
        );
        // A token written out is used with XOAUTH2; one OfflineIMAP would
        // fetch itself needs a token helper; without OAuth2 settings the
        // secret is a password, so XOAUTH2 in auth_mechanisms is left out.
        let token = text.replace("remotepassfile = ~/.pw", "oauth2_access_token = ya29.x");
        let found = from_offlineimap(&token, "A").unwrap();
        assert_eq!(found.account.auth, Auth::new(vec![Mechanism::XOAuth2]));
        assert!(matches!(found.account.password, Password::Given(ref s) if s.expose() == "ya29.x"));
        let refresh = text.replace("remotepassfile = ~/.pw", "oauth2_refresh_token = r");
        let error = from_offlineimap(&refresh, "A").unwrap_err();
        assert!(error.contains("--auth xoauth2"), "{error}");
        let listed = text.replace(
            "ssl = no",
            "ssl = no\nauth_mechanisms = GSSAPI, XOAUTH2, CRAM-MD5, PLAIN, LOGIN",
        );
        let found = from_offlineimap(&listed, "A").unwrap();
        assert_eq!(
            found.account.auth,
            Auth::new(vec![Mechanism::Plain, Mechanism::Login])
        );
    }

    #[test]
    fn offlineimap_references_are_read_and_a_broken_one_is_an_error() {
        let text = "[DEFAULT]\ndomain = example.org\n[Account A]\nremoterepository = R\n\
                    [Repository R]\ntype = IMAP\nremotehost = imap.%(domain)s\nremoteuser = me@%(domain)s\n\
                    remotepassfile = ~/.pw\n";
        let found = from_offlineimap(text, "A").unwrap();
        assert_eq!(found.account.endpoint.host, "imap.example.org");
        assert_eq!(found.account.user, "me@example.org");
        let broken = text.replace("%(domain)s\nremoteuser", "%(remotehost_suffix)s\nremoteuser");
        let error = from_offlineimap(&broken, "A").unwrap_err();
        assert_eq!(
            error,
            "[Account A]: remotehost holds %(remotehost_suffix)s, which names no setting of its section or [DEFAULT]"
        );
    }

    #[test]
    fn a_host_holding_a_nul_or_a_space_is_a_configuration_error() {
        let error =
            from_mbsync(&MBSYNCRC.replace("Host 10.0.0.1", "Host 10.0.\u{0}0.1"), "inline").unwrap_err();
        assert_eq!(
            error,
            "mbsync account inline: Host \"10.0.\\00.1\" holds '\\0', which no host name holds"
        );
        assert!(check_host("imap example.org").is_err());
        assert_eq!(check_host(""), Err("is empty".into()));
        assert_eq!(check_host("imap.example.org"), Ok(()));
    }

    #[test]
    fn the_server_prefix_comes_from_the_imapstore_path_or_the_reference() {
        let mbsyncrc = MBSYNCRC.replace(
            "IMAPStore work-remote\nAccount work\n",
            "IMAPStore work-remote\nAccount work\nPath INBOX.\n",
        );
        assert_eq!(
            from_mbsync(&mbsyncrc, "work").unwrap().server_prefix.as_deref(),
            Some("INBOX.")
        );
        assert_eq!(from_mbsync(MBSYNCRC, "work").unwrap().server_prefix, None);
        let rc = "[Account A]\nremoterepository = R\n[Repository R]\ntype = IMAP\nremotehost = h\n\
                  remoteuser = u\nremotepass = p\nreference = INBOX.\n";
        assert_eq!(
            from_offlineimap(rc, "A").unwrap().server_prefix.as_deref(),
            Some("INBOX.")
        );
    }
}
