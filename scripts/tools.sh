#!/usr/bin/env bash
# Tools the test suite runs against the collection, each kept apart from the
# project's venv (their pins would fight ours) and cached across checkouts in
# $FLEETTRACE_TOOLS (default ~/.cache/fleettrace/tools):
#
#   galaxy-importer-VERSION/   venv with Galaxy's importer (tests/integration/test_galaxy_import.py)
#   docs-site-VERSION/         venv with antsibull-docs and Sphinx (scripts/docs-site.sh)
#   prometheus-VERSION/promtool  promtool from Debian's prometheus package, extracted
#                              without installing the service (tests: .prom files)
#
# and, world-readable in $FLEETTRACE_SHARED_TOOLS (default /var/cache/fleettrace):
#
#   unprivileged-controller-KEY/  venv of Debian's python3 with ansible-core and requirements.txt at
#                              requirements-dev.txt's pins, for a controller run as an unprivileged
#                              user (tests/integration/test_controller_without_tracefs.py)
#
#   scripts/tools.sh           install what is missing (scripts/setup.sh calls it)
#   scripts/tools.sh path NAME print the path of one tool (galaxy-importer, docs-site, promtool,
#                              unprivileged-controller)
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=${FLEETTRACE_TOOLS:-${HOME}/.cache/fleettrace/tools}
PYTHON=${PYTHON:-python3}
GALAXY_IMPORTER_VERSION=0.4.44
# The docs site: antsibull-docs writes reStructuredText, Sphinx with Ansible's theme renders it.
# antsibull-docs reads the docs through ansible-doc: the ansible-core the tests pin.
DOCS_SITE_REQUIREMENTS=(antsibull-docs==2.28.0 "sphinx>=7,<9" "sphinx-ansible-theme>=0.10,<1" "myst-parser>=2,<5"
                        "$(grep -E '^ansible-core==' requirements-dev.txt | sed 's/ *#.*//')")
DOCS_SITE_KEY=$(printf '%s\n' "${DOCS_SITE_REQUIREMENTS[@]}" | md5sum | cut -c1-8)
PROMETHEUS_DEB=prometheus
SHARED=${FLEETTRACE_SHARED_TOOLS:-/var/cache/fleettrace}

galaxy_importer_dir() { echo "$TOOLS/galaxy-importer-$GALAXY_IMPORTER_VERSION"; }
docs_site_dir() { echo "$TOOLS/docs-site-$DOCS_SITE_KEY"; }
# The controller venv's pins: requirements-dev.txt's exact versions (only these change the venv).
controller_pins() { grep -E '^[A-Za-z0-9_.-]+==' requirements-dev.txt | sed 's/ *#.*//'; }
unprivileged_controller_dir() {
  echo "$SHARED/unprivileged-controller-$( (cat requirements.txt; controller_pins) | md5sum | cut -c1-8)"
}
promtool_path() {
  local version
  version=$(apt-cache policy "$PROMETHEUS_DEB" 2>/dev/null | sed -n 's/^ *Candidate: \([^ ]*\)$/\1/p' | tr -c 'A-Za-z0-9.+~\n-' _)
  echo "$TOOLS/prometheus-${version:-unknown}/promtool"
}

# A venv counts as ready only once it is complete (.complete written last): an
# interrupted install is started again, never taken for a working one.
venv() {
  local dir=$1; shift
  [ -f "$dir/.complete" ] && return 0
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check "$@"
  touch "$dir/.complete"
}

install_promtool() {
  local target work
  target=$(promtool_path)
  [ -x "$target" ] && return 0
  work=$(mktemp -d)
  # apt-get download runs as _apt where it can: give it a directory it may write.
  chmod 0755 "$work"
  (cd "$work" && apt-get download -q "$PROMETHEUS_DEB" >/dev/null 2>&1) || {
    apt-get update -qq && (cd "$work" && apt-get download -q "$PROMETHEUS_DEB" >/dev/null 2>&1)
  }
  dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -x -C "$work" ./usr/bin/promtool
  mkdir -p "$(dirname "$target")"
  mv "$work/usr/bin/promtool" "$target.partial" && mv "$target.partial" "$target"
  rm -rf "$work"
}

install_unprivileged_controller() {
  local dir pins
  dir=$(unprivileged_controller_dir)
  install -d -m 0755 "$SHARED"
  pins=$(mktemp)
  controller_pins > "$pins"
  # Debian's interpreter (under /usr, readable by everyone), not ours under /root.
  PYTHON=/usr/bin/python3 venv "$dir" ansible-core -r requirements.txt -c "$pins"
  rm -f "$pins"
  chmod -R a+rX "$dir"
}

case "${1:-install}" in
  install)
    mkdir -p "$TOOLS"
    if [ ! -f "$(galaxy_importer_dir)/.complete" ]; then
      echo "tools: galaxy-importer $GALAXY_IMPORTER_VERSION"
      venv "$(galaxy_importer_dir)" "galaxy-importer==$GALAXY_IMPORTER_VERSION"
    fi
    if [ ! -f "$(docs_site_dir)/.complete" ]; then
      echo "tools: antsibull-docs and Sphinx for the docs site"
      venv "$(docs_site_dir)" "${DOCS_SITE_REQUIREMENTS[@]}"
    fi
    if [ ! -f "$(unprivileged_controller_dir)/.complete" ]; then
      echo "tools: a controller venv an unprivileged user can run"
      install_unprivileged_controller
    fi
    if [ ! -x "$(promtool_path)" ]; then
      echo "tools: promtool from Debian's $PROMETHEUS_DEB package"
      install_promtool
    fi
    ;;
  path)
    case "${2:?tool name}" in
      galaxy-importer) galaxy_importer_dir ;;
      docs-site) docs_site_dir ;;
      promtool) promtool_path ;;
      unprivileged-controller) unprivileged_controller_dir ;;
      *) echo "tools.sh: unknown tool $2 (galaxy-importer, docs-site, promtool, unprivileged-controller)" >&2; exit 2 ;;
    esac
    ;;
  *) echo "usage: $0 [install | path galaxy-importer|docs-site|promtool]" >&2; exit 2 ;;
esac
