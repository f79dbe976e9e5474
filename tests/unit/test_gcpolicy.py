"""The daemon's collection policy: only generation 0 is CPython's to collect; each tick
collects the rest (cycles die) and freezes what survived."""

import asyncio
import gc
import weakref

from mipro.runtime.gcpolicy import NEVER, LongLivedHeap


class Node:
    def __init__(self) -> None:
        self.other: object = self


def test_tick_collects_cycles_then_freezes_survivors_and_stop_restores():
    before = gc.get_threshold()

    async def run() -> tuple[bool, bool, tuple[int, int, int], int]:
        heap = LongLivedHeap(interval=0.01)
        heap.start()
        try:
            thresholds = gc.get_threshold()
            kept = Node()
            dead = Node()
            gone = weakref.ref(dead)
            del dead
            frozen = gc.get_freeze_count()
            await asyncio.sleep(0.1)  # a few ticks
            return gone() is None, gc.is_tracked(kept), thresholds, \
                gc.get_freeze_count() - frozen
        finally:
            heap.stop()
            gc.unfreeze()

    collected, tracked, thresholds, newly_frozen = asyncio.run(run())
    assert collected  # a cycle that died between ticks is collected by the tick
    assert tracked
    assert thresholds == (before[0], NEVER, NEVER)
    assert newly_frozen > 0  # what survived the tick (``kept`` among it) is frozen
    assert gc.get_threshold() == before
