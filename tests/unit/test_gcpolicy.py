"""The daemon's collection policy: no full collection of CPython's choosing; each tick
collects what survived since the last (cycles die) and freezes it."""

import asyncio
import gc
import weakref

from mipro.runtime.gcpolicy import NEVER, LongLivedHeap


class Node:
    def __init__(self) -> None:
        self.other: object = self


def test_tick_collects_cycles_then_freezes_survivors_and_stop_restores():
    before = gc.get_threshold()

    async def run() -> tuple[bool, bool, tuple[int, int, int], bool]:
        heap = LongLivedHeap(interval=0.01)
        heap.start()
        try:
            thresholds = gc.get_threshold()
            kept = Node()
            dead = Node()
            gone = weakref.ref(dead)
            del dead
            await asyncio.sleep(0.1)  # a few ticks
            young = any(o is kept for g in range(3) for o in gc.get_objects(g))
            return gone() is None, gc.is_tracked(kept), thresholds, young
        finally:
            heap.stop()
            gc.unfreeze()

    collected, tracked, thresholds, young = asyncio.run(run())
    assert collected  # a cycle that died between ticks is collected by the tick
    assert tracked
    assert thresholds == (before[0], before[1], NEVER)
    assert not young  # tracked but in no generation: frozen by a tick
    assert gc.get_threshold() == before
