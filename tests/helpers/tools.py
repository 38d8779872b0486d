"""The external tools scripts/tools.sh installs (cached outside the checkout), found the way it installs them."""

import os
import subprocess

from tests.helpers.paths import REPO

TOOLS_SH = os.path.join(REPO, "scripts", "tools.sh")


def tool_path(name, must_exist="bin/python"):
    """Path of one tool of scripts/tools.sh (a venv directory, or promtool itself).

    Fails, saying how to get it, when it is not installed: CI's setup installs it,
    so a missing tool is a broken setup, not a reason to skip.
    """
    path = subprocess.run(["bash", TOOLS_SH, "path", name], capture_output=True, text=True, check=True).stdout.strip()
    probe = os.path.join(path, must_exist) if must_exist else path
    if not os.access(probe, os.X_OK):
        raise AssertionError("%s is not installed at %s: run scripts/tools.sh (scripts/setup.sh does)" % (name, path))
    return path


def clean_env(home, path_first):
    """A minimal environment: no ANSIBLE_* or venv of ours leaks into a tool that brings its own."""
    return {"HOME": str(home), "PATH": os.pathsep.join([path_first, "/usr/sbin", "/usr/bin", "/sbin", "/bin"]),
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def promtool_problems(text):
    """What ``promtool check metrics`` says about a .prom text: [] when it is clean (exit 0, no lint)."""
    return promtool_problems_of({"text": text})["text"]


def promtool_problems_of(texts):
    """``promtool_problems`` of each of ``{name: text}``, the promtools running side by side (each takes ~2 s)."""
    promtool = tool_path("promtool", must_exist=None)
    procs = {name: subprocess.Popen([promtool, "check", "metrics"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True) for name in texts}
    found = {}
    for name, proc in procs.items():
        output = proc.communicate(texts[name], timeout=120)[0]
        said = [line for line in output.splitlines() if line.strip()]
        found[name] = said if said or proc.returncode == 0 else ["exit %d" % proc.returncode]
    return found
