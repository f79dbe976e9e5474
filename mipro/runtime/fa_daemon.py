"""`mipro fa`: the foreign agent daemon."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import traceback
from collections import Counter
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from ..config import FaConfig, load_fa
from ..core.actions import Log, Send, SendIcmp, SendToLink
from ..core.advertiser import Advertiser, AdvertPolicy
from ..core.fa import (
    AddForward,
    AddVisitor,
    FaPolicy,
    ForeignAgent,
    RemoveForward,
    RemoveVisitor,
)
from ..dataplane.fa.agent import FaDataplane
from ..dataplane.fake import FakeFaDataplane
from ..dataplane.kernel.floodlimit import Limits, LinkLimiter
from ..dataplane.kernel.nftables import NftError, nft_available
from ..dataplane.link.linklayer import IcmpLink, RegistrationLink
from ..wire import AgentFlags
from .daemon import EngineDaemon, datagrams, run_daemon
from .logging import EventLog
from .started import Started
from .systemd import notify

BATCH = 256  # datagrams or frames read per wakeup
ANY_ENCAPSULATION = frozenset({"ipip", "gre"})


class ExpireRealms:
    """Work-queue item: drop the realms whose linger ended (fa.realms.linger), in order
    with the visitors' additions and removals."""


def make_policy(cfg: FaConfig,
                address_in_use: Callable[[IPv4Address], IPv4Address | None] | None = None,
                carried: frozenset[str] = ANY_ENCAPSULATION) -> FaPolicy:
    """``carried``: the encapsulations the dataplane can deliver (FaDataplane)."""
    return FaPolicy(address=cfg.address, care_of_addresses=cfg.care_of_addresses,
                    max_lifetime=cfg.max_lifetime, reverse_tunneling=cfg.reverse_tunneling,
                    reverse_tunnel_required=cfg.reverse_tunnel_required,
                    encapsulations=cfg.encapsulations & carried, ha_peers=dict(cfg.ha_peers),
                    mn_fa=dict(cfg.mn_peers), require_mn_fa=cfg.require_mn_fa,
                    vendor_id=cfg.vendor_id, address_in_use=address_in_use,
                    home_agents=cfg.home_agents, mac_rate=cfg.limits.per_mac,
                    mac_burst=cfg.limits.per_mac_burst,
                    unkeyed_ha_rate=cfg.limits.unkeyed_home_agent,
                    max_pending=cfg.limits.pending,
                    max_pending_per_mac=cfg.limits.pending_per_mac,
                    forwarding=cfg.forwarding.enabled,
                    max_cache_lifetime=cfg.forwarding.max_lifetime)


def make_advertiser(cfg: FaConfig, now: float) -> Advertiser:
    return Advertiser(make_advert_policy(cfg), now)


def make_advert_policy(cfg: FaConfig, carried: frozenset[str] = ANY_ENCAPSULATION,
                       ) -> AdvertPolicy:
    flags = AgentFlags.F
    if cfg.registration_required:
        flags |= AgentFlags.R
    if cfg.reverse_tunneling:
        flags |= AgentFlags.T
    if "gre" in cfg.encapsulations & carried:  # G only if the dataplane delivers GRE
        flags |= AgentFlags.G
    return AdvertPolicy(cfg.address, cfg.prefix_length, flags, cfg.care_of_addresses,
                        cfg.max_lifetime, cfg.advertisement_interval)


class FaDaemon(EngineDaemon[ForeignAgent]):
    LOAD = staticmethod(load_fa)
    LIVE = frozenset({
        "prefix_length", "max_lifetime", "advertisement_interval", "registration_required",
        "reverse_tunneling", "reverse_tunnel_required", "encapsulations", "vendor_id",
        "ha_peers", "mn_peers", "require_mn_fa", "home_agents", "limits.unkeyed_home_agent",
        "limits.pending", "limits.pending_per_mac", "forwarding.enabled",
        "forwarding.max_lifetime", "realms.linger", "runtime.log_level"})
    # what run() makes, in this order
    dataplane = Started[FaDataplane | FakeFaDataplane]()
    udp = Started[socket.socket]()  # port 434 on the care-of address: home agents, peers
    absorb = Started[socket.socket]()
    link = Started[RegistrationLink]()
    icmp = Started[IcmpLink]()

    def __init__(self, cfg: FaConfig, log: EventLog) -> None:
        super().__init__(log)
        self.cfg = cfg
        self.advertiser = make_advertiser(cfg, time.time())
        self.engine = ForeignAgent(make_policy(cfg), self.advertiser)
        self.started = time.time()
        self.flood_limit: LinkLimiter | None = None
        self.exempt_macs: Counter[bytes] = Counter()
        self.idle_timer: asyncio.TimerHandle | None = None

    def _site(self) -> dict[str, Any]:
        """[fa.routing]: the visitors' /32s for the site's routing daemon."""
        r = self.cfg.routing
        return {"site_table": r.table, "site_networks": r.home_networks,
                "site_metric": r.metric, "site_interfaces": r.interfaces}

    async def _start_flood_limit(self) -> None:
        """The link's ingress hook drops each link-layer address's excess before the
        request socket sees it (docs/security.md); accepted visitors are exempt."""
        lim = self.cfg.limits
        if not lim.kernel or isinstance(self.dataplane, FakeFaDataplane):
            return
        why = nft_available()
        if why is not None:
            self.log("flood-limit-unavailable", "warning", reason=why)
            return
        limiter = LinkLimiter(self.cfg.interface, Limits(
            rate=max(1, round(lim.per_mac)), burst=max(1, round(lim.per_mac_burst)),
            aggregate_rate=round(lim.unknown_macs), aggregate_burst=round(lim.unknown_macs)),
            addresses=(self.cfg.address, *self.cfg.care_of_addresses,
                       IPv4Address("255.255.255.255")))
        try:
            await limiter.start()
        except (OSError, NftError) as exc:
            self.log("flood-limit-unavailable", "warning", reason=exc)
            return
        self.flood_limit = limiter
        self.log("flood-limit", interface=self.cfg.interface, per_mac=lim.per_mac)

    async def _exempt(self, mac: bytes, change: int) -> None:
        """Accepted visitors' link-layer addresses skip the link's flood limit."""
        if self.flood_limit is None:
            return
        self.exempt_macs[mac] += change
        try:
            if change > 0 and self.exempt_macs[mac] == 1:
                await self.flood_limit.add_exempt([mac])
            elif self.exempt_macs[mac] <= 0:
                del self.exempt_macs[mac]
                await self.flood_limit.remove_exempt([mac])
        except NftError as exc:
            self.log("flood-limit-exemption-failed", "warning", mac=mac.hex(":"), reason=exc)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        backend = await self.pick_backend(self.cfg.dataplane.backend)
        dp = self.cfg.dataplane
        self.dataplane = (FakeFaDataplane if backend == "fake" else FaDataplane)(
            backend=backend, interface=self.cfg.interface, care_of=self.cfg.care_of_addresses[0],
            table=dp.table, rule_priority=dp.rule_priority,
            log=self.log, replay=self.cfg.forwarding.replay,
            **self._site())
        if isinstance(self.dataplane, FaDataplane):  # hold from the relay of a request
            self.dataplane.awaiting = self.engine.awaiting
            # realms linger only for home agents whose replies authenticate (FA-HA key)
            self.dataplane.idle.linger = self.cfg.realms.linger
            self.dataplane.idle.keep = lambda ha: ha in self.engine.policy.ha_peers
        await self.dataplane.start(loop)
        await self._start_flood_limit()
        carried = self.dataplane.encapsulations
        self.engine.set_policy(make_policy(self.cfg, self.dataplane.address_in_use, carried))
        self.advertiser.policy = make_advert_policy(self.cfg, carried)
        if self.cfg.encapsulations - carried:
            self.log("encapsulation-unavailable", "warning", backend=backend,
                     encapsulations=",".join(sorted(self.cfg.encapsulations - carried)))
        mac = await self.dataplane.nl.mac(self.cfg.interface)
        worker = asyncio.create_task(self._worker())
        # relay from the care-of address: it is the FA's identity towards home agents
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.udp.bind((str(self.cfg.care_of_addresses[0]), 434))
        self.udp.setblocking(False)
        # requests from MNs are read off the link with their MAC addresses; this socket only
        # keeps the kernel from answering them with ICMP port unreachable
        self.absorb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.absorb.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.absorb.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        if self.cfg.address != self.cfg.care_of_addresses[0]:  # else self.udp is there
            # not the wildcard: a home agent on this host has port 434 on its address
            self.absorb.bind((str(self.cfg.address), 434))
        self.absorb.setblocking(False)
        loop.add_reader(self.absorb.fileno(), self._drain_absorb)
        self.add_input(self.udp.fileno(), self._on_udp)
        self.link = RegistrationLink(self.cfg.interface, mac)
        self.add_input(self.link.fileno(), self._on_link)
        self.icmp = IcmpLink(self.cfg.interface, self.cfg.address, ("224.0.0.2",))
        self.add_input(self.icmp.fileno(), self._on_icmp)
        control = await self.serve_operations(self.cfg.runtime.control_socket)
        self._reschedule()
        self.log("started", address=self.cfg.address, interface=self.cfg.interface,
                 care_of=",".join(str(a) for a in self.cfg.care_of_addresses), pid=os.getpid())
        notify("READY=1\nSTATUS=advertising")
        await self.stopping.wait()
        notify("STOPPING=1")
        loop.remove_reader(self.absorb.fileno())
        for sock in (self.udp, self.link, self.icmp):
            self.remove_input(sock.fileno())
        await self.work.join()
        worker.cancel()
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        await control.stop()
        await self.dataplane.stop()
        if self.flood_limit is not None:
            await self.flood_limit.stop()
        self.stop_log_flush()
        for sock in (self.udp, self.absorb, self.link, self.icmp):
            sock.close()
        self.log("stopped")

    def prepare_reload(self, cfg: FaConfig) -> Callable[[], None]:
        carried = self.dataplane.encapsulations
        policy = make_policy(cfg, self.dataplane.address_in_use, carried)
        advert = make_advert_policy(cfg, carried)

        def commit() -> None:
            self.engine.set_policy(policy)
            if isinstance(self.dataplane, FaDataplane):  # shorter, or a key gone: now
                self.dataplane.idle.linger = cfg.realms.linger
                self.dispatch([ExpireRealms()])
            # no reboot: the advertisement sequence goes on (RFC 5944 §2.3.2), or every
            # MN would take the reload for one and register again
            self.advertiser.policy = advert
        return commit

    # --- input ------------------------------------------------------------------------

    def _on_udp(self) -> None:
        """Replies from home agents and binding messages from other FAs or MNs (requests
        from MNs on our link come in through the link socket)."""
        now = time.time()
        link_requests = self.cfg.address in self.cfg.care_of_addresses
        for data, addr in datagrams(self.udp, BATCH, self.log):
            if link_requests and data[:1] == b"\x01":
                # an MN's request to our agent address, which is the care-of address too:
                # the link socket has it, with its MAC (as self.absorb's would be)
                continue
            self.dispatch(self.call("from_network", self.engine.from_network, data,
                                    IPv4Address(addr[0]), addr[1], now))
        self._reschedule()

    def _drain_absorb(self) -> None:
        for _ in range(BATCH):
            try:
                self.absorb.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue

    def _on_link(self) -> None:
        now = time.time()
        for _ in range(BATCH):  # bounded: the loop gets the CPU back under a flood
            d = self.link.receive()
            if d is None:
                break
            if d.payload[:1] == b"\x01" and d.dst in (self.cfg.address, IPv4Address(
                    "255.255.255.255"), *self.cfg.care_of_addresses):
                self.request_seen(d.payload, d.src, d.sport)
                self.dispatch(self.call("request_from_mn", self.engine.request_from_mn,
                                        d.payload, d.src, d.sport, d.mac, now))
        self._reschedule()

    def _on_icmp(self) -> None:
        for _ in range(BATCH):
            got = self.icmp.receive()
            if got is None:
                return
            src, msg = got
            if msg[0] == 10:
                self.dispatch(self.call("solicitation", self.engine.solicitation, src,
                                        time.time()))

    # --- output -----------------------------------------------------------------------

    async def _execute(self, actions: list[Any]) -> None:
        """Kernel first; the MN hears of an acceptance only once its visitor entry exists
        (a visitor the kernel refused is answered 66 and removed again)."""
        held: set[int] = set()
        extra: list[Any] = []
        # the flood limit's exemptions after the replies (the MN and the previous FA wait on
        # those), unless a removal in the same batch must come after them
        exempt: list[bytes] = []
        defer = not any(isinstance(a, RemoveVisitor) for a in actions)
        # a returning visitor's pointer ends after the replies too (its add took the /32)
        ended: list[RemoveForward] = []
        for a in actions:
            if isinstance(a, AddVisitor):
                try:
                    await self.dataplane.add_visitor(a.visitor, a.previous)
                    if a.previous is None and defer:
                        exempt.append(a.visitor.mac)
                    elif a.previous is None:
                        await self._exempt(a.visitor.mac, +1)
                except Exception as exc:  # noqa: BLE001 - a refusal or a bug: never ack it
                    self.log("dataplane-error", "error", home=a.visitor.home_address,
                             reason=repr(exc),
                             where=traceback.format_exc(limit=4).replace("\n", " | "))
                    if a.relay is not None:
                        held.add(id(a.relay))
                    extra += self.call("visitor_failed", self.engine.visitor_failed, a,
                                       repr(exc), time.time())
            elif isinstance(a, RemoveVisitor):
                await self._remove(a)
            elif isinstance(a, RemoveForward) and a.reason == "returned":
                ended.append(a)
            elif isinstance(a, AddForward | RemoveForward):
                await self._forward(a)
            elif isinstance(a, ExpireRealms):
                try:
                    await self.dataplane.expire_idle()
                except Exception as exc:  # noqa: BLE001 - log it; the rest of the batch goes on
                    self.log("dataplane-error", "error", reason=repr(exc),
                             where=traceback.format_exc(limit=4).replace("\n", " | "))
        for a in extra:
            if isinstance(a, RemoveVisitor):
                await self._remove(a)
        for a in actions + extra:
            if id(a) in held:
                continue
            if isinstance(a, Send):
                try:
                    self.udp.sendto(a.data, (str(a.dst), a.port))
                except OSError as exc:
                    self.log("send-failed", "warning", dst=a.dst, reason=exc)
            elif isinstance(a, SendToLink):
                try:
                    self.link.send(a.mac, a.src, a.dst, 434, a.port, a.data)
                    self.reply_sent(a.data, a.dst, a.port)
                except OSError as exc:
                    self.log("send-failed", "warning", dst=a.dst, reason=exc)
            elif isinstance(a, SendIcmp):
                if (why := self.icmp.send(a.dst, a.data)) is not None:
                    self.log("advertisement-not-sent", "debug", reason=why)
            elif isinstance(a, Log):
                self.log.emit(a)
        for mac in exempt:
            await self._exempt(mac, +1)
        for e in ended:
            await self._forward(e)
        self._arm_idle()

    def _arm_idle(self) -> None:
        """The timer for the first idle realm's end of linger (ExpireRealms via the queue)."""
        when = self.dataplane.idle_deadline()
        if self.idle_timer is not None:
            if when is not None and abs(self.idle_timer.when() - when) < 0.01:
                return
            self.idle_timer.cancel()
            self.idle_timer = None
        if when is not None:  # loop.time() is time.monotonic()
            self.idle_timer = asyncio.get_running_loop().call_at(when, self._on_idle_timer)

    def _on_idle_timer(self) -> None:
        self.idle_timer = None  # fired: the next _execute arms the next one
        self.dispatch([ExpireRealms()])

    async def _remove(self, a: RemoveVisitor) -> None:
        try:
            await self.dataplane.remove_visitor(a.visitor)
            if a.reason != "kernel-failed":
                await self._exempt(a.visitor.mac, -1)
        except Exception as exc:  # noqa: BLE001 - log it; the rest of the batch goes on
            self.log("dataplane-error", "error", home=a.visitor.home_address, reason=repr(exc),
                     where=traceback.format_exc(limit=4).replace("\n", " | "))

    async def _forward(self, a: AddForward | RemoveForward) -> None:
        assert self.dataplane is not None
        try:
            if isinstance(a, AddForward):
                await self.dataplane.add_forward(a.entry)
            else:
                await self.dataplane.remove_forward(a.entry)
        except Exception as exc:  # noqa: BLE001 - log it; the rest of the batch goes on
            self.log("dataplane-error", "error", home=a.entry.home_address, reason=repr(exc),
                     where=traceback.format_exc(limit=4).replace("\n", " | "))

    def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("command", "status") != "status":
            return {"error": f"unknown command {request.get('command')!r}"}
        now = time.time()
        visitors = []
        pending = [p.visitor for p in self.engine.pending.values()]
        for v in list(self.engine.visitors.values()) + pending:
            entry = v.describe(now)
            counters = self.dataplane.counters(v.key)
            if counters is not None and v.state == "accepted":
                entry["counters"] = counters
            if v.state == "accepted":
                entry["applied"] = self.dataplane.routes_status(v.key)
            visitors.append(entry)
        return {"role": "fa", "pid": os.getpid(), "config": self.cfg.path,
                "address": str(self.cfg.address),
                "care_of_addresses": [str(a) for a in self.cfg.care_of_addresses],
                "dataplane": self.dataplane.name,
                "dataplane_reason": self.backend_reason,
                "uptime": round(now - self.started, 1), "visitors": visitors,
                "counters": dict(self.engine.counters, internal_errors=self.internal_errors),
                "route_optimization": {
                    str(ha): "off: no FA-HA key for this home agent"
                    for ha in self.engine.unkeyed_has()},
                "binding_cache": [dict(c.describe(now), forwarded=self.dataplane.forwarded(c.key))
                                  for c in self.engine.cache.values()],
                "realms": self.dataplane.realms_status(),
                "site_routes": self.dataplane.site.describe()
                if isinstance(self.dataplane, FaDataplane) and self.dataplane.site else None,
                "tunnel_drops": self.dataplane.drops(),
                "flood_limit": self.flood_limit.counters() if self.flood_limit else None}


def main(config_path: str) -> int:
    return run_daemon("fa", config_path, load_fa, FaDaemon)
