# keyops.lifecycle — every target bootstraps what it needs into .venv (pinned requirement files).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BUILD := $(CURDIR)/build
# Ansible finds collections as <path>/ansible_collections/<namespace>/<name>: a link to this checkout.
COLLECTIONS := $(BUILD)/collections
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/keyops/lifecycle
# ansible-test needs a real directory at that shape (it resolves its working directory), so sanity
# runs on a copy; HOME points into build/ so nothing lands in the user's home.
# SANITY_BIN: the venv whose ansible-test runs it (the compatibility phase points it at the newest line's venv).
SANITY_BIN ?= $(CURDIR)/$(BIN)
SANITY_PYTHON ?= 3.11
SANITY_ROOT ?= $(BUILD)/sanity
SANITY_TREE = $(SANITY_ROOT)/ansible_collections/keyops/lifecycle
TEST_HOME := $(BUILD)/home
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export PYTHONPATH := $(COLLECTIONS)
export ANSIBLE_HOME := $(BUILD)/ansible-home
PYTEST_ARGS ?=

.PHONY: help venv system-deps collection test test-pytest test-static test-molecule test-demo-installed unit integration lint sanity molecule demo demo-installed bench build ee docs clean compat test-compat-lowest test-compat-newest

help:
	@echo "make demo   - start a local OpenBao lab, run the rotation job twice, stop the lab"
	@echo "make test   - unit + integration tests (real OpenBao), molecule, ansible-lint, ansible-test sanity"
	@echo "make lint | sanity | unit | integration | molecule | bench | build | clean"

$(BIN)/.requirements-stamp: requirements/runtime.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# Bytecode on both cores afterwards instead of pip's one-at-a-time compile (80 s -> 60 s on 2 cores); like
	# pip's, a file that does not compile (a package's Python 2 test data) is skipped, not an error.
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-compile -r requirements/dev.txt
	$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib || true
	touch $@

venv: $(BIN)/.requirements-stamp

# Debian packages some tests need (installed only when missing; needs root or sudo).
system-deps:
	@bash tools/system-deps.sh

# Left alone when it is already right: `make test` runs sub-makes beside tests that import through the link.
collection:
	@mkdir -p $(dir $(COLLECTION_LINK))
	@test "$$(readlink $(COLLECTION_LINK))" = "$(CURDIR)" || ln -sfn $(CURDIR) $(COLLECTION_LINK)

unit: venv collection
	$(BIN)/python -m pytest tests/unit -q $(PYTEST_ARGS)

integration: venv collection system-deps
	$(BIN)/python -m pytest tests/integration -q $(PYTEST_ARGS)

# Molecule keeps per-scenario state (created/prepared) under ANSIBLE_HOME; start from none each time.
molecule: venv collection
	@rm -rf $(ANSIBLE_HOME)/tmp/molecule.*
	@if ls -d extensions/molecule/*/molecule.yml >/dev/null 2>&1; then \
	  cd extensions && PATH=$(CURDIR)/$(BIN):$$PATH $(CURDIR)/$(BIN)/molecule test --all; \
	else echo "molecule: no scenarios yet"; fi

lint: venv collection
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/ansible-lint --profile production --offline

sanity: venv system-deps
	rm -rf $(SANITY_TREE) && mkdir -p $(SANITY_TREE)
	tar --exclude=./.venv --exclude=./build --exclude=./.git --exclude=./.lab --exclude=./tests/output \
	    --exclude='*.tar.gz' --exclude=./rotation-reports --exclude=./upgrade-reports \
	    --exclude=./transit-backups --exclude=./secrets -cf - . | tar -xf - -C $(SANITY_TREE)
	# ansible-test lists the files to check with git.
	cd $(SANITY_TREE) && git init -q && git add -A
	HOME=$(TEST_HOME) $(SANITY_BIN)/python tools/sanity_pip_bootstrap.py
	cd $(SANITY_TREE) && HOME=$(TEST_HOME) PATH=$(SANITY_BIN):$$PATH \
	  $(SANITY_BIN)/ansible-test sanity --venv --python $(SANITY_PYTHON) --color no 2>&1 \
	  | grep --line-buffered -v -E '^(Collecting|  Downloading|Installing|Successfully|Processing|Looking in|Using cached|  *━)'; \
	  test $${PIPESTATUS[0]} -eq 0

# Everything CI runs.  `pytest` exit 5 (no tests collected) fails here like any other error.
# The last step scans everything the run left behind (its console output, every test's files, molecule's
# scenario directories) for the secrets the run made.
TEST_RUN := $(BUILD)/test-run
# Workers for pytest: much of a test waits (servers, raft elections, settle windows), so 4 on 2 cores (the CPU
# is then ~95 % busy; 3 left it idle at times: 16:24 against 14:48 for the same tests). The race harness runs
# with a 0.05 s settle window (marker `race`) come after them, apart from the other tests: at that load (~10) the
# window is too short for a validator (one false rejection in 1,000 rotations when they ran among the others);
# only the static checks at nice 10 run beside them.
TEST_WORKERS ?= 4
test: venv collection system-deps
	rm -rf $(TEST_RUN) && mkdir -p $(TEST_RUN)/logs && chmod 700 $(TEST_RUN)
	# Unit tests first, outside the scanned directories: their fake secrets are literals in the test sources,
	# which the collection-build tests copy.
	set -o pipefail; $(BIN)/python -m pytest tests/unit -q -n 2 --basetemp=$(BUILD)/unit-tmp $(PYTEST_ARGS) 2>&1 \
	  | tee $(TEST_RUN)/logs/pytest-unit.log; rc=$$?; \
	  if [ $$rc -eq 5 ] && [ -n "$(strip $(PYTEST_ARGS))" ]; then rc=0; fi; exit $$rc
	# Molecule, the installed demo, docs, ansible-lint, sanity and the compatibility phase need nothing from the
	# pytest phases: they run beside them at low priority (nice 10), on the CPU the tests leave idle; their output
	# follows the tests'.
	nice -n 10 $(MAKE) --no-print-directory -j7 --output-sync=target test-static > $(TEST_RUN)/logs/static.log 2>&1 & \
	  static=$$!; $(MAKE) --no-print-directory test-pytest; rc=$$?; \
	  wait $$static; static_rc=$$?; cat $(TEST_RUN)/logs/static.log; \
	  echo "pytest phases: exit $$rc; molecule, demo, docs, lint, sanity, compatibility: exit $$static_rc"; \
	  [ $$rc -eq 0 ] && [ $$static_rc -eq 0 ]
	KEYOPS_SECRET_REGISTRY=$(TEST_RUN)/registry \
	  KEYOPS_SCAN_ROOTS=$(TEST_RUN)/tmp:$(TEST_RUN)/tmp-race:$(TEST_RUN)/logs:$(ANSIBLE_HOME)/tmp:$(BUILD)/demo-installed:$(COMPAT_SCAN_ROOTS) \
	  $(BIN)/python -m pytest tests/reliability -q -p no:xdist -m secret_scan --basetemp=$(BUILD)/scan-tmp

# The integration and reliability tests (workers take over queued tests from busy ones: the long crash and
# cluster tests do not leave the others idle at the end), then the race harness runs on their own.
test-pytest:
	set -o pipefail; KEYOPS_SECRET_REGISTRY=$(TEST_RUN)/registry \
	  $(BIN)/python -m pytest tests/integration tests/reliability -q -n $(TEST_WORKERS) --dist worksteal \
	  -m "not bench and not secret_scan and not race" --basetemp=$(TEST_RUN)/tmp $(PYTEST_ARGS) 2>&1 \
	  | tee $(TEST_RUN)/logs/pytest.log
	# exit 5 (nothing collected) passes here only when PYTEST_ARGS narrowed the run to other tests
	set -o pipefail; KEYOPS_SECRET_REGISTRY=$(TEST_RUN)/registry \
	  $(BIN)/python -m pytest tests/integration -q -p no:xdist -m race --basetemp=$(TEST_RUN)/tmp-race \
	  $(PYTEST_ARGS) 2>&1 | tee $(TEST_RUN)/logs/pytest-race.log; rc=$$?; \
	  if [ $$rc -eq 5 ] && [ -n "$(strip $(PYTEST_ARGS))" ]; then rc=0; fi; exit $$rc

test-static: test-molecule test-demo-installed docs lint sanity test-compat-lowest test-compat-newest

# The compatibility phase (tools/compat.sh): the tests marked `compat` again under the lowest ansible-core line
# meta/runtime.yml admits and under the newest on PyPI, each in a venv of its own on the Python it needs; the
# newest also runs the in-process parity test and ansible-test sanity.  LINE:PYTHON.
COMPAT_LOWEST ?= 2.16:3.11
COMPAT_NEWEST ?= 2.21:3.13
COMPAT_SCAN_ROOTS = $(TEST_RUN)/tmp-compat-$(firstword $(subst :, ,$(COMPAT_LOWEST))):$(TEST_RUN)/tmp-compat-$(firstword $(subst :, ,$(COMPAT_NEWEST)))
compat: venv collection system-deps
	$(MAKE) --no-print-directory -j2 --output-sync=target test-compat-lowest test-compat-newest

test-compat-lowest: venv collection
	@mkdir -p $(TEST_RUN)/logs
	set -o pipefail; TEST_RUN=$(TEST_RUN) bash tools/compat.sh $(subst :, ,$(COMPAT_LOWEST)) 2>&1 \
	  | tee $(TEST_RUN)/logs/compat-lowest.log

test-compat-newest: venv collection
	@mkdir -p $(TEST_RUN)/logs
	set -o pipefail; TEST_RUN=$(TEST_RUN) bash tools/compat.sh $(subst :, ,$(COMPAT_NEWEST)) newest 2>&1 \
	  | tee $(TEST_RUN)/logs/compat-newest.log

test-molecule: venv collection
	set -o pipefail; KEYOPS_SECRET_REGISTRY=$(TEST_RUN)/registry $(MAKE) --no-print-directory molecule 2>&1 \
	  | tee $(TEST_RUN)/logs/molecule.log

test-demo-installed: venv
	set -o pipefail; KEYOPS_SECRET_REGISTRY=$(TEST_RUN)/registry $(MAKE) --no-print-directory demo-installed 2>&1 \
	  | tee $(TEST_RUN)/logs/demo-installed.log

demo: venv collection
	PATH=$(CURDIR)/$(BIN):$$PATH bash tools/demo.sh

# The demo from the built collection installed into a clean path (not this checkout).
demo-installed: build
	rm -rf $(BUILD)/installed
	$(BIN)/ansible-galaxy collection install --force -p $(BUILD)/installed \
	  $$(ls -t $(BUILD)/dist/keyops-lifecycle-*.tar.gz | grep -v 'lifecycle.tar.gz' | head -1)
	PATH=$(CURDIR)/$(BIN):$$PATH DEMO_COLLECTIONS_PATH=$(BUILD)/installed DEMO_DIR=$(BUILD)/demo-installed \
	  bash tools/demo.sh

# Benchmarks (ratios against baselines measured in the same run); results in build/bench-results.json.
BENCH ?= benchmarks
$(BUILD)/bench-venv/.stamp: requirements/bench.txt
	test -x $(BUILD)/bench-venv/bin/python || $(PYTHON) -m venv $(BUILD)/bench-venv
	$(BUILD)/bench-venv/bin/python -m pip install --disable-pip-version-check -q -r requirements/bench.txt
	touch $@

bench: venv collection $(BUILD)/bench-venv/.stamp
	$(BIN)/python -m pytest $(BENCH) -q -m bench -s -p no:xdist -o python_files='bench_*.py' -o addopts=''
	@cat $(BUILD)/bench-results.json

build: venv
	mkdir -p $(BUILD)/dist && $(BIN)/ansible-galaxy collection build --force --output-path $(BUILD)/dist .

# Module, plugin and role documentation rendered with antsibull-docs (HTML in build/docs/build/html).
docs: venv collection
	PATH=$(CURDIR)/$(BIN):$$PATH bash tools/build_docs.sh

# Execution environment build context (ansible-builder v3); a container engine builds the image from it:
#   podman build -f build/ee/Containerfile -t keyops-lifecycle-ee build/ee
EE_CONTEXT ?= $(BUILD)/ee
ee: build
	cp $$(ls -t $(BUILD)/dist/keyops-lifecycle-*.tar.gz | head -1) $(BUILD)/dist/keyops-lifecycle.tar.gz
	$(BIN)/ansible-builder create -f meta/execution-environment.yml -c $(EE_CONTEXT) --output-filename Containerfile

clean:
	rm -rf $(BUILD) .pytest_cache
