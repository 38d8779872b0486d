# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the sched_audit role runs its window (see the audit_window module docs).

An action plugin with no remote execution: it runs once in the controller's worker before the window and
adds no module run on any host (the audit's fixed cost, issue 24). The decisions are in
module_utils/sched/window_plan.py, where unit tests reach them.
"""


from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import window_plan


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("duration", "poll_seconds", "async_mode", "report_dir"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args  # options outside _VALID_ARGS are refused by ActionBase.run
        if args.get("duration") is None or not args.get("report_dir"):
            raise AnsibleActionFail("audit_window needs duration (seconds) and report_dir")
        # All hosts of the play, not those left: the choice must not change when a host fails at the start.
        hosts_all = list(task_vars.get("ansible_play_hosts_all") or [])
        hosts_left = list(task_vars.get("ansible_play_hosts") or hosts_all)
        try:
            planned = window_plan.plan(args["duration"], args.get("poll_seconds", 2), args.get("async_mode", "auto"),
                                       hosts_all, hosts_left, task_vars.get("ansible_forks"),
                                       bool(self._task.check_mode), args["report_dir"])
        except FleettraceError as exc:
            raise AnsibleActionFail(exc.message)
        result.update(planned, changed=False)
        return result
