# prairiefyre.updater: every set-up step goes through this file.
#   make demo   venv + lab + sample patch + update + verify + summary
#   make test   every test and quality gate (what CI runs)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(CURDIR)
VENV ?= $(ROOT)/.venv
VENV311 ?= $(ROOT)/.venv311
PY := $(VENV)/bin/python
BUILD := $(ROOT)/.build
COLL_LINK := $(BUILD)/collections/ansible_collections/prairiefyre/updater
LAB := $(ROOT)/lab/labctl.py
INV := $(ROOT)/inventory/lab

export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
export PRAIRIEFYRE_LAB_DIR ?= $(ROOT)/.lab
export PATH := $(VENV)/bin:$(PATH)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help venv venv311 link lab-up lab-down lab-status demo test lint units sanity \
	integration molecule galaxy py311 bench bench-gate bench-downtime bench-noop changelog clean

help:
	@echo "make demo      build the venv, start the lab, patch, update, verify, summarize"
	@echo "make test      run every test and quality gate"
	@echo "make lab-up    start the lab (enterprise + IVR hosts under supervisord)"
	@echo "make lab-down  stop the lab"

$(VENV)/.installed: requirements.txt scripts/pick_python.sh
	@py=$$(scripts/pick_python.sh); \
	ver=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	echo "venv: $(VENV) on Python $$ver ($$py)"; \
	if [ "$$ver" = "3.11" ]; then \
	  echo "venv: no Python 3.12+ here; falling back to the newest ansible-core for 3.11"; \
	fi; \
	rm -rf $(VENV); $$py -m venv $(VENV); \
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt 2>&1 \
	  | { grep -v "is ignored: it is neither a file nor a directory" || true; }; \
	touch $@

venv: $(VENV)/.installed link

$(VENV311)/.installed: requirements.txt scripts/pick_python.sh
	@py=$$(scripts/pick_python.sh --3.11); rm -rf $(VENV311); $$py -m venv $(VENV311); \
	$(VENV311)/bin/pip install -q --disable-pip-version-check -r requirements.txt 2>&1 \
	  | { grep -v "is ignored: it is neither a file nor a directory" || true; }; \
	touch $@

venv311: $(VENV311)/.installed link

# The checkout itself is the collection; a symlink puts it where ansible looks for it.
link:
	@mkdir -p $(dir $(COLL_LINK)); \
	[ -L $(COLL_LINK) ] || ln -sfn $(ROOT) $(COLL_LINK)

lab-up: venv
	$(PY) $(LAB) up

lab-down:
	@if [ -x $(PY) ]; then $(PY) $(LAB) down; else echo "lab: no venv, nothing runs"; fi

lab-status: venv
	$(PY) $(LAB) status

demo: venv
	$(PY) $(LAB) reset
	$(PY) $(LAB) up
	ansible-playbook -i $(INV) playbooks/apply_patch.yml -e enterprise_patch_bundle=$(ROOT)/lab/patches/sample-6.3.2
	ansible-playbook -i $(INV) playbooks/update_ivr.yml
	ansible-playbook -i $(INV) playbooks/verify_ivr.yml
	$(PY) $(LAB) report

# ansible-lint and molecule keep a cache in ANSIBLE_HOME (~/.ansible by default), and a copy
# of this collection installed there once shadows the checkout's link; each gets its own.
# Only the Python directories that exist: a fresh clone has no bench/ until it holds a file.
PY_DIRS := $(wildcard plugins tests lab bench scripts)

lint: venv
	ruff format --check $(PY_DIRS)
	ruff check $(PY_DIRS)
	yamllint -s .
	ANSIBLE_HOME=$(BUILD)/lint-home ansible-lint --offline --strict --profile production roles playbooks
	ANSIBLE_HOME=$(BUILD)/lint-home ansible-lint --offline --strict --profile production extensions/molecule
	antsibull-changelog lint

units: venv
	pytest -q -n 2 tests/unit

# ansible-test works on a copy laid out as ansible_collections/<namespace>/<name>, holding
# only what git tracks or would track (no venvs, lab state or caches). The copy lives outside
# this checkout: inside it, ansible-test asks this repository's git for the file list and
# finds the copy ignored.
SANITY_HOME := $(BUILD)/home
SANITY_ROOT ?= /tmp/prairiefyre-sanity$(subst /,-,$(ROOT))
SANITY_DIR := $(SANITY_ROOT)/ansible_collections/prairiefyre/updater
define copy_collection
	rm -rf $(1) && mkdir -p $(1)
	git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C $(1)
endef

sanity: venv
	$(call copy_collection,$(SANITY_DIR))
	scripts/prepare_sanity.sh $(SANITY_HOME) $(VENV)
	cd $(SANITY_DIR) && HOME=$(SANITY_HOME) ansible-test sanity --color no \
	  --python $$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# test_galaxy.py runs in `make galaxy`, against the tarball that target builds.
# Each test file starts its own lab on its own ports, so files run two at a time (loadfile
# keeps a file's tests, which build on each other, in order on one worker).
INTEGRATION := -n 2 --dist loadfile tests/integration --ignore=tests/integration/test_galaxy.py

integration: venv
	pytest -q $(INTEGRATION)

# Scenarios in extensions/molecule (galaxy.yml is at the root); each starts and stops its own
# lab (and the ssh one its own sshd) under its ephemeral directory in $(BUILD)/molecule.
molecule: venv
	cd $(ROOT) && ANSIBLE_HOME=$(BUILD)/molecule scripts/molecule_test.sh default ssh

# Build the tarball as a release would, then install it elsewhere and run it by FQCN.
galaxy: venv
	rm -rf $(BUILD)/dist && mkdir -p $(BUILD)/dist
	ansible-galaxy collection build --output-path $(BUILD)/dist $(ROOT)
	PRAIRIEFYRE_COLLECTION_TARBALL=$$(ls $(BUILD)/dist/prairiefyre-updater-*.tar.gz) \
	  pytest -q tests/integration/test_galaxy.py

# The second supported environment: Debian's Python 3.11 with the newest ansible-core it gets.
# The tests run ansible-playbook and labctl from the bin directory of the pytest's Python.
# CI's 90 minutes do not fit every lab test twice: on 3.11 the load test of the gate and the
# fault injection, which exercise the same modules as the rest, run only on the current Python.
py311: venv311
	$(VENV311)/bin/pytest -q -n 2 tests/unit
	$(VENV311)/bin/pytest -q $(INTEGRATION) \
	  --ignore=tests/integration/test_gate.py --ignore=tests/integration/test_faults.py

# Benchmarks print ratios against a baseline measured in the same run; they are not tests.
bench: bench-gate bench-downtime bench-noop

bench-gate: venv
	$(PY) bench/gate.py

bench-downtime: venv
	$(PY) bench/downtime.py

bench-noop: venv
	$(PY) bench/noop.py

# antsibull-changelog reads plugin docs through a copy of the collection, as sanity does.
CHANGELOG_DIR := /tmp/prairiefyre-changelog$(subst /,-,$(ROOT))/ansible_collections/prairiefyre/updater
changelog: venv
	antsibull-changelog lint
	$(call copy_collection,$(CHANGELOG_DIR))
	cd $(CHANGELOG_DIR) && antsibull-changelog release --update-existing
	cp $(CHANGELOG_DIR)/changelogs/changelog.yaml $(ROOT)/changelogs/
	cp $(CHANGELOG_DIR)/CHANGELOG.rst $(CHANGELOG_DIR)/CHANGELOG.md $(ROOT)/

# Every gate; make stops at the first that fails, and pytest's "no tests ran" (exit 5) fails.
test: lint units sanity integration molecule galaxy py311
