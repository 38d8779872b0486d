#!/usr/bin/env bash
# The README's main command (make demo): the whole diagnose workflow on a
# bundled demo instead of a cluster, in one of two scenarios.
#
# Builds a small corosync-like daemon with debug info (a timer loop that
# measures how late each tick is, a heartbeat write() to fd 3 and, in the
# watchdog scenario, a WDIOC_KEEPALIVE ioctl on fd 4 after each tick), runs
# playbooks/diagnose-corosync.yml against localhost with the presets pointed
# at the demo, and prints the finding.
#
# FLEETTRACE_DEMO_SCENARIO (make demo SCENARIO=...):
#   watchdog   (default) the talk's incident: the daemon's /dev/watchdog is the
#              slow watchdog (FUSE, tests/programs/slow_watchdog) in a private
#              mount namespace, and every Nth keepalive is held for a second,
#              as the server's IPMI watchdog held corosync's.  Needs FUSE.
#   frozen-fs  the heartbeat file is on a loop-mounted ext4 that a fault
#              injector freezes briefly and repeatedly (a D-state stall).
#   sentinel   the watchdog scenario left to a sentinel (docs/sentinel.md):
#              playbooks/sentinel-corosync.yml arms the node and returns; the
#              slow watchdog holds one keepalive by itself 20-40 s later; the
#              node catches it alone, logs its journal line, measures the
#              culprit call; then the demo collects, prints, and disarms.
# Everything is stopped, thawed and unmounted on exit, also on failure or Ctrl-C.
#
# Extra arguments go to ansible-playbook (e.g. -v).
# FLEETTRACE_DEMO_RESULTS: where results go (default ./results);
# FLEETTRACE_DEMO_RUN_ID: the run's name (default demo_<UTC time>);
# FLEETTRACE_DEMO_TMPDIR: where the scratch directory is made (default /var/tmp);
# FLEETTRACE_DEMO_LABEL: the sentinel's label (SCENARIO=sentinel; default demo_<UTC time>).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH=$ROOT/.venv/bin:$PATH
[ "$(id -u)" = 0 ] || { echo "demo: run as root (tracefs, mounts)" >&2; exit 1; }

SCENARIO=${FLEETTRACE_DEMO_SCENARIO:-watchdog}
PERIOD_MS=${FLEETTRACE_DEMO_PERIOD_MS:-100}
THRESHOLD_MS=${FLEETTRACE_DEMO_THRESHOLD_MS:-400}
# frozen-fs: how long the file system stays frozen, and the pause in between.
FREEZE_MS=${FLEETTRACE_DEMO_FREEZE_MS:-1000}
PAUSE_MS=${FLEETTRACE_DEMO_PAUSE_MS:-2500}
# watchdog: a keepalive after every tick; every KEEPALIVE_EVERY-th is held KEEPALIVE_MS.
KEEPALIVE_MS=${FLEETTRACE_DEMO_KEEPALIVE_MS:-1000}
KEEPALIVE_EVERY=${FLEETTRACE_DEMO_KEEPALIVE_EVERY:-30}
LATENCY_S=${FLEETTRACE_DEMO_LATENCY_S:-10}
RESULTS=${FLEETTRACE_DEMO_RESULTS:-$ROOT/results}
RUN_ID=${FLEETTRACE_DEMO_RUN_ID:-demo_$(date -u +%Y%m%dT%H%M%S)}
run_dir=$RESULTS/corosync-$RUN_ID

case $SCENARIO in
  watchdog|frozen-fs|sentinel) ;;
  *) echo "demo: unknown scenario '$SCENARIO': use SCENARIO=watchdog (default), frozen-fs or sentinel" >&2; exit 2 ;;
esac
# The sentinel scenario: no periodic holds, one keepalive held once by the watchdog itself.
[ "$SCENARIO" = sentinel ] && KEEPALIVE_EVERY=0
LABEL=${FLEETTRACE_DEMO_LABEL:-demo_$(date -u +%H%M%S)}

# Why FUSE cannot work here, or nothing.
fuse_missing() {
  if ! grep -qw fuse /proc/filesystems; then
    modprobe fuse 2>/dev/null || true
    grep -qw fuse /proc/filesystems || { echo "the kernel has no fuse file system and 'modprobe fuse' did not load it"; return; }
  fi
  [ -c /dev/fuse ] || { echo "/dev/fuse is missing (in a container: --device /dev/fuse --cap-add SYS_ADMIN)"; return; }
  command -v fusermount3 >/dev/null || { echo "fusermount3 is missing (Debian package fuse3; make setup installs it)"; return; }
  pkg-config --exists fuse3 2>/dev/null || { echo "libfuse3's development files are missing (Debian package libfuse3-dev; make setup installs it)"; return; }
}
if [ "$SCENARIO" != frozen-fs ]; then
  why=$(fuse_missing)
  if [ -n "$why" ]; then
    echo "demo: the slow-watchdog scenario needs FUSE, and this machine cannot run it: $why." >&2
    echo "demo: the frozen-file-system scenario needs no FUSE: make demo SCENARIO=frozen-fs" >&2
    exit 1
  fi
fi

work=$(mktemp -d "${FLEETTRACE_DEMO_TMPDIR:-/var/tmp}/fleettrace-demo.XXXXXX")
mnt=$work/mnt
wd_mnt=$work/watchdog
daemon_pid=""
injector_pid=""
watchdog_pid=""
journal_pid=""
sock_dir=""
armed=""
stop_demo() {
  set +e
  # A sentinel left armed by a Ctrl-C is disarmed first (it would end by itself at its 10-minute deadline).
  [ -n "$armed" ] && ansible-playbook -i "$inventory" playbooks/sentinel-corosync.yml "${sentinel_vars[@]}" \
    -e sentinel_state=absent >/dev/null 2>&1
  [ -n "$journal_pid" ] && kill "$journal_pid" 2>/dev/null && wait "$journal_pid" 2>/dev/null
  [ -n "$sock_dir" ] && rm -rf "$sock_dir"
  [ -n "$injector_pid" ] && kill "$injector_pid" 2>/dev/null && wait "$injector_pid" 2>/dev/null
  mountpoint -q "$mnt" && fsfreeze -u "$mnt" 2>/dev/null
  # The daemon first: its namespace holds the last reference to the watchdog mount.
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  [ -n "$watchdog_pid" ] && kill "$watchdog_pid" 2>/dev/null && wait "$watchdog_pid" 2>/dev/null
  if grep -q " $wd_mnt " /proc/self/mountinfo; then
    fusermount3 -u "$wd_mnt" 2>/dev/null || umount -l "$wd_mnt"
  fi
  mountpoint -q "$mnt" && umount "$mnt"
  rm -rf "$work"
}
trap stop_demo EXIT
trap 'exit 130' INT TERM

echo "demo: scenario $SCENARIO (make demo SCENARIO=watchdog|frozen-fs|sentinel)"
echo "demo: building the demo daemon with debug info (-g -O2)"
gcc -g -O2 -Wall -o "$work/demo_daemon" tests/programs/demo/demo_daemon.c

if [ "$SCENARIO" != frozen-fs ]; then
  echo "demo: building the slow watchdog (FUSE) and mounting it at $wd_mnt"
  # shellcheck disable=SC2046  # pkg-config prints several words on purpose
  gcc -O2 -Wall -o "$work/slow_watchdog" tests/programs/slow_watchdog/slow_watchdog.c $(pkg-config --cflags --libs fuse3)
  mkdir -p "$wd_mnt" "$work/ns-stage"
  "$work/slow_watchdog" "$wd_mnt" --log "$work/keepalives.log" --delay-ms "$KEEPALIVE_MS" \
    --every "$KEEPALIVE_EVERY" --fsname fleettrace_demo_watchdog 2>"$work/watchdog.err" &
  watchdog_pid=$!
  for _ in $(seq 200); do
    grep -q " $wd_mnt " /proc/self/mountinfo && break
    kill -0 "$watchdog_pid" 2>/dev/null || break
    sleep 0.05
  done
  grep -q " $wd_mnt " /proc/self/mountinfo || { cat "$work/watchdog.err" >&2; echo "demo: the slow watchdog did not mount" >&2; exit 1; }
  # /dev/watchdog is the slow watchdog for the daemon only (private mount namespace).
  bash tests/programs/slow_watchdog/with_dev_watchdog.sh "$wd_mnt/watchdog" "$work/ns-stage" \
    "$work/demo_daemon" "$work/heartbeat.log" "$PERIOD_MS" "$THRESHOLD_MS" /dev/watchdog 2>"$work/daemon.log" &
  daemon_pid=$!
  if [ "$SCENARIO" = watchdog ]; then
    echo "demo: daemon pid $daemon_pid ticks every $PERIOD_MS ms and tickles /dev/watchdog after each tick;" \
         "every ${KEEPALIVE_EVERY}th keepalive is held for $KEEPALIVE_MS ms"
  else
    echo "demo: daemon pid $daemon_pid ticks every $PERIOD_MS ms and tickles /dev/watchdog after each tick; no keepalive is held yet"
  fi
else
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
fi

inventory=$work/inventory.ini
echo "localhost ansible_connection=local ansible_python_interpreter=$ROOT/.venv/bin/python" >"$inventory"
mkdir -p "$RESULTS"

# The finding of a results directory (summary.md, summary.json), as an operator reads it.
print_finding() {
  local dir=$1
  echo "demo: finding (full result in $dir):"
  if ! grep -q -- '^- stall 1:' "$dir/summary.md"; then
    echo "demo: no stall was captured; see $dir/summary.md" >&2
    exit 1
  fi
  # The stalls and what was left out (their sub-items), as summary.md has them.
  awk '/^- stall / { on = 1; print; next } on && /^  / { print; next } { on = 0 }' "$dir/summary.md"
  echo "demo: in words:"
  "$ROOT/.venv/bin/python" - "$dir/summary.json" <<'PY'
import json
import sys

with open(sys.argv[1]) as handle:
    host = json.load(handle)["hosts"][0]
for finding in host["findings"][:1]:
    for line in finding.get("explanation", [finding.get("summary", "")]):
        print("  " + line)
for guess in host.get("guesses", []):
    verdict = {True: "ruled out", False: "not ruled out"}.get(guess["ruled_out"], "no data")
    print("  The guess '%s': %s (%s)." % (guess["guess"], verdict, guess["seen"]))
PY
  # The culprit's latency measured afterwards on its fd: the talk's histogram.
  if grep -q -E '^- [a-z0-9_]+ on fd ' "$dir/summary.md"; then
    echo "demo: the culprit call's latency afterwards (the talk's histogram):"
    awk '/^- [a-z0-9_]+ on fd / { on = 1; print; next } on && /^- / { exit } on && NF' "$dir/summary.md"
  fi
}

if [ "$SCENARIO" = sentinel ]; then
  # The node's journal, for this demo: a socket stands in for /dev/log (in a short directory of its
  # own: a unix socket's path is at most 107 bytes, and the scratch directory may be deep).
  sock_dir=$(mktemp -d /tmp/fleettrace-journal.XXXXXX)
  "$ROOT/.venv/bin/python" -u -c '
import socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sys.argv[1])
while True:
    print("  journal: " + sock.recv(65536).decode("utf-8", "replace").rstrip("\0"), flush=True)
' "$sock_dir/journal.sock" >"$work/journal.log" 2>&1 &
  journal_pid=$!
  mkdir -p "$work/textfile"
  sentinel_vars=(-e "sentinel_label=$LABEL" -e "sentinel_syslog_socket=$sock_dir/journal.sock"
                 -e "sentinel_textfile_dir=$work/textfile" -e "diagnose_results_dir=$RESULTS")
  echo "demo: ansible-playbook playbooks/sentinel-corosync.yml: arm the node and return"
  armed=yes
  ansible-playbook -i "$inventory" playbooks/sentinel-corosync.yml "${sentinel_vars[@]}" \
    -e "diagnose_corosync_binary=$work/demo_daemon" -e "diagnose_threshold_ms=$THRESHOLD_MS" \
    -e "sentinel_token_timeout_ms=$((THRESHOLD_MS * 10 / 8))" -e "sentinel_latency_seconds=$LATENCY_S" \
    -e sentinel_max_captures=1 -e sentinel_duration=600 "$@" >"$work/arm.log" 2>&1 \
    || { tail -n 40 "$work/arm.log" >&2; exit 1; }
  grep -E '"msg": "localhost: sentinel' "$work/arm.log" | sed 's/^ *"msg": "/  /; s/"$//'
  echo "demo: ansible-playbook has exited; the node watches by itself:"
  pgrep -a -f "fleettrace-sentinel $LABEL " | sed 's/^/  /'
  echo "delay_ms=$KEEPALIVE_MS hold_in_ms=$((20000 + RANDOM % 20001))" >"$wd_mnt/control"
  echo "demo: the slow watchdog will hold one keepalive for $KEEPALIVE_MS ms by itself, 20 to 40 s from now;" \
       "the sentinel is not told when. Waiting for the node's journal line..."
  for _ in $(seq 120); do
    grep -q "not scheduled" "$work/journal.log" && break
    sleep 1
  done
  cat "$work/journal.log"
  grep -q "not scheduled" "$work/journal.log" || { echo "demo: no stall caught within 2 minutes" >&2; exit 1; }
  echo "demo: its node_exporter metric ($work/textfile):"
  grep -E '^fleettrace_sentinel_(captures_total|last_stall_seconds)' "$work/textfile"/*.prom | sed 's/^[^:]*:/  /'
  # From now on the watchdog holds every 20th keepalive, as the talk's IPMI driver held them for hours.
  echo "delay_ms=$KEEPALIVE_MS every=20" >"$wd_mnt/control"
  echo "demo: the sentinel measures the culprit call on its fd for $LATENCY_S s (the watchdog now holds every 20th" \
       "keepalive); then: sentinel_state=collected"
  sleep "$LATENCY_S"
  ansible-playbook -i "$inventory" playbooks/sentinel-corosync.yml "${sentinel_vars[@]}" \
    -e sentinel_state=collected >"$work/collect.log" 2>&1 || { tail -n 40 "$work/collect.log" >&2; exit 1; }
  run_dir=$(find "$RESULTS" -maxdepth 1 -name "sentinel-$LABEL-*" | sort | tail -n 1)
  awk '/^keepalive / { n++ } /^keepalive .* slow=1/ { s++; if (s == 1) first = sprintf("seq %s for %.1f ms", substr($2, 5), substr($6, 13) / 1e6) }
       END { printf "demo: the slow watchdog (its own log): %d keepalives served, %d held; the first held: %s\n", n, s, first }' \
    "$work/keepalives.log"
  print_finding "$run_dir"
  echo "demo: sentinel_state=absent: collect once more, disarm, remove the spool"
  ansible-playbook -i "$inventory" playbooks/sentinel-corosync.yml "${sentinel_vars[@]}" \
    -e sentinel_state=absent >"$work/absent.log" 2>&1 || { tail -n 40 "$work/absent.log" >&2; exit 1; }
  armed=""
  grep -E '"msg": "localhost: sentinel' "$work/absent.log" | tail -n 1 | sed 's/^ *"msg": "/  /; s/"$//'
  exit 0
fi

echo "demo: ansible-playbook playbooks/diagnose-corosync.yml (presets pointed at the demo daemon)"
# The daemon warns at 0.8 x a token timeout, as corosync does: give that
# timeout so the "token timeout too low" guess is settled too.  The culprit's
# latency is measured for LATENCY_S afterwards (the talk's histogram).
ansible-playbook -i "$inventory" playbooks/diagnose-corosync.yml \
  -e "diagnose_corosync_binary=$work/demo_daemon" \
  -e "diagnose_threshold_ms=$THRESHOLD_MS" \
  -e "threshold_capture_token_timeout_ms=$((THRESHOLD_MS * 10 / 8))" \
  -e "threshold_capture_latency_seconds=$LATENCY_S" \
  -e "diagnose_timeout=60" \
  -e "diagnose_results_dir=$RESULTS" \
  -e "diagnose_run_id=$RUN_ID" \
  "$@" | tee "$work/playbook.log"

echo
echo "demo: daemon's own log:"
sed 's/^/  /' "$work/daemon.log"
if [ "$SCENARIO" = watchdog ]; then
  echo "demo: the slow watchdog's own log (the truth to compare with):"
  awk '/^keepalive / { n++; d = substr($6, 13) / 1e6; if (d > max) max = d
                       if ($7 == "slow=1") { s++; held = held sprintf("%s%.1f", s > 1 ? ", " : "", d) } }
       END { printf "  %d keepalives served, %d held (ms: %s), longest %.1f ms\n", n, s, held, max }' "$work/keepalives.log"
  [ -d "$run_dir" ] && cp "$work/keepalives.log" "$run_dir/slow_watchdog.log" && echo "  (every keepalive: $run_dir/slow_watchdog.log)"
fi
print_finding "$run_dir"
