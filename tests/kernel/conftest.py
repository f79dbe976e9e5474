"""Tests of the kernel tunnel backend: they need a kernel with ipip and ip_gre.

On a kernel without them (like the development machine's) every test here is
skipped with the reason; `make test-kernel` (tests/kernel/runner.py) runs them
inside Debian's stock kernel under qemu instead.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from ..integration.conftest import (  # noqa: F401 - the same lab fixture, its failure logs
    make_lab,
    pytest_runtest_makereport,
)


def _missing_tunnels() -> str | None:
    """Why this kernel cannot run the kernel backend, or None if it can."""
    ns = f"mkprobe-{uuid.uuid4().hex[:8]}"
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode:
        return "cannot create a network namespace"
    try:
        for kind, args in (("ipip", []), ("gre", [])):
            subprocess.run(["modprobe", "ipip" if kind == "ipip" else "ip_gre"],
                           capture_output=True)
            r = subprocess.run(["ip", "-n", ns, "link", "add", "probe0", "type", kind,
                                "local", "192.0.2.1", "remote", "192.0.2.2", *args],
                               capture_output=True, text=True)
            if r.returncode:
                return f"this kernel ({os.uname().release}) has no {kind} links: " \
                       f"{r.stderr.strip()}"
            subprocess.run(["ip", "-n", ns, "link", "del", "probe0"], capture_output=True)
        return None
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


MISSING = _missing_tunnels()


def pytest_collection_modifyitems(config, items):
    if MISSING is None:
        return
    skip = pytest.mark.skip(reason=f"{MISSING}; run `make test-kernel`")
    for item in items:
        if "tests/kernel" in str(item.fspath):
            item.add_marker(skip)
