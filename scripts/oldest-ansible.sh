#!/usr/bin/env bash
# The role, playbook and report tests under the oldest ansible-core the collection supports
# (meta/runtime.yml requires_ansible), in a venv of its own with the Python of the oldest
# distribution it covers (Debian 12: Python 3.11). Not part of `make test`: a second venv and
# a few minutes.  Usage: scripts/oldest-ansible.sh [pytest args]  (default: the files below).
set -euo pipefail
cd "$(dirname "$0")/.."
# The newest patch release of 2.14, what Debian 12 and RHEL 9 package: one below the declared
# requires_ansible (>=2.15.0: Galaxy's importer refuses a lower bound upstream no longer supports),
# so ansible-core warns that the collection does not declare it, and everything works.
CORE=${FLEETTRACE_OLDEST_CORE:-2.14.18}
VENV=.cache/venv-ansible-${CORE%.*}
version() { "$VENV/bin/ansible" --version 2>/dev/null | sed -n 1p; }   # sed reads all: no broken pipe
if [[ ! -x $VENV/bin/ansible-playbook ]] || [[ "$(version)" != *"core $CORE"* ]]; then
  python3.11 -m venv "$VENV"
  "$VENV/bin/pip" install -q "ansible-core==$CORE" -r requirements.txt pytest pillow jsonschema pyyaml
fi
version
export FLEETTRACE_VENV_BIN=$PWD/$VENV/bin
if [[ $# -eq 0 ]]; then
  set -- tests/unit/test_report.py tests/unit/test_report_down_hosts.py tests/unit/test_role_specs.py \
    tests/integration/test_audit_playbooks.py tests/integration/test_not_root.py \
    tests/integration/test_check_mode_mounts_nothing.py tests/integration/test_syscall_latency_input.py \
    tests/integration/test_module_examples.py
fi
exec "$VENV/bin/pytest" -q "$@"
