"""Port-based selection at a co-located mobile node (seed Fig. 9a, last paragraph).

Sessions that must survive a move (SIP, RTP) go through the tunnel whatever
their destination: packets to the configured ports are marked in the mangle
table, a rule sends marked packets to a table whose default is the tunnel,
and since the socket already chose the care-of address as source, they are
source-NATed to the home address on their way into the tunnel (replies are
translated back by conntrack).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import iptc

from ..kernel.iptables import hook_chain, remove_chains
from ..kernel.netlink import Netlink

MARK_CHAIN = "MIPRO-MN-MARK"
NAT_CHAIN = "MIPRO-MN-NAT"
MARK = 0x434


class PortSelection:
    def __init__(self, nl: Netlink, home: IPv4Address, tunnel: str, table: int,
                 priority: int, ports: tuple[tuple[str, int, int], ...]) -> None:
        self.nl = nl
        self.home = home
        self.tunnel = tunnel
        self.table = table
        self.priority = priority
        self.ports = ports
        self.active = False

    @staticmethod
    def _chains() -> list[tuple[iptc.Table, str, str]]:
        return [(iptc.Table(iptc.Table.MANGLE), "OUTPUT", MARK_CHAIN),
                (iptc.Table(iptc.Table.NAT), "POSTROUTING", NAT_CHAIN)]

    @classmethod
    def remove_rules(cls) -> int:
        """Our mangle and nat chains and their jumps, whoever left them."""
        removed = 0
        for table, hook, name in cls._chains():
            table.autocommit = False
            removed += remove_chains(table, (hook,), (name,))[1]
        return removed

    async def apply(self) -> None:
        if not self.ports or self.active:
            return
        (mangle, mark_hook, _), (nat, nat_hook, _) = self._chains()
        mangle.autocommit = nat.autocommit = False
        marks = []
        for proto, lo, hi in self.ports:
            r = iptc.Rule()
            r.protocol = proto
            m = r.create_match(proto)
            m.dport = str(lo) if lo == hi else f"{lo}:{hi}"
            t = iptc.Target(r, "MARK")
            t.set_mark = hex(MARK)
            r.target = t
            marks.append(r)
        hook_chain(mangle, mark_hook, MARK_CHAIN, marks)
        snat = iptc.Rule()
        snat.out_interface = self.tunnel
        snat.create_match("mark").mark = hex(MARK)
        t = iptc.Target(snat, "SNAT")
        t.to_source = str(self.home)
        snat.target = t
        hook_chain(nat, nat_hook, NAT_CHAIN, [snat])
        await self.nl.route_replace(IPv4Network("0.0.0.0/0"), self.table, oif=self.tunnel,
                                    src=self.home)
        await self.nl.rule_ensure(self.table, self.priority, fwmark=MARK)
        self.active = True

    async def remove(self) -> None:
        if not self.active:
            return
        await self.nl.rule_del(self.table, self.priority, fwmark=MARK)
        await self.nl.flush_table(self.table)
        self.remove_rules()
        self.active = False
