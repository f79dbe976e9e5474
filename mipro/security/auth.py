"""Registration authenticators (RFC 5944 §3.5, RFC 2002 §3.5.1, RFC 3012 §6).

The authenticator covers the UDP payload up to and including the Type,
Length and SPI of the authentication extension itself (RFC 5944 §3.5.1).
Everything here works on bytes, so what is signed is exactly what travels.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass

from ..wire.extensions import LONG_FORMAT, AuthExtension, GeneralizedAuth


class Algorithm(enum.Enum):
    HMAC_MD5 = "hmac-md5"  # RFC 5944 default
    KEYED_MD5 = "keyed-md5"  # RFC 2002 prefix+suffix, for old peers
    HMAC_SHA256 = "hmac-sha256"  # stronger option on its own SPI

    @property
    def digest_size(self) -> int:
        return 32 if self is Algorithm.HMAC_SHA256 else 16


def compute(algorithm: Algorithm, key: bytes, data: bytes) -> bytes:
    if algorithm is Algorithm.HMAC_MD5:  # hmac.digest: one call into OpenSSL, no object
        return hmac.digest(key, data, "md5")
    if algorithm is Algorithm.HMAC_SHA256:
        return hmac.digest(key, data, "sha256")
    if algorithm is Algorithm.KEYED_MD5:
        return hashlib.md5(key + data + key).digest()
    raise ValueError(f"unknown algorithm {algorithm!r}")


@dataclass(frozen=True, slots=True)
class SecurityAssociation:
    """One mobility security association: SPI, key and algorithm."""

    spi: int
    key: bytes
    algorithm: Algorithm = Algorithm.HMAC_MD5

    def __repr__(self) -> str:  # never print keys
        return f"SecurityAssociation(spi={self.spi}, algorithm={self.algorithm.value})"


def append_authenticator(message: bytes, ext_type: int, sa: SecurityAssociation) -> bytes:
    """Append an MN-HA/FA-HA/MN-FA authentication extension to encoded bytes."""
    if ext_type in LONG_FORMAT:
        raise ValueError("use append_mn_aaa for generalized authentication")
    size = sa.algorithm.digest_size
    head = bytes((ext_type, 4 + size)) + sa.spi.to_bytes(4, "big")
    return message + head + compute(sa.algorithm, sa.key, message + head)


def verify(covered: bytes, ext: AuthExtension, sa: SecurityAssociation) -> bool:
    """Check an authenticator against the bytes it covers, in constant time."""
    if ext.spi != sa.spi:
        return False
    expected = compute(sa.algorithm, sa.key, covered)
    return hmac.compare_digest(expected, ext.authenticator)


def mn_aaa_authenticator(covered: bytes, challenge: bytes, key: bytes) -> bytes:
    """RFC 3012 §8 MN-AAA: MD5(ch[0] || key || MD5(covered) || ch[-237:])."""
    inner = hashlib.md5(covered).digest()
    return hashlib.md5(challenge[:1] + key + inner + challenge[-237:]).digest()


def append_mn_aaa(message: bytes, spi: int, key: bytes, challenge: bytes) -> bytes:
    """Append a Generalized MN-AAA authentication extension (RFC 3012)."""
    head = bytes((36, GeneralizedAuth.MN_AAA)) + (4 + 16).to_bytes(2, "big") + spi.to_bytes(4, "big")
    return message + head + mn_aaa_authenticator(message + head, challenge, key)


def verify_mn_aaa(covered: bytes, ext: GeneralizedAuth, key: bytes, challenge: bytes) -> bool:
    expected = mn_aaa_authenticator(covered, challenge, key)
    return hmac.compare_digest(expected, ext.authenticator)
