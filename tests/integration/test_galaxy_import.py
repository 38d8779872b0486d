"""Galaxy's own importer on the tarball `ansible-galaxy collection build` makes: no errors, no warnings.

galaxy-importer runs in a venv of its own (scripts/tools.sh), with its own
ansible-core and ansible-lint, the way Galaxy and Automation Hub run it on upload.

The project has no public URL yet, so galaxy.yml names no repository (README.md,
"Where the project lives"), and Galaxy requires one: the importer refuses the
tarball for that one field and nothing else.  Publishing means filling it in;
the second test builds the tarball as it would then be and needs a clean import.
"""

import os
import re
import shutil
import subprocess

import yaml

from tests.helpers.paths import REPO, VENV_BIN
from tests.helpers.tools import clean_env, tool_path


def build(source, output):
    subprocess.run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "build", "--force",
                    "--output-path", str(output), str(source)], check=True, capture_output=True, text=True)
    (tarball,) = [os.path.join(str(output), name) for name in os.listdir(str(output)) if name.endswith(".tar.gz")]
    return tarball


def run_importer(tarball, home):
    venv = tool_path("galaxy-importer")
    home.mkdir(exist_ok=True)
    proc = subprocess.run([os.path.join(venv, "bin", "python"), "-m", "galaxy_importer.main", tarball],
                          env=clean_env(home, os.path.join(venv, "bin")), cwd=str(home),
                          capture_output=True, text=True, timeout=600, check=False)
    return proc, proc.stdout + proc.stderr


def problems(log):
    """The importer's ERROR and WARNING lines (ansible-lint's findings come as WARNING too)."""
    return [line for line in log.splitlines() if re.match(r"^\s*(ERROR|WARNING)\b", line)]


def test_tarball_as_built_lacks_only_the_repository_url(tmp_path):
    tarball = build(REPO, tmp_path / "build")
    with open(os.path.join(REPO, "galaxy.yml")) as handle:
        assert "repository" not in yaml.safe_load(handle), "galaxy.yml names a repository: drop this test's premise"
    proc, log = run_importer(tarball, tmp_path / "home")
    assert proc.returncode != 0
    assert problems(log) == ["ERROR: The import failed for the following reason: "
                             "Invalid collection metadata. 'repository' is required"], log[-3000:]


def test_tarball_with_a_repository_url_imports_clean(tmp_path):
    source = tmp_path / "src" / "ansible_collections" / "fleettrace" / "tracefs"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if os.path.isfile(os.path.join(REPO, name)):
            os.makedirs(str(source / os.path.dirname(name)), exist_ok=True)
            shutil.copy2(os.path.join(REPO, name), str(source / name))
    with open(str(source / "galaxy.yml"), "a") as handle:
        handle.write("repository: https://publishing.invalid/fleettrace/tracefs\n")   # the real URL, once there is one
    tarball = build(source, tmp_path / "build")
    proc, log = run_importer(tarball, tmp_path / "home")
    assert proc.returncode == 0, log[-4000:]
    assert "Importer processing completed successfully" in log, log[-4000:]
    assert problems(log) == [], "\n".join(problems(log))
    # It looked at everything: every role, module and the changelog.
    for role in ("report", "sched_audit", "threshold_capture"):
        assert "Loading role %s" % role in log
    assert "Loading module uprobe" in log and "Linting collection via ansible-lint" in log


def test_changelog_has_the_release_galaxy_builds_and_renders_to_changelog_rst(tmp_path):
    """changelogs/changelog.yaml releases galaxy.yml's version; CHANGELOG.rst is what antsibull-changelog renders."""
    with open(os.path.join(REPO, "galaxy.yml")) as handle:
        version = yaml.safe_load(handle)["version"]
    with open(os.path.join(REPO, "changelogs", "changelog.yaml")) as handle:
        releases = yaml.safe_load(handle)["releases"]
    assert version in releases and releases[version].get("changes", {}).get("release_summary"), sorted(releases)
    copy = tmp_path / "collection"
    # Without the plugin cache: antsibull-changelog asks ansible-doc, as on a fresh clone.
    shutil.copytree(os.path.join(REPO, "changelogs"), str(copy / "changelogs"),
                    ignore=shutil.ignore_patterns(".plugin-cache.yaml"))
    shutil.copy(os.path.join(REPO, "galaxy.yml"), str(copy / "galaxy.yml"))
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ["PATH"],
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".cache", "collections"))
    for command in (["lint"], ["generate"]):
        proc = subprocess.run([os.path.join(VENV_BIN, "antsibull-changelog")] + command, cwd=str(copy), env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(os.path.join(REPO, "CHANGELOG.rst")) as handle:
        assert (copy / "CHANGELOG.rst").read_text() == handle.read(), "CHANGELOG.rst is stale: run antsibull-changelog generate"
    assert "v%s\n" % version in (copy / "CHANGELOG.rst").read_text()
