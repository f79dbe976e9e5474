"""Round trips for every message, and: decoding anything raises only DecodeError."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mipro import wire as w
from mipro.wire.extensions import AuthExtension, Nvse

from . import golden
from .strategies import adverts, notification_acks, notifications, udp434_messages

SEEDS = [golden.RRQ[0], golden.RRP[0], golden.TUNNEL_DATA[0], golden.RRQ_ALL_FLAGS[0],
         golden.BU[0], golden.BACK[0], golden.BACK_SIGNED[0],
         golden.RRQ_FIXED + b"".join(v[0] for v in golden.EXTENSIONS.values())]
ICMP_SEEDS = [golden.ADVERT[0], golden.SOLICITATION[0]]


@given(udp434_messages)
def test_udp434_round_trip(msg):
    data = msg.encode()
    decoded = w.decode_udp434(data)
    assert decoded == msg
    assert decoded.encode() == data


@given(notifications, st.integers(1, 2**24 - 1))
def test_notification_round_trip_with_any_vendor_id(bu, vendor_id):
    """The MN precomputes its authenticator over FA2's encoding: build, encode and decode
    must agree for every field value, and the fixed part must end where extensions begin."""
    bu = w.BindingUpdate.build(home_address=bu.home_address, care_of_address=bu.care_of_address,
                               identification=bu.identification, lifetime=bu.lifetime,
                               flags=bu.flags, vendor_id=vendor_id,
                               extensions=[e for e in bu.extensions  # mipro's NVSEs: 32473
                                           if not hasattr(e, "VENDOR_TYPE")  # nor, raw, ours
                                           and not (isinstance(e, Nvse)
                                                    and e.vendor_id == vendor_id)])
    data = bu.encode()
    ctx = w.DecodeContext(vendor_id=vendor_id)
    decoded = w.decode_udp434(data, ctx)
    assert decoded == bu and decoded.encode() == data
    assert decoded.offsets[:1] in ((), (w.BindingUpdate.FIXED,))
    for i, ext in enumerate(decoded.extensions):
        if isinstance(ext, AuthExtension):  # what the MN signs = what FA1 checks
            assert decoded.authenticated_bytes(i) == bu.authenticated_bytes(i)


@given(notification_acks)
def test_acknowledgement_answers_what_it_decodes_from(ack):
    decoded = w.decode_udp434(ack.encode())
    assert w.BindingAck.matches(ack.encode()) and decoded == ack


@given(adverts)
def test_advertisement_round_trip(adv):
    data = adv.encode()
    assert w.decode_icmp(data) == adv


def _decode_anything(data: bytes) -> None:
    for decoder in (w.decode_udp434, w.decode_icmp):
        try:
            decoder(data)
        except w.DecodeError as exc:
            assert 0 <= exc.offset <= len(data) + 8
            assert exc.reason


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_decode_error(data):
    _decode_anything(data)


@st.composite
def mutated(draw):
    seed = bytearray(draw(st.sampled_from(SEEDS + ICMP_SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 3))
        pos = draw(st.integers(0, max(0, len(seed) - 1)))
        if op == 0 and seed:
            seed[pos] = draw(st.integers(0, 255))
        elif op == 1:
            del seed[pos:]
        elif op == 2:
            seed[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif seed:
            del seed[pos]
    return bytes(seed)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_raise_only_decode_error(data):
    _decode_anything(data)


def test_truncation_at_every_length_is_a_decode_error():
    for seed in SEEDS:
        for n in range(len(seed)):
            try:
                w.decode_udp434(seed[:n])
            except w.DecodeError:
                continue
            # a prefix that still decodes must end on an extension boundary
            msg = w.decode_udp434(seed[:n])
            assert msg.encode() == seed[:n]
