#!/usr/bin/env bash
# sshd-sandbox.sh - a private, throw-away OpenSSH server on 127.0.0.1 for the SFTP tests.
# Usage:
#   sshd-sandbox.sh start DIR PORT   # keys (first time) + start + wait ready; idempotent
#   sshd-sandbox.sh stop  DIR        # stop it; idempotent
#   sshd-sandbox.sh env   DIR        # SNAP_SFTP_KEY=..., SNAP_SFTP_USER=..., SNAP_SFTP_PORT=...
# The host key and the user key live in DIR and are made once, so a known_hosts entry written by
# one run stays valid for the next. Logins: the current user, by key only, from 127.0.0.1.
set -euo pipefail
die() { echo "sshd-sandbox: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: $0 start|stop|env DIR [PORT]"
cmd=$1; DIR=$(mkdir -p "$2" && cd "$2" && pwd -P)
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
PIDF=$DIR/sshd.pid

alive() { [ -f "$PIDF" ] && kill -0 "$(cat "$PIDF")" 2>/dev/null; }

case $cmd in
start)
  PORT=${3:?port}
  [ -x "$SSHD" ] || {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server >/dev/null 2>&1; } ||
        die "could not install openssh-server"
      SSHD=/usr/sbin/sshd
    else
      die "sshd missing (apt-get install -y openssh-server)"
    fi
  }
  chmod 700 "$DIR"
  [ -f "$DIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/host_ed25519"
  [ -f "$DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/id_ed25519"
  cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"; chmod 600 "$DIR/authorized_keys"
  # sshd insists on its privilege-separation directory
  mkdir -p /run/sshd 2>/dev/null || true
  cat > "$DIR/sshd_config" <<CFG
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_ed25519
PidFile $PIDF
AuthorizedKeysFile $DIR/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp -u 0077
LogLevel ERROR
CFG
  if ! alive; then
    "$SSHD" -f "$DIR/sshd_config" -E "$DIR/sshd.log"
  fi
  for _ in $(seq 1 50); do
    if alive && (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; then
      echo "$PORT" > "$DIR/port"; exit 0
    fi
    sleep 0.1
  done
  die "sshd did not start on port $PORT: $(cat "$DIR/sshd.log" 2>/dev/null)"
  ;;
stop)
  if alive; then
    pid=$(cat "$PIDF"); kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDF"
  ;;
env)
  echo "export SNAP_SFTP_KEY=$DIR/id_ed25519 SNAP_SFTP_USER=$(id -un) SNAP_SFTP_PORT=$(cat "$DIR/port")"
  ;;
*) die "unknown command $cmd" ;;
esac
