#!/usr/bin/env python3
"""Route convergence at the site router after a move (issue 16 benchmark, seed Fig. 3b).

In the `handover-ospf` lab the mobile node moves FA1 <-> FA2 ``--moves`` times.  For each
move: the time from the registration's acceptance (the new FA relaying the home agent's
accepting Registration Reply to the MN on its visited link: tcpdump there) to R's kernel
route to the MN's /32 changing to the new FA (zebra installing what ospfd computed:
``ip -ts monitor route`` in R).  In the same run with FRR's default timers (SPF throttle
0/50/5000 ms, LSA minimum interval 5 s, minimum arrival 1 s) and with the tuned ones of
conf/frr (LSAs originated at once, accepted at once, SPF 0/50/1000 ms).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mipro.lab import Lab  # noqa: E402
from mipro.lab.cli import load_check  # noqa: E402

HOME = "10.1.0.100"
FAS = {"fa1": ("visit-a", "198.51.100.1", "10.200.0.1"),
       "fa2": ("visit-b", "192.0.2.1", "10.200.0.2")}
TUNED = {"fa": ["timers throttle lsa all 0", "timers throttle spf 0 50 1000"],
         "r": ["timers lsa min-arrival 0", "timers throttle spf 0 50 1000"]}


def registered_via(lab: Lab, coa: str) -> bool:
    mn = lab.status("mn")
    return mn["state"] == "registered" and mn["care_of_address"] == coa


def watch(lab: Lab, node: str, *cmd: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", lab.ns(node), *cmd],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def replies(lines: list[str], fa_addr: str) -> list[float]:
    """Accepting Registration Replies the FA sent to the MN (tcpdump -tt -x: type 3, code 0
    are the UDP payload's first two octets)."""
    out, t, head = [], None, ""
    for line in [*lines, ""]:
        m = re.match(r"^(\d+\.\d+) IP (\S+)\.434 > ", line)
        if m or not line.startswith("\t"):
            if t is not None and head[56:60] == "0300":  # 20 IP + 8 UDP octets, hex
                out.append(t)
            t, head = (float(m.group(1)), "") if m and m.group(2) == fa_addr else (None, "")
            continue
        head += "".join(line.split(":", 1)[1].split())
    return out


def route_changes(lines: list[str]) -> list[tuple[float, str]]:
    """(time, next hop) of each new route to the MN's /32 in R's main table."""
    out, stamp = [], None
    for line in lines:
        m = re.match(r"^\[(\d{4}-\d\d-\d\dT[\d:.]+)", line)
        if m:
            stamp = datetime.fromisoformat(m.group(1)).timestamp()
            line = line[m.end():].lstrip("] ")
        m = re.match(rf"^{re.escape(HOME)} (?:nhid \d+ )?via (\S+)", line)
        if m and stamp is not None:
            out.append((stamp, m.group(1)))
    return out


def run_variant(tuned: bool, moves: int, settle: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="mipro-ospf-") as tmp:
        lab = Lab("handover-ospf", prefix="obc", out=Path(tmp) / "o", python=sys.executable)
        try:
            lab.up(services=False)
            lab.edit_conf("mn", "mn.toml", "lifetime = 20", "lifetime = 120")
            if not tuned:
                for node, role in (("fa1", "fa"), ("fa2", "fa"), ("r", "r")):
                    for line in TUNED[role]:
                        lab.edit_conf(node, "frr.conf", f" {line}\n", "")
            for svc in lab.spec["service"]:
                lab.start_service(svc["name"])
            check = load_check("handover-ospf")
            check.adjacent(lab, 60)  # R's SPF reaching both FAs
            lab.wait_for(lambda: registered_via(lab, FAS["fa1"][1]), 30, "FA1 registration")
            lab.wait_for(lambda: check.r_nexthops(lab) == [FAS["fa1"][2]], 30, "R via FA1")
            mon = watch(lab, "r", "ip", "-ts", "-4", "monitor", "route")
            dumps = {fa: watch(lab, fa, "tcpdump", "-l", "-n", "-tt", "-x", "-i", "lan0",
                               "udp src port 434") for fa in FAS}
            time.sleep(1.0)
            moved = []
            for i in range(moves):
                fa = "fa2" if i % 2 == 0 else "fa1"
                bridge, coa, nexthop = FAS[fa]
                t_up = lab.move("mn.eth0", bridge)
                lab.wait_for(lambda c=coa: registered_via(lab, c), 10, "registration",
                             interval=0.02)
                moved.append((t_up, fa))
                time.sleep(max(0.0, t_up + settle - time.time()))
            time.sleep(1.0)
            for p in (mon, *dumps.values()):
                p.terminate()
            routes = route_changes(mon.communicate(timeout=10)[0].splitlines())
            accepted = {fa: replies(p.communicate(timeout=10)[0].splitlines(), FAS[fa][1])
                        for fa, p in dumps.items()}
        finally:
            lab.down(quiet=True)
    conv = []
    for t_up, fa in moved:
        t_acc = next((t for t in accepted[fa] if t >= t_up - 0.05), None)
        t_route = next((t for t, nh in routes if nh == FAS[fa][2] and t_acc and t >= t_acc),
                       None)
        if t_acc is not None and t_route is not None and t_route < t_up + settle:
            conv.append((t_route - t_acc) * 1000)
    return {"tuned": tuned, "moves": moves, "measured": len(conv),
            "median": round(statistics.median(conv), 1) if conv else None,
            "p90": round(sorted(conv)[int(0.9 * (len(conv) - 1))], 1) if conv else None,
            "max": round(max(conv), 1) if conv else None,
            "min": round(min(conv), 1) if conv else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--moves", type=int, default=20)
    p.add_argument("--settle", type=float, default=3.0, help="seconds between moves")
    a = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    if not Path("/usr/lib/frr/zebra").exists():
        sys.exit("FRR is not installed (make apt)")
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores, shared)")
    print(f"settle {a.settle:g} s between moves; 'followed': moves after which R's route went "
          "to the new FA before the next move (the figures are of those)")
    print(f"{'FRR timers':<34} {'moves':>5} {'followed':>8} {'median ms':>10} {'p90':>8} "
          f"{'max':>8} {'min':>8}")
    for tuned in (False, True):
        r = run_variant(tuned, a.moves, a.settle)
        name = "tuned (conf/frr: LSA 0, SPF 0/50)" if tuned else "FRR defaults"
        print(f"{name:<34} {r['moves']:>5} {r['measured']:>8} {r['median']!s:>10} "
              f"{r['p90']!s:>8} {r['max']!s:>8} {r['min']!s:>8}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
