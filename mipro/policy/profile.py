"""A subscriber's static routes and filter rules, as written in a subscriber store.

    routes = [{ destination = "198.51.100.0/24", via = "local", cost = 5 },
              { destination = "0.0.0.0/0", via = "tunnel", cost = 100 }]
    filters = [{ destination = "203.0.113.10/32", protocol = "udp", dport = "5060-5061",
                 action = "deny", both_directions = true },
               { destination = "198.51.100.20/32", protocol = "tcp", dport = 80,
                 action = "accept", log = true }]
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ..wire.vendor import ANY, FilterRule, StaticRoute, Verdict

PROTOCOLS = {"any": 0, "icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "sctp": 132}
PORT_PROTOCOLS = (6, 17, 132)


class ProfileError(ValueError):
    """One problem, with the key it is about (relative to the route or filter)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem


def _net(value: Any, key: str) -> IPv4Network:
    try:
        return IPv4Network(str(value))
    except ValueError as exc:
        raise ProfileError(key, f"{value!r} is not a prefix like 10.0.0.0/8 ({exc})") from None


def _ports(value: Any, key: str) -> tuple[int, int]:
    if value is None:
        return (0, 65535)
    text = str(value)
    lo, _, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise ProfileError(key, f"{value!r} is not a port or a range like 5060-5061") from None
    if not 0 <= a <= b <= 65535:
        raise ProfileError(key, f"{value!r} is not a port range within 0-65535")
    return (a, b)


def parse_route(item: dict[str, Any]) -> StaticRoute:
    unknown = set(item) - {"destination", "via", "cost", "router"}
    if unknown:
        raise ProfileError(sorted(unknown)[0], "unknown key")
    via = item.get("via", "tunnel")
    if via not in ("tunnel", "local"):
        raise ProfileError("via", f"{via!r} is not \"tunnel\" or \"local\"")
    cost = item.get("cost", 10)
    if not isinstance(cost, int) or isinstance(cost, bool) or not 0 <= cost <= 65535:
        raise ProfileError("cost", f"{cost!r} is not an integer 0-65535")
    if "destination" not in item:
        raise ProfileError("destination", "missing")
    try:
        router = IPv4Address(item.get("router", "0.0.0.0"))
    except ValueError as exc:
        raise ProfileError("router", str(exc)) from None
    return StaticRoute(_net(item["destination"], "destination"), router, cost, via == "tunnel")


def parse_filter(item: dict[str, Any]) -> FilterRule:
    unknown = set(item) - {"source", "destination", "protocol", "sport", "dport", "action",
                           "log", "nat", "both_directions"}
    if unknown:
        raise ProfileError(sorted(unknown)[0], "unknown key")
    proto = item.get("protocol", "any")
    if isinstance(proto, str):
        if proto not in PROTOCOLS:
            raise ProfileError("protocol", f"{proto!r} is not one of {', '.join(PROTOCOLS)}")
        proto = PROTOCOLS[proto]
    if not isinstance(proto, int) or not 0 <= proto <= 255:
        raise ProfileError("protocol", f"{proto!r} is not an IP protocol number")
    action = item.get("action", "accept")
    if action not in ("accept", "deny"):
        raise ProfileError("action", f"{action!r} is not \"accept\" or \"deny\"")
    for key in ("sport", "dport"):  # iptables has no ports for others: never dropped
        if key in item and proto not in PORT_PROTOCOLS:
            raise ProfileError(key, f"ports need protocol tcp, udp or sctp, not "
                                    f"{item.get('protocol', 'any')!r}")
    nat = item.get("nat")
    nat_address = IPv4Address(0)
    if nat not in (None, False):
        try:
            nat_address = IPv4Address(0 if nat is True else nat)
        except ValueError as exc:
            raise ProfileError("nat", str(exc)) from None
    return FilterRule(
        source=_net(item.get("source", "0.0.0.0/0"), "source") if "source" in item else ANY,
        destination=_net(item.get("destination", "0.0.0.0/0"), "destination"),
        protocol=proto, verdict=Verdict.DENY if action == "deny" else Verdict.ACCEPT,
        log=bool(item.get("log", False)), nat=nat not in (None, False),
        both_directions=bool(item.get("both_directions", False)),
        sport=_ports(item.get("sport"), "sport"), dport=_ports(item.get("dport"), "dport"),
        nat_address=nat_address)
