# Two commands do everything: `make demo` and `make test` (each sets up .venv first).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARTIST ?= demo
PRESET ?= auto
# which FAISS build: cpu, or gpu on a CUDA machine (make setup FAISS=gpu, in a fresh VENV: the two builds
# install the same `faiss` module)
FAISS ?= cpu

.PHONY: setup test test-slow demo demo-full paper lab benchmarks clean-results
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -e ".[$(FAISS),test]"
	touch $@

# Debian packages some tests drive for real: a browser, a one-node Slurm cluster (installed when root).
SYSTEM_PACKAGES := chromium chromium-driver slurm-wlm munge

test: setup
	bash scripts/apt_ensure.sh $(SYSTEM_PACKAGES)
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

# The whole chain 00 -> 08 on the embedded demo data at the demo preset: every method of the paper and CUT,
# each trained for its demo preset's epochs (the tables say how many).
demo: setup
	$(PY) -m art2real.cli chain --artist demo --preset demo

# The demo with every trained row, CUT's variants too (FastCUT and both with memory banks): about 40 minutes.
demo-full: setup
	$(PY) -m art2real.cli chain --artist demo --preset demo \
		--methods drit unit cyclegan art2real cut fastcut cut_banks fastcut_banks

# The chain for any setting: make paper ARTIST=monet [PRESET=paper]
paper: setup
	$(PY) -m art2real.cli chain --artist $(ARTIST) --preset $(PRESET)

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

benchmarks: setup
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done
