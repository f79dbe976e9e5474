"""`mipro mn`: the mobile node daemon (foreign agent or co-located care-of address)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from ..config import MnConfig, load_mn
from ..core.actions import Log, Send, SendIcmp
from ..core.mn import (
    AtHome,
    LeaveForeignAgent,
    MnSettings,
    MobileNode,
    OwnAddressOut,
    StartDhcp,
    State,
    StopDhcp,
    TunnelDown,
    TunnelUp,
    UseForeignAgent,
)
from ..dataplane.fake import FakeMnDataplane
from ..dataplane.link.linklayer import IcmpLink
from ..dataplane.link.linkwatch import LinkWatch
from ..dataplane.mn.agent import MnDataplane
from .daemon import EngineDaemon, datagrams, run_daemon
from .logging import EventLog
from .started import Started
from .systemd import notify

DEREGISTER_WAIT = 3.0
BATCH = 256
IP_FREEBIND = 15  # linux/in.h; not exported by Python's socket module
IP_PKTINFO = 8  # linux/in.h; nor this


@dataclass(frozen=True)
class _Lease:
    """A DHCP event, queued behind the engine's actions (None: the lease is gone)."""

    address: IPv4Interface | None
    gateway: IPv4Address | None


def settings(cfg: MnConfig) -> MnSettings:
    return MnSettings(home_address=cfg.home_address, home_agent=cfg.home_agent, sa=cfg.sa,
                      nai=cfg.nai, lifetime=cfg.lifetime, replay=cfg.replay,
                      reverse_tunnel=cfg.reverse_tunnel, encapsulation=cfg.encapsulation,
                      vendor_id=cfg.vendor_id, mode=cfg.mode,
                      discovery_wait=cfg.discovery_wait,
                      solicit_on_attach=cfg.solicit_on_attach,
                      fa_peers=dict(cfg.fa_peers), udp_tunnel=cfg.udp_tunnel,
                      notify_previous_fa=cfg.notify_previous_fa,
                      forwarding_lifetime=cfg.forwarding_lifetime)


class MnDaemon(EngineDaemon[MobileNode]):
    LOAD = staticmethod(load_mn)
    LIVE = frozenset({
        "nai", "sa", "lifetime", "discovery_wait", "solicit_on_attach", "fa_peers",
        "notify_previous_fa", "udp_tunnel", "forwarding_lifetime", "runtime.log_level"})
    # what run() makes, in this order
    dataplane = Started[MnDataplane | FakeMnDataplane]()
    icmp = Started[IcmpLink]()
    linkwatch = Started[LinkWatch]()

    def __init__(self, cfg: MnConfig, log: EventLog) -> None:
        super().__init__(log)
        self.cfg = cfg
        self.engine = MobileNode(settings(cfg))
        self.sock: socket.socket | None = None  # registrations, and UDP tunnel data
        self.agent_on_link: IPv4Address | None = None  # the FA we use: sent to on the link
        self.keepalive_task: asyncio.Task[None] | None = None
        # the DHCP client's task and the event that stops it (one of each per client run)
        self.dhcp: tuple[asyncio.Task[None], asyncio.Event] | None = None
        self.coa: IPv4Interface | None = None
        self.gateway: IPv4Address | None = None
        self.lease_info: dict[str, Any] = {}
        self.started = time.time()

    # --- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        backend = await self.pick_backend(self.cfg.dataplane.backend)
        dp = self.cfg.dataplane
        self.dataplane = (FakeMnDataplane if backend == "fake" else MnDataplane)(
            backend=backend, interface=self.cfg.interface, tunnel_interface=dp.tunnel_interface,
            table=dp.table, rule_priority=dp.rule_priority, home_address=self.cfg.home_address,
            home_agent=self.cfg.home_agent, log=self.log, tunnel_ports=self.cfg.tunnel_ports)
        await self.dataplane.start(loop)
        await self.dataplane.nl.link_up(self.cfg.interface)
        worker = asyncio.create_task(self._worker())
        control = await self.serve_operations(self.cfg.runtime.control_socket)
        self.icmp = IcmpLink(self.cfg.interface, None, ())
        self.add_input(self.icmp.fileno(), self._on_icmp)
        self.linkwatch = LinkWatch(self.cfg.interface)
        self.add_input(self.linkwatch.fileno(), self._on_link_change)
        self.log("started", home=self.cfg.home_address, ha=self.cfg.home_agent,
                 interface=self.cfg.interface, mode=self.cfg.mode, pid=os.getpid())
        notify("READY=1\nSTATUS=looking for an agent or a care-of address")
        try:
            if self.cfg.care_of == "static":
                await self._static_care_of()
            else:
                self.dispatch(self.call("link_up", self.engine.link_up, time.time()))
                self._reschedule()
            await self.stopping.wait()
            await self._deregister()
        finally:
            notify("STOPPING=1")
            for src in (self.icmp, self.linkwatch):
                self.remove_input(src.fileno())
                src.close()
            await self._stop_dhcp()
            await self.work.join()
            worker.cancel()
            await control.stop()
            await self.dataplane.stop()
            self._close_socket()
            self.stop_log_flush()
            self.log("stopped")

    async def _static_care_of(self) -> None:
        coa = self.cfg.static_address
        nl = self.dataplane.nl
        if (coa.ip, coa.network.prefixlen) not in await nl.addresses(self.cfg.interface):
            await nl.addr_replace(self.cfg.interface, coa.ip, coa.network.prefixlen)
        await self.on_address(coa, self.cfg.gateway)

    def prepare_reload(self, cfg: MnConfig) -> Callable[[], None]:
        """The engine reads its settings when it uses them: the next request has them."""
        new = settings(cfg)

        def commit() -> None:
            self.engine.s = new
        return commit

    # --- DHCP (co-located care-of address) ---------------------------------------------

    async def _start_dhcp(self) -> None:
        if self.dhcp is None or self.dhcp[0].done():
            stop = asyncio.Event()
            self.dhcp = (asyncio.create_task(self._dhcp(stop)), stop)

    async def _stop_dhcp(self) -> None:
        if self.dhcp is not None and not self.dhcp[0].done():
            task, stop = self.dhcp
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
        self.dhcp = None

    async def _dhcp(self, stop: asyncio.Event) -> None:
        from pyroute2.dhcp.client import AsyncDHCPClient, ClientConfig
        from pyroute2.dhcp.hooks import Trigger, configure_ip, hook, remove_ip

        from .dhcp import MemoryLease

        @hook(Trigger.BOUND, Trigger.RENEWED, Trigger.REBOUND)
        async def lease_obtained(lease):
            gw = None
            with contextlib.suppress(Exception):
                gw = IPv4Address(lease.default_gateway)
            self.lease_info = {"server": str(getattr(lease, "server_id", "")),
                               "lease_time": getattr(lease, "lease_time", None)}
            # hooks have a short timeout: hand the event to the worker, in order
            self.dispatch([_Lease(IPv4Interface(f"{lease.ip}/{lease.prefixlen}"), gw)])

        @hook(Trigger.UNBOUND, Trigger.EXPIRED)
        async def lease_lost(lease):
            if not stop.is_set():
                self.dispatch([_Lease(None, None)])

        config = ClientConfig(interface=self.cfg.interface, lease_type=MemoryLease,
                              hooks=[configure_ip, lease_obtained, lease_lost, remove_ip],
                              handle_signals=False, write_pidfile=False, release=True)
        self.log("dhcp-start", interface=self.cfg.interface)
        async with AsyncDHCPClient(config) as client:
            await client.bootstrap()
            await stop.wait()
        self.coa = None
        self.log("dhcp-stop")

    # --- events -----------------------------------------------------------------------

    async def on_address(self, coa: IPv4Interface, gateway: IPv4Address | None) -> None:
        now = time.time()
        if coa == self.coa:
            return
        self.coa, self.gateway = coa, gateway
        if coa.ip in self.cfg.home_network:
            self.log("at-home", address=coa.ip, how="dhcp")
            if self.engine.using != "home":
                self.dispatch(self.call("returned_home", self.engine.returned_home, now))
        else:
            self.log("care-of-address", coa=coa, gateway=gateway or "-")
            self.agent_on_link = None
            await self._open_socket(coa.ip)
            await self.dataplane.attach(coa, gateway)
            self.dispatch(self.call("attach", self.engine.attach, coa.ip, now))
        self._reschedule()

    async def on_address_lost(self) -> None:
        self.coa = None
        await self._execute(self.call("detach", self.engine.detach, time.time()))
        await self.dataplane.detach()
        self._reschedule()

    def _on_icmp(self) -> None:
        now = time.time()
        for _ in range(BATCH):  # bounded: advertisements cannot hold the loop
            got = self.icmp.receive()
            if got is None:
                break
            src, msg = got
            if msg[0] == 9:
                self.dispatch(self.call("advertisement", self.engine.advertisement, msg, src,
                                        now))
        self._reschedule()

    def _on_link_change(self) -> None:
        for up in self.linkwatch.changes():
            self.log("link", state="up" if up else "down")
            if up:
                self.dispatch(self.call("link_up", self.engine.link_up, time.time()))
        self._reschedule()

    async def _deregister(self) -> None:
        actions = self.call("shutdown", self.engine.shutdown, time.time())
        if not actions:
            return
        self.dispatch(actions)
        self._reschedule()
        deadline = time.monotonic() + DEREGISTER_WAIT
        while self.engine.state is State.DEREGISTERING and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.engine.state is State.DEREGISTERING:
            self.log("deregistration-unanswered", "warning")

    # --- I/O --------------------------------------------------------------------------

    def _bound_to(self, local: IPv4Address) -> bool:
        return self.sock is not None and self.sock.getsockname()[0] == str(local)

    async def _open_socket(self, local: IPv4Address) -> None:
        if self._bound_to(local):
            return  # kept: a request sent from it may still be answered
        self._close_socket()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)  # the address may be on its way
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        sock.bind((str(local), 0))
        sock.setblocking(False)
        self.sock = sock
        self.add_input(sock.fileno(), self._on_readable)

    def _close_socket(self) -> None:
        if self.sock is not None:
            self.remove_input(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _on_readable(self) -> None:
        """Drain a batch per wakeup: with a UDP tunnel this socket carries the traffic."""
        if self.sock is None:  # closed since (it is read only while open)
            return
        actions: list[Any] = []
        for data, addr in datagrams(self.sock, BATCH, self.log):
            if data[:1] == b"\x04":  # RFC 3519 tunnel data from the HA
                self.dataplane.from_udp(data, IPv4Address(addr[0]), addr[1])
                continue
            actions += self.call("receive", self.engine.receive, data, IPv4Address(addr[0]),
                                 addr[1], time.time())
        if actions:
            self.dispatch(actions)
            self._reschedule()

    async def _execute(self, actions: list[Any]) -> None:
        dp = self.dataplane
        moving: UseForeignAgent | None = None  # its routes change once the request left
        for a in actions:
            if moving is not None and not isinstance(a, Log) and \
                    not (isinstance(a, Send) and a.dst == moving.agent):
                await self._use_agent(moving)
                moving = None
            if isinstance(a, _Lease):
                if a.address is None:
                    await self.on_address_lost()
                else:
                    await self.on_address(a.address, a.gateway)
            elif isinstance(a, Send):
                self._udp_send(a.data, (str(a.dst), a.port), a.dst == self.agent_on_link)
                if moving is not None:
                    await self._use_agent(moving)
                    moving = None
            elif isinstance(a, SendIcmp):
                if (why := self.icmp.send(a.dst, a.data)) is not None:
                    self.log("icmp-not-sent", "debug", reason=why)
            elif isinstance(a, UseForeignAgent):
                self.agent_on_link = a.agent
                if dp.between_agents() and self._bound_to(self.cfg.home_address):
                    moving = a  # the request to it leaves first, on the link
                else:
                    await self._use_agent(a)
            elif isinstance(a, LeaveForeignAgent):
                self.agent_on_link = None
                await dp.leave_agent()
            elif isinstance(a, OwnAddressOut):
                if a.on != dp.own_out:
                    self.log("home-address-in-use" if a.on else "home-address-free",
                             temporary=a.temporary_address or "-")
                await dp.own_address_out(a.on)
            elif isinstance(a, StartDhcp):
                self.agent_on_link = None
                await dp.away()
                await self._start_dhcp()
            elif isinstance(a, StopDhcp):
                await self._stop_dhcp()
            elif isinstance(a, AtHome):
                self.agent_on_link = None
                await dp.at_home(self.cfg.home_network,
                                 self.cfg.home_gateway or self.cfg.home_agent)
                await self._open_socket(self.cfg.home_address)
                with contextlib.suppress(OSError):
                    await dp.announce_home()
                notify("STATUS=at home")
            elif isinstance(a, TunnelUp):
                await dp.tunnel_up(a.encapsulation, self.cfg.reverse_tunnel, a.routes,
                                   a.filters)
                self._keepalives(a.udp_keepalive)
                notify(f"STATUS=registered via {a.care_of_address}")
            elif isinstance(a, TunnelDown):
                self._keepalives(0)
                await dp.tunnel_down()
            elif isinstance(a, Log):
                self.log.emit(a)
        if moving is not None:
            await self._use_agent(moving)

    async def _use_agent(self, a: UseForeignAgent) -> None:
        await self.dataplane.use_agent(a.agent)
        await self._open_socket(self.cfg.home_address)
        notify(f"STATUS=using foreign agent {a.agent}")

    # --- UDP tunnel keepalives (RFC 3519) ------------------------------------------------

    def _keepalives(self, interval: int) -> None:
        """Keep the NAPT's mapping with an echo through the tunnel every ``interval``
        seconds; after three silent intervals re-register (the mapping is gone)."""
        if self.keepalive_task is not None:
            self.keepalive_task.cancel()
            self.keepalive_task = None
        if interval > 0:
            self.keepalive_task = asyncio.get_running_loop().create_task(
                self._keepalive_loop(interval))

    async def _keepalive_loop(self, interval: int) -> None:
        seq = 0
        relay = self.dataplane.relay
        if relay is None:  # a keepalive interval comes with a UDP tunnel, which is the relay's
            raise RuntimeError("UDP tunnel keepalives without the userspace relay")
        relay.udp_send = self._udp_send
        while True:
            seq += 1
            self.dataplane.keepalive(seq)
            await asyncio.sleep(interval)
            if self.dataplane.udp_silence() > 3 * interval:
                self.dispatch(self.call("udp_tunnel_silent", self.engine.udp_tunnel_silent,
                                        time.time()))
                self._reschedule()

    def _udp_send(self, data: bytes, addr: tuple[str, int], on_link: bool = False) -> None:
        """``on_link``: to the foreign agent, a neighbour on our link (it advertised
        there), out of our interface whatever the routes say (MSG_DONTROUTE passes over
        gateway routes, the interface is in IP_PKTINFO): on a move the request to the
        new agent leaves before the routes to it are changed."""
        if self.sock is None:
            return
        try:
            if on_link:
                info = struct.pack("=I4s4s", socket.if_nametoindex(self.cfg.interface),
                                   bytes(4), bytes(4))
                self.sock.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, info)],
                                  socket.MSG_DONTROUTE, addr)
            else:
                self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            pass  # a full buffer drops, as any router would
        except OSError as exc:
            self.log("send-failed", "debug", dst=f"{addr[0]}:{addr[1]}", reason=exc)

    def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("command", "status") != "status":
            return {"error": f"unknown command {request.get('command')!r}"}
        now = time.time()
        e = self.engine
        binding = None
        if e.state is State.REGISTERED and e.expires_at is not None:
            binding = {"home_address": str(self.cfg.home_address),
                       "care_of_address": str(e.care_of_address),
                       "home_agent": str(self.cfg.home_agent),
                       "lifetime_left": max(0, int(e.expires_at - now + 0.5)),
                       "lifetime": e.granted_lifetime,
                       "encapsulation": "udp" if e.udp_keepalive else self.cfg.encapsulation,
                       "udp_keepalive": e.udp_keepalive,
                       "reverse_tunnel": self.cfg.reverse_tunnel, "via": e.using}
            counters = self.dataplane.counters()
            if counters is not None:
                binding["counters"] = counters
        agent = None
        dp = type(self).dataplane.peek(self)  # status may be asked before run() (metrics)
        if e.agent is not None:
            agent = {"address": str(e.agent.address),
                     "care_of_address": str(e.agent.care_of_address),
                     "advertisement_left": round(max(0.0, e.agent.expires - now), 1)}
        return {"role": "mn", "pid": os.getpid(), "config": self.cfg.path,
                "state": e.state.value, "mode": self.cfg.mode, "using": e.using,
                "requested_lifetime": e.s.lifetime,
                "agent": agent, "home_address": str(self.cfg.home_address),
                "care_of_address": str(e.care_of_address) if e.care_of_address else None,
                "colocated_address": str(self.coa) if self.coa else None,
                "dataplane": dp.name if dp is not None else "none",
                "dataplane_reason": self.backend_reason, "last_code": e.last_code,
                "clock_offset": round(e.clock_offset, 3), "dhcp": self.lease_info,
                "uptime": round(now - self.started, 1),
                "home_address_in_use": dp is not None and bool(dp.own_out),
                "bindings": [binding] if binding else []}


def main(config_path: str) -> int:
    return run_daemon("mn", config_path, load_mn, MnDaemon)
