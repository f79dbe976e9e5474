#!/usr/bin/env python3
"""Run a daemon with a stall probe: what held its event loop up, and for how long.

``stallprobe.py OUT -m mipro.cli ha --config ...`` runs the module as ``python -m``
would, after installing three probes that append lines to OUT (one per event):

- ``lag``: a 2 ms heartbeat on the event loop came late by more than STALL_MS
  (default 20): the loop was held up.  With it, what a watchdog thread saw while
  the heartbeat was overdue (sampled every 3 ms): the main thread's innermost frames
  and those of every other thread not idle, most frequent first.  The watchdog needs
  the GIL too, so a stall inside one C call (a collection, a resize) shows as the
  code right after it, or as nothing sampled at all.
- ``gc``: a collection (in any thread) longer than 2 ms, with its generation.
- ``gil``: with ``GIL=1``, how long the watchdog waited for the GIL, when over
  STALL_MS: a thread held it that long without letting go.
- ``gcsum``: once a second, the collector's totals since the start, per generation:
  collections, milliseconds, objects collected (a phase's share: the difference of
  two lines).

``TIME_CALLS=module:Class.method,...`` times those (plain, not async) functions in
the thread that runs them (``time.thread_time``): ``calls`` lines once a second with
each one's count and CPU milliseconds since the start, to split a reply's CPU between
the engine and the runtime at two table sizes.

``GC_OFF=1`` runs the daemon with no collections at all (``gc.disable`` and no
explicit ``gc.collect``): an experiment, to see what the collector costs.

bench/registration.py ``--stalls`` runs the home agent under this and prints the
events of each phase.  Lines start with time.time(), so phases can be matched."""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import runpy
import sys
import threading
import time
from typing import Any

OUT = open(sys.argv[1], "a", buffering=1)  # noqa: SIM115 (for the life of the process)
LAG = float(os.environ.get("STALL_MS", "20")) / 1000
BEAT = 0.002
IDLE = {"wait", "_worker", "select", "poll", "_wait_for_tstate_lock", "get", "sleep"}
clock = time.perf_counter
state: dict[str, Any] = {"beat": clock(), "due": clock() + BEAT, "samples": []}


def emit(text: str) -> None:
    OUT.write(f"{time.time():.3f} {text}\n")


GC_TOTALS = [[0, 0.0, 0] for _ in range(3)]  # per generation: count, seconds, collected


def on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        state["gc"] = clock()
        return
    took = clock() - state.get("gc", clock())
    total = GC_TOTALS[info["generation"]]
    total[0] += 1
    total[1] += took
    total[2] += info["collected"]
    if took > 0.002:
        emit(f"gc gen={info['generation']} ms={took * 1000:.1f} collected={info['collected']} "
             f"thread={threading.current_thread().name}")


def stack(frame: Any, depth: int = 4) -> str:
    names = []
    while frame is not None and len(names) < depth:
        code = frame.f_code
        names.append(f"{os.path.basename(code.co_filename)}:{code.co_name}:{frame.f_lineno}")
        frame = frame.f_back
    return "<".join(names)


def beat(loop: asyncio.AbstractEventLoop) -> None:
    now = clock()
    late = now - state["due"]
    if late > LAG:
        seen = collections.Counter(state["samples"]).most_common(3)
        emit(f"lag ms={late * 1000:.1f} samples={len(state['samples'])} " +
             " | ".join(f"{n}x {s}" for s, n in seen))
    state["samples"] = []
    state["beat"], state["due"] = now, now + BEAT
    loop.call_later(BEAT, beat, loop)


def gc_summary() -> str:
    gens = " ".join(f"gen{g}={n}/{ms * 1000:.1f}ms/{got}" for g, (n, ms, got) in
                    enumerate(GC_TOTALS))
    return f"gcsum {gens}"  # not gc.get_freeze_count(): it walks the frozen objects


CALLS: dict[str, list[float]] = {}  # name: [count, thread CPU seconds]


def timed(name: str, fn: Any) -> Any:
    total = CALLS.setdefault(name, [0, 0.0])
    cpu = time.thread_time

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = cpu()
        try:
            return fn(*args, **kwargs)
        finally:
            total[0] += 1
            total[1] += cpu() - t0
    return wrapper


def time_calls(spec: str) -> None:
    import importlib

    for item in filter(None, spec.split(",")):
        module, _, path = item.partition(":")
        owner: Any = importlib.import_module(module)
        *outer, name = path.split(".")
        for part in outer:
            owner = getattr(owner, part)
        setattr(owner, name, timed(item, getattr(owner, name)))


def calls_summary() -> str:
    return "calls " + " ".join(f"{name}={n}/{sec * 1000:.1f}ms"
                               for name, (n, sec) in CALLS.items())


def watch() -> None:
    main = threading.main_thread().ident
    summary_due = clock() + 1.0
    while True:
        if clock() >= summary_due:
            summary_due = clock() + 1.0
            emit(gc_summary())
            if CALLS:
                emit(calls_summary())
        before = clock()
        time.sleep(0.003)
        waited = clock() - before - 0.003
        if os.environ.get("GIL") and waited > LAG:
            emit(f"gil waited ms={waited * 1000:.1f}")
        if clock() - state["beat"] < BEAT + 0.01:
            continue
        names = {t.ident: t.name for t in threading.enumerate()}
        parts = []
        for ident, frame in sys._current_frames().items():
            if ident == threading.get_ident():
                continue
            if ident == main:
                parts.insert(0, "main:" + stack(frame))
            elif frame.f_code.co_name not in IDLE:
                parts.append(f"{names.get(ident, ident)}:" + stack(frame, 2))
        state["samples"].append(" ".join(parts))


original_run_forever = asyncio.BaseEventLoop.run_forever


def run_forever(self: asyncio.BaseEventLoop) -> None:
    self.call_soon(beat, self)
    original_run_forever(self)


asyncio.BaseEventLoop.run_forever = run_forever  # type: ignore[method-assign]
gc.callbacks.append(on_gc)
time_calls(os.environ.get("TIME_CALLS", ""))
if os.environ.get("GC_OFF"):
    gc.disable()
    gc.collect = lambda generation=2: 0  # the daemon's own policy's explicit ones too
threading.Thread(target=watch, name="stallprobe", daemon=True).start()
emit(f"probe pid={os.getpid()} stall_ms={LAG * 1000:.0f}")
if sys.argv[2] != "-m":
    sys.exit("usage: stallprobe.py OUT -m MODULE ARGS...")
sys.argv = [sys.argv[3], *sys.argv[4:]]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
