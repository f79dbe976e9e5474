"""The home agent's kernel state: one route per binding in mipro's table, proxy ARP,
and the tunnel towards each care-of address (kernel links or the userspace relay)."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ..core.bindings import Binding
from .arp import send_gratuitous_arp
from .netlink import Netlink, set_sysctl
from .relay import MTU, UserspaceTunnel

LINK_PREFIX = "mip-"


def link_name(coa: IPv4Address, encap: str) -> str:
    return f"{LINK_PREFIX}{'g' if encap == 'gre' else ''}{coa.packed.hex()}"


class HaDataplane:
    def __init__(self, *, backend: str, address: IPv4Address, home_interface: str,
                 home_network: IPv4Network, table: int, rule_priority: int,
                 tunnel_interface: str, log: Any) -> None:
        self.name = backend
        self.address = address
        self.home_if = home_interface
        self.home_net = home_network
        self.table = table
        self.prio = rule_priority
        self.tun_if = tunnel_interface
        self.log = log
        self.nl = Netlink()
        self.bindings: dict[IPv4Address, Binding] = {}
        self.links: dict[str, int] = {}  # kernel backend: link name -> users
        self.relay: UserspaceTunnel | None = None
        self.home_mac = b""

    # --- lifecycle ------------------------------------------------------------------

    async def start(self, loop: asyncio.AbstractEventLoop | None) -> None:
        old = set_sysctl("net.ipv4.ip_forward", "1")  # an HA forwards; proxy ARP needs it
        if old is not None:
            self.log("sysctl", name="net.ipv4.ip_forward", value=1, was=old)
        # answer ARP for away mobile nodes at once, not after a random 0-0.8 s delay
        set_sysctl(f"net.ipv4.neigh.{self.home_if}.proxy_delay", "0")
        self.home_mac = await self.nl.mac(self.home_if)
        await self.cleanup_leftovers()
        if self.name == "userspace":
            self.relay = UserspaceTunnel(self.tun_if, self.address, self._peer_of, self._accept)
            self.relay.open()
            await self.nl.link_up(self.tun_if, MTU)
            set_sysctl(f"net.ipv4.conf.{self.tun_if}.rp_filter", "0")
            if loop is not None:
                self.relay.start_reading(loop)
        await self.nl.rule_ensure(self.table, self.prio)

    async def cleanup_leftovers(self) -> None:
        """Remove whatever an earlier run left: our table, rule, links and proxies."""
        routes = await self.nl.flush_table(self.table)
        while await self.nl.rule_del(self.table, self.prio):
            pass
        links = [n for n in await self.nl.links_with_prefix(LINK_PREFIX) if await self.nl.link_del(n)]
        proxies = [p for p in await self.nl.proxies(self.home_if) if p in self.home_net]
        for p in proxies:
            await self.nl.proxy_del(self.home_if, p)
        if routes or links or proxies:
            self.log("reconciled-leftovers", routes=routes, links=len(links),
                     proxies=len(proxies))

    async def stop(self) -> None:
        """Remove exactly what we added."""
        for b in list(self.bindings.values()):
            await self.remove(b)
        await self.nl.rule_del(self.table, self.prio)
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        self.nl.close()

    # --- bindings -------------------------------------------------------------------

    async def install(self, b: Binding) -> None:
        old = self.bindings.get(b.home_address)
        if old is not None and (old.care_of_address, old.encapsulation) != \
                (b.care_of_address, b.encapsulation):
            await self._release_link(old)
        self.bindings[b.home_address] = b
        dev = self.tun_if
        if self.name == "kernel":
            dev = await self._acquire_link(b, renew=old is not None and
                                     old.care_of_address == b.care_of_address and
                                     old.encapsulation == b.encapsulation)
        await self.nl.route_replace(IPv4Network(b.home_address), self.table, oif=dev)
        if b.home_address in self.home_net:
            await self.nl.proxy_add(self.home_if, b.home_address)
            if old is None:
                send_gratuitous_arp(self.home_if, self.home_mac, b.home_address)

    async def remove(self, b: Binding) -> None:
        current = self.bindings.pop(b.home_address, None)
        await self.nl.route_del(IPv4Network(b.home_address), self.table)
        if b.home_address in self.home_net:
            await self.nl.proxy_del(self.home_if, b.home_address)
        if current is not None and self.name == "kernel":
            await self._release_link(current)

    async def _acquire_link(self, b: Binding, renew: bool) -> str:
        name = link_name(b.care_of_address, b.encapsulation)
        if name not in self.links:
            kind = "gre" if b.encapsulation == "gre" else "ipip"
            await self.nl.ipr.link("add", ifname=name, kind=kind, **{
                f"{kind}_local": str(self.address), f"{kind}_remote": str(b.care_of_address),
                f"{kind}_ttl": 64})
            await self.nl.link_up(name)
            set_sysctl(f"net.ipv4.conf.{name}.rp_filter", "0")
            self.links[name] = 0
        if not renew:
            self.links[name] += 1
        return name

    async def _release_link(self, b: Binding) -> None:
        name = link_name(b.care_of_address, b.encapsulation)
        if name in self.links:
            self.links[name] -= 1
            if self.links[name] <= 0:
                del self.links[name]
                await self.nl.link_del(name)

    # --- userspace relay callbacks -------------------------------------------------

    def _peer_of(self, src: IPv4Address, dst: IPv4Address):
        b = self.bindings.get(dst)
        return None if b is None else (b.care_of_address, b.encapsulation, dst)

    def _accept(self, outer_src: IPv4Address, inner_src: IPv4Address, inner_dst: IPv4Address):
        """Reverse tunnel: only from the registered care-of address of that home address."""
        b = self.bindings.get(inner_src)
        if b is None or b.care_of_address != outer_src:
            return None
        return inner_src

    def counters(self, home: IPv4Address) -> dict[str, int] | None:
        if self.relay is None:
            return None
        c = self.relay.stats.per_key.get(home)
        return c.as_dict() if c else {"packets_out": 0, "bytes_out": 0, "packets_in": 0,
                                      "bytes_in": 0}

    def drops(self) -> dict[str, int]:
        if self.relay is None:
            return {}
        s = self.relay.stats
        return {"no_binding": s.dropped_no_peer, "malformed": s.dropped_bad,
                "unauthorised": s.dropped_unauthorised}
