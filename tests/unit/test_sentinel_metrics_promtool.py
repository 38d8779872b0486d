"""The sentinel's node_exporter file passes promtool too (every .prom file the collection writes does)."""

from ansible_collections.fleettrace.tracefs.plugins.module_utils.sentinel import notify
from tests.helpers.tools import promtool_problems_of


def test_sentinel_metrics_pass_promtool_check_metrics():
    armed = {"status": "armed", "target": {"comm": 'coro"sync'}, "until": 1700003600, "captures_total": 2,
             "dropped_total": 1, "captures": [{"duration_ms": 1100.5, "at": 1700000000.5}]}
    texts = {"armed": notify.metrics_text("corosync", armed),
             "ended, nothing caught": notify.metrics_text("we\\ird\nlabel", {"status": "ended"})}
    assert promtool_problems_of(texts) == {name: [] for name in texts}
