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


def on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        state["gc"] = clock()
        return
    took = clock() - state.get("gc", clock())
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


def watch() -> None:
    main = threading.main_thread().ident
    while True:
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
threading.Thread(target=watch, name="stallprobe", daemon=True).start()
emit(f"probe pid={os.getpid()} stall_ms={LAG * 1000:.0f}")
if sys.argv[2] != "-m":
    sys.exit("usage: stallprobe.py OUT -m MODULE ARGS...")
sys.argv = [sys.argv[3], *sys.argv[4:]]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
