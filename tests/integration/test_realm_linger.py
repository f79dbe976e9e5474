"""`fa.realms.linger`: a keyed home agent's realm (tunnel device, delivery table, rules,
ipset, conntrack zone) stays at an FA for a while after its last visitor left, is reused by
the next visitor of that home agent (the MN coming back), and goes when the linger ends, at
stop, and at the start after a kill: nothing of it is left behind."""

import signal

from mipro.lab.cli import load_check

HOME = "10.1.0.100"
HA = "10.1.0.1"
FA1, FA2 = "198.51.100.1", "192.0.2.1"
HA_LINK = "mipf-0a010001"  # an FA's tunnel device of the home agent 10.1.0.1
LINGER = 4


def realm_state(lab, fa: str) -> dict:
    """What a realm of the home agent is made of in the FA's kernel."""
    def out(*cmd):
        return lab.exec(fa, *cmd, check=False).stdout
    sets = out("ipset", "list", "-n")
    return {"link": HA_LINK in out("ip", "-o", "link"),
            "ipset": "mipro-h-" in sets,
            "profile": "mipro-r-" in sets,  # the route profile (reverse tunnel) kept with it
            "rules": [x for x in out("ip", "rule").splitlines()
                      if x.startswith("898:")],  # realms' rules: rule_priority - 2
            "zone": "--zone-orig" in out("iptables-legacy", "-t", "raw", "-S"),
            "connmark": [x for x in out("iptables-legacy", "-t", "mangle", "-S",
                                        "MIPRO-REALM").splitlines()
                         if "--set-xmark" in x]}


NOTHING = {"link": False, "ipset": False, "profile": False, "rules": [], "zone": False,
           "connmark": []}


def realms(lab, fa: str) -> list[dict]:
    return lab.status(fa)["realms"]


def test_a_keyed_home_agents_realm_lingers_is_reused_and_goes(make_lab):
    lab = make_lab("handover", services=False)
    lab.edit_conf("mn", "mn.toml", 'mode = "auto"', 'mode = "fa"')
    for fa in ("fa1", "fa2"):
        lab.edit_conf(fa, "fa.toml", "[runtime]", f"[fa.realms]\nlinger = {LINGER}\n\n[runtime]")
    for name in ("ha", "fa1", "fa2", "mn"):
        lab.start_service(name)
    check = load_check("handover")
    lab.wait_for(lambda: check.via(lab, FA1), 30, "registration through FA1")
    [r1] = realms(lab, "fa1")
    assert (r1["home_agent"], r1["visitors"], r1["idle"]) == (HA, 1, None)
    index = lab.exec("fa1", "cat", f"/sys/class/net/{HA_LINK}/ifindex").stdout.strip()

    lab.move("mn.eth0", "visit-b")
    lab.wait_for(lambda: check.via(lab, FA2), 20, "registration through FA2")
    # FA1's visitor went (the previous-FA notification); its realm stays, idle
    lab.wait_for(lambda: not lab.status("fa1")["visitors"], 10, "FA1's visitor to go")
    [idle] = realms(lab, "fa1")
    assert (idle["index"], idle["visitors"]) == (r1["index"], 0) and idle["idle"] is not None
    state = realm_state(lab, "fa1")
    assert state["link"] and state["ipset"] and state["zone"] and state["connmark"] and \
        state["profile"], state

    # back to FA1 within the linger: the same realm, the same device
    lab.move("mn.eth0", "visit-a")
    lab.wait_for(lambda: check.via(lab, FA1), 20, "registration through FA1 again")
    [again] = realms(lab, "fa1")
    assert (again["index"], again["visitors"], again["idle"]) == (r1["index"], 1, None)
    assert lab.exec("fa1", "cat", f"/sys/class/net/{HA_LINK}/ifindex").stdout.strip() == index
    assert lab.ping("cn-home", HOME)[0] == 3  # delivered through it

    # FA2's realm, idle since the MN left it, goes when its linger ends: all of it
    lab.wait_for(lambda: not lab.status("fa2")["visitors"], 10, "FA2's visitor to go")
    assert realms(lab, "fa2") and realm_state(lab, "fa2")["link"]
    lab.wait_for(lambda: not realms(lab, "fa2"), LINGER + 5, "FA2's realm to expire")
    assert realm_state(lab, "fa2") == NOTHING
    assert any("realm-expired" in x for x in lab.log_lines("fa2"))

    # an idle realm goes with the FA's stop
    lab.move("mn.eth0", "visit-b")
    lab.wait_for(lambda: check.via(lab, FA2), 20, "registration through FA2 again")
    lab.wait_for(lambda: not lab.status("fa1")["visitors"], 10, "FA1's visitor to go")
    assert realms(lab, "fa1")[0]["idle"] is not None
    assert lab.stop_service("fa1") == 0
    assert realm_state(lab, "fa1") == NOTHING

    # killed with an idle realm: the next start removes it
    lab.start_service("fa1")
    lab.move("mn.eth0", "visit-a")
    lab.wait_for(lambda: check.via(lab, FA1), 30, "registration through the restarted FA1")
    lab.wait_for(lambda: not lab.status("fa2")["visitors"], 10, "FA2's visitor to go")
    assert realms(lab, "fa2")[0]["idle"] is not None
    lab.stop_service("fa2", signal.SIGKILL)
    left = realm_state(lab, "fa2")  # the TUN goes with the process, the rest stays
    assert left["ipset"] and left["rules"] and left["zone"], left
    lab.start_service("fa2")
    lab.wait_for(lambda: lab.status("fa2")["realms"] == [], 10, "FA2 up")
    assert realm_state(lab, "fa2") == NOTHING
