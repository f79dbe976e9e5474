"""Checks of the `nat` scenario (Figs. 9b, 12b): registration and traffic through a NAPT."""

import time

from mipro.lab import Lab

HOME = "10.1.0.100"


def registered(lab: Lab) -> dict:
    """{"mn": ..., "ha": ...} once both are as expect.json's "registered" says (the UDP
    tunnel to the gateway's public address), else {}."""
    return lab.matches("registered")


def gateway_mappings(lab: Lab) -> list[str]:
    """The gateway's UDP conntrack entries to the HA's port 434 (its NAPT mappings)."""
    out = lab.exec("rgw", "conntrack", "-L", "-p", "udp", "--dport", "434",
                   check=False).stdout
    return [line for line in out.splitlines() if "dport=434" in line]


def run(lab: Lab, say=print) -> None:
    both = lab.expect_phase("registered", 40)  # the MN registers through the NAPT
    b = both["ha"]["bindings"][0]
    say(f"MN got private care-of address {b['care_of_address']} from the gateway's DHCP")
    challenged = [x for x in lab.log_lines("ha") if "event=denied" in x and "NAPT" in x]
    assert challenged and "code=131" in challenged[0], challenged
    assert any("event=napt-challenge" in x for x in lab.log_lines("mn"))
    say(f"HA saw the request come from {b['source']} (not the care-of address): "
        "answered 131 with a challenge, accepted the MN's answer")
    say(f"binding: {b['home_address']} -> UDP tunnel to {b['source']} "
        f"(keepalive {both['mn']['bindings'][0]['udp_keepalive']} s, "
        f"{b['lifetime_left']} s left)")
    for node in ("cn-home", "cn-inet"):
        got, rtt = lab.ping(node, HOME)
        assert got == 3, f"{node} -> {HOME}: {got}/3"
        say(f"ping {node} -> MN {HOME} through the UDP tunnel: 3/3, avg {rtt} ms")
    res = lab.tcp_transfer("cn-home", "mn", HOME, 1 << 20)
    assert res["client"]["verified"], res
    say(f"TCP 1 MiB cn-home -> MN behind the NAPT: verified in {res['client']['seconds']} s")
    res = lab.tcp_transfer("mn", "cn-home", "10.1.0.10", 1 << 20, port=5002)
    assert res["client"]["verified"] and res["server"]["peer"] == HOME, res
    say("TCP 1 MiB MN -> cn-home from its home address (reverse, in UDP): verified")

    # idle for longer than the gateway's 10 s UDP timeout: only keepalives flow (the
    # scenario's own timing, on purpose: no condition to wait for)
    time.sleep(12)
    assert gateway_mappings(lab), "the NAPT mapping should be held by the keepalives"
    got, _ = lab.ping("cn-home", HOME)
    assert got == 3, f"after 12 s idle: {got}/3"
    say("12 s idle (gateway UDP timeout 10 s): the keepalives held the mapping, 3/3 pings")

    # the gateway loses its state: the MN notices the silence and registers again
    lab.exec("rgw", "conntrack", "-D", "-p", "udp", check=False)
    t0 = time.time()
    lab.wait_for(lambda: lab.ping("cn-home", HOME, count=1)[0] == 1, 40,
                 "traffic to flow again after the mapping was dropped")
    b2 = lab.status("ha")["bindings"][0]
    say(f"gateway mappings flushed: traffic flows again after {time.time() - t0:.1f} s "
        f"(binding source {b['source']} -> {b2['source']})")
    res = lab.tcp_transfer("cn-home", "mn", HOME, 1 << 20, port=5003)
    assert res["client"]["verified"], res
    say("TCP 1 MiB cn-home -> MN after the mapping expired: verified")
    drops = lab.status("ha").get("tunnel_drops", {})
    say(f"HA tunnel drops: {drops}")
