# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The copied pages of a window into the analysis: decoders for the fields it reads, losses first.

Nothing here imports Ansible (Python 3.8+).
"""


import gc

from ansible_collections.fleettrace.tracefs.plugins.module_utils.trace import ring_buffer

# The fields the analysis uses, per event (in offset order: no reordering).
WAKE_FIELDS = ("common_pid", "comm", "pid", "target_cpu")
FIELDS = {
    "sched_switch": ("prev_comm", "prev_pid", "prev_state", "next_comm", "next_pid"),
    "sched_wakeup": WAKE_FIELDS, "sched_wakeup_new": WAKE_FIELDS, "sched_waking": WAKE_FIELDS,
    "sched_migrate_task": ("common_pid", "pid", "orig_cpu", "dest_cpu"),
}
# Kept in place but not read: the analysis knows a task's name from its switch-in.
BLANK_FIELDS = ("prev_comm", "comm")


def build_decoders(read_format, header_page, events, stacks=False):
    """(page layout, {event id: decoder}, {event id: name}): one precompiled struct per event type,
    for the fields the analysis uses only.  ``read_format(group, name)``: an event's format text."""
    layout = ring_buffer.PageLayout.parse(header_page)
    decoders = {}
    kinds = {}
    for name in events:
        fmt = ring_buffer.EventFormat.parse(read_format("sched", name))
        unpacker, index = fmt.struct_for(FIELDS[name], blank=BLANK_FIELDS)
        decoders[fmt.id] = (unpacker, index, None)
        kinds[fmt.id] = name
    if stacks:
        stack = ring_buffer.EventFormat.parse(read_format("ftrace", "kernel_stack"))
        unpacker, index = stack.struct_for(("common_pid", "size"))
        # The caller array may be longer than the 8 entries the format shows.
        decoders[stack.id] = (unpacker, index, stack.fields["caller"][0])
        kinds[stack.id] = "kernel_stack"
    return layout, decoders, kinds


def analyse_pages(analyzer, spool, layout, decoders, kinds, stats):
    """Losses first (so every wait across one is known as such), then every event in time order.

    ``stats``: {cpu: per_cpu stats} at the end of the window.  Returns (events the pages say
    were lost, pages that say some were lost without a count).
    """
    missed_in_pages = missed_unknown_pages = 0
    paged = {}
    for cpu, since, until, missed in spool.losses(layout):
        analyzer.lost(since, until)
        paged[cpu] = True
        if missed > 0:
            missed_in_pages += missed
        else:
            missed_unknown_pages += 1
    for cpu, cpu_stats in stats.items():
        # Loss the pages do not place (refused or commit-overrun events, or an overrun without a
        # flagged page) may lie anywhere in the window.
        if (cpu_stats.get("commit_overrun") or cpu_stats.get("dropped_events")
                or (cpu_stats.get("overrun") and cpu not in paged)):
            analyzer.lost(None, None)
    handlers = analyzer.handlers(kinds)
    ids = {name: event_id for event_id, name in kinds.items()}
    # Every event allocates tuples, so the cyclic garbage collector would run every few hundred
    # events and walk the pending batch each time (an eighth of the analysis' CPU); nothing
    # here makes reference cycles, so it is paused for the loop (memory is freed as usual).
    collecting = gc.isenabled()
    gc.disable()
    try:
        for batch in spool.merged(layout, decoders):
            analyzer.feed(batch, handlers, ids["sched_switch"], ids.get("sched_wakeup"))
    finally:
        if collecting:
            gc.enable()
    return missed_in_pages, missed_unknown_pages
