"""Prometheus metrics of the real daemons in the handover lab: scraped over HTTP from
inside the namespaces after known events, they equal what `mipro status --json` says;
off by default, and listening only on the configured address."""

import json
import signal
import sys
from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mipro.lab.cli import load_check

SENDER = Path(__file__).with_name("mip_send.py")
FA1 = "198.51.100.1"
HA_KEY = "6c61622d6d6e312d6d6e2d68612d6b6579"  # mn1's: the lab's subscriber 10.1.0.100
WRONG_KEY = "00" * 16
EXTRA = [(f"10.1.0.{150 + i}", 600 + i, f"{i + 1:02x}a5" * 8) for i in range(3)]  # n = 3
LISTEN = {"ha": ("ha.toml", "10.1.0.1:9434"), "fa1": ("fa.toml", f"{FA1}:9434"),
          "mn": ("mn.toml", "127.0.0.1:9434")}
SCRAPE = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], "
          "timeout=5).read().decode())")
D, T, M, RESERVED = 0x20, 0x02, 0x10, 0x04  # request flags


def mip_send(lab, node: str, *args: str, timeout: float = 2.0) -> dict:
    out = lab.exec(node, sys.executable, str(SENDER), "--timeout", str(timeout), *args,
                   timeout=timeout + 30).stdout
    return json.loads(out.strip().splitlines()[-1])


def scrape(lab, node: str, address: str) -> dict:
    """{(sample name, frozenset(labels)): value} as an HTTP client in ``node`` gets it."""
    text = lab.exec(node, sys.executable, "-c", SCRAPE, f"http://{address}/metrics").stdout
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def family(got: dict, name: str, label: str) -> dict:
    return {dict(k[1])[label]: v for k, v in got.items() if k[0] == name}


def value(got: dict, name: str, **labels) -> float:
    return got[name, frozenset(labels.items())]


def steady(lab, node: str) -> tuple[dict, dict]:
    """A scrape and the status between two scrapes that agree (the MN renews every
    ~10 s, so the counters move now and then): the three describe one moment."""
    address = LISTEN[node][1]

    def mine(got):  # what the daemon counts (not the process, not a clock)
        return {k: v for k, v in got.items() if k[0].startswith("mipro_")
                and k[0] not in ("mipro_binding_lifetime_remaining_seconds",
                                 "mipro_mn_clock_offset_seconds")}

    def once():
        first = scrape(lab, node, address)
        status = lab.status(node)
        again = scrape(lab, node, address)
        return (again, status) if mine(first) == mine(again) else None

    return lab.wait_for(once, 20, f"a steady scrape of {node}")


def add_subscribers(lab) -> None:
    subs = lab.conf("ha", "subscribers.toml")
    subs.write_text(subs.read_text() + "".join(
        f'\n[[subscriber]]\nhome_address = "{home}"\nsa = [{{ spi = {spi}, key = "hex:{key}" }}]\n'
        for home, spi, key in EXTRA))


def test_each_daemon_scraped_equals_its_status_after_known_events(make_lab):
    lab = make_lab("handover", services=False)
    for node, (name, address) in LISTEN.items():
        lab.edit_conf(node, name, "[runtime]", f'[runtime]\nmetrics_listen = "{address}"')
    add_subscribers(lab)
    for name in ("ha", "fa1", "mn"):
        lab.start_service(name)
    lab.wait_for(lambda: load_check("handover").via(lab, FA1), 30, "registration via FA1")

    # at the home agent, from the internet: n registrations, a denial of each kind the
    # HA gives an outsider or a subscriber, datagrams that are no request at all
    ha = ("--ha", "10.1.0.1", "--coa", "203.0.113.10")
    for home, spi, key in EXTRA:
        assert mip_send(lab, "cn-inet", *ha, "--home", home, "--spi", str(spi), "--key", key,
                        "--flags", str(D | T))["code"] == 0
    home, spi, key = EXTRA[0]
    mine = ("--home", home, "--spi", str(spi), "--key", key)
    denials = {131: ("--home", home, "--spi", str(spi), "--key", WRONG_KEY, "--flags", "34"),
               133: (*mine, "--flags", str(D | T), "--skew", "1000"),
               134: (*mine, "--flags", str(D | T | RESERVED)),
               136: (*mine, "--flags", str(D | T), "--home-agent", "10.1.0.99"),
               139: (*mine, "--flags", str(D | T | M))}
    for code, args in denials.items():
        assert mip_send(lab, "cn-inet", *ha, *args)["code"] == code
    assert mip_send(lab, "cn-inet", "--ha", "10.1.0.1", "--coa", "10.1.0.1", *mine,
                    "--flags", str(D | T))["code"] == 129  # a care-of address of the HA's
    lab.exec("cn-inet", sys.executable, "-c",
             "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
             "for _ in range(7): s.sendto(bytes([5]) + bytes(40), ('10.1.0.1', 434))\n"
             "s.sendto(bytes([1]) + bytes(9), ('10.1.0.1', 434))")

    # at the foreign agent, from its visited link: its own denials, and one it relays
    fa = ("--ha", FA1, "--home-agent", "10.1.0.1", "--home", home, "--spi", str(spi),
          "--key", key, "--sport", "43401")
    fa_denials = {69: ("--coa", FA1, "--lifetime", "1000"), 70: ("--coa", FA1, "--flags", "4"),
                  72: ("--coa", FA1, "--flags", str(M)), 77: ("--coa", "198.51.100.99")}
    for code, args in fa_denials.items():
        assert mip_send(lab, "cn-local-a", *fa, *args)["code"] == code
    assert mip_send(lab, "cn-local-a", *fa, "--coa", FA1, "--skew", "1000",
                    "--sport", "43402")["code"] == 133  # the HA's (signed), through the FA

    # the home agent: every status counter, and the families made of them
    lab.wait_for(lambda: any("event=log-summary" in x and "of=denied" in x
                             for x in lab.log_lines("ha")), 15, "the HA's log summary")
    got, status = steady(lab, "ha")
    c = status["counters"]
    assert family(got, "mipro_events_total", "event") == c
    codes = family(got, "mipro_registrations_total", "code")
    assert codes == {"0": c["accepted_0"], **{k[7:]: v for k, v in c.items()
                                              if k.startswith("denied_")}}
    assert {int(k): v for k, v in codes.items() if k != "0"} == \
        {129: 1, 131: 1, 133: 2, 134: 1, 136: 1, 139: 1}
    assert c["accepted_0"] == c["registrations"] + c.get("renewals", 0) + \
        c.get("deregistrations", 0) and c["registrations"] >= 1 + len(EXTRA)
    assert value(got, "mipro_bindings") == len(status["bindings"]) == 1 + len(EXTRA)
    if status["flood_limit"]:  # the kernel's shape rules dropped the 8 non-requests
        assert status["flood_limit"]["shape_dropped"] == 8
        assert family(got, "mipro_flood_limit_packets_total", "rule") == status["flood_limit"]
    else:  # the daemon did
        assert value(got, "mipro_requests_dropped_total", reason="not_a_request") == 7
        assert value(got, "mipro_requests_malformed_total") == c["poorly_formed"] == 1
    # every answer was timed, from its request to its reply
    assert value(got, "mipro_registration_duration_seconds_count") == sum(codes.values())
    summarised: Counter[str] = Counter()  # 7 denials in 10 s: 5 lines, then a summary
    for line in lab.log_lines("ha"):
        if "event=log-summary" in line:
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            summarised[fields["of"]] += int(fields["suppressed"])
    assert summarised["denied"] == 2
    assert family(got, "mipro_log_lines_suppressed_total", "event") == summarised
    assert family(got, "mipro_tunnel_packets_total", "result").keys() >= \
        status["tunnel_drops"].keys()
    for reason, n in status["tunnel_drops"].items():
        assert family(got, "mipro_tunnel_packets_total", "result")[reason] == n
    assert value(got, "mipro_info", role="ha", dataplane=status["dataplane"]) == 1
    assert value(got, "mipro_status_up") == 1 and value(got, "process_resident_memory_bytes") > 0
    assert not any(k[0].startswith(("mipro_ldap", "mipro_replication")) for k in got)

    # the foreign agent
    got, status = steady(lab, "fa1")
    c = status["counters"]
    assert family(got, "mipro_events_total", "event") == c
    fa_own = {k: v for k, v in got.items() if k[0] == "mipro_registrations_total"
              and dict(k[1])["decided_by"] == "fa"}
    assert {int(dict(k[1])["code"]): v for k, v in fa_own.items()} == \
        {69: 1, 70: 1, 72: 1, 77: 1}
    relayed = {dict(k[1])["code"]: v for k, v in got.items()
               if k[0] == "mipro_registrations_total" and dict(k[1])["decided_by"] == "ha"}
    assert relayed == {k[14:]: v for k, v in c.items() if k.startswith("relayed_reply_")}
    assert relayed["133"] == 1 and relayed["0"] >= 1
    accepted = [v for v in status["visitors"] if v["state"] == "accepted"]
    assert value(got, "mipro_visitors", state="accepted") == len(accepted) == 1
    assert value(got, "mipro_binding_cache_entries") == len(status["binding_cache"])
    assert value(got, "mipro_registration_duration_seconds_count") == \
        sum(v for k, v in got.items() if k[0] == "mipro_registrations_total")

    # the mobile node
    got, status = steady(lab, "mn")
    assert value(got, "mipro_mn_state", state=status["state"]) == 1
    assert sum(family(got, "mipro_mn_state", "state").values()) == 1
    assert value(got, "mipro_bindings") == len(status["bindings"]) == 1
    assert value(got, "mipro_mn_last_reply_code") == status["last_code"] == 0
    assert abs(value(got, "mipro_binding_lifetime_remaining_seconds")
               - status["bindings"][0]["lifetime_left"]) <= 2


def listening(lab, node: str) -> list[str]:
    """The node's listening TCP sockets (local address:port)."""
    return sorted(line.split()[3] for line in
                  lab.exec(node, "ss", "-Hltn").stdout.splitlines() if line.strip())


def test_metrics_are_off_by_default_and_listen_only_where_configured(make_lab):
    lab = make_lab("handover", services=False)
    for name in ("ha", "fa1", "mn"):
        lab.start_service(name)
    lab.wait_for(lambda: load_check("handover").via(lab, FA1), 30, "registration via FA1")
    for node in ("ha", "fa1", "mn"):  # nothing of mipro's listens on TCP by default
        assert listening(lab, node) == [], node
    lab.stop_service("ha")

    conf = lab.conf("ha", "ha.toml")
    lab.edit_conf("ha", "ha.toml", "[runtime]", '[runtime]\nmetrics_listen = "10.1.0.1:9434"')
    lab.start_service("ha")
    lab.wait_for(lambda: listening(lab, "ha"), 10, "the metrics listener")
    assert listening(lab, "ha") == ["10.1.0.1:9434"]
    got = scrape(lab, "cn-home", "10.1.0.1:9434")  # across the home link, as Prometheus
    assert value(got, "mipro_status_up") == 1
    for elsewhere in ("127.0.0.1:9434", "172.31.1.1:9434"):  # the HA's other addresses
        refused = lab.exec("ha", sys.executable, "-c", SCRAPE, f"http://{elsewhere}/metrics",
                           check=False)
        assert refused.returncode != 0 and "Connection refused" in refused.stderr

    # moving it takes a restart: a reload says so and keeps the old configuration
    lab.edit_conf("ha", "ha.toml", "10.1.0.1:9434", "10.1.0.1:9435")
    lab.exec("ha", "kill", "-HUP", str(lab.services["ha"].proc.pid))
    lab.wait_for(lambda: any("event=reload-kept-old-config" in x for x in lab.log_lines("ha")),
                 5, "the reload refusal")
    assert any("event=reload-needs-restart" in x and "keys=runtime.metrics_listen" in x
               for x in lab.log_lines("ha"))
    assert listening(lab, "ha") == ["10.1.0.1:9434"]
    assert lab.stop_service("ha", signal.SIGTERM) == 0
    assert listening(lab, "ha") == []

    # an address the host does not have: the daemon refuses to start, naming file and key,
    # before it has touched the kernel
    lab.edit_conf("ha", "ha.toml", "10.1.0.1:9435", "10.1.0.77:9434")
    proc = lab.exec("ha", sys.executable, "-m", "mipro.cli", "ha", "--config", str(conf),
                    check=False)
    assert proc.returncode == 1
    assert f"{conf}: runtime.metrics_listen: cannot listen on 10.1.0.77:9434: Cannot " \
           "assign requested address" in proc.stdout
    assert lab.exec("ha", "ip", "rule").stdout.count("lookup 434") == 0
    assert "Traceback" not in proc.stdout + proc.stderr

