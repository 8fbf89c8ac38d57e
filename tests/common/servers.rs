//! A real Dovecot on 127.0.0.1 (scripts/dovecot.sh) with an IMAP client for
//! putting mail on it, and configurations for real OfflineIMAP and mbsync.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Dovecot serving user `test` (password `secret`) from a temp dir.
pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub separator: &'static str,
    running: bool,
}

impl Dovecot {
    pub fn start(separator: &'static str) -> Dovecot {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(repo().join("scripts/dovecot.sh"))
            .arg("start")
            .arg(dir.path().join("server"))
            .arg(separator)
            .output()
            .expect("run scripts/dovecot.sh");
        assert!(
            output.status.success(),
            "dovecot did not start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let port = String::from_utf8(output.stdout).unwrap().trim().parse().unwrap();
        Dovecot {
            dir,
            port,
            separator,
            running: true,
        }
    }

    pub fn stop(&mut self) {
        if self.running {
            self.script("stop");
            self.running = false;
        }
    }

    fn script(&self, command: &str) {
        let _ = Command::new(repo().join("scripts/dovecot.sh"))
            .arg(command)
            .arg(self.dir.path().join("server"))
            .status();
    }

    /// Creates `folder` (the server's name) if needed and saves one message in it.
    pub fn save(&self, folder: &str, subject: &str) {
        let script = r#"
import imaplib, sys
port, folder, subject = int(sys.argv[1]), sys.argv[2], sys.argv[3]
quoted = '"' + folder.replace('\\', '\\\\').replace('"', '\\"') + '"'
imap = imaplib.IMAP4("127.0.0.1", port)
imap.login("test", "secret")
if folder != "INBOX":
    imap.create(quoted)
message = ("From: test@example.org\r\nSubject: %s\r\n\r\nbody\r\n" % subject).encode()
status, detail = imap.append(quoted, None, None, message)
assert status == "OK", detail
imap.logout()
"#;
        let status = Command::new("python3")
            .args(["-c", script, &self.port.to_string(), folder, subject])
            .status()
            .unwrap();
        assert!(status.success(), "IMAP APPEND to {folder} failed");
    }

    /// An offlineimaprc syncing into `local` (local `sep` is ".").
    pub fn offlineimaprc(&self, local: &Path) -> PathBuf {
        self.offlineimaprc_with(local, "", "")
    }

    /// The same with lines added to the local and the remote repository
    /// (`nametrans`, say).
    pub fn offlineimaprc_with(&self, local: &Path, local_extra: &str, remote_extra: &str) -> PathBuf {
        let path = self.dir.path().join("offlineimaprc");
        fs::create_dir_all(local).unwrap();
        fs::write(
            &path,
            format!(
                "[general]\naccounts = test\nmetadata = {meta}\n\n\
                 [Account test]\nlocalrepository = test-local\nremoterepository = test-remote\n\n\
                 [Repository test-local]\ntype = Maildir\nlocalfolders = {local}\nsep = .\n{local_extra}\n\
                 [Repository test-remote]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {port}\n\
                 remoteuser = test\nremotepass = secret\nssl = no\nstarttls = no\n{remote_extra}",
                meta = self.dir.path().join("offlineimap-meta").display(),
                local = local.display(),
                port = self.port
            ),
        )
        .unwrap();
        path
    }

    /// An mbsyncrc for channel `test` syncing into `local` (verbatim subfolders).
    pub fn mbsyncrc(&self, local: &Path) -> PathBuf {
        let path = self.dir.path().join("mbsyncrc");
        fs::create_dir_all(local).unwrap();
        fs::write(
            &path,
            format!(
                "IMAPAccount test\nHost 127.0.0.1\nPort {port}\nUser test\nPass secret\nSSLType None\nAuthMechs LOGIN\n\n\
                 IMAPStore test-remote\nAccount test\n\n\
                 MaildirStore test-local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n\
                 Channel test\nFar :test-remote:\nNear :test-local:\nPatterns *\nCreate Near\nSyncState *\n",
                port = self.port,
                local = local.display()
            ),
        )
        .unwrap();
        path
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.script("remove");
    }
}

/// Messages in a local maildir folder (`new/` and `cur/`).
pub fn messages(folder: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .filter_map(|sub| fs::read_dir(folder.join(sub)).ok())
        .map(|entries| entries.count())
        .sum()
}
