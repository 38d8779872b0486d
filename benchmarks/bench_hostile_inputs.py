"""How fast huge inputs are refused: 10^6 event pids, a 100 MB filter, 10^5 triggers.

For each case, two numbers side by side:

* module: the module alone, run the way AnsiballZ runs it (the arguments handed
  over as ``basic._ANSIBLE_ARGS``), in a child process: wall seconds, peak RSS,
  the size of its answer, and its message.  With ``--before COMMIT`` the same
  for the collection at that commit (``git archive``, nothing else touched),
  cut off at ``--limit`` seconds;
* play: ``ansible-playbook`` end to end against localhost, the value given as
  an extra-vars file: what an operator waits for; next to it the same value
  given to ``ansible.builtin.debug`` (no module runs at all): Ansible's own
  work on the controller to load and template such a value.

The instance the cases name exists during the run (registered as a run of this
process first, removed at the end), so that the old code gets as far as it did
in a real play.

    .venv/bin/python benchmarks/bench_hostile_inputs.py [--before COMMIT] [--limit 300] [--no-play]

Results: benchmarks/results/hostile_inputs.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, ".cache", "collections"))
from ansible_collections.fleettrace.tracefs.plugins.module_utils.tracefs.core import Tracefs  # noqa: E402
from tests.helpers.owned import OwnedRun  # noqa: E402

VENV_BIN = os.path.join(REPO, ".venv", "bin")
RESULTS = os.path.join(REPO, "benchmarks", "results", "hostile_inputs.json")
INSTANCE = "fleettrace_bench_hostile"

CASES = {
    "1e6 event pids": ("instance", "event_pids", lambda: list(range(1, 1000001)), {"name": INSTANCE}),
    "100 MB filter": ("event", "filter", lambda: "prev_pid > 0 && " * (100 * 1024 * 1024 // 16),
                      {"instance": INSTANCE, "event": "sched:sched_switch"}),
    "1e5 triggers": ("event", "triggers", lambda: ["stacktrace if prev_pid == %d" % i for i in range(100000)],
                     {"instance": INSTANCE, "event": "sched:sched_switch"}),
}

# Runs the module as AnsiballZ does: the arguments already in basic._ANSIBLE_ARGS.
RUNNER = r"""
import contextlib, io, json, runpy, sys, time
sys.path.insert(0, sys.argv[1])
from ansible.module_utils import basic
basic._ANSIBLE_ARGS = open(sys.argv[3], "rb").read()
basic._ANSIBLE_PROFILE = "legacy"
out = io.StringIO()
start = time.monotonic()
try:
    with contextlib.redirect_stdout(out):
        runpy.run_path(sys.argv[2], run_name="__main__")
except SystemExit:
    pass
took = time.monotonic() - start
answer = out.getvalue()
try:
    msg = json.loads(answer).get("msg", "")
except ValueError:
    msg = answer[:200]
# VmHWM: this process's peak (ru_maxrss would include the parent's memory the fork copied before exec).
peak = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(json.dumps({"seconds": round(took, 3), "answer_bytes": len(answer), "message": msg[:200],
                  "max_rss_mb": peak // 1024}))
"""


def collection_root(tree, scratch):
    """A directory holding ansible_collections/fleettrace/tracefs -> tree."""
    root = os.path.join(scratch, "collections-%d" % len(os.listdir(scratch)))
    os.makedirs(os.path.join(root, "ansible_collections", "fleettrace"))
    os.symlink(tree, os.path.join(root, "ansible_collections", "fleettrace", "tracefs"))
    return root


def module_side(tree, scratch, module, args_path, limit):
    root = collection_root(tree, scratch)
    module_path = os.path.join(tree, "plugins", "modules", module + ".py")
    try:
        proc = subprocess.run([os.path.join(VENV_BIN, "python"), "-c", RUNNER, root, module_path, args_path],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "message": "no answer within %d s" % limit}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"seconds": None, "message": (proc.stderr or proc.stdout)[-300:]}


def play_side(module, option, fixed, vars_path, scratch):
    """Seconds of a play giving the value to ``module`` (``None``: to ansible.builtin.debug, nothing shipped)."""
    play = os.path.join(scratch, "play-%s.yml" % option)
    if module is None:
        task = {"name": "huge", "ansible.builtin.debug": {"msg": "{{ huge | length }}"}}
    else:
        task = {"name": "huge", "fleettrace.tracefs.%s" % module: dict(fixed, **{option: "{{ huge }}"}),
                "ignore_errors": True}
    with open(play, "w") as handle:
        json.dump([{"hosts": "localhost", "gather_facts": False, "tasks": [task]}], handle)
    inventory = os.path.join(scratch, "inventory.ini")
    with open(inventory, "w") as handle:
        handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                     % os.path.join(VENV_BIN, "python"))
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
    before = resource_usage()
    start = time.monotonic()
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, "-e", "@" + vars_path, play],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    after = resource_usage()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": round(time.monotonic() - start, 1), "cpu_seconds": round(cpu, 1),
            "refused": "Nothing was changed" in proc.stdout, "output_bytes": len(proc.stdout)}


def resource_usage():
    import resource
    return resource.getrusage(resource.RUSAGE_CHILDREN)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="also time the modules of this commit (git archive)")
    parser.add_argument("--limit", type=int, default=300, help="seconds before a module run is cut off")
    parser.add_argument("--no-play", action="store_true", help="only the module side")
    options = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="fleettrace-bench-hostile-")
    rows = {}
    fs = Tracefs()
    run = OwnedRun(fs, instances=[INSTANCE], seconds=7200, what="benchmark process")
    try:
        fs.instance(INSTANCE).create()
        before_tree = None
        if options.before:
            before_tree = os.path.join(scratch, "before")
            os.makedirs(before_tree)
            archive = subprocess.run(["git", "-C", REPO, "archive", options.before], stdout=subprocess.PIPE, check=True)
            subprocess.run(["tar", "-x", "-C", before_tree], input=archive.stdout, check=True)
        for name, (module, option, make, fixed) in CASES.items():
            value = make()
            args_path = os.path.join(scratch, "args.json")
            with open(args_path, "w") as handle:
                json.dump({"ANSIBLE_MODULE_ARGS": dict(fixed, **{option: value})}, handle)
            row = {"module": module_side(REPO, scratch, module, args_path, options.limit)}
            if before_tree:
                row["module_before"] = module_side(before_tree, scratch, module, args_path, options.limit)
            if not options.no_play:
                vars_path = os.path.join(scratch, "vars.json")
                with open(vars_path, "w") as handle:
                    json.dump({"huge": value}, handle)
                row["play"] = play_side(module, option, fixed, vars_path, scratch)
                row["play_debug_only"] = play_side(None, option, fixed, vars_path, scratch)
            rows[name] = row
            print("%-16s module %s s (%s MB, %s B answer)%s%s" % (
                name, row["module"]["seconds"], row["module"].get("max_rss_mb"), row["module"].get("answer_bytes"),
                "; before %s s (%s MB, %s B answer)" % (
                    row["module_before"]["seconds"], row["module_before"].get("max_rss_mb"),
                    row["module_before"].get("answer_bytes")) if "module_before" in row else "",
                "; play %s s wall, %s s CPU (the value to debug only: %s s, %s s CPU)" % (
                    row["play"]["seconds"], row["play"]["cpu_seconds"], row["play_debug_only"]["seconds"],
                    row["play_debug_only"]["cpu_seconds"]) if "play" in row else ""))
            print("    %s" % row["module"]["message"])
    finally:
        run.end()
        shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as handle:
        json.dump(rows, handle, indent=1, sort_keys=True)
        handle.write("\n")
    print("results: %s" % RESULTS)


if __name__ == "__main__":
    sys.exit(main())
