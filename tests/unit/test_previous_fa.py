"""Fig. 3b with the previous-FA notification: FA2 tells FA1 that the MN moved on."""

from ipaddress import IPv4Address as A

from mipro.core.actions import Log, Send, SendToLink
from mipro.core.advertiser import Advertiser, AdvertPolicy
from mipro.core.fa import AddForward, AddVisitor, FaPolicy, RemoveForward, RemoveVisitor
from mipro.core.mn import AtHome
from mipro.security import SecurityAssociation
from mipro.wire import (
    AgentFlags,
    BindingAck,
    BindingStatus,
    BindingUpdate,
    ExtType,
    MnFaAuth,
    PreviousFaNotification,
    RegistrationRequest,
)

from .test_fa_engine import FA1, FA2, HA, HOME, MAC, NOW, advert, fa_engine, of, setup

FA1_KEY = SecurityAssociation(400, b"mn-fa1 secret")
FA2_KEY = SecurityAssociation(401, b"mn-fa2 secret")


def world(fa1_key=True, **mn):
    peers = {FA1: FA1_KEY, FA2: FA2_KEY} if fa1_key else {FA2: FA2_KEY}
    ha, fa1, node = setup(fa_policy={"mn_fa": {HOME: FA1_KEY}} if fa1_key else {},
                          fa_peers=peers, **mn)
    fa2 = fa_engine(FA2, mn_fa={HOME: FA2_KEY})
    return ha, {FA1: fa1, FA2: fa2}, node


def deliver(ha, fas, mn, actions, now, origin=HOME, trace=None):
    """Carry every message to its addressee until quiet; return all actions seen (and append
    (sender, action) pairs to ``trace`` if given)."""
    seen, queue = [], [(origin, a) for a in actions]
    while queue:
        origin, a = queue.pop(0)
        seen.append(a)
        if trace is not None:
            trace.append((origin, a))
        if isinstance(a, SendToLink):
            assert a.mac == MAC
            queue += [(HOME, x) for x in mn.receive(a.data, a.src, 434, now)]
        elif not isinstance(a, Send):
            continue
        elif a.dst in fas and origin == HOME and a.data[0] == 1:  # MN -> its FA, on the link
            queue += [(a.dst, x) for x in fas[a.dst].request_from_mn(a.data, HOME, 5000, MAC,
                                                                     now)]
        elif a.dst in fas:  # HA or another FA -> this FA's care-of address
            queue += [(a.dst, x) for x in fas[a.dst].from_network(a.data, origin, 434, now)]
        elif a.dst == HA:
            queue += [(HA, x) for x in ha.receive(a.data, origin, 434, now)]
        elif a.dst == HOME:
            queue += [(HOME, x) for x in mn.receive(a.data, origin, 434, now)]
    return seen


def move(ha, fas, mn, to, now, trace=None):
    return deliver(ha, fas, mn, mn.advertisement(advert(fas[to], now), to, now), now,
                   trace=trace)


def test_fa2_tells_fa1_and_fa1_drops_the_visitor_at_once():
    ha, fas, mn = world()
    move(ha, fas, mn, FA1, NOW)
    assert (HOME, MAC) in fas[FA1].visitors
    seen = move(ha, fas, mn, FA2, NOW + 5)
    assert ha.bindings.get(HOME).care_of_address == FA2
    assert (HOME, MAC) in fas[FA2].visitors
    removed = of(RemoveVisitor, seen)
    assert [r.reason for r in removed] == ["moved"] and not fas[FA1].visitors
    bu = [BindingUpdate.decode(s.data) for s in of(Send, seen) if BindingUpdate.matches(s.data)]
    assert len(bu) == 1 and bu[0].care_of_address == FA2 and bu[0].lifetime == 10
    acks = [BindingAck.decode(s.data) for s in of(Send, seen) if BindingAck.matches(s.data)]
    assert [a.status for a in acks] == [BindingStatus.ACCEPTED]


def test_the_notification_is_not_relayed_to_the_home_agent():
    ha, fas, mn = world()
    move(ha, fas, mn, FA1, NOW)
    seen = move(ha, fas, mn, FA2, NOW + 5)
    to_ha = [RegistrationRequest.decode(s.data) for s in of(Send, seen) if s.dst == HA]
    from_mn = [RegistrationRequest.decode(s.data) for s in of(Send, seen)
               if s.dst == FA2 and s.data[0] == 1]
    assert from_mn[0].find(PreviousFaNotification) and from_mn[0].find(MnFaAuth)
    assert not to_ha[0].find(PreviousFaNotification) and not to_ha[0].find(MnFaAuth)


def test_forged_binding_update_changes_nothing():
    ha, fas, mn = world()
    move(ha, fas, mn, FA1, NOW)
    ident = fas[FA1].visitors[(HOME, MAC)].identification + 1
    forged = BindingUpdate.build(home_address=HOME, care_of_address=A("203.0.113.66"),
                                 identification=ident,
                                 extensions=[MnFaAuth(FA1_KEY.spi, bytes(16))])
    out = fas[FA1].from_network(forged.encode(), A("203.0.113.66"), 434, NOW + 1)
    assert not of(RemoveVisitor, out) and (HOME, MAC) in fas[FA1].visitors
    assert not of(Send, out)  # an update that did not authenticate earns no answer
    assert [x for x in of(Log, out) if x.event == "binding-update-denied"]
    assert fas[FA1].counters["binding_update_unauthenticated"] == 1


def test_replayed_binding_update_is_refused_after_the_mn_comes_back():
    ha, fas, mn = world()
    move(ha, fas, mn, FA1, NOW)
    seen = move(ha, fas, mn, FA2, NOW + 5)
    bu = next(s.data for s in of(Send, seen) if BindingUpdate.matches(s.data))
    move(ha, fas, mn, FA1, NOW + 10)  # back to FA1 with a newer registration
    assert (HOME, MAC) in fas[FA1].visitors
    out = fas[FA1].from_network(bu, FA2, 434, NOW + 11)
    assert not of(RemoveVisitor, out) and (HOME, MAC) in fas[FA1].visitors
    assert BindingAck.decode(of(Send, out)[0].data).status == \
        BindingStatus.IDENTIFICATION_MISMATCH


def test_unanswered_notification_is_retransmitted_three_times_then_given_up():
    ha, fas, mn = world()
    move(ha, fas, mn, FA1, NOW)
    fa1 = fas.pop(FA1)  # FA1 is gone: nobody answers
    seen = move(ha, fas, mn, FA2, NOW + 5)
    assert (HOME, MAC) in fas[FA2].visitors and fa1.visitors
    sends = [s for s in of(Send, seen) if s.dst == FA1]
    t = NOW + 5
    while t < NOW + 30:
        t = fas[FA2].next_timer()
        sends += [s for s in of(Send, fas[FA2].handle_timer(t)) if s.dst == FA1]
    assert len(sends) == 3 and not fas[FA2].notifications
    assert fas[FA2].counters["previous_fa_unreachable"] == 1


def test_without_a_key_for_the_previous_fa_the_mn_asks_nothing():
    ha, fas, mn = world(fa1_key=False)
    move(ha, fas, mn, FA1, NOW)
    seen = move(ha, fas, mn, FA2, NOW + 5)
    assert not [s for s in of(Send, seen) if BindingUpdate.matches(s.data)]
    assert fas[FA1].visitors  # left to expire


def test_at_home_the_mn_tells_the_previous_fa_itself():
    ha, fas, mn = world()
    move(ha, fas, mn, FA1, NOW)
    home_adv = Advertiser(AdvertPolicy(HA, 24, AgentFlags.H), NOW).handle_timer(NOW)[0].data
    seen = deliver(ha, fas, mn, mn.advertisement(home_adv, HA, NOW + 5), NOW + 5)
    assert of(AtHome, seen) and not fas[FA1].visitors
    assert [r.reason for r in of(RemoveVisitor, seen)] == ["moved"]
    assert [x for x in of(Log, seen) if x.event == "previous-fa-notified"]


def test_notification_layout():
    n = PreviousFaNotification(FA1, 0, 400, bytes(range(16)))
    assert n.encode().hex() == ("8624" "0000" "00007ed9" "0004" "c6336401" "0000" "0000"
                                "00000190" "000102030405060708090a0b0c0d0e0f")
    assert ExtType.MN_FA_AUTH == 33


# --- the previous FA as a forwarding pointer ---------------------------------------------

def test_fa1_forwards_to_the_new_care_of_address_for_the_lifetime_asked():
    ha, fas, mn = world()
    move(ha, fas, mn, FA1, NOW)
    gre = fas[FA1].visitors[(HOME, MAC)].encapsulation
    seen = move(ha, fas, mn, FA2, NOW + 5)
    [fwd] = of(AddForward, seen)
    e = fwd.entry
    assert (e.home_address, e.home_agent, e.care_of_address) == (HOME, HA, FA2)
    assert e.forwarding and e.encapsulation == gre and e.expires == NOW + 5 + 10
    assert fas[FA1].cache[(HOME, HA)] is e
    # the pointer comes before the visitor's kernel state goes (tens of ms): the relay
    # re-tunnels and replays at once; its native route follows the visitor's removal
    kinds = [type(a) for a in seen if isinstance(a, RemoveVisitor | AddForward)]
    assert kinds == [AddForward, RemoveVisitor]
    assert not of(RemoveForward, fas[FA1].handle_timer(NOW + 14))
    assert (HOME, HA) in fas[FA1].cache
    out = fas[FA1].handle_timer(NOW + 15)
    assert [(r.entry, r.reason) for r in of(RemoveForward, out)] == [(e, "expired")]
    assert not fas[FA1].cache


def test_the_pointer_lives_no_longer_than_the_fa_allows():
    ha, fas, mn = world(forwarding_lifetime=300)
    fas[FA1].policy = FaPolicy(FA1, (FA1,), mn_fa={HOME: FA1_KEY}, max_cache_lifetime=3)
    move(ha, fas, mn, FA1, NOW)
    seen = move(ha, fas, mn, FA2, NOW + 5)
    assert [BindingUpdate.decode(s.data).lifetime for s in of(Send, seen)
            if BindingUpdate.matches(s.data)] == [300]
    assert of(AddForward, seen)[0].entry.expires == NOW + 5 + 3


def test_no_pointer_when_the_mn_asks_none_or_the_fa_forwards_nothing():
    ha, fas, mn = world(forwarding_lifetime=0)
    move(ha, fas, mn, FA1, NOW)
    seen = move(ha, fas, mn, FA2, NOW + 5)
    assert not of(AddForward, seen) and not fas[FA1].cache and not fas[FA1].visitors
    ha, fas, mn = world()
    fas[FA1].policy = FaPolicy(FA1, (FA1,), mn_fa={HOME: FA1_KEY}, forwarding=False)
    move(ha, fas, mn, FA1, NOW)
    seen = move(ha, fas, mn, FA2, NOW + 5)
    assert not of(AddForward, seen) and not fas[FA1].visitors
    assert not fas[FA1].cache[(HOME, HA)].forwarding  # remembered, not forwarded
    assert not of(RemoveForward, fas[FA1].handle_timer(NOW + 60))


def test_coming_back_to_fa1_ends_its_pointer_after_the_visitor_is_added():
    ha, fas, mn = world()
    move(ha, fas, mn, FA1, NOW)
    move(ha, fas, mn, FA2, NOW + 5)
    seen = move(ha, fas, mn, FA1, NOW + 7)
    kinds = [(type(a), getattr(a, "reason", None)) for a in seen
             if isinstance(a, RemoveForward | AddVisitor) and a in of(RemoveForward, seen) +
             [x for x in of(AddVisitor, seen) if x.visitor.care_of_address == FA1]]
    # the add's /32 replaces the pointer's: ending it then deletes nothing
    assert kinds == [(AddVisitor, None), (RemoveForward, "returned")]
    assert (HOME, HA) not in fas[FA1].cache and (HOME, MAC) in fas[FA1].visitors
    # and FA2 now forwards to FA1
    assert of(AddForward, seen)[0].entry.care_of_address == FA1


def test_at_home_the_previous_fa_forwards_nothing():
    ha, fas, mn = world()
    move(ha, fas, mn, FA1, NOW)
    home_adv = Advertiser(AdvertPolicy(HA, 24, AgentFlags.H), NOW).handle_timer(NOW)[0].data
    seen = deliver(ha, fas, mn, mn.advertisement(home_adv, HA, NOW + 5), NOW + 5)
    assert of(AtHome, seen) and not of(AddForward, seen) and not fas[FA1].cache


def test_a_relayed_request_is_awaited_until_the_visitor_leaves_or_its_timeout():
    """The new FA may hold what the home agent tunnels from the relay of the request on
    (the dataplane asks ``awaiting`` for what it has no visitor for yet); the mark stays
    with an accepted visitor (until its add, the dataplane holds), goes with a denial,
    the timeout, or the visitor leaving."""
    for answered in (True, False):
        ha, fas, mn = world()
        fa = fas[FA1]
        [req] = of(Send, mn.advertisement(advert(fa, NOW), FA1, NOW))
        assert not fa.awaiting(HOME, HA)
        [relayed] = of(Send, fa.request_from_mn(req.data, HOME, 5000, MAC, NOW))
        assert fa.awaiting(HOME, HA) and not fa.awaiting(HOME, FA1)
        if answered:
            [reply] = of(Send, ha.receive(relayed.data, FA1, 434, NOW))
            assert of(AddVisitor, fa.from_network(reply.data, HA, 434, NOW))
            assert fa.awaiting(HOME, HA) and not fa.relayed  # accepted
            assert of(RemoveVisitor, fa.handle_timer(NOW + 301))  # expired
        else:  # no reply: 78 after the pending timeout
            assert of(SendToLink, fa.handle_timer(NOW + 8))
        assert not fa.awaiting(HOME, HA) and not fa.relayed and not fa.accepted_pairs
