"""Active/active redundancy (tests/integration/test_active_active.py) with both home
agents on the kernel backend: each binding's link (or lightweight-tunnel route) has the
virtual address its MN registered with as its local end, and a killed home agent's
links, whichever address they end on, go with `mipro ha --cleanup`."""

import signal
from pathlib import Path

import pytest

from ..integration.test_active_active import FA_COA, VIP1, VIP2, prepare, run
from .test_kernel_backend import kernel_backend, links

pytestmark = pytest.mark.skipif(not Path("/usr/sbin/keepalived").exists(),
                                reason="keepalived is not installed (make setup installs it)")


def hexed(address: str) -> str:
    return bytes(int(x) for x in address.split(".")).hex()


# the first in `make test`; all three in `make test-kernel-all` (10-15 min each emulated)
@pytest.mark.parametrize("tunnels,mn2_tunnel", [
    ("per-care-of", "ipip"),
    pytest.param("per-care-of", "udp", marks=pytest.mark.slow),
    pytest.param("shared", "ipip", marks=pytest.mark.slow)])
def test_active_active_on_kernel_tunnels(make_lab, tunnels, mn2_tunnel):
    lab = make_lab("failover", services=False)
    prepare(lab, mn2_tunnel)
    kernel_backend(lab, ("ha1", "ha.toml"), ("ha2", "ha.toml"))
    if tunnels == "shared":
        for ha in ("ha1", "ha2"):
            lab.edit_conf(ha, "ha.toml", "[ha]", '[ha]\nkernel_tunnels = "shared"')

    def kernel(phase: str) -> None:
        coa2 = lab.status("mn2")["care_of_address"]
        mn1_on = "ha1" if phase == "split" else "ha2"
        assert lab.status("ha2")["dataplane"] == "kernel"
        if tunnels == "shared":
            routes = {ha: lab.exec(ha, "ip", "route", "show", "table", "434").stdout
                      for ha in ("ha1", "ha2")}
            assert f"encap ip id 0 src {VIP1} dst {FA_COA}" in routes[mn1_on], routes
            if mn2_tunnel == "ipip":
                assert f"encap ip id 0 src {VIP2} dst {coa2}" in routes["ha2"], routes
            raw = lab.exec("ha2", "iptables-legacy", "-t", "raw", "-S", "MIPRO-TUN-IN").stdout
            assert f"-d {VIP1}/32" in raw and f"-d {VIP2}/32" in raw, raw
            return
        # per care-of address: VIP1's links keep their name, VIP2's have a mark
        mn1 = links(lab, mn1_on)
        assert f"miph-{hexed(FA_COA)}@" in mn1, mn1
        assert f"remote {FA_COA} local {VIP1}" in mn1, mn1
        ha2 = links(lab, "ha2")
        if mn2_tunnel == "ipip":
            assert f"miph-{hexed(coa2)}1@" in ha2 and f"remote {coa2} local {VIP2}" in ha2, ha2
        else:  # the relay's: UDP tunnels have no kernel link
            assert coa2 not in ha2, ha2
        if phase == "split":
            assert "miph-" not in links(lab, "ha2").replace(f"miph-{hexed(coa2)}1", "")

    run(lab, mn2_tunnel, counted=tunnels != "shared", kernel=kernel)
    # HA2 dies too: the cleanup finds its links on either address by their prefix
    lab.stop_service("ha2", signal.SIGKILL)
    lab.exec("ha2", lab.python, "-m", "mipro.cli", "ha", "--cleanup", "--config",
             str(lab.conf("ha2", "ha.toml")))
    assert "miph-" not in links(lab, "ha2")
    assert not lab.exec("ha2", "ip", "route", "show", "table", "434", check=False).stdout
