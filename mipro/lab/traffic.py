"""TCP test traffic for the lab: a sink that echoes a digest, a sender that checks it."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import socket
import time


def sink(port: int, timeout: float = 30) -> dict:
    with socket.create_server(("0.0.0.0", port), reuse_port=True) as srv:
        srv.settimeout(timeout)
        conn, peer = srv.accept()
        with conn:
            conn.settimeout(timeout)
            digest = hashlib.sha256()
            total = 0
            while chunk := conn.recv(65536):
                digest.update(chunk)
                total += len(chunk)
            conn.sendall(digest.hexdigest().encode())
    return {"received": total, "sha256": digest.hexdigest(), "peer": peer[0]}


def send(host: str, port: int, nbytes: int, timeout: float = 30) -> dict:
    data = os.urandom(nbytes)
    t0 = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(128):
            answer += chunk
        local = conn.getsockname()[0]
    elapsed = time.monotonic() - t0
    ok = answer.decode() == hashlib.sha256(data).hexdigest()
    return {"sent": nbytes, "verified": ok, "seconds": round(elapsed, 3), "local": local}


def echo_server(port: int, timeout: float = 120) -> dict:
    with socket.create_server(("0.0.0.0", port), reuse_port=True) as srv:
        srv.settimeout(timeout)
        conn, peer = srv.accept()
        total = 0
        with conn:
            conn.settimeout(timeout)
            while chunk := conn.recv(65536):
                conn.sendall(chunk)
                total += len(chunk)
    return {"echoed": total, "peer": peer[0]}


def echo_client(host: str, port: int, seconds: float, interval: float = 0.05) -> dict:
    """One TCP connection for ``seconds``: a numbered line every ``interval``, each echoed.

    Reports the longest wait for an echo: how long the connection stalled (a handover)."""
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.settimeout(60)
        sent = 0
        worst = 0.0
        times: list[float] = []
        buf = b""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            msg = f"{sent:08d}\n".encode()
            t0 = time.monotonic()
            conn.sendall(msg)
            while len(buf) < len(msg):
                chunk = conn.recv(4096)
                if not chunk:
                    return {"ok": False, "sent": sent, "error": "connection closed"}
                buf += chunk
            if buf[: len(msg)] != msg:
                return {"ok": False, "sent": sent, "error": "echo mismatch"}
            buf = buf[len(msg):]
            times.append(time.monotonic() - t0)
            worst = max(worst, times[-1])
            sent += 1
            time.sleep(interval)
    times.sort()
    median = times[len(times) // 2] if times else 0.0
    return {"ok": True, "messages": sent, "max_stall_ms": round(worst * 1000, 1),
            "median_ms": round(median * 1000, 3)}


def udp_sink(port: int, seconds: float) -> dict:
    """Record (sequence, arrival time) of every datagram for ``seconds``."""
    arrivals = []
    peers: set[str] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        end = time.time() + seconds
        while (left := end - time.time()) > 0:
            sock.settimeout(left)
            try:
                data, peer = sock.recvfrom(64)
            except TimeoutError:
                break
            peers.add(peer[0])
            arrivals.append((int.from_bytes(data[:4], "big"), time.time()))
    return {"arrivals": arrivals, "peers": sorted(peers)}


def udp_source(host: str, port: int, seconds: float, interval: float) -> dict:
    """A steady stream: a numbered datagram every ``interval`` seconds."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        seq = 0
        start = time.time()
        while time.time() - start < seconds:
            with contextlib.suppress(OSError):  # no route for a moment: counted as lost
                sock.sendto(seq.to_bytes(4, "big") + bytes(60), (host, port))
            seq += 1
            time.sleep(max(0.0, start + seq * interval - time.time()))
    return {"sent": seq, "start": start}


def ipip_inject(outer_src: str, outer_dst: str, src: str, dst: str, port: int, count: int,
                interval: float, first: int = 0) -> dict:
    """Numbered UDP datagrams ``src`` → ``dst``:``port`` (udp-sink's format) inside IP-in-IP
    from ``outer_src`` to ``outer_dst``: what a home agent tunnelled to a foreign agent
    before its binding moved, still in flight when the mobile node's notification came."""
    from ..wire.advertisement import icmp_checksum

    def ipv4(proto: int, s: str, d: str, payload: bytes) -> bytes:
        h = bytearray(b"\x45\x00" + (20 + len(payload)).to_bytes(2, "big") +
                      b"\x00\x00\x40\x00\x40" + bytes((proto,)) + b"\x00\x00" +
                      socket.inet_aton(s) + socket.inet_aton(d))
        h[10:12] = icmp_checksum(bytes(h)).to_bytes(2, "big")
        return bytes(h) + payload

    with socket.socket(socket.AF_INET, socket.SOCK_RAW, 4) as sock:
        sock.bind((outer_src, 0))
        for seq in range(first, first + count):
            body = (seq.to_bytes(4, "big") + bytes(60))
            udp = (40000).to_bytes(2, "big") + port.to_bytes(2, "big") + \
                (8 + len(body)).to_bytes(2, "big") + b"\x00\x00" + body  # no UDP checksum
            sock.sendto(ipv4(17, src, dst, udp), (outer_dst, 0))
            time.sleep(interval)
    return {"sent": count, "first": first}


def udp_echo(port: int, seconds: float) -> dict:
    """Answer each datagram with its payload and the source it came from, for a while."""
    seen = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", port))
        deadline = time.time() + seconds
        while time.time() < deadline:
            sock.settimeout(max(0.01, deadline - time.time()))
            try:
                data, peer = sock.recvfrom(2048)
            except TimeoutError:
                break
            seen.append(f"{peer[0]}:{peer[1]}")
            sock.sendto(data + f" seen from {peer[0]}:{peer[1]}".encode(), peer)
    return {"seen": seen}


def udp_ask(host: str, port: int, message: str, bind: str, timeout: float = 3) -> dict:
    """One datagram from a fixed source address and port, and the answer (or none)."""
    addr, _, sport = bind.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr, int(sport)))
        sock.settimeout(timeout)
        sock.sendto(message.encode(), (host, port))
        try:
            return {"answer": sock.recv(2048).decode()}
        except TimeoutError:
            return {"answer": None}


def udp_mark(iface: str, sport: int) -> dict:
    """One broadcast datagram out of ``iface`` (to port 9, discard) from port ``sport``: a
    marker a capture on that interface sees after everything before it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", sport))
        sock.sendto(b"mipro lab marker", ("255.255.255.255", 9))
    return {"sent": iface, "sport": sport}


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sink")
    s.add_argument("--port", type=int, default=5001)
    c = sub.add_parser("send")
    c.add_argument("host")
    c.add_argument("--port", type=int, default=5001)
    c.add_argument("--bytes", type=int, default=1 << 20)
    e = sub.add_parser("echo-server")
    e.add_argument("--port", type=int, default=5003)
    ec = sub.add_parser("echo-client")
    ec.add_argument("host")
    ec.add_argument("--port", type=int, default=5003)
    ec.add_argument("--seconds", type=float, default=10)
    us = sub.add_parser("udp-sink")
    us.add_argument("--port", type=int, default=6000)
    us.add_argument("--seconds", type=float, default=10)
    uo = sub.add_parser("udp-source")
    uo.add_argument("host")
    uo.add_argument("--port", type=int, default=6000)
    uo.add_argument("--seconds", type=float, default=10)
    uo.add_argument("--interval", type=float, default=0.002)
    ue = sub.add_parser("udp-echo")
    ue.add_argument("--port", type=int, default=7007)
    ue.add_argument("--seconds", type=float, default=10)
    ua = sub.add_parser("udp-ask")
    ua.add_argument("host")
    ua.add_argument("message")
    ua.add_argument("--port", type=int, default=7007)
    ua.add_argument("--bind", required=True, help="source address:port")
    ii = sub.add_parser("ipip-inject")
    for arg in ("outer_src", "outer_dst", "src", "dst"):
        ii.add_argument(arg)
    ii.add_argument("--port", type=int, default=6000)
    ii.add_argument("--count", type=int, default=20)
    ii.add_argument("--interval", type=float, default=0.002)
    ii.add_argument("--first", type=int, default=0)
    um = sub.add_parser("udp-mark")
    um.add_argument("--iface", required=True)
    um.add_argument("--sport", type=int, required=True)
    a = p.parse_args()
    if a.cmd == "udp-mark":
        result = udp_mark(a.iface, a.sport)
    elif a.cmd == "ipip-inject":
        result = ipip_inject(a.outer_src, a.outer_dst, a.src, a.dst, a.port, a.count,
                             a.interval, a.first)
    elif a.cmd == "udp-echo":
        result = udp_echo(a.port, a.seconds)
    elif a.cmd == "udp-ask":
        result = udp_ask(a.host, a.port, a.message, a.bind)
    elif a.cmd == "udp-sink":
        result = udp_sink(a.port, a.seconds)
    elif a.cmd == "udp-source":
        result = udp_source(a.host, a.port, a.seconds, a.interval)
    elif a.cmd == "sink":
        result = sink(a.port)
    elif a.cmd == "send":
        result = send(a.host, a.port, a.bytes)
    elif a.cmd == "echo-server":
        result = echo_server(a.port)
    else:
        try:
            result = echo_client(a.host, a.port, a.seconds)
        except OSError as exc:
            result = {"ok": False, "error": str(exc)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
