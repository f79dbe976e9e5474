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
	keepalived graphviz man-db groff-base systemd frr

.PHONY: all setup apt venv test test-unit test-integration test-kernel test-kernel-all lint fuzz demo \
	codec-demo bench bench-kernel bench-flood bench-failover bench-metrics bench-scale metrics-dashboard \
	man install install-files install-user uninstall clean

# Where `make install` puts mipro: a virtualenv in LIBDIR, the command in BINDIR (the units'
# ExecStart=), the man page, the units, the sysusers.d and tmpfiles.d files and the docs.
PREFIX ?= /usr/local
BINDIR := $(PREFIX)/bin
LIBDIR := $(PREFIX)/lib/mipro
MANDIR := $(PREFIX)/share/man
DOCDIR := $(PREFIX)/share/doc/mipro
UNITDIR := $(PREFIX)/lib/systemd/system
SYSUSERSDIR := $(PREFIX)/lib/sysusers.d
TMPFILESDIR := $(PREFIX)/lib/tmpfiles.d

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

# Everything: ruff and mypy (lint), the suite on this kernel, then the kernel-backend
# tests on a kernel that has ipip/ip_gre (this one if it does, else Debian's stock kernel
# in qemu).
test: lint
	$(PY) -m pytest -q -ra tests --ignore=tests/kernel
	$(PY) tests/kernel/runner.py

test-kernel: setup
	$(PY) tests/kernel/runner.py

# The kernel-backend tests marked slow too (active/active on UDP and shared tunnels).
test-kernel-all: setup
	$(PY) tests/kernel/runner.py --all

test-unit: setup
	$(PY) -m pytest -q -ra tests/unit

test-integration: setup
	$(PY) -m pytest -q -ra tests/integration

# ruff and mypy from the venv (the test extra of pyproject.toml; the venv is reinstalled
# when pyproject.toml changes); mypy's configuration is pyproject's [tool.mypy]
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
	$(PY) bench/ospf_convergence.py
	$(PY) bench/ro_apply.py
	$(PY) bench/udp_tunnel.py
	$(PY) bench/failover.py

# Home agent redundancy alone: failover outage (10 kills per mode), bulk sync 10k/100k,
# registration rate with replication on vs off.  FAILOVER_ARGS="--only outage --kills 20"
FAILOVER_ARGS ?=
bench-failover: setup
	$(PY) bench/failover.py $(FAILOVER_ARGS)

# The home agent at operator scale (issue 15): 100 to 1,000,000 MNs, start-up and restart,
# fake vs kernel dataplane in the same run; memory per subscriber by store.
bench-scale: setup
	$(PY) bench/registration.py --sizes 100,100000,1000000 --backends fake,userspace:interface --restart --reload
	$(PY) bench/subscriber_memory.py --sizes 10000,100000

# Hostile floods at the HA and the FA while a real MN registers (bench/flood.py; builds
# bench/floodgen.c into build/ with gcc).  FLOOD_ARGS="--limiter off,on" adds the
# kernel limits of mipro.dataplane.kernel.floodlimit installed from outside.
FLOOD_ARGS ?=
bench-flood: setup
	$(PY) bench/flood.py $(FLOOD_ARGS)

# What Prometheus metrics cost the home agent (off vs on, scraped every second).
bench-metrics: setup
	$(PY) bench/metrics_overhead.py

# docs/metrics-dashboard.png: the Grafana dashboard's queries on a lab run, evaluated by
# Debian's Prometheus and drawn by the script (Grafana is not packaged), photographed by
# headless Chromium.  Only this target needs these two (large) packages.
DASHBOARD_PACKAGES := prometheus chromium
metrics-dashboard: setup
	@missing=$$(for p in $(DASHBOARD_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi
	$(PY) bench/metrics_dashboard.py

# Kernel-backend benchmarks, in Debian's stock kernel when this one lacks ipip.
bench-kernel: setup
	$(PY) tests/kernel/runner.py --exec '$$PY bench/kernel_dataplane.py; \
	  $$PY bench/kernel_programming.py --tunnels shared; \
	  $$PY bench/kernel_programming.py --tunnels shared --proxy-arp interface; \
	  $$PY bench/kernel_programming.py --tunnels per-care-of'

# The lab: HA, FA and MN daemons in network namespaces, scenario by scenario; each
# scenario's topology and checked paths drawn into netns-lab/out/SCENARIO/topology.svg.
DEMO_SCENARIOS ?= colocated handover ro ro-colocated nat overlap failover
# KERNEL=stock: the route optimization scenario in Debian's kernel (qemu), with a 20 ms
# netem delay each way on the internet links, so RO on vs off shows as time.
demo: setup
ifeq ($(KERNEL),stock)
	$(PY) tests/kernel/runner.py --demo ro
else
	$(PY) -m mipro.lab.cli run $(DEMO_SCENARIOS); rc=$$?; \
	  echo "demo: pictures of each topology and the paths checked (docs/lab.md):"; \
	  for s in $(DEMO_SCENARIOS); do echo "  netns-lab/out/$$s/topology.svg (.png)"; done; \
	  exit $$rc
endif

codec-demo: setup
	$(PY) -m mipro.tools.codec_demo

# mipro(8), from docs/mipro.8.rst (docutils' man page writer; a warning is an error).
man: setup build/mipro.8

build/mipro.8: docs/mipro.8.rst
	mkdir -p build
	$(PY) -m docutils --writer=manpage --halt=warning $< $@

# Install mipro for the units (as root): the files under PREFIX, then the mipro user and
# /etc/mipro.  Then copy the configuration (README.md, docs/operations.md) and enable a unit.
install: setup
	$(MAKE) install-files install-user

# Everything under PREFIX.  Python from the system (python3-venv), packages from PyPI;
# PIP_ARGS passes options to pip (e.g. --no-index --find-links DIR).
PIP_ARGS ?=
install-files: build/mipro.8
	$(PYTHON) -m venv $(LIBDIR)
	$(LIBDIR)/bin/pip install -q $(PIP_ARGS) --upgrade .
	install -d $(BINDIR) $(MANDIR)/man8 $(UNITDIR) $(SYSUSERSDIR) $(TMPFILESDIR) $(DOCDIR)/examples
	ln -sfn $(LIBDIR)/bin/mipro $(BINDIR)/mipro
	install -m 0644 build/mipro.8 $(MANDIR)/man8/mipro.8
	for role in ha fa mn; do \
	  sed 's|/usr/local/|$(PREFIX)/|g' systemd/mipro-$$role.service > $(UNITDIR)/mipro-$$role.service; \
	  chmod 0644 $(UNITDIR)/mipro-$$role.service; \
	done
	install -D -m 0644 systemd/keepalived-mipro.conf $(UNITDIR)/keepalived.service.d/mipro.conf
	install -m 0644 systemd/mipro.sysusers $(SYSUSERSDIR)/mipro.conf
	install -m 0644 systemd/mipro.tmpfiles $(TMPFILESDIR)/mipro.conf
	install -m 0644 README.md docs/operations.md docs/configuration.md $(DOCDIR)/
	install -m 0644 conf/*.toml conf/keepalived.conf $(DOCDIR)/examples/
	-mandb -q 2>/dev/null

# The system user and group (systemd-sysusers), /etc/mipro for it, systemd told.
install-user:
	systemd-sysusers $(SYSUSERSDIR)/mipro.conf
	systemd-tmpfiles --create $(TMPFILESDIR)/mipro.conf
	install -d -m 0750 -o root -g mipro /etc/mipro
	if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "mipro: installed in $(LIBDIR), $(BINDIR)/mipro, units in $(UNITDIR) (man mipro)"

# Removes what install-files put under PREFIX; leaves /etc/mipro, /var/lib/mipro and the user.
uninstall:
	rm -rf $(LIBDIR) $(DOCDIR)
	rm -f $(BINDIR)/mipro $(MANDIR)/man8/mipro.8 $(SYSUSERSDIR)/mipro.conf $(TMPFILESDIR)/mipro.conf \
	  $(UNITDIR)/mipro-ha.service $(UNITDIR)/mipro-fa.service $(UNITDIR)/mipro-mn.service \
	  $(UNITDIR)/keepalived.service.d/mipro.conf
	-rmdir $(UNITDIR)/keepalived.service.d 2>/dev/null
	if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis netns-lab/out build
