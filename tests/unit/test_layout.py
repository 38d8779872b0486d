"""The layout rules of docs/DEVELOPING.md, checked on the tree: who may import whom, file sizes."""

import ast
import os
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE_UTILS = os.path.join(REPO, "plugins", "module_utils")
PREFIX = "ansible_collections.fleettrace.tracefs.plugins.module_utils"
WARN_LINES = 400     # a warning, not a limit: see test_long_files_are_named_not_trimmed

# What each part of module_utils may import from the others (itself and BASE always allowed).
# Lower layers never import higher ones: tracefs and elf know nothing of traces, runs or reports.
# BASE is the ground floor every part may use: the error root and the bounded readers.
BASE = {"errors", "probe_definition", "bounded", "series", "input_limits"}
ALLOWED = {
    "errors": set(),
    "probe_definition": set(),
    "input_limits": set(),
    "bounded": set(),
    "series": set(),
    "tracefs": set(),
    "elf": set(),
    "procfs": {"elf"},
    "mapped_code": {"procfs", "elf"},
    "runs": {"tracefs", "procfs"},
    "dwarf": {"elf"},
    "trace": {"tracefs", "procfs", "elf", "mapped_code", "runs"},
    "sched": {"trace", "tracefs", "procfs", "elf"},
    "report": {"trace"},
    "uprobe_plans": {"tracefs", "dwarf", "elf", "mapped_code"},
    "sentinel": {"runs", "trace", "tracefs", "procfs", "elf", "uprobe_plans"},
    # Imported only by plugins/modules/: the one place a module ends (fail_json), and the
    # one file under module_utils/ that imports Ansible.
    "module_runner": set(),
}
ANSIBLE_ALLOWED = {"module_runner"}


def _part(relative):
    """'tracefs/core.py' -> 'tracefs'; 'procfs.py' -> 'procfs'."""
    first = relative.split(os.sep)[0]
    return first[:-3] if first.endswith(".py") else first


def _python_files(top):
    for root, _dirs, names in os.walk(top):
        for name in sorted(names):
            if name.endswith(".py"):
                yield os.path.join(root, name)


def _imports(path):
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def _targets(module, names):
    """The module_utils parts an import statement reaches."""
    if not module.startswith(PREFIX):
        return []
    rest = module[len(PREFIX):].lstrip(".")
    if rest:
        return [rest.split(".")[0]]
    return list(names)  # from PREFIX import procfs, tracefs


def test_parts_import_only_what_the_map_allows():
    wrong = []
    for path in _python_files(MODULE_UTILS):
        relative = os.path.relpath(path, MODULE_UTILS)
        part = _part(relative)
        if part == "__init__":
            continue
        assert part in ALLOWED, "%s is not in the map of docs/DEVELOPING.md (tests/unit/test_layout.py)" % relative
        for module, names in _imports(path):
            if module.split(".")[0] == "ansible" and part not in ANSIBLE_ALLOWED:
                wrong.append("%s imports %s: the core never imports Ansible" % (relative, module))
            for target in _targets(module, names):
                if target != part and target not in ALLOWED[part] | BASE:
                    wrong.append("%s (%s) imports %s, which the map does not allow" % (relative, part, target))
    assert not wrong, "\n".join(wrong)


def test_long_files_are_named_not_trimmed():
    """Long files are a prompt to look for two purposes in one file, never a limit to trim to:
    each file above WARN_LINES is named in a warning (``pytest -rw`` shows them), nothing fails."""
    long_files = []
    for path in _python_files(os.path.join(REPO, "plugins")):
        with open(path) as handle:
            count = sum(1 for _line in handle)
        if count > WARN_LINES:
            long_files.append("%s: %d lines" % (os.path.relpath(path, REPO), count))
    if long_files:
        warnings.warn(UserWarning("files above %d lines: does each do one thing? (split by purpose, never trim)\n%s"
                                  % (WARN_LINES, "\n".join(long_files))))


def test_tests_import_helpers_not_other_test_modules():
    wrong = []
    for path in _python_files(os.path.join(REPO, "tests")):
        for module, _names in _imports(path):
            leaf = module.split(".")[-1]
            if leaf.startswith("test_") or leaf == "conftest":
                wrong.append("%s imports %s: shared test code belongs in tests/helpers"
                             % (os.path.relpath(path, REPO), module))
    assert not wrong, "\n".join(wrong)


def _dotted(node):
    """'module.fail_json' for the callee of a call; '' for anything not a plain (dotted) name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return "%s.%s" % (_dotted(node.value), node.attr)
    return ""


def _calls(path):
    """(line, dotted callee) of every call in ``path``."""
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node.lineno, _dotted(node.func)


def test_only_the_runner_ends_a_module_with_fail_json():
    """Every module runs through module_runner.run_module; no other file calls fail_json."""
    wrong = []
    for path in _python_files(os.path.join(REPO, "plugins")):
        relative = os.path.relpath(path, REPO)
        if relative == os.path.join("plugins", "module_utils", "module_runner.py"):
            continue
        for line, callee in _calls(path):
            if callee.endswith("fail_json") or callee == "AnsibleModule":
                wrong.append("%s:%d calls %s: raise a FleettraceError and let module_runner end the module"
                             % (relative, line, callee))
    modules = os.path.join(REPO, "plugins", "modules")
    for name in sorted(os.listdir(modules)):
        path = os.path.join(modules, name)
        with open(path) as handle:
            text = handle.read()
        if name.endswith(".py") and "def main(" in text and "run_module(" not in text:
            wrong.append("plugins/modules/%s does not run through module_runner.run_module" % name)
    assert not wrong, "\n".join(wrong)


def test_errors_are_caught_by_type():
    """No class-name string comparisons, no ``getattr(exc, "message", ...)``: every error has a message."""
    wrong = []
    for path in _python_files(os.path.join(REPO, "plugins")):
        with open(path) as handle:
            for number, text in enumerate(handle, 1):
                if "__name__ !=" in text or "__name__ not in" in text or "__name__ in (" in text \
                        or 'getattr(exc, "message"' in text:
                    wrong.append("%s:%d: %s" % (os.path.relpath(path, REPO), number, text.strip()))
    assert not wrong, "\n".join(wrong)
