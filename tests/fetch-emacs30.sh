#!/usr/bin/env bash
# Unpacks Emacs 30.1 from Debian's bookworm-backports into a folder, without
# installing it, and prints the path of a wrapper that runs it.
# Usage: tests/fetch-emacs30.sh [DIR]   (default: .cache/emacs-30)
set -euo pipefail

dir=${1:-"$(cd "$(dirname "$0")/.." && pwd)/.cache/emacs-30"}
wrapper="$dir/emacs"
if [ -x "$wrapper" ] && "$wrapper" --batch --eval '(kill-emacs (if (string-prefix-p "30." emacs-version) 0 1))' 2>/dev/null; then
  echo "$wrapper"
  exit 0
fi

mkdir -p "$dir/debs" "$dir/root"
apt_dir=$(mktemp -d)
trap 'rm -rf "$apt_dir"' EXIT
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
cat > "$apt_dir/sources.list" <<SOURCES
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-backports main
SOURCES
opts=(-o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache::Archives="$apt_dir/archives"
      -o APT::Default-Release=bookworm-backports -o Debug::NoLocking=1)
echo "fetch-emacs30: downloading Emacs 30.1 from bookworm-backports into $dir" >&2
apt-get "${opts[@]}" update -qq >&2
(cd "$dir/debs" && apt-get "${opts[@]}" download -qq \
   emacs-nox/bookworm-backports emacs-bin-common/bookworm-backports \
   emacs-common/bookworm-backports libtree-sitter0 >&2)
for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
share=$(ls -d "$dir"/root/usr/share/emacs/30.*)
libexec=$(ls -d "$dir"/root/usr/libexec/emacs/30.*/*-linux-gnu)
dump=$(ls "$libexec"/*.pdmp | head -n 1)
cat > "$wrapper" <<WRAPPER
#!/bin/sh
# Emacs 30 unpacked from Debian's bookworm-backports by tests/fetch-emacs30.sh.
export LD_LIBRARY_PATH="$dir/root/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export EMACSLOADPATH="$share/lisp:"
export EMACSDATA="$share/etc"
export EMACSDOC="$share/etc"
export EMACSPATH="$libexec"
exec "$dir/root/usr/bin/emacs-nox" --dump-file="$dump" "\$@"
WRAPPER
chmod +x "$wrapper"
"$wrapper" --batch -Q --eval '(princ (format "fetch-emacs30: Emacs %s ready\n" emacs-version))' >&2
echo "$wrapper"
