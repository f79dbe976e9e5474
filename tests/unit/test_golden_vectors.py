"""Every message and extension against hand-assembled bytes, both directions."""

import re
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from mipro import wire as w
from mipro.wire.extensions import DEFAULT_CONTEXT, decode_extensions

from . import golden


@pytest.mark.parametrize("name", sorted(golden.EXTENSIONS))
def test_extension_vector(name):
    data, ext = golden.EXTENSIONS[name]
    assert ext.encode() == data
    decoded, offsets = decode_extensions(data, 0, DEFAULT_CONTEXT)
    assert decoded == (ext,) and offsets == (0,)


@pytest.mark.parametrize("vector", ["RRQ", "RRQ_ALL_FLAGS", "RRP", "TUNNEL_DATA", "BU", "BACK",
                                    "BACK_SIGNED"])
def test_udp434_vector(vector):
    data, msg = getattr(golden, vector)
    assert msg.encode() == data
    assert w.decode_udp434(data) == msg


def test_reply_pack_is_the_fixed_part_of_the_vector():
    """``RegistrationReply.pack`` (no object built) against the hand-assembled reply."""
    data, _ = golden.RRP
    packed = w.RegistrationReply.pack(code=133, lifetime=0,
                                      home_address=IPv4Address("10.0.0.1"),
                                      home_agent=IPv4Address("192.0.2.1"),
                                      identification=0xE1E2E3F000000001)
    assert packed == data[:w.RegistrationReply.FIXED]


@pytest.mark.parametrize("vector", ["ADVERT", "SOLICITATION"])
def test_icmp_vector(vector):
    data, msg = getattr(golden, vector)
    assert msg.encode() == data
    assert w.decode_icmp(data) == msg


def test_independent_icmp_checksum():
    for data in (golden.ADVERT[0], golden.SOLICITATION[0]):
        words = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data) - 1, 2))
        words += data[-1] << 8 if len(data) % 2 else 0
        while words >> 16:
            words = (words & 0xFFFF) + (words >> 16)
        assert words == 0xFFFF


def test_all_request_flags_decode_individually():
    msg = w.decode_udp434(golden.RRQ_ALL_FLAGS[0])
    assert msg.flags.letters() == "SBDMGrTx"


def test_offsets_point_at_each_extension():
    data, _ = golden.RRQ
    msg = w.decode_udp434(data)
    assert msg.offsets == (24, 24 + 17)
    assert data[msg.offsets[1]] == 32


def test_unknown_extensions_are_reported_or_kept():
    data = golden.RRQ_FIXED + golden.EXTENSIONS["unknown-critical"][0] + \
        golden.EXTENSIONS["unknown-skippable"][0]
    msg = w.decode_udp434(data)
    assert [e.type for e in msg.unknown_critical()] == [127]
    # the skippable one is kept raw and re-encodes byte for byte for a relay
    assert msg.extensions[1] == w.RawExtension(254, b"\x01\x02\x03")
    assert msg.encode() == data


def test_vendor_id_is_configurable():
    data, _ = golden.EXTENSIONS["static-routes"]
    msg = w.decode_udp434(golden.RRQ_FIXED + data, w.DecodeContext(vendor_id=9))
    assert isinstance(msg.extensions[0], w.Nvse) and msg.extensions[0].vendor_id == 32473
    other = data[:4] + (9).to_bytes(4, "big") + data[8:]
    msg = w.decode_udp434(golden.RRQ_FIXED + other, w.DecodeContext(vendor_id=9))
    assert isinstance(msg.extensions[0], w.StaticRoutesExtension)


def test_protocol_doc_hex_examples_match_the_codec():
    """docs/protocol.md shows hex examples in ```hex NAME blocks; each must be a golden vector."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
    blocks = re.findall(r"```hex ([\w-]+)\n(.*?)```", doc.read_text(), re.S)
    names = {name for name, _ in blocks}
    assert {"static-routes", "filter-rules", "certificate"} <= names
    for name, body in blocks:
        hex_text = "".join(line.split("#")[0] for line in body.splitlines())
        data = bytes.fromhex("".join(hex_text.split()))
        vectors = golden.EXTENSIONS | golden.MESSAGES | golden.SYNC_MESSAGES
        expected = vectors[name][1] if name in vectors else None
        assert expected is not None, f"docs/protocol.md example {name} has no golden vector"
        assert data == expected.encode(), name


@pytest.mark.parametrize("vector", ["SYNC_DUMP_REQUEST", "SYNC_FORWARD", "SYNC_REPLAY"])
def test_redundancy_vector(vector):
    from mipro.wire.sync import SyncMessage

    data, msg = getattr(golden, vector)
    assert msg.encode() == data
    assert SyncMessage.decode(data) == msg
