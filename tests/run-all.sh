#!/usr/bin/env bash
# Every test, in order: formatting, clippy, the vendored notify checked
# against its release plus vendor/notify.patch, the Rust tests (unit and the real
# binary on real maildirs, Dovecot, OfflineIMAP, mbsync), then lint and ERT
# in real Emacsen with real Gnus. Ends with one line: N passed, N failed,
# N skipped. A test that cannot run here (most need root) is a skip, never a
# pass: Rust tests record theirs in $MAILSYNC_TEST_SKIPS (tests/common's
# `skip`), ERT counts its own.
set -uo pipefail
cd "$(dirname "$0")/.."
cargo=${CARGO:-cargo}
log=$(mktemp)
skips=$(mktemp)
trap 'rm -f "$log" "$skips"' EXIT
export MAILSYNC_TEST_SKIPS=$skips

run() {
  set -e
  $cargo fmt --check
  $cargo clippy --all-targets -- -D warnings
  scripts/check-vendor.sh || {
    [ $? -eq 77 ] || return 1
    echo "scripts/check-vendor.sh: notify's release could not be downloaded to compare vendor/notify with" >>"$skips"
  }
  make --no-print-directory build
  # Every test binary runs even when one fails, so the count below is whole.
  $cargo test --release --no-fail-fast
  tests/emacs-tests.sh
}
(run) 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# ERT counts a skipped test among those "as expected": it is taken out of passed.
read -r passed failed ert_skipped < <(awk '
  /^test result: / { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
  /^Ran [0-9]+ tests?, [0-9]+ results? as expected, [0-9]+ unexpected/ {
    p += $4; f += $8
    for (i = 9; i <= NF; i++) if ($(i) ~ /^skipped/) s += $(i-1)
  }
  END { print p + 0, f + 0, s + 0 }' "$log")
rust_skipped=$(grep -c . "$skips")
skipped=$((rust_skipped + ert_skipped))
passed=$((passed - skipped))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # a step failed before its tests could count (build, fmt, clippy, lint)
fi
if [ "$skipped" -gt 0 ]; then
  echo "Skipped here (they run where their need is met):"
  sed 's/^/  /' "$skips"
  [ "$ert_skipped" -gt 0 ] && echo "  $ert_skipped ERT test(s): see the ERT summaries above"
fi
echo "mailsync: $passed passed, $failed failed, $skipped skipped"
exit "$status"
