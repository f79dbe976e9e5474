"""mipro's filter rules (``wire.vendor.FilterRule``, seed Fig. 4) as iptables rules, built
exactly as they say or not at all.

Used by the FA's visitor firewall (fa/visitorfw.py), the chain-per-owner firewall
(ownerchains.py: the FA's fallback and the co-located MN).  A rule with the log bit is
preceded by an NFLOG rule (group 434), so matches are counted and can be read with any
NFLOG listener (ulogd, `tcpdump -i nflog:434`).  No NFLOG prefix: python-iptables 1.2
crashes saving an NFLOG prefix next to a tcp/udp match; the chain name says whose rule it is.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import iptc

from ...wire.vendor import FilterRule, Verdict

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


def nat_rule(f: FilterRule, home: IPv4Address | None) -> iptc.Rule:
    """Source NAT for a filter rule with the NAT action (seed Fig. 4's NAT index): to its
    address, or to the agent's own outgoing address when that is 0.0.0.0.  Without a
    ``home`` the jump to the chain already selects the visitor (fa/visitorfw.py)."""
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
