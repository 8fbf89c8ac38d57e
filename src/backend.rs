//! The sync programs mailsync drives: how a run of OfflineIMAP or mbsync for
//! one account and some local folders is spelled.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::naming::NameStyle;

/// Why a command cannot be built.
#[derive(Debug, PartialEq, Eq)]
pub enum BackendError {
    /// OfflineIMAP's `-f` is comma-separated: a name with a comma cannot be given.
    CommaInName(String),
    /// The name map file is unreadable or malformed.
    NameMap(String),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::CommaInName(name) => write!(
                f,
                "folder `{name}` has a comma, which OfflineIMAP's -f cannot take; sync its account whole instead"
            ),
            BackendError::NameMap(message) => write!(f, "name map: {message}"),
        }
    }
}

impl std::error::Error for BackendError {}

/// Translates local folder names back into the server's names for
/// OfflineIMAP's `-f`, which wants remote names.
#[derive(Clone, Debug)]
pub struct RemoteNames {
    pub local: NameStyle,
    pub remote: NameStyle,
    /// Names changed by `nametrans`: local name → remote name.
    pub map: HashMap<Vec<u8>, Vec<u8>>,
}

impl RemoteNames {
    /// The remote name of the local folder `name`.
    pub fn remote(&self, name: &[u8]) -> Vec<u8> {
        if let Some(remote) = self.map.get(name) {
            return remote.clone();
        }
        self.local.parse(name).name(&self.remote)
    }
}

/// Reads a name map: one `LOCAL<TAB>REMOTE` pair a line; `#` starts a comment line.
pub fn read_name_map(path: &Path) -> Result<HashMap<Vec<u8>, Vec<u8>>, BackendError> {
    let bytes = fs::read(path).map_err(|err| BackendError::NameMap(format!("{}: {err}", path.display())))?;
    let mut map = HashMap::new();
    for (number, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let Some(tab) = line.iter().position(|&b| b == b'\t') else {
            return Err(BackendError::NameMap(format!(
                "{}:{}: expected LOCAL<TAB>REMOTE",
                path.display(),
                number + 1
            )));
        };
        map.insert(line[..tab].to_vec(), line[tab + 1..].to_vec());
    }
    Ok(map)
}

/// The default OfflineIMAP configuration file, as OfflineIMAP looks for it.
pub fn default_offlineimap_config() -> Option<PathBuf> {
    let home = PathBuf::from(std::env::var_os("HOME")?);
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".config"));
    [xdg.join("offlineimap/config"), home.join(".offlineimaprc")]
        .into_iter()
        .find(|path| path.is_file())
}

/// Whether `program` is an executable file in a directory of `$PATH`.
pub fn installed(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|found| found.is_file() && found.permissions().mode() & 0o111 != 0)
    })
}

/// The `sep` of the local repository of `account` in an offlineimaprc, if set.
pub fn offlineimap_local_sep(config_text: &str, account: &str) -> Option<String> {
    let sections = crate::ini::parse(config_text);
    let repository = sections
        .get(&crate::ini::fold(&format!("account {account}")))?
        .get("localrepository")?;
    sections
        .get(&crate::ini::fold(&format!("repository {repository}")))?
        .get("sep")
        .cloned()
}

/// `offlineimap -o -u quiet [-c CONFIG] -a ACCOUNT [-f F1,F2]`.
pub fn offlineimap_command(
    program: &Path,
    config: Option<&Path>,
    account: &[u8],
    folders: Option<&[Vec<u8>]>,
    names: &RemoteNames,
) -> Result<Vec<OsString>, BackendError> {
    let mut command: Vec<OsString> = vec![program.into(), "-o".into(), "-u".into(), "quiet".into()];
    if let Some(config) = config {
        command.push("-c".into());
        command.push(config.into());
    }
    command.push("-a".into());
    command.push(bytes_to_os(account.to_vec()));
    if let Some(folders) = folders {
        let mut list = Vec::new();
        for (index, folder) in folders.iter().enumerate() {
            let remote = names.remote(folder);
            if remote.contains(&b',') {
                return Err(BackendError::CommaInName(
                    String::from_utf8_lossy(folder).into_owned(),
                ));
            }
            if index > 0 {
                list.push(b',');
            }
            list.extend(remote);
        }
        command.push("-f".into());
        command.push(bytes_to_os(list));
    }
    Ok(command)
}

/// `mbsync [-c CONFIG] CHANNEL[:BOX[,BOX]]`, boxes named with `/`.
pub fn mbsync_command(
    program: &Path,
    config: Option<&Path>,
    channel: &[u8],
    folders: Option<&[Vec<u8>]>,
    local: &NameStyle,
) -> Vec<OsString> {
    let mut command: Vec<OsString> = vec![program.into()];
    if let Some(config) = config {
        command.push("-c".into());
        command.push(config.into());
    }
    let mut target = channel.to_vec();
    if let Some(folders) = folders {
        let boxes = NameStyle::new("INBOX", "/");
        target.push(b':');
        for (index, folder) in folders.iter().enumerate() {
            if index > 0 {
                target.push(b',');
            }
            target.extend(local.parse_dotted(folder).name(&boxes));
        }
    }
    command.push(bytes_to_os(target));
    command
}

/// Whether `command` can be run: each argument within Linux's limit for
/// one (`MAX_ARG_STRLEN`, 32 pages), and all of them with the environment
/// within the system's (`ARG_MAX`), a page kept spare. A folder list too
/// long for that is synced as the whole account instead.
pub fn fits_one_exec(command: &[OsString]) -> bool {
    const ONE_ARGUMENT: usize = 32 * 4096;
    // Each string costs its bytes, its NUL and a pointer.
    let cost = |bytes: usize| bytes + 1 + std::mem::size_of::<usize>();
    // SAFETY: sysconf has no pointer arguments.
    let limit = match unsafe { libc::sysconf(libc::_SC_ARG_MAX) } {
        limit if limit > 0 => limit as usize,
        _ => 128 * 1024,
    };
    let environment: usize = std::env::vars_os()
        .map(|(key, value)| cost(key.len() + 1 + value.len()))
        .sum();
    command.iter().all(|argument| argument.len() < ONE_ARGUMENT)
        && command.iter().map(|argument| cost(argument.len())).sum::<usize>() + environment + 4096 <= limit
}

fn bytes_to_os(bytes: Vec<u8>) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    OsString::from_vec(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style(separator: &str) -> NameStyle {
        NameStyle::new("INBOX", separator)
    }

    fn names(local: &str, remote: &str) -> RemoteNames {
        RemoteNames {
            local: style(local),
            remote: style(remote),
            map: HashMap::new(),
        }
    }

    fn strings(command: Vec<OsString>) -> Vec<String> {
        command
            .into_iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    /// OfflineIMAP's command line as data: the configuration given, the
    /// folders (None: all), the local and server separators, and the words.
    type Case = (
        Option<&'static str>,
        Option<&'static [&'static [u8]]>,
        &'static str,
        &'static str,
        Result<&'static str, &'static str>,
    );
    const OFFLINEIMAP: &[Case] = &[
        (
            None,
            Some(&[b"INBOX", b"lists.emacs"]),
            ".",
            "/",
            Ok("offlineimap -o -u quiet -a work -f INBOX,lists/emacs"),
        ),
        (
            Some("/tmp/rc"),
            None,
            ".",
            ".",
            Ok("offlineimap -o -u quiet -c /tmp/rc -a work"),
        ),
        // OfflineIMAP's -f is comma-separated.
        (None, Some(&[b"a,b"]), ".", ".", Err("comma")),
    ];

    #[test]
    fn offlineimap_command_lines() {
        for (config, folders, local, remote, expected) in OFFLINEIMAP {
            let folders: Option<Vec<Vec<u8>>> =
                folders.map(|list| list.iter().map(|name| name.to_vec()).collect());
            let command = offlineimap_command(
                Path::new("offlineimap"),
                config.map(Path::new),
                b"work",
                folders.as_deref(),
                &names(local, remote),
            );
            match (command, expected) {
                (Ok(command), Ok(words)) => assert_eq!(strings(command).join(" "), *words),
                (Err(err), Err(part)) => assert!(err.to_string().contains(part), "{err}"),
                (got, _) => panic!("{config:?} {folders:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn the_name_map_wins_for_gmail_names() {
        let mut translation = names(".", "/");
        translation
            .map
            .insert(b"sent".to_vec(), b"[Gmail]/Sent Mail".to_vec());
        assert_eq!(translation.remote(b"sent"), b"[Gmail]/Sent Mail");
        assert_eq!(translation.remote(b"[Gmail].Starred"), b"[Gmail]/Starred");
    }

    #[test]
    fn mbsync_boxes_use_slashes_and_lose_maildir_dots() {
        let folders = vec![b"INBOX".to_vec(), b"lists.emacs".to_vec(), b".work".to_vec()];
        let command = mbsync_command(Path::new("mbsync"), None, b"test", Some(&folders), &style("."));
        assert_eq!(strings(command), ["mbsync", "test:INBOX,lists/emacs,work"]);
        assert_eq!(
            strings(mbsync_command(
                Path::new("mbsync"),
                None,
                b"test",
                None,
                &style(".")
            )),
            ["mbsync", "test"]
        );
    }

    #[test]
    fn the_local_separator_comes_from_the_offlineimaprc() {
        let rc = "[general]\naccounts = work\n\n[Account work]\nlocalrepository = work-local\n\
                  remoterepository = work-remote\n\n[Repository work-local]\ntype = Maildir\nsep = /\n";
        assert_eq!(offlineimap_local_sep(rc, "work"), Some("/".to_string()));
        assert_eq!(offlineimap_local_sep(rc, "home"), None);
    }

    #[test]
    fn name_maps_are_tab_separated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map");
        fs::write(&path, "# local\tremote\nsent\t[Gmail]/Sent Mail\n").unwrap();
        let map = read_name_map(&path).unwrap();
        assert_eq!(map.get(b"sent".as_slice()).unwrap(), b"[Gmail]/Sent Mail");
        fs::write(&path, "no tab here\n").unwrap();
        assert!(read_name_map(&path).unwrap_err().to_string().contains(":1:"));
    }

    #[test]
    fn a_folder_list_longer_than_one_argument_may_be_does_not_fit() {
        let folders: Vec<Vec<u8>> = (0..20_000).map(|n| format!("folder{n}").into_bytes()).collect();
        let few = mbsync_command(
            Path::new("mbsync"),
            None,
            b"work",
            Some(&folders[..10]),
            &style("."),
        );
        assert!(fits_one_exec(&few));
        let many = mbsync_command(Path::new("mbsync"), None, b"work", Some(&folders), &style("."));
        assert!(!fits_one_exec(&many));
        let spread: Vec<OsString> = (0..60_000)
            .map(|n| OsString::from(format!("folder-{n:033}")))
            .collect();
        assert!(fits_one_exec(&spread[..1000]));
        assert!(
            !fits_one_exec(&spread),
            "60,000 arguments of 40 bytes: 2.9 MB with their pointers"
        );
    }
}
