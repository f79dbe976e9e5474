"""The foreign agent's mobile firewall at a cost per visitor that does not grow with visitors.

Visitors with the same filter rules share one *policy*: an ipset of their
home addresses and one chain of rules, jumped to from mipro's top chain for
packets from or to a member on the visited link:

    FORWARD -> MIPRO-FWD -[-i LAN --match-set mipro-p-<id> src]-> MIPRO-P-<id>
                         -[-o LAN --match-set mipro-p-<id> dst]-> MIPRO-P-<id>
    POSTROUTING -> MIPRO-NAT -[--match-set mipro-p-<id> src]-> MIPRO-PN-<id>  (NAT action)

A visitor joining a policy that exists is one ipset add through netlink
(pyroute2), leaving it one ipset delete: no libiptc commit, whose cost grows
with the whole table.  Only the first visitor of a new policy, and the last
to leave it, rewrite the table, at a cost that grows with the number of
policies, not of visitors.  The policy id is a hash of the rules' bytes, so
the same profile from any home agent lands in the same policy.  Visitors are
keyed by (home address, MAC); a home address two visitors share is in no set
(realms.py jumps to their chains by MAC and realm mark instead).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from ipaddress import IPv4Address

import iptc

from ...core.fa import VisitorKey
from ...wire.vendor import FilterRule, Verdict
from ..kernel.filters import nat_rule, rules_for
from ..kernel.ipset import MAX_MEMBERS, SetGroups, destroy_sets
from ..kernel.iptables import (
    chain_counters,
    commit,
    drop_chain,
    hook_chain,
    remove_chains,
    set_match,
)
from ..kernel.ownerchains import NAT_PREFIX, NAT_TOP, PREFIX, TOP, MobileFirewall

SET_PREFIX = "mipro-p-"
CHAIN_PREFIX = "MIPRO-P-"
NAT_CHAIN_PREFIX = "MIPRO-PN-"


def policy_id(filters: tuple[FilterRule, ...]) -> str:
    return hashlib.sha256(b"".join(f.encode() for f in filters)).hexdigest()[:12]


@dataclass
class Policy:
    id: str
    filters: tuple[FilterRule, ...]
    members: int = 0
    nat: bool = False

    @property
    def set_name(self) -> str:
        return SET_PREFIX + self.id

    @property
    def chain(self) -> str:
        return CHAIN_PREFIX + self.id

    @property
    def nat_chain(self) -> str:
        return NAT_CHAIN_PREFIX + self.id


class VisitorFirewall(SetGroups[Policy]):
    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.table = iptc.Table(iptc.Table.FILTER)
        self.table.autocommit = False
        self.nat = iptc.Table(iptc.Table.NAT)
        self.nat.autocommit = False
        super().__init__()  # groups: policies by id; unlisted: shared home addresses

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> int:
        """Our top chains hooked first; what an earlier run left is removed first."""
        await self.ipset.setup_endpoint()
        self.open_batch()
        removed = await self._remove_all()
        hook_chain(self.table, "FORWARD", TOP)
        hook_chain(self.nat, "POSTROUTING", NAT_TOP)
        return removed

    async def stop(self) -> None:
        await self._remove_all()
        self.ipset.close()
        self.close_batch()

    async def _remove_all(self) -> int:
        removed = 0
        # also the per-visitor chains of the ipset-less fallback (kernel/ownerchains.py)
        for table, hook, top, prefix in ((self.table, "FORWARD", TOP, CHAIN_PREFIX),
                                         (self.nat, "POSTROUTING", NAT_TOP, NAT_CHAIN_PREFIX)):
            removed += remove_chains(table, (hook,), (top,), (prefix, PREFIX, NAT_PREFIX))[1]
        removed += await destroy_sets(self.ipset, SET_PREFIX)
        self.groups.clear()
        self.member_of.clear()
        return removed

    # --- visitors ---------------------------------------------------------------------

    async def apply(self, key: VisitorKey, filters: tuple[FilterRule, ...]) -> None:
        """Idempotent: afterwards visitor ``key`` is filtered by exactly these rules."""
        pid = policy_id(filters) if filters else None
        await self._join(key, pid, lambda gid: self._create(gid, filters))

    async def remove(self, key: VisitorKey) -> None:
        await self.leave(key)

    def policy_of(self, key: VisitorKey) -> Policy | None:
        return self.group_of(key)

    # --- policies ---------------------------------------------------------------------

    async def _create(self, pid: str, filters: tuple[FilterRule, ...]) -> Policy:
        """The set first (rules refer to it by name), then chain, rules and jumps."""
        policy = Policy(pid, filters)
        await self.ipset.create(policy.set_name, stype="hash:ip", maxelem=MAX_MEMBERS)
        self.table.refresh()
        chain = self.table.create_chain(policy.chain)
        for f in filters:
            for r in rules_for(IPv4Address(0), f):
                chain.append_rule(r)
        top = iptc.Chain(self.table, TOP)
        for direction, attr in (("src", "in_interface"), ("dst", "out_interface")):
            j = iptc.Rule()
            setattr(j, attr, self.interface)
            set_match(j, policy.set_name, direction)
            j.target = iptc.Target(j, policy.chain)
            top.append_rule(j)
        commit(self.table)
        translated = [f for f in filters if f.nat and f.verdict is Verdict.ACCEPT]
        if translated:
            self.nat.refresh()
            chain = self.nat.create_chain(policy.nat_chain)
            for f in translated:
                chain.append_rule(nat_rule(f, None))
            j = iptc.Rule()
            set_match(j, policy.set_name, "src")
            j.target = iptc.Target(j, policy.nat_chain)
            iptc.Chain(self.nat, NAT_TOP).append_rule(j)
            commit(self.nat)
            policy.nat = True
        self.groups[pid] = policy
        return policy

    async def _drop(self, policy: Policy) -> None:
        self.groups.pop(policy.id, None)
        if policy.nat:
            self.nat.refresh()
            drop_chain(self.nat, NAT_TOP, policy.nat_chain)
            commit(self.nat)
        self.table.refresh()
        drop_chain(self.table, TOP, policy.chain)
        commit(self.table)
        await self.ipset.destroy(policy.set_name)

    # --- status -----------------------------------------------------------------------

    def counters(self, key: VisitorKey) -> list[dict[str, object]]:
        """The rules of the visitor's policy chain; counts are the policy's (shared)."""
        pid = self.member_of.get(key)
        if pid is None:
            return []
        shared = {"policy": pid, "shared_by": self.groups[pid].members}
        return [c | shared for c in chain_counters(self.table, CHAIN_PREFIX + pid)]


class PerVisitorChains:
    """Without ipsets: a chain per visitor (kernel/ownerchains.py), behind the same interface.

    Correct, but each change is a libiptc commit of the whole table, so its
    cost grows with the number of visitors."""

    def __init__(self, interface: str) -> None:
        self.fw = MobileFirewall(interface)

    async def start(self) -> int:
        return self.fw.start()

    async def stop(self) -> None:
        self.fw.stop()

    async def apply(self, key: VisitorKey, filters: tuple[FilterRule, ...]) -> None:
        self.fw.apply(key[0], filters)

    async def remove(self, key: VisitorKey) -> None:
        self.fw.remove(key[0])

    def counters(self, key: VisitorKey) -> list[dict[str, object]]:
        return self.fw.counters(key[0])

    def policy_of(self, key: VisitorKey) -> None:
        return None  # no shared policies, so no twins either (the FA refuses them)

    async def unlist(self, home: IPv4Address) -> None:
        pass

    async def relist(self, home: IPv4Address) -> None:
        pass
