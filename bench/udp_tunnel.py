#!/usr/bin/env python3
"""UDP tunnelling throughput (issue 6 benchmark): RFC 3519 vs IP-in-IP vs no tunnel.

In the `nat` lab (same namespaces, links and daemons), iperf3 from CN-home to
the mobile node, TCP and UDP, in four set-ups measured in the same run:

  udp-napt   the MN behind the residential NAPT, UDP tunnel to the NAPT's port
  udp        no NAPT (the gateway routes), UDP tunnelling forced (F flag)
  ipip       no NAPT, IP-in-IP (the same userspace relay)
  direct     no NAPT, no tunnel, no mobility: CN-home to the MN's interface

Figures, not pass/fail; ratios are against `ipip` (same backend) and `direct`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mipro.lab import Lab  # noqa: E402

HOME = "10.1.0.100"


def setup(lab: Lab, variant: str) -> str:
    """Start the MN for ``variant``; return the address iperf3 targets."""
    if variant != "udp-napt":  # the gateway routes instead of translating
        lab.exec("rgw", "iptables-legacy", "-t", "nat", "-F", "POSTROUTING")
        lab.exec("inet", "ip", "route", "replace", "10.0.0.0/24", "via", "172.31.2.1")
    if variant == "direct":  # no mobility at all: the MN's interface, statically addressed
        lab.exec("mn", "ip", "addr", "add", "10.0.0.50/24", "dev", "eth0")
        lab.exec("mn", "ip", "route", "add", "default", "via", "10.0.0.1")
        return "10.0.0.50"
    mode = {"udp-napt": "auto", "udp": "always", "ipip": "never"}[variant]
    lab.edit_conf("mn", "mn.toml", 'udp_tunnel = "auto"', f'udp_tunnel = "{mode}"')
    lab.start_service("mn")
    lab.wait_for(lambda: lab.status("mn")["state"] == "registered", 40, "registration")
    b = lab.status("ha")["bindings"][0]
    assert b["encapsulation"] == ("ipip" if variant == "ipip" else "udp"), b
    return HOME


def measure(variant: str, seconds: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="mipro-udpbench-") as tmp:
        lab = Lab("nat", prefix="udb", out=Path(tmp) / "nat", python=sys.executable)
        try:
            lab.up(services=False)
            for name in ("dnsmasq", "ha"):
                lab.start_service(name)
            dst = setup(lab, variant)
            return {"tcp": lab.iperf("mn", "cn-home", dst, False, seconds),
                    "udp": lab.iperf("mn", "cn-home", dst, True, seconds)}
        finally:
            lab.down(quiet=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=int, default=5)
    a = p.parse_args()
    results = {v: measure(v, a.seconds) for v in ("direct", "ipip", "udp", "udp-napt")}
    print(f"iperf3 CN-home -> MN, {a.seconds} s each, Mbit/s (ratio to ipip, to direct)")
    print(f"{'set-up':<10} {'TCP':>26} {'UDP (received)':>26}")
    for v, r in results.items():
        cells = []
        for proto in ("tcp", "udp"):
            x = r[proto]
            cells.append(f"{x:>9.0f} ({x / results['ipip'][proto]:.2f}, "
                         f"{x / results['direct'][proto]:.2f})")
        print(f"{v:<10} {cells[0]:>26} {cells[1]:>26}")


if __name__ == "__main__":
    main()
