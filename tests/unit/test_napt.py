"""Seed Figs. 9b/12b in memory: a co-located MN behind a NAPT, challenged, then UDP-tunnelled."""

from ipaddress import IPv4Address as A

from mipro.core.actions import InstallBinding, Send
from mipro.core.ha import HaPolicy, HomeAgent
from mipro.core.mn import MnSettings, MobileNode, State, TunnelUp
from mipro.security import SecurityAssociation
from mipro.subscribers.model import MemoryStore
from mipro.wire import (
    MnFaChallenge,
    RegistrationReply,
    RegistrationRequest,
    UdpTunnelReply,
    UdpTunnelRequest,
)

from .test_engines import HA_ADDR, HOME, KEY, NOW, of, subscriber

PRIVATE = A("10.0.0.50")  # the MN's care-of address behind the residential gateway
PUBLIC, PORT = A("203.0.113.2"), 40434  # what the NAPT makes of it


def pair(udp_tunnel="auto", **policy):
    ha = HomeAgent(HaPolicy((HA_ADDR,), udp_keepalive=5, **policy),
                   MemoryStore([subscriber()]))
    mn = MobileNode(MnSettings(HOME, HA_ADDR, SecurityAssociation(256, KEY),
                               nai=f"mn-{HOME}@example.org", udp_tunnel=udp_tunnel))
    return ha, mn


def through_napt(ha, mn, actions, now, src=PUBLIC, port=PORT):
    """MN -> NAPT -> HA and back; returns everything the HA and MN did."""
    seen = list(actions)
    for _ in range(6):
        to_ha = [a for a in actions if isinstance(a, Send) and a.dst == HA_ADDR]
        if not to_ha:
            break
        actions = []
        for send in to_ha:
            for out in ha.receive(send.data, src, port, now):
                seen.append(out)
                if isinstance(out, Send):
                    assert (out.dst, out.port) == (src, port)  # answered through the NAPT
                    actions += mn.receive(out.data, HA_ADDR, 434, now)
        seen += actions
    return seen


def requests(seen):
    return [RegistrationRequest.decode(a.data) for a in of(Send, seen) if a.dst == HA_ADDR]


def replies(seen):
    return [RegistrationReply.decode(a.data) for a in of(Send, seen) if a.dst != HA_ADDR]


def test_challenged_once_then_tunnelled_in_udp_to_the_napt():
    ha, mn = pair()
    seen = through_napt(ha, mn, mn.attach(PRIVATE, NOW), NOW)
    first, second = replies(seen)[:2]
    assert first.code == 131 and first.find(MnFaChallenge) is not None
    assert requests(seen)[1].find(MnFaChallenge).challenge == \
        first.find(MnFaChallenge).challenge
    assert second.code == 0 and second.find(UdpTunnelReply) == UdpTunnelReply(0, False, 5)
    binding = ha.bindings.get(HOME)
    assert binding.encapsulation == "udp" and (binding.source, binding.source_port) == \
        (PUBLIC, PORT) and binding.care_of_address == PRIVATE
    up = of(TunnelUp, seen)[0]
    assert up.encapsulation == "udp" and up.udp_keepalive == 5
    assert mn.state is State.REGISTERED


def test_renewal_through_the_same_mapping_is_not_challenged_again():
    ha, mn = pair()
    through_napt(ha, mn, mn.attach(PRIVATE, NOW), NOW)
    seen = through_napt(ha, mn, mn.handle_timer(NOW + 500), NOW + 500)
    assert [r.code for r in replies(seen)] == [0]


def test_a_request_with_a_wrong_challenge_is_refused_and_creates_nothing():
    ha, mn = pair()
    through_napt(ha, mn, mn.attach(PRIVATE, NOW), NOW, src=A("203.0.113.99"))  # elsewhere
    ha.bindings.pop(HOME)
    mn.nat_challenge = b"guessed guessed!"
    seen = through_napt(ha, mn, mn._register(NOW + 1, 600, "forged"), NOW + 1)
    assert replies(seen)[0].code == 131 and ha.bindings.get(HOME) is None
    assert not of(InstallBinding, seen[:2])


def test_a_challenge_from_another_public_address_does_not_count():
    ha, mn = pair()
    request = of(Send, mn.attach(PRIVATE, NOW))[0]
    challenge = of(Send, ha.receive(request.data, A("203.0.113.7"), PORT, NOW))[0]
    answer = mn.receive(challenge.data, HA_ADDR, 434, NOW)  # answered ...
    assert requests(answer)[0].find(MnFaChallenge) is not None
    seen = through_napt(ha, mn, answer, NOW)  # ... but it arrives from another address
    assert replies(seen)[0].code == 131 and ha.bindings.get(HOME) is None


def test_forced_udp_tunnelling_without_a_napt():
    ha, mn = pair(udp_tunnel="always")
    seen = through_napt(ha, mn, mn.attach(PRIVATE, NOW), NOW, src=PRIVATE, port=434)
    assert requests(seen)[0].find(UdpTunnelRequest).forced
    assert [r.code for r in replies(seen)] == [0]
    assert replies(seen)[0].find(UdpTunnelReply).forced
    assert ha.bindings.get(HOME).encapsulation == "udp"


def test_no_napt_no_udp_tunnel():
    ha, mn = pair()
    seen = through_napt(ha, mn, mn.attach(PRIVATE, NOW), NOW, src=PRIVATE, port=434)
    assert replies(seen)[0].find(UdpTunnelReply) is None
    assert ha.bindings.get(HOME).encapsulation == "ipip"


def test_napt_without_a_udp_tunnel_request_is_142():
    ha, mn = pair(udp_tunnel="never")
    seen = through_napt(ha, mn, mn.attach(PRIVATE, NOW), NOW)
    assert replies(seen)[0].code == 142 and ha.bindings.get(HOME) is None
