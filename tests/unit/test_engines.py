"""HA and MN engines wired together in memory: whole registrations without a network."""

from ipaddress import IPv4Address as A

import pytest

from mipro.core.actions import InstallBinding, Log, RemoveBinding, Send
from mipro.core.ha import HaPolicy, HomeAgent
from mipro.core.mn import MnSettings, MobileNode, State, TunnelDown, TunnelUp
from mipro.security import SecurityAssociation, append_authenticator
from mipro.security.replay import ReplayMethod, timestamp_identification
from mipro.subscribers.model import MemoryStore, StoreUnavailable, Subscriber
from mipro.wire import ExtType, RawExtension, RegistrationReply, RegistrationRequest, RequestFlags

HA_ADDR = A("192.0.2.1")
HOME = A("10.1.0.100")
COA = A("198.51.100.23")
KEY = b"mn-ha secret key"
NOW = 1_790_000_000.0


def subscriber(home=HOME, replay=ReplayMethod.TIMESTAMP, max_lifetime=3600):
    return Subscriber(home, f"mn-{home}@example.org",
                      {256: SecurityAssociation(256, KEY)}, max_lifetime, replay)


def make_pair(replay=ReplayMethod.TIMESTAMP, **policy):
    ha = HomeAgent(HaPolicy((HA_ADDR,), **policy), MemoryStore([subscriber(replay=replay)]))
    mn = MobileNode(MnSettings(HOME, HA_ADDR, SecurityAssociation(256, KEY),
                               nai=f"mn-{HOME}@example.org", lifetime=600, replay=replay))
    return ha, mn


def exchange(ha, mn, actions, now, src=COA, max_rounds=6, mn_now=None):
    """Deliver MN Sends to the HA and HA Sends back, until quiet; return all actions seen.
    A conversation still going after ``max_rounds`` is a failure, not a pass."""
    seen = list(actions)
    for _ in range(max_rounds + 1):
        to_ha = [a for a in actions if isinstance(a, Send) and a.dst == HA_ADDR]
        if not to_ha:
            break
        actions = []
        for send in to_ha:
            for out in ha.receive(send.data, src, 434, now):
                seen.append(out)
                if isinstance(out, Send):
                    actions += mn.receive(out.data, HA_ADDR, 434,
                                          now if mn_now is None else mn_now)
        seen += actions
    else:
        raise AssertionError(f"the MN and HA were still talking after {max_rounds} rounds")
    return seen


def of(kind, actions):
    return [a for a in actions if isinstance(a, kind)]


def test_register_renew_deregister():
    ha, mn = make_pair()
    seen = exchange(ha, mn, mn.attach(COA, NOW), NOW)
    assert mn.state is State.REGISTERED
    up = of(TunnelUp, seen)[0]
    assert up.care_of_address == COA and up.lifetime == 600
    b = ha.bindings.get(HOME)
    assert b.care_of_address == COA and b.reverse_tunnel and b.encapsulation == "ipip"
    # renewal at 80% of the lifetime
    assert mn.next_timer() == pytest.approx(NOW + 480)
    seen = exchange(ha, mn, mn.handle_timer(NOW + 480), NOW + 480)
    assert ha.counters["renewals"] == 1 and ha.bindings.get(HOME).expires == NOW + 1080
    seen = exchange(ha, mn, mn.shutdown(NOW + 500), NOW + 500)
    assert of(RemoveBinding, seen)[0].reason == "deregistered"
    assert len(ha.bindings) == 0 and mn.state is State.IDLE


def test_lifetime_capped_by_policy_and_expiry():
    ha, mn = make_pair(max_lifetime=100)
    exchange(ha, mn, mn.attach(COA, NOW), NOW)
    assert ha.bindings.get(HOME).lifetime == 100
    assert ha.next_timer() == NOW + 100
    assert ha.handle_timer(NOW + 99) == []
    expired = ha.handle_timer(NOW + 100)
    assert of(RemoveBinding, expired)[0].reason == "expired"
    assert len(ha.bindings) == 0 and ha.next_timer() is None


def test_return_home_deregisters():
    ha, mn = make_pair()
    exchange(ha, mn, mn.attach(COA, NOW), NOW)
    seen = exchange(ha, mn, mn.returned_home(NOW + 10), NOW + 10)
    assert of(TunnelDown, seen) and mn.state is State.HOME
    assert len(ha.bindings) == 0


def request(identification, key=KEY, spi=256, home=HOME, ha=HA_ADDR, lifetime=600, flags=0,
            extensions=()):
    req = RegistrationRequest.build(flags=RequestFlags(flags), lifetime=lifetime,
                                    home_address=home, home_agent=ha, care_of_address=COA,
                                    identification=identification, extensions=extensions)
    return append_authenticator(req.encode(), ExtType.MN_HA_AUTH,
                                SecurityAssociation(spi, key))


def reply_code(actions):
    sends = of(Send, actions)
    assert len(sends) == 1
    return RegistrationReply.decode(sends[0].data).code


@pytest.mark.parametrize("kwargs,code", [
    ({"key": b"wrong key"}, 131),
    ({"spi": 999}, 131),
    ({"home": A("10.1.0.99")}, 131),
    ({"ha": A("192.0.2.77")}, 136),
    ({"flags": RequestFlags.M}, 139),
    ({"flags": RequestFlags.r}, 134),
    ({"extensions": (RawExtension(99, b"x"),)}, 134),
])
def test_denials_change_nothing(kwargs, code):
    ha, _ = make_pair()
    actions = ha.receive(request(timestamp_identification(NOW), **kwargs), COA, 434, NOW)
    assert reply_code(actions) == code
    assert len(ha.bindings) == 0 and not of(InstallBinding, actions)
    assert all(s.last_accepted is None for s in ha.replay.values())
    assert len(of(Log, actions)) == 1


def test_encapsulation_and_reverse_tunnel_policy():
    ha, _ = make_pair(encapsulations=frozenset({"ipip"}), reverse_tunneling=False)
    assert reply_code(ha.receive(request(timestamp_identification(NOW), flags=RequestFlags.G),
                                 COA, 434, NOW)) == 139
    assert reply_code(ha.receive(request(timestamp_identification(NOW), flags=RequestFlags.T),
                                 COA, 434, NOW)) == 137


def test_replay_is_refused_with_133():
    ha, _ = make_pair()
    data = request(timestamp_identification(NOW))
    assert reply_code(ha.receive(data, COA, 434, NOW)) == 0
    actions = ha.receive(data, COA, 434, NOW + 1)
    assert reply_code(actions) == 133
    assert ha.bindings.get(HOME).expires == NOW + 600  # untouched


def test_mn_resynchronises_after_clock_skew():
    ha, mn = make_pair()
    skewed_now = NOW - 300  # the MN's clock is 5 minutes slow
    seen = exchange(ha, mn, mn.attach(COA, skewed_now), NOW, mn_now=skewed_now)
    codes = [RegistrationReply.decode(s.data).code for s in of(Send, seen) if s.dst == COA]
    assert codes == [133, 0]
    assert mn.state is State.REGISTERED and mn.clock_offset == pytest.approx(300, abs=1)


def test_nonce_replay_protection():
    ha, mn = make_pair(replay=ReplayMethod.NONCE)
    seen = exchange(ha, mn, mn.attach(COA, NOW), NOW)
    codes = [RegistrationReply.decode(s.data).code for s in of(Send, seen) if s.dst == COA]
    assert codes == [133, 0] and mn.state is State.REGISTERED
    # the next registration uses the nonce the HA just handed out
    seen = exchange(ha, mn, mn.handle_timer(NOW + 480), NOW + 480)
    assert ha.counters["renewals"] == 1


def test_poorly_formed_and_truncated():
    ha, _ = make_pair()
    good = request(timestamp_identification(NOW))
    actions = ha.receive(good[:-3], COA, 434, NOW)  # authenticator cut short: length wrong
    assert reply_code(actions) == 134
    assert ha.receive(good[:10], COA, 434, NOW)[0].event == "poorly-formed"
    assert not of(Send, ha.receive(good[:10], COA, 434, NOW))
    assert len(ha.bindings) == 0


def test_store_unavailable_denies_with_130():
    class Down:
        def lookup(self, home, nai=None):
            raise StoreUnavailable("ldap://127.0.0.1:1 connection refused")

    ha = HomeAgent(HaPolicy((HA_ADDR,)), Down())
    assert reply_code(ha.receive(request(timestamp_identification(NOW)), COA, 434, NOW)) == 130
    assert len(ha.bindings) == 0


def test_mn_retransmits_with_backoff_and_ignores_forged_replies():
    _, mn = make_pair()
    mn.attach(COA, NOW)
    times = []
    t = NOW
    for _ in range(5):
        t = mn.next_timer()
        times.append(round(t - NOW, 1))
        assert of(Send, mn.handle_timer(t))
    assert times == [1, 3, 7, 15, 31]
    forged = RegistrationReply.build(code=0, lifetime=600, home_address=HOME,
                                     home_agent=HA_ADDR,
                                     identification=mn.pending.identification)
    forged = append_authenticator(forged.encode(), ExtType.MN_HA_AUTH,
                                  SecurityAssociation(256, b"attacker key"))
    assert mn.receive(forged, HA_ADDR, 434, t)[0].event == "drop"
    assert mn.state is State.REGISTERING


def test_restore_after_restart():
    ha, mn = make_pair()
    exchange(ha, mn, mn.attach(COA, NOW), NOW)
    saved = [b.to_row() for b in ha.bindings]
    from mipro.core.bindings import Binding
    ha2, _ = make_pair()
    actions = ha2.restore([Binding.from_row(d) for d in saved], NOW + 10)
    assert of(InstallBinding, actions)[0].binding.care_of_address == COA
    # the replay state survives too
    assert reply_code(ha2.receive(request(saved[0][6]), COA, 434,
                                  NOW + 11)) == 133
    assert ha2.restore([Binding.from_row(d) for d in saved], NOW + 10_000)[:-1] == []


def test_twenty_thousand_bindings_and_their_expiry():
    subs = [subscriber(A(0x0A000000 + i)) for i in range(1, 20_001)]
    ha = HomeAgent(HaPolicy((HA_ADDR,)), MemoryStore(subs))
    for i, s in enumerate(subs):
        t = NOW + i * 1e-3
        ha.receive(request(timestamp_identification(t), home=s.home_address), COA, 434, t)
    assert len(ha.bindings) == 20_000
    assert len(of(RemoveBinding, ha.handle_timer(NOW + 605))) == 5_001
    assert len(ha.bindings) == 14_999


def test_exchange_fails_when_the_conversation_never_settles():
    """The harness itself: a peer that answers every reply with another request must make
    it fail, not pass after max_rounds."""
    ha, _ = make_pair()

    class Chatty:
        n = 0

        def receive(self, data, src, port, now):
            Chatty.n += 1
            return [Send(HA_ADDR, 434, request(timestamp_identification(NOW + Chatty.n)))]

    with pytest.raises(AssertionError, match="still talking"):
        exchange(ha, Chatty(), Chatty().receive(b"", HA_ADDR, 434, NOW), NOW, max_rounds=3)
