"""plugin_utils/registered.py and the probe_for_nodes action: every host's registered result read on the
controller from hostvars, so a role passes hosts and a variable name instead of a Jinja zip."""

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.fleettrace.tracefs.plugins.action.probe_for_nodes import nodes_from_registered
from ansible_collections.fleettrace.tracefs.plugins.plugin_utils.registered import registered_names, registered_results

ANSWER = {"changed": False, "build_id": "ab12", "binary": "/usr/sbin/corosync", "lines": [{"line": 3}]}
HOSTVARS = {
    "node1": {"info": ANSWER},
    "node2": {"info": {"failed": True, "msg": "no debug info", "build_id": "cd34"}},
    "node3": {"info": {"skipped": True}, "other": {"build_id": "ef56"}},
    "node4": {},
}


def test_each_host_gets_its_first_registered_result_not_skipped():
    found = registered_results({"hostvars": HOSTVARS}, ["node1", "node2", "node3", "node4", "gone"], ["info", "other"])
    assert found["node1"] == ANSWER and found["node2"]["msg"] == "no debug info"
    assert found["node3"] == {"build_id": "ef56"}
    assert found["node4"] is None and found["gone"] is None


def test_registered_names_take_one_name_or_a_list():
    assert registered_names("info") == ["info"] and registered_names(["a", "b"]) == ["a", "b"]
    assert registered_names(None) == [] and registered_names(["a", ""]) == [] and registered_names(3) == []


def test_probe_for_nodes_gets_nodes_from_the_registered_results():
    args = {"hosts": ["node1", "node2", "node4"], "registered": "info", "binaries_dir": "/tmp/b", "resolve": True}
    changed = nodes_from_registered(args, {"hostvars": HOSTVARS})
    assert "hosts" not in changed and "registered" not in changed
    assert changed["binaries_dir"] == "/tmp/b" and changed["resolve"] is True
    # A host that never ran the task: an empty answer, resolved nowhere by the module.
    assert changed["nodes"] == {"node1": ANSWER, "node2": HOSTVARS["node2"]["info"], "node4": {}}
    assert args["hosts"] == ["node1", "node2", "node4"]      # the task's own arguments are not changed


@pytest.mark.parametrize("args, message", [
    ({"hosts": ["node1"], "registered": "info", "nodes": {}}, "not both"),
    ({"hosts": ["node1"]}, "needs hosts .* and registered"),
    ({"hosts": "node1", "registered": "info"}, "needs hosts"),
    ({"registered": "info"}, "needs hosts"),
])
def test_probe_for_nodes_refuses_hosts_without_registered_or_with_nodes(args, message):
    with pytest.raises(AnsibleActionFail, match=message):
        nodes_from_registered(args, {"hostvars": HOSTVARS})
