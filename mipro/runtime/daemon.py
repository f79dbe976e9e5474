"""What every mipro daemon's runtime shares: the ordered work queue, the engine's one
timer, error handling that never silently stops a worker, and the `main` entry."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from ..config import ConfigError
from ..core.actions import Log
from ..dataplane.kernel.detect import choose_backend
from ..dataplane.kernel.errors import NETLINK_ERRORS
from ..dataplane.kernel.netlink import Netlink
from .control import ControlServer
from .logging import EventLog, capture_library_logs
from .metrics import Metrics


class Engine(Protocol):
    """What the runtime asks of every engine (core/ha.py, fa.py, mn.py) besides its
    inputs: when its next deadline is, and what happens at it."""

    def next_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> Sequence[Any]: ...


E = TypeVar("E", bound=Engine)
class EngineDaemon(Generic[E]):
    """Base of the HA, FA and MN daemons.  Subclasses set ``engine`` and ``_execute``.

    Every call into the engine goes through ``call``: an exception there is a bug,
    logged (rate-limited) and counted, and the daemon carries on.  The one timer is
    re-armed whatever happens.  Inputs are read only while the worker keeps up: past
    HIGH_WATER queued action lists the readers pause (the kernel's socket buffers drop
    what does not fit, as a router's queue would) and resume below LOW_WATER."""

    BATCH = 1  # how many queued action lists one worker pass may merge
    HIGH_WATER, LOW_WATER = 512, 128
    LOG_FLUSH = 10.0  # seconds between summaries of rate-limited log lines

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.timer: asyncio.TimerHandle | None = None
        self.work: asyncio.Queue[list[Any]] = asyncio.Queue()
        self.stopping = asyncio.Event()
        self.backend_reason = ""
        self.internal_errors = 0
        self.inputs: dict[int, Callable[[], None]] = {}
        self.inputs_paused = False
        self.input_pauses = 0
        self.flush_timer: asyncio.TimerHandle | None = None
        self.metrics: Metrics | None = None  # runtime.metrics_listen

    async def pick_backend(self, wanted: str) -> str:
        """Resolve dataplane.backend ("auto" tries the kernel's tunnels) and say why."""
        nl = Netlink()
        try:
            backend, self.backend_reason = await choose_backend(nl, wanted)
        finally:
            nl.close()
        self.log("dataplane", backend=backend, reason=self.backend_reason)
        return backend

    def listen_metrics(self) -> None:
        """Bind runtime.metrics_listen (ConfigError if it cannot be): before ``run``
        touches the kernel; answered from ``serve_operations`` on."""
        if self.cfg.runtime.metrics_listen is not None:
            self.metrics = Metrics(self)
            self.metrics.listen(self.cfg)

    def request_seen(self, data: bytes, host: object, port: int) -> None:
        """A registration request read (for mipro_registration_duration_seconds)."""
        if self.metrics is not None and self.metrics.timer is not None:
            self.metrics.timer.request_in(data, host, port)

    def reply_sent(self, data: bytes, host: object, port: int) -> None:
        """A registration reply sent: the request's time is observed."""
        if self.metrics is not None and self.metrics.timer is not None:
            self.metrics.timer.reply_out(data, host, port)

    async def serve_operations(self, control_socket: str) -> ControlServer:
        """The control socket (and the metrics endpoint), SIGHUP = reload, SIGTERM/SIGINT
        = stop."""
        control = ControlServer(control_socket, self.handle_control, self._stop_metrics)
        await control.start()
        loop = asyncio.get_running_loop()
        if self.metrics is not None:
            self.metrics.serve(loop)
            host, port = self.metrics.address
            self.log("metrics", listen=f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        loop.add_signal_handler(signal.SIGHUP, self._guarded_reload)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        self.flush_timer = loop.call_later(self.LOG_FLUSH, self._flush_logs)
        return control

    def _stop_metrics(self) -> None:
        if self.metrics is not None:
            self.metrics.stop()

    def _flush_logs(self) -> None:
        self.log.flush()
        self.flush_timer = asyncio.get_running_loop().call_later(self.LOG_FLUSH,
                                                                 self._flush_logs)

    def stop_log_flush(self) -> None:
        if self.flush_timer is not None:
            self.flush_timer.cancel()
            self.flush_timer = None
        self.log.flush()

    def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    # --- SIGHUP: one reload procedure for every daemon ------------------------------------
    #
    # Parse and validate the new file; compare it with the running configuration key by
    # key; if a key that needs a restart changed, keep the old configuration whole and
    # say which keys; else build everything the new one needs (``prepare_reload``, which
    # may still refuse) and swap it in at once, rolling back if the swap fails.

    cfg: Any  # the running configuration (a frozen dataclass of config/schema.py)
    engine: E
    LOAD: Callable[[str], Any]  # the role's configuration loader
    LIVE: frozenset[str] = frozenset()  # dotted keys (or "table." prefixes) that reload live

    def reload(self) -> None:
        new = self.reload_candidate()
        if new is None:
            return
        try:
            commit = self.prepare_reload(new)
        except ConfigError as exc:  # e.g. the subscriber file, read as part of it
            self._refuse(exc.errors)
            return
        self.swap_in(new, commit)

    def reload_candidate(self) -> Any | None:
        """The configuration file read again, if it can apply live (else None, said why)."""
        old = self.cfg
        try:
            new = type(self).LOAD(old.path)
        except ConfigError as exc:
            self._refuse(exc.errors)
            return None
        restart = [k for k in config_changes(old, new) if not self.reloads_live(k)]
        if restart:
            self.log("reload-needs-restart", "warning", keys=",".join(restart))
            self.log("reload-kept-old-config", "warning")
            return None
        return new

    def swap_in(self, new: Any, commit: Callable[[], None]) -> None:
        """Run what ``prepare_reload(new)`` returned; roll back whole if it fails."""
        old = self.cfg
        changed = config_changes(old, new)
        try:
            commit()
        except Exception as exc:
            self._internal_error("reload", exc)
            self.prepare_reload(old)()  # back to what ran: all of it
            self.log("reload-kept-old-config", "warning")
            return
        self.cfg = new
        self.log.set_level(new.runtime.log_level)
        self.log("reloaded", config=new.path, changed=",".join(changed) or "-")

    @classmethod
    def reloads_live(cls, key: str) -> bool:
        return key in cls.LIVE or any(k.endswith(".") and key.startswith(k) for k in cls.LIVE)

    def prepare_reload(self, cfg: Any) -> Callable[[], None]:
        """Build what ``cfg`` needs without touching the running daemon; return the
        function that swaps it in (cheap, all of it or nothing)."""
        raise NotImplementedError

    def _refuse(self, problems: list[str]) -> None:
        for line in problems:
            self.log("reload-failed", "error", problem=line)
        self.log("reload-kept-old-config", "warning")

    def _guarded_reload(self) -> None:
        try:
            self.reload()
        except Exception as exc:  # a bug in reload must not take the daemon down
            self._internal_error("reload", exc)
            self.log("reload-kept-old-config", "warning")

    # --- the engine -------------------------------------------------------------------

    def call(self, what: str, fn: Callable[..., Sequence[Any]], *args: Any) -> list[Any]:
        """An engine call that can never stop the daemon: a bug is logged and counted."""
        try:
            return list(fn(*args))
        except Exception as exc:
            self._internal_error(what, exc)
            return []

    def _internal_error(self, where: str, exc: BaseException) -> None:
        self.internal_errors += 1
        self.log("internal-error", "error", where=where, reason=repr(exc),
                 trace=traceback.format_exc(limit=6).replace("\n", " | "))

    # --- inputs and the work queue ------------------------------------------------------

    def add_input(self, fd: int, callback: Callable[[], None]) -> None:
        """A socket the daemon reads; paused while the worker is behind."""
        self.inputs[fd] = callback
        if not self.inputs_paused:
            asyncio.get_running_loop().add_reader(fd, self._guard_input(callback))

    def remove_input(self, fd: int) -> None:
        if self.inputs.pop(fd, None) is not None:
            asyncio.get_running_loop().remove_reader(fd)

    def _guard_input(self, callback: Callable[[], None]) -> Callable[[], None]:
        def read() -> None:
            try:
                callback()
            except Exception as exc:
                self._internal_error(getattr(callback, "__name__", "input"), exc)
                self._reschedule()
        return read

    def dispatch(self, actions: list[Any]) -> None:
        """Queue an engine's actions; one worker runs them in order."""
        if not actions:
            return
        self.work.put_nowait(actions)
        if not self.inputs_paused and self.work.qsize() > self.HIGH_WATER:
            self.inputs_paused = True
            self.input_pauses += 1
            loop = asyncio.get_running_loop()
            for fd in self.inputs:
                loop.remove_reader(fd)
            self.log("inputs-paused", "warning", queued=self.work.qsize())

    def _resume_inputs(self) -> None:
        if self.inputs_paused and self.work.qsize() < self.LOW_WATER:
            self.inputs_paused = False
            loop = asyncio.get_running_loop()
            for fd, callback in self.inputs.items():
                loop.add_reader(fd, self._guard_input(callback))

    async def _worker(self) -> None:
        while True:
            batch = [await self.work.get()]
            while len(batch) < self.BATCH and not self.work.empty():
                batch.append(self.work.get_nowait())
            try:
                await self._execute([a for actions in batch for a in actions])
            except NETLINK_ERRORS as exc:
                self.log("dataplane-error", "error", reason=exc)
            except Exception as exc:  # a bug must not silently stop the daemon's worker
                self._internal_error("worker", exc)
            finally:
                for _ in batch:
                    self.work.task_done()
                self._resume_inputs()

    async def _execute(self, actions: list[Any]) -> None:
        raise NotImplementedError

    # --- the one timer ------------------------------------------------------------------

    def _reschedule(self) -> None:
        """Arm the one timer for the engine's next deadline (kept if unchanged)."""
        try:
            when = self.engine.next_timer()
        except Exception as exc:
            self._internal_error("next_timer", exc)
            when = time.time() + 1.0  # try again soon rather than never
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
        errors = self.internal_errors
        try:
            self.dispatch(self.call("handle_timer", self.engine.handle_timer, time.time()))
        finally:
            self._reschedule()
        if self.internal_errors != errors and self.timer is not None:
            # the deadline that failed is still due: retry in a second, not in a spin
            self.timer.cancel()
            self.timer = asyncio.get_running_loop().call_later(1.0, self._on_timer)


def config_changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two configurations (frozen
    dataclasses, nested ones compared field by field; ``path`` is not a key)."""
    changed: list[str] = []
    for f in dataclasses.fields(old):
        if f.name in ("path", "role"):
            continue
        a, b = getattr(old, f.name), getattr(new, f.name)
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            changed += config_changes(a, b, f"{prefix}{f.name}.")
        elif a != b:
            changed.append(prefix + f.name)
    return changed


def config_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a configuration (for docs and tests)."""
    keys: list[str] = []
    for f in dataclasses.fields(cfg):
        if f.name in ("path", "role"):
            continue
        value = getattr(cfg, f.name)
        keys += config_keys(value, f"{prefix}{f.name}.") if dataclasses.is_dataclass(value) \
            else [prefix + f.name]
    return keys


def run_daemon(role: str, config_path: str, load: Callable[[str], Any],
               factory: Callable[[Any, EventLog], Any]) -> int:
    """Load and validate (exit 1 with every problem), then run until SIGTERM.  Whatever
    goes wrong is a log line (``config-invalid``, ``fatal``), never a bare traceback."""
    log = EventLog(role)
    capture_library_logs(log)
    try:
        cfg = load(config_path)
        log.set_level(cfg.runtime.log_level)
        daemon = factory(cfg, log)
        daemon.listen_metrics()
        asyncio.run(daemon.run())
    except ConfigError as exc:
        for line in exc.errors:
            log.emit(Log("config-invalid", {"problem": line}, "error"), limited=False)
        return 1
    except NETLINK_ERRORS + (RuntimeError, LookupError) as exc:
        log("fatal", "error", reason=exc)
        return 1
    except Exception as exc:  # a bug, or a library's own error type (e.g. python-iptables')
        log("fatal", "error", reason=repr(exc),
            trace=traceback.format_exc(limit=6).replace("\n", " | "))
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
