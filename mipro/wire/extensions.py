"""Registration extensions (RFC 5944 §1.9/§3.5, RFC 2794, 3012, 3115, 3519).

One class per extension type, registered by type code.  Decoding keeps every
extension's byte offset so authenticators are checked over the bytes that
arrived, never over a re-encoding.  Unknown types come back as RawExtension:
types 0-127 must make the engine answer with the RFC's reply code, types
128-255 are skipped and can be forwarded unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from .errors import DecodeError
from .reader import Reader
from .registry import EXTENSIONS, VENDOR_EXTENSIONS

DEFAULT_VENDOR_ID = 32473  # RFC 5612 documentation enterprise number


class ExtType:
    MN_HA_AUTH = 32
    FA_HA_AUTH = 34
    MN_FA_AUTH = 33  # RFC 5944 §3.5.3 (33, not 35)
    GEN_AUTH = 36  # RFC 3012, long format
    CVSE = 38  # RFC 3115, long format
    UDP_TUNNEL_REPLY = 44  # RFC 3519
    NAI = 131  # RFC 2794
    MN_FA_CHALLENGE = 132  # RFC 3012
    NVSE = 134  # RFC 3115
    UDP_TUNNEL_REQUEST = 144  # RFC 3519


#: types whose header is Type, Sub-Type/Reserved, 16-bit Length (RFC 5944 §1.10)
LONG_FORMAT = frozenset({ExtType.GEN_AUTH, ExtType.CVSE})


@dataclass(frozen=True)
class DecodeContext:
    """What a decoder needs beyond the bytes: the vendor id of mipro's own NVSEs."""

    vendor_id: int = DEFAULT_VENDOR_ID


DEFAULT_CONTEXT = DecodeContext()


class Extension:
    """Base of all extensions; subclasses are frozen dataclasses with a TYPE."""

    TYPE: ClassVar[int]
    NAME: ClassVar[str] = "extension"

    def body(self) -> bytes:
        raise NotImplementedError

    def encode(self) -> bytes:
        body = self.body()
        if len(body) > 255:
            raise ValueError(f"{self.NAME}: body of {len(body)} bytes exceeds 255")
        return bytes((self.TYPE, len(body))) + body

    @classmethod
    def decode_body(cls, r: Reader, ctx: DecodeContext) -> Extension:
        raise NotImplementedError

    @property
    def ext_type(self) -> int:
        return self.TYPE

    def describe(self) -> dict[str, object]:
        """Field-by-field view for `mipro decode`."""
        out: dict[str, object] = {"type": self.ext_type, "name": self.NAME}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[f.name] = describe_value(getattr(self, f.name))
        return out


def describe_value(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [v.describe() if hasattr(v, "describe") else describe_value(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if hasattr(value, "describe"):
        return value.describe()
    return str(value)


def register(cls: type[Extension]) -> type[Extension]:
    """Class decorator: the class decodes extensions of its TYPE (a duplicate raises)."""
    return EXTENSIONS.add(cls.TYPE, cls)


@dataclass(frozen=True)
class RawExtension(Extension):
    """An extension this codec does not know, kept byte for byte."""

    type: int
    data: bytes
    NAME: ClassVar[str] = "unknown"

    @property
    def ext_type(self) -> int:
        return self.type

    @property
    def skippable(self) -> bool:
        return self.type >= 128

    def encode(self) -> bytes:
        return bytes((self.type, len(self.data))) + self.data


@dataclass(frozen=True)
class AuthExtension(Extension):
    """MN-HA, FA-HA and MN-FA authentication: SPI then authenticator."""

    spi: int
    authenticator: bytes

    def body(self) -> bytes:
        return self.spi.to_bytes(4, "big") + self.authenticator

    @classmethod
    def decode_body(cls, r: Reader, ctx: DecodeContext) -> Extension:
        spi = r.u32("SPI")
        return cls(spi, r.rest())


@register
@dataclass(frozen=True)
class MnHaAuth(AuthExtension):
    TYPE: ClassVar[int] = ExtType.MN_HA_AUTH
    NAME: ClassVar[str] = "MN-HA authentication"


@register
@dataclass(frozen=True)
class FaHaAuth(AuthExtension):
    TYPE: ClassVar[int] = ExtType.FA_HA_AUTH
    NAME: ClassVar[str] = "FA-HA authentication"


@register
@dataclass(frozen=True)
class MnFaAuth(AuthExtension):
    TYPE: ClassVar[int] = ExtType.MN_FA_AUTH
    NAME: ClassVar[str] = "MN-FA authentication"


@register
@dataclass(frozen=True)
class GeneralizedAuth(Extension):
    """RFC 3012 Generalized Mobile IP Authentication; subtype 1 is MN-AAA."""

    subtype: int
    spi: int
    authenticator: bytes
    TYPE: ClassVar[int] = ExtType.GEN_AUTH
    NAME: ClassVar[str] = "Generalized MN-AAA authentication"
    MN_AAA: ClassVar[int] = 1

    def body(self) -> bytes:
        return self.spi.to_bytes(4, "big") + self.authenticator

    def encode(self) -> bytes:
        body = self.body()
        return bytes((self.TYPE, self.subtype)) + len(body).to_bytes(2, "big") + body

    @classmethod
    def decode_body(cls, r: Reader, ctx: DecodeContext, subtype: int = 0) -> Extension:
        spi = r.u32("SPI")
        return cls(subtype, spi, r.rest())


@register
@dataclass(frozen=True)
class Nai(Extension):
    """RFC 2794 Mobile Node NAI."""

    nai: str
    TYPE: ClassVar[int] = ExtType.NAI
    NAME: ClassVar[str] = "MN NAI"

    def body(self) -> bytes:
        return self.nai.encode()

    @classmethod
    def decode_body(cls, r: Reader, ctx: DecodeContext) -> Extension:
        at = r.pos
        raw = r.rest()
        if not raw:
            raise r.error("empty NAI", at)
        try:
            return cls(raw.decode())
        except UnicodeDecodeError as exc:
            raise r.error(f"NAI is not UTF-8 ({exc.reason})", at + exc.start) from None


@register
@dataclass(frozen=True)
class MnFaChallenge(Extension):
    """RFC 3012 MN-FA Challenge (also used by mipro's HA for NAPT traversal)."""

    challenge: bytes
    TYPE: ClassVar[int] = ExtType.MN_FA_CHALLENGE
    NAME: ClassVar[str] = "MN-FA challenge"

    def body(self) -> bytes:
        return self.challenge

    @classmethod
    def decode_body(cls, r: Reader, ctx: DecodeContext) -> Extension:
        at = r.pos
        value = r.rest()
        if len(value) < 4:
            raise r.error(f"challenge of {len(value)} bytes, RFC 3012 asks for at least 4", at)
        return cls(value)


@register
@dataclass(frozen=True)
class Cvse(Extension):
    """RFC 3115 Critical Vendor/Organization Specific Extension (long format)."""

    vendor_id: int
    vendor_type: int
    value: bytes
    TYPE: ClassVar[int] = ExtType.CVSE
    NAME: ClassVar[str] = "CVSE"

    def body(self) -> bytes:
        return self.vendor_id.to_bytes(4, "big") + self.vendor_type.to_bytes(2, "big") + self.value

    def encode(self) -> bytes:
        body = self.body()
        return bytes((self.TYPE, 0)) + len(body).to_bytes(2, "big") + body

    @classmethod
    def decode_body(cls, r: Reader, ctx: DecodeContext, subtype: int = 0) -> Extension:
        vendor_id = r.u32("CVSE Vendor/Org-ID")
        vendor_type = r.u16("CVSE vendor type")
        return cls(vendor_id, vendor_type, r.rest())


@register
@dataclass(frozen=True)
class Nvse(Extension):
    """RFC 3115 Normal Vendor/Organization Specific Extension (skippable)."""

    vendor_id: int
    vendor_type: int
    value: bytes
    TYPE: ClassVar[int] = ExtType.NVSE
    NAME: ClassVar[str] = "NVSE"

    def body(self) -> bytes:
        return (
            b"\x00\x00"
            + self.vendor_id.to_bytes(4, "big")
            + self.vendor_type.to_bytes(2, "big")
            + self.value
        )

    @classmethod
    def decode_body(cls, r: Reader, ctx: DecodeContext) -> Extension:
        r.u16("NVSE reserved")
        vendor_id = r.u32("NVSE Vendor/Org-ID")
        vendor_type = r.u16("NVSE vendor type")
        if vendor_id == ctx.vendor_id:  # mipro's own NVSE payloads (registered by vendor)
            sub = VENDOR_EXTENSIONS.get(vendor_type)
            if sub is not None:
                return sub.decode_value(r, vendor_id)
        return cls(vendor_id, vendor_type, r.rest())


class Encapsulation:
    IPIP = 4
    GRE = 47
    MINIMAL = 55


@register
@dataclass(frozen=True)
class UdpTunnelRequest(Extension):
    """RFC 3519 §3.1: MN or FA asks the HA for UDP tunnelling."""

    forced: bool = False  # F: use UDP tunnelling even without a NAT
    registration_required: bool = False  # R: FA requires registration through it
    encapsulation: int = Encapsulation.IPIP
    TYPE: ClassVar[int] = ExtType.UDP_TUNNEL_REQUEST
    NAME: ClassVar[str] = "UDP tunnel request"

    def body(self) -> bytes:
        flags = (0x80 if self.forced else 0) | (0x40 if self.registration_required else 0)
        return bytes((0, 0, flags, self.encapsulation, 0, 0))

    @classmethod
    def decode_body(cls, r: Reader, ctx: DecodeContext) -> Extension:
        subtype = r.u8("UDP tunnel request sub-type")
        if subtype != 0:
            raise r.error(f"unknown UDP tunnel request sub-type {subtype}", r.pos - 1)
        r.u8("reserved 1")
        flags = r.u8("UDP tunnel request flags")
        encaps = r.u8("encapsulation")
        r.u16("reserved 3")
        r.expect_end("UDP tunnel request")
        return cls(bool(flags & 0x80), bool(flags & 0x40), encaps)


@register
@dataclass(frozen=True)
class UdpTunnelReply(Extension):
    """RFC 3519 §3.2: the HA's answer; code 0 accepts, keepalive in seconds."""

    code: int = 0
    forced: bool = False
    keepalive: int = 110
    TYPE: ClassVar[int] = ExtType.UDP_TUNNEL_REPLY
    NAME: ClassVar[str] = "UDP tunnel reply"
    ACCEPTED: ClassVar[int] = 0
    DECLINED: ClassVar[int] = 64

    def body(self) -> bytes:
        flags = 0x8000 if self.forced else 0
        return (
            bytes((0, self.code)) + flags.to_bytes(2, "big") + self.keepalive.to_bytes(2, "big")
        )

    @classmethod
    def decode_body(cls, r: Reader, ctx: DecodeContext) -> Extension:
        subtype = r.u8("UDP tunnel reply sub-type")
        if subtype != 0:
            raise r.error(f"unknown UDP tunnel reply sub-type {subtype}", r.pos - 1)
        code = r.u8("UDP tunnel reply code")
        flags = r.u16("UDP tunnel reply flags")
        keepalive = r.u16("keepalive interval")
        r.expect_end("UDP tunnel reply")
        return cls(code, bool(flags & 0x8000), keepalive)


def decode_extensions(
    data: bytes, start: int, ctx: DecodeContext = DEFAULT_CONTEXT
) -> tuple[tuple[Extension, ...], tuple[int, ...]]:
    """Decode the extensions in data[start:]; returns them and their offsets.

    A short-format header is read by index (every request has one or two: the
    Reader's calls were a tenth of a renewal's decode); the long format and a header cut
    short go through the Reader, which names what is missing."""
    exts: list[Extension] = []
    offsets: list[int] = []
    end = len(data)
    at = start
    while at < end:
        etype = data[at]
        subtype = 0
        if etype in LONG_FORMAT or at + 2 > end:
            r = Reader(data, at + 1)
            if etype in LONG_FORMAT:
                subtype = r.u8("extension sub-type")
                length = r.u16("extension length")
            else:
                length = r.u8("extension length")
            pos = r.pos
        else:
            length, pos = data[at + 1], at + 2
        if length > end - pos:
            raise DecodeError(at, f"extension type {etype} claims {length} bytes, only "
                                  f"{end - pos} left")
        body = Reader(data, pos, pos + length)
        cls = EXTENSIONS.get(etype)
        if cls is None:
            ext: Extension = RawExtension(etype, body.rest())
        elif etype in LONG_FORMAT:
            ext = cls.decode_body(body, ctx, subtype)  # type: ignore[call-arg]
        else:
            ext = cls.decode_body(body, ctx)
        body.expect_end(f"extension type {etype}")
        exts.append(ext)
        offsets.append(at)
        at = pos + length
    return tuple(exts), tuple(offsets)


def header_length(ext_type: int) -> int:
    return 4 if ext_type in LONG_FORMAT else 2
