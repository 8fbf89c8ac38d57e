//! `mailsync idle` logging in with OAuth2 access tokens (XOAUTH2 and
//! OAUTHBEARER) to a real Dovecot on 127.0.0.1 over TLS, whose oauth2
//! passdb asks the test's introspection server (scripts/introspect.py)
//! whether a token is live. The token comes from a command, as a token
//! helper (oama, mutt_oauth2.py) gives it to mbsync's `PassCmd`.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::servers::Dovecot;
use common::{mailsync, Watch};

/// How long a test awaits the first line of a change (a reconnect may back off, and Dovecot delays a refusal 2 s).
const FIRST_LINE: Duration = Duration::from_secs(30);

/// A token helper: prints the first line of `queue` (dropping it while
/// more follow, as a helper whose cache is refreshed) and counts its runs.
fn token_helper(dir: &Path, queue: &[&str]) -> String {
    let script = dir.join("token-helper");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> '{dir}/runs'\nhead -n 1 '{dir}/queue'\n\
             if [ \"$(wc -l < '{dir}/queue')\" -gt 1 ]; then sed -i 1d '{dir}/queue'; fi\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    set_queue(dir, queue);
    format!("sh '{}'", script.display())
}

fn set_queue(dir: &Path, queue: &[&str]) {
    fs::write(
        dir.join("queue"),
        queue.iter().map(|token| format!("{token}\n")).collect::<String>(),
    )
    .unwrap();
}

fn runs(dir: &Path) -> usize {
    fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .lines()
        .count()
}

fn mbsyncrc(dovecot: &Dovecot, helper: &str) -> PathBuf {
    let path = dovecot.dir.path().join("mbsyncrc");
    fs::write(
        &path,
        format!(
            "IMAPAccount oauth\nHost 127.0.0.1\nPort {port}\nUser test\nPassCmd \"{helper}\"\n\
             AuthMechs XOAUTH2\nTLSType IMAPS\nCertificateFile {ca}\n",
            port = dovecot.imaps_port.unwrap(),
            helper = helper.replace('"', "\\\""),
            ca = dovecot.ca_file().display(),
        ),
    )
    .unwrap();
    path
}

/// `mailsync idle` flags for the account by hand, with mechanism `auth`.
fn flags(dovecot: &Dovecot, helper: &str, auth: &str) -> Vec<String> {
    [
        "--host",
        "127.0.0.1",
        "--port",
        &dovecot.imaps_port.unwrap().to_string(),
        "--ca-file",
        dovecot.ca_file().to_str().unwrap(),
        "--user",
        "test",
        "--auth",
        auth,
        "--pass-cmd",
        helper,
        "--delay",
        "0",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect()
}

/// Watching with a token; a reconnect takes a fresh token from the
/// helper; a token the server refuses at a reconnect is asked for once
/// more; no change made meanwhile is lost; no token is ever printed.
fn tokens_are_fetched_for_every_login(args: &[String], dovecot: &Dovecot, dir: &Path, method: &str) {
    let watch = Watch::start_command("idle", &args.iter().map(String::as_str).collect::<Vec<_>>());
    dovecot.deliver("INBOX", "with the first token");
    assert_eq!(watch.next(), "INBOX");
    assert_eq!(dovecot.introspected(), ["tok-1 active"]);

    // The token expires; the helper has a new one. A kick forces a new
    // login, and a message arrives before it is made.
    dovecot.expire("tok-1");
    dovecot.mint("tok-2");
    set_queue(dir, &["tok-2"]);
    dovecot.doveadm(&["kick", "test"], None);
    dovecot.deliver("INBOX", "while logged out");
    assert_eq!(
        watch.lines_set(FIRST_LINE),
        BTreeSet::from(["INBOX".to_string()]),
        "{}",
        watch.stderr_text()
    );
    assert_eq!(
        dovecot.introspected().last().map(String::as_str),
        Some("tok-2 active")
    );

    // The helper first gives its expired token (its cache had not
    // noticed), then a fresh one: the refusal makes mailsync ask again.
    dovecot.expire("tok-2");
    dovecot.mint("tok-3");
    set_queue(dir, &["tok-2", "tok-3"]);
    let runs_before = runs(dir);
    dovecot.doveadm(&["kick", "test"], None);
    dovecot.deliver("INBOX", "while the token was stale");
    assert_eq!(
        watch.lines_set(FIRST_LINE),
        BTreeSet::from(["INBOX".to_string()]),
        "{}",
        watch.stderr_text()
    );
    let checks = dovecot.introspected();
    assert_eq!(checks[checks.len() - 2..], ["tok-2 inactive", "tok-3 active"]);
    assert_eq!(runs(dir) - runs_before, 2, "one run per login attempt, no more");
    assert_eq!(
        dovecot
            .log()
            .matches(&format!("Login: user=<test>, method={method}"))
            .count(),
        3,
        "{}",
        dovecot.log()
    );
    let code = watch_exit(watch);
    assert_eq!(code.0, 0);
    assert!(!code.1.contains("tok-"), "no token in the output: {}", code.1);
}

fn watch_exit(mut watch: Watch) -> (i32, String) {
    drop(watch.stdin.take());
    let code = watch.wait(Duration::from_secs(10));
    (code, watch.stderr_text())
}

#[test]
fn xoauth2_from_an_mbsyncrc_authmechs_with_fresh_tokens() {
    let dovecot = Dovecot::start_oauth("auth_verbose = yes");
    let dir = dovecot.dir.path().to_path_buf();
    dovecot.mint("tok-1");
    let helper = token_helper(&dir, &["tok-1"]);
    let config = mbsyncrc(&dovecot, &helper);
    let args: Vec<String> = [
        "--mbsync",
        "oauth",
        "--config",
        config.to_str().unwrap(),
        "--delay",
        "0",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    tokens_are_fetched_for_every_login(&args, &dovecot, &dir, "XOAUTH2");
}

#[test]
fn oauthbearer_from_flags_with_fresh_tokens() {
    let dovecot = Dovecot::start_oauth("auth_verbose = yes");
    let dir = dovecot.dir.path().to_path_buf();
    dovecot.mint("tok-1");
    let helper = token_helper(&dir, &["tok-1"]);
    let args = flags(&dovecot, &helper, "oauthbearer");
    tokens_are_fetched_for_every_login(&args, &dovecot, &dir, "OAUTHBEARER");
}

#[test]
fn a_failing_token_command_or_a_refused_token_is_one_clear_error() {
    let dovecot = Dovecot::start_oauth("auth_verbose = yes");
    let dir = dovecot.dir.path().to_path_buf();

    // The helper fails (no network, a revoked refresh token): no login at all.
    let failing = dir.join("failing-helper");
    fs::write(
        &failing,
        "#!/bin/sh\necho 'token endpoint unreachable' >&2\nexit 3\n",
    )
    .unwrap();
    let args = flags(&dovecot, &format!("sh '{}'", failing.display()), "xoauth2");
    let output = mailsync().arg("idle").args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no token for test@127.0.0.1: the token command failed"),
        "{stderr}"
    );
    assert!(
        dovecot.introspected().is_empty(),
        "nothing was sent to the server"
    );

    // The helper gives a token the server refuses, again and again: asked
    // for once more after the refusal, then the account stops.
    let helper = token_helper(&dir, &["tok-never-minted"]);
    let args = flags(&dovecot, &helper, "xoauth2");
    let output = mailsync().arg("idle").args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refused the login of test@127.0.0.1")
            && stderr.contains("refused a fresh token too"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("tok-never-minted"),
        "the token is not shown: {stderr}"
    );
    assert_eq!(runs(&dir), 2);
    assert_eq!(
        dovecot.introspected(),
        ["tok-never-minted inactive", "tok-never-minted inactive"]
    );

    // A mechanism mailsync does not speak is a usage error.
    let mut unknown = flags(&dovecot, &helper, "cram-md5");
    unknown.retain(|arg| arg != "--delay" && arg != "0");
    let output = mailsync().arg("idle").args(&unknown).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("xoauth2, oauthbearer, plain or login"));
}

#[test]
fn a_server_without_the_mechanism_asked_for_is_told_before_any_login() {
    let dovecot = Dovecot::start_with(".", true, "auth_verbose = yes");
    let dir = dovecot.dir.path().to_path_buf();
    let helper = token_helper(&dir, &["tok-1"]);
    let output = mailsync()
        .arg("idle")
        .args(flags(&dovecot, &helper, "xoauth2"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("offers none of the login mechanisms asked for (XOAUTH2)"),
        "{stderr}"
    );
    assert!(!dovecot.log().contains("auth failed"), "{}", dovecot.log());
}
