//! `mailsync sync --check-ssh` through a real sshd on 127.0.0.1 into
//! accounts whose login shells are sh, bash, zsh and fish, each running its
//! own Emacs server with Gnus (emacsclient talks only to a server of its own
//! user): the odd folder name is checked as that group, in each shell, and
//! nothing is evaluated on the way. Needs root: it makes the accounts and runs
//! sshd; as anyone else it says so and does nothing.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{mailsync, make_maildir};

/// Quotes, a backslash, command substitutions in both spellings, a `;`,
/// Lisp that would run if the name were evaluated, and UTF-8.
const ODD: &[u8] = b"it's \"b\\c\" $(touch PWNED) `touch PWNED`; (shell-command \"touch PWNED\") caf\xc3\xa9";

const SHELLS: [&str; 4] = ["sh", "bash", "zsh", "fish"];

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("run a command");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn which(program: &str) -> PathBuf {
    common::which(program).unwrap_or_else(|| {
        panic!("{program} is not installed: run `make test` (scripts/setup.sh installs it)")
    })
}

fn number(output: &Output) -> u32 {
    String::from_utf8_lossy(&output.stdout).trim().parse().unwrap()
}

/// A local account made for the test, removed with every process it has.
struct Account {
    name: String,
    home: PathBuf,
    uid: u32,
    gid: u32,
}

impl Account {
    fn make(name: &str, shell: &Path, home: &Path) -> Account {
        Account::remove_user(name);
        // `*`: no password, but not locked, so sshd lets a key in.
        run(Command::new(which("useradd"))
            .args(["--no-create-home", "--home-dir"])
            .arg(home)
            .arg("--shell")
            .arg(shell)
            .args(["--password", "*", name]));
        let uid = number(&run(Command::new("id").args(["-u", name])));
        let gid = number(&run(Command::new("id").args(["-g", name])));
        fs::create_dir(home).unwrap();
        let account = Account {
            name: name.to_string(),
            home: home.to_path_buf(),
            uid,
            gid,
        };
        account.own(home);
        account
    }

    fn own(&self, path: &Path) {
        run(Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.uid, self.gid))
            .arg(path));
    }

    fn remove_user(name: &str) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", name])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new(which("userdel"))
            .args(["--force", name])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        Account::remove_user(&self.name);
    }
}

/// Emacs with Gnus over HOME/emacs/mail and a server, run as the account.
fn start_emacs(account: &Account, lisp: &Path) -> (Child, PathBuf) {
    let dir = account.home.join("emacs");
    let child = Command::new(which("emacs"))
        .args(["--batch", "-Q", "-L"])
        .arg(lisp)
        .arg("-l")
        .arg(lisp.join("check-server.el"))
        .arg(&dir)
        .env("HOME", &account.home)
        .env_remove("XDG_RUNTIME_DIR")
        .current_dir(&account.home)
        .uid(account.uid)
        .gid(account.gid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run emacs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join("ready").exists() {
        assert!(
            Instant::now() < deadline,
            "the Emacs server of {} did not start",
            account.name
        );
        thread::sleep(Duration::from_millis(20));
    }
    (child, dir)
}

/// sshd on a free port of 127.0.0.1, letting in `key` for `users`.
struct Sshd {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Sshd {
    fn start(dir: &Path, key: &Path, users: &[String]) -> Sshd {
        // Privilege separation wants this directory, made by the init script.
        fs::create_dir_all("/run/sshd").unwrap();
        let host_key = dir.join("host_key");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key));
        let authorized = dir.join("authorized_keys");
        fs::copy(key.with_extension("pub"), &authorized).unwrap();
        fs::set_permissions(&authorized, fs::Permissions::from_mode(0o644)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n\
                 AuthorizedKeysFile {}\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 AllowUsers {}\n",
                host_key.display(),
                dir.join("sshd.pid").display(),
                authorized.display(),
                users.join(" ")
            ),
        )
        .unwrap();
        let log = dir.join("sshd.log");
        let child = Command::new(which("sshd"))
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("run sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen: {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(20));
        }
        let known = format!(
            "[127.0.0.1]:{port} {}",
            fs::read_to_string(host_key.with_extension("pub")).unwrap()
        );
        fs::write(dir.join("known_hosts"), known).unwrap();
        Sshd { child, port, log }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn check_ssh_checks_the_odd_group_through_a_real_sshd_in_every_login_shell() {
    if !common::is_root_or_skip("making accounts and running sshd") {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    // The accounts must reach their homes and the Lisp below it.
    fs::set_permissions(base.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let lisp = base.path().join("lisp");
    fs::create_dir(&lisp).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "mailsync-gnus.el",
        "lisp/mailsync-gnus-sandbox.el",
        "tests/check-server.el",
    ] {
        let from = repo.join(file);
        fs::copy(&from, lisp.join(from.file_name().unwrap())).unwrap();
    }
    let ssh_dir = base.path().join("ssh");
    fs::create_dir(&ssh_dir).unwrap();
    let key = ssh_dir.join("id");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key));

    let names: Vec<String> = SHELLS
        .iter()
        .map(|shell| format!("mailsync-test-{shell}"))
        .collect();
    let accounts: Vec<Account> = SHELLS
        .iter()
        .zip(&names)
        .map(|(shell, name)| {
            let account = Account::make(name, &which(shell), &base.path().join(name));
            make_maildir(&account.home.join("emacs/mail").join(OsStr::from_bytes(ODD)));
            make_maildir(&account.home.join("emacs/mail/other"));
            account.own(&account.home);
            account
        })
        .collect();
    let sshd = Sshd::start(&ssh_dir, &key, &names);
    let spec = [b"acct:".as_slice(), ODD].concat();
    let group = [b"nnmaildir+test:".as_slice(), ODD].concat();

    for (shell, account) in SHELLS.iter().zip(&accounts) {
        let (mut emacs, dir) = start_emacs(account, &lisp);
        let output = mailsync()
            .args(["sync", "--offlineimap"])
            .arg(which("true"))
            .arg("--check-ssh")
            .arg(format!("{}@127.0.0.1", account.name))
            .arg("--ssh-option")
            .arg(format!("Port={}", sshd.port))
            .arg("--ssh-option")
            .arg(format!("IdentityFile={}", key.display()))
            .arg("--ssh-option")
            .arg(format!(
                "UserKnownHostsFile={}",
                ssh_dir.join("known_hosts").display()
            ))
            .args(["--ssh-option", "StrictHostKeyChecking=yes"])
            .args(["--server", "nnmaildir+test", "--check-timeout", "30"])
            .arg("--socket-name")
            .arg(dir.join("socket/server"))
            .arg(OsStr::from_bytes(&spec))
            .current_dir(base.path())
            .output()
            .unwrap();
        let checked = fs::read(dir.join("checked")).unwrap_or_default();
        let _ = emacs.kill();
        let _ = emacs.wait();
        assert!(
            output.status.success(),
            "{shell}: {}\nsshd: {}",
            String::from_utf8_lossy(&output.stderr),
            fs::read_to_string(&sshd.log).unwrap_or_default()
        );
        assert_eq!(
            String::from_utf8_lossy(&checked),
            String::from_utf8_lossy(&[group.as_slice(), b"\n"].concat()),
            "{shell}: the Emacs of {} checked other groups",
            account.name
        );
        for place in [&account.home, &dir, &dir.join("mail"), &base.path().to_path_buf()] {
            assert!(!place.join("PWNED").exists(), "{shell} evaluated the name");
        }
    }
}
