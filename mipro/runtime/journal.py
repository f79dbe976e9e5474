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
from pathlib import Path
from typing import Any

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

    # --- reading ----------------------------------------------------------------------

    def load(self) -> list[Binding]:
        """Snapshot, then the rotated journal, then the journal; a torn last line is skipped."""
        rows: dict[str, list[Any]] = {}
        data = statefile.read(self.snapshot)
        if data:
            if data.get("version") != VERSION:
                raise ValueError(f"{self.snapshot}: version {data.get('version')} is not "
                                 f"{VERSION}")
            rows = {row[0]: row for row in data["bindings"]}
        for path in (self.rotated, self.journal):
            if not path.exists():
                continue
            for line in path.read_text().splitlines():
                try:
                    op, value = json.loads(line)
                except ValueError:
                    continue  # torn write at a crash
                if op == "+":
                    rows[value[0]] = value
                elif op == "-":
                    rows.pop(value, None)
        self.lines = 0
        return [Binding.from_row(r) for r in rows.values()]

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
