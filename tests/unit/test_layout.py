"""The layout rules of docs/DEVELOPING.md, checked on the tree: who may import whom, no import cycles,
plain absolute imports only, tests sharing code through tests/helpers, file sizes.

Each rule is a function over source text, so the ``test_*_rule_*`` tests below plant an example
that breaks it and prove the rule sees it."""

import ast
import os
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE_UTILS = os.path.join(REPO, "plugins", "module_utils")
PREFIX = "ansible_collections.fleettrace.tracefs.plugins.module_utils"
WARN_LINES = 380     # a warning, not a limit: see test_long_files_are_named_not_trimmed
MODULE_DOCS = ("DOCUMENTATION", "EXAMPLES", "RETURN")

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
    "procfs": set(),
    "process_target": {"procfs"},
    "mapped_code": {"procfs", "elf"},
    "runs": {"tracefs", "procfs"},
    "dwarf": {"elf"},
    "trace": {"tracefs", "procfs", "elf", "mapped_code", "runs"},
    "sched": {"trace", "tracefs", "procfs", "elf"},
    "report": {"trace"},
    "uprobe_plans": {"tracefs", "dwarf", "elf", "mapped_code"},
    "probe_lookup": {"uprobe_plans", "dwarf"},
    "probe_for_nodes": {"probe_lookup"},
    "corosync_threshold": set(),
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


def code_lines(text, is_module):
    """Lines of a plugin file that are not a module's DOCUMENTATION, EXAMPLES and RETURN (its docs)."""
    lines = text.count("\n")
    if not is_module:
        return lines
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in MODULE_DOCS for t in node.targets):
            lines -= node.end_lineno - node.lineno + 1
    return lines


def says_why_one_piece(text):
    """Whether the file's docstring (a module's: a leading comment) says why it is one piece."""
    docstring = ast.get_docstring(ast.parse(text)) or ""
    comments = " ".join(line for line in text.splitlines()[:12] if line.startswith("#"))
    return "one piece" in (docstring + " " + comments).lower()


def long_files(top):
    """'path: N lines' of the files under ``top`` above WARN_LINES that do not say why they are one piece."""
    found = []
    for path in _python_files(top):
        with open(path) as handle:
            text = handle.read()
        count = code_lines(text, os.sep + "modules" + os.sep in path)
        if count > WARN_LINES and not says_why_one_piece(text):
            found.append("%s: %d lines" % (os.path.relpath(path, REPO), count))
    return found


def documented_map(text):
    """{part: set it may import} from the table of docs/DEVELOPING.md ("Where things live")."""
    found = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) < 4 or not cells[1].startswith("`"):
            continue
        parts = [name.strip("`/ ")[:-3] if name.strip("`/ ").endswith(".py") else name.strip("`/ ")
                 for name in cells[1].split(",")]
        if not all(part in ALLOWED for part in parts):
            continue            # the table of paths below it
        may = set() if cells[-2] in ("—", "any part may import them") else {
            name.strip("` ") for name in cells[-2].split(",")}
        for part in parts:
            found[part] = may
    return found


def test_the_documented_map_is_the_checked_map():
    with open(os.path.join(REPO, "docs", "DEVELOPING.md")) as handle:
        documented = documented_map(handle.read())
    differ = sorted(part for part in set(documented) | set(ALLOWED) if documented.get(part) != ALLOWED.get(part))
    assert not differ, "docs/DEVELOPING.md and ALLOWED (tests/unit/test_layout.py) differ for: %s" % ", ".join(differ)


def test_map_rule_sees_a_documented_arrow_the_code_does_not_allow():
    table = "| `procfs.py` | facts | `elf` |\n| `report/` | the report | `trace` |\n"
    assert documented_map(table) == {"procfs": {"elf"}, "report": {"trace"}}


def test_long_files_are_named_not_trimmed():
    """Long files are a prompt to look for two purposes in one file, never a limit to trim to:
    each file above WARN_LINES lines of code whose docstring does not say why it is one piece is
    named in a warning (``pytest -rw`` shows them), nothing fails."""
    found = long_files(os.path.join(REPO, "plugins"))
    if found:
        warnings.warn(UserWarning("files above %d lines: does each do one thing? (split by purpose, never trim; "
                                  "or say in the docstring why it is one piece)\n%s" % (WARN_LINES, "\n".join(found))))


def test_long_file_rule_counts_code_and_reads_the_reason(tmp_path):
    body = "x = 1\n" * (WARN_LINES + 5)
    (tmp_path / "plain.py").write_text('"""Two things."""\n' + body)
    (tmp_path / "explained.py").write_text('"""One piece: one loop and its state."""\n' + body)
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "mod.py").write_text('DOCUMENTATION = r"""\n' + "doc\n" * (WARN_LINES + 5) + '"""\nx = 1\n')
    assert [line.split(":")[0].split(os.sep)[-1] for line in long_files(str(tmp_path))] == ["plain.py"]


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


# -- import cycles, relative imports, importlib, tests/programs ------------------------------------
COLLECTION = "ansible_collections.fleettrace.tracefs"
# Dynamic imports hide a dependency from the map, from the cycle check and from Ansible's module
# packer.  The one exception imports no module of ours: loader.py defers the standard-library
# modules pyelftools imports only to print (pprint, pdb) and the parts of pyelftools a resolution
# rarely calls (line programs, call frames), a saving in every module run.
DYNAMIC_IMPORT_ALLOWED = {os.path.join("plugins", "module_utils", "dwarf", "loader.py"): {"__import__"}}


def _module_name(relative):
    """'plugins/module_utils/dwarf/cache.py' -> 'plugins.module_utils.dwarf.cache' (a package: its __init__)."""
    name = relative[:-3].replace(os.sep, ".")
    return name[:-len(".__init__")] if name.endswith(".__init__") else name


def _sources(top):
    """{module name: source text} of every .py file under ``top`` (a directory of REPO)."""
    found = {}
    for path in _python_files(os.path.join(REPO, top)):
        with open(path) as handle:
            found[_module_name(os.path.relpath(path, REPO))] = handle.read()
    return found


def import_graph(sources):
    """{module: {module it imports: line}} among ``sources`` ({module name: text}), counting every
    import statement, also those inside functions (a cycle hidden there is still a cycle)."""
    graph = {}
    for name, text in sources.items():
        edges = graph.setdefault(name, {})
        for node in ast.walk(ast.parse(text, name)):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules = [node.module + "." + alias.name for alias in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                if module.startswith(COLLECTION + "."):
                    module = module[len(COLLECTION) + 1:]
                # "from package import module" names the module; "from module import name" the module
                if module in sources and module != name:
                    edges.setdefault(module, node.lineno)
                    break
    return graph


def import_cycles(graph):
    """One cycle (a list of modules, first repeated at the end) per strongly connected group of ``graph``."""
    order, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        order[node] = low[node] = len(order)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in order:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], order[target])
        if low[node] == order[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in order:
            visit(node)
    cycles = []
    for group in groups:
        start = min(group)
        path, seen = [start], {start}
        while True:     # walk inside the group until a module repeats: that is a cycle
            target = min(t for t in graph[path[-1]] if t in group)
            if target in seen:
                cycles.append(path[path.index(target):] + [target])
                break
            path.append(target)
            seen.add(target)
    return cycles


def _describe(cycle, graph):
    return " -> ".join("%s (line %d)" % (module, graph[module][target]) for module, target in zip(cycle, cycle[1:])) \
        + " -> " + cycle[-1]


def test_no_import_cycles():
    """Counting imports inside functions too: a cycle is broken by moving what both sides share to
    a module both may import (dwarf/cache_dirs.py, dwarf/probe_scope.py), never by hiding it."""
    graph = import_graph(_sources("plugins"))
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_describe(cycle, graph) for cycle in cycles)


def import_rule_breaks(relative, text):
    """What in one file breaks the plain-import rules: relative imports and dynamic imports."""
    wrong = []
    allowed = DYNAMIC_IMPORT_ALLOWED.get(relative, set())
    for node in ast.walk(ast.parse(text, relative)):
        if isinstance(node, ast.ImportFrom) and node.level:
            wrong.append("%s:%d: relative import (from %s%s): import by the full collection path"
                         % (relative, node.lineno, "." * node.level, node.module or ""))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]
            if any(name and name.split(".")[0] == "importlib" for name in names):
                wrong.append("%s:%d: importlib: import statically, so the map and Ansible's packer see it"
                             % (relative, node.lineno))
        elif isinstance(node, ast.Call) and _dotted(node.func) == "__import__" and "__import__" not in allowed:
            wrong.append("%s:%d: __import__(): import statically" % (relative, node.lineno))
    return wrong


def test_imports_are_absolute_and_static():
    wrong = []
    for top in ("plugins", "tests", "benchmarks"):
        for path in _python_files(os.path.join(REPO, top)):
            relative = os.path.relpath(path, REPO)
            with open(path) as handle:
                wrong.extend(import_rule_breaks(relative, handle.read()))
    assert not wrong, "\n".join(wrong)


def program_import_breaks(relative, text, program_modules):
    """Where a test reaches into tests/programs/ for Python: an import of one of ``program_modules``
    (the .py files there) or of ``tests.programs``, or a sys.path entry naming ``programs``."""
    wrong = []
    for node in ast.walk(ast.parse(text, relative)):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Call) and _dotted(node.func).startswith("sys.path."):
            names = []
            if any(isinstance(sub, ast.Constant) and sub.value == "programs" for sub in ast.walk(node)):
                wrong.append("%s:%d: sys.path reaches into tests/programs/" % (relative, node.lineno))
        else:
            continue
        for name in names:
            if name.startswith("tests.programs") or name.split(".")[0] in program_modules:
                wrong.append("%s:%d: imports %s from tests/programs/: shared test code belongs in tests/helpers"
                             % (relative, node.lineno, name))
    return wrong


def _program_modules():
    return {os.path.basename(path)[:-3] for path in _python_files(os.path.join(REPO, "tests", "programs"))}


def test_tests_do_not_import_test_programs():
    """tests/programs/ holds the programs under test; what builds or judges them is in tests/helpers."""
    programs = _program_modules()
    wrong = ["%s: Python in tests/programs/: move it to tests/helpers" % os.path.relpath(path, REPO)
             for path in _python_files(os.path.join(REPO, "tests", "programs"))]
    for top in ("tests", "benchmarks"):
        for path in _python_files(os.path.join(REPO, top)):
            relative = os.path.relpath(path, REPO)
            with open(path) as handle:
                wrong.extend(program_import_breaks(relative, handle.read(), programs))
    assert not wrong, "\n".join(wrong)


# -- each rule sees a planted example ----------------------------------------------------------------
_PKG = COLLECTION + ".plugins.module_utils.pkg"


def test_cycle_rule_sees_a_cycle_through_an_import_inside_a_function():
    sources = {
        "plugins.module_utils.pkg.a": "from %s import b\n" % _PKG,
        "plugins.module_utils.pkg.b": "import os\nfrom %s.c import thing\n" % _PKG,
        "plugins.module_utils.pkg.c": "def thing():\n    from %s import a\n    return a\n" % _PKG,
        "plugins.module_utils.pkg.d": "from %s import a\n" % _PKG,
    }
    graph = import_graph(sources)
    assert import_cycles(graph) == [["plugins.module_utils.pkg.a", "plugins.module_utils.pkg.b",
                                     "plugins.module_utils.pkg.c", "plugins.module_utils.pkg.a"]]
    assert "pkg.c (line 2)" in _describe(import_cycles(graph)[0], graph)
    del sources["plugins.module_utils.pkg.c"]
    assert import_cycles(import_graph(sources)) == []


def test_cycle_rule_sees_two_modules_importing_each_other():
    sources = {"plugins.module_utils.x": "from %s import y\n" % (COLLECTION + ".plugins.module_utils"),
               "plugins.module_utils.y": "import %s.x\n" % (COLLECTION + ".plugins.module_utils")}
    assert len(import_cycles(import_graph(sources))) == 1


def test_import_rule_sees_relative_and_dynamic_imports():
    assert import_rule_breaks("plugins/m.py", "from . import sibling\n")
    assert import_rule_breaks("plugins/m.py", "from ..pkg.mod import name\n")
    assert import_rule_breaks("plugins/m.py", "import importlib\nmod = importlib.import_module('x')\n")
    assert import_rule_breaks("plugins/m.py", "from importlib import import_module\n")
    assert import_rule_breaks("plugins/m.py", "def f():\n    return __import__('json')\n")
    assert not import_rule_breaks("plugins/m.py", "import os\nfrom %s import x\n" % _PKG)


def test_program_rule_sees_a_test_importing_tests_programs():
    programs = {"resolver_programs"}
    planted = ("import os, sys\nsys.path.insert(0, os.path.join(HERE, 'programs', 'resolver'))\n"
               "import resolver_programs\n")
    assert len(program_import_breaks("tests/unit/test_x.py", planted, programs)) == 2
    assert program_import_breaks("tests/unit/test_x.py", "from tests.programs.demo import x\n", set())
    assert not program_import_breaks("tests/unit/test_x.py", "from tests.helpers import resolver_programs\n",
                                     programs)
