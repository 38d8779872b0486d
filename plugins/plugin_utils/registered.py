# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every host's registered result of an earlier task, read by a controller step from ``hostvars``.

An action plugin given ``hosts`` (the play's, ``ansible_play_hosts``) and ``registered`` (the
variable name(s) a per-host task registered) reads the results itself, so the role passes two
plain values instead of a Jinja expression that zips the hosts with ``hostvars``.  Used by
save_results and probe_for_nodes.
"""


def registered_names(names):
    """``registered`` as a list of variable names (one name may be given as a string); [] when not one."""
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
        return []
    return names


def registered_results(task_vars, hosts, names):
    """Per host, the first of the registered variables ``names`` it has that is not a skipped task.

    Failed and unreachable hosts keep their registered result (their error), though they left the play.
    A host without one maps to None.
    """
    hostvars = task_vars.get("hostvars") or {}
    found = {}
    for host in hosts:
        found[host] = None
        variables = hostvars[host] if host in hostvars else {}
        for name in names:
            value = variables.get(name) if name in variables else None
            if isinstance(value, dict) and not value.get("skipped"):
                found[host] = dict(value)
                break
    return found
