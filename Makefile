# The two commands a new user needs (see README.md):
#   make demo   set everything up and run the diagnose workflow on a bundled demo
#   make test   set everything up and run the whole test suite (what CI runs)
.PHONY: setup demo test unit integration sanity lint build bench

setup:
	bash scripts/setup.sh

# make demo SCENARIO=frozen-fs for the frozen-file-system stall (no FUSE needed),
# SCENARIO=sentinel for the stall a node catches alone (docs/sentinel.md)
SCENARIO ?= watchdog
demo: setup
	FLEETTRACE_DEMO_SCENARIO=$(SCENARIO) bash scripts/demo.sh

test:
	bash scripts/test.sh

unit: setup
	.venv/bin/pytest -q tests/unit

integration: setup
	FLEETTRACE_STRICT_LEAKS=1 .venv/bin/pytest -q tests/integration

sanity: setup
	bash scripts/sanity.sh

lint: setup
	.venv/bin/ansible-lint

build: setup
	.venv/bin/ansible-galaxy collection build --force --output-path .cache/build

bench: setup
	bash scripts/bench.sh
