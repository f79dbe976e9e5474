"""Attacks on the mobile node engine: what it takes from a reply, and inputs in odd states."""

from mipro.core.actions import Send
from mipro.core.advertiser import Advertiser, AdvertPolicy
from mipro.core.mn import MnSettings, MobileNode, OwnAddressOut, State, TunnelUp
from mipro.security import SecurityAssociation, append_authenticator
from mipro.wire import (
    AgentFlags,
    ExtType,
    HomeAddressInUse,
    RegistrationReply,
    UdpTunnelReply,
)

from .world import (
    COA,
    EVIL_FILTERS,
    EVIL_ROUTES,
    FA_ADDR,
    HA,
    HOME,
    MN_FA_SA,
    NOW,
    SA,
    A,
    home_agent,
    of,
)


def mobile(**settings):
    return MobileNode(MnSettings(HOME, HA, SA, lifetime=300, **settings))


def reply_for(mn, before=(), after=(), code=0, lifetime=300):
    reply = RegistrationReply.build(code=code, lifetime=lifetime, home_address=HOME,
                                    home_agent=HA, identification=mn.pending.identification,
                                    extensions=list(before))
    return append_authenticator(reply.encode(), ExtType.MN_HA_AUTH, SA) + \
        b"".join(e.encode() for e in after)


def test_a_colocated_mn_takes_nothing_from_after_its_authenticator():
    """Item 2: routes, filters, a UDP Tunnel Reply and home-address-in-use appended after
    MN-HA (by anyone on the path) are ignored; the same before it are the HA's."""
    mn = mobile()
    mn.attach(COA, NOW)
    extra = [EVIL_ROUTES, EVIL_FILTERS, UdpTunnelReply(0, True, 5),
             HomeAddressInUse(HOME, A("203.0.113.66"))]
    up = of(TunnelUp, mn.receive(reply_for(mn, after=extra), HA, 434, NOW))[0]
    assert up.routes == () and up.filters == () and up.encapsulation == "ipip"
    assert up.udp_keepalive == 0 and mn.udp_keepalive == 0
    mn = mobile()
    mn.attach(COA, NOW)
    up = of(TunnelUp, mn.receive(reply_for(mn, before=[EVIL_ROUTES]), HA, 434, NOW))[0]
    assert up.routes == EVIL_ROUTES.entries  # covered: the home agent said so


def fa_mode(fa_peers=None):
    mn = mobile(mode="fa", fa_peers=fa_peers or {})
    adv = Advertiser(AdvertPolicy(FA_ADDR, 24, AgentFlags.F, (FA_ADDR,)), NOW)
    mn.advertisement(adv.handle_timer(NOW)[0].data, FA_ADDR, NOW)
    assert mn.using == "fa" and mn.pending is not None
    return mn


def test_home_address_in_use_needs_the_agents_mn_fa_authenticator():
    """An unsigned 'home address in use' would let anyone on the link pull the MN's
    traffic to its own address towards the FA: it needs MN-FA coverage."""
    in_use = HomeAddressInUse(HOME, A("172.16.5.1"))
    mn = fa_mode()
    out = mn.receive(reply_for(mn, after=[in_use]), FA_ADDR, 434, NOW)
    assert of(OwnAddressOut, out) == [OwnAddressOut(False, None)]
    mn = fa_mode({FA_ADDR: MN_FA_SA})
    data = append_authenticator(reply_for(mn, after=[in_use]), ExtType.MN_FA_AUTH, MN_FA_SA)
    assert of(OwnAddressOut, mn.receive(data, FA_ADDR, 434, NOW)) == \
        [OwnAddressOut(True, A("172.16.5.1"))]
    mn = fa_mode({FA_ADDR: MN_FA_SA})
    forged = append_authenticator(reply_for(mn, after=[in_use]), ExtType.MN_FA_AUTH,
                                  SecurityAssociation(400, b"not the fa's key"))
    assert of(OwnAddressOut, mn.receive(forged, FA_ADDR, 434, NOW)) == \
        [OwnAddressOut(False, None)]


def test_hearing_its_home_agent_while_idle_deregisters_without_an_exception():
    """Item 3: booting at home, the first thing heard is the HA's advertisement."""
    mn = mobile(mode="auto")
    assert mn.state is State.IDLE
    home_adv = Advertiser(AdvertPolicy(HA, 24, AgentFlags.H), NOW).handle_timer(NOW)[0].data
    out = mn.advertisement(home_adv, HA, NOW)
    sends = of(Send, out)
    assert sends and mn.state is State.DEREGISTERING
    ha = home_agent()
    answer = ha.receive(sends[0].data, HOME, 434, NOW)
    mn.receive(of(Send, answer)[0].data, HA, 434, NOW)
    assert mn.state is State.HOME
    assert mn.handle_timer(NOW + 100) == []  # and the timer has nothing left to trip on


def test_a_fast_clock_still_resynchronises():
    """Identifications only increase, except after a 133: the HA's clock then rules."""
    ha = home_agent()
    mn = mobile()
    skew = 300.0  # the MN's clock is 5 minutes fast
    out = mn.attach(COA, NOW + skew)
    for _ in range(3):
        replies = [s for a in of(Send, out) for s in of(Send, ha.receive(a.data, COA, 434,
                                                                          NOW))]
        out = [x for r in replies for x in mn.receive(r.data, HA, 434, NOW + skew)]
    assert mn.state is State.REGISTERED and ha.bindings.get(HOME) is not None


def exchange(ha, mn, out, now, src):
    """MN <-> HA until quiet (at most 50 round trips, all at ``now``); returns the requests
    the MN sent."""
    sent = 0
    for _ in range(50):
        sends = of(Send, out)
        if not sends:
            break
        sent += len(sends)
        out = [x for s in sends for r in of(Send, ha.receive(s.data, src, 434, now))
               for x in mn.receive(r.data, HA, 434, now)]
    return sent


def test_a_clock_stepped_back_within_the_window_does_not_flood_the_home_agent():
    """Fuzzer find (bench/fuzz_engines.py, message loops): the MN answered every 133 with a
    new request at once.  Here it registered while its clock was 3 s fast (the HA allows
    7), then its daemon restarted with the clock corrected: the identification the HA last
    accepted is ahead of anything the resynchronised MN can send until the HA's clock
    passes it, so each 133 brought the next request, one per round trip, for seconds.
    Now a 133 answering a request that was itself a resynchronisation waits, with the
    retransmission backoff, and the registration goes through once the clock caught up."""
    ha = home_agent()
    fast = mobile()
    assert exchange(ha, fast, fast.attach(COA, NOW + 3), NOW, COA) == 1  # accepted
    mn = mobile()  # restarted, its clock stepped back to the right time
    sent = exchange(ha, mn, mn.attach(COA, NOW + 0.5), NOW + 0.5, COA)
    assert sent == 2  # the request and one resynchronised retry, not a request per RTT
    assert mn.state is State.REGISTERING
    t = NOW + 0.5
    for _ in range(10):  # backing off, it gets through once the HA's clock has caught up
        t = mn.next_timer()
        sent += exchange(ha, mn, mn.handle_timer(t), t, COA)
        if mn.state is State.REGISTERED:
            break
    assert mn.state is State.REGISTERED and NOW + 3 < t < NOW + 3 + 8 and sent <= 10
