"""Checks of the `overlap` scenario: an overlapping correspondent is ignored (Figs. 3c, 5)."""

import subprocess
import time

from mipro.lab import Lab

HOME, CN = "10.1.0.100", "10.1.0.10"


def registered(lab: Lab) -> dict:
    mn, fa = lab.status("mn"), lab.status("fa1")
    if mn["state"] == "registered" and fa["visitors"] and fa["visitors"][0].get("applied"):
        return fa["visitors"][0]
    return {}


def icmp_seen(lab: Lab, node: str, action) -> int:
    """ICMP echo requests from the MN's home address that ``node`` receives meanwhile."""
    cap = subprocess.Popen(["ip", "netns", "exec", lab.ns(node), "tcpdump", "-l", "-n", "-i",
                            "eth0", f"icmp[icmptype] = icmp-echo and src host {HOME}"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(1.0)
    try:
        action()
        time.sleep(0.5)
    finally:
        cap.terminate()
    out, _ = cap.communicate(timeout=10)
    return len([line for line in out.splitlines() if "ICMP echo request" in line])


def run(lab: Lab, say=print) -> None:
    visitor = lab.wait_for(lambda: registered(lab), 30, "registration with routes at FA1")
    routes = {r["destination"]: r for r in visitor["routes"]}
    assert routes["10.1.0.0/24"]["via"] == "tunnel", routes
    fa_main = lab.exec("fa1", "ip", "route", "show", "table", "main").stdout
    assert f"{CN} dev lan0" in fa_main, fa_main
    say(f"FA1 has a route to {CN} on visited network A (CN-overlap), and the MN's profile "
        f"routes 10.1.0.0/24 through the tunnel (cost {routes['10.1.0.0/24']['cost']})")
    got: list[int] = []
    home_saw = icmp_seen(lab, "cn-home", lambda: got.append(lab.ping("mn", CN, count=5)[0]))
    overlap_saw = icmp_seen(lab, "cn-overlap", lambda: lab.ping("mn", CN, count=5))
    assert got == [5] and home_saw >= 5 and overlap_saw == 0, (got, home_saw, overlap_saw)
    say(f"MN pings {CN}: CN-home (through the tunnel) answered 5/5 and saw {home_saw} "
        f"requests; CN-overlap on the visited link saw {overlap_saw}")
    res = lab.tcp_transfer("mn", "cn-home", CN, 100_000)
    assert res["client"]["verified"] and res["server"]["peer"] == HOME, res
    say("TCP MN -> 10.1.0.10 reached CN-home from the home address")
    got_local = lab.ping("cn-overlap", HOME, count=3)[0]
    assert got_local == 0
    say(f"CN-overlap -> MN {HOME}: 0/3 answered, the MN's answers to {CN} go home through "
        "the tunnel: the overlapping local correspondent is ignored, as the seed says")
