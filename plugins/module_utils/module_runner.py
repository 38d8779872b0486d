# Copyright: fleettrace developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place a module ends: ``run_module(argument_spec, body, ...)``.

In the manner of community.general's ModuleHelper: a module states its options
and a body ``body(module, result)`` that fills ``result`` (or returns the whole
result) and raises when it cannot go on.  The runner is the only caller of
``fail_json`` in the collection:

- a ``FleettraceError`` becomes a failed task with its message (and hint) as
  ``msg``, the hint as ``hint`` and the kernel's ``error_log`` lines as
  ``error_log``, plus whatever the body had put in ``result`` so far;
- an ``OSError`` the core did not explain names the file and the reason;
- anything else is a bug: the message says so and names the exception, and the
  traceback is in ``exception`` (shown with -vvv); never "Unknown error".

Before Ansible parses and validates the arguments, their sizes are checked
(``input_limits``): a million pids or a 100 MB filter is refused at once, with
a short message and a short echo of the arguments, before any work.

This is the only file under ``module_utils/`` that imports Ansible (see
tests/unit/test_layout.py): the core stays importable without it.
"""


import errno
import json
import traceback

from ansible.module_utils import basic
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleettrace.tracefs.plugins.module_utils import input_limits
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import RUN_AS_ROOT, CheckModeAnswer, FleettraceError


def _failure(exc):
    """(msg, extra result keys) for an exception that ends the module."""
    if isinstance(exc, FleettraceError):
        extra = {}
        if exc.hint:
            extra["hint"] = exc.hint
        if exc.error_log:
            extra["error_log"] = list(exc.error_log)
        return exc.sentence(), extra
    if isinstance(exc, OSError):
        msg = exc.strerror or str(exc)
        if exc.filename:
            msg = "%s: %s" % (exc.filename, msg)
        if exc.errno in (errno.EACCES, errno.EPERM):
            return msg + "; " + RUN_AS_ROOT, {"hint": RUN_AS_ROOT}
        return msg, {}
    return None, {}


def fail(module, exc, result):
    """End ``module`` as failed because of ``exc``, keeping what ``result`` already holds."""
    msg, extra = _failure(exc)
    output = dict(result)
    output.update(extra)
    if msg is None:
        msg = ("unexpected %s in %s: %s; this is a bug in fleettrace.tracefs, please report it with the "
               "traceback (in 'exception', shown with -vvv)"
               % (type(exc).__name__, getattr(module, "_name", "the module"), exc))
        output["exception"] = traceback.format_exc()
    output.pop("msg", None)
    output.pop("failed", None)
    module.fail_json(msg=msg, **output)


def oversized_argument(caps=None):
    """The refusal when an argument is over its cap (``input_limits``), else None.

    Reads the arguments Ansible handed over (``basic._ANSIBLE_ARGS``, set by the
    AnsiballZ wrapper before the module runs) with the plain JSON decoder, before
    ``AnsibleModule`` copies, converts and validates every item.  When one is
    too big, the arguments are replaced by a copy cut down to size, so that
    ``AnsibleModule`` is built at once and the refusal echoes little.
    """
    raw = getattr(basic, "_ANSIBLE_ARGS", None)
    if not isinstance(raw, (bytes, str)):
        return None  # run by hand (python module.py args.json): the core's own caps still apply
    try:
        args = json.loads(raw)["ANSIBLE_MODULE_ARGS"]
    except (ValueError, KeyError, TypeError):
        return None  # not ours to judge: AnsibleModule reports it
    if not isinstance(args, dict):
        return None
    problem = input_limits.oversized(args, caps)
    if problem is not None:
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": input_limits.trimmed(args, caps)},
                                         default=str).encode("utf-8")
    return problem


def run_module(argument_spec, body, result=None, caps=None, **module_options):
    """Build the AnsibleModule, run ``body(module, result)`` and end the module with its outcome.

    ``result`` (a dict, ``changed`` False unless given) is what a failure reports
    besides ``msg``; ``body`` may return another dict to exit with instead.
    ``caps``: option name -> ``input_limits.Cap`` over the defaults (``input_limits.NO_CAP``
    for data a module takes in bulk).
    """
    problem = oversized_argument(caps)
    module = AnsibleModule(argument_spec=argument_spec, **module_options)
    result = dict(dict(changed=False), **(result or {}))
    if problem is not None:
        module.fail_json(msg=problem, **result)
    try:
        returned = body(module, result)
    except CheckModeAnswer as answer:
        # Not a failure: check mode lists what it would run (e.g. mount tracefs) and does none of it.
        returned = dict(result, changed=True, commands=answer.commands, msg=answer.msg)
    except Exception as exc:  # noqa: BLE001 - every failure ends here, as one task result
        fail(module, exc, result)
    module.exit_json(**(result if returned is None else returned))
