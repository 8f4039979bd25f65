# Two entry points, each doing all of its own setup on a fresh machine:
#   make demo   runs the demo campaign on an embedded local Ray
#   make test   runs the test suite (slow end-to-end tests: make test-slow)
#   make test-fast  the edit loop: ruff, then every test that starts no Ray (about four minutes)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of torch lies on this machine's disk; GPU users can override, e.g.
#   make demo TORCH_SPEC='torch'
# Why 2.13.0 (measured, README "Correctness"): 2.14.1 fixes its channels-last GroupNorm
# backward, which corrupts memory when only the affine weight needs a gradient, but no
# release up to 2.15.0 fixes oneDNN's stride-2 1x1 weight gradient (2-7 channels), and the
# networks avoid both paths on every version (metanas/searchers/darts/unsafe_kernels.py).
# The step times of 2.13.0, 2.14.1 and 2.15.0 are the same within noise, and only 2.13.0
# exists here as a CPU build: the others are CUDA builds of several GB.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup chromium demo test test-fast test-slow clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,bench]"
	touch $(STAMP)

setup: $(STAMP)

# The explain report's test opens the page in a real headless Chromium (Debian's package).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null)

demo: setup
	$(VENV)/bin/metanas demo --out runs/demo-$$(date +%Y%m%d-%H%M%S)

test: setup chromium
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m ruff check metanas tests scripts
	$(PY) -m ruff format --check metanas tests scripts
	$(PY) -m pytest -q -m "not ray and not slow"

test-slow: setup
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs .pytest_cache
