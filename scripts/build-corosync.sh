#!/usr/bin/env bash
# Build corosync from Debian's source package with debug info (-g -O2), as a
# real target for the diagnose-corosync tests and demos, with the watchdog
# service (exec/wd.c) built in.  The result is cached outside the clone, so a
# second run only prints the path:
#
#   /var/cache/fleettrace/corosync-<version>-<key>/sbin/corosync        (not stripped)
#   /var/cache/fleettrace/corosync-<version>-<key>/sbin/corosync-cmapctl
#   /var/cache/fleettrace/corosync-<version>-<key>/build/                (the built tree: sources for line listings)
#
# <key> is a hash of the build recipe (CFLAGS and configure flags): changing
# either builds afresh instead of reusing a build made with other features.
#
# The last line printed is the install prefix.  Needs root (apt-get).
# FLEETTRACE_COROSYNC_CACHE overrides /var/cache/fleettrace.
set -euo pipefail

CACHE=${FLEETTRACE_COROSYNC_CACHE:-/var/cache/fleettrace}
log() { echo "build-corosync: $*" >&2; }
# shellcheck source=scripts/deb-src.sh
. "$(dirname "$0")/deb-src.sh"

# Minimal feature set: what a single-node ring on loopback needs, plus the
# watchdog service (resources.watchdog_device) for the slow-watchdog scenario.
BUILD_CFLAGS="-g -O2"
CONFIGURE_FLAGS=(--disable-snmp --disable-dbus --disable-systemd --disable-monitoring
  --enable-watchdog --disable-augeas --disable-nozzle)
BUILD_KEY=$(printf '%s\n' "$BUILD_CFLAGS" "${CONFIGURE_FLAGS[*]}" | sha256sum | cut -c1-12)

mkdir -p "$CACHE"
# One build at a time (parallel test runs share the cache).
exec 9>"$CACHE/.corosync-build.lock"
flock 9

done_prefix() {
  local found
  found=$(find "$CACHE" -maxdepth 2 -path "$CACHE/corosync-*-$BUILD_KEY/.complete" 2>/dev/null | sort | head -n1 || true)
  [ -n "$found" ] && dirname "$found"
}
if prefix=$(done_prefix) && [ -n "$prefix" ]; then
  log "cached at $prefix"
  echo "$prefix"
  exit 0
fi

ensure_deb_src corosync

log "installing build dependencies"
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 build-dep -y -qq corosync >/dev/null

work=$(mktemp -d "$CACHE/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
log "fetching source"
# Debian's mirror may lack the upstream signature (.orig.tar.gz.asc) that the
# .dsc lists, which makes 'apt-get source' refuse to unpack: then unpack the
# tarballs it did download and apply Debian's patch series by hand.
if ! apt-get source -qq corosync >fetch.log 2>&1; then
  orig=$(find . -maxdepth 1 -name 'corosync_*.orig.tar.*' ! -name '*.asc' -printf '%f\n' | sort | head -n1)
  [ -n "$orig" ] || { cat fetch.log >&2; log "could not download corosync's source"; exit 1; }
  log "apt-get source did not unpack (see below); unpacking $orig by hand"
  grep -E '^(E|W):' fetch.log >&2 || true
  tar xf "$orig"
  srcdir=$(find . -maxdepth 1 -type d -name 'corosync-*' | head -n1)
  if ls corosync_*.debian.tar.* >/dev/null 2>&1; then
    tar xf corosync_*.debian.tar.* -C "$srcdir"
    if [ -f "$srcdir/debian/patches/series" ]; then
      grep -v '^#' "$srcdir/debian/patches/series" | while read -r patch _; do
        [ -n "$patch" ] && patch -d "$srcdir" -p1 -s < "$srcdir/debian/patches/$patch"
      done
    fi
  fi
fi
srcdir=$(find . -maxdepth 1 -type d -name 'corosync-*' | head -n1)
version=${srcdir#./corosync-}
prefix="$CACHE/corosync-$version-$BUILD_KEY"
# Build inside the prefix and keep the tree: the DWARF line table names these
# source paths, so probe_info can show the source lines afterwards.
rm -rf "$prefix"
mkdir -p "$prefix"
mv "$srcdir" "$prefix/build"
cd "$prefix/build"
# Debian's patches touch Makefile.am files: regenerate as debian/rules does.
if [ -d debian/patches ]; then
  command -v autoreconf >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq dh-autoreconf >/dev/null
  log "regenerating the build system (autoreconf)"
  autoreconf -fi >autoreconf.log 2>&1 || { tail -n 30 autoreconf.log >&2; exit 1; }
fi
log "configuring corosync $version ($BUILD_CFLAGS ${CONFIGURE_FLAGS[*]})"
CFLAGS="$BUILD_CFLAGS" ./configure --prefix="$prefix" --sysconfdir="$prefix/etc" \
  --localstatedir="$prefix/var" "${CONFIGURE_FLAGS[@]}" >configure.log 2>&1 \
  || { tail -n 30 configure.log >&2; exit 1; }
log "building"
make -j"$(nproc)" >make.log 2>&1 || { tail -n 40 make.log >&2; exit 1; }
make install >install.log 2>&1 || { tail -n 40 install.log >&2; exit 1; }
# A build that lacks the watchdog service would make the watchdog scenario
# silently tickle nothing: refuse to mark it complete.
if ! "$prefix/sbin/corosync" -v 2>&1 | grep -qw watchdog; then
  "$prefix/sbin/corosync" -v >&2 || true
  log "corosync was built without the watchdog feature"; exit 1
fi
mkdir -p "$prefix/var/run" "$prefix/var/lib/corosync" "$prefix/var/log/cluster"
touch "$prefix/.complete"
log "installed at $prefix"
echo "$prefix"
