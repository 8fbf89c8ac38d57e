#!/usr/bin/env bash
# `make bench`: every benchmark in one run, figures and ratios side by side,
# printed and written to BENCHMARKS.md with the machine they ran on.
#   MAILSYNC_BENCH_IDLE=SECONDS  the idle windows (default 10)
#   MAILSYNC_BENCH_RUNS=N        samples per contender in the watcher tables (default 5)
#   MAILSYNC_BENCH_RUN_DELIVERIES=N  deliveries each way per pass in the mailsync run table (default 2; two passes)
#   MAILSYNC_BENCH_RUN_CHAIN=N   server saves in the whole-chain (Emacs hook) table (default 10)
#   MAILSYNC_BENCH_IMAP_DELIVERIES=N  deliveries per RTT in the Gnus-on-nnimap table (default 10)
#   MAILSYNC_BENCH_PUSH_DELIVERIES=N  server saves per pass in the push-sync table (default 20)
#   MAILSYNC_BENCH_HOSTILE=SECONDS  the window of each hostile-server row (default 30)
#   MAILSYNC_BENCH_SIZES=A,B,…   store sizes of the start-up table (default 1000,10000,50000,100000)
#   MAILSYNC_BENCH_DIR=DIR       where the stores of the start-up table are made (default $TMPDIR
#                                or /tmp, on disk so that dropping the caches as root gives
#                                cold-cache rows; those above 10,000 folders on /dev/shm)
set -euo pipefail
cd "$(dirname "$0")/.."
idle=${MAILSYNC_BENCH_IDLE:-10}
export MAILSYNC_BENCH_IDLE=$idle
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The bench program, built with the release profile `make build` used: under
# `cargo bench`'s own profile cargo compiles the whole crate again.
bench_program=$(cargo build --release --bench watch --message-format=json |
  python3 -c 'import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == "watch" and message.get("executable"):
        print(message["executable"])')
[ -x "$bench_program" ] || { echo "bench: could not build tests/bench/watch.rs" >&2; exit 1; }

# One Emacs bench script: its table on stdout; its messages kept in a log
# that is shown, with the script's name, when it fails.
in_emacs() {
  local script=$1 started=$SECONDS; shift
  emacs --batch -Q -L . -L lisp -l "tests/bench/$script" "$@" </dev/null 2>"$work/$script.log" || {
    echo "bench: tests/bench/$script failed; its last messages:" >&2
    tail -n 30 "$work/$script.log" >&2
    return 1
  }
  echo "bench: $script took $((SECONDS - started)) s" >&2
}

{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` (tests/bench.sh) on $(date -u '+%Y-%m-%d %H:%M UTC'):"
  echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"
  echo "$(free -g | awk '/^Mem:/ {print $2}') GiB, Linux $(uname -r), $(emacs --version | head -n 1),"
  echo "$(offlineimap --version 2>/dev/null | head -n 1 | sed 's/^/OfflineIMAP /'), $(mbsync --version 2>/dev/null | head -n 1), $(dovecot --version | sed 's/^/Dovecot /'),"
  echo "$(inotifywait --help 2>&1 | head -n 1)."
  echo
  "$bench_program"
  echo
  echo "### mailsync in Gnus against Emacs's file-notify and the seed's emacsclient path"
  echo
  echo "Delivery → unread count: 200 MDA deliveries one at a time, \`mailsync-delay\` 0 (and the same"
  echo "0 s timer for file-notify's Lisp delay). Burst: 1,000"
  echo "deliveries into 10 folders from another process, default delay. \"Own main-thread time\" is"
  echo "Emacs's time in each way's own code per burst, Gnus's checks excluded; \"per folder\" divides it by"
  echo "the 10 folders touched. Idle: ${idle} s with nothing delivered."
  echo
  in_emacs emacs-bench.el "$work/emacs" "$idle"
  echo
  mkdir -p "$work/start"
  in_emacs emacs-start-bench.el "$work/start"
  echo
  mkdir -p "$work/run"
  in_emacs emacs-run-bench.el "$work/run" "${MAILSYNC_BENCH_RUN_CHAIN:-10}"
  echo
  mkdir -p "$work/imap"
  in_emacs emacs-imap-bench.el "$work/imap" "${MAILSYNC_BENCH_IMAP_DELIVERIES:-10}"
} | tee "$work/BENCHMARKS.md"
cp "$work/BENCHMARKS.md" BENCHMARKS.md
echo "bench: written to BENCHMARKS.md in $SECONDS s" >&2
