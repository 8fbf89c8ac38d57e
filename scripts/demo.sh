#!/usr/bin/env bash
# `make demo`: Gnus in this terminal over a temporary Maildir++ tree, mailsync
# watching it, and a deliverer dropping a message into a random folder every
# few seconds. Quitting Emacs (C-x C-c) stops the deliverer and removes it all.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
emacs=${EMACS:-emacs}
interval=${MAILSYNC_DEMO_INTERVAL:-3}

if [ ! -t 0 ] || [ ! -t 1 ]; then
  echo "make demo runs Emacs in this terminal: run it from an interactive terminal." >&2
  exit 1
fi

demo=$(mktemp -d "${TMPDIR:-/tmp}/mailsync-demo.XXXXXX")
deliverer=""
cleanup() {
  if [ -n "$deliverer" ]; then
    kill "$deliverer" 2>/dev/null || true
    wait "$deliverer" 2>/dev/null || true
  fi
  rm -rf "$demo"
}
trap cleanup EXIT INT TERM

folders=(INBOX lists.emacs-devel lists.gnus work friends)
maildir_of() { # the Maildir++ directory of a folder
  if [ "$1" = INBOX ]; then echo "$demo/Maildir"; else echo "$demo/Maildir/.$1"; fi
}
deliver() { # deliver FOLDER SUBJECT, as an MDA: tmp/ then rename into new/
  local dir name
  dir=$(maildir_of "$1")
  name="$(date +%s).$$_$RANDOM.demo"
  printf 'From: %s\nTo: you@example.org\nSubject: %s\nDate: %s\nMessage-ID: <%s@demo>\n\n%s\n' \
    "demo@example.org" "$2" "$(date -R)" "$name" "A message delivered by make demo into $1." \
    > "$dir/tmp/$name"
  mv "$dir/tmp/$name" "$dir/new/$name"
}

mkdir -p "$demo/gnus"
for folder in "${folders[@]}"; do
  dir=$(maildir_of "$folder")
  mkdir -p "$dir/cur" "$dir/new" "$dir/tmp"
  # nnmaildir reads one maildir per group directory: link each folder in.
  ln -s "$dir" "$demo/gnus/$folder"
  deliver "$folder" "Welcome to $folder"
done

(
  trap - EXIT INT TERM
  n=1
  while sleep "$interval"; do
    folder=${folders[RANDOM % ${#folders[@]}]}
    deliver "$folder" "Demo message $n"
    n=$((n + 1))
  done
) &
deliverer=$!

"$emacs" -nw -Q -L "$repo" -L "$repo/lisp" -l mailsync-demo \
  -f mailsync-demo-command-line "$demo"
