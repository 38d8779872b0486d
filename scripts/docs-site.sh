#!/usr/bin/env bash
# The collection's docs site: module, role and plugin pages from antsibull-docs
# (what ansible-doc shows, as HTML) plus docs/*.md as guides, rendered by Sphinx
# with Ansible's theme, then every link inside the site checked.
#
#   scripts/docs-site.sh [OUT]     build into OUT (default .cache/docs-site); the site is OUT/html/index.html
#
# Tools: the docs-site venv of scripts/tools.sh.  Fails on any Sphinx warning,
# any antsibull-docs error, and any link to a page or anchor the site lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$(realpath -m "${1:-$ROOT/.cache/docs-site}")
VENV=$(bash scripts/tools.sh path docs-site)
if [ ! -f "$VENV/.complete" ]; then
  echo "docs-site: the docs-site tools are missing; run scripts/tools.sh (scripts/setup.sh does)" >&2
  exit 1
fi
export PATH=$VENV/bin:$PATH
# The checkout as the collection (scripts/setup.sh links it there).
export ANSIBLE_COLLECTIONS_PATH=$ROOT/.cache/collections

rm -rf "$OUT"
# antsibull-docs wants its output directory writable by its owner only.
install -d -m 0755 "$OUT" "$OUT/rst" "$OUT/rst/guides"
cp docs/site/index.rst docs/site/ansible-references.rst "$OUT/rst/"
cp docs/*.md "$OUT/rst/guides/"

antsibull-docs --config-file docs/site/antsibull-docs.cfg collection --use-current --fail-on-error \
  --dest-dir "$OUT/rst" fleettrace.tracefs
sphinx-build -q -b html -c docs/site -W --keep-going "$OUT/rst" "$OUT/html"
python3 scripts/check-site-links.py "$OUT/html"
echo "docs-site: $OUT/html/index.html"
