#!/usr/bin/env python3
"""A home agent of "another implementation": it accepts every registration and sends the
filter rules it is given as mipro's filter NVSE, however bad (mipro's own stores refuse
ports with a protocol other than tcp/udp/sctp; this one does not).  It programs nothing.

Run inside a lab namespace; one JSON line per reply sent, on stdout.
"""

import argparse
import json
import socket
import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mipro import wire as w  # noqa: E402
from mipro.security import SecurityAssociation, append_authenticator  # noqa: E402


def rule(text: str) -> w.FilterRule:
    """DESTINATION/PROTOCOL/DPORT-LO-DPORT-HI/deny|accept, e.g. 0.0.0.0/0/0/25-25/deny."""
    a, plen, proto, ports, verdict = text.split("/")
    lo, hi = ports.split("-")
    return w.FilterRule(destination=IPv4Network(f"{a}/{plen}"), protocol=int(proto),
                        dport=(int(lo), int(hi)),
                        verdict=w.Verdict.DENY if verdict == "deny" else w.Verdict.ACCEPT)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--address", required=True)
    p.add_argument("--mn-key", required=True, help="hex, SPI 256")
    p.add_argument("--fa", action="append", default=[], help="ADDRESS:SPI:HEXKEY")
    p.add_argument("--filter", action="append", default=[], type=rule)
    p.add_argument("--local-route", action="append", default=[], type=IPv4Network,
                   help="a static route to reach directly on the visited network")
    a = p.parse_args()
    mn_sa = SecurityAssociation(256, bytes.fromhex(a.mn_key))
    fas = {}
    for text in a.fa:
        addr, spi, key = text.split(":")
        fas[IPv4Address(addr)] = SecurityAssociation(int(spi), bytes.fromhex(key))
    routes = tuple(w.StaticRoute(n, IPv4Address(0), 5, False) for n in a.local_route)
    nvse = (w.StaticRoutesExtension(routes).encode() if routes else b"") + \
        w.FilterRulesExtension(tuple(a.filter)).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((a.address, 434))
        print(json.dumps({"listening": a.address}), flush=True)
        while True:
            data, (src, port) = sock.recvfrom(4096)
            try:
                req = w.RegistrationRequest.decode(data)
            except w.DecodeError:
                continue
            reply = w.RegistrationReply.build(
                code=0, lifetime=min(req.lifetime, 600), home_address=req.home_address,
                home_agent=req.home_agent, identification=req.identification).encode()
            if req.flags & w.RequestFlags.D:  # co-located: the NVSE under MN-HA auth
                out = append_authenticator(reply + nvse, w.ExtType.MN_HA_AUTH, mn_sa)
            else:  # through an FA: after MN-HA auth, under FA-HA auth
                out = append_authenticator(reply, w.ExtType.MN_HA_AUTH, mn_sa) + nvse
                if IPv4Address(src) in fas:
                    out = append_authenticator(out, w.ExtType.FA_HA_AUTH,
                                               fas[IPv4Address(src)])
            sock.sendto(out, (src, port))
            print(json.dumps({"replied": src, "home": str(req.home_address),
                              "lifetime": req.lifetime}), flush=True)


if __name__ == "__main__":
    main()
