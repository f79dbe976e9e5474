"""The home agent's kernel state: one route per binding in mipro's table, proxy ARP,
and the tunnel towards each care-of address (kernel links or the userspace relay).

The kernel backend has two ways to tunnel (``ha.kernel_tunnels``): a link per
care-of address (``per-care-of``: per-tunnel counters; the kernel's cost per
link grows with the number of links), or one ipip and one gre link in
collect-metadata mode for all (``shared``): each binding's route then says
where to encapsulate (a lightweight-tunnel route), so a binding costs one
route whatever their number.  A shared link takes in tunnelled packets from
any source, so a raw-table rule admits them only from registered care-of
addresses (ipset ``mipro-coa``), which is what the per-care-of links did.

A home agent may serve several addresses (``addresses``: active/active
redundancy, a virtual address per group).  A binding's tunnel ends on the
address its MN registered with (``Binding.home_agent``): the outer source of
what goes to the MN, the local end of its link; tunnelled packets are taken in
on any served address, still only from the binding's care-of address.
"""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import iptc
from pyroute2.ipset import AsyncIPSet

from ..core.addressmap import AddressMap
from ..core.bindings import Binding
from .kernel import rtbatch
from .kernel.ipset import MAX_MEMBERS, destroy_sets, member_request
from .kernel.iptables import hook_chain, remove_chains, set_match
from .kernel.netlink import Netlink, set_sysctl
from .link.arp import ArpSender
from .relay.relay import UDP_MTU, UserspaceTunnel

LINK_PREFIX = "miph-"  # the HA's links; the FA's are "mipf-" (one host may run both)
IFINDEX_BASE = 0x4D490000
SHARED_LINKS = {"ipip": f"{LINK_PREFIX}ipip", "gre": f"{LINK_PREFIX}gre"}
COA_SET = "mipro-coa"
COA_CHAIN = "MIPRO-TUN-IN"  # raw PREROUTING: tunnelled packets only from care-of addresses
IP_PROTOCOLS = {"ipip": "4", "gre": "47"}
STOP_SLICE = 8192  # bindings removed per batch at stop


def _tag(requests: list[rtbatch.Request], start: int, tag: int) -> None:
    """Mark the requests added since ``start`` as serving operation ``tag``."""
    for j in range(start, len(requests)):
        requests[j].tag = tag


# a per-care-of link's name says which served address is its local end: none for the
# first (ha.address), a character for each other; IFNAMSIZ leaves room for one only
# ("miph-g" + 8 hex digits + 1 = 15); the lengths keep the four forms apart
LOCAL_MARKS = "123456789abcdefghijklmnopqrstuvwxyz"


def link_name(coa: IPv4Address, encap: str, local_index: int = 0) -> str:
    mark = LOCAL_MARKS[local_index - 1] if local_index else ""
    return f"{LINK_PREFIX}{'g' if encap == 'gre' else ''}{coa.packed.hex()}{mark}"


def link_counters(name: str) -> dict[str, int] | None:
    """A kernel tunnel's packet counters (shared by the MNs behind one care-of address),
    from sysfs, which shows the daemon's own network namespace."""
    stats = Path("/sys/class/net") / name / "statistics"
    try:
        read = {f: int((stats / f).read_text()) for f in
                ("tx_packets", "tx_bytes", "rx_packets", "rx_bytes")}
    except (OSError, ValueError):
        return None
    return {"packets_out": read["tx_packets"], "bytes_out": read["tx_bytes"],
            "packets_in": read["rx_packets"], "bytes_in": read["rx_bytes"]}


class HaDataplane:
    def __init__(self, *, backend: str, address: IPv4Address, home_interface: str,
                 home_network: IPv4Network, table: int, rule_priority: int,
                 tunnel_interface: str, log: Any, proxy_arp: str = "per-binding",
                 kernel_tunnels: str = "per-care-of",
                 addresses: tuple[IPv4Address, ...] = ()) -> None:
        """``address``: ha.address; ``addresses``: every address served (it among them),
        each a tunnel endpoint for the bindings registered with it."""
        self.name = backend
        self.address = address
        self.addresses = tuple(dict.fromkeys((address, *addresses)))
        if len(self.addresses) > len(LOCAL_MARKS) + 1:
            raise RuntimeError(f"{len(self.addresses)} home agent addresses: the dataplane "
                               f"names tunnels for at most {len(LOCAL_MARKS) + 1}")
        self.home_if = home_interface
        self.home_net = home_network
        self.table = table
        self.prio = rule_priority
        self.tun_if = tunnel_interface
        # "per-binding": one proxy neighbour entry per away MN (exact; the kernel keeps
        # them in 16 hash buckets, so adding one costs O(entries)).  "interface": the home
        # link's proxy_arp sysctl answers for every address routed away from it, i.e. the
        # MNs in mipro's table (flat cost, for very large HAs).
        self.per_binding_proxy = proxy_arp == "per-binding"
        self.proxy_sysctl_was: str | None = None
        self.log = log
        self.nl = Netlink()
        self.bindings: AddressMap[Binding] = AddressMap()  # no stall as it grows
        self.links: dict[str, list[int]] = {}  # kernel backend: name -> [users, ifindex]
        # interface indexes we give our tunnel links, far above the kernel's own (it counts
        # up from 1), so a link and the routes through it go in one netlink batch
        self.next_ifindex = IFINDEX_BASE
        self.relay: UserspaceTunnel | None = None
        self.home_mac = b""
        self.arp: ArpSender | None = None
        self.batch = rtbatch.RtBatch()
        self.tun_index = 0
        self.home_index = 0
        self.want_shared = backend == "kernel" and kernel_tunnels == "shared"
        self.shared: dict[str, int] = {}  # shared links: kind -> ifindex
        self.coa_users: dict[IPv4Address, int] = {}
        self.ipset: AsyncIPSet | None = None
        self.set_batch: rtbatch.RtBatch | None = None  # admission set changes, batched
        # the kernel flood limiter's set of exempt peers (kernel/floodlimit.py): a binding's
        # source (its FA, care-of address or NAPT) is in it while a binding uses it
        self.exempt_set: str | None = None
        self.source_users: dict[IPv4Address, int] = {}

    # --- lifecycle ------------------------------------------------------------------

    async def start(self, loop: asyncio.AbstractEventLoop | None) -> None:
        old = set_sysctl("net.ipv4.ip_forward", "1")  # an HA forwards; proxy ARP needs it
        if old is not None:
            self.log("sysctl", name="net.ipv4.ip_forward", value=1, was=old)
        # answer ARP for away mobile nodes at once, not after a random 0-0.8 s delay
        set_sysctl(f"net.ipv4.neigh.{self.home_if}.proxy_delay", "0")
        if not self.per_binding_proxy:
            self.proxy_sysctl_was = set_sysctl(f"net.ipv4.conf.{self.home_if}.proxy_arp", "1")
        self.home_mac = await self.nl.mac(self.home_if)
        self.arp = ArpSender(self.home_if, self.home_mac)
        self.home_index = await self.nl.index(self.home_if)
        await self.cleanup_leftovers()
        # the userspace relay carries every tunnel with the userspace backend, and UDP
        # tunnels (RFC 3519, MNs behind a NAPT) with either: the kernel has no such links
        relay = UserspaceTunnel(self.tun_if, self.address, self._peer_of, self._accept,
                                raw=self.name == "userspace", also_local=self.addresses)
        try:
            relay.open()
        except OSError as exc:
            if self.name == "userspace":
                raise
            self.log("udp-tunnels-unavailable", "warning", reason=f"no TUN device ({exc})")
        else:
            self.relay = relay
            # one device for every tunnel: sized for the UDP ones, so no outer fragments
            self.tun_index = await self.nl.link_up(self.tun_if, UDP_MTU)
            set_sysctl(f"net.ipv4.conf.{self.tun_if}.rp_filter", "0")
            if loop is not None:
                relay.start_reading(loop)
        if self.want_shared:
            await self._open_shared_links()
        await self.nl.rule_ensure(self.table, self.prio)

    async def _open_shared_links(self) -> None:
        """The collect-metadata links and the care-of address filter; if this kernel cannot,
        a link per care-of address instead (logged)."""
        requests = []
        for kind, name in SHARED_LINKS.items():
            self.next_ifindex += 1
            requests.append(rtbatch.metadata_link(kind, name, self.next_ifindex))
            self.shared[kind] = self.next_ifindex
        try:
            await self.batch.run(requests)
        except rtbatch.BatchError as exc:
            self.log("shared-tunnels-unavailable", "warning", reason=str(exc))
            await self.batch.run([rtbatch.delete_link(index, SHARED_LINKS[kind])
                                  for kind, index in self.shared.items()])
            self.shared = {}
            return
        for name in SHARED_LINKS.values():
            set_sysctl(f"net.ipv4.conf.{name}.rp_filter", "0")
        self.ipset = AsyncIPSet()
        await self.ipset.setup_endpoint()
        await self.ipset.create(COA_SET, stype="hash:ip", maxelem=MAX_MEMBERS)
        self._netfilter_batch()
        raw = iptc.Table(iptc.Table.RAW)
        raw.autocommit = False
        rules = []
        for address in self.addresses:
            for proto in IP_PROTOCOLS.values():
                admit = iptc.Rule()
                admit.dst, admit.protocol = str(address), proto
                set_match(admit, COA_SET, "src")
                admit.target = iptc.Target(admit, "RETURN")
                drop = iptc.Rule()
                drop.dst, drop.protocol = str(address), proto
                drop.target = iptc.Target(drop, "DROP")
                rules += [admit, drop]
        hook_chain(raw, "PREROUTING", COA_CHAIN, rules)
        self.log("shared-tunnels", links=",".join(SHARED_LINKS.values()))

    async def _close_shared_links(self) -> None:
        raw = iptc.Table(iptc.Table.RAW)
        raw.autocommit = False
        remove_chains(raw, ("PREROUTING",), (COA_CHAIN,))
        if self.ipset is None:
            self.ipset = AsyncIPSet()
            await self.ipset.setup_endpoint()
        await destroy_sets(self.ipset, COA_SET)
        self.ipset.close()
        self.ipset = None
        if self.set_batch is not None:
            self.set_batch.close()
            self.set_batch = None

    async def cleanup_leftovers(self) -> None:
        """Remove whatever an earlier run left: our links (the routes through them go with
        them), table, rule and proxies; after a kill -9 at a million bindings that is a
        million routes, so dumped and deleted in batches."""
        links = [n for n in await self.nl.links_with_prefix(LINK_PREFIX) if await self.nl.link_del(n)]
        if self.name == "kernel":
            await self._close_shared_links()
        left = [rtbatch.delete_route(dst, length, self.table, metric)
                for dst, length, metric in await self.batch.table_routes(self.table)]
        while await self.nl.rule_del(self.table, self.prio):
            pass
        home = self.home_index or await self.nl.maybe_index(self.home_if)  # `mipro cleanup`
        proxies = [p for p in await self.batch.proxies(home) if p in self.home_net] \
            if home else []
        left += [rtbatch.proxy(False, p, home or 0) for p in proxies]
        await self.batch.run(left)
        routes = len(left) - len(proxies)
        if routes or links or proxies:
            self.log("reconciled-leftovers", routes=routes, links=len(links),
                     proxies=len(proxies))

    async def stop(self) -> None:
        """Remove exactly what we added."""
        bindings = list(self.bindings.values())
        for first in range(0, len(bindings), STOP_SLICE):  # not a million requests at once
            await self.apply([("remove", b) for b in bindings[first:first + STOP_SLICE]])
        if self.shared:
            await self.batch.run([rtbatch.delete_link(index, SHARED_LINKS[kind])
                                  for kind, index in self.shared.items()])
            await self._close_shared_links()
        self.batch.close()
        if self.set_batch is not None:
            self.set_batch.close()
            self.set_batch = None
        if self.proxy_sysctl_was is not None:
            set_sysctl(f"net.ipv4.conf.{self.home_if}.proxy_arp", self.proxy_sysctl_was)
        await self.nl.rule_del(self.table, self.prio)
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        self.nl.close()
        if self.arp is not None:
            self.arp.close()

    # --- bindings -------------------------------------------------------------------

    def exempt_sources(self, set_name: str) -> None:
        """From now on, keep the sources of bindings in ipset ``set_name`` (changes go in
        the same netfilter batch as the tunnel admissions)."""
        self.exempt_set = set_name
        self._netfilter_batch()

    def _netfilter_batch(self) -> rtbatch.RtBatch:
        """The batch socket for set changes, opened by the first user (shared links'
        admissions, flood-limit exemptions)."""
        if self.set_batch is None:
            self.set_batch = rtbatch.RtBatch(rtbatch.NETLINK_NETFILTER)
        return self.set_batch

    def _exempt(self, source: IPv4Address | None, change: int,
                admissions: list[rtbatch.Request]) -> None:
        if self.exempt_set is None or source is None:
            return
        users = self.source_users.get(source, 0) + change
        if users > 0:
            self.source_users[source] = users
            if users == change:
                admissions.append(member_request(True, self.exempt_set, source))
        elif self.source_users.pop(source, None) is not None:
            admissions.append(member_request(False, self.exempt_set, source))

    async def install(self, b: Binding) -> None:
        await self.apply([("install", b)])

    async def remove(self, b: Binding) -> None:
        await self.apply([("remove", b)])

    async def apply(self, ops: list[tuple[str, Binding]]) -> dict[int, str]:
        """Install and remove bindings, in order, with one netlink batch for all of them
        (with the kernel backend, the tunnel links they need too).  Returns the
        operations the kernel refused, by index into ``ops``, with the reason: the
        caller must not acknowledge those (and removes what they may have left)."""
        requests: list[rtbatch.Request] = []
        admissions: list[rtbatch.Request] = []  # shared links: care-of addresses in/out
        announce: dict[int, IPv4Address] = {}
        created: list[str] = []
        exempts: list[rtbatch.Request] = []  # the flood limiter's peers: never fail an op
        for i, (op, b) in enumerate(ops):
            mark = len(requests), len(admissions)
            if op == "install":
                old = self.bindings.get(b.home_address)
                same_tunnel = old is not None and \
                    (old.care_of_address, old.encapsulation, self._local_of(old)) == \
                    (b.care_of_address, b.encapsulation, self._local_of(b))
                self.bindings[b.home_address] = b
                if old is None or old.source != b.source:
                    self._exempt(b.source, +1, exempts)
                    if old is not None:
                        self._exempt(old.source, -1, exempts)
                if same_tunnel:
                    continue  # a renewal: the route and proxy entry are already in place
                if old is not None:
                    self._release_link(old, requests, admissions)
                oif, encap = self.tun_index, None
                if self.kernel_link(b) and self.shared:
                    oif = self.shared["gre" if b.encapsulation == "gre" else "ipip"]
                    encap = (self._local_of(b), b.care_of_address)
                    self._admit(b.care_of_address, +1, admissions)
                elif self.kernel_link(b):
                    oif = self._acquire_link(b, requests, created)
                # each encap route has a fib_info of its own, which the kernel finds by a
                # hash that ignores the encapsulation: spread them by metric, or adding
                # one walks all of them (per binding 1.7 -> 3.9 ms from 1,000 to 10,000)
                metric = (int(b.home_address) & 0xFFFF) + 1 if encap else 0
                requests.append(rtbatch.route(True, b.home_address, self.table, oif, encap,
                                              metric))
                if b.home_address in self.home_net:
                    if self.per_binding_proxy:
                        requests.append(rtbatch.proxy(True, b.home_address, self.home_index))
                    if old is None:
                        announce[i] = b.home_address
            else:
                current = self.bindings.pop(b.home_address, None)
                if current is not None:
                    self._exempt(current.source, -1, exempts)
                requests.append(rtbatch.route(False, b.home_address, self.table))
                if b.home_address in self.home_net and self.per_binding_proxy:
                    requests.append(rtbatch.proxy(False, b.home_address, self.home_index))
                if current is not None:
                    self._release_link(current, requests, admissions)
            _tag(requests, mark[0], i)
            _tag(admissions, mark[1], i)
        failed: dict[int, str] = {}
        if admissions or exempts:  # before the routes: a tunnel is up once packets get in
            try:
                await self._netfilter_batch().run(admissions + exempts)
            except rtbatch.BatchError as exc:
                for f in exc.failures:
                    if f.tag is None:
                        self.log("flood-limit-exemption-failed", "warning", reason=f.reason)
                    else:
                        failed[f.tag] = f.reason  # type: ignore[index]
        try:
            await self.batch.run(requests)
        except rtbatch.BatchError as exc:  # forget links that were not created
            gone = {f.what.removeprefix("link ") for f in exc.failures}
            for name in gone & set(created):
                self.links.pop(name, None)
            for f in exc.failures:
                failed.setdefault(f.tag, f.reason)  # type: ignore[arg-type]
        finally:
            for name in created:
                if name in self.links:
                    set_sysctl(f"net.ipv4.conf.{name}.rp_filter", "0")
        for i, address in announce.items():
            if i not in failed:
                self._arp().announce(address)
        return failed

    def _arp(self) -> ArpSender:
        if self.arp is None:
            raise RuntimeError("HaDataplane: bindings applied before start()")
        return self.arp

    @property
    def udp_tunnels(self) -> bool:
        """RFC 3519 tunnels go through the relay; a kernel backend without TUN has none."""
        return self.relay is not None

    def kernel_link(self, b: Binding) -> bool:
        return self.name == "kernel" and b.encapsulation != "udp"

    def _local_of(self, b: Binding) -> IPv4Address:
        """The binding's end of its tunnel: the address its MN registered with (one no
        longer served, from an old state file: ha.address)."""
        return b.home_agent if b.home_agent in self.addresses else self.address

    def _link_name(self, b: Binding) -> str:
        return link_name(b.care_of_address, b.encapsulation,
                         self.addresses.index(self._local_of(b)))

    def _acquire_link(self, b: Binding, requests: list[rtbatch.Request],
                      created: list[str]) -> int:
        """The binding's tunnel link, created in this batch if it is the first user."""
        name = self._link_name(b)
        if name not in self.links:
            self.next_ifindex += 1
            kind = "gre" if b.encapsulation == "gre" else "ipip"
            requests.append(rtbatch.tunnel_link(kind, name, self._local_of(b),
                                                b.care_of_address, self.next_ifindex))
            self.links[name] = [0, self.next_ifindex]
            created.append(name)
        self.links[name][0] += 1
        return self.links[name][1]

    def _admit(self, coa: IPv4Address, change: int, admissions: list[rtbatch.Request]) -> None:
        """Shared links: tunnelled packets are taken in from a care-of address while a
        binding uses it."""
        users = self.coa_users.get(coa, 0) + change
        if users > 0:
            self.coa_users[coa] = users
            if users == change:
                admissions.append(member_request(True, COA_SET, coa))
        elif self.coa_users.pop(coa, None) is not None:
            admissions.append(member_request(False, COA_SET, coa))

    def _release_link(self, b: Binding, requests: list[rtbatch.Request],
                      admissions: list[rtbatch.Request]) -> None:
        if not self.kernel_link(b):
            return
        if self.shared:
            self._admit(b.care_of_address, -1, admissions)
            return
        name = self._link_name(b)
        if name in self.links:
            self.links[name][0] -= 1
            if self.links[name][0] <= 0:
                _, index = self.links.pop(name)
                requests.append(rtbatch.delete_link(index, name))

    # --- userspace relay callbacks -------------------------------------------------

    def _peer_of(self, src: IPv4Address, dst: IPv4Address):
        b = self.bindings.get(dst)
        if b is None:
            return None
        if b.encapsulation == "udp":  # to the NAPT's public address and port
            return ((b.source, b.source_port), "udp", dst, self._local_of(b))
        return (b.care_of_address, b.encapsulation, dst, self._local_of(b))

    def from_udp(self, data: bytes, src: IPv4Address, port: int) -> bool:
        """RFC 3519 tunnel data that arrived on the registration socket."""
        return self.relay is not None and self.relay.from_udp(data, src, port, self._accept_udp)

    def _accept_udp(self, src: IPv4Address, port: int, inner_src: IPv4Address,
                    inner_dst: IPv4Address) -> IPv4Address | None:
        """Only from the NAPT address and port the MN registered through."""
        b = self.bindings.get(inner_src)
        if b is None or b.encapsulation != "udp" or (b.source, b.source_port) != (src, port):
            return None
        return inner_src

    def _accept(self, outer_src: IPv4Address, inner_src: IPv4Address, inner_dst: IPv4Address):
        """Reverse tunnel: only from the registered care-of address of that home address."""
        b = self.bindings.get(inner_src)
        if b is None or b.care_of_address != outer_src:
            return None
        return inner_src

    def counters(self, home: IPv4Address) -> dict[str, int] | None:
        b = self.bindings.get(home)
        if self.name == "kernel" and b is not None and b.encapsulation != "udp":
            if self.shared:
                return None  # one link for all: no per-binding counters
            return link_counters(self._link_name(b))
        if self.relay is None:
            return None
        c = self.relay.stats.per_key.get(home)
        return c.as_dict() if c else {"packets_out": 0, "bytes_out": 0, "packets_in": 0,
                                      "bytes_in": 0}

    def drops(self) -> dict[str, int]:
        return self.relay.drops("no_binding") if self.relay is not None else {}
