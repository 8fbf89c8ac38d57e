#!/usr/bin/env bash
# Downloads Debian packages of another suite and unpacks them into a folder,
# without installing anything, from the Debian mirror this machine's own apt
# sources name (so a user behind their own mirror is served).
#   scripts/debian-fetch.sh DIR "APT-SOURCES-SUITES" [apt-get option…] -- PACKAGE…
# e.g. scripts/debian-fetch.sh .cache/mswatch bullseye -- mswatch
# Unpacks into DIR/root; DIR/debs keeps the packages. DIR appears whole or
# not at all: everything goes to a folder beside it, renamed at the end, so an
# interrupted fetch leaves nothing half-unpacked. Callers that may run at once
# hold a lock around their check and this (scripts/fetch-mswatch.sh).
set -euo pipefail

dir=${1:?usage: $0 DIR SUITES [APT-OPTION…] -- PACKAGE…}
suites=${2:?usage: $0 DIR SUITES [APT-OPTION…] -- PACKAGE…}
shift 2
extra=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do extra+=("$1"); shift; done
[ "${1:-}" = -- ] && shift
[ $# -gt 0 ] || { echo "usage: $0 DIR SUITES [APT-OPTION…] -- PACKAGE…" >&2; exit 2; }

# The first Debian archive URI of the machine's sources (deb822 or one-line).
mirror=$(
  { cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n'
    grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}'
  } | grep -v -e security -e '^$' | head -n 1
) || true
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$(dirname "$dir")"
staging=$(mktemp -d "$dir.partial.XXXXXX")
apt_dir=$(mktemp -d)
trap 'rm -rf "$apt_dir" "$staging"' EXIT
mkdir -p "$staging/debs" "$staging/root"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
for suite in $suites; do
  echo "deb $mirror $suite main"
done > "$apt_dir/sources.list"
opts=(-o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache::Archives="$apt_dir/archives"
      -o Debug::NoLocking=1 -o APT::Sandbox::User=root "${extra[@]}")
apt-get "${opts[@]}" update -qq >&2
(cd "$staging/debs" && apt-get "${opts[@]}" download -qq "$@" >&2)
for deb in "$staging"/debs/*.deb; do dpkg-deb -x "$deb" "$staging/root"; done
chmod 755 "$staging"
rm -rf "$dir"
mv "$staging" "$dir"
