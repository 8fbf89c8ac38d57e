#!/usr/bin/env bash
# Unpacks the real mswatch 1.2.0 from Debian 11 (bullseye; it left Debian
# after that) into a folder, without installing it, and prints the path of
# its binary, which runs on Debian 12 (it needs only glib).
# Usage: scripts/fetch-mswatch.sh [DIR]   (default: .cache/mswatch)
# Safe to run several times at once: the first fetches, the others wait for it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(realpath -m "${1:-"$here/../.cache/mswatch"}")
binary="$dir/root/usr/bin/mswatch"
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if ! [ -x "$binary" ]; then
  echo "fetch-mswatch: downloading mswatch from bullseye into $dir" >&2
  "$here/debian-fetch.sh" "$dir" bullseye -- mswatch
fi
# mswatch --version prints its version and exits 1.
version=$("$binary" --version 2>&1 || true)
case "$version" in
  "mswatch 1.2"*) ;;
  *) echo "fetch-mswatch: $binary does not run: $version" >&2; exit 1 ;;
esac
echo "$binary"
