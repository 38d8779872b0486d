"""Only waits the trace proves: one synthetic timeline per rule (issue 11), no kernel needed."""

from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import analysis as sa
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched import result as sched_result

IDLE0 = (0, b"swapper/0")
IDLE1 = (0, b"swapper/1")
P = (100, b"worker")
Q = (200, b"hog")
R = (300, b"other")
US = 1000
SECOND = 10 ** 9


def switch(an, ts, cpu, prev, prev_state, nxt):
    an.switch(ts, cpu, prev[1], prev[0], prev_state, nxt[1], nxt[0])


def waking(an, ts, cpu, task, waker, target):
    an.wakeup(ts, cpu, task[0], task[1], "sched_waking", waker=waker[0], target_cpu=target)


def wakeup(an, ts, cpu, task, waker, target):
    an.wakeup(ts, cpu, task[0], task[1], "sched_wakeup", waker=waker[0], target_cpu=target)


def reasons(an):
    return {k: v for k, v in an.result()["unmeasured_by_reason"].items() if v}


def busy_cpu0(an, ts=0):
    """Q runs on CPU 0 (switched in from idle, recorded)."""
    switch(an, ts, 0, IDLE0, 0, Q)


def test_a_proven_wakeup_wait_is_measured_from_the_wakeup():
    an = sa.SchedAnalyzer()
    busy_cpu0(an)
    waking(an, 10 * US, 1, P, IDLE1, 0)
    wakeup(an, 11 * US, 1, P, IDLE1, 0)        # enqueued on CPU 0, behind Q
    switch(an, 40 * US, 0, Q, 0, P)            # Q preempted, P runs: waited 30 us
    result = an.result()
    assert result["latency"]["wakeup"]["count"] == 1 and result["latency"]["wakeup"]["max_us"] == 30.0
    assert result["unmeasured_waits"] == 0 and result["coverage"]["measured_fraction"] == 1.0


def test_woken_again_before_any_switch_in_is_unmeasured():
    an = sa.SchedAnalyzer()
    busy_cpu0(an)
    wakeup(an, 10 * US, 1, P, IDLE1, 1)        # P enqueued on CPU 1 ...
    wakeup(an, 50 * US, 0, P, Q, 0)            # ... and woken again: it ran and slept unseen
    switch(an, 60 * US, 0, Q, 0, P)
    result = an.result()
    assert reasons(an) == {sa.REWOKEN: 1}
    assert result["latency"]["wakeup"]["max_us"] == 10.0   # only the second, proven wait


def test_task_seen_running_without_a_switch_in_is_unmeasured():
    an = sa.SchedAnalyzer()
    switch(an, 0, 1, Q, 1, IDLE1)              # CPU 1 idle
    wakeup(an, 10 * US, 1, P, IDLE1, 1)
    waking(an, 20 * US, 1, R, P, 0)            # P stamps an event on CPU 1: it runs, switch-in unrecorded
    result = an.result()
    assert reasons(an) == {sa.RAN_UNTRACED: 1}
    assert result["inferred_switch_ins"] == 1 and result["latency"]["all"]["count"] == 0


def test_own_switch_out_without_switch_in_is_unmeasured():
    an = sa.SchedAnalyzer()
    switch(an, 0, 1, Q, 1, IDLE1)
    wakeup(an, 10 * US, 1, P, IDLE1, 1)
    switch(an, 30 * US, 1, P, 1, IDLE1)        # P's own switch-out: it ran, we never saw it start
    assert reasons(an) == {sa.RAN_UNTRACED: 1}
    assert an.result()["latency"]["all"]["count"] == 0


def test_migration_after_the_enqueue_is_unmeasured_but_placement_is_not():
    an = sa.SchedAnalyzer()
    busy_cpu0(an)
    switch(an, 0, 1, IDLE1, 0, R)              # R runs on CPU 1
    waking(an, 10 * US, 1, P, R, 1)
    an.migrate(10 * US + 1, 1, P[0], 1, 0, waker=R[0])   # placement inside the wakeup: fine
    wakeup(an, 10 * US + 2, 1, P, R, 0)
    switch(an, 30 * US, 0, Q, 0, P)            # measured
    switch(an, 31 * US, 0, P, 0, Q)            # P preempted on CPU 0 ...
    an.migrate(35 * US, 1, P[0], 0, 1, waker=R[0])       # ... and pulled to CPU 1 while waiting
    switch(an, 50 * US, 1, R, 0, P)
    result = an.result()
    assert reasons(an) == {sa.MIGRATED: 1}
    assert result["latency"]["all"]["count"] == 2      # P's first wait and Q's preemption wait
    assert result["latency"]["wakeup"]["max_us"] == 20.0


def test_switch_in_on_another_cpu_than_queued_is_unmeasured():
    an = sa.SchedAnalyzer()
    busy_cpu0(an)
    switch(an, 0, 1, IDLE1, 0, R)
    wakeup(an, 10 * US, 1, P, R, 1)            # queued on CPU 1
    switch(an, 30 * US, 0, Q, 1, P)            # but runs on CPU 0: a migration we did not see
    assert reasons(an) == {sa.CPU_MISMATCH: 1}


def test_cpu_going_idle_with_the_task_queued_is_unmeasured():
    an = sa.SchedAnalyzer()
    busy_cpu0(an)
    wakeup(an, 10 * US, 1, P, IDLE1, 0)        # queued on CPU 0 behind Q
    switch(an, 20 * US, 0, Q, 1, IDLE0)        # CPU 0 goes idle: it would have run P
    switch(an, 3 * SECOND, 0, IDLE0, 0, P)
    assert reasons(an) == {sa.IDLE_CPU: 1}
    assert an.result()["latency"]["all"]["count"] == 0


def test_idle_task_seen_on_a_busy_cpu_means_it_went_idle_unrecorded():
    an = sa.SchedAnalyzer()
    switch(an, 0, 1, IDLE1, 0, Q)              # Q on CPU 1
    wakeup(an, 10 * US, 1, P, Q, 1)            # P queued on CPU 1
    wakeup(an, 20 * US, 1, R, IDLE1, 0)        # the idle task stamps CPU 1: it went idle, unrecorded
    switch(an, 900 * US, 1, IDLE1, 0, P)
    assert reasons(an) == {sa.IDLE_CPU: 1}


def test_wakeup_onto_an_idle_cpu_with_a_recorded_exit_is_measured():
    an = sa.SchedAnalyzer()
    switch(an, 0, 0, Q, 1, IDLE0)
    wakeup(an, 10 * US, 1, P, R, 0)            # CPU 0 idle at the enqueue
    switch(an, 14 * US, 0, IDLE0, 0, P)        # its exit from idle is recorded (CPU 0 on this VM)
    assert an.result()["latency"]["all"]["max_us"] == 4.0 and an.unmeasured_waits == 0


def test_lost_events_during_the_wait_make_it_unmeasured():
    an = sa.SchedAnalyzer()
    an.lost(15 * US, 16 * US)
    busy_cpu0(an)
    wakeup(an, 10 * US, 1, P, IDLE1, 0)
    switch(an, 30 * US, 0, Q, 0, P)            # the wait spans the loss
    wakeup(an, 40 * US, 1, R, IDLE1, 0)
    switch(an, 45 * US, 0, P, 1, R)            # after the loss: measured
    assert reasons(an) == {sa.LOST: 1}
    assert an.result()["latency"]["all"]["count"] == 1


def test_loss_at_an_unknown_time_covers_the_whole_window():
    an = sa.SchedAnalyzer()
    an.lost(None, None)
    busy_cpu0(an)
    wakeup(an, 10 * US, 1, P, IDLE1, 0)
    switch(an, 30 * US, 0, Q, 0, P)
    assert reasons(an) == {sa.LOST: 1}


def test_switch_in_far_before_the_wakeup_is_a_clock_contradiction():
    an = sa.SchedAnalyzer()
    busy_cpu0(an)
    wakeup(an, 500 * US, 1, P, IDLE1, None)
    switch(an, 100 * US, 0, Q, 0, P)           # 400 us "before" its wakeup: not a clock skew
    assert reasons(an) == {sa.CLOCK_ORDER: 1}
    assert an.result()["latency"]["all"]["count"] == 0


def test_woken_while_still_running_is_no_wait():
    an = sa.SchedAnalyzer()
    switch(an, 0, 0, IDLE0, 0, P)              # P runs on CPU 0
    wakeup(an, 10 * US, 1, P, R, 0)            # woken before it switched out (set_current_state race)
    switch(an, 20 * US, 0, P, 1, Q)            # then sleeps
    switch(an, 30 * US, 0, Q, 1, P)            # back without a wakeup: no sample
    result = an.result()
    assert result["woken_while_running"] == 1 and result["latency"]["all"]["count"] == 0
    assert an.unmeasured_waits == 0


def test_the_five_second_artefact_of_issue_11_cannot_happen():
    """A thread woken every 5 s on CPU 1, whose idle exits (and here its sleeps) this kernel does not record.

    Before: its first wakeup stayed queued, and the switch-in 5 s later was
    reported as a 5,000,241 us wait while the CPU ran almost nothing else.
    """
    an = sa.SchedAnalyzer(watch=sa.WatchSpec(comms=["worker"]))
    busy_cpu0(an)
    switch(an, 0, 1, R, 1, IDLE1)               # CPU 1 idle
    ts = 100 * US
    for _period in range(3):
        waking(an, ts, 1, P, IDLE1, 1)          # timer on idle CPU 1 wakes P
        wakeup(an, ts + 3 * US, 1, P, IDLE1, 1)
        # P runs and sleeps again on CPU 1: neither switch is recorded
        ts += 5 * SECOND
    switch(an, ts - 5 * SECOND + 241 * US, 0, Q, 0, P)   # last one: P runs on CPU 0 (not where queued)
    result = an.result()
    assert result["latency"]["all"]["count"] == 0
    assert all(w["latency_us"] < 1000 for w in result["worst_waits"])
    assert reasons(an) == {sa.REWOKEN: 2, sa.CPU_MISMATCH: 1}
    # Even if the last switch-in had been on CPU 1, the proven wait is only from the last wakeup.
    an2 = sa.SchedAnalyzer()
    switch(an2, 0, 1, R, 1, IDLE1)
    for ts in (100 * US, 5 * SECOND, 10 * SECOND):
        wakeup(an2, ts, 1, P, IDLE1, 1)
    switch(an2, 10 * SECOND + 241 * US, 1, IDLE1, 0, P)
    assert an2.result()["latency"]["all"]["max_us"] == 241.0


def test_every_reason_is_reported_even_when_zero():
    result = sa.SchedAnalyzer().result()
    assert sorted(result["unmeasured_by_reason"]) == sorted(sched_result.UNMEASURED_REASONS)
    assert result["coverage"] == {"measured": 0, "unmeasured": 0, "measured_fraction": None,
                                  "unmeasured_by_reason": result["unmeasured_by_reason"]}


def test_the_batch_path_gives_the_same_result_as_the_method_calls():
    """``feed`` (what the collector uses, with its inline fast paths) and the per-event methods agree."""
    import random
    rng = random.Random(5)
    events = []
    ts = 0
    running = {0: 0, 1: 0}
    for _step in range(20000):
        ts += rng.randint(1, 3000)
        cpu = rng.randint(0, 1)
        if rng.random() < 0.5:
            pid = rng.randint(1, 12)
            events.append((ts, cpu, "wakeup", (running[cpu], b"", pid, rng.randint(0, 1))))
        elif rng.random() < 0.05:
            events.append((ts, cpu, "migrate", (running[cpu], rng.randint(1, 12), 0, 1)))
        else:
            nxt = rng.choice([0] + list(range(1, 13)))
            events.append((ts, cpu, sa.SWITCH, (b"", running[cpu], rng.choice([0, 1, 2, 0x100]), b"t%d" % nxt, nxt)))
            running[cpu] = nxt
    by_methods = sa.SchedAnalyzer()
    for ts, cpu, kind, f in events:
        if kind == "wakeup":
            by_methods.wakeup(ts, cpu, f[2], f[1], "sched_wakeup", f[0], f[3])
        elif kind == "migrate":
            by_methods.migrate(ts, cpu, f[1], f[2], f[3], f[0])
        else:
            by_methods.switch(ts, cpu, *f)
    batched = sa.SchedAnalyzer()
    handlers = batched.handlers({"wakeup": "sched_wakeup", "migrate": "sched_migrate_task"})
    for start in range(0, len(events), 777):
        batched.feed(events[start:start + 777], handlers, sa.SWITCH, "wakeup")
    one, two = by_methods.result(), batched.result()
    assert one["latency"]["all"]["count"] > 1000 and one["unmeasured_waits"] > 100
    assert one == two
