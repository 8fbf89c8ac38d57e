//! mswatch's sync arguments: `PREFIX` (sync everything of an account) or
//! `PREFIX:MAILBOX`, in any mix, grouped into one run per account.

use std::fmt;

/// What to sync of one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSync {
    /// The account (or mbsync channel) name, byte for byte.
    pub account: Vec<u8>,
    /// The local folder names, in first-seen order, each once; `None` syncs
    /// the whole account.
    pub folders: Option<Vec<Vec<u8>>>,
}

/// Why the arguments cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    NoSpecs,
    EmptyAccount(String),
    EmptyFolder(String),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::NoSpecs => write!(f, "nothing to sync: give ACCOUNT or ACCOUNT:FOLDER arguments"),
            SpecError::EmptyAccount(spec) => write!(
                f,
                "`{spec}` names no account (expected ACCOUNT or ACCOUNT:FOLDER)"
            ),
            SpecError::EmptyFolder(spec) => write!(f, "`{spec}` names no folder after the colon"),
        }
    }
}

impl std::error::Error for SpecError {}

/// Groups `specs` by account, accounts in first-seen order. A bare account
/// anywhere means the whole account.
pub fn parse_specs<S: AsRef<[u8]>>(specs: &[S]) -> Result<Vec<AccountSync>, SpecError> {
    if specs.is_empty() {
        return Err(SpecError::NoSpecs);
    }
    let mut accounts: Vec<AccountSync> = Vec::new();
    for spec in specs {
        let spec = spec.as_ref();
        let shown = String::from_utf8_lossy(spec).into_owned();
        let (account, folder) = match spec.iter().position(|&b| b == b':') {
            Some(colon) => (&spec[..colon], Some(&spec[colon + 1..])),
            None => (spec, None),
        };
        if account.is_empty() {
            return Err(SpecError::EmptyAccount(shown));
        }
        if folder.is_some_and(<[u8]>::is_empty) {
            return Err(SpecError::EmptyFolder(shown));
        }
        let account = account.to_vec();
        let index = match accounts.iter().position(|entry| entry.account == account) {
            Some(index) => index,
            None => {
                accounts.push(AccountSync {
                    account,
                    folders: Some(Vec::new()),
                });
                accounts.len() - 1
            }
        };
        let entry = &mut accounts[index];
        match (folder, entry.folders.as_mut()) {
            (None, _) => entry.folders = None,
            (Some(folder), Some(folders)) if !folders.iter().any(|known| known == folder) => {
                folders.push(folder.to_vec())
            }
            _ => {}
        }
    }
    Ok(accounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folders(names: &[&str]) -> Option<Vec<Vec<u8>>> {
        Some(names.iter().map(|name| name.as_bytes().to_vec()).collect())
    }

    #[test]
    fn mixed_accounts_and_folders_group_per_account() {
        let parsed = parse_specs(&["work:INBOX", "home:lists.emacs", "work:sent", "work:INBOX"]).unwrap();
        assert_eq!(
            parsed,
            vec![
                AccountSync {
                    account: b"work".to_vec(),
                    folders: folders(&["INBOX", "sent"])
                },
                AccountSync {
                    account: b"home".to_vec(),
                    folders: folders(&["lists.emacs"])
                },
            ]
        );
    }

    #[test]
    fn a_bare_account_syncs_everything() {
        let parsed = parse_specs(&["work:INBOX", "work", "work:sent"]).unwrap();
        assert_eq!(
            parsed,
            vec![AccountSync {
                account: b"work".to_vec(),
                folders: None
            }]
        );
    }

    #[test]
    fn folder_names_keep_their_colons_and_odd_bytes() {
        let parsed = parse_specs(&[b"acc:a:b".to_vec(), b"acc:caf\xe9".to_vec()]).unwrap();
        assert_eq!(
            parsed[0].folders,
            Some(vec![b"a:b".to_vec(), b"caf\xe9".to_vec()])
        );
    }

    #[test]
    fn malformed_specs_are_refused() {
        assert_eq!(parse_specs::<&str>(&[]), Err(SpecError::NoSpecs));
        assert_eq!(parse_specs(&[""]), Err(SpecError::EmptyAccount(String::new())));
        assert_eq!(
            parse_specs(&[":INBOX"]),
            Err(SpecError::EmptyAccount(":INBOX".into()))
        );
        assert_eq!(
            parse_specs(&["work:"]),
            Err(SpecError::EmptyFolder("work:".into()))
        );
    }
}
