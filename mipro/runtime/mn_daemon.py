"""`mipro mn`: the mobile node daemon (co-located care-of address)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from pyroute2 import NetlinkError

from ..config import ConfigError, MnConfig, load_mn
from ..core.actions import Log, Send
from ..core.mn import MnSettings, MobileNode, State, TunnelDown, TunnelUp
from ..dataplane.detect import choose_backend
from ..dataplane.mn import MnDataplane
from ..dataplane.netlink import Netlink
from .control import ControlServer
from .logging import EventLog
from .systemd import notify

DEREGISTER_WAIT = 3.0


def settings(cfg: MnConfig) -> MnSettings:
    return MnSettings(home_address=cfg.home_address, home_agent=cfg.home_agent, sa=cfg.sa,
                      nai=cfg.nai, lifetime=cfg.lifetime, replay=cfg.replay,
                      reverse_tunnel=cfg.reverse_tunnel, encapsulation=cfg.encapsulation,
                      vendor_id=cfg.vendor_id)


class MnDaemon(asyncio.DatagramProtocol):
    def __init__(self, cfg: MnConfig, log: EventLog) -> None:
        self.cfg = cfg
        self.log = log
        self.engine = MobileNode(settings(cfg))
        self.dataplane: MnDataplane | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.stopping = asyncio.Event()
        self.coa: IPv4Interface | None = None
        self.gateway: IPv4Address | None = None
        self.lease_info: dict[str, Any] = {}
        self.added_static = False
        self.started = time.time()
        self.backend_reason = ""
        self.work: asyncio.Queue[list[Any]] = asyncio.Queue()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        nl = Netlink()
        try:
            backend, self.backend_reason = await choose_backend(nl, self.cfg.dataplane.backend)
        finally:
            nl.close()
        self.log("dataplane", backend=backend, reason=self.backend_reason)
        dp = self.cfg.dataplane
        self.dataplane = MnDataplane(
            backend=backend, interface=self.cfg.interface, tunnel_interface=dp.tunnel_interface,
            table=dp.table, rule_priority=dp.rule_priority, home_address=self.cfg.home_address,
            home_agent=self.cfg.home_agent, log=self.log)
        await self.dataplane.start(loop)
        worker = asyncio.create_task(self._worker())
        control = ControlServer(self.cfg.runtime.control_socket, self.handle_control)
        await control.start()
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        self.log("started", home=self.cfg.home_address, ha=self.cfg.home_agent,
                 interface=self.cfg.interface, care_of=self.cfg.care_of, pid=os.getpid())
        notify("READY=1\nSTATUS=looking for a care-of address")
        try:
            if self.cfg.care_of == "dhcp":
                await self._run_with_dhcp()
            else:
                await self._run_static()
        finally:
            notify("STOPPING=1")
            await control.stop()
            await self.work.join()
            worker.cancel()
            await self.dataplane.stop()
            if self.transport is not None:
                self.transport.close()
            self.log("stopped")

    async def _run_static(self) -> None:
        coa = self.cfg.static_address
        assert coa is not None
        nl = self.dataplane.nl
        if (coa.ip, coa.network.prefixlen) not in await nl.addresses(self.cfg.interface):
            await nl.addr_replace(self.cfg.interface, coa.ip, coa.network.prefixlen)
            self.added_static = True
        await nl.link_up(self.cfg.interface)
        await self.on_address(coa, self.cfg.gateway)
        await self.stopping.wait()
        await self._deregister()
        await self.work.join()
        if self.added_static:
            await nl.addr_del(self.cfg.interface, coa.ip, coa.network.prefixlen)

    async def _run_with_dhcp(self) -> None:
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
            await self.on_address(IPv4Interface(f"{lease.ip}/{lease.prefixlen}"), gw)

        @hook(Trigger.UNBOUND, Trigger.EXPIRED)
        async def lease_lost(lease):
            if not self.stopping.is_set():
                await self.on_address_lost()

        await self.dataplane.nl.link_up(self.cfg.interface)
        config = ClientConfig(interface=self.cfg.interface, lease_type=MemoryLease,
                              hooks=[configure_ip, lease_obtained, lease_lost, remove_ip],
                              handle_signals=False, write_pidfile=False, release=True)
        async with AsyncDHCPClient(config) as client:
            await client.bootstrap()
            await self.stopping.wait()
            await self._deregister()
            await self.work.join()
        # leaving the context sent DHCPRELEASE and removed the address

    # --- events -----------------------------------------------------------------------

    async def on_address(self, coa: IPv4Interface, gateway: IPv4Address | None) -> None:
        now = time.time()
        if coa == self.coa:
            return
        self.coa, self.gateway = coa, gateway
        await self._open_socket(coa.ip)
        if coa.ip in self.cfg.home_network:
            self.log("at-home", address=coa.ip)
            await self.dataplane.detach()
            self.dispatch(self.engine.returned_home(now))
            with contextlib.suppress(OSError):
                await self.dataplane.announce_home()
        else:
            self.log("care-of-address", coa=coa, gateway=gateway or "-")
            await self.dataplane.attach(coa, gateway)
            self.dispatch(self.engine.attach(coa.ip, now))
        self._reschedule()

    async def on_address_lost(self) -> None:
        self.coa = None
        self.dispatch(self.engine.detach(time.time()))
        await self.work.join()
        await self.dataplane.detach()
        self._reschedule()

    async def _deregister(self) -> None:
        actions = self.engine.shutdown(time.time())
        if not actions:
            return
        self.dispatch(actions)
        self._reschedule()
        deadline = time.monotonic() + DEREGISTER_WAIT
        while self.engine.state is State.DEREGISTERING and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.engine.state is State.DEREGISTERING:
            self.log("deregistration-unanswered", "warning")

    def reload(self) -> None:
        try:
            cfg = load_mn(self.cfg.path)
        except ConfigError as exc:
            for line in exc.errors:
                self.log("reload-failed", "error", problem=line)
            self.log("reload-kept-old-config", "warning")
            return
        if cfg != self.cfg:
            self.log("reload-needs-restart", "warning",
                     reason="mobile node settings change on restart")
        self.log.set_level(cfg.runtime.log_level)
        self.log("reloaded", config=cfg.path)

    # --- I/O --------------------------------------------------------------------------

    async def _open_socket(self, local: IPv4Address) -> None:
        if self.transport is not None:
            self.transport.close()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((str(local), 0))
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.dispatch(self.engine.receive(data, IPv4Address(addr[0]), addr[1], time.time()))
        self._reschedule()

    def error_received(self, exc: Exception) -> None:
        self.log("socket-error", "warning", reason=exc)

    def dispatch(self, actions: list[Any]) -> None:
        """Queue an engine's actions; one worker runs them in order."""
        if actions:
            self.work.put_nowait(actions)

    async def _worker(self) -> None:
        while True:
            actions = await self.work.get()
            try:
                await self._execute(actions)
            finally:
                self.work.task_done()

    async def _execute(self, actions: list[Any]) -> None:
        for a in actions:
            if isinstance(a, Send):
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.sendto(a.data, (str(a.dst), a.port))
            elif isinstance(a, TunnelUp):
                try:
                    await self.dataplane.tunnel_up(a.encapsulation, self.cfg.reverse_tunnel)
                    notify(f"STATUS=registered via {a.care_of_address}")
                except (OSError, NetlinkError) as exc:
                    self.log("dataplane-error", "error", op="tunnel_up", reason=exc)
            elif isinstance(a, TunnelDown):
                await self.dataplane.tunnel_down()
            elif isinstance(a, Log):
                self.log.emit(a)

    def _reschedule(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        when = self.engine.next_timer()
        if when is not None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(max(0.0, when - time.time()), self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self.dispatch(self.engine.handle_timer(time.time()))
        self._reschedule()

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
                       "encapsulation": self.cfg.encapsulation,
                       "reverse_tunnel": self.cfg.reverse_tunnel}
            counters = self.dataplane.counters() if self.dataplane else None
            if counters is not None:
                binding["counters"] = counters
        return {"role": "mn", "pid": os.getpid(), "config": self.cfg.path,
                "state": e.state.value, "home_address": str(self.cfg.home_address),
                "care_of_address": str(self.coa) if self.coa else None,
                "gateway": str(self.gateway) if self.gateway else None,
                "dataplane": self.dataplane.name if self.dataplane else None,
                "dataplane_reason": self.backend_reason, "last_code": e.last_code,
                "clock_offset": round(e.clock_offset, 3), "dhcp": self.lease_info,
                "uptime": round(now - self.started, 1),
                "bindings": [binding] if binding else []}


def main(config_path: str) -> int:
    try:
        cfg = load_mn(config_path)
    except ConfigError as exc:
        for line in exc.errors:
            print(line)
        return 1
    log = EventLog("mn", cfg.runtime.log_level)
    daemon = MnDaemon(cfg, log)
    try:
        asyncio.run(daemon.run())
    except (OSError, RuntimeError, LookupError) as exc:
        log("fatal", "error", reason=exc)
        return 1
    return 0
