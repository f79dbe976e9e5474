# mipro — every target does its own set-up on a fresh Debian 12 machine (as root).
# `make demo` runs the lab, `make test` the whole suite.  Both are idempotent.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mipro-installed

APT_PACKAGES := python3 python3-venv python3-dev iptables libip4tc2 libip6tc2 iproute2 \
	ipset conntrack tshark tcpdump dnsmasq-base slapd ldap-utils iperf3 procps iputils-ping \
	qemu-system-x86 linux-image-amd64 busybox-static kmod nftables libnftables1 gcc libc6-dev \
	keepalived

.PHONY: all setup apt venv test test-unit test-integration test-kernel lint fuzz demo \
	codec-demo bench bench-kernel bench-flood clean

all: test

setup: apt venv

# Install only what is missing; refresh package lists only when something is.
apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing $$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi; \
	ldconfig

venv: $(STAMP)

$(STAMP): pyproject.toml | apt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Everything: the suite on this kernel, then the kernel-backend tests on a kernel that
# has ipip/ip_gre (this one if it does, else Debian's stock kernel in qemu).
test: setup
	$(PY) -m pytest -q -ra tests --ignore=tests/kernel
	$(PY) tests/kernel/runner.py

test-kernel: setup
	$(PY) tests/kernel/runner.py

test-unit: setup
	$(PY) -m pytest -q -ra tests/unit

test-integration: setup
	$(PY) -m pytest -q -ra tests/integration

lint: setup
	$(VENV)/bin/ruff check mipro tests bench
	$(VENV)/bin/mypy

# Long fuzz runs: the decoders (1,000,000 inputs), then the HA, FA and MN engines with
# stateful sequences (1,000,000 steps each, invariants after every engine call); prints
# counts.  FUZZ_ARGS="--seed N --json FILE" picks another seed, writes the counts.
FUZZ_ARGS ?=
fuzz: setup
	$(PY) bench/fuzz_codec.py --count 1000000
	$(PY) bench/fuzz_engines.py --steps 1000000 --engine all $(FUZZ_ARGS)

bench: setup
	$(PY) bench/fuzz_codec.py --count 200000
	$(PY) bench/registration.py
	$(PY) bench/handover.py
	$(PY) bench/ro_apply.py
	$(PY) bench/udp_tunnel.py

# Hostile floods at the HA and the FA while a real MN registers (bench/flood.py; builds
# bench/floodgen.c into build/ with gcc).  FLOOD_ARGS="--limiter off,on" adds the
# kernel limits of mipro.dataplane.kernel.floodlimit installed from outside.
FLOOD_ARGS ?=
bench-flood: setup
	$(PY) bench/flood.py $(FLOOD_ARGS)

# Kernel-backend benchmarks, in Debian's stock kernel when this one lacks ipip.
bench-kernel: setup
	$(PY) tests/kernel/runner.py --exec '$$PY bench/kernel_dataplane.py; \
	  $$PY bench/kernel_programming.py --tunnels shared; \
	  $$PY bench/kernel_programming.py --tunnels shared --proxy-arp interface; \
	  $$PY bench/kernel_programming.py --tunnels per-care-of'

# The lab: HA, MN (and later FA) daemons in network namespaces, scenario by scenario.
DEMO_SCENARIOS ?= colocated handover ro ro-colocated nat overlap
# KERNEL=stock: the route optimization scenario in Debian's kernel (qemu), with a 20 ms
# netem delay each way on the internet links, so RO on vs off shows as time.
demo: setup
ifeq ($(KERNEL),stock)
	$(PY) tests/kernel/runner.py --demo ro
else
	$(PY) -m mipro.lab.cli run $(DEMO_SCENARIOS)
endif

codec-demo: setup
	$(PY) -m mipro.tools.codec_demo

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis netns-lab/out
