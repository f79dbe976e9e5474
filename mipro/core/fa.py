"""Foreign agent engine (RFC 5944 §3.7, RFC 3024): relay, check, and keep the visitor list.

Requests arrive from the link with the mobile node's link-layer address; the
FA checks what §3.7.1 asks of it, denies with the FA codes, or relays to the
home agent (adding FA-HA authentication when it has a key for that HA).
Replies from the HA are matched to their request, checked, stripped of what
was meant for the FA, and relayed to the MN by link-layer address.  Visitors
are keyed by (home address, link-layer address), so two mobile nodes with
the same home address from different home networks stay apart.

Trust (docs/security.md): the FA applies a home agent's routes and filters
only from the part of a reply that a verified FA-HA authenticator of the
visitor's own home agent covers; without a key for that home agent it
applies none.  A previous-FA notification is acted on only under a verified
MN-FA authenticator.  A reply that fails any of this is dropped and the
request stays pending, so a forged reply cannot deny a registration.  Work
before authentication is bounded: per link-layer address, in total, and per
home agent that cannot be authenticated.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Union

from ..security import SecurityAssociation, append_authenticator, verify
from ..wire import (
    BindingAck,
    BindingFlags,
    BindingStatus,
    BindingUpdate,
    Code,
    DecodeContext,
    DecodeError,
    ExtType,
    FaHaAuth,
    FilterRulesExtension,
    MnFaAuth,
    MnHaAuth,
    PreviousFaNotification,
    Region,
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    StaticRoutesExtension,
    code_name,
)
from ..wire.vendor import FilterRule, HomeAddressInUse, StaticRoute
from .actions import MIP_PORT, Action, Log, Send, SendToLink
from .advertiser import Advertiser
from .limits import SourceLimiter

ANYWHERE = IPv4Network("0.0.0.0/0")
# a visitor: (home address, MAC), since two visitors may share a home address (Fig. 3c)
VisitorKey = tuple[IPv4Address, bytes]


@dataclass(frozen=True)
class FaPolicy:
    address: IPv4Address  # on the visited link: where MNs send requests
    care_of_addresses: tuple[IPv4Address, ...]
    max_lifetime: int = 600
    reverse_tunneling: bool = True
    reverse_tunnel_required: bool = False
    encapsulations: frozenset[str] = frozenset({"ipip", "gre"})
    ha_peers: dict[IPv4Address, SecurityAssociation] = field(default_factory=dict)
    # MN-FA keys by home address, or by (home address, home agent) where two home
    # networks' mobile nodes share an address (overlapping realms)
    mn_fa: dict[IPv4Address | tuple[IPv4Address, IPv4Address], SecurityAssociation] = \
        field(default_factory=dict)
    require_mn_fa: bool = False
    pending_timeout: float = 7.0
    vendor_id: int = 32473
    # a host on the visited site with this home address? the address the FA translates the
    # MN's to towards it (seed Figs. 3c, 5: CN 4c), else None; asked once per acceptance
    address_in_use: Callable[[IPv4Address], IPv4Address | None] | None = None
    home_agents: tuple[IPv4Network, ...] = (ANYWHERE,)  # whom requests may be relayed to
    # before authentication: per link-layer address, per unauthenticated HA, in total
    mac_rate: float = 10.0
    mac_burst: float = 20.0
    visitor_mac_rate: float = 1000.0  # link-layer addresses of accepted visitors
    unkeyed_ha_rate: float = 100.0  # relays/s to one home agent we have no key for
    max_pending: int = 4096
    max_pending_per_mac: int = 4
    max_cache_lifetime: int = 60  # a previous-FA binding cache entry lives at most this
    forwarding: bool = True  # re-tunnel what still comes for a visitor that moved on


@dataclass(frozen=True)
class Visitor:
    home_address: IPv4Address
    mac: bytes
    home_agent: IPv4Address
    care_of_address: IPv4Address
    source: IPv4Address  # the MN's IP source (its home address)
    source_port: int
    identification: int
    requested_lifetime: int
    reverse_tunnel: bool
    encapsulation: str
    state: str = "pending"  # pending | accepted
    expires: float = 0.0
    lifetime: int = 0
    routes: tuple[StaticRoute, ...] = ()
    filters: tuple[FilterRule, ...] = ()
    notify: PreviousFaNotification | None = None  # tell the previous FA once accepted
    temporary_address: IPv4Address | None = None  # its home address is a local host's too

    @property
    def key(self) -> VisitorKey:
        return (self.home_address, self.mac)

    def describe(self, now: float) -> dict[str, object]:
        return {"home_address": str(self.home_address), "mac": self.mac.hex(":"),
                "home_agent": str(self.home_agent), "care_of_address": str(self.care_of_address),
                "state": self.state, "lifetime": self.lifetime,
                "lifetime_left": max(0, int(self.expires - now + 0.5)),
                "reverse_tunnel": self.reverse_tunnel, "encapsulation": self.encapsulation,
                "routes": [r.describe() for r in self.routes],
                "filters": [f.describe() for f in self.filters],
                "temporary_address": str(self.temporary_address)
                if self.temporary_address else None}


@dataclass(frozen=True)
class AddVisitor:
    """Program an accepted visitor; ``relay`` (in the same action list) is the reply
    to the MN, sent only once the kernel has the visitor (else ``visitor_failed``)."""

    visitor: Visitor
    previous: Visitor | None = None
    relay: SendToLink | None = None


@dataclass(frozen=True)
class RemoveVisitor:
    visitor: Visitor
    reason: str


@dataclass
class PendingNotification:
    """A Binding Update to a previous FA, retransmitted until acknowledged."""

    previous_fa: IPv4Address
    data: bytes
    attempts: int
    next_at: float
    key: tuple[IPv4Address, int] = (IPv4Address(0), 0)  # (home address, identification)


@dataclass
class _Pending:
    """A relayed request waiting for its reply."""

    visitor: Visitor
    expires: float
    forged_replies: int = 0  # replies that failed FA-HA: 68 instead of 78 at the timeout

    @property
    def key(self) -> tuple[IPv4Address, int]:
        return (self.visitor.home_address, self.visitor.identification & 0xFFFFFFFF)


@dataclass(frozen=True)
class CacheEntry:
    """We were the previous FA: where the mobile node went (draft-ietf-mobileip-optim
    binding cache), for the lifetime its authenticated Binding Update asked.  With
    ``forwarding`` it is a forwarding pointer: what still comes for the visitor (from
    its home agent's tunnel, or natively) is re-tunnelled to ``care_of_address`` with
    the encapsulation its registration with us used."""

    home_address: IPv4Address
    care_of_address: IPv4Address
    expires: float
    home_agent: IPv4Address = IPv4Address(0)  # the visitor's realm here
    encapsulation: str = "ipip"
    forwarding: bool = False

    @property
    def key(self) -> tuple[IPv4Address, IPv4Address]:
        return (self.home_address, self.home_agent)

    def describe(self, now: float) -> dict[str, object]:
        return {"home_address": str(self.home_address), "home_agent": str(self.home_agent),
                "care_of_address": str(self.care_of_address),
                "encapsulation": self.encapsulation, "forwarding": self.forwarding,
                "lifetime_left": max(0, int(self.expires - now + 0.5))}


@dataclass(frozen=True)
class AddForward:
    """Re-tunnel what comes for ``entry.home_address`` (in its home agent's realm) to the
    care-of address its authenticated Binding Update named."""

    entry: CacheEntry


@dataclass(frozen=True)
class RemoveForward:
    entry: CacheEntry
    reason: str  # expired | returned (registered with us again) | replaced


#: what the foreign agent engine asks of its runtime
FaAction = Action | AddVisitor | RemoveVisitor | AddForward | RemoveForward
#: what a timer is for: a pending request, a visitor, a notification, a cache entry; it is
#: due only while that very object is still the one held (else it was renewed or removed)
Timed = Union["_Pending", "Visitor", "PendingNotification", "CacheEntry"]

BU_WAITS = (1.0, 2.0, 4.0)  # wait after the 1st, 2nd and 3rd (last) Binding Update


class Denied(Exception):
    def __init__(self, code: Code, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _unicast(address: IPv4Address) -> bool:
    return not (address.is_unspecified or address.is_multicast or address.is_loopback or
                address.is_reserved or address.is_link_local or
                address == IPv4Address("255.255.255.255"))


class ForeignAgent:
    def __init__(self, policy: FaPolicy, advertiser: Advertiser | None = None) -> None:
        self.policy = policy
        self.advertiser = advertiser
        self.ctx = DecodeContext(vendor_id=policy.vendor_id)
        self.pending: dict[tuple[IPv4Address, int], _Pending] = {}
        self.pending_by_mac: dict[bytes, int] = {}
        self.visitors: dict[tuple[IPv4Address, bytes], Visitor] = {}
        self.cache: dict[tuple[IPv4Address, IPv4Address], CacheEntry] = {}  # (home, HA)
        self._heap: list[tuple[float, int, Timed]] = []
        self._seq = 0
        self.counters: dict[str, int] = {}
        self.notifications: dict[tuple[IPv4Address, int], PendingNotification] = {}
        self.per_mac = SourceLimiter(policy.mac_rate, policy.mac_burst)
        self.per_visitor_mac = SourceLimiter(policy.visitor_mac_rate, policy.visitor_mac_rate)
        self.per_ha = SourceLimiter(policy.unkeyed_ha_rate, policy.unkeyed_ha_rate)
        self.unkeyed_noted: set[IPv4Address] = set()
        self.visitor_macs: dict[bytes, int] = {}  # accepted visitors by link-layer address
        # (home address, home agent) of the requests relayed and not answered yet: what
        # that home agent tunnels for that address may be held until the reply (awaiting)
        self.relayed: dict[tuple[IPv4Address, IPv4Address], int] = {}
        self.accepted_pairs: dict[tuple[IPv4Address, IPv4Address], int] = {}  # likewise

    def set_policy(self, policy: FaPolicy) -> None:
        """A reload: the new policy; the budgets start afresh only if they changed."""
        if (policy.mac_rate, policy.mac_burst) != (self.policy.mac_rate, self.policy.mac_burst):
            self.per_mac = SourceLimiter(policy.mac_rate, policy.mac_burst)
        if policy.unkeyed_ha_rate != self.policy.unkeyed_ha_rate:
            self.per_ha = SourceLimiter(policy.unkeyed_ha_rate, policy.unkeyed_ha_rate)
        self.policy = policy
        self.ctx = DecodeContext(vendor_id=policy.vendor_id)
        self.unkeyed_noted &= set(self.unkeyed_has())

    def unkeyed_has(self) -> list[IPv4Address]:
        """Home agents of visitors or pending requests we share no FA-HA key with: their
        visitors get no route optimization (status shows them)."""
        has = {v.home_agent for v in self.visitors.values()} | \
            {p.visitor.home_agent for p in self.pending.values()}
        return sorted(h for h in has if h not in self.policy.ha_peers)

    # --- from the mobile node --------------------------------------------------------

    def request_from_mn(self, data: bytes, src: IPv4Address, port: int, mac: bytes,
                        now: float) -> list[FaAction]:
        if not data or data[0] != RegistrationRequest.TYPE:
            self._count("dropped_not_request")
            return [Log("drop", {"mac": mac.hex(":"), "reason": "not a registration request"},
                        "warning")]
        limiter = self.per_visitor_mac if mac in self.visitor_macs else self.per_mac
        if not limiter.allow(mac, now):
            self._count("dropped_over_budget")
            return [Log("drop", {"mac": mac.hex(":"), "reason": "over the per-MAC budget"},
                        "warning")]
        try:
            req = RegistrationRequest.decode(data, self.ctx)
        except DecodeError as exc:
            self._count("poorly_formed_request")
            log = Log("poorly-formed-request", {"src": f"{src}:{port}", "mac": mac.hex(":"),
                                                "offset": exc.offset, "reason": exc.reason},
                      "warning")
            if len(data) < RegistrationRequest.FIXED:
                return [log]
            reply = RegistrationReply.build(
                code=Code.FA_POORLY_FORMED_REQUEST, home_address=IPv4Address(data[4:8]),
                home_agent=IPv4Address(data[8:12]),
                identification=int.from_bytes(data[16:24], "big"))
            return [SendToLink(mac, self.policy.address, src, port, reply.encode()), log]
        try:
            visitor, mn_ha = self._check(req, src, port, mac, now)
            return self._relay(req, visitor, mn_ha, now)
        except Denied as d:
            self._count(f"denied_{int(d.code)}")
            lifetime = self.policy.max_lifetime if d.code == Code.FA_LIFETIME_TOO_LONG else 0
            reply = RegistrationReply.build(code=d.code, lifetime=lifetime,
                                            home_address=req.home_address,
                                            home_agent=req.home_agent,
                                            identification=req.identification)
            return [SendToLink(mac, self.policy.address, src, port, reply.encode()),
                    Log("denied", {"home": req.home_address, "mac": mac.hex(":"),
                                   "code": int(d.code), "name": code_name(d.code),
                                   "reason": d.reason}, "warning")]

    def _relay(self, req: RegistrationRequest, visitor: Visitor, mn_ha: MnHaAuth,
               now: float) -> list[FaAction]:
        """Keep the request pending and send it on.  A request already pending from another
        link-layer address with the same home address and identification is a copy:
        the first one keeps its place, so a copy cannot steal the reply."""
        p = self.policy
        key = (req.home_address, req.identification & 0xFFFFFFFF)
        current = self.pending.get(key)
        if current is not None and current.visitor.mac != visitor.mac:
            self._count("dropped_duplicate_pending")
            return [Log("drop", {"home": req.home_address, "mac": visitor.mac.hex(":"),
                                 "reason": "the same request is pending from "
                                           f"{current.visitor.mac.hex(':')}"}, "warning")]
        if current is None and (len(self.pending) >= p.max_pending or
                                self.pending_by_mac.get(visitor.mac, 0) >= p.max_pending_per_mac):
            raise Denied(Code.FA_INSUFFICIENT_RESOURCES, "too many pending requests")
        sa = p.ha_peers.get(req.home_agent)
        if sa is None and not self.per_ha.allow(req.home_agent, now):
            raise Denied(Code.FA_INSUFFICIENT_RESOURCES,
                         f"over the relay budget for home agent {req.home_agent}")
        if current is None:
            self.pending_by_mac[visitor.mac] = self.pending_by_mac.get(visitor.mac, 0) + 1
        else:
            self._unrelayed(current.visitor)
        pair = (visitor.home_address, visitor.home_agent)
        self.relayed[pair] = self.relayed.get(pair, 0) + 1
        expires = now + p.pending_timeout
        pending = _Pending(visitor, expires,
                           current.forged_replies if current is not None else 0)
        self.pending[key] = pending
        self._push(expires, pending)
        # RFC 5944 §3.7.2.1: extensions after the MN-HA authenticator are the FA's to
        # process and remove
        forward = req.prefix_before(req.index_of(mn_ha) + 1)
        if sa is not None:
            forward = append_authenticator(forward, ExtType.FA_HA_AUTH, sa)
        self._count("relayed_requests")
        return [Send(req.home_agent, MIP_PORT, forward),
                Log("relay-request", {"home": req.home_address, "ha": req.home_agent,
                                      "mac": visitor.mac.hex(":"), "lifetime": req.lifetime,
                                      "reverse": visitor.reverse_tunnel})]

    def _check(self, req: RegistrationRequest, src: IPv4Address, port: int, mac: bytes,
               now: float) -> tuple[Visitor, MnHaAuth]:
        p = self.policy
        mn_ha_all = req.find_all(MnHaAuth)
        if len(mn_ha_all) != 1:
            raise Denied(Code.FA_POORLY_FORMED_REQUEST,
                         "no MN-HA authentication extension" if not mn_ha_all else
                         "more than one MN-HA authenticator")
        mn_ha = mn_ha_all[0]
        if req.covered_by(mn_ha).unknown_critical():
            raise Denied(Code.FA_POORLY_FORMED_REQUEST, "unknown critical extension")
        if req.flags & (RequestFlags.r | RequestFlags.x):
            raise Denied(Code.FA_POORLY_FORMED_REQUEST, "reserved flag set")
        if not int(req.home_agent) or req.home_agent == IPv4Address("255.255.255.255"):
            raise Denied(Code.FA_MISSING_HOME_AGENT, "no home agent address")
        if not _unicast(req.home_agent) or req.home_agent in p.care_of_addresses or \
                req.home_agent == p.address:
            raise Denied(Code.FA_POORLY_FORMED_REQUEST,
                         f"home agent {req.home_agent} is not a unicast address elsewhere")
        if req.home_agent not in p.ha_peers and \
                not any(req.home_agent in net for net in p.home_agents):
            raise Denied(Code.FA_ADMIN_PROHIBITED,
                         f"home agent {req.home_agent} is not one we relay to")
        if req.lifetime and req.care_of_address not in p.care_of_addresses:
            raise Denied(Code.FA_INVALID_CARE_OF_ADDRESS,
                         f"care-of address {req.care_of_address} is not ours")
        if req.lifetime > p.max_lifetime:
            raise Denied(Code.FA_LIFETIME_TOO_LONG,
                         f"lifetime {req.lifetime} > {p.max_lifetime}")
        if req.flags & RequestFlags.M:
            raise Denied(Code.FA_ENCAPSULATION_UNAVAILABLE, "minimal encapsulation unsupported")
        encapsulation = "gre" if req.flags & RequestFlags.G else "ipip"
        if encapsulation not in p.encapsulations:
            raise Denied(Code.FA_ENCAPSULATION_UNAVAILABLE, f"{encapsulation} not offered")
        reverse = bool(req.flags & RequestFlags.T)
        if reverse and not p.reverse_tunneling:
            raise Denied(Code.FA_REVERSE_TUNNEL_UNAVAILABLE, "reverse tunnelling not offered")
        if p.reverse_tunnel_required and not reverse and req.lifetime:
            raise Denied(Code.FA_REVERSE_TUNNEL_MANDATORY, "reverse tunnelling is mandatory")
        ours = self._mn_fa_region(req, mn_ha)
        notify = ours.find(PreviousFaNotification)
        if notify is not None and (notify.previous_fa in p.care_of_addresses
                                   or notify.previous_fa == p.address or not req.lifetime
                                   or not _unicast(notify.previous_fa)):
            notify = None  # re-registering with us, or deregistering: nobody to tell
        return Visitor(req.home_address, mac, req.home_agent, req.care_of_address, src, port,
                       req.identification, req.lifetime, reverse, encapsulation,
                       notify=notify), mn_ha

    def _mn_fa_region(self, req: RegistrationRequest, mn_ha: MnHaAuth) -> Region:
        """MN-FA authentication (RFC 5944 §3.5.2), when we share a key with the MN or
        policy demands it.  Returns what the MN sent for us (between its MN-HA and MN-FA
        authenticators), verified; without a verified MN-FA authenticator, nothing."""
        p = self.policy
        sa = self._mn_sa(req.home_address, req.home_agent)
        theirs = req.after(mn_ha).find_all(MnFaAuth)
        if sa is None:
            if p.require_mn_fa:
                raise Denied(Code.FA_MN_FAILED_AUTH, "MN-FA authentication required, no key "
                             f"for {req.home_address}")
            if len(req.after(mn_ha)):
                self._count("ignored_extensions", len(req.after(mn_ha)))
            return Region()
        if len(theirs) != 1 or not verify(req.signed_bytes(theirs[0]), theirs[0], sa):
            raise Denied(Code.FA_MN_FAILED_AUTH, "MN-FA authentication failed")
        trailing = len(req.after(theirs[0]))
        if trailing:
            self._count("ignored_extensions", trailing)
        return req.between(mn_ha, theirs[0])

    # --- from the home agent ----------------------------------------------------------

    def reply_from_ha(self, data: bytes, src: IPv4Address, port: int,
                      now: float) -> list[FaAction]:
        try:
            reply = RegistrationReply.decode(data, self.ctx)
        except DecodeError as exc:
            self._count("poorly_formed_reply")
            return [Log("poorly-formed-reply", {"src": f"{src}:{port}", "offset": exc.offset,
                                                "reason": exc.reason}, "warning")]
        key = (reply.home_address, reply.identification & 0xFFFFFFFF)
        pending = self.pending.get(key)
        if pending is None:
            self._count("unmatched_reply")
            return [Log("drop", {"src": f"{src}:{port}", "home": reply.home_address,
                                 "reason": "reply matches no pending request"}, "warning")]
        visitor = pending.visitor
        if src != visitor.home_agent:
            self._count("reply_from_wrong_source")
            return [Log("drop", {"src": f"{src}:{port}", "home": reply.home_address,
                                 "reason": f"the request went to {visitor.home_agent}"},
                        "warning")]
        checked = self._check_ha(reply, visitor)
        if checked is None:  # failed FA-HA: drop it; the real reply may still come
            pending.forged_replies += 1
            self._count("ha_failed_auth")
            return [Log("drop", {"src": f"{src}:{port}", "home": reply.home_address,
                                 "reason": "FA-HA authentication failed"}, "warning")]
        relay, ro = checked
        self._unpend(key)
        routes = tuple(r for e in ro.find_all(StaticRoutesExtension) for r in e.entries)
        filters = tuple(f for e in ro.find_all(FilterRulesExtension) for f in e.entries)
        actions: list[FaAction] = []
        if visitor.home_agent not in self.policy.ha_peers and \
                visitor.home_agent not in self.unkeyed_noted:
            self.unkeyed_noted.add(visitor.home_agent)
            actions.append(Log("route-optimization-off", {
                "ha": visitor.home_agent, "reason": "no FA-HA key for this home agent: its "
                "routes and filters cannot be authenticated"}, "warning"))
        old = self.visitors.get(visitor.key)
        code = reply.code
        self._count(f"relayed_reply_{code}")  # the home agent's answers, by code
        if code in (0, 1) and reply.lifetime > 0:
            lifetime = min(reply.lifetime, visitor.requested_lifetime)
            in_use = self.policy.address_in_use
            temporary = in_use(visitor.home_address) if in_use is not None else None
            if temporary is not None:  # tell the MN: it sends to that host through us
                relay += HomeAddressInUse(visitor.home_address, temporary,
                                          self.policy.vendor_id).encode()
            accepted = replace(visitor, state="accepted", expires=now + lifetime,
                               lifetime=lifetime, routes=routes, filters=filters,
                               temporary_address=temporary)
            self._keep(accepted)
            self._push(accepted.expires, accepted)
            send = SendToLink(visitor.mac, self.policy.address, visitor.source,
                              visitor.source_port, self._sign_for_mn(relay, visitor))
            actions.append(AddVisitor(accepted, old, send))
            # its pointer here ends after the add: the add's /32 takes the pointer's place
            # (nothing to delete then), and the runtime ends it after the replies
            actions += self._uncache(visitor.home_address, visitor.home_agent, "returned")
            self._count("accepted")
            event = "visitor-renewed" if old else "visitor-added"
            actions.append(Log(event, {"home": visitor.home_address,
                                       "mac": visitor.mac.hex(":"), "ha": visitor.home_agent,
                                       "lifetime": lifetime,
                                       "reverse": visitor.reverse_tunnel,
                                       "routes": len(routes), "filters": len(filters)}))
            if visitor.notify is not None:
                actions += self._notify_previous_fa(visitor, now)
            return [send, *actions]
        if code in (0, 1) and old is not None:  # deregistration through us
            self._forget(old.key)
            actions.append(RemoveVisitor(old, "deregistered"))
            actions.append(Log("visitor-removed", {"home": old.home_address,
                                                   "reason": "deregistered"}))
        elif code not in (0, 1):
            actions.append(Log("registration-denied", {"home": visitor.home_address,
                                                       "code": code, "name": code_name(code)},
                               "warning"))
        return [SendToLink(visitor.mac, self.policy.address, visitor.source,
                           visitor.source_port, self._sign_for_mn(relay, visitor)), *actions]

    def _check_ha(self, reply: RegistrationReply, visitor: Visitor) -> tuple[bytes, Region] | None:
        """RFC 5944 §3.7.3.1.  Returns (what to relay to the MN, what the HA sent for us)
        or None when the FA-HA authenticator we expect does not verify.  The part for us
        is what lies between the MN-HA and FA-HA authenticators, and only when FA-HA
        verified; without a key for the visitor's HA it is empty."""
        mn_ha_all = reply.find_all(MnHaAuth)
        mn_ha = mn_ha_all[0] if len(mn_ha_all) == 1 else None
        sa = self.policy.ha_peers.get(visitor.home_agent)
        if sa is None:
            after = reply.after(mn_ha) if mn_ha is not None else Region()
            if len(after):
                self._count("ignored_extensions", len(after))
            relay = reply.prefix_before(reply.index_of(mn_ha) + 1) if mn_ha is not None \
                else reply.prefix_before(_first_auth(reply))
            return relay, Region()
        fa_ha = reply.find_all(FaHaAuth)
        if len(fa_ha) != 1 or not verify(reply.signed_bytes(fa_ha[0]), fa_ha[0], sa):
            return None
        trailing = len(reply.after(fa_ha[0]))
        if trailing:
            self._count("ignored_extensions", trailing)
        if mn_ha is None or reply.index_of(mn_ha) > reply.index_of(fa_ha[0]):
            return reply.prefix_before(reply.index_of(fa_ha[0])), Region()
        return reply.prefix_before(reply.index_of(mn_ha) + 1), reply.between(mn_ha, fa_ha[0])

    def _sign_for_mn(self, relay: bytes, visitor: Visitor) -> bytes:
        """What we add for the MN (home address in use) is covered by an MN-FA
        authenticator when we share a key with it (RFC 5944 §3.7.3.2)."""
        sa = self._mn_sa(visitor.home_address, visitor.home_agent)
        return relay if sa is None else append_authenticator(relay, ExtType.MN_FA_AUTH, sa)

    def visitor_failed(self, action: AddVisitor, reason: str, now: float) -> list[FaAction]:
        """The kernel refused an accepted visitor: forget it, undo what may have been done,
        and tell the MN 66 (insufficient resources) instead of relaying the acceptance."""
        v = action.visitor
        if self.visitors.get(v.key) is v:
            self._forget(v.key)
        self._count("visitor_install_failed")
        reply = RegistrationReply.build(code=Code.FA_INSUFFICIENT_RESOURCES,
                                        home_address=v.home_address, home_agent=v.home_agent,
                                        identification=v.identification)
        return [SendToLink(v.mac, self.policy.address, v.source, v.source_port,
                           reply.encode()),
                RemoveVisitor(v, "kernel-failed"),
                Log("visitor-install-failed", {"home": v.home_address, "mac": v.mac.hex(":"),
                                               "reason": reason}, "error")]

    # --- previous-FA notification (draft-ietf-mobileip-optim binding update) -----------

    def from_network(self, data: bytes, src: IPv4Address, port: int,
                     now: float) -> list[FaAction]:
        """A datagram to our care-of address: a reply from an HA, or a binding message."""
        if data[:1] == bytes((RegistrationReply.TYPE,)):
            return self.reply_from_ha(data, src, port, now)
        if BindingUpdate.matches(data):  # both are RFC 4064 experimental messages (255)
            return self.binding_update(data, src, port, now)
        if BindingAck.matches(data):
            return self.binding_ack(data, src, port)
        self._count("unexpected_message")
        return [Log("drop", {"src": f"{src}:{port}", "type": data[0] if data else -1,
                             "reason": "not a message for a foreign agent's care-of address"},
                    "warning")]

    def _notify_previous_fa(self, visitor: Visitor, now: float) -> list[FaAction]:
        n = visitor.notify
        assert n is not None
        bu = BindingUpdate.build(home_address=visitor.home_address,
                                 care_of_address=visitor.care_of_address,
                                 identification=visitor.identification,
                                 lifetime=n.cache_lifetime,
                                 extensions=[MnFaAuth(n.spi, n.authenticator)],
                                 vendor_id=n.vendor_id)
        key = (visitor.home_address, visitor.identification)
        pending = PendingNotification(n.previous_fa, bu.encode(), 1, now + BU_WAITS[0], key)
        self.notifications[key] = pending
        self._push(pending.next_at, pending)
        self._count("binding_updates_sent")
        return [Send(n.previous_fa, MIP_PORT, pending.data),
                Log("notify-previous-fa", {"home": visitor.home_address,
                                           "previous_fa": n.previous_fa})]

    def binding_update(self, data: bytes, src: IPv4Address, port: int,
                       now: float) -> list[FaAction]:
        """We are the previous FA: the MN moved on.  Authenticated first (with the MN's
        MN-FA key: nothing about our visitors is revealed before), then acted on, and
        acknowledged only to the care-of address it names."""
        try:
            bu = BindingUpdate.decode(data, self.ctx)
        except DecodeError as exc:
            self._count("poorly_formed_binding_update")
            return [Log("poorly-formed-binding-update", {"src": f"{src}:{port}",
                                                         "offset": exc.offset,
                                                         "reason": exc.reason}, "warning")]
        auths = bu.find_all(MnFaAuth)
        keys = self._bu_keys(bu.home_address)
        signed = [(ha, sa) for ha, sa in keys if len(auths) == 1 and
                  verify(bu.signed_bytes(auths[0]), auths[0], sa)]
        if not signed:
            self._count("binding_update_unauthenticated")
            return [Log("binding-update-denied", {
                "src": f"{src}:{port}", "home": bu.home_address,
                "status": int(BindingStatus.FAILED_AUTHENTICATION),
                "reason": "no MN-FA key for this home address" if not keys else
                "MN-FA authentication failed"}, "warning")]
        # the mobile node whose key signed it (two may share a home address)
        signer, key = signed[0]
        gone = [v for v in self.visitors.values() if v.home_address == bu.home_address
                and (signer is None or v.home_agent == signer)]
        status, reason = BindingStatus.ACCEPTED, ""
        if not gone:
            status, reason = BindingStatus.NO_SUCH_VISITOR, "no visitor with that home address"
        elif any(bu.identification <= v.identification for v in gone):
            status, reason = BindingStatus.IDENTIFICATION_MISMATCH, \
                "identification not newer than the registration it would cancel"
        actions: list[FaAction] = []
        if status == BindingStatus.ACCEPTED:
            for v in gone:
                self._forget(v.key)
            # the pointer first: it re-tunnels (and replays) from now on, while the
            # visitor's kernel state goes, which takes tens of milliseconds
            actions += self._cache(bu, gone, signer, now)
            for v in gone:
                actions += [RemoveVisitor(v, "moved"),
                            Log("visitor-removed", {"home": v.home_address,
                                                    "mac": v.mac.hex(":"), "reason": "moved",
                                                    "new_care_of": bu.care_of_address,
                                                    "notified_by": src})]
            self._count("binding_updates_accepted")
        else:
            self._count(f"binding_update_denied_{int(status)}")
            actions.append(Log("binding-update-denied", {"src": f"{src}:{port}",
                                                         "home": bu.home_address,
                                                         "status": int(status),
                                                         "reason": reason}, "warning"))
        if bu.flags & BindingFlags.A:
            if src == bu.care_of_address:  # signed too (RFC 4064 §8): the MN can check it
                ack = BindingAck.answering(bu, status).encode()
                actions.append(Send(src, port, append_authenticator(ack, ExtType.MN_FA_AUTH,
                                                                    key)))
            else:
                self._count("binding_ack_withheld")
        return actions

    def _mn_sa(self, home: IPv4Address, ha: IPv4Address) -> SecurityAssociation | None:
        return self.policy.mn_fa.get((home, ha)) or self.policy.mn_fa.get(home)

    def _bu_keys(self, home: IPv4Address) -> list[tuple[IPv4Address | None,
                                                         SecurityAssociation]]:
        """The MN-FA keys a Binding Update for ``home`` may be signed with: (home agent or
        None for a key of the address alone, key)."""
        keys: list[tuple[IPv4Address | None, SecurityAssociation]] = []
        if (sa := self.policy.mn_fa.get(home)) is not None:
            keys.append((None, sa))
        keys += [(k[1], sa) for k, sa in self.policy.mn_fa.items()
                 if isinstance(k, tuple) and k[0] == home]
        return keys

    def _cache(self, bu: BindingUpdate, gone: list[Visitor], signer: IPv4Address | None,
               now: float) -> list[FaAction]:
        """A lifetime asks us to remember where the MN went, for at most as long as its
        registration with us had left (and our own cap).  One entry per visitor that
        left, in its home agent's realm; it forwards only when the key that signed the
        update names that one visitor (a key of the home address alone, held by two
        visitors of different home agents, says not which of them moved)."""
        actions: list[FaAction] = []
        for v in gone:
            actions += self._uncache(v.home_address, v.home_agent, "replaced")
        lifetime = min(bu.lifetime, self.policy.max_cache_lifetime,
                       max(0.0, max(v.expires for v in gone) - now))
        if lifetime <= 0 or bu.care_of_address == bu.home_address or \
                not _unicast(bu.care_of_address) or \
                bu.care_of_address in self.policy.care_of_addresses:
            return actions
        forward = self.policy.forwarding and (signer is not None or len(gone) == 1)
        for v in gone:
            entry = CacheEntry(bu.home_address, bu.care_of_address, now + lifetime,
                               v.home_agent, v.encapsulation, forward)
            self.cache[entry.key] = entry
            self._push(entry.expires, entry)
            if forward:
                self._count("forwarding_pointers")
                actions += [AddForward(entry),
                            Log("forwarding", {"home": v.home_address, "ha": v.home_agent,
                                               "to": bu.care_of_address,
                                               "encapsulation": v.encapsulation,
                                               "lifetime": round(lifetime)})]
        return actions

    def _uncache(self, home: IPv4Address, ha: IPv4Address, reason: str) -> list[FaAction]:
        entry = self.cache.pop((home, ha), None)
        if entry is None or not entry.forwarding:
            return []
        return [RemoveForward(entry, reason),
                Log("forwarding-ended", {"home": home, "ha": ha, "reason": reason})]

    def binding_ack(self, data: bytes, src: IPv4Address, port: int) -> list[FaAction]:
        try:
            ack = BindingAck.decode(data, self.ctx)
        except DecodeError as exc:
            self._count("poorly_formed_binding_ack")
            return [Log("poorly-formed-binding-ack", {"src": f"{src}:{port}",
                                                      "reason": exc.reason}, "warning")]
        key = (ack.home_address, ack.identification)
        pending = self.notifications.get(key)
        if pending is None or pending.previous_fa != src:
            self._count("unmatched_binding_ack")
            return [Log("drop", {"src": f"{src}:{port}", "home": ack.home_address,
                                 "reason": "binding ack matches no notification"}, "warning")]
        del self.notifications[key]
        level = "info" if ack.status == BindingStatus.ACCEPTED else "warning"
        return [Log("previous-fa-notified", {"home": ack.home_address, "previous_fa": src,
                                             "status": ack.status}, level)]

    # --- discovery and timers ---------------------------------------------------------

    def solicitation(self, src: IPv4Address, now: float) -> list[FaAction]:
        return [*self.advertiser.solicited(src, now)] if self.advertiser else []

    def next_timer(self) -> float | None:
        times = []
        while self._heap and not self._live(self._heap[0]):
            heapq.heappop(self._heap)
        if self._heap:
            times.append(self._heap[0][0])
        if self.advertiser:
            times.append(self.advertiser.next_timer())
        return min(times) if times else None

    def handle_timer(self, now: float) -> list[FaAction]:
        actions: list[FaAction] = []
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            if not self._live(entry):
                continue
            item = entry[2]
            if isinstance(item, PendingNotification):
                actions += self._renotify(item.key, now)
            elif isinstance(item, _Pending):
                actions += self._timed_out(item.key)
            elif isinstance(item, CacheEntry):
                actions += self._uncache(item.home_address, item.home_agent, "expired")
                self.cache.pop(item.key, None)
            else:
                v = self._forget(item.key)
                actions += [RemoveVisitor(v, "expired"),
                            Log("visitor-expired", {"home": v.home_address,
                                                    "mac": v.mac.hex(":")})]
        if self.advertiser:
            actions += self.advertiser.handle_timer(now)
        return actions

    def _keep(self, v: Visitor) -> None:
        old = self.visitors.get(v.key)
        if old is None:
            self.visitor_macs[v.mac] = self.visitor_macs.get(v.mac, 0) + 1
        else:
            _count_down(self.accepted_pairs, (old.home_address, old.home_agent))
        pair = (v.home_address, v.home_agent)
        self.accepted_pairs[pair] = self.accepted_pairs.get(pair, 0) + 1
        self.visitors[v.key] = v

    def _forget(self, key: tuple[IPv4Address, bytes]) -> Visitor:
        v = self.visitors.pop(key)
        _count_down(self.accepted_pairs, (v.home_address, v.home_agent))
        left = self.visitor_macs.get(v.mac, 0) - 1
        if left > 0:
            self.visitor_macs[v.mac] = left
        else:
            self.visitor_macs.pop(v.mac, None)
        return v

    def _timed_out(self, key: tuple[IPv4Address, int]) -> list[FaAction]:
        """No (authentic) reply in time: 78, or 68 when only forged replies came."""
        p = self._unpend(key)
        v = p.visitor
        code = Code.FA_HA_FAILED_AUTH if p.forged_replies else Code.FA_REGISTRATION_TIMEOUT
        reply = RegistrationReply.build(code=code, home_address=v.home_address,
                                        home_agent=v.home_agent, identification=v.identification)
        return [SendToLink(v.mac, self.policy.address, v.source, v.source_port, reply.encode()),
                Log("registration-timeout", {"home": v.home_address, "ha": v.home_agent,
                                             "code": int(code)}, "warning")]

    def _unpend(self, key: tuple[IPv4Address, int]) -> _Pending:
        p = self.pending.pop(key)
        self._drop_pending_count(p.visitor.mac)
        self._unrelayed(p.visitor)
        return p

    def _unrelayed(self, v: Visitor) -> None:
        _count_down(self.relayed, (v.home_address, v.home_agent))

    def awaiting(self, home: IPv4Address, home_agent: IPv4Address) -> bool:
        """A request for ``home`` went to ``home_agent`` and is not answered yet, or was
        accepted: the home agent tunnels to us from the moment it accepts, before its
        reply reaches us, and until the dataplane has added the visitor (the dataplane
        asks only for what it has no visitor for)."""
        return (home, home_agent) in self.relayed or (home, home_agent) in self.accepted_pairs

    def _drop_pending_count(self, mac: bytes) -> None:
        left = self.pending_by_mac.get(mac, 0) - 1
        if left > 0:
            self.pending_by_mac[mac] = left
        else:
            self.pending_by_mac.pop(mac, None)

    def _renotify(self, key: tuple[IPv4Address, int], now: float) -> list[FaAction]:
        n = self.notifications[key]
        if n.attempts >= len(BU_WAITS):
            del self.notifications[key]
            self._count("previous_fa_unreachable")
            return [Log("previous-fa-unanswered", {"home": key[0], "previous_fa": n.previous_fa,
                                                   "attempts": n.attempts}, "warning")]
        n.attempts += 1
        n.next_at = now + BU_WAITS[n.attempts - 1]
        self._push(n.next_at, n)
        return [Send(n.previous_fa, MIP_PORT, n.data)]

    def _push(self, when: float, item: Timed) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, item))

    def _live(self, entry: tuple[float, int, Timed]) -> bool:
        when, _, item = entry
        if isinstance(item, _Pending):
            return self.pending.get(item.key) is item and item.expires == when
        if isinstance(item, PendingNotification):
            return self.notifications.get(item.key) is item and item.next_at == when
        if isinstance(item, CacheEntry):
            return self.cache.get(item.key) is item
        return self.visitors.get(item.key) is item and item.expires == when

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n


def _first_auth(reply: RegistrationReply) -> int:
    """Index of the first authentication extension (or the end)."""
    for i, e in enumerate(reply.extensions):
        if isinstance(e, MnHaAuth | FaHaAuth | MnFaAuth):
            return i
    return len(reply.extensions)


def _count_down(counts: dict[tuple[IPv4Address, IPv4Address], int],
                pair: tuple[IPv4Address, IPv4Address]) -> None:
    left = counts.get(pair, 0) - 1
    if left > 0:
        counts[pair] = left
    else:
        counts.pop(pair, None)
