"""Prometheus metrics (``runtime.metrics_listen``): one set of counters, two views.

Nothing here counts on its own except the registration timer.  Every other value is
read at scrape time from the objects `mipro status` reads: the engine's counters, the
daemon's own (internal errors, input pauses, send drops), the relay's statistics, the
flood limiter's rules, the directory cache, the log's suppressed lines, the redundancy
session.  The two views cannot drift apart; `mipro_events_total{event}` is the status
``counters`` section name for name, the other families are the same numbers arranged
the Prometheus way (docs/metrics.md).

Threads.  A daemon is one asyncio loop; prometheus_client serves HTTP from threads of
its own.  A scrape never reads the daemon's objects from its thread: it asks the loop
(``call_soon_threadsafe``) to copy what it needs into plain numbers and waits for the
copy (``SNAPSHOT_TIMEOUT``).  The copy runs between two callbacks of the loop, so it
sees no half-done update (no torn counters, no dict changing size under iteration), and
the daemon's hot paths need no lock.  The price is that a scrape waits for the loop: a
loop busy for longer than the timeout answers ``mipro_status_up 0`` and only the
process metrics, which is what an operator should see then.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import socket
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from ipaddress import ip_address
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    make_wsgi_app,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ..config import ConfigError
from ..core.mn_states import State
from .started import Started

SNAPSHOT_TIMEOUT = 2.0  # seconds a scrape waits for the event loop
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

Snapshot = dict[str, Any]


class RegistrationTimer:
    """How long registrations take at this agent: from when the daemon reads a request
    to when it sends the reply (the kernel programmed in between, the directory asked,
    at a foreign agent the home agent's answer awaited).  A reply is matched to its
    request by the requester's address and port and the low 32 bits of the
    identification, which every reply copies (RFC 5944 §5.7).  Requests that get no
    reply are forgotten after MAX_AGE, or oldest first beyond MAX_PENDING (a flood).

    Updated on the event loop only; ``copy`` is what a scrape gets."""

    MAX_PENDING = 65536
    MAX_AGE = 60.0

    def __init__(self, buckets: Sequence[float] = BUCKETS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last one: above every bucket
        self.sum = 0.0
        self.clock = clock
        self.pending: OrderedDict[tuple[str, int, bytes], float] = OrderedDict()

    def request_in(self, data: bytes, host: object, port: int) -> None:
        if len(data) < 24 or data[0] != 1:
            return
        key = (str(host), port, data[20:24])
        if key in self.pending:  # a copy: the time runs from the first
            return
        now = self.clock()
        while self.pending and (len(self.pending) >= self.MAX_PENDING or
                                next(iter(self.pending.values())) < now - self.MAX_AGE):
            self.pending.popitem(last=False)
        self.pending[key] = now

    def reply_out(self, data: bytes, host: object, port: int) -> None:
        if len(data) < 20 or data[0] != 3:
            return
        started = self.pending.pop((str(host), port, data[16:20]), None)
        if started is not None:
            self.observe(self.clock() - started)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds

    def copy(self) -> dict[str, Any]:
        return {"buckets": self.buckets, "counts": list(self.counts), "sum": self.sum}


# --- snapshots: on the event loop, plain data out ----------------------------------------

def relay_totals(dataplane: object) -> dict[str, int] | None:
    """The userspace relay's packets and bytes, summed over every key it ever counted
    (its per-key counters are never removed, so the sums only grow)."""
    relay = getattr(dataplane, "relay", None)
    if relay is None:
        return None
    totals = dict.fromkeys(("packets_in", "bytes_in", "packets_out", "bytes_out"), 0)
    for c in relay.stats.per_key.values():
        totals["packets_in"] += c.packets_in
        totals["bytes_in"] += c.bytes_in
        totals["packets_out"] += c.packets_out
        totals["bytes_out"] += c.bytes_out
    totals["tun_write_errors"] = relay.stats.tun_write_errors
    return totals


def _dataplane(d: Any) -> Any:
    """The daemon's dataplane, or None before run() made it (the endpoint listens first)."""
    made = getattr(type(d), "dataplane", None)
    return made.peek(d) if isinstance(made, Started) else d.dataplane


def _common(d: Any) -> Snapshot:
    metrics = getattr(d, "metrics", None)
    timer = metrics.timer if metrics is not None else None
    dataplane = _dataplane(d)
    return {"role": d.cfg.role,
            "dataplane": dataplane.name if dataplane is not None else "none",
            "internal_errors": d.internal_errors, "input_pauses": d.input_pauses,
            "log_suppressed": dict(d.log.suppressed_total),
            "tunnel": relay_totals(dataplane),
            "tunnel_drops": dataplane.drops() if dataplane is not None and
            hasattr(dataplane, "drops") else {},
            "registration_duration": timer.copy() if timer is not None else None}


def snapshot_ha(d: Any) -> Snapshot:
    """What HaDaemon.handle_control shows, less the per-binding list."""
    snap = _common(d)
    snap["counters"] = dict(d.engine.counters, reply_send_drops=d.send_drops,
                            internal_errors=d.internal_errors, input_pauses=d.input_pauses)
    snap["bindings"] = len(d.engine.bindings)
    snap["directory"] = d._directory_status()
    snap["flood_limit"] = d.flood_limit.counters() if d.flood_limit else None
    redundancy = getattr(d, "redundancy", None)  # runtime/ha_redundancy.py, when configured
    if redundancy is not None:
        snap["redundancy"] = redundancy.describe(time.time())
    return snap


def snapshot_fa(d: Any) -> Snapshot:
    """What FaDaemon.handle_control shows, less the per-visitor lists."""
    snap = _common(d)
    e = d.engine
    snap["counters"] = dict(e.counters, internal_errors=d.internal_errors)
    states = Counter(v.state for v in e.visitors.values())
    states.update(p.visitor.state for p in e.pending.values())
    snap["visitors"] = dict(states)
    snap["binding_cache"] = len(e.cache)
    snap["flood_limit"] = d.flood_limit.counters() if d.flood_limit else None
    return snap


def snapshot_mn(d: Any) -> Snapshot:
    """The mobile node's status is small: taken whole."""
    snap = _common(d)
    status = d.handle_control({"command": "status"})
    snap.update(state=status["state"], bindings=len(status["bindings"]),
                lifetime_left=status["bindings"][0]["lifetime_left"]
                if status["bindings"] else None,
                last_code=status["last_code"], clock_offset=status["clock_offset"],
                counters={})  # the mobile node's status has no counters section
    return snap


SNAPSHOTS: dict[str, Callable[[Any], Snapshot]] = {
    "ha": snapshot_ha, "fa": snapshot_fa, "mn": snapshot_mn}


# --- families: in the scrape's thread, from a snapshot --------------------------------

def _counter(name: str, doc: str, value: float | None = None,
             labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value, labels=labels or None)


def _gauge(name: str, doc: str, value: float | None = None,
           labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value, labels=labels or None)


def _by_prefix(counters: dict[str, int], prefix: str) -> dict[str, int]:
    """{"denied_131": 2, ...}, "denied_" → {"131": 2}."""
    return {k[len(prefix):]: v for k, v in counters.items()
            if k.startswith(prefix) and k[len(prefix):].isdigit()}


# dropped before any answer, by what the status counter calls it
DROPPED = {
    "ha": {"dropped_not_request": "not_a_request", "dropped_over_budget": "over_budget",
           "dropped_lookup_queue_full": "lookup_queue_full"},
    "fa": {"dropped_not_request": "not_a_request", "dropped_over_budget": "over_budget",
           "dropped_duplicate_pending": "duplicate_pending",
           "unmatched_reply": "reply_unmatched", "reply_from_wrong_source": "reply_wrong_source",
           "ha_failed_auth": "reply_failed_auth", "poorly_formed_reply": "reply_malformed"},
}


def registrations(snap: Snapshot) -> CounterMetricFamily:
    """Registration requests by the code of the answer, and who decided it.  At the
    home agent an acceptance the kernel then refused is counted under 130 (what the
    mobile node heard), taken from code 0 (mipro's mobile node never sets S)."""
    c = snap["counters"]
    fam = _counter("mipro_registrations", "Registration requests answered, by reply code "
                   "and by the agent that decided (fa: the foreign agent's own denials; ha: "
                   "the home agent's answers)", labels=("code", "decided_by"))
    codes: Counter[str] = Counter()
    if snap["role"] == "ha":
        codes.update(_by_prefix(c, "accepted_"))
        codes.update(_by_prefix(c, "denied_"))
        failed = c.get("install_failed", 0)
        if failed:
            codes["130"] += failed
            codes["0"] = max(0, codes["0"] - failed)
        for code, n in sorted(codes.items(), key=lambda x: int(x[0])):
            fam.add_metric([code, "ha"], n)
    else:
        for who, prefix in (("fa", "denied_"), ("ha", "relayed_reply_")):
            for code, n in sorted(_by_prefix(c, prefix).items(), key=lambda x: int(x[0])):
                fam.add_metric([code, who], n)
    return fam


def families(snap: Snapshot) -> Iterable[Metric]:
    role, c = snap["role"], snap["counters"]
    info = InfoMetricFamily("mipro", "The daemon's role and dataplane backend")
    info.add_metric([], {"role": role, "dataplane": snap["dataplane"]})
    yield info
    events = _counter("mipro_events", "Every counter of `mipro status` (its counters "
                      "section), by its name there", labels=("event",))
    for name, n in sorted(c.items()):
        events.add_metric([name], n)
    yield events
    yield _counter("mipro_internal_errors", "Bugs caught and logged (event=internal-error); "
                   "the daemon carried on", snap["internal_errors"])
    yield _counter("mipro_input_pauses", "Times the daemon stopped reading its sockets "
                   "because its work queue was full", snap["input_pauses"])
    suppressed = _counter("mipro_log_lines_suppressed", "Warning and error lines not "
                          "written by the log's rate limit (summarised as "
                          "event=log-summary), by event", labels=("event",))
    for event, n in sorted(snap["log_suppressed"].items()):
        suppressed.add_metric([event], n)
    yield suppressed
    yield from _tunnel(snap)
    if snap.get("flood_limit"):
        flood = _counter("mipro_flood_limit_packets", "Packets matched by the kernel's flood "
                         "limit rules (dropped, or exempt), by rule", labels=("rule",))
        for rule, n in sorted(snap["flood_limit"].items()):
            flood.add_metric([rule], n)
        yield flood
    if role in ("ha", "fa"):
        yield registrations(snap)
        dropped = _counter("mipro_requests_dropped", "Datagrams dropped without an answer, "
                           "by reason", labels=("reason",))
        for key, reason in DROPPED[role].items():
            dropped.add_metric([reason], c.get(key, 0))
        yield dropped
        yield _counter("mipro_requests_malformed", "Registration requests that did not "
                       "decode (answered 134 at the HA, 70 at the FA, when long enough and "
                       "within the reply budget)",
                       c.get("poorly_formed" if role == "ha" else "poorly_formed_request", 0))
        timer = snap["registration_duration"]
        if timer is not None:
            hist = HistogramMetricFamily(
                "mipro_registration_duration_seconds", "From reading a registration request "
                "to sending its reply, at this agent")
            cumulative, buckets = 0, []
            for le, n in zip((*timer["buckets"], float("inf")), timer["counts"], strict=True):
                cumulative += n
                buckets.append((_le(le), cumulative))
            hist.add_metric([], buckets, timer["sum"])
            yield hist
    if role == "ha":
        yield from _ha(snap)
    elif role == "fa":
        visitors = _gauge("mipro_visitors", "Visitors of this foreign agent, by state",
                          labels=("state",))
        for state in ("pending", "accepted"):
            visitors.add_metric([state], snap["visitors"].get(state, 0))
        yield visitors
        yield _gauge("mipro_binding_cache_entries", "Bindings of other mobile nodes cached "
                     "for route optimization", snap["binding_cache"])
    else:
        yield from _mn(snap)


def _le(bound: float) -> str:
    return floatToGoString(bound)  # as prometheus_client's own histograms write it


def _tunnel(snap: Snapshot) -> Iterable[Metric]:
    t, drops = snap["tunnel"], snap["tunnel_drops"]
    if t is None and not drops:
        return
    packets = _counter("mipro_tunnel_packets", "Packets of the userspace relay's tunnels: "
                       "out = encapsulated towards a peer, in = decapsulated and delivered; "
                       "result says forwarded or why dropped", labels=("direction", "result"))
    if t is not None:
        packets.add_metric(["out", "forwarded"], t["packets_out"])
        packets.add_metric(["in", "forwarded"], t["packets_in"])
        packets.add_metric(["in", "tun_write_error"], t["tun_write_errors"])
    for reason, n in sorted(drops.items()):
        # no_binding / no_visitor: routed into the relay for no one it knows
        packets.add_metric(["out" if reason.startswith("no_") else "in", reason], n)
    yield packets
    if t is not None:
        size = _counter("mipro_tunnel_bytes", "Inner bytes of the userspace relay's "
                        "tunnels, by direction", labels=("direction",))
        size.add_metric(["out"], t["bytes_out"])
        size.add_metric(["in"], t["bytes_in"])
        yield size


def _ha(snap: Snapshot) -> Iterable[Metric]:
    c = snap["counters"]
    yield _gauge("mipro_bindings", "Mobility bindings held", snap["bindings"])
    yield _counter("mipro_replies_suppressed", "Answers to unauthenticated requests not "
                   "sent: over ha.limits.unsigned_replies", c.get("replies_suppressed", 0))
    yield _counter("mipro_reply_send_drops", "Replies the socket buffer had no room for",
                   c.get("reply_send_drops", 0))
    d = snap["directory"]
    if d.get("store") == "ldap":
        lookups = _counter("mipro_ldap_lookups", "Subscriber directory lookups, by result",
                           labels=("result",))
        for result in ("found", "not_found", "failed"):
            lookups.add_metric([result], d.get(result, 0))
        yield lookups
        cache = _counter("mipro_ldap_cache_requests", "Subscriber look-ups answered from the "
                         "cache (hit) or not (miss)", labels=("result",))
        cache.add_metric(["hit"], d["hits"])
        cache.add_metric(["miss"], d["misses"])
        yield cache
        yield _gauge("mipro_ldap_cache_entries", "Subscribers (and unknown identities) "
                     "cached", d["cached"])
        yield _gauge("mipro_ldap_waiting_requests", "Requests waiting for the directory",
                     d["waiting"])
        breaker = _gauge("mipro_ldap_breaker", "The directory circuit breaker's state "
                         "(1 for the current one)", labels=("state",))
        for state in ("closed", "half-open", "open"):
            breaker.add_metric([state], 1 if d["breaker"] == state else 0)
        yield breaker
    r = snap.get("redundancy")
    if r is not None:
        yield _gauge("mipro_replication_lag_seconds", "Age of the oldest replication message "
                     "the peer has not acknowledged", r["lag_seconds"])
        yield _gauge("mipro_replication_lag_messages", "Replication messages the peer has not "
                     "acknowledged", r["lag_messages"])
        session = _gauge("mipro_replication_session", "The sync session with the peer (1 "
                         "for its current state)", labels=("state",))
        for state in ("down", "handshake", "up"):
            session.add_metric([state], 1 if r["session"] == state else 0)
        yield session
        groups = _gauge("mipro_redundancy_group_master", "1 while this home agent is primary "
                        "for the group's virtual address", labels=("vrid", "address"))
        in_sync = _gauge("mipro_redundancy_group_in_sync", "1 when the group's bindings are "
                         "in step with the peer", labels=("vrid", "address"))
        for g in r.get("groups", []):
            labels = [str(g["vrid"]), str(g["address"])]
            groups.add_metric(labels, 1 if g["role"] == "master" else 0)
            in_sync.add_metric(labels, 1 if g["in_sync"] else 0)
        yield groups
        yield in_sync
        events = _counter("mipro_replication_events", "The replication's counters, by name",
                          labels=("event",))
        for name, n in sorted(r.get("counters", {}).items()):
            events.add_metric([name], n)
        yield events


def _mn(snap: Snapshot) -> Iterable[Metric]:
    state = _gauge("mipro_mn_state", "The mobile node's registration state (1 for the "
                   "current one)", labels=("state",))
    for s in State:
        state.add_metric([s.value], 1 if snap["state"] == s.value else 0)
    yield state
    yield _gauge("mipro_bindings", "Mobility bindings held (registered: 1)", snap["bindings"])
    if snap["lifetime_left"] is not None:
        yield _gauge("mipro_binding_lifetime_remaining_seconds", "Seconds until the "
                     "registration expires", snap["lifetime_left"])
    if snap["last_code"] is not None:
        yield _gauge("mipro_mn_last_reply_code", "The code of the last registration reply",
                     snap["last_code"])
    yield _gauge("mipro_mn_clock_offset_seconds", "The home agent's clock minus ours, as "
                 "learnt from its timestamps", snap["clock_offset"])


# --- the collector and the server -------------------------------------------------------

class StatusCollector(Collector):
    """Builds the metric families at each scrape from a snapshot the event loop takes
    (the module docstring says why)."""

    def __init__(self, take: Callable[[], Snapshot], timeout: float = SNAPSHOT_TIMEOUT) -> None:
        self.take = take
        self.timeout = timeout
        self.loop: asyncio.AbstractEventLoop | None = None

    def snapshot(self) -> Snapshot | None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return None
        done: concurrent.futures.Future[Snapshot] = concurrent.futures.Future()

        def take() -> None:
            if not done.set_running_or_notify_cancel():
                return  # the scrape gave up waiting
            try:
                done.set_result(self.take())
            except Exception as exc:  # a bug: the scrape says down, the loop goes on
                done.set_exception(exc)

        try:
            loop.call_soon_threadsafe(take)
        except RuntimeError:  # the loop closed meanwhile
            return None
        try:
            return done.result(self.timeout)
        except concurrent.futures.TimeoutError:
            done.cancel()
            return None
        except Exception:
            return None

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot()
        yield _gauge("mipro_status_up", "1 if the daemon's event loop answered this scrape "
                     f"within {self.timeout:g} s (else only process metrics follow)",
                     1 if snap is not None else 0)
        if snap is not None:
            yield from families(snap)

    def describe(self) -> Iterable[Metric]:
        return []  # nothing to check at registration: do not take a snapshot then


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # no line per scrape in the daemon's log


class _Server4(ThreadingWSGIServer):
    address_family = socket.AF_INET


class _Server6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class Metrics:
    """The HTTP endpoint.  ``listen`` binds (before the daemon touches the kernel, so a
    bad address stops it cleanly), ``serve`` starts answering once the loop runs."""

    def __init__(self, daemon: Any) -> None:
        self.timer = RegistrationTimer() if daemon.cfg.role in ("ha", "fa") else None
        self.collector = StatusCollector(lambda: SNAPSHOTS[daemon.cfg.role](daemon))
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(self.collector)
        self.server: ThreadingWSGIServer | None = None
        self.thread: threading.Thread | None = None

    def listen(self, cfg: Any) -> None:
        host, port = cfg.runtime.metrics_listen
        server = _Server6 if ip_address(host).version == 6 else _Server4
        try:
            self.server = make_server(host, port, make_wsgi_app(self.registry), server,
                                      handler_class=_Quiet)
        except OSError as exc:
            raise ConfigError([f"{cfg.path}: runtime.metrics_listen: cannot listen on "
                               f"{host}:{port}: {exc.strerror or exc}"]) from None

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def serve(self, loop: asyncio.AbstractEventLoop) -> None:
        self.collector.loop = loop
        if self.server is not None and self.thread is None:
            self.thread = threading.Thread(target=self.server.serve_forever,
                                           name="mipro-metrics", daemon=True)
            self.thread.start()

    def stop(self) -> None:
        self.collector.loop = None
        if self.server is not None:
            if self.thread is not None:
                self.server.shutdown()
                self.thread.join(5)
            self.server.server_close()
            self.server = None
