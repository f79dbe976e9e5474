"""Authenticators and replay protection: pure functions, no I/O."""

from .auth import (
    Algorithm,
    SecurityAssociation,
    append_authenticator,
    append_mn_aaa,
    compute,
    verify,
    verify_mn_aaa,
)
from .replay import (
    ReplayMethod,
    ReplayVerdict,
    check_nonce,
    check_timestamp,
    ntp_from_unix,
    timestamp_identification,
    unix_from_ntp,
)

__all__ = [
    "Algorithm", "ReplayMethod", "ReplayVerdict", "SecurityAssociation", "append_authenticator",
    "append_mn_aaa", "check_nonce", "check_timestamp", "compute", "ntp_from_unix",
    "timestamp_identification", "unix_from_ntp", "verify", "verify_mn_aaa",
]
