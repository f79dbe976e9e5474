#!/usr/bin/env python3
"""Registration throughput, latency, CPU and memory of the home agent at scale (issue 15).

Builds two namespaces (home agent, load generator), starts `mipro ha` pinned to
CPU 0 with N subscribers from the file store, and drives new registrations,
renewals and deregistrations over UDP from CPU 1 (bench/regload.py, 64
outstanding, per-MN SPI and key, fresh timestamps).  Per phase: replies/s,
the HA's CPU per reply (user + system, all its threads, from /proc), p50/p99/
max latency.  Per case: start-up (until the first reply), RSS per subscriber
(over an HA with one subscriber) and per binding, and with --restart the
start-up with the bindings in the state file: until the first reply and until
the kernel holds them all (mipro's table in /proc/net/fib_triestat).

Every dataplane runs in the same run, so the kernel's share shows against the
fake one (no kernel work: the protocol baseline); ``--trees`` runs other
source trees of the HA in the same run too (e.g. ``before=/path/to/main``, a
checkout of another commit) for a before/after table.  Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.regload import home_of, mn_key  # noqa: E402

PY = sys.executable
HA_NS, GEN_NS = "mbench-ha", "mbench-gen"
HA, COA = "10.128.0.1", "10.99.0.2"
TABLE = 434
TICK = os.sysconf("SC_CLK_TCK")


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def netns_up() -> None:
    netns_down()
    for ns in (HA_NS, GEN_NS):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", HA_NS, "link", "add", "wan0", "type", "veth", "peer", "name", "eth0",
       "netns", GEN_NS)
    sh("ip", "-n", HA_NS, "link", "add", "home0", "type", "veth", "peer", "name", "homepeer")
    sh("ip", "-n", HA_NS, "addr", "add", "10.99.0.1/24", "dev", "wan0")
    sh("ip", "-n", HA_NS, "addr", "add", f"{HA}/12", "dev", "home0")
    sh("ip", "-n", GEN_NS, "addr", "add", f"{COA}/24", "dev", "eth0")
    for ns, dev in ((HA_NS, "wan0"), (HA_NS, "home0"), (HA_NS, "homepeer"), (GEN_NS, "eth0")):
        sh("ip", "-n", ns, "link", "set", dev, "up")
    sh("ip", "-n", GEN_NS, "route", "add", "10.128.0.0/12", "via", "10.99.0.1")


def netns_down() -> None:
    for ns in (HA_NS, GEN_NS):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def write_subscribers(path: Path, n: int, seed: str) -> None:
    """n subscribers, and one more (index n) for the start-up probe."""
    with open(path, "w") as fh:
        for i in range(n + 1):
            fh.write(f'[[subscriber]]\nhome_address = "{home_of(i)}"\nmax_lifetime = 3600\n'
                     f'sa = [{{ spi = {256 + i}, key = "hex:{mn_key(seed, i).hex()}" }}]\n')
    path.chmod(0o600)


def write_conf(d: Path, subs: Path, backend: str) -> Path:
    """``backend``: NAME[:PROXY_ARP_MODE][/nojournal] (no state file: the journal's share)."""
    backend, nojournal, _ = backend.partition("/nojournal")
    backend, _, proxy = backend.partition(":")
    state = "" if nojournal else f'state_file = "{d}/state.json"\n'
    conf = d / "ha.toml"
    conf.write_text(f"""[ha]
address = "{HA}"
home_interface = "home0"
home_network = "10.128.0.0/12"
max_lifetime = 3600
proxy_arp = "{proxy or 'per-binding'}"
[subscribers]
file = "{subs}"
[dataplane]
backend = "{backend}"
[runtime]
control_socket = "{d}/ha.sock"
{state}log_level = "warning"
""")
    conf.chmod(0o600)
    return conf


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system time of the process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def main_thread_seconds(pid: int) -> float:
    """User + system time of the process's main thread (the event loop) alone."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def kernel_routes() -> int:
    """Routes in mipro's table, from the kernel's own count (cheap at a million)."""
    text = sh("ip", "netns", "exec", HA_NS, "cat", "/proc/net/fib_triestat")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == f"Id {TABLE}:":
            for more in lines[i + 1:i + 8]:
                if more.strip().startswith("Prefixes:"):
                    return int(more.split()[1])
    return 0


def gen(*args: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", GEN_NS, "taskset", "-c", "1", PY,
                             str(HERE / "regload.py"), "--ha", HA, "--coa", COA, *args],
                            stdout=subprocess.PIPE, text=True)


class Ha:
    """One `mipro ha`, from source tree ``tree``, pinned to CPU 0."""

    def __init__(self, tree: Path, conf: Path, log: Path, stalls: Path | None = None,
                 label: str = "") -> None:
        self.log = open(log, "a")  # noqa: SIM115
        self.label = label
        self.t0 = time.time()
        self.stalls = stalls
        env = dict(os.environ, PYTHONPATH=str(tree))
        probe = [str(HERE / "stallprobe.py"), str(stalls)] if stalls else []
        self.p = subprocess.Popen(["ip", "netns", "exec", HA_NS, "taskset", "-c", "0", PY,
                                   *probe, "-m", "mipro.cli", "ha", "--config", str(conf)],
                                  stdout=self.log, stderr=subprocess.STDOUT, cwd=tree, env=env)
        self.sock = conf.parent / "ha.sock"

    def wait_ready(self, log: Path, timeout: float = 600) -> float:
        while not self.sock.exists():
            if self.p.poll() is not None or time.time() - self.t0 > timeout:
                raise RuntimeError(log.read_text()[-3000:])
            time.sleep(0.02)
        return time.time() - self.t0

    def stop(self) -> None:
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(600)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.log.close()


def start(tree: Path, conf: Path, n: int, seed: str, kernel: bool,
          stalls: bool = False) -> tuple[Ha, dict]:
    """Start the HA with a probe running from the same instant; the figures of its
    start-up: until the control socket, the first reply, and (restored bindings) until
    the kernel holds ``kernel`` routes."""
    log = conf.parent / "ha.log"
    if (conf.parent / "ha.sock").exists():
        (conf.parent / "ha.sock").unlink()
    ha = Ha(tree, conf, log, conf.parent / "stalls.log" if stalls else None, tree.name)
    probe = gen("--n", str(n + 1), "--phase", "probe", "--probe", str(n), "--seed", seed,
                "--since", str(ha.t0), "--timeout", "900")
    out: dict = {}
    try:
        out["ready_s"] = round(ha.wait_ready(log), 2)
        got = json.loads(probe.communicate(timeout=900)[0])
    except BaseException:
        probe.kill()
        ha.stop()
        raise
    out["first_reply_s"] = got["seconds"]
    if kernel:
        want = n + 1  # the restored bindings and the probe's
        while (have := kernel_routes()) < want and time.time() - ha.t0 < 900:
            time.sleep(0.2)
        out["kernel_complete_s"] = round(time.time() - ha.t0, 2)
        out["kernel_routes"] = have
    return ha, out


PROFILE: Path | None = None  # --pyspy: a py-spy profile of the HA per phase, here


def phase(ha: Ha, n: int, name: str, requests: int, seed: str, hup_after: float = 0) -> dict:
    """``hup_after``: SIGHUP the HA (a reload of the subscriber file) this many seconds in."""
    user0, sys0 = cpu_seconds(ha.p.pid)
    main0 = main_thread_seconds(ha.p.pid)
    t0 = time.time()
    p = gen("--n", str(n), "--phase", name, "--requests", str(requests), "--seed", seed)
    spy = None
    if PROFILE is not None:  # sampled from the other core; collapsed stacks, one per line
        out = PROFILE / f"{ha.label}-{n}-{name}-{int(t0)}.txt"
        spy = subprocess.Popen(["taskset", "-c", "1", str(Path(PY).parent / "py-spy"),
                                "record", "--nonblocking", "--rate", "500", "--format", "raw",
                                "-o", str(out), "--pid", str(ha.p.pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if hup_after:
        time.sleep(hup_after)
        ha.p.send_signal(signal.SIGHUP)  # ip netns exec and taskset exec: the HA's pid
    res = json.loads(p.communicate()[0])
    user1, sys1 = cpu_seconds(ha.p.pid)
    main1 = main_thread_seconds(ha.p.pid)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    replies = max(1, sum(res["codes"].values()))
    if ha.stalls is not None:
        t1 = time.time()
        time.sleep(1.1)  # the probe's next summary line, after the phase
        res["stalls"] = stall_events(ha.stalls, t0, t1)
        res["gc"] = gc_spent(ha.stalls, t0, t1, replies)
        res["calls"] = calls_spent(ha.stalls, t0, t1, replies)
    res["cpu_us"] = round((user1 - user0 + sys1 - sys0) / replies * 1e6, 1)
    res["sys_us"] = round((sys1 - sys0) / replies * 1e6, 1)
    res["main_us"] = round((main1 - main0) / replies * 1e6, 1)  # the rest: other threads
    return res


def stall_events(path: Path, t0: float, t1: float) -> list[str]:
    """The probe's events (bench/stallprobe.py) between t0 and t1, longest first."""
    events = []
    for line in path.read_text().splitlines():
        at, _, text = line.partition(" ")
        if t0 <= float(at) <= t1 and not text.startswith(("probe", "gcsum", "calls")):
            ms = float(text.split("ms=")[1].split()[0]) if "ms=" in text else 0.0
            events.append((ms, f"+{float(at) - t0:.1f}s {text}"))
    return [text for _, text in sorted(events, reverse=True)]


def around(path: Path, prefix: str, t0: float, t1: float) -> tuple[dict, dict] | None:
    """The probe's summary lines ``prefix`` (one a second, totals since its start) last
    before t0 and first after t1, as {key: value}: their difference is the phase's."""
    before = after = None
    for line in path.read_text().splitlines():
        at, _, text = line.partition(" ")
        if not text.startswith(prefix + " "):
            continue
        fields = dict(part.rsplit("=", 1) for part in text.split()[1:])
        if float(at) <= t0 or before is None:
            before = fields
        if float(at) >= t1:
            after = fields
            break
    return None if before is None or after is None else (before, after)


def _count_ms(text: str) -> tuple[int, float]:
    n, ms = text.split("/")[:2]
    return int(n), float(ms.removesuffix("ms"))


def gc_spent(path: Path, t0: float, t1: float, replies: int) -> str:
    """The collector's work between t0 and t1 (the probe's ``gcsum`` lines): per
    generation collections, milliseconds and µs per reply."""
    got = around(path, "gcsum", t0, t1)
    if got is None:
        return "no gcsum lines"
    out = []
    for gen in ("gen0", "gen1", "gen2"):
        (n0, ms0), (n1, ms1) = (_count_ms(x[gen]) for x in got)
        out.append(f"{gen} {n1 - n0}x {ms1 - ms0:.0f} ms ({(ms1 - ms0) * 1000 / replies:.2f} "
                   "µs/reply)")
    return ", ".join(out)


def calls_spent(path: Path, t0: float, t1: float, replies: int) -> str:
    """CPU µs per reply in each function the probe timed (TIME_CALLS), between t0 and t1."""
    got = around(path, "calls", t0, t1)
    if got is None:
        return ""
    out = []
    for name, last in got[1].items():
        n0, ms0 = _count_ms(got[0].get(name, "0/0ms"))
        n1, ms1 = _count_ms(last)
        out.append(f"{name.rpartition(':')[2]} {n1 - n0}x {(ms1 - ms0) * 1000 / replies:.2f} "
                   "µs/reply")
    return ", ".join(out)


def run_case(tree: Path, label: str, n: int, backend: str, subs: Path, base_kib: int,
             a: argparse.Namespace) -> dict:
    kernel = not backend.startswith("fake")
    with tempfile.TemporaryDirectory(prefix="mipro-bench-") as tmp:
        d = Path(tmp)
        conf = write_conf(d, subs, backend)
        netns_up()
        ha = None
        try:
            ha, startup = start(tree, conf, n, a.seed, False, a.stalls)
            rss_loaded = rss_kib(ha.p.pid)
            out = {"tree": label, "n": n, "backend": backend, "start": startup,
                   "rss_mib": round(rss_loaded / 1024),
                   "rss_per_subscriber": round((rss_loaded - base_kib) * 1024 / (n + 1))}
            renewals = max(n, a.renewals)
            out["new"] = phase(ha, n, "new", n, a.seed)
            out["rss_per_binding"] = round((rss_kib(ha.p.pid) - rss_loaded) * 1024 / n)
            if kernel:
                out["kernel_routes"] = kernel_routes()
            out["renew"] = phase(ha, n, "renew", renewals, a.seed)
            out["rss_mib_bound"] = round(rss_kib(ha.p.pid) / 1024)
            if a.reload:  # the RSS above is without a reload's two stores at once
                out["renew+HUP"] = phase(ha, n, "renew", renewals, a.seed, hup_after=2)
            if a.restart:
                ha.stop()
                ha = None
                ha, out["restart"] = start(tree, conf, n, a.seed, kernel, a.stalls)
            out["dereg"] = phase(ha, n, "dereg", n, a.seed)
            return out
        finally:
            if ha is not None:
                ha.stop()
            netns_down()


def base_rss(tree: Path, tmp: Path, seed: str) -> int:
    """RSS of an HA with one subscriber: the interpreter and the code, not the table."""
    subs = tmp / "one.toml"
    write_subscribers(subs, 0, seed)
    d = tmp / "base"
    d.mkdir(exist_ok=True)
    netns_up()
    try:
        ha, _ = start(tree, write_conf(d, subs, "fake"), 0, seed, False)
        kib = rss_kib(ha.p.pid)
        ha.stop()
        return kib
    finally:
        netns_down()


def print_case(r: dict) -> None:
    s = r["start"]
    head = f"{r['tree']:<8} {r['n']:>8} {r['backend']:<20}"
    for name in ("new", "renew", "renew+HUP", "dereg"):
        if name not in r:
            continue
        x = r[name]
        print(f"{head} {name:<9} {x['rate']:>8.0f} {x['cpu_us']:>7.1f} {x['sys_us']:>6.1f} "
              f"{x['p50_ms']:>7.2f} {x['p99_ms']:>7.2f} {x['max_ms']:>8.1f} {x['lost']:>5} "
              f"{json.dumps(x['codes'])}", flush=True)
        print(f"{'':8} CPU µs/reply: main thread {x['main_us']}, other threads "
              f"{x['cpu_us'] - x['main_us']:.1f}", flush=True)
        if "gc" in x:
            print(f"{'':8} collector: {x['gc']}", flush=True)
        if x.get("calls"):
            print(f"{'':8} timed: {x['calls']}", flush=True)
        stalls = x.get("stalls")
        if stalls is not None:
            print(f"{'':8} {len(stalls)} probe events, longest: ", flush=True)
            for text in stalls[:8]:
                print(f"{'':10} {text[:400]}", flush=True)
    extra = f"{head} start {s['first_reply_s']} s, RSS {r['rss_mib']} MiB " \
            f"({r['rss_per_subscriber']} B/subscriber, {r['rss_per_binding']} B/binding, " \
            f"{r['rss_mib_bound']} MiB bound)"
    if "kernel_routes" in r:
        extra += f", routes {r['kernel_routes']}"
    if "restart" in r:
        x = r["restart"]
        extra += f"; restart: first reply {x['first_reply_s']} s"
        if "kernel_complete_s" in x:
            extra += f", kernel complete {x['kernel_complete_s']} s ({x['kernel_routes']})"
    print(extra, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100,10000,100000", help="MNs per case (1000000 too)")
    p.add_argument("--backends", default="fake,userspace,userspace:interface",
                   help="fake | userspace | kernel, optionally :interface for proxy_arp mode, "
                        "/nojournal for no state file")
    p.add_argument("--renewals", type=int, default=200_000,
                   help="renewals per case at least (a small table is renewed over again)")
    p.add_argument("--restart", action="store_true",
                   help="restart the HA with its bindings before deregistering: start-up times")
    p.add_argument("--trees", default=f"this={HERE.parent}",
                   help="LABEL=DIR,... source trees of the HA to compare in the same run")
    p.add_argument("--reload", action="store_true",
                   help="renew again with a SIGHUP (subscriber file reread) 2 s into it")
    p.add_argument("--stalls", action="store_true",
                   help="run the HA under bench/stallprobe.py: what held its loop up, by phase")
    p.add_argument("--pyspy", metavar="DIR",
                   help="profile the HA in every phase with py-spy (collapsed stacks in DIR)")
    p.add_argument("--netns", default="mbench",
                   help="prefix of the two namespaces (NAME-ha, NAME-gen): yours alone")
    p.add_argument("--seed", default="bench")
    p.add_argument("--json", default=str(HERE / "results" / "registration.json"))
    a = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    global HA_NS, GEN_NS, PROFILE
    HA_NS, GEN_NS = f"{a.netns}-ha", f"{a.netns}-gen"
    if a.pyspy:
        PROFILE = Path(a.pyspy)
        PROFILE.mkdir(parents=True, exist_ok=True)
    trees = [(label, Path(path).resolve()) for label, _, path in
             (t.partition("=") for t in a.trees.split(","))]
    results = []
    with tempfile.TemporaryDirectory(prefix="mipro-bench-subs-") as tmp:
        tmpd = Path(tmp)
        bases = {label: base_rss(tree, tmpd, a.seed) for label, tree in trees}
        print(f"{'tree':<8} {'MNs':>8} {'dataplane':<20} {'phase':<9} {'reply/s':>8} "
              f"{'CPU µs':>7} {'sys µs':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>8} "
              f"{'lost':>5} codes")
        for n in (int(x) for x in a.sizes.split(",")):
            subs = tmpd / f"subscribers-{n}.toml"
            write_subscribers(subs, n, a.seed)
            for backend in a.backends.split(","):
                for label, tree in trees:
                    r = run_case(tree, label, n, backend, subs, bases[label], a)
                    r["base_rss_kib"] = bases[label]
                    results.append(r)
                    print_case(r)
            subs.unlink()
    Path(a.json).parent.mkdir(exist_ok=True)
    Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
