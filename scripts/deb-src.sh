# shellcheck shell=bash
# Sourced by scripts/build-libs.sh and scripts/build-corosync.sh: make 'apt-get source'
# work on a fresh machine.  The caller defines log().

DEB_SRC_FILE=/etc/apt/sources.list.d/fleettrace-deb-src.sources

# ensure_deb_src PACKAGE: add a deb-src entry for the machine's own mirror when it has
# none, refresh the package lists while PACKAGE's source is unknown, install dpkg-dev
# (dpkg-source, dpkg-buildflags) when missing.
ensure_deb_src() {
  local package=$1 uris
  if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ /etc/apt/sources.list 2>/dev/null \
     && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    uris=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    uris=${uris:-http://deb.debian.org/debian}
    log "adding deb-src entry $DEB_SRC_FILE ($uris bookworm main)"
    cat > "$DEB_SRC_FILE" <<SRC
Types: deb-src
URIs: $uris
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt-get update -qq
  fi
  if [ -z "$(apt-cache showsrc "$package" 2>/dev/null)" ]; then
    apt-get update -qq
  fi
  command -v dpkg-source >/dev/null \
    || DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq dpkg-dev >/dev/null
}
