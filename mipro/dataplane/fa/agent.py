"""The foreign agent's kernel state.

Per accepted visitor: a permanent neighbour entry (home address → the MN's
link-layer address: the FA never ARPs for a home address) and a /32 route on
the visited link in mipro's table, so decapsulated traffic reaches the MN;
a second MN with the same home address (from another home agent) is reached
through a next-hop alias in its home agent's realm table (realms.py).

What the MN sends is routed by source (seed Fig. 5): packets from its home
address on the link are marked for its route profile and routed by the
profile's table (routeprofiles.py), which holds the static routes its home
agent sent, with their costs as metrics — the tunnel for the home network
and the internet, the local interface for correspondents on the visited
site — plus, with reverse tunnelling (RFC 3024), a default route into the
tunnel.  Its filter rules are those of its policy (visitorfw.py: an ipset
membership and a shared chain).  All of it goes when the visitor does, with
the visitor's conntrack entries, so a denied flow cannot live on.

Each home agent has a tunnel device of its own: an ipip link (kernel
backend) or a TUN of the relay (userspace backend), named
``mipf-<HA address in hex>``.

As the previous FA of a visitor that moved on (an authenticated Binding
Update with a lifetime: a forwarding pointer), the relay re-tunnels what
its home agent still sends us for it to the new care-of address, and what
arrives natively for it (a local correspondent whose route has not moved
yet) goes into a TUN towards that address, ``mipf-f<care-of in hex>``.  As
the new FA, what the previous FA re-tunnels is accepted from it for the
visitor that named it, and delivered through the visitor's realm as if its
home agent had sent it.  The kernel backend does the same with ipip links:
``mipf-f<care-of>`` (to the new care-of address) takes the visitor's /32 in our
table, so what the home agent's link decapsulates and what arrives natively
both go there; the home agent's link and realm stay while a pointer needs
them; as the new FA, ``mipf-p<previous FA>`` decapsulates what the previous FA
re-tunnels for as long as a visitor that named it is here.  It has no replay
buffer (the relay's; the kernel keeps no copies of what it delivered).

A home agent may run on the same host: the FA's objects are its own by name
(links ``mipf-*``), by table (``table`` .. ``table + 8447``) and by rule priority
(``rule_priority - 3`` .. ``rule_priority``), and its cleanup touches nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from pyroute2 import AsyncConntrack

from ...core.fa import CacheEntry, Visitor, VisitorKey
from ...wire.vendor import FilterRule, StaticRoute, Verdict
from ..kernel.errors import KERNEL_ERRORS
from ..kernel.filters import fail_closed
from ..kernel.ipset import ipset_available
from ..kernel.netlink import Netlink, set_sysctl
from ..relay.relay import MTU, UserspaceTunnel
from .realms import REALM_MASK, REALM_SHIFT, IdleRealms, Realm, Realms, Twin
from .routeprofiles import MARK_MASK, MARK_SHIFT, RouteProfiles
from .siteroutes import SiteRoutes
from .visitorfw import PerVisitorChains, VisitorFirewall

LINK_PREFIX = "mipf-"  # the FA's links; the HA's are "miph-" (one host may run both)
DEFAULT = IPv4Network("0.0.0.0/0")
TABLE_OFFSET = 16  # route profile tables: table + 16 + 1 .. + (MARK_MASK >> MARK_SHIFT)
PROFILE_TABLES = MARK_MASK >> MARK_SHIFT
REALM_TABLE_OFFSET = 8192  # realm delivery tables: table + 8192 + 1 .. + 255
REPLAY_PACKETS = 256  # at most this many recent packets per visitor for a replay
REPLAY_LEFT = 64  # buffers of visitors that just left, waiting for their pointer
HOLD_BYTES = 1 << 20  # what a home agent's tunnel brings a visitor still being added
HOLD_EARLY = 2.0  # seconds a request's early hold lasts without its reply (then dropped)
REVERSE_METRIC = 1000  # reverse tunnelling default: costlier than any profile route
# what a visitor gets when its home agent sent a filter rule we cannot build exactly: its
# policy chain sees only its packets, so this drops all it sends or receives through us
DENY_ALL = (FilterRule(verdict=Verdict.DENY),)


class FaDataplane:
    def __init__(self, *, backend: str, interface: str, care_of: IPv4Address, table: int,
                 rule_priority: int, log: Any, replay: float = 0.0,
                 site_table: int = 0, site_networks: tuple[IPv4Network, ...] = (),
                 site_metric: int = 0, site_interfaces: tuple[str, ...] = ()) -> None:
        self.name = backend
        self.lan = interface
        self.coa = care_of
        self.table = table  # delivery routes to visitors
        self.prio = rule_priority
        self.log = log
        self.nl = Netlink()
        self.relay: UserspaceTunnel | None = None
        self.visitors: dict[VisitorKey, Visitor] = {}
        self.by_realm: dict[tuple[IPv4Address, IPv4Address], Visitor] = {}  # (home, HA)
        self.by_home: dict[IPv4Address, dict[VisitorKey, Visitor]] = {}
        self.ha_links: dict[IPv4Address, tuple[str, int]] = {}  # tunnel devices: name, index
        self.lan_index = 0
        self.firewall: VisitorFirewall | PerVisitorChains | None = None
        self.conntrack: AsyncConntrack | None = None
        self.ct_doomed: set[tuple[IPv4Address, int | None]] = set()  # (home, realm mark)
        self.ct_task: asyncio.Task | None = None
        self.profiles = RouteProfiles(self.nl, interface, table + TABLE_OFFSET,
                                      rule_priority - 1, self._route_args)
        self.realms = Realms(self.nl, interface, table + REALM_TABLE_OFFSET, rule_priority - 2)
        # hosts on the visited site by host route: host → (our address towards it, interface)
        self.local_hosts: dict[IPv4Address, tuple[IPv4Address, str]] = {}
        self.watch_task: asyncio.Task | None = None
        # forwarding pointers (we were the previous FA): (home, HA) → entry
        self.forwards: dict[tuple[IPv4Address, IPv4Address], CacheEntry] = {}
        self.native_forward: dict[IPv4Address, CacheEntry] = {}  # home → its routed entry
        self.fwd_links: dict[IPv4Address, tuple[str, int]] = {}  # care-of → TUN/ipip link
        self.prev_links: dict[IPv4Address, str] = {}  # kernel: previous FA → its ipip link
        # what a previous FA re-tunnels to us: (previous FA, home) → visitors that named it
        self.from_previous: dict[tuple[IPv4Address, IPv4Address], set[VisitorKey]] = {}
        # smooth handoff with buffering (Perkins and Wang): the last ``replay`` seconds of
        # what we delivered from each home agent's tunnel, by (home, HA); a visitor that
        # moved on gets them again through the pointer (it may have missed them while its
        # link was down).  Kept a little while after the visitor goes, for the pointer.
        self.replay = replay
        # visitors' /32s for the site's routing daemon (siteroutes.py)
        self.site = SiteRoutes(self.nl, site_table, site_networks, site_metric) \
            if site_table else None
        self.site_interfaces = site_interfaces
        self.recent: dict[tuple[IPv4Address, IPv4Address], deque[tuple[float, bytes]]] = {}
        # a visitor being added: the home agent tunnels to us as soon as it has sent its
        # reply, before our realm device and routes are there; what comes meanwhile for
        # (home, HA) is kept (at most HOLD_BYTES in all) and delivered once they are
        self.adding: dict[tuple[IPv4Address, IPv4Address], list[bytes]] = {}
        self.held_bytes = 0
        # and before that, from the relay of its request (the home agent tunnels to us once
        # it has accepted, a moment before its reply is here): the engine's ``awaiting``
        # says which (home, HA) have a request out; held until the add, HOLD_EARLY at most
        self.awaiting: Callable[[IPv4Address, IPv4Address], bool] | None = None
        self.early: dict[tuple[IPv4Address, IPv4Address], tuple[float, list[bytes]]] = {}
        self.left: OrderedDict[tuple[IPv4Address, IPv4Address],
                               deque[tuple[float, bytes]]] = OrderedDict()
        # realms kept a while after their last visitor (fa.realms.linger; realms.py)
        self.idle = IdleRealms()
        self.profiles.keep = lambda ha: self.idle.linger > 0 and self.idle.keep(ha)

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
        removed = await self.firewall.start() + await self.profiles.start() + \
            await self.realms.start()
        if removed:
            self.log("reconciled-leftovers", chains=removed)
        # MN <-> local correspondents go through us (the mobile firewall sees them): no ICMP
        # redirects telling either side to talk directly (the kernel ORs all and the link)
        for name in ("all", self.lan):
            old = set_sysctl(f"net.ipv4.conf.{name}.send_redirects", "0")
            if old is not None:
                self.log("sysctl", name=f"net.ipv4.conf.{name}.send_redirects", value=0, was=old)
        if self.name == "userspace":  # no TUN of its own: one per home agent (_ha_device)
            self.relay = UserspaceTunnel("", self.coa, lambda src, dst: None, self._accept)
            self.relay.redirect = self._redirect
            self.relay.inbound_peer = self._inbound_peer
            self.relay.hold = self._hold
            if self.replay > 0:
                self.relay.delivered = self._keep_recent
            self.relay.open()
            if loop is not None:
                self.relay.start_reading(loop)
        await self.nl.rule_ensure(self.table, self.prio)
        if self.site is not None:
            if await self.site.start(self.lan_index):
                self.log("reconciled-leftovers", table=self.site.table)
            missing = [n for n in self.site_interfaces if await self.nl.maybe_index(n) is None]
            self.log("site-routes", "warning" if missing else "info", table=self.site.table,
                     interfaces=",".join(self.site_interfaces),
                     **({"missing": ",".join(missing)} if missing else {}))
        await self._read_local_hosts()
        if loop is not None:
            self.watch_task = loop.create_task(self._watch_local_hosts())

    async def cleanup_leftovers(self) -> None:
        count = 0
        last = self.table + REALM_TABLE_OFFSET + (REALM_MASK >> 8)
        tables = set()
        ours = (self.prio, self.prio - 1, self.prio - 2)  # delivery, route profiles, realms
        for rule in await self.nl.rules_for_table_range(self.table, last):
            if rule["priority"] not in ours:
                continue
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
        if self.watch_task is not None:
            self.watch_task.cancel()
        for e in list(self.forwards.values()):
            await self.remove_forward(e)
        for v in list(self.visitors.values()):
            await self.remove_visitor(v)
        self.idle.since.clear()  # realms.stop() and the device loop below take them
        await self.nl.rule_del(self.table, self.prio)
        if self.site is not None:
            await self.site.stop()
        await self.flows_forgotten()
        await self.profiles.stop()
        await self.realms.stop()
        if self.firewall is not None:
            await self.firewall.stop()
        if self.conntrack is not None:
            self.conntrack.close()
        for ha in list(self.ha_links):
            await self._drop_ha_device(ha)
        if self.relay is not None:
            self.relay.close()
        self.nl.close()

    # --- visitors ---------------------------------------------------------------------

    def sharing(self, home: IPv4Address) -> list[Visitor]:
        return list(self.by_home.get(home, {}).values())

    async def add_visitor(self, v: Visitor, previous: Visitor | None = None) -> None:
        pair = (v.home_address, v.home_agent)
        new = pair not in self.by_realm
        if new:
            self.adding.setdefault(pair, []).extend(self.early.pop(pair, (0.0, []))[1])
        added = False
        try:
            await self._add_visitor(v, previous)
            added = True
        finally:
            held = self.adding.pop(pair, []) if new else []
            self.held_bytes -= sum(len(p) for p in held)
            if held and self.relay is not None:
                if added and self.by_realm.get(pair) is v:
                    sent = sum(self.relay.deliver(v.home_agent, v.home_address, p, v.key)
                               for p in held)
                    self.log("held-delivered", "debug", home=v.home_address, packets=sent)
                else:  # refused (the MN hears 66): not for a visitor of ours after all
                    self.relay.stats.dropped_unauthorised += len(held)

    def _hold(self, outer_src: IPv4Address, inner_dst: IPv4Address, pkt: bytes) -> bool:
        pair = (inner_dst, outer_src)
        q = self.adding.get(pair)
        if q is None and self.awaiting is not None and pair not in self.by_realm:
            q = self._early_queue(pair)
        if q is None or self.held_bytes + len(pkt) > HOLD_BYTES:
            return False
        q.append(pkt)
        self.held_bytes += len(pkt)
        return True

    def _early_queue(self, pair: tuple[IPv4Address, IPv4Address]) -> list[bytes] | None:
        """The early hold of a request still out, made by its first packet (None if there
        is no such request).  It lasts until the add takes it, or HOLD_EARLY: a denied or
        unanswered request's packets go then (the engine's mark goes with the reply, a
        moment before the add, so the mark is looked at only to begin one)."""
        if pair in self.early:
            return self.early[pair][1]
        if self.awaiting is None or not self.awaiting(*pair):
            return None
        now = time.monotonic()
        self.early[pair] = (now, [])
        with contextlib.suppress(RuntimeError):  # no loop: a test's direct call
            asyncio.get_running_loop().call_later(HOLD_EARLY, self._expire_early, pair, now)
        return self.early[pair][1]

    def _expire_early(self, pair: tuple[IPv4Address, IPv4Address], since: float) -> None:
        if pair not in self.early or self.early[pair][0] != since:
            return  # taken by the add (or a newer one)
        _, held = self.early.pop(pair)
        self.held_bytes -= sum(len(x) for x in held)
        if held and self.relay is not None and (e := self.forwards.get(pair)) is not None:
            sent = sum(self.relay.encapsulate((e.care_of_address, e.encapsulation, e.key), p)
                       for p in held)  # a pointer's (_redirect): where the MN still is
            self.log("held-forwarded", "debug", home=pair[0], ha=pair[1], packets=sent,
                     to=e.care_of_address, reason="no accepted reply")
            return
        if self.relay is not None:
            self.relay.stats.dropped_unauthorised += len(held)
        if held:
            self.log("held-dropped", "debug", home=pair[0], ha=pair[1], packets=len(held),
                     reason="no accepted reply")

    async def _add_visitor(self, v: Visitor, previous: Visitor | None = None) -> None:
        current = self.visitors.get(v.key)
        if current is not None and current.home_agent != v.home_agent:
            await self.remove_visitor(current)  # registered with another home agent now
            previous = None
        if isinstance(self.firewall, PerVisitorChains) and \
                any(o.key != v.key for o in self.sharing(v.home_address)):
            raise RuntimeError(f"{v.home_address} is another visitor's home address too; "
                               "telling them apart needs ipsets")
        self.visitors[v.key] = v
        self.by_realm[(v.home_address, v.home_agent)] = v
        self.by_home.setdefault(v.home_address, {})[v.key] = v
        if v.notify is not None and v.notify.cache_lifetime:  # it asked for forwarding
            self.from_previous.setdefault((v.notify.previous_fa, v.home_address),
                                          set()).add(v.key)
        self.idle.used(v.home_agent)
        if self.realms.of(v.home_agent) is None and not self.realms.free_indexes:
            await self._evict_idle()
        device, index = await self._ha_device(v.home_agent)
        if v.notify is not None and v.notify.cache_lifetime:
            await self._prev_device(v.notify.previous_fa)
        realm = self.realms.of(v.home_agent) or \
            await self.realms.create(v.home_agent, device, index)
        await self.realms.add(v.key, realm, self.table)
        if v.temporary_address is not None:
            await self._self_nat(v, v.temporary_address)
        elif previous is not None and previous.temporary_address is not None:
            await self.realms.self_nat_remove(v.home_address)
        if self.site is not None:
            await self.site.sync(v.home_address, self.sharing(v.home_address))
        same = previous is not None and (previous.routes, previous.filters,
                                         previous.reverse_tunnel, previous.home_agent) == \
            (v.routes, v.filters, v.reverse_tunnel, v.home_agent)
        if same and v.key in self.profiles.member_of:
            return  # a renewal that changes nothing
        if v.home_address in self.realms.unlisted:  # no twin rule may name a chain to go
            await self._rebuild_twins(skip=v.key)
        await self._apply_routes(v)
        filters, why = fail_closed(v.filters, DENY_ALL)
        if why is not None:
            self.log("filters-refused", "error", home=v.home_address, home_agent=v.home_agent,
                     reason=why, applied="deny-all")
        await self._firewall().apply(v.key, filters)
        if len(self.sharing(v.home_address)) > 1:  # twins: told apart by MAC (realms.py)
            await self._share(v.home_address, True)
            await self._rebuild_twins()
        if previous is not None:  # changed policy: flows admitted under the old one go
            shared = len(self.sharing(v.home_address)) > 1
            self._forget_flows(v.home_address, realm.mark if shared else None)

    async def remove_visitor(self, v: Visitor) -> None:
        found = self.visitors.pop(v.key, None)
        if found is None:
            return
        v = found  # ours, as added (the caller's may be a newer copy)
        home = v.home_address
        self.by_realm.pop((home, v.home_agent), None)
        if (recent := self.recent.pop((home, v.home_agent), None)) is not None:
            self.left[(home, v.home_agent)] = recent
            while len(self.left) > REPLAY_LEFT:
                self.left.popitem(last=False)
        for pair, keys in list(self.from_previous.items()):
            keys.discard(v.key)
            if not keys:
                del self.from_previous[pair]
        await self._drop_prev_devices()
        sharing = self.by_home.get(home, {})
        sharing.pop(v.key, None)
        if not sharing:
            self.by_home.pop(home, None)
        others = self.sharing(home)
        twin = home in self.realms.unlisted
        if twin:  # its MIPRO-TWIN rules go first: they jump to chains that may go now
            await self._rebuild_twins()
        realm = self.realms.of(v.home_agent)
        if realm is not None:
            successor = (others[0].key, self._realm(others[0])) if others else None
            await self.realms.remove(v.key, realm, self.table, successor)
        await self.profiles.leave(v.key)
        await self._firewall().remove(v.key)
        if not any(o.temporary_address for o in others):
            await self.realms.self_nat_remove(home)
        if twin and len(others) <= 1:  # its home address is one visitor's alone again
            await self._share(home, False)
            await self._rebuild_twins()
        self._forget_flows(home, realm.mark if realm and others else None)
        if self.site is not None:
            await self.site.sync(home, others)
        try:  # a pointer asked for before this removal takes the address now
            await self._route_native(home)
        except KERNEL_ERRORS as exc:
            self.log("forwarding-unavailable", "warning", home=home, backend=self.name,
                     reason=repr(exc))
        if realm is not None and not realm.members and not self._kernel_forwards(v.home_agent):
            await self._retire(realm)

    # --- realms without visitors ----------------------------------------------------------

    async def _retire(self, realm: Realm) -> None:
        """A realm its last visitor (or kernel pointer) left: kept ``fa.realms.linger``
        seconds for a home agent we trust (IdleRealms), else gone now with its device."""
        if self.idle.retire(realm.home_agent, time.monotonic()):
            self.log("realm-idle", "debug", home_agent=realm.home_agent, realm=realm.index,
                     linger=self.idle.linger)
        else:
            await self._drop_realm(realm)

    async def _drop_realm(self, realm: Realm) -> None:
        self.idle.used(realm.home_agent)
        await self.profiles.drop_empty(realm.home_agent)  # their routes use its device
        await self.realms.drop(realm)
        await self._drop_ha_device(realm.home_agent)

    def _still_idle(self, ha: IPv4Address) -> Realm | None:
        realm = self.realms.of(ha)
        if realm is None or realm.members or self._kernel_forwards(ha):
            self.idle.used(ha)  # in use after all
            return None
        return realm

    async def _evict_idle(self) -> None:
        """All realm indexes taken: the longest idle realm goes for the new one."""
        while (ha := self.idle.oldest()) is not None:
            if (realm := self._still_idle(ha)) is not None:
                self.log("realm-evicted", home_agent=ha, realm=realm.index)
                await self._drop_realm(realm)
                return

    def idle_deadline(self) -> float | None:
        """When (time.monotonic()) the first realm or route profile kept without visitors
        has been so for ``fa.realms.linger``."""
        when = [t for t in (self.idle.deadline(), self.profiles.empty_deadline(
            self.idle.linger)) if t is not None]
        return min(when) if when else None

    async def expire_idle(self, now: float | None = None) -> int:
        """Drop the realms and route profiles whose linger is over."""
        now = time.monotonic() if now is None else now
        dropped = await self.profiles.drop_expired(now, self.idle.linger)
        for ha in self.idle.due(now):
            if (realm := self._still_idle(ha)) is not None:
                self.log("realm-expired", home_agent=ha, realm=realm.index)
                await self._drop_realm(realm)
                dropped += 1
        return dropped

    def realms_status(self) -> list[dict[str, object]]:
        now = time.monotonic()
        return [{"home_agent": str(r.home_agent), "index": r.index, "device": r.device,
                 "visitors": len(r.members),
                 "idle": round(now - self.idle.since[ha], 1) if ha in self.idle.since
                 else None}
                for ha, r in self.realms.realms.items()]

    # --- forwarding pointers (draft-ietf-mobileip-optim smooth handoff) ------------------

    async def add_forward(self, e: CacheEntry) -> None:
        """Re-tunnel what still comes for a visitor that moved on to its new care-of
        address: from its home agent's tunnel (the relay, in its realm), and natively
        when no visitor here holds that home address and no other realm forwards it."""
        if self.relay is None and e.encapsulation != "ipip":
            self.log("forwarding-unavailable", "warning", home=e.home_address,
                     backend=self.name, encapsulation=e.encapsulation,
                     reason="the kernel backend's links are ipip")
            return
        self.forwards[e.key] = e  # the relay redirects from now on (_redirect)
        self._replay(e)
        try:
            await self._route_native(e.home_address)
        except KERNEL_ERRORS as exc:  # the kernel refused the link or route: no pointer
            self.log("forwarding-unavailable", "warning", home=e.home_address,
                     backend=self.name, reason=repr(exc))
            await self.remove_forward(e)

    async def _route_native(self, home: IPv4Address) -> None:
        """What arrives for ``home`` natively goes to its one pointer's TUN, once no visitor
        here holds that address (the engine asks for the pointer before the visitor's
        removal: remove_visitor comes back here) and no other realm forwards it."""
        entries = [f for f in self.forwards.values() if f.home_address == home]
        if not entries:
            return
        if self.sharing(home) or len(entries) > 1:
            if len(entries) > 1 and home in self.native_forward:  # two realms: neither
                await self._unroute_native(home)
            return
        e = entries[0]
        if self.native_forward.get(home) is e:
            return
        name, index = await self._fwd_device(e.care_of_address)
        await self.nl.ipr.route("replace", dst=f"{home}/32", table=self.table, oif=index,
                                scope=253)
        self.native_forward[home] = e

    def _keep_recent(self, outer_src: IPv4Address, inner_dst: IPv4Address, pkt: bytes) -> None:
        key = (inner_dst, outer_src)
        if key not in self.by_realm:  # a previous FA's re-tunnelled packet: not ours to keep
            return
        q = self.recent.get(key)
        if q is None:
            q = self.recent[key] = deque(maxlen=REPLAY_PACKETS)
        now = time.monotonic()
        q.append((now, pkt))
        while q[0][0] < now - self.replay:
            q.popleft()

    def _replay(self, e: CacheEntry) -> None:
        """Re-tunnel what we delivered in the last ``replay`` seconds: the MN may have been
        off its link already (it cannot tell us which it got; duplicates are possible).
        The visitor may still be here (its removal follows) or have just left."""
        q = self.left.pop(e.key, None) or self.recent.pop(e.key, None)
        if q is None or self.relay is None:
            return
        since = time.monotonic() - self.replay
        sent = sum(self.relay.encapsulate((e.care_of_address, e.encapsulation, e.key), pkt)
                   for t, pkt in q if t >= since)
        if sent:
            self.log("forwarding-replayed", home=e.home_address, packets=sent,
                     to=e.care_of_address)

    async def remove_forward(self, e: CacheEntry) -> None:
        if self.forwards.pop(e.key, None) is None:
            return
        if self.native_forward.get(e.home_address) is e:
            await self._unroute_native(e.home_address)
        coa = e.care_of_address
        if not any(f.care_of_address == coa for f in self.native_forward.values()):
            await self._drop_fwd_device(coa)
        realm = self.realms.of(e.home_agent)
        if self.relay is None and realm is not None and not realm.members and \
                not self._kernel_forwards(e.home_agent):  # kept for the pointer: goes now
            await self._retire(realm)

    def _kernel_forwards(self, ha: IPv4Address) -> bool:
        """Kernel backend: a pointer of ``ha``'s realm needs its ipip link (which
        decapsulates what the home agent still sends), so the link and realm stay."""
        return self.relay is None and any(f.home_agent == ha for f in self.forwards.values())

    async def _unroute_native(self, home: IPv4Address) -> None:
        self.native_forward.pop(home, None)
        if not self.sharing(home):  # else the route is a visitor's delivery now
            await self.nl.route_del(IPv4Network(home), self.table)

    async def _fwd_device(self, coa: IPv4Address) -> tuple[str, int]:
        if coa not in self.fwd_links and self.relay is None:  # kernel: an ipip link
            name = f"{LINK_PREFIX}f{coa.packed.hex()}"
            await self.nl.ipr.link("add", ifname=name, kind="ipip", ipip_local=str(self.coa),
                                   ipip_remote=str(coa), ipip_ttl=64)
            self.fwd_links[coa] = (name, await self.nl.link_up(name))
            set_sysctl(f"net.ipv4.conf.{name}.rp_filter", "0")
        if coa not in self.fwd_links:
            name = f"{LINK_PREFIX}f{coa.packed.hex()}"

            def peer_of(src: IPv4Address, dst: IPv4Address):
                e = self.native_forward.get(dst)
                if e is None or e.care_of_address != coa:
                    return None
                return (coa, e.encapsulation, e.key)
            assert self.relay is not None
            self.relay.add_peer_tun(coa, name, peer_of)
            index = await self.nl.link_up(name, MTU)
            set_sysctl(f"net.ipv4.conf.{name}.rp_filter", "0")
            self.fwd_links[coa] = (name, index)
        return self.fwd_links[coa]

    async def _drop_fwd_device(self, coa: IPv4Address) -> None:
        link = self.fwd_links.pop(coa, None)
        if link is None:
            return
        if self.relay is not None:  # closed a moment later: the kernel takes its time
            self.relay.remove_peer_tun(coa, later=True)
        else:
            await self.nl.link_del(link[0])

    async def _prev_device(self, previous_fa: IPv4Address) -> None:
        """Kernel backend, as the new FA: an ipip link from the previous FA, which
        decapsulates what it re-tunnels; our table delivers it (the relay checks each
        packet against ``from_previous`` instead)."""
        if self.relay is not None or previous_fa in self.prev_links:
            return
        name = f"{LINK_PREFIX}p{previous_fa.packed.hex()}"
        try:
            await self.nl.ipr.link("add", ifname=name, kind="ipip", ipip_local=str(self.coa),
                                   ipip_remote=str(previous_fa), ipip_ttl=64)
            await self.nl.link_up(name)
        except KERNEL_ERRORS as exc:  # the registration stands; only the pointer's data goes
            self.log("forwarding-unavailable", "warning", previous_fa=previous_fa,
                     backend=self.name, reason=repr(exc))
            await self.nl.link_del(name)
            return
        set_sysctl(f"net.ipv4.conf.{name}.rp_filter", "0")
        self.prev_links[previous_fa] = name

    async def _drop_prev_devices(self) -> None:
        named = {fa for fa, _ in self.from_previous}
        for fa in [fa for fa in self.prev_links if fa not in named]:
            await self.nl.link_del(self.prev_links.pop(fa))

    def _redirect(self, outer_src: IPv4Address, inner_dst: IPv4Address):
        """The relay asks first: is this, from a home agent's tunnel, for a visitor of
        that realm that moved on (and is not back)?  Then where it goes now."""
        pair = (inner_dst, outer_src)
        e = self.forwards.get(pair)
        if e is None:  # (the engine ends a pointer before its visitor is back)
            return None
        if pair in self.adding or (self.awaiting is not None and self.awaiting(*pair)):
            # the MN is registering with us again and its home agent tunnels to us already
            # (it accepted; its reply is on the way): held for it (_hold), not sent back
            # where it was; if no accepted reply comes, sent on through the pointer then
            return None
        return (e.care_of_address, e.encapsulation, e.key)

    def _from_previous(self, outer_src: IPv4Address, inner_dst: IPv4Address) -> Visitor | None:
        keys = self.from_previous.get((outer_src, inner_dst))
        if keys is None or len(keys) != 1:  # two visitors named it: cannot tell which
            return None
        return self.visitors.get(next(iter(keys)))

    def _inbound_peer(self, outer_src: IPv4Address, inner_dst: IPv4Address) -> IPv4Address:
        if (inner_dst, outer_src) not in self.by_realm and \
                (v := self._from_previous(outer_src, inner_dst)) is not None:
            return v.home_agent  # into its realm's device, as its home agent's would
        return outer_src

    def forwarded(self, key: tuple[IPv4Address, IPv4Address]) -> dict[str, int] | None:
        if self.relay is None:
            return None
        c = self.relay.stats.per_key.get(key)
        return c.as_dict() if c else None

    def _firewall(self) -> VisitorFirewall | PerVisitorChains:
        """The mobile firewall start() chose (ipsets if this kernel has them)."""
        if self.firewall is None:
            raise RuntimeError("FaDataplane: a visitor before start()")
        return self.firewall

    def _realm(self, v: Visitor) -> Realm:
        """The realm of a visitor that is ours (add_visitor made it before anything else)."""
        realm = self.realms.of(v.home_agent)
        if realm is None:
            raise RuntimeError(f"visitor {v.home_address} of {v.home_agent} has no realm")
        return realm

    # --- a host on the visited site with a visitor's own address (Figs. 3c, 5: CN 4c) ----

    def address_in_use(self, home: IPv4Address) -> IPv4Address | None:
        """Our address towards a host on the visited site that has ``home`` (a host route in
        the main table out of another interface than the visitors' link), else None."""
        found = self.local_hosts.get(home)
        return found[0] if found else None

    async def _self_nat(self, v: Visitor, temporary: IPv4Address) -> None:
        await self.realms.self_nat_add(v.home_address, temporary)
        # the host's answers arrive there with a source our table routes to the visitor
        name = self.local_hosts.get(v.home_address, (None, None))[1]
        old = set_sysctl(f"net.ipv4.conf.{name}.rp_filter", "2") if name else None
        if old not in (None, "2"):
            self.log("sysctl", name=f"net.ipv4.conf.{name}.rp_filter", value=2, was=old)

    async def _read_local_hosts(self) -> None:
        addresses: dict[int, tuple[IPv4Address, str]] = {}
        async for a in await self.nl.ipr.get_addr(family=2):
            addresses.setdefault(a["index"], (IPv4Address(a.get_attr("IFA_ADDRESS")),
                                              a.get_attr("IFA_LABEL")))
        hosts = {}
        async for r in await self.nl.ipr.route("dump", table=254, family=2):
            oif = r.get_attr("RTA_OIF")
            if r.get("table") == 254 and r["dst_len"] == 32 and oif != self.lan_index and \
                    oif in addresses and r["type"] == 1:  # unicast
                dst = IPv4Address(r.get_attr("RTA_DST"))
                if self.site is None or not self.site.another_fas_visitor(dst, r["proto"]):
                    hosts[dst] = addresses[oif]
        self.local_hosts = hosts

    async def _watch_local_hosts(self, interval: float = 2.0) -> None:
        """Host routes come and go with routing protocols: looked at every few seconds."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self._read_local_hosts()
            except Exception as exc:  # noqa: BLE001 - keep watching; say what failed
                self.log("local-hosts-failed", "warning", reason=repr(exc))

    async def _share(self, home: IPv4Address, shared: bool) -> None:
        """A home address two visitors hold is in no set (told apart by MAC), one visitor's
        alone is back in them."""
        for part in (self.realms, self.profiles, self._firewall()):
            await (part.unlist(home) if shared else part.relist(home))

    async def _rebuild_twins(self, skip: VisitorKey | None = None) -> None:
        twins = []
        for v in (v for home in self.realms.unlisted for v in self.sharing(home)):
            if v.key == skip:
                continue
            profile = self.profiles.profile_of(v.key)
            policy = self._firewall().policy_of(v.key)
            twins.append(Twin(v.home_address, v.mac, self._realm(v),
                              profile.mark if profile else 0,
                              policy.chain if policy else None,
                              policy.nat_chain if policy and policy.nat else None))
        self.realms.rebuild_twins(twins, MARK_MASK)

    # --- source-restricted routes (Fig. 5) --------------------------------------------

    async def _apply_routes(self, v: Visitor) -> None:
        routes = list(v.routes)
        if v.reverse_tunnel and not any(r.destination == DEFAULT for r in routes):
            routes.append(StaticRoute(DEFAULT, v.home_agent, REVERSE_METRIC, True))
        await self.profiles.join(v.key, routes, v.home_agent)

    async def _route_args(self, r: StaticRoute, home_agent: IPv4Address) -> dict[str, object]:
        """Where a profile route leads: into the tunnel to the HA, or out on the visited
        network."""
        if r.via_tunnel:
            return {"oif": (await self._ha_device(home_agent))[1], "scope": 253}
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

    def _forget_flows(self, home: IPv4Address, realm_mark: int | None) -> None:
        """Have the visitor's conntrack entries flushed, right after this change: those of
        ``home``, or with another visitor sharing it, those of its realm only.

        A conntrack dump walks every hash bucket of the table (262,144 here: ~10 ms
        even when empty), so removals that come together share one dump."""
        self.ct_doomed.add((home, realm_mark))
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
        doomed_marks: dict[str, set[int | None]] = {}
        for home, mark in self.ct_doomed:
            doomed_marks.setdefault(str(home), set()).add(mark)
        self.ct_doomed.clear()
        if self.conntrack is None:
            self.conntrack = AsyncConntrack()
            await self.conntrack.setup_endpoint()
        doomed = []
        async for entry in await self.conntrack.dump_entries():
            orig = entry.tuple_orig
            marks = doomed_marks.get(orig.saddr) or doomed_marks.get(orig.daddr)
            if marks and (None in marks or ((entry.mark or 0) & REALM_MASK) in marks):
                doomed.append(entry)
        for entry in doomed:
            # what a visitor started lives in its realm's zone, whose index is in the
            # connmark (realms.py); the dump does not say (the zone is the tuple's)
            zone = ((entry.mark or 0) & REALM_MASK) >> REALM_SHIFT
            with contextlib.suppress(Exception):  # gone meanwhile, or not in that zone
                await self.conntrack.entry("del", tuple_orig=entry.tuple_orig,
                                           zone=zone or None)
                continue
            with contextlib.suppress(Exception):
                await self.conntrack.entry("del", tuple_orig=entry.tuple_orig)
        if self.ct_doomed:  # more came while we dumped
            return len(doomed) + await self._flush_conntrack()
        return len(doomed)

    def routes_status(self, key: VisitorKey) -> dict[str, object]:
        profile = self.profiles.profile_of(key)
        v = self.visitors.get(key)
        realm = self.realms.of(v.home_agent) if v else None
        return {"table": profile.table if profile else None,
                "fwmark": f"{profile.mark:#x}/{MARK_MASK:#x}" if profile else None,
                "shared_by": profile.members if profile else 0,
                "routes": [{"destination": d, "metric": m}
                           for d, m in (profile.routes if profile else [])],
                "filter_counters": self.firewall.counters(key) if self.firewall else [],
                "nat_index": self._nat_index(key, realm)}

    def _nat_index(self, key: VisitorKey, realm: Realm | None) -> dict[str, object] | None:
        """Fig. 4's NAT index: the conntrack zone and connmark of the visitor's realm, and
        whether its home address is told apart by MAC (shared with another visitor)."""
        if realm is None:
            return None
        return {"zone": realm.index, "connmark": f"{realm.mark:#x}/{REALM_MASK:#x}",
                "by_mac": key[0] in self.realms.unlisted,
                "alias": str(self.realms.alias_of(key) or "") or None,
                "delivery_table": realm.table}

    async def _ha_device(self, ha: IPv4Address) -> tuple[str, int]:
        """One tunnel device per home agent (decapsulation and reverse tunnel): an ipip
        link (kernel backend) or a TUN of the relay (userspace)."""
        if ha not in self.ha_links:
            name = f"{LINK_PREFIX}{ha.packed.hex()}"
            if self.name == "kernel":
                await self.nl.ipr.link("add", ifname=name, kind="ipip",
                                       ipip_local=str(self.coa), ipip_remote=str(ha),
                                       ipip_ttl=64)
                index = await self.nl.link_up(name)
            elif self.relay is None:
                raise RuntimeError("FaDataplane: a visitor before start()")
            else:
                self.relay.add_peer_tun(ha, name, self._peer_of(ha))
                index = await self.nl.link_up(name, MTU)
            set_sysctl(f"net.ipv4.conf.{name}.rp_filter", "0")
            self.ha_links[ha] = (name, index)
        return self.ha_links[ha]

    async def _drop_ha_device(self, ha: IPv4Address) -> None:
        name, _ = self.ha_links.pop(ha, (None, 0))
        if name is None:
            return
        if self.name == "kernel":
            await self.nl.link_del(name)
        elif self.relay is not None:
            self.relay.remove_peer_tun(ha)  # the TUN goes with its fd

    def _peer_of(self, ha: IPv4Address):
        """What the kernel routes into ``ha``'s TUN: reverse tunnelled to it."""
        def peer_of(src: IPv4Address, dst: IPv4Address):
            v = self.by_realm.get((src, ha))
            if v is None or not v.reverse_tunnel:
                return None
            return (ha, v.encapsulation, v.key)
        return peer_of

    def _accept(self, outer_src: IPv4Address, inner_src: IPv4Address, inner_dst: IPv4Address):
        if (inner_dst, outer_src) in self.adding:  # not ready yet: held (_hold)
            return None
        v = self.by_realm.get((inner_dst, outer_src)) or \
            self._from_previous(outer_src, inner_dst)
        return v.key if v is not None else None

    @property
    def encapsulations(self) -> frozenset[str]:
        """What this dataplane carries to and from home agents: the kernel backend's device
        per home agent is an ipip link; the relay does IP-in-IP and GRE."""
        return frozenset({"ipip"}) if self.name == "kernel" else frozenset({"ipip", "gre"})

    def counters(self, key: VisitorKey) -> dict[str, int] | None:
        if self.relay is None:
            return None
        c = self.relay.stats.per_key.get(key)
        return c.as_dict() if c else None

    def drops(self) -> dict[str, int]:
        return self.relay.drops("no_visitor") if self.relay is not None else {}
