"""The I/O of home agent redundancy: keepalived's notify FIFO and track files, and the TCP
session to the peer home agent (the protocol itself is core/replication.py).

keepalived holds the virtual home agent address (VRRP).  It writes each state change
of its instances, in order, to a FIFO (``notify_fifo``: lines like ``INSTANCE "VI_HA"
MASTER 100``), which mipro reads; and it watches a ``track_file`` per instance (weight
0: any non-zero value puts the instance in FAULT), which mipro keeps at 1 until its
replica is in sync, so a home agent that has just started never takes over with an
empty table.  A ``vrrp_track_process`` on mipro's process name (``mipro-ha``, set with
prctl) makes keepalived give up the address when mipro dies.

The session runs between the two home agents' own addresses: the one with the lower
address dials, the other listens and accepts only its peer's address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from ..core.replication import NONCE_BYTES

PR_SET_NAME = 15
DIAL_BACKOFF_MAX = 0.5


def set_process_name(name: str) -> None:
    """/proc/self/comm (what keepalived's track_process matches): at most 15 bytes."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


@dataclass(frozen=True)
class VrrpEvent:
    kind: str  # INSTANCE | GROUP
    name: str
    state: str  # MASTER | BACKUP | FAULT | STOP | DELETED
    priority: int


def parse_fifo_line(line: str) -> VrrpEvent | None:
    """``INSTANCE "VI_HA" MASTER 100`` (keepalived.conf(5), vrrp_notify_fifo); else None."""
    parts = line.strip().split()
    if len(parts) < 3 or parts[0] not in ("INSTANCE", "GROUP"):
        return None
    name = parts[1].strip('"')
    try:
        priority = int(parts[3]) if len(parts) > 3 else 0
    except ValueError:
        priority = 0
    return VrrpEvent(parts[0], name, parts[2], priority)


class NotifyFifo:
    """keepalived's notify FIFO, read without blocking.  Opened read-write, so there is
    always a writer (us) and a keepalived restart never turns into an endless EOF."""

    def __init__(self, path: str) -> None:
        self.path = path
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.exists() and not stat.S_ISFIFO(p.stat().st_mode):
            raise OSError(f"{path} exists and is not a FIFO")
        if not p.exists():
            os.mkfifo(path, 0o600)
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self.partial = b""

    def fileno(self) -> int:
        return self.fd

    def events(self) -> list[VrrpEvent]:
        out: list[VrrpEvent] = []
        for _ in range(64):
            try:
                chunk = os.read(self.fd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            if not chunk:
                break
            self.partial += chunk
        *lines, self.partial = self.partial.split(b"\n")
        for line in lines:
            event = parse_fifo_line(line.decode(errors="replace"))
            if event is not None:
                out.append(event)
        return out

    def close(self) -> None:
        os.close(self.fd)


def write_track_file(path: str, value: int) -> None:
    """keepalived reads the number whenever the file changes (inotify)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, f"{value}\n".encode())
    finally:
        os.close(fd)


class SyncTransport:
    """The TCP session with the peer.  ``on_up(initiator, nonce)`` when connected,
    ``on_data(bytes)`` for what arrives, ``on_down(reason)`` when it ends; ``send``
    writes.  Reconnects (the dialing side) with a backoff; a session that has not
    authenticated within ``handshake_timeout`` is dropped."""

    MAX_BUFFER = 64 << 20  # a peer this far behind is resynchronised (dump), not queued

    def __init__(self, local: IPv4Address, peer: IPv4Address, port: int,
                 on_up: Callable[[bool, bytes], None], on_data: Callable[[bytes], None],
                 on_down: Callable[[str], None], log: Callable[..., None]) -> None:
        self.local, self.peer, self.port = local, peer, port
        self.on_up, self.on_data, self.on_down, self.log = on_up, on_data, on_down, log
        self.dials = int(local) < int(peer)
        self.server: asyncio.AbstractServer | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.refused = 0
        self.stopping = False

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accepted, str(self.local), self.port,
                                                 reuse_address=True)
        if self.dials:
            self.task = asyncio.create_task(self._dial())

    async def stop(self) -> None:
        self.stopping = True
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.close("stopping")
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    @property
    def up(self) -> bool:
        return self.writer is not None

    def send(self, data: bytes) -> None:
        w = self.writer
        if w is None:
            return
        if w.transport.get_write_buffer_size() > self.MAX_BUFFER:
            self.close("the peer is too far behind: it will resynchronise")
            return
        w.write(data)

    def close(self, reason: str) -> None:
        w, self.writer = self.writer, None
        if w is not None:
            w.close()
            self.on_down(reason)

    async def _dial(self) -> None:
        delay = 0.2
        while not self.stopping:
            if self.writer is None:
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(
                        str(self.peer), self.port, local_addr=(str(self.local), 0)), 3)
                except (OSError, TimeoutError) as exc:
                    self.log("redundancy-dial-failed", "debug", peer=self.peer, reason=exc)
                    await asyncio.sleep(delay)
                    # at most a second: a peer that has just started waits only
                    # redundancy.alone_after for us before it trusts its own table
                    delay = min(delay * 2, DIAL_BACKOFF_MAX)
                    continue
                delay = 0.2
                await self._run(reader, writer, True)
            await asyncio.sleep(delay)

    async def _accepted(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        host = writer.get_extra_info("peername")[0]
        if IPv4Address(host) != self.peer or self.writer is not None:
            self.refused += 1
            self.log("redundancy-refused", "warning", src=host,
                     reason="not our peer" if IPv4Address(host) != self.peer else
                     "a session is up already")
            writer.close()
            return
        await self._run(reader, writer, False)

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   initiator: bool) -> None:
        self.writer = writer
        self.on_up(initiator, secrets.token_bytes(NONCE_BYTES))
        reason = "closed by the peer"
        try:
            while self.writer is writer:
                data = await reader.read(1 << 16)
                if not data:
                    break
                self.on_data(data)
        except (OSError, asyncio.IncompleteReadError) as exc:
            reason = str(exc)
        if self.writer is writer:
            self.close(reason)
