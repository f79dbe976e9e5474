"""Binding Update and Binding Acknowledge (after draft-ietf-mobileip-optim-11 §4.3-4.4).

mipro uses them for one thing only: the previous-foreign-agent notification.
When a mobile node moves from FA1 to FA2 it asks FA2 (in a notification NVSE
of its registration request) to tell FA1; FA2 sends FA1 a Binding Update
carrying the MN's own MN-FA1 authenticator, and FA1 drops the visitor at once
instead of when its lifetime runs out.  Layouts in docs/protocol.md.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from .errors import DecodeError
from .extensions import (
    DEFAULT_CONTEXT,
    DecodeContext,
    Extension,
    MnFaAuth,
    decode_extensions,
    describe_value,
)
from .messages import _BY_TYPE, _WithExtensions
from .reader import Reader

BINDING_UPDATE = 18
BINDING_ACK = 19


class BindingFlags(enum.IntFlag):
    A = 0x80  # acknowledge requested
    I = 0x40  # noqa: E741 - the draft's name: identification present (mipro always sets it)
    M = 0x20  # minimal encapsulation
    G = 0x10  # GRE


@dataclass(frozen=True)
class BindingUpdate(_WithExtensions):
    """Type 18: the mobile node at ``home_address`` is now at ``care_of_address``.

    A lifetime of 0 tells the previous foreign agent to forget the visitor."""

    flags: BindingFlags = BindingFlags(0)
    lifetime: int = 0
    home_address: IPv4Address = IPv4Address(0)
    care_of_address: IPv4Address = IPv4Address(0)
    identification: int = 0

    TYPE = BINDING_UPDATE
    FIXED = 20

    @classmethod
    def build(cls, *, home_address: IPv4Address | str, care_of_address: IPv4Address | str,
              identification: int, lifetime: int = 0,
              flags: BindingFlags | int = BindingFlags.A | BindingFlags.I,
              extensions: tuple[Extension, ...] | list[Extension] = ()) -> BindingUpdate:
        return cls(tuple(extensions), (), b"", BindingFlags(flags), lifetime,
                   IPv4Address(home_address), IPv4Address(care_of_address), identification)

    def encode_fixed(self) -> bytes:
        return (bytes((self.TYPE, int(self.flags))) + self.lifetime.to_bytes(2, "big")
                + self.home_address.packed + self.care_of_address.packed
                + self.identification.to_bytes(8, "big"))

    def encode(self) -> bytes:
        return self.encode_fixed() + b"".join(e.encode() for e in self.extensions)

    @classmethod
    def decode(cls, data: bytes, ctx: DecodeContext = DEFAULT_CONTEXT) -> BindingUpdate:
        r = Reader(data)
        if r.u8("type") != cls.TYPE:
            raise DecodeError(0, "not a Binding Update")
        flags = r.u8("flags")
        if flags & 0x0F:
            raise DecodeError(1, "reserved Binding Update flags set")
        lifetime = r.u16("lifetime")
        home = r.addr("home address")
        coa = r.addr("care-of address")
        ident = r.u64("identification")
        exts, offsets = decode_extensions(data, r.pos, ctx)
        return cls(exts, offsets, bytes(data), BindingFlags(flags), lifetime, home, coa, ident)

    @property
    def authenticator(self) -> MnFaAuth | None:
        return self.find(MnFaAuth)

    def describe(self) -> dict[str, object]:
        return {"message": "binding-update", "type": self.TYPE,
                "flags": "".join(f.name or "" for f in BindingFlags if self.flags & f),
                "lifetime": self.lifetime, "home_address": str(self.home_address),
                "care_of_address": str(self.care_of_address),
                "identification": f"0x{self.identification:016x}",
                "extensions": describe_value(self.extensions)}


class BindingStatus(enum.IntEnum):
    ACCEPTED = 0
    UNSPECIFIED = 128
    FAILED_AUTHENTICATION = 131  # as the registration codes: no key, wrong SPI or authenticator
    IDENTIFICATION_MISMATCH = 133  # not newer than the registration it would cancel
    POORLY_FORMED = 134
    NO_SUCH_VISITOR = 140


@dataclass(frozen=True)
class BindingAck:
    """Type 19: the previous foreign agent's answer to a Binding Update."""

    status: int
    home_address: IPv4Address
    identification: int
    raw: bytes = field(default=b"", compare=False, repr=False)

    TYPE = BINDING_ACK
    SIZE = 16

    def encode(self) -> bytes:
        return (bytes((self.TYPE, 0, 0, self.status)) + self.home_address.packed
                + self.identification.to_bytes(8, "big"))

    @classmethod
    def decode(cls, data: bytes, ctx: DecodeContext = DEFAULT_CONTEXT) -> BindingAck:
        r = Reader(data)
        if r.u8("type") != cls.TYPE:
            raise DecodeError(0, "not a Binding Acknowledge")
        r.u16("reserved")
        status = r.u8("status")
        home = r.addr("home address")
        ident = r.u64("identification")
        if r.remaining():
            raise DecodeError(r.pos, f"{r.remaining()} bytes after a Binding Acknowledge")
        return cls(status, home, ident, bytes(data))

    def describe(self) -> dict[str, object]:
        try:
            name = BindingStatus(self.status).name.lower().replace("_", "-")
        except ValueError:
            name = "unknown"
        return {"message": "binding-ack", "type": self.TYPE, "status": self.status,
                "status_name": name, "home_address": str(self.home_address),
                "identification": f"0x{self.identification:016x}"}


_BY_TYPE[BINDING_UPDATE] = BindingUpdate  # so that decode_udp434 (and `mipro decode`) knows them
_BY_TYPE[BINDING_ACK] = BindingAck
