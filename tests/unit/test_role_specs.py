"""Role argument specs state every default: what ansible-doc -t role shows is what the role does."""

import os

import pytest
import yaml

from tests.helpers.paths import REPO

ROLES = sorted(os.listdir(os.path.join(REPO, "roles")))


def load(role, name):
    with open(os.path.join(REPO, "roles", role, name)) as handle:
        return yaml.safe_load(handle) or {}


def described(option):
    text = option.get("description", "")
    return " ".join(text) if isinstance(text, list) else text


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_in_an_argument_spec_with_its_value(role):
    defaults = load(role, "defaults/main.yml")
    specs = load(role, "meta/argument_specs.yml")["argument_specs"]
    problems = []
    for name, value in defaults.items():
        options = [spec["options"][name] for spec in specs.values() if name in spec.get("options", {})]
        if not options:
            problems.append("%s: in defaults/main.yml but in no entry point's options" % name)
        templated = isinstance(value, str) and "{{" in value
        for option in options:
            if option.get("required"):
                continue
            if templated:
                if "default" not in option and "default" not in described(option).lower():
                    problems.append("%s: computed default (%s) not described" % (name, value))
            elif option.get("default") != value:
                problems.append("%s: spec default %r, defaults/main.yml %r" % (name, option.get("default"), value))
    assert not problems, "\n".join(problems)
