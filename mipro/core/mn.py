"""Mobile node engine: registration with a co-located care-of address.

Registers when a care-of address is attached, retransmits with exponential
backoff (RFC 5944 §3.6.3), renews before the granted lifetime runs out,
resynchronises its clock or nonce on code 133, and deregisters on shutdown
and on return home.  Pure: inputs and ``now`` in, actions out.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from ipaddress import IPv4Address

from ..security import SecurityAssociation, append_authenticator, verify
from ..security.replay import NTP_EPOCH_OFFSET, ReplayMethod, timestamp_identification
from ..wire import (
    Code,
    DecodeContext,
    DecodeError,
    ExtType,
    FilterRulesExtension,
    MnHaAuth,
    Nai,
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    StaticRoutesExtension,
    code_name,
)
from ..wire.vendor import FilterRule, StaticRoute
from .actions import MIP_PORT, Action, Log, Send


class State(enum.Enum):
    IDLE = "idle"  # no care-of address
    REGISTERING = "registering"
    REGISTERED = "registered"
    DEREGISTERING = "deregistering"
    HOME = "home"


ALLOWED = {
    State.IDLE: {State.REGISTERING, State.HOME, State.IDLE},
    State.REGISTERING: {State.REGISTERED, State.REGISTERING, State.IDLE, State.DEREGISTERING,
                        State.HOME},
    State.REGISTERED: {State.REGISTERED, State.REGISTERING, State.DEREGISTERING, State.IDLE,
                       State.HOME},
    State.DEREGISTERING: {State.IDLE, State.HOME, State.REGISTERING, State.DEREGISTERING},
    State.HOME: {State.REGISTERING, State.IDLE, State.HOME},
}


class IllegalTransition(RuntimeError):
    pass


@dataclass(frozen=True)
class TunnelUp:
    """Registration accepted: bring up the tunnel to the HA and the home address on it."""

    care_of_address: IPv4Address
    home_agent: IPv4Address
    home_address: IPv4Address
    encapsulation: str
    lifetime: int
    routes: tuple[StaticRoute, ...] = ()
    filters: tuple[FilterRule, ...] = ()


@dataclass(frozen=True)
class TunnelDown:
    reason: str


@dataclass(frozen=True)
class MnSettings:
    home_address: IPv4Address
    home_agent: IPv4Address
    sa: SecurityAssociation
    nai: str = ""
    lifetime: int = 600
    replay: ReplayMethod = ReplayMethod.TIMESTAMP
    reverse_tunnel: bool = True
    encapsulation: str = "ipip"
    retransmit_initial: float = 1.0
    retransmit_max: float = 16.0
    renew_fraction: float = 0.8
    vendor_id: int = 32473


class MobileNode:
    def __init__(self, settings: MnSettings) -> None:
        self.s = settings
        self.state = State.IDLE
        self.care_of_address: IPv4Address | None = None
        self.clock_offset = 0.0  # HA clock minus ours, learnt from a 133
        self.ha_nonce = 0
        self.pending: RegistrationRequest | None = None
        self.pending_bytes = b""
        self.retransmit_at: float | None = None
        self.retransmit_delay = settings.retransmit_initial
        self.renew_at: float | None = None
        self.granted_lifetime = 0
        self.expires_at: float | None = None
        self.last_code: int | None = None
        self.ctx = DecodeContext(vendor_id=settings.vendor_id)

    # --- events -------------------------------------------------------------------

    def attach(self, care_of_address: IPv4Address, now: float) -> list[Action]:
        """A co-located care-of address was obtained (DHCP): register it."""
        changed = care_of_address != self.care_of_address
        self.care_of_address = care_of_address
        if not changed and self.state in (State.REGISTERED, State.REGISTERING):
            return []
        return self._register(now, self.s.lifetime, "attach")

    def detach(self, now: float) -> list[Action]:
        """The care-of address was lost; the HA binding will expire on its own."""
        self.care_of_address = None
        self._go(State.IDLE)
        self._clear_timers()
        return [TunnelDown("care-of address lost"), Log("detached", {})]

    def returned_home(self, now: float) -> list[Action]:
        """On the home link: deregister all bindings (care-of address = home address)."""
        self.care_of_address = self.s.home_address
        actions: list[Action] = [TunnelDown("returned home")]
        actions += self._register(now, 0, "home")
        return actions

    def shutdown(self, now: float) -> list[Action]:
        """Deregister (lifetime 0) before the daemon stops."""
        if self.state not in (State.REGISTERED, State.REGISTERING) or \
                self.care_of_address is None:
            return []
        return self._register(now, 0, "shutdown")

    def receive(self, data: bytes, src: IPv4Address, port: int, now: float) -> list[Action]:
        try:
            reply = RegistrationReply.decode(data, self.ctx)
        except DecodeError as exc:
            return [Log("drop", {"src": f"{src}:{port}", "reason": str(exc)}, "warning")]
        pending = self.pending
        if pending is None or (reply.identification & 0xFFFFFFFF) != \
                (pending.identification & 0xFFFFFFFF) or reply.home_address != \
                self.s.home_address:
            return [Log("drop", {"src": f"{src}:{port}", "reason": "unsolicited reply"},
                        "warning")]
        auth = reply.find(MnHaAuth)
        if auth is None or not verify(reply.authenticated_bytes(reply.index_of(auth)), auth,
                                      self.s.sa):
            # RFC 5944 §3.6.2.1: silently discard, keep retransmitting
            return [Log("drop", {"src": f"{src}:{port}", "code": reply.code,
                                 "reason": "reply failed MN-HA authentication"}, "warning")]
        self.last_code = reply.code
        if reply.code == Code.HA_ID_MISMATCH:
            return self._resync(reply, now)
        if not reply.accepted:
            self.pending = None
            self.retransmit_at = now + self.retransmit_delay
            self.retransmit_delay = min(self.retransmit_delay * 2, self.s.retransmit_max)
            return [Log("registration-denied", {"code": reply.code, "name": code_name(reply.code),
                                                "retry_in": round(self.retransmit_at - now, 1)},
                        "warning")]
        return self._accepted(reply, now)

    def handle_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        if self.expires_at is not None and now >= self.expires_at and \
                self.state is State.REGISTERED:
            self.expires_at = None
            actions += [TunnelDown("lifetime expired"), Log("binding-expired", {})]
            actions += self._register(now, self.s.lifetime, "expired")
        if self.retransmit_at is not None and now >= self.retransmit_at:
            if self.pending is None:  # backoff after a denial: build a fresh request
                lifetime = 0 if self.state is State.DEREGISTERING else self.s.lifetime
                actions += self._register(now, lifetime, "retry", keep_backoff=True)
            else:
                self.retransmit_at = now + self.retransmit_delay
                self.retransmit_delay = min(self.retransmit_delay * 2, self.s.retransmit_max)
                actions += [Send(self.s.home_agent, MIP_PORT, self.pending_bytes),
                            Log("retransmit", {"delay": self.retransmit_delay})]
        if self.renew_at is not None and now >= self.renew_at and self.state is State.REGISTERED:
            self.renew_at = None
            actions += self._register(now, self.s.lifetime, "renew")
        return actions

    def next_timer(self) -> float | None:
        times = [t for t in (self.retransmit_at, self.renew_at, self.expires_at) if t is not None]
        return min(times) if times else None

    # --- internals ----------------------------------------------------------------

    def _go(self, state: State) -> None:
        if state not in ALLOWED[self.state]:
            raise IllegalTransition(f"{self.state.value} -> {state.value}")
        self.state = state

    def _clear_timers(self) -> None:
        self.pending = None
        self.retransmit_at = self.renew_at = self.expires_at = None

    def _identification(self, now: float) -> int:
        if self.s.replay is ReplayMethod.NONCE:
            return (self.ha_nonce << 32) | secrets.randbits(32)
        return timestamp_identification(now + self.clock_offset)

    def _register(self, now: float, lifetime: int, why: str,
                  keep_backoff: bool = False) -> list[Action]:
        if self.care_of_address is None:
            return []
        flags = RequestFlags.D  # co-located care-of address: the MN decapsulates
        if self.s.reverse_tunnel:
            flags |= RequestFlags.T
        if self.s.encapsulation == "gre":
            flags |= RequestFlags.G
        exts = [Nai(self.s.nai)] if self.s.nai else []
        req = RegistrationRequest.build(
            flags=flags, lifetime=lifetime, home_address=self.s.home_address,
            home_agent=self.s.home_agent, care_of_address=self.care_of_address,
            identification=self._identification(now), extensions=exts)
        self.pending = req
        self.pending_bytes = append_authenticator(req.encode(), ExtType.MN_HA_AUTH, self.s.sa)
        if not keep_backoff:
            self.retransmit_delay = self.s.retransmit_initial
        self.retransmit_at = now + self.retransmit_delay
        self.retransmit_delay = min(self.retransmit_delay * 2, self.s.retransmit_max)
        if lifetime == 0:
            self._go(State.DEREGISTERING)
        elif self.state is not State.REGISTERED:
            self._go(State.REGISTERING)
        return [Send(self.s.home_agent, MIP_PORT, self.pending_bytes),
                Log("register", {"why": why, "coa": self.care_of_address, "lifetime": lifetime})]

    def _resync(self, reply: RegistrationReply, now: float) -> list[Action]:
        if self.s.replay is ReplayMethod.NONCE:
            self.ha_nonce = reply.identification >> 32
        else:
            ha_time = (reply.identification >> 32) - NTP_EPOCH_OFFSET
            self.clock_offset = ha_time - now
        lifetime = self.pending.lifetime if self.pending else self.s.lifetime
        actions: list[Action] = [Log("resync", {"offset": round(self.clock_offset, 1),
                                                "method": self.s.replay.value})]
        return actions + self._register(now, lifetime, "resync")

    def _accepted(self, reply: RegistrationReply, now: float) -> list[Action]:
        assert self.pending is not None
        deregistration = self.pending.lifetime == 0
        if self.s.replay is ReplayMethod.NONCE:
            self.ha_nonce = reply.identification >> 32
        self._clear_timers()
        if deregistration:
            home = self.care_of_address == self.s.home_address
            self._go(State.HOME if home else State.IDLE)
            return [Log("deregistered", {"home": home})]
        routes = tuple(r for e in reply.find_all(StaticRoutesExtension) for r in e.entries)
        filters = tuple(f for e in reply.find_all(FilterRulesExtension) for f in e.entries)
        self.granted_lifetime = reply.lifetime
        self.renew_at = now + reply.lifetime * self.s.renew_fraction
        self.expires_at = now + reply.lifetime
        first = self.state is not State.REGISTERED
        self._go(State.REGISTERED)
        assert self.care_of_address is not None
        return [
            TunnelUp(self.care_of_address, self.s.home_agent, self.s.home_address,
                     self.s.encapsulation, reply.lifetime, routes, filters),
            Log("registered" if first else "renewed",
                {"coa": self.care_of_address, "lifetime": reply.lifetime, "code": reply.code}),
        ]
