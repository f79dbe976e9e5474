"""Round trips for every message, and: decoding anything raises only DecodeError."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mipro import wire as w

from . import golden
from .strategies import adverts, udp434_messages

SEEDS = [golden.RRQ[0], golden.RRP[0], golden.TUNNEL_DATA[0], golden.RRQ_ALL_FLAGS[0],
         golden.RRQ_FIXED + b"".join(v[0] for v in golden.EXTENSIONS.values())]
ICMP_SEEDS = [golden.ADVERT[0], golden.SOLICITATION[0]]


@given(udp434_messages)
def test_udp434_round_trip(msg):
    data = msg.encode()
    decoded = w.decode_udp434(data)
    assert decoded == msg
    assert decoded.encode() == data


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
