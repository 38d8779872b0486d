#!/usr/bin/env bash
# Prepare this checkout on a fresh Debian 12 machine (as root): system packages,
# a Python venv with the pinned requirements, tracefs mounted, and the
# collection made visible to Ansible.  Safe to run again: each step is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DEBIAN_PACKAGES=(
  gcc make libc6-dev          # test programs and the demo daemon
  linux-perf                  # reference for the probe resolver
  dpkg-dev                    # apt-get source, dpkg-buildflags: scripts/build-libs.sh (resolver differential suite)
  g++ cmake tcl               # scripts/build-libs.sh: the C++ libraries (CMake), the sqlite3 amalgamation (tclsh)
  trace-cmd rt-tests          # benchmarks and load generators
  openssh-server              # multi-host tests over loopback SSH
  util-linux e2fsprogs        # fsfreeze, losetup, mkfs.ext4 for D-state tests
  fuse3 libfuse3-dev pkgconf  # the slow watchdog (FUSE) of the demo and the S-state tests
  rsync python3-venv
  shellcheck                  # ansible-test sanity checks the shell scripts with it
  chromium                    # headless screenshot test of the HTML report
  debuginfod                  # a real debuginfod server on loopback for the debug-info-by-build-id tests
)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# A venv of our own so the pinned versions never fight the system's.
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! cmp -s requirements-dev.txt .venv/.installed-requirements 2>/dev/null \
   || ! cmp -s requirements.txt .venv/.installed-requirements-base 2>/dev/null; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-dev.txt
  cp requirements-dev.txt .venv/.installed-requirements
  cp requirements.txt .venv/.installed-requirements-base
fi

# Tools the tests run against the collection (Galaxy's importer, the docs
# site's antsibull-docs and Sphinx, promtool), cached outside the checkout.
bash scripts/tools.sh

# tracefs: most distributions mount it; minimal images and containers may not.
if [ ! -e /sys/kernel/tracing/README ]; then
  mount -t tracefs nodev /sys/kernel/tracing
fi

# Ansible finds the collection through ansible.cfg's collections_path; the
# link lives in this checkout so that two clones never see each other's code.
COLLECTIONS=$ROOT/.cache/collections
mkdir -p "$COLLECTIONS/ansible_collections/fleettrace"
ln -sfn "$ROOT" "$COLLECTIONS/ansible_collections/fleettrace/tracefs"
echo "setup: ready (venv .venv, collection linked from $COLLECTIONS)"
