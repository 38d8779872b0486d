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


# What a sleep in the kernel was waiting for, named from its stack: (frames any of which names it, words).
# First match wins: the freezer and FUSE name the whole wait; a lock or I/O only says how it slept.
_WAIT_KINDS = (
    (("__refrigerator", "do_freezer_trap"),
     "frozen by the cgroup freezer (a paused container, systemctl freeze, a checkpoint)"),
    (("request_wait_answer", "fuse_simple_request"), "waiting for a FUSE daemon's answer"),
    (("try_to_free_pages", "shrink_node", "__alloc_pages_slowpath", "mem_cgroup_handle_over_high",
      "throttle_direct_reclaim", "__perform_reclaim"), "memory reclaim"),
    (("io_schedule", "io_schedule_timeout", "folio_wait_bit_common", "wait_on_page_bit_common", "bit_wait_io",
      "blk_mq_get_tag"), "waiting for block I/O"),
    (("__mutex_lock", "mutex_lock", "rwsem_down_read_slowpath", "rwsem_down_write_slowpath"), "a kernel lock"),
)
# Writers on a frozen file system wait on its percpu rwsem from one of these.
_WRITE_ENTRY = ("mnt_want_write", "sb_start", "__sb_start", "do_page_mkwrite", "file_modified", "file_update_time",
                "ext4_page_mkwrite", "filemap_page_mkwrite", "generic_file_write_iter", "ext4_buffered_write_iter")
_PAGE_FAULT = ("exc_page_fault", "do_user_addr_fault", "handle_mm_fault", "asm_exc_page_fault")


def _names(stack):
    return [frame.strip().lstrip("=> ").split("+")[0].strip() for frame in stack or []]


def kernel_wait(stack):
    """What a task asleep in the kernel waited for, in words, from its kernel stack; None if not known.

    Only the freezer and FUSE come with a name of their own: the rest says how it slept
    (a frozen file system's writers, reclaim, block I/O, a kernel lock) and whether a page
    fault took it there (a task stalled outside any system call).
    """
    names = _names(stack)
    said = None
    for frames, words in _WAIT_KINDS:
        if any(name in frames for name in names):
            said = words
            break
    if said is None and "percpu_rwsem_wait" in names and any(name.startswith(_WRITE_ENTRY) for name in names):
        said = "a write to a frozen file system (fsfreeze, a snapshot)"
    if any(name in _PAGE_FAULT for name in names):
        said = "%s, in a page fault" % said if said else "a page fault"
    return said
