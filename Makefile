# nspawnctl: the two entry points are `make demo` and `make test`; both install what they need.
PY ?= python3
SYSTEM_PACKAGES := debootstrap systemd-container btrfs-progs libbtrfsutil-dev tar xz-utils zstd

.PHONY: demo test deps unit lint e2e bench clean shell

deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'

# Install, import a busybox image and run a container; on a host without systemd as PID 1 this
# boots the test host first and runs the demo inside it.
demo: deps
	$(PY) tests/host/demo.py

lint: deps
	$(PY) -m ruff check nspawnctl tests bench
	$(PY) -m mypy nspawnctl

unit: deps
	$(PY) -m pytest -q tests/unit

# The end-to-end tests inside a booted systemd host (real machined, journald, btrfs), then the ones
# that drive the host from outside (the pool layouts, reboots); their last test (test_leftovers.py)
# fails if a test host, a loop device or a mount of .build is left.
e2e: deps
	$(PY) tests/host/testhost.py test
	$(PY) -m pytest -q tests/host

test: lint unit e2e

clean:
	$(PY) tests/host/testhost.py clean

# After the demo, keep playing: boot the test host with a busybox image (bb) and the tour's rootfs.tar.xz
# ready, and open a shell inside; the host goes down when the shell exits. On a systemd host it says
# that nspawnctl runs right there.
shell: deps
	$(PY) tests/host/demo.py --shell

# Medians and ratios against raw systemd-nspawn and systemd-run, measured in the same run, in the test host.
bench: deps
	$(PY) tests/host/testhost.py build
	$(PY) tests/host/testhost.py up
	$(PY) tests/host/testhost.py exec -- sh -c "python3 /src/bench/bench.py && python3 /src/bench/pull_memory.py && python3 /src/bench/pull_registry.py"; rc=$$?; \
	  $(PY) tests/host/testhost.py down; exit $$rc
