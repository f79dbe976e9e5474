"""Checks of the `ro` scenario: route optimization and the mobile firewall at FA1."""


from mipro.lab import Lab

HOME = "10.1.0.100"
FA1 = "198.51.100.1"
CN_LOCAL, CN_HOME, CN_INET = "198.51.100.20", "10.1.0.10", "203.0.113.10"


def registered(lab: Lab) -> dict:
    """FA1's visitor entry once expect.json's "registered" holds, else {}."""
    both = lab.matches("registered")
    return both["fa1"]["visitors"][0] if both else {}


def ha_tunnel_packets(lab: Lab) -> int:
    b = lab.status("ha")["bindings"]
    c = b[0].get("counters", {}) if b else {}
    return c.get("packets_in", 0) + c.get("packets_out", 0)


def udp_reaches(lab: Lab, sender: str, receiver: str, dst: str, port: int) -> bool:
    return bool(lab.udp_burst(sender, receiver, dst, port)["arrivals"])


def run(lab: Lab, say=print) -> None:
    visitor = lab.expect_phase("registered", 30)["fa1"]["visitors"][0]
    applied = visitor["applied"]
    say(f"FA1 applied for {HOME} (table {applied['table']}, packets from {HOME} on lan0 "
        f"marked {applied['fwmark']}):")
    for r in visitor["routes"]:
        say(f"  route {r['destination']:<16} via {r['via']:<6} cost {r['cost']}")
    for f in visitor["filters"]:
        say(f"  filter {f['destination']:<17} proto {f['protocol']:<3} dport {f['dport']} "
            f"{f['action']}{' +log' if f['log'] else ''}{' both ways' if f['both_directions'] else ''}")

    before = ha_tunnel_packets(lab)
    got, rtt_local = lab.ping("mn", CN_LOCAL, count=5)
    assert got == 5, f"MN -> CN-local-a: {got}/5"
    got, _ = lab.ping("cn-local-a", HOME, count=5)
    assert got == 5, f"CN-local-a -> MN: {got}/5"
    crossed = ha_tunnel_packets(lab) - before
    assert crossed == 0, f"{crossed} packets of the local exchange crossed the HA"
    ttl = lab.exec("mn", "ping", "-c", "1", CN_LOCAL).stdout.split("ttl=")[1].split()[0]
    say(f"MN <-> CN-local-a {CN_LOCAL}: direct through FA1, 0 packets through the HA, "
        f"ttl {ttl}, avg rtt {rtt_local} ms")
    before = ha_tunnel_packets(lab)
    got, rtt_home = lab.ping("mn", CN_HOME, count=5)
    assert got == 5 and ha_tunnel_packets(lab) - before >= 10
    say(f"MN <-> CN-home {CN_HOME}: through the tunnel and the HA, avg rtt {rtt_home} ms")
    got, rtt_inet = lab.ping("mn", CN_INET, count=5)
    assert got == 5
    say(f"MN <-> CN-internet {CN_INET}: through the tunnel, avg rtt {rtt_inet} ms")

    assert not udp_reaches(lab, "mn", "cn-inet", CN_INET, 5060), "SIP to CN-internet passed"
    assert not udp_reaches(lab, "cn-inet", "mn", HOME, 5060), "SIP from CN-internet passed"
    assert not udp_reaches(lab, "mn", "cn-inet", CN_INET, 12000), "RTP to CN-internet passed"
    assert udp_reaches(lab, "mn", "cn-inet", CN_INET, 5070), "other UDP was blocked"
    say("SIP (5060) and RTP (10000-20000) with CN-internet dropped both ways; UDP 5070 passes")
    res = lab.tcp_transfer("mn", "cn-local-a", CN_LOCAL, 100_000, port=80)
    assert res["client"]["verified"]
    counters = lab.expect_phase("http-logged")["fa1"]["visitors"][0]["applied"]
    logged = [c for c in counters["filter_counters"] if c["target"] == "NFLOG"]
    say(f"HTTP to CN-local-a allowed; {logged[0]['packets']} packets logged (NFLOG group 434)")
    res = lab.tcp_transfer("mn", "cn-local-a", CN_LOCAL, 100_000, port=8080)
    assert res["client"]["verified"] and res["server"]["peer"] == FA1, res
    say(f"TCP 8080 to CN-local-a (NAT action): CN-local-a saw {res['server']['peer']} (FA1), "
        f"the MN its own home address")
    rtt_table(lab, say)


def rtt_table(lab: Lab, say=print) -> dict:
    """Round trips with route optimization on, then off (the profile without routes)."""
    targets = (("CN-local-a", CN_LOCAL), ("CN-home", CN_HOME), ("CN-internet", CN_INET))
    servers = {"CN-local-a": "cn-local-a", "CN-home": "cn-home", "CN-internet": "cn-inet"}
    on = {name: lab.ping("mn", ip, count=10) for name, ip in targets}
    on_tcp = {name: lab.tcp_rtt("mn", servers[name], ip) for name, ip in targets}
    before = ha_tunnel_packets(lab)
    lab.ping("mn", CN_LOCAL, count=5)
    on_local_via_ha = ha_tunnel_packets(lab) - before
    table = lab.status("fa1")["visitors"][0]["applied"]["table"]
    subs = lab.conf("ha", "subscribers.toml")
    text = subs.read_text()
    subs.write_text(text[: text.index("# Fig. 5")])  # the same subscriber, no routes or filters
    lab.exec("ha", "kill", "-HUP", str(lab.services["ha"].proc.pid))
    lab.wait_for(lambda: sum("event=reloaded" in x for x in lab.log_lines("ha")), 5, "reload")
    lab.stop_service("mn")  # deregisters through FA1, which removes everything it applied
    lab.expect_phase("visitor-gone", 10)
    assert "MIPRO-P-" not in lab.exec("fa1", "iptables-legacy", "-S").stdout
    assert f"lookup {table}" not in lab.exec("fa1", "ip", "rule").stdout
    lab.start_service("mn")
    lab.expect_phase("registered-without-ro", 30)
    off = {name: lab.ping("mn", ip, count=10) for name, ip in targets}
    off_tcp = {name: lab.tcp_rtt("mn", servers[name], ip) for name, ip in targets}
    before = ha_tunnel_packets(lab)
    lab.ping("mn", CN_LOCAL, count=5)
    off_local_via_ha = ha_tunnel_packets(lab) - before
    say("round trips from the MN: ping, and TCP request/response (median)")
    say(f"{'correspondent':<14} {'path, RO off':<28} {'ping':>9} {'tcp':>9}   "
        f"{'path, RO on':<22} {'ping':>9} {'tcp':>9}")
    for name, _ in targets:
        path_on = "MN-FA1-CN (direct)" if name == "CN-local-a" else "MN-FA1=HA-CN (tunnel)"
        path_off = "MN-FA1=HA-FA1-CN (via home)" if name == "CN-local-a" else \
            "MN-FA1=HA-CN (tunnel)"
        say(f"{name:<14} {path_off:<28} {off[name][1]:>6} ms {off_tcp[name]:>6} ms   "
            f"{path_on:<22} {on[name][1]:>6} ms {on_tcp[name]:>6} ms")
    say(f"packets through the HA for 5 pings to CN-local-a: RO on {on_local_via_ha}, "
        f"RO off {off_local_via_ha}")
    assert on_local_via_ha == 0 and off_local_via_ha >= 5  # the requests go via the HA
    return {"on": on, "off": off, "on_tcp": on_tcp, "off_tcp": off_tcp}
