#!/usr/bin/env python3
"""CPU per renewal in the home agent's engine alone (issue 15): ``HomeAgent.receive``
in-process, no sockets, no runtime.

N subscribers (per-MN SPI and key, as bench/regload.py signs them), all registered,
then renewals with fresh timestamps through ``receive``; process CPU per call, the
best of three.  ``--trees`` runs each source tree in a subprocess of its own, in turn
and twice, so a before/after is the same run (e.g. ``before=/path/to/main``); the
difference against bench/registration.py's per-reply CPU is the daemon's share.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure(n: int, renewals: int) -> tuple[float, int]:
    """CPU µs per renewal, and the expiry heap's length after (one entry per binding)."""
    # mipro first, from PYTHONPATH (the tree measured): regload puts this file's tree first
    from mipro.core.ha import HaPolicy, HomeAgent
    from mipro.security import SecurityAssociation
    from mipro.security.replay import timestamp_identification
    from mipro.subscribers.model import MemoryStore, Subscriber

    sys.path.insert(0, str(HERE))
    from regload import Signer, home_of, mn_key

    subs = [Subscriber(home_of(i), "", {256 + i: SecurityAssociation(256 + i, mn_key("b", i))})
            for i in range(n)]
    engine = HomeAgent(HaPolicy(addresses=(IPv4Address("10.128.0.1"),)), MemoryStore(subs))
    engine.info_events = False  # as the daemon at log_level warning
    signer = Signer(n, "b", "10.128.0.1", "10.99.0.2", 3600)
    src = IPv4Address("10.99.0.2")
    t = time.time()  # the engine's clock, and the requests' timestamps follow it
    for i in range(n):  # spaced in time: the per-source budget is 50,000/s
        t += 3e-5
        engine.receive(signer.request(i, timestamp_identification(t)), src, 434, t)
    t += 1  # renewals from here; 200,000 of them take 6 s of this clock, in the window
    base = timestamp_identification(t)
    requests = [signer.request(k % n, base + (k << 1)) for k in range(renewals)]
    gc.freeze()
    answered = 0
    start = time.process_time()
    for data in requests:
        t += 3e-5
        answered += len(engine.receive(data, src, 434, t))
    spent = time.process_time() - start
    if answered < 2 * renewals:  # a reply and an install each, or this measured denials
        sys.exit(f"only {answered} actions for {renewals} renewals")
    return spent / renewals * 1e6, len(engine.bindings._heap)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100,100000")
    p.add_argument("--renewals", type=int, default=60_000)
    p.add_argument("--trees", default=f"this={HERE.parent}", help="LABEL=DIR,...")
    p.add_argument("--repeat", type=int, default=3, help="runs per subprocess (the best)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # a subprocess: SIZE, prints µs
    a = p.parse_args()
    if a.one:
        best, heap = min(measure(int(a.one), a.renewals) for _ in range(a.repeat))
        import mipro  # which tree was measured, said in the output

        print(json.dumps([best, heap, str(Path(mipro.__file__).parents[1])]))
        return
    trees = [t.partition("=")[::2] for t in a.trees.split(",")]
    print(f"{'tree':<10} {'MNs':>8} {'µs/renewal':>10} {'heap':>8}  (engine.receive, best of "
          f"{a.repeat}, load {os.getloadavg()[0]:.2f})")
    for n in (int(x) for x in a.sizes.split(",")):
        for _ in range(2):
            for label, tree in trees:
                out = subprocess.run([sys.executable, __file__, "--one", str(n),
                                      "--renewals", str(a.renewals), "--repeat", str(a.repeat)],
                                     check=True,
                                     capture_output=True, text=True, cwd=tree,
                                     env=dict(os.environ, PYTHONPATH=tree)).stdout
                us, heap, measured = json.loads(out)
                print(f"{label:<10} {n:>8} {us:>10.2f} {heap:>8}  {measured} (load "
                      f"{os.getloadavg()[0]:.2f})", flush=True)


if __name__ == "__main__":
    main()
