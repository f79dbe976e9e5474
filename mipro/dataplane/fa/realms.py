"""Home-agent realms at the foreign agent: mobile nodes that share a home address (Fig. 3c).

Home networks are often private and overlap, so two visitors can have the
same home address (from two home agents).  An IP address then names no
single visitor; a link-layer address and a home agent do.  Each home agent's
visitors form a *realm* with an index ``r`` (1..255):

- a tunnel device of its own (the kernel's ipip link, or a TUN of the
  userspace relay), so what comes out of a tunnel is known to be the realm's;
- a delivery table ``base + r``, consulted first by the realm's traffic:
  ``HOME via <alias> dev LAN onlink`` for a visitor whose home address is
  another's too, where the alias is a link-local next hop whose permanent
  neighbour entry is the visitor's MAC (two visitors with one address cannot
  share a neighbour entry; the first keeps ``HOME dev LAN`` in mipro's table
  and the neighbour entry HOME → its MAC, as every other visitor does);
  ``ip rule iif <device> lookup base+r`` and
  ``ip rule fwmark r<<8/0xff00 lookup base+r``;
- conntrack zone ``r`` for what its visitors send (raw table, CT
  ``--zone-orig``: only the original direction, so replies, which come from
  correspondents with no zone, still find their flow), and connmark ``r<<8``
  on every flow they or their tunnel start, restored on replies: that is the
  seed's NAT index (home address + link-layer address), and what takes a
  local correspondent's reply to the right mobile node.

What a visitor sends is recognised by its source address while the address is
its alone (ipset ``mipro-h-<r>``, one member per visitor); a home address held
by two visitors or more is taken out of every set and matched by address and
MAC instead, in ``MIPRO-TWIN`` chains rebuilt whenever that list changes (this
kernel has no hash:ip,mac sets, and twins are few).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

import iptc
from pyroute2.ipset import AsyncIPSet

from ...core.fa import VisitorKey
from ..kernel import rtbatch
from ..kernel.ipset import destroy_sets, member_request, move_members, set_member
from ..kernel.iptables import commit, hook_chain, remove_chains, set_match
from ..kernel.netlink import GONE, Netlink

REALM_SHIFT = 8
REALM_MASK = 0x0000FF00  # 255 home agents with visitors at once
ALIASES = IPv4Network("169.254.0.0/16")  # next-hop aliases on the visited link
SET_PREFIX = "mipro-h-"
ZONE_CHAIN = "MIPRO-ZONE"  # raw PREROUTING
REALM_CHAIN = "MIPRO-REALM"  # mangle PREROUTING
TWIN_CHAIN = "MIPRO-TWIN"  # raw, mangle, filter and nat: visitors sharing a home address
SELF_CHAIN = "MIPRO-SELF"  # nat POSTROUTING: visitors talking to a host with their address
MAIN_TABLE = 254
NUD_PERMANENT = 0x80


@dataclass
class Realm:
    index: int
    home_agent: IPv4Address
    device: str
    ifindex: int
    table: int
    members: set[VisitorKey] = field(default_factory=set)

    @property
    def mark(self) -> int:
        return self.index << REALM_SHIFT

    @property
    def set_name(self) -> str:
        return f"{SET_PREFIX}{self.index}"


class IdleRealms:
    """Which realms without visitors are kept (``fa.realms.linger``), since when, and which
    go: making a realm is ~8 ms of kernel work on a move (a TUN or ipip link, rules, an
    ipset, two iptables commits), so the next visitor of that home agent, typically the
    MN coming back, should find it.  Only for home agents ``keep`` says yes to (the
    daemon: those with an FA-HA key, whose replies authenticate); the longest idle one
    gives way when all realm indexes are taken, so keeping never refuses a visitor."""

    def __init__(self) -> None:
        self.linger = 0.0
        self.keep: Callable[[IPv4Address], bool] = lambda ha: False
        self.since: OrderedDict[IPv4Address, float] = OrderedDict()  # HA → idle since

    def retire(self, ha: IPv4Address, now: float) -> bool:
        """Its last visitor left: True if the realm is kept (else it goes now)."""
        if self.linger <= 0 or not self.keep(ha):
            self.since.pop(ha, None)
            return False
        self.since[ha] = now
        self.since.move_to_end(ha)
        return True

    def used(self, ha: IPv4Address) -> None:
        self.since.pop(ha, None)

    def oldest(self) -> IPv4Address | None:
        return next(iter(self.since), None)

    def due(self, now: float) -> list[IPv4Address]:
        """Those whose linger is over (also after a reload shortened it or removed the
        home agent's key)."""
        return [ha for ha, t in self.since.items() if t + self.linger <= now or
                not self.keep(ha)]

    def deadline(self) -> float | None:
        return next(iter(self.since.values())) + self.linger if self.since else None


@dataclass(frozen=True)
class Twin:
    """What the MIPRO-TWIN rules need about one visitor whose home address is shared."""
    home: IPv4Address
    mac: bytes
    realm: Realm
    profile_mark: int  # 0: no route profile
    policy_chain: str | None
    nat_chain: str | None


class Realms:
    def __init__(self, nl: Netlink, lan: str, base_table: int, priority: int) -> None:
        self.nl = nl
        self.lan = lan
        self.lan_index = 0
        self.base_table = base_table
        self.priority = priority
        self.ipset = AsyncIPSet()
        self.tables = {name: iptc.Table(name) for name in ("raw", "mangle", "filter", "nat")}
        for t in self.tables.values():
            t.autocommit = False
        self.realms: dict[IPv4Address, Realm] = {}
        self.aliases: dict[VisitorKey, IPv4Address] = {}
        self.free_aliases = list(range(ALIASES.num_addresses - 2, 0, -1))
        self.free_indexes = list(range(REALM_MASK >> REALM_SHIFT, 0, -1))
        self.primary: dict[IPv4Address, VisitorKey] = {}  # who gets unmarked traffic to a home
        self.unlisted: set[IPv4Address] = set()  # shared home addresses: in no set
        self.self_priority = priority - 1
        self.self_nat: dict[IPv4Address, IPv4Address] = {}  # home → temporary address
        # a visitor's add on the move's critical path: its neighbour entry and /32 in one
        # rtnetlink write, its set membership in one nfnetlink write (pyroute2 takes a
        # round trip and ~0.2-0.4 ms of Python per object); made by start()
        self.rt: rtbatch.RtBatch | None = None
        self.nf: rtbatch.RtBatch | None = None

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> int:
        await self.ipset.setup_endpoint()
        self.rt = rtbatch.RtBatch()
        self.nf = rtbatch.RtBatch(rtbatch.NETLINK_NETFILTER)
        self.lan_index = await self.nl.index(self.lan)
        removed = await self._remove_all()
        hook_chain(self.tables["raw"], "PREROUTING", ZONE_CHAIN)
        hook_chain(self.tables["mangle"], "PREROUTING", REALM_CHAIN)
        for name, hook in (("raw", "PREROUTING"), ("mangle", "PREROUTING"),
                           ("filter", "FORWARD"), ("nat", "POSTROUTING")):
            hook_chain(self.tables[name], hook, TWIN_CHAIN)
        hook_chain(self.tables["nat"], "POSTROUTING", SELF_CHAIN)
        mangle = self.tables["mangle"]
        mangle.refresh()
        restore = iptc.Rule()  # from any side: a local host's answers come by another link
        restore.create_match("conntrack").ctdir = "REPLY"
        t = iptc.Target(restore, "CONNMARK")
        t.restore_mark = ""
        t.nfmask = t.ctmask = f"{REALM_MASK:#x}"
        restore.target = t
        iptc.Chain(mangle, REALM_CHAIN).append_rule(restore)
        commit(mangle)
        return removed

    async def stop(self) -> None:
        await self._remove_all()
        self.ipset.close()
        for batch in (self.rt, self.nf):
            if batch is not None:
                batch.close()
        self.rt = self.nf = None

    async def _remove_all(self) -> int:
        removed = 0
        for name, hooks in (("raw", ("PREROUTING",)), ("mangle", ("PREROUTING",)),
                            ("filter", ("FORWARD",)), ("nat", ("POSTROUTING",))):
            removed += remove_chains(self.tables[name], hooks, (TWIN_CHAIN, ZONE_CHAIN,
                                                                REALM_CHAIN, SELF_CHAIN))[1]
        removed += await destroy_sets(self.ipset, SET_PREFIX)
        async for n in await self.nl.ipr.neigh("dump", ifindex=self.lan_index, family=2):
            dst = n.get("NDA_DST")
            if dst and IPv4Address(dst) in ALIASES and n["state"] & NUD_PERMANENT:
                await self._neigh_del(IPv4Address(dst))
                removed += 1
        for realm in list(self.realms.values()):
            await self._rules(realm, "del")
        self.realms.clear()
        async for rule in await self.nl.ipr.get_rules(family=2):
            if rule.get("priority") == self.self_priority and rule.get("table") == MAIN_TABLE:
                removed += await self.nl.rule_del(MAIN_TABLE, self.self_priority,
                                                  src=rule.get("src"), src_len=32)
        return removed

    # --- realms -----------------------------------------------------------------------

    def of(self, home_agent: IPv4Address) -> Realm | None:
        return self.realms.get(home_agent)

    async def create(self, home_agent: IPv4Address, device: str, ifindex: int) -> Realm:
        if not self.free_indexes:
            raise RuntimeError(f"visitors of more than {REALM_MASK >> REALM_SHIFT} home agents")
        index = self.free_indexes.pop()
        realm = Realm(index, home_agent, device, ifindex, self.base_table + index)
        await self.ipset.create(realm.set_name, stype="hash:ip")
        await self._rules(realm, "add")
        raw, mangle = self.tables["raw"], self.tables["mangle"]
        raw.refresh()
        zone = self._lan_rule(realm)
        t = iptc.Target(zone, "CT")
        t.zone_orig = str(index)
        zone.target = t
        iptc.Chain(raw, ZONE_CHAIN).append_rule(zone)
        commit(raw)
        mangle.refresh()
        chain = iptc.Chain(mangle, REALM_CHAIN)
        chain.append_rule(_connmark_new(self._lan_rule(realm), realm.mark))
        from_tunnel = iptc.Rule()
        from_tunnel.in_interface = device
        chain.append_rule(_connmark_new(from_tunnel, realm.mark))
        commit(mangle)
        self.realms[home_agent] = realm
        return realm

    async def drop(self, realm: Realm) -> None:
        self.realms.pop(realm.home_agent, None)
        for name, chain, match in (("raw", ZONE_CHAIN, realm.set_name),
                                   ("mangle", REALM_CHAIN, realm.set_name),
                                   ("mangle", REALM_CHAIN, realm.device)):
            table = self.tables[name]
            table.refresh()
            for rule in list(iptc.Chain(table, chain).rules):
                if rule.in_interface == match or any(
                        m.name == "set" and m.get_all_parameters().get("match-set", [None])[0]
                        == match for m in rule.matches):
                    iptc.Chain(table, chain).delete_rule(rule)
            commit(table)
        await self._rules(realm, "del")
        await self.nl.flush_table(realm.table)
        with contextlib.suppress(Exception):  # gone already
            await self.ipset.destroy(realm.set_name)
        self.free_indexes.append(realm.index)

    async def _rules(self, realm: Realm, how: str) -> None:
        for match in ({"iifname": realm.device},
                      {"fwmark": realm.mark, "fwmask": REALM_MASK}):
            if how == "add":
                await self.nl.rule_ensure(realm.table, self.priority, **match)
            else:
                await self.nl.rule_del(realm.table, self.priority, **match)

    def _lan_rule(self, realm: Realm) -> iptc.Rule:
        rule = iptc.Rule()
        rule.in_interface = self.lan
        set_match(rule, realm.set_name, "src")
        return rule

    # --- visitors ---------------------------------------------------------------------

    async def add(self, key: VisitorKey, realm: Realm, main_table: int) -> None:
        """The visitor's delivery.  The first visitor with a home address gets a permanent
        neighbour entry (home address → MAC) and ``HOME dev LAN`` in ``main_table``; one
        that shares it gets a next-hop alias (alias → MAC) and ``HOME via alias`` in its
        realm's table, which traffic of its realm consults first.  Not an alias for
        everyone: routes with a gateway each need a fib_info, which the kernel finds by a
        hash that ignores the gateway, so adding one costs O(visitors)."""
        home, mac = key
        holder = self.primary.setdefault(home, key)
        if self.rt is None or self.nf is None:
            raise RuntimeError("Realms: a visitor before start()")
        if holder == key:
            await self.rt.run([rtbatch.neighbour(home, self.lan_index, mac),
                               rtbatch.route(True, home, main_table, self.lan_index)])
        elif key not in self.aliases:
            alias = self.aliases[key] = ALIASES[self.free_aliases.pop()]
            await self._neigh_set(alias, mac)
            await self.nl.ipr.route("replace", dst=f"{home}/32", table=realm.table,
                                    gateway=str(alias), oif=self.lan_index,
                                    flags=4)  # RTNH_F_ONLINK
        if key not in realm.members and home not in self.unlisted:
            await self.nf.run([member_request(True, realm.set_name, home)])
        realm.members.add(key)

    async def remove(self, key: VisitorKey, realm: Realm, main_table: int,
                     successor: tuple[VisitorKey, Realm] | None) -> None:
        """Undo add(); if the home address is still another visitor's (``successor``),
        that one takes over the neighbour entry."""
        home, _ = key
        realm.members.discard(key)
        if home not in self.unlisted:
            await set_member(self.ipset, False, realm.set_name, home)
        await self._drop_alias(key, realm)
        if self.primary.get(home) != key:
            return
        if successor is None:
            del self.primary[home]
            await self.nl.route_del(IPv4Network(home), main_table)
            await self._neigh_del(home)
            return
        self.primary[home] = successor[0]
        await self._drop_alias(*successor)
        await self._neigh_set(home, successor[0][1])

    async def _drop_alias(self, key: VisitorKey, realm: Realm) -> None:
        alias = self.aliases.pop(key, None)
        if alias is not None:
            await self.nl.route_del(IPv4Network(key[0]), realm.table)
            await self._neigh_del(alias)
            self.free_aliases.append(int(alias) - int(ALIASES.network_address))

    def alias_of(self, key: VisitorKey) -> IPv4Address | None:
        return self.aliases.get(key)

    async def unlist(self, home: IPv4Address) -> None:
        """``home`` is shared now: out of the realm sets (the twin rules match it)."""
        if home not in self.unlisted:
            self.unlisted.add(home)
            await move_members(self.ipset, False, home, self._member_realms(), self._set_name)

    async def relist(self, home: IPv4Address) -> None:
        if home in self.unlisted:
            self.unlisted.discard(home)
            await move_members(self.ipset, True, home, self._member_realms(), self._set_name)

    def _member_realms(self) -> dict[VisitorKey, IPv4Address]:
        return {key: realm.home_agent for realm in self.realms.values() for key in realm.members}

    def _set_name(self, home_agent: IPv4Address) -> str:
        return self.realms[home_agent].set_name

    async def _neigh_set(self, address: IPv4Address, mac: bytes) -> None:
        await self.nl.ipr.neigh("replace", dst=str(address), ifindex=self.lan_index,
                                lladdr=mac.hex(":"), state=NUD_PERMANENT)

    async def _neigh_del(self, address: IPv4Address) -> None:
        try:
            await self.nl.ipr.neigh("del", dst=str(address), ifindex=self.lan_index)
        except Exception as exc:  # noqa: BLE001 - pyroute2's NetlinkError; gone is fine
            if getattr(exc, "code", None) not in GONE:
                raise

    # --- a host on the visited site with a visitor's own address (Figs. 3c, 5: CN 4c) ----

    async def self_nat_add(self, home: IPv4Address, temporary: IPv4Address) -> None:
        """What the visitor sends to its own address goes where the main table says (the
        local host, not back to it: ``from HOME to HOME iif LAN lookup main``), its source
        translated to ``temporary``; the host's answers come back to it through conntrack."""
        if self.self_nat.get(home) == temporary:
            return
        await self.self_nat_remove(home)
        await self.nl.rule_ensure(MAIN_TABLE, self.self_priority, src=str(home), src_len=32,
                                  dst=str(home), dst_len=32, iifname=self.lan)
        nat = self.tables["nat"]
        nat.refresh()
        rule = iptc.Rule()
        rule.src = rule.dst = str(home)
        target = iptc.Target(rule, "SNAT")
        target.to_source = str(temporary)
        rule.target = target
        iptc.Chain(nat, SELF_CHAIN).append_rule(rule)
        commit(nat)
        self.self_nat[home] = temporary

    async def self_nat_remove(self, home: IPv4Address) -> None:
        if self.self_nat.pop(home, None) is None:
            return
        await self.nl.rule_del(MAIN_TABLE, self.self_priority, src=str(home), src_len=32,
                               dst=str(home), dst_len=32, iifname=self.lan)
        nat = self.tables["nat"]
        nat.refresh()
        chain = iptc.Chain(nat, SELF_CHAIN)
        for rule in list(chain.rules):
            if rule.src.split("/")[0] == str(home):
                chain.delete_rule(rule)
        commit(nat)

    # --- visitors sharing a home address ----------------------------------------------

    def rebuild_twins(self, twins: list[Twin], profile_mask: int) -> None:
        """MIPRO-TWIN in each table: by (address, MAC) on the way in, by realm mark on the
        way out, what the sets do for everyone else.  Rebuilt whole: twins are rare."""
        rules: dict[str, list[iptc.Rule]] = {"raw": [], "mangle": [], "filter": [], "nat": []}
        for t in twins:
            zone = self._twin_in(t)
            target = iptc.Target(zone, "CT")
            target.zone_orig = str(t.realm.index)
            zone.target = target
            rules["raw"].append(zone)
            mark = self._twin_in(t)
            target = iptc.Target(mark, "MARK")
            target.set_xmark = f"{t.realm.mark | t.profile_mark:#x}/" \
                               f"{REALM_MASK | (profile_mask if t.profile_mark else 0):#x}"
            mark.target = target
            rules["mangle"].append(mark)
            rules["mangle"].append(_connmark_new(self._twin_in(t), t.realm.mark))
            if t.policy_chain:
                into = self._twin_in(t)
                into.target = iptc.Target(into, t.policy_chain)
                out = iptc.Rule()
                out.out_interface = self.lan
                out.dst = str(t.home)
                _mark_match(out, t.realm.mark)
                out.target = iptc.Target(out, t.policy_chain)
                rules["filter"] += [into, out]
            if t.nat_chain:
                nat = iptc.Rule()
                nat.src = str(t.home)
                _mark_match(nat, t.realm.mark)
                nat.target = iptc.Target(nat, t.nat_chain)
                rules["nat"].append(nat)
        for name, wanted in rules.items():
            table = self.tables[name]
            table.refresh()
            chain = iptc.Chain(table, TWIN_CHAIN)
            chain.flush()
            for rule in wanted:
                chain.append_rule(rule)
            commit(table)

    def _twin_in(self, t: Twin) -> iptc.Rule:
        rule = iptc.Rule()
        rule.in_interface = self.lan
        rule.src = str(t.home)
        rule.create_match("mac").mac_source = t.mac.hex(":")
        return rule


def _connmark_new(rule: iptc.Rule, mark: int) -> iptc.Rule:
    rule.create_match("conntrack").ctstate = "NEW"
    t = iptc.Target(rule, "CONNMARK")
    t.set_xmark = f"{mark:#x}/{REALM_MASK:#x}"
    rule.target = t
    return rule


def _mark_match(rule: iptc.Rule, mark: int) -> None:
    rule.create_match("mark").mark = f"{mark:#x}/{REALM_MASK:#x}"
