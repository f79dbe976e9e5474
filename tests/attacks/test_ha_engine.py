"""Attacks on the home agent engine: every one answered as the RFC says, nothing changed."""

import asyncio

import pytest

from mipro.core.actions import FetchSubscriber, InstallBinding, Log, Send
from mipro.dataplane.fake import FakeHaDataplane
from mipro.security import SecurityAssociation, append_authenticator
from mipro.security.replay import ReplayMethod
from mipro.subscribers.cache import CachedStore
from mipro.subscribers.model import StoreUnavailable
from mipro.wire import (
    ExtType,
    FilterRulesExtension,
    MnFaChallenge,
    MnHaAuth,
    Nai,
    RawExtension,
    RegistrationReply,
    UdpTunnelReply,
    UdpTunnelRequest,
)

from .world import (
    ATTACKER,
    COA,
    HOME,
    NOW,
    OTHER,
    OTHER_SA,
    SA,
    UNOWNED,
    A,
    ha_state,
    home_agent,
    kernel_work,
    of,
    reply_of,
    request,
    subscribers,
)


def signed(reply: RegistrationReply) -> bool:
    return reply.find(MnHaAuth) is not None


# --- 1. binding identity ------------------------------------------------------------------

@pytest.mark.parametrize("target", [HOME, UNOWNED])
def test_a_subscriber_cannot_register_an_address_that_is_not_its_own(target):
    """Item 1: OTHER signs, with its own SPI and key and its own NAI, a request for HOME's
    address (or for an address on the home link that is nobody's)."""
    ha = home_agent()
    before = ha_state(ha)
    out = ha.receive(request(sa=OTHER_SA, home=target, before=[Nai("mn2@home.example")]),
                     COA, 434, NOW)
    reply = reply_of(out)
    assert reply.code == 131 and signed(reply)  # OTHER authenticated: as itself
    assert not kernel_work(out) and ha_state(ha) == before
    assert ha.bindings.get(target) is None and ha.bindings.get(OTHER) is None


def test_without_an_nai_the_home_address_names_the_subscriber():
    """OTHER's key on HOME's address: HOME's key is the one that counts, so it fails."""
    ha = home_agent()
    before = ha_state(ha)
    out = ha.receive(request(sa=SecurityAssociation(256, OTHER_SA.key)), COA, 434, NOW)
    reply = reply_of(out)
    assert reply.code == 131 and not signed(reply)
    assert not kernel_work(out) and ha_state(ha) == before


def test_home_address_zero_with_an_nai_gets_the_subscribers_address():
    """RFC 2794: 0.0.0.0 asks the home agent for the subscriber's address."""
    ha = home_agent()
    out = ha.receive(request(home=A("0.0.0.0"), before=[Nai("mn1@home.example")]),
                     COA, 434, NOW)
    reply = reply_of(out)
    assert reply.code == 0 and reply.home_address == HOME
    assert [b.home_address for b in ha.bindings] == [HOME]
    assert of(InstallBinding, out)[0].binding.home_address == HOME


def test_home_address_zero_without_an_nai_is_poorly_formed():
    ha = home_agent()
    before = ha_state(ha)
    out = ha.receive(request(home=A("0.0.0.0")), COA, 434, NOW)
    reply = reply_of(out)
    assert reply.code == 134 and not signed(reply)
    assert ha_state(ha) == before and len(ha.bindings) == 0


def test_an_nai_after_the_authenticator_names_nobody():
    """The NAI is read only from what MN-HA covers: appended after it, it is ignored, so
    the home address names the subscriber (and OTHER's key does not fit HOME)."""
    ha = home_agent()
    out = ha.receive(request(sa=OTHER_SA, after=[Nai("mn2@home.example")]), COA, 434, NOW)
    assert reply_of(out).code == 131 and len(ha.bindings) == 0


# --- 4. signatures only for the authenticated ------------------------------------------------

@pytest.mark.parametrize("kwargs,code", [
    ({"ha": A("192.0.2.77")}, 136),
    ({"flags": 0x04}, 134),
    ({"before": [RawExtension(99, b"x")]}, 134),
])
def test_denials_of_forged_requests_are_not_signed(kwargs, code):
    """Item 4: a request with the attacker's key and identification is denied unsigned; the
    attacker never gets the MN's key to sign bytes of its choosing."""
    ha = home_agent()
    forged = request(sa=SecurityAssociation(256, b"attacker's key!!"), ident=0x1234, **kwargs)
    reply = reply_of(ha.receive(forged, ATTACKER, 434, NOW))
    assert reply.code == 131 and not signed(reply)  # authentication comes first
    # the same checks on an authentic request are signed denials with their own code
    reply = reply_of(ha.receive(request(**kwargs), COA, 434, NOW))
    assert reply.code == code and signed(reply)


def test_poorly_formed_and_truncated_get_unsigned_answers_and_change_nothing():
    ha = home_agent()
    good = request()
    before = ha_state(ha)
    for data in (good[:-3], good[:30], good[:24] + b"\x20", good + b"\x86"):
        out = ha.receive(data, ATTACKER, 434, NOW)
        assert not kernel_work(out)
        for s in of(Send, out):
            assert not signed(RegistrationReply.decode(s.data))
    assert ha_state(ha) == before


# --- 8. care-of addresses -----------------------------------------------------------------

@pytest.mark.parametrize("coa,code", [
    ("0.0.0.0", 134), ("224.0.0.5", 134), ("255.255.255.255", 134), ("127.0.0.1", 134),
    ("240.0.0.1", 134), ("169.254.1.1", 134),
    ("10.1.0.1", 129),  # the home agent itself
    ("10.1.0.10", 129),  # a host on the home network: the tunnel aimed at a victim
])
def test_care_of_addresses_are_validated(coa, code):
    """Item 8: a subscriber cannot aim its tunnel at nonsense, at us or at a home host."""
    ha = home_agent()
    before = ha_state(ha)
    out = ha.receive(request(coa=A(coa)), A("198.51.100.23"), 434, NOW)
    reply = reply_of(out)
    assert reply.code == code and signed(reply)
    assert not kernel_work(out) and ha_state(ha) == before  # identification not used up
    assert reply_of(ha.receive(request(), COA, 434, NOW)).code == 0


def test_deregistration_needs_no_valid_care_of_address():
    ha = home_agent()
    ha.receive(request(), COA, 434, NOW)
    out = ha.receive(request(coa=HOME, lifetime=0, now=NOW + 1), COA, 434, NOW + 1)
    assert reply_of(out).code == 0 and len(ha.bindings) == 0


# --- 9. nonces ---------------------------------------------------------------------------

def nonce_pair():
    ha = home_agent(replay=ReplayMethod.NONCE)
    first = reply_of(ha.receive(request(ident=0x0000000011111111), COA, 434, NOW))
    assert first.code == 133 and signed(first)
    nonce = first.identification >> 32
    accepted = ha.receive(request(ident=(nonce << 32) | 0x22222222), COA, 434, NOW)
    assert reply_of(accepted).code == 0
    return ha, (nonce << 32) | 0x22222222, reply_of(accepted).identification >> 32


def test_a_replayed_request_does_not_rotate_the_nonce():
    """Item 9: replays of an accepted request are refused with the nonce the MN must use
    next, unchanged, so the MN's next request still goes through."""
    ha, used, next_nonce = nonce_pair()
    before = ha_state(ha)
    for _ in range(5):
        out = ha.receive(request(ident=used), ATTACKER, 434, NOW + 1)
        reply = reply_of(out)
        assert reply.code == 133 and reply.identification >> 32 == next_nonce
        assert not kernel_work(out)
    assert ha_state(ha) == before
    out = ha.receive(request(ident=(next_nonce << 32) | 7, now=NOW + 2), COA, 434, NOW + 2)
    assert reply_of(out).code == 0


def test_a_denial_after_the_replay_check_hands_out_no_unstored_nonce():
    """A request refused for a static reason (here: minimal encapsulation) is refused
    before the nonce is used: the MN's nonce stays valid."""
    ha, _, nonce = nonce_pair()
    out = ha.receive(request(ident=(nonce << 32) | 9, flags=0x10), COA, 434, NOW + 1)
    assert reply_of(out).code == 139 and reply_of(out).identification == (nonce << 32) | 9
    assert reply_of(ha.receive(request(ident=(nonce << 32) | 10), COA, 434, NOW + 1)).code == 0


# --- 10. UDP tunnel request and challenge only from the covered region ------------------------

def test_udp_tunnel_request_after_the_authenticator_is_ignored():
    """Item 10: appended after MN-HA, a UDP Tunnel Request with F does not force a UDP
    tunnel (the binding stays IP-in-IP)."""
    ha = home_agent()
    out = ha.receive(request(flags=0x20, after=[UdpTunnelRequest(forced=True)]), COA, 434, NOW)
    assert reply_of(out).code == 0 and ha.bindings.get(HOME).encapsulation == "ipip"
    assert reply_of(out).find(UdpTunnelReply) is None
    assert ha.counters["ignored_extensions"] == 1


def test_a_challenge_answer_after_the_authenticator_does_not_count():
    ha = home_agent()
    nat, public = A("10.0.0.50"), A("203.0.113.2")
    first = reply_of(ha.receive(request(coa=nat, flags=0x20, before=[UdpTunnelRequest()]),
                                public, 4000, NOW))
    challenge = first.find(MnFaChallenge)
    assert first.code == 131 and challenge is not None and signed(first)
    # the right answer, but outside what the authenticator covers
    out = ha.receive(request(coa=nat, flags=0x20, before=[UdpTunnelRequest()],
                             after=[challenge], now=NOW + 0.5), public, 4000, NOW + 0.5)
    assert reply_of(out).code == 131 and ha.bindings.get(HOME) is None
    # inside: accepted (a fresh challenge was issued meanwhile: answer that one)
    fresh = reply_of(out).find(MnFaChallenge)
    out = ha.receive(request(coa=nat, flags=0x20, before=[UdpTunnelRequest(), fresh],
                             now=NOW + 1), public, 4000, NOW + 1)
    assert reply_of(out).code == 0 and ha.bindings.get(HOME).encapsulation == "udp"


def test_a_replayed_first_request_cannot_reset_the_challenge():
    """Issuing a challenge uses the identification up: replaying the unchallenged request
    gets 133, and the MN's answer to the real challenge still works."""
    ha = home_agent()
    nat, public = A("10.0.0.50"), A("203.0.113.2")
    data = request(coa=nat, flags=0x20, before=[UdpTunnelRequest()])
    challenge = reply_of(ha.receive(data, public, 4000, NOW)).find(MnFaChallenge)
    assert reply_of(ha.receive(data, public, 4000, NOW + 0.1)).code == 133
    out = ha.receive(request(coa=nat, flags=0x20, before=[UdpTunnelRequest(), challenge],
                             now=NOW + 0.2), public, 4000, NOW + 0.2)
    assert reply_of(out).code == 0


# --- ordering, duplication -----------------------------------------------------------------

def test_two_mn_ha_authenticators_are_poorly_formed():
    ha = home_agent()
    data = request() + append_authenticator(b"", ExtType.MN_HA_AUTH, SA)[0:22]
    out = ha.receive(data, COA, 434, NOW)
    assert reply_of(out).code == 134 and len(ha.bindings) == 0


def test_routes_appended_to_a_request_change_nothing():
    """An attacker's NVSEs in a request are never read by the HA."""
    ha = home_agent(subs=subscribers())
    out = ha.receive(request(after=[FilterRulesExtension(())]), COA, 434, NOW)
    assert reply_of(out).code == 0 and ha.counters["ignored_extensions"] == 1


# --- 6. the directory: lookups off the loop, bounded ------------------------------------------

class SlowDirectory:
    def __init__(self, subs):
        self.subs = {s.home_address: s for s in subs}
        self.asked = 0
        self.down = False

    def lookup(self, home, nai=None):
        self.asked += 1
        if self.down:
            raise StoreUnavailable("ldap://192.0.2.9: timed out")
        return self.subs.get(home)


def test_directory_lookups_are_asked_for_not_made():
    """Item 6: with a remote directory the engine never blocks: it parks the request,
    asks once per identity, and answers when the runtime hands the result back."""
    d = SlowDirectory(subscribers())
    store = CachedStore(d)
    ha = home_agent()
    ha.set_store(store)
    out = ha.receive(request(), COA, 434, NOW)
    assert of(FetchSubscriber, out) == [FetchSubscriber(HOME, None)] and not of(Send, out)
    assert d.asked == 0  # nothing looked up inside the engine
    again = ha.receive(request(now=NOW + 0.01), COA, 434, NOW + 0.01)
    assert not of(FetchSubscriber, again)  # one lookup per identity
    sub = store.fetch(HOME)  # the runtime, in a worker thread
    store.record(HOME, None, sub)
    done = ha.subscriber_ready(HOME, None, sub, NOW + 0.02)
    codes = [RegistrationReply.decode(s.data).code for s in of(Send, done)]
    assert codes == [0, 0] and ha.parked_count == 0 and d.asked == 1


def test_parked_requests_are_bounded():
    store = CachedStore(SlowDirectory(subscribers()))
    ha = home_agent(max_parked=8, max_parked_per_identity=2)
    ha.set_store(store)
    for i in range(50):  # random home addresses: each a new identity
        ha.receive(request(home=A(f"10.1.0.{i + 2}")), A(f"198.51.100.{i + 2}"), 434, NOW)
    assert ha.parked_count == 8 and len(ha.parked) == 8
    assert ha.counters["dropped_lookup_queue_full"] >= 42


def test_requests_for_identities_already_waiting_count_towards_the_total():
    """Fuzzer find (bench/fuzz_engines.py, ha.parked_bounded): the total bound was checked
    only when a new identity parked, so once max_parked identities waited, each could still
    take max_parked_per_identity requests: 8 x 2 = 16 parked with max_parked=8."""
    store = CachedStore(SlowDirectory(subscribers()))
    ha = home_agent(max_parked=8, max_parked_per_identity=2)
    ha.set_store(store)
    for rnd in range(2):  # 8 identities, then a second request for each
        for i in range(8):
            ha.receive(request(home=A(f"10.1.0.{i + 2}"), ident=1000 * rnd + i),
                       A(f"198.51.100.{i + 2}"), 434, NOW)
    assert ha.parked_count == 8 == sum(len(w) for w in ha.parked.values())
    assert ha.counters["dropped_lookup_queue_full"] == 8


def test_a_directory_that_does_not_know_the_subscriber_is_asked_once():
    """Fuzzer find (bench/fuzz_engines.py, ha.ready_unparks_its_identity): the directory's
    answer "unknown" (None) was taken for "not looked up yet", so the engine asked the cache
    again; with subscribers.ldap.cache_negative_ttl = 0 that is a miss: the request parked
    again and asked the directory again, for ever, from one unauthenticated datagram."""
    d = SlowDirectory(subscribers())
    store = CachedStore(d, negative_ttl=0)
    ha = home_agent()
    ha.set_store(store)
    out = ha.receive(request(home=UNOWNED), ATTACKER, 434, NOW)
    assert of(FetchSubscriber, out) == [FetchSubscriber(UNOWNED, None)]
    sub = store.fetch(UNOWNED)  # the runtime, in a worker thread
    store.record(UNOWNED, None, sub)
    done = ha.subscriber_ready(UNOWNED, None, sub, NOW)
    assert not of(FetchSubscriber, done) and ha.parked_count == 0 and not ha.parked
    reply = reply_of(done)
    assert reply.code == 131 and not signed(reply) and d.asked == 1


def test_an_outage_opens_the_breaker_and_denies_at_once():
    d = SlowDirectory(subscribers())
    clock = [1000.0]
    store = CachedStore(d, clock=lambda: clock[0], trip_after=3, open_for=5.0)
    ha = home_agent()
    ha.set_store(store)
    d.down = True
    for i in range(3):
        home = A(f"10.1.0.{i + 2}")
        ha.receive(request(home=home), COA, 434, NOW)
        try:
            store.fetch(home)
        except StoreUnavailable as exc:
            store.record_failure(str(exc))
    assert store.state == "open"
    out = ha.receive(request(home=A("10.1.0.9")), COA, 434, NOW)
    assert reply_of(out).code == 130 and not of(FetchSubscriber, out)
    clock[0] += 6  # half-open: one probe
    assert of(FetchSubscriber, ha.receive(request(home=A("10.1.0.10")), COA, 434, NOW))
    assert reply_of(ha.receive(request(home=A("10.1.0.11")), COA, 434, NOW)).code == 130


def test_a_130_looks_the_subscriber_up_once():
    """Item 6: a denial never asks the store again (the old code looked up twice)."""
    class Down:
        asked = 0

        def lookup(self, home, nai=None):
            Down.asked += 1
            raise StoreUnavailable("down")

    ha = home_agent()
    ha.set_store(Down())
    assert reply_of(ha.receive(request(), COA, 434, NOW)).code == 130 and Down.asked == 1


# --- 7. kernel first -------------------------------------------------------------------------

async def apply_and_answer(ha, out, dataplane):
    """What the runtime does: program the kernel, then send; a refusal -> install_failed."""
    installs = of(InstallBinding, out)
    failed = await dataplane.apply([("install", a.binding) for a in installs])
    sent = [s for s in of(Send, out) if not any(i in failed and installs[i].reply is s
                                                 for i in range(len(installs)))]
    for i in failed:
        sent += of(Send, ha.install_failed(installs[i], failed[i], NOW))
    return sent


def test_a_binding_the_kernel_refuses_is_denied_and_not_kept():
    asyncio.run(kernel_refuses())


async def kernel_refuses():
    """Item 7: the reply is 130 (signed), the engine forgets the binding, and the MN's next
    request (same care-of address) programs the kernel again."""
    ha = home_agent()
    dp = FakeHaDataplane(fail_on={HOME})
    sent = await apply_and_answer(ha, ha.receive(request(), COA, 434, NOW), dp)
    reply = RegistrationReply.decode(sent[0].data)
    assert [RegistrationReply.decode(s.data).code for s in sent] == [130] and signed(reply)
    assert ha.bindings.get(HOME) is None and HOME not in dp.bindings
    dp.fail_on.clear()
    out = ha.receive(request(now=NOW + 1), COA, 434, NOW + 1)
    assert of(InstallBinding, out) and ha.counters["registrations"] == 2
    sent = await apply_and_answer(ha, out, dp)
    assert RegistrationReply.decode(sent[0].data).code == 0 and HOME in dp.bindings


# --- budgets -------------------------------------------------------------------------------

def test_one_source_cannot_use_more_than_its_budget():
    ha = home_agent(source_rate=10, source_burst=10, unsigned_reply_rate=1000)
    junk = request(sa=SecurityAssociation(256, b"attacker's key!!"))
    answered = sum(bool(of(Send, ha.receive(junk, ATTACKER, 434, NOW))) for _ in range(1000))
    assert answered == 10 and ha.counters["dropped_over_budget"] == 990
    # another source is untouched, and a source that authenticated is trusted more
    assert reply_of(ha.receive(request(), COA, 434, NOW)).code == 0


def test_unsigned_answers_are_bounded_in_total():
    ha = home_agent(source_rate=1e9, source_burst=1e9, unknown_rate=1e9, unsigned_reply_rate=5)
    junk = request(sa=SecurityAssociation(256, b"attacker's key!!"))
    sends = sum(len(of(Send, ha.receive(junk, A(f"192.0.2.{i}"), 434, NOW)))
                for i in range(1, 200))
    assert sends == 5 and ha.counters["replies_suppressed"] == 194
    assert all(isinstance(a, Log) for a in ha.receive(junk, ATTACKER, 434, NOW))
