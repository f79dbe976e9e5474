"""Attack tests: the engines in memory, and the real daemons in namespaces (root)."""

import os
import shutil

import pytest

from tests.integration.conftest import (  # noqa: F401 - the lab fixture, its failure logs
    make_lab,
    pytest_runtest_makereport,
)


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0 and shutil.which("ip"):
        return
    for item in items:
        if "attacks" in str(item.fspath) and "daemon" in item.name:
            item.add_marker(pytest.mark.skip(reason="needs root and iproute2 (namespaces)"))
