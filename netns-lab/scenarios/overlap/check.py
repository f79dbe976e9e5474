"""Checks of the `overlap` scenario (Figs. 3c, 4, 5): (a) a correspondent with a home
network's address is ignored; (b) a correspondent with the mobile node's own address is
reached through a temporary address; (c) two mobile nodes with the same home address,
from two home agents, are told apart by link-layer address."""


from mipro.lab import Lab

HOME, CN, CN_LOCAL = "10.1.0.100", "10.1.0.10", "198.51.100.20"
MN1_MAC, MN2_MAC = "02:00:00:00:01:00", "02:00:00:00:02:00"
TEMPORARY = "172.16.5.1"  # FA1's address on the site network of CN-self


def registered(lab: Lab) -> dict:
    """MN's visitor entry at FA1 once expect.json's "mn-registered" holds, else {}."""
    both = lab.matches("mn-registered")
    return visitor_of(both["fa1"], MN1_MAC) if both else {}


def visitor_of(fa: dict, mac: str) -> dict:
    return next(v for v in fa["visitors"] if v["mac"] == mac)


def icmp_seen(lab: Lab, node: str, action, src: str = HOME,
              kind: str = "icmp-echo") -> int:
    """ICMP echo requests (or replies) from ``src`` that ``node`` receives meanwhile."""
    with lab.capture(node, f"icmp[icmptype] = {kind} and src host {src}") as lines:
        action()
    word = "request" if kind == "icmp-echo" else "reply"
    return len([line for line in lines if f"ICMP echo {word}" in line])


def ping_watched(lab: Lab, pinger: str, dst: str, watcher: str, src: str) -> tuple[int, int]:
    """Three pings; how many were answered, and how many requests ``watcher`` saw."""
    got: list[int] = []
    seen = icmp_seen(lab, watcher, lambda: got.append(lab.ping(pinger, dst, count=3)[0]),
                     src=src)
    return got[0], seen


def run(lab: Lab, say=print) -> None:
    same_address_correspondent_ignored(lab, say)
    same_home_address_told_apart(lab, say)
    own_address_correspondent(lab, say)


def same_address_correspondent_ignored(lab: Lab, say=print) -> None:
    visitor = visitor_of(lab.expect_phase("mn-registered", 30)["fa1"], MN1_MAC)
    routes = {r["destination"]: r for r in visitor["routes"]}
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


def same_home_address_told_apart(lab: Lab, say=print) -> None:
    """Case (c): MN (HA, home 10.1.0.0/24) and MN2 (HA2, the same prefix) both have home
    address 10.1.0.100 on visited network A."""
    fa = lab.expect_phase("both-registered", 30)["fa1"]
    one, two = visitor_of(fa, MN1_MAC), visitor_of(fa, MN2_MAC)
    idx1, idx2 = one["applied"]["nat_index"], two["applied"]["nat_index"]
    assert idx1["zone"] != idx2["zone"], (idx1, idx2)  # each home agent's realm its own
    say(f"FA1 has two visitors with home address {HOME}: MN {MN1_MAC} via HA "
        f"{one['home_agent']} (zone {idx1['zone']}) and MN2 {MN2_MAC} via HA2 "
        f"{two['home_agent']} (zone {idx2['zone']}), told apart by link-layer address")
    # each one's tunnel: CN-home reaches MN only, CN-home2 MN2 only, both ways
    for cn, mine, other in (("cn-home", "mn", "mn2"), ("cn-home2", "mn2", "mn")):
        got, other_saw = ping_watched(lab, cn, HOME, other, src=CN)
        assert got == 3 and other_saw == 0, (cn, got, other_saw)
        cn_other = "cn-home2" if cn == "cn-home" else "cn-home"
        back, other_cn_saw = ping_watched(lab, mine, CN, cn_other, src=HOME)
        assert back == 3 and other_cn_saw == 0, (mine, back, other_cn_saw)
        say(f"{cn} <-> {HOME}: 3/3 answered by {mine.upper()} through its own home agent "
            f"({other.upper()} saw none of it, {cn_other} none of its pings to {CN})")
    # the same flow (address and ports) from both to a local correspondent: two zones
    echo = lab.udp_echo("cn-local-a", 8)
    answers = [(node, lab.udp_ask(node, CN_LOCAL, f"{node}-{n}", f"{HOME}:5000"))
               for n, node in enumerate(("mn", "mn2", "mn", "mn2"))]
    echo.kill()
    for n, (node, answer) in enumerate(answers):
        assert answer and answer.startswith(f"{node}-{n} seen from {HOME}:"), answers
    ports = sorted({a.rsplit(":", 1)[1] for _, a in answers})
    flows = lab.exec("fa1", "conntrack", "-L", "-p", "udp", "--dport", "7007",
                     check=False).stdout
    zones = sorted(line.split("zone-orig=")[1].split()[0] for line in flows.splitlines()
                   if "zone-orig=" in line)
    assert zones == sorted([str(idx1["zone"]), str(idx2["zone"])]), flows
    say(f"UDP {HOME}:5000 -> {CN_LOCAL}:7007 from both at once: each got its own answers "
        f"(the correspondent saw ports {', '.join(ports)}); FA1's conntrack holds the flow "
        f"in zones {' and '.join(zones)}, the seed's NAT index (home address + MAC)")


def own_address_correspondent(lab: Lab, say=print) -> None:
    """Case (b): CN-self, behind FA1's site0, has 10.1.0.100 too.  FA1 tells each MN in its
    registration reply; the MN sends what it addresses to 10.1.0.100 to FA1 instead of
    looping it back, and FA1 translates its source to a temporary address."""
    lab.expect_phase("own-address-in-use", 30)  # both told, and FA1's temporary address
    say(f"FA1 knows a host {HOME} on site0 (CN-self): both visitors were told in their "
        f"registration replies; towards it they appear as {TEMPORARY}")
    for node in ("mn", "mn2"):
        got, seen = ping_watched(lab, node, HOME, "cn-self", src=TEMPORARY)
        assert got == 3 and seen >= 3, (node, got, seen)
        say(f"{node.upper()} pings {HOME}: CN-self saw {seen} requests from {TEMPORARY}, "
            f"{got}/3 answers came back to {node.upper()} (not its own loopback)")
    res = lab.tcp_transfer("mn", "cn-self", HOME, 100_000)
    assert res["client"]["verified"] and res["server"]["peer"] == TEMPORARY, res
    say(f"TCP MN -> {HOME} reached CN-self from {TEMPORARY}")
