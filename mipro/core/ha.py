"""Home agent engine (RFC 5944 §3.8): registration processing and the binding table.

Pure: ``receive(data, src, port, now)`` and ``handle_timer(now)`` return
actions; nothing here touches a socket, the clock or the kernel.

Trust (docs/security.md): a request is authenticated by its one MN-HA
authenticator, verified with the key of the subscriber it names (by NAI if
it has one, else by home address); every extension the HA acts on is read
from the region that authenticator covers.  Before that nothing changes: no
replay, nonce, challenge or binding state, no signed answer.  Denials of
unauthenticated requests go out unsigned and within a budget; denials of
authenticated ones are signed.  A binding is made only for the subscriber's
own home address.  Every denial carries its RFC code.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network

from ..security import SecurityAssociation, append_authenticator, verify
from ..security.replay import ReplayMethod, check_timestamp, new_nonce
from ..subscribers.model import (
    MISS,
    Identity,
    Peeked,
    Subscriber,
    Unavailable,
    directory_of,
    identity,
)
from ..wire import (
    Code,
    DecodeContext,
    DecodeError,
    ExtType,
    FaHaAuth,
    FilterRulesExtension,
    MnFaChallenge,
    MnHaAuth,
    Nai,
    Region,
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    StaticRoutesExtension,
    UdpTunnelReply,
    UdpTunnelRequest,
    code_name,
)
from ..wire.messages import REGISTRATION_REQUEST
from ..wire.sync import BindingBlock
from .actions import Action, FetchSubscriber, InstallBinding, Log, RemoveBinding, Send
from .addressmap import AddressMap
from .bindings import Binding, BindingTable
from .limits import SourceLimiter, TokenBucket

BROADCAST = IPv4Address("255.255.255.255")
# a request's flag bits as plain ints: a test of an IntFlag builds a new member (~2 µs)
FLAG_S, FLAG_D, FLAG_M, FLAG_G, FLAG_T = (int(f) for f in (
    RequestFlags.S, RequestFlags.D, RequestFlags.M, RequestFlags.G, RequestFlags.T))
FLAGS_RESERVED = int(RequestFlags.r | RequestFlags.x)
ACCEPTED_COUNTERS = {c: f"accepted_{int(c)}" for c in (Code.ACCEPTED,
                                                     Code.ACCEPTED_NO_SIMULTANEOUS)}
UNRESOLVED = object()  # the directory not asked yet (its answer None means: unknown)


@dataclass(frozen=True)
class HaPolicy:
    addresses: tuple[IPv4Address, ...]
    max_lifetime: int = 3600
    replay_window: float = 7.0
    encapsulations: frozenset[str] = frozenset({"ipip", "gre"})
    reverse_tunneling: bool = True
    vendor_id: int = 32473
    fa_associations: dict[IPv4Address, SecurityAssociation] = field(default_factory=dict)
    udp_tunnelling: bool = True  # RFC 3519, for mobile nodes behind a NAPT
    udp_keepalive: int = 110  # seconds, told to the MN in the UDP Tunnel Reply
    nat_challenge_timeout: float = 30.0
    home_networks: tuple[IPv4Network, ...] = ()  # never a care-of address
    # before authentication: per source, and for all sources not yet seen to authenticate
    source_rate: float = 50.0
    source_burst: float = 100.0
    known_source_rate: float = 50_000.0  # FA peers, sources that authenticated lately
    known_source_burst: float = 50_000.0
    unknown_rate: float = 2000.0  # all unknown sources together
    unsigned_reply_rate: float = 200.0  # answers to requests that did not authenticate
    max_parked: int = 1024  # requests waiting for a directory lookup
    max_parked_per_identity: int = 4


@dataclass
class _Challenge:
    """Seed Fig. 9b: a NAPT was seen; the MN must echo this from behind it."""

    value: bytes
    source: IPv4Address
    expires: float


@dataclass(slots=True)
class _ReplayState:
    last_accepted: int | None = None  # timestamps: the last identification used
    nonce: int | None = None  # nonces: what the MN must put in its next request
    accepted_at: float | None = None  # when the request that set this was accepted


@dataclass(frozen=True)
class _Authenticated:
    """A request whose MN-HA authenticator verified with ``sa`` of ``sub``."""

    sub: Subscriber
    sa: SecurityAssociation
    region: Region  # what the MN-HA authenticator covers
    via_fa: bool  # an FA-HA authenticator of a known foreign agent verified too


def _unicast(a: IPv4Address) -> bool:
    """Not 0.0.0.0, loopback (127/8), link-local (169.254/16), multicast, reserved or
    broadcast (224/3): what ``ipaddress``'s is_* properties say, at a tenth of the cost."""
    ip = int(a)
    return ip != 0 and ip >> 24 != 127 and ip >> 16 != 0xA9FE and ip < 0xE0000000


def _ranges(networks: tuple[IPv4Network, ...]) -> list[tuple[int, int]]:
    """Each network as (first address, mask), integers."""
    return [(int(n.network_address), int(n.netmask)) for n in networks]


class Denied(Exception):
    def __init__(self, code: Code, reason: str, identification: int | None = None,
                 challenge: bytes = b"") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.identification = identification
        self.challenge = challenge  # with 131 behind a NAPT: the MN answers it


class _Parked(Exception):
    """The subscriber is being looked up; these are the actions for now."""

    def __init__(self, actions: list[Action]) -> None:
        super().__init__("parked")
        self.actions = actions


class HomeAgent:
    def __init__(self, policy: HaPolicy, store: object) -> None:
        self.policy = policy
        self.store = store
        self.directory = directory_of(store)
        self.bindings = BindingTable()
        self.replay: AddressMap[_ReplayState] = AddressMap()  # no stall as it grows
        self.challenges: dict[IPv4Address, _Challenge] = {}
        self.ctx = DecodeContext(vendor_id=policy.vendor_id)
        self.home_ranges = _ranges(policy.home_networks)
        self.counters: dict[str, int] = {}
        self.parked: dict[Identity, list[tuple[bytes, IPv4Address, int]]] = {}
        self.parked_count = 0
        # False when the runtime writes no info-level events (log_level warning): the
        # engine then builds none; warnings and errors are always built (and counted)
        self.info_events = True
        self._limits(policy)

    def _limits(self, p: HaPolicy) -> None:
        self.per_source = SourceLimiter(p.source_rate, p.source_burst)
        self.per_known = SourceLimiter(p.known_source_rate, p.known_source_burst)
        self.unknown = TokenBucket(p.unknown_rate, p.unknown_rate)
        self.unsigned = TokenBucket(p.unsigned_reply_rate, p.unsigned_reply_rate)
        # sources that authenticated lately, and the budgets, by the address's integer:
        # IPv4Address's hash is Python code, and a request looked it up five times
        self.known: OrderedDict[int, None] = OrderedDict()

    def set_policy(self, policy: HaPolicy) -> None:
        """A reload: the new policy; budgets start afresh only if they changed."""
        limits = ("source_rate", "source_burst", "known_source_rate", "known_source_burst",
                  "unknown_rate", "unsigned_reply_rate")
        changed = any(getattr(policy, k) != getattr(self.policy, k) for k in limits)
        self.policy = policy
        self.ctx = DecodeContext(vendor_id=policy.vendor_id)
        self.home_ranges = _ranges(policy.home_networks)
        if changed:
            self._limits(policy)

    def set_store(self, store: object) -> None:
        self.store = store
        self.directory = directory_of(store)

    # --- inputs -------------------------------------------------------------------------

    def receive(self, data: bytes, src: IPv4Address, port: int, now: float) -> list[Action]:
        if not data or data[0] != REGISTRATION_REQUEST:
            self._count("dropped_not_request")
            return [Log("drop", {"src": f"{src}:{port}", "reason": "not a registration request"},
                        "warning")]
        if len(data) < RegistrationRequest.FIXED:  # nothing to answer to: no decode either
            self._count("poorly_formed")
            return [Log("poorly-formed", {"src": f"{src}:{port}", "offset": len(data),
                                          "reason": f"{len(data)} bytes, shorter than a "
                                                    "registration request"}, "warning")]
        if not self._admit(src, now):
            self._count("dropped_over_budget")
            return [Log("drop", {"src": f"{src}:{port}", "reason": "over the per-source budget "
                                 "for unauthenticated requests"}, "warning")]
        return self._handle(data, src, port, now, UNRESOLVED)

    def _handle(self, data: bytes, src: IPv4Address, port: int, now: float,
                resolved: Peeked | object) -> list[Action]:
        try:
            req = RegistrationRequest.decode(data, self.ctx)
        except DecodeError as exc:
            return self._poorly_formed(data, src, port, exc, now)
        try:
            who = self._authenticate(req, data, src, port, resolved)
        except Denied as denial:
            return self._deny(req, src, port, denial, None, now)
        except _Parked as parked:
            return parked.actions
        self._trust(src)
        try:
            return self._register(req, who, src, port, now)
        except Denied as denial:
            return self._deny(req, src, port, denial, who, now)

    def subscriber_ready(self, home: IPv4Address, nai: str | None, result: Peeked,
                         now: float) -> list[Action]:
        """The directory answered (a Subscriber, None, or Unavailable): process the
        requests that waited for it."""
        waiting = self.parked.pop(identity(home, nai), [])
        self.parked_count -= len(waiting)
        actions: list[Action] = []
        for data, src, port in waiting:
            actions += self._handle(data, src, port, now, result)
        return actions

    def handle_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for b in self.bindings.pop_expired(now):
            self._count("expired")
            actions.append(RemoveBinding(b, "expired"))
            actions.append(Log("binding-expired", {"home": b.home_address,
                                                   "coa": b.care_of_address}))
        for home in [h for h, c in self.challenges.items() if c.expires <= now]:
            del self.challenges[home]
        return actions

    def next_timer(self) -> float | None:
        return self.bindings.next_expiry()

    def restore(self, bindings: list[Binding], now: float) -> list[Action]:
        """Bindings read back from the state file after a restart; expired ones are dropped."""
        actions: list[Action] = []
        for b in bindings:
            if b.expires <= now:
                continue
            self.bindings.put(b)
            if b.source is not None:
                self._trust(b.source)
            state = self.replay.setdefault(b.home_address, _ReplayState())
            state.last_accepted, state.accepted_at = b.identification, b.registered
            actions.append(InstallBinding(b))
        actions.append(Log("bindings-restored", {"count": len(self.bindings)}))
        return actions

    # --- redundancy (core/replication.py, seed Fig. 13) -------------------------------

    def block_of(self, b: Binding, now: float, removed: bool = False) -> BindingBlock:
        """A binding with its replay state, as the backup needs it (``removed``: gone)."""
        state = self.replay.get(b.home_address)
        ident = state.last_accepted if state is not None and state.last_accepted is not None \
            else b.identification
        return BindingBlock(b.home_address, b.care_of_address, b.home_agent,
                            b.source or b.care_of_address, b.source_port, b.encapsulation,
                            b.reverse_tunnel, b.lifetime,
                            0 if removed else min(b.lifetime, b.remaining(now)), ident,
                            state.nonce if state is not None else None, b.spi, b.nai)

    def export(self, address: IPv4Address, now: float) -> list[BindingBlock]:
        """Every valid registration with home agent ``address`` (a data dump)."""
        return [self.block_of(b, now) for b in self.bindings
                if b.home_agent == address and b.expires > now]

    def replicate(self, address: IPv4Address, blocks: tuple[BindingBlock, ...], replace: bool,
                  now: float) -> list[Action]:
        """The primary's bindings of ``address`` into our table, with their replay state
        (so a request replayed after a failover is still refused).  ``replace``: this is
        the whole table of that address (a dump): what is not in it goes.  The actions
        program the kernel only where we are primary (the runtime decides).

        A block gets the checks a registration would (a subscriber's own home address, a
        care-of address elsewhere, our lifetime cap and encapsulations): the key makes
        the peer trusted, not its configuration.  Replay state only ever moves forward."""
        actions: list[Action] = []
        seen: set[IPv4Address] = set()
        for blk in blocks:
            if blk.home_agent != address:
                self._count("replicated_wrong_group")
                continue
            home = blk.home_address
            problem = self._replicable(blk)
            if problem is not None:
                self._count("replicated_refused")
                actions.append(Log("replicated-refused", {"home": home,
                                                          "reason": problem}, "warning"))
                continue
            seen.add(home)
            self._replay_from(blk, now)
            old = self.bindings.get(home)
            if not blk.lifetime_left:
                if old is not None and old.home_agent == address:
                    self.bindings.pop(home)
                    actions.append(RemoveBinding(old, "replicated"))
                continue
            if old is not None and old.home_agent != address:  # it moved to this group
                actions.append(RemoveBinding(old, "replicated"))
            left = min(blk.lifetime_left, self.policy.max_lifetime)
            b = Binding(home, blk.care_of_address, blk.home_agent, min(blk.lifetime, self.policy.max_lifetime),
                        now + left, now, blk.identification, blk.encapsulation,
                        blk.reverse_tunnel, blk.nai, blk.spi, blk.source, blk.source_port)
            self.bindings.put(b)
            self._trust(blk.source)
            actions.append(InstallBinding(b))
        if replace:
            for b in list(self.bindings):
                if b.home_agent == address and b.home_address not in seen:
                    self.bindings.pop(b.home_address)
                    actions.append(RemoveBinding(b, "resync"))
        self._count("replicated", len(seen))
        return actions

    def _replicable(self, blk: BindingBlock) -> str | None:
        """Why this home agent would not hold that binding, or None."""
        problem = self._subscriber_problem(blk)
        if problem is not None:
            return problem
        if not blk.lifetime_left:
            return None  # a removal: nothing of it reaches the kernel
        try:
            self._check_care_of(blk.care_of_address, blk.home_address)
        except Denied as exc:
            return exc.reason
        if blk.encapsulation == "udp":
            if not self.policy.udp_tunnelling:
                return "UDP tunnels are off here"
        elif blk.encapsulation not in self.policy.encapsulations:
            return f"encapsulation {blk.encapsulation} is off here"
        return None

    def _subscriber_problem(self, blk: BindingBlock, replay_method: bool = False) -> str | None:
        """Not a subscriber's home address (a directory that cannot say now: the peer,
        which holds the key, is believed); ``replay_method``: nor the subscriber's method."""
        found = self.directory.peek(blk.home_address, blk.nai or None)
        if found is None or (isinstance(found, Subscriber) and
                             found.home_address != blk.home_address):
            return "not a subscriber's home address"
        if replay_method and isinstance(found, Subscriber) and \
                (blk.nonce is not None) != (found.replay is ReplayMethod.NONCE):
            return "replay method is not the subscriber's"
        return None

    def _replay_from(self, blk: BindingBlock, now: float) -> None:
        """The peer's replay state, never backwards.  Timestamps: the newest identification
        (they are times).  Nonces (random, not ordered): the peer's nonce unless we accepted
        a request of that MN later than it did (after a partition, the nonce we handed
        out with it must stay: the request it answered is refused again).  When the peer
        accepted it: granted lifetime minus lifetime left ago."""
        state = self.replay.setdefault(blk.home_address, _ReplayState())
        theirs_at = now - (blk.lifetime - blk.lifetime_left)
        if blk.nonce is None:
            if blk.identification > (state.last_accepted or 0):
                state.last_accepted, state.accepted_at = blk.identification, theirs_at
            return
        if state.accepted_at is not None and state.accepted_at > theirs_at + 1.0:
            return
        state.last_accepted, state.nonce, state.accepted_at = \
            blk.identification, blk.nonce, theirs_at

    def replay_since(self, address: IPv4Address, since: float,
                     now: float) -> list[BindingBlock]:
        """The replay state set since ``since`` (while we were primary for ``address``),
        of every MN but another group's: what a partition's loser sends the winner
        (docs/redundancy.md, "Which side wins").  Blocks of replay state only: care-of
        and source 0.0.0.0, lifetime the seconds since it was accepted, none left."""
        zero = IPv4Address(0)
        out = []
        for home, state in self.replay.items():
            if state.accepted_at is None or state.accepted_at < since:
                continue
            b = self.bindings.get(home)
            if b is not None and b.home_agent != address:
                continue
            ident = state.last_accepted if state.last_accepted is not None else \
                b.identification if b is not None else 0
            out.append(BindingBlock(home, zero, address, zero, 0, "ipip", False,
                                    min(0xFFFF, max(0, round(now - state.accepted_at))), 0,
                                    ident, state.nonce, 0, b.nai if b is not None else ""))
        return out

    def take_replay(self, address: IPv4Address, blocks: tuple[BindingBlock, ...],
                    now: float) -> list[Action]:
        """Replay state from a peer that stood down (it was primary too, in a partition):
        a request only it accepted is refused here too.  Only forward (a later
        identification, a nonce the peer handed out after our last acceptance), only for
        a subscriber's home address; no binding is made, changed or removed."""
        actions: list[Action] = []
        taken = 0
        for blk in blocks:
            problem = "another group's address" if blk.home_agent != address else \
                self._subscriber_problem(blk, replay_method=True)
            if problem is not None:
                self._count("replay_state_refused")
                actions.append(Log("replay-state-refused", {"home": blk.home_address,
                                                            "reason": problem}, "warning"))
                continue
            before = self.replay.get(blk.home_address)
            was = (before.last_accepted, before.nonce) if before is not None else None
            self._replay_from(blk, now)
            state = self.replay[blk.home_address]
            taken += was != (state.last_accepted, state.nonce)
        self._count("replay_state_taken", taken)
        actions.append(Log("replay-state-taken", {"address": address, "blocks": len(blocks),
                                                  "advanced": taken}))
        return actions

    def install_failed(self, action: InstallBinding, reason: str, now: float) -> list[Action]:
        """The kernel refused a binding the engine accepted: forget it, undo what may have
        been done, and answer 130 instead of the acceptance (RFC 5944: insufficient
        resources).  A newer binding that replaced it meanwhile stays."""
        b = action.binding
        if self.bindings.get(b.home_address) is b:
            self.bindings.pop(b.home_address)
        self._count("install_failed")
        actions: list[Action] = [RemoveBinding(b, "kernel-failed"),
                                 Log("install-failed", {"home": b.home_address,
                                                        "coa": b.care_of_address,
                                                        "reason": reason}, "error")]
        if action.reply is not None:
            state = self.replay.get(b.home_address)
            ident = b.identification
            if state is not None and state.nonce is not None:
                ident = (state.nonce << 32) | (ident & 0xFFFFFFFF)
            reply = RegistrationReply.build(code=Code.HA_INSUFFICIENT_RESOURCES,
                                            home_address=b.home_address,
                                            home_agent=b.home_agent, identification=ident)
            data = self._sign(reply.encode(), action.sa)
            if action.fa_signed:
                data = self._sign_for_fa(data, action.reply.dst)
            actions.insert(0, Send(action.reply.dst, action.reply.port, data, b.home_agent))
        return actions

    # --- before authentication ------------------------------------------------------

    def _admit(self, src: IPv4Address, now: float) -> bool:
        """The per-source budget for work before authentication."""
        ip = int(src)
        if ip in self.known or src in self.policy.fa_associations:
            return self.per_known.allow(ip, now)
        return self.per_source.allow(ip, now) and self.unknown.allow(now)

    def _trust(self, src: IPv4Address) -> None:
        ip = int(src)
        self.known[ip] = None
        self.known.move_to_end(ip)
        if len(self.known) > 1 << 17:
            self.known.popitem(last=False)

    def _authenticate(self, req: RegistrationRequest, data: bytes, src: IPv4Address, port: int,
                      resolved: Peeked | object) -> _Authenticated:
        auths = req.find_all(MnHaAuth)
        if not auths:
            raise Denied(Code.HA_MN_FAILED_AUTH, "no MN-HA authentication extension")
        if len(auths) > 1:
            raise Denied(Code.HA_POORLY_FORMED_REQUEST, "more than one MN-HA authenticator")
        auth = auths[0]
        at = req.index_of(auth)
        mine = req.covered_by(auth)
        via_fa = self._check_fa(req, auth, src)
        nai_ext = mine.find(Nai)  # an NAI after the authenticator names nobody
        nai = nai_ext.nai if nai_ext is not None else None
        if not int(req.home_address) and nai is None:
            raise Denied(Code.HA_POORLY_FORMED_REQUEST,
                         "home address 0.0.0.0 without an NAI (RFC 2794)")
        found = resolved if resolved is not UNRESOLVED else \
            self.directory.peek(req.home_address, nai)
        if found is MISS:
            raise _Parked(self._park(req, data, src, port, nai))
        if isinstance(found, Unavailable):
            raise Denied(Code.HA_INSUFFICIENT_RESOURCES, f"subscriber store: {found.reason}")
        if found is None:
            raise Denied(Code.HA_MN_FAILED_AUTH,
                         f"unknown NAI {nai!r}" if nai else f"unknown home address "
                                                            f"{req.home_address}")
        assert isinstance(found, Subscriber)
        sa = found.associations.get(auth.spi)
        if sa is None:
            raise Denied(Code.HA_MN_FAILED_AUTH, f"unknown SPI {auth.spi}")
        if not verify(req.authenticated_bytes(at), auth, sa):
            raise Denied(Code.HA_MN_FAILED_AUTH, "MN-HA authenticator mismatch")
        ignored = 0 if via_fa else len(req.extensions) - 1 - at
        if ignored:  # after the last authenticator that applies: nobody signed them
            self._count("ignored_extensions", ignored)
        return _Authenticated(found, sa, mine, via_fa)

    def _check_fa(self, req: RegistrationRequest, auth: MnHaAuth, src: IPv4Address) -> bool:
        """FA-HA authentication (RFC 5944 §3.5.3), last, from a foreign agent we share a
        key with: checked first, as it needs no lookup."""
        sa = self.policy.fa_associations.get(src)
        if sa is None:
            return False  # no FA-HA association with this sender: nothing to check
        theirs = req.after(auth).find_all(FaHaAuth)
        if len(theirs) != 1 or req.extensions[-1] is not theirs[0]:
            raise Denied(Code.HA_FA_FAILED_AUTH,
                         f"FA {src} sent no FA-HA authenticator last" if not theirs else
                         f"FA {src}: FA-HA authenticator not last or not alone")
        if not verify(req.signed_bytes(theirs[0]), theirs[0], sa):
            raise Denied(Code.HA_FA_FAILED_AUTH, f"FA-HA authentication from {src} failed")
        return True

    def _park(self, req: RegistrationRequest, data: bytes, src: IPv4Address, port: int,
              nai: str | None) -> list[Action]:
        """Wait for the directory without blocking: bounded, one lookup per identity."""
        key = identity(req.home_address, nai)
        waiting = self.parked.get(key)
        if waiting is not None and len(waiting) >= self.policy.max_parked_per_identity or \
                self.parked_count >= self.policy.max_parked:
            self._count("dropped_lookup_queue_full")
            return [Log("drop", {"home": req.home_address, "reason": "too many requests "
                                 "waiting for the subscriber directory"}, "warning")]
        self.parked_count += 1
        if waiting is not None:
            waiting.append((data, src, port))
            return []
        self.parked[key] = [(data, src, port)]
        self._count("lookups")
        return [FetchSubscriber(req.home_address, nai)]

    # --- after authentication -------------------------------------------------------

    def _register(self, req: RegistrationRequest, who: _Authenticated, src: IPv4Address,
                  port: int, now: float) -> list[Action]:
        sub, sa = who.sub, who.sa
        home = sub.home_address  # RFC 2794: 0.0.0.0 asks for it
        if int(req.home_address) and req.home_address != home:
            raise Denied(Code.HA_MN_FAILED_AUTH, f"home address {req.home_address} is not "
                         f"{sub.nai or 'the subscriber'}'s ({home})")
        if who.region.unknown_critical():
            types = ",".join(str(e.type) for e in who.region.unknown_critical())
            raise Denied(Code.HA_POORLY_FORMED_REQUEST, f"unknown extension type {types}")
        flags = int(req.flags)
        if flags & FLAGS_RESERVED:
            raise Denied(Code.HA_POORLY_FORMED_REQUEST, "reserved flag set")
        if req.home_agent not in self.policy.addresses:
            raise Denied(Code.HA_UNKNOWN_HA_ADDRESS, f"home agent {req.home_agent} is not ours")
        deregister = req.lifetime == 0 or req.care_of_address == home
        encapsulation = "gre" if flags & FLAG_G else "ipip"
        reverse = bool(flags & FLAG_T)
        utr = who.region.find(UdpTunnelRequest)
        nat = False
        if not deregister:
            self._check_care_of(req.care_of_address, home)
            if flags & FLAG_M:
                raise Denied(Code.HA_ENCAPSULATION_UNAVAILABLE,
                             "minimal encapsulation unsupported")
            if encapsulation not in self.policy.encapsulations:
                raise Denied(Code.HA_ENCAPSULATION_UNAVAILABLE, f"{encapsulation} not enabled")
            if reverse and not self.policy.reverse_tunneling:
                raise Denied(Code.HA_REVERSE_TUNNEL_UNAVAILABLE, "reverse tunnelling disabled")
            nat = bool(req.care_of_address != src and flags & FLAG_D)
            self._check_udp_request(req, utr, nat, src)
        state = self.replay.get(home)
        if state is None:
            state = self.replay[home] = _ReplayState()
        reply_id = self._check_replay(req, sub, state, now)
        # the identification is used up from here: a replay of this request is refused
        udp = None
        if not deregister and (nat or (utr is not None and utr.forced)):
            udp = self._nat_traversal(req, who, home, src, port, utr, nat, reply_id, now)
            encapsulation = "udp"
        code = Code.ACCEPTED_NO_SIMULTANEOUS if flags & FLAG_S else Code.ACCEPTED
        self._count(ACCEPTED_COUNTERS[code])  # by reply code; the kind is counted below
        actions: list[Action] = []
        if deregister:
            old = self.bindings.pop(home)
            if old is not None:
                actions.append(RemoveBinding(old, "deregistered"))
            self._count("deregistrations")
            if self.info_events:
                actions.append(Log("deregistered", {"home": home, "src": src,
                                                    "was": old.care_of_address if old else "-"}))
            lifetime = 0
        else:
            lifetime = min(req.lifetime, sub.max_lifetime, self.policy.max_lifetime)
        if udp is None:
            reply = RegistrationReply.pack(code=code, lifetime=lifetime, home_address=home,
                                           home_agent=req.home_agent, identification=reply_id)
        else:
            reply = RegistrationReply.build(code=code, lifetime=lifetime, home_address=home,
                                            home_agent=req.home_agent, identification=reply_id,
                                            extensions=[udp]).encode()
        nvse = self._route_optimization(sub, req.home_agent) if lifetime else b""
        # co-located (D): the MN applies the NVSEs, under MN-HA auth; through an FA: after
        # MN-HA auth, covered by FA-HA auth, stripped by the FA
        data = self._sign(reply + nvse, sa) if flags & FLAG_D else self._sign(reply, sa) + nvse
        send = Send(src, port, self._sign_for_fa(data, src) if who.via_fa else data,
                    req.home_agent)
        if deregister:
            return [send, *actions]
        binding = Binding(home, req.care_of_address, req.home_agent, lifetime, now + lifetime,
                          now, req.identification, encapsulation, reverse, sub.nai, sa.spi,
                          src, port)
        old = self.bindings.put(binding)
        renewal = old is not None and old.care_of_address == binding.care_of_address
        self._count("renewals" if renewal else "registrations")
        actions = [send, InstallBinding(binding, send, sa, who.via_fa)]
        if self.info_events:
            actions.append(Log("renewed" if renewal else "registered", {
                "home": home, "coa": req.care_of_address, "lifetime": lifetime,
                "encap": encapsulation, "reverse": reverse, "src": f"{src}:{port}"}))
        return actions

    def _check_care_of(self, coa: IPv4Address, home: IPv4Address) -> None:
        """A care-of address is where the tunnel goes: a unicast address elsewhere, never
        one of ours or of the home network (a subscriber could aim the tunnel at a host)."""
        if not _unicast(coa):
            raise Denied(Code.HA_POORLY_FORMED_REQUEST, f"care-of address {coa} is not a "
                         "unicast address")
        if coa in self.policy.addresses:
            raise Denied(Code.HA_ADMIN_PROHIBITED, f"care-of address {coa} is ours")
        ip = int(coa)
        for net, (first, mask) in zip(self.policy.home_networks, self.home_ranges,
                                      strict=True):
            if ip & mask == first:  # ``coa in net``, without ipaddress's Python checks
                raise Denied(Code.HA_ADMIN_PROHIBITED,
                             f"care-of address {coa} is in the home network {net}")

    def _check_udp_request(self, req: RegistrationRequest, utr: UdpTunnelRequest | None,
                           nat: bool, src: IPv4Address) -> None:
        """RFC 3519: what can be refused before the replay check uses the identification."""
        if not nat and not (utr is not None and utr.forced):
            return
        if utr is None:
            raise Denied(Code.HA_UDP_ENCAPSULATION_UNAVAILABLE,
                         f"a NAPT between the MN and us (request from {src}, care-of "
                         f"{req.care_of_address}) and no UDP tunnel request")
        if not self.policy.udp_tunnelling:
            raise Denied(Code.HA_UDP_ENCAPSULATION_UNAVAILABLE, "UDP tunnelling disabled")
        if utr.encapsulation != 4:
            raise Denied(Code.HA_UDP_ENCAPSULATION_UNAVAILABLE,
                         f"UDP tunnel encapsulation {utr.encapsulation} (only 4, IP-in-IP)")

    def _nat_traversal(self, req: RegistrationRequest, who: _Authenticated, home: IPv4Address,
                       src: IPv4Address, port: int, utr: UdpTunnelRequest | None, nat: bool,
                       reply_id: int, now: float) -> UdpTunnelReply:
        """RFC 3519 and seed Fig. 9b: a request whose source is not its care-of address
        crossed a NAPT.  The first such request is answered 131 with a challenge; the
        MN's next one must carry it back (inside what its authenticator covers) from the
        same public address.  Then the binding tunnels in UDP to the NAPT's public address
        and port.  A renewal through the same public address and port is not challenged
        again; neither is a forced UDP tunnel without a NAPT (F flag)."""
        assert utr is not None
        current = self.bindings.get(home)
        proven = current is not None and current.encapsulation == "udp" and \
            (current.source, current.source_port) == (src, port)
        if nat and not proven:
            answer = who.region.find(MnFaChallenge)
            pending = self.challenges.get(home)
            if answer is None or pending is None or pending.expires < now or \
                    pending.source != src or \
                    not hmac.compare_digest(answer.challenge, pending.value):
                value = secrets.token_bytes(16)
                self.challenges[home] = _Challenge(value, src,
                                                   now + self.policy.nat_challenge_timeout)
                why = "no challenge answered" if answer is None else "wrong or stale challenge"
                raise Denied(Code.HA_MN_FAILED_AUTH, f"NAPT at {src}: {why}", reply_id,
                             challenge=value)
            del self.challenges[home]
        return UdpTunnelReply(0, forced=utr.forced, keepalive=self.policy.udp_keepalive)

    def _route_optimization(self, sub: Subscriber, home_agent: IPv4Address) -> bytes:
        """The subscriber's static routes and filters as mipro NVSEs (seed Figs. 6a-c)."""
        if not sub.routes and not sub.filters:
            return b""
        vid = self.policy.vendor_id
        routes = [replace(r, router=home_agent) if r.via_tunnel and not int(r.router) else r
                  for r in sub.routes]
        exts = StaticRoutesExtension.chunked(routes, vid) + \
            FilterRulesExtension.chunked(sub.filters, vid)
        return b"".join(e.encode() for e in exts)

    def _check_replay(self, req: RegistrationRequest, sub: Subscriber, state: _ReplayState,
                      now: float) -> int:
        """RFC 5944 §5.7.  Passing uses the identification up (a replay of it is refused);
        failing changes nothing, so replays cannot lock a mobile node out.  With nonces
        the MN must use the nonce the HA last handed out: a 133 repeats it (a fresh one
        only on first contact, kept), an accepted request gets the next one."""
        if sub.replay is ReplayMethod.NONCE:
            low = req.identification & 0xFFFFFFFF
            if state.nonce is None:
                state.nonce = new_nonce()
            if req.identification >> 32 != state.nonce:
                raise Denied(Code.HA_ID_MISMATCH, "home agent nonce does not match",
                             (state.nonce << 32) | low)
            state.nonce, state.accepted_at = new_nonce(), now
            return (state.nonce << 32) | low
        verdict = check_timestamp(req.identification, state.last_accepted, now,
                                  self.policy.replay_window)
        if not verdict.ok:
            raise Denied(Code.HA_ID_MISMATCH, verdict.reason, verdict.reply_identification)
        state.last_accepted, state.accepted_at = req.identification, now
        return verdict.reply_identification

    # --- replies ------------------------------------------------------------------------

    def _sign(self, reply: bytes, sa: SecurityAssociation | None) -> bytes:
        return reply if sa is None else append_authenticator(reply, ExtType.MN_HA_AUTH, sa)

    def _sign_for_fa(self, reply: bytes, dst: IPv4Address) -> bytes:
        """Back through a foreign agent we share a key with: FA-HA authentication last."""
        fa_sa = self.policy.fa_associations.get(dst)
        return reply if fa_sa is None else append_authenticator(reply, ExtType.FA_HA_AUTH, fa_sa)

    def _deny(self, req: RegistrationRequest, src: IPv4Address, port: int, denial: Denied,
              who: _Authenticated | None, now: float) -> list[Action]:
        """Signed only when the request authenticated: an unauthenticated one gets an
        unsigned answer within a budget, and never a signature over bytes it chose."""
        self._count(f"denied_{int(denial.code)}")
        log = Log("denied", {"home": req.home_address, "src": f"{src}:{port}",
                             "code": int(denial.code), "reason": denial.reason,
                             "name": code_name(denial.code)}, "warning")
        if who is None and not self.unsigned.allow(now):
            self._count("replies_suppressed")
            return [log]
        home_agent = req.home_agent
        if denial.code == Code.HA_UNKNOWN_HA_ADDRESS and self.policy.addresses:
            home_agent = self.policy.addresses[0]  # RFC 5944 §3.8.3.2: tell the MN ours
        ident = denial.identification if denial.identification is not None else \
            req.identification
        reply = RegistrationReply.build(
            code=denial.code, lifetime=0, home_address=req.home_address, home_agent=home_agent,
            identification=ident,
            extensions=[MnFaChallenge(denial.challenge)] if denial.challenge else [])
        data = reply.encode()
        if who is not None:
            data = self._sign(data, who.sa)
            if who.via_fa:
                data = self._sign_for_fa(data, src)
        ours = home_agent if home_agent in self.policy.addresses else None
        return [Send(src, port, data, ours), log]

    def _poorly_formed(self, data: bytes, src: IPv4Address, port: int, exc: DecodeError,
                       now: float) -> list[Action]:
        """Answer 134 (unsigned, within the budget): the fixed part is readable."""
        self._count("poorly_formed")
        log = Log("poorly-formed", {"src": f"{src}:{port}", "offset": exc.offset,
                                    "reason": exc.reason}, "warning")
        if not self.unsigned.allow(now):
            self._count("replies_suppressed")
            return [log]
        reply = RegistrationReply.build(
            code=Code.HA_POORLY_FORMED_REQUEST, lifetime=0,
            home_address=IPv4Address(data[4:8]), home_agent=IPv4Address(data[8:12]),
            identification=int.from_bytes(data[16:24], "big"))
        return [Send(src, port, reply.encode()), log]

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n
