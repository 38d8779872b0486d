"""Arming a capture with its CPU context: both buffers cleared first, then switched on back to back.

A buffer clear waits for an RCU grace period (~90 ms measured here, more on a
busy node).  Armed one after the other, a late tick in that gap stopped the
context while the capture's buffer was being cleared: the capture then waited
its whole timeout for a stall that had already happened.
"""

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import instance_capture


class RecordedInstance:
    def __init__(self, name, root, log):
        self.name, self.root, self.log = name, str(root), log

    def path(self, *parts):
        return "/".join((self.root,) + parts)

    def set_tracing_on(self, value):
        self.log.append((self.name, "on" if value else "off"))

    def clear_buffer(self):
        self.log.append((self.name, "clear"))


def test_every_buffer_is_cleared_before_any_is_switched_on(tmp_path):
    (tmp_path / "per_cpu" / "cpu0").mkdir(parents=True)
    (tmp_path / "per_cpu" / "cpu0" / "stats").write_text("entries: 0\noverrun: 0\n")
    log = []
    capture = RecordedInstance("capture", tmp_path, log)
    context = RecordedInstance("context", tmp_path, log)
    stats = instance_capture.arm(capture, clear=True, companions=[context])
    assert log == [("context", "off"), ("capture", "off"), ("context", "clear"), ("capture", "clear"),
                   ("context", "on"), ("capture", "on")]
    assert stats == {0: {"entries": 0, "overrun": 0}}


def test_no_clear_switches_off_and_on_only(tmp_path):
    log = []
    capture = RecordedInstance("capture", tmp_path, log)
    assert instance_capture.arm(capture, clear=False) == {}
    assert log == [("capture", "off"), ("capture", "on")]
