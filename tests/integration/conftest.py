"""Integration fixtures: real daemons in network namespaces, always torn down."""

import itertools
import os
import shutil
import sys

import pytest

from mipro.lab import Lab

_counter = itertools.count()


def pytest_collection_modifyitems(config, items):
    reason = None
    if os.geteuid() != 0:
        reason = "integration tests need root (network namespaces)"
    elif not shutil.which("ip"):
        reason = "iproute2 is not installed"
    if reason:
        for item in items:
            if "integration" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report carries the tail of each daemon's log from its labs: a
    failure seen once in CI, on a clean clone, is then not a guess afterwards."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for lab in getattr(item, "_mipro_labs", ()):
        for log in sorted((lab.out / "logs").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-40:]
            report.sections.append((f"{lab.prefix} {log.name} (last 40 lines)", "\n".join(tail)))


@pytest.fixture
def make_lab(request, tmp_path):
    """make_lab(scenario, services=True) -> a running Lab; removed after the test."""
    labs: list[Lab] = []
    request.node._mipro_labs = labs

    def factory(scenario: str, services: bool = True) -> Lab:
        lab = Lab(scenario, prefix=f"t{os.getpid() % 10000}{next(_counter)}",
                  out=tmp_path / scenario, python=sys.executable)
        labs.append(lab)
        lab.up(services=services)
        return lab

    yield factory
    for lab in labs:
        lab.down(quiet=True)
        assert not lab.namespaces(), "namespaces left behind"


def kernel_state(lab: Lab, node: str, table: int = 434) -> dict:
    """What mipro may have changed in a node: its table, rules, links, proxy entries."""
    def lines(*cmd):
        # an empty table does not exist for the kernel: its listing fails, meaning "no routes"
        return sorted(lab.exec(node, *cmd, check=False).stdout.split("\n"))

    links = [line.split()[0].split("@")[0] for line in lines("ip", "-br", "link") if line]
    return {
        "table": [x for x in lines("ip", "route", "show", "table", str(table)) if x],
        "rules": [x for x in lines("ip", "rule") if f"lookup {table}" in x],
        "links": sorted(links),
        "proxies": [x for x in lines("ip", "neigh", "show", "proxy") if x],
    }


def wait_binding_saved(lab: Lab, home: str, timeout: float = 5) -> None:
    """Until the HA's state on disk (snapshot and journal, as a restarted HA reads them)
    holds ``home``'s binding: the journal is written within 0.5 s of a change."""
    from mipro.runtime.journal import BindingJournal

    saved = BindingJournal(lab.run_dir / "ha-bindings.json")
    lab.wait_for(lambda: any(str(b.home_address) == home for b in saved.load()), timeout,
                 f"the HA to save {home}'s binding")
