"""Fig. 1 in memory: MN, foreign agent and home agent engines wired together."""

from ipaddress import IPv4Address as A

import pytest

from mipro.core.actions import Send, SendIcmp, SendToLink
from mipro.core.advertiser import Advertiser, AdvertPolicy
from mipro.core.fa import AddVisitor, FaPolicy, ForeignAgent, RemoveVisitor
from mipro.core.ha import HaPolicy, HomeAgent
from mipro.core.mn import (
    AtHome,
    LeaveForeignAgent,
    MnSettings,
    MobileNode,
    OwnAddressOut,
    StartDhcp,
    State,
    UseForeignAgent,
)
from mipro.security import SecurityAssociation
from mipro.subscribers.model import MemoryStore, Subscriber
from mipro.wire import AgentFlags, RegistrationReply

HA = A("10.1.0.1")
HOME = A("10.1.0.100")
FA1, FA2 = A("198.51.100.1"), A("192.0.2.129")
MAC = bytes.fromhex("020000000100")
KEY = b"mn-ha secret key"
FA_KEY = SecurityAssociation(300, b"fa-ha secret key")
NOW = 1_790_000_000.0


def fa_engine(address=FA1, now=NOW, **policy):
    adv = Advertiser(AdvertPolicy(address, 24, AgentFlags.F | AgentFlags.R | AgentFlags.T |
                                  AgentFlags.G, (address,), 600, 1.0), now)
    return ForeignAgent(FaPolicy(address, (address,), **policy), adv)


def setup(mode="auto", fa_policy=None, ha_fa_keys=None, **mn):
    ha = HomeAgent(HaPolicy((HA,), fa_associations=ha_fa_keys or {}),
                   MemoryStore([Subscriber(HOME, "mn", {256: SecurityAssociation(256, KEY)})]))
    fa = fa_engine(**(fa_policy or {}))
    node = MobileNode(MnSettings(HOME, HA, SecurityAssociation(256, KEY), lifetime=300,
                                 mode=mode, **mn))
    return ha, fa, node


def run(ha, fa, mn, actions, now, fas=None):
    """Carry messages around until quiet: MN <-> FA (by link layer) <-> HA."""
    fas = fas or {fa.policy.address: fa}
    seen = []
    queue = [(HOME, a) for a in actions]  # (who sent it, action)
    while queue:
        origin, a = queue.pop(0)
        seen.append(a)
        if isinstance(a, Send) and a.dst in fas:  # MN -> FA
            agent = fas[a.dst]
            queue += [(agent.policy.address, x)
                      for x in agent.request_from_mn(a.data, HOME, 5000, MAC, now)]
        elif isinstance(a, Send) and a.dst == HA:  # FA or MN -> HA
            for out in ha.receive(a.data, origin, 434, now):
                seen.append(out)
                if isinstance(out, Send) and out.dst in fas:
                    queue += [(out.dst, x) for x in fas[out.dst].reply_from_ha(out.data, HA,
                                                                               434, now)]
                elif isinstance(out, Send):
                    queue += [(HOME, x) for x in mn.receive(out.data, HA, 434, now)]
        elif isinstance(a, SendToLink):  # FA -> MN
            assert a.mac == MAC
            queue += [(HOME, x) for x in mn.receive(a.data, a.src, 434, now)]
    return seen


def of(kind, actions):
    return [a for a in actions if isinstance(a, kind)]


def advert(fa, now):
    return of(SendIcmp, fa.handle_timer(now))[0].data


def test_registration_through_a_foreign_agent():
    ha, fa, mn = setup()
    assert of(SendIcmp, mn.link_up(NOW))[0].dst == A("224.0.0.2")  # solicitation
    seen = run(ha, fa, mn, mn.advertisement(advert(fa, NOW), FA1, NOW), NOW)
    assert of(UseForeignAgent, seen)[0].agent == FA1
    assert mn.state is State.REGISTERED and mn.using == "fa"
    assert ha.bindings.get(HOME).care_of_address == FA1
    visitor = of(AddVisitor, seen)[0].visitor
    assert visitor.mac == MAC and visitor.state == "accepted" and visitor.reverse_tunnel
    assert fa.visitors[(HOME, MAC)].lifetime == 300


MN_FA_KEY = SecurityAssociation(400, b"mn-fa secret key")


def test_a_visited_host_with_the_home_address_is_announced_to_the_mn():
    """Figs. 3c, 5 (CN 4c): the FA knows a host with the MN's address; the reply it relays
    says so (after the MN-HA authenticator, under an MN-FA authenticator), and the MN
    sends to that address out."""
    asked = []
    in_use = {HOME: A("172.16.5.1")}
    ha, fa, mn = setup(fa_policy={"address_in_use": lambda h: asked.append(h) or in_use.get(h),
                                  "mn_fa": {HOME: MN_FA_KEY}},
                       fa_peers={FA1: MN_FA_KEY})
    mn.link_up(NOW)
    seen = run(ha, fa, mn, mn.advertisement(advert(fa, NOW), FA1, NOW), NOW)
    assert asked == [HOME] and mn.state is State.REGISTERED  # MN-HA auth still holds
    assert of(AddVisitor, seen)[0].visitor.temporary_address == A("172.16.5.1")
    assert of(OwnAddressOut, seen) == [OwnAddressOut(True, A("172.16.5.1"))]
    in_use.clear()  # the host went: the renewal says nothing, the MN loops back again
    t = mn.renew_at
    run(ha, fa, mn, mn.advertisement(advert(fa, t), FA1, t), t)  # the agent is still there
    renewal = run(ha, fa, mn, mn.handle_timer(t), t)
    assert of(OwnAddressOut, renewal) == [OwnAddressOut(False, None)]
    assert of(AddVisitor, renewal)[0].visitor.temporary_address is None


def test_handover_to_a_second_agent_and_home():
    ha, fa, mn = setup()
    fa2 = fa_engine(FA2)
    fas = {FA1: fa, FA2: fa2}
    run(ha, fa, mn, mn.advertisement(advert(fa, NOW), FA1, NOW), NOW, fas)
    seen = run(ha, fa2, mn, mn.advertisement(advert(fa2, NOW + 5), FA2, NOW + 5), NOW + 5,
               {FA2: fa2})
    assert ha.bindings.get(HOME).care_of_address == FA2
    assert (HOME, MAC) in fa2.visitors and of(UseForeignAgent, seen)[0].agent == FA2
    # FA1's entry goes when its lifetime does
    removed = of(RemoveVisitor, fa.handle_timer(NOW + 301))
    assert removed and removed[0].reason == "expired" and not fa.visitors
    # home: the HA's own advertisement (H bit) makes the MN deregister
    home_adv = Advertiser(AdvertPolicy(HA, 24, AgentFlags.H), NOW).handle_timer(NOW)[0].data
    seen = run(ha, fa2, mn, mn.advertisement(home_adv, HA, NOW + 10), NOW + 10, {FA2: fa2})
    assert of(AtHome, seen) and of(LeaveForeignAgent, seen)
    assert mn.state is State.HOME and len(ha.bindings) == 0


@pytest.mark.parametrize("policy,mn_settings,code", [
    ({"max_lifetime": 100}, {}, 69),
    ({"encapsulations": frozenset({"ipip"})}, {"encapsulation": "gre"}, 72),
    ({"reverse_tunneling": False}, {}, 74),
    ({"reverse_tunnel_required": True}, {"reverse_tunnel": False}, 75),
])
def test_fa_denials_reach_the_mn_and_leave_no_state(policy, mn_settings, code):
    ha, fa, mn = setup(fa_policy=policy, **mn_settings)
    seen = run(ha, fa, mn, mn.advertisement(advert(fa, NOW), FA1, NOW), NOW)
    to_mn = of(SendToLink, seen)
    assert [RegistrationReply.decode(s.data).code for s in to_mn] == [code]
    assert not fa.visitors and not fa.pending and len(ha.bindings) == 0
    assert not [s for s in of(Send, seen) if s.dst == HA]  # never reached the HA
    assert mn.last_code is None  # a denial without MN-HA auth is not trusted as such


def test_invalid_care_of_address_77():
    ha, fa, mn = setup()
    fa.policy = FaPolicy(FA1, (A("198.51.100.254"),))
    seen = run(ha, fa, mn, mn.advertisement(advert(fa, NOW), FA1, NOW), NOW)
    assert RegistrationReply.decode(of(SendToLink, seen)[0].data).code == 77


def test_fa_ha_authentication_both_ways():
    ha, fa, mn = setup(fa_policy={"ha_peers": {HA: FA_KEY}}, ha_fa_keys={FA1: FA_KEY})
    run(ha, fa, mn, mn.advertisement(advert(fa, NOW), FA1, NOW), NOW)
    assert mn.state is State.REGISTERED and (HOME, MAC) in fa.visitors


def test_fa_ha_key_mismatch_is_68_at_the_mn():
    """A reply that fails FA-HA is dropped (it may be forged: the real one may follow);
    when no authentic reply comes, the MN hears 68 at the timeout, not 78."""
    ha, fa, mn = setup(fa_policy={"ha_peers": {HA: SecurityAssociation(300, b"x" * 16)}},
                       ha_fa_keys={})
    seen = run(ha, fa, mn, mn.advertisement(advert(fa, NOW), FA1, NOW), NOW)
    assert not of(SendToLink, seen) and len(fa.pending) == 1
    assert fa.counters["ha_failed_auth"] == 1
    out = fa.handle_timer(NOW + 8)
    assert RegistrationReply.decode(of(SendToLink, out)[-1].data).code == 68
    assert not fa.visitors and not fa.pending


def test_fa_without_key_is_refused_by_ha_that_requires_one():
    ha, fa, mn = setup(ha_fa_keys={FA1: FA_KEY})
    seen = run(ha, fa, mn, mn.advertisement(advert(fa, NOW), FA1, NOW), NOW)
    assert RegistrationReply.decode(of(SendToLink, seen)[-1].data).code == 132
    assert not fa.visitors and len(ha.bindings) == 0


def test_pending_request_times_out_with_78():
    _, fa, mn = setup()
    actions = mn.advertisement(advert(fa, NOW), FA1, NOW)
    send = [a for a in actions if isinstance(a, Send)][0]
    fa.request_from_mn(send.data, HOME, 5000, MAC, NOW)
    out = fa.handle_timer(NOW + 8)
    replies = [RegistrationReply.decode(a.data).code for a in of(SendToLink, out)]
    assert replies == [78] and not fa.pending


def test_losing_the_agent_falls_back_to_dhcp():
    ha, fa, mn = setup()
    run(ha, fa, mn, mn.advertisement(advert(fa, NOW), FA1, NOW), NOW)
    out = mn.handle_timer(NOW + 3.5)  # three missed advertisements
    assert of(LeaveForeignAgent, out) and of(StartDhcp, out)
    assert mn.using == "none"


def test_auto_mode_without_agents_uses_dhcp():
    _, _, mn = setup()
    mn.link_up(NOW)
    assert of(StartDhcp, mn.handle_timer(NOW + 1.0))


def test_advertiser_sequence_and_solicitation():
    fa = fa_engine()
    first = advert(fa, NOW)
    assert fa.handle_timer(NOW + 0.1) == []  # not yet
    sol = fa.solicitation(HOME, NOW + 0.1)
    assert sol[0].dst == A("224.0.0.1") and sol[0].data != first


# --- route optimization (Figs. 6a, 12a): routes and filters in the reply -------------------

from ipaddress import IPv4Network as N  # noqa: E402

from mipro.core.fa import Visitor  # noqa: E402
from mipro.core.mn import TunnelUp  # noqa: E402
from mipro.wire import FilterRule, FilterRulesExtension, StaticRoute, Verdict  # noqa: E402

ROUTES = (StaticRoute(N("198.51.100.0/24"), A("0.0.0.0"), 5, False),
          StaticRoute(N("0.0.0.0/0"), A("0.0.0.0"), 100, True))
FILTERS = (FilterRule(destination=N("203.0.113.10/32"), protocol=17, verdict=Verdict.DENY,
                      both_directions=True, dport=(5060, 5061)),)


def ro_setup(mode="auto"):
    sub = Subscriber(HOME, "mn", {256: SecurityAssociation(256, KEY)}, routes=ROUTES,
                     filters=FILTERS)
    ha = HomeAgent(HaPolicy((HA,), fa_associations={FA1: FA_KEY}), MemoryStore([sub]))
    fa = fa_engine(ha_peers={HA: FA_KEY})
    mn = MobileNode(MnSettings(HOME, HA, SecurityAssociation(256, KEY), lifetime=300, mode=mode))
    return ha, fa, mn


def test_fa_applies_and_strips_routes_and_filters():
    ha, fa, mn = ro_setup()
    seen = run(ha, fa, mn, mn.advertisement(advert(fa, NOW), FA1, NOW), NOW)
    visitor: Visitor = of(AddVisitor, seen)[0].visitor
    assert visitor.routes[0].destination == N("198.51.100.0/24")
    assert visitor.routes[1].router == HA  # tunnel routes name the home agent as router
    assert visitor.filters == FILTERS
    # the reply the MN got has no NVSE left and its MN-HA authenticator verified
    to_mn = RegistrationReply.decode(of(SendToLink, seen)[-1].data)
    assert not to_mn.find_all(FilterRulesExtension) and mn.state is State.REGISTERED
    # the HA placed them between the MN-HA and FA-HA authenticators
    from_ha = [a for a in seen if isinstance(a, Send) and a.dst == FA1][-1]
    types = [e.ext_type for e in RegistrationReply.decode(from_ha.data).extensions]
    assert types == [32, 134, 134, 34]


def test_colocated_mn_receives_routes_under_mn_ha_auth():
    sub = Subscriber(HOME, "mn", {256: SecurityAssociation(256, KEY)}, routes=ROUTES,
                     filters=FILTERS)
    ha = HomeAgent(HaPolicy((HA,)), MemoryStore([sub]))
    mn = MobileNode(MnSettings(HOME, HA, SecurityAssociation(256, KEY), lifetime=300))
    coa = A("198.51.100.77")
    actions = mn.attach(coa, NOW)
    req = [a for a in actions if isinstance(a, Send)][0]
    out = ha.receive(req.data, coa, 5000, NOW)
    reply = [a for a in out if isinstance(a, Send)][0]
    types = [e.ext_type for e in RegistrationReply.decode(reply.data).extensions]
    assert types == [134, 134, 32]
    up = of(TunnelUp, mn.receive(reply.data, HA, 434, NOW))[0]
    assert up.routes[0].destination == N("198.51.100.0/24") and up.filters == FILTERS
