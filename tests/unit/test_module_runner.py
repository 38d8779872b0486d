"""One error root, and the runner that turns it into one failed task (module_runner.py)."""

import errno

import pytest

from ansible_collections.fleettrace.tracefs.plugins.module_utils import bounded, module_runner, procfs, uprobe_plans
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import (
    cfi, cli, debuginfo, debuginfod, function_index, location, probe_spec, skim, typeinfo)
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf import cache as dwarf_cache
from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.errors import DwarfError, ResolveError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.elf.reader import ElfError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import FleettraceError, OptionError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.report.document import ReportError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.sched.collector import WindowAbandoned
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.error_log import TracefsError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.runs.manifest import OwnershipError
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.validate import ValidationError


class Ended(Exception):
    """What exit_json/fail_json raise in this fake (AnsibleModule's raise SystemExit)."""

    def __init__(self, how, result):
        super().__init__(how)
        self.how = how
        self.result = result


class FakeModule:
    _name = "fleettrace.tracefs.fake"

    def __init__(self, argument_spec, **options):
        self.params = {}
        self.options = options

    def exit_json(self, **result):
        raise Ended("exit", result)

    def fail_json(self, msg, **result):
        result["msg"] = msg
        raise Ended("fail", result)


@pytest.fixture(autouse=True)
def fake_ansible_module(monkeypatch):
    monkeypatch.setattr(module_runner, "AnsibleModule", FakeModule)


def run(body, result=None):
    with pytest.raises(Ended) as ended:
        module_runner.run_module({}, body, result=result, supports_check_mode=True)
    return ended.value.how, ended.value.result


def test_every_error_the_core_raises_on_purpose_has_one_root():
    classes = [TracefsError, ValidationError, OwnershipError, procfs.ProcessGone, WindowAbandoned, ReportError,
               uprobe_plans.PlanError, ElfError, probe_spec.ProbeSpecError, function_index.IndexBuildError,
               cfi.CfiError, debuginfod.DebuginfodError, location.LocationError, location.OptimizedOut,
               typeinfo.TypeError_, debuginfo.DebugInfoError, skim.SkimError, ResolveError, bounded.FileRefused,
               OptionError]
    assert all(issubclass(cls, FleettraceError) for cls in classes)
    # The resolver's family under DwarfError; callers that caught ValueError or ElfError still do.
    assert all(issubclass(cls, DwarfError) for cls in (ResolveError, probe_spec.ProbeSpecError,
                                                       debuginfo.DebugInfoError, location.OptimizedOut))
    assert issubclass(debuginfo.DebugInfoError, ElfError)
    assert all(issubclass(cls, ValueError) for cls in (ValidationError, ReportError, bounded.FileRefused,
                                                       probe_spec.ProbeSpecError))


def test_a_fleettrace_error_becomes_msg_hint_and_error_log_with_the_result_so_far():
    def body(_module, result):
        result["commands"] = ["echo 1 > tracing_on"]
        raise FleettraceError("the kernel refused the filter", hint="quote the string",
                              error_log=["[  1.0] event filter parse error: error: Invalid operator"])

    how, result = run(body)
    assert how == "fail"
    assert result["msg"] == "the kernel refused the filter; quote the string"
    assert result["hint"] == "quote the string"
    assert result["error_log"] == ["[  1.0] event filter parse error: error: Invalid operator"]
    assert result["commands"] == ["echo 1 > tracing_on"] and result["changed"] is False


def test_a_tracefs_error_keeps_its_error_log_through_a_reworded_message():
    def body(_module, _result):
        try:
            raise TracefsError("kernel refused it", ["line 1"])
        except FleettraceError as exc:
            raise exc.reworded("adding the probe failed: %s" % exc.message)

    _how, result = run(body)
    assert result["msg"] == "adding the probe failed: kernel refused it"
    assert result["error_log"] == ["line 1"] and "hint" not in result


def test_an_unexpected_exception_is_named_as_a_bug_with_its_traceback():
    def body(_module, _result):
        return {}["missing"]

    how, result = run(body)
    assert how == "fail"
    assert "unexpected KeyError in fleettrace.tracefs.fake: 'missing'" in result["msg"]
    assert "bug" in result["msg"] and "Unknown error" not in result["msg"]
    assert "Traceback" in result["exception"] and "KeyError" in result["exception"]


def test_an_os_error_names_the_file_and_says_to_run_as_root_when_refused():
    def body(_module, _result):
        raise PermissionError(errno.EACCES, "Permission denied", "/sys/kernel/tracing/instances/x")

    _how, result = run(body)
    assert result["msg"] == ("/sys/kernel/tracing/instances/x: Permission denied; run as root "
                             "(become: true or -b)")


def test_the_body_exits_with_the_result_it_fills_or_returns():
    assert run(lambda _m, result: result.update(changed=True, x=1)) == ("exit", {"changed": True, "x": 1})
    assert run(lambda _m, _r: {"changed": False, "y": 2}, result={"x": 1}) == ("exit", {"changed": False, "y": 2})


def test_the_command_line_catches_resolver_errors_by_type_one_line_each(monkeypatch, capsys):
    """NoCode is a ResolveError: one line on stderr, exit 1, the next spec still resolved (no traceback)."""
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.dwarf.points import NoCode

    def fake_resolve(binary, spec, **_options):
        if spec == "inline_only:3":
            raise NoCode("inline_only:3 has no code in any inlined copy\nof inline_only")
        return {"definitions": ["p:probe_x/ok /bin/x:0x10"]}

    monkeypatch.setattr(dwarf_cache, "cached_resolve", fake_resolve)
    assert cli.main(["-x", "/bin/x", "inline_only:3", "ok"]) == 1
    out, err = capsys.readouterr()
    assert err == "error: inline_only:3 has no code in any inlined copy of inline_only\n"
    assert out == "p:probe_x/ok /bin/x:0x10\n"


def test_a_check_mode_answer_ends_the_module_unchanged_listing_its_commands():
    from ansible_collections.fleettrace.tracefs.plugins.module_utils.errors import CheckModeAnswer

    def body(_module, _result):
        raise CheckModeAnswer("check mode: tracefs is not mounted", ["mount -t tracefs nodev /sys/kernel/tracing"])

    how, result = run(body, result={"name": "x"})
    assert how == "exit"
    assert result == {"changed": True, "name": "x", "commands": ["mount -t tracefs nodev /sys/kernel/tracing"],
                      "msg": "check mode: tracefs is not mounted"}
