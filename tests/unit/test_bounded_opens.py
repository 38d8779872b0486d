"""Every file the collection opens is either a kernel file or opened through ``bounded``.

A plain ``open()`` of a path a user (or a binary's DWARF, or a cache directory)
names blocks forever on a FIFO and reads ``/dev/zero`` until memory runs out:
``uprobe`` and ``probe_info`` hung for half an hour on a FIFO given as the
binary.  So ``plugins/`` calls ``open``/``os.open`` only on the paths listed
here, each with why it cannot block; everything else goes through
``plugins/module_utils/bounded.py`` (non-blocking open, regular files only,
size caps, ``O_EXCL|O_NOFOLLOW`` for temporary files).  A new ``open()``
fails this test: use ``bounded``, or add it here with the reason.
"""

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGINS = os.path.join(REPO, "plugins")

# file -> {first argument as written: why it cannot block or flood}
KERNEL_OR_OWN = {
    "module_utils/procfs.py": {"path": "_read: /proc/PID files only (built by _pid_dir)"},
    "module_utils/tracefs/error_log.py": {"path": "tracefs error_log", "full": "tracefs control files"},
    "module_utils/tracefs/fs.py": {"'/proc/self/mounts'": "kernel file"},
    "module_utils/tracefs/validate.py": {"meminfo": "/proc/meminfo"},
    "module_utils/trace/instance_capture.py": {
        "instance.path('trace_pipe')": "opened O_NONBLOCK", "instance.path('trace')": "tracefs, ends",
        "path": "read_trace: the instance's tracefs trace file"},
    "module_utils/trace/cpu_context.py": {"self.instance.path('per_cpu', 'cpu%d' % cpu, 'trace')": "tracefs"},
    "module_utils/trace/evidence.py": {"path": "/proc and /sys/kernel/mm/ksm counters"},
    "module_utils/trace/page_spool.py": {"path": "trace_pipe_raw, opened O_NONBLOCK",
                                         "candidate": "a directory, opened O_TMPFILE: a new unnamed file"},
    "module_utils/trace/per_cpu.py": {"os.path.join(root, 'per_cpu', 'cpu%d' % cpu, 'stats')": "tracefs"},
    "module_utils/sched/facts.py": {
        "path": "_read_int: /proc/sys and tracefs numbers", "'/proc/%d/stat' % pid": "kernel file",
        "'/proc/%s/task/%s/comm' % (entry, tid)": "kernel file"},
    "module_utils/sentinel/collect.py": {
        "path": "read_boot_id: /proc/sys/kernel/random/boot_id (a test override)",
        "'/proc/%d/stat' % pid": "kernel file", "'/proc/%d/status' % pid": "kernel file"},
    "module_utils/sentinel/culprit.py": {"self.instance.path('trace_pipe')": "opened O_NONBLOCK"},
    "module_utils/sentinel/watcher.py": {
        "self.bell.path('trace_pipe')": "opened O_NONBLOCK", "'/proc/%d/comm' % pid": "kernel file",
        "'/proc/self/comm'": "kernel file"},
    "module_utils/sentinel/target.py": {"'/proc/%d/maps' % pid": "kernel file"},
    "module_utils/sentinel/launch.py": {"spool.path('watcher.err')": "in the root-only (0700) spool directory"},
    "module_utils/elf/symbols.py": {"path": "KallsymsTable: /proc/kallsyms"},
    "module_utils/dwarf/cache.py": {"path": "the collection's own source files (code stamp)"},
    "action/save_results.py": {"temporary": "controller side, a temporary name in the results directory"},
}
# Run manifests and their owners' /proc files follow their own rules (O_EXCL|O_NOFOLLOW, size caps,
# docs/tracefs-core.md), kept by the runs code itself.
OWN_RULES = ("module_utils/runs/",
             # the sentinel's spool: a root-only directory, O_EXCL|O_NOFOLLOW writes, size caps (docs/sentinel.md)
             "module_utils/sentinel/spool.py")
OPENERS = ("open", "os.open", "io.open", "tempfile.TemporaryFile")


def _opens(path):
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func) if isinstance(node.func, (ast.Name, ast.Attribute)) else ""
            if name in OPENERS:
                yield node.lineno, name, ast.unparse(node.args[0]) if node.args else ""


def test_every_open_is_bounded_or_a_kernel_file():
    unexplained = []
    for root, _dirs, names in os.walk(PLUGINS):
        for name in sorted(names):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, PLUGINS)
            if not name.endswith(".py") or relative == "module_utils/bounded.py" or relative.startswith(OWN_RULES):
                continue
            allowed = KERNEL_OR_OWN.get(relative, {})
            for line, opener, argument in _opens(path):
                if opener == "tempfile.TemporaryFile" and relative == "module_utils/trace/page_spool.py":
                    continue  # a new unnamed file in the spool directory
                if argument not in allowed:
                    unexplained.append("plugins/%s:%d %s(%s)" % (relative, line, opener, argument))
    assert not unexplained, ("open() of a path that may be a FIFO or a device: use plugins/module_utils/bounded.py "
                             "(or list it in %s with why it cannot block):\n%s" % (__file__, "\n".join(unexplained)))
