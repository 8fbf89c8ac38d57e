#!/usr/bin/env bash
# Installs what `make test`, `make demo` or `make bench` needs and a fresh
# Debian 12 machine lacks. As root it uses apt-get; otherwise it says what to
# install and fails. Usage: scripts/setup.sh build|test|demo|bench
set -euo pipefail

need=${1:-build}
missing=()

have() { command -v "$1" >/dev/null 2>&1; }
want() { # want COMMAND DEBIAN-PACKAGE
  have "$1" || missing+=("$2")
}
want_file() { # want_file PATH DEBIAN-PACKAGE: for what a package brings besides a command
  [ -e "$1" ] || missing+=("$2")
}
# Dovecot as the tests run it: the daemon (dovecot-core) and its IMAP service
# (dovecot-imapd, without which Dovecot starts and then fails every login).
want_dovecot() {
  want dovecot dovecot-core
  want_file /usr/lib/dovecot/imap dovecot-imapd
  want_file /usr/lib/dovecot/imap-login dovecot-imapd
}

if ! have cargo; then
  echo "mailsync: cargo is missing. Install Rust (https://rustup.rs, or 'apt-get install cargo' for Debian's older one), then run make again." >&2
  exit 1
fi

case "$need" in
  build) ;;
  test)
    want emacs emacs-nox
    want_dovecot
    want offlineimap offlineimap3
    want mbsync isync
    want emacsclient emacs-bin-common
    # Where tests/lint.el looks for it.
    ls /usr/share/emacs/site-lisp/elpa 2>/dev/null | grep -q '^package-lint' || missing+=(elpa-package-lint)
    want dpkg-deb dpkg
    want python3 python3
    # The real mswatch (Debian 11's build, fetched by scripts/fetch-mswatch.sh) needs glib.
    ldconfig -p 2>/dev/null | grep -q 'libglib-2.0.so.0' || missing+=(libglib2.0-0)
    # Login shells the --check-ssh quoting is tested through.
    want zsh zsh
    want fish fish
    # --check-ssh through a real sshd (tests/check_ssh.rs, as root).
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    want ssh-keygen openssh-client
    want pkill procps
    # The README's recipes for other mail readers, run by tests/run.rs and ERT.
    want notmuch notmuch
    want mu maildir-utils
    ls /usr/share/emacs/site-lisp/elpa 2>/dev/null | grep -q '^notmuch' || missing+=(elpa-notmuch)
    ls /usr/share/emacs/site-lisp/elpa 2>/dev/null | grep -q '^mu4e' || missing+=(mu4e)
    # The test Dovecot's TLS certificates (tests/idle.rs); rustls trusts the system's roots.
    want openssl openssl
    [ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
    # make install's user unit, checked by systemd-analyze verify (tests/install.rs).
    want systemd-analyze systemd
    # scripts/check-vendor.sh: notify's release from crates.io, and the patch applied to it.
    want curl curl
    want patch patch
    ;;
  demo)
    want emacs emacs-nox
    ;;
  bench)
    want emacs emacs-nox
    want emacsclient emacs-bin-common
    want inotifywait inotify-tools
    want offlineimap offlineimap3
    want mbsync isync
    want_dovecot
    want python3 python3
    ;;
  *) echo "usage: $0 build|test|demo|bench" >&2; exit 2 ;;
esac

if [ ${#missing[@]} -gt 0 ]; then
  # shellcheck disable=SC2207
  missing=($(printf '%s\n' "${missing[@]}" | sort -u))
  if [ "$(id -u)" -eq 0 ] && have apt-get; then
    echo "mailsync: installing ${missing[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "mailsync: missing ${missing[*]}. Install them, e.g.: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# What the tests unpack from other Debian suites without installing it, fetched
# once here, before tests that use it start at the same time.
if [ "$need" = test ]; then
  here=$(cd "$(dirname "$0")" && pwd)
  for fetch in fetch-mswatch.sh fetch-emacs30.sh; do
    "$here/$fetch" >/dev/null || {
      echo "mailsync: scripts/$fetch failed (see above): the tests that need what it unpacks will fail" >&2
      exit 1
    }
  done
fi
