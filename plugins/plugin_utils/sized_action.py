# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller side of the argument caps: an oversized argument is never shipped to a node.

Every module of the collection has an action plugin of its name that is this
class: Ansible's ``normal`` action (check mode, async, delegation, become all
unchanged) with one step first, the caps of ``input_limits``.  A 100 MB
filter took 146 s of the play's 159 s in building, compressing and shipping
the module with it, before the module could refuse it; here it is refused as
soon as the task's arguments are templated.  The module runner checks the
same caps again on the node (a module run by other means).

The module's payload is built as Ansible builds it, but kept from one run to
the next (``payload_cache``): Ansible rebuilds it in every run otherwise.
"""


from ansible.plugins.action.normal import ActionModule as NormalAction

from ansible_collections.fleettrace.tracefs.plugins.module_utils import input_limits
from ansible_collections.fleettrace.tracefs.plugins.plugin_utils import payload_cache


def refusal(task):
    """The failed result for a task with an argument over its cap, else None."""
    module = task.action.split(".")[-1]
    problem = input_limits.oversized(task.args, input_limits.MODULE_CAPS.get(module))
    if problem is None:
        return None
    return {"failed": True, "changed": False, "msg": problem}


class SizedAction(NormalAction):
    """``normal``, after ``input_limits.oversized`` on the templated arguments, with payloads kept."""

    def run(self, tmp=None, task_vars=None):
        refused = refusal(self._task)
        if refused is not None:
            return refused
        return super().run(tmp, task_vars)

    def _configure_module(self, module_name, module_args, task_vars):
        with payload_cache.kept():
            return super()._configure_module(module_name, module_args, task_vars)
