"""Replay protection for registrations (RFC 5944 §5.4, §5.7).

Timestamps: the 64-bit Identification is an NTP-format time; the HA accepts
it when within ``window`` seconds of its own clock and greater than the last
accepted one.  Nonces: the high 32 bits are the HA's nonce, the low 32 bits
the MN's.  On a mismatch the HA answers 133 with an Identification that lets
the MN resynchronise: its own time (or a fresh nonce) in the high 32 bits and
the request's low 32 bits unchanged.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


class ReplayMethod(enum.Enum):
    TIMESTAMP = "timestamp"
    NONCE = "nonce"


def ntp_from_unix(t: float) -> int:
    """A 64-bit NTP timestamp for a Unix time."""
    seconds = int(t) + NTP_EPOCH_OFFSET
    fraction = int((t - int(t)) * (1 << 32)) & 0xFFFFFFFF
    return ((seconds & 0xFFFFFFFF) << 32) | fraction


def unix_from_ntp(ident: int) -> float:
    return (ident >> 32) - NTP_EPOCH_OFFSET + (ident & 0xFFFFFFFF) / (1 << 32)


RANDOM_BITS = 12  # below the microsecond resolution of the clock


def timestamp_identification(now: float, low_bits: int | None = None) -> int:
    """Identification for a request sent at ``now`` (Unix time).

    RFC 5944 §5.7: an NTP timestamp whose fraction bits that the clock cannot
    provide come from a good random source; the low-order 32 bits also match
    a reply to its request.  Keeping the real fraction makes successive
    requests of one mobile node increase even within a second.
    ``low_bits`` forces the low-order 32 bits (tests).
    """
    ident = ntp_from_unix(now)
    if low_bits is not None:
        return (ident & ~0xFFFFFFFF) | (low_bits & 0xFFFFFFFF)
    mask = (1 << RANDOM_BITS) - 1
    return (ident & ~mask) | secrets.randbits(RANDOM_BITS)


@dataclass(frozen=True)
class ReplayVerdict:
    ok: bool
    #: Identification to put in the reply (a resynchronisation hint on failure)
    reply_identification: int
    reason: str = ""


def check_timestamp(
    identification: int, last_accepted: int | None, now: float, window: float = 7.0
) -> ReplayVerdict:
    """Validate a timestamp Identification against the HA clock and the last one accepted."""
    sent = unix_from_ntp(identification)
    if abs(sent - now) > window:
        hint = (ntp_from_unix(now) & ~0xFFFFFFFF) | (identification & 0xFFFFFFFF)
        return ReplayVerdict(False, hint, f"timestamp off by {sent - now:+.1f}s (window {window}s)")
    if last_accepted is not None and identification <= last_accepted:
        hint = (ntp_from_unix(now) & ~0xFFFFFFFF) | (identification & 0xFFFFFFFF)
        return ReplayVerdict(False, hint, "identification not newer than the last accepted")
    return ReplayVerdict(True, identification)


def new_nonce() -> int:
    return secrets.randbits(32)


def check_nonce(identification: int, expected_ha_nonce: int | None) -> ReplayVerdict:
    """Validate a nonce Identification; the reply always carries a fresh HA nonce."""
    fresh = new_nonce()
    hint = (fresh << 32) | (identification & 0xFFFFFFFF)
    if expected_ha_nonce is None or identification >> 32 != expected_ha_nonce:
        return ReplayVerdict(False, hint, "home agent nonce does not match")
    return ReplayVerdict(True, hint)


def resync_offset(reply_identification: int, now: float) -> float:
    """MN side of a 133 with timestamps: how far the HA clock is from ours."""
    return (reply_identification >> 32) - NTP_EPOCH_OFFSET - now
