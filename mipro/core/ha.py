"""Home agent engine (RFC 5944 §3.8): registration processing and the binding table.

Pure: ``receive(data, src, port, now)`` and ``handle_timer(now)`` return
actions; nothing here touches a socket, the clock or the kernel.  Every
denial is answered with its RFC code and changes no state.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address

from ..security import SecurityAssociation, append_authenticator, verify
from ..security.replay import ReplayMethod, check_nonce, check_timestamp
from ..subscribers.model import StoreUnavailable, Subscriber, SubscriberStore
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
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    StaticRoutesExtension,
    UdpTunnelReply,
    UdpTunnelRequest,
    code_name,
)
from ..wire.messages import REGISTRATION_REQUEST
from .actions import Action, InstallBinding, Log, RemoveBinding, Send
from .bindings import Binding, BindingTable


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


@dataclass
class _Challenge:
    """Seed Fig. 9b: a NAPT was seen; the MN must echo this from behind it."""

    value: bytes
    source: IPv4Address
    expires: float


@dataclass
class _ReplayState:
    last_accepted: int | None = None
    nonce: int | None = None


class Denied(Exception):
    def __init__(self, code: Code, reason: str, identification: int | None = None,
                 challenge: bytes = b"", sa: SecurityAssociation | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.identification = identification
        self.challenge = challenge  # with 131 behind a NAPT: the MN answers it
        self.sa = sa  # the MN's key, when the request authenticated


class HomeAgent:
    def __init__(self, policy: HaPolicy, store: SubscriberStore) -> None:
        self.policy = policy
        self.store = store
        self.bindings = BindingTable()
        self.replay: dict[IPv4Address, _ReplayState] = {}
        self.challenges: dict[IPv4Address, _Challenge] = {}
        self.ctx = DecodeContext(vendor_id=policy.vendor_id)
        self.counters: dict[str, int] = {}

    # --- inputs -------------------------------------------------------------

    def receive(self, data: bytes, src: IPv4Address, port: int, now: float) -> list[Action]:
        if not data or data[0] != REGISTRATION_REQUEST:
            self._count("dropped_not_request")
            return [Log("drop", {"src": f"{src}:{port}", "reason": "not a registration request"},
                        "warning")]
        try:
            req = RegistrationRequest.decode(data, self.ctx)
        except DecodeError as exc:
            return self._poorly_formed(data, src, port, exc)
        try:
            return self._process(req, src, port, now)
        except Denied as denial:
            return self._deny(req, src, port, denial, now)

    def handle_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for b in self.bindings.pop_expired(now):
            self._count("expired")
            actions.append(RemoveBinding(b, "expired"))
            actions.append(Log("binding-expired", {"home": b.home_address,
                                                   "coa": b.care_of_address}))
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
            self.replay.setdefault(b.home_address, _ReplayState()).last_accepted = \
                b.identification
            actions.append(InstallBinding(b))
        actions.append(Log("bindings-restored", {"count": len(self.bindings)}))
        return actions

    # --- processing -----------------------------------------------------------

    def _process(self, req: RegistrationRequest, src: IPv4Address, port: int,
                 now: float) -> list[Action]:
        if req.unknown_critical():
            types = ",".join(str(e.type) for e in req.unknown_critical())
            raise Denied(Code.HA_POORLY_FORMED_REQUEST, f"unknown extension type {types}")
        if req.flags & (RequestFlags.r | RequestFlags.x):
            raise Denied(Code.HA_POORLY_FORMED_REQUEST, "reserved flag set")
        if req.home_agent not in self.policy.addresses:
            raise Denied(Code.HA_UNKNOWN_HA_ADDRESS, f"home agent {req.home_agent} is not ours")
        auth = req.find(MnHaAuth)
        if auth is None:
            raise Denied(Code.HA_MN_FAILED_AUTH, "no MN-HA authentication extension")
        nai_ext = req.find(Nai)
        try:
            sub = self.store.lookup(req.home_address, nai_ext.nai if nai_ext else None)
        except StoreUnavailable as exc:
            raise Denied(Code.HA_INSUFFICIENT_RESOURCES, f"subscriber store: {exc}") from None
        if sub is None:
            raise Denied(Code.HA_MN_FAILED_AUTH, f"unknown home address {req.home_address}")
        sa = sub.associations.get(auth.spi)
        if sa is None:
            raise Denied(Code.HA_MN_FAILED_AUTH, f"unknown SPI {auth.spi}")
        index = req.index_of(auth)
        if not verify(req.authenticated_bytes(index), auth, sa):
            raise Denied(Code.HA_MN_FAILED_AUTH, "MN-HA authenticator mismatch")
        self._check_fa(req, src)
        state = self.replay.setdefault(req.home_address, _ReplayState())
        reply_id = self._check_replay(req, sub, state, now)

        encapsulation = "gre" if req.flags & RequestFlags.G else "ipip"
        if req.flags & RequestFlags.M:
            raise Denied(Code.HA_ENCAPSULATION_UNAVAILABLE, "minimal encapsulation unsupported",
                         reply_id)
        if encapsulation not in self.policy.encapsulations:
            raise Denied(Code.HA_ENCAPSULATION_UNAVAILABLE, f"{encapsulation} not enabled",
                         reply_id)
        reverse = bool(req.flags & RequestFlags.T)
        if reverse and not self.policy.reverse_tunneling:
            raise Denied(Code.HA_REVERSE_TUNNEL_UNAVAILABLE, "reverse tunnelling disabled",
                         reply_id)
        udp = self._nat_traversal(req, src, port, sa, reply_id, now)
        if udp is not None:
            encapsulation = "udp"

        # accepted: update replay state only now, so a denial changes nothing
        state.last_accepted = req.identification
        if sub.replay is ReplayMethod.NONCE:
            state.nonce = reply_id >> 32
        code = Code.ACCEPTED_NO_SIMULTANEOUS if req.flags & RequestFlags.S else Code.ACCEPTED
        actions: list[Action] = []
        if req.lifetime == 0 or req.care_of_address == req.home_address:
            old = self.bindings.pop(req.home_address)
            if old is not None:
                actions.append(RemoveBinding(old, "deregistered"))
            self._count("deregistrations")
            actions.append(Log("deregistered", {"home": req.home_address, "src": src,
                                                "was": old.care_of_address if old else "-"}))
            lifetime = 0
        else:
            lifetime = min(req.lifetime, sub.max_lifetime, self.policy.max_lifetime)
            binding = Binding(
                req.home_address, req.care_of_address, req.home_agent, lifetime, now + lifetime,
                now, req.identification, encapsulation, reverse, sub.nai, auth.spi, src, port)
            old = self.bindings.put(binding)
            renewal = old is not None and old.care_of_address == binding.care_of_address
            self._count("renewals" if renewal else "registrations")
            actions.append(InstallBinding(binding))
            actions.append(Log("renewed" if renewal else "registered", {
                "home": req.home_address, "coa": req.care_of_address, "lifetime": lifetime,
                "encap": encapsulation, "reverse": reverse, "src": f"{src}:{port}"}))
        reply = RegistrationReply.build(code=code, lifetime=lifetime,
                                        home_address=req.home_address,
                                        home_agent=req.home_agent, identification=reply_id,
                                        extensions=[udp] if udp is not None and lifetime else [])
        nvse = self._route_optimization(sub, req.home_agent) if lifetime else b""
        if req.flags & RequestFlags.D:  # co-located: the MN applies them, under MN-HA auth
            data = self._sign(reply.encode() + nvse, sa)
        else:  # through an FA: after MN-HA auth, covered by FA-HA auth, stripped by the FA
            data = self._sign(reply.encode(), sa) + nvse
        actions.insert(0, Send(src, port, self._sign_for_fa(data, src)))
        return actions

    def _nat_traversal(self, req: RegistrationRequest, src: IPv4Address, port: int,
                       sa: SecurityAssociation, reply_id: int,
                       now: float) -> UdpTunnelReply | None:
        """RFC 3519 and seed Fig. 9b: a request whose source is not its care-of address
        crossed a NAPT.  The first such request is answered 131 with a challenge; the
        MN's next one must carry it back from the same public address.  Then the
        binding tunnels in UDP to the NAPT's public address and port.  The MN may also
        ask for UDP tunnelling without a NAPT (F flag).  A renewal through the same
        public address and port is not challenged again.  Returns the UDP Tunnel Reply
        to send, or None for a plain IP tunnel."""
        if not req.lifetime or req.care_of_address == req.home_address:
            return None
        utr = req.find(UdpTunnelRequest)
        nat = req.care_of_address != src and req.flags & RequestFlags.D
        if not nat and not (utr is not None and utr.forced):
            return None
        if utr is None:
            raise Denied(Code.HA_UDP_ENCAPSULATION_UNAVAILABLE,
                         f"a NAPT between the MN and us (request from {src}, care-of "
                         f"{req.care_of_address}) and no UDP tunnel request", reply_id, sa=sa)
        if not self.policy.udp_tunnelling:
            raise Denied(Code.HA_UDP_ENCAPSULATION_UNAVAILABLE, "UDP tunnelling disabled",
                         reply_id, sa=sa)
        if utr.encapsulation != 4:
            raise Denied(Code.HA_UDP_ENCAPSULATION_UNAVAILABLE,
                         f"UDP tunnel encapsulation {utr.encapsulation} (only 4, IP-in-IP)",
                         reply_id, sa=sa)
        current = self.bindings.get(req.home_address)
        proven = current is not None and current.encapsulation == "udp" and \
            (current.source, current.source_port) == (src, port)
        if nat and not proven:
            answer = req.find(MnFaChallenge)
            pending = self.challenges.get(req.home_address)
            if answer is None or pending is None or pending.expires < now or \
                    pending.source != src or answer.challenge != pending.value:
                value = secrets.token_bytes(16)
                self.challenges[req.home_address] = _Challenge(
                    value, src, now + self.policy.nat_challenge_timeout)
                why = "no challenge answered" if answer is None else "wrong or stale challenge"
                raise Denied(Code.HA_MN_FAILED_AUTH, f"NAPT at {src}: {why}", reply_id,
                             challenge=value, sa=sa)
            del self.challenges[req.home_address]
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

    def _sign_for_fa(self, reply: bytes, src: IPv4Address) -> bytes:
        """Through a foreign agent we share a key with: FA-HA authentication last."""
        fa_sa = self.policy.fa_associations.get(src)
        return reply if fa_sa is None else append_authenticator(reply, ExtType.FA_HA_AUTH, fa_sa)

    def _check_replay(self, req: RegistrationRequest, sub: Subscriber, state: _ReplayState,
                      now: float) -> int:
        if sub.replay is ReplayMethod.NONCE:
            verdict = check_nonce(req.identification, state.nonce)
            if not verdict.ok:
                state.nonce = verdict.reply_identification >> 32
        else:
            verdict = check_timestamp(req.identification, state.last_accepted, now,
                                      self.policy.replay_window)
        if not verdict.ok:
            raise Denied(Code.HA_ID_MISMATCH, verdict.reason, verdict.reply_identification)
        return verdict.reply_identification

    def _check_fa(self, req: RegistrationRequest, src: IPv4Address) -> None:
        """FA-HA authentication, when the request carries one or policy demands it."""
        fa_auth = req.find(FaHaAuth)
        sa = self.policy.fa_associations.get(src)
        if sa is None:
            return  # no FA-HA association with this sender: nothing to check
        if fa_auth is None:
            raise Denied(Code.HA_FA_FAILED_AUTH, f"FA {src} sent no FA-HA authentication")
        if not verify(req.authenticated_bytes(req.index_of(fa_auth)), fa_auth, sa):
            raise Denied(Code.HA_FA_FAILED_AUTH, f"FA-HA authentication from {src} failed")

    # --- replies ------------------------------------------------------------------

    def _sign(self, reply: bytes, sa: SecurityAssociation | None) -> bytes:
        return reply if sa is None else append_authenticator(reply, ExtType.MN_HA_AUTH, sa)

    def _deny(self, req: RegistrationRequest, src: IPv4Address, port: int, denial: Denied,
              now: float) -> list[Action]:
        self._count(f"denied_{int(denial.code)}")
        sa = denial.sa
        auth = req.find(MnHaAuth)
        if sa is None and auth is not None and denial.code != Code.HA_MN_FAILED_AUTH:
            try:
                sub = self.store.lookup(req.home_address)
            except StoreUnavailable:
                sub = None
            sa = sub.associations.get(auth.spi) if sub else None
        home_agent = req.home_agent
        if denial.code == Code.HA_UNKNOWN_HA_ADDRESS and self.policy.addresses:
            home_agent = self.policy.addresses[0]  # RFC 5944 §3.8.3.2: tell the MN ours
        ident = denial.identification if denial.identification is not None else \
            req.identification
        reply = RegistrationReply.build(
            code=denial.code, lifetime=0, home_address=req.home_address, home_agent=home_agent,
            identification=ident,
            extensions=[MnFaChallenge(denial.challenge)] if denial.challenge else [])
        return [
            Send(src, port, self._sign_for_fa(self._sign(reply.encode(), sa), src)),
            Log("denied", {"home": req.home_address, "src": f"{src}:{port}",
                           "code": int(denial.code), "reason": denial.reason,
                           "name": code_name(denial.code)}, "warning"),
        ]

    def _poorly_formed(self, data: bytes, src: IPv4Address, port: int,
                       exc: DecodeError) -> list[Action]:
        """Answer 134 when the fixed part is readable, else drop (nothing to answer to)."""
        self._count("poorly_formed")
        log = Log("poorly-formed", {"src": f"{src}:{port}", "offset": exc.offset,
                                    "reason": exc.reason}, "warning")
        if len(data) < RegistrationRequest.FIXED:
            return [log]
        reply = RegistrationReply.build(
            code=Code.HA_POORLY_FORMED_REQUEST, lifetime=0,
            home_address=IPv4Address(data[4:8]), home_agent=IPv4Address(data[8:12]),
            identification=int.from_bytes(data[16:24], "big"))
        return [Send(src, port, reply.encode()), log]

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

