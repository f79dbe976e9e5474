"""The control socket: one JSON request per connection, one JSON answer."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any


class ControlServer:
    def __init__(self, path: str, handler: Callable[[dict[str, Any]], dict[str, Any]],
                 on_stop: Callable[[], None] | None = None) -> None:
        self.path = path
        self.handler = handler
        self.on_stop = on_stop  # what else stops with it (the metrics endpoint)
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if os.path.exists(self.path):
            os.unlink(self.path)  # a stale socket of a process that is gone
        self.server = await asyncio.start_unix_server(self._serve, path=self.path)
        os.chmod(self.path, 0o660)

    async def stop(self) -> None:
        if self.on_stop is not None:
            self.on_stop()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        if os.path.exists(self.path):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            try:
                request = json.loads(line or b"{}")
                answer = self.handler(request if isinstance(request, dict) else {})
            except (ValueError, TypeError) as exc:
                answer = {"error": f"bad request: {exc}"}
            writer.write(json.dumps(answer, default=str).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


def request(path: str, command: str = "status", timeout: float = 5.0) -> dict[str, Any]:
    """Client side, used by `mipro status`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps({"command": command}).encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return json.loads(b"".join(chunks))
