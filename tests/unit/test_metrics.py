"""runtime/metrics.py: the registration timer, the families built from a snapshot, the
collector's hand-off to the event loop, the HTTP endpoint, and runtime.metrics_listen."""

import asyncio
import socket
import threading
import time
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mipro.config import ConfigError
from mipro.runtime.logging import EventLog
from mipro.runtime.metrics import BUCKETS, RegistrationTimer, StatusCollector, families
from tests.unit.test_reload import DAEMONS, loaded

HOME = bytes([10, 1, 0, 100])


def request(ident_low: bytes) -> bytes:
    """A registration request's fixed part: type 1, ..., identification at 16:24."""
    return b"\x01\x00\x02\x58" + HOME + bytes(8) + b"\x00" * 4 + ident_low


def reply(ident_low: bytes, code: int = 0) -> bytes:
    return bytes([3, code]) + b"\x02\x58" + HOME + bytes(4) + b"\x00" * 4 + ident_low


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def samples(text: str) -> dict:
    """{(sample name, frozenset(labels)): value} of an exposition."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def exposition(snap: dict) -> dict:
    registry = CollectorRegistry()

    class Fixed:
        def collect(self):
            return families(snap)

    registry.register(Fixed())
    return samples(generate_latest(registry).decode())


def value(got: dict, name: str, **labels) -> float:
    return got[name, frozenset(labels.items())]


# --- the registration timer -----------------------------------------------------------

def test_timer_matches_a_reply_to_its_request_by_requester_and_identification():
    clock = Clock()
    t = RegistrationTimer(clock=clock)
    t.request_in(request(b"\x00\x00\x00\x01"), "10.1.0.5", 434)
    t.request_in(request(b"\x00\x00\x00\x02"), "10.1.0.5", 434)
    clock.t += 0.003
    t.request_in(request(b"\x00\x00\x00\x01"), "10.1.0.5", 434)  # a copy: time from the first
    t.reply_out(reply(b"\x00\x00\x00\x01"), "10.1.0.6", 434)  # someone else's: nothing
    t.reply_out(reply(b"\x00\x00\x00\x01", 131), "10.1.0.5", 434)
    clock.t += 2.0
    t.reply_out(reply(b"\x00\x00\x00\x02"), "10.1.0.5", 434)
    t.reply_out(reply(b"\x00\x00\x00\x02"), "10.1.0.5", 434)  # answered already
    t.reply_out(b"\xff" * 24, "10.1.0.5", 434)  # not a reply
    t.request_in(b"\x01" * 10, "10.1.0.5", 434)  # too short to be timed
    got = t.copy()
    assert got["counts"][BUCKETS.index(0.005)] == 1 and got["counts"][BUCKETS.index(2.5)] == 1
    assert sum(got["counts"]) == 2 and got["sum"] == pytest.approx(2.006)
    assert len(t.pending) == 0


def test_timer_forgets_unanswered_requests_by_age_and_beyond_its_bound():
    clock = Clock()
    t = RegistrationTimer(clock=clock)
    t.MAX_PENDING = 4
    for i in range(6):  # a flood: only the newest MAX_PENDING are kept
        t.request_in(request(i.to_bytes(4, "big")), "192.0.2.9", 434)
    assert [k[2] for k in t.pending] == [i.to_bytes(4, "big") for i in range(2, 6)]
    clock.t += t.MAX_AGE + 1
    t.request_in(request(b"\x00\x00\x00\x63"), "192.0.2.9", 434)
    assert list(t.pending) == [("192.0.2.9", 434, b"\x00\x00\x00\x63")]
    t.reply_out(reply(b"\x00\x00\x00\x05"), "192.0.2.9", 434)  # forgotten: not observed
    assert sum(t.copy()["counts"]) == 0


# --- families from snapshots ------------------------------------------------------------

def ha_snapshot(**extra) -> dict:
    snap = {"role": "ha", "dataplane": "userspace", "internal_errors": 0, "input_pauses": 1,
            "log_suppressed": {"denied": 4},
            "tunnel": {"packets_in": 7, "bytes_in": 700, "packets_out": 9, "bytes_out": 900,
                       "tun_write_errors": 0},
            "tunnel_drops": {"no_binding": 2, "malformed": 1, "unauthorised": 3},
            "registration_duration": {"buckets": BUCKETS, "counts": [0, 3] + [0] * 11 + [1],
                                      "sum": 9.5},
            "counters": {"registrations": 4, "renewals": 2, "deregistrations": 1,
                         "accepted_0": 6, "accepted_1": 1, "denied_131": 2, "denied_133": 1,
                         "install_failed": 1, "dropped_not_request": 5, "poorly_formed": 3,
                         "replies_suppressed": 0, "reply_send_drops": 0, "internal_errors": 0,
                         "input_pauses": 1},
            "bindings": 5, "directory": {"store": "file", "subscribers": 12},
            "flood_limit": {"source_dropped": 10, "exempt": 40}}
    snap.update(extra)
    return snap


def test_ha_families_are_the_status_numbers():
    got = exposition(ha_snapshot())
    counters = ha_snapshot()["counters"]
    for name, n in counters.items():  # one to one with the status counters section
        assert value(got, "mipro_events_total", event=name) == n
    assert sum(1 for k in got if k[0] == "mipro_events_total") == len(counters)
    # by code: the acceptance the kernel refused is under 130, taken from 0
    assert value(got, "mipro_registrations_total", code="0", decided_by="ha") == 5
    assert value(got, "mipro_registrations_total", code="1", decided_by="ha") == 1
    assert value(got, "mipro_registrations_total", code="130", decided_by="ha") == 1
    assert value(got, "mipro_registrations_total", code="131", decided_by="ha") == 2
    assert value(got, "mipro_bindings") == 5
    assert value(got, "mipro_requests_dropped_total", reason="not_a_request") == 5
    assert value(got, "mipro_requests_malformed_total") == 3
    assert value(got, "mipro_input_pauses_total") == 1
    assert value(got, "mipro_log_lines_suppressed_total", event="denied") == 4
    assert value(got, "mipro_flood_limit_packets_total", rule="source_dropped") == 10
    assert value(got, "mipro_tunnel_packets_total", direction="out", result="forwarded") == 9
    assert value(got, "mipro_tunnel_packets_total", direction="out", result="no_binding") == 2
    assert value(got, "mipro_tunnel_packets_total", direction="in", result="unauthorised") == 3
    assert value(got, "mipro_tunnel_bytes_total", direction="in") == 700
    assert value(got, "mipro_info", role="ha", dataplane="userspace") == 1
    # the histogram is cumulative, ending in +Inf = the count
    assert value(got, "mipro_registration_duration_seconds_bucket", le="0.0005") == 0
    assert value(got, "mipro_registration_duration_seconds_bucket", le="0.001") == 3
    assert value(got, "mipro_registration_duration_seconds_bucket", le="5.0") == 3
    assert value(got, "mipro_registration_duration_seconds_bucket", le="+Inf") == 4
    assert value(got, "mipro_registration_duration_seconds_count") == 4
    assert value(got, "mipro_registration_duration_seconds_sum") == 9.5
    # no directory, no redundancy: their families are absent, not zero
    assert not any(k[0].startswith(("mipro_ldap", "mipro_replication")) for k in got)


def test_ldap_and_redundancy_appear_when_status_has_them():
    directory = {"store": "ldap", "breaker": "open", "cached": 3, "hits": 10, "misses": 4,
                 "found": 2, "not_found": 1, "failed": 1, "failures_in_a_row": 1,
                 "last_error": "timeout", "waiting": 2}
    redundancy = {"session": "up", "lag_messages": 2, "lag_seconds": 0.25,
                  "groups": [{"vrid": 7, "address": "10.1.0.254", "instance": "vi",
                              "role": "master", "in_sync": True, "last_resync": None,
                              "blocks_received": 0}],
                  "counters": {"records_sent": 12}}
    got = exposition(ha_snapshot(directory=directory, redundancy=redundancy))
    assert value(got, "mipro_ldap_lookups_total", result="found") == 2
    assert value(got, "mipro_ldap_lookups_total", result="failed") == 1
    assert value(got, "mipro_ldap_cache_requests_total", result="hit") == 10
    assert value(got, "mipro_ldap_breaker", state="open") == 1
    assert value(got, "mipro_ldap_breaker", state="closed") == 0
    assert value(got, "mipro_ldap_waiting_requests") == 2
    assert value(got, "mipro_replication_lag_seconds") == 0.25
    assert value(got, "mipro_replication_lag_messages") == 2
    assert value(got, "mipro_replication_session", state="up") == 1
    assert value(got, "mipro_redundancy_group_master", vrid="7", address="10.1.0.254") == 1
    assert value(got, "mipro_replication_events_total", event="records_sent") == 12


def test_fa_codes_say_who_decided_and_the_mn_shows_its_state():
    fa = {"role": "fa", "dataplane": "fake", "internal_errors": 0, "input_pauses": 0,
          "log_suppressed": {}, "tunnel": None, "tunnel_drops": {},
          "registration_duration": None, "flood_limit": None,
          "counters": {"denied_69": 1, "relayed_reply_0": 3, "relayed_reply_131": 1,
                       "ha_failed_auth": 2, "internal_errors": 0},
          "visitors": {"accepted": 2, "pending": 1}, "binding_cache": 4}
    got = exposition(fa)
    assert value(got, "mipro_registrations_total", code="69", decided_by="fa") == 1
    assert value(got, "mipro_registrations_total", code="0", decided_by="ha") == 3
    assert value(got, "mipro_registrations_total", code="131", decided_by="ha") == 1
    assert value(got, "mipro_visitors", state="accepted") == 2
    assert value(got, "mipro_visitors", state="pending") == 1
    assert value(got, "mipro_requests_dropped_total", reason="reply_failed_auth") == 2
    assert not any(k[0].startswith(("mipro_tunnel", "mipro_registration_duration"))
                   for k in got)  # a fake dataplane has no relay; no timer, no histogram
    mn = {"role": "mn", "dataplane": "userspace", "internal_errors": 0, "input_pauses": 0,
          "log_suppressed": {}, "tunnel": None, "tunnel_drops": {},
          "registration_duration": None, "counters": {}, "state": "registered",
          "bindings": 1, "lifetime_left": 17, "last_code": 0, "clock_offset": -0.5}
    got = exposition(mn)
    assert value(got, "mipro_mn_state", state="registered") == 1
    assert value(got, "mipro_mn_state", state="idle") == 0
    assert value(got, "mipro_bindings") == 1
    assert value(got, "mipro_binding_lifetime_remaining_seconds") == 17
    assert value(got, "mipro_mn_last_reply_code") == 0


# --- the hand-off to the event loop -------------------------------------------------------

def test_a_scrape_copies_on_the_loop_thread_and_never_sees_half_an_update():
    """The loop keeps two counters equal between its callbacks (an update of several
    fields, as the engine's are); every snapshot taken from another thread has them
    equal, and was taken on the loop's thread."""
    state = {"a": 0, "b": 0}
    seen: list[tuple[int, int, int]] = []

    def take() -> dict:
        return {"thread": threading.get_ident(), **state}

    collector = StatusCollector(take, timeout=5)

    async def main() -> None:
        collector.loop = asyncio.get_running_loop()
        stop = False

        def scrape() -> None:
            for _ in range(200):
                snap = collector.snapshot()
                assert snap is not None
                seen.append((snap["thread"], snap["a"], snap["b"]))

        t = threading.Thread(target=scrape)
        t.start()
        while t.is_alive() and not stop:
            for _ in range(1000):
                state["a"] += 1
                state["b"] += 1
            await asyncio.sleep(0)
        t.join()

    asyncio.run(main())
    loop_thread = threading.get_ident()  # asyncio.run ran the loop here
    assert len(seen) == 200
    assert all(th == loop_thread and a == b for th, a, b in seen)
    assert seen[-1][1] > 0


def test_a_busy_loop_answers_down_and_only_process_metrics_remain():
    collector = StatusCollector(lambda: {}, timeout=0.2)
    got: list[list] = []

    async def main() -> None:
        collector.loop = asyncio.get_running_loop()
        t = threading.Thread(target=lambda: got.append(list(collector.collect())))
        t.start()
        time.sleep(0.5)  # the loop is stuck: the scrape gives up
        await asyncio.sleep(0.05)  # the late callback finds the scrape gone
        t.join()

    asyncio.run(main())
    assert [(f.name, f.samples[0].value) for f in got[0]] == [("mipro_status_up", 0)]
    assert StatusCollector(lambda: {}).snapshot() is None  # no loop yet: down too


# --- the endpoint of a real daemon ---------------------------------------------------------

@pytest.mark.parametrize("role", ["ha", "fa", "mn"])
def test_a_daemon_serves_its_metrics_over_http(role, tmp_path):
    """A daemon built from the example configuration with runtime.metrics_listen on
    loopback, not started: its endpoint answers with its status numbers and the process
    metrics, and closes when told."""
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]

    def edit(text):
        return text.replace("[runtime]", f'[runtime]\nmetrics_listen = "127.0.0.1:{free}"')

    cfg = loaded(role, tmp_path, edit)
    assert cfg.runtime.metrics_listen == ("127.0.0.1", free)
    daemon = DAEMONS[role][0](cfg, EventLog(role))
    if role == "ha":
        daemon.engine.counters["denied_131"] = 3
    daemon.listen_metrics()
    host, port = daemon.metrics.address
    text: list[str] = []

    async def main() -> None:
        daemon.metrics.serve(asyncio.get_running_loop())
        url = f"http://{host}:{port}/metrics"
        job = asyncio.get_running_loop().run_in_executor(
            None, lambda: urllib.request.urlopen(url, timeout=5).read().decode())
        text.append(await job)

    asyncio.run(main())
    daemon.metrics.stop()
    got = samples(text[0])
    assert value(got, "mipro_status_up") == 1
    assert value(got, "mipro_info", role=role, dataplane="none") == 1
    assert value(got, "process_resident_memory_bytes") > 0
    if role == "ha":
        assert value(got, "mipro_registrations_total", code="131", decided_by="ha") == 3
        assert value(got, "mipro_bindings") == 0
    elif role == "fa":
        assert value(got, "mipro_visitors", state="accepted") == 0
    else:
        assert value(got, "mipro_mn_state", state="idle") == 1
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2)


def test_an_address_the_host_does_not_have_stops_the_daemon_naming_file_and_key(tmp_path):
    cfg = loaded("ha", tmp_path, lambda t: t.replace(
        "[runtime]", '[runtime]\nmetrics_listen = "192.0.2.77:9434"'))
    daemon = DAEMONS["ha"][0](cfg, EventLog("ha"))
    with pytest.raises(ConfigError) as exc:
        daemon.listen_metrics()
    assert exc.value.errors == [f"{cfg.path}: runtime.metrics_listen: cannot listen on "
                                "192.0.2.77:9434: Cannot assign requested address"]


@pytest.mark.parametrize("text, problem", [
    ('"127.0.0.1"', "'127.0.0.1' is not ADDRESS:PORT"),
    ('"localhost:9434"', "'localhost:9434' is not ADDRESS:PORT"),
    ('"::1:9434"', "'::1:9434' is not ADDRESS:PORT"),  # IPv6: in brackets
    ('"[10.0.0.1]:9434"', "'[10.0.0.1]:9434' is not ADDRESS:PORT"),
    ('"10.0.0.1:port"', "'10.0.0.1:port' is not ADDRESS:PORT"),
    ('"10.0.0.1:70000"', "port 70000 is not 1 to 65535"),
    ("9434", "expected a string, got int 9434"),
])
def test_metrics_listen_is_checked(tmp_path, text, problem):
    with pytest.raises(ConfigError) as exc:
        loaded("fa", tmp_path, lambda t: t.replace("[runtime]",
                                                  f"[runtime]\nmetrics_listen = {text}"))
    assert any(f"fa.toml: runtime.metrics_listen: {problem}" in e for e in exc.value.errors), \
        exc.value.errors


def test_metrics_listen_values_and_reload():
    from mipro.runtime.ha_daemon import HaDaemon

    assert not HaDaemon.reloads_live("runtime.metrics_listen")  # a restart moves it


@pytest.mark.parametrize("text, want", [('"[::1]:9434"', ("::1", 9434)),
                                        ('"0.0.0.0:9100"', ("0.0.0.0", 9100))])
def test_metrics_listen_ipv6_and_all_addresses_when_asked(tmp_path, text, want):
    cfg = loaded("mn", tmp_path, lambda t: t.replace("[runtime]",
                                                    f"[runtime]\nmetrics_listen = {text}"))
    assert cfg.runtime.metrics_listen == want
    assert loaded("mn", tmp_path).runtime.metrics_listen is None  # off by default


def test_the_directory_counters_status_shows_are_the_ones_scraped(tmp_path):
    """A home agent with the LDAP store (a CachedStore in front of a directory that
    answers from a dict, or fails): its status's directory section and its metrics are
    one set of numbers."""
    from ipaddress import IPv4Address

    from mipro.runtime.metrics import snapshot_ha
    from mipro.subscribers.cache import CachedStore
    from mipro.subscribers.model import StoreUnavailable

    class Directory:
        def lookup(self, home, nai=None):
            if str(home) == "10.1.0.99":
                raise StoreUnavailable("timeout")
            return None

    daemon = DAEMONS["ha"][0](loaded("ha", tmp_path), EventLog("ha"))
    daemon.engine.set_store(CachedStore(Directory(), ttl=60, negative_ttl=60))
    store = daemon.engine.store
    store.lookup(IPv4Address("10.1.0.5"))  # asked: not found
    store.lookup(IPv4Address("10.1.0.5"))  # cached
    with pytest.raises(StoreUnavailable):
        store.lookup(IPv4Address("10.1.0.99"))
    status = daemon.handle_control({"command": "status"})["directory"]
    assert (status["found"], status["not_found"], status["failed"]) == (0, 1, 1)
    assert (status["hits"], status["misses"]) == (1, 2)
    got = exposition(snapshot_ha(daemon))
    for result in ("found", "not_found", "failed"):
        assert value(got, "mipro_ldap_lookups_total", result=result) == status[result]
    assert value(got, "mipro_ldap_cache_requests_total", result="hit") == status["hits"]
    assert value(got, "mipro_ldap_cache_requests_total", result="miss") == status["misses"]
    assert value(got, "mipro_ldap_cache_entries") == status["cached"] == 1
    assert value(got, "mipro_ldap_breaker", state=status["breaker"]) == 1


def test_an_ipv6_address_is_served_too(tmp_path):
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        free = s.getsockname()[1]
    cfg = loaded("mn", tmp_path, lambda t: t.replace(
        "[runtime]", f'[runtime]\nmetrics_listen = "[::1]:{free}"'))
    daemon = DAEMONS["mn"][0](cfg, EventLog("mn"))
    daemon.listen_metrics()
    assert daemon.metrics.address == ("::1", free)
    text: list[str] = []

    async def main() -> None:
        daemon.metrics.serve(asyncio.get_running_loop())
        url = f"http://[::1]:{free}/metrics"
        text.append(await asyncio.get_running_loop().run_in_executor(
            None, lambda: urllib.request.urlopen(url, timeout=5).read().decode()))

    asyncio.run(main())
    daemon.metrics.stop()
    assert value(samples(text[0]), "mipro_mn_state", state="idle") == 1
