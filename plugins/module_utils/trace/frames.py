# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a kernel stack says a task blocked: its first frame that is not the scheduler or the tracer.

Its own file, standard library only: the report (report/text.py) needs it, and
importing it from ``findings`` pulled the whole trace analysis, procfs and the ELF
reader into the latency_report module (45 % of its code, compiled from the
AnsiballZ zip on every run) for one regular expression.
"""


import re

# Frames of the scheduler and of the tracer itself: not where the task blocked.
_SCHED_FRAME = re.compile(r"^(trace_event_|__traceiter_|__schedule|schedule|preempt_schedule|io_schedule|"
                          r"__bpf_trace|trace_|ftrace_|stack_trace_|__ftrace)")


def blocked_in(stack):
    """First frame of a kernel stack that is not the scheduler or the tracer."""
    for frame in stack or []:
        name = frame.split("+")[0].strip()
        if not _SCHED_FRAME.match(name):
            return name
    return None
