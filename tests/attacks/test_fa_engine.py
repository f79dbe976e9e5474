"""Attacks on the foreign agent engine: forged replies, uncovered NVSEs, pending-state abuse,
reflection, Binding Update probing.  Each asserts the answer and that nothing changed."""

import pytest

from mipro.core.actions import Send, SendToLink
from mipro.core.fa import AddForward, AddVisitor
from mipro.security import SecurityAssociation, append_authenticator
from mipro.security.replay import timestamp_identification
from mipro.wire import (
    BindingAck,
    BindingUpdate,
    ExtType,
    MnFaAuth,
    PreviousFaNotification,
    RegistrationReply,
    RegistrationRequest,
)

from .world import (
    ATTACKER,
    EVIL_FILTERS,
    EVIL_MAC,
    EVIL_ROUTES,
    FA_ADDR,
    FA_SA,
    HA,
    HOME,
    MAC,
    MN_FA_SA,
    NOW,
    SA,
    A,
    N,
    fa_state,
    foreign_agent,
    kernel_work,
    of,
    request,
)

IDENT = timestamp_identification(NOW)


def relayed(fa, data=None, mac=MAC, now=NOW):
    """The MN's request through the FA (MN-FA signed when the FA has the MN's key);
    returns what went to the HA."""
    if data is None:
        data = request(ident=IDENT, coa=FA_ADDR)
        if HOME in fa.policy.mn_fa:
            data = append_authenticator(data, ExtType.MN_FA_AUTH, fa.policy.mn_fa[HOME])
    return of(Send, fa.request_from_mn(data, HOME, 5000, mac, now))


def ha_reply(code=0, lifetime=300, ident=IDENT, home=HOME, fa_sa=None, between=(), after=()):
    """What a home agent (or someone pretending) answers: MN-HA-signed reply, the FA's
    part, then FA-HA (when ``fa_sa``), then whatever an attacker appends."""
    reply = RegistrationReply.build(code=code, lifetime=lifetime, home_address=home,
                                    home_agent=HA, identification=ident)
    data = append_authenticator(reply.encode(), ExtType.MN_HA_AUTH, SA)
    data += b"".join(e.encode() for e in between)
    if fa_sa is not None:
        data = append_authenticator(data, ExtType.FA_HA_AUTH, fa_sa)
    return data + b"".join(e.encode() for e in after)


# --- 2. NVSEs no authenticator covers ------------------------------------------------------

def test_without_a_key_a_forged_reply_from_anywhere_is_dropped():
    """Item 2: the reply's source must be the visitor's home agent."""
    fa = foreign_agent()
    relayed(fa)
    before = fa_state(fa)
    out = fa.reply_from_ha(ha_reply(between=[EVIL_ROUTES, EVIL_FILTERS]), ATTACKER, 434, NOW)
    assert not kernel_work(out) and not of(SendToLink, out)
    assert fa_state(fa) == before and fa.counters["reply_from_wrong_source"] == 1


def test_without_a_key_routes_and_filters_are_never_applied():
    """Item 2: from the HA's own address but unverifiable: the visitor is accepted (the MN
    checks MN-HA itself), with no routes and no filters; said once in the log."""
    fa = foreign_agent()
    relayed(fa)
    out = fa.reply_from_ha(ha_reply(between=[EVIL_ROUTES, EVIL_FILTERS]), HA, 434, NOW)
    visitor = of(AddVisitor, out)[0].visitor
    assert visitor.routes == () and visitor.filters == ()
    assert [x.event for x in out if getattr(x, "event", "") == "route-optimization-off"]
    assert fa.unkeyed_has() == [HA]
    to_mn = RegistrationReply.decode(of(SendToLink, out)[0].data)
    assert [e.ext_type for e in to_mn.extensions] == [32]  # stripped before relaying


def test_nvses_after_the_fa_ha_authenticator_are_not_applied():
    """Item 2: with a key, only what lies between MN-HA and FA-HA is the HA's."""
    fa = foreign_agent(ha_peers={HA: FA_SA})
    relayed(fa)
    out = fa.reply_from_ha(ha_reply(fa_sa=FA_SA, after=[EVIL_ROUTES, EVIL_FILTERS]), HA, 434,
                           NOW)
    visitor = of(AddVisitor, out)[0].visitor
    assert visitor.routes == () and visitor.filters == ()
    assert fa.counters["ignored_extensions"] == 2


def test_covered_nvses_are_applied():
    fa = foreign_agent(ha_peers={HA: FA_SA})
    relayed(fa)
    out = fa.reply_from_ha(ha_reply(fa_sa=FA_SA, between=[EVIL_ROUTES]), HA, 434, NOW)
    assert of(AddVisitor, out)[0].visitor.routes == EVIL_ROUTES.entries  # the HA's word


# --- 5. pending requests ------------------------------------------------------------------

def test_a_forged_reply_does_not_deny_the_registration():
    """Item 5: a reply failing FA-HA is dropped and the request stays pending; the real
    reply then goes through."""
    fa = foreign_agent(ha_peers={HA: FA_SA})
    relayed(fa)
    before = fa_state(fa)
    bad = ha_reply(code=131, fa_sa=SecurityAssociation(300, b"not the right key"))
    out = fa.reply_from_ha(bad, HA, 434, NOW)
    assert not of(SendToLink, out) and fa_state(fa) == before
    out = fa.reply_from_ha(ha_reply(fa_sa=FA_SA), HA, 434, NOW + 0.1)
    assert RegistrationReply.decode(of(SendToLink, out)[0].data).code == 0
    assert (HOME, MAC) in fa.visitors


def test_a_copy_from_another_link_layer_address_cannot_take_the_reply():
    """Item 5: pending requests are keyed with their MAC, first come first served; a copy
    of the MN's request from another MAC is dropped, and the reply reaches the MN."""
    fa = foreign_agent()
    data = request(ident=IDENT, coa=FA_ADDR)
    relayed(fa, data)
    before = fa_state(fa)
    assert relayed(fa, data, mac=EVIL_MAC) == [] and fa_state(fa) == before
    assert fa.counters["dropped_duplicate_pending"] == 1
    out = fa.reply_from_ha(ha_reply(), HA, 434, NOW)
    assert [s.mac for s in of(SendToLink, out)] == [MAC]
    assert list(fa.visitors) == [(HOME, MAC)]


def test_pending_state_is_bounded_per_mac_and_in_total():
    fa = foreign_agent(max_pending=6, max_pending_per_mac=2, mac_rate=1e6, mac_burst=1e6)
    for i in range(5):  # one MAC, five requests
        fa.request_from_mn(request(ident=IDENT + i, home=A(f"10.1.0.{i + 2}"), coa=FA_ADDR),
                           A("0.0.0.0"), 5000, EVIL_MAC, NOW)
    assert len(fa.pending) == 2
    for i in range(20):  # twenty MACs
        out = fa.request_from_mn(request(ident=IDENT + i, home=A(f"10.1.1.{i + 2}"),
                                         coa=FA_ADDR), A("0.0.0.0"), 5000,
                                 bytes([2, 0, 0, 0, 9, i]), NOW)
    assert len(fa.pending) == 6
    assert RegistrationReply.decode(of(SendToLink, out)[0].data).code == 66


def test_requests_from_one_mac_are_rate_limited_before_decoding():
    fa = foreign_agent(mac_rate=5, mac_burst=5)
    handled = sum(bool(of(Send, fa.request_from_mn(b"\x01" + bytes(40), HOME, 5000, EVIL_MAC,
                                                   NOW)) or of(SendToLink, fa.request_from_mn(
                                                       b"\x01" + bytes(40), HOME, 5000,
                                                       EVIL_MAC, NOW)))
                  for _ in range(100))
    assert handled <= 5 and fa.counters["dropped_over_budget"] >= 190


@pytest.mark.parametrize("ha,code", [
    ("224.0.0.9", 70), ("127.0.0.1", 70), ("198.51.100.1", 70),  # ours
    ("203.0.113.99", 65),  # not in the home-agent prefixes we relay to
])
def test_the_fa_is_no_reflector(ha, code):
    """Item 5: requests are relayed only to unicast home agents we may relay to."""
    fa = foreign_agent(home_agents=(N("10.0.0.0/8"),))
    before = fa_state(fa)
    out = fa.request_from_mn(request(ident=IDENT, ha=A(ha), coa=FA_ADDR), HOME, 5000, MAC, NOW)
    assert not of(Send, out) and fa_state(fa) == before
    assert RegistrationReply.decode(of(SendToLink, out)[0].data).code == code


def test_relays_to_a_home_agent_without_a_key_are_budgeted():
    fa = foreign_agent(unkeyed_ha_rate=3, mac_rate=1e6, mac_burst=1e6)
    sent = 0
    for i in range(20):
        sent += len(relayed(fa, request(ident=IDENT + i, home=A(f"10.1.0.{i + 2}"),
                                        coa=FA_ADDR), mac=bytes([2, 0, 0, 0, 8, i])))
    assert sent == 3


# --- the previous-FA notification only under MN-FA ---------------------------------------

def test_a_notification_without_a_verified_mn_fa_authenticator_is_ignored():
    """An attacker on the link cannot make the FA send Binding Updates anywhere."""
    fa = foreign_agent()  # no MN-FA key
    note = PreviousFaNotification(ATTACKER, 0, 400, bytes(16))
    relayed(fa, request(ident=IDENT, coa=FA_ADDR, after=[note]))
    out = fa.reply_from_ha(ha_reply(), HA, 434, NOW)
    assert not [s for s in of(Send, out) if s.dst == ATTACKER]
    assert fa.counters["ignored_extensions"] == 1


def test_a_notification_under_a_verified_mn_fa_authenticator_is_sent():
    fa = foreign_agent(mn_fa={HOME: MN_FA_SA})
    prev = A("192.0.2.129")
    note = PreviousFaNotification(prev, 0, 401, bytes(16))
    data = append_authenticator(request(ident=IDENT, coa=FA_ADDR, after=[note]),
                                ExtType.MN_FA_AUTH, MN_FA_SA)
    relayed(fa, data)
    out = fa.reply_from_ha(ha_reply(), HA, 434, NOW)
    assert [s.dst for s in of(Send, out)] == [prev]
    # the same with a wrong MN-FA authenticator: denied 67 at once, never relayed
    fa = foreign_agent(mn_fa={HOME: MN_FA_SA})
    data = append_authenticator(request(ident=IDENT, coa=FA_ADDR, after=[note]),
                                ExtType.MN_FA_AUTH, SecurityAssociation(400, b"wrong key here!!"))
    out = fa.request_from_mn(data, HOME, 5000, MAC, NOW)
    assert RegistrationReply.decode(of(SendToLink, out)[0].data).code == 67 and not fa.pending


# --- 14. Binding Updates -------------------------------------------------------------------

def accepted(fa):
    relayed(fa)
    fa.reply_from_ha(ha_reply(), HA, 434, NOW)
    assert (HOME, MAC) in fa.visitors


NEW_COA = A("192.0.2.129")  # where the MN went


def update(ident=IDENT + 1, sa=MN_FA_SA, home=HOME, coa=NEW_COA, lifetime=0):
    bu = BindingUpdate.build(home_address=home, care_of_address=coa, identification=ident,
                             lifetime=lifetime)
    return append_authenticator(bu.encode(), ExtType.MN_FA_AUTH, sa)


def test_an_unauthenticated_update_reveals_nothing_and_gets_no_answer():
    """Item 14: the same silence whether the visitor exists or not."""
    wrong = SecurityAssociation(400, b"attacker key 123")
    for exists in (True, False):
        fa = foreign_agent(mn_fa={HOME: MN_FA_SA})
        if exists:
            accepted(fa)
        before = fa_state(fa)
        out = fa.from_network(update(sa=wrong), A("192.0.2.129"), 434, NOW + 1)
        assert not of(Send, out) and not kernel_work(out) and fa_state(fa) == before


def test_an_authentic_update_is_acknowledged_only_to_the_care_of_address_it_names():
    fa = foreign_agent(mn_fa={HOME: MN_FA_SA})
    accepted(fa)
    out = fa.from_network(update(), ATTACKER, 434, NOW + 1)  # sent from elsewhere
    assert not of(Send, out) and not fa.visitors  # acted on: it is the MN's own word
    assert fa.counters["binding_ack_withheld"] == 1
    fa = foreign_agent(mn_fa={HOME: MN_FA_SA})
    accepted(fa)
    out = fa.from_network(update(), A("192.0.2.129"), 434, NOW + 1)
    ack = BindingAck.decode(of(Send, out)[0].data)
    assert of(Send, out)[0].dst == A("192.0.2.129") and ack.status == 0
    assert ack.find(MnFaAuth) is not None  # signed with the MN's key


def test_the_update_lifetime_keeps_a_binding_cache_entry_for_that_long_at_most():
    fa = foreign_agent(mn_fa={HOME: MN_FA_SA}, max_cache_lifetime=30)
    accepted(fa)
    fa.from_network(update(lifetime=600), A("192.0.2.129"), 434, NOW + 1)
    entry = fa.cache[(HOME, HA)]
    assert entry.care_of_address == A("192.0.2.129") and entry.expires == NOW + 31
    fa.handle_timer(NOW + 31)
    assert (HOME, HA) not in fa.cache


def test_a_replayed_update_is_refused():
    fa = foreign_agent(mn_fa={HOME: MN_FA_SA})
    accepted(fa)
    old = update(ident=IDENT - 5)
    out = fa.from_network(old, A("192.0.2.129"), 434, NOW + 1)
    assert BindingAck.decode(of(Send, out)[0].data).status == 69 and fa.visitors


def test_a_request_without_an_mn_ha_authenticator_is_poorly_formed():
    fa = foreign_agent()
    req = RegistrationRequest.build(home_address=HOME, home_agent=HA, care_of_address=FA_ADDR,
                                    identification=IDENT, lifetime=300)
    out = fa.request_from_mn(req.encode(), HOME, 5000, MAC, NOW)
    assert RegistrationReply.decode(of(SendToLink, out)[0].data).code == 70 and not fa.pending


# --- 15. the forwarding pointer (previous FA re-tunnels to the new care-of address) --------

def test_a_forged_update_asking_for_forwarding_changes_nothing():
    """Forged (wrong key), unsigned, or signed with another visitor's SPI: no pointer,
    no answer, the visitor stays; the same whether the visitor exists or not."""
    wrong = SecurityAssociation(400, b"attacker key 123")
    unsigned = BindingUpdate.build(home_address=HOME, care_of_address=ATTACKER,
                                   identification=IDENT + 1, lifetime=600).encode()
    for exists in (True, False):
        for data in (update(sa=wrong, coa=ATTACKER, lifetime=600), unsigned,
                     update(sa=SecurityAssociation(401, MN_FA_SA.key), coa=ATTACKER,
                            lifetime=600)):
            fa = foreign_agent(mn_fa={HOME: MN_FA_SA})
            if exists:
                accepted(fa)
            before = fa_state(fa)
            out = fa.from_network(data, ATTACKER, 434, NOW + 1)
            assert not of(Send, out) and not kernel_work(out) and fa_state(fa) == before
            assert fa.counters.get("forwarding_pointers", 0) == 0


def test_a_replayed_update_sets_no_pointer():
    fa = foreign_agent(mn_fa={HOME: MN_FA_SA})
    accepted(fa)
    before = fa_state(fa)
    out = fa.from_network(update(ident=IDENT - 5, lifetime=600), NEW_COA, 434, NOW + 1)
    assert BindingAck.decode(of(Send, out)[0].data).status == 69
    assert not kernel_work(out) and fa_state(fa) == before


@pytest.mark.parametrize("coa", [A("255.255.255.255"), A("224.0.0.5"), A("127.0.0.1"),
                                 FA_ADDR, HOME])
def test_an_authentic_update_cannot_aim_the_pointer_at_us_or_nowhere(coa):
    """The MN's own word, but a care-of address that is ours, its home address or not
    unicast gets no forwarding (no loop, no amplifier); the visitor is still gone."""
    fa = foreign_agent(mn_fa={HOME: MN_FA_SA})
    accepted(fa)
    out = fa.from_network(update(coa=coa, lifetime=600), coa, 434, NOW + 1)
    assert not of(AddForward, out) and not fa.cache and not fa.visitors


def test_an_address_only_key_held_by_two_realms_forwards_neither():
    """Two visitors share the home address (two home agents) and one MN-FA key of the
    address alone: the update cannot say which moved, so nothing is forwarded."""
    other_ha = A("10.9.0.1")
    fa = foreign_agent(mn_fa={HOME: MN_FA_SA}, ha_peers={})
    accepted(fa)
    data = append_authenticator(request(ident=IDENT, coa=FA_ADDR, ha=other_ha),
                                ExtType.MN_FA_AUTH, MN_FA_SA)
    fa.request_from_mn(data, HOME, 5000, EVIL_MAC, NOW)
    reply = RegistrationReply.build(code=0, lifetime=300, home_address=HOME,
                                    home_agent=other_ha, identification=IDENT)
    fa.reply_from_ha(append_authenticator(reply.encode(), ExtType.MN_HA_AUTH, SA), other_ha,
                     434, NOW)
    assert len(fa.visitors) == 2
    out = fa.from_network(update(lifetime=600), NEW_COA, 434, NOW + 1)
    assert not of(AddForward, out) and all(not e.forwarding for e in fa.cache.values())
    # keyed by (home address, home agent): the update names its realm, that one forwards
    fa = foreign_agent(mn_fa={(HOME, HA): MN_FA_SA})
    relayed(fa, append_authenticator(request(ident=IDENT, coa=FA_ADDR), ExtType.MN_FA_AUTH,
                                     MN_FA_SA))
    fa.reply_from_ha(ha_reply(), HA, 434, NOW)
    assert (HOME, MAC) in fa.visitors
    out = fa.from_network(update(lifetime=600), NEW_COA, 434, NOW + 1)
    assert [(f.entry.home_agent, f.entry.care_of_address) for f in of(AddForward, out)] == \
        [(HA, NEW_COA)]
