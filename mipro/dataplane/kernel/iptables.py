"""The mobile firewall (seed Figs. 2, 4): each visitor's filter rules in its own chain.

Everything lives under mipro's own chains in the filter table, through
python-iptables with explicit commits (never its `easy` module, which
swallows errors):

    FORWARD -> MIPRO-FWD -> MIPRO-V-<home hex>   (from or to one visitor on the link)

A rule with the log bit is preceded by an NFLOG rule (group 434), so matches
are counted and can be read with any NFLOG listener (ulogd,
`tcpdump -i nflog:434`). No NFLOG prefix: python-iptables 1.2 crashes saving
an NFLOG prefix next to a tcp/udp match; the chain name says whose rule it is.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import iptc

from ...wire.vendor import FilterRule, Verdict

TOP = "MIPRO-FWD"
PREFIX = "MIPRO-V-"
NAT_TOP = "MIPRO-NAT"
NAT_PREFIX = "MIPRO-N-"
NFLOG_GROUP = "434"
PROTO_NAMES = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 47: "gre"}
PORT_PROTOCOLS = (6, 17, 132)  # the only protocols iptables matches ports of
ANY_PORT = (0, 65535)


class UnbuildableRule(ValueError):
    """A filter rule iptables cannot express as it says (never built as a wider one)."""


def unbuildable(f: FilterRule) -> str | None:
    """Why ``f`` cannot be built exactly, or None.  Our own stores refuse such rules
    (policy/profile.py), but a home agent of another implementation may send them."""
    for name, (lo, hi) in (("sport", f.sport), ("dport", f.dport)):
        if lo > hi:
            return f"{name} {lo}-{hi} is an empty range"
        if (lo, hi) != ANY_PORT and f.protocol not in PORT_PROTOCOLS:
            return (f"{name} {lo}-{hi} with protocol {f.protocol}: ports need tcp, udp or "
                    "sctp")
    return None


def fail_closed(filters: tuple[FilterRule, ...], deny_all: tuple[FilterRule, ...],
                ) -> tuple[tuple[FilterRule, ...], str | None]:
    """The rules to install: ``filters``, or ``deny_all`` if any of them cannot be built
    exactly (dropping its ports would widen it: "deny proto 0 dport 25" is not "deny
    all"; leaving it out would widen the set), with the reason."""
    for i, f in enumerate(filters):
        if (why := unbuildable(f)) is not None:
            return deny_all, f"filter rule {i + 1} of {len(filters)}: {why}"
    return filters, None


def chain_name(home: IPv4Address) -> str:
    return PREFIX + home.packed.hex()


def nat_chain_name(home: IPv4Address) -> str:
    return NAT_PREFIX + home.packed.hex()


def nat_rule(f: FilterRule, home: IPv4Address | None) -> iptc.Rule:
    """Source NAT for a filter rule with the NAT action (seed Fig. 4's NAT index): to its
    address, or to the agent's own outgoing address when that is 0.0.0.0.  Without a
    ``home`` the jump to the chain already selects the visitor (visitorfw.py)."""
    src = f.source if f.source.prefixlen or home is None else IPv4Network(home)
    r = _rule(src, f.destination, f.protocol, f.sport, f.dport,
              "MASQUERADE" if not int(f.nat_address) else "SNAT", home)
    if int(f.nat_address):
        r.target.to_source = str(f.nat_address)
    return r


def _ports(rng: tuple[int, int]) -> str | None:
    if rng == ANY_PORT:
        return None
    return str(rng[0]) if rng[0] == rng[1] else f"{rng[0]}:{rng[1]}"


def _rule(src: IPv4Network, dst: IPv4Network, proto: int, sport: tuple[int, int],
          dport: tuple[int, int], target: str, home: IPv4Address | None) -> iptc.Rule:
    if (why := unbuildable(FilterRule(protocol=proto, sport=sport, dport=dport))) is not None:
        raise UnbuildableRule(why)
    r = iptc.Rule()
    if src.prefixlen:
        r.src = str(src)
    if dst.prefixlen:
        r.dst = str(dst)
    if proto:
        r.protocol = PROTO_NAMES.get(proto, str(proto))
        if _ports(sport) or _ports(dport):
            m = r.create_match(PROTO_NAMES[proto])
            if _ports(sport):
                m.sport = _ports(sport)
            if _ports(dport):
                m.dport = _ports(dport)
    t = iptc.Target(r, target)
    if target == "NFLOG":
        t.nflog_group = NFLOG_GROUP
    r.target = t
    return r


def rules_for(home: IPv4Address, f: FilterRule) -> list[iptc.Rule]:
    """One filter rule as iptables rules: its direction, and with BOTH the same service
    the other way (addresses swapped, ports kept: SIP to or from the correspondent)."""
    verdict = "DROP" if f.verdict is Verdict.DENY else "ACCEPT"
    ways = [(f.source, f.destination, f.sport, f.dport)]
    if f.both_directions:
        ways.append((f.destination, f.source, f.sport, f.dport))
    out = []
    for src, dst, sport, dport in ways:
        if f.log:
            out.append(_rule(src, dst, f.protocol, sport, dport, "NFLOG", home))
        out.append(_rule(src, dst, f.protocol, sport, dport, verdict, home))
    return out


def chain_counters(table: iptc.Table, name: str) -> list[dict[str, object]]:
    """A chain's rules with their packet counters, for `mipro status`."""
    table.refresh()
    if not table.is_chain(name):
        return []
    out: list[dict[str, object]] = []
    for rule in iptc.Chain(table, name).rules:
        packets, _ = rule.get_counters()
        out.append({"source": rule.src, "destination": rule.dst, "protocol": rule.protocol,
                    "target": rule.target.name, "packets": packets})
    return out


def hook_chain(table: iptc.Table, parent: str, name: str) -> None:
    """Create chain ``name`` if need be and jump to it first from ``parent``; committed."""
    table.refresh()
    if not table.is_chain(name):
        table.create_chain(name)
    jump = iptc.Rule()
    jump.target = iptc.Target(jump, name)
    iptc.Chain(table, parent).insert_rule(jump)
    table.commit()
    table.refresh()


def drop_chain(table: iptc.Table, parent: str, name: str) -> bool:
    """Unhook chain ``name`` from ``parent``, empty and delete it (uncommitted)."""
    if not table.is_chain(name):
        return False
    hook = iptc.Chain(table, parent)
    for rule in list(hook.rules):
        if rule.target.name == name:
            hook.delete_rule(rule)
    chain = iptc.Chain(table, name)
    chain.flush()
    chain.delete()
    return True


class MobileFirewall:
    def __init__(self, interface: str | None, top: str = TOP,
                 hooks: tuple[str, ...] = ("FORWARD",)) -> None:
        """An FA filters what it forwards to and from visitors on ``interface``; a
        co-located MN (``interface`` None, top "MIPRO-MN", hooks INPUT and OUTPUT) filters
        what it sends and receives itself."""
        self.interface = interface
        self.top = top
        self.hooks = hooks
        self.table = iptc.Table(iptc.Table.FILTER)
        self.table.autocommit = False
        self.nat = iptc.Table(iptc.Table.NAT)
        self.nat.autocommit = False
        self.applied: set[IPv4Address] = set()
        self.nat_applied: set[IPv4Address] = set()  # only these touch the nat table

    def _commit(self) -> None:
        self.table.commit()
        self.table.refresh()

    def start(self) -> int:
        """Our top chain, jumped to first from FORWARD; leftovers of an earlier run removed."""
        self.table.refresh()
        removed = self._remove_all()
        top = iptc.Chain(self.table, self.top)
        if not self.table.is_chain(self.top):
            self.table.create_chain(self.top)
        top.flush()
        for hook in self.hooks:
            jump = iptc.Rule()
            jump.target = iptc.Target(jump, self.top)
            iptc.Chain(self.table, hook).insert_rule(jump)
        self._commit()
        if self.interface is not None:  # an FA also translates for visitors (NAT action)
            self.nat.refresh()
            self.nat.create_chain(NAT_TOP)
            jump = iptc.Rule()
            jump.target = iptc.Target(jump, NAT_TOP)
            iptc.Chain(self.nat, "POSTROUTING").insert_rule(jump)
            self.nat.commit()
            self.nat.refresh()
        return removed

    def start_clean(self) -> int:
        """Remove what an earlier run left, and install nothing."""
        self.table.refresh()
        return self._remove_all()

    def _remove_all(self) -> int:
        removed = 0
        self.nat.refresh()
        post = iptc.Chain(self.nat, "POSTROUTING")
        for rule in list(post.rules):
            if rule.target.name == NAT_TOP:
                post.delete_rule(rule)
        nat_ours = [c for c in self.nat.chains
                    if c.name == NAT_TOP or c.name.startswith(NAT_PREFIX)]
        for chain in nat_ours:
            chain.flush()
        for chain in nat_ours:
            chain.delete()
            removed += 1
        self.nat.commit()
        self.nat.refresh()
        for hook in self.hooks:
            chain = iptc.Chain(self.table, hook)
            for rule in list(chain.rules):
                if rule.target.name == self.top:
                    chain.delete_rule(rule)
                    removed += 1
        ours = [c for c in self.table.chains if c.name == self.top or c.name.startswith(PREFIX)]
        for chain in ours:
            chain.flush()
        for chain in ours:
            chain.delete()
            removed += 1
        self._commit()
        return removed

    def apply(self, home: IPv4Address, filters: tuple[FilterRule, ...]) -> None:
        """Idempotent: the visitor's chain is rebuilt with exactly these rules."""
        self.table.refresh()  # others (an operator, another tool) may have changed the table
        self.remove(home, commit=False)
        if not filters:
            self._commit()
            return
        name = chain_name(home)
        chain = self.table.create_chain(name)
        for f in filters:
            for r in rules_for(home, f):
                chain.append_rule(r)
        top = iptc.Chain(self.table, self.top)
        if self.interface is None:  # our own traffic: every packet goes through the chain
            j = iptc.Rule()
            j.target = iptc.Target(j, name)
            top.append_rule(j)
        for direction in ("src", "dst") if self.interface else ():
            j = iptc.Rule()
            setattr(j, direction, str(home))
            if direction == "src":
                j.in_interface = self.interface
            else:
                j.out_interface = self.interface
            j.target = iptc.Target(j, name)
            top.append_rule(j)
        self._commit()
        self.applied.add(home)
        translated = [f for f in filters if f.nat and f.verdict is Verdict.ACCEPT]
        if translated and self.interface is not None:
            self.nat.refresh()
            chain = self.nat.create_chain(nat_chain_name(home))
            for f in translated:
                chain.append_rule(nat_rule(f, home))
            jump = iptc.Rule()
            jump.src = str(home)
            jump.target = iptc.Target(jump, nat_chain_name(home))
            iptc.Chain(self.nat, NAT_TOP).append_rule(jump)
            self.nat.commit()
            self.nat.refresh()
            self.nat_applied.add(home)

    def remove(self, home: IPv4Address, commit: bool = True) -> None:
        name = chain_name(home)
        if commit:
            self.table.refresh()
        self._remove_nat(home)
        drop_chain(self.table, self.top, name)
        self.applied.discard(home)
        if commit:
            self._commit()

    def _remove_nat(self, home: IPv4Address) -> None:
        if home not in self.nat_applied:
            return
        self.nat_applied.discard(home)
        self.nat.refresh()
        if drop_chain(self.nat, NAT_TOP, nat_chain_name(home)):
            self.nat.commit()
            self.nat.refresh()

    def counters(self, home: IPv4Address) -> list[dict[str, object]]:
        return chain_counters(self.table, chain_name(home))

    def stop(self) -> None:
        self.table.refresh()
        self._remove_all()
