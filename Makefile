# One command to set up and see a verdict on a real dump; one to run the whole test suite.
PYTHON ?= python3
JOBS ?= 2
CACHE ?= $(or $(KPM_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kpostmortem)
# Build the corpus on other kernels than fixtures/vmcores/kernels.toml prefers, e.g.
# make test KERNELS="6.1=6.1.0-56"   (SERIES=RELEASE or SERIES=PACKAGE_VERSION, space-separated)
KERNELS ?=

# `make test-quick`: the corpus of these series only (cold, about half of `make test`).
QUICK_KERNELS ?= 6.1 6.12
comma := ,
empty :=
space := $(empty) $(empty)

.PHONY: setup corpus demo test test-quick lint

# The editable install leaves kpostmortem's bytecode uncompiled (pip compiles a regular install's);
# with PYTHONDONTWRITEBYTECODE=1, as on this project's hosts, every run would compile ~60 modules
# again (0.2-0.5 s): compile them once, as an installed package has them.
setup:
	bash scripts/install-deps
	$(PYTHON) -m pip install --quiet -e '.[test]'
	$(PYTHON) -m compileall -q src/kpostmortem

corpus: setup
	$(PYTHON) scripts/make-vmcores --jobs $(JOBS) $(foreach k,$(KERNELS),--kernel-version $(k))

# Make one real crash dump (NULL pointer write in our test module) and analyse it.
demo: setup
	$(PYTHON) scripts/make-vmcores --only null-write
	$(PYTHON) scripts/analyze-scenario null-write

# The whole suite on the whole corpus (5.10, 6.1, 6.12, 7.2, arm64 6.1 and 6.12, hangs): what CI runs.
test: corpus
	$(PYTHON) -m pytest -q

# The same tests on the x86-64 6.1 and 6.12 dumps and hangs only: a developer's quicker loop.
test-quick: setup
	$(PYTHON) scripts/make-vmcores --jobs $(JOBS) $(foreach k,$(QUICK_KERNELS),--kernel $(k)) $(foreach k,$(KERNELS),--kernel-version $(k))
	KPM_KERNELS="$(subst $(space),$(comma),$(strip $(QUICK_KERNELS)))" $(PYTHON) -m pytest -q

lint:
	ruff check src tests scripts
