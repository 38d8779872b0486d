"""Where this checkout keeps things, and the environment that runs Ansible on it."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# scripts/setup.sh links this checkout there (per checkout: clones never see each other).
COLLECTIONS = os.path.join(REPO, ".cache", "collections")
VENV_BIN = os.path.join(REPO, ".venv", "bin")


def ansible_env(extra=None):
    """os.environ plus what makes ansible/ansible-playbook use this checkout's collection and venv."""
    env = dict(os.environ)
    # With PYTHONUNBUFFERED, Python reads a script from a pipe one byte per read(): every module
    # Ansible pipes into the local interpreter would cost ~0.7 us of CPU per byte (a node over ssh
    # does not have it set).
    env.pop("PYTHONUNBUFFERED", None)
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env["ANSIBLE_CONFIG"] = os.path.join(REPO, "ansible.cfg")
    env["ANSIBLE_COLLECTIONS_PATH"] = COLLECTIONS
    env["ANSIBLE_PYTHON_INTERPRETER"] = os.path.join(VENV_BIN, "python")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env.setdefault("ANSIBLE_LOCAL_TEMP", "/tmp/fleettrace-ansible-local")
    env.update(extra or {})
    return env


SSH_LOOPBACK = os.path.join(REPO, "scripts", "ssh-loopback.sh")
