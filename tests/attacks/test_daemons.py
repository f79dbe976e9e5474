"""Attacks on the real daemons in namespaces: the answer on the wire, and what the daemon and
the kernel hold afterwards (bindings, visitors, routes, rules, proxy entries, NAT rules)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mipro.security import SecurityAssociation, append_authenticator
from mipro.wire import (
    ExtType,
    FilterRule,
    FilterRulesExtension,
    MnHaAuth,
    RegistrationReply,
    StaticRoute,
    StaticRoutesExtension,
    Verdict,
)
from tests.integration.conftest import kernel_state
from tests.integration.test_colocated import wait_registered

from .world import A, N

SENDER = Path(__file__).resolve().parents[1] / "integration" / "mip_send.py"
MN_KEY = "6c61622d6d6e312d6d6e2d68612d6b6579"
ATTACKER_KEY = "61747461636b65722d6b65792d313233"  # "attacker-key-123": a subscriber's own
ATTACKER = "203.0.113.66"


def mip_send(lab, node, *args, timeout=2.0) -> dict:
    out = lab.exec(node, sys.executable, str(SENDER), "--timeout", str(timeout), *args,
                   timeout=timeout + 30).stdout
    return json.loads(out.strip().splitlines()[-1])


def nat_rules(lab, node) -> list[str]:
    return [x for x in lab.exec(node, "iptables-legacy", "-t", "nat", "-S").stdout.split("\n")
            if x.startswith("-A")]


def all_routes(lab, node) -> str:
    return lab.exec(node, "ip", "route", "show", "table", "all").stdout


def captured(lab, node, iface) -> list[dict]:
    """Every Mobile IP message in the node's capture so far (mipro decode); a capture
    being written may end in a torn packet: [] then, for wait_for to read it again."""
    run = subprocess.run([sys.executable, "-m", "mipro.cli", "decode", "--pcap",
                          str(lab.out / f"{node}-{iface}.pcap"), "--json"],
                         capture_output=True, text=True)
    return [] if run.returncode else json.loads(run.stdout)


def advertisements(lab, node, iface) -> list[dict]:
    return [m for m in captured(lab, node, iface)
            if any("sequence" in e for e in m.get("extensions", []))]


def test_daemon_ha_refuses_a_subscriber_taking_another_address(make_lab):
    """Item 1 against `mipro ha`: a subscriber signs, with its own SPI, key and NAI, a
    request for an address on the home link that is nobody's, and for another
    subscriber's: 131 both times; no binding, no route, no proxy ARP entry appears."""
    lab = make_lab("colocated", services=False)
    subs = lab.conf("ha", "subscribers.toml")
    subs.write_text(subs.read_text() + f"""
[[subscriber]]
home_address = "10.1.0.150"
nai = "mallory@home.example"
sa = [{{ spi = 999, key = "hex:{ATTACKER_KEY}" }}]
""")
    lab.start_service("ha")
    before = kernel_state(lab, "ha")
    for target in ("10.1.0.77", "10.1.0.100"):
        got = mip_send(lab, "cn-inet", "--ha", "10.1.0.1", "--home", target,
                       "--coa", "203.0.113.10", "--key", ATTACKER_KEY, "--spi", "999",
                       "--nai", "mallory@home.example", "--flags", "34")
        assert got["code"] == 131, got
    assert lab.status("ha")["bindings"] == []
    assert kernel_state(lab, "ha") == before
    denied = [x for x in lab.log_lines("ha") if "event=denied" in x and "code=131" in x]
    assert denied and "is not mallory@home.example's" in denied[0]


def test_daemon_ha_answers_130_when_the_kernel_refuses_and_keeps_nothing(make_lab):
    """Item 7: the tunnel device vanished under the HA; the route for the binding cannot
    be made (ENODEV): the MN hears 130, the HA keeps no binding, the journal has none."""
    lab = make_lab("colocated", services=False)
    lab.start_service("ha")
    assert lab.status("ha")["dataplane"] == "userspace"
    lab.exec("ha", "ip", "link", "del", "mip0")
    got = mip_send(lab, "cn-inet", "--ha", "10.1.0.1", "--home", "10.1.0.100",
                   "--coa", "203.0.113.10", "--key", MN_KEY, "--flags", "34")
    assert got["code"] == 130, got
    reply = RegistrationReply.decode(bytes.fromhex(got["reply"]))
    assert reply.find_all(MnHaAuth)  # the request authenticated: the denial is signed
    assert lab.status("ha")["bindings"] == []
    assert lab.status("ha")["counters"]["install_failed"] == 1
    lab.wait_for(lambda: any("install-failed" in x for x in lab.log_lines("ha")), 5, "log")
    # the undo of the refused binding is journaled after anything the registration
    # journaled before it, and the journal is append-only: once the undo is on disk, an
    # install line for the binding would be too
    journal = lab.run_dir / "ha-bindings.json.journal"

    def journaled_undo() -> list[str] | None:
        lines = journal.read_text().splitlines()
        return lines if json.dumps(["-", "10.1.0.100"]) in lines else None
    lines = lab.wait_for(journaled_undo, 5, "the undo of the binding in the HA's journal")
    assert not [x for x in lines if x.startswith('["+"')], lines
    assert lab.exec("ha", "ip", "route", "show", "table", "434", check=False).stdout == ""


def test_daemon_mn_booting_at_home_keeps_running(make_lab):
    """Item 3: the MN starts on its home link; the first thing it hears is its own HA's
    advertisement while IDLE.  It deregisters, stays up and says it is home."""
    lab = make_lab("colocated", services=False)
    lab.start_service("ha")
    lab.move("mn.eth0", "home")
    lab.start_service("mn")
    lab.wait_for(lambda: lab.status("mn")["state"] == "home", 15, "MN at home")
    heard = len(lab.wait_for(lambda: advertisements(lab, "mn", "eth0"), 10,
                             "the HA's advertisements at the MN"))
    lab.wait_for(lambda: len(advertisements(lab, "mn", "eth0")) >= heard + 2, 10,
                 "two more of the HA's advertisements (one a second) at the MN, at home")
    assert lab.services["mn"].proc.poll() is None
    assert lab.status("mn")["state"] == "home"
    log = "\n".join(lab.log_lines("mn"))
    assert "Traceback" not in log and "internal-error" not in log


def forged_reply(ident: int, home: str, fa_key: bytes | None) -> bytes:
    """The reply an attacker on the internet sends FA1, pretending to be the HA: accepted,
    with routes sending everything to the attacker and a NAT rule to its address."""
    evil = StaticRoutesExtension((StaticRoute(N("0.0.0.0/0"), A(ATTACKER), 0, False),))
    nat = FilterRulesExtension((FilterRule(verdict=Verdict.ACCEPT, nat=True,
                                           nat_address=A(ATTACKER)),))
    reply = RegistrationReply.build(code=0, lifetime=300, home_address=home,
                                    home_agent="10.1.0.1", identification=ident)
    data = append_authenticator(reply.encode(), ExtType.MN_HA_AUTH,
                                SecurityAssociation(256, b"x" * 16))
    data += evil.encode() + nat.encode()
    if fa_key is not None:  # the attacker does not have the real key
        data = append_authenticator(data, ExtType.FA_HA_AUTH, SecurityAssociation(300, fa_key))
    return data + evil.encode()  # and some more after it, for good measure


@pytest.mark.parametrize("with_key", [True, False])
def test_daemon_fa_applies_no_route_or_nat_from_a_forged_reply(make_lab, with_key):
    """Item 2 against `mipro fa`: an attacker on the visited link sends a request through
    FA1 (its own identification), and a confederate on the internet answers FA1 in the
    HA's name with routes and NAT to the attacker.  FA1 installs none of it."""
    lab = make_lab("ro", services=False)
    if not with_key:  # FA1 shares no key with the HA
        conf = lab.conf("fa1", "fa.toml")
        conf.write_text(re.sub(r"\[\[ha_peer\]\].*?(?=\n\[)", "", conf.read_text(),
                               flags=re.S))
    lab.start_service("fa1")
    before_routes, before_nat = all_routes(lab, "fa1"), nat_rules(lab, "fa1")
    # the attacker on visited network A, with an address of its choosing
    lab.exec("mn", "ip", "addr", "add", "10.1.0.77/32", "dev", "eth0")
    lab.exec("mn", "ip", "route", "add", "198.51.100.0/24", "dev", "eth0")
    ident = 0x1234567812345678
    got = mip_send(lab, "mn", "--ha", "198.51.100.1", "--home-agent", "10.1.0.1",
                   "--home", "10.1.0.77", "--coa", "198.51.100.1", "--key", ATTACKER_KEY,
                   "--ident", hex(ident), "--timeout", "0.5")
    assert got["code"] is None  # relayed: pending at FA1
    lab.exec("inet", "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
    mip_send(lab, "cn-inet", "--ha", "198.51.100.1", "--src", "10.1.0.1", "--sport", "434",
             "--raw", forged_reply(ident, "10.1.0.77", b"guessed wrong key" if with_key
                                   else None).hex())
    if with_key:  # dropped by the engine, which asks nothing of the kernel for it
        lab.wait_for(lambda: lab.status("fa1")["counters"]["ha_failed_auth"] == 1, 10,
                     "FA1 to drop the forged reply")
    else:  # relayed to the MN only once the kernel holds its visitor entry, routes, rules
        lab.wait_for(lambda: [m for m in captured(lab, "fa1", "lan0")
                              if m.get("type") == 3 and m["home_address"] == "10.1.0.77"],
                     10, "FA1 to relay the reply for 10.1.0.77 on its link")
    assert ATTACKER not in all_routes(lab, "fa1").replace(before_routes, "")
    assert nat_rules(lab, "fa1") == before_nat
    visitors = lab.status("fa1")["visitors"]
    if with_key:  # dropped: the request is still pending, then times out with 68
        assert [v["state"] for v in visitors] == ["pending"]
        assert lab.status("fa1")["counters"]["ha_failed_auth"] == 1
    else:  # unverifiable: a visitor at most, never with routes or filters
        assert all(v["routes"] == [] and v["filters"] == [] for v in visitors)
        assert "10.1.0.1" in lab.status("fa1")["route_optimization"]
        assert any("route-optimization-off" in x for x in lab.log_lines("fa1"))


def test_daemon_ha_stays_responsive_while_the_directory_hangs(make_lab, tmp_path):
    """Item 6: LDAP lookups run off the event loop.  The directory stops answering (its
    port drops packets: every connect hangs until the timeout) while strangers send a
    request a second: the HA's control socket and a known MN's renewal are answered at
    once, the strangers get 130 when their lookup times out, and the breaker opens."""
    from tests.integration import slapd as slapd_mod

    if not slapd_mod.available():
        pytest.skip("slapd is not installed")
    lab = make_lab("colocated", services=False)
    server = slapd_mod.Slapd(tmp_path / "slapd", netns=lab.ns("ha")).start()
    try:
        password = tmp_path / "ldap.pw"
        password.write_text(slapd_mod.ADMIN_PW)
        password.chmod(0o600)
        conf = lab.conf("ha", "ha.toml")
        text = conf.read_text().replace('store = "file"', 'store = "ldap"')
        text = text.replace('\nfile = "', '\n# file = "')
        text += f"""
[subscribers.ldap]
url = "{server.url}"
base_dn = "{slapd_mod.BASE_DN}"
bind_dn = "{slapd_mod.ADMIN_DN}"
password_file = "{password}"
timeout = 2
cache_ttl = 600
"""
        conf.write_text(text)
        lab.start_service("ha")
        lab.start_service("dnsmasq")
        lab.start_service("mn")
        wait_registered(lab)  # the MN's profile is now in the HA's cache
        lab.exec("ha", "iptables-legacy", "-I", "INPUT", "-p", "tcp", "--dport",
                 str(server.port), "-j", "DROP")
        strangers = [subprocess.Popen(
            ["ip", "netns", "exec", lab.ns("cn-inet"), sys.executable, str(SENDER),
             "--ha", "10.1.0.1", "--home", f"10.1.0.{20 + i}", "--coa", "203.0.113.10",
             "--key", MN_KEY, "--flags", "34", "--sport", str(43500 + i), "--timeout", "12"],
            stdout=subprocess.PIPE, text=True) for i in range(4)]
        slowest = 0.0
        for _ in range(25):  # 5 s of status polls while the lookups hang
            t = time.monotonic()
            assert lab.status("ha")["role"] == "ha"
            slowest = max(slowest, time.monotonic() - t)
            time.sleep(0.2)
        known = mip_send(lab, "cn-inet", "--ha", "10.1.0.1", "--home", "10.1.0.100",
                         "--coa", "203.0.113.10", "--key", MN_KEY, "--flags", "34",
                         "--nai", "mn1@home.example", "--sport", "43600")
        codes = [json.loads(p.communicate(timeout=30)[0].strip().splitlines()[-1])["code"]
                 for p in strangers]
        assert slowest < 0.5, f"the control socket took {slowest:.2f}s"
        assert known["code"] == 0  # cached: answered though the directory hangs
        assert codes == [130] * 4, codes
        directory = lab.status("ha")["directory"]
        assert directory["breaker"] in ("open", "half-open") and directory["waiting"] == 0
    finally:
        server.stop()


def test_daemon_handover_captures_decode_cleanly_in_tshark(make_lab):
    """Item 20: every packet the handover scenario sends (registrations, relays, the
    previous-FA notification and its acknowledgement, advertisements) decodes in
    Wireshark with no malformed frame and no expert error."""
    import shutil

    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    lab = make_lab("handover")
    from mipro.lab.cli import load_check

    load_check("handover").run(lab, say=lambda *_: None)
    for cap in lab.captures:
        cap.terminate()
    for cap in lab.captures:
        cap.wait(5)
    lab.captures.clear()
    pcaps = sorted(lab.out.glob("*.pcap"))
    assert pcaps
    notifications = 0
    for pcap in pcaps:
        expert = subprocess.run(["tshark", "-r", str(pcap), "-q", "-z", "expert,error"],
                                capture_output=True, text=True).stdout
        malformed = subprocess.run(["tshark", "-r", str(pcap), "-Y", "_ws.malformed"],
                                   capture_output=True, text=True).stdout.strip()
        assert not malformed, f"{pcap.name}: {malformed}"
        assert "Errors" not in expert, f"{pcap.name}: {expert}"
        mip = subprocess.run(["tshark", "-r", str(pcap), "-Y", "udp.port == 434 and "
                              "udp.payload[0] == 0xff", "-T", "fields", "-e", "frame.number"],
                             capture_output=True, text=True).stdout.split()
        notifications += len(mip)
    assert notifications >= 2  # the notification and its acknowledgement, at least
