"""Registration Request/Reply (RFC 5944 §3.3/§3.4) and RFC 3519 tunnel data.

All three share UDP port 434; ``decode_udp434`` tells them apart by type.
Decoded messages keep the bytes they came from (``raw``) and each
extension's offset, so authenticators are verified over what arrived and a
relaying agent can forward a prefix of the message unchanged.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import TypeVar, cast

from .codes import code_name
from .errors import DecodeError
from .extensions import (
    DEFAULT_CONTEXT,
    DecodeContext,
    Extension,
    RawExtension,
    decode_extensions,
    describe_value,
    header_length,
)
from .reader import Reader
from .registry import UDP434_MESSAGES

E = TypeVar("E", bound=Extension)

REGISTRATION_REQUEST = 1
REGISTRATION_REPLY = 3
TUNNEL_DATA = 4


class RequestFlags(enum.IntFlag):
    """The flag byte of a Registration Request, most significant bit first."""

    S = 0x80  # simultaneous bindings
    B = 0x40  # broadcast datagrams
    D = 0x20  # decapsulation by mobile node (co-located care-of address)
    M = 0x10  # minimal encapsulation
    G = 0x08  # GRE encapsulation
    r = 0x04  # reserved, sent as zero
    T = 0x02  # reverse tunnelling requested (RFC 3024)
    x = 0x01  # reserved, sent as zero

    def letters(self) -> str:
        return "".join(f.name or "" for f in RequestFlags if f in self)


#: every flag byte's value, made once: building an IntFlag costs a microsecond
_FLAG_VALUES = tuple(RequestFlags(i) for i in range(256))
_REQUEST_FIXED = struct.Struct("!BBHIIIQ")
_REPLY_FIXED = struct.Struct("!BBHIIQ")


def _refuse_request(data: bytes) -> None:
    """Why ``data`` has no Registration Request's fixed part (DecodeError names the field)."""
    r = Reader(data)
    if r.u8("type") != REGISTRATION_REQUEST:
        raise DecodeError(0, "not a Registration Request")
    for read, what in ((r.u8, "flags"), (r.u16, "lifetime"), (r.addr, "home address"),
                       (r.addr, "home agent"), (r.addr, "care-of address"),
                       (r.u64, "identification")):
        read(what)
    raise AssertionError("a request's fixed part that reads whole")  # pragma: no cover


def _address(value: IPv4Address | str | int) -> IPv4Address:
    """``IPv4Address(x)`` of an IPv4Address formats and parses it again: not twice."""
    return value if type(value) is IPv4Address else IPv4Address(value)


@dataclass(frozen=True)
class Region:
    """A run of a message's extensions, e.g. what one authenticator covers."""

    extensions: tuple[Extension, ...] = ()

    def __len__(self) -> int:
        return len(self.extensions)

    def __iter__(self) -> Iterator[Extension]:
        return iter(self.extensions)

    def find(self, cls: type[E]) -> E | None:
        for ext in self.extensions:
            if isinstance(ext, cls):
                return ext
        return None

    def find_all(self, cls: type[E]) -> list[E]:
        return [e for e in self.extensions if isinstance(e, cls)]

    def unknown_critical(self) -> list[RawExtension]:
        return [e for e in self.extensions if isinstance(e, RawExtension) and not e.skippable]


class _ExtensionAccess:
    """Lookups over ``extensions``/``offsets``/``raw`` shared by every message with extensions."""

    extensions: tuple[Extension, ...]
    offsets: tuple[int, ...]
    raw: bytes

    def find(self, cls: type[E]) -> E | None:
        for ext in self.extensions:
            if isinstance(ext, cls):
                return ext
        return None

    def find_all(self, cls: type[E]) -> list[E]:
        return [e for e in self.extensions if isinstance(e, cls)]

    def index_of(self, ext: Extension) -> int:
        for i, e in enumerate(self.extensions):
            if e is ext:
                return i
        raise ValueError("extension not in this message")

    def unknown_critical(self) -> list[RawExtension]:
        """Unrecognised extensions of types 0-127: the RFC says deny, not skip."""
        return Region(self.extensions).unknown_critical()

    # --- authentication coverage (RFC 5944 §3.5) ----------------------------------------
    #
    # An authenticator covers the fixed part and every extension before it.  Engines
    # read a security-relevant extension only from the region of an authenticator they
    # verified, so bytes nobody signed never change state.

    def covered_by(self, auth: Extension) -> Region:
        """The extensions ``auth`` covers: all of those before it."""
        return Region(self.extensions[: self.index_of(auth)])

    def between(self, first: Extension, second: Extension) -> Region:
        """What ``second`` covers and ``first`` does not: the extensions between them
        (e.g. the foreign agent's part of a reply, after MN-HA and before FA-HA)."""
        lo, hi = self.index_of(first) + 1, self.index_of(second)
        return Region(self.extensions[lo:hi] if lo <= hi else ())

    def after(self, auth: Extension) -> Region:
        """The extensions after ``auth``: it covers none of them."""
        return Region(self.extensions[self.index_of(auth) + 1:])

    def signed_bytes(self, auth: Extension) -> bytes:
        """The bytes ``auth``'s authenticator is computed over, as they arrived."""
        return self.authenticated_bytes(self.index_of(auth))

    def encode(self) -> bytes:
        raise NotImplementedError

    def encode_fixed(self) -> bytes:
        raise NotImplementedError

    def wire(self) -> bytes:
        """The bytes this message travels as: what arrived, or a fresh encoding."""
        return self.raw or self.encode()

    def prefix_before(self, index: int) -> bytes:
        """Bytes of the fixed part and of extensions[:index], as they arrived."""
        if self.raw:
            return self.raw[: self.offsets[index]] if index < len(self.offsets) else self.raw
        head = self.encode_fixed()
        return head + b"".join(e.encode() for e in self.extensions[:index])

    def authenticated_bytes(self, index: int) -> bytes:
        """RFC 5944 §3.5.1: everything up to and including the SPI of extension ``index``."""
        ext = self.extensions[index]
        hdr = header_length(ext.ext_type)
        if self.raw:
            return self.raw[: self.offsets[index] + hdr + 4]
        return self.prefix_before(index) + ext.encode()[: hdr + 4]


@dataclass(frozen=True)
class _WithExtensions(_ExtensionAccess):
    extensions: tuple[Extension, ...]
    offsets: tuple[int, ...] = field(compare=False, repr=False)
    raw: bytes = field(compare=False, repr=False)


@dataclass(frozen=True)
class RegistrationRequest(_WithExtensions):
    flags: RequestFlags
    lifetime: int
    home_address: IPv4Address
    home_agent: IPv4Address
    care_of_address: IPv4Address
    identification: int

    TYPE = REGISTRATION_REQUEST
    FIXED = 24

    @classmethod
    def build(
        cls,
        *,
        home_address: IPv4Address | str,
        home_agent: IPv4Address | str,
        care_of_address: IPv4Address | str,
        identification: int,
        lifetime: int = 1800,
        flags: RequestFlags | int = 0,
        extensions: tuple[Extension, ...] | list[Extension] = (),
    ) -> RegistrationRequest:
        return cls(
            tuple(extensions), (), b"", RequestFlags(flags), lifetime, _address(home_address),
            _address(home_agent), _address(care_of_address), identification,
        )

    def encode_fixed(self) -> bytes:
        return (
            bytes((self.TYPE, int(self.flags)))
            + self.lifetime.to_bytes(2, "big")
            + self.home_address.packed
            + self.home_agent.packed
            + self.care_of_address.packed
            + self.identification.to_bytes(8, "big")
        )

    def encode(self) -> bytes:
        return self.encode_fixed() + b"".join(e.encode() for e in self.extensions)

    @classmethod
    def decode(cls, data: bytes, ctx: DecodeContext = DEFAULT_CONTEXT) -> RegistrationRequest:
        if len(data) < cls.FIXED or data[0] != cls.TYPE:
            _refuse_request(data)
        _, flags, lifetime, home, ha, coa, ident = _REQUEST_FIXED.unpack_from(data)
        exts, offsets = decode_extensions(data, cls.FIXED, ctx)
        return cls(exts, offsets, bytes(data), _FLAG_VALUES[flags], lifetime, IPv4Address(home),
                   IPv4Address(ha), IPv4Address(coa), ident)

    def describe(self) -> dict[str, object]:
        return {
            "message": "registration-request",
            "type": self.TYPE,
            "flags": self.flags.letters(),
            "lifetime": self.lifetime,
            "home_address": str(self.home_address),
            "home_agent": str(self.home_agent),
            "care_of_address": str(self.care_of_address),
            "identification": f"0x{self.identification:016x}",
            "extensions": describe_value(self.extensions),
        }


@dataclass(frozen=True)
class RegistrationReply(_WithExtensions):
    code: int
    lifetime: int
    home_address: IPv4Address
    home_agent: IPv4Address
    identification: int

    TYPE = REGISTRATION_REPLY
    FIXED = 20

    @classmethod
    def build(
        cls,
        *,
        code: int,
        home_address: IPv4Address | str,
        home_agent: IPv4Address | str,
        identification: int,
        lifetime: int = 0,
        extensions: tuple[Extension, ...] | list[Extension] = (),
    ) -> RegistrationReply:
        return cls(tuple(extensions), (), b"", int(code), lifetime, _address(home_address),
                   _address(home_agent), identification)

    @classmethod
    def pack(cls, *, code: int, lifetime: int, home_address: IPv4Address,
             home_agent: IPv4Address, identification: int) -> bytes:
        """``build(...).encode()`` of a reply without extensions, without building it (a
        home agent's every acceptance)."""
        return _REPLY_FIXED.pack(cls.TYPE, code, lifetime, int(home_address), int(home_agent),
                                 identification)

    def encode_fixed(self) -> bytes:
        return _REPLY_FIXED.pack(self.TYPE, self.code, self.lifetime, int(self.home_address),
                                 int(self.home_agent), self.identification)

    def encode(self) -> bytes:
        fixed = self.encode_fixed()  # a home agent's every answer: most have no extension
        return fixed + b"".join(e.encode() for e in self.extensions) if self.extensions \
            else fixed

    @classmethod
    def decode(cls, data: bytes, ctx: DecodeContext = DEFAULT_CONTEXT) -> RegistrationReply:
        r = Reader(data)
        if r.u8("type") != cls.TYPE:
            raise DecodeError(0, "not a Registration Reply")
        code = r.u8("code")
        lifetime = r.u16("lifetime")
        home = r.addr("home address")
        ha = r.addr("home agent")
        ident = r.u64("identification")
        exts, offsets = decode_extensions(data, r.pos, ctx)
        return cls(exts, offsets, bytes(data), code, lifetime, home, ha, ident)

    @property
    def accepted(self) -> bool:
        return self.code in (0, 1)

    def describe(self) -> dict[str, object]:
        return {
            "message": "registration-reply",
            "type": self.TYPE,
            "code": self.code,
            "code_name": code_name(self.code),
            "lifetime": self.lifetime,
            "home_address": str(self.home_address),
            "home_agent": str(self.home_agent),
            "identification": f"0x{self.identification:016x}",
            "extensions": describe_value(self.extensions),
        }


@dataclass(frozen=True)
class TunnelData:
    """RFC 3519 §3.3 tunnel data message: a 4-byte header, then the inner packet."""

    next_header: int
    payload: bytes = field(repr=False)

    TYPE = TUNNEL_DATA
    NEXT_HEADERS = (4, 47, 55)  # IPv4, GRE, minimal encapsulation

    def encode(self) -> bytes:
        return bytes((self.TYPE, self.next_header, 0, 0)) + self.payload

    @classmethod
    def decode(cls, data: bytes, ctx: DecodeContext = DEFAULT_CONTEXT) -> TunnelData:
        r = Reader(data)
        if r.u8("type") != cls.TYPE:
            raise DecodeError(0, "not a tunnel data message")
        nh = r.u8("next header")
        if nh not in cls.NEXT_HEADERS:
            raise DecodeError(1, f"unknown tunnel next header {nh}")
        r.u16("reserved")
        payload = r.rest()
        if not payload:
            raise DecodeError(4, "tunnel data message without a payload")
        if nh == 4:
            _check_ipv4(payload, 4)
        return cls(nh, payload)

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {
            "message": "tunnel-data",
            "type": self.TYPE,
            "next_header": self.next_header,
            "payload_length": len(self.payload),
        }
        if self.next_header == 4:
            out["inner_source"] = str(IPv4Address(self.payload[12:16]))
            out["inner_destination"] = str(IPv4Address(self.payload[16:20]))
        return out


def _check_ipv4(packet: bytes, base: int) -> None:
    """An inner IPv4 header must be whole and agree with its own length fields."""
    if len(packet) < 20:
        raise DecodeError(base, f"inner IPv4 packet of {len(packet)} bytes is shorter than 20")
    if packet[0] >> 4 != 4:
        raise DecodeError(base, f"inner packet is IP version {packet[0] >> 4}, not 4")
    ihl = (packet[0] & 0x0F) * 4
    total = int.from_bytes(packet[2:4], "big")
    if ihl < 20 or total < ihl or total > len(packet):
        raise DecodeError(base + 2, f"inner IPv4 lengths inconsistent (ihl={ihl}, total={total}, "
                                    f"have {len(packet)})")


Udp434Message = RegistrationRequest | RegistrationReply | TunnelData

for _cls in (RegistrationRequest, RegistrationReply, TunnelData):
    UDP434_MESSAGES.add(_cls.TYPE, _cls)


def decode_udp434(data: bytes, ctx: DecodeContext = DEFAULT_CONTEXT) -> Udp434Message:
    """Decode one UDP port 434 payload, whatever its message type."""
    if not data:
        raise DecodeError(0, "empty datagram")
    cls = UDP434_MESSAGES.get(data[0])
    if cls is None:
        raise DecodeError(0, f"unknown mobile IP message type {data[0]}")
    return cast(Udp434Message, cls.decode(data, ctx))
