//! The mswatch set-up of one account, derived from the sync program's own
//! configuration (`mailsync run --mbsync CHANNEL`, `--offlineimap
//! ACCOUNT`): the local store watched by `mailsync watch` where the sync
//! program keeps it, the server by `mailsync idle` from the same account,
//! `mailsync sync` as the sync program, and realtime delays. It is an
//! ordinary [`Config`], so `--dry` can print it as the `.mswatchrc` a user
//! would otherwise write.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::{Config, Store};
use crate::imap::config::{
    from_mbsync, from_offlineimap, mbsync_creates_near, mbsync_near_store, offlineimap_local_repository,
    SubFolders,
};

/// From a change to its sync: long enough for the files of one local
/// delivery of several messages to come together, short against a sync.
pub const BASE_DELAY: Duration = Duration::from_millis(50);
/// Between two syncs of one mailbox: a burst of deliveries is synced in
/// a few runs, not one per message.
pub const INTER_DELAY: Duration = Duration::from_secs(1);
/// mswatch's: failures back off up to ten minutes; no periodic full sync
/// (every change is seen, and a watcher that comes back syncs everything).
const MAX_DELAY: Duration = Duration::from_secs(600);

/// A derived set-up, and where its local store is (made empty when it
/// does not exist yet, for the first sync to fill).
#[derive(Debug)]
pub struct Derived {
    pub config: Config,
    pub local: PathBuf,
    /// Why the first sync would not fill a missing local store, if it
    /// would not (an mbsync channel without `Create Near`).
    pub not_made: Option<String>,
}

/// What a derived set-up is made of.
pub struct Sources<'a> {
    /// The `mailsync` program the watch and sync commands run.
    pub mailsync: &'a Path,
    /// The sync program's configuration file, and its text.
    pub file: &'a Path,
    pub text: &'a str,
}

fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The set-up of mbsync channel `channel`.
pub fn mbsync(sources: &Sources, channel: &str) -> Result<Derived, String> {
    // The server's side, read now so that its errors come before anything starts.
    from_mbsync(sources.text, channel)?;
    let near = mbsync_near_store(sources.text, channel)?;
    let store = format!("mbsync MaildirStore {}", near.name);
    // With Maildir++ the Inbox holds the folders (mbsync refuses a Path).
    let (root, layout) = match (near.subfolders, near.path.clone()) {
        (SubFolders::MaildirPlusPlus, None) => (near.inbox.clone(), "maildir++"),
        (SubFolders::MaildirPlusPlus, Some(_)) => {
            return Err(format!(
                "{store}: mbsync refuses a Path with SubFolders Maildir++ (its folders are in the Inbox)"
            ))
        }
        (SubFolders::Legacy, _) => {
            return Err(format!(
                "{store}: SubFolders Legacy is not watched by mailsync; use Verbatim or Maildir++"
            ))
        }
        (SubFolders::Verbatim, None) => {
            return Err(format!(
                "{store} has no Path: mailsync watches the folders below it"
            ))
        }
        (SubFolders::Verbatim, Some(path)) => (path, "verbatim"),
    };
    if near.inbox != root && near.inbox != root.join("INBOX") {
        return Err(format!(
            "{store}: its Inbox ({}) is neither its Path ({}) nor in it as INBOX, and one watcher \
             sees one directory; write an .mswatchrc with a store for each (README: mailsync run)",
            near.inbox.display(),
            root.display()
        ));
    }
    let mailsync = text(sources.mailsync);
    let file = text(sources.file);
    let config = realtime(
        [
            &mailsync,
            "sync",
            "--backend",
            "mbsync",
            "--config",
            &file,
            "--local-separator",
            near.separator(),
        ],
        channel,
        [&mailsync, "watch", "--maildir", &text(&root), "--layout", layout],
        [&mailsync, "idle", "--mbsync", channel, "--config", &file],
    );
    let not_made = (!mbsync_creates_near(sources.text, channel)).then(|| {
        format!(
            "mbsync channel {channel} does not make it (no `Create Near` or `Create Both` in {file}): \
             add one to the channel, or make the maildir and its folders"
        )
    });
    Ok(Derived {
        config,
        local: root,
        not_made,
    })
}

/// The set-up of OfflineIMAP account `account`.
pub fn offlineimap(sources: &Sources, account: &str) -> Result<Derived, String> {
    from_offlineimap(sources.text, account)?;
    let local = offlineimap_local_repository(sources.text, account)?;
    let mailsync = text(sources.mailsync);
    let file = text(sources.file);
    // Each folder is a directory of `localfolders`, its levels joined by
    // `sep` (a `/` nests them): mbsync's Verbatim layout.
    let config = realtime(
        [&mailsync, "sync", "--config", &file],
        account,
        [
            &mailsync,
            "watch",
            "--maildir",
            &text(&local.folders),
            "--layout",
            "verbatim",
        ],
        [&mailsync, "idle", "--offlineimap", account, "--config", &file],
    );
    Ok(Derived {
        config,
        local: local.folders,
        // OfflineIMAP makes the local folders it syncs.
        not_made: None,
    })
}

/// Two stores, `local` and `server`, each watcher reporting at once (the
/// run's `base_delay` gathers reports), synced by `sync` for `account`.
fn realtime<const S: usize, const L: usize, const R: usize>(
    sync: [&str; S],
    account: &str,
    local: [&str; L],
    server: [&str; R],
) -> Config {
    let command = |words: &[&str]| -> Vec<String> {
        words
            .iter()
            .map(|word| word.to_string())
            .chain(["--delay".to_string(), "0".to_string()])
            .collect()
    };
    Config {
        base_delay: BASE_DELAY,
        inter_delay: INTER_DELAY,
        inter_delays: Default::default(),
        max_delay: MAX_DELAY,
        poll_period: None,
        ignore: Vec::new(),
        sync: sync.iter().map(|word| word.to_string()).collect(),
        mailbox_prefix: Some((account.to_string(), ":".to_string())),
        stores: [
            Store {
                name: "local".into(),
                watch: command(&local),
            },
            Store {
                name: "server".into(),
                watch: command(&server),
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "IMAPAccount work\nHost imap.example.org\nUser me\nPassCmd \"pass mail\"\n\n\
        IMAPStore work-remote\nAccount work\n\n";

    fn derive(near: &str) -> Result<Config, String> {
        let text = format!(
            "{ACCOUNT}MaildirStore work-local\n{near}\n\nChannel work\nFar :work-remote:\nNear :work-local:\n"
        );
        mbsync(
            &Sources {
                mailsync: Path::new("/usr/bin/mailsync"),
                file: Path::new("/h/.mbsyncrc"),
                text: &text,
            },
            "work",
        )
        .map(|derived| derived.config)
    }

    /// Near stores as data: the store's lines, and the local watch and
    /// the separator `mailsync sync` is told, or the error's words.
    /// The local watch's flags and the separator, or the error's words.
    type Expected = Result<(&'static str, &'static str), &'static str>;

    const CASES: &[(&str, Expected)] = &[
        (
            "Path /m/work/\nInbox /m/work/INBOX\nSubFolders Verbatim",
            Ok(("--maildir /m/work --layout verbatim", "/")),
        ),
        (
            "Path /m/work\nInbox /m/work",
            Ok(("--maildir /m/work --layout verbatim", "/")),
        ),
        (
            "Inbox /m/work/\nSubFolders Maildir++",
            Ok(("--maildir /m/work --layout maildir++", ".")),
        ),
        (
            "Path /m/work/\nInbox /m/work/INBOX\nFlatten .",
            Ok(("--maildir /m/work --layout verbatim", ".")),
        ),
        (
            "Path /m/work/\nInbox /m/work\nSubFolders Maildir++",
            Err("mbsync refuses a Path with SubFolders Maildir++"),
        ),
        (
            "Path /m/work/\nInbox /var/mail/me",
            Err("its Inbox (/var/mail/me) is neither its Path"),
        ),
        ("Inbox /m/work", Err("has no Path")),
        (
            "Path /m/\nInbox /m/INBOX\nSubFolders Legacy",
            Err("SubFolders Legacy is not watched"),
        ),
    ];

    #[test]
    fn the_local_store_is_watched_where_mbsync_keeps_it() {
        for (near, expected) in CASES {
            match (derive(near), expected) {
                (Ok(config), Ok((watch, separator))) => {
                    let local = config.stores[0].watch.join(" ");
                    assert!(local.contains(watch), "{near:?}: {local}");
                    let sync = config.sync.join(" ");
                    assert!(
                        sync.ends_with(&format!("--local-separator {separator}")),
                        "{near:?}: {sync}"
                    );
                    assert_eq!(config.mailbox_prefix, Some(("work".into(), ":".into())));
                    assert_eq!(
                        config.stores[1].watch.join(" "),
                        "/usr/bin/mailsync idle --mbsync work --config /h/.mbsyncrc --delay 0"
                    );
                    assert_eq!((config.base_delay, config.inter_delay), (BASE_DELAY, INTER_DELAY));
                }
                (Err(error), Err(words)) => assert!(error.contains(words), "{near:?}: {error}"),
                (got, _) => panic!("{near:?}: {:?}", got.map(|config| config.render())),
            }
        }
    }

    #[test]
    fn the_derived_set_up_is_an_mswatchrc_that_reads_back() {
        let config = derive("Path ~/Mail work/\nInbox ~/Mail work/INBOX\nSubFolders Verbatim").unwrap();
        let text = config.render().unwrap();
        assert_eq!(Config::parse(&text).unwrap(), config, "{text}");
        assert!(text.contains("\"watch\" --maildir \""), "{text}");
    }

    #[test]
    fn offlineimap_folders_are_directories_of_localfolders() {
        let rc = "[Account work]\nlocalrepository = l\nremoterepository = r\n\n\
            [Repository l]\ntype = Maildir\nlocalfolders = /m/%(name)s\nname = work\nsep = /\n\n\
            [Repository r]\ntype = IMAP\nremotehost = imap.example.org\nremoteuser = me\nremotepass = x\n";
        let sources = Sources {
            mailsync: Path::new("mailsync"),
            file: Path::new("/h/.offlineimaprc"),
            text: rc,
        };
        let derived = offlineimap(&sources, "work").unwrap();
        assert_eq!(derived.local, Path::new("/m/work"));
        let config = derived.config;
        assert_eq!(
            config.stores[0].watch.join(" "),
            "mailsync watch --maildir /m/work --layout verbatim --delay 0"
        );
        assert_eq!(config.sync.join(" "), "mailsync sync --config /h/.offlineimaprc");
        let filtered = rc.replace("sep = /\n", "sep = /\nnametrans = lambda f: f\n");
        let sources = Sources {
            text: &filtered,
            ..sources
        };
        let error = offlineimap(&sources, "work").unwrap_err();
        assert!(
            error.contains("[Repository l] has nametrans, which is Python"),
            "{error}"
        );
    }
}
