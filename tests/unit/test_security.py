"""Authenticators against values computed here with hmac/hashlib on hand-assembled bytes."""

import hashlib
import hmac

import pytest

from mipro import wire as w
from mipro.security import (
    Algorithm,
    SecurityAssociation,
    append_authenticator,
    append_mn_aaa,
    check_nonce,
    check_timestamp,
    ntp_from_unix,
    timestamp_identification,
    unix_from_ntp,
    verify,
    verify_mn_aaa,
)
from mipro.security.replay import resync_offset

from . import golden

KEY = b"0123456789abcdef"
# fixed part of golden.RRQ + the NAI extension, assembled by hand in golden.py
BODY = golden.RRQ_FIXED + golden.EXTENSIONS["nai"][0]


def covered(ext_type: int, spi: int, length: int) -> bytes:
    """RFC 5944 §3.5.1: message + type + length + SPI of the auth extension."""
    return BODY + bytes([ext_type, length]) + spi.to_bytes(4, "big")


@pytest.mark.parametrize("alg,expected", [
    (Algorithm.HMAC_MD5, lambda d: hmac.new(KEY, d, "md5").digest()),
    (Algorithm.KEYED_MD5, lambda d: hashlib.md5(KEY + d + KEY).digest()),
    (Algorithm.HMAC_SHA256, lambda d: hmac.new(KEY, d, "sha256").digest()),
])
@pytest.mark.parametrize("ext_type", [32, 33, 34])
def test_authenticator_matches_independent_computation(alg, expected, ext_type):
    sa = SecurityAssociation(0x1234, KEY, alg)
    signed = append_authenticator(BODY, ext_type, sa)
    length = 4 + alg.digest_size
    want = expected(covered(ext_type, 0x1234, length))
    assert signed == covered(ext_type, 0x1234, length) + want
    msg = w.decode_udp434(signed)
    ext = msg.extensions[-1]
    assert verify(msg.authenticated_bytes(len(msg.extensions) - 1), ext, sa)


def test_known_hmac_md5_vector():
    # RFC 2202 test case 2, to pin the primitive itself
    sa = SecurityAssociation(1, b"Jefe", Algorithm.HMAC_MD5)
    from mipro.security import compute
    assert compute(sa.algorithm, sa.key, b"what do ya want for nothing?").hex() == \
        "750c783e6ab0b503eaa86e310a5db738"


def test_wrong_key_spi_or_tampering_fails():
    sa = SecurityAssociation(7, KEY)
    signed = append_authenticator(BODY, 32, sa)
    msg = w.decode_udp434(signed)
    ext = msg.extensions[-1]
    data = msg.authenticated_bytes(1)
    assert verify(data, ext, sa)
    assert not verify(data, ext, SecurityAssociation(7, b"other key"))
    assert not verify(data, ext, SecurityAssociation(8, KEY))
    tampered = bytearray(signed)
    tampered[3] ^= 1  # lifetime
    m2 = w.decode_udp434(bytes(tampered))
    assert not verify(m2.authenticated_bytes(1), m2.extensions[-1], sa)


def test_extensions_after_the_authenticator_are_not_covered():
    """The FA may strip NVSEs appended after MN-HA auth; the MN-HA authenticator still holds."""
    sa = SecurityAssociation(7, KEY)
    signed = append_authenticator(BODY, 32, sa) + golden.EXTENSIONS["static-routes"][0]
    msg = w.decode_udp434(signed)
    assert verify(msg.authenticated_bytes(1), msg.extensions[1], sa)
    stripped = w.decode_udp434(msg.prefix_before(2))
    assert verify(stripped.authenticated_bytes(1), stripped.extensions[1], sa)


def test_mn_aaa_rfc3012():
    challenge = bytes(range(1, 17))
    signed = append_mn_aaa(BODY, 3, KEY, challenge)
    head = bytes([36, 1, 0, 20]) + (3).to_bytes(4, "big")
    inner = hashlib.md5(BODY + head).digest()
    want = hashlib.md5(challenge[:1] + KEY + inner + challenge[-237:]).digest()
    assert signed == BODY + head + want
    msg = w.decode_udp434(signed)
    assert verify_mn_aaa(msg.authenticated_bytes(1), msg.extensions[1], KEY, challenge)
    assert not verify_mn_aaa(msg.authenticated_bytes(1), msg.extensions[1], KEY, b"x" * 16)


def test_key_is_never_in_repr():
    assert "0123" not in repr(SecurityAssociation(1, KEY))


# --- replay protection -------------------------------------------------------

NOW = 1_790_000_000.25


def test_ntp_conversion():
    ident = ntp_from_unix(NOW)
    assert ident >> 32 == int(NOW) + 2_208_988_800
    assert abs(unix_from_ntp(ident) - NOW) < 1e-6


def test_timestamp_window_default_7s():
    fresh = timestamp_identification(NOW, low_bits=0xAABBCCDD)
    assert fresh & 0xFFFFFFFF == 0xAABBCCDD
    assert check_timestamp(fresh, None, NOW + 6.9).ok
    late = check_timestamp(fresh, None, NOW + 7.5)
    assert not late.ok
    # 133 hint: HA time in the high bits, the request's low bits kept
    assert late.reply_identification & 0xFFFFFFFF == 0xAABBCCDD
    assert late.reply_identification >> 32 == int(NOW + 7.5) + 2_208_988_800
    assert abs(resync_offset(late.reply_identification, NOW) - 7.5) < 1.0


def test_timestamp_replay_and_reorder_rejected():
    first = timestamp_identification(NOW, low_bits=1)
    assert check_timestamp(first, None, NOW).ok
    assert not check_timestamp(first, first, NOW).ok  # replay
    older = timestamp_identification(NOW - 1, low_bits=2)
    assert not check_timestamp(older, first, NOW).ok
    newer = timestamp_identification(NOW + 1, low_bits=3)
    assert check_timestamp(newer, first, NOW + 1).ok


def test_configurable_window():
    ident = timestamp_identification(NOW)
    assert not check_timestamp(ident, None, NOW + 3, window=2).ok
    assert check_timestamp(ident, None, NOW + 3, window=30).ok


def test_nonces():
    expected = 0x11223344
    good = check_nonce((expected << 32) | 0x55, expected)
    assert good.ok and good.reply_identification & 0xFFFFFFFF == 0x55
    bad = check_nonce((0x99 << 32) | 0x55, expected)
    assert not bad.ok and bad.reply_identification & 0xFFFFFFFF == 0x55
    assert not check_nonce(0x55, None).ok
