#!/usr/bin/env bash
# A private sshd on loopback, for multi-host tests on one machine.
#
#   scripts/ssh-loopback.sh start            start it if not running (prints "started" or "running")
#   scripts/ssh-loopback.sh inventory N FILE write an inventory of node1..nodeN -> 127.0.0.1..N
#   scripts/ssh-loopback.sh stop             stop it (only our sshd, by its pid file)
#   scripts/ssh-loopback.sh status
#
# Everything lives in $FLEETTRACE_SSH_DIR (default /var/lib/fleettrace/ssh-loopback):
# its own sshd_config, host keys, client key and authorized_keys file.  The
# system's sshd, /etc/ssh and ~/.ssh are never touched.  Idempotent; needs root.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${FLEETTRACE_SSH_DIR:-/var/lib/fleettrace/ssh-loopback}
PORT=${FLEETTRACE_SSH_PORT:-2222}
MAX_HOSTS=16   # sshd listens on 127.0.0.1 .. 127.0.0.$MAX_HOSTS
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
log() { echo "ssh-loopback: $*" >&2; }

prepare() {
  if [ ! -x "$SSHD" ]; then
    log "installing openssh-server"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq openssh-server >/dev/null
    SSHD=/usr/sbin/sshd
  fi
  # sshd's StrictModes wants root-owned, non-group-writable paths.
  install -d -m 0700 "$DIR"
  [ -f "$DIR/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/ssh_host_ed25519_key"
  [ -f "$DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C fleettrace-loopback -f "$DIR/id_ed25519"
  install -m 0600 "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
  {
    echo "# fleettrace loopback sshd (scripts/ssh-loopback.sh)"
    echo "Port $PORT"
    for i in $(seq 1 "$MAX_HOSTS"); do echo "ListenAddress 127.0.0.$i"; done
    echo "HostKey $DIR/ssh_host_ed25519_key"
    echo "PidFile $DIR/sshd.pid"
    echo "AuthorizedKeysFile $DIR/authorized_keys"
    echo "PermitRootLogin prohibit-password"
    echo "PasswordAuthentication no"
    echo "KbdInteractiveAuthentication no"
    echo "PubkeyAuthentication yes"
    echo "UsePAM no"
    echo "MaxStartups 64:30:128"
    echo "MaxSessions 64"
    echo "Subsystem sftp internal-sftp"
    echo "LogLevel ERROR"
  } > "$DIR/sshd_config.new"
  mv "$DIR/sshd_config.new" "$DIR/sshd_config"
  install -d -m 0755 /run/sshd   # privilege separation directory
}

is_running() {
  # The pid must still be our sshd: after a reboot or a killed session the
  # stale pid file may name an unrelated process.
  local pid
  [ -f "$DIR/sshd.pid" ] || return 1
  pid=$(cat "$DIR/sshd.pid")
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$DIR/sshd_config"
}

can_login() {
  ssh -i "$DIR/id_ed25519" -p "$PORT" -o BatchMode=yes -o ConnectTimeout=5 \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
    root@127.0.0.1 true 2>/dev/null
}

start() {
  # Parallel test workers may start it at the same moment: one at a time.
  install -d -m 0700 "$DIR"
  exec 9>"$DIR/.start.lock"
  flock 9
  if is_running; then
    # Never restart a running one because one login was slow: other test workers' sessions
    # (and their plays) go through it.
    for _ in $(seq 1 30); do
      if can_login; then echo running; return 0; fi
      sleep 1
    done
    log "our sshd runs (pid $(cat "$DIR/sshd.pid")) but refuses our key on 127.0.0.1:$PORT; see $DIR/sshd.log"
    exit 1
  fi
  prepare
  "$SSHD" -t -f "$DIR/sshd_config"
  "$SSHD" -f "$DIR/sshd_config" -E "$DIR/sshd.log"
  for _ in $(seq 1 50); do
    if can_login; then echo started; return 0; fi
    sleep 0.1
  done
  log "sshd did not accept our key on 127.0.0.1:$PORT; see $DIR/sshd.log"
  tail -n 20 "$DIR/sshd.log" >&2 || true
  exit 1
}

stop() {
  if is_running; then
    kill "$(cat "$DIR/sshd.pid")"
    rm -f "$DIR/sshd.pid"
    echo stopped
  else
    echo "not running"
  fi
}

inventory() {
  local count=${1:?number of hosts}
  local file=${2:?inventory file}
  if [ "$count" -gt "$MAX_HOSTS" ] || [ "$count" -lt 1 ]; then
    log "host count must be 1..$MAX_HOSTS"; exit 2
  fi
  {
    echo "# node1..node$count: this machine through the loopback sshd of scripts/ssh-loopback.sh"
    echo "[nodes]"
    for i in $(seq 1 "$count"); do
      echo "node$i ansible_host=127.0.0.$i"
    done
    echo
    echo "[nodes:vars]"
    echo "ansible_port=$PORT"
    echo "ansible_user=root"
    echo "ansible_ssh_private_key_file=$DIR/id_ed25519"
    echo "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'"
    echo "ansible_python_interpreter=$ROOT/.venv/bin/python"
  } > "$file"
  echo "$file"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) if is_running; then echo running; else echo "not running"; exit 1; fi ;;
  inventory) shift; inventory "$@" ;;
  *) echo "usage: $0 start|stop|status|inventory N FILE" >&2; exit 2 ;;
esac
