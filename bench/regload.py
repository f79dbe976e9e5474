#!/usr/bin/env python3
"""Closed-loop registration load generator (run inside the generator namespace).

Keeps --outstanding requests in flight; every mobile node i has its own home
address, SPI and key (derived from --seed) and every request a fresh
timestamp.  Prints one JSON line: rate, latency percentiles, lost replies.
"""

from __future__ import annotations

import argparse
import hashlib
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ha", required=True)
    p.add_argument("--coa", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--phase", choices=("new", "renew", "dereg"), required=True)
    p.add_argument("--outstanding", type=int, default=64)
    p.add_argument("--seed", default="bench")
    p.add_argument("--timeout", type=float, default=2.0)
    a = p.parse_args()

    sas = [SecurityAssociation(256 + i, mn_key(a.seed, i)) for i in range(a.n)]
    lifetime = 0 if a.phase == "dereg" else 3600
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((a.coa, 0))
    sock.setblocking(False)
    dst = (a.ha, 434)
    pending: dict[int, float] = {}
    latencies: list[float] = []
    codes: dict[int, int] = {}
    lost = 0
    nxt = 0
    t0 = time.perf_counter()
    while nxt < a.n or pending:
        while nxt < a.n and len(pending) < a.outstanding:
            now = time.time()
            req = RegistrationRequest.build(
                flags=RequestFlags.T, lifetime=lifetime, home_address=home_of(nxt),
                home_agent=a.ha, care_of_address=a.coa,
                identification=timestamp_identification(now))
            data = append_authenticator(req.encode(), ExtType.MN_HA_AUTH, sas[nxt])
            pending[nxt] = time.perf_counter()
            sock.sendto(data, dst)
            nxt += 1
        ready, _, _ = select.select([sock], [], [], 0.05)
        now = time.perf_counter()
        if ready:
            while True:
                try:
                    reply = sock.recv(2048)
                except BlockingIOError:
                    break
                i = int.from_bytes(reply[4:8], "big") - BASE
                sent = pending.pop(i, None)
                if sent is None:
                    continue
                latencies.append(now - sent)
                codes[reply[1]] = codes.get(reply[1], 0) + 1
        for i, sent in list(pending.items()):
            if now - sent > a.timeout:
                del pending[i]
                lost += 1
    elapsed = time.perf_counter() - t0
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 3) \
            if latencies else float("nan")

    print(json.dumps({"phase": a.phase, "n": a.n, "seconds": round(elapsed, 3),
                      "rate": round(a.n / elapsed, 1), "p50_ms": pct(0.50),
                      "p99_ms": pct(0.99), "lost": lost, "codes": codes, "pid": os.getpid()}))


if __name__ == "__main__":
    main()
