"""The chain-per-owner mobile firewall (seed Figs. 2, 4): each owner's filter rules in a
chain of its own, under mipro's top chain in the filter table.

Two users, so a mechanism rather than a role's: the foreign agent without ipsets (its
fallback, fa/visitorfw.py ``PerVisitorChains``), where an owner is a visitor on the link

    FORWARD -> MIPRO-FWD -> MIPRO-V-<home hex>   (from or to one visitor on the link)
    POSTROUTING -> MIPRO-NAT -> MIPRO-N-<home hex>   (its rules with the NAT action)

and a co-located mobile node (mn/agent.py), where the owner is itself and every packet it
sends or receives goes through its chain: ``INPUT/OUTPUT -> MIPRO-MN -> MIPRO-V-<home>``.
Each change is a libiptc commit of the whole table, so its cost grows with the number of
owners (fa/visitorfw.py's shared policies are the FA's way to a flat cost).
"""

from __future__ import annotations

from ipaddress import IPv4Address

import iptc

from ...wire.vendor import FilterRule, Verdict
from .filters import nat_rule, rules_for
from .iptables import chain_counters, commit, drop_chain, hook_chain, remove_chains

TOP = "MIPRO-FWD"
PREFIX = "MIPRO-V-"
NAT_TOP = "MIPRO-NAT"
NAT_PREFIX = "MIPRO-N-"


def chain_name(home: IPv4Address) -> str:
    return PREFIX + home.packed.hex()


def nat_chain_name(home: IPv4Address) -> str:
    return NAT_PREFIX + home.packed.hex()


class MobileFirewall:
    def __init__(self, interface: str | None, top: str = TOP,
                 hooks: tuple[str, ...] = ("FORWARD",)) -> None:
        """An FA filters what it forwards to and from visitors on ``interface``; a
        co-located MN (``interface`` None, top "MIPRO-MN", hooks INPUT and OUTPUT) filters
        what it sends and receives itself."""
        self.interface = interface
        self.top = top
        self.hooks = hooks
        self.table = iptc.Table(iptc.Table.FILTER)
        self.table.autocommit = False
        self.nat = iptc.Table(iptc.Table.NAT)
        self.nat.autocommit = False
        self.applied: set[IPv4Address] = set()
        self.nat_applied: set[IPv4Address] = set()  # only these touch the nat table

    def start(self) -> int:
        """Our top chain, jumped to first from the hooks; leftovers of an earlier run
        removed."""
        removed = self._remove_all()
        for hook in self.hooks:
            hook_chain(self.table, hook, self.top)
        if self.interface is not None:  # an FA also translates for visitors (NAT action)
            hook_chain(self.nat, "POSTROUTING", NAT_TOP)
        return removed

    def start_clean(self) -> int:
        """Remove what an earlier run left, and install nothing."""
        return self._remove_all()

    def _remove_all(self) -> int:
        _, nat_chains = remove_chains(self.nat, ("POSTROUTING",), (NAT_TOP,), (NAT_PREFIX,))
        jumps, chains = remove_chains(self.table, self.hooks, (self.top,), (PREFIX,))
        return nat_chains + jumps + chains

    def apply(self, home: IPv4Address, filters: tuple[FilterRule, ...]) -> None:
        """Idempotent: the owner's chain is rebuilt with exactly these rules."""
        self.table.refresh()  # others (an operator, another tool) may have changed the table
        self.remove(home, commit_now=False)
        if not filters:
            commit(self.table)
            return
        name = chain_name(home)
        chain = self.table.create_chain(name)
        for f in filters:
            for r in rules_for(home, f):
                chain.append_rule(r)
        top = iptc.Chain(self.table, self.top)
        if self.interface is None:  # our own traffic: every packet goes through the chain
            j = iptc.Rule()
            j.target = iptc.Target(j, name)
            top.append_rule(j)
        for direction in ("src", "dst") if self.interface else ():
            j = iptc.Rule()
            setattr(j, direction, str(home))
            if direction == "src":
                j.in_interface = self.interface
            else:
                j.out_interface = self.interface
            j.target = iptc.Target(j, name)
            top.append_rule(j)
        commit(self.table)
        self.applied.add(home)
        translated = [f for f in filters if f.nat and f.verdict is Verdict.ACCEPT]
        if translated and self.interface is not None:
            self.nat.refresh()
            chain = self.nat.create_chain(nat_chain_name(home))
            for f in translated:
                chain.append_rule(nat_rule(f, home))
            jump = iptc.Rule()
            jump.src = str(home)
            jump.target = iptc.Target(jump, nat_chain_name(home))
            iptc.Chain(self.nat, NAT_TOP).append_rule(jump)
            commit(self.nat)
            self.nat_applied.add(home)

    def remove(self, home: IPv4Address, commit_now: bool = True) -> None:
        name = chain_name(home)
        if commit_now:
            self.table.refresh()
        self._remove_nat(home)
        drop_chain(self.table, self.top, name)
        self.applied.discard(home)
        if commit_now:
            commit(self.table)

    def _remove_nat(self, home: IPv4Address) -> None:
        if home not in self.nat_applied:
            return
        self.nat_applied.discard(home)
        self.nat.refresh()
        if drop_chain(self.nat, NAT_TOP, nat_chain_name(home)):
            commit(self.nat)

    def counters(self, home: IPv4Address) -> list[dict[str, object]]:
        return chain_counters(self.table, chain_name(home))

    def stop(self) -> None:
        self._remove_all()
