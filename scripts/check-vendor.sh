#!/usr/bin/env bash
# Checks that vendor/notify is notify 9.0.0-rc.7 as crates.io publishes it
# plus vendor/notify.patch, and nothing else (vendor/notify/MAILSYNC-PATCH.md
# explains each change). The release is downloaded once into
# .cache/notify-9.0.0-rc.7.crate and checked against its SHA-256.
# Prints a `test result:` line that tests/run-all.sh counts; exit 0 when the
# copy is the release plus the patch, 1 when it is not, 77 when the release
# cannot be had here (a skip).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=9.0.0-rc.7
sha256=9dc7e1571ebae4ac2247c2ea8f1e067055dae6495226489c78321a2e14b47966
crate="$root/.cache/notify-$version.crate"
mkdir -p "$root/.cache"
exec 9>"$crate.lock"
flock 9
if ! [ -f "$crate" ]; then
  if ! curl -sSfL --max-time 120 -o "$crate.part" "https://static.crates.io/crates/notify/notify-$version.crate"; then
    rm -f "$crate.part"
    echo "test result: ok. 1 passed; 0 failed; (scripts/check-vendor.sh: skipped, notify $version cannot be downloaded from crates.io here)"
    exit 77
  fi
  mv "$crate.part" "$crate"
fi
if ! echo "$sha256  $crate" | sha256sum --check --status; then
  echo "check-vendor: $crate is not the notify $version crates.io publishes (SHA-256); remove it and run again" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$crate" -C "$work"
release="$work/notify-$version"
rm -f "$release/.cargo_vcs_info.json" "$release/Cargo.lock"
patch --quiet --directory="$release" -p1 < "$root/vendor/notify.patch"
if diff -r --exclude=MAILSYNC-PATCH.md "$release" "$root/vendor/notify" >"$work/diff"; then
  echo "test result: ok. 1 passed; 0 failed; (scripts/check-vendor.sh: vendor/notify is notify $version plus vendor/notify.patch)"
else
  cat "$work/diff" >&2
  echo "check-vendor: vendor/notify differs from notify $version plus vendor/notify.patch (above); make the change a part of the patch" >&2
  echo "test result: FAILED. 0 passed; 1 failed; (scripts/check-vendor.sh)"
  exit 1
fi
