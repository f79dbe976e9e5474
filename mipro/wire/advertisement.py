"""Agent Advertisement and Agent Solicitation (RFC 5944 §2.1, RFC 1256).

An Agent Advertisement is an ICMP Router Advertisement (type 9) followed by
the Mobility Agent Advertisement extension (16), optionally Prefix-Lengths
(19), One-byte Padding (0) and the RFC 3012 challenge (24).  These ICMP
extension numbers are a space of their own, apart from registration ones.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import ClassVar

from .errors import DecodeError
from .extensions import Extension, RawExtension, describe_value
from .reader import Reader
from .registry import ADVERT_EXTENSIONS

ICMP_ROUTER_ADVERTISEMENT = 9
ICMP_ROUTER_SOLICITATION = 10


def icmp_checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _with_checksum(msg: bytes) -> bytes:
    csum = icmp_checksum(msg)
    return msg[:2] + csum.to_bytes(2, "big") + msg[4:]


def _verify_checksum(data: bytes) -> None:
    if icmp_checksum(data) != 0:
        raise DecodeError(2, "bad ICMP checksum")


class AgentFlags(enum.IntFlag):
    """Mobility Agent Advertisement flags (16 bits, most significant first)."""

    R = 0x8000  # registration required
    B = 0x4000  # busy
    H = 0x2000  # home agent
    F = 0x1000  # foreign agent
    M = 0x0800  # minimal encapsulation
    G = 0x0400  # GRE encapsulation
    r = 0x0200  # reserved (was VJ compression)
    T = 0x0100  # reverse tunnelling supported (RFC 3024)
    U = 0x0080  # UDP tunnelling supported (RFC 3519)
    X = 0x0040  # registration revocation supported (RFC 3543)
    I = 0x0020  # noqa: E741  (RFC 3543 I bit)

    def letters(self) -> str:
        return "".join(f.name or "" for f in AgentFlags if f in self)


@dataclass(frozen=True)
class MobilityAgentExtension(Extension):
    sequence: int
    lifetime: int
    flags: AgentFlags
    care_of_addresses: tuple[IPv4Address, ...] = ()
    TYPE: ClassVar[int] = 16
    NAME: ClassVar[str] = "mobility agent advertisement"

    def body(self) -> bytes:
        return (
            self.sequence.to_bytes(2, "big")
            + self.lifetime.to_bytes(2, "big")
            + int(self.flags).to_bytes(2, "big")
            + b"".join(a.packed for a in self.care_of_addresses)
        )

    @classmethod
    def decode_body(cls, r: Reader, ctx: object = None) -> Extension:
        seq = r.u16("sequence number")
        lifetime = r.u16("registration lifetime")
        flags = AgentFlags(r.u16("agent flags"))
        if r.remaining() % 4:
            raise r.error(f"care-of address list of {r.remaining()} bytes is not a multiple of 4")
        coas = []
        while r.remaining():
            coas.append(r.addr("care-of address"))
        return cls(seq, lifetime, flags, tuple(coas))

    def describe(self) -> dict[str, object]:
        return {
            "type": self.TYPE, "name": self.NAME, "sequence": self.sequence,
            "lifetime": self.lifetime, "flags": self.flags.letters(),
            "care_of_addresses": [str(a) for a in self.care_of_addresses],
        }


@dataclass(frozen=True)
class PrefixLengthsExtension(Extension):
    prefix_lengths: tuple[int, ...]
    TYPE: ClassVar[int] = 19
    NAME: ClassVar[str] = "prefix-lengths"

    def body(self) -> bytes:
        return bytes(self.prefix_lengths)

    @classmethod
    def decode_body(cls, r: Reader, ctx: object = None) -> Extension:
        at = r.pos
        values = tuple(r.rest())
        for i, v in enumerate(values):
            if v > 32:
                raise r.error(f"prefix length {v} > 32", at + i)
        return cls(values)


@dataclass(frozen=True)
class PaddingExtension(Extension):
    """One-byte padding: a lone zero byte, no length."""

    TYPE: ClassVar[int] = 0
    NAME: ClassVar[str] = "one-byte padding"

    def encode(self) -> bytes:
        return b"\x00"


@dataclass(frozen=True)
class ChallengeExtension(Extension):
    """RFC 3012 §2.1 challenge carried in agent advertisements."""

    challenge: bytes
    TYPE: ClassVar[int] = 24
    NAME: ClassVar[str] = "advertisement challenge"

    def body(self) -> bytes:
        return self.challenge

    @classmethod
    def decode_body(cls, r: Reader, ctx: object = None) -> Extension:
        value = r.rest()
        if len(value) < 4:
            raise r.error(f"challenge of {len(value)} bytes, at least 4 expected")
        return cls(value)


for _cls in (MobilityAgentExtension, PrefixLengthsExtension, ChallengeExtension):
    ADVERT_EXTENSIONS.add(_cls.TYPE, _cls)


def _decode_advert_extensions(data: bytes, start: int) -> tuple[Extension, ...]:
    r = Reader(data, start)
    exts: list[Extension] = []
    while r.remaining():
        at = r.pos
        etype = r.u8("extension type")
        if etype == 0:
            exts.append(PaddingExtension())
            continue
        length = r.u8("extension length")
        if length > r.remaining():
            raise r.error(f"extension type {etype} claims {length} bytes, "
                          f"only {r.remaining()} left", at)
        body = Reader(data, r.pos, r.pos + length)
        r.pos += length
        cls = ADVERT_EXTENSIONS.get(etype)
        ext = RawExtension(etype, body.rest()) if cls is None else cls.decode_body(body)
        body.expect_end(f"extension type {etype}")
        exts.append(ext)
    return tuple(exts)


@dataclass(frozen=True)
class AgentAdvertisement:
    """ICMP Router Advertisement carrying mobility agent extensions."""

    lifetime: int
    routers: tuple[tuple[IPv4Address, int], ...]
    extensions: tuple[Extension, ...]
    code: int = 0  # 16: the agent does not route common traffic
    TYPE: ClassVar[int] = ICMP_ROUTER_ADVERTISEMENT

    @property
    def mobility(self) -> MobilityAgentExtension | None:
        for e in self.extensions:
            if isinstance(e, MobilityAgentExtension):
                return e
        return None

    @property
    def prefix_lengths(self) -> tuple[int, ...]:
        for e in self.extensions:
            if isinstance(e, PrefixLengthsExtension):
                return e.prefix_lengths
        return ()

    def unknown_critical(self) -> list[RawExtension]:
        return [e for e in self.extensions if isinstance(e, RawExtension) and not e.skippable]

    def encode(self) -> bytes:
        head = bytes((self.TYPE, self.code, 0, 0, len(self.routers), 2)) + self.lifetime.to_bytes(
            2, "big"
        )
        addrs = b"".join(a.packed + (p & 0xFFFFFFFF).to_bytes(4, "big") for a, p in self.routers)
        return _with_checksum(head + addrs + b"".join(e.encode() for e in self.extensions))

    @classmethod
    def decode(cls, data: bytes) -> AgentAdvertisement:
        r = Reader(data)
        if r.u8("ICMP type") != cls.TYPE:
            raise DecodeError(0, "not an ICMP router advertisement")
        code = r.u8("ICMP code")
        if code not in (0, 16):
            raise DecodeError(1, f"router advertisement code {code} is neither 0 nor 16")
        r.u16("checksum")
        count = r.u8("number of addresses")
        entry = r.u8("address entry size")
        if entry < 2:
            raise DecodeError(5, f"address entry size {entry} < 2")
        lifetime = r.u16("advertisement lifetime")
        routers = []
        for _ in range(count):
            addr = r.addr("router address")
            pref = int.from_bytes(r.take(4, "preference level"), "big", signed=True)
            r.take(4 * (entry - 2), "address entry padding")
            routers.append((addr, pref))
        exts = _decode_advert_extensions(data, r.pos)
        _verify_checksum(data)
        adv = cls(lifetime, tuple(routers), exts, code)
        if adv.mobility is None:
            raise DecodeError(r.pos, "router advertisement without a mobility agent extension")
        return adv

    def describe(self) -> dict[str, object]:
        return {
            "message": "agent-advertisement",
            "icmp_type": self.TYPE,
            "icmp_code": self.code,
            "lifetime": self.lifetime,
            "routers": [{"address": str(a), "preference": p} for a, p in self.routers],
            "extensions": describe_value(self.extensions),
        }


@dataclass(frozen=True)
class AgentSolicitation:
    """ICMP Router Solicitation (type 10) as a mobile node sends it."""

    TYPE: ClassVar[int] = ICMP_ROUTER_SOLICITATION

    def encode(self) -> bytes:
        return _with_checksum(bytes((self.TYPE, 0, 0, 0, 0, 0, 0, 0)))

    @classmethod
    def decode(cls, data: bytes) -> AgentSolicitation:
        r = Reader(data)
        if r.u8("ICMP type") != cls.TYPE:
            raise DecodeError(0, "not an ICMP router solicitation")
        if r.u8("ICMP code") != 0:
            raise DecodeError(1, "router solicitation code is not 0")
        r.u16("checksum")
        r.u32("reserved")
        r.expect_end("router solicitation")
        _verify_checksum(data)
        return cls()

    def describe(self) -> dict[str, object]:
        return {"message": "agent-solicitation", "icmp_type": self.TYPE}


IcmpMessage = AgentAdvertisement | AgentSolicitation


def decode_icmp(data: bytes) -> IcmpMessage:
    """Decode an ICMP router advertisement (agent advertisement) or solicitation."""
    if not data:
        raise DecodeError(0, "empty ICMP message")
    if data[0] == ICMP_ROUTER_ADVERTISEMENT:
        return AgentAdvertisement.decode(data)
    if data[0] == ICMP_ROUTER_SOLICITATION:
        return AgentSolicitation.decode(data)
    raise DecodeError(0, f"ICMP type {data[0]} is not an agent advertisement or solicitation")
