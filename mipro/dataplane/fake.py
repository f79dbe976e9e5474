"""The fake backend: a fake for every role, recording what would be programmed and
changing nothing (``dataplane.backend = "fake"``).

Each fake has the interface its daemon uses of the role's real dataplane
(``HaDataplane``, ``FaDataplane``, ``MnDataplane``: tests/unit/test_fakes.py holds them to
it), so the daemons and the engines run unchanged above it.  What a daemon reads of the
kernel through ``dataplane.nl`` (an interface's MAC address or addresses) is read; what it
would write is recorded in ``calls``, like everything the role would program.  For unit
tests of the layers above (with failure injection: ``fail_on``), protocol-only runs such as
the registration benchmark's baseline, and trying a configuration on a host without
touching its kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from ..core.addressmap import AddressMap
from ..core.bindings import Binding
from ..core.fa import CacheEntry, Visitor, VisitorKey
from ..wire.vendor import FilterRule, StaticRoute
from .kernel.netlink import Netlink

Call = tuple[str, Any]


def refuse(fail_on: set[IPv4Address], address: IPv4Address) -> None:
    """The kernel's refusal, for a test that asks for one (``fail_on``)."""
    if address in fail_on:
        raise OSError(105, "injected failure (No buffer space available)")


class ReadOnlyNetlink:
    """What a daemon asks of ``dataplane.nl``: reads go to the kernel, writes are recorded
    in ``calls``.  Any other operation is an AttributeError: never a kernel change."""

    def __init__(self, calls: list[Call]) -> None:
        self.calls = calls
        self._nl: Netlink | None = None

    def _kernel(self) -> Netlink:
        if self._nl is None:
            self._nl = Netlink()
        return self._nl

    def close(self) -> None:
        if self._nl is not None:
            self._nl.close()
            self._nl = None

    async def index(self, ifname: str) -> int:
        return await self._kernel().index(ifname)

    async def maybe_index(self, ifname: str) -> int | None:
        return await self._kernel().maybe_index(ifname)

    async def mac(self, ifname: str) -> bytes:
        return await self._kernel().mac(ifname)

    async def addresses(self, ifname: str) -> list[tuple[IPv4Address, int]]:
        return await self._kernel().addresses(ifname)

    async def link_up(self, ifname: str, mtu: int | None = None) -> int:
        self.calls.append(("link_up", ifname))
        return await self._kernel().maybe_index(ifname) or 0

    async def addr_replace(self, ifname: str, address: IPv4Address, prefixlen: int) -> None:
        self.calls.append(("addr_replace", (ifname, address, prefixlen)))

    async def addr_del(self, ifname: str, address: IPv4Address, prefixlen: int) -> None:
        self.calls.append(("addr_del", (ifname, address, prefixlen)))


class RecentCalls(list[tuple[str, IPv4Address]]):
    """A list of the latest calls only: `backend = "fake"` HAs run for long (bench/
    registration.py), and a list of every change grew by one tuple per registration."""

    KEEP = 1024

    def append(self, call: tuple[str, IPv4Address]) -> None:
        super().append(call)
        if len(self) > 2 * self.KEEP:
            del self[:-self.KEEP]


class FakeHaDataplane:
    name = "fake"

    def __init__(self, log: Any = None, fail_on: set[IPv4Address] | None = None) -> None:
        self.bindings: AddressMap[Binding] = AddressMap()  # no stall as it grows
        self.calls: RecentCalls = RecentCalls()
        self.fail_on = fail_on or set()

    async def start(self, loop: Any) -> None:
        self.calls.append(("start", IPv4Address(0)))

    async def cleanup_leftovers(self) -> None:
        pass  # an earlier run left nothing: it changed nothing

    async def stop(self) -> None:
        self.calls.append(("stop", IPv4Address(0)))
        self.bindings.clear()

    def exempt_sources(self, set_name: str) -> None:
        pass  # no kernel flood limiter to tell

    async def install(self, b: Binding) -> None:
        refuse(self.fail_on, b.home_address)
        self.calls.append(("install", b.home_address))
        self.bindings[b.home_address] = b

    async def remove(self, b: Binding) -> None:
        self.calls.append(("remove", b.home_address))
        self.bindings.pop(b.home_address, None)

    async def apply(self, ops: list[tuple[str, Binding]]) -> dict[int, str]:
        failed: dict[int, str] = {}
        for i, (op, b) in enumerate(ops):
            try:
                await (self.install(b) if op == "install" else self.remove(b))
            except OSError as exc:
                failed[i] = str(exc)
        return failed

    def kernel_link(self, b: Binding) -> bool:
        return False

    def counters(self, home: IPv4Address) -> None:
        return None

    udp_tunnels = True  # the engine decides as configured; nothing is carried here

    def from_udp(self, data: bytes, src: IPv4Address, port: int) -> bool:
        return False  # no tunnels here

    def drops(self) -> dict[str, int]:
        return {}


class FakeFaDataplane:
    """The foreign agent's: visitors recorded; it carries IP-in-IP and GRE (the engine
    offers what the configuration says)."""

    name = "fake"
    encapsulations = frozenset({"ipip", "gre"})

    def __init__(self, *, backend: str = "fake", interface: str = "",
                 care_of: IPv4Address | None = None, table: int = 0, rule_priority: int = 0,
                 log: Any = None, fail_on: set[IPv4Address] | None = None,
                 replay: float = 0.0, site_table: int = 0,
                 site_networks: tuple[IPv4Network, ...] = (), site_metric: int = 0,
                 site_interfaces: tuple[str, ...] = ()) -> None:
        self.calls: list[Call] = []
        self.nl = ReadOnlyNetlink(self.calls)
        self.visitors: dict[VisitorKey, Visitor] = {}
        self.forwards: dict[tuple[IPv4Address, IPv4Address], CacheEntry] = {}
        self.fail_on = fail_on or set()

    async def start(self, loop: Any) -> None:
        self.calls.append(("start", None))

    async def cleanup_leftovers(self) -> None:
        pass

    async def stop(self) -> None:
        self.calls.append(("stop", None))
        self.visitors.clear()
        self.forwards.clear()
        self.nl.close()

    def sharing(self, home: IPv4Address) -> list[Visitor]:
        return [v for v in self.visitors.values() if v.home_address == home]

    async def add_visitor(self, v: Visitor, previous: Visitor | None = None) -> None:
        refuse(self.fail_on, v.home_address)
        self.calls.append(("add_visitor", v.key))
        self.visitors[v.key] = v

    async def remove_visitor(self, v: Visitor) -> None:
        self.calls.append(("remove_visitor", v.key))
        self.visitors.pop(v.key, None)

    async def add_forward(self, e: CacheEntry) -> None:
        self.calls.append(("add_forward", e.key))
        self.forwards[e.key] = e

    async def remove_forward(self, e: CacheEntry) -> None:
        self.calls.append(("remove_forward", e.key))
        self.forwards.pop(e.key, None)

    def forwarded(self, key: tuple[IPv4Address, IPv4Address]) -> dict[str, int] | None:
        return None  # no relay: nothing counted

    def idle_deadline(self) -> float | None:
        return None  # no realms: nothing lingers

    async def expire_idle(self, now: float | None = None) -> int:
        return 0

    def realms_status(self) -> list[dict[str, object]]:
        return []

    def address_in_use(self, home: IPv4Address) -> IPv4Address | None:
        return None  # no visited-site host has a visitor's address here

    async def flows_forgotten(self) -> None:
        pass

    def routes_status(self, key: VisitorKey) -> dict[str, object]:
        v = self.visitors.get(key)
        return {"table": None, "fwmark": None, "shared_by": 0,
                "routes": [{"destination": str(r.destination), "metric": r.cost}
                           for r in (v.routes if v else ())],
                "filter_counters": [], "nat_index": None}

    def counters(self, key: VisitorKey) -> None:
        return None

    def drops(self) -> dict[str, int]:
        return {}


class FakeRelay:
    """Where the MN daemon hands its socket's send for UDP tunnels (nothing is sent)."""

    udp_send: Callable[[bytes, tuple[str, int]], None] | None = None


class FakeMnDataplane:
    """The mobile node's: the mode it is in (agent, co-located tunnel, home) recorded."""

    name = "fake"

    def __init__(self, *, backend: str = "fake", interface: str = "",
                 tunnel_interface: str = "", table: int = 0, rule_priority: int = 0,
                 home_address: IPv4Address | None = None,
                 home_agent: IPv4Address | None = None, log: Any = None,
                 tunnel_ports: tuple[tuple[str, int, int], ...] = ()) -> None:
        self.calls: list[Call] = []
        self.nl = ReadOnlyNetlink(self.calls)
        self.relay = FakeRelay()
        self.coa: IPv4Interface | None = None
        self.gateway: IPv4Address | None = None
        self.up = False
        self.own_out = False
        self.tunnel: tuple | None = None  # tunnel_up's arguments while the tunnel is up

    async def start(self, loop: Any) -> None:
        self.calls.append(("start", None))

    async def stop(self) -> None:
        await self.tunnel_down()
        self.calls.append(("stop", None))
        self.nl.close()

    async def attach(self, coa: IPv4Interface, gateway: IPv4Address | None) -> None:
        self.calls.append(("attach", (coa, gateway)))
        self.coa, self.gateway = coa, gateway

    async def detach(self) -> None:
        await self.tunnel_down()
        self.calls.append(("detach", None))
        self.coa = None

    async def tunnel_up(self, encap: str, reverse_tunnel: bool,
                        routes: tuple[StaticRoute, ...] = (),
                        filters: tuple[FilterRule, ...] = ()) -> None:
        self.tunnel = (encap, reverse_tunnel, tuple(routes), tuple(filters))
        self.calls.append(("tunnel_up", self.tunnel))
        self.up = True

    async def tunnel_down(self) -> None:
        if self.up:
            self.calls.append(("tunnel_down", None))
        self.up = False
        self.tunnel = None

    def between_agents(self) -> bool:
        return False  # no routes to change: nothing waits for them

    async def use_agent(self, agent: IPv4Address) -> None:
        await self.tunnel_down()
        self.calls.append(("use_agent", agent))
        self.coa = None

    async def own_address_out(self, on: bool) -> None:
        if on != self.own_out:
            self.calls.append(("own_address_out", on))
        self.own_out = on

    async def leave_agent(self) -> None:
        await self.own_address_out(False)
        self.calls.append(("leave_agent", None))

    async def at_home(self, network: IPv4Network, gateway: IPv4Address) -> None:
        await self.tunnel_down()
        self.calls.append(("at_home", (network, gateway)))
        self.coa = None

    async def away(self) -> None:
        await self.leave_agent()

    async def announce_home(self) -> None:
        self.calls.append(("announce_home", None))

    def from_udp(self, data: bytes, src: IPv4Address, port: int) -> bool:
        return False  # no tunnels here

    def keepalive(self, seq: int) -> None:
        self.calls.append(("keepalive", seq))

    def udp_silence(self) -> float:
        return 0.0  # nothing is carried, so nothing is missed

    def counters(self) -> None:
        return None
