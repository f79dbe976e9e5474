"""One line per event, key=value fields, for journald (stdout) or a terminal.

Warnings and errors are rate-limited per event name: at most ``burst`` lines
per ``interval`` seconds each; the rest are counted, with the sources they
came from, and summarised in one ``event=log-summary`` line per event when
the interval ends.  A flood of bad datagrams thus costs a few lines, not one
per datagram, and the operator still sees how many and from where.

The libraries' own logging (pyroute2, scapy, ...) comes out the same way, as
``event=library-log`` lines (``capture_library_logs``), so every line a daemon
writes has an event name (docs/operations.md lists them all).
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from typing import Any

from ..core.actions import Log

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
LIMITED = LEVELS["warning"]


class EventLog:
    def __init__(self, role: str, level: str = "info", stream=None, burst: int = 5,
                 interval: float = 10.0, clock=time.monotonic) -> None:
        self.role = role
        self.threshold = LEVELS[level]
        self.stream = stream or sys.stdout
        self.burst, self.interval, self.clock = burst, interval, clock
        self.window_start = clock()
        self.lines: Counter[str] = Counter()  # written this window, by event
        self.suppressed: Counter[str] = Counter()
        self.suppressed_total: Counter[str] = Counter()  # never cleared (for metrics)
        self.sources: dict[str, Counter[str]] = {}

    def set_level(self, level: str) -> None:
        self.threshold = LEVELS[level]

    def emit(self, entry: Log, limited: bool = True) -> None:
        """Write ``entry`` if its level passes; ``limited=False``: never held back (the
        problems of a configuration a daemon refuses to start with, every one)."""
        level = LEVELS.get(entry.level, 20)
        if level < self.threshold:
            return
        if level >= LIMITED and limited:
            if self.clock() - self.window_start >= self.interval:
                self.flush()
            if self.lines[entry.event] >= self.burst:
                self.suppressed[entry.event] += 1
                self.suppressed_total[entry.event] += 1
                src = _source(entry.fields)
                sources = self.sources.setdefault(entry.event, Counter())
                if len(sources) < 1024 or src in sources:  # bounded under spoofing
                    sources[src] += 1
                return
            self.lines[entry.event] += 1
        self._write(entry)

    def flush(self) -> None:
        """Close the window: one summary line per event that had lines suppressed."""
        for event, count in sorted(self.suppressed.items()):
            sources = self.sources.get(event, Counter())
            top = ",".join(f"{s}x{n}" for s, n in sources.most_common(3))
            self._write(Log("log-summary", {"of": event, "suppressed": count,
                                            "sources": len(sources), "top": top or "-",
                                            "window": f"{self.interval:g}s"}, "warning"))
        self.suppressed.clear()
        self.sources.clear()
        self.lines.clear()
        self.window_start = self.clock()

    def _write(self, entry: Log) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.stream.write(f"{stamp} mipro-{self.role} level={entry.level} {entry.line()}\n")
        self.stream.flush()

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        self.emit(Log(event, fields, level))


class _LibraryHandler(logging.Handler):
    def __init__(self, log: EventLog) -> None:
        super().__init__(logging.WARNING)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning"
        self.log.emit(Log("library-log", {"logger": record.name,
                                          "message": record.getMessage()[:500]}, level))


def capture_library_logs(log: EventLog) -> None:
    """Route the libraries' warnings and errors (Python logging, and Python's warnings)
    into ``log``, in place of the handlers that would print them bare on stderr (scapy
    installs its own)."""
    logging.captureWarnings(True)
    root = logging.getLogger()
    root.handlers[:] = [_LibraryHandler(log)]
    root.setLevel(logging.WARNING)
    for name in list(logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        if logger.handlers:
            logger.handlers.clear()
            logger.propagate = True


def _source(fields: dict[str, Any]) -> str:
    """Who sent it: an address without its port, or a link-layer address."""
    src = str(fields.get("src", fields.get("mac", "-")))
    host, sep, port = src.rpartition(":")
    return host if sep and "." in host and port.isdigit() else src
