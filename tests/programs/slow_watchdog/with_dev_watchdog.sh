#!/usr/bin/env bash
# Run a command with /dev/watchdog being a given file (the slow watchdog's
# FUSE file), in a private mount namespace: the host's /dev is never touched.
#
#   with_dev_watchdog.sh WATCHDOG_FILE STAGE_DIR COMMAND [ARG...]
#
# It re-executes itself under `unshare -m --propagation private`, so every
# mount below exists only in the new namespace and vanishes with its last
# process.  /dev there is an overlay: the host's devtmpfs as the read-only
# lower layer (the same device nodes), a tmpfs upper layer that takes the new
# watchdog node, and the host's /dev submounts (shm, pts, mqueue, ...) bound
# back in, so that IPC through /dev/shm (libqb, corosync-cmapctl) still meets
# the host's.  STAGE_DIR is an empty directory (the caller removes it); it
# only gets a tmpfs mounted on it inside the namespace.
#
# The command is exec'ed: its pid is the pid of this script (and of unshare).
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 WATCHDOG_FILE STAGE_DIR COMMAND [ARG...]" >&2; exit 2; }
watchdog=$1
stage=$2
shift 2
[ -e "$watchdog" ] || { echo "with_dev_watchdog: no watchdog file $watchdog" >&2; exit 1; }
[ -d "$stage" ] || { echo "with_dev_watchdog: no stage directory $stage" >&2; exit 1; }

if [ "${FLEETTRACE_IN_PRIVATE_NS:-}" != 1 ]; then
  export FLEETTRACE_IN_PRIVATE_NS=1
  exec unshare --mount --propagation private -- bash "$0" "$watchdog" "$stage" "$@"
fi
# Belt and braces: never mount over the host's /dev.
if [ "$(readlink /proc/self/ns/mnt)" = "$(readlink /proc/1/ns/mnt)" ]; then
  echo "with_dev_watchdog: not in a private mount namespace; refusing to touch /dev" >&2
  exit 1
fi
mount --make-rprivate /

mount -t tmpfs -o mode=0700 fleettrace-stage "$stage"
mkdir "$stage/hostdev" "$stage/upper" "$stage/work"
# The host's /dev tree stays reachable under the stage for the submounts.
mount --rbind /dev "$stage/hostdev"
mount -t overlay fleettrace-dev -o "lowerdir=$stage/hostdev,upperdir=$stage/upper,workdir=$stage/work" /dev
# The host's /dev submounts (shm, pts, ...), each top-level one bound back
# once (nested ones come along with --rbind).  Not `mountpoint`: it reads
# mountinfo, which still lists the host's mounts now hidden under the overlay.
awk '$5 ~ "^/dev/[^/]+$" {print substr($5, 6)}' /proc/self/mountinfo | sort -u | while read -r sub; do
  [ -d "$stage/hostdev/$sub" ] && mount --rbind "$stage/hostdev/$sub" "/dev/$sub"
done
: >/dev/watchdog
mount --bind "$watchdog" /dev/watchdog
exec "$@"
