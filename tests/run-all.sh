#!/usr/bin/env bash
# Every test, in order: formatting, clippy, the Rust tests (unit and the real
# binary on real maildirs, Dovecot, OfflineIMAP, mbsync), then lint and ERT
# in real Emacsen with real Gnus. Ends with one line: N passed, N failed.
set -uo pipefail
cd "$(dirname "$0")/.."
cargo=${CARGO:-cargo}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run() {
  set -e
  $cargo fmt --check
  $cargo clippy --all-targets -- -D warnings
  make --no-print-directory build
  $cargo test --release
  tests/emacs-tests.sh
}
(run) 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

read -r passed failed < <(awk '
  /^test result: / { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
  /^Ran [0-9]+ tests?, [0-9]+ results? as expected, [0-9]+ unexpected/ { p += $4; f += $8 }
  END { print p + 0, f + 0 }' "$log")
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # a step failed before its tests could count (build, fmt, clippy, lint)
fi
echo "mailsync: $passed passed, $failed failed"
exit "$status"
