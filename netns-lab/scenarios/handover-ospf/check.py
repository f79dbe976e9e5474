"""Checks of the `handover-ospf` scenario: CN-local (behind the site router R) pings the MN
and holds a TCP session to it while it moves FA1 -> FA2 -> home.  The MN's /32 reaches R by
OSPF from the FA it is registered with; nothing between CN-local and the MN crosses the
home agent while the MN visits (a capture on the HA's internet side).

What the daemons hold after each step is in expect.json, by phase."""

import re
import time

from mipro.lab import Lab

HOME = "10.1.0.100"
CN_LOCAL = "10.201.0.10"
SITE = {"fa1": "10.200.0.1", "fa2": "10.200.0.2"}  # the FAs' site addresses: R's next hops
ECHO_PORT = 5003


def r_nexthops(lab: Lab) -> list[str]:
    """The next hops of R's selected route to the MN's /32 (FRR's RIB), [] if none."""
    routes = lab.vtysh("r", f"show ip route {HOME}/32 json").get(f"{HOME}/32", [])
    return sorted(h["ip"] for r in routes if r.get("selected")
                  for h in r.get("nexthops", []) if "ip" in h)


def adjacent(lab: Lab, timeout: float = 30) -> None:
    """Until R reaches both FAs as AS boundary routers: an FA's /32 counts at R only once
    R's SPF has that FA (fully adjacent with the segment's DR, its router-LSA in R's
    database; the DR election on a new segment waits a dead interval).  Before, R sends
    the MN's traffic up its default, through the HA."""
    rids = {"fa1": "198.51.100.1", "fa2": "192.0.2.1"}  # their router IDs (highest address)

    def asbrs() -> bool:
        out = lab.vtysh("r", "show ip ospf border-routers")
        return all(re.search(rf"R\s+{re.escape(r)}\s.*ASBR", out) for r in rids.values())
    lab.wait_for(asbrs, timeout, "R's SPF to reach FA1 and FA2 as ASBRs", interval=0.2)


def r_via(lab: Lab, fa: str | None, timeout: float = 20) -> float:
    """Until R's route to the MN's /32 leads to ``fa`` only (None: until it is gone)."""
    want = [SITE[fa]] if fa else []
    lab.wait_for(lambda: r_nexthops(lab) == want or None, timeout,
                 f"R's route to {HOME}/32 via {fa}" if fa else f"R's route to {HOME}/32 to go",
                 interval=0.05)
    return time.time()


def echoed(lab: Lab) -> int:
    out = lab.exec("mn", "ss", "-Htni", "state", "established", f"sport = :{ECHO_PORT}").stdout
    return sum(int(n) for n in re.findall(r"bytes_received:(\d+)", out))


def echoes_flow(lab: Lab, since: int, what: str) -> int:
    return lab.wait_for(lambda: (n := echoed(lab)) >= since + 90 and n, 10, what)


def run(lab: Lab, say=print) -> None:
    adjacent(lab)
    lab.expect_phase("via-fa1", 30)
    r_via(lab, "fa1", 30)
    say(f"MN registered through FA1; R reaches {HOME}/32 via FA1 ({SITE['fa1']}) by OSPF")
    for node, dst in (("cn-local", HOME), ("mn", CN_LOCAL)):
        got, rtt = lab.ping(node, dst)
        assert got == 3, f"{node} -> {dst}: {got}/3"
        say(f"ping {node} -> {dst}: 3/3, avg {rtt} ms")
    local = f"host {CN_LOCAL} and host {HOME}"
    with lab.capture("ha", local, "wan0") as via_ha, lab.capture("fa1", local, "site0") as s1, \
            lab.capture("fa2", local, "site0") as s2:
        stream = lab.echo_stream("cn-local", "mn", HOME, seconds=14, port=ECHO_PORT)
        carried = echoes_flow(lab, 0, "the TCP session to run through FA1")
        t_move = lab.move("mn.eth0", "visit-b")
        lab.expect_phase("via-fa2", 20)
        t_reg = time.time()
        t_route = r_via(lab, "fa2")
        say(f"moved to visited network B: registered through FA2 in {t_reg - t_move:.2f} s, "
            f"R's route via FA2 {t_route - t_move:.2f} s after the move")
        lab.expect_phase("fa1-forgot", 5)
        got, _ = lab.ping("cn-local", HOME)
        assert got == 3, f"cn-local -> MN via FA2: {got}/3"
        carried = echoes_flow(lab, carried, "the TCP session to run through FA2")
        say("ping cn-local -> MN through R and FA2: 3/3; the TCP session goes on")
    assert not via_ha, f"CN-local <-> MN crossed the home agent: {via_ha[:5]}"
    assert s1 and s2, "CN-local <-> MN should cross FA1's, then FA2's site interface"
    say(f"captures: {len(s1)} packets on FA1's site interface, {len(s2)} on FA2's, "
        "none through the home agent")
    t_move = lab.move("mn.eth0", "home")
    lab.expect_phase("home", 20)
    t_gone = r_via(lab, None)
    say(f"moved home: deregistered, R's route to {HOME}/32 gone {t_gone - t_move:.2f} s "
        "after the move (R reaches the home network up its default, through the HA)")
    got, _ = lab.ping("cn-local", HOME)
    assert got == 3, f"cn-local -> MN at home: {got}/3"
    result = lab.echo_result(stream)
    assert result.get("ok"), result
    say(f"TCP session cn-local -> MN stayed up across both moves: {result['messages']} "
        f"echoes, longest stall {result['max_stall_ms']} ms")
    lab.expect_phase("fa2-forgot", 5)
    say("FA2 dropped its visitor and its /32 too: the MN told it from home")
