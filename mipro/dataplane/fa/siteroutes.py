"""The visitors' host routes for the visited site's routing protocol (seed Fig. 3b).

Each accepted visitor's home address goes, as ``HOME/32 dev LAN``, into a table of its
own (``fa.routing.table``); the routing daemon (FRR: ``ip import-table N`` in zebra,
``redistribute table N`` in ospfd) advertises what is there on the site's interfaces,
and withdraws it when the route goes.  mipro writes only these kernel routes; it never
talks to the routing daemon, which may restart at will (the routes stay in the kernel,
and zebra reads them back).  docs/routing.md.

Not advertised: a home address two visitors hold (overlapping home networks: a /32 on
the site would name one of them for both, and another FA's visitor may hold it too), a
home address a host on the visited site has (the route would take that host's traffic),
and one outside ``fa.routing.home_networks``.  What another FA advertises reaches our main
table too; it is not a host of the site (``another_fas_visitor``).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from ...core.fa import Visitor
from ..kernel.netlink import Netlink

# the routes' protocol: none of zebra's own (186-192: bgp, isis, ospf, rip, eigrp, which
# zebra takes for its leftovers and deletes), nor kernel/boot/static; `ip route`: proto 250
RTPROT_MIPRO = 250
# what routing daemons install (zebra, babel, bgp, isis, ospf, rip, eigrp)
ROUTING_PROTOCOLS = frozenset({11, 42, 186, 187, 188, 189, 192})


class SiteRoutes:
    def __init__(self, nl: Netlink, table: int, networks: tuple[IPv4Network, ...],
                 metric: int = 0) -> None:
        self.nl = nl
        self.table = table
        self.networks = networks
        self.metric = metric
        self.lan_index = 0
        self.advertised: set[IPv4Address] = set()

    async def start(self, lan_index: int) -> int:
        """What a previous run left (a killed FA) goes: its visitors register anew."""
        self.lan_index = lan_index
        return await self.nl.flush_table(self.table)

    async def stop(self) -> None:
        await self.nl.flush_table(self.table)
        self.advertised.clear()

    def wanted(self, home: IPv4Address, holders: list[Visitor]) -> bool:
        return len(holders) == 1 and holders[0].state == "accepted" and \
            holders[0].temporary_address is None and \
            any(home in net for net in self.networks)

    async def sync(self, home: IPv4Address, holders: list[Visitor]) -> None:
        """Advertise ``home`` or not, as its visitors here now say."""
        if self.wanted(home, holders):
            if home not in self.advertised:
                await self.nl.ipr.route("replace", dst=f"{home}/32", table=self.table,
                                        oif=self.lan_index, scope=253, proto=RTPROT_MIPRO,
                                        priority=self.metric)
                self.advertised.add(home)
        elif home in self.advertised:
            self.advertised.discard(home)
            await self.nl.route_del(IPv4Network(home), self.table)

    def another_fas_visitor(self, dst: IPv4Address, proto: int) -> bool:
        """Whether a host route in the main table is another FA's visitor, learnt from the
        site (a /32 of our home networks from a routing daemon: the site's prefix lists let
        no other through) rather than a host of the site with that address: the mobile node
        that just came from FA1 to us is still FA1's in our table for a moment."""
        return proto in ROUTING_PROTOCOLS and any(dst in net for net in self.networks)

    def describe(self) -> dict[str, object]:
        return {"table": self.table, "advertised": sorted(str(a) for a in self.advertised)}
