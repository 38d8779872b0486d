#!/usr/bin/env bash
# The README's main command (make demo): the whole diagnose workflow on a
# bundled demo instead of a cluster.
#
# Builds a small corosync-like daemon with debug info (a timer loop that
# measures how late each tick is, plus a heartbeat write() to fd 3), puts its
# heartbeat file on a loop-mounted ext4 that a fault injector freezes briefly
# and repeatedly, runs playbooks/diagnose-corosync.yml against localhost with
# the presets pointed at the demo, and prints the finding.  The demo is always
# stopped and the file system thawed and unmounted, also on failure or Ctrl-C.
#
# Extra arguments go to ansible-playbook (e.g. -v).
# FLEETTRACE_DEMO_RESULTS: where results go (default ./results);
# FLEETTRACE_DEMO_RUN_ID: the run's name (default demo_<UTC time>).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH=$ROOT/.venv/bin:$PATH
[ "$(id -u)" = 0 ] || { echo "demo: run as root (tracefs, mount, fsfreeze)" >&2; exit 1; }

PERIOD_MS=${FLEETTRACE_DEMO_PERIOD_MS:-100}
THRESHOLD_MS=${FLEETTRACE_DEMO_THRESHOLD_MS:-400}
FREEZE_MS=${FLEETTRACE_DEMO_FREEZE_MS:-1000}
PAUSE_MS=${FLEETTRACE_DEMO_PAUSE_MS:-2500}
RESULTS=${FLEETTRACE_DEMO_RESULTS:-$ROOT/results}
RUN_ID=${FLEETTRACE_DEMO_RUN_ID:-demo_$(date -u +%Y%m%dT%H%M%S)}
run_dir=$RESULTS/corosync-$RUN_ID

work=$(mktemp -d /var/tmp/fleettrace-demo.XXXXXX)
mnt=$work/mnt
daemon_pid=""
injector_pid=""
stop_demo() {
  set +e
  [ -n "$injector_pid" ] && kill "$injector_pid" 2>/dev/null && wait "$injector_pid" 2>/dev/null
  fsfreeze -u "$mnt" 2>/dev/null
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  mountpoint -q "$mnt" && umount "$mnt"
  rm -rf "$work"
}
trap stop_demo EXIT
trap 'exit 130' INT TERM

echo "demo: building the demo daemon with debug info (-g -O2)"
gcc -g -O2 -Wall -o "$work/demo_daemon" tests/programs/demo/demo_daemon.c
echo "demo: loop-mounted ext4 for the heartbeat file at $mnt"
truncate -s 16M "$work/fs.img"
mkfs.ext4 -q -F "$work/fs.img"
mkdir -p "$mnt"
mount -o loop "$work/fs.img" "$mnt"

"$work/demo_daemon" "$mnt/heartbeat.log" "$PERIOD_MS" "$THRESHOLD_MS" 2>"$work/daemon.log" &
daemon_pid=$!
bash tests/programs/demo/fault_injector.sh "$mnt" "$FREEZE_MS" "$PAUSE_MS" >"$work/injector.log" 2>&1 &
injector_pid=$!
echo "demo: daemon pid $daemon_pid ticks every $PERIOD_MS ms; the file system freezes for $FREEZE_MS ms every $((FREEZE_MS + PAUSE_MS)) ms"

inventory=$work/inventory.ini
echo "localhost ansible_connection=local ansible_python_interpreter=$ROOT/.venv/bin/python" >"$inventory"
mkdir -p "$RESULTS"
echo "demo: ansible-playbook playbooks/diagnose-corosync.yml (presets pointed at the demo daemon)"
ansible-playbook -i "$inventory" playbooks/diagnose-corosync.yml \
  -e "diagnose_corosync_binary=$work/demo_daemon" \
  -e "diagnose_threshold_ms=$THRESHOLD_MS" \
  -e "diagnose_timeout=60" \
  -e "diagnose_results_dir=$RESULTS" \
  -e "diagnose_run_id=$RUN_ID" \
  "$@" | tee "$work/playbook.log"

echo
echo "demo: daemon's own log:"
sed 's/^/  /' "$work/daemon.log"
echo "demo: finding (full result in $run_dir):"
if ! grep -h -- '- stall 1:' "$run_dir/summary.md"; then
  echo "demo: no stall was captured; see $run_dir/summary.md" >&2
  exit 1
fi
