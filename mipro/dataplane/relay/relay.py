"""The userspace tunnel: a TUN device plus raw IP-in-IP and GRE sockets, and UDP.

Packets the kernel routes into the TUN are encapsulated towards the peer
chosen by ``peer_of(inner destination)``; encapsulated packets arriving on
the raw sockets are checked with ``accept(outer source, inner)`` and written
into the TUN for the kernel to deliver or forward.  The foreign agent gives
each home agent a TUN of its own (``add_peer_tun``), as the kernel backend
gives each an ipip link: the device a packet comes in by, or is routed to,
says which home agent's realm it belongs to, which matters when two mobile
nodes share a home address.  Each wakeup drains up to
a batch of packets, which matters more than anything else for throughput.

UDP tunnelling (RFC 3519, for mobile nodes behind a NAPT) goes through the
daemon's own UDP port 434 socket, so tunnel data shares the NAPT mapping of
the registrations: the daemon hands us what it receives (``from_udp``) and
gives us its socket's send (``udp_send``).

A home agent may serve several addresses (active/active redundancy: one per
virtual address): ``also_local`` opens raw sockets on each of them too, so
tunnelled packets are taken in on any of them, and ``peer_of`` names the
outer source of each packet as a fourth item (the address the mobile node
registered with); UDP tunnel data then leaves through ``udp_send_from``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import cast

from .encap import (
    GRE_IPV4,
    IPPROTO_GRE,
    IPPROTO_IPIP,
    BadPacket,
    gre_payload,
    inner_addresses,
    outer_split,
    raw_socket,
)
from .tun import open_tun

BATCH = 64
MTU = 1480  # 1500 minus the outer IPv4 header
UDP_MTU = 1468  # ... minus UDP (8) and the RFC 3519 header (4): no outer fragments
# remove_peer_tun(later=True) closes the TUN this long after, in a worker thread: the
# kernel unregisters the device on the last close (15-20 ms measured), which would stall
# the event loop in the middle of a handover (the FA drops a forwarding pointer's TUN
# just before it adds the visitor that came back)
CLOSE_DELAY = 0.2
UDP_TUNNEL_HEADER = bytes((4, 4, 0, 0))  # RFC 3519 tunnel data, next header 4 (IPv4)


# Where a packet goes: a tunnel end (IP-in-IP, GRE) or, for UDP, the NAPT's (address, port).
Outer = IPv4Address | tuple[IPv4Address, int]
# The role's counter key: a home address (HA, MN), or the FA's (home address, MAC).
CounterKey = Hashable
# (outer destination, encapsulation, counter key[, outer source])
Peer = tuple[Outer, str, CounterKey] | tuple[Outer, str, CounterKey, IPv4Address]
PeerOf = Callable[[IPv4Address, IPv4Address], Peer | None]
Accept = Callable[[IPv4Address, IPv4Address, IPv4Address], CounterKey | None]
AcceptUdp = Callable[[IPv4Address, int, IPv4Address, IPv4Address], CounterKey | None]
UdpSend = Callable[[bytes, tuple[str, int]], None]
UdpSendFrom = Callable[[bytes, tuple[str, int], IPv4Address], None]


@dataclass
class Counters:
    packets_out: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    bytes_in: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class RelayStats:
    dropped_no_peer: int = 0
    dropped_bad: int = 0
    dropped_unauthorised: int = 0
    tun_write_errors: int = 0
    last_udp_in: float = 0.0  # monotonic time of the last accepted UDP tunnel packet
    per_key: dict[CounterKey, Counters] = field(default_factory=dict)


class UserspaceTunnel:
    def __init__(
        self,
        ifname: str,
        local: IPv4Address | None,
        peer_of: PeerOf,
        accept: Accept,
        raw: bool = True,
        also_local: Iterable[IPv4Address] = (),
    ) -> None:
        """``peer_of(src, dst)`` → (outer destination, "ipip"|"gre", counter key), or
        ((address, port), "udp", key), or None; a fourth item, one of ``local`` and
        ``also_local``, is the outer source.  ``accept(outer_src, inner_src, inner_dst)``
        → counter key or None to drop.  ``raw=False``: UDP tunnels only (the kernel's own
        ipip/gre links do the rest, and raw sockets would see their packets too)."""
        self.raw = raw
        self.ifname = ifname
        self.local = local
        self.also_local = tuple(a for a in dict.fromkeys(also_local) if a != local)
        # the raw sockets of the other local addresses: address -> (ipip, gre)
        self.extra: dict[IPv4Address, tuple[socket.socket, socket.socket]] = {}
        self.peer_of = peer_of
        self.accept = accept
        self.stats = RelayStats()
        self.fd = -1
        self.ipip: socket.socket | None = None  # the raw sockets, when ``raw`` and open
        self.gre: socket.socket | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.udp_send: UdpSend | None = None
        self.udp_send_from: UdpSendFrom | None = None  # from a given local address
        self.peer_tuns: dict[IPv4Address, tuple[int, PeerOf]] = {}  # peer → (fd, peer_of)
        self.tun_names: dict[IPv4Address, str] = {}
        self.closing: dict[str, int] = {}  # TUNs gone, closed a little later: name → fd
        # a foreign agent's forwarding pointer: (outer source, inner destination) → where
        # to re-tunnel a decapsulated packet instead of delivering it (checked first)
        self.redirect: PeerOf | None = None
        # (outer source, inner destination) → the peer whose TUN gets what was accepted
        # (default: the outer source's); a previous FA's packets go to the visitor's realm
        self.inbound_peer: Callable[[IPv4Address, IPv4Address], IPv4Address] | None = None
        # told of each accepted packet: (outer source, inner destination, the packet)
        self.delivered: Callable[[IPv4Address, IPv4Address, bytes], None] | None = None
        # asked of what ``accept`` refused (outer source, inner destination, the packet):
        # True if it keeps it (a foreign agent's visitor that is being added), else dropped
        self.hold: Callable[[IPv4Address, IPv4Address, bytes], bool] | None = None

    def add_peer_tun(self, peer: IPv4Address, ifname: str, peer_of: PeerOf) -> None:
        """A TUN for one peer: what it decapsulates from ``peer`` goes in there, and what
        the kernel routes into it is encapsulated as ``peer_of`` says."""
        if peer in self.peer_tuns:
            return
        if ifname in self.closing:  # that device again before its close: close it first
            os.close(self.closing.pop(ifname))
        fd = open_tun(ifname)
        self.peer_tuns[peer] = (fd, peer_of)
        self.tun_names[peer] = ifname
        if self.loop is not None:
            self.loop.add_reader(fd, self._from_tun, fd, peer_of)

    def remove_peer_tun(self, peer: IPv4Address, later: bool = False) -> None:
        fd, _ = self.peer_tuns.pop(peer, (-1, None))
        name = self.tun_names.pop(peer, "")
        if fd < 0:
            return
        if self.loop is None or not later:
            if self.loop is not None:
                self.loop.remove_reader(fd)
            os.close(fd)
            return
        self.loop.remove_reader(fd)
        self.closing[name] = fd
        self.loop.call_later(CLOSE_DELAY, self._close_later, name, fd)

    def _close_later(self, name: str, fd: int) -> None:
        if self.closing.get(name) != fd or self.loop is None:  # closed already
            return
        del self.closing[name]
        self.loop.run_in_executor(None, os.close, fd)

    def open(self) -> None:
        if self.ifname:
            self.fd = open_tun(self.ifname)
        if self.raw:
            self.ipip = raw_socket(IPPROTO_IPIP, self.local)
            self.gre = raw_socket(IPPROTO_GRE, self.local)
            for address in self.also_local:
                self.extra[address] = (raw_socket(IPPROTO_IPIP, address),
                                       raw_socket(IPPROTO_GRE, address))

    def rebind(self, local: IPv4Address | None) -> None:
        """The care-of address changed (MN): new raw sockets bound to it."""
        self.stop_reading()
        for s in (self.ipip, self.gre):
            if s is not None:
                s.close()
        self.local = local
        if self.raw:
            self.ipip = raw_socket(IPPROTO_IPIP, local)
            self.gre = raw_socket(IPPROTO_GRE, local)
        if self.loop is not None:
            self.start_reading(self.loop)

    def start_reading(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        if self.fd >= 0:
            loop.add_reader(self.fd, self._from_tun, self.fd, self.peer_of)
        for fd, peer_of in self.peer_tuns.values():
            loop.add_reader(fd, self._from_tun, fd, peer_of)
        if self.raw and self.ipip is not None and self.gre is not None:
            for ipip, gre in ((self.ipip, self.gre), *self.extra.values()):
                loop.add_reader(ipip.fileno(), self._from_raw, ipip, False)
                loop.add_reader(gre.fileno(), self._from_raw, gre, True)

    def stop_reading(self) -> None:
        if self.loop is None:
            return
        for fd in (self.fd, self.ipip.fileno() if self.ipip else -1,
                   self.gre.fileno() if self.gre else -1,
                   *(s.fileno() for pair in self.extra.values() for s in pair),
                   *(fd for fd, _ in self.peer_tuns.values())):
            if fd >= 0:
                self.loop.remove_reader(fd)

    def close(self) -> None:
        self.stop_reading()
        self.loop = None
        for s in (self.ipip, self.gre, *(s for pair in self.extra.values() for s in pair)):
            if s is not None:
                s.close()
        self.ipip = self.gre = None
        self.extra = {}
        for peer in list(self.peer_tuns):
            self.remove_peer_tun(peer)  # the loop is gone: at once
        for fd in self.closing.values():
            os.close(fd)
        self.closing.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def drops(self, no_peer: str) -> dict[str, int]:
        """What was dropped, for `mipro status` (``no_peer``: what the role calls a packet
        for no one it knows)."""
        s = self.stats
        return {no_peer: s.dropped_no_peer, "malformed": s.dropped_bad,
                "unauthorised": s.dropped_unauthorised}

    def counters(self, key: CounterKey) -> Counters:
        c = self.stats.per_key.get(key)
        if c is None:
            c = self.stats.per_key[key] = Counters()
        return c

    # --- data path ------------------------------------------------------------------

    def _from_tun(self, fd: int, peer_of: PeerOf) -> None:
        for _ in range(BATCH):
            try:
                pkt = os.read(fd, 65535)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    return
                raise
            if len(pkt) < 20 or pkt[0] >> 4 != 4:
                continue  # IPv6 router solicitations and the like
            src = IPv4Address(pkt[12:16])
            dst = IPv4Address(pkt[16:20])
            peer = peer_of(src, dst)
            if peer is None:
                self.stats.dropped_no_peer += 1
                continue
            self.encapsulate(peer, pkt)

    def encapsulate(self, peer: Peer, pkt: bytes) -> bool:
        """Send ``pkt`` to ``peer`` (as ``peer_of`` names one); False if it could not go."""
        outer, encap, key = peer[0], peer[1], peer[2]
        local = peer[3] if len(peer) > 3 else None
        ipip, gre = self.ipip, self.gre
        if local is not None and local != self.local:
            ipip, gre = self.extra.get(local, (None, None))
        try:
            if encap == "udp":  # outer is (address, port): the NAPT's mapping
                address, port = cast(tuple[IPv4Address, int], outer)
                self._send_udp(UDP_TUNNEL_HEADER + pkt, (str(address), port), local)
            elif not self.raw or ipip is None or gre is None:
                raise OSError("IP-in-IP and GRE are the kernel's here, or not from there")
            elif encap == "gre":
                gre.sendto(GRE_IPV4 + pkt, (str(outer), 0))
            else:
                ipip.sendto(pkt, (str(outer), 0))
        except OSError:
            self.stats.dropped_no_peer += 1
            return False
        c = self.counters(key)
        c.packets_out += 1
        c.bytes_out += len(pkt)
        return True

    def _send_udp(self, data: bytes, dst: tuple[str, int], local: IPv4Address | None) -> None:
        if local is not None and self.udp_send_from is not None:
            self.udp_send_from(data, dst, local)
        elif self.udp_send is not None:
            self.udp_send(data, dst)
        else:
            raise OSError("no UDP socket")

    def _from_raw(self, sock: socket.socket, is_gre: bool) -> None:
        for _ in range(BATCH):
            try:
                pkt = sock.recv(65535)
            except BlockingIOError:
                return
            try:
                outer_src, _, payload = outer_split(pkt)
                inner = gre_payload(payload) if is_gre else payload
                inner_src, inner_dst = inner_addresses(inner)
            except BadPacket:
                self.stats.dropped_bad += 1
                continue
            if self.redirect is not None and \
                    (onward := self.redirect(outer_src, inner_dst)) is not None:
                self.encapsulate(onward, inner)
                continue
            key = self.accept(outer_src, inner_src, inner_dst)
            if key is None:
                if self.hold is None or not self.hold(outer_src, inner_dst, inner):
                    self.stats.dropped_unauthorised += 1
                continue
            self.deliver(outer_src, inner_dst, inner, key)

    def deliver(self, outer_src: IPv4Address, inner_dst: IPv4Address, inner: bytes,
                key: CounterKey) -> bool:
        """A decapsulated packet ``accept`` allowed into its peer's TUN (the default one
        without); False if it could not be written."""
        peer = self.inbound_peer(outer_src, inner_dst) if self.inbound_peer else outer_src
        try:
            os.write(self.peer_tuns[peer][0] if peer in self.peer_tuns else self.fd, inner)
        except OSError:
            self.stats.tun_write_errors += 1
            return False
        if self.delivered is not None:
            self.delivered(outer_src, inner_dst, inner)
        c = self.counters(key)
        c.packets_in += 1
        c.bytes_in += len(inner)
        return True

    def from_udp(self, data: bytes, outer_src: IPv4Address, outer_port: int,
                 accept_udp: AcceptUdp) -> bool:
        """RFC 3519 tunnel data from the daemon's socket: checked, then into the TUN.
        Malformed data and data from an address and port with no binding are dropped
        and counted, never forwarded.  True when it was delivered."""
        if len(data) < 4 or data[0] != 4 or data[1] != 4 or self.fd < 0:
            self.stats.dropped_bad += 1
            return False
        inner = data[4:]
        try:
            inner_src, inner_dst = inner_addresses(inner)
        except BadPacket:
            self.stats.dropped_bad += 1
            return False
        key = accept_udp(outer_src, outer_port, inner_src, inner_dst)
        if key is None:
            self.stats.dropped_unauthorised += 1
            return False
        try:
            os.write(self.fd, inner)
        except OSError:
            self.stats.tun_write_errors += 1
            return False
        self.stats.last_udp_in = time.monotonic()
        c = self.counters(key)
        c.packets_in += 1
        c.bytes_in += len(inner)
        return True
