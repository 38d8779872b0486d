# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The probe_for_nodes module's action: with ``hosts`` and ``registered``, every node's probe_info answer
is read here from the registered results (plugin_utils/registered.py) and handed to the module as its
``nodes``; then, as for every module, oversized arguments are refused and the module runs as usual.

A host in ``hosts`` without the registered result (it never ran that task) gets an empty answer: its
binary is unknown there, so the module says its probe is resolved nowhere (``none``).
"""


from ansible.errors import AnsibleActionFail

from ansible_collections.fleettrace.tracefs.plugins.plugin_utils.registered import registered_names, registered_results
from ansible_collections.fleettrace.tracefs.plugins.plugin_utils.sized_action import SizedAction


def nodes_from_registered(args, task_vars):
    """The module's arguments with ``hosts`` and ``registered`` replaced by ``nodes`` (host -> answer)."""
    hosts, names = args.get("hosts"), registered_names(args.get("registered"))
    if args.get("nodes") is not None:
        raise AnsibleActionFail("give nodes, or hosts with registered; not both")
    if not isinstance(hosts, list) or not all(isinstance(host, str) for host in hosts) or not names:
        raise AnsibleActionFail("probe_for_nodes with hosts needs hosts (a list of host names, e.g. "
                                "ansible_play_hosts) and registered (the variable the probe_info task registered)")
    found = registered_results(task_vars, hosts, names)
    changed = {key: value for key, value in args.items() if key not in ("hosts", "registered")}
    changed["nodes"] = {host: found[host] if found[host] is not None else {} for host in hosts}
    return changed


class ActionModule(SizedAction):
    """See plugins/plugin_utils/sized_action.py; ``hosts`` and ``registered`` are read here, not by the module."""

    def run(self, tmp=None, task_vars=None):
        if self._task.args.get("hosts") is not None or self._task.args.get("registered") is not None:
            self._task.args = nodes_from_registered(self._task.args, task_vars or {})
        return super().run(tmp, task_vars)
