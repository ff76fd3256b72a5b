# nspawnctl: the two entry points are `make demo` and `make test`; both install what they need.
PY ?= python3
# gcc, python3-dev: btrfsutil is built from source against libbtrfsutil; python3-venv: the venv below.
SYSTEM_PACKAGES := debootstrap systemd-container btrfs-progs libbtrfsutil-dev tar xz-utils zstd \
	gcc python3-dev python3-venv
# The install a user does: a fresh venv inside the clone, `pip install .` (not editable) resolving the
# newest releases pyproject.toml allows. pip's cache stays inside the clone too.
VENV := $(CURDIR)/.venv
VBIN := $(VENV)/bin
export PIP_CACHE_DIR := $(CURDIR)/.build/pip-cache
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test deps venv smoke unit lint e2e bench clean shell

deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi

venv: deps
	$(PY) -m venv --clear $(VENV)
	rm -rf build  # setuptools' in-tree build directory: never install stale files from it
	$(VBIN)/python -m pip install -q --upgrade --upgrade-strategy eager '.[test,lint]'
	@$(VBIN)/python -m pip list --format=freeze | grep -iE '^(typer|click|rich|dbus-fast|btrfsutil|zstandard|python-gnupg|requests|urllib3|pytest|ruff|mypy)=='

# The console script pip made: help, version and usage errors with their exit codes.
smoke: venv
	$(VBIN)/python tests/smoke.py $(VBIN)/nspawnctl

# Install, import a busybox image and run a container; on a host without systemd as PID 1 this
# boots the test host first and runs the demo inside it.
demo: venv
	PATH="$(VBIN):$$PATH" $(PY) tests/host/demo.py

lint: venv
	$(VBIN)/ruff check nspawnctl tests bench
	$(VBIN)/mypy nspawnctl

# From tests/unit, so that `python -m nspawnctl` and imports find the installed package, not ./nspawnctl.
unit: venv
	cd tests/unit && $(VBIN)/python -m pytest -q -p no:cacheprovider .

# Inside booted systemd hosts (real machined, journald, btrfs); each pass smoke-checks the installed
# command first:
#   e2e-trixie    Debian 13 (systemd 257, Python 3.13), nspawnctl in a fresh venv from PyPI (newest
#                 allowed releases): the unit suite (in the background, beside) and the full end-to-end suite
#   e2e-debian    Debian 13 with Debian's python3-* packages: the unit suite and the end-to-end tests
#                 marked `surface` (what goes through typer/click/rich, dbus-fast, requests, gnupg,
#                 zstandard, btrfsutil; see tests/e2e/conftest.py)
#   e2e-bookworm  Debian 12 (systemd 252, Python 3.11), the venv install: the `surface` tests (the
#                 unit suite ran on Python 3.11 on the machine already; Debian 12's own packages are
#                 older than pyproject.toml allows, so there is no Debian install there)
#   host-tests    the tests that drive the trixie host from outside (the pool layouts, reboots); their
#                 last test (test_leftovers.py) fails if a test host, a loop device or a mount of .build
#                 is left
# Each host is built on first use (debootstrap, cached in .build/host and .build/host-bookworm).
# The full end-to-end suite on systemd 252 does not fit in `make test`'s 30 minutes next to the 257
# one on a 2-core machine: `make test-252` is that extended run.
# The full suite runs in 2 pytest-xdist workers (the tests mostly wait on systemd), then the tests marked
# `serial` alone (tests/e2e/conftest.py says which and why); E2E_WORKERS=1 runs it in one process.
E2E_WORKERS ?= 2
E2E_PASSES := e2e-trixie e2e-debian e2e-bookworm host-tests

.PHONY: $(E2E_PASSES) test-252
# The passes share the hosts and the machine's 2 cores: one at a time, in this order, even under -j.
.NOTPARALLEL:

e2e: $(E2E_PASSES)

# Within `make e2e` (and `make test`) the trixie pass has the bookworm roots built meanwhile: their
# debootstraps wait on the network and the disk while the trixie tests mostly wait on systemd.
e2e: PREBUILD := --prebuild bookworm
e2e-trixie: venv
	$(PY) tests/host/testhost.py test --suite trixie --install venv --unit --workers $(E2E_WORKERS) $(PREBUILD)

e2e-debian: venv
	$(PY) tests/host/testhost.py test --suite trixie --install debian --unit -- -m surface

e2e-bookworm: venv
	$(PY) tests/host/testhost.py test --suite bookworm --install venv -- -m surface

# Extended: the full end-to-end suite in the Debian 12 host (systemd 252, Python 3.11).
test-252: venv
	$(PY) tests/host/testhost.py test --suite bookworm --install venv

host-tests: venv
	$(VBIN)/python -m pytest -q -p no:cacheprovider tests/host

# `make test` first starts the trixie roots' debootstraps in the background (network- and disk-bound),
# so that they overlap the venv, lint, smoke and unit runs here; e2e-trixie's build waits for them
# (the harness's lock) and builds again if they failed. Their log: .build/prebuild-trixie.log.
# The build runs in a process group of its own (setsid), which the recipe's shell terminates when
# it exits: a failing lint/unit or a Ctrl-C leaves no debootstrap holding the harness's lock.
test: deps
	@mkdir -p .build && echo "building the trixie test host's roots in the background (.build/prebuild-trixie.log)"; \
	setsid $(PY) tests/host/testhost.py build --suite trixie > .build/prebuild-trixie.log 2>&1 & pid=$$!; \
	trap 'kill -TERM -$$pid 2>/dev/null; wait $$pid' EXIT; trap 'exit 130' INT TERM HUP; \
	$(MAKE) --no-print-directory lint smoke unit e2e

clean:
	$(PY) tests/host/testhost.py clean --suite trixie
	$(PY) tests/host/testhost.py clean --suite bookworm

# After the demo, keep playing: boot the test host with a busybox image (bb) and the tour's rootfs.tar.xz
# ready, and open a shell inside; the host goes down when the shell exits. On a systemd host it says
# that nspawnctl runs right there.
shell: venv
	PATH="$(VBIN):$$PATH" $(PY) tests/host/demo.py --shell

# bench/bench.py in the test host: medians and ratios against peers measured in the same run (raw
# systemd-run + systemd-nspawn, podman with crun, machinectl, the interpreter, curl | tar, skopeo +
# umoci), 100 containers and 100 images, the pull benchmarks; prints the README's Markdown rows and
# copies the JSON to bench/results/latest.json (BENCH_JSON). `make bench-quick` is the reduced run
# (~1-2 min) that `make test` does too, as tests/e2e/test_bench.py in the trixie pass.
BENCH_ARGS ?=
BENCH_JSON ?= bench/results/latest.json
.PHONY: bench-quick
bench: deps
	$(PY) tests/host/testhost.py build
	$(PY) tests/host/testhost.py up
	$(PY) tests/host/testhost.py exec -- python3 /src/bench/bench.py --json /tmp/bench.json $(BENCH_ARGS); rc=$$?; \
	  if [ $$rc = 0 ]; then mkdir -p $(dir $(BENCH_JSON)) && \
	    $(PY) tests/host/testhost.py exec -- cat /tmp/bench.json > $(BENCH_JSON) && echo "copied to $(BENCH_JSON)"; fi; \
	  $(PY) tests/host/testhost.py down; exit $$rc

bench-quick: BENCH_ARGS = --quick
bench-quick: BENCH_JSON = bench/results/quick.json
bench-quick: bench

# Fuzz each parser (tar extraction, OCI, ACI, .nspawn, references, Docker API requests) for
# FUZZ_MINUTES each; an input that breaks one is saved to tests/fuzz/corpus/TARGET/, which
# `make unit` replays from then on.
FUZZ_MINUTES ?= 10
FUZZ_TARGETS ?= tar oci aci nspawn ref api
FUZZ_ARGS ?=  # e.g. --keep-going, --skip FILE (see tests/fuzz/run.py --help)
.PHONY: fuzz
fuzz: venv
	@rc=0; for t in $(FUZZ_TARGETS); do \
	  $(VBIN)/python tests/fuzz/run.py $$t --minutes $(FUZZ_MINUTES) $(FUZZ_ARGS) || rc=1; done; exit $$rc

# Extended: docker-py's own integration tests (containers, exec, images) against the Docker API
# service in the trixie host (tests/dockerpy/run.py says how Docker Hub's names are served there),
# booted on the unified cgroup v2 hierarchy (mode unified), where pause/unpause can freeze a unit.
# PyPI's sdists carry no tests: they come from docker-py's git repository at the tag of the
# docker-py the venv installs (DOCKER_PY_SRC may be a local clone). DOCKER_PY_ARGS go to pytest.
DOCKER_PY_SRC ?= https://github.com/docker/docker-py.git
DOCKER_PY_TAG ?= 7.2.0
DOCKER_PY_ARGS ?=
.PHONY: test-docker-py
test-docker-py: deps
	$(PY) tests/host/testhost.py build
	$(PY) tests/host/testhost.py up --install venv --mode unified
	$(PY) tests/dockerpy/prepare.py $(DOCKER_PY_SRC) $(DOCKER_PY_TAG) && \
	  $(PY) tests/host/testhost.py exec -- /opt/nspawnctl/bin/python /src/tests/dockerpy/run.py /opt/docker-py \
	    $(DOCKER_PY_ARGS); rc=$$?; $(PY) tests/host/testhost.py down; exit $$rc
