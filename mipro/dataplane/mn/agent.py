"""The mobile node's kernel state with a co-located care-of address.

Two interfaces, as in the seed's Fig. 9a: the physical one carries the
care-of address; the tunnel interface carries the home address, which
applications keep using.  mipro's table (consulted by one rule) sends the
HA's address out of the physical interface and everything else through the
tunnel; the visited subnet stays directly reachable.
"""

from __future__ import annotations

import asyncio
import time
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from ...wire.vendor import FilterRule, StaticRoute, Verdict
from ..kernel.filters import fail_closed
from ..kernel.netlink import Netlink, set_sysctl
from ..kernel.ownerchains import MobileFirewall
from ..link.arp import send_gratuitous_arp
from ..relay.encap import icmp_echo
from ..relay.relay import MTU, UDP_MTU, UDP_TUNNEL_HEADER, UserspaceTunnel
from .portselect import MARK, PortSelection

DEFAULT = IPv4Network("0.0.0.0/0")
REVERSE_METRIC = 1000


LOCAL_TABLE = 255
LOCAL_MOVED = 100  # the local table's rule while our address is a visited host's too
OWN_OUT = 99  # ... and ours before it, for what we send to that address


class MnDataplane:
    def __init__(self, *, backend: str, interface: str, tunnel_interface: str, table: int,
                 rule_priority: int, home_address: IPv4Address, home_agent: IPv4Address,
                 log: Any, tunnel_ports: tuple[tuple[str, int, int], ...] = ()) -> None:
        self.name = backend
        self.iface = interface
        self.tun_if = tunnel_interface
        self.table = table
        self.prio = rule_priority
        self.home = home_address
        self.ha = home_agent
        self.log = log
        self.nl = Netlink()
        self.relay: UserspaceTunnel | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.coa: IPv4Interface | None = None
        self.gateway: IPv4Address | None = None
        self.encap = "ipip"
        self.udp_since = 0.0  # when the UDP tunnel came up (silence counts from there)
        self.up = False
        self.home_on_link = 0  # prefix length of the home address on the physical link
        self.fa_agent: IPv4Address | None = None  # use_agent's: our table is only its routes
        self.own_out = False  # our home address is a visited-network host's too (FA said)
        self.profile_routes: set[tuple[IPv4Network, int]] = set()
        self.default_metric: int | None = None
        self.firewall: MobileFirewall | None = None
        self.filters: tuple[FilterRule, ...] | None = None  # what the firewall holds now
        self.applied: tuple | None = None  # tunnel_up's arguments while the tunnel is up
        self.kernel_link: tuple[str, IPv4Address] | None = None  # (kind, local) of ours
        self.ports = PortSelection(self.nl, home_address, tunnel_interface, table + 1,
                                   rule_priority - 1, tunnel_ports)

    async def start(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        flushed = await self.nl.flush_table(self.table)
        while await self.nl.rule_del(self.table, self.prio):
            pass
        if await self.nl.maybe_index(self.tun_if) is not None:
            await self.nl.link_del(self.tun_if)
            flushed += 1
        for address, plen in await self.nl.addresses(self.iface):
            if address == self.home:  # left on the link by an earlier run (FA mode, home)
                await self.nl.addr_del(self.iface, address, plen)
                flushed += 1
        flushed += MobileFirewall(None, top="MIPRO-MN", hooks=("INPUT", "OUTPUT")).start_clean()
        if await self.nl.rule_del(LOCAL_TABLE, LOCAL_MOVED):  # own_address_out() left on
            await self.nl.rule_ensure(LOCAL_TABLE, 0)
            while await self.nl.rule_del(self.table, OWN_OUT):
                pass
            flushed += 1
        flushed += PortSelection.remove_rules()
        while await self.nl.rule_del(self.table + 1, self.prio - 1, fwmark=MARK):
            flushed += 1
        flushed += await self.nl.flush_table(self.table + 1)
        if flushed:
            self.log("reconciled-leftovers", items=flushed)
        await self.nl.rule_ensure(self.table, self.prio)

    async def stop(self) -> None:
        await self.tunnel_down()  # also removes the MN's firewall chains
        await self.leave_agent()
        await self.nl.flush_table(self.table)
        await self.nl.rule_del(self.table, self.prio)
        self.nl.close()

    async def attach(self, coa: IPv4Interface, gateway: IPv4Address | None) -> None:
        """Care-of path: the HA is reached from the care-of address on the physical link."""
        self.fa_agent = None
        self.coa, self.gateway = coa, gateway
        await self.nl.route_replace(IPv4Network(coa.network), self.table, oif=self.iface, src=coa.ip)
        if self.ha not in coa.network:
            await self.nl.route_replace(IPv4Network(self.ha), self.table, oif=self.iface,
                                  gateway=gateway, src=coa.ip)

    async def detach(self) -> None:
        self.fa_agent = None
        await self.tunnel_down()
        await self.nl.flush_table(self.table)
        self.coa = None

    async def tunnel_up(self, encap: str, reverse_tunnel: bool,
                        routes: tuple[StaticRoute, ...] = (),
                        filters: tuple[FilterRule, ...] = ()) -> None:
        assert self.coa is not None
        self.fa_agent = None
        if encap == "udp" and (self.encap != "udp" or not self.up):
            self.udp_since = time.monotonic()
        wanted = (encap, self.coa, self.gateway, reverse_tunnel, tuple(routes), tuple(filters))
        if self.up and wanted == self.applied:
            return  # a renewal that changes nothing: not a route may vanish for a moment
        self.encap = encap
        if self.name == "userspace" or encap == "udp":  # the kernel has no RFC 3519 link
            raw = self.name == "userspace"
            if self.relay is not None and self.relay.raw != raw:
                self.relay.close()
                self.relay = None
            if self.relay is None:
                if not raw:  # a kernel ipip link of an earlier registration holds the name
                    await self.nl.link_del(self.tun_if)
                    self.kernel_link = None
                self.relay = UserspaceTunnel(self.tun_if, self.coa.ip, self._peer_of,
                                             self._accept, raw=raw)
                self.relay.open()
                if self.loop is not None:
                    self.relay.start_reading(self.loop)
            elif self.relay.local != self.coa.ip:
                self.relay.rebind(self.coa.ip)
        else:
            kind = "gre" if encap == "gre" else "ipip"
            # the same link is kept (and the routes through it): recreated only for another
            # encapsulation or care-of address
            if self.kernel_link != (kind, self.coa.ip) or \
                    await self.nl.maybe_index(self.tun_if) is None:
                await self.nl.link_del(self.tun_if)
                await self.nl.ipr.link("add", ifname=self.tun_if, kind=kind, **{
                    f"{kind}_local": str(self.coa.ip), f"{kind}_remote": str(self.ha)})
                self.kernel_link = (kind, self.coa.ip)
        await self.nl.link_up(self.tun_if, UDP_MTU if encap == "udp" else MTU)
        set_sysctl(f"net.ipv4.conf.{self.tun_if}.rp_filter", "0")
        await self.nl.addr_replace(self.tun_if, self.home, 32)
        # with a profile, its routes decide and the plain default becomes the last resort
        metric = REVERSE_METRIC if routes else None
        if reverse_tunnel:
            await self.nl.route_replace(DEFAULT, self.table, oif=self.tun_if, src=self.home,
                                        metric=metric)
        else:  # triangle routing: out of the physical link with the home address
            await self.nl.route_replace(DEFAULT, self.table, oif=self.iface,
                                        gateway=self.gateway, src=self.home, metric=metric)
        self.default_metric = metric
        await self._apply_profile(routes, filters)
        await self.ports.apply()
        self.up = True
        self.applied = wanted

    async def _apply_profile(self, routes: tuple[StaticRoute, ...],
                             filters: tuple[FilterRule, ...]) -> None:
        """Fig. 11: tunnel routes from the home address on the tunnel interface, local
        routes from the care-of address on the physical one, costs as metrics; Fig. 10:
        the filters on what the MN itself sends and receives."""
        assert self.coa is not None
        wanted = set()
        for r in routes:
            if r.via_tunnel:
                await self.nl.route_replace(r.destination, self.table, oif=self.tun_if,
                                            src=self.home, metric=r.cost)
            else:
                on_link = r.destination.subnet_of(self.coa.network) if \
                    r.destination.prefixlen >= self.coa.network.prefixlen else False
                gateway = r.router if int(r.router) else (None if on_link else self.gateway)
                await self.nl.route_replace(r.destination, self.table, oif=self.iface,
                                            gateway=gateway, src=self.coa.ip, metric=r.cost)
            wanted.add((r.destination, r.cost))
        for dst, cost in self.profile_routes - wanted:
            await self.nl.route_del(dst, self.table, metric=cost)
        self.profile_routes = wanted
        # Fig. 11: a route to our own home address on the visited network (overlapping
        # realms: a correspondent there has it too) costs less than our own loopback
        await self.own_address_out(self.home in self.coa.network or any(
            not r.via_tunnel and r.destination.prefixlen and self.home in r.destination
            for r in routes))
        if filters or self.firewall is not None:
            if self.firewall is None:
                self.firewall = MobileFirewall(None, top="MIPRO-MN", hooks=("INPUT", "OUTPUT"))
                self.firewall.start()
            # a rule we cannot build exactly: nothing to or from the home address passes
            # (registrations and tunnel packets use the care-of address, so a corrected
            # profile can still arrive)
            filters, why = fail_closed(filters, (FilterRule(
                source=IPv4Network(self.home), verdict=Verdict.DENY, both_directions=True),))
            if why is not None:
                self.log("filters-refused", "error", home=self.home, reason=why,
                         applied="deny-all")
            if filters != self.filters:  # a rebuilt chain would lose its counters
                self.firewall.apply(self.home, filters)
                self.filters = filters

    async def tunnel_down(self) -> None:
        await self.own_address_out(False)
        await self.ports.remove()
        await self.nl.route_del(DEFAULT, self.table, metric=self.default_metric)
        for dst, cost in self.profile_routes:
            await self.nl.route_del(dst, self.table, metric=cost)
        self.profile_routes = set()
        if self.firewall is not None:
            self.firewall.stop()
            self.firewall = None
            self.filters = None
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        if await self.nl.maybe_index(self.tun_if) is not None:
            await self.nl.addr_del(self.tun_if, self.home, 32)
            if self.name == "kernel" and self.encap != "udp":
                await self.nl.link_del(self.tun_if)
        self.kernel_link = None
        self.up = False
        self.applied = None

    # --- foreign agent mode and home ---------------------------------------------------

    def between_agents(self) -> bool:
        """From one foreign agent to the next: the home address is on the link already
        and only the two routes change (``use_agent``), so a request sent on the link
        (not by the routes) may leave before they do."""
        return self.fa_agent is not None and not self.own_out and not self.up and \
            self.home_on_link == 32

    async def use_agent(self, agent: IPv4Address) -> None:
        """FA mode: the home address on the link, everything via the agent (on-link).
        From one foreign agent to the next, only the two routes change (3 netlink
        changes instead of ~10 on a move)."""
        old = self.fa_agent
        if old is not None and self.between_agents():
            await self.nl.route_replace(IPv4Network(agent), self.table, oif=self.iface,
                                        src=self.home)
            await self.nl.route_replace(DEFAULT, self.table, oif=self.iface, gateway=agent,
                                        src=self.home)
            if old != agent:
                await self.nl.route_del(IPv4Network(old), self.table)
            self.fa_agent = agent
            return
        self.fa_agent = None
        await self.own_address_out(False)
        await self.tunnel_down()
        await self.nl.flush_table(self.table)
        self.coa = None
        await self.nl.addr_replace(self.iface, self.home, 32)
        self.home_on_link = 32
        await self.nl.route_replace(IPv4Network(agent), self.table, oif=self.iface,
                                    src=self.home)
        await self.nl.route_replace(DEFAULT, self.table, oif=self.iface, gateway=agent,
                                    src=self.home)
        self.fa_agent = agent

    async def own_address_out(self, on: bool) -> None:
        """Seed Figs. 3c, 5, 11 (CN 4c): a host on the visited network has our home
        address.  Locally sent packets to it go by our table (FA mode: default via the FA;
        co-located: the profile's local route, from the care-of address) instead of the
        ``local`` table, whose rule moves from priority 0 to LOCAL_MOVED for it; answers
        with our own address as source are accepted (``accept_local``)."""
        if on == self.own_out:
            return
        if on:
            await self.nl.rule_ensure(LOCAL_TABLE, LOCAL_MOVED)
            await self.nl.rule_del(LOCAL_TABLE, 0)
            await self.nl.rule_ensure(self.table, OWN_OUT, dst=str(self.home), dst_len=32,
                                      iifname="lo")
        else:
            await self.nl.rule_del(self.table, OWN_OUT, dst=str(self.home), dst_len=32,
                                   iifname="lo")
            await self.nl.rule_ensure(LOCAL_TABLE, 0)
            await self.nl.rule_del(LOCAL_TABLE, LOCAL_MOVED)
        set_sysctl(f"net.ipv4.conf.{self.iface}.accept_local", "1" if on else "0")
        self.own_out = on

    async def leave_agent(self) -> None:
        self.fa_agent = None
        await self.own_address_out(False)
        await self.nl.flush_table(self.table)
        if self.home_on_link:
            await self.nl.addr_del(self.iface, self.home, self.home_on_link)
            self.home_on_link = 0

    async def at_home(self, network: IPv4Network, gateway: IPv4Address) -> None:
        """Home: the home address on the link with its prefix, the home router as gateway."""
        self.fa_agent = None
        await self.own_address_out(False)
        await self.tunnel_down()
        await self.nl.flush_table(self.table)
        self.coa = None
        if self.home_on_link and self.home_on_link != network.prefixlen:
            await self.nl.addr_del(self.iface, self.home, self.home_on_link)
        await self.nl.addr_replace(self.iface, self.home, network.prefixlen)
        self.home_on_link = network.prefixlen
        await self.nl.route_replace(network, self.table, oif=self.iface, src=self.home)
        if gateway != self.home:
            await self.nl.route_replace(DEFAULT, self.table, oif=self.iface, gateway=gateway,
                                        src=self.home)

    async def away(self) -> None:
        """Co-located mode next: the home address leaves the physical link."""
        await self.leave_agent()

    async def announce_home(self) -> None:
        """Back on the home link: tell neighbours the home address is ours again."""
        send_gratuitous_arp(self.iface, await self.nl.mac(self.iface), self.home, count=3)

    def _peer_of(self, src: IPv4Address, dst: IPv4Address):
        if self.encap == "udp":
            return ((self.ha, 434), "udp", self.home)
        return (self.ha, self.encap, self.home)

    def from_udp(self, data: bytes, src: IPv4Address, port: int) -> bool:
        """RFC 3519 tunnel data from the HA, arrived on the registration socket."""
        if self.relay is None or self.encap != "udp":
            return False
        return self.relay.from_udp(data, src, port, self._accept_udp)

    def _accept_udp(self, src: IPv4Address, port: int, inner_src: IPv4Address,
                    inner_dst: IPv4Address) -> IPv4Address | None:
        if (src, port) != (self.ha, 434) or inner_dst != self.home:
            return None
        return self.home

    def keepalive(self, seq: int) -> None:
        """An ICMP echo to the HA through the UDP tunnel: it keeps the NAPT's mapping, and
        the answer coming back shows the tunnel works."""
        if self.relay is None or self.relay.udp_send is None or self.encap != "udp":
            return
        packet = icmp_echo(self.home, self.ha, 0x4D49, seq & 0xFFFF)
        self.relay.udp_send(UDP_TUNNEL_HEADER + packet, (str(self.ha), 434))
        c = self.relay.counters(self.home)
        c.packets_out += 1
        c.bytes_out += len(packet)

    def udp_silence(self) -> float:
        """Seconds since the last packet came back through the UDP tunnel."""
        if self.relay is None:
            return 0.0
        return time.monotonic() - max(self.relay.stats.last_udp_in, self.udp_since)

    def _accept(self, outer_src: IPv4Address, inner_src: IPv4Address, inner_dst: IPv4Address):
        if outer_src != self.ha or inner_dst != self.home:
            return None
        return self.home

    def counters(self) -> dict[str, int] | None:
        if self.relay is None:
            return None
        c = self.relay.stats.per_key.get(self.home)
        return c.as_dict() if c else None
