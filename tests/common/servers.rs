//! A real Dovecot on 127.0.0.1 (scripts/dovecot.sh) with an IMAP client for
//! putting mail on it, and configurations for real OfflineIMAP and mbsync.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::repo;

/// A Dovecot serving user `test` (password `secret`) from a temp dir.
pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// With TLS: the port that speaks TLS from the start.
    pub imaps_port: Option<u16>,
    pub separator: &'static str,
    running: bool,
}

impl Dovecot {
    pub fn start(separator: &'static str) -> Dovecot {
        Dovecot::start_with(separator, false, "")
    }

    /// With `tls`, also TLS on `imaps_port` and STARTTLS, a certificate
    /// from the test's own CA ([`Dovecot::ca_file`]); `extra` is added to
    /// the configuration.
    pub fn start_with(separator: &'static str, tls: bool, extra: &str) -> Dovecot {
        Dovecot::launch(
            separator,
            &[("TLS", if tls { "1" } else { "0" }), ("EXTRA_CONF", extra)],
        )
    }

    /// With TLS, its mailboxes below INBOX (`prefix`, such as `INBOX.`), as
    /// Courier and Cyrus have them.
    pub fn start_prefixed(prefix: &str) -> Dovecot {
        Dovecot::launch(".", &[("TLS", "1"), ("NAMESPACE_PREFIX", prefix)])
    }

    /// With TLS and STARTTLS, serving a self-signed certificate made by
    /// `openssl req -x509` (so marked CA:TRUE), which [`Dovecot::ca_file`]
    /// holds too.
    pub fn start_self_signed() -> Dovecot {
        Dovecot::launch(".", &[("TLS", "self")])
    }

    /// With TLS, and XOAUTH2 and OAUTHBEARER checked by the test's own
    /// introspection server (scripts/introspect.py): no token is live
    /// until [`Dovecot::mint`].
    pub fn start_oauth(extra: &str) -> Dovecot {
        Dovecot::launch(".", &[("TLS", "1"), ("OAUTH2", "1"), ("EXTRA_CONF", extra)])
    }

    /// Makes `token` a live token of user `test`.
    pub fn mint(&self, token: &str) {
        let path = self.dir.path().join("server/tokens");
        let mut tokens = fs::read_to_string(&path).unwrap_or_default();
        tokens.push_str(&format!("{token} test\n"));
        fs::write(path, tokens).unwrap();
    }

    /// Expires `token`: the server refuses it from now on.
    pub fn expire(&self, token: &str) {
        let path = self.dir.path().join("server/tokens");
        let tokens: String = fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.split(' ').next() != Some(token))
            .map(|line| format!("{line}\n"))
            .collect();
        fs::write(path, tokens).unwrap();
    }

    /// The token checks Dovecot asked for so far: "TOKEN active|inactive".
    pub fn introspected(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("server/introspect.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn launch(separator: &'static str, env: &[(&str, &str)]) -> Dovecot {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(repo().join("scripts/dovecot.sh"))
            .arg("start")
            .arg(dir.path().join("server"))
            .arg(separator)
            .envs(env.iter().copied())
            .output()
            .expect("run scripts/dovecot.sh");
        assert!(
            output.status.success(),
            "dovecot did not start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let port = String::from_utf8(output.stdout).unwrap().trim().parse().unwrap();
        let imaps_port = fs::read_to_string(dir.path().join("server/imaps-port"))
            .ok()
            .map(|text| text.trim().parse().unwrap());
        Dovecot {
            dir,
            port,
            imaps_port,
            separator,
            running: true,
        }
    }

    /// The CA that signed the server's certificate (TLS only).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("server/ca.pem")
    }

    /// Stops the server, keeping everything for [`Dovecot::restart`].
    pub fn stop_only(&self) {
        self.script("stop");
    }

    /// Stops and starts the same server again.
    pub fn restart(&self) {
        let status = Command::new(repo().join("scripts/dovecot.sh"))
            .arg("restart")
            .arg(self.dir.path().join("server"))
            .status()
            .unwrap();
        assert!(status.success(), "dovecot did not restart");
    }

    /// Runs `doveadm ARGS…` on this server; its standard output.
    pub fn doveadm(&self, args: &[&str], input: Option<&[u8]>) -> String {
        use std::io::Write;
        let mut child = Command::new("doveadm")
            .arg("-c")
            .arg(self.dir.path().join("server/dovecot.conf"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run doveadm");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.unwrap_or_default()).unwrap();
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "doveadm {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Saves a message into `mailbox` on the server side (`doveadm save`),
    /// as a delivery agent does.
    pub fn deliver(&self, mailbox: &str, subject: &str) {
        let message = format!("From: test@example.org\r\nSubject: {subject}\r\n\r\nbody\r\n");
        self.doveadm(&["save", "-u", "test", "-m", mailbox], Some(message.as_bytes()));
    }

    /// A file holding `password` and a line break, for a password command
    /// (`cat FILE`) or an mbsyncrc's `PassCmd`.
    pub fn password_file(&self, password: &str) -> PathBuf {
        let path = self.dir.path().join(format!("password-{password}"));
        fs::write(&path, format!("{password}\n")).unwrap();
        path
    }

    /// Dovecot's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server/dovecot.log")).unwrap_or_default()
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

    /// Runs IMAP commands (`RENAME a b`, …) as another client, each of
    /// which must succeed.
    pub fn imap(&self, commands: &[&str]) {
        let script = r#"
import imaplib, sys
imap = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
imap.login("test", "secret")
for command in sys.argv[2:]:
    verb, *args = command.split(" ")
    status, detail = imap._simple_command(verb, *args)
    assert status == "OK", (command, detail)
imap.logout()
"#;
        let status = Command::new("python3")
            .args(["-c", script, &self.port.to_string()])
            .args(commands)
            .status()
            .unwrap();
        assert!(status.success(), "IMAP {commands:?} failed");
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
