"""Home agent redundancy messages (seed Fig. 13b): data dump request, data dump, data forward.

The seed extends VRRP (RFC 2338) with three packet types that carry a home
agent's registrations to its backup.  mipro keeps the seed's layout, a VRRPv2
header followed by data blocks, but sends it between the home agents' own
addresses over an authenticated TCP session (runtime/sync.py), not as IP
protocol 112: VRRP itself (the virtual address) is keepalived's.  The type
values 2-4 are not IANA's (VRRP defines type 1 only): they mean something only
inside that session.  Layout (docs/protocol.md has hex examples)::

     0                   1                   2                   3
    |Version| Type  |     VRID      |   Priority    | Count IP Addrs|
    |   Auth Type   |   Adver Int   |           Checksum            |
    |                 IP Address (the virtual HA address) ...       |
    |                     Authentication Data (8 bytes)             |
    |           Count-D             |    Subtype    |     Flags     |
    |           Length              |  Data (Length bytes) ...      |   x Count-D

Version 2 (the seed's), auth type 0 (the session authenticates: the seed's
types 0-2 are no protection), adver int in seconds, the checksum the RFC 1071
sum over the whole message.  Flags: MORE (a data dump continues in the next
message), PRIMARY (the sender is primary for the VRID: its table wins), REPLAY (a data
forward of replay state only, from a home agent that stood down after a partition: the
receiver takes the identifications and nonces, never a binding).  A data block of
subtype 1 is one binding with its replay state, so a backup can take over without the
mobile node, and refuse a replayed request.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import NamedTuple

from .errors import DecodeError
from .reader import Reader

VERSION = 2
HEADER = 8 + 8  # fixed words and authentication data, before the addresses' count is known


class SyncType(enum.IntEnum):
    DUMP_REQUEST = 2  # a backup asks for every valid registration
    DUMP = 3  # every valid registration (in one or more messages: flag MORE)
    FORWARD = 4  # registrations as the primary accepts (or removes) them


class Subtype(enum.IntEnum):
    MOBILE_IP = 1  # data blocks are BindingBlocks


class Encapsulation(enum.IntEnum):
    IPIP = 4
    GRE = 47
    UDP = 17  # RFC 3519, to the NAPT's public address and port


ENCAP_NAMES = {Encapsulation.IPIP: "ipip", Encapsulation.GRE: "gre", Encapsulation.UDP: "udp"}
ENCAP_CODES = {v: k for k, v in ENCAP_NAMES.items()}
_ENCAP_BY_CODE = {int(k): v for k, v in ENCAP_NAMES.items()}
MORE = 0x01
PRIMARY = 0x02  # the sender holds the virtual address: its table is the table
REPLAY = 0x04  # data forward of replay state only (no binding; never with PRIMARY or MORE)
REVERSE = 0x01  # block flags
NONCE = 0x02  # replay protection by nonce (else timestamps)
# a block's fixed part: addresses, source port, flags, encapsulation, lifetimes,
# identification, nonce, SPI, NAI length, reserved
_BLOCK = struct.Struct("!IIIIHBBHHQIIB3x")
BLOCK_FIXED = _BLOCK.size  # 44 bytes, then the NAI
_LENGTH = struct.Struct("!H")


def _addr(value: int, made: dict[int, IPv4Address]) -> IPv4Address:
    a = made.get(value)
    if a is None:
        a = made[value] = IPv4Address(value)
    return a


def checksum(data: bytes) -> int:
    """RFC 1071, as advertisement.icmp_checksum, at C speed (a data forward carries
    thousands of bytes per registration batch): the one's complement sum of the 16-bit
    words is the big-endian number they make modulo 0xFFFF (2**16 is 1 modulo 0xFFFF),
    with 0xFFFF, not 0, for a nonzero sum of that residue."""
    if len(data) % 2:
        data += b"\x00"
    number = int.from_bytes(data, "big")
    total = number % 0xFFFF
    if total == 0 and number:
        total = 0xFFFF
    return ~total & 0xFFFF


class BindingBlock(NamedTuple):
    """One registration as a backup needs it: the binding, and the replay state.

    ``lifetime_left`` 0 means the binding is gone (deregistered, expired).
    ``identification`` is the last one used (refused again after a failover);
    with nonces, ``nonce`` is the one the MN must use next.  A NamedTuple, not a frozen
    dataclass: the primary makes one per registration it forwards, in a fifth of the
    time."""

    home_address: IPv4Address
    care_of_address: IPv4Address
    home_agent: IPv4Address
    source: IPv4Address  # where requests came from (FA, NAPT, the MN itself)
    source_port: int
    encapsulation: str  # ipip | gre | udp
    reverse_tunnel: bool
    lifetime: int  # granted
    lifetime_left: int
    identification: int
    nonce: int | None = None
    spi: int = 0
    nai: str = ""

    def encode(self) -> bytes:
        nai = self.nai.encode()
        if len(nai) > 255:
            raise ValueError("NAI longer than 255 bytes")
        flags = (REVERSE if self.reverse_tunnel else 0) | (NONCE if self.nonce is not None
                                                             else 0)
        try:
            return _BLOCK.pack(int(self.home_address), int(self.care_of_address),
                               int(self.home_agent), int(self.source), self.source_port, flags,
                               ENCAP_CODES[self.encapsulation], self.lifetime,
                               self.lifetime_left, self.identification, self.nonce or 0,
                               self.spi, len(nai)) + nai
        except struct.error as exc:
            raise ValueError(f"binding block field out of range: {exc}") from None

    @classmethod
    def decode_at(cls, data: bytes, start: int, end: int,
                  addresses: dict[int, IPv4Address]) -> BindingBlock:
        """The block in ``data[start:end]``: the fixed part in one unpack when it is well
        formed (a backup decodes thousands a second), else ``decode``'s checks, for
        their errors.  ``addresses``: the addresses made so far, shared by a message's
        blocks (the home agent, an FA's care-of address repeat)."""
        if end - start >= BLOCK_FIXED:
            (home, coa, ha, source, port, flags, encap, lifetime, left, ident, nonce, spi,
             nai_len) = _BLOCK.unpack_from(data, start)
            if not flags & ~(REVERSE | NONCE) and encap in _ENCAP_BY_CODE and \
                    left <= lifetime and end - start == BLOCK_FIXED + nai_len:
                try:
                    nai = data[start + BLOCK_FIXED:end].decode() if nai_len else ""
                except UnicodeDecodeError:
                    nai = None
                if nai is not None:
                    return cls(_addr(home, addresses), _addr(coa, addresses),
                               _addr(ha, addresses), _addr(source, addresses), port,
                               _ENCAP_BY_CODE[encap], bool(flags & REVERSE), lifetime, left,
                               ident, nonce if flags & NONCE else None, spi, nai)
        return cls.decode(Reader(data, start, end))

    @classmethod
    def decode(cls, r: Reader) -> BindingBlock:
        home = r.addr("home address")
        coa = r.addr("care-of address")
        ha = r.addr("home agent")
        source = r.addr("source address")
        port = r.u16("source port")
        flags_at = r.pos
        flags = r.u8("block flags")
        if flags & ~(REVERSE | NONCE):
            raise r.error(f"unknown block flags 0x{flags:02x}", flags_at)
        encap = r.u8("encapsulation")
        try:
            encapsulation = ENCAP_NAMES[Encapsulation(encap)]
        except ValueError:
            raise r.error(f"unknown encapsulation {encap}", r.pos - 1) from None
        lifetime = r.u16("lifetime")
        left = r.u16("lifetime left")
        if left > lifetime:
            raise r.error(f"lifetime left {left} > granted {lifetime}", r.pos - 2)
        ident = r.u64("identification")
        nonce = r.u32("nonce")
        spi = r.u32("SPI")
        nai_len = r.u8("NAI length")
        r.take(3, "reserved")
        try:
            nai = r.take(nai_len, "NAI").decode()
        except UnicodeDecodeError:
            raise r.error("NAI is not UTF-8", r.pos - nai_len) from None
        r.expect_end("binding block")
        return cls(home, coa, ha, source, port, encapsulation, bool(flags & REVERSE),
                   lifetime, left, ident, nonce if flags & NONCE else None, spi, nai)

    def describe(self) -> dict[str, object]:
        return {"home_address": str(self.home_address),
                "care_of_address": str(self.care_of_address),
                "home_agent": str(self.home_agent), "source": f"{self.source}:{self.source_port}",
                "encapsulation": self.encapsulation, "reverse_tunnel": self.reverse_tunnel,
                "lifetime": self.lifetime, "lifetime_left": self.lifetime_left,
                "identification": f"0x{self.identification:016x}",
                "nonce": None if self.nonce is None else f"0x{self.nonce:08x}",
                "spi": self.spi, "nai": self.nai}


@dataclass(frozen=True)
class SyncMessage:
    """One Fig. 13b message: a VRRPv2 header for one virtual router, then data blocks."""

    type: SyncType
    vrid: int
    priority: int
    addresses: tuple[IPv4Address, ...]  # the virtual home agent address(es)
    advert_interval: int = 1
    subtype: Subtype = Subtype.MOBILE_IP
    blocks: tuple[BindingBlock, ...] = ()
    more: bool = False  # DUMP: more messages of this dump follow
    primary: bool = False  # the sender is primary for the VRID
    replay: bool = False  # FORWARD: replay state only, the blocks are no bindings
    raw: bytes = field(default=b"", compare=False, repr=False)

    def encode(self) -> bytes:
        if not 1 <= self.vrid <= 255 or not 0 <= self.priority <= 255:
            raise ValueError("VRID 1-255 and priority 0-255")
        flags = (MORE if self.more else 0) | (PRIMARY if self.primary else 0) | \
            (REPLAY if self.replay else 0)
        parts = [bytes(((VERSION << 4) | int(self.type), self.vrid, self.priority,
                        len(self.addresses), 0, self.advert_interval)), b"\x00\x00",
                 *(a.packed for a in self.addresses), bytes(8),
                 len(self.blocks).to_bytes(2, "big"), bytes((int(self.subtype), flags))]
        for block in self.blocks:
            data = block.encode()
            parts += (_LENGTH.pack(len(data)), data)
        parts[1] = checksum(b"".join(parts)).to_bytes(2, "big")
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> SyncMessage:
        r = Reader(data)
        vt = r.u8("version and type")
        if vt >> 4 != VERSION:
            raise DecodeError(0, f"version {vt >> 4}, not {VERSION}")
        try:
            kind = SyncType(vt & 0x0F)
        except ValueError:
            raise DecodeError(0, f"unknown redundancy message type {vt & 0x0F}") from None
        vrid = r.u8("VRID")
        if not vrid:
            raise DecodeError(1, "VRID 0")
        priority = r.u8("priority")
        count = r.u8("count IP addresses")
        auth = r.u8("auth type")
        if auth != 0:
            raise DecodeError(4, f"auth type {auth}: the session authenticates, use 0")
        advert = r.u8("advertisement interval")
        r.u16("checksum")
        if checksum(data) != 0:
            raise DecodeError(6, "checksum mismatch")
        addresses = tuple(r.addr("IP address") for _ in range(count))
        r.take(8, "authentication data")
        nblocks = r.u16("Count-D")
        sub_at = r.pos
        subtype = r.u8("subtype")
        if subtype != Subtype.MOBILE_IP:
            raise DecodeError(sub_at, f"unknown data subtype {subtype}")
        flags = r.u8("flags")
        if flags & ~(MORE | PRIMARY | REPLAY):
            raise DecodeError(sub_at + 1, f"unknown flags 0x{flags:02x}")
        if flags & REPLAY and (kind is not SyncType.FORWARD or flags & (MORE | PRIMARY)):
            raise DecodeError(sub_at + 1, "REPLAY is for a data forward from a home agent "
                              "that is not primary (no MORE, no PRIMARY)")
        blocks = []
        made: dict[int, IPv4Address] = {}
        for _ in range(nblocks):
            length = r.u16("data length")
            start = r.pos
            r.take(length, "data block")
            blocks.append(BindingBlock.decode_at(data, start, start + length, made))
        r.expect_end("redundancy message")
        if kind is SyncType.DUMP_REQUEST and blocks:
            raise DecodeError(sub_at - 2, "a data dump request carries no data")
        return cls(kind, vrid, priority, addresses, advert, Subtype(subtype), tuple(blocks),
                   bool(flags & MORE), bool(flags & PRIMARY), bool(flags & REPLAY),
                   bytes(data))

    def describe(self) -> dict[str, object]:
        return {"message": f"redundancy-{self.type.name.lower().replace('_', '-')}",
                "version": VERSION, "type": int(self.type), "vrid": self.vrid,
                "priority": self.priority, "addresses": [str(a) for a in self.addresses],
                "advert_interval": self.advert_interval, "subtype": int(self.subtype),
                "more": self.more, "primary": self.primary, "replay": self.replay,
                "blocks": [b.describe() for b in self.blocks]}


def blocks_per_message(nai_bytes: int = 32, limit: int = 60_000) -> int:
    """How many binding blocks fit a message of at most ``limit`` bytes."""
    return max(1, (limit - HEADER - 4 - 4) // (2 + BLOCK_FIXED + nai_bytes))
