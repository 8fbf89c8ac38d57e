//! `make install` into a temporary home, as the README's `PREFIX=~/.local`
//! says: the binary and its other names, the Lisp file with the module
//! next to it (loaded from there by a real Emacs), and the systemd user
//! unit where systemd looks for it, checked by `systemd-analyze verify`.
//! The build itself is `make build`'s (run before the tests): `-o build`
//! tells make not to remake it here.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory cargo built this test's binary in (`target/release`).
fn built() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_mailsync"))
        .parent()
        .expect("the binary's directory")
        .to_path_buf()
}

fn output(command: &mut Command) -> (bool, String) {
    let output = command.output().expect("the command runs");
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

fn text_has(path: &Path, line: &str) -> bool {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .any(|found| found == line || found.starts_with(line))
}

fn make_install(home: &Path, prefix: &Path) -> (bool, String) {
    let target_dir = built().parent().expect("the target directory").to_path_buf();
    output(
        Command::new("make")
            .current_dir(repo())
            .args(["--no-print-directory", "-o", "build", "install"])
            .arg(format!("PREFIX={}", prefix.display()))
            .arg(format!("TARGET_DIR={}", target_dir.display()))
            .env("HOME", home),
    )
}

#[test]
fn make_install_into_a_home_gives_a_working_binary_module_and_user_unit() {
    assert!(
        repo().join("mailsync-gnus-module.so").exists(),
        "the module is missing: run `make build` first"
    );
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    fs::create_dir_all(&home).unwrap();
    let prefix = home.join(".local");
    let (ok, text) = make_install(&home, &prefix);
    assert!(ok, "make install failed:\n{text}");
    // It says where things went and what to do next.
    for said in [
        "mailsync is installed:",
        "systemctl --user enable --now mailsync@CHANNEL",
        "(require 'mailsync-gnus) (mailsync-mode 1)",
    ] {
        assert!(text.contains(said), "{said:?} in:\n{text}");
    }

    let bin = prefix.join("bin");
    let binary = bin.join("mailsync");
    assert_eq!(fs::metadata(&binary).unwrap().permissions().mode() & 0o111, 0o111);
    for name in [
        "mailsync-sync",
        "mailsync-watch",
        "mailsync_offlineimap",
        "mailsync_offlineimap_local",
        "mailsync_gnus_watch",
    ] {
        assert_eq!(
            fs::read_link(bin.join(name)).unwrap(),
            Path::new("mailsync"),
            "{name} is a link to mailsync"
        );
    }
    let (ok, text) = output(Command::new(bin.join("mailsync-sync")).arg("--help"));
    assert!(
        ok && text.contains("--backend"),
        "the installed mailsync-sync runs:\n{text}"
    );

    // The unit goes where systemd looks for a user's units, with the
    // installed binary in it, and systemd accepts it.
    let unit = home.join(".config/systemd/user/mailsync.service");
    let text = fs::read_to_string(&unit).expect("the user unit is installed");
    let exec = format!("ExecStart={} run --config %h/.mswatchrc", binary.display());
    assert!(text.lines().any(|line| line == exec), "{exec} in:\n{text}");
    let (ok, text) = output(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .env("HOME", &home),
    );
    assert!(ok, "systemd-analyze verify {}:\n{text}", unit.display());
    assert!(text_has(&unit, "RestartPreventExitStatus=2 3 4"));
    // The template: one mbsync channel, no .mswatchrc; PATH holds the
    // installed binary's directory (the user manager's lacks ~/.local/bin).
    let template = home.join(".config/systemd/user/mailsync@.service");
    let exec = format!("ExecStart={} run --mbsync %i", binary.display());
    assert!(text_has(&template, &exec), "{exec}");
    for unit in [&unit, &template] {
        assert!(text_has(unit, &format!("Environment=PATH={}:", bin.display())));
        assert!(text_has(unit, "RestartPreventExitStatus=2 3 4"));
    }
    let instance = home.join(".config/systemd/user/mailsync@work.service");
    fs::copy(&template, &instance).unwrap();
    let (ok, text) = output(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(&instance)
            .env("HOME", &home),
    );
    assert!(ok, "systemd-analyze verify {}:\n{text}", instance.display());
    fs::remove_file(&instance).unwrap();

    // A real Emacs loads the installed Lisp file and the module next to it.
    let lisp = prefix.join("share/emacs/site-lisp/mailsync");
    let (ok, text) = output(
        Command::new("emacs")
            .args(["--batch", "-Q", "-L"])
            .arg(&lisp)
            .args([
                "--eval",
                "(progn (require 'mailsync-gnus) (mailsync--require-module) \
         (princ (format \"module %s %s\" (mailsync--module-file) (mailsync--module-version))))",
            ]),
    );
    let expected = format!("module {} ", lisp.join("mailsync-gnus-module.so").display());
    assert!(ok && text.contains(&expected), "{expected} in:\n{text}");
}

#[test]
fn make_install_elsewhere_puts_the_unit_under_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    fs::create_dir_all(&home).unwrap();
    let prefix = dir.path().join("opt");
    let (ok, text) = make_install(&home, &prefix);
    assert!(ok, "make install failed:\n{text}");
    assert!(prefix.join("lib/systemd/user/mailsync.service").exists());
    assert!(!home.join(".config").exists(), "nothing is written into the home");
}
