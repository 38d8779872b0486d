"""When has a diagnose run really armed tracing?

A new instance reads ``tracing_on`` 1 from ``mkdir`` until the role switches it
off while it sets up, so a poll of ``tracing_on`` alone can fire too early.
Armed means: the run's instances with a traceoff trigger (the capture's and
its CPU context's) all have tracing on, which only ``capture`` does, after
every filter and trigger is in place; one of them alone is not the capture.
"""

import glob
import time

TRACEFS = "/sys/kernel/tracing"


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def is_armed(run_id):
    stopping = [instance for instance in glob.glob("%s/instances/fleettrace_%s_*" % (TRACEFS, run_id))
                if "traceoff" in "".join(_read(path) for path in glob.glob(instance + "/events/*/*/trigger"))]
    return bool(stopping) and all(_read(instance + "/tracing_on").strip() == "1" for instance in stopping)


def wait_armed(run_id, proc, timeout=300, interval=0.1):
    """True once the run is armed; False if the playbook ended or time ran out first."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if is_armed(run_id):
            return True
        time.sleep(interval)
    return False
