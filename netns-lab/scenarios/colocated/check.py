"""Checks of the `colocated` scenario, in the order a newcomer would try them."""

from mipro.lab import Lab

HOME = "10.1.0.100"


def registered(lab: Lab) -> dict:
    """{"mn": ..., "ha": ...} once both are as expect.json's "registered" says, else {}."""
    return lab.matches("registered")


def run(lab: Lab, say=print) -> None:
    both = lab.expect_phase("registered", 40)  # the MN registers through DHCP
    b = both["ha"]["bindings"][0]
    say(f"MN got care-of address {both['mn']['care_of_address']} by DHCP and registered")
    say(f"binding at the HA: {b['home_address']} -> care-of {b['care_of_address']} "
        f"({b['encapsulation']}, {b['lifetime_left']}s left, dataplane "
        f"{both['ha']['dataplane']})")
    for node in ("cn-home", "cn-inet"):
        got, rtt = lab.ping(node, HOME)
        assert got == 3, f"{node} -> {HOME}: {got}/3 pings answered"
        say(f"ping {node} -> MN home address {HOME}: 3/3, avg {rtt} ms")
    got, rtt = lab.ping("mn", "203.0.113.10")
    assert got == 3, f"MN -> CN-internet: {got}/3"
    say(f"ping MN -> cn-inet 203.0.113.10 (reverse tunnel): 3/3, avg {rtt} ms")
    for node in ("cn-home", "cn-inet"):
        res = lab.tcp_transfer(node, "mn", HOME, 1 << 20)
        assert res["client"]["verified"] and res["server"]["received"] == 1 << 20, res
        say(f"TCP 1 MiB {node} -> MN {HOME}: verified in {res['client']['seconds']} s")
    res = lab.tcp_transfer("mn", "cn-home", "10.1.0.10", 1 << 20, port=5002)
    assert res["client"]["verified"] and res["client"]["local"] == HOME, res
    assert res["server"]["peer"] == HOME, res
    say(f"TCP 1 MiB MN -> cn-home from source {res['client']['local']}: verified")
    lab.expect_phase("tunnel-counted")
    say("`mipro status` on the HA:")
    for line in lab.mipro_status("ha").splitlines():
        say("  " + line)
