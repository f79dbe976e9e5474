"""Foreign agent engine (RFC 5944 §3.7, RFC 3024): relay, check, and keep the visitor list.

Requests arrive from the link with the mobile node's link-layer address; the
FA checks what §3.7.1 asks of it, denies with the FA codes, or relays to the
home agent (adding FA-HA authentication when it has a key for that HA).
Replies from the HA are matched to their request, checked, stripped of what
was meant for the FA, and relayed to the MN by link-layer address.  Visitors
are keyed by (home address, link-layer address), so two mobile nodes with
the same home address from different home networks stay apart.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address

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
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    StaticRoutesExtension,
    code_name,
)
from ..wire.vendor import FilterRule, HomeAddressInUse, StaticRoute
from .actions import MIP_PORT, Action, Log, Send, SendToLink
from .advertiser import Advertiser


@dataclass(frozen=True)
class FaPolicy:
    address: IPv4Address  # on the visited link: where MNs send requests
    care_of_addresses: tuple[IPv4Address, ...]
    max_lifetime: int = 600
    reverse_tunneling: bool = True
    reverse_tunnel_required: bool = False
    encapsulations: frozenset[str] = frozenset({"ipip", "gre"})
    ha_peers: dict[IPv4Address, SecurityAssociation] = field(default_factory=dict)
    mn_fa: dict[IPv4Address, SecurityAssociation] = field(default_factory=dict)
    require_mn_fa: bool = False
    pending_timeout: float = 7.0
    vendor_id: int = 32473
    # a host on the visited site with this home address? the address the FA translates the
    # MN's to towards it (seed Figs. 3c, 5: CN 4c), else None; asked once per acceptance
    address_in_use: Callable[[IPv4Address], IPv4Address | None] | None = None


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
    def key(self) -> tuple[IPv4Address, bytes]:
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
    visitor: Visitor
    previous: Visitor | None = None


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


BU_WAITS = (1.0, 2.0, 4.0)  # wait after the 1st, 2nd and 3rd (last) Binding Update


class Denied(Exception):
    def __init__(self, code: Code, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class ForeignAgent:
    def __init__(self, policy: FaPolicy, advertiser: Advertiser | None = None) -> None:
        self.policy = policy
        self.advertiser = advertiser
        self.ctx = DecodeContext(vendor_id=policy.vendor_id)
        self.pending: dict[tuple[IPv4Address, int], Visitor] = {}
        self.visitors: dict[tuple[IPv4Address, bytes], Visitor] = {}
        self._heap: list[tuple[float, int, str, tuple]] = []
        self._seq = 0
        self.counters: dict[str, int] = {}
        self.notifications: dict[tuple[IPv4Address, int], PendingNotification] = {}

    # --- from the mobile node --------------------------------------------------------

    def request_from_mn(self, data: bytes, src: IPv4Address, port: int, mac: bytes,
                        now: float) -> list[Action]:
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
            visitor = self._check(req, src, port, mac, now)
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
        key = (req.home_address, req.identification & 0xFFFFFFFF)
        self.pending[key] = visitor
        self._push(now + self.policy.pending_timeout, "pending", key)
        # RFC 5944 §3.7.2.1: extensions after the MN-HA authenticator are the FA's to
        # process and remove
        forward = req.prefix_before(req.index_of(req.find(MnHaAuth)) + 1)
        sa = self.policy.ha_peers.get(req.home_agent)
        if sa is not None:
            forward = append_authenticator(forward, ExtType.FA_HA_AUTH, sa)
        self._count("relayed_requests")
        return [Send(req.home_agent, MIP_PORT, forward),
                Log("relay-request", {"home": req.home_address, "ha": req.home_agent,
                                      "mac": mac.hex(":"), "lifetime": req.lifetime,
                                      "reverse": visitor.reverse_tunnel})]

    def _check(self, req: RegistrationRequest, src: IPv4Address, port: int, mac: bytes,
               now: float) -> Visitor:
        p = self.policy
        if req.unknown_critical():
            raise Denied(Code.FA_POORLY_FORMED_REQUEST, "unknown critical extension")
        if req.flags & (RequestFlags.r | RequestFlags.x):
            raise Denied(Code.FA_POORLY_FORMED_REQUEST, "reserved flag set")
        if req.find(MnHaAuth) is None:
            raise Denied(Code.FA_POORLY_FORMED_REQUEST, "no MN-HA authentication extension")
        if not int(req.home_agent) or req.home_agent == IPv4Address("255.255.255.255"):
            raise Denied(Code.FA_MISSING_HOME_AGENT, "no home agent address")
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
        sa = p.mn_fa.get(req.home_address)
        auth = req.find(MnFaAuth)
        needs_auth = sa is not None or p.require_mn_fa
        if needs_auth and (auth is None or sa is None or not verify(
                req.authenticated_bytes(req.index_of(auth)), auth, sa)):
            raise Denied(Code.FA_MN_FAILED_AUTH, "MN-FA authentication failed")
        after = req.extensions[req.index_of(req.find(MnHaAuth)) + 1:]
        notify = next((e for e in after if isinstance(e, PreviousFaNotification)), None)
        if notify is not None and (notify.previous_fa in p.care_of_addresses
                                   or notify.previous_fa == p.address or not req.lifetime):
            notify = None  # re-registering with us, or deregistering: nobody to tell
        return Visitor(req.home_address, mac, req.home_agent, req.care_of_address, src, port,
                       req.identification, req.lifetime, reverse, encapsulation, notify=notify)

    # --- from the home agent ----------------------------------------------------------

    def reply_from_ha(self, data: bytes, src: IPv4Address, port: int,
                      now: float) -> list[Action]:
        try:
            reply = RegistrationReply.decode(data, self.ctx)
        except DecodeError as exc:
            self._count("poorly_formed_reply")
            return [Log("poorly-formed-reply", {"src": f"{src}:{port}", "offset": exc.offset,
                                                "reason": exc.reason}, "warning")]
        key = (reply.home_address, reply.identification & 0xFFFFFFFF)
        visitor = self.pending.get(key)
        if visitor is None:
            self._count("unmatched_reply")
            return [Log("drop", {"src": f"{src}:{port}", "home": reply.home_address,
                                 "reason": "reply matches no pending request"}, "warning")]
        del self.pending[key]
        code = reply.code
        relay = reply.wire()
        sa = self.policy.ha_peers.get(visitor.home_agent)
        fa_auth = reply.find(FaHaAuth)
        if sa is not None and (fa_auth is None or not verify(
                reply.authenticated_bytes(reply.index_of(fa_auth)), fa_auth, sa)):
            self._count("ha_failed_auth")
            code = Code.FA_HA_FAILED_AUTH
            relay = RegistrationReply.build(code=code, home_address=reply.home_address,
                                            home_agent=reply.home_agent,
                                            identification=reply.identification).encode()
        routes: tuple[StaticRoute, ...] = ()
        filters: tuple[FilterRule, ...] = ()
        if code == reply.code:
            mn_ha = reply.find(MnHaAuth)
            if mn_ha is not None:  # what follows the MN-HA authenticator was for us
                relay = reply.prefix_before(reply.index_of(mn_ha) + 1)
                ours = reply.extensions[reply.index_of(mn_ha) + 1:]
                routes = tuple(r for e in ours if isinstance(e, StaticRoutesExtension)
                               for r in e.entries)
                filters = tuple(f for e in ours if isinstance(e, FilterRulesExtension)
                                for f in e.entries)
        actions: list[Action] = []
        old = self.visitors.get(visitor.key)
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
            self.visitors[accepted.key] = accepted
            self._push(accepted.expires, "visitor", accepted.key)
            actions.append(AddVisitor(accepted, old))
            self._count("accepted")
            event = "visitor-renewed" if old else "visitor-added"
            actions.append(Log(event, {"home": visitor.home_address,
                                       "mac": visitor.mac.hex(":"), "ha": visitor.home_agent,
                                       "lifetime": lifetime,
                                       "reverse": visitor.reverse_tunnel,
                                       "routes": len(routes), "filters": len(filters)}))
            if visitor.notify is not None:
                actions += self._notify_previous_fa(visitor, now)
        elif code in (0, 1) and old is not None:  # deregistration through us
            del self.visitors[old.key]
            actions.append(RemoveVisitor(old, "deregistered"))
            actions.append(Log("visitor-removed", {"home": old.home_address,
                                                   "reason": "deregistered"}))
        else:
            actions.append(Log("registration-denied", {"home": visitor.home_address,
                                                       "code": code, "name": code_name(code)},
                               "warning"))
        actions.append(SendToLink(visitor.mac, self.policy.address, visitor.source,
                                  visitor.source_port, relay))
        return actions

    # --- previous-FA notification (draft-ietf-mobileip-optim binding update) -----------

    def from_network(self, data: bytes, src: IPv4Address, port: int,
                     now: float) -> list[Action]:
        """A datagram to our care-of address: a reply from an HA, or a binding message."""
        kind = data[0] if data else -1
        if kind == RegistrationReply.TYPE:
            return self.reply_from_ha(data, src, port, now)
        if kind == BindingUpdate.TYPE:
            return self.binding_update(data, src, port, now)
        if kind == BindingAck.TYPE:
            return self.binding_ack(data, src, port)
        self._count("unexpected_message")
        return [Log("drop", {"src": f"{src}:{port}", "type": kind,
                             "reason": "not a message for a foreign agent's care-of address"},
                    "warning")]

    def _notify_previous_fa(self, visitor: Visitor, now: float) -> list[Action]:
        n = visitor.notify
        assert n is not None
        bu = BindingUpdate.build(home_address=visitor.home_address,
                                 care_of_address=visitor.care_of_address,
                                 identification=visitor.identification,
                                 lifetime=n.cache_lifetime,
                                 extensions=[MnFaAuth(n.spi, n.authenticator)])
        key = (visitor.home_address, visitor.identification)
        pending = PendingNotification(n.previous_fa, bu.encode(), 1, now + BU_WAITS[0])
        self.notifications[key] = pending
        self._push(pending.next_at, "notify", key)
        self._count("binding_updates_sent")
        return [Send(n.previous_fa, MIP_PORT, pending.data),
                Log("notify-previous-fa", {"home": visitor.home_address,
                                           "previous_fa": n.previous_fa})]

    def binding_update(self, data: bytes, src: IPv4Address, port: int,
                       now: float) -> list[Action]:
        """We are the previous FA: the MN moved on; drop its visitor entry if it says so."""
        try:
            bu = BindingUpdate.decode(data, self.ctx)
        except DecodeError as exc:
            self._count("poorly_formed_binding_update")
            return [Log("poorly-formed-binding-update", {"src": f"{src}:{port}",
                                                         "offset": exc.offset,
                                                         "reason": exc.reason}, "warning")]
        status, reason = BindingStatus.ACCEPTED, ""
        gone = [v for v in self.visitors.values() if v.home_address == bu.home_address]
        sa = self.policy.mn_fa.get(bu.home_address)
        auth = bu.authenticator
        if not gone:
            status, reason = BindingStatus.NO_SUCH_VISITOR, "no visitor with that home address"
        elif sa is None or auth is None or not verify(
                bu.authenticated_bytes(bu.index_of(auth)), auth, sa):
            status, reason = BindingStatus.FAILED_AUTHENTICATION, \
                "no MN-FA key for this home address" if sa is None else \
                "MN-FA authentication failed"
        elif any(bu.identification <= v.identification for v in gone):
            status, reason = BindingStatus.IDENTIFICATION_MISMATCH, \
                "identification not newer than the registration it would cancel"
        actions: list[Action] = []
        if status == BindingStatus.ACCEPTED:
            for v in gone:
                del self.visitors[v.key]
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
            ack = BindingAck(int(status), bu.home_address, bu.identification)
            actions.append(Send(src, port, ack.encode()))
        return actions

    def binding_ack(self, data: bytes, src: IPv4Address, port: int) -> list[Action]:
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

    def solicitation(self, src: IPv4Address) -> list[Action]:
        return self.advertiser.solicited(src) if self.advertiser else []

    def next_timer(self) -> float | None:
        times = []
        while self._heap and not self._live(self._heap[0]):
            heapq.heappop(self._heap)
        if self._heap:
            times.append(self._heap[0][0])
        if self.advertiser:
            times.append(self.advertiser.next_timer())
        return min(times) if times else None

    def handle_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            if not self._live(entry):
                continue
            _, _, kind, key = entry
            if kind == "notify":
                actions += self._renotify(key, now)
            elif kind == "pending":
                v = self.pending.pop(key)
                reply = RegistrationReply.build(code=Code.FA_REGISTRATION_TIMEOUT,
                                                home_address=v.home_address,
                                                home_agent=v.home_agent,
                                                identification=v.identification)
                actions += [SendToLink(v.mac, self.policy.address, v.source, v.source_port,
                                       reply.encode()),
                            Log("registration-timeout", {"home": v.home_address,
                                                         "ha": v.home_agent}, "warning")]
            else:
                v = self.visitors.pop(key)
                actions += [RemoveVisitor(v, "expired"),
                            Log("visitor-expired", {"home": v.home_address,
                                                    "mac": v.mac.hex(":")})]
        if self.advertiser:
            actions += self.advertiser.handle_timer(now)
        return actions

    def _renotify(self, key: tuple[IPv4Address, int], now: float) -> list[Action]:
        n = self.notifications[key]
        if n.attempts >= len(BU_WAITS):
            del self.notifications[key]
            self._count("previous_fa_unreachable")
            return [Log("previous-fa-unanswered", {"home": key[0], "previous_fa": n.previous_fa,
                                                   "attempts": n.attempts}, "warning")]
        n.attempts += 1
        n.next_at = now + BU_WAITS[n.attempts - 1]
        self._push(n.next_at, "notify", key)
        return [Send(n.previous_fa, MIP_PORT, n.data)]

    def _push(self, when: float, kind: str, key: tuple) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, key))

    def _live(self, entry: tuple) -> bool:
        when, _, kind, key = entry
        if kind == "pending":
            return key in self.pending
        if kind == "notify":
            n = self.notifications.get(key)
            return n is not None and n.next_at == when
        v = self.visitors.get(key)
        return v is not None and v.expires == when

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1
