"""Garbage collection for a daemon that holds millions of long-lived objects.

CPython's cyclic collector scans every tracked object in a full (generation 2)
collection, with the event loop stopped: with 100,000 bindings that was a
60-200 ms stall every few seconds under load, growing with the table (bench/
registration.py).  The home agent's long-lived objects (subscribers,
bindings, their addresses, the heap) form no reference cycles; reference
counting frees them.  So full collections are not left to CPython's
heuristics: every ``interval`` seconds one runs over what survived since the
last one (generation 2 holds only that), then everything that survived is
frozen (``gc.freeze``: the collector never scans it again).  A tick costs what
arrived in one interval, a few milliseconds at 40,000 renewals a second,
whatever the size of the table.  Young collections stay as they are.

The price: a reference cycle that is alive at a freeze and dies later is not
collected.  The daemon's cycles (asyncio connections, exceptions) live for
milliseconds, so hardly any is alive at the instant of a tick.
"""

from __future__ import annotations

import asyncio
import gc

NEVER = 2**31 - 1  # generation 2's threshold: no full collection of CPython's choosing


class LongLivedHeap:
    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.timer: asyncio.TimerHandle | None = None
        self.thresholds = gc.get_threshold()
        self.ticks = 0

    def start(self) -> None:
        """After loading: collect once, freeze what is loaded, then tick."""
        gc.collect()
        gc.freeze()
        gen0, gen1, _ = self.thresholds
        gc.set_threshold(gen0, gen1, NEVER)
        self.timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def _tick(self) -> None:
        gc.collect(2)  # generation 2 holds what survived since the last tick only
        gc.freeze()
        self.ticks += 1
        self.timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        gc.set_threshold(*self.thresholds)
