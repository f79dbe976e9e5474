#!/usr/bin/env python3
"""What the metrics cost the home agent: registration throughput and latency with
runtime.metrics_listen off (the baseline) and on with a scrape every --interval seconds,
in the same run, alternating, and how long a scrape takes.

bench/registration.py's setup (two namespaces, `mipro ha` with N subscribers, the
closed-loop generator bench/regload.py with 64 requests outstanding), in namespaces of
its own (mmet-ha, mmet-gen).  With metrics on, a scraper in the generator's namespace
GETs /metrics every --interval s (Prometheus' usual interval is 15 s: this is harsher)
and reports each scrape's wall time.  Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import bench.registration as reg  # noqa: E402

reg.HA_NS, reg.GEN_NS = "mmet-ha", "mmet-gen"  # not bench/registration.py's own
PY = sys.executable
LISTEN = "10.99.0.1:9434"


def scraper(interval: float) -> None:
    """Until SIGTERM: scrape, print one JSON line of wall times (ms) and sizes."""
    times: list[float] = []
    size = 0
    stop = False

    def done(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, done)
    while not stop:
        t0 = time.perf_counter()
        try:
            size = len(urllib.request.urlopen(f"http://{LISTEN}/metrics", timeout=10).read())
            times.append((time.perf_counter() - t0) * 1000)
        except OSError:
            pass
        time.sleep(max(0.0, interval - (time.perf_counter() - t0)))
    print(json.dumps({"scrapes": len(times), "bytes": size,
                      "p50_ms": statistics.median(times) if times else None,
                      "max_ms": max(times) if times else None}))


def micro(n: int = 100_000) -> dict:
    """CPU per registration of the timer's two hooks (a request in, its reply out), less
    the bare loop's; and the CPU of one scrape's snapshot
    and exposition of a home agent (the snapshot reads counters, not bindings: its cost
    does not grow with them)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from mipro.config import load_ha
    from mipro.runtime.ha_daemon import HaDaemon
    from mipro.runtime.logging import EventLog
    from mipro.runtime.metrics import RegistrationTimer, families, snapshot_ha

    reqs = [bytes([1]) + bytes(19) + i.to_bytes(4, "big") for i in range(n)]
    reps = [bytes([3]) + bytes(15) + i.to_bytes(4, "big") for i in range(n)]
    t0 = time.process_time()
    for _q, _r in zip(reqs, reps, strict=True):  # the baseline: the same loop, no hooks
        pass
    base = time.process_time() - t0
    timer = RegistrationTimer()
    t0 = time.process_time()
    for q, r in zip(reqs, reps, strict=True):
        timer.request_in(q, "10.99.0.2", 434)
        timer.reply_out(r, "10.99.0.2", 434)
    hooks = time.process_time() - t0
    with tempfile.TemporaryDirectory() as tmp:
        conf = reg.write_confs(Path(tmp), 1000, "fake", "bench")
        daemon = HaDaemon(load_ha(conf), EventLog("ha", "error"))

    class Fixed:
        def collect(self):  # noqa: ANN202 - prometheus_client's protocol
            return families(snapshot_ha(daemon))

    registry = CollectorRegistry()
    registry.register(Fixed())
    t0 = time.process_time()
    for _ in range(200):
        size = len(generate_latest(registry))
    scrape = (time.process_time() - t0) / 200
    return {"timer_us_per_registration": (hooks - base) / n * 1e6,
            "baseline_loop_us": base / n * 1e6, "scrape_cpu_ms": scrape * 1000,
            "exposition_bytes": size}


def run_case(n: int, metrics: bool, interval: float, backend: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="mipro-bench-") as tmp:
        d = Path(tmp)
        conf = reg.write_confs(d, n, backend, "bench")
        if metrics:
            conf.write_text(conf.read_text() + f'metrics_listen = "{LISTEN}"\n')
        reg.netns_up()
        log = open(d / "ha.log", "w")  # noqa: SIM115
        ha = subprocess.Popen(["ip", "netns", "exec", reg.HA_NS, "taskset", "-c", "0", PY,
                               "-m", "mipro.cli", "ha", "--config", str(conf)],
                              stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parent)
        scrape = None
        try:
            deadline = time.monotonic() + 120
            while not (d / "ha.sock").exists():
                if ha.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((d / "ha.log").read_text())
                time.sleep(0.1)
            if metrics:
                scrape = subprocess.Popen(["ip", "netns", "exec", reg.GEN_NS, PY, __file__,
                                           "scrape", "--interval", str(interval)],
                                          stdout=subprocess.PIPE, text=True)
            out: dict = {"n": n, "metrics": metrics}
            for phase in ("new", "renew"):
                out[phase] = json.loads(reg.sh(
                    "ip", "netns", "exec", reg.GEN_NS, "taskset", "-c", "1", PY,
                    str(HERE / "regload.py"), "--ha", "10.128.0.1", "--coa", "10.99.0.2",
                    "--n", str(n), "--phase", phase, "--seed", "bench"))
            if scrape is not None:
                scrape.send_signal(signal.SIGTERM)
                out["scrape"] = json.loads(scrape.communicate(timeout=30)[0])
            return out
        finally:
            if scrape is not None and scrape.poll() is None:
                scrape.kill()
            ha.send_signal(signal.SIGTERM)
            try:
                ha.wait(60)
            except subprocess.TimeoutExpired:
                ha.kill()
            log.close()
            reg.netns_down()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd")
    s = sub.add_parser("scrape")
    s.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between scrapes")
    p.add_argument("--backend", default="fake")
    a = p.parse_args()
    if a.cmd == "scrape":
        scraper(a.interval)
        return
    m = micro()
    print(f"in-process: the timer's hooks cost {m['timer_us_per_registration']:.2f} us of CPU "
          f"per registration (the bare loop {m['baseline_loop_us']:.2f} us); one scrape's "
          f"snapshot and exposition {m['scrape_cpu_ms']:.2f} ms of CPU "
          f"({m['exposition_bytes']} B, without the process metrics)")
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    print(f"{'MNs':>6} {'metrics':<22} {'phase':<6} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'lost':>5}  scrapes")
    results = []
    for _ in range(a.rounds):
        for metrics in (False, True):
            r = run_case(a.n, metrics, a.interval, a.backend)
            results.append(r)
            what = f"on, scraped every {a.interval:g} s" if metrics else "off (baseline)"
            for phase in ("new", "renew"):
                x = r[phase]
                sc = r.get("scrape") if phase == "new" else None
                extra = (f"{sc['scrapes']} scrapes of {sc['bytes']} B, p50 {sc['p50_ms']:.1f} "
                         f"ms, max {sc['max_ms']:.1f} ms") if sc else ""
                print(f"{a.n:>6} {what:<22} {phase:<6} {x['rate']:>8.0f} {x['p50_ms']:>7.2f} "
                      f"{x['p99_ms']:>7.2f} {x['lost']:>5}  {extra}", flush=True)
    for phase in ("new", "renew"):
        off = [r[phase]["rate"] for r in results if not r["metrics"]]
        on = [r[phase]["rate"] for r in results if r["metrics"]]
        print(f"{phase}: median req/s off {statistics.median(off):.0f}, on "
              f"{statistics.median(on):.0f} ({statistics.median(on) / statistics.median(off) - 1:+.1%})")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "metrics_overhead.json").write_text(
        json.dumps({"micro": m, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
