#!/usr/bin/env python3
"""Send one (possibly bad) Registration Request with scapy and print the answer as JSON.

Run inside a lab namespace: the "attacker" or a misconfigured mobile node.
"""

import argparse
import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scapy.config import conf  # noqa: E402
from scapy.layers.inet import IP, UDP  # noqa: E402
from scapy.packet import Raw  # noqa: E402
from scapy.sendrecv import send  # noqa: E402

from mipro import wire as w  # noqa: E402
from mipro.security import SecurityAssociation, append_authenticator  # noqa: E402
from mipro.security.replay import timestamp_identification  # noqa: E402


def build(a) -> bytes:
    if a.raw:
        return bytes.fromhex(a.raw)
    ident = a.ident if a.ident is not None else timestamp_identification(time.time() + a.skew)
    exts = []
    if a.nai:
        exts.append(w.Nai(a.nai))
    if a.udp_tunnel:
        exts.append(w.UdpTunnelRequest())
    if a.challenge:
        exts.append(w.MnFaChallenge(bytes.fromhex(a.challenge)))
    req = w.RegistrationRequest.build(
        flags=w.RequestFlags(a.flags), lifetime=a.lifetime, home_address=a.home,
        home_agent=a.home_agent or a.ha, care_of_address=a.coa, identification=ident,
        extensions=exts)
    data = append_authenticator(req.encode(), w.ExtType.MN_HA_AUTH,
                                SecurityAssociation(a.spi, bytes.fromhex(a.key)))
    data += bytes.fromhex(a.append)  # after the authenticator: covered by nothing
    return data[: a.truncate] if a.truncate else data


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ha", required=True)
    p.add_argument("--home-agent", help="home agent field, if not the destination")
    p.add_argument("--home", default="0.0.0.0")
    p.add_argument("--coa", default="0.0.0.0")
    p.add_argument("--key", default="00" * 16, help="hex")
    p.add_argument("--spi", type=int, default=256)
    p.add_argument("--flags", type=int, default=0)
    p.add_argument("--lifetime", type=int, default=300)
    p.add_argument("--ident", type=lambda s: int(s, 0))
    p.add_argument("--skew", type=float, default=0.0, help="clock skew in seconds")
    p.add_argument("--truncate", type=int)
    p.add_argument("--raw", help="send these bytes instead")
    p.add_argument("--udp-tunnel", action="store_true", help="add a UDP Tunnel Request")
    p.add_argument("--challenge", help="hex: answer a NAPT challenge with this")
    p.add_argument("--nai", help="add an NAI extension (before the authenticator)")
    p.add_argument("--append", default="", help="hex: bytes after the authenticator")
    p.add_argument("--src", help="spoof this IP source (then no answer is awaited)")
    p.add_argument("--sport", type=int, default=43400)
    p.add_argument("--dport", type=int, default=434)
    p.add_argument("--timeout", type=float, default=2.0)
    a = p.parse_args()
    conf.verb = 0
    data = build(a)
    out = {"sent": data.hex(), "reply": None, "code": None}
    if a.src:
        send(IP(src=a.src, dst=a.ha) / UDP(sport=a.sport, dport=a.dport) / Raw(data))
        print(json.dumps(out))
        return
    # scapy crafts and sends; a plain socket on the source port takes the answer
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", a.sport))
        sock.settimeout(a.timeout)
        send(IP(dst=a.ha) / UDP(sport=a.sport, dport=a.dport) / Raw(data))
        try:
            payload, _ = sock.recvfrom(4096)
        except TimeoutError:
            payload = None
    if payload is not None:
        out["reply"] = payload.hex()
        reply = w.RegistrationReply.decode(payload)
        out["code"] = reply.code
        challenge = reply.find(w.MnFaChallenge)
        out["challenge"] = challenge.challenge.hex() if challenge else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
