"""Checks of the `handover` scenario: FA1 -> FA2 -> home with a live TCP connection."""

import time

from mipro.lab import Lab

HOME = "10.1.0.100"
FA1, FA2 = "198.51.100.1", "192.0.2.1"


def via(lab: Lab, coa: str) -> dict:
    mn, ha = lab.status("mn"), lab.status("ha")
    if mn["state"] == "registered" and mn["care_of_address"] == coa and ha["bindings"] and \
            ha["bindings"][0]["care_of_address"] == coa:
        return {"mn": mn, "ha": ha}
    return {}


def home(lab: Lab) -> bool:
    return lab.status("mn")["state"] == "home" and not lab.status("ha")["bindings"]


def run(lab: Lab, say=print) -> None:
    t0 = time.time()
    lab.wait_for(lambda: via(lab, FA1), 30, "registration through FA1")
    say(f"MN registered through FA1 (care-of {FA1}) in {time.time() - t0:.1f} s")
    visitors = lab.status("fa1")["visitors"]
    assert visitors and visitors[0]["state"] == "accepted", visitors
    say(f"FA1 visitor list: {visitors[0]['home_address']} mac {visitors[0]['mac']} "
        f"{visitors[0]['lifetime_left']}s left, reverse tunnel {visitors[0]['reverse_tunnel']}")
    for node, dst in (("cn-home", HOME), ("cn-inet", HOME), ("mn", "10.1.0.10"),
                      ("mn", "203.0.113.10")):
        got, rtt = lab.ping(node, dst)
        assert got == 3, f"{node} -> {dst}: {got}/3"
        say(f"ping {node} -> {dst}: 3/3, avg {rtt} ms")
    res = lab.tcp_transfer("cn-home", "mn", HOME, 1 << 20)
    assert res["client"]["verified"], res
    say(f"TCP 1 MiB cn-home -> MN through HA and FA1: verified in {res['client']['seconds']} s")

    stream = lab.echo_stream("cn-home", "mn", HOME, seconds=14)
    time.sleep(2)
    t_move = lab.move("mn.eth0", "visit-b")
    lab.wait_for(lambda: via(lab, FA2), 20, "registration through FA2")
    say(f"moved to visited network B: registered through FA2 in {time.time() - t_move:.2f} s")
    lab.wait_for(lambda: not lab.status("fa1")["visitors"], 5, "FA1 to drop the visitor")
    say(f"FA1 dropped its visitor entry {time.time() - t_move:.2f} s after the move "
        "(binding update from FA2, previous-FA notification)")
    got, _ = lab.ping("cn-home", HOME)
    assert got == 3, f"cn-home -> MN via FA2: {got}/3"
    say("ping cn-home -> MN through HA and FA2: 3/3")
    time.sleep(2)
    t_move = lab.move("mn.eth0", "home")
    lab.wait_for(lambda: home(lab), 20, "the MN to deregister at home")
    say(f"moved home: deregistered in {time.time() - t_move:.2f} s (HA binding gone)")
    got, _ = lab.ping("cn-home", HOME)
    assert got == 3, f"cn-home -> MN at home: {got}/3"
    say("ping cn-home -> MN on the home link: 3/3")
    result = lab.echo_result(stream)
    assert result.get("ok"), result
    say(f"TCP connection cn-home -> MN stayed up across both moves: {result['messages']} "
        f"echoes, longest stall {result['max_stall_ms']} ms")
    lab.wait_for(lambda: not lab.status("fa2")["visitors"], 5, "FA2 to drop the visitor")
    say("FA2 dropped its visitor entry too: the MN told it from home (binding update)")
