"""Fig. 7 end to end: HA and MN daemons, a co-located care-of address from dnsmasq."""

import json
import signal
import sys
from pathlib import Path

import pytest

from mipro.lab.cli import load_check

from .conftest import kernel_state, wait_binding_saved

HOME = "10.1.0.100"
KEY = "6c61622d6d6e312d6d6e2d68612d6b6579"
SENDER = Path(__file__).with_name("mip_send.py")


def scenario_check():
    return load_check("colocated")


def wait_registered(lab, timeout=40):
    return lab.expect_phase("registered", timeout)  # netns-lab/scenarios/colocated/expect.json


def ha_bindings(lab):
    return lab.status("ha")["bindings"]


def test_reach_the_mobile_node_and_clean_up_after_it(make_lab):
    lab = make_lab("colocated")
    ha_clean = kernel_state(lab, "ha")
    # the scenario's own checks: pings and TCP both ways through the tunnel
    scenario_check().run(lab, say=lambda s: None)
    ha_busy = kernel_state(lab, "ha")
    assert ha_busy["table"] == [f"{HOME} dev mip0 proto static "] or \
        ha_busy["table"][0].startswith(f"{HOME} dev mip0")
    assert len(ha_busy["proxies"]) == 1 and HOME in ha_busy["proxies"][0]

    # the MN leaves (SIGTERM): it deregisters and removes what it added
    assert lab.stop_service("mn") == 0
    lab.wait_for(lambda: ha_bindings(lab) == [], 10, "deregistration at the HA")
    assert kernel_state(lab, "ha") == ha_clean
    mn = kernel_state(lab, "mn")
    assert mn["table"] == [] and mn["rules"] == [] and "mip0" not in mn["links"]
    assert any("event=deregistered" in line for line in lab.log_lines("ha"))

    # the HA stops: its rule and tunnel device go too
    assert lab.stop_service("ha") == 0
    ha = kernel_state(lab, "ha")
    assert ha["table"] == [] and ha["rules"] == [] and ha["proxies"] == []
    assert "mip0" not in ha["links"]


def test_lifetime_expiry_removes_the_binding(make_lab):
    lab = make_lab("colocated", services=False)
    lab.edit_conf("ha", "subscribers.toml", "max_lifetime = 600", "max_lifetime = 3")
    for name in ("dnsmasq", "ha"):
        lab.start_service(name)
    clean = kernel_state(lab, "ha")
    lab.start_service("mn")
    wait_registered(lab)
    assert ha_bindings(lab)[0]["lifetime"] == 3
    lab.stop_service("mn", signal.SIGKILL)  # gone without deregistering
    lab.wait_for(lambda: ha_bindings(lab) == [], 10, "expiry")
    assert kernel_state(lab, "ha") == clean
    assert any("event=binding-expired" in line for line in lab.log_lines("ha"))


def send(lab, node="cn-inet", coa="203.0.113.10", **kw):
    args = ["--ha", "10.1.0.1", "--home", kw.pop("home", HOME), "--coa", coa,
            "--key", kw.pop("key", KEY)]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    out = lab.exec(node, sys.executable, str(SENDER), *args, timeout=30).stdout
    return json.loads(out)


@pytest.mark.parametrize("case,kwargs,code", [
    ("wrong key", {"key": "00" * 16}, 131),
    ("unknown SPI", {"spi": 999}, 131),
    ("unknown home address", {"home": "10.1.0.77"}, 131),
    ("unknown home agent", {"home_agent": "10.1.0.99"}, 136),
    ("stale timestamp", {"skew": -100}, 133),
    ("reserved flag", {"flags": 0x04}, 134),
    ("authenticator cut short", {"truncate": 40}, 134),
    ("truncated fixed part", {"truncate": 12}, None),
])
def test_bad_requests_are_answered_or_dropped_and_change_nothing(make_lab, case, kwargs, code):
    lab = make_lab("colocated", services=False)
    lab.start_service("ha")
    before = kernel_state(lab, "ha")
    log_before = len(lab.log_lines("ha"))
    result = send(lab, **kwargs)
    assert result["code"] == code, case
    if code is None:  # shorter than a request: the kernel's flood limit drops and counts it
        lab.expect("ha", {"flood_limit": {"shape_dropped": 1}}, 5)
    else:  # answered: the HA logs the request it denied
        lab.wait_for(lambda: lab.log_lines("ha")[log_before:], 5, "the denial in the log")
    assert kernel_state(lab, "ha") == before, case
    assert ha_bindings(lab) == []
    new = lab.log_lines("ha")[log_before:]
    if code is None:
        assert new == []
    else:
        assert len(new) == 1 and "203.0.113.10" in new[0], new


def test_replayed_request_is_refused_with_133(make_lab):
    lab = make_lab("colocated", services=False)
    lab.start_service("ha")
    first = send(lab)
    assert first["code"] == 0  # a real registration from cn-inet's address
    before = kernel_state(lab, "ha")
    bindings = ha_bindings(lab)
    replay = send(lab, raw=first["sent"])
    assert replay["code"] == 133
    reply_id = int(replay["reply"][24:40], 16)  # reply bytes 12-19
    request_id = int(first["sent"][32:48], 16)  # request bytes 16-23
    assert reply_id & 0xFFFFFFFF == request_id & 0xFFFFFFFF  # RFC 5944 §5.7 resync hint
    assert kernel_state(lab, "ha") == before
    after = ha_bindings(lab)
    assert [(b["care_of_address"], b["lifetime"]) for b in after] == \
        [(b["care_of_address"], b["lifetime"]) for b in bindings]
    assert after[0]["lifetime_left"] <= bindings[0]["lifetime_left"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_ha_restart_keeps_bindings(make_lab, sig):
    lab = make_lab("colocated")
    wait_registered(lab)
    assert lab.ping("cn-home", HOME)[0] == 3
    registrations = sum("event=register " in line for line in lab.log_lines("mn"))
    wait_binding_saved(lab, HOME)
    lab.stop_service("ha", sig)
    lab.start_service("ha")
    lab.wait_for(lambda: ha_bindings(lab), 10, "restored binding")
    state = kernel_state(lab, "ha")
    assert len(state["table"]) == 1 and len(state["rules"]) == 1
    assert len(state["proxies"]) == 1
    assert state["links"].count("mip0") == 1
    got, _ = lab.ping("cn-home", HOME)
    assert got == 3
    assert sum("event=register " in line for line in lab.log_lines("mn")) == registrations
    if sig == signal.SIGKILL:
        assert any("event=reconciled-leftovers" in line for line in lab.log_lines("ha"))


def test_damaged_state_lines_cost_only_themselves(make_lab):
    """Lines of the binding journal that parse as JSON but are no binding (a damaged
    file) are skipped and counted; the HA restores every other binding."""
    lab = make_lab("colocated")
    wait_registered(lab)
    registrations = sum("event=register " in line for line in lab.log_lines("mn"))
    wait_binding_saved(lab, HOME)
    lab.stop_service("ha", signal.SIGKILL)
    journal = lab.run_dir / "ha-bindings.json.journal"
    assert HOME in journal.read_text()
    with open(journal, "a") as fh:
        fh.write('["+", ["10.1.0.99", "198.51.100.9"]]\n["-", 5]\n')
    lab.start_service("ha")
    lab.wait_for(lambda: ha_bindings(lab), 10, "restored binding")
    assert [b["home_address"] for b in ha_bindings(lab)] == [HOME]
    skipped = [line for line in lab.log_lines("ha") if "event=state-rows-skipped" in line]
    assert len(skipped) == 1 and "count=2" in skipped[0], lab.log_lines("ha")
    assert not any("event=state-file-unreadable" in line for line in lab.log_lines("ha"))
    assert lab.ping("cn-home", HOME)[0] == 3
    assert sum("event=register " in line for line in lab.log_lines("mn")) == registrations


def test_gre_encapsulation(make_lab):
    """The G bit: both ends encapsulate in GRE (RFC 2784) instead of IP-in-IP."""
    lab = make_lab("colocated", services=False)
    lab.edit_conf("mn", "mn.toml", "lifetime = 600", "lifetime = 600\nencapsulation = \"gre\"")
    for name in ("dnsmasq", "ha", "mn"):
        lab.start_service(name)
    wait_registered(lab)
    assert ha_bindings(lab)[0]["encapsulation"] == "gre"
    assert lab.ping("cn-home", HOME)[0] == 3
    res = lab.tcp_transfer("cn-inet", "mn", HOME, 1 << 20)
    assert res["client"]["verified"]
    # the capture on the HA's uplink shows GRE (IP protocol 47), no IP-in-IP
    pcap = lab.out / "ha-wan0.pcap"

    def packets(proto):
        return lab.exec("ha", "tcpdump", "-n", "-r", str(pcap), f"ip proto {proto}",
                        check=False).stdout
    lab.wait_for(lambda: packets(47).count("\n") > 100, 5, "GRE packets in the capture")
    assert packets(4).strip() == ""
