# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planned tracefs writes that apply all-or-nothing, and are undone as one.

A module first builds a ``ChangePlan``: each step says, as a shell command,
what it would write (that list is what check mode reports) and how to undo
itself.  ``apply()`` runs the steps in order; when one fails, the steps already
applied are undone newest first, so a refused filter or trigger never leaves an
event half-configured, and the error says what could not be undone.  ``undo()``
takes back an applied plan the same way (a capture removing what it installed).

A step without an undo cannot be undone, and is reported, unless it wrote inside
a directory the same plan created and then removed again: removing the
directory undid it (the settings of a fresh instance).  A check that writes
nothing (``check``) has nothing to undo.

Removing objects is not a ChangePlan apply: a removal cannot be taken back, so
``tracefs/cleanup.py`` runs its removal plans step by step past refusals.
"""


import os


def _nothing():
    """The undo of a step that changed nothing."""


class Step:
    """One planned change: ``command`` (what check mode shows), ``do``, ``undo`` (None: cannot be
    undone), ``path`` (the file or directory written, for the rule of directories created)."""

    def __init__(self, command, do, undo=None, path=None, creates=False):
        self.command = command
        self.do = do
        self.undo = undo
        self.path = path
        self.creates = creates      # a mkdir: undoing it removes everything written below path


def shell_write(path, text, append=False):
    """How a write to ``path`` reads as a shell command (for humans and check mode)."""
    quoted = "'%s'" % text.replace("'", "'\\''") if text else "''"
    return "echo %s %s %s" % (quoted, ">>" if append else ">", path)


class ChangePlan:
    def __init__(self):
        self.steps = []
        self.applied = []       # the steps apply() ran, oldest first, until undo() takes them back

    def __bool__(self):
        return bool(self.steps)

    def add(self, command, do, undo=None, path=None):
        self.steps.append(Step(command, do, undo, path))

    def check(self, command, test):
        """A step that writes nothing (``test`` raises to stop the plan): nothing to undo."""
        self.steps.append(Step(command, test, _nothing))

    def write(self, path, text, do, undo=None, append=False):
        self.add(shell_write(path, text, append), do, undo, path)

    def mkdir(self, path, do, undo=None):
        self.steps.append(Step("mkdir %s" % path, do, undo, path, creates=True))

    def rmdir(self, path, do, undo=None):
        self.add("rmdir %s" % path, do, undo, path)

    def extend(self, other):
        """Append the steps of another (not yet applied) plan."""
        self.steps.extend(other.steps)

    @property
    def commands(self):
        return [step.command for step in self.steps]

    def apply(self):
        """Run every step in order, all or nothing.

        When a step fails, the steps already applied are undone newest first, then the step's
        error is raised with ``failed_command`` (its command) and ``not_undone`` (what could not
        be undone, as 'command: reason'; empty when tracefs is as it was before the plan).
        """
        if self.applied:
            raise ValueError("this plan is applied already: undo() it first")
        for step in self.steps:
            try:
                step.do()
            except Exception as exc:
                exc.failed_command = step.command
                exc.not_undone = self.undo()
                raise
            self.applied.append(step)

    def undo(self):
        """Undo the applied steps newest first, going on past failures; return what could not be
        undone (['command: reason'], [] when all of it was).  The plan can then be applied again."""
        failed = []
        removed = []
        for step in reversed(self.applied):
            if step.undo is None:
                failed.append((step, "nothing undoes this step"))
                continue
            try:
                step.undo()
            except Exception as exc:  # noqa: BLE001 - reported; the older steps are still undone
                failed.append((step, str(exc)))
                continue
            if step.creates:
                removed.append(step.path)
        self.applied = []
        return ["%s: %s" % (step.command, reason) for step, reason in reversed(failed)
                if not any(_below(step.path, directory) for directory in removed)]


def _below(path, directory):
    """Whether ``path`` lies inside ``directory`` (not the directory itself)."""
    if not path or not directory:
        return False
    return os.path.normpath(path).startswith(os.path.normpath(directory) + os.sep)


def failure_message(exc, undone="nothing was changed (the writes already made were undone)"):
    """The message for a failed ``apply()``: the refusal, then what the rollback did."""
    not_undone = getattr(exc, "not_undone", [])
    if not_undone:
        return "%s; these writes could not be undone: %s" % (exc, "; ".join(not_undone))
    return "%s; %s" % (exc, undone)
