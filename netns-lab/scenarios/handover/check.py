"""Checks of the `handover` scenario: FA1 -> FA2 -> home with a live TCP connection.

What the daemons hold after each step is in expect.json, by phase."""

import re
import time

from mipro.lab import Lab

HOME = "10.1.0.100"
FA1, FA2 = "198.51.100.1", "192.0.2.1"
PHASE = {FA1: "via-fa1", FA2: "via-fa2"}  # registered through the FA of that address
ECHO_PORT = 5003


def via(lab: Lab, coa: str) -> dict:
    """{"mn": ..., "ha": ...} once the MN is registered with care-of address ``coa`` and
    the HA's binding points there, else {}."""
    return lab.matches(PHASE[coa], services=("mn", "ha"))


def home(lab: Lab) -> bool:
    return bool(lab.matches("home"))


def echoed(lab: Lab) -> int:
    """Bytes the MN's end of the TCP echo session has received so far (`ss`)."""
    out = lab.exec("mn", "ss", "-Htni", "state", "established", f"sport = :{ECHO_PORT}").stdout
    return sum(int(n) for n in re.findall(r"bytes_received:(\d+)", out))


def echoes_flow(lab: Lab, since: int, what: str) -> int:
    """Until the echo session has carried ten more of its messages (9 bytes each): the
    connection is up on the MN's current path.  Returns the byte count then."""
    return lab.wait_for(lambda: (n := echoed(lab)) >= since + 90 and n, 10, what)


def run(lab: Lab, say=print) -> None:
    t0 = time.time()
    visitor = lab.expect_phase("via-fa1", 30)["fa1"]["visitors"][0]
    say(f"MN registered through FA1 (care-of {FA1}) in {time.time() - t0:.1f} s")
    say(f"FA1 visitor list: {visitor['home_address']} mac {visitor['mac']} "
        f"{visitor['lifetime_left']}s left, reverse tunnel {visitor['reverse_tunnel']}")
    for node, dst in (("cn-home", HOME), ("cn-inet", HOME), ("mn", "10.1.0.10"),
                      ("mn", "203.0.113.10")):
        got, rtt = lab.ping(node, dst)
        assert got == 3, f"{node} -> {dst}: {got}/3"
        say(f"ping {node} -> {dst}: 3/3, avg {rtt} ms")
    res = lab.tcp_transfer("cn-home", "mn", HOME, 1 << 20)
    assert res["client"]["verified"], res
    say(f"TCP 1 MiB cn-home -> MN through HA and FA1: verified in {res['client']['seconds']} s")

    stream = lab.echo_stream("cn-home", "mn", HOME, seconds=14, port=ECHO_PORT)
    carried = echoes_flow(lab, 0, "the TCP echo session to run through FA1")
    t_move = lab.move("mn.eth0", "visit-b")
    lab.expect_phase("via-fa2", 20)
    say(f"moved to visited network B: registered through FA2 in {time.time() - t_move:.2f} s")
    lab.expect_phase("fa1-forgot", 5)
    say(f"FA1 dropped its visitor entry {time.time() - t_move:.2f} s after the move "
        "(binding update from FA2, previous-FA notification)")
    got, _ = lab.ping("cn-home", HOME)
    assert got == 3, f"cn-home -> MN via FA2: {got}/3"
    say("ping cn-home -> MN through HA and FA2: 3/3")
    echoes_flow(lab, carried, "the TCP echo session to run through FA2")
    t_move = lab.move("mn.eth0", "home")
    lab.expect_phase("home", 20)
    say(f"moved home: deregistered in {time.time() - t_move:.2f} s (HA binding gone)")
    got, _ = lab.ping("cn-home", HOME)
    assert got == 3, f"cn-home -> MN at home: {got}/3"
    say("ping cn-home -> MN on the home link: 3/3")
    result = lab.echo_result(stream)
    assert result.get("ok"), result
    say(f"TCP connection cn-home -> MN stayed up across both moves: {result['messages']} "
        f"echoes, longest stall {result['max_stall_ms']} ms")
    lab.expect_phase("fa2-forgot", 5)
    say("FA2 dropped its visitor entry too: the MN told it from home (binding update)")
