#!/usr/bin/env bash
# Unpacks Emacs 30.1 from Debian's bookworm-backports into a folder, without
# installing it, and prints the path of a wrapper that runs it.
# Usage: scripts/fetch-emacs30.sh [DIR]   (default: .cache/emacs-30)
# Safe to run several times at once: the first fetches, the others wait for it.
set -euo pipefail

dir=$(realpath -m "${1:-"$(dirname "$0")/../.cache/emacs-30"}")
wrapper="$dir/emacs"
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if [ -x "$wrapper" ] && "$wrapper" --batch --eval '(kill-emacs (if (string-prefix-p "30." emacs-version) 0 1))' 2>/dev/null; then
  echo "$wrapper"
  exit 0
fi

echo "fetch-emacs30: downloading Emacs 30.1 from bookworm-backports into $dir" >&2
"$(dirname "$0")/debian-fetch.sh" "$dir" "bookworm bookworm-backports" \
  -o APT::Default-Release=bookworm-backports -- \
  emacs-nox/bookworm-backports emacs-bin-common/bookworm-backports \
  emacs-common/bookworm-backports libtree-sitter0

share=$(ls -d "$dir"/root/usr/share/emacs/30.*)
libexec=$(ls -d "$dir"/root/usr/libexec/emacs/30.*/*-linux-gnu)
dump=$(ls "$libexec"/*.pdmp | head -n 1)
libdir=$(ls -d "$dir"/root/usr/lib/*-linux-gnu | head -n 1)
cat > "$wrapper" <<WRAPPER
#!/bin/sh
# Emacs 30 unpacked from Debian's bookworm-backports by scripts/fetch-emacs30.sh.
export LD_LIBRARY_PATH="$libdir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export EMACSLOADPATH="$share/lisp:"
export EMACSDATA="$share/etc"
export EMACSDOC="$share/etc"
export EMACSPATH="$libexec"
exec "$dir/root/usr/bin/emacs-nox" --dump-file="$dump" "\$@"
WRAPPER
chmod +x "$wrapper"
"$wrapper" --batch -Q --eval '(princ (format "fetch-emacs30: Emacs %s ready\n" emacs-version))' >&2
echo "$wrapper"
