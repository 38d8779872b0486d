#!/usr/bin/env bash
# The role, playbook and report tests under the oldest ansible-core the collection supports
# (meta/runtime.yml requires_ansible), in a venv of its own with the Python of the oldest
# distribution it covers (Debian 12: Python 3.11). Not part of `make test`: a second venv and
# a few minutes.  Usage: scripts/oldest-ansible.sh [pytest args]  (default: the files below), or --sanity.
set -euo pipefail
cd "$(dirname "$0")/.."
# The oldest ansible-core meta/runtime.yml declares (requires_ansible >=2.15.0), newest patch release.
# FLEETTRACE_OLDEST_CORE=2.14.18 tests what Debian 12 and RHEL 9 package (below the declared bound:
# ansible-core warns that the collection does not declare it, and everything works).
CORE=${FLEETTRACE_OLDEST_CORE:-2.15.13}
VENV=.cache/venv-ansible-${CORE%.*}
version() { "$VENV/bin/ansible" --version 2>/dev/null | sed -n 1p; }   # sed reads all: no broken pipe
if [[ ! -x $VENV/bin/ansible-playbook ]] || [[ "$(version)" != *"core $CORE"* ]]; then
  python3.11 -m venv "$VENV"
  "$VENV/bin/pip" install -q "ansible-core==$CORE" -r requirements.txt pytest pillow jsonschema pyyaml
fi
version
export FLEETTRACE_VENV_BIN=$PWD/$VENV/bin
# --sanity: ansible-test sanity of that ansible-core (its own rules for docs and code), ~10 minutes.
if [[ ${1:-} == --sanity ]]; then
  shift
  exec bash scripts/sanity.sh "$@"
fi
if [[ $# -eq 0 ]]; then
  set -- tests/unit/test_report.py tests/unit/test_report_down_hosts.py tests/unit/test_role_specs.py \
    tests/integration/test_audit_playbooks.py tests/integration/test_not_root.py \
    tests/integration/test_check_mode_mounts_nothing.py tests/integration/test_syscall_latency_input.py \
    tests/integration/test_module_examples.py tests/integration/test_diagnose_playbook.py \
    tests/integration/test_sentinel_limit.py
fi
exec "$VENV/bin/pytest" -q "$@"
