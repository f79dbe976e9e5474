"""ipsets: through pyroute2 (``AsyncIPSet``: a probe, creation and removal of our sets, one
member at a time), and as hand-built nfnetlink requests for an ``RtBatch`` (many members in
one write: the HA's admission and exemption sets, rtbatch.py).

An ipset lets a rule match a whole group of addresses, so a member joining or leaving is
one set change instead of a rewrite of an iptables table, whose cost grows with the table.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Awaitable, Callable, Mapping
from ipaddress import IPv4Address
from typing import Any, Generic, Protocol, TypeVar

from pyroute2.ipset import AsyncIPSet

from .rtbatch import AF_INET, NETLINK_NETFILTER, Request, RtBatch, rta

MAX_MEMBERS = 1 << 20  # members of one of our sets (the kernel's default is 65,536)
PROBE = "mipro-p-probe"

# ipset over nfnetlink (the layouts of linux/netfilter/ipset/ip_set.h)
NFNL_SUBSYS_IPSET = 6
IPSET_CMD_ADD, IPSET_CMD_DEL = 9, 10
IPSET_PROTOCOL_MIN = 6
IPSET_ATTR_PROTOCOL, IPSET_ATTR_SETNAME, IPSET_ATTR_DATA = 1, 2, 7
IPSET_ATTR_IP, IPSET_ATTR_IPADDR_IPV4 = 1, 1
IPSET_ERR_EXIST = 4103  # adding a member twice, deleting one that is not there
NLA_F_NESTED, NLA_F_NET_BYTEORDER = 0x8000, 0x4000


async def ipset_available(probe: str = PROBE) -> str | None:
    """None if this kernel has ipsets (hash:ip), else why not."""
    ipset = AsyncIPSet()
    try:
        await ipset.setup_endpoint()
        with contextlib.suppress(Exception):  # a leftover probe
            await ipset.destroy(probe)
        await ipset.create(probe, stype="hash:ip")
        await ipset.destroy(probe)
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means: do without ipsets
        return repr(exc)
    finally:
        ipset.close()


async def destroy_sets(ipset: AsyncIPSet, prefix: str) -> int:
    """Destroy the ipsets whose names start with ``prefix`` (no rule may use them)."""
    names = [msg.get_attr("IPSET_ATTR_SETNAME") async for msg in await ipset.list()]
    doomed = [n for n in names if n and n.startswith(prefix)]
    for name in doomed:
        await ipset.destroy(name)
    return len(doomed)


async def set_member(ipset: AsyncIPSet, add: bool, name: str, address: IPv4Address) -> None:
    """Add ``address`` to ipset ``name`` or delete it; already there (a reconciled restart)
    or not there (a home address being shared) is fine, anything else is raised."""
    try:
        await (ipset.add if add else ipset.delete)(name, str(address))
    except Exception as exc:  # noqa: BLE001 - pyroute2's NetlinkError carries the code
        if getattr(exc, "code", None) != IPSET_ERR_EXIST:
            raise


async def move_members(ipset: AsyncIPSet, add: bool, address: IPv4Address,
                       member_of: Mapping[tuple[IPv4Address, Any], Any],
                       set_name: Callable[[Any], str]) -> None:
    """``address`` into or out of every set it is a member of by any key: ``member_of``
    maps keys (address, ...) to a set id, ``set_name`` an id to its set's name (the FA's
    visitors, keyed by home address and MAC, when two come to share a home address)."""
    for key, sid in member_of.items():
        if key[0] == address:
            await set_member(ipset, add, set_name(sid), address)


def member_request(add: bool, name: str, address: IPv4Address) -> Request:
    """Add or delete ``address`` in ipset ``name``, as a request for an
    RtBatch(NETLINK_NETFILTER); already there or not there is no failure."""
    ip = rta(IPSET_ATTR_IP | NLA_F_NESTED,
             rta(IPSET_ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER, address.packed))
    body = struct.pack("=BBH", AF_INET, 0, 0)
    body += rta(IPSET_ATTR_PROTOCOL, bytes((IPSET_PROTOCOL_MIN,)))
    body += rta(IPSET_ATTR_SETNAME, name.encode() + b"\0")
    body += rta(IPSET_ATTR_DATA | NLA_F_NESTED, ip)
    cmd = IPSET_CMD_ADD if add else IPSET_CMD_DEL
    return Request(body, NFNL_SUBSYS_IPSET << 8 | cmd, 0, frozenset({IPSET_ERR_EXIST}),
                   f"{name} {'add' if add else 'del'}", subject=address)


class Group(Protocol):
    """What SetGroups asks of a group: its set's name and a count of its members."""

    @property
    def set_name(self) -> str: ...

    members: int


G = TypeVar("G", bound=Group)


class SetGroups(Generic[G]):
    """Members grouped by id, each group with an ipset of its members' addresses: a member
    joining or leaving a group that exists is one set change, whatever the number of
    members (the FA's filter policies, fa/visitorfw.py, and route profiles,
    fa/routeprofiles.py).  Members are keyed (address, ...); an address that several keys
    hold can be unlisted: it is then in no set (rules match it another way).  Subclasses
    create a group (which enters ``groups``) and say how one goes (``_drop``), once its
    last member has left."""

    def __init__(self) -> None:
        self.ipset = AsyncIPSet()
        self.groups: dict[str, G] = {}  # id -> group
        self.member_of: dict[tuple[IPv4Address, Any], str] = {}
        self.unlisted: set[IPv4Address] = set()
        # joins and leaves on nfnetlink directly (0.05 ms, pyroute2's 0.4: a visitor's
        # join is on a move's way to its first datagram); opened by open_batch()
        self.nf: RtBatch | None = None

    def open_batch(self) -> None:
        if self.nf is None:
            self.nf = RtBatch(NETLINK_NETFILTER)

    def close_batch(self) -> None:
        if self.nf is not None:
            self.nf.close()
            self.nf = None

    async def _member(self, add: bool, name: str, address: IPv4Address) -> None:
        if self.nf is None:
            await set_member(self.ipset, add, name, address)
        else:
            await self.nf.run([member_request(add, name, address)])

    async def _join(self, key: tuple[IPv4Address, Any], gid: str | None,
                    create: Callable[[str], Awaitable[G]]) -> G | None:
        """Afterwards ``key`` is a member of group ``gid`` (``create(gid)`` if need be), or
        of none; the group it leaves goes if it was its last member."""
        old = self.member_of.get(key)
        if old == gid:
            return self.groups.get(gid) if gid else None
        group = None
        if gid is not None:
            group = self.groups.get(gid) or await create(gid)
            if key[0] not in self.unlisted:
                await self._member(True, group.set_name, key[0])
            group.members += 1
            self.member_of[key] = gid
        else:
            self.member_of.pop(key, None)
        if old is not None:
            await self._leave(self.groups[old], key)
        return group

    async def leave(self, key: tuple[IPv4Address, Any]) -> None:
        old = self.member_of.pop(key, None)
        if old is not None:
            await self._leave(self.groups[old], key)

    def group_of(self, key: tuple[IPv4Address, Any]) -> G | None:
        gid = self.member_of.get(key)
        return self.groups.get(gid) if gid else None

    async def unlist(self, address: IPv4Address) -> None:
        """``address`` is several members' now: out of every set."""
        self.unlisted.add(address)
        await move_members(self.ipset, False, address, self.member_of, self._set_name)

    async def relist(self, address: IPv4Address) -> None:
        self.unlisted.discard(address)
        await move_members(self.ipset, True, address, self.member_of, self._set_name)

    def _set_name(self, gid: str) -> str:
        return self.groups[gid].set_name

    async def _leave(self, group: G, key: tuple[IPv4Address, Any]) -> None:
        if key[0] not in self.unlisted:
            await self._member(False, group.set_name, key[0])
        group.members -= 1
        if group.members <= 0 and not self._keep_empty(group):
            await self._drop(group)

    def _keep_empty(self, group: G) -> bool:
        """A group its last member left stays (to be joined again) if this says so."""
        return False

    async def _drop(self, group: G) -> None:
        raise NotImplementedError
