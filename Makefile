# One command to set up and see a verdict on a real dump; one to run the whole test suite.
PYTHON ?= python3
JOBS ?= 2
CACHE ?= $(or $(KPM_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kpostmortem)
# Build the corpus on other kernels than fixtures/vmcores/kernels.toml prefers, e.g.
# make test KERNELS="6.1=6.1.0-56"   (SERIES=RELEASE or SERIES=PACKAGE_VERSION, space-separated)
KERNELS ?=

.PHONY: setup corpus demo test lint

setup:
	bash scripts/install-deps
	$(PYTHON) -m pip install --quiet -e '.[test]'

corpus: setup
	$(PYTHON) scripts/make-vmcores --jobs $(JOBS) $(foreach k,$(KERNELS),--kernel-version $(k))

# Make one real crash dump (NULL pointer write in our test module) and analyse it.
demo: setup
	$(PYTHON) scripts/make-vmcores --only null-write
	$(PYTHON) scripts/analyze-scenario null-write

test: corpus
	$(PYTHON) -m pytest -q

lint:
	ruff check src tests scripts
