"""Mobile nodes behind a residential NAPT (Figs. 9b, 12b; RFC 3519), in namespaces."""

import json
import sys
from pathlib import Path

from mipro.lab.cli import load_check

SENDER = Path(__file__).with_name("mip_send.py")
HOME = "10.1.0.100"
KEY = "6c61622d6d6e312d6d6e2d68612d6b6579"
FLAGS_D_T = 0x20 | 0x02


def check_module():
    return load_check("nat")


def test_registration_tcp_and_mapping_expiry_through_the_napt(make_lab):
    """Challenge, UDP tunnel to the gateway's public address and port, TCP both ways,
    keepalives across the gateway's 10 s timeout, recovery after its state is flushed
    (asserted inside the scenario check)."""
    lab = make_lab("nat")
    check_module().run(lab, say=lambda s: None)
    assert lab.stop_service("mn") == 0  # deregisters through the NAPT
    lab.wait_for(lambda: not lab.status("ha")["bindings"], 10, "deregistration")


def send(lab, **kw):
    args = ["--ha", "10.1.0.1", "--home", HOME, "--coa", "10.0.0.77", "--key", KEY,
            "--flags", str(FLAGS_D_T), "--udp-tunnel"]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return json.loads(lab.exec("mn", sys.executable, str(SENDER), *args, timeout=30).stdout)


def test_challenge_must_come_back_through_the_same_napt(make_lab):
    lab = make_lab("nat", services=False)
    lab.start_service("ha")
    lab.exec("mn", "ip", "addr", "add", "10.0.0.77/24", "dev", "eth0")
    lab.exec("mn", "ip", "route", "add", "default", "via", "10.0.0.1")
    first = send(lab)  # an authentic request, but from behind a NAPT: challenged
    assert first["code"] == 131 and first["challenge"]
    forged = send(lab, challenge="00" * 16)  # a guessed answer
    assert forged["code"] == 131 and forged["challenge"] != first["challenge"]
    assert lab.status("ha")["bindings"] == []
    stale = send(lab, challenge=first["challenge"])  # superseded by the second challenge
    assert stale["code"] == 131 and lab.status("ha")["bindings"] == []
    right = send(lab, challenge=stale["challenge"])
    assert right["code"] == 0
    b = lab.status("ha")["bindings"][0]
    assert b["encapsulation"] == "udp" and b["source"] == "172.31.2.1:43400", b
    denials = [x for x in lab.log_lines("ha") if "event=denied" in x]
    assert len(denials) == 3 and all("code=131" in x for x in denials)


INJECT = """
import socket, sys
from scapy.layers.inet import IP, UDP
inner = bytes(IP(src=sys.argv[1], dst="10.1.0.10") / UDP(sport=9, dport=7777) / b"INJECTED")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"\\x04\\x04\\x00\\x00" + inner, ("10.1.0.1", 434))         # no such binding
s.sendto(b"\\x04\\x04\\x00\\x00" + inner[:10], ("10.1.0.1", 434))    # truncated inner packet
s.sendto(b"\\x04\\x2f\\x00\\x00" + inner, ("10.1.0.1", 434))         # GRE inside: not ours
"""


def test_bad_tunnel_data_is_dropped_and_counted_never_forwarded(make_lab):
    lab = make_lab("nat")
    lab.wait_for(lambda: check_module().registered(lab), 40, "registration")
    before = lab.status("ha")["tunnel_drops"]
    # from the internet: forged tunnel data claiming to come from the MN, and garbage
    lab.exec("cn-inet", sys.executable, "-c", INJECT, HOME)
    lab.exec("cn-inet", sys.executable, "-c", INJECT, "10.1.0.200")
    lab.wait_for(lambda: lab.status("ha")["tunnel_drops"]["malformed"] -
                 before["malformed"] >= 4, 5, "the drops to be counted")
    after = lab.status("ha")["tunnel_drops"]
    assert after["malformed"] - before["malformed"] == 4, (before, after)
    assert after["unauthorised"] - before["unauthorised"] >= 2, (before, after)
    capture = lab.exec("cn-home", "tcpdump", "-nr", str(lab.out / "cn-home-eth0.pcap"),
                       "udp port 7777", check=False).stdout
    assert "7777" not in capture, capture
