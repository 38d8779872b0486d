#!/usr/bin/env bash
# ansible-test sanity, offline-friendly: ansible-test wants the collection at
# .../ansible_collections/fleettrace/tracefs, so the checkout's files are copied there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# One work tree per checkout, outside it (ansible-test must not see our .git).
WORK=${HOME}/.cache/fleettrace/sanity-$(echo "$ROOT" | md5sum | cut -c1-8)/ansible_collections/fleettrace/tracefs

# ansible-test bootstraps pip in its venvs with a script it downloads from a
# host this machine cannot reach; the stand-in does the same from PyPI.
# FLEETTRACE_VENV_BIN: another venv's ansible-test (scripts/oldest-ansible.sh --sanity).
BIN=${FLEETTRACE_VENV_BIN:-$ROOT/.venv/bin}
PIP_VERSION=$(sed -n "s/^ *pip='\([0-9.]*\)',.*/\1/p" \
  "$BIN"/../lib/python3*/site-packages/ansible_test/_internal/python_requirements.py | head -1)
mkdir -p "${HOME}/.ansible/test/cache"
cp scripts/ansible-test/get_pip_standin.py "${HOME}/.ansible/test/cache/get_pip_${PIP_VERSION//./_}.py"

rm -rf "$WORK"
mkdir -p "$WORK"
git ls-files -co --exclude-standard -z | rsync -a --from0 --files-from=- "$ROOT/" "$WORK/"

cd "$WORK"
"$BIN/ansible-test" sanity --venv --python 3.11 --color no "$@"
