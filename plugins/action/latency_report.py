# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The latency_report module's action: oversized arguments refused on the controller, then the module as usual,
then its node_exporter copies kept to the hosts of the inventory (the module does not know the inventory)."""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.report import prometheus as report_prometheus
from ansible_collections.fleettrace.tracefs.plugins.plugin_utils.sized_action import SizedAction


class ActionModule(SizedAction):
    """See plugins/plugin_utils/sized_action.py."""

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        copies = result.get("node_exporter_copies")
        if copies:
            inventory = ((task_vars or {}).get("groups") or {}).get("all") or []
            result["node_exporter_copies"] = report_prometheus.in_inventory(copies, set(inventory))
        return result
