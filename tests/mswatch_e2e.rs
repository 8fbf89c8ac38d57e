//! The real mswatch 1.2.0 (Debian 11's build, unpacked by
//! scripts/fetch-mswatch.sh) runs `mailsync watch` on both stores and
//! `mailsync sync` with real mbsync against a real Dovecot on 127.0.0.1:
//! mail saved on the server reaches the local maildir, mail delivered
//! locally reaches the server. The configuration is written the way the
//! README tells users to write it.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::servers::{messages, Dovecot};
use common::{deliver, make_maildir, mswatch};

fn wait_until(what: &str, log: &Path, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 30 s; mswatch said:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // mswatch ends cleanly on SIGTERM; its watchers end when their input closes.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_real_mswatch_runs_mailsync_watch_and_sync_both_ways() {
    let mswatch = mswatch();
    let dovecot = Dovecot::start(".");
    dovecot.save("INBOX", "before mswatch");
    let local = dovecot.dir.path().join("local");
    let rc = dovecot.mbsyncrc(&local);
    make_maildir(&local.join("INBOX"));
    let server_mail = dovecot.dir.path().join("server/mail");
    let mailsync = env!("CARGO_BIN_EXE_mailsync");
    // mswatch's lexer takes `sync` and `watch` as keywords wherever they
    // stand: the subcommands are quoted, as README says.
    let config = format!(
        "base_delay 1\ninter_delay 1\nmax_delay 4\n\
         sync \"{mailsync}\" \"sync\" --backend mbsync --config \"{rc}\" --local-separator /\n\
         mailbox_prefix test :\n\
         store local\n{{\n  watch \"{mailsync}\" \"watch\" --maildir \"{local}\" --layout verbatim --delay 0\n}}\n\
         store server\n{{\n  watch \"{mailsync}\" \"watch\" --maildir \"{server}\" --separator / --delay 0\n}}\n",
        rc = rc.display(),
        local = local.display(),
        server = server_mail.display()
    );
    let config_file = dovecot.dir.path().join("mswatchrc");
    fs::write(&config_file, config).unwrap();
    let log = dovecot.dir.path().join("mswatch.log");
    let log_file = fs::File::create(&log).unwrap();
    let _mswatch = Running(
        Command::new(&mswatch)
            .arg("-c")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap(),
    );

    // mswatch syncs everything once at start.
    wait_until("the start-up sync", &log, || messages(&local.join("INBOX")) == 1);
    dovecot.save("INBOX", "saved on the server");
    wait_until("the server's message reaching the local maildir", &log, || {
        messages(&local.join("INBOX")) == 2
    });
    deliver(&local.join("INBOX"));
    wait_until("the local message reaching the server", &log, || {
        messages(&server_mail) == 3
    });
    let said = fs::read_to_string(&log).unwrap();
    assert!(!said.contains("syntax error"), "{said}");
}

#[test]
fn the_names_without_keywords_are_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_mailsync");
    for name in ["mailsync-watch", "mailsync-sync"] {
        std::os::unix::fs::symlink(binary, dir.path().join(name)).unwrap();
    }
    let output = Command::new(dir.path().join("mailsync-sync"))
        .args(["--dry-run", "--offlineimap", "oi", "acc:INBOX"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "oi -o -u quiet -a acc -f INBOX\n"
    );
    let store = tempfile::tempdir().unwrap();
    make_maildir(store.path());
    let output = Command::new(dir.path().join("mailsync-watch"))
        .arg("--maildir")
        .arg(store.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        output.stdout,
        b"\n",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `mswatchrc` blocks of README.md.
fn readme_configs() -> Vec<String> {
    readme_blocks("```mswatchrc")
}

/// The blocks of README.md fenced with `fence`.
fn readme_blocks(fence: &str) -> Vec<String> {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line) {
            (None, line) if line == fence => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), line) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_mailsync_run_configuration_in_the_readme_parses() {
    let configs = readme_blocks("```mailsync-run");
    assert!(!configs.is_empty(), "README has no mailsync-run block");
    for config in configs {
        if let Err(err) = mailsync::mswatch::config::Config::parse(&config) {
            panic!("a mailsync-run block of README.md does not parse: {err}\n{config}");
        }
    }
}

#[test]
fn every_mswatchrc_in_the_readme_parses_in_the_real_mswatch_and_in_mailsync_run() {
    let mswatch = mswatch();
    let configs = readme_configs();
    assert!(
        configs.len() >= 3,
        "README has {} mswatchrc blocks",
        configs.len()
    );
    let dir = tempfile::tempdir().unwrap();
    for (index, config) in configs.iter().enumerate() {
        let file = dir.path().join(format!("mswatchrc{index}"));
        fs::write(&file, config).unwrap();
        // What mswatch takes, `mailsync run` takes too.
        if let Err(err) = mailsync::mswatch::config::Config::parse(config) {
            panic!("README block {index} does not parse for mailsync run: {err}\n{config}");
        }
        // --dry: watch only. A file mswatch cannot parse ends it at once.
        let mut child = Command::new(&mswatch)
            .args(["--dry", "-c"])
            .arg(&file)
            .env("PATH", "/nonexistent")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        thread::sleep(Duration::from_millis(700));
        let running = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        let said =
            String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
        assert!(
            !said.contains("syntax error"),
            "README block {index} does not parse:\n{config}\n{said}"
        );
        assert!(
            running,
            "mswatch ended on README block {index}:\n{config}\n{said}"
        );
    }
}
