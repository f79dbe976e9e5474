"""A short tour of the codec: what the HA sends an FA in a route-optimizing reply.

Run by `make demo` until the lab scenarios take over.
"""

from __future__ import annotations

import time
from ipaddress import IPv4Address, IPv4Network

from .. import wire as w
from ..security import SecurityAssociation, append_authenticator, timestamp_identification
from .decode import _print_text


def main() -> None:
    mn_ha = SecurityAssociation(256, b"mn-ha shared key")
    fa_ha = SecurityAssociation(300, b"fa-ha shared key")
    request = w.RegistrationRequest.build(
        flags=w.RequestFlags.T, lifetime=1800, home_address="10.0.0.1",
        home_agent="192.0.2.1", care_of_address="198.51.100.9",
        identification=timestamp_identification(time.time()),
        extensions=[w.Nai("mn1@home.example")])
    rrq = append_authenticator(request.encode(), w.ExtType.MN_HA_AUTH, mn_ha)
    print("== Registration Request from the mobile node ==")
    _print_text(w.decode_udp434(rrq).describe())

    routes = [
        w.StaticRoute(IPv4Network("10.0.0.0/16"), IPv4Address("192.0.2.1"), 10, True),
        w.StaticRoute(IPv4Network("198.51.100.0/24"), IPv4Address(0), 5, False),
    ]
    rules = [
        w.FilterRule(IPv4Network("10.0.0.1/32"), IPv4Network("203.0.113.5/32"), 17,
                     w.Verdict.DENY, both_directions=True, dport=(5060, 5061)),
        w.FilterRule(IPv4Network("10.0.0.1/32"), IPv4Network("198.51.100.20/32"), 6,
                     w.Verdict.ACCEPT, log=True, dport=(80, 80)),
    ]
    reply = w.RegistrationReply.build(code=0, lifetime=1800, home_address="10.0.0.1",
                                      home_agent="192.0.2.1",
                                      identification=request.identification)
    body = append_authenticator(reply.encode(), w.ExtType.MN_HA_AUTH, mn_ha)
    body += b"".join(e.encode() for e in w.StaticRoutesExtension.chunked(routes))
    body += b"".join(e.encode() for e in w.FilterRulesExtension.chunked(rules))
    rrp = append_authenticator(body, w.ExtType.FA_HA_AUTH, fa_ha)
    print("\n== Registration Reply from the home agent, routes and filters for the FA ==")
    _print_text(w.decode_udp434(rrp).describe())
    print(f"\nhex: {rrp.hex()}")
    print("\n`mipro decode HEX` prints any message like this.")


if __name__ == "__main__":
    main()
