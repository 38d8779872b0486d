"""The execution environment definition: ansible-builder accepts it, with ranges, and the right system packages.

`ansible-builder create` (3.x) writes the build context from
execution-environment/ (scripts/ee.sh); its own introspection script, run on
the collection installed from the built tarball, must find the collection's
Python requirements and only the controller's system packages.
"""

import json
import os
import re
import shutil
import subprocess
import tarfile

import pytest
import yaml

from tests.helpers.paths import REPO, VENV_BIN

BINDEP = os.path.join(VENV_BIN, "bindep")


def bindep(*profiles):
    proc = subprocess.run([BINDEP, "-f", os.path.join(REPO, "bindep.txt"), "-l", "newline"] + list(profiles),
                          capture_output=True, text=True, check=False)
    return sorted(proc.stdout.split())


def test_bindep_profiles_split_controller_and_node():
    # ansible-builder asks for the default profile: the controller's packages, nothing for the nodes or tests.
    assert bindep() == bindep("controller") == ["openssh-client"]
    assert bindep("node") == ["python3", "util-linux"]
    with open(os.path.join(REPO, "bindep.txt")) as handle:
        entries = [line.split()[0] for line in handle if line.strip() and not line.startswith("#")]
    for tool in ("gcc", "linux-perf", "trace-cmd", "fuse3", "libfuse3-dev"):
        assert tool not in entries, "%s is a test tool: scripts/setup.sh installs it" % tool


def test_ee_files_name_ranges_not_pins():
    with open(os.path.join(REPO, "requirements.txt")) as handle:
        lines = [line.split("#")[0].strip() for line in handle]
    requirements = [line for line in lines if line]
    assert requirements and not [line for line in requirements if "==" in line], requirements
    with open(os.path.join(REPO, "execution-environment", "execution-environment.yml")) as handle:
        definition = yaml.safe_load(handle)
    assert definition["version"] == 3
    for key in ("ansible_core", "ansible_runner"):
        spec = definition["dependencies"][key]["package_pip"]
        assert re.search(r">=[0-9.]+,<[0-9.]+$", spec), spec
    with open(os.path.join(REPO, "meta", "execution-environment.yml")) as handle:
        assert yaml.safe_load(handle)["dependencies"] == {"python": "requirements.txt", "system": "bindep.txt"}


def test_ansible_builder_create_accepts_the_definition(tmp_path):
    context = tmp_path / "context"
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "ee.sh"), "context", str(context)],
                          capture_output=True, text=True, timeout=600, check=False,
                          env=dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ["PATH"]))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    containerfile = (context / "Containerfile").read_text()
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2.16,<2.20 ansible-runner>=2.3,<3"' in containerfile
    assert "RUN $PYCMD /output/scripts/introspect.py introspect" in containerfile
    # The collection goes in as the tarball ansible-galaxy built, at this checkout's version.
    tarball = context / "_build" / "collections" / "fleettrace-tracefs.tar.gz"
    with tarfile.open(str(tarball)) as archive:
        manifest = json.load(archive.extractfile("MANIFEST.json"))
    with open(os.path.join(REPO, "galaxy.yml")) as handle:
        assert manifest["collection_info"]["version"] == yaml.safe_load(handle)["version"]
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert requirements["collections"] == [{"name": "/build/collections/fleettrace-tracefs.tar.gz", "type": "file"}]

    # What the image's builder stage will find: ansible-builder's introspection on the installed collection.
    installed = tmp_path / "installed"
    subprocess.run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "install", "--force", "-p", str(installed),
                    str(tarball)], check=True, capture_output=True)
    found = subprocess.run([os.path.join(VENV_BIN, "python"), str(context / "_build" / "scripts" / "introspect.py"),
                            "introspect", str(installed)], capture_output=True, text=True, check=True).stdout
    data = yaml.safe_load(found)
    python = [line.split("#")[0].strip() for line in data["python"]]
    assert python == ["pyelftools>=0.29,<1", "jmespath>=1.0,<2", "prometheus-client>=0.16,<1"], data["python"]
    # The image's assemble step then installs bindep's default profile of these lines: the controller's.
    system = tmp_path / "bindep.txt"
    system.write_text("\n".join(line.split("#")[0].strip() for line in data["system"]) + "\n")
    chosen = subprocess.run([BINDEP, "-f", str(system), "-l", "newline"], capture_output=True, text=True,
                            check=False).stdout.split()
    assert chosen == ["openssh-client"], chosen


# Building the image takes minutes and a container engine: run with FLEETTRACE_EE_BUILD=1 (podman; the base
# image from `scripts/ee.sh debian-base`). On this kind of machine crun cannot run in its hybrid cgroups and
# podman's default ulimits exceed the machine's: FLEETTRACE_PODMAN_ARGS below.
PODMAN_ARGS = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


@pytest.mark.skipif(os.environ.get("FLEETTRACE_EE_BUILD") != "1", reason="set FLEETTRACE_EE_BUILD=1 to build the image")
def test_image_resolves_a_probe_without_tracefs_or_root(tmp_path, cc):
    if not shutil.which("podman"):
        pytest.fail("FLEETTRACE_EE_BUILD=1 needs podman (apt-get install podman runc debootstrap)")
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ["PATH"], FLEETTRACE_PODMAN_ARGS=" ".join(PODMAN_ARGS))
    have_base = subprocess.run(["podman", "image", "exists", "localhost/fleettrace-ee-base:bookworm"], check=False)
    if have_base.returncode != 0:
        subprocess.run(["bash", os.path.join(REPO, "scripts", "ee.sh"), "debian-base"], env=env, check=True,
                       capture_output=True, timeout=1800)
    tag = "localhost/fleettrace-ee-test"
    built = subprocess.run(["bash", os.path.join(REPO, "scripts", "ee.sh"), "build-on-debian", tag], env=env,
                           capture_output=True, text=True, timeout=1800, check=False)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-2000:]
    bins = tmp_path / "bins"
    bins.mkdir()
    binary = bins / "demo_daemon"
    subprocess.run([cc, "-g", "-O2", "-o", str(binary), os.path.join(REPO, "tests", "programs", "demo", "demo_daemon.c")],
                   check=True)
    os.chmod(str(tmp_path), 0o755)
    os.chmod(str(bins), 0o755)
    spec = "timer_function_scheduler_timeout:15 tv_diff=tv_diff:u64"
    # In the container: its own user, no network, no tracefs mounted; the binary read-only.
    script = ("id -u; test -e /sys/kernel/tracing/README && echo TRACEFS || echo NO-TRACEFS; "
              "ANSIBLE_STDOUT_CALLBACK=ansible.builtin.minimal ansible localhost -m fleettrace.tracefs.probe_info "
              "-a 'binary=/bins/demo_daemon spec=\"%s\" resolve=true group=g1 event=tick'" % spec)
    ran = subprocess.run(["podman"] + PODMAN_ARGS[:2] + ["run", "--rm"] + PODMAN_ARGS[2:] +
                         ["--network=none", "-v", "%s:/bins:ro" % bins, tag, "sh", "-c", script],
                         capture_output=True, text=True, timeout=600, check=False)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    lines = ran.stdout.splitlines()
    assert lines[0] != "0" and lines[1] == "NO-TRACEFS", lines[:2]
    inside = json.loads(ran.stdout[ran.stdout.index("{"):])
    # The same lines as resolving on this host, the container's path in them.
    here = subprocess.run([os.path.join(VENV_BIN, "ansible"), "localhost", "-m", "fleettrace.tracefs.probe_info", "-a",
                           'binary=%s spec="%s" resolve=true group=g1 event=tick' % (binary, spec)],
                          env=dict(env, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal"),
                          capture_output=True, text=True, check=True, timeout=300)
    on_host = json.loads(here.stdout[here.stdout.index("{"):])
    assert inside["definitions"] and inside["definitions"] == [
        line.replace(str(binary), "/bins/demo_daemon") for line in on_host["definitions"]]
