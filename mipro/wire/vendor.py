"""mipro's own NVSE payloads (seed Figs. 6b, 6c, 15b).

All three travel in an RFC 3115 NVSE (type 134) whose Vendor/Org-ID is the
configured one (default 32473).  The byte layouts are in docs/protocol.md.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, ClassVar, Protocol

from .extensions import DEFAULT_VENDOR_ID, Extension, ExtType
from .reader import Reader
from .registry import VENDOR_EXTENSIONS


class VendorType:
    STATIC_ROUTES = 1
    FILTER_RULES = 2
    CERTIFICATE = 3
    PREVIOUS_FA_NOTIFICATION = 4
    HOME_ADDRESS_IN_USE = 5


ANY = IPv4Network("0.0.0.0/0")


def nvse_header(vendor_id: int, vendor_type: int) -> bytes:
    """What every mipro NVSE value starts with (RFC 3115): reserved, Vendor/Org-ID, type."""
    return b"\x00\x00" + vendor_id.to_bytes(4, "big") + vendor_type.to_bytes(2, "big")


def _network(r: Reader, addr: IPv4Address, plen: int, what: str, at: int) -> IPv4Network:
    if plen > 32:
        raise r.error(f"{what} prefix length {plen} > 32", at)
    try:
        return IPv4Network((addr, plen))
    except ValueError:
        raise r.error(f"{what} {addr}/{plen} has host bits set", at) from None


@dataclass(frozen=True)
class StaticRoute:
    """One Fig. 6b entry: destination prefix, router, cost.

    ``via_tunnel`` says the router is the home agent (send through the mobile
    IP tunnel); otherwise the route is local to the visited network and
    ``router`` is the next hop there, 0.0.0.0 meaning directly connected.
    """

    destination: IPv4Network
    router: IPv4Address = IPv4Address(0)
    cost: int = 0
    via_tunnel: bool = False
    SIZE: ClassVar[int] = 12
    TUNNEL: ClassVar[int] = 0x80

    def encode(self) -> bytes:
        return (
            self.destination.network_address.packed
            + bytes((self.destination.prefixlen, self.TUNNEL if self.via_tunnel else 0))
            + self.cost.to_bytes(2, "big")
            + self.router.packed
        )

    @classmethod
    def decode(cls, r: Reader) -> StaticRoute:
        at = r.pos
        dest = r.addr("route destination")
        plen = r.u8("route prefix length")
        flags = r.u8("route flags")
        cost = r.u16("route cost")
        router = r.addr("route router")
        return cls(_network(r, dest, plen, "route destination", at), router, cost,
                   bool(flags & cls.TUNNEL))

    def describe(self) -> dict[str, object]:
        return {
            "destination": str(self.destination),
            "router": str(self.router),
            "cost": self.cost,
            "via": "tunnel" if self.via_tunnel else "local",
        }


class Verdict(enum.IntEnum):
    ACCEPT = 0
    DENY = 1


@dataclass(frozen=True)
class FilterRule:
    """One Fig. 6c entry: source, destination, protocol descriptor, action.

    Ports are inclusive ranges; (0, 65535) means any.  ``log`` asks for the
    match to be logged, ``nat`` for source NAT to ``nat_address`` (0.0.0.0:
    the applying agent picks its own address), ``both_directions`` for the
    rule to match with the addresses swapped too (same ports: the same service
    the other way).
    """

    source: IPv4Network = ANY
    destination: IPv4Network = ANY
    protocol: int = 0
    verdict: Verdict = Verdict.ACCEPT
    log: bool = False
    nat: bool = False
    both_directions: bool = False
    sport: tuple[int, int] = (0, 65535)
    dport: tuple[int, int] = (0, 65535)
    nat_address: IPv4Address = IPv4Address(0)
    SIZE: ClassVar[int] = 24
    LOG: ClassVar[int] = 0x10
    NAT: ClassVar[int] = 0x20
    BOTH: ClassVar[int] = 0x40

    def action_byte(self) -> int:
        return (
            int(self.verdict)
            | (self.LOG if self.log else 0)
            | (self.NAT if self.nat else 0)
            | (self.BOTH if self.both_directions else 0)
        )

    def encode(self) -> bytes:
        return (
            self.source.network_address.packed
            + bytes((self.source.prefixlen, self.destination.prefixlen, self.protocol,
                     self.action_byte()))
            + self.destination.network_address.packed
            + b"".join(p.to_bytes(2, "big") for p in (*self.sport, *self.dport))
            + self.nat_address.packed
        )

    @classmethod
    def decode(cls, r: Reader) -> FilterRule:
        at = r.pos
        src = r.addr("filter source")
        src_plen = r.u8("filter source prefix length")
        dst_plen = r.u8("filter destination prefix length")
        proto = r.u8("filter protocol")
        action_at = r.pos
        action = r.u8("filter action")
        dst = r.addr("filter destination")
        ports_at = r.pos
        ports = [r.u16("filter port") for _ in range(4)]
        nat_address = r.addr("filter NAT address")
        verdict = action & 0x0F
        if verdict not in (0, 1) or action & 0x80:
            raise r.error(f"unknown filter action 0x{action:02x}", action_at)
        if ports[0] > ports[1] or ports[2] > ports[3]:
            raise r.error(f"empty port range {ports}", ports_at)
        nat = bool(action & cls.NAT)
        if not nat and nat_address != IPv4Address(0):
            raise r.error("NAT address set without the NAT action", ports_at + 8)
        return cls(
            _network(r, src, src_plen, "filter source", at),
            _network(r, dst, dst_plen, "filter destination", at + 8),
            proto,
            Verdict(verdict),
            bool(action & cls.LOG),
            nat,
            bool(action & cls.BOTH),
            (ports[0], ports[1]),
            (ports[2], ports[3]),
            nat_address,
        )

    def describe(self) -> dict[str, object]:
        return {
            "source": str(self.source),
            "destination": str(self.destination),
            "protocol": self.protocol,
            "sport": list(self.sport),
            "dport": list(self.dport),
            "action": self.verdict.name.lower(),
            "log": self.log,
            "nat": str(self.nat_address) if self.nat else None,
            "both_directions": self.both_directions,
        }


class Entry(Protocol):
    """One fixed-size entry of an entry-list NVSE (a route, a filter rule)."""

    SIZE: ClassVar[int]

    def encode(self) -> bytes: ...


class _EntryList(Extension):
    """An NVSE whose value is a packed list of fixed-size entries."""

    TYPE: ClassVar[int] = ExtType.NVSE
    VENDOR_TYPE: ClassVar[int]
    ENTRY: ClassVar[type[StaticRoute] | type[FilterRule]]
    entries: tuple[Entry, ...]
    vendor_id: int

    if TYPE_CHECKING:  # the dataclass subclasses make it
        def __init__(self, entries: tuple[Entry, ...], vendor_id: int = ...) -> None: ...

    def body(self) -> bytes:
        return (
            nvse_header(self.vendor_id, self.VENDOR_TYPE)
            + b"".join(e.encode() for e in self.entries)
        )

    @classmethod
    def decode_value(cls, r: Reader, vendor_id: int) -> Extension:
        size = cls.ENTRY.SIZE
        if r.remaining() % size:
            raise r.error(f"{cls.NAME} value of {r.remaining()} bytes is not a multiple of {size}")
        entries: list[Entry] = []
        while r.remaining():
            entries.append(cls.ENTRY.decode(r))
        return cls(tuple(entries), vendor_id)

    @classmethod
    def max_entries(cls) -> int:
        return (255 - 8) // cls.ENTRY.SIZE

    @classmethod
    def chunked(cls, entries: Iterable[Entry],
                vendor_id: int = DEFAULT_VENDOR_ID) -> list[Extension]:
        """Split a list into as many extensions as the 255-byte length allows."""
        n = cls.max_entries()
        items = tuple(entries)
        return [cls(items[i : i + n], vendor_id) for i in range(0, len(items), n)]


@dataclass(frozen=True)
class StaticRoutesExtension(_EntryList):
    entries: tuple[StaticRoute, ...]
    vendor_id: int = DEFAULT_VENDOR_ID
    VENDOR_TYPE: ClassVar[int] = VendorType.STATIC_ROUTES
    ENTRY: ClassVar[type] = StaticRoute
    NAME: ClassVar[str] = "mipro static routes (NVSE)"


@dataclass(frozen=True)
class FilterRulesExtension(_EntryList):
    entries: tuple[FilterRule, ...]
    vendor_id: int = DEFAULT_VENDOR_ID
    VENDOR_TYPE: ClassVar[int] = VendorType.FILTER_RULES
    ENTRY: ClassVar[type] = FilterRule
    NAME: ClassVar[str] = "mipro filter rules (NVSE)"


@dataclass(frozen=True)
class CertificateExtension(Extension):
    """Seed Fig. 15b: a DER X.509 certificate fragment.

    A certificate rarely fits in 247 bytes, so it travels as numbered
    fragments: value = index (1 byte), count (1 byte), DER bytes.
    """

    index: int
    count: int
    der: bytes
    vendor_id: int = DEFAULT_VENDOR_ID
    TYPE: ClassVar[int] = ExtType.NVSE
    VENDOR_TYPE: ClassVar[int] = VendorType.CERTIFICATE
    NAME: ClassVar[str] = "mipro X.509 certificate (NVSE)"

    def body(self) -> bytes:
        return (
            nvse_header(self.vendor_id, self.VENDOR_TYPE)
            + bytes((self.index, self.count))
            + self.der
        )

    @classmethod
    def decode_value(cls, r: Reader, vendor_id: int) -> Extension:
        at = r.pos
        index = r.u8("certificate fragment index")
        count = r.u8("certificate fragment count")
        if not index < count:
            raise r.error(f"certificate fragment {index} of {count}", at)
        return cls(index, count, r.rest(), vendor_id)

    @classmethod
    def fragments(cls, der: bytes, vendor_id: int = DEFAULT_VENDOR_ID) -> list[Extension]:
        size = 255 - 10
        parts = [der[i : i + size] for i in range(0, len(der), size)] or [b""]
        if len(parts) > 255:
            raise ValueError("certificate too large for 255 fragments")
        return [cls(i, len(parts), p, vendor_id) for i, p in enumerate(parts)]

    def describe(self) -> dict[str, object]:
        return {"type": self.TYPE, "name": self.NAME, "vendor_id": self.vendor_id,
                "index": self.index, "count": self.count, "der": self.der.hex()}


@dataclass(frozen=True)
class PreviousFaNotification(Extension):
    """In a registration request, after the MN-HA authenticator: "tell my previous FA".

    Value: previous FA's address (4), cache lifetime (2), reserved (2), then the
    SPI (4) and authenticator the mobile node computed, with its key for the
    previous FA, over the notification the new FA is to send (binding.py: RFC 4064
    experimental message 255, sub-type 1): flag A, this NVSE's Vendor/Org-ID, home
    address, the new care-of address, the request's identification, lifetime =
    cache lifetime, and the MN-FA authentication extension's type, length and SPI
    (RFC 5944 §3.5.1 coverage).  The new FA cannot forge or alter it.
    """

    previous_fa: IPv4Address
    cache_lifetime: int
    spi: int
    authenticator: bytes
    vendor_id: int = DEFAULT_VENDOR_ID
    TYPE: ClassVar[int] = ExtType.NVSE
    VENDOR_TYPE: ClassVar[int] = VendorType.PREVIOUS_FA_NOTIFICATION
    NAME: ClassVar[str] = "mipro previous FA notification (NVSE)"

    def body(self) -> bytes:
        return (
            nvse_header(self.vendor_id, self.VENDOR_TYPE)
            + self.previous_fa.packed
            + self.cache_lifetime.to_bytes(2, "big")
            + b"\x00\x00"
            + self.spi.to_bytes(4, "big")
            + self.authenticator
        )

    @classmethod
    def decode_value(cls, r: Reader, vendor_id: int) -> Extension:
        fa = r.addr("previous FA address")
        lifetime = r.u16("cache lifetime")
        r.u16("reserved")
        spi = r.u32("SPI")
        auth = r.rest()
        if len(auth) not in (16, 32):
            raise r.error(f"authenticator of {len(auth)} bytes (16 or 32 expected)")
        return cls(fa, lifetime, spi, auth, vendor_id)

    def describe(self) -> dict[str, object]:
        return {"type": self.TYPE, "name": self.NAME, "vendor_id": self.vendor_id,
                "previous_fa": str(self.previous_fa), "cache_lifetime": self.cache_lifetime,
                "spi": self.spi, "authenticator": self.authenticator.hex()}


@dataclass(frozen=True)
class HomeAddressInUse(Extension):
    """In a registration reply the FA relays, after the MN-HA authenticator: "a host on the
    visited network has your home address" (seed Figs. 3c, 5, CN 4c).

    Value: the home address (4) and the temporary address the FA translates the mobile
    node's to towards that host (4).  The mobile node then sends what it addresses to its
    own home address to the FA instead of looping it back.
    """

    home_address: IPv4Address
    temporary_address: IPv4Address
    vendor_id: int = DEFAULT_VENDOR_ID
    TYPE: ClassVar[int] = ExtType.NVSE
    VENDOR_TYPE: ClassVar[int] = VendorType.HOME_ADDRESS_IN_USE
    NAME: ClassVar[str] = "mipro home address in use (NVSE)"

    def body(self) -> bytes:
        return (nvse_header(self.vendor_id, self.VENDOR_TYPE)
                + self.home_address.packed + self.temporary_address.packed)

    @classmethod
    def decode_value(cls, r: Reader, vendor_id: int) -> Extension:
        home = r.addr("home address")
        temporary = r.addr("temporary address")
        if r.remaining():
            raise r.error(f"{r.remaining()} bytes after the temporary address")
        return cls(home, temporary, vendor_id)

    def describe(self) -> dict[str, object]:
        return {"type": self.TYPE, "name": self.NAME, "vendor_id": self.vendor_id,
                "home_address": str(self.home_address),
                "temporary_address": str(self.temporary_address)}


for _cls in (StaticRoutesExtension, FilterRulesExtension, CertificateExtension,
             PreviousFaNotification, HomeAddressInUse):
    VENDOR_EXTENSIONS.add(_cls.VENDOR_TYPE, _cls)

