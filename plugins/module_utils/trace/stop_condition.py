# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The threshold, written once: the ``traceoff`` trigger a threshold capture installs on its probe
events, and the numbers its stall finder uses (trace/threshold.py, the sentinel).
No Ansible imports.
"""


from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs import instance_event_plans, validate


class StopCondition:
    """Stop tracing when ``field >= threshold`` on the probe ``events`` ('group:event').

    ``plan(instance)`` is the ``ChangePlan`` that installs the ``traceoff``
    trigger on each event; ``trigger`` is its text.  The same numbers drive
    the stall finder, so the threshold is written once.
    """

    def __init__(self, events, field, threshold, unit=None):
        self.events = [events] if isinstance(events, str) else list(events)
        self.field = validate.event_name(field, "stop field")
        self.threshold = int(threshold)
        self.unit = unit
        if not self.events:
            raise validate.ValidationError("stop: at least one probe event ('group:event') is needed")
        if self.threshold <= 0:
            raise validate.ValidationError("stop: threshold must be a positive number, got %d" % self.threshold)
        self.split = [validate.split_event(spec) for spec in self.events]

    @property
    def trigger(self):
        return "traceoff if %s >= %d" % (self.field, self.threshold)

    def plan(self, instance):
        plan = None
        for group, name in self.split:
            event = instance.event(group, name)
            event.require()
            before = instance_event_plans.event_state(event)
            wanted = [t for t in before["triggers"] if not t.startswith("traceoff")] + [self.trigger]
            step, _after = instance_event_plans.plan_event(
                event, before, {"state": "present", "filter": None, "enabled": True},
                instance_event_plans.check_triggers(instance.tracefs, wanted))
            if plan is None:
                plan = step
            else:
                plan.extend(step)
        return plan
