"""The redundancy messages of seed Fig. 13b: layout, round trips, and bad input."""

import contextlib
from ipaddress import IPv4Address as A

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mipro.wire import DecodeError
from mipro.wire.sync import BindingBlock, SyncMessage, SyncType, blocks_per_message

VIP = A("10.1.0.1")
BLOCK = BindingBlock(A("10.1.0.100"), A("198.51.100.106"), VIP, A("198.51.100.106"), 434,
                     "ipip", True, 600, 512, 0xEEB917BCF4C665FC, None, 256, "mn1@home.example")
NAPT = BindingBlock(A("10.1.0.101"), A("10.0.0.50"), VIP, A("203.0.113.2"), 40434, "udp",
                    False, 300, 300, 0x0123456789ABCDEF, 0x89ABCDEF, 257, "")
FORWARD = "24336401000194800a010001000000000000000000010100003c0a010064c633646a0a010001c633646a" \
          "01b2010402580200eeb917bcf4c665fc0000000000000100100000006d6e3140686f6d652e6578616d706c65"


def test_the_forward_layout_byte_for_byte():
    """Version 2 / type 4, VRID 51, priority 100, one address, auth 0, adver int 1,
    checksum, the virtual address, 8 bytes of authentication data, Count-D 1, subtype 1,
    flags 0, then a 60-byte block (docs/protocol.md shows the same bytes)."""
    msg = SyncMessage(SyncType.FORWARD, 51, 100, (VIP,), 1, blocks=(BLOCK,))
    assert msg.encode().hex() == FORWARD
    assert SyncMessage.decode(bytes.fromhex(FORWARD)) == msg


@pytest.mark.parametrize("msg", [
    SyncMessage(SyncType.DUMP_REQUEST, 51, 90, (VIP,)),
    SyncMessage(SyncType.DUMP, 51, 100, (VIP,), 1, blocks=(BLOCK, NAPT), more=True),
    SyncMessage(SyncType.DUMP, 52, 100, (A("10.1.0.2"),), 3, blocks=()),
    SyncMessage(SyncType.FORWARD, 51, 100, (VIP,), 1,
                blocks=(BindingBlock(A("10.1.0.100"), A("10.1.0.100"), VIP, VIP, 434, "gre",
                                     False, 600, 0, 1, None, 256, ""),)),
    SyncMessage(SyncType.FORWARD, 51, 90, (VIP,), 1, blocks=(BLOCK,), replay=True),
])
def test_round_trips(msg):
    assert SyncMessage.decode(msg.encode()) == msg


def _resummed(b: bytes) -> bytes:
    """With a checksum that matches again: what a forger would send."""
    from mipro.wire.advertisement import icmp_checksum
    out = bytearray(b)
    out[6:8] = b"\x00\x00"
    out[6:8] = icmp_checksum(bytes(out)).to_bytes(2, "big")
    return bytes(out)


@pytest.mark.parametrize("mutate,where", [
    (lambda b: b[:-1], "checksum"),
    (lambda b: _resummed(b[:-5]), "truncated data block"),
    (lambda b: b[:7] + bytes([b[7] ^ 1]) + b[8:], "checksum"),
    (lambda b: bytes([0x31]) + b[1:], "version"),
    (lambda b: bytes([0x29]) + b[1:], "type"),
    (lambda b: b[:4] + b"\x02" + b[5:], "auth type"),
])
def test_bad_input_is_a_decode_error(mutate, where):
    with pytest.raises(DecodeError, match=where):
        SyncMessage.decode(mutate(bytes.fromhex(FORWARD)))


@pytest.mark.parametrize("msg", [
    SyncMessage(SyncType.FORWARD, 51, 100, (VIP,), blocks=(BLOCK,), replay=True, primary=True),
    SyncMessage(SyncType.DUMP, 51, 90, (VIP,), blocks=(BLOCK,), replay=True, more=True),
    SyncMessage(SyncType.DUMP, 51, 90, (VIP,), blocks=(BLOCK,), replay=True),
    SyncMessage(SyncType.DUMP_REQUEST, 51, 90, (VIP,), replay=True),
], ids=["with-primary", "with-more", "on-a-dump", "on-a-request"])
def test_replay_is_only_a_forward_from_a_home_agent_that_is_not_primary(msg):
    with pytest.raises(DecodeError, match="REPLAY is for a data forward"):
        SyncMessage.decode(msg.encode())


def test_a_dump_request_carries_no_data():
    data = SyncMessage(SyncType.DUMP, 51, 100, (VIP,), blocks=(BLOCK,)).encode()
    forged = bytearray(data)
    forged[0] = 0x22
    forged[6:8] = b"\x00\x00"
    from mipro.wire.advertisement import icmp_checksum
    forged[6:8] = icmp_checksum(bytes(forged)).to_bytes(2, "big")
    with pytest.raises(DecodeError, match="no data"):
        SyncMessage.decode(bytes(forged))


def test_blocks_per_message_fit():
    n = blocks_per_message()
    big = SyncMessage(SyncType.DUMP, 51, 100, (VIP,), blocks=(BLOCK,) * n).encode()
    assert len(big) <= 60_000


@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_else(data):
    with contextlib.suppress(DecodeError):
        SyncMessage.decode(data)


@given(st.integers(0, len(bytes.fromhex(FORWARD)) - 1), st.integers(0, 255))
def test_one_byte_changed_is_caught_or_decoded(pos, value):
    data = bytearray.fromhex(FORWARD)
    data[pos] = value
    with contextlib.suppress(DecodeError):
        SyncMessage.decode(bytes(data))
