#!/usr/bin/env bash
# A throw-away Dovecot IMAP server on 127.0.0.1 for tests, everything under DIR.
#   scripts/dovecot.sh start DIR [SEPARATOR]   prints the port; user "test", password "secret"
#   scripts/dovecot.sh stop DIR | restart DIR | remove DIR
# With TLS=1 it also listens with TLS from the start on the port in
# DIR/imaps-port (and STARTTLS on the plain port), with a certificate for
# 127.0.0.1 and localhost signed by the test CA in DIR/ca.pem (not trusted
# by the system); with TLS=self, a self-signed certificate made by
# `openssl req -x509` (so marked CA:TRUE), also in DIR/ca.pem. With OAUTH2=1 it also takes XOAUTH2 and OAUTHBEARER, the
# tokens checked by scripts/introspect.py (live tokens: "TOKEN USER" lines
# in DIR/tokens). EXTRA_CONF is appended to the configuration; with
# NAMESPACE_PREFIX=INBOX. every mailbox but INBOX sits below INBOX, as on
# Courier and Cyrus.
# The served maildir is DIR/mail: Maildir++ with SEPARATOR "." (default),
# nested directories (LAYOUT=fs) with "/".
set -euo pipefail

command=${1:?usage: $0 start|stop DIR [SEPARATOR]}
given=$(realpath -m -s "${2:?usage: $0 start|stop|remove DIR [SEPARATOR]}")
dir=$(realpath -m "$given")
separator=${3:-.}

stop() {
  if [ -f "$dir/introspect.pid" ]; then
    kill "$(cat "$dir/introspect.pid")" 2>/dev/null || true
    rm -f "$dir/introspect.pid"
  fi
  if [ -f "$dir/dovecot.conf" ]; then
    dovecot -c "$dir/dovecot.conf" stop 2>/dev/null || true
    for _ in $(seq 50); do [ -e "$dir/run/master.pid" ] || break; sleep 0.1; done
  fi
}
wait_for_port() {
  for _ in $(seq 100); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  echo "dovecot did not start; its log:" >&2
  cat "$dir/dovecot.log" >&2 || true
  return 1
}
start_introspection() {
  rm -f "$dir/introspect-port"
  python3 "$(dirname "$0")/introspect.py" "$dir" </dev/null >/dev/null 2>>"$dir/introspect.err" &
  echo $! > "$dir/introspect.pid"
  for _ in $(seq 100); do [ -s "$dir/introspect-port" ] && break; sleep 0.05; done
  [ -s "$dir/introspect-port" ] || { echo "the introspection server did not start:" >&2; cat "$dir/introspect.err" >&2; return 1; }
  # Same port as before on a restart: Dovecot's configuration names it.
  if [ -f "$dir/oauth2.conf" ]; then
    sed -i "s|^introspection_url = .*|introspection_url = http://127.0.0.1:$(cat "$dir/introspect-port")/introspect|" "$dir/oauth2.conf"
  fi
}
case "$command" in
  stop) stop; exit 0 ;;
  restart)
    # The same server again, on the same ports, with the same mail.
    stop
    [ -f "$dir/oauth2.conf" ] && start_introspection
    dovecot -c "$dir/dovecot.conf" </dev/null >/dev/null 2>>"$dir/dovecot.log"
    wait_for_port "$(sed -n 's/^ *port = \([0-9][0-9]*\)$/\1/p' "$dir/dovecot.conf" | head -1)"
    exit $? ;;
  remove)
    stop
    # As root DIR is a link to Dovecot's own directory (see below).
    if [ -L "$given" ]; then rm -rf "$dir"; rm -f "$given"; else rm -rf "$dir"; fi
    exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop|restart|remove DIR [SEPARATOR]" >&2; exit 2 ;;
esac

command -v dovecot >/dev/null || { echo "dovecot is missing: apt-get install dovecot-imapd" >&2; exit 1; }
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
if [ "$(id -u)" -eq 0 ] && [ ! -e "$given" ]; then
  # Dovecot's own processes (nobody, dovenull) must reach its files, which
  # the caller's private temp dirs do not let them: it gets a directory of
  # its own, mode 0711, in /tmp, and DIR links to it. No other directory's
  # mode is touched.
  own=$(mktemp -d /tmp/mailsync-dovecot.XXXXXX)
  chmod 0711 "$own"
  mkdir -p "$(dirname "$given")"
  ln -s "$own" "$given"
  dir=$own
fi
mkdir -p "$dir/run" "$dir/state" "$dir/home" "$dir/mail"
if [ "$(id -u)" -eq 0 ]; then
  # Dovecot refuses to serve mail as root: the mail belongs to nobody.
  mail_uid=$(id -u nobody); mail_gid=$(id -g nobody)
  login_user=dovenull; internal_user=dovecot
  chown -R nobody:nogroup "$dir/home" "$dir/mail"
else
  mail_uid=$(id -u); mail_gid=$(id -g)
  login_user=$(id -un); internal_user=$(id -un)
fi
ssl_conf="ssl = no"
imaps_port=0
if [ "${TLS:-}" = 1 ] || [ "${TLS:-}" = self ]; then
  command -v openssl >/dev/null || { echo "openssl is missing: apt-get install openssl" >&2; exit 1; }
  imaps_port=$(free_port)
  if [ ! -f "$dir/ca.pem" ] && [ "$TLS" = self ]; then
    # Made the usual way: `openssl req -x509` marks it CA:TRUE.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=localhost" \
      -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$dir/server.key" -out "$dir/server.pem" 2>/dev/null
    cp "$dir/server.pem" "$dir/ca.pem"
    chmod 0644 "$dir/ca.pem" "$dir/server.pem"
  elif [ ! -f "$dir/ca.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=mailsync test CA" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
      -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
      -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
      -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
    chmod 0644 "$dir/ca.pem" "$dir/server.pem"
  fi
  echo "$imaps_port" > "$dir/imaps-port"
  ssl_conf="ssl = yes
ssl_cert = <$dir/server.pem
ssl_key = <$dir/server.key"
fi
mechanisms="plain login"
oauth_passdb=""
password_mechanisms=""
userdb_extra=""
if [ "${OAUTH2:-}" = 1 ]; then
  : > "$dir/tokens"
  start_introspection
  cat > "$dir/oauth2.conf" <<OAUTH
introspection_mode = post
introspection_url = http://127.0.0.1:$(cat "$dir/introspect-port")/introspect
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
OAUTH
  mechanisms="plain login xoauth2 oauthbearer"
  # Passwords for PLAIN and LOGIN only, tokens for the rest; so doveadm's
  # user lookups (which no passdb with mechanisms answers) need allow_all_users.
  password_mechanisms="mechanisms = plain login"
  userdb_extra=" allow_all_users=yes"
  oauth_passdb="passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $dir/oauth2.conf
}"
fi
layout=""
[ "$separator" = "/" ] && layout=":LAYOUT=fs"
echo "test:{PLAIN}secret" > "$dir/passwd"
cat > "$dir/dovecot.conf" <<CONF
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
listen = 127.0.0.1
protocols = imap
$ssl_conf
disable_plaintext_auth = no
auth_mechanisms = $mechanisms
default_login_user = $login_user
default_internal_user = $internal_user
first_valid_uid = 1
mail_location = maildir:$dir/mail$layout
namespace inbox {
  inbox = yes
  separator = $separator
  prefix = ${NAMESPACE_PREFIX:-}
}
passdb {
  driver = passwd-file
  $password_mechanisms
  args = scheme=PLAIN username_format=%u $dir/passwd
}
$oauth_passdb
userdb {
  driver = static
  args = uid=$mail_uid gid=$mail_gid home=$dir/home$userdb_extra
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $imaps_port
    ssl = yes
  }
}
service stats {
  unix_listener stats-reader {
    mode = 0666
  }
  unix_listener stats-writer {
    mode = 0666
  }
}
${EXTRA_CONF:-}
CONF
# The ports were free when picked; another test's server may have taken one
# since (Dovecot then fails to bind and says so in its log): pick again.
for attempt in 1 2 3; do
  if dovecot -c "$dir/dovecot.conf" </dev/null >/dev/null 2>>"$dir/dovecot.log"; then
    wait_for_port "$port" || exit 1
    echo "$port"
    exit 0
  fi
  fresh=$(free_port)
  sed -i "s/^\( *port = \)$port\$/\1$fresh/" "$dir/dovecot.conf"
  port=$fresh
  if [ "$imaps_port" != 0 ]; then
    fresh=$(free_port)
    sed -i "s/^\( *port = \)$imaps_port\$/\1$fresh/" "$dir/dovecot.conf"
    imaps_port=$fresh
    echo "$imaps_port" > "$dir/imaps-port"
  fi
done
echo "dovecot did not start; its log:" >&2
cat "$dir/dovecot.log" >&2
exit 1
