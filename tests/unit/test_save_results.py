"""save_results' reading of registered results (plugins/action/save_results.py): each host's message, and check mode."""

from ansible_collections.fleettrace.tracefs.plugins.action import save_results

HOSTS = ["node1", "down", "broken", "quiet"]
FOUND = {
    "node1": {"msg": "100 events in 2.0 s", "sched_latency": {"kind": "sched_latency"}},
    "down": {"unreachable": True, "msg": "Connection refused"},
    "broken": {"failed": True, "msg": "no interpreter"},
    "quiet": None,
}


def test_messages_of_the_hosts_still_in_the_play_in_host_order():
    assert save_results.messages_of(FOUND, HOSTS) == ["100 events in 2.0 s"]
    assert save_results.messages_of(FOUND, ["quiet", "node1"]) == ["100 events in 2.0 s"]


def test_a_check_mode_result_has_no_document_and_is_not_a_failure():
    planned = {"msg": "would trace ... (check mode: nothing traced)", "plan": ["echo 1 > .../enable"]}
    assert save_results.document_of(planned, "sched_latency", check_mode=True) == {"kind": "check_mode"}
    assert save_results.document_of(planned, "sched_latency")["kind"] == "failure"


def test_check_mode_still_names_failed_and_unreachable_hosts():
    for host, status in (("down", "unreachable"), ("broken", "failed"), ("quiet", "no result")):
        document = save_results.document_of(FOUND[host], "sched_latency", check_mode=True)
        assert document["kind"] == "failure" and document["status"] == status
