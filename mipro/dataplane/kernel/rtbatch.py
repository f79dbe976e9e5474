"""Hand-built netlink: many requests per sendmsg, acknowledged by sequence number.

The HA's hot path programs two kernel objects per binding (a /32 route in
mipro's table and a proxy ARP entry).  pyroute2 does one request and one
round trip per call, which caps a home agent at a few hundred bindings per
second; here the messages of a whole batch of registrations go to the kernel
in one write and their acknowledgements come back together.  Built here, in the
fixed layouts of rtnetlink(7): routes (with lightweight-tunnel encapsulation, which
pyroute2 does not build), proxy ARP entries, tunnel links with an interface index of
our choosing; ipset members over nfnetlink are built in ipset.py for the same batches.
Everything else stays with pyroute2.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

from .netlink import GONE

NETLINK_ROUTE, NETLINK_NETFILTER = 0, 12
SOL_NETLINK, NETLINK_CAP_ACK = 270, 10
SO_RCVBUFFORCE = 33  # not in Python's socket module
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_DUMP = 0x300
RTM_GETROUTE, RTM_GETNEIGH = 26, 30
RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWNEIGH, RTM_DELNEIGH = 24, 25, 28, 29
IFLA_IFNAME, IFLA_LINKINFO, IFLA_INFO_KIND, IFLA_INFO_DATA = 3, 18, 1, 2
IFF_UP = 0x1
# (local, remote, ttl) attribute numbers of the tunnel kinds' IFLA_INFO_DATA
TUNNEL_ATTRS = {"ipip": (2, 3, 4), "gre": (6, 7, 8)}
RTA_DST, RTA_OIF, RTA_PRIORITY, RTA_TABLE, RTA_ENCAP_TYPE, RTA_ENCAP = 1, 4, 6, 15, 21, 22
LWTUNNEL_ENCAP_IP = 2
LWTUNNEL_IP_DST, LWTUNNEL_IP_SRC, LWTUNNEL_IP_TTL = 2, 3, 4
# IFLA_IPTUN_COLLECT_METADATA, IFLA_GRE_COLLECT_METADATA: one device for every remote
COLLECT_METADATA = {"ipip": 19, "gre": 18}
NDA_DST = 1
NDA_LLADDR = 2
RTPROT_STATIC = 4
RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 253, 255
RTN_UNICAST = 1
NTF_PROXY = 0x08
NUD_PERMANENT = 0x80
AF_INET = 2

_HDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NDMSG = struct.Struct("=BBHiHBB")
_RTA_U32 = struct.Struct("=HHI")
_RTA_ADDR = struct.Struct("=HH4s")
_IFINFO = struct.Struct("=BxHiII")


def rta(kind: int, payload: bytes) -> bytes:
    """A netlink attribute, padded to 4 bytes."""
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


@dataclass(slots=True)
class Request:
    """One netlink request; ``what`` and ``subject`` name it in a failure (the subject is
    formatted then only: str() of an address costs more than building the message)."""

    body: bytes  # everything after the nlmsghdr
    msg_type: int
    flags: int
    tolerate: frozenset[int] = frozenset()
    what: str = ""
    tag: object = None  # the caller's: which of its operations this request serves
    subject: object = None


@dataclass(frozen=True)
class Failure:
    what: str
    code: int  # errno (or an ipset error number above 4096)
    tag: object = None

    @property
    def reason(self) -> str:
        return f"{self.what}: {os.strerror(self.code) if self.code < 4096 else self.code}"


def _failure(req: Request, code: int) -> Failure:
    what = req.what if req.subject is None else f"{req.what} {req.subject}"
    return Failure(what, code, req.tag)


_ROUTE_ADD = _RTMSG.pack(AF_INET, 32, 0, 0, 0, RTPROT_STATIC, RT_SCOPE_LINK, RTN_UNICAST, 0) \
    + struct.pack("=HH", 8, RTA_DST)
_ROUTE_DEL = _RTMSG.pack(AF_INET, 32, 0, 0, 0, 0, RT_SCOPE_NOWHERE, 0, 0) \
    + struct.pack("=HH", 8, RTA_DST)


def route(add: bool, dst: IPv4Address, table: int, oif: int = 0,
          encap: tuple[IPv4Address, IPv4Address] | None = None, metric: int = 0) -> Request:
    """Replace (add) or delete the /32 route to dst in table.  ``encap`` (source,
    destination): a lightweight-tunnel route, for a device that collects metadata.
    A delete matches the route whatever its metric."""
    if add:
        body = b"".join((_ROUTE_ADD, dst.packed, _RTA_U32.pack(8, RTA_TABLE, table),
                         _RTA_U32.pack(8, RTA_OIF, oif)))
        if metric:
            body += _RTA_U32.pack(8, RTA_PRIORITY, metric)
        if encap is not None:
            src, remote = encap
            body += rta(RTA_ENCAP_TYPE, struct.pack("=H", LWTUNNEL_ENCAP_IP))
            body += rta(RTA_ENCAP, rta(LWTUNNEL_IP_DST, remote.packed)
                         + rta(LWTUNNEL_IP_SRC, src.packed) + rta(LWTUNNEL_IP_TTL, b"\x40"))
        return Request(body, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, what="route",
                       subject=dst)
    body = b"".join((_ROUTE_DEL, dst.packed, _RTA_U32.pack(8, RTA_TABLE, table)))
    return Request(body, RTM_DELROUTE, 0, GONE, "route", subject=dst)


def delete_route(dst: bytes, dst_len: int, table: int, metric: int | None) -> Request:
    """Delete one route as a dump showed it (any prefix length, its metric)."""
    body = _RTMSG.pack(AF_INET, dst_len, 0, 0, 0, 0, RT_SCOPE_NOWHERE, 0, 0)
    if dst_len:
        body += _RTA_ADDR.pack(8, RTA_DST, dst)
    body += _RTA_U32.pack(8, RTA_TABLE, table)
    if metric is not None:
        body += _RTA_U32.pack(8, RTA_PRIORITY, metric)
    return Request(body, RTM_DELROUTE, 0, GONE, "route",
                   subject=f"{IPv4Address(dst)}/{dst_len}")


def _messages(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """The netlink messages in one read: (offset, length, type, sequence number)."""
    offset = 0
    while offset + 16 <= len(data):
        length, msg_type, _, seq, _ = _HDR.unpack_from(data, offset)
        if length < 16:
            return
        yield offset, length, msg_type, seq
        offset += (length + 3) & ~3


def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    out = {}
    while offset + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return out


def proxy(add: bool, dst: IPv4Address, ifindex: int) -> Request:
    """Add or delete a proxy ARP entry (pneigh) for dst on ifindex."""
    body = _NDMSG.pack(AF_INET, 0, 0, ifindex, NUD_PERMANENT, NTF_PROXY, 0)
    body += _RTA_ADDR.pack(8, NDA_DST, dst.packed)
    if add:
        return Request(body, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE,
                       frozenset({errno.EEXIST}), "proxy", subject=dst)
    return Request(body, RTM_DELNEIGH, 0, GONE, "proxy", subject=dst)


def neighbour(address: IPv4Address, ifindex: int, mac: bytes) -> Request:
    """A permanent neighbour entry (address -> MAC on ifindex), replaced: a visitor's
    delivery at the FA goes to the kernel in one write with its /32."""
    body = _NDMSG.pack(AF_INET, 0, 0, ifindex, NUD_PERMANENT, 0, 0)
    body += rta(NDA_DST, address.packed) + rta(NDA_LLADDR, mac)
    return Request(body, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE,
                   what=f"neighbour {address}")


def tunnel_link(kind: str, name: str, local: IPv4Address, remote: IPv4Address,
                ifindex: int, ttl: int = 64) -> Request:
    """Create an ipip or gre link, up, with the interface index we chose: routes to it can
    then go in the same batch (pyroute2 takes three round trips: add, get, set up)."""
    loc, rem, ttl_attr = TUNNEL_ATTRS[kind]
    data = rta(loc, local.packed) + rta(rem, remote.packed) + rta(ttl_attr, bytes((ttl,)))
    info = rta(IFLA_INFO_KIND, kind.encode()) + rta(IFLA_INFO_DATA, data)
    body = _IFINFO.pack(0, 0, ifindex, IFF_UP, IFF_UP)
    body += rta(IFLA_IFNAME, name.encode() + b"\0") + rta(IFLA_LINKINFO, info)
    return Request(body, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, what=f"link {name}")


def metadata_link(kind: str, name: str, ifindex: int) -> Request:
    """An ipip or gre link in collect-metadata ("external") mode, up: it carries every
    tunnel whose route says where to (route(encap=...)), and takes in every remote."""
    info = rta(IFLA_INFO_KIND, kind.encode()) + \
        rta(IFLA_INFO_DATA, rta(COLLECT_METADATA[kind], b""))
    body = _IFINFO.pack(0, 0, ifindex, IFF_UP, IFF_UP)
    body += rta(IFLA_IFNAME, name.encode() + b"\0") + rta(IFLA_LINKINFO, info)
    return Request(body, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, what=f"link {name}")


def delete_link(ifindex: int, name: str = "") -> Request:
    body = _IFINFO.pack(0, 0, ifindex, 0, 0)
    return Request(body, RTM_DELLINK, 0, GONE, f"link {name or ifindex}")


class BatchError(OSError):
    def __init__(self, failures: list[Failure]) -> None:
        first = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        super().__init__(first.code, first.reason + more)
        self.failures = failures


class RtBatch:
    """A netlink socket for batches; one batch at a time (the caller serialises).

    The requests go without NLM_F_ACK: the kernel answers only those that fail, each with
    its sequence number, and a NLMSG_NOOP asking for an acknowledgement closes each
    window of them (the kernel handles a socket's messages in order, so once it is
    answered every failure before it has been).  A million routes are then a thousand
    writes and a thousand reads, not a million acknowledgements to parse."""

    CHUNK = 64 * 1024
    # requests per window: each may fail, and the kernel drops answers that do not fit
    # the receive buffer (ENOBUFS, seen at 10,000 acknowledgements in 4 MiB)
    WINDOW = 2048
    TIMEOUT = 5.0  # seconds for the kernel to answer a window; then the rest failed

    def __init__(self, protocol: int = NETLINK_ROUTE) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                  protocol)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        try:  # past net.core.rmem_max (we have CAP_NET_ADMIN): room for the answers
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        with contextlib.suppress(OSError):  # acknowledgements without the request echoed
            self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    async def run(self, requests: list[Request]) -> None:
        """Send all; raise BatchError listing the ones that failed (errors in a
        request's ``tolerate`` are none).  A window not answered within TIMEOUT
        counts as failed (ETIMEDOUT) but for the failures it did report."""
        failures: list[Failure] = []
        for first in range(0, len(requests), self.WINDOW):
            await self._run(requests[first:first + self.WINDOW], failures)
        if failures:
            raise BatchError(failures)

    async def _send(self, data: bytes) -> None:
        try:  # the kernel takes a netlink write at once: the loop only if it did not
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            await asyncio.get_running_loop().sock_sendall(self.sock, data[sent:])

    async def _recv(self, deadline: float) -> bytes:
        try:  # the answers are queued by the time the write returns
            return self.sock.recv(1 << 20)
        except BlockingIOError:
            loop = asyncio.get_running_loop()
            return await asyncio.wait_for(loop.sock_recv(self.sock, 1 << 20),
                                          max(0.0, deadline - loop.time()))

    async def dump(self, msg_type: int, body: bytes) -> list[tuple[bytes, int, int]]:
        """A dump request's answer: (data, offset of the message's body, its end) per
        message, parsed by the caller (pyroute2 takes ~100 µs a route: minutes at a
        million)."""
        self.seq = seq = (self.seq + 1) & 0xFFFFFFFF
        await self._send(_HDR.pack(16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP,
                                   seq, 0) + body)
        out: list[tuple[bytes, int, int]] = []
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            data = await self._recv(deadline)
            for offset, length, kind, got in _messages(data):
                if got == seq:
                    if kind == NLMSG_DONE:
                        return out
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, offset + 16)[0]
                        raise OSError(code, f"dump: {os.strerror(code)}")
                    out.append((data, offset + 16, offset + length))

    async def table_routes(self, table: int) -> list[tuple[bytes, int, int | None]]:
        """The IPv4 routes of ``table``: (destination, prefix length, metric or None)."""
        routes = []
        for data, start, end in await self.dump(RTM_GETROUTE, _RTMSG.pack(AF_INET, 0, 0, 0,
                                                                          0, 0, 0, 0, 0)):
            family, dst_len, _, _, rtm_table = struct.unpack_from("=BBBBB", data, start)
            attrs = _attrs(data, start + _RTMSG.size, end)
            got = attrs.get(RTA_TABLE)
            if family != AF_INET or \
                    (struct.unpack("=I", got)[0] if got else rtm_table) != table:
                continue
            metric = attrs.get(RTA_PRIORITY)
            routes.append((attrs.get(RTA_DST, b"\0\0\0\0"), dst_len,
                           struct.unpack("=I", metric)[0] if metric else None))
        return routes

    async def proxies(self, ifindex: int) -> list[IPv4Address]:
        """The IPv4 proxy ARP entries on ``ifindex``."""
        out = []
        # the kernel dumps proxy entries only when the request's flags ask for them
        for data, start, end in await self.dump(RTM_GETNEIGH, _NDMSG.pack(AF_INET, 0, 0, 0,
                                                                          0, NTF_PROXY, 0)):
            family, _, _, index, _, flags, _ = _NDMSG.unpack_from(data, start)
            dst = _attrs(data, start + _NDMSG.size, end).get(NDA_DST)
            if family == AF_INET and index == ifindex and flags & NTF_PROXY and dst:
                out.append(IPv4Address(dst))
        return out

    async def _run(self, requests: list[Request], failures: list[Failure]) -> None:
        first = self.seq + 1
        parts: list[bytes] = []
        size = 0
        pack = _HDR.pack
        seq = self.seq
        for req in requests:
            seq = (seq + 1) & 0xFFFFFFFF
            parts.append(pack(16 + len(req.body), req.msg_type, NLM_F_REQUEST | req.flags,
                              seq, 0))
            parts.append(req.body)
            size += 16 + len(req.body)
            if size >= self.CHUNK:
                await self._send(b"".join(parts))
                parts.clear()
                size = 0
        barrier = self.seq = (seq + 1) & 0xFFFFFFFF
        parts.append(pack(16, NLMSG_NOOP, NLM_F_REQUEST | NLM_F_ACK, barrier, 0))
        await self._send(b"".join(parts))
        answered: set[int] = set()
        lost = 0  # ENOBUFS: the kernel dropped answers, which cannot be told apart
        deadline = asyncio.get_running_loop().time() + self.TIMEOUT
        while True:
            try:
                data = await self._recv(deadline)
            except TimeoutError:  # late answers carry sequence numbers we forget
                lost = errno.ETIMEDOUT
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                lost = errno.ENOBUFS
                continue
            done = False
            for offset, _, msg_type, got in _messages(data):
                if msg_type == NLMSG_ERROR:
                    if got == barrier:
                        done = True
                    else:
                        index = (got - first) & 0xFFFFFFFF
                        if index < len(requests) and index not in answered:
                            answered.add(index)
                            req = requests[index]
                            code = -struct.unpack_from("=i", data, offset + 16)[0]
                            if code and code not in req.tolerate:
                                failures.append(_failure(req, code))
            if done:
                break
        if lost:  # what was not answered may or may not have been done: failed
            failures += [_failure(r, lost) for i, r in enumerate(requests) if i not in answered]
