"""What a kernel stack says a sleep waited for (trace/frames.kernel_wait), on stacks this kernel recorded."""

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace.frames import kernel_wait

SWITCH = ["trace_event_raw_event_sched_switch", "__traceiter_sched_switch", "__schedule", "schedule"]

# corosync's main loop frozen by the cgroup v1 freezer: epoll_wait returned -EINTR, then this (6.18).
FROZEN_V1 = SWITCH + ["__refrigerator", "get_signal", "arch_do_signal_or_restart", "exit_to_user_mode_loop",
                      "do_syscall_64", "entry_SYSCALL_64_after_hwframe"]
FROZEN_V2 = SWITCH + ["do_freezer_trap", "get_signal", "arch_do_signal_or_restart", "exit_to_user_mode_loop",
                      "do_syscall_64", "entry_SYSCALL_64_after_hwframe"]
# A write(2) to a file on an fsfreeze'd ext4.
FROZEN_FS_WRITE = SWITCH + ["percpu_rwsem_wait+0x10f/0x130", "__percpu_down_read+0x6a/0x80", "mnt_want_write+0x6e/0xa0",
                            "do_sys_openat2", "__x64_sys_openat", "do_syscall_64"]
# A store into a mapped file on an fsfreeze'd ext4: outside any system call.
FROZEN_FS_FAULT = SWITCH + ["percpu_rwsem_wait", "__percpu_down_read", "ext4_page_mkwrite", "do_page_mkwrite",
                            "do_wp_page", "__handle_mm_fault", "handle_mm_fault", "do_user_addr_fault",
                            "exc_page_fault", "asm_exc_page_fault"]
FUSE_IOCTL = SWITCH + ["request_wait_answer", "__fuse_simple_request", "fuse_do_ioctl", "fuse_file_ioctl",
                       "__x64_sys_ioctl", "do_syscall_64"]
MAJOR_FAULT = SWITCH + ["io_schedule", "folio_wait_bit_common", "filemap_fault", "__do_fault", "do_fault",
                        "__handle_mm_fault", "handle_mm_fault", "do_user_addr_fault", "exc_page_fault"]
IDLE = SWITCH + ["schedule_hrtimeout_range_clock", "do_epoll_wait", "__x64_sys_epoll_wait", "do_syscall_64"]


def test_the_freezer_is_named_in_both_cgroup_versions():
    assert kernel_wait(FROZEN_V1).startswith("frozen by the cgroup freezer")
    assert kernel_wait(FROZEN_V2).startswith("frozen by the cgroup freezer")


def test_a_frozen_file_system_in_a_call_and_in_a_page_fault():
    assert kernel_wait(FROZEN_FS_WRITE) == "a write to a frozen file system (fsfreeze, a snapshot)"
    assert kernel_wait(FROZEN_FS_FAULT) == "a write to a frozen file system (fsfreeze, a snapshot), in a page fault"


def test_fuse_io_and_stack_lines_as_the_trace_prints_them():
    assert kernel_wait([" => " + frame for frame in FUSE_IOCTL]) == "waiting for a FUSE daemon's answer"
    assert kernel_wait(MAJOR_FAULT) == "waiting for block I/O, in a page fault"


def test_nothing_said_when_the_stack_does_not_say():
    assert kernel_wait(IDLE) is None
    assert kernel_wait([]) is None
    assert kernel_wait(None) is None
    # percpu_rwsem alone (cgroup's threadgroup lock, ...) is not a frozen file system.
    assert kernel_wait(SWITCH + ["percpu_rwsem_wait", "cgroup_procs_write_start"]) is None
