"""Bindings on disk: a snapshot plus an append-only journal of the changes since.

Rewriting every binding on every change costs O(table) per registration; a
journal line costs O(1).  When the journal outgrows the table, a thread
writes a fresh snapshot: the journal is first rotated aside, so nothing
written meanwhile is lost, and a crash at any point leaves snapshot +
rotated journal + journal, which replay to the same table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from ipaddress import IPv4Address
from pathlib import Path

from ..core.bindings import Binding
from . import statefile

VERSION = 2


class BindingJournal:
    def __init__(self, path: str | Path) -> None:
        self.snapshot = Path(path)
        self.journal = self.snapshot.with_name(self.snapshot.name + ".journal")
        self.rotated = self.snapshot.with_name(self.snapshot.name + ".journal.1")
        self.pending: list[str] = []
        self.lines = 0
        self.skipped: list[str] = []  # what the last load() could not use, and why

    # --- reading ----------------------------------------------------------------------

    def load(self) -> list[Binding]:
        """Snapshot, then the rotated journal, then the journal.

        A snapshot row or journal line that does not describe a binding (a torn write at
        a crash, a damaged file) is skipped and listed in ``skipped`` as ``where: why``;
        the others are kept.  Only a snapshot that is not a version-2 state file at all
        raises ValueError."""
        bindings: dict[IPv4Address, Binding] = {}
        self.skipped = []
        data = statefile.read(self.snapshot)
        if data:
            if not isinstance(data, dict) or data.get("version") != VERSION:
                version = data.get("version") if isinstance(data, dict) else None
                raise ValueError(f"{self.snapshot}: version {version} is not {VERSION}")
            rows = data.get("bindings")
            if not isinstance(rows, list):
                raise ValueError(f"{self.snapshot}: no list of bindings")
            for i, row in enumerate(rows):
                try:
                    b = Binding.from_row(row)
                except (TypeError, ValueError) as exc:
                    self.skipped.append(f"{self.snapshot}: binding {i + 1}: {_why(exc)}")
                    continue
                bindings[b.home_address] = b
        for path in (self.rotated, self.journal):
            if not path.exists():
                continue
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                try:
                    op, value = json.loads(line)
                    if op == "+":
                        b = Binding.from_row(value)
                        bindings[b.home_address] = b
                    elif op == "-" and isinstance(value, str):
                        bindings.pop(IPv4Address(value), None)
                    else:
                        raise ValueError(f"not a change: {line[:60]!r}")
                except (TypeError, ValueError) as exc:  # also a torn write at a crash
                    self.skipped.append(f"{path}: line {n}: {_why(exc)}")
        self.lines = 0
        return list(bindings.values())

    # --- writing ----------------------------------------------------------------------

    def record(self, op: str, binding: Binding) -> None:
        value = binding.to_row() if op == "install" else str(binding.home_address)
        self.pending.append(json.dumps(["+" if op == "install" else "-", value]))

    def flush(self) -> None:
        if not self.pending:
            return
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, ("\n".join(self.pending) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self.lines += len(self.pending)
        self.pending.clear()

    def needs_compaction(self, table_size: int) -> bool:
        return self.lines > max(10_000, 2 * table_size)

    def rotate(self) -> None:
        """Set the journal aside before a snapshot (in the event loop, after flush())."""
        self.flush()
        if self.journal.exists():
            if self.rotated.exists():  # an earlier compaction did not finish: keep its lines
                with open(self.rotated, "a") as out:
                    out.write(self.journal.read_text())
                self.journal.unlink()
            else:
                os.replace(self.journal, self.rotated)
        self.lines = 0

    def write_snapshot(self, bindings: Iterable[Binding]) -> None:
        """Thread-safe part of a compaction: write the snapshot, drop the rotated journal."""
        statefile.write_atomic(self.snapshot, {
            "version": VERSION, "bindings": [b.to_row() for b in bindings]})
        if self.rotated.exists():
            self.rotated.unlink()


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:160]
