"""A fake tracefs tree for parser and plan unit tests (no kernel needed)."""

import os


def make_fake_tracefs(root, readme="", uprobes=True, kprobes=False):
    os.makedirs(os.path.join(root, "instances"))
    os.makedirs(os.path.join(root, "options"))
    os.makedirs(os.path.join(root, "events", "sched", "sched_switch"))
    files = {"README": readme, "tracing_on": "1\n", "trace_clock": "[local] global mono\n",
             "set_event": "", "set_event_pid": "", "buffer_size_kb": "7 (expanded: 1408)\n", "error_log": ""}
    if uprobes:
        files["uprobe_events"] = "p:probe_x/y /bin/x:0x10 a=%di:s32\n"
    if kprobes:
        files["kprobe_events"] = ""
    for name, text in files.items():
        with open(os.path.join(root, name), "w") as handle:
            handle.write(text)
    for name, text in {"enable": "0\n", "filter": "none\n", "trigger": "# Available triggers:\n"}.items():
        with open(os.path.join(root, "events", "sched", "sched_switch", name), "w") as handle:
            handle.write(text)
    return root
