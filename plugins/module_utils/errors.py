# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one root of the errors the core raises on purpose.

Every package's errors (``TracefsError``, ``ValidationError``, ``DwarfError``,
``ElfError``, ``OwnershipError``, ...) derive from ``FleettraceError``, so a
caller catches them by type, and the module runner (``module_runner.py``)
turns any of them into one failed task: the message, what to do about it, and
the lines the kernel wrote to its ``error_log``.  Anything else that escapes is
a bug, and is reported as one.
"""


# What to do when a module is not root: every way Ansible users have to become root.
RUN_AS_ROOT = "run as root (become: true or -b)"


class FleettraceError(Exception):
    """Something the user can act on.

    ``message``: what was wrong and where, one line.  ``hint``: what to do about
    it, when the message does not already say.  ``error_log``: the kernel's
    ``error_log`` lines written by the refused operation (may be empty).
    """

    def __init__(self, message, hint=None, error_log=None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.error_log = list(error_log or [])

    def __str__(self):
        return str(self.message)

    def sentence(self):
        """The message and then the hint, as a user reads them."""
        return "%s; %s" % (self.message, self.hint) if self.hint else str(self.message)

    def reworded(self, message):
        """The same error with another message (for a caller that adds where it happened)."""
        return FleettraceError(message, hint=self.hint, error_log=self.error_log)


class OptionError(FleettraceError):
    """A module option (or a combination of them) that cannot be used; nothing was changed."""


class CheckModeAnswer(Exception):
    """Check mode can say no more than this: the module ends unchanged with ``msg`` and the ``commands`` it would run.

    Not a ``FleettraceError``: nothing is wrong (for example tracefs is not mounted, and check mode never mounts it).
    """

    def __init__(self, msg, commands):
        super().__init__(msg)
        self.msg = msg
        self.commands = list(commands)
