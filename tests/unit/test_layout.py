"""The layout rules of docs/DEVELOPING.md, checked on the tree: who may import whom, file sizes."""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE_UTILS = os.path.join(REPO, "plugins", "module_utils")
PREFIX = "ansible_collections.fleettrace.tracefs.plugins.module_utils"
MAX_LINES = 500

# What each part of module_utils may import from the others (itself and BASE always allowed).
# Lower layers never import higher ones: tracefs and elf know nothing of traces or reports.
BASE = {"bounded", "series"}
ALLOWED = {
    "bounded": set(),
    "series": set(),
    "tracefs": set(),
    "elf": set(),
    "procfs": {"elf"},
    "mapped_code": {"procfs", "elf"},
    "dwarf": {"elf"},
    "trace": {"tracefs", "procfs", "elf", "mapped_code"},
    "sched": {"trace", "tracefs", "procfs", "elf"},
    "report": {"trace"},
    "uprobe_plans": {"tracefs", "dwarf", "elf", "mapped_code"},
    "sentinel": {"trace", "tracefs", "procfs", "elf", "uprobe_plans"},
}


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
            if module.split(".")[0] == "ansible":
                wrong.append("%s imports %s: the core never imports Ansible" % (relative, module))
            for target in _targets(module, names):
                if target != part and target not in ALLOWED[part] | BASE:
                    wrong.append("%s (%s) imports %s, which the map does not allow" % (relative, part, target))
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("top", ["plugins"])
def test_no_file_above_the_size_limit(top):
    big = []
    for path in _python_files(os.path.join(REPO, top)):
        with open(path) as handle:
            count = sum(1 for _line in handle)
        if count > MAX_LINES:
            big.append("%s: %d lines" % (os.path.relpath(path, REPO), count))
    assert not big, "files above %d lines (split them by what they do):\n%s" % (MAX_LINES, "\n".join(big))


def test_tests_import_helpers_not_other_test_modules():
    wrong = []
    for path in _python_files(os.path.join(REPO, "tests")):
        for module, _names in _imports(path):
            leaf = module.split(".")[-1]
            if leaf.startswith("test_") or leaf == "conftest":
                wrong.append("%s imports %s: shared test code belongs in tests/helpers"
                             % (os.path.relpath(path, REPO), module))
    assert not wrong, "\n".join(wrong)
