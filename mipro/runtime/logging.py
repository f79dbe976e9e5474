"""One line per event, key=value fields, for journald (stdout) or a terminal."""

from __future__ import annotations

import sys
import time
from typing import Any

from ..core.actions import Log

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class EventLog:
    def __init__(self, role: str, level: str = "info", stream=None) -> None:
        self.role = role
        self.threshold = LEVELS[level]
        self.stream = stream or sys.stdout

    def set_level(self, level: str) -> None:
        self.threshold = LEVELS[level]

    def emit(self, entry: Log) -> None:
        if LEVELS.get(entry.level, 20) < self.threshold:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.stream.write(f"{stamp} mipro-{self.role} level={entry.level} {entry.line()}\n")
        self.stream.flush()

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        self.emit(Log(event, fields, level))
