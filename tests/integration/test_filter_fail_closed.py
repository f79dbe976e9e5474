"""A filter rule iptables cannot express exactly (ports with a protocol other than tcp,
udp or sctp), sent by a home agent of another implementation, never becomes a wider rule:
the FA (and a co-located MN) refuse the whole filter set and deny the visitor's traffic,
and say so in the log."""

import json
import subprocess
import sys
from pathlib import Path

from mipro.lab.cli import load_check

HOME = "10.1.0.100"
MN_KEY = "6c61622d6d6e312d6d6e2d68612d6b6579"
FA1 = "198.51.100.1:300:6661312d68612d6c61622d6b65792d31"
OTHER_HA = Path(__file__).with_name("other_ha.py")
# "accept icmp dport 7" read without its ports is "accept all icmp": ahead of a deny-all,
# that would let every ping through
FILTERS = ["--filter", "0.0.0.0/0/1/7-7/accept", "--filter", "0.0.0.0/0/0/0-65535/deny"]


def other_ha(lab, *args):
    proc = subprocess.Popen(["ip", "netns", "exec", lab.ns("ha"), sys.executable,
                             str(OTHER_HA), "--address", "10.1.0.1", "--mn-key", MN_KEY,
                             *args], stdout=subprocess.PIPE, text=True)
    assert "listening" in json.loads(proc.stdout.readline())
    return proc


def logged(lab, service, event):
    return [line for line in lab.log_lines(service) if f" event={event} " in line + " "]


def test_fa_refuses_the_filter_set_and_denies_the_visitor(make_lab):
    lab = make_lab("ro", services=False)
    lab.start_service("fa1")
    ha = other_ha(lab, "--fa", FA1, "--local-route", "198.51.100.0/24", *FILTERS)
    try:
        lab.start_service("mn")
        check = load_check("ro")
        visitor = lab.wait_for(lambda: check.registered(lab), 30, "registration via FA1")
        assert [f["dport"] for f in visitor["filters"]] == [[7, 7], [0, 65535]]  # as sent
        policy = visitor["applied"]["filter_counters"][0]["policy"]
        rules = [line for line in lab.exec("fa1", "iptables-legacy", "-S").stdout.splitlines()
                 if line.startswith(f"-A MIPRO-P-{policy} ")]
        assert rules == [f"-A MIPRO-P-{policy} -j DROP"], rules
        assert "MIPRO-PN-" not in lab.exec("fa1", "iptables-legacy", "-t", "nat", "-S").stdout
        # the local route works, the deny-all holds: no ping passes (not even ICMP)
        assert lab.ping("mn", "198.51.100.20")[0] == 0
        assert lab.ping("cn-local-a", HOME)[0] == 0
        assert lab.status("fa1")["visitors"][0]["applied"]["filter_counters"][0]["packets"] > 0
        refused = logged(lab, "fa1", "filters-refused")
        assert len(refused) == 1, lab.log_lines("fa1")
        assert "filter rule 1 of 2: dport 7-7 with protocol 1: ports need tcp, udp or sctp" \
            in refused[0] and "applied=deny-all" in refused[0], refused
    finally:
        ha.kill()
        ha.wait(5)


def test_colocated_mn_refuses_the_filter_set(make_lab):
    lab = make_lab("ro-colocated", services=False)
    lab.start_service("dnsmasq")
    ha = other_ha(lab, *FILTERS)
    try:
        lab.start_service("mn")
        lab.wait_for(lambda: lab.status("mn")["state"] == "registered", 30, "registration")
        chain = "MIPRO-V-" + bytes(int(x) for x in HOME.split(".")).hex()
        rules = [line for line in lab.exec("mn", "iptables-legacy", "-S").stdout.splitlines()
                 if line.startswith(f"-A {chain} ")]
        assert rules == [f"-A {chain} -s {HOME}/32 -j DROP", f"-A {chain} -d {HOME}/32 -j DROP"], \
            rules
        refused = logged(lab, "mn", "filters-refused")
        assert len(refused) == 1 and "dport 7-7 with protocol 1" in refused[0], \
            lab.log_lines("mn")
    finally:
        ha.kill()
        ha.wait(5)
