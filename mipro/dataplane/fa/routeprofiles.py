"""Source-restricted routing for visitors (seed Fig. 5) at a cost that does not grow with them.

Visitors whose home agents sent the same routes (and who share reverse
tunnelling and home agent) share a *route profile*: one table holding the
routes with their costs as metrics, one ipset of the members' home
addresses, one mangle rule marking what members send on the visited link,
and one routing rule sending marked packets to the table:

    mangle PREROUTING -> MIPRO-MARK -[-i LAN --match-set mipro-r-<id> src]-> MARK <mark>
    ip rule: fwmark <mark>/MARK_MASK iif LAN lookup <table>

A visitor joining an existing profile is one ipset add; leaving is one
delete.  Visitors are keyed by (home address, MAC); a home address that two
visitors share is in no set (realms.py marks their packets by MAC instead).  Why not a rule per visitor (``from HOME iif LAN lookup T``)?  The
kernel walks its rule list for every routed packet and every rule change:
with 10,000 visitors a route lookup took 1.2 ms instead of 0.3 ms
(bench/ro_apply.py), and forwarding slows down the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

import iptc

from ...core.fa import VisitorKey
from ...wire.vendor import StaticRoute
from ..kernel.ipset import MAX_MEMBERS, SetGroups, destroy_sets
from ..kernel.iptables import commit, hook_chain, remove_chains, set_match
from ..kernel.netlink import Netlink

SET_PREFIX = "mipro-r-"
MARK_CHAIN = "MIPRO-MARK"
MARK_SHIFT = 16
MARK_MASK = 0x0FFF0000  # 4,095 route profiles; the other mark bits stay the operator's

RouteArgs = Callable[[StaticRoute, IPv4Address], Awaitable[dict[str, object]]]


def profile_id(routes: list[StaticRoute], home_agent: IPv4Address) -> str:
    data = home_agent.packed + b"".join(r.encode() for r in routes)
    return hashlib.sha256(data).hexdigest()[:12]


@dataclass
class RouteProfile:
    id: str
    table: int
    mark: int
    routes: list[tuple[str, int]] = field(default_factory=list)  # (destination, metric)
    members: int = 0
    home_agent: IPv4Address = IPv4Address(0)  # its tunnel routes go into this HA's device

    @property
    def set_name(self) -> str:
        return SET_PREFIX + self.id


class RouteProfiles(SetGroups[RouteProfile]):
    def __init__(self, nl: Netlink, lan: str, first_table: int, priority: int,
                 route_args: RouteArgs) -> None:
        self.nl = nl
        self.lan = lan
        self.first_table = first_table  # profile tables: first_table + 1 .. + 4095
        self.priority = priority
        self.route_args = route_args  # how to reach a route's next hop (tunnel or local)
        super().__init__()  # groups: profiles by id; unlisted: shared home addresses
        self.mangle = iptc.Table(iptc.Table.MANGLE)
        self.mangle.autocommit = False
        self.free_marks = list(range(MARK_MASK >> MARK_SHIFT, 0, -1))
        # profiles without members kept for their home agent's next visitor while its realm
        # lingers (fa.realms.linger; the FA dataplane says which): dropped with the realm,
        # or when a new profile needs their mark
        self.keep: Callable[[IPv4Address], bool] = lambda home_agent: False
        self.empty_since: dict[str, float] = {}  # profile id → without members since

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> int:
        """Our mangle chain hooked first; an earlier run's chain and sets removed."""
        await self.ipset.setup_endpoint()
        self.open_batch()
        removed = await self._remove_all()
        hook_chain(self.mangle, "PREROUTING", MARK_CHAIN)
        return removed

    async def stop(self) -> None:
        for profile in list(self.groups.values()):
            await self._drop(profile)
        await self._remove_all()
        self.ipset.close()
        self.close_batch()

    async def _remove_all(self) -> int:
        removed = remove_chains(self.mangle, ("PREROUTING",), (MARK_CHAIN,))[1]
        removed += await destroy_sets(self.ipset, SET_PREFIX)
        self.groups.clear()
        self.member_of.clear()
        return removed

    # --- visitors ---------------------------------------------------------------------

    async def join(self, key: VisitorKey, routes: list[StaticRoute],
                   home_agent: IPv4Address) -> RouteProfile | None:
        """Afterwards what visitor ``key`` sends on the link is routed by exactly
        ``routes``."""
        pid = profile_id(routes, home_agent) if routes else None
        return await self._join(key, pid, lambda gid: self._create(gid, routes, home_agent))

    def profile_of(self, key: VisitorKey) -> RouteProfile | None:
        return self.group_of(key)

    # --- profiles ---------------------------------------------------------------------

    def _keep_empty(self, group: RouteProfile) -> bool:
        if not self.keep(group.home_agent):
            return False
        self.empty_since[group.id] = time.monotonic()
        return True

    def empty_deadline(self, linger: float) -> float | None:
        """When the first profile kept without members has been so for ``linger``."""
        since = [t for pid, t in self.empty_since.items()
                 if pid in self.groups and self.groups[pid].members <= 0]
        return min(since) + linger if since else None

    async def drop_expired(self, now: float, linger: float) -> int:
        """Profiles without members for ``linger`` seconds go (a realm with other visitors
        lingers on, its visitors' old profiles should not)."""
        dropped = 0
        for pid, since in list(self.empty_since.items()):
            p = self.groups.get(pid)
            if p is None or p.members > 0:
                del self.empty_since[pid]
            elif since + linger <= now or not self.keep(p.home_agent):
                await self._drop(p)
                dropped += 1
        return dropped

    async def drop_empty(self, home_agent: IPv4Address | None = None) -> int:
        """The profiles without members (of ``home_agent``, or one of any: a mark for a new
        one) go."""
        empty = [p for p in self.groups.values() if p.members <= 0 and
                 (home_agent is None or p.home_agent == home_agent)]
        for p in empty if home_agent is not None else empty[:1]:
            await self._drop(p)
        return len(empty)

    async def _create(self, pid: str, routes: list[StaticRoute],
                      home_agent: IPv4Address) -> RouteProfile:
        if not self.free_marks:
            await self.drop_empty()
        if not self.free_marks:
            raise RuntimeError(f"more than {MARK_MASK >> MARK_SHIFT} route profiles")
        index = self.free_marks.pop()
        table = self.first_table + index
        profile = RouteProfile(pid, table, index << MARK_SHIFT, home_agent=home_agent)
        self.groups[pid] = profile
        await self.ipset.create(profile.set_name, stype="hash:ip", maxelem=MAX_MEMBERS)
        for r in routes:
            kwargs = {"dst": str(r.destination), "table": table, "priority": r.cost}
            kwargs |= await self.route_args(r, home_agent)
            await self.nl.ipr.route("replace", **kwargs)
            profile.routes.append((str(r.destination), r.cost))
        await self.nl.rule_ensure(table, self.priority, fwmark=profile.mark, fwmask=MARK_MASK,
                                  iifname=self.lan)
        self.mangle.refresh()
        rule = iptc.Rule()
        rule.in_interface = self.lan
        set_match(rule, profile.set_name, "src")
        target = iptc.Target(rule, "MARK")
        target.set_xmark = f"{profile.mark:#x}/{MARK_MASK:#x}"
        rule.target = target
        iptc.Chain(self.mangle, MARK_CHAIN).append_rule(rule)
        commit(self.mangle)
        return profile

    async def _drop(self, profile: RouteProfile) -> None:
        self.groups.pop(profile.id, None)
        self.empty_since.pop(profile.id, None)
        self.mangle.refresh()
        chain = iptc.Chain(self.mangle, MARK_CHAIN)
        for rule in list(chain.rules):
            if any(m.name == "set" and m.get_all_parameters().get("match-set", [None])[0] ==
                   profile.set_name for m in rule.matches):
                chain.delete_rule(rule)
        commit(self.mangle)
        await self.nl.rule_del(profile.table, self.priority, fwmark=profile.mark,
                               fwmask=MARK_MASK)
        for dst, metric in profile.routes:
            await self.nl.route_del(IPv4Network(dst), profile.table, metric)
        with contextlib.suppress(Exception):  # gone already
            await self.ipset.destroy(profile.set_name)
        self.free_marks.append(profile.mark >> MARK_SHIFT)
