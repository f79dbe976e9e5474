"""What every mipro daemon's runtime shares: the ordered work queue, the engine's one
timer, error handling that never silently stops a worker, and the `main` entry."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from pyroute2 import NetlinkError

from ..config import ConfigError
from ..dataplane.detect import choose_backend
from ..dataplane.netlink import Netlink
from .control import ControlServer
from .logging import EventLog


class EngineDaemon:
    """Base of the HA, FA and MN daemons.  Subclasses set ``engine`` and ``_execute``."""

    BATCH = 1  # how many queued action lists one worker pass may merge

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.engine: Any = None
        self.timer: asyncio.TimerHandle | None = None
        self.work: asyncio.Queue[list[Any]] = asyncio.Queue()
        self.stopping = asyncio.Event()
        self.backend_reason = ""

    async def pick_backend(self, wanted: str) -> str:
        """Resolve dataplane.backend ("auto" tries the kernel's tunnels) and say why."""
        nl = Netlink()
        try:
            backend, self.backend_reason = await choose_backend(nl, wanted)
        finally:
            nl.close()
        self.log("dataplane", backend=backend, reason=self.backend_reason)
        return backend

    async def serve_operations(self, control_socket: str) -> ControlServer:
        """The control socket, SIGHUP = reload, SIGTERM/SIGINT = stop."""
        control = ControlServer(control_socket, self.handle_control)
        await control.start()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        return control

    def reread(self, load: Callable[[str], Any], path: str) -> Any:
        """SIGHUP: the new configuration, or None (each problem logged, old one kept)."""
        try:
            return load(path)
        except ConfigError as exc:
            for line in exc.errors:
                self.log("reload-failed", "error", problem=line)
            self.log("reload-kept-old-config", "warning")
            return None

    def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def reload(self) -> None:
        raise NotImplementedError

    def dispatch(self, actions: list[Any]) -> None:
        """Queue an engine's actions; one worker runs them in order."""
        if actions:
            self.work.put_nowait(actions)

    async def _worker(self) -> None:
        while True:
            batch = [await self.work.get()]
            while len(batch) < self.BATCH and not self.work.empty():
                batch.append(self.work.get_nowait())
            try:
                await self._execute([a for actions in batch for a in actions])
            except (OSError, NetlinkError) as exc:
                self.log("dataplane-error", "error", reason=exc)
            except Exception as exc:  # a bug must not silently stop the daemon's worker
                self.log("internal-error", "error", reason=repr(exc),
                         where=traceback.format_exc(limit=4).replace("\n", " | "))
            finally:
                for _ in batch:
                    self.work.task_done()

    async def _execute(self, actions: list[Any]) -> None:
        raise NotImplementedError

    def _reschedule(self) -> None:
        """Arm the one timer for the engine's next deadline (kept if unchanged)."""
        when = self.engine.next_timer()
        loop = asyncio.get_running_loop()
        at = None if when is None else loop.time() + max(0.0, when - time.time())
        if self.timer is not None:
            if at is not None and abs(self.timer.when() - at) < 0.005:
                return
            self.timer.cancel()
            self.timer = None
        if at is not None:
            self.timer = loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self.dispatch(self.engine.handle_timer(time.time()))
        self._reschedule()


def run_daemon(role: str, config_path: str, load: Callable[[str], Any],
               factory: Callable[[Any, EventLog], Any]) -> int:
    """Load and validate (exit 1 with every problem), then run until SIGTERM."""
    try:
        cfg = load(config_path)
    except ConfigError as exc:
        for line in exc.errors:
            print(line)
        return 1
    log = EventLog(role, cfg.runtime.log_level)
    try:
        daemon = factory(cfg, log)
        asyncio.run(daemon.run())
    except ConfigError as exc:
        for line in exc.errors:
            print(line)
        return 1
    except (OSError, RuntimeError, LookupError, NetlinkError) as exc:
        log("fatal", "error", reason=exc)
        return 1
    return 0


def datagrams(sock: socket.socket, limit: int, log: EventLog) -> Iterator[tuple[bytes, Any]]:
    """Up to ``limit`` datagrams waiting on a non-blocking socket: one wakeup drains a
    batch (asyncio's datagram transport reads one per loop iteration)."""
    for _ in range(limit):
        try:
            yield sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # e.g. an ICMP port unreachable reported on the socket
            log("socket-error", "debug", reason=exc)
