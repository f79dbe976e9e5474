"""Link-layer I/O for agents: registration requests with the sender's MAC address,
replies straight to a MAC address, and ICMP agent advertisements/solicitations.

A foreign agent must know each mobile node's link-layer address (the MN's
IP source is its home address, which the FA must not ARP for), so requests
are read from a packet socket that a BPF filter limits to UDP port 434.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

ETH_P_IP = 0x0800
SKIP = 64  # malformed or foreign packets skipped per receive() before giving the loop back
SO_ATTACH_FILTER = 26
IP_MULTICAST_ALL = 49

# tcpdump -dd 'ip and udp dst port 434 and not ip[6:2] & 0x1fff != 0'
_BPF_UDP_434 = [
    (0x28, 0, 0, 0x0000000C), (0x15, 0, 10, 0x00000800), (0x30, 0, 0, 0x00000017),
    (0x15, 0, 8, 0x00000011), (0x28, 0, 0, 0x00000014), (0x45, 6, 0, 0x00001FFF),
    (0xB1, 0, 0, 0x0000000E), (0x48, 0, 0, 0x00000010), (0x15, 0, 3, 0x000001B2),
    (0x28, 0, 0, 0x00000014), (0x45, 1, 0, 0x00001FFF), (0x06, 0, 0, 0x00040000),
    (0x06, 0, 0, 0x00000000),
]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    code = b"".join(struct.pack("HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(code)
    prog = _SockFprog(len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(prog))


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(src_mac: bytes, dst_mac: bytes, src: IPv4Address, dst: IPv4Address, sport: int,
              dport: int, payload: bytes, ttl: int = 64) -> bytes:
    udp_len = 8 + len(payload)
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload
    csum = checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0x4000, ttl, 17, 0, src.packed,
                     dst.packed)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IP) + ip + udp


@dataclass(frozen=True)
class Datagram:
    mac: bytes
    src: IPv4Address
    dst: IPv4Address
    sport: int
    dport: int
    payload: bytes


class RegistrationLink:
    """UDP 434 on one link, with link-layer addresses."""

    def __init__(self, ifname: str, mac: bytes) -> None:
        self.ifname = ifname
        self.mac = mac
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        _attach_filter(self.sock, _BPF_UDP_434)
        self.sock.bind((ifname, ETH_P_IP))
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> Datagram | None:
        """One datagram, or None when nothing (or only junk) is left: malformed frames are
        skipped, at most SKIP per call, so a flood of them cannot hold the loop."""
        for _ in range(SKIP):
            try:
                frame, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return None
            if addr[2] == socket.PACKET_OUTGOING or len(frame) < 42:
                continue
            ip = frame[14:]
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack("!H", ip[2:4])[0]
            if ip[0] >> 4 != 4 or ihl < 20 or total > len(ip) or total < ihl + 8:
                continue
            sport, dport, ulen = struct.unpack("!HHH", ip[ihl:ihl + 6])
            if ulen < 8 or ihl + ulen > total:
                continue
            return Datagram(frame[6:12], IPv4Address(ip[12:16]), IPv4Address(ip[16:20]), sport,
                            dport, bytes(ip[ihl + 8:ihl + ulen]))
        return None

    def send(self, dst_mac: bytes, src: IPv4Address, dst: IPv4Address, sport: int, dport: int,
             payload: bytes) -> None:
        self.sock.send(udp_frame(self.mac, dst_mac, src, dst, sport, dport, payload))

    def close(self) -> None:
        self.sock.close()


class IcmpLink:
    """Agent advertisements and solicitations on one link (raw ICMP, TTL 1)."""

    def __init__(self, ifname: str, local: IPv4Address | None, groups: tuple[str, ...]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
        self.index = socket.if_nametoindex(ifname)
        mreqn = struct.pack("4s4si", b"\0" * 4, (local or IPv4Address(0)).packed, self.index)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
        for group in groups:
            mreq = struct.pack("4s4si", IPv4Address(group).packed, b"\0" * 4, self.index)
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> tuple[IPv4Address, bytes] | None:
        """(source, ICMP message) of one router advertisement/solicitation, or None when
        nothing (or, SKIP times, only other ICMP) is left."""
        for _ in range(SKIP):
            try:
                packet = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return None
            if len(packet) < 20:
                continue
            ihl = (packet[0] & 0x0F) * 4
            icmp = packet[ihl:]
            if icmp and icmp[0] in (9, 10):
                return IPv4Address(packet[12:16]), icmp
        return None

    def send(self, dst: IPv4Address, data: bytes) -> str | None:
        """Send; returns why it failed (no address or route yet on this link), else None."""
        try:
            self.sock.sendto(data, (str(dst), 0))
        except OSError as exc:
            return exc.strerror or str(exc)
        return None

    def close(self) -> None:
        self.sock.close()
