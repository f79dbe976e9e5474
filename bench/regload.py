#!/usr/bin/env python3
"""Closed-loop registration load generator (run inside the generator namespace).

Keeps --outstanding requests in flight, at most one per mobile node; every
mobile node i has its own home address, SPI and key (derived from --seed) and
every request a fresh timestamp.  ``--requests`` larger than ``--n`` cycles
through the mobile nodes (renewals of a small table for long enough to measure).
Requests are built from a per-node template (the fixed part and the
authenticator's header), so the generator is several times cheaper per request
than the home agent; the first one is checked byte for byte against the codec.
``--phase probe`` registers mobile node --probe every 5 ms until one is
answered, and prints when (a home agent's time to its first reply).  Prints one JSON line: rate, latency
percentiles and maximum, lost replies, reply codes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import select
import socket
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mipro.security import SecurityAssociation, append_authenticator  # noqa: E402
from mipro.security.replay import timestamp_identification  # noqa: E402
from mipro.wire import ExtType, RegistrationRequest, RequestFlags  # noqa: E402

BASE = int(IPv4Address("10.128.1.0"))


def mn_key(seed: str, i: int) -> bytes:
    return hashlib.sha256(f"{seed}:{i}".encode()).digest()[:16]


def home_of(i: int) -> IPv4Address:
    return IPv4Address(BASE + i)


class Signer:
    """Registration requests of mobile node i, as the codec would build them."""

    def __init__(self, n: int, seed: str, ha: str, coa: str, lifetime: int) -> None:
        self.ha, self.coa, self.lifetime, self.seed = ha, coa, lifetime, seed
        fixed = bytes((1, int(RequestFlags.T))) + lifetime.to_bytes(2, "big")
        tail = IPv4Address(ha).packed + IPv4Address(coa).packed
        self.heads = [fixed + home_of(i).packed + tail for i in range(n)]
        self.auths = [bytes((ExtType.MN_HA_AUTH, 20)) + (256 + i).to_bytes(4, "big")
                      for i in range(n)]
        self.keys = [mn_key(seed, i) for i in range(n)]

    def request(self, i: int, ident: int) -> bytes:
        msg = self.heads[i] + ident.to_bytes(8, "big") + self.auths[i]
        return msg + hmac.digest(self.keys[i], msg, "md5")

    def check(self) -> None:
        """The template path must produce exactly the codec's bytes."""
        ident = timestamp_identification(time.time())
        req = RegistrationRequest.build(
            flags=RequestFlags.T, lifetime=self.lifetime, home_address=home_of(0),
            home_agent=self.ha, care_of_address=self.coa, identification=ident)
        want = append_authenticator(req.encode(), ExtType.MN_HA_AUTH,
                                    SecurityAssociation(256, mn_key(self.seed, 0)))
        if self.request(0, ident) != want:
            sys.exit("regload: template request differs from the codec's")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ha", required=True)
    p.add_argument("--coa", required=True)
    p.add_argument("--n", type=int, required=True, help="mobile nodes")
    p.add_argument("--requests", type=int, default=0,
                   help="requests to send (default --n: one per mobile node)")
    p.add_argument("--phase", choices=("new", "renew", "dereg", "probe"), required=True)
    p.add_argument("--probe", type=int, default=0, help="probe: the mobile node to register")
    p.add_argument("--since", type=float, default=0.0,
                   help="probe: a time.time() to count from (the home agent's start)")
    p.add_argument("--outstanding", type=int, default=64)
    p.add_argument("--seed", default="bench")
    p.add_argument("--timeout", type=float, default=2.0)
    a = p.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((a.coa, 0))
    sock.setblocking(False)
    dst = (a.ha, 434)
    if a.phase == "probe":
        probe(sock, dst, Signer(a.probe + 1, a.seed, a.ha, a.coa, 3600), a)
        return
    signer = Signer(a.n, a.seed, a.ha, a.coa, 0 if a.phase == "dereg" else 3600)
    signer.check()
    total = a.requests or a.n
    pending: dict[int, float] = {}
    latencies: list[float] = []
    codes: dict[int, int] = {}
    lost = sent = 0
    clock = time.perf_counter
    t0 = last_sweep = clock()
    while sent < total or pending:
        while sent < total and len(pending) < a.outstanding:
            i = sent % a.n
            if i in pending:  # a small table: this node's last request is still out
                break
            data = signer.request(i, timestamp_identification(time.time()))
            pending[i] = clock()
            sock.sendto(data, dst)
            sent += 1
        ready, _, _ = select.select([sock], [], [], 0.05)
        now = clock()
        if ready:
            while True:
                try:
                    reply = sock.recv(2048)
                except BlockingIOError:
                    break
                i = int.from_bytes(reply[4:8], "big") - BASE
                at = pending.pop(i, None)
                if at is None:
                    continue
                latencies.append(now - at)
                codes[reply[1]] = codes.get(reply[1], 0) + 1
        if now - last_sweep > 0.1:
            last_sweep = now
            for i, at in list(pending.items()):
                if now - at > a.timeout:
                    del pending[i]
                    lost += 1
    elapsed = clock() - t0
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 3) \
            if latencies else float("nan")

    print(json.dumps({"phase": a.phase, "n": a.n, "requests": total,
                      "seconds": round(elapsed, 3), "rate": round(total / elapsed, 1),
                      "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0),
                      "lost": lost, "codes": codes, "pid": os.getpid()}))


def probe(sock: socket.socket, dst: tuple[str, int], signer: Signer,
          a: argparse.Namespace) -> None:
    """Until the first answer (for at most --timeout seconds)."""
    deadline = time.time() + a.timeout
    code = None
    while code is None and time.time() < deadline:
        sock.sendto(signer.request(a.probe, timestamp_identification(time.time())), dst)
        if select.select([sock], [], [], 0.005)[0]:
            with contextlib.suppress(OSError):
                code = sock.recv(2048)[1]
    print(json.dumps({"phase": "probe", "code": code,
                      "seconds": round(time.time() - a.since, 3) if code is not None else None}))


if __name__ == "__main__":
    main()
