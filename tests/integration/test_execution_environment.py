"""The execution environment definition: ansible-builder accepts it, with ranges, and the right system packages.

`ansible-builder create` (3.x) writes the build context from
execution-environment/ (scripts/ee.sh); its own introspection script, run on
the collection installed from the built tarball, must find the collection's
Python requirements and only the controller's system packages.
"""

import json
import os
import re
import subprocess
import tarfile

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
    chosen = subprocess.run([BINDEP, "-f", str(system), "-l", "newline"], capture_output=True, text=True).stdout.split()
    assert chosen == ["openssh-client"], chosen
