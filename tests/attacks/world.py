"""Engines, keys and message builders for the attack tests: the attacker's toolbox."""

from __future__ import annotations

import copy
from ipaddress import IPv4Address as A
from ipaddress import IPv4Network as N

from mipro.core.actions import FetchSubscriber, InstallBinding, Log, RemoveBinding, Send, SendToLink
from mipro.core.advertiser import Advertiser, AdvertPolicy
from mipro.core.fa import (
    AddForward,
    AddVisitor,
    FaPolicy,
    ForeignAgent,
    RemoveForward,
    RemoveVisitor,
)
from mipro.core.ha import HaPolicy, HomeAgent
from mipro.security import SecurityAssociation, append_authenticator
from mipro.security.replay import ReplayMethod, timestamp_identification
from mipro.subscribers.model import MemoryStore, Subscriber
from mipro.wire import (
    AgentFlags,
    ExtType,
    FilterRule,
    FilterRulesExtension,
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    StaticRoute,
    StaticRoutesExtension,
    Verdict,
)

HA = A("10.1.0.1")
HOME_NET = N("10.1.0.0/24")
HOME, OTHER = A("10.1.0.100"), A("10.1.0.101")  # two subscribers
UNOWNED = A("10.1.0.77")  # on the home link, nobody's
COA = A("198.51.100.23")
FA_ADDR = A("198.51.100.1")
ATTACKER = A("203.0.113.66")
MAC, EVIL_MAC = bytes.fromhex("020000000100"), bytes.fromhex("02000000dead")
KEY, OTHER_KEY = b"mn-ha secret key", b"other mn-ha key!"
SA, OTHER_SA = SecurityAssociation(256, KEY), SecurityAssociation(257, OTHER_KEY)
FA_SA = SecurityAssociation(300, b"fa-ha secret key")
MN_FA_SA = SecurityAssociation(400, b"mn-fa secret key")
NOW = 1_790_000_000.0

EVIL_ROUTES = StaticRoutesExtension((StaticRoute(N("0.0.0.0/0"), ATTACKER, 0, False),))
EVIL_FILTERS = FilterRulesExtension((FilterRule(verdict=Verdict.ACCEPT, nat=True,
                                                nat_address=ATTACKER),))


def subscribers(replay=ReplayMethod.TIMESTAMP, **extra):
    return [Subscriber(HOME, "mn1@home.example", {256: SA}, replay=replay, **extra),
            Subscriber(OTHER, "mn2@home.example", {257: OTHER_SA}, replay=replay)]


def home_agent(replay=ReplayMethod.TIMESTAMP, subs=None, **policy):
    policy.setdefault("home_networks", (HOME_NET,))
    return HomeAgent(HaPolicy((HA,), **policy), MemoryStore(subs or subscribers(replay)))


def foreign_agent(**policy):
    adv = Advertiser(AdvertPolicy(FA_ADDR, 24, AgentFlags.F | AgentFlags.T, (FA_ADDR,)), NOW)
    return ForeignAgent(FaPolicy(FA_ADDR, (FA_ADDR,), **policy), adv)


def request(ident=None, sa=SA, home=HOME, ha=HA, coa=COA, lifetime=300, flags=0,
            before=(), after=(), now=NOW) -> bytes:
    """A registration request signed with ``sa``; ``before``/``after`` the authenticator."""
    req = RegistrationRequest.build(
        flags=RequestFlags(flags), lifetime=lifetime, home_address=home, home_agent=ha,
        care_of_address=coa, identification=ident if ident is not None else
        timestamp_identification(now), extensions=list(before))
    data = append_authenticator(req.encode(), ExtType.MN_HA_AUTH, sa)
    return data + b"".join(e.encode() for e in after)


def of(kind, actions):
    return [a for a in actions if isinstance(a, kind)]


def reply_of(actions) -> RegistrationReply:
    sends = of(Send, actions) + of(SendToLink, actions)
    assert len(sends) == 1, actions
    return RegistrationReply.decode(sends[0].data)


def ha_state(ha: HomeAgent) -> dict:
    """Everything an HA engine may change: compared before and after an attack."""
    return {"bindings": sorted((b.home_address, b.care_of_address, b.expires)
                               for b in ha.bindings),
            "replay": {h: (s.last_accepted, s.nonce) for h, s in ha.replay.items()},
            "challenges": {h: (c.value, c.source) for h, c in ha.challenges.items()},
            "parked": copy.deepcopy(ha.parked)}


def fa_state(fa: ForeignAgent) -> dict:
    return {"visitors": dict(fa.visitors), "pending": {k: p.visitor for k, p in
                                                       fa.pending.items()},
            "notifications": dict(fa.notifications), "cache": dict(fa.cache)}


def kernel_work(actions) -> list:
    return of(InstallBinding, actions) + of(RemoveBinding, actions) + \
        of(AddVisitor, actions) + of(RemoveVisitor, actions) + of(FetchSubscriber, actions) + \
        of(AddForward, actions) + of(RemoveForward, actions)


__all__ = ["A", "N", "Log", "NOW"]
