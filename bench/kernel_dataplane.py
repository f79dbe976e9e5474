#!/usr/bin/env python3
"""Data-plane throughput by backend (issue 7 benchmark), for a kernel with ipip links.

In the `colocated` lab, iperf3 from CN-home to the mobile node's home address
(through the HA and the tunnel) and back, TCP and UDP, with:

  kernel      the HA's and MN's kernel IP-in-IP links (dataplane.backend = "kernel")
  userspace   the userspace relay (TUN + raw sockets) on the same path
  none        no tunnel: CN-home to the MN's care-of address, routed

Run it where the kernel has ipip (`tests/kernel/runner.py --exec`); under
emulation absolute figures mean little, ratios to `none` do.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mipro.lab import Lab  # noqa: E402

HOME = "10.1.0.100"


def measure(backend: str, seconds: int, repeat: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="mipro-dpbench-") as tmp:
        lab = Lab("colocated", prefix="kdp", out=Path(tmp) / "colocated", python=sys.executable)
        try:
            lab.up(services=False)
            for node, name in (("ha", "ha.toml"), ("mn", "mn.toml")):
                path = lab.conf(node, name)
                kind = "kernel" if backend == "none" else backend
                path.write_text(path.read_text() + f'\n[dataplane]\nbackend = "{kind}"\n')
            for name in ("dnsmasq", "ha", "mn"):
                lab.start_service(name)
            lab.wait_for(lambda: lab.status("mn")["state"] == "registered", 60, "registration")
            dst = HOME
            if backend == "none":
                dst = lab.status("mn")["colocated_address"].split("/")[0]
                lab.stop_service("mn")  # deregisters; the care-of address stays on eth0
                lab.exec("mn", "ip", "addr", "replace", f"{dst}/24", "dev", "eth0")
                lab.exec("mn", "ip", "route", "replace", "default", "via", "198.51.100.1")
            runs = [(lab.iperf("mn", "cn-home", dst, False, seconds),
                     lab.iperf("mn", "cn-home", dst, True, seconds)) for _ in range(repeat)]
            return {"tcp": statistics.median(t for t, _ in runs),
                    "udp": statistics.median(u for _, u in runs),
                    "tcp_runs": [round(t) for t, _ in runs]}
        finally:
            lab.down(quiet=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--repeat", type=int, default=3, help="iperf3 runs per backend (median)")
    a = p.parse_args()
    results = {b: measure(b, a.seconds, a.repeat) for b in ("none", "kernel", "userspace")}
    print(f"iperf3 CN-home -> MN, {a.seconds} s each, median of {a.repeat}, Mbit/s "
          "(ratio to no tunnel)")
    for b, r in results.items():
        print(f"  {b:<10} TCP {r['tcp']:>8.0f} ({r['tcp'] / results['none']['tcp']:.2f})   "
              f"UDP {r['udp']:>8.0f} ({r['udp'] / results['none']['udp']:.2f})   "
              f"TCP runs {r['tcp_runs']}")


if __name__ == "__main__":
    main()
