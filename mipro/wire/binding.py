"""The previous-foreign-agent notification and its acknowledgement (RFC 4064 type 255).

When a mobile node moves from FA1 to FA2 it asks FA2 (in a notification NVSE
of its registration request) to tell FA1; FA2 sends FA1 a notification
carrying the MN's own MN-FA1 authenticator, and FA1 drops the visitor at once
instead of when its lifetime runs out.  A node back home (or co-located)
sends the notification to FA1 itself.

Both messages are RFC 4064 §3 experimental messages (type 255, an opaque
payload whose structure the experiment defines).  mipro's payload starts
with a Length octet, a Sub-Type (1 notification, 2 acknowledgement) and the
Vendor/Org-ID of the organization running the experiment, so a receiver can
tell mipro's messages from another experiment's.  Why not RFC 6098's Generic
Notification or RFC 4988's Fast Binding Update, and the byte layouts:
docs/protocol.md.  The classes keep the names of the draft-ietf-mobileip-optim
Binding Update/Acknowledge they replace (types 18 and 19, which IANA gives to
RFC 4857's Regional Registration).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import cast

from .errors import DecodeError
from .extensions import (
    DEFAULT_CONTEXT,
    DEFAULT_VENDOR_ID,
    DecodeContext,
    Extension,
    MnFaAuth,
    decode_extensions,
    describe_value,
)
from .messages import _ExtensionAccess, _WithExtensions
from .reader import Reader
from .registry import EXPERIMENTAL_MESSAGES, UDP434_MESSAGES

EXPERIMENTAL_MESSAGE = 255  # RFC 4064 §3 EXP-MSG-TYPE


class ExperimentalSubType(enum.IntEnum):
    """The Sub-Type octet of mipro's RFC 4064 experimental messages."""

    PREVIOUS_FA_NOTIFICATION = 1
    PREVIOUS_FA_ACK = 2


class BindingFlags(enum.IntFlag):
    A = 0x80  # acknowledgement requested; the other 7 bits are reserved (sent as 0)


def _header(r: Reader, ctx: DecodeContext, subtype: int, length: int, what: str) -> int:
    """Type, Length, Sub-Type, the flags/status octet and the Vendor/Org-ID; returns the octet."""
    if r.u8("type") != EXPERIMENTAL_MESSAGE:
        raise DecodeError(0, f"not a {what}")
    got = r.u8("length")
    if r.u8("sub-type") != subtype:
        raise DecodeError(2, f"not a {what}")
    if got != length:
        raise DecodeError(1, f"{what} length {got}, expected {length}")
    octet = r.u8("flags" if subtype == ExperimentalSubType.PREVIOUS_FA_NOTIFICATION else "status")
    vendor = r.u32("Vendor/Org-ID")
    if vendor != ctx.vendor_id:
        raise DecodeError(4, f"experimental message of organization {vendor}, "
                             f"not mipro's (vendor id {ctx.vendor_id})")
    return octet


def _head(subtype: int, length: int, octet: int, vendor_id: int) -> bytes:
    return bytes((EXPERIMENTAL_MESSAGE, length, subtype, octet)) + vendor_id.to_bytes(4, "big")


def _matches(data: bytes, subtype: int) -> bool:
    return len(data) >= 3 and data[0] == EXPERIMENTAL_MESSAGE and data[2] == subtype


@dataclass(frozen=True)
class BindingUpdate(_WithExtensions):
    """Sub-type 1: the mobile node at ``home_address`` is now at ``care_of_address``.

    Sent to the previous FA by the new FA (on the mobile node's behalf) or by
    the mobile node itself, followed by an MN-FA authentication extension
    computed with the MN's key for the previous FA.  ``lifetime`` is how long
    the previous FA may keep state for the visitor; 0 (what mipro sends) tells
    it to forget the visitor now."""

    flags: BindingFlags = BindingFlags(0)
    lifetime: int = 0
    home_address: IPv4Address = IPv4Address(0)
    care_of_address: IPv4Address = IPv4Address(0)
    identification: int = 0
    vendor_id: int = DEFAULT_VENDOR_ID

    TYPE = EXPERIMENTAL_MESSAGE
    SUBTYPE = ExperimentalSubType.PREVIOUS_FA_NOTIFICATION
    LENGTH = 26  # octets after the Length octet, up to the extensions
    FIXED = 28

    @classmethod
    def build(cls, *, home_address: IPv4Address | str, care_of_address: IPv4Address | str,
              identification: int, lifetime: int = 0,
              flags: BindingFlags | int = BindingFlags.A,
              extensions: tuple[Extension, ...] | list[Extension] = (),
              vendor_id: int = DEFAULT_VENDOR_ID) -> BindingUpdate:
        return cls(tuple(extensions), (), b"", BindingFlags(flags), lifetime,
                   IPv4Address(home_address), IPv4Address(care_of_address), identification,
                   vendor_id)

    @classmethod
    def matches(cls, data: bytes) -> bool:
        """Whether ``data`` claims to be one (type 255, sub-type 1); decode() checks the rest."""
        return _matches(data, cls.SUBTYPE)

    def encode_fixed(self) -> bytes:
        return (_head(self.SUBTYPE, self.LENGTH, int(self.flags), self.vendor_id)
                + self.home_address.packed + self.care_of_address.packed
                + self.identification.to_bytes(8, "big")
                + self.lifetime.to_bytes(2, "big") + b"\x00\x00")

    def encode(self) -> bytes:
        return self.encode_fixed() + b"".join(e.encode() for e in self.extensions)

    @classmethod
    def decode(cls, data: bytes, ctx: DecodeContext = DEFAULT_CONTEXT) -> BindingUpdate:
        r = Reader(data)
        flags = _header(r, ctx, cls.SUBTYPE, cls.LENGTH, "previous-FA notification")
        if flags & 0x7F:
            raise DecodeError(3, f"reserved notification flags set (0x{flags:02x})")
        home = r.addr("home address")
        coa = r.addr("care-of address")
        ident = r.u64("identification")
        lifetime = r.u16("lifetime")
        if r.u16("reserved"):
            raise DecodeError(26, "reserved octets of a previous-FA notification are not zero")
        exts, offsets = decode_extensions(data, r.pos, ctx)
        return cls(exts, offsets, bytes(data), BindingFlags(flags), lifetime, home, coa, ident,
                   ctx.vendor_id)

    @property
    def authenticator(self) -> MnFaAuth | None:
        return self.find(MnFaAuth)

    def describe(self) -> dict[str, object]:
        return {"message": "binding-update", "type": self.TYPE, "sub_type": int(self.SUBTYPE),
                "vendor_id": self.vendor_id,
                "flags": "".join(f.name or "" for f in BindingFlags if self.flags & f),
                "lifetime": self.lifetime, "home_address": str(self.home_address),
                "care_of_address": str(self.care_of_address),
                "identification": f"0x{self.identification:016x}",
                "extensions": describe_value(self.extensions)}


class BindingStatus(enum.IntEnum):
    """The acknowledgement's Status: RFC 6098 §4.2's codes for a notification an FA denies,
    and RFC 4064 §5's experimental FA error code where none of those applies."""

    ACCEPTED = 0
    UNSPECIFIED = 64
    FAILED_AUTHENTICATION = 67  # no key for the home address, wrong SPI or authenticator
    IDENTIFICATION_MISMATCH = 69  # not newer than the registration it would cancel
    NO_SUCH_VISITOR = 127  # RFC 4064 EXP-FA-ERROR-CODE: no visitor with that home address


@dataclass(frozen=True)
class BindingAck(_ExtensionAccess):
    """Sub-type 2: the previous foreign agent's answer to a notification.

    It echoes the notification's home address, identification and Vendor/Org-ID.
    The previous FA may follow it with an MN-FA authentication extension made
    with the same mobile node's key (RFC 4064 §8 asks experimental messages to
    be authenticated); the new FA has no such key and only uses the answer to
    stop retransmitting, a mobile node that sent the notification itself can
    check it."""

    status: int
    home_address: IPv4Address
    identification: int
    vendor_id: int = DEFAULT_VENDOR_ID
    extensions: tuple[Extension, ...] = ()
    offsets: tuple[int, ...] = field(default=(), compare=False, repr=False)
    raw: bytes = field(default=b"", compare=False, repr=False)

    TYPE = EXPERIMENTAL_MESSAGE
    SUBTYPE = ExperimentalSubType.PREVIOUS_FA_ACK
    LENGTH = 18
    FIXED = SIZE = 20

    @classmethod
    def answering(cls, update: BindingUpdate, status: int,
                  extensions: tuple[Extension, ...] | list[Extension] = ()) -> BindingAck:
        """The acknowledgement of ``update``, with the same home address, identification and
        Vendor/Org-ID."""
        return cls(int(status), update.home_address, update.identification, update.vendor_id,
                   tuple(extensions))

    @classmethod
    def matches(cls, data: bytes) -> bool:
        """Whether ``data`` claims to be one (type 255, sub-type 2); decode() checks the rest."""
        return _matches(data, cls.SUBTYPE)

    def encode_fixed(self) -> bytes:
        return (_head(self.SUBTYPE, self.LENGTH, self.status, self.vendor_id)
                + self.home_address.packed + self.identification.to_bytes(8, "big"))

    def encode(self) -> bytes:
        return self.encode_fixed() + b"".join(e.encode() for e in self.extensions)

    @classmethod
    def decode(cls, data: bytes, ctx: DecodeContext = DEFAULT_CONTEXT) -> BindingAck:
        r = Reader(data)
        status = _header(r, ctx, cls.SUBTYPE, cls.LENGTH, "previous-FA acknowledgement")
        home = r.addr("home address")
        ident = r.u64("identification")
        exts, offsets = decode_extensions(data, r.pos, ctx)
        return cls(status, home, ident, ctx.vendor_id, exts, offsets, bytes(data))

    @property
    def authenticator(self) -> MnFaAuth | None:
        return self.find(MnFaAuth)

    def describe(self) -> dict[str, object]:
        try:
            name = BindingStatus(self.status).name.lower().replace("_", "-")
        except ValueError:
            name = "unknown"
        return {"message": "binding-ack", "type": self.TYPE, "sub_type": int(self.SUBTYPE),
                "vendor_id": self.vendor_id, "status": self.status, "status_name": name,
                "home_address": str(self.home_address),
                "identification": f"0x{self.identification:016x}",
                "extensions": describe_value(self.extensions)}


class ExperimentalMessage:
    """Decoder for UDP 434 type 255: mipro's sub-types, after checking the Vendor/Org-ID."""

    TYPE = EXPERIMENTAL_MESSAGE

    @classmethod
    def decode(cls, data: bytes, ctx: DecodeContext = DEFAULT_CONTEXT
               ) -> BindingUpdate | BindingAck:
        r = Reader(data)
        r.u8("type")
        r.u8("length")
        subtype = r.u8("sub-type")
        r.u8("flags or status")
        vendor = r.u32("Vendor/Org-ID")
        if vendor != ctx.vendor_id:
            raise DecodeError(4, f"experimental message of organization {vendor}, "
                                 f"not mipro's (vendor id {ctx.vendor_id})")
        sub = EXPERIMENTAL_MESSAGES.get(subtype)
        if sub is None:
            raise DecodeError(2, f"unknown mipro experimental message sub-type {subtype}")
        return cast(BindingUpdate | BindingAck, sub.decode(data, ctx))


for _cls in (BindingUpdate, BindingAck):
    EXPERIMENTAL_MESSAGES.add(_cls.SUBTYPE, _cls)
UDP434_MESSAGES.add(EXPERIMENTAL_MESSAGE, ExperimentalMessage)  # decode_udp434, mipro decode
