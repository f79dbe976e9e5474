"""IP-in-IP (RFC 2003) and GRE (RFC 2784) framing for the userspace relay, and the
ICMP echo a mobile node sends through a UDP tunnel as keepalive (RFC 3519)."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address

from ...wire.advertisement import icmp_checksum

IPPROTO_IPIP = 4
IPPROTO_GRE = 47
GRE_IPV4 = b"\x00\x00\x08\x00"  # no checksum, key or sequence; protocol 0x0800


class BadPacket(ValueError):
    pass


def icmp_echo(src: IPv4Address, dst: IPv4Address, ident: int, seq: int) -> bytes:
    """An IPv4 ICMP echo request, checksums and all."""
    icmp = bytearray(b"\x08\x00\x00\x00" + ident.to_bytes(2, "big") + seq.to_bytes(2, "big")
                     + b"mipro-keepalive")
    icmp[2:4] = icmp_checksum(bytes(icmp)).to_bytes(2, "big")
    header = bytearray(b"\x45\x00" + (20 + len(icmp)).to_bytes(2, "big") + b"\x00\x00\x40\x00"
                       + b"\x40\x01\x00\x00" + src.packed + dst.packed)
    header[10:12] = icmp_checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + bytes(icmp)


def outer_split(packet: bytes) -> tuple[IPv4Address, int, bytes]:
    """A raw socket hands us the outer header too: (outer source, protocol, payload)."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        raise BadPacket("outer header is not IPv4")
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl:
        raise BadPacket("outer header length")
    return IPv4Address(packet[12:16]), packet[9], packet[ihl:]


def gre_payload(payload: bytes) -> bytes:
    """Strip a GRE header (RFC 2784/2890), accepting only IPv4 payloads."""
    if len(payload) < 4:
        raise BadPacket("GRE header truncated")
    flags = payload[0]
    if payload[1] & 0x07:
        raise BadPacket("GRE version is not 0")
    if payload[2:4] != b"\x08\x00":
        raise BadPacket("GRE payload is not IPv4")
    offset = 4 + (4 if flags & 0x80 else 0) + (4 if flags & 0x20 else 0) + \
        (4 if flags & 0x10 else 0)
    if len(payload) < offset:
        raise BadPacket("GRE options truncated")
    return payload[offset:]


def inner_addresses(inner: bytes) -> tuple[IPv4Address, IPv4Address]:
    if len(inner) < 20 or inner[0] >> 4 != 4:
        raise BadPacket("inner packet is not IPv4")
    total = int.from_bytes(inner[2:4], "big")
    if total > len(inner) or total < (inner[0] & 0x0F) * 4:
        raise BadPacket("inner packet length")
    return IPv4Address(inner[12:16]), IPv4Address(inner[16:20])


IP_FREEBIND = 15  # linux/in.h; not exported by Python's socket module


def raw_socket(proto: int, bind: IPv4Address | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    if bind is not None:
        # freebind: a backup home agent binds the virtual address before keepalived gives
        # it one (it sends nothing until it has)
        sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        sock.bind((str(bind), 0))
    return sock
