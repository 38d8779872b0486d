# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of ``capture``: while an async capture runs, the controller renews its run's lease.

A run lives on the node while its controller renews it (docs/tracefs-core.md,
"Ownership"). A long capture is an ``async`` task that the controller polls:
between polls this action touches the claim file of the captured instance
(``touch -c``: an mtime, nothing created), the node's sign that the play still
wants the run. When the controller dies (Ctrl-C, ``kill -9``) the renewals
stop, and the node removes the run's objects a lease later, whatever the
ssh session (ControlPersist keeps it a minute) or the async wrapper (it keeps
running until its own timeout) do. The module and its result are unchanged:
once the job finished, Ansible's own poll collects the result.  Before all
that, an oversized argument is refused here, never shipped
(plugin_utils/sized_action.py).
"""

from __future__ import annotations

import os
import re
import shlex
import time

from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.store import RUNS_DIR
from ansible_collections.fleettrace.tracefs.plugins.plugin_utils.sized_action import refusal

# A name that can be claimed (runs/manifest.py): nothing a shell would expand.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class ActionModule(ActionBase):

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        refused = refusal(self._task)
        if refused is not None:
            return refused
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        wrap_async = self._task.async_val and not self._connection.has_native_async
        result = merge_hash(result, self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
            return result
        instance = self._task.args.get("instance")
        if (self._task.poll > 0 and result.get("ansible_job_id") and not result.get("failed")
                and isinstance(instance, str) and _NAME.match(instance) and ".." not in instance):
            self._renew_until_done(result["ansible_job_id"], instance, task_vars)
        # Ansible's own poll (one more ``poll`` later) collects the finished job's result.
        return result

    def _renew_until_done(self, jid, instance, task_vars):
        """Poll the job as Ansible would, renewing the run's lease before each look, while the
        controller that started this worker lives."""
        controller = os.getppid()
        claim = shlex.quote(os.path.join(RUNS_DIR, "claims", instance))
        async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
        ends = time.monotonic() + self._task.async_val
        while time.monotonic() < ends:
            if os.getppid() != controller:
                return      # the controller died (kill -9 of ansible-playbook alone): stop renewing
            self._low_level_execute_command("touch -c -- %s" % claim, sudoable=True)
            time.sleep(self._task.poll)
            try:
                status = self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                              module_args={"jid": jid, "mode": "status", "_async_dir": async_dir})
            finally:
                self._remove_tmp_path(self._connection._shell.tmpdir)
            if status.get("finished") or (status.get("failed") and status.get("_ansible_parsed")):
                return
