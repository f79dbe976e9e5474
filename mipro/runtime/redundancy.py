"""The I/O of home agent redundancy: keepalived's notify FIFO and track files, and the TCP
session to the peer home agent (the protocol itself is core/replication.py).

keepalived holds the virtual home agent address (VRRP).  It writes each state change
of its instances, in order, to a FIFO (``notify_fifo``: lines like ``INSTANCE "VI_HA"
MASTER 100``), which mipro reads; and it watches a ``track_file`` per instance (weight
0: any non-zero value puts the instance in FAULT), which mipro keeps at 1 until its
replica is in sync, so a home agent that has just started never takes over with an
empty table.  A ``vrrp_track_process`` on mipro's process name (``mipro-ha``, set with
prctl) makes keepalived give up the address when mipro dies; the other way round, mipro
watches keepalived's VRRP process (its pid file, a pidfd) and stands down when it dies
without a word (``KeepalivedWatch``).

The session runs between the two home agents' own addresses: the one with the lower
address dials (and does not listen), the other listens and accepts only its peer's
address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import secrets
import select
import stat
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from ..core.replication import NONCE_BYTES

PR_SET_NAME = 15
DIAL_BACKOFF_MAX = 0.5
MAX_FIFO_LINE = 65536  # keepalived's lines are short; a longer one is not its
KEEPALIVED_NAME = "keepalived"  # its processes' comm (the parent's and the VRRP child's)


def set_process_name(name: str) -> None:
    """/proc/self/comm (what keepalived's track_process matches): at most 15 bytes."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


@dataclass(frozen=True)
class VrrpEvent:
    kind: str  # INSTANCE | GROUP
    name: str
    state: str  # MASTER | BACKUP | FAULT | STOP | DELETED, or an event (MASTER_RX_LOWER_PRI, ...)
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


class FifoRefused(OSError):
    """The FIFO is not one only keepalived (root) and we can write."""


def _writer_problem(st: os.stat_result) -> str | None:
    """Why others than root and we may write a file (owner, group or world write)."""
    if st.st_uid not in (0, os.geteuid()):
        return f"owned by uid {st.st_uid}, not root's or ours"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"mode {stat.S_IMODE(st.st_mode):04o}: others may write it"
    return None


def fifo_problem(st: os.stat_result) -> str | None:
    """Whoever can write the FIFO sets our role: only root (keepalived) and we may."""
    return "not a FIFO" if not stat.S_ISFIFO(st.st_mode) else _writer_problem(st)


class NotifyFifo:
    """keepalived's notify FIFO, read without blocking.  Opened read-write where we may
    (there is always a writer, us, so a keepalived restart never turns into an endless
    EOF), else read-only and reopened at EOF.

    keepalived unlinks a FIFO it created itself and makes a new one on every reload and
    restart (lib/notify.c): ``events`` (also called every second by the runtime) notices
    the path naming another inode, or none, and opens the new one (or makes its own,
    which keepalived then uses and leaves alone); ``fileno`` may change."""

    def __init__(self, path: str,
                 log: Callable[..., None] = lambda *a, **k: None) -> None:
        self.path = path
        self.log = log
        self.partial = b""
        self.discarding = False  # inside a line over MAX_FIFO_LINE
        self.problem: str | None = None  # why the FIFO at the path was last refused
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.fd, self.ident, self.writable = self._open()

    def fileno(self) -> int:
        return self.fd

    def _open(self) -> tuple[int, tuple[int, int], bool]:
        """The FIFO at ``path`` (made, 0600, if there is none)."""
        with contextlib.suppress(FileExistsError):
            os.mkfifo(self.path, 0o600)
        flags = os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd, writable = os.open(self.path, os.O_RDWR | flags), True
        except PermissionError:  # keepalived (root) made it 0644: we may only read
            fd, writable = os.open(self.path, os.O_RDONLY | flags), False
        st = os.fstat(fd)
        problem = fifo_problem(st)
        if problem is not None:
            os.close(fd)
            raise FifoRefused(f"{self.path}: {problem}")
        return fd, (st.st_dev, st.st_ino), writable

    def _replaced(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self.ident

    def _reopen(self) -> None:
        try:
            fd, ident, writable = self._open()
        except OSError as exc:  # keep the old one; try again at the next check
            if str(exc) != self.problem:  # once, not every second
                self.problem = str(exc)
                self.log("notify-fifo-refused" if isinstance(exc, FifoRefused) else
                         "notify-fifo-failed", "error", path=self.path, problem=exc)
            return
        self.problem = None
        os.close(self.fd)
        self.fd, self.ident, self.writable = fd, ident, writable
        self.log("notify-fifo-reopened", path=self.path)

    def _drain(self, out: list[VrrpEvent]) -> bool:
        """Take in what the FIFO holds; whether its writers are gone (read-only)."""
        for _ in range(64):
            try:
                chunk = os.read(self.fd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            if not chunk:
                return True
            self._take(chunk, out)
        return False

    def _take(self, chunk: bytes, out: list[VrrpEvent]) -> None:
        *lines, rest = chunk.split(b"\n")
        if lines:
            lines[0], self.partial = self.partial + lines[0], b""
            if self.discarding:  # the end of a line too long to be keepalived's
                lines, self.discarding = lines[1:], False
        for line in lines:
            event = parse_fifo_line(line.decode(errors="replace"))
            if event is not None:
                out.append(event)
        if self.discarding:
            return
        self.partial += rest
        if len(self.partial) > MAX_FIFO_LINE:  # not keepalived: it writes short lines
            self.partial, self.discarding = b"", True
            self.log("notify-fifo-line-discarded", "warning", path=self.path,
                     problem=f"a line longer than {MAX_FIFO_LINE} bytes")

    def events(self) -> list[VrrpEvent]:
        out: list[VrrpEvent] = []
        eof = self._drain(out)  # what the old one still holds comes first
        if eof or self._replaced():
            self._reopen()
            self._drain(out)
        return out

    def close(self) -> None:
        os.close(self.fd)


class KeepalivedMissing(Exception):
    """No live keepalived where the pid file points (``level``: how loudly to say so)."""

    def __init__(self, problem: str, level: str = "warning") -> None:
        super().__init__(problem)
        self.problem, self.level = problem, level


def pid_file_problem(st: os.stat_result) -> str | None:
    """Whoever writes the pid file chooses the process we take for keepalived: root and we
    only, as for the FIFO."""
    return "not a regular file" if not stat.S_ISREG(st.st_mode) else _writer_problem(st)


def read_pid_file(path: str) -> int:
    """The pid in keepalived's pid file (one decimal number and a newline)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeepalivedMissing("no such file: keepalived not started (yet)?", "info") from None
    except OSError as exc:
        raise KeepalivedMissing(exc.strerror or str(exc), "error") from None
    try:
        problem = pid_file_problem(os.fstat(fd))
        if problem is not None:
            raise KeepalivedMissing(f"refused: {problem}", "error")
        data = os.read(fd, 32)
    finally:
        os.close(fd)
    text = data.decode("ascii", "replace").strip()
    if not text.isdecimal() or not 1 < int(text) < 1 << 22:
        raise KeepalivedMissing(f"{text[:20]!r} is not a process id")
    return int(text)


def process_problem(pid: int) -> str | None:
    """Why process ``pid`` is not a running keepalived of root's (or ours), or None."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(errors="replace")
    except OSError:
        return f"pid {pid} is not running"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    name = fields.get("Name", "").strip()
    if name != KEEPALIVED_NAME:
        return f"pid {pid} is {name!r}, not {KEEPALIVED_NAME}"
    if fields.get("State", "").strip()[:1] in ("Z", "X"):
        return f"pid {pid} is not running"
    uids = fields.get("Uid", "").split()
    if len(uids) < 2 or any(int(u) not in (0, os.geteuid()) for u in uids[:2]):
        return f"pid {pid} runs as uid {uids[0] if uids else '?'}, not root"
    return None


def _exited(pidfd: int) -> bool:
    """A pidfd is readable once its process has exited."""
    return bool(select.select([pidfd], [], [], 0)[0])


class KeepalivedWatch:
    """keepalived's VRRP process, found through its pid file and held by a pidfd
    (``fileno``: readable once it exits).  The pidfd names the process, not the number:
    a pid reused after keepalived died is never taken for it, and the process is checked
    (name, uid, alive) after the pidfd is open, so the checks are of the process the pidfd
    holds.  While none is held ``look`` reads the file again (a restarted keepalived
    writes a new one), saying once per problem why nothing was found."""

    def __init__(self, path: str,
                 log: Callable[..., None] = lambda *a, **k: None) -> None:
        self.path = path
        self.log = log
        self.pid: int | None = None
        self.pidfd: int | None = None
        self.problem: str | None = None  # why nothing was found at the last look

    @property
    def running(self) -> bool:
        return self.pidfd is not None

    def fileno(self) -> int:
        assert self.pidfd is not None
        return self.pidfd

    def look(self) -> bool:
        """Find keepalived if none is held: whether one was found now."""
        if self.pidfd is not None:
            return False
        try:
            self.pid, self.pidfd = self._find()
        except KeepalivedMissing as exc:
            if exc.problem != self.problem:  # once per problem, not every tick
                self.problem = exc.problem
                level = "info" if exc.level == "info" else \
                    "error" if exc.level == "error" else "warning"
                self.log("keepalived-not-found", level, path=self.path, problem=exc.problem)
            return False
        self.problem = None
        self.log("keepalived-found", path=self.path, pid=self.pid)
        return True

    def _find(self) -> tuple[int, int]:
        pid = read_pid_file(self.path)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise KeepalivedMissing(f"pid {pid} is not running", "info") from None
        except OSError as exc:
            raise KeepalivedMissing(f"pid {pid}: {exc.strerror or exc}", "error") from None
        problem = process_problem(pid)
        if problem is None and _exited(fd):  # exited (and maybe reused) while we looked
            problem = f"pid {pid} is not running"
        if problem is not None:
            os.close(fd)
            raise KeepalivedMissing(problem, "info" if "not running" in problem else "warning")
        return pid, fd

    def exited(self) -> bool:
        return self.pidfd is not None and _exited(self.pidfd)

    def forget(self) -> int | None:
        """Let go of the process (it exited); its pid."""
        if self.pidfd is not None:
            os.close(self.pidfd)
        pid, self.pid, self.pidfd = self.pid, None, None
        self.problem = f"pid {pid} is not running"  # what the next look finds: said already
        return pid

    def describe(self) -> dict[str, object]:
        return {"pid_file": self.path, "pid": self.pid, "running": self.running,
                "problem": self.problem}


def write_track_file(path: str, value: int) -> None:
    """keepalived reads the number whenever the file changes (inotify).  Never through a
    symlink, never into anything but a regular file (we may run as root, and the
    directory may be writable by others): truncated only once that is known."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK |
                 os.O_CLOEXEC, 0o644)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        os.ftruncate(fd, 0)
        os.write(fd, f"{value}\n".encode())
    finally:
        os.close(fd)


class SyncTransport:
    """The TCP session with the peer.  ``on_up(initiator, nonce)`` when connected,
    ``on_data(bytes)`` for what arrives, ``on_down(reason)`` when it ends; ``send``
    writes.  One side dials (the lower address, with a backoff), the other listens and
    accepts only the peer's address; the dialer does not listen at all (its peer never
    dials it: a connection to it can only be a stranger's).

    One connection at a time.  A new one from the peer's address replaces one that has
    not proven itself yet (``proven()``: the peer's first record verified), so a
    stranger who connects first from the peer's address cannot keep the peer out; a
    proven one is kept (the new one is refused) until it ends or the engine finds it
    silent (heartbeats).  A replaced connection is closed and nothing it sends after
    that reaches the session."""

    MAX_BUFFER = 64 << 20  # a peer this far behind is resynchronised (dump), not queued

    def __init__(self, local: IPv4Address, peer: IPv4Address, port: int,
                 on_up: Callable[[bool, bytes], None], on_data: Callable[[bytes], None],
                 on_down: Callable[[str], None], log: Callable[..., None],
                 proven: Callable[[], bool] = lambda: False) -> None:
        self.local, self.peer, self.port = local, peer, port
        self.on_up, self.on_data, self.on_down, self.log = on_up, on_data, on_down, log
        self.proven = proven
        self.dials = int(local) < int(peer)
        self.server: asyncio.AbstractServer | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.refused = 0
        self.replaced = 0
        self.stopping = False

    async def start(self) -> None:
        if self.dials:
            self.task = asyncio.create_task(self._dial())
        else:
            self.server = await asyncio.start_server(self._accepted, str(self.local),
                                                     self.port, reuse_address=True)

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
        host = IPv4Address(writer.get_extra_info("peername")[0])
        if host != self.peer or (self.writer is not None and self.proven()):
            self.refused += 1
            self.log("redundancy-refused", "warning", src=host,
                     reason="not our peer" if host != self.peer else "a session is up already")
            writer.close()
            return
        if self.writer is not None:  # unproven: maybe a stranger's, the peer's comes first
            self.replaced += 1
            self.close("replaced by a new connection from the peer's address")
        await self._run(reader, writer, False)

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   initiator: bool) -> None:
        self.writer = writer
        self.on_up(initiator, secrets.token_bytes(NONCE_BYTES))
        reason = "closed by the peer"
        try:
            while self.writer is writer:
                data = await reader.read(1 << 16)
                if not data or self.writer is not writer:  # ended, or replaced meanwhile
                    break
                self.on_data(data)
        except (OSError, asyncio.IncompleteReadError) as exc:
            reason = str(exc)
        if self.writer is writer:
            self.close(reason)
        else:
            writer.close()  # superseded (closed already by close(); never twice harmful)
