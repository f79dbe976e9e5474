"""Foreign agents (Figs. 1, 3b): relaying, denials, reverse tunnelling, handover, cleanup."""

import json

import pytest

from mipro.config.schema import TABLES
from mipro.lab.cli import load_check

from .conftest import kernel_state

HOME = "10.1.0.100"
FA1 = "198.51.100.1"


def check_module():
    return load_check("handover")


def fa_state(lab, node):
    state = kernel_state(lab, node, table=TABLES["fa"][0])  # the FA's delivery table
    # only what mipro adds: the kernel itself may cache the MN's address when it ARPs for us
    neigh = lab.exec(node, "ip", "neigh", "show", HOME, "nud", "permanent").stdout.strip()
    rules = lab.exec(node, "ip", "rule").stdout
    return state, neigh, [r for r in rules.splitlines() if "iif lan0" in r]


def test_handover_keeps_tcp_and_foreign_agents_clean_up(make_lab):
    lab = make_lab("handover")
    check_module().run(lab, say=lambda s: None)  # FA1 -> FA2 -> home, TCP stays up
    for node in ("fa1", "fa2"):  # each FA was told the MN left: nothing of the MN is left
        state, neigh, rules = fa_state(lab, node)
        assert state["table"] == [] and neigh == "" and rules == [], (node, state, neigh, rules)
        assert any("event=visitor-removed" in x and "reason=moved" in x
                   for x in lab.log_lines(node))
    assert any("event=previous-fa-notified" in x and "status=0" in x
               for x in lab.log_lines("fa2"))
    # the agent address is the care-of address: the MN's requests are read once, off the
    # link (the care-of socket's copy used to be decoded and logged as a drop)
    for node in ("fa1", "fa2"):
        assert any("event=relay-request" in x for x in lab.log_lines(node))
        assert not any("not a message for a foreign agent" in x for x in lab.log_lines(node))


def test_without_notification_the_previous_fa_entry_expires(make_lab):
    lab = make_lab("handover", services=False)
    lab.edit_conf("mn", "mn.toml", "mode = \"auto\"",
                  "mode = \"auto\"\nnotify_previous_fa = false")
    for name in ("ha", "fa1", "fa2", "mn"):
        lab.start_service(name)
    lab.wait_for(lambda: registered_via_fa1(lab), 30, "registration through FA1")
    lab.move("mn.eth0", "visit-b")
    lab.wait_for(lambda: check_module().via(lab, "192.0.2.1"), 20, "registration through FA2")
    # from one FA to the next the MN changes only its two routes (use_agent): FA1's went
    routes = lab.exec("mn", "ip", "route", "show", "table", str(TABLES["mn"][0])).stdout
    assert sorted(x.split(" proto")[0].split(" src")[0].strip()
                  for x in routes.splitlines()) == \
        ["192.0.2.1 dev eth0", "default via 192.0.2.1 dev eth0"], routes
    # the first request to FA2 got through: it left on the link before those routes changed
    # (sent by the routes still FA1's, it would have gone to FA1's MAC and been retransmitted)
    moved = [x for x in lab.log_lines("mn") if "event=register" in x][-2:]
    assert ["why=new-agent" in x and "coa=192.0.2.1" in x for x in moved] == [True, False] and \
        "event=registered" in moved[1] and "coa=192.0.2.1" in moved[1], moved
    assert lab.status("fa1")["visitors"]  # nobody told FA1: its entry lives out its lifetime
    lab.wait_for(lambda: not lab.status("fa1")["visitors"], 30, "FA1's visitor entry to expire")
    state, neigh, rules = fa_state(lab, "fa1")
    assert state["table"] == [] and neigh == "" and rules == [], (state, neigh, rules)
    # the daemon logs the expiry once its kernel state is gone, after the status changed
    lab.wait_for(lambda: any("event=visitor-expired" in x for x in lab.log_lines("fa1")), 5,
                 "FA1 to log the expiry")


def registered_via_fa1(lab):
    return check_module().via(lab, FA1)


@pytest.mark.parametrize("reverse", [True, False])
def test_traffic_both_ways_with_and_without_reverse_tunnelling(make_lab, reverse):
    lab = make_lab("handover", services=False)
    if not reverse:
        lab.edit_conf("mn", "mn.toml", "mode = \"auto\"", "mode = \"auto\"\nreverse_tunnel = false")
    for name in ("ha", "fa1", "fa2", "mn"):
        lab.start_service(name)
    lab.wait_for(lambda: registered_via_fa1(lab), 30, "registration through FA1")
    visitor = lab.status("fa1")["visitors"][0]
    assert visitor["reverse_tunnel"] is reverse
    rules = lab.exec("fa1", "ip", "rule").stdout
    profile = TABLES["fa"][0] + 17  # the first route profile: the reverse tunnel's
    assert (f"iif lan0 lookup {profile}" in rules) is reverse
    for node, dst in (("cn-home", HOME), ("mn", "10.1.0.10"), ("mn", "203.0.113.10")):
        assert lab.ping(node, dst)[0] == 3, (node, dst)
    res = lab.tcp_transfer("mn", "cn-home", "10.1.0.10", 1 << 20)
    assert res["client"]["verified"] and res["server"]["peer"] == HOME
    fa1 = lab.status("fa1")["visitors"][0].get("counters") or {}
    # with reverse tunnelling the MN's packets went into FA1's tunnel to the HA
    assert (fa1.get("packets_out", 0) > 100) is reverse, fa1


@pytest.mark.parametrize("edit,code", [
    (("fa1", "fa.toml", "max_lifetime = 600", "max_lifetime = 10"), 69),
    (("fa1", "fa.toml", "advertisement_interval = 0.5",
      "advertisement_interval = 0.5\nencapsulations = [\"ipip\"]"), 72),
    (("fa1", "fa.toml", "advertisement_interval = 0.5",
      "advertisement_interval = 0.5\nreverse_tunneling = false"), 74),
])
def test_fa_denials_reach_the_mn_and_leave_no_state(make_lab, edit, code):
    lab = make_lab("handover", services=False)
    lab.edit_conf(*edit)
    if code == 72:
        lab.edit_conf("mn", "mn.toml", "mode = \"auto\"", "mode = \"fa\"\nencapsulation = \"gre\"")
    else:
        lab.edit_conf("mn", "mn.toml", "mode = \"auto\"", "mode = \"fa\"")
    for name in ("ha", "fa1"):
        lab.start_service(name)
    before = {n: fa_state(lab, n) if n == "fa1" else kernel_state(lab, n) for n in ("fa1", "ha")}
    lab.start_service("mn")
    lab.wait_for(lambda: any(f"code={code}" in x for x in lab.log_lines("fa1")), 15,
                 f"FA denial {code}")
    # the MN saw the FA's code (unauthenticated, so logged and retried with backoff)
    lab.wait_for(lambda: any(f"code={code}" in x for x in lab.log_lines("mn")), 5,
                 f"the MN to hear the denial {code}")
    mn = lab.status("mn")
    assert mn["state"] != "registered"
    assert lab.status("fa1")["visitors"] == [] and lab.status("ha")["bindings"] == []
    assert fa_state(lab, "fa1") == before["fa1"] and kernel_state(lab, "ha") == before["ha"]
    assert not any("event=registered" in x for x in lab.log_lines("ha"))


def test_fa_status_json(make_lab):
    lab = make_lab("handover")
    lab.wait_for(lambda: registered_via_fa1(lab), 30, "registration through FA1")
    out = lab.mipro_status("fa1")
    assert "role: fa" in out
    status = lab.status("fa1")
    assert status["care_of_addresses"] == [FA1]
    v = status["visitors"][0]
    assert v["mac"] == "02:00:00:00:01:00" and v["home_agent"] == "10.1.0.1"
    assert json.dumps(status)


def test_fa_reload_keeps_the_advertisement_sequence(make_lab):
    """SIGHUP is no reboot (RFC 5944 §2.3.2): the advertisement sequence goes on, so the
    mobile node neither sees agent-rebooted nor registers again."""
    lab = make_lab("handover", services=False)
    for name in ("ha", "fa1", "mn"):
        lab.start_service(name)
    lab.wait_for(lambda: registered_via_fa1(lab), 30, "registration through FA1")
    lab.wait_for(lambda: max((s for s, _ in advertisements(lab)), default=0) > 1, 10,
                 "a few advertisements (every 0.5 s): the sequence past 1")
    registrations = sum("event=register " in x for x in lab.log_lines("mn"))
    visitor = lab.status("fa1")["visitors"][0]
    lab.exec("fa1", "kill", "-HUP", str(lab.services["fa1"].proc.pid))
    lab.wait_for(lambda: any("event=reloaded" in x for x in lab.log_lines("fa1")), 5, "reload")
    before = len(advertisements(lab))
    lab.wait_for(lambda: len(advertisements(lab)) >= before + 4, 10,
                 "four advertisements after the reload")
    assert not any("agent-rebooted" in x for x in lab.log_lines("mn")), lab.log_lines("mn")
    assert sum("event=register " in x for x in lab.log_lines("mn")) == registrations
    after = lab.status("fa1")["visitors"][0]
    assert (after["home_address"], after["lifetime"]) == (visitor["home_address"],
                                                          visitor["lifetime"])
    assert after["lifetime_left"] < visitor["lifetime_left"]  # the same entry, not renewed


def advertisements(lab, node="fa1", iface="lan0"):
    """(sequence, agent flags) of every advertisement in the node's capture so far
    (mipro decode); a capture being written may end in a torn packet: [] then, for
    wait_for to read it again."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "mipro.cli", "decode", "--pcap",
                          str(lab.out / f"{node}-{iface}.pcap"), "--json"],
                         capture_output=True, text=True)
    if run.returncode:
        return []
    return [(ext["sequence"], ext["flags"]) for m in json.loads(run.stdout)
            for ext in m.get("extensions", []) if "sequence" in ext and "flags" in ext]


def advertised_flags(lab, node="fa1", iface="lan0"):
    """The agent flags of every advertisement in the node's capture, once it has one."""
    found = lab.wait_for(lambda: advertisements(lab, node, iface), 10,
                         f"an advertisement in the capture on {node}.{iface}")
    return [flags for _, flags in found]


def test_gre_through_a_userspace_foreign_agent(make_lab):
    """The relay carries GRE: FA1 (userspace backend) advertises G and serves a GRE MN."""
    lab = make_lab("handover", services=False)
    lab.edit_conf("mn", "mn.toml", "mode = \"auto\"", "mode = \"fa\"\nencapsulation = \"gre\"")
    for name in ("ha", "fa1", "mn"):
        lab.start_service(name)
    lab.wait_for(lambda: registered_via_fa1(lab), 30, "GRE registration through FA1")
    assert lab.status("fa1")["dataplane"] == "userspace"
    assert lab.status("fa1")["visitors"][0]["encapsulation"] == "gre"
    flags = advertised_flags(lab)
    assert flags and all("G" in f for f in flags), flags
    assert not any("encapsulation-unavailable" in x for x in lab.log_lines("fa1"))
    for node, dst in (("cn-home", HOME), ("mn", "10.1.0.10")):
        assert lab.ping(node, dst)[0] == 3, (node, dst)
