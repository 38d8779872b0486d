# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The corosync_token module's action: oversized arguments refused on the controller, then the module as usual."""


from ansible_collections.fleettrace.tracefs.plugins.plugin_utils.sized_action import SizedAction


class ActionModule(SizedAction):
    """See plugins/plugin_utils/sized_action.py."""
