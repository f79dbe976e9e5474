"""The previous-FA notification and its acknowledgement: RFC 4064 experimental message 255."""

from ipaddress import IPv4Address as A

import pytest

from mipro import wire as w
from mipro.security import SecurityAssociation, append_authenticator, verify
from mipro.security.auth import Algorithm

from . import golden

MN_FA1 = SecurityAssociation(400, b"mn-fa1 secret")
HOME, NEW_COA, FA1 = A("10.1.0.100"), A("192.0.2.129"), A("198.51.100.1")
IDENT = 0xE9A1B2C300000001


def test_types_18_and_19_are_no_longer_ours():
    """IANA gives 18/19 to RFC 4857 Regional Registration; mipro must not claim them."""
    for kind in (18, 19):
        with pytest.raises(w.DecodeError, match=f"unknown mobile IP message type {kind}"):
            w.decode_udp434(bytes((kind,)) + golden.BU[0][1:])


def test_layout_constants_agree_with_the_encoding():
    bu, ack = golden.BU[1], golden.BACK[1]
    assert len(bu.encode_fixed()) == w.BindingUpdate.FIXED == 2 + w.BindingUpdate.LENGTH
    assert len(ack.encode_fixed()) == w.BindingAck.FIXED == 2 + w.BindingAck.LENGTH
    assert bu.encode()[:3] == bytes((255, 26, 1)) and ack.encode()[:3] == bytes((255, 18, 2))


def test_the_authenticator_covers_the_fixed_part_and_the_extension_header_and_spi():
    data, _ = golden.BU
    msg = w.decode_udp434(data)
    assert msg.offsets == (28,)
    assert msg.authenticated_bytes(msg.index_of(msg.authenticator)) == data[:28 + 2 + 4]
    # the same coverage when the message was built rather than received
    assert golden.BU[1].authenticated_bytes(0) == data[:34]


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_the_mn_computes_in_advance_exactly_what_the_new_fa_sends(algorithm):
    """The MN signs the notification FA2 will build from the NVSE; FA1 can check it."""
    sa = SecurityAssociation(MN_FA1.spi, MN_FA1.key, algorithm)
    # the mobile node, in its registration request through FA2
    unsigned = w.BindingUpdate.build(home_address=HOME, care_of_address=NEW_COA,
                                     identification=IDENT)
    signed = append_authenticator(unsigned.encode(), w.ExtType.MN_FA_AUTH, sa)
    nvse = w.PreviousFaNotification(FA1, 0, sa.spi, signed[-algorithm.digest_size:])
    nvse = w.decode_udp434(golden.RRQ_FIXED + nvse.encode()).extensions[0]
    # FA2, from the request's fields and the NVSE only (it has no MN-FA1 key)
    sent = w.BindingUpdate.build(home_address=HOME, care_of_address=NEW_COA,
                                 identification=IDENT, lifetime=nvse.cache_lifetime,
                                 extensions=[w.MnFaAuth(nvse.spi, nvse.authenticator)],
                                 vendor_id=nvse.vendor_id).encode()
    assert sent == signed
    # FA1
    got = w.decode_udp434(sent)
    assert isinstance(got, w.BindingUpdate) and got.flags & w.BindingFlags.A
    assert verify(got.authenticated_bytes(got.index_of(got.authenticator)), got.authenticator, sa)
    forged = sent[:12] + bytes((sent[12] ^ 1,)) + sent[13:]  # another care-of address
    bad = w.decode_udp434(forged)
    assert not verify(bad.authenticated_bytes(0), bad.authenticator, sa)


def test_the_acknowledgement_echoes_the_notification():
    bu = w.BindingUpdate.build(home_address=HOME, care_of_address=NEW_COA,
                               identification=IDENT, vendor_id=9)
    ack = w.BindingAck.answering(bu, w.BindingStatus.IDENTIFICATION_MISMATCH)
    assert (ack.status, ack.home_address, ack.identification, ack.vendor_id) == \
        (69, HOME, IDENT, 9)
    assert w.decode_udp434(ack.encode(), w.DecodeContext(vendor_id=9)) == ack


def test_a_signed_acknowledgement_verifies_with_the_mobile_nodes_key():
    ack = w.BindingAck.answering(golden.BU[1], w.BindingStatus.ACCEPTED)
    data = append_authenticator(ack.encode(), w.ExtType.MN_FA_AUTH, MN_FA1)
    got = w.decode_udp434(data)
    assert isinstance(got, w.BindingAck) and got.status == 0
    assert verify(got.authenticated_bytes(got.index_of(got.authenticator)), got.authenticator,
                  MN_FA1)


def test_matches_tells_the_two_sub_types_apart():
    bu, ack = golden.BU[0], golden.BACK[0]
    assert w.BindingUpdate.matches(bu) and not w.BindingUpdate.matches(ack)
    assert w.BindingAck.matches(ack) and not w.BindingAck.matches(bu)
    for short in (b"", b"\xff", b"\xff\x1a"):
        assert not w.BindingUpdate.matches(short) and not w.BindingAck.matches(short)
    assert not w.BindingUpdate.matches(golden.RRQ[0])


def test_another_organizations_experiment_is_refused():
    """RFC 4064 gives one message type to every experimenter: the Vendor/Org-ID tells them
    apart, and the decoder refuses a type-255 message that is not mipro's."""
    for data in (golden.BU[0], golden.BACK[0]):
        with pytest.raises(w.DecodeError, match="organization 32473") as exc:
            w.decode_udp434(data, w.DecodeContext(vendor_id=9))
        assert exc.value.offset == 4
    other = golden.BU[0][:4] + (9).to_bytes(4, "big") + golden.BU[0][8:]
    assert w.decode_udp434(other, w.DecodeContext(vendor_id=9)).vendor_id == 9


@pytest.mark.parametrize("offset,value,reason", [
    (1, 27, "length 27, expected 26"),
    (2, 3, "sub-type 3"),
    (3, 0x81, "reserved notification flags"),
    (26, 1, "reserved octets"),
])
def test_malformed_notifications_are_refused(offset, value, reason):
    data = bytearray(golden.BU[0])
    data[offset] = value
    with pytest.raises(w.DecodeError, match=reason):
        w.decode_udp434(bytes(data))


def test_decoding_one_sub_type_as_the_other_fails_cleanly():
    with pytest.raises(w.DecodeError, match="not a previous-FA notification"):
        w.BindingUpdate.decode(golden.BACK[0])
    with pytest.raises(w.DecodeError, match="not a previous-FA acknowledgement"):
        w.BindingAck.decode(golden.BU[0])


def test_describe_for_mipro_decode():
    assert golden.BU[1].describe()["flags"] == "A"
    desc = golden.BACK_SIGNED[1].describe()
    assert desc["status_name"] == "identification-mismatch" and desc["sub_type"] == 2
    assert desc["extensions"][0]["spi"] == 257
    assert w.BindingAck(5, HOME, 0).describe()["status_name"] == "unknown"
