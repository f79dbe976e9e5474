"""Mobile node engine: agent discovery, and registration through a foreign agent or
with a co-located care-of address.

Solicits when its link comes up and listens to Agent Advertisements: a
foreign agent's (F bit) makes it register through that agent; losing it
(advertisement lifetime expired) or hearing none makes it fall back to a
co-located care-of address from DHCP (``mode = "auto"``); its own home
agent's (H bit) means it is home: it deregisters.  Registration retransmits
with exponential backoff (RFC 5944 §3.6.3), renews before the granted
lifetime runs out, and resynchronises its clock or nonce on code 133.
Pure: inputs and ``now`` in, actions out.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from ..security import SecurityAssociation, append_authenticator, verify
from ..security.replay import NTP_EPOCH_OFFSET, ReplayMethod, timestamp_identification
from ..wire import (
    AgentAdvertisement,
    AgentFlags,
    AgentSolicitation,
    BindingAck,
    BindingUpdate,
    Code,
    DecodeContext,
    DecodeError,
    Extension,
    ExtType,
    FilterRulesExtension,
    MnFaAuth,
    MnFaChallenge,
    MnHaAuth,
    Nai,
    PreviousFaNotification,
    Region,
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    StaticRoutesExtension,
    UdpTunnelReply,
    UdpTunnelRequest,
    code_name,
)
from ..wire.vendor import FilterRule, HomeAddressInUse, StaticRoute
from .actions import MIP_PORT, Action, Log, Send, SendIcmp
from .mn_states import IllegalTransition, Input, State, Via, next_state

__all__ = ["IllegalTransition", "MobileNode", "MnSettings", "State", "Via"]

ALL_ROUTERS = IPv4Address("224.0.0.2")


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
    udp_keepalive: int = 0  # UDP tunnelling (RFC 3519): send a keepalive this often


@dataclass(frozen=True)
class TunnelDown:
    reason: str


@dataclass(frozen=True)
class UseForeignAgent:
    """FA care-of address mode: home address on the link, default route via the agent."""

    agent: IPv4Address
    care_of_address: IPv4Address
    prefix_length: int


@dataclass(frozen=True)
class OwnAddressOut:
    """FA mode: a host on the visited network has our home address (the FA said so, seed
    Figs. 3c, 5): what we send to that address goes to the FA instead of looping back."""

    on: bool
    temporary_address: IPv4Address | None = None  # what the FA translates ours to


@dataclass(frozen=True)
class LeaveForeignAgent:
    reason: str


@dataclass(frozen=True)
class StartDhcp:
    """Co-located mode: obtain a care-of address on the link."""


@dataclass(frozen=True)
class StopDhcp:
    pass


@dataclass(frozen=True)
class AtHome:
    """On the home link: home address on the link, gratuitous ARP."""


#: what the mobile node engine asks of its runtime
MnAction = Action | TunnelUp | TunnelDown | UseForeignAgent | OwnAddressOut | \
    LeaveForeignAgent | StartDhcp | StopDhcp | AtHome


@dataclass
class Agent:
    address: IPv4Address
    care_of_address: IPv4Address
    expires: float
    sequence: int
    prefix_length: int


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
    mode: str = "colocated"  # auto | fa | colocated
    discovery_wait: float = 1.0  # auto: how long to wait for an FA before DHCP
    solicit_on_attach: bool = True  # else wait for the next periodic advertisement
    fa_peers: dict[IPv4Address, SecurityAssociation] = field(default_factory=dict)  # MN-FA
    notify_previous_fa: bool = True  # when it has a key for the previous FA
    # how long the previous FA is asked to forward what still comes for us (seconds, at
    # most our registration lifetime); 0: it just forgets us
    forwarding_lifetime: int = 10
    udp_tunnel: str = "auto"  # co-located: ask for UDP tunnelling (auto: if behind a NAPT;
    # always: the F flag, even without one; never)


class MobileNode:
    def __init__(self, settings: MnSettings) -> None:
        self.s = settings
        self.state = State.IDLE  # with self.via: changed only by _step (core/mn_states.py)
        self.via = Via.NONE
        self.care_of_address: IPv4Address | None = None
        self.clock_offset = 0.0  # HA clock minus ours, learnt from a 133
        self.last_identification = 0
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
        self.agent: Agent | None = None
        self.dhcp_running = False
        self.discovery_deadline: float | None = None
        self.reg_dst = settings.home_agent
        self.registered_agent: Agent | None = None  # the FA our accepted binding goes through
        self.previous_agent: Agent | None = None  # the FA to tell that we left it
        self.nat_challenge = b""  # the HA saw a NAPT: echo this in the next request
        self.udp_keepalive = 0  # the HA's keepalive interval when it tunnels in UDP
        self.resynced = False  # the pending request is the answer to a 133

    @property
    def using(self) -> str:
        """What the node is attached through, as `status` says it."""
        return self.via.value

    def _step(self, event: Input) -> bool:
        """Move to what the table says; False if ``event`` means nothing now (raises
        IllegalTransition if it cannot happen now)."""
        moved = next_state(self.state, self.via, event)
        if moved is None:
            return False
        self.state, self.via = moved
        return True

    # --- events -------------------------------------------------------------------

    def attach(self, care_of_address: IPv4Address, now: float) -> list[MnAction]:
        """A co-located care-of address was obtained (DHCP): register it."""
        renewed = care_of_address == self.care_of_address and self.via is Via.COLOCATED
        if not self._step(Input.CARE_OF_ADDRESS):
            return []
        self.care_of_address = care_of_address
        if renewed and self.state in (State.REGISTERED, State.REGISTERING):
            return []  # the same lease again: nothing new for the home agent
        return self._register(now, self.s.lifetime, "attach")

    def detach(self, now: float) -> list[MnAction]:
        """The care-of address was lost; the HA binding will expire on its own."""
        if not self._step(Input.CARE_OF_ADDRESS_LOST):
            return []
        self.care_of_address = None
        self._clear_timers()
        return [TunnelDown("care-of address lost"), Log("detached", {})]

    def returned_home(self, now: float) -> list[MnAction]:
        """On the home link: deregister all bindings (care-of address = home address)."""
        was = self.via
        if not self._step(Input.HOME_LINK):
            return []
        actions: list[MnAction] = []
        if was is Via.FA:
            actions.append(LeaveForeignAgent("returned home"))
        elif was is Via.COLOCATED:
            actions.append(TunnelDown("returned home"))
        if self.dhcp_running:
            self.dhcp_running = False
            actions.append(StopDhcp())
        self._left(self.registered_agent, None)
        self.agent = None
        self.discovery_deadline = None
        self.care_of_address = self.s.home_address
        actions.append(AtHome())
        actions += self._register(now, 0, "home")
        return actions + self._tell_previous_fa_ourselves(now)

    # --- agent discovery ------------------------------------------------------------

    def link_up(self, now: float) -> list[MnAction]:
        """The link came up (or changed): solicit, and in auto mode give FAs a moment."""
        actions: list[MnAction] = []
        if self.s.solicit_on_attach:
            actions += [SendIcmp(ALL_ROUTERS, AgentSolicitation().encode()), Log("solicit", {})]
        if self.s.mode == "colocated":
            if not self.dhcp_running:
                self.dhcp_running = True
                actions.append(StartDhcp())
        elif self.s.mode == "auto" and self.via in (Via.NONE, Via.HOME):
            self.discovery_deadline = now + self.s.discovery_wait
        return actions

    def advertisement(self, data: bytes, src: IPv4Address, now: float) -> list[MnAction]:
        try:
            adv = AgentAdvertisement.decode(data)
        except DecodeError as exc:
            return [Log("drop", {"src": src, "reason": f"advertisement: {exc}"}, "debug")]
        mob = adv.mobility
        if adv.unknown_critical() or mob is None:
            return []
        router = adv.routers[0][0] if adv.routers else src
        if mob.flags & AgentFlags.H and self.s.home_agent in (src, router):
            home = self.returned_home(now)
            return [Log("home-agent-heard", {"src": src}), *home] if home else []
        if not mob.flags & AgentFlags.F or not mob.care_of_addresses or \
                self.s.mode == "colocated":
            return []
        coa = mob.care_of_addresses[0]
        plen = adv.prefix_lengths[0] if adv.prefix_lengths else 24
        current = self.agent
        if current is not None and current.address == src and current.care_of_address == coa \
                and self.via is Via.FA:
            rebooted = mob.sequence < current.sequence and mob.sequence < 256
            current.expires = now + adv.lifetime
            current.sequence = mob.sequence
            if not rebooted:
                return []
            return [Log("agent-rebooted", {"agent": src})] + \
                self._register(now, self.s.lifetime, "agent-rebooted")
        # a new foreign agent: move to it
        self._left(self.registered_agent, src)
        self.agent = Agent(src, coa, now + adv.lifetime, mob.sequence, plen)
        actions: list[MnAction] = [Log("agent-found", {"agent": src, "coa": coa,
                                                     "was": current.address if current else "-"})]
        if self.via is Via.COLOCATED:
            actions.append(TunnelDown("moved to a foreign agent"))
        self._step(Input.FOREIGN_AGENT)
        if self.dhcp_running:
            self.dhcp_running = False
            actions.append(StopDhcp())
        self.discovery_deadline = None
        self.care_of_address = coa
        actions.append(UseForeignAgent(src, coa, plen))
        actions += self._register(now, self.s.lifetime, "new-agent")
        return actions

    def _agent_timers(self, now: float) -> list[MnAction]:
        actions: list[MnAction] = []
        if self.agent is not None and now >= self.agent.expires and \
                self._step(Input.AGENT_LOST):
            lost = self.agent
            self._left(self.registered_agent, None)
            self.agent = None
            self.care_of_address = None
            self._clear_timers()
            actions += [LeaveForeignAgent("advertisements stopped"),
                        Log("agent-lost", {"agent": lost.address}, "warning")]
            actions += self.link_up(now)
            if self.s.mode == "auto":
                self.discovery_deadline = now  # no other agent heard: go co-located now
        if self.discovery_deadline is not None and now >= self.discovery_deadline:
            self.discovery_deadline = None
            if self.via is Via.NONE and not self.dhcp_running:
                self.dhcp_running = True
                actions += [Log("no-agent", {"fallback": "co-located care-of address"}),
                            StartDhcp()]
        return actions

    def udp_tunnel_silent(self, now: float) -> list[MnAction]:
        """Nothing came back through the UDP tunnel for a while: the NAPT may have dropped
        its mapping.  A registration makes a new one and tells the HA (RFC 3519 §5)."""
        if self.state is not State.REGISTERED or not self.udp_keepalive:
            return []
        return [Log("udp-tunnel-silent", {"keepalive": self.udp_keepalive}, "warning")] + \
            self._register(now, self.s.lifetime, "udp-tunnel-silent")

    def shutdown(self, now: float) -> list[MnAction]:
        """Deregister (lifetime 0) before the daemon stops."""
        if self.state not in (State.REGISTERED, State.REGISTERING) or \
                self.care_of_address is None:
            return []
        return self._register(now, 0, "shutdown")

    def receive(self, data: bytes, src: IPv4Address, port: int, now: float) -> list[MnAction]:
        if BindingAck.matches(data):
            return self._binding_ack(data, src)
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
        auths = reply.find_all(MnHaAuth)
        if len(auths) != 1 or not verify(reply.signed_bytes(auths[0]), auths[0], self.s.sa):
            # RFC 5944 §3.6.2.1: silently discard, keep retransmitting
            return [Log("drop", {"src": f"{src}:{port}", "code": reply.code,
                                 "reason": "reply failed MN-HA authentication"}, "warning")]
        self.last_code = reply.code
        if reply.code == Code.HA_ID_MISMATCH:
            return self._resync(reply, now)
        home = reply.covered_by(auths[0])  # all we take from the home agent is in here
        challenge = home.find(MnFaChallenge)
        if reply.code == Code.HA_MN_FAILED_AUTH and challenge is not None:
            answered = pending.find(MnFaChallenge) is not None
            self.nat_challenge = challenge.challenge
            if not answered:  # seed Fig. 9b: the HA saw a NAPT; answer at once, once
                return [Log("napt-challenge", {"src": f"{src}:{port}"})] + \
                    self._register(now, pending.lifetime, "napt-challenge", keep_backoff=True)
        if not reply.accepted:
            self.pending = None
            self.retransmit_at = now + self.retransmit_delay
            self.retransmit_delay = min(self.retransmit_delay * 2, self.s.retransmit_max)
            return [Log("registration-denied", {"code": reply.code, "name": code_name(reply.code),
                                                "retry_in": round(self.retransmit_at - now, 1)},
                        "warning")]
        return self._accepted(reply, auths[0], now)

    def handle_timer(self, now: float) -> list[MnAction]:
        actions: list[MnAction] = self._agent_timers(now)
        if self.expires_at is not None and now >= self.expires_at and \
                self.state is State.REGISTERED:
            self._step(Input.BINDING_EXPIRED)
            self.expires_at = None
            actions += [TunnelDown("lifetime expired"), Log("binding-expired", {})]
            actions += self._register(now, self.s.lifetime, "expired")
        if self.retransmit_at is not None and now >= self.retransmit_at:
            if self.pending is None:  # backoff after a denial: build a fresh request
                lifetime = 0 if self.state is State.DEREGISTERING else self.s.lifetime
                actions += self._register(now, lifetime, "retry", keep_backoff=True)
            else:  # a fresh Identification each time: a lost reply must not turn into a 133
                actions += self._register(now, self.pending.lifetime, "retransmit",
                                          keep_backoff=True)
        if self.renew_at is not None and now >= self.renew_at and self.state is State.REGISTERED:
            self.renew_at = None
            actions += self._register(now, self.s.lifetime, "renew")
        return actions

    def next_timer(self) -> float | None:
        agent = self.agent.expires if self.agent is not None and self.via is Via.FA else None
        times = [t for t in (self.retransmit_at, self.renew_at, self.expires_at, agent,
                             self.discovery_deadline) if t is not None]
        return min(times) if times else None

    # --- internals ----------------------------------------------------------------

    def _clear_timers(self) -> None:
        self.pending = None
        self.retransmit_at = self.renew_at = self.expires_at = None

    def _identification(self, now: float) -> int:
        if self.s.replay is ReplayMethod.NONCE:
            return (self.ha_nonce << 32) | secrets.randbits(32)
        # RFC 5944 §5.7: each one greater than the last, even within a clock tick
        ident = max(timestamp_identification(now + self.clock_offset),
                    self.last_identification + 1)
        self.last_identification = ident
        return ident

    def _register(self, now: float, lifetime: int, why: str,
                  keep_backoff: bool = False) -> list[MnAction]:
        if self.care_of_address is None:
            return []
        flags = RequestFlags(0) if self.via is Via.FA else RequestFlags.D  # D: we decapsulate
        if self.s.reverse_tunnel:
            flags |= RequestFlags.T
        if self.s.encapsulation == "gre":
            flags |= RequestFlags.G
        exts: list[Extension] = [Nai(self.s.nai)] if self.s.nai else []
        if self.via is Via.COLOCATED and lifetime and self.s.udp_tunnel != "never":
            exts.append(UdpTunnelRequest(forced=self.s.udp_tunnel == "always"))
            if self.nat_challenge:
                exts.append(MnFaChallenge(self.nat_challenge))
        self.resynced = False
        req = RegistrationRequest.build(
            flags=flags, lifetime=lifetime, home_address=self.s.home_address,
            home_agent=self.s.home_agent, care_of_address=self.care_of_address,
            identification=self._identification(now), extensions=exts)
        self.pending = req
        data = append_authenticator(req.encode(), ExtType.MN_HA_AUTH, self.s.sa)
        if self.via is Via.FA and self.agent is not None:
            if self.previous_agent is not None and lifetime:
                data += self._notification(req.identification)
            if (sa := self._fa_sa(self.agent)) is not None:
                data = append_authenticator(data, ExtType.MN_FA_AUTH, sa)
        self.pending_bytes = data
        if not keep_backoff:
            self.retransmit_delay = self.s.retransmit_initial
        self.retransmit_at = now + self.retransmit_delay
        self.retransmit_delay = min(self.retransmit_delay * 2, self.s.retransmit_max)
        self._step(Input.DEREGISTRATION if lifetime == 0 else Input.REQUEST)
        self.reg_dst = self.agent.address if self.via is Via.FA and self.agent else \
            self.s.home_agent
        return [Send(self.reg_dst, MIP_PORT, self.pending_bytes),
                Log("register", {"why": why, "coa": self.care_of_address, "lifetime": lifetime,
                                 "via": self.via.value})]

    # --- previous-FA notification ---------------------------------------------------

    def _left(self, agent: Agent | None, new_address: IPv4Address | None) -> None:
        if agent is not None and agent.address != new_address and self.s.notify_previous_fa \
                and self._fa_sa(agent) is not None and self.s.replay is ReplayMethod.TIMESTAMP:
            self.previous_agent = agent
        self.registered_agent = None

    def _fa_sa(self, agent: Agent) -> SecurityAssociation | None:
        return self.s.fa_peers.get(agent.address) or self.s.fa_peers.get(agent.care_of_address)

    def _binding_update(self, agent: Agent, identification: int, lifetime: int = 0) -> bytes:
        """The Binding Update telling ``agent`` we are gone, signed with our key for it;
        ``lifetime``: how long it is to forward to our new care-of address."""
        assert self.care_of_address is not None
        sa = self._fa_sa(agent)
        assert sa is not None
        bu = BindingUpdate.build(home_address=self.s.home_address,
                                 care_of_address=self.care_of_address,
                                 identification=identification, lifetime=lifetime,
                                 vendor_id=self.s.vendor_id)
        return append_authenticator(bu.encode(), ExtType.MN_FA_AUTH, sa)

    def _notification(self, identification: int) -> bytes:
        """The NVSE asking the new FA to send that Binding Update for us."""
        agent = self.previous_agent
        assert agent is not None
        sa = self._fa_sa(agent)
        assert sa is not None
        lifetime = min(self.s.forwarding_lifetime, self.s.lifetime)
        signed = self._binding_update(agent, identification, lifetime)
        return PreviousFaNotification(agent.care_of_address, lifetime, sa.spi,
                                      signed[-sa.algorithm.digest_size:],
                                      self.s.vendor_id).encode()

    def _tell_previous_fa_ourselves(self, now: float) -> list[MnAction]:
        """No new FA to relay it (home, or co-located): send the Binding Update ourselves."""
        agent, self.previous_agent = self.previous_agent, None
        if agent is None:
            return []
        data = self._binding_update(agent, self._identification(now))
        return [Send(agent.care_of_address, MIP_PORT, data),
                Log("notify-previous-fa", {"previous_fa": agent.care_of_address,
                                           "via": "direct"})]

    def _binding_ack(self, data: bytes, src: IPv4Address) -> list[MnAction]:
        try:
            ack = BindingAck.decode(data, self.ctx)
        except DecodeError as exc:
            return [Log("drop", {"src": src, "reason": str(exc)}, "warning")]
        sa = self.s.fa_peers.get(src)
        auths = ack.find_all(MnFaAuth)
        if sa is None or len(auths) != 1 or not verify(ack.signed_bytes(auths[0]), auths[0],
                                                       sa):
            return [Log("drop", {"src": src, "reason": "binding acknowledgement not signed "
                                 "with our key for that agent"}, "warning")]
        return [Log("previous-fa-notified", {"previous_fa": src, "status": ack.status},
                    "info" if ack.status == 0 else "warning")]

    def _resync(self, reply: RegistrationReply, now: float) -> list[MnAction]:
        if self.s.replay is ReplayMethod.NONCE:
            self.ha_nonce = reply.identification >> 32
        else:
            ha_time = (reply.identification >> 32) - NTP_EPOCH_OFFSET
            self.clock_offset = ha_time - now
            self.last_identification = 0  # the HA's clock rules from now on
        lifetime = self.pending.lifetime if self.pending else self.s.lifetime
        actions: list[MnAction] = [Log("resync", {"offset": round(self.clock_offset, 1),
                                                "method": self.s.replay.value})]
        if self.resynced:
            # a 133 again: the HA has accepted a later identification than its clock (ours
            # was fast, then stepped back); a request per round trip would not get through
            # sooner, so wait with the retransmission backoff (RFC 5944 §3.6.3)
            self.pending = None
            self.retransmit_at = now + self.retransmit_delay
            self.retransmit_delay = min(self.retransmit_delay * 2, self.s.retransmit_max)
            return actions + [Log("resync-wait", {
                "retry_in": round(self.retransmit_at - now, 1)}, "warning")]
        actions += self._register(now, lifetime, "resync", keep_backoff=True)
        self.resynced = True
        return actions

    def _from_agent(self, reply: RegistrationReply, mn_ha: MnHaAuth) -> Region:
        """What the foreign agent added after the MN-HA authenticator, if an MN-FA
        authenticator with our key for this agent covers it; else nothing."""
        after = reply.after(mn_ha)
        sa = self._fa_sa(self.agent) if self.agent is not None else None
        theirs = after.find_all(MnFaAuth)
        if sa is None or len(theirs) != 1 or not verify(reply.signed_bytes(theirs[0]),
                                                        theirs[0], sa):
            return Region()
        return reply.between(mn_ha, theirs[0])

    def _accepted(self, reply: RegistrationReply, mn_ha: MnHaAuth,
                  now: float) -> list[MnAction]:
        assert self.pending is not None
        deregistration = self.pending.lifetime == 0
        if self.s.replay is ReplayMethod.NONCE:
            self.ha_nonce = reply.identification >> 32
        self._clear_timers()
        if deregistration:
            self._step(Input.DEREGISTERED)
            return [Log("deregistered", {"home": self.state is State.HOME})]
        actions: list[MnAction] = []
        if self.via is Via.FA:
            self.registered_agent, self.previous_agent = self.agent, None  # the new FA tells it
            in_use = self._from_agent(reply, mn_ha).find(HomeAddressInUse)
            if in_use is not None and in_use.home_address != self.s.home_address:
                in_use = None
            actions.append(OwnAddressOut(in_use is not None,
                                         in_use.temporary_address if in_use else None))
        elif self.via is Via.COLOCATED:
            actions += self._tell_previous_fa_ourselves(now)
        home = reply.covered_by(mn_ha)  # routes, filters, UDP tunnel: the home agent's
        routes = tuple(r for e in home.find_all(StaticRoutesExtension) for r in e.entries)
        filters = tuple(f for e in home.find_all(FilterRulesExtension) for f in e.entries)
        udp = home.find(UdpTunnelReply)
        self.nat_challenge = b""
        self.udp_keepalive = udp.keepalive if udp is not None and udp.code == 0 else 0
        self.granted_lifetime = reply.lifetime
        self.renew_at = now + reply.lifetime * self.s.renew_fraction
        self.expires_at = now + reply.lifetime
        first = self.state is not State.REGISTERED
        self._step(Input.ACCEPTED)
        assert self.care_of_address is not None
        if self.via is Via.COLOCATED:
            encapsulation = "udp" if self.udp_keepalive else self.s.encapsulation
            actions.append(TunnelUp(self.care_of_address, self.s.home_agent, self.s.home_address,
                                    encapsulation, reply.lifetime, routes, filters,
                                    self.udp_keepalive))
        return actions + [
            Log("registered" if first else "renewed",
                {"coa": self.care_of_address, "lifetime": reply.lifetime, "code": reply.code,
                 "via": self.via.value})]
