"""`fa.realms.linger` cannot be used to fill an FA with realms: requests naming home agents
make none (a realm comes only with an accepted visitor), and a home agent without an FA-HA
key (whose accepting reply anyone on the internet can forge) gets no linger: its realm goes
with its visitor."""

from __future__ import annotations

from mipro.security import SecurityAssociation, append_authenticator
from mipro.wire import ExtType, RegistrationReply

from .test_daemons import ATTACKER_KEY, mip_send

FA1 = "198.51.100.1"
FAKE_HAS = [f"10.9.0.{n}" for n in range(1, 5)]  # fa.limits.pending_per_mac: 4


def test_daemon_fa_requests_naming_many_home_agents_leave_no_realm(make_lab):
    lab = make_lab("ro", services=False)
    lab.edit_conf("fa1", "fa.toml", "[runtime]", "[fa.realms]\nlinger = 300\n\n[runtime]")
    lab.start_service("fa1")
    lab.exec("mn", "ip", "route", "add", "198.51.100.0/24", "dev", "eth0")
    idents = {}
    for n, ha in enumerate(FAKE_HAS):
        home = f"10.1.0.{77 + n}"
        lab.exec("mn", "ip", "addr", "add", f"{home}/32", "dev", "eth0")
        idents[ha] = (home, 0x1234567800000000 + n)
        got = mip_send(lab, "mn", "--ha", FA1, "--home-agent", ha, "--home", home,
                       "--coa", FA1, "--key", ATTACKER_KEY, "--ident", hex(idents[ha][1]),
                       "--lifetime", "2", "--timeout", "0.3")
        assert got["code"] is None  # relayed: pending
    status = lab.status("fa1")
    assert len([v for v in status["visitors"] if v["state"] == "pending"]) == len(FAKE_HAS)
    assert status["realms"] == [] and "mipf-" not in lab.exec("fa1", "ip", "-o", "link").stdout

    # a confederate forges the first fake (unkeyed) home agent's accepting reply: a visitor
    # and its realm, but only for as long as the visitor lives (2 s), not 300 s more
    home, ident = idents[FAKE_HAS[0]]
    reply = RegistrationReply.build(code=0, lifetime=2, home_address=home,
                                    home_agent=FAKE_HAS[0], identification=ident)
    data = append_authenticator(reply.encode(), ExtType.MN_HA_AUTH,
                                SecurityAssociation(256, b"x" * 16))
    lab.exec("inet", "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
    mip_send(lab, "cn-inet", "--ha", FA1, "--src", FAKE_HAS[0], "--sport", "434",
             "--raw", data.hex())
    lab.wait_for(lambda: [r for r in lab.status("fa1")["realms"]
                          if r["home_agent"] == FAKE_HAS[0]], 10, "the forged visitor's realm")
    lab.wait_for(lambda: not [v for v in lab.status("fa1")["visitors"]
                              if v["state"] == "accepted"], 10, "the visitor to expire")
    assert lab.status("fa1")["realms"] == []
    assert "mipf-" not in lab.exec("fa1", "ip", "-o", "link").stdout
    assert "mipro-h-" not in lab.exec("fa1", "ipset", "list", "-n").stdout
