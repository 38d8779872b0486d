#!/usr/bin/env bash
# Freeze a file system briefly, again and again: whoever writes there sleeps
# in D state (sb_start_write -> percpu_rwsem_wait) until it thaws.
#
#   fault_injector.sh MOUNTPOINT [FREEZE_MS [PAUSE_MS [COUNT]]]
#
# COUNT 0 (default) repeats until killed.  On any exit the file system is
# thawed, so a killed injector never leaves writers blocked.
set -u
mnt=${1:?mount point}
freeze_ms=${2:-1200}
pause_ms=${3:-2000}
count=${4:-0}
thaw() { fsfreeze -u "$mnt" 2>/dev/null || true; }
trap 'thaw; exit 0' TERM INT HUP
trap thaw EXIT
sec() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }
i=0
while [ "$count" -eq 0 ] || [ "$i" -lt "$count" ]; do
  i=$((i + 1))
  sleep "$(sec "$pause_ms")" &
  wait $!
  fsfreeze -f "$mnt" || exit 1
  echo "fault_injector: froze $mnt for ${freeze_ms} ms (#$i)"
  sleep "$(sec "$freeze_ms")" &
  wait $!
  thaw
done
