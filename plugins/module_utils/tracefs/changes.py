# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planned tracefs writes that apply all-or-nothing.

A module first builds a ``ChangePlan``: each step says, as a shell command,
what it would write (that list is what check mode reports) and knows how to
undo itself.  ``apply()`` runs the steps in order; when one fails, the steps
already done are undone in reverse order, so a refused filter or trigger never
leaves an event half-configured.
"""


class Step:
    def __init__(self, command, do, undo=None):
        self.command = command
        self.do = do
        self.undo = undo


def shell_write(path, text, append=False):
    """How a write to ``path`` reads as a shell command (for humans and check mode)."""
    quoted = "'%s'" % text.replace("'", "'\\''") if text else "''"
    return "echo %s %s %s" % (quoted, ">>" if append else ">", path)


class ChangePlan:
    def __init__(self):
        self.steps = []

    def __bool__(self):
        return bool(self.steps)

    def add(self, command, do, undo=None):
        self.steps.append(Step(command, do, undo))

    def write(self, path, text, do, undo=None, append=False):
        self.add(shell_write(path, text, append), do, undo)

    def mkdir(self, path, do, undo=None):
        self.add("mkdir %s" % path, do, undo)

    def rmdir(self, path, do, undo=None):
        self.add("rmdir %s" % path, do, undo)

    @property
    def commands(self):
        return [step.command for step in self.steps]

    def apply_each(self):
        """Run every step past failures, undoing nothing (cleanup: one busy item
        never blocks the rest); return the errors as 'command: reason' strings."""
        errors = []
        for step in self.steps:
            try:
                step.do()
            except Exception as exc:  # noqa: BLE001 - reported; the next step still runs
                errors.append("%s: %s" % (step.command, exc))
        return errors

    def apply(self):
        """Run every step; on failure undo the done ones and re-raise.

        Errors raised while undoing are attached to the original exception as
        ``rollback_errors`` (a list of strings) instead of hiding it.
        """
        done = []
        for step in self.steps:
            try:
                step.do()
            except Exception as exc:
                errors = []
                for finished in reversed(done):
                    if finished.undo is None:
                        continue
                    try:
                        finished.undo()
                    except Exception as undo_exc:  # keep undoing the rest
                        errors.append("%s: %s" % (finished.command, undo_exc))
                exc.rollback_errors = errors
                exc.failed_command = step.command
                raise
            done.append(step)


def failure_message(exc, undone="nothing was changed (the writes already made were undone)"):
    """The message for a failed ``apply()``: the refusal, then what the rollback did."""
    rollback = getattr(exc, "rollback_errors", [])
    if rollback:
        return "%s; undoing the writes already made also failed: %s" % (exc, "; ".join(rollback))
    return "%s; %s" % (exc, undone)
