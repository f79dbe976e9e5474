"""Bindings on disk: a snapshot plus an append-only journal of the changes since.

Rewriting every binding on every change costs O(table) per registration; a
journal line costs O(1).  When the journal outgrows the table, a fresh
snapshot is written: the journal is first rotated aside, so nothing written
meanwhile is lost, and a crash at any point leaves snapshot + rotated journal
+ journal, which replay to the same table.

Changes are recorded per home address until the next flush, so a binding
renewed many times within one flush interval costs one line.  The daemon
writes in the background (``flush_in_background``, ``compact_in_background``):
one writer thread appends and rotates in order, another writes snapshots, and
the event loop never waits for the disk.  Bindings are immutable, so they can
be serialised in those threads.  The synchronous ``flush``/``rotate``/
``write_snapshot`` are for start-up, shutdown and tests.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import json.encoder
import os
import threading
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address
from pathlib import Path

from ..core.bindings import Binding, dotted
from . import statefile

VERSION = 2
_quote = json.encoder.encode_basestring_ascii  # json.dumps's own quoting of a str, in C
SNAPSHOT_CHUNK = 2048  # rows per json.dumps call: the GIL is let go between chunks


class BindingJournal:
    def __init__(self, path: str | Path) -> None:
        self.snapshot = Path(path)
        self.journal = self.snapshot.with_name(self.snapshot.name + ".journal")
        self.rotated = self.snapshot.with_name(self.snapshot.name + ".journal.1")
        self.pending: dict[IPv4Address, Binding | None] = {}  # None: removed
        self.lines = 0  # handed to the journal file since the last rotation
        self.skipped: list[str] = []  # what the last load() could not use, and why
        self._failed: dict[IPv4Address, Binding | None] = {}  # a write failed: retried
        self._lock = threading.Lock()
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._snapshotter: concurrent.futures.ThreadPoolExecutor | None = None

    # --- reading ----------------------------------------------------------------------

    def load(self) -> list[Binding]:
        """Snapshot, then the rotated journal, then the journal.

        A snapshot row or journal line that does not describe a binding (a torn write at
        a crash, a damaged file) is skipped and listed in ``skipped`` as ``where: why``;
        the others are kept.  Only a snapshot that is not a version-2 state file at all
        raises ValueError."""
        bindings: dict[IPv4Address, Binding] = {}
        seen: dict[str, IPv4Address] = {}  # care-of addresses, home agents, sources
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
                    b = Binding.from_row(row, seen)
                except (TypeError, ValueError) as exc:
                    self.skipped.append(f"{self.snapshot}: binding {i + 1}: {_why(exc)}")
                    continue
                bindings[b.home_address] = b
            del data, rows
        for path in (self.rotated, self.journal):
            if not path.exists():
                continue
            with open(path, errors="replace") as fh:
                for n, line in enumerate(fh, 1):
                    try:
                        op, value = json.loads(line)
                        if op == "+":
                            b = Binding.from_row(value, seen)
                            bindings[b.home_address] = b
                        elif op == "-" and isinstance(value, str):
                            bindings.pop(IPv4Address(value), None)
                        else:
                            raise ValueError(f"not a change: {line.rstrip()[:60]!r}")
                    except (TypeError, ValueError) as exc:  # also a torn write at a crash
                        self.skipped.append(f"{path}: line {n}: {_why(exc)}")
        self.lines = 0
        return list(bindings.values())

    # --- writing ----------------------------------------------------------------------

    def record(self, op: str, binding: Binding) -> None:
        """A change to write at the next flush (the last one per home address counts)."""
        self.pending[binding.home_address] = binding if op == "install" else None

    def flush(self) -> None:
        """Append what was recorded, after any background write still going."""
        batch = self._take()
        if self._writer is not None:
            self._writer.submit(self._append, batch).result()
        else:
            self._append(batch)

    def flush_in_background(self) -> concurrent.futures.Future[None] | None:
        batch = self._take()
        if not batch and not self._failed:
            return None
        return self._writer_pool().submit(self._append, batch)

    def needs_compaction(self, table_size: int) -> bool:
        return self.lines > max(10_000, 2 * table_size)

    def rotate(self) -> None:
        """Set the journal aside before a snapshot (after flush())."""
        self.flush()
        self._set_aside()
        self.lines = 0

    def write_snapshot(self, bindings: Iterable[Binding]) -> None:
        """Thread-safe part of a compaction: write the snapshot, drop the rotated journal."""
        statefile.write_atomic_text(self.snapshot, _snapshot_chunks(bindings))
        if self.rotated.exists():
            self.rotated.unlink()

    def compact_in_background(self, table: Callable[[], Iterable[list[Binding]]]
                              ) -> concurrent.futures.Future[None]:
        """Rotate (in the writer, after the appends before it), then write the table as the
        snapshot in a thread of its own: appends go on meanwhile.

        ``table`` is read in that thread, after the rotation, a slice at a time
        (BindingTable.slices: each slice copied at once under the GIL), so the event loop
        never copies or waits for a million bindings.  The snapshot is then fuzzy: each
        slice as of some instant after the rotation.  Every change since the rotation is
        in the new journal, which load() replays on top, so snapshot + journal give the
        table exactly (a binding the snapshot already has is put again, a removed one
        removed again)."""
        batch = self._take()
        self.lines = 0
        rotated = self._writer_pool().submit(self._append_and_set_aside, batch)

        def snapshot() -> None:
            rotated.result()
            self.write_snapshot(itertools.chain.from_iterable(table()))

        if self._snapshotter is None:
            self._snapshotter = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="mipro-snapshot")
        return self._snapshotter.submit(snapshot)

    def close(self) -> None:
        """Wait for the background writes; later calls write in the caller's thread."""
        for pool in (self._writer, self._snapshotter):
            if pool is not None:
                pool.shutdown(wait=True)
        self._writer = self._snapshotter = None

    # --- helpers ----------------------------------------------------------------------

    def _take(self) -> dict[IPv4Address, Binding | None]:
        batch, self.pending = self.pending, {}
        self.lines += len(batch)
        return batch

    def _writer_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._writer is None:
            self._writer = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="mipro-journal")
        return self._writer

    def _append(self, batch: dict[IPv4Address, Binding | None]) -> None:
        with self._lock:  # what a failed write could not append goes first, unless newer
            batch, self._failed = self._failed | batch, {}
        if not batch:
            return
        text = "".join(_line(home, b) for home, b in batch.items())
        try:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:  # e.g. the disk is full: the next flush tries these again
            with self._lock:
                self._failed = batch | self._failed
            raise

    def _set_aside(self) -> None:
        if self.journal.exists():
            if self.rotated.exists():  # an earlier compaction did not finish: keep its lines
                with open(self.rotated, "a") as out:
                    out.write(self.journal.read_text())
                self.journal.unlink()
            else:
                os.replace(self.journal, self.rotated)

    def _append_and_set_aside(self, batch: dict[IPv4Address, Binding | None]) -> None:
        self._append(batch)
        self._set_aside()


def _line(home: IPv4Address, b: Binding | None) -> str:
    """``json.dumps(["+", b.to_row()])`` (or ``["-", home]``), byte for byte."""
    if b is None:
        return f'["-", "{dotted(home)}"]\n'
    return f'["+", {_row(b)}]\n'


def _row(b: Binding) -> str:
    """``json.dumps(b.to_row())``, byte for byte, at a third of the cost: the journal's
    and the snapshot's threads hold the GIL the event loop waits for, once per change
    and once per binding (tests/unit/test_journal.py compares the two)."""
    source = "null" if b.source is None else f'"{dotted(b.source)}"'
    return (f'["{dotted(b.home_address)}", "{dotted(b.care_of_address)}", '
            f'"{dotted(b.home_agent)}", {b.lifetime!r}, {b.expires!r}, {b.registered!r}, '
            f'{b.identification!r}, {_quote(b.encapsulation)}, '
            f'{"true" if b.reverse_tunnel else "false"}, {_quote(b.nai)}, {b.spi!r}, '
            f'{source}, {b.source_port!r}]')


def _snapshot_chunks(bindings: Iterable[Binding]) -> Iterable[str]:
    """The snapshot's JSON text in pieces of SNAPSHOT_CHUNK rows: the thread lets go of
    the GIL between them, so the event loop is never held up for the whole table."""
    yield f'{{"version": {VERSION}, "bindings": ['
    rows = iter(bindings)
    first = True
    while chunk := ", ".join(_row(b) for b in itertools.islice(rows, SNAPSHOT_CHUNK)):
        yield chunk if first else ", " + chunk
        first = False
    yield "]}"


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:160]
