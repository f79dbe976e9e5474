#!/usr/bin/env python3
"""Registration throughput and latency at the home agent (issue 3 benchmark).

Builds two namespaces (home agent, load generator), starts `mipro ha` with
N subscribers, and drives new registrations, renewals and deregistrations
over UDP with 64 requests outstanding.  Runs with the fake dataplane (no
kernel work: the protocol baseline) and with the real one (routes in
mipro's table, proxy ARP entries, the tunnel), and reports RSS per binding.
Figures, not pass/fail.
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
    sh("ip", "-n", HA_NS, "addr", "add", "10.128.0.1/14", "dev", "home0")
    sh("ip", "-n", GEN_NS, "addr", "add", "10.99.0.2/24", "dev", "eth0")
    for ns, dev in ((HA_NS, "wan0"), (HA_NS, "home0"), (HA_NS, "homepeer"), (GEN_NS, "eth0")):
        sh("ip", "-n", ns, "link", "set", dev, "up")
    sh("ip", "-n", GEN_NS, "route", "add", "10.128.0.0/14", "via", "10.99.0.1")


def netns_down() -> None:
    for ns in (HA_NS, GEN_NS):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def write_confs(d: Path, n: int, backend: str, seed: str) -> Path:
    backend, _, proxy = backend.partition(":")
    subs = d / "subscribers.toml"
    with open(subs, "w") as fh:
        for i in range(n):
            fh.write(f'[[subscriber]]\nhome_address = "{home_of(i)}"\nmax_lifetime = 3600\n'
                     f'sa = [{{ spi = {256 + i}, key = "hex:{mn_key(seed, i).hex()}" }}]\n')
    subs.chmod(0o600)
    conf = d / "ha.toml"
    conf.write_text(f"""[ha]
address = "10.128.0.1"
home_interface = "home0"
home_network = "10.128.0.0/14"
max_lifetime = 3600
proxy_arp = "{proxy or 'per-binding'}"
[subscribers]
file = "{subs}"
[dataplane]
backend = "{backend}"
[runtime]
control_socket = "{d}/ha.sock"
state_file = "{d}/state.json"
log_level = "warning"
""")
    conf.chmod(0o600)
    return conf


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run_case(n: int, backend: str, seed: str = "bench") -> dict:
    with tempfile.TemporaryDirectory(prefix="mipro-bench-") as tmp:
        d = Path(tmp)
        conf = write_confs(d, n, backend, seed)
        netns_up()
        log = open(d / "ha.log", "w")  # noqa: SIM115
        ha = subprocess.Popen(["ip", "netns", "exec", HA_NS, "taskset", "-c", "0", PY, "-m",
                               "mipro.cli", "ha", "--config", str(conf)],
                              stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parent)
        try:
            deadline = time.monotonic() + 120
            while not (d / "ha.sock").exists():
                if ha.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((d / "ha.log").read_text())
                time.sleep(0.1)
            rss0 = rss_kib(ha.pid)
            out = {"n": n, "backend": backend}
            for phase in ("new", "renew", "dereg"):
                if phase == "dereg":
                    out["rss_per_binding_bytes"] = round((rss_kib(ha.pid) - rss0) * 1024 / n)
                res = json.loads(sh("ip", "netns", "exec", GEN_NS, "taskset", "-c", "1", PY,
                                    str(HERE / "regload.py"), "--ha", "10.128.0.1", "--coa",
                                    "10.99.0.2", "--n", str(n), "--phase", phase, "--seed",
                                    seed))
                out[phase] = res
                if phase == "new" and backend != "fake":
                    routes = sh("ip", "-n", HA_NS, "route", "show", "table", "434").count("\n")
                    proxies = sh("ip", "-n", HA_NS, "neigh", "show", "proxy").count("\n")
                    out["kernel_routes"], out["kernel_proxies"] = routes, proxies
            return out
        finally:
            ha.send_signal(signal.SIGTERM)
            try:
                ha.wait(60)
            except subprocess.TimeoutExpired:
                ha.kill()
            log.close()
            netns_down()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="100,10000,100000")
    p.add_argument("--backends", default="fake,userspace,userspace:interface",
                   help="fake | userspace | kernel, optionally :interface for proxy_arp mode")
    a = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    results = []
    print(f"{'MNs':>7} {'dataplane':<20} {'phase':<6} {'req/s':>8} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'lost':>5} {'codes':<14} extra")
    for backend in a.backends.split(","):
        for n in (int(x) for x in a.sizes.split(",")):
            r = run_case(n, backend)
            results.append(r)
            for phase in ("new", "renew", "dereg"):
                x = r[phase]
                extra = ""
                if phase == "new":
                    extra = f"rss/binding={r['rss_per_binding_bytes']} B"
                    if "kernel_routes" in r:
                        extra += f" routes={r['kernel_routes']} proxies={r['kernel_proxies']}"
                print(f"{n:>7} {backend:<20} {phase:<6} {x['rate']:>8.0f} {x['p50_ms']:>8.2f} "
                      f"{x['p99_ms']:>8.2f} {x['lost']:>5} {json.dumps(x['codes']):<14} {extra}",
                      flush=True)
    Path(HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "registration.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
