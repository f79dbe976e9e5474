"""The foreign agent's kernel state.

Per accepted visitor: a permanent neighbour entry (home address → the MN's
link-layer address: the FA never ARPs for a home address) and a /32 route on
the visited link in mipro's table, so decapsulated traffic reaches the MN.
With reverse tunnelling (RFC 3024), a rule sends what comes from the home
address on the visited link into the tunnel to its home agent.
"""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ..core.fa import Visitor
from .netlink import Netlink, set_sysctl
from .relay import MTU, UserspaceTunnel

LINK_PREFIX = "mip-"
DEFAULT = IPv4Network("0.0.0.0/0")


class FaDataplane:
    def __init__(self, *, backend: str, interface: str, care_of: IPv4Address, table: int,
                 rule_priority: int, tunnel_interface: str, log: Any) -> None:
        self.name = backend
        self.lan = interface
        self.coa = care_of
        self.table = table  # delivery routes to visitors
        self.reverse_table = table + 1  # userspace: default into the TUN
        self.prio = rule_priority
        self.tun_if = tunnel_interface
        self.log = log
        self.nl = Netlink()
        self.relay: UserspaceTunnel | None = None
        self.visitors: dict[IPv4Address, Visitor] = {}
        self.ha_links: dict[IPv4Address, tuple[str, int, int]] = {}  # kernel: name, index, table
        self.lan_index = 0

    async def start(self, loop: asyncio.AbstractEventLoop | None) -> None:
        set_sysctl("net.ipv4.ip_forward", "1")
        # MNs ARP for us from their home address, which is not on this link: loose mode
        set_sysctl(f"net.ipv4.conf.{self.lan}.rp_filter", "2")
        self.lan_index = await self.nl.index(self.lan)
        await self.cleanup_leftovers()
        if self.name == "userspace":
            self.relay = UserspaceTunnel(self.tun_if, self.coa, self._peer_of, self._accept)
            self.relay.open()
            index = await self.nl.link_up(self.tun_if, MTU)
            set_sysctl(f"net.ipv4.conf.{self.tun_if}.rp_filter", "0")
            await self.nl.ipr.route("replace", dst="0.0.0.0/0", oif=index,
                                    table=self.reverse_table)
            if loop is not None:
                self.relay.start_reading(loop)
        await self.nl.rule_ensure(self.table, self.prio)

    async def cleanup_leftovers(self) -> None:
        count = 0
        for table in (self.table, self.reverse_table):
            count += await self.nl.flush_table(table)
        for table in (self.table, self.reverse_table):
            for rule in await self.nl.rules_for_table(table):
                src = {"src": rule["src"], "src_len": 32} if rule["src"] else {}
                count += await self.nl.rule_del(table, rule["priority"], **src)
        for name in await self.nl.links_with_prefix(LINK_PREFIX):
            count += await self.nl.link_del(name)
        if count:
            self.log("reconciled-leftovers", items=count)

    async def stop(self) -> None:
        for v in list(self.visitors.values()):
            await self.remove_visitor(v)
        await self.nl.rule_del(self.table, self.prio)
        await self.nl.flush_table(self.reverse_table)
        for name, _, _ in list(self.ha_links.values()):
            await self.nl.link_del(name)
        if self.relay is not None:
            self.relay.close()
        self.nl.close()

    async def add_visitor(self, v: Visitor, previous: Visitor | None = None) -> None:
        if previous is not None and previous.reverse_tunnel and not v.reverse_tunnel:
            await self._reverse_rule(False, previous)
        self.visitors[v.home_address] = v
        await self.nl.ipr.neigh("replace", dst=str(v.home_address), ifindex=self.lan_index,
                                lladdr=v.mac.hex(":"), state=0x80)  # NUD_PERMANENT
        await self.nl.route_replace(IPv4Network(v.home_address), self.table, oif=self.lan)
        if self.name == "kernel":
            await self._ha_link(v.home_agent)
        if v.reverse_tunnel:
            await self._reverse_rule(True, v)

    async def remove_visitor(self, v: Visitor) -> None:
        current = self.visitors.get(v.home_address)
        if current is not None and current.mac != v.mac:
            return  # another MN with this home address holds the entry now
        self.visitors.pop(v.home_address, None)
        await self.nl.route_del(IPv4Network(v.home_address), self.table)
        try:
            await self.nl.ipr.neigh("del", dst=str(v.home_address), ifindex=self.lan_index)
        except Exception as exc:  # noqa: BLE001 - pyroute2 raises NetlinkError; gone is fine
            if getattr(exc, "code", None) not in (2, 3):
                raise
        if v.reverse_tunnel:
            await self._reverse_rule(False, v)

    async def _reverse_rule(self, add: bool, v: Visitor) -> None:
        table = self.reverse_table if self.name == "userspace" else \
            (await self._ha_link(v.home_agent))[2]
        match = {"src": str(v.home_address), "src_len": 32, "iifname": self.lan}
        if add:
            await self.nl.rule_ensure(table, self.prio - 1, **match)
        else:
            await self.nl.rule_del(table, self.prio - 1, **match)

    async def _ha_link(self, ha: IPv4Address) -> tuple[str, int, int]:
        """Kernel backend: one ipip link per home agent (decapsulation and reverse tunnel)."""
        if ha not in self.ha_links:
            name = f"{LINK_PREFIX}{ha.packed.hex()}"
            await self.nl.ipr.link("add", ifname=name, kind="ipip", ipip_local=str(self.coa),
                                   ipip_remote=str(ha), ipip_ttl=64)
            index = await self.nl.link_up(name)
            set_sysctl(f"net.ipv4.conf.{name}.rp_filter", "0")
            table = self.reverse_table + 1 + len(self.ha_links)
            await self.nl.ipr.route("replace", dst="0.0.0.0/0", oif=index, table=table)
            self.ha_links[ha] = (name, index, table)
        return self.ha_links[ha]

    def _peer_of(self, src: IPv4Address, dst: IPv4Address):
        v = self.visitors.get(src)
        if v is None or not v.reverse_tunnel:
            return None
        return (v.home_agent, v.encapsulation, src)

    def _accept(self, outer_src: IPv4Address, inner_src: IPv4Address, inner_dst: IPv4Address):
        v = self.visitors.get(inner_dst)
        if v is None or v.home_agent != outer_src:
            return None
        return inner_dst

    def counters(self, home: IPv4Address) -> dict[str, int] | None:
        if self.relay is None:
            return None
        c = self.relay.stats.per_key.get(home)
        return c.as_dict() if c else None

    def drops(self) -> dict[str, int]:
        if self.relay is None:
            return {}
        s = self.relay.stats
        return {"no_visitor": s.dropped_no_peer, "malformed": s.dropped_bad,
                "unauthorised": s.dropped_unauthorised}
