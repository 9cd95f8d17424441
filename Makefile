# bwc-dock developer entry points. `make test` is what CI runs (see .ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

VENV   := .venv
PY     := $(VENV)/bin/python
# The stamp records that the editable install matches the packaging metadata.
# Top-level package markers are prerequisites too: setuptools' editable finder
# only maps the packages that existed at install time, so a new package
# (say agent/__init__.py appearing) must trigger a re-install.
STAMP  := $(VENV)/.bwc-dock-installed
PKG_MARKERS := $(wildcard */__init__.py)

# Tools the test-suite runs for real (never mocked): the MQTT broker and the
# systemd unit checker. Format: command:debian-package.
SYSTEM_TOOLS := mosquitto:mosquitto systemd-analyze:systemd

.PHONY: venv deps lint test soak fuzz demo bench clean distclean

venv: $(STAMP)

$(PY):
	python3 -m venv $(VENV)

$(STAMP): setup.cfg pyproject.toml $(PKG_MARKERS) | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Root installs what is missing; anyone else gets told what to install.
# /usr/sbin is searched too: non-root PATHs often lack it, and mosquitto lives there.
deps:
	@export PATH="$$PATH:/usr/local/sbin:/usr/sbin:/sbin"; \
	missing=""; \
	for pair in $(SYSTEM_TOOLS); do \
	  tool="$${pair%%:*}"; pkg="$${pair#*:}"; \
	  command -v "$$tool" >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ]; then \
	  echo "deps: installing$$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	else \
	  echo "deps: missing system packages:$$missing" >&2; \
	  echo "deps: install them as root: apt-get install -y$$missing (or run 'sudo make deps')" >&2; \
	  exit 1; \
	fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# `python -m pytest` (not the pytest script) puts the repo root on sys.path,
# so packages import even before the editable install knows about them.
test: deps venv lint
	$(PY) -m pytest -m "not soak" tests

# Exit code 5 means "no tests collected": not an error while no soak test exists yet.
soak: deps venv
	@rc=0; $(PY) -m pytest -m soak tests || rc=$$?; \
	if [ "$$rc" -eq 5 ]; then echo "soak: no soak tests collected"; exit 0; fi; \
	exit "$$rc"

# atheris comes as a wheel for common CPythons; where it cannot install, `python -m fuzz`
# runs its Hypothesis engine instead. FUZZ_ARGS, e.g. `make fuzz FUZZ_ARGS="--minutes 5"`.
FUZZ_STAMP := $(VENV)/.bwc-dock-fuzz-installed
FUZZ_ARGS ?=

$(FUZZ_STAMP): setup.cfg | $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,fuzz]' || \
	  echo "fuzz: atheris did not install; the Hypothesis engine runs instead" >&2
	touch $@

fuzz: venv $(FUZZ_STAMP)
	$(PY) -m fuzz $(FUZZ_ARGS)

demo: deps venv
	$(VENV)/bin/dock-agent demo

bench: venv
	@ran=0; \
	for script in benchmarks/*.py; do \
	  [ -e "$$script" ] || continue; \
	  case "$$(basename "$$script")" in _*) continue;; esac; \
	  echo "bench: $$script"; \
	  $(PY) "$$script"; \
	  ran=$$((ran + 1)); \
	done; \
	echo "bench: $$ran script(s) run"

clean:
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info demo-state

distclean: clean
	rm -rf $(VENV)
