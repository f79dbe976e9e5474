"""Checks of the `ro-colocated` scenario: the co-located MN applies routes and filters."""


from mipro.lab import Lab

HOME = "10.1.0.100"


def registered(lab: Lab) -> dict:
    """{"mn": ..., "ha": ...} once both are as expect.json's "registered" says, else {}."""
    return lab.matches("registered")


def ha_packets(lab: Lab) -> int:
    c = lab.status("ha")["bindings"][0].get("counters", {})
    return c.get("packets_in", 0) + c.get("packets_out", 0)


def udp_peers(lab: Lab, sender: str, receiver: str, dst: str, port: int) -> list[str]:
    """Who the receiver saw sending (empty: nothing arrived)."""
    return lab.udp_burst(sender, receiver, dst, port)["peers"]


def udp_reaches(lab: Lab, sender: str, receiver: str, dst: str, port: int) -> bool:
    return bool(udp_peers(lab, sender, receiver, dst, port))


def run(lab: Lab, say=print) -> None:
    both = lab.expect_phase("registered", 40)  # with a co-located address
    coa = both["mn"]["colocated_address"].split("/")[0]

    def applied() -> str:  # the MN applies its profile right after the state changes
        table = lab.exec("mn", "ip", "route", "show", "table", "434").stdout
        return table if "10.1.0.0/24 dev mip0" in table and \
            "203.0.113.0/24 via 198.51.100.1 dev eth0" in table else ""
    table = lab.wait_for(applied, 5, "the MN's profile routes in table 434")
    say("MN table 434 (Fig. 11):\n      " + table.strip().replace("\n", "\n      "))
    before = ha_packets(lab)
    res = lab.tcp_transfer("mn", "cn-inet", "203.0.113.10", 200_000, port=5004)
    assert res["client"]["verified"] and res["server"]["peer"] == coa, res
    assert ha_packets(lab) == before, "traffic to CN-internet crossed the HA"
    say(f"MN -> CN-internet: local, from the care-of address {coa}, 0 packets through the HA")
    res = lab.tcp_transfer("mn", "cn-home", "10.1.0.10", 200_000, port=5005)
    assert res["client"]["verified"] and res["server"]["peer"] == HOME
    assert ha_packets(lab) > before
    say(f"MN -> CN-home: through the tunnel, from the home address {HOME}")
    assert not udp_reaches(lab, "mn", "cn-inet", "203.0.113.10", 5060)
    assert udp_reaches(lab, "mn", "cn-inet", "203.0.113.10", 5070)
    say("SIP to CN-internet dropped by the MN's own filter; other UDP passes")
    before = ha_packets(lab)
    assert udp_peers(lab, "mn", "cn-inet", "203.0.113.10", 5070) == [coa]
    assert ha_packets(lab) == before
    assert udp_peers(lab, "mn", "cn-inet", "203.0.113.10", 5062) == [HOME]
    assert ha_packets(lab) - before >= 20
    say("port-based selection: UDP 5070 to CN-internet leaves locally from the care-of "
        "address, UDP 5062 (a tunnel port) goes through the tunnel from the home address")
    # Fig. 11's rows for the MN's own address: CN-self on the visited site has it too
    lab.expect_phase("own-address-in-use")
    rules = lab.exec("mn", "ip", "rule").stdout
    assert f"99:\tfrom all to {HOME} iif lo lookup 434" in rules and \
        "100:\tfrom all lookup local" in rules and not rules.startswith("0:"), rules
    res = lab.tcp_transfer("mn", "cn-self", HOME, 100_000, port=5006)
    assert res["client"]["verified"] and res["server"]["peer"] == coa, res
    say(f"MN -> {HOME} (its own address, CN-self's too): TCP reached CN-self (not the "
        f"MN's loopback) from the care-of address {coa}")
    assert "MIPRO-V-0a010064" in lab.exec("mn", "iptables-legacy", "-S").stdout
    lab.stop_service("mn")
    rules = lab.exec("mn", "ip", "rule").stdout
    assert rules.startswith("0:\tfrom all lookup local") and "100:" not in rules, rules
    assert "MIPRO" not in lab.exec("mn", "iptables-legacy", "-S").stdout
    for table in ("mangle", "nat"):
        assert "MIPRO" not in lab.exec("mn", "iptables-legacy", "-t", table, "-S").stdout
    assert "fwmark" not in lab.exec("mn", "ip", "rule").stdout
    assert lab.exec("mn", "ip", "rule").stdout.count("lookup 434") == 0
    say("the MN deregistered and removed its routes, rule and filter chains")
