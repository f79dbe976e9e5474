"""TCP test traffic for the lab: a sink that echoes a digest, a sender that checks it."""

from __future__ import annotations

import argparse
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


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sink")
    s.add_argument("--port", type=int, default=5001)
    c = sub.add_parser("send")
    c.add_argument("host")
    c.add_argument("--port", type=int, default=5001)
    c.add_argument("--bytes", type=int, default=1 << 20)
    a = p.parse_args()
    result = sink(a.port) if a.cmd == "sink" else send(a.host, a.port, a.bytes)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
