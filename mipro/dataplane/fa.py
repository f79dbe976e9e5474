"""The foreign agent's kernel state.

Per accepted visitor: a permanent neighbour entry (home address → the MN's
link-layer address: the FA never ARPs for a home address) and a /32 route on
the visited link in mipro's table, so decapsulated traffic reaches the MN.

What the MN sends is routed by source (seed Fig. 5): packets from its home
address on the link are marked for its route profile and routed by the
profile's table (routeprofiles.py), which holds the static routes its home
agent sent, with their costs as metrics — the tunnel for the home network
and the internet, the local interface for correspondents on the visited
site — plus, with reverse tunnelling (RFC 3024), a default route into the
tunnel.  Its filter rules are those of
its policy (visitorfw.py: an ipset membership and a shared chain).  All of it
goes when the visitor does, with the visitor's conntrack entries, so a denied
flow cannot live on.
"""

from __future__ import annotations

import asyncio
import contextlib
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from pyroute2 import AsyncConntrack

from ..core.fa import Visitor
from ..wire.vendor import StaticRoute
from .netlink import Netlink, set_sysctl
from .relay import MTU, UserspaceTunnel
from .routeprofiles import MARK_MASK, MARK_SHIFT, RouteProfiles
from .visitorfw import PerVisitorChains, VisitorFirewall, ipset_available

LINK_PREFIX = "mip-"
DEFAULT = IPv4Network("0.0.0.0/0")
TABLE_OFFSET = 16  # route profile tables: table + 16 + 1 .. + (MARK_MASK >> MARK_SHIFT)
PROFILE_TABLES = MARK_MASK >> MARK_SHIFT
REVERSE_METRIC = 1000  # reverse tunnelling default: costlier than any profile route


class FaDataplane:
    def __init__(self, *, backend: str, interface: str, care_of: IPv4Address, table: int,
                 rule_priority: int, tunnel_interface: str, log: Any) -> None:
        self.name = backend
        self.lan = interface
        self.coa = care_of
        self.table = table  # delivery routes to visitors
        self.prio = rule_priority
        self.tun_if = tunnel_interface
        self.log = log
        self.nl = Netlink()
        self.relay: UserspaceTunnel | None = None
        self.visitors: dict[IPv4Address, Visitor] = {}
        self.ha_links: dict[IPv4Address, tuple[str, int]] = {}  # kernel: name, index
        self.lan_index = 0
        self.firewall: VisitorFirewall | PerVisitorChains | None = None
        self.conntrack: AsyncConntrack | None = None
        self.ct_doomed: set[IPv4Address] = set()  # visitors whose flows are to be forgotten
        self.ct_task: asyncio.Task | None = None
        self.indexes: dict[str, int] = {}
        self.profiles = RouteProfiles(self.nl, interface, table + TABLE_OFFSET,
                                      rule_priority - 1, self._route_args)

    async def start(self, loop: asyncio.AbstractEventLoop | None) -> None:
        set_sysctl("net.ipv4.ip_forward", "1")
        # MNs ARP for us from their home address, which is not on this link: loose mode
        set_sysctl(f"net.ipv4.conf.{self.lan}.rp_filter", "2")
        self.lan_index = await self.nl.index(self.lan)
        await self.cleanup_leftovers()
        why_not = await ipset_available()
        self.firewall = VisitorFirewall(self.lan) if why_not is None else \
            PerVisitorChains(self.lan)
        if why_not is not None:
            self.log("firewall-fallback", "warning", reason=f"no ipsets ({why_not}): one "
                     "iptables chain per visitor, slower with many visitors")
        removed = await self.firewall.start() + await self.profiles.start()
        if removed:
            self.log("reconciled-leftovers", chains=removed)
        # MN <-> local correspondents go through us (the mobile firewall sees them): no ICMP
        # redirects telling either side to talk directly (the kernel ORs all and the link)
        for name in ("all", self.lan):
            old = set_sysctl(f"net.ipv4.conf.{name}.send_redirects", "0")
            if old is not None:
                self.log("sysctl", name=f"net.ipv4.conf.{name}.send_redirects", value=0, was=old)
        if self.name == "userspace":
            self.relay = UserspaceTunnel(self.tun_if, self.coa, self._peer_of, self._accept)
            self.relay.open()
            await self.nl.link_up(self.tun_if, MTU)
            set_sysctl(f"net.ipv4.conf.{self.tun_if}.rp_filter", "0")
            if loop is not None:
                self.relay.start_reading(loop)
        await self.nl.rule_ensure(self.table, self.prio)

    async def cleanup_leftovers(self) -> None:
        count = 0
        last = self.table + TABLE_OFFSET + PROFILE_TABLES
        tables = set()
        for rule in await self.nl.rules_for_table_range(self.table, last):
            src = {"src": rule["src"], "src_len": 32} if rule["src"] else {}
            count += await self.nl.rule_del(rule["table"], rule["priority"], **src)
            tables.add(rule["table"])
        for table in tables | {self.table}:
            count += await self.nl.flush_table(table)
        for name in await self.nl.links_with_prefix(LINK_PREFIX):
            count += await self.nl.link_del(name)
        if count:
            self.log("reconciled-leftovers", items=count)

    async def stop(self) -> None:
        for v in list(self.visitors.values()):
            await self.remove_visitor(v)
        await self.nl.rule_del(self.table, self.prio)
        await self.flows_forgotten()
        await self.profiles.stop()
        if self.firewall is not None:
            await self.firewall.stop()
        if self.conntrack is not None:
            self.conntrack.close()
        for name, _ in list(self.ha_links.values()):
            await self.nl.link_del(name)
        if self.relay is not None:
            self.relay.close()
        self.nl.close()

    async def add_visitor(self, v: Visitor, previous: Visitor | None = None) -> None:
        self.visitors[v.home_address] = v
        await self.nl.ipr.neigh("replace", dst=str(v.home_address), ifindex=self.lan_index,
                                lladdr=v.mac.hex(":"), state=0x80)  # NUD_PERMANENT
        await self.nl.route_replace(IPv4Network(v.home_address), self.table, oif=self.lan)
        if self.name == "kernel":
            await self._ha_link(v.home_agent)
        same = previous is not None and (previous.routes, previous.filters,
                                         previous.reverse_tunnel, previous.home_agent) == \
            (v.routes, v.filters, v.reverse_tunnel, v.home_agent)
        if same and v.home_address in self.profiles.member_of:
            return  # a renewal that changes nothing
        await self._apply_routes(v)
        await self.firewall.apply(v.home_address, v.filters)
        if previous is not None:  # changed policy: flows admitted under the old one go
            self._forget_flows(v.home_address)

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
        await self._remove_routes(v.home_address)
        await self.firewall.remove(v.home_address)
        self._forget_flows(v.home_address)

    # --- source-restricted routes (Fig. 5) --------------------------------------------

    async def _apply_routes(self, v: Visitor) -> None:
        routes = list(v.routes)
        if v.reverse_tunnel and not any(r.destination == DEFAULT for r in routes):
            routes.append(StaticRoute(DEFAULT, v.home_agent, REVERSE_METRIC, True))
        await self.profiles.join(v.home_address, routes, v.home_agent)

    async def _route_args(self, r: StaticRoute, home_agent: IPv4Address) -> dict[str, object]:
        """Where a profile route leads: into the tunnel to the HA, or out on the visited
        network."""
        if r.via_tunnel:
            tunnel = self.tun_if if self.name == "userspace" else \
                (await self._ha_link(home_agent))[0]
            return {"oif": await self._index(tunnel), "scope": 253}
        return await self._local_nexthop(r)

    async def _local_nexthop(self, r: StaticRoute) -> dict[str, object]:
        """Where the visited network reaches a local destination: the given router, else
        the way our main table goes there."""
        if int(r.router):
            return {"gateway": str(r.router)}
        probe = str(r.destination.network_address) if r.destination.prefixlen else None
        if probe is None:  # a local default: our own default route
            async for route in await self.nl.ipr.route("dump", table=254, family=2):
                if route["dst_len"] == 0:
                    out = {"oif": route.get_attr("RTA_OIF")}
                    if route.get_attr("RTA_GATEWAY"):
                        out["gateway"] = route.get_attr("RTA_GATEWAY")
                    return out
            raise LookupError("a local default route, but this agent has none")
        answer = await self.nl.ipr.route("get", dst=probe)
        found = [x async for x in answer] if hasattr(answer, "__aiter__") else list(answer)
        out = {"oif": found[0].get_attr("RTA_OIF")}
        gateway = found[0].get_attr("RTA_GATEWAY")
        if gateway:
            out["gateway"] = gateway
        else:
            out["scope"] = 253
        return out

    async def _remove_routes(self, home: IPv4Address) -> None:
        await self.profiles.leave(home)

    async def _index(self, ifname: str) -> int:
        if ifname not in self.indexes:
            self.indexes[ifname] = await self.nl.index(ifname)
        return self.indexes[ifname]

    def _forget_flows(self, home: IPv4Address) -> None:
        """Have the visitor's conntrack entries flushed, right after this change.

        A conntrack dump walks every hash bucket of the table (262,144 here: ~10 ms
        even when empty), so removals that come together share one dump."""
        self.ct_doomed.add(home)
        if self.ct_task is None or self.ct_task.done():
            self.ct_task = asyncio.get_running_loop().create_task(self._flush_logged())

    async def flows_forgotten(self) -> None:
        """Wait for pending conntrack flushes (tests, benchmarks, stop)."""
        while self.ct_task is not None and not self.ct_task.done():
            await self.ct_task

    async def _flush_logged(self) -> None:
        try:
            await self._flush_conntrack()
        except Exception as exc:  # noqa: BLE001 - a daemon keeps going; say what failed
            self.log("conntrack-flush-failed", "error", reason=repr(exc))

    async def _flush_conntrack(self) -> int:
        """Forget the doomed visitors' flows: a flow denied from now on must not live on
        old state.  One dump (the kernel cannot filter it by address), one socket kept."""
        await asyncio.sleep(0)  # let the removals of this batch join
        addresses = {str(a) for a in self.ct_doomed}
        self.ct_doomed.clear()
        if self.conntrack is None:
            self.conntrack = AsyncConntrack()
            await self.conntrack.setup_endpoint()
        doomed = []
        async for entry in await self.conntrack.dump_entries():
            orig = entry.tuple_orig
            if orig.saddr in addresses or orig.daddr in addresses:
                doomed.append(entry)
        for entry in doomed:
            with contextlib.suppress(Exception):  # gone meanwhile
                await self.conntrack.delete(entry)
        if self.ct_doomed:  # more came while we dumped
            return len(doomed) + await self._flush_conntrack()
        return len(doomed)

    def routes_status(self, home: IPv4Address) -> dict[str, object]:
        profile = self.profiles.profile_of(home)
        return {"table": profile.table if profile else None,
                "fwmark": f"{profile.mark:#x}/{MARK_MASK:#x}" if profile else None,
                "shared_by": profile.members if profile else 0,
                "routes": [{"destination": d, "metric": m}
                           for d, m in (profile.routes if profile else [])],
                "filter_counters": self.firewall.counters(home) if self.firewall else []}

    async def _ha_link(self, ha: IPv4Address) -> tuple[str, int]:
        """Kernel backend: one ipip link per home agent (decapsulation and reverse tunnel)."""
        if ha not in self.ha_links:
            name = f"{LINK_PREFIX}{ha.packed.hex()}"
            await self.nl.ipr.link("add", ifname=name, kind="ipip", ipip_local=str(self.coa),
                                   ipip_remote=str(ha), ipip_ttl=64)
            index = await self.nl.link_up(name)
            set_sysctl(f"net.ipv4.conf.{name}.rp_filter", "0")
            self.ha_links[ha] = (name, index)
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
