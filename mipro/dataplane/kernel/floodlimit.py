"""Kernel-side limits on unauthenticated registration traffic, per source, installed and
removed by the daemon that owns them.

A flood of datagrams to port 434 fills the daemon's socket queue long before userspace
can tell good from bad, so a real mobile node's requests are dropped at the queue with
everything else.  Token buckets in the kernel drop the excess of each source before it
is queued; known peers (FAs with keys, care-of addresses and NAPT sources of bindings,
accepted visitors) skip the buckets, so their renewals are never limited.

Two mechanisms, because the two agents read requests differently:

``SourceLimiter`` (home agent, and any UDP socket bound to an address): iptables
  ``hashlimit`` per source IP in the *raw* table, before conntrack and routing, so a
  spoofed flood neither costs a route lookup nor fills the conntrack table::

      PREROUTING -[-d ADDR -p udp --dport 434]-> MIPRO-LIMIT
      PREROUTING -[-i IF -p icmp --icmp-type 10]-> MIPRO-LIMIT   (solicit_interface)
      MIPRO-LIMIT: -p icmp -m limit S/s -j RETURN;  -p icmp -j DROP
                   -p udp -m u32 ! --u32 "<first payload byte>=1,4" -j DROP     (shape)
                   -p udp -m u32 --u32 "<first payload byte>=1" -m length
                       --length 0:51 -j DROP        (a request shorter than its fixed part)
                   -p udp -m set --match-set mipro-limit-ok src -j RETURN
                   -p udp -m hashlimit --hashlimit-above R/s --hashlimit-mode srcip
                       --hashlimit-name mipro-limit -j DROP
                   [-p udp -m limit --limit A/s -j RETURN;  -p udp -j DROP]   (aggregate)

``LinkLimiter`` (foreign agent's visited link): its requests come off an AF_PACKET socket
  bound to ETH_P_IP, which the kernel serves from ``ptype_base`` *before* IP input and so
  before any iptables hook: nothing in INPUT or PREROUTING keeps a frame from it.  The
  netfilter *netdev ingress* hook runs earlier still (after tc ingress, before the
  ptype_base handlers), and nftables there can meter per Ethernet source address::

      table netdev mipro-limit-IF {
        set exempt { type ether_addr }
        set sources { type ether_addr; flags dynamic,timeout; timeout E; size N }
        set solicitors { type ether_addr; flags dynamic,timeout; timeout E; size N }
        chain ingress { type filter hook ingress device IF priority -500
          udp dport 434 ip daddr { ADDRS } @th,64,8 != 1 counter drop          (shape)
          udp dport 434 ip daddr { ADDRS } udp length < 32 counter drop
          udp dport 434 ip daddr { ADDRS } ether saddr @exempt counter accept
          udp dport 434 update @sources { ether saddr limit rate over R/second burst B }
              counter drop
          [udp dport 434 limit rate over A/second burst AB counter drop]   (aggregate)
          icmp type router-solicitation update @solicitors { ether saddr limit rate over
              SR/second } counter drop
          icmp type router-solicitation limit rate over S/second counter drop } }

  nftables is driven through libnftables (nftables.py), one atomic transaction per
  change; the daemon never runs ``nft``.  (tc ingress would need eBPF
  bytecode for per-source state: this kernel has no act_police or matchall, and u32
  keeps no per-source state.)

The shape rules (``Limits.shape``) drop, before any bucket, what the daemon would
discard anyway: a first payload byte it does not read, a request shorter than its
fixed part (nothing to answer to).  Rules count what they drop
(``counters()``), so `mipro status` can show it.

Both are idempotent: ``start`` replaces whatever an earlier run left with exactly the
wanted state (exemptions included), ``stop`` removes exactly the objects named here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

import iptc
from pyroute2.ipset import AsyncIPSet

from .ipset import MAX_MEMBERS, destroy_sets, set_member
from .iptables import commit, remove_chains, set_match
from .nftables import Nft, NftError

CHAIN = "MIPRO-LIMIT"
COUNTERS = ("shape_dropped", "exempt", "source_dropped", "aggregate_dropped",
            "solicit_dropped")
EXEMPT_SET = "mipro-limit-ok"
HASHLIMIT_NAME = "mipro-limit"
NFT_TABLE_PREFIX = "mipro-limit-"
SOLICITATION = "10"
REGISTRATION_REQUEST, TUNNEL_DATA = 1, 4
# a registration request's fixed part: anything shorter the daemon could not answer
# either (a longer one that is poorly formed still earns its 134, within the budget)
MIN_REQUEST = 24
FIRST_PAYLOAD_BYTE = "0>>22&0x3C@8>>24"  # u32: the byte after the UDP header


@dataclass(frozen=True)
class Limits:
    """Token buckets, in packets.  ``rate`` per source above which the excess is dropped;
    ``aggregate_rate`` for all sources that are not exempt together (0: none), which
    bounds what a flood from many spoofed sources costs the daemon at the price of
    sharing that budget between a new mobile node and the flood; solicitations are
    limited per source (``solicit_source_rate``, link limiter only) and together."""

    rate: int = 50
    burst: int = 100
    aggregate_rate: int = 0
    aggregate_burst: int = 0
    solicit_rate: int = 20
    solicit_burst: int = 40
    solicit_source_rate: int = 5
    expire: int = 10  # seconds an idle source's bucket is remembered
    size: int = 65536  # sources remembered at once (a full hashlimit table drops new ones)
    shape: bool = True  # drop, before any bucket, what cannot be a message for the daemon

    def __post_init__(self) -> None:
        for name in ("rate", "burst", "solicit_rate", "solicit_burst",
                     "solicit_source_rate", "expire", "size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.aggregate_rate < 0 or self.aggregate_burst < 0:
            raise ValueError("aggregate_rate and aggregate_burst must not be negative")


# --- home agent: iptables hashlimit per source address --------------------------------


def _udp434(rule: iptc.Rule, port: int) -> None:
    rule.protocol = "udp"
    rule.create_match("udp").dport = str(port)


def _target(rule: iptc.Rule, name: str) -> iptc.Rule:
    rule.target = iptc.Target(rule, name)
    return rule


class SourceLimiter:
    """Per-source-IP limits on UDP ``port`` to ``address`` (and, with
    ``solicit_interface``, on ICMP router solicitations arriving there)."""

    def __init__(self, address: IPv4Address, limits: Limits = Limits(), port: int = 434,
                 solicit_interface: str | None = None, chain: str = CHAIN,
                 exempt_set: str = EXEMPT_SET, hashlimit_name: str = HASHLIMIT_NAME,
                 table: str = iptc.Table.RAW, hook: str = "PREROUTING",
                 types: tuple[int, ...] = (REGISTRATION_REQUEST, TUNNEL_DATA)) -> None:
        """``types``: the first payload bytes the daemon reads (with Limits.shape, other
        datagrams are dropped: the HA reads requests and RFC 3519 tunnel data)."""
        self.address = IPv4Address(address)
        self.types = types
        self.limits = limits
        self.port = port
        self.solicit_interface = solicit_interface
        self.chain = chain
        self.exempt_set = exempt_set
        self.hashlimit_name = hashlimit_name
        self.table_name = table
        self.hook = hook
        self.ipset: AsyncIPSet | None = None
        self.exempted: set[IPv4Address] = set()

    def _table(self) -> iptc.Table:
        table = iptc.Table(self.table_name)
        table.autocommit = False
        table.refresh()
        return table

    async def _ipset(self) -> AsyncIPSet:
        if self.ipset is None:
            self.ipset = AsyncIPSet()
            await self.ipset.setup_endpoint()
        return self.ipset

    async def start(self, exempt: Iterable[IPv4Address] = ()) -> None:
        """Install (replacing what an earlier run left): set first, rules refer to it."""
        self._remove_rules()
        ipset = await self._ipset()
        await destroy_sets(ipset, self.exempt_set)
        await ipset.create(self.exempt_set, stype="hash:ip", maxelem=MAX_MEMBERS)
        self.exempted.clear()
        await self.add_exempt(exempt)
        self._install_rules()

    def _rules(self) -> list[tuple[str, iptc.Rule]]:
        """MIPRO-LIMIT's rules in order, each with the counter it feeds."""
        lim = self.limits
        out: list[tuple[str, iptc.Rule]] = []
        icmp_ok = iptc.Rule()
        icmp_ok.protocol = "icmp"
        m = icmp_ok.create_match("limit")
        m.limit, m.limit_burst = f"{lim.solicit_rate}/sec", str(lim.solicit_burst)
        out.append(("solicit_passed", _target(icmp_ok, "RETURN")))
        icmp_drop = iptc.Rule()
        icmp_drop.protocol = "icmp"
        out.append(("solicit_dropped", _target(icmp_drop, "DROP")))
        if lim.shape:  # not a request nor tunnel data; a request too short to be one
            kind = iptc.Rule()
            _udp434(kind, self.port)
            kind.create_match("u32").u32 = \
                f"! {FIRST_PAYLOAD_BYTE}={','.join(str(t) for t in self.types)}"
            out.append(("shape_dropped", _target(kind, "DROP")))
            short = iptc.Rule()
            _udp434(short, self.port)
            short.create_match("u32").u32 = f"{FIRST_PAYLOAD_BYTE}={REGISTRATION_REQUEST}"
            short.create_match("length").length = f"0:{20 + 8 + MIN_REQUEST - 1}"
            out.append(("shape_dropped", _target(short, "DROP")))
        exempt = iptc.Rule()
        _udp434(exempt, self.port)
        set_match(exempt, self.exempt_set, "src")
        out.append(("exempt", _target(exempt, "RETURN")))
        per_source = iptc.Rule()
        _udp434(per_source, self.port)
        h = per_source.create_match("hashlimit")
        h.hashlimit_above = f"{lim.rate}/sec"
        h.hashlimit_burst = str(lim.burst)
        h.hashlimit_mode = "srcip"
        h.hashlimit_name = self.hashlimit_name
        h.hashlimit_htable_expire = str(lim.expire * 1000)
        h.hashlimit_htable_max = str(lim.size)
        h.hashlimit_htable_size = str(min(lim.size, 65536))
        out.append(("source_dropped", _target(per_source, "DROP")))
        if lim.aggregate_rate:
            together = iptc.Rule()
            _udp434(together, self.port)
            m = together.create_match("limit")
            m.limit = f"{lim.aggregate_rate}/sec"
            m.limit_burst = str(lim.aggregate_burst or lim.aggregate_rate)
            out.append(("aggregate_passed", _target(together, "RETURN")))
            rest = iptc.Rule()
            _udp434(rest, self.port)
            out.append(("aggregate_dropped", _target(rest, "DROP")))
        return out

    def _install_rules(self) -> None:
        table = self._table()
        chain = table.create_chain(self.chain)
        for _, rule in self._rules():
            chain.append_rule(rule)
        hook = iptc.Chain(table, self.hook)
        if self.solicit_interface:
            jump = iptc.Rule()
            jump.in_interface = self.solicit_interface
            jump.protocol = "icmp"
            jump.create_match("icmp").icmp_type = SOLICITATION
            hook.insert_rule(_target(jump, self.chain))
        jump = iptc.Rule()
        jump.dst = str(self.address)
        _udp434(jump, self.port)
        hook.insert_rule(_target(jump, self.chain))
        commit(table)

    def _remove_rules(self) -> bool:
        return remove_chains(self._table(), (self.hook,), (self.chain,))[1] > 0

    async def stop(self) -> None:
        """Remove the jumps, the chain and the set (rules first: they use the set)."""
        self._remove_rules()
        ipset = await self._ipset()
        await destroy_sets(ipset, self.exempt_set)
        ipset.close()
        self.ipset = None
        self.exempted.clear()

    async def add_exempt(self, addresses: Iterable[IPv4Address]) -> None:
        """Peers whose datagrams skip the limits (already exempt: fine)."""
        ipset = await self._ipset()
        for a in addresses:
            a = IPv4Address(a)
            await set_member(ipset, True, self.exempt_set, a)
            self.exempted.add(a)

    async def remove_exempt(self, addresses: Iterable[IPv4Address]) -> None:
        ipset = await self._ipset()
        for a in addresses:
            a = IPv4Address(a)
            await set_member(ipset, False, self.exempt_set, a)
            self.exempted.discard(a)

    async def set_exempt(self, addresses: Iterable[IPv4Address]) -> None:
        """Exactly these exempt (e.g. after a reload or a restart's reconciliation)."""
        wanted = {IPv4Address(a) for a in addresses}
        await self.remove_exempt(self.exempted - wanted)
        await self.add_exempt(wanted - self.exempted)

    def counters(self) -> dict[str, int]:
        """Packets per counter (COUNTERS; several rules may feed one), {} when not
        installed."""
        table = self._table()
        if not table.is_chain(self.chain):
            return {}
        out = dict.fromkeys(COUNTERS, 0)
        for rule in iptc.Chain(table, self.chain).rules:  # by content: any run's rules
            names = {m.name for m in rule.matches}
            drop = rule.target.name == "DROP"
            name = ("solicit_dropped" if rule.protocol == "icmp" and drop else
                    "shape_dropped" if "u32" in names else
                    "exempt" if "set" in names else
                    "source_dropped" if "hashlimit" in names else
                    "aggregate_dropped" if drop and rule.protocol == "udp" else None)
            if name is not None:
                out[name] += rule.get_counters()[0]
        return out


# --- foreign agent: nftables netdev ingress meter per Ethernet source ------------------


def _mac(mac: bytes | str) -> str:
    if isinstance(mac, bytes):
        if len(mac) != 6:
            raise ValueError(f"not a MAC address: {mac.hex()}")
        return mac.hex(":")
    parts = mac.lower().split(":")
    if len(parts) != 6 or not all(len(p) == 2 and int(p, 16) >= 0 for p in parts):
        raise ValueError(f"not a MAC address: {mac!r}")
    return ":".join(parts)


class LinkLimiter:
    """Per-source-MAC limits on UDP ``port`` and ICMP router solicitations arriving on
    ``interface``, at its netfilter ingress hook (before packet sockets see them)."""

    def __init__(self, interface: str, limits: Limits = Limits(), port: int = 434,
                 priority: int = -500, addresses: Iterable[IPv4Address] = ()) -> None:
        """``addresses``: the destinations the daemon takes requests for (its address on
        the link, its care-of addresses, 255.255.255.255); only those are limited, so a
        co-located visitor's UDP 434 through the FA (e.g. RFC 3519 tunnel data) is not.
        Empty: every UDP 434 arriving on the link."""
        self.interface = interface
        self.addresses = tuple(sorted({IPv4Address(a) for a in addresses}))
        self.limits = limits
        self.port = port
        self.priority = priority
        self.table = NFT_TABLE_PREFIX + interface
        self.nft: Nft | None = None
        self.exempted: set[str] = set()

    def _nft(self) -> Nft:
        if self.nft is None:
            self.nft = Nft()
        return self.nft

    def _rules(self) -> list[tuple[str, str]]:
        """The ingress chain's rules in order, each with the counter it feeds."""
        lim = self.limits
        udp = f"udp dport {self.port}"
        if self.addresses:
            udp += f" ip daddr {{ {', '.join(str(a) for a in self.addresses)} }}"
        out: list[tuple[str, str]] = []
        if lim.shape:  # the FA reads only registration requests off the link
            out += [("shape_dropped", f"{udp} @th,64,8 != {REGISTRATION_REQUEST} counter drop"),
                    ("shape_dropped", f"{udp} udp length < {8 + MIN_REQUEST} counter drop")]
        out += [
            ("exempt", f"{udp} ether saddr @exempt counter accept"),
            ("source_dropped", f"{udp} update @sources {{ ether saddr limit rate over "
                               f"{lim.rate}/second burst {lim.burst} packets }} counter drop"),
        ]
        if lim.aggregate_rate:
            out.append(("aggregate_dropped",
                        f"{udp} limit rate over {lim.aggregate_rate}/second burst "
                        f"{lim.aggregate_burst or lim.aggregate_rate} packets counter drop"))
        out += [
            ("solicit_dropped", f"icmp type router-solicitation update @solicitors {{ ether "
                                f"saddr limit rate over {lim.solicit_source_rate}/second burst "
                                f"{lim.solicit_source_rate} packets }} counter drop"),
            ("solicit_dropped", f"icmp type router-solicitation limit rate over "
                                f"{lim.solicit_rate}/second burst {lim.solicit_burst} packets "
                                f"counter drop"),
        ]
        return out

    def _ruleset(self) -> str:
        lim = self.limits
        meter = f"type ether_addr; flags dynamic,timeout; timeout {lim.expire}s; " \
                f"size {lim.size};"
        body = "\n    ".join(rule for _, rule in self._rules())
        return (f"table netdev {self.table} {{\n"
                f"  set exempt {{ type ether_addr; }}\n"
                f"  set sources {{ {meter} }}\n"
                f"  set solicitors {{ {meter} }}\n"
                f"  chain ingress {{\n"
                f"    type filter hook ingress device \"{self.interface}\" "
                f"priority {self.priority}; policy accept;\n"
                f"    {body}\n  }}\n}}\n")

    async def start(self, exempt: Iterable[bytes | str] = ()) -> None:
        """One transaction: an earlier run's table (if any) goes, ours comes."""
        macs = sorted({_mac(m) for m in exempt})
        script = f"table netdev {self.table} {{}}\ndelete table netdev {self.table}\n"
        script += self._ruleset()
        if macs:
            script += f"add element netdev {self.table} exempt {{ {', '.join(macs)} }}\n"
        self._nft().run(script)
        self.exempted = set(macs)

    async def stop(self) -> None:
        nft = self._nft()
        nft.run(f"table netdev {self.table} {{}}\ndelete table netdev {self.table}")
        nft.close()
        self.nft = None
        self.exempted.clear()

    async def add_exempt(self, macs: Iterable[bytes | str]) -> None:
        new = sorted({_mac(m) for m in macs} - self.exempted)
        if new:  # adding an element that is there is no error for nft's "add"
            self._nft().run(f"add element netdev {self.table} exempt {{ {', '.join(new)} }}")
            self.exempted.update(new)

    async def remove_exempt(self, macs: Iterable[bytes | str]) -> None:
        gone = sorted({_mac(m) for m in macs} & self.exempted)
        if gone:
            self._nft().run(f"delete element netdev {self.table} exempt "
                            f"{{ {', '.join(gone)} }}")
            self.exempted.difference_update(gone)

    async def set_exempt(self, macs: Iterable[bytes | str]) -> None:
        wanted = {_mac(m) for m in macs}
        await self.remove_exempt(self.exempted - wanted)
        await self.add_exempt(wanted - self.exempted)

    def counters(self) -> dict[str, int]:
        """Packets per rule, as SourceLimiter.counters ({} when not installed)."""
        try:
            out = self._nft().run(f"list chain netdev {self.table} ingress",
                                  json_output=True)
        except NftError:
            return {}
        counts = dict.fromkeys(COUNTERS, 0)
        for item in json.loads(out).get("nftables", []):  # by content: any run's rules
            expr = item.get("rule", {}).get("expr")
            if expr is None:
                continue
            text = json.dumps(expr)
            name = ("exempt" if '"accept"' in text else
                    "solicit_dropped" if '"icmp"' in text else
                    "source_dropped" if '"@sources"' in text else
                    "shape_dropped" if '"th"' in text or '"length"' in text else
                    "aggregate_dropped")
            counts[name] += next((e["counter"]["packets"] for e in expr if "counter" in e), 0)
        return counts


# --- command line: for benchmarks and tests (`ip netns exec NS python -m ...`) ----------


def _limits(a: argparse.Namespace) -> Limits:
    return Limits(rate=a.rate, burst=a.burst, aggregate_rate=a.aggregate_rate,
                  aggregate_burst=a.aggregate_burst, solicit_rate=a.solicit_rate,
                  solicit_burst=a.solicit_burst, expire=a.expire, size=a.size,
                  shape=not a.no_shape)


async def _cli(a: argparse.Namespace) -> dict:
    if a.kind == "source":
        limiter: SourceLimiter | LinkLimiter = SourceLimiter(
            IPv4Address(a.target), _limits(a), solicit_interface=a.solicit_interface)
        exempt: list = [IPv4Address(x) for x in a.exempt]
    else:
        limiter = LinkLimiter(a.target, _limits(a),
                              addresses=[IPv4Address(x) for x in a.address])
        exempt = list(a.exempt)
    if a.action == "install":
        await limiter.start(exempt)
    elif a.action == "remove":
        await limiter.stop()
    elif a.action == "exempt":
        await limiter.add_exempt(exempt)
    counters = limiter.counters()
    if isinstance(limiter, SourceLimiter) and limiter.ipset is not None:
        limiter.ipset.close()
    return {"action": a.action, "counters": counters}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="install or remove mipro's flood limits in "
                                            "this network namespace")
    p.add_argument("action", choices=("install", "remove", "exempt", "counters"))
    p.add_argument("kind", choices=("source", "link"),
                   help="source: iptables hashlimit for an address; link: nftables "
                        "netdev ingress for an interface")
    p.add_argument("target", help="the address (source) or interface (link)")
    p.add_argument("--exempt", action="append", default=[],
                   help="an address (source) or MAC (link); repeatable")
    p.add_argument("--solicit-interface")
    p.add_argument("--address", action="append", default=[],
                   help="link: a destination the daemon takes requests for; repeatable")
    p.add_argument("--no-shape", action="store_true",
                   help="keep datagrams that cannot be messages for the daemon")
    d = Limits()
    for name in ("rate", "burst", "aggregate_rate", "aggregate_burst", "solicit_rate",
                 "solicit_burst", "expire", "size"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    a = p.parse_args(argv)
    try:
        print(json.dumps(asyncio.run(_cli(a))))
    except (NftError, iptc.IPTCError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
