"""Idempotent pyroute2 helpers: 'replace' verbs, errno-aware deletes, own table and rule."""

from __future__ import annotations

import errno
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from pyroute2 import AsyncIPRoute, NetlinkError
from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_GETNEIGH
from pyroute2.netlink.rtnl.ndmsg import ndmsg

NTF_PROXY = 0x08
# what the kernel answers when the object is not there: a delete of it has nothing to do
GONE = frozenset({errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL})


class Netlink:
    """One asyncio rtnetlink socket and the operations mipro needs."""

    def __init__(self) -> None:
        self.ipr = AsyncIPRoute()

    def close(self) -> None:
        self.ipr.close()

    async def index(self, ifname: str) -> int:
        found = await self.ipr.link_lookup(ifname=ifname)
        if not found:
            raise LookupError(f"no interface named {ifname}")
        return found[0]

    async def maybe_index(self, ifname: str) -> int | None:
        found = await self.ipr.link_lookup(ifname=ifname)
        return found[0] if found else None

    async def link_up(self, ifname: str, mtu: int | None = None) -> int:
        idx = await self.index(ifname)
        kwargs = {"mtu": mtu} if mtu else {}
        await self.ipr.link("set", index=idx, state="up", **kwargs)
        return idx

    async def link_del(self, ifname: str) -> bool:
        idx = await self.maybe_index(ifname)
        if idx is None:
            return False
        try:
            await self.ipr.link("del", index=idx)
        except NetlinkError as exc:
            if exc.code not in GONE:
                raise
        return True

    async def links_with_prefix(self, prefix: str) -> list[str]:
        names = [link.get("ifname") async for link in await self.ipr.get_links()]
        return [n for n in names if n and n.startswith(prefix)]

    async def mac(self, ifname: str) -> bytes:
        links = [x async for x in await self.ipr.get_links(await self.index(ifname))]
        link = links[0]
        return bytes.fromhex(link.get("address").replace(":", ""))

    async def addr_replace(self, ifname: str, address: IPv4Address, prefixlen: int) -> None:
        await self.ipr.addr("replace", index=await self.index(ifname), address=str(address),
                      prefixlen=prefixlen)

    async def addr_del(self, ifname: str, address: IPv4Address, prefixlen: int) -> None:
        idx = await self.maybe_index(ifname)
        if idx is None:
            return
        try:
            await self.ipr.addr("del", index=idx, address=str(address), prefixlen=prefixlen)
        except NetlinkError as exc:
            if exc.code not in GONE:
                raise

    async def addresses(self, ifname: str) -> list[tuple[IPv4Address, int]]:
        idx = await self.maybe_index(ifname)
        if idx is None:
            return []
        return [(IPv4Address(a.get("address")), a["prefixlen"])
                async for a in await self.ipr.get_addr(index=idx, family=2)]

    async def all_addresses(self) -> set[IPv4Address]:
        """Every IPv4 address of this host (namespace), on any link."""
        return {IPv4Address(a.get("address")) async for a in await self.ipr.get_addr(family=2)}

    # --- routes and rules in mipro's own table -----------------------------------

    async def route_replace(self, dst: IPv4Network, table: int, *, oif: str | None = None,
                      gateway: IPv4Address | None = None, src: IPv4Address | None = None,
                      metric: int | None = None) -> None:
        kwargs: dict[str, object] = {"dst": str(dst), "table": table}
        if oif is not None:
            kwargs["oif"] = await self.index(oif)
        if gateway is not None:
            kwargs["gateway"] = str(gateway)
        elif oif is not None:
            kwargs["scope"] = 253  # a device route: link scope, so gateways resolve through it
        if src is not None:
            kwargs["prefsrc"] = str(src)
        if metric is not None:
            kwargs["priority"] = metric
        await self.ipr.route("replace", **kwargs)

    async def route_del(self, dst: IPv4Network, table: int, metric: int | None = None) -> bool:
        # RT_SCOPE_NOWHERE: match the route whatever its scope (as `ip route del` does)
        kwargs: dict[str, object] = {"dst": str(dst), "table": table, "scope": 255}
        if metric is not None:
            kwargs["priority"] = metric
        try:
            await self.ipr.route("del", **kwargs)
            return True
        except NetlinkError as exc:
            if exc.code in GONE:
                return False
            raise

    async def table_routes(self, table: int) -> list[tuple[str, int | None]]:
        out = []
        async for r in await self.ipr.route("dump", table=table, family=2):
            if r.get("table") != table:
                continue
            dst = r.get("dst") or "0.0.0.0"
            out.append((f"{dst}/{r['dst_len']}", r.get("priority")))
        return out

    async def flush_table(self, table: int) -> int:
        n = 0
        for dst, metric in await self.table_routes(table):
            n += await self.route_del(IPv4Network(dst), table, metric)
        return n

    async def rule_ensure(self, table: int, priority: int, **match: object) -> None:
        try:
            await self.ipr.rule("add", table=table, priority=priority, **match)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise

    async def rule_del(self, table: int, priority: int, **match: object) -> bool:
        try:
            await self.ipr.rule("del", table=table, priority=priority, **match)
            return True
        except NetlinkError as exc:
            if exc.code in GONE:
                return False
            raise

    async def rules_for_table_range(self, first: int, last: int) -> list[dict]:
        return [{"table": r.get("table"), "priority": r.get("priority"), "src": r.get("src")}
                async for r in await self.ipr.get_rules(family=2)
                if first <= (r.get("table") or 0) <= last]

    # --- proxy ARP ----------------------------------------------------------------

    async def proxy_add(self, ifname: str, address: IPv4Address) -> None:
        try:
            await self.ipr.neigh("add", dst=str(address), ifindex=await self.index(ifname),
                           flags=NTF_PROXY)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise

    async def proxy_del(self, ifname: str, address: IPv4Address) -> bool:
        idx = await self.maybe_index(ifname)
        if idx is None:
            return False
        try:
            await self.ipr.neigh("del", dst=str(address), ifindex=idx, flags=NTF_PROXY)
            return True
        except NetlinkError as exc:
            if exc.code in GONE:
                return False
            raise

    async def proxies(self, ifname: str) -> list[IPv4Address]:
        idx = await self.maybe_index(ifname)
        if idx is None:
            return []
        out = []
        msg = ndmsg()
        msg["family"] = 2
        msg["flags"] = NTF_PROXY  # the kernel dumps proxy entries only when asked so
        async for n in await self.ipr.nlm_request(msg, msg_type=RTM_GETNEIGH,
                                                  msg_flags=NLM_F_DUMP | NLM_F_REQUEST):
            if n.get("ifindex") == idx and n.get("flags", 0) & NTF_PROXY:
                out.append(IPv4Address(n.get("dst")))
        return out


def set_sysctl(name: str, value: str) -> str | None:
    """Write /proc/sys/<name>; returns the previous value (None if unchanged)."""
    path = Path("/proc/sys") / name.replace(".", "/")
    old = path.read_text().strip()
    if old == value:
        return None
    path.write_text(value)
    return old
