#!/usr/bin/env python3
"""A flood of hostile datagrams while a real mobile node registers and renews.

Builds namespaces (prefix mflood-): a home agent (file store, a few subscribers), a
foreign agent whose visited link is a bridge, a generator with a leg to the HA and a
port on the visited link, and a mobile node with a leg to the HA (co-located care-of
address) and a port on the visited link.  Starts `mipro ha` and `mipro fa`, compiles
bench/floodgen.c (gcc, into build/), and for each target (ha, fa) runs 10 s cases:

  baseline  no flood
  one       flood from one source (HA: a UDP socket; FA: frames from one MAC)
  many      flood from spoofed sources (HA: IP_HDRINCL, sources random in 10.200/16,
            routed back to the generator; FA: frames from 65,536 MACs, IP sources
            random in 10.200/16)

The flood mixes random bytes, truncated requests and well-formed requests with a
random home address in the HA's home network and a random SPI and authenticator
(at the FA also ICMP router solicitations to 224.0.0.2, and the requests name the FA's
care-of address, so the FA relays them).  Meanwhile a measuring client (this file's
`mn` subcommand, in the MN namespace) keeps one signed request outstanding, sends the
next on each reply and retransmits (fresh identification) after --mn-timeout.

Per case it prints the generator's offered rate, what the target's interface
received, the target daemon's CPU share and RSS, log lines written during the window
(with the busiest events), UDP receive-buffer drops at the target, the MN's requests
sent/answered and latency p50/p99; JSON in bench/results/flood.json.

--limiter on installs mipro.dataplane.kernel.floodlimit in the targets from outside (the HA's
SourceLimiter exempting the FA and the MN's care-of address, the FA's LinkLimiter
exempting the MN's MAC), to show the kernel limits without the daemons' own wiring.
Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from ipaddress import IPv4Address
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

PY = sys.executable
P = "mflood-"
HA, FA, GEN, MN, SW = (P + n for n in ("ha", "fa", "gen", "mn", "sw"))
HA_ADDR = "10.128.0.1"  # home agent address, on home0 (home network 10.128.0.0/16)
HA_GEN, GEN_ADDR = "10.99.1.1", "10.99.1.2"  # HA <-> generator
HA_MN, MN_COA = "10.99.2.1", "10.99.2.2"  # HA <-> MN (co-located care-of address)
HA_FA, FA_COA = "10.99.3.1", "10.99.3.2"  # HA <-> FA (the FA's care-of address)
FA_ADDR = "198.51.100.1"  # the FA on the visited link
SPOOFED = "10.200.0.0/16"  # many-source flood, routed back to the generator
MN_MAC = "02:00:00:00:01:00"
SUBSCRIBERS = 4
HOME_HA_CASE, HOME_FA_CASE = 0, 1  # subscriber index of the MN in each case
FA_HA_KEY = bytes.fromhex("666c6f6f642d66612d68612d6b657921")
CPU_DAEMON, CPU_LOAD = "0", "1"  # daemons; generator (and by default the MN)
MN_CPU = [CPU_LOAD]


def home_of(i: int) -> IPv4Address:
    return IPv4Address("10.128.1.1") + i


def mn_key(i: int) -> bytes:
    return hashlib.sha256(f"flood:{i}".encode()).digest()[:16]


def sh(*args: str, check: bool = True) -> str:
    r = subprocess.run(args, capture_output=True, text=True)
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def nsx(ns: str, *args: str, check: bool = True) -> str:
    return sh("ip", "netns", "exec", ns, *args, check=check)


# --- the measuring mobile node -----------------------------------------------------------


def run_mn(a: argparse.Namespace) -> None:
    from mipro.security import SecurityAssociation, append_authenticator
    from mipro.security.replay import timestamp_identification
    from mipro.wire import ExtType, RegistrationRequest, RequestFlags

    sa = SecurityAssociation(a.spi, bytes.fromhex(a.key))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((a.bind, 0))
    sock.setblocking(False)
    dst = (a.dst, 434)
    last = 0
    sent = answered = 0
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    per_second = [0] * (int(a.seconds) + 1)
    t0 = time.perf_counter()
    end = t0 + a.seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        ident = max(timestamp_identification(time.time()), last + 1)
        last = ident
        req = RegistrationRequest.build(flags=RequestFlags.T, lifetime=a.lifetime,
                                        home_address=IPv4Address(a.home),
                                        home_agent=IPv4Address(a.ha),
                                        care_of_address=IPv4Address(a.coa),
                                        identification=ident)
        data = append_authenticator(req.encode(), ExtType.MN_HA_AUTH, sa)
        sent_at = time.perf_counter()
        with contextlib.suppress(BlockingIOError):
            sock.sendto(data, dst)
        sent += 1
        deadline = min(sent_at + a.timeout, end)
        low = (ident & 0xFFFFFFFF).to_bytes(4, "big")
        got = False
        while not got:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            if not select.select([sock], [], [], left)[0]:
                continue
            while True:
                try:
                    reply = sock.recv(2048)
                except BlockingIOError:
                    break
                if len(reply) >= 20 and reply[0] == 3 and reply[16:20] == low:
                    got = True
                    done = time.perf_counter()
                    latencies.append(done - sent_at)
                    codes[reply[1]] += 1
                    per_second[min(int(done - t0), len(per_second) - 1)] += 1
        answered += got
        if a.interval > 0:  # a paced MN: the next request no sooner than this
            time.sleep(max(0.0, sent_at + a.interval - time.perf_counter()))
    latencies.sort()

    def pct(q: float) -> float | None:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 3) \
            if latencies else None

    print(json.dumps({"sent": sent, "answered": answered,
                      "share": round(answered / sent, 4) if sent else None,
                      "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0),
                      "codes": dict(codes), "answered_per_second": per_second}))


# --- the lab -------------------------------------------------------------------------


def netns_down() -> None:
    for ns in (HA, FA, GEN, MN, SW):
        pids = sh("ip", "netns", "pids", ns, check=False).split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def veth(ns_a: str, dev_a: str, ns_b: str, dev_b: str) -> None:
    sh("ip", "-n", ns_a, "link", "add", dev_a, "type", "veth", "peer", "name", dev_b,
       "netns", ns_b)


def netns_up() -> None:
    netns_down()
    for ns in (HA, FA, GEN, MN, SW):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    veth(HA, "home0", HA, "homepeer")
    veth(HA, "gen0", GEN, "eth0")
    veth(HA, "mn0", MN, "eth0")
    veth(HA, "fa0", FA, "wan0")
    sh("ip", "-n", SW, "link", "add", "br0", "type", "bridge")
    for ns, dev, port in ((FA, "lan0", "pfa"), (MN, "lan0", "pmn"), (GEN, "lan0", "pgen")):
        veth(ns, dev, SW, port)
        sh("ip", "-n", SW, "link", "set", port, "master", "br0", "up")
    # the generator's thousands of source MACs are not learnt (the bridge's table would
    # grow by millions); frames to them flood, as on a real shared link
    sh("ip", "-n", SW, "link", "set", "dev", "pgen", "type", "bridge_slave", "learning", "off")
    sh("ip", "-n", SW, "link", "set", "br0", "up")
    sh("ip", "-n", MN, "link", "set", "lan0", "address", MN_MAC)
    addrs = ((HA, "home0", f"{HA_ADDR}/16"), (HA, "gen0", f"{HA_GEN}/24"),
             (HA, "mn0", f"{HA_MN}/24"), (HA, "fa0", f"{HA_FA}/24"),
             (GEN, "eth0", f"{GEN_ADDR}/24"), (MN, "eth0", f"{MN_COA}/24"),
             (FA, "wan0", f"{FA_COA}/24"), (FA, "lan0", f"{FA_ADDR}/24"),
             (MN, "lan0", f"{home_of(HOME_FA_CASE)}/32"))
    for ns, dev, addr in addrs:
        sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
    for ns, dev in ((HA, "home0"), (HA, "homepeer"), (HA, "gen0"), (HA, "mn0"), (HA, "fa0"),
                    (GEN, "eth0"), (GEN, "lan0"), (MN, "eth0"), (MN, "lan0"), (FA, "wan0"),
                    (FA, "lan0")):
        sh("ip", "-n", ns, "link", "set", dev, "up")
    sh("ip", "-n", HA, "route", "add", SPOOFED, "via", GEN_ADDR)
    sh("ip", "-n", GEN, "route", "add", "10.128.0.0/16", "via", HA_GEN)
    sh("ip", "-n", MN, "route", "add", "10.128.0.0/16", "via", HA_MN)
    sh("ip", "-n", FA, "route", "add", "default", "via", HA_FA)
    sh("ip", "-n", MN, "route", "add", f"{FA_ADDR}/32", "dev", "lan0", "src",
       str(home_of(HOME_FA_CASE)))
    sh("ip", "netns", "exec", FA, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    sh("ip", "netns", "exec", HA, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    fa_mac = mac_of(FA, "lan0")
    sh("ip", "-n", MN, "neigh", "replace", FA_ADDR, "lladdr", fa_mac, "dev", "lan0", "nud",
       "permanent")


def mac_of(ns: str, dev: str) -> str:
    return json.loads(sh("ip", "-n", ns, "-j", "link", "show", dev))[0]["address"]


def rx_packets(ns: str, dev: str) -> int:
    return json.loads(sh("ip", "-n", ns, "-s", "-j", "link", "show", dev))[0][
        "stats64"]["rx"]["packets"]


def socket_drops(target: str) -> int:
    """Datagrams the kernel dropped at the target's request socket (full receive queue):
    the HA's UDP socket on port 434, the FA's packet socket on its visited link."""
    ns, args, mark = (HA, ("-u", "-a", "-m", "-n"), ":434 ") if target == "ha" else \
        (FA, ("-0", "-a", "-m", "-n"), ":lan0 ")
    total, lines = 0, nsx(ns, "ss", *args).splitlines()
    for i, line in enumerate(lines):
        if mark in line:
            text = line + (lines[i + 1] if i + 1 < len(lines) else "")
            if "skmem:(" in text:
                skmem = text.split("skmem:(", 1)[1].split(")", 1)[0]
                total += int(next((f[1:] for f in skmem.split(",") if f.startswith("d")), 0))
    return total


def write_confs(d: Path, kernel_limits: bool = True) -> tuple[Path, Path]:
    """The daemons' configurations; ``kernel_limits``: their own kernel flood limits
    ([ha.limits] / [fa.limits] kernel, on by default), else their userspace bounds only."""
    kernel = "true" if kernel_limits else "false"
    subs = d / "subscribers.toml"
    with open(subs, "w") as fh:
        for i in range(SUBSCRIBERS):
            fh.write(f'[[subscriber]]\nhome_address = "{home_of(i)}"\nmax_lifetime = 3600\n'
                     f'sa = [{{ spi = {256 + i}, key = "hex:{mn_key(i).hex()}" }}]\n')
    ha = d / "ha.toml"
    ha.write_text(f"""[ha]
address = "{HA_ADDR}"
home_interface = "home0"
home_network = "10.128.0.0/16"
max_lifetime = 3600
[ha.limits]
kernel = {kernel}
[subscribers]
file = "{subs}"
[[fa_peer]]
address = "{FA_COA}"
spi = 300
key = "hex:{FA_HA_KEY.hex()}"
[dataplane]
backend = "userspace"
[runtime]
control_socket = "{d}/ha.sock"
state_file = "{d}/ha-state.json"
""")
    fa = d / "fa.toml"
    fa.write_text(f"""[fa]
interface = "lan0"
address = "{FA_ADDR}"
prefix_length = 24
care_of_addresses = ["{FA_COA}"]
max_lifetime = 3600
[fa.limits]
kernel = {kernel}
[[ha_peer]]
address = "{HA_ADDR}"
spi = 300
key = "hex:{FA_HA_KEY.hex()}"
[dataplane]
backend = "userspace"
[runtime]
control_socket = "{d}/fa.sock"
""")
    for p in (subs, ha, fa):
        p.chmod(0o600)
    return ha, fa


class Daemon:
    def __init__(self, role: str, ns: str, conf: Path, d: Path, cpu: str) -> None:
        self.role = role
        self.log_path = d / f"{role}.log"
        log = open(self.log_path, "w")  # noqa: SIM115 - handed to the child
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, "taskset", "-c", cpu, PY,
                                      "-m", "mipro.cli", role, "--config", str(conf)],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        log.close()
        sock = d / f"{role}.sock"
        deadline = time.monotonic() + 60
        while not sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{role} did not start:\n{self.log_path.read_text()}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int, until: int) -> list[str]:
        with open(self.log_path, "rb") as fh:
            fh.seek(offset)
            return fh.read(until - offset).decode(errors="replace").splitlines()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def log_events(lines: list[str]) -> Counter[str]:
    """'level event' of each line: `STAMP mipro-ROLE level=L EVENT k=v ...`."""
    out: Counter[str] = Counter()
    for line in lines:
        parts = line.split()
        if len(parts) >= 4 and parts[2].startswith("level="):
            out[f"{parts[2][6:]} {parts[3].removeprefix('event=')}"] += 1
        else:
            out["(other)"] += 1
    return out


# --- one case ----------------------------------------------------------------------


def build_generator() -> Path:
    src = HERE / "floodgen.c"
    out = ROOT / "build" / "floodgen"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        out.parent.mkdir(exist_ok=True)
        sh("gcc", "-O2", "-Wall", "-o", str(out), str(src))
    return out


def flood_args(gen: Path, target: str, phase: str, seconds: float) -> list[str]:
    common = ["--seconds", f"{seconds:g}", "--home-net", "10.128.0.0/16", "--ha", HA_ADDR]
    if target == "ha":
        if phase == "one":
            return [str(gen), "--mode", "udp", "--bind", GEN_ADDR, "--dst", HA_ADDR,
                    "--kind", "mix", *common]
        return [str(gen), "--mode", "raw", "--src-net", SPOOFED, "--dst", HA_ADDR,
                "--kind", "mix", *common]
    macs = "1" if phase == "one" else "65536"
    src = "10.200.0.7/32" if phase == "one" else SPOOFED
    return [str(gen), "--mode", "frame", "--ifname", "lan0", "--dst-mac", mac_of(FA, "lan0"),
            "--src-macs", macs, "--src-net", src, "--dst", FA_ADDR, "--coa", FA_COA,
            "--kind", "mixlink", *common]


def mn_args(target: str, seconds: float, timeout: float, interval: float = 0.0) -> list[str]:
    i = HOME_HA_CASE if target == "ha" else HOME_FA_CASE
    where = (["--dst", HA_ADDR, "--bind", MN_COA, "--coa", MN_COA] if target == "ha" else
             ["--dst", FA_ADDR, "--bind", str(home_of(i)), "--coa", FA_COA])
    return ["ip", "netns", "exec", MN, "taskset", "-c", MN_CPU[0], PY, str(HERE / "flood.py"),
            "mn", *where, "--ha", HA_ADDR, "--home", str(home_of(i)), "--spi", str(256 + i),
            "--key", mn_key(i).hex(), "--seconds", f"{seconds:g}", "--timeout", f"{timeout:g}",
            "--interval", f"{interval:g}"]


def limiter(action: str, target: str, mode: str = "on",
            a: argparse.Namespace | None = None) -> dict:
    """floodlimit in the target's namespace; mode "on" exempts the MN (its care-of
    address at the HA, its MAC at the FA) as a daemon exempts registered peers, "new"
    does not (a mobile node's first registration)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if target == "ha":
        cmd, ns, mine = ["source", HA_ADDR, "--exempt", FA_COA], HA, ["--exempt", MN_COA]
    else:
        cmd, ns, mine = ["link", "lan0"], FA, ["--exempt", MN_MAC]
        if action == "install":
            cmd += ["--address", FA_ADDR, "--address", FA_COA, "--address", "255.255.255.255"]
    if action == "install":
        cmd += mine if mode == "on" else []
        cmd += ["--rate", str(a.rate), "--burst", str(a.burst),
                "--aggregate-rate", str(a.aggregate_rate),
                "--aggregate-burst", str(a.aggregate_burst)]
    else:
        cmd = cmd[:2]
    out = subprocess.run(["ip", "netns", "exec", ns, PY, "-m", "mipro.dataplane.kernel.floodlimit",
                          action, *cmd], capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(f"floodlimit {action}: {out.stderr.strip()}")
    return json.loads(out.stdout)["counters"]


def run_case(target: str, phase: str, daemons: dict[str, Daemon], gen: Path,
             a: argparse.Namespace, mode: str) -> dict:
    d = daemons[target]
    ns, dev = (HA, "gen0") if target == "ha" else (FA, "lan0")
    limits = mode != "off"
    if limits:
        limiter("install", target, mode, a)
    rx0, drops0 = rx_packets(ns, dev), socket_drops(target)
    rss0 = d.rss_kib()
    flood = None
    if phase != "baseline":
        flood = subprocess.Popen(["ip", "netns", "exec", GEN, "taskset", "-c", CPU_LOAD,
                                  *flood_args(gen, target, phase, a.seconds + 1.0)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # the flood is at full rate when the window opens
    cpus0 = {k: x.cpu_seconds() for k, x in daemons.items()}
    log0, t0 = d.log_size(), time.monotonic()
    # an MN that is not exempt is itself limited per source: pace it below the limit
    interval = max(a.mn_interval, 2.0 / a.rate) if mode == "new" else a.mn_interval
    mn = subprocess.Popen(mn_args(target, a.seconds, a.mn_timeout, interval),
                          stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT)
    rss_max = rss0
    while mn.poll() is None:
        time.sleep(0.25)
        if d.alive():
            rss_max = max(rss_max, d.rss_kib())
    elapsed = time.monotonic() - t0
    alive = d.alive()
    cpus = {k: round((x.cpu_seconds() - cpus0[k]) / elapsed * 100, 1)
            for k, x in daemons.items() if x.alive()}
    cpu = cpus.get(target)
    log1 = d.log_size()
    rss1 = d.rss_kib() if alive else None
    mn_out, mn_err = mn.communicate()
    gen_out = {}
    if flood is not None:
        out, err = flood.communicate(timeout=30)
        gen_out = json.loads(out) if out.strip() else {"error": err.strip()}
    rx = rx_packets(ns, dev) - rx0
    counters = limiter("counters", target) if limits else None
    if limits:
        limiter("remove", target)
    events = log_events(d.log_since(log0, log1))
    conntrack = nsx(ns, "conntrack", "-C", check=False).strip()
    result = {
        "target": target, "phase": phase, "limiter": mode,
        "offered_pps": gen_out.get("pps", 0), "generator": gen_out,
        "target_rx_pps": round(rx / (elapsed + (1.0 if flood else 0))),
        "socket_drops": socket_drops(target) - drops0,
        "daemon_alive": alive, "cpu_percent": cpu, "cpu_percent_all": cpus,
        "rss_kib_before": rss0, "rss_kib_max": rss_max, "rss_kib_after": rss1,
        "log_lines": sum(events.values()), "log_bytes": log1 - log0,
        "log_events": dict(events.most_common(6)),
        "mn_interval": interval,
        "mn": json.loads(mn_out) if mn_out.strip() else {"error": mn_err.strip()[-500:]},
        "limiter_counters": counters,
        "conntrack_entries": int(conntrack) if conntrack.isdigit() else None,
    }
    time.sleep(a.pause)  # the queues drain before the next case
    return result


def register_once(target: str, a: argparse.Namespace) -> dict:
    out = subprocess.run(mn_args(target, 1.0, 1.0), capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout) if out.stdout.strip() else {"error": out.stderr}


def fmt(r: dict) -> str:
    mn = r["mn"]
    ev = ", ".join(f"{k}={v}" for k, v in list(r["log_events"].items())[:3])
    p50 = "-" if mn.get("p50_ms") is None else f"{mn['p50_ms']:.2f}"
    p99 = "-" if mn.get("p99_ms") is None else f"{mn['p99_ms']:.2f}"
    share = "-" if mn.get("share") is None else f"{mn['share'] * 100:.1f}%"
    cpu = "dead" if r["cpu_percent"] is None else f"{r['cpu_percent']:.0f}"
    rss = f"{r['rss_kib_before'] // 1024}/{r['rss_kib_max'] // 1024}/" + (
        "-" if r["rss_kib_after"] is None else f"{r['rss_kib_after'] // 1024}")
    return (f"{r['target']:<3} {r['phase']:<8} {r['limiter']:<4} {r['offered_pps']:>9.0f} "
            f"{r['target_rx_pps']:>9} {cpu:>5} {rss:>13} {r['socket_drops']:>9} "
            f"{r['log_lines']:>7} {mn.get('sent', 0):>7} {mn.get('answered', 0):>7} "
            f"{share:>7} {p50:>8} {p99:>8}  {ev}")


HEADER = (f"{'tgt':<3} {'phase':<8} {'lim':<4} {'offer/s':>9} {'rx/s':>9} {'cpu%':>5} "
          f"{'rss MiB b/max/a':>13} {'sockdrops':>9} {'loglines':>7} {'mn sent':>7} "
          f"{'answered':>7} {'share':>7} {'p50 ms':>8} {'p99 ms':>8}  top log events")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    m = sub.add_parser("mn", help="(internal) the measuring mobile node")
    for name in ("dst", "bind", "coa", "ha", "home", "key"):
        m.add_argument("--" + name, required=True)
    m.add_argument("--spi", type=int, required=True)
    m.add_argument("--seconds", type=float, default=10)
    m.add_argument("--timeout", type=float, default=1.0)
    m.add_argument("--lifetime", type=int, default=600)
    m.add_argument("--interval", type=float, default=0.0)
    p.add_argument("--targets", default="ha,fa")
    p.add_argument("--phases", default="baseline,one,many")
    p.add_argument("--limiter", default="off",
                   help="comma-separated: off | on (kernel limits, the MN exempt as a "
                        "registered peer) | new (limits, the MN not exempt)")
    p.add_argument("--rate", type=int, default=50, help="limiter: per source, packets/s")
    p.add_argument("--burst", type=int, default=100)
    p.add_argument("--aggregate-rate", type=int, default=2000,
                   help="limiter: all sources that are not exempt together, packets/s")
    p.add_argument("--aggregate-burst", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--mn-timeout", type=float, default=1.0,
                   help="the MN retransmits (fresh identification) after this")
    p.add_argument("--mn-interval", type=float, default=0.0,
                   help="the MN's least time between requests (0: the next on each reply; "
                        "with --limiter new at least 2/--rate)")
    p.add_argument("--mn-cpu", default=CPU_LOAD,
                   help="the CPU of the measuring MN (default the generator's: the flood "
                        "pauses while the MN runs, which flatters the MN a little)")
    p.add_argument("--pause", type=float, default=3.0)
    p.add_argument("--daemon-kernel-limits", choices=("on", "off"), default="on",
                   help="the daemons' own kernel flood limits ([ha.limits]/[fa.limits] "
                        "kernel); off: their userspace bounds only")
    p.add_argument("--out", default=str(HERE / "results" / "flood.json"))
    a = p.parse_args()
    if a.cmd == "mn":
        run_mn(a)
        return
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, raw sockets)")
    MN_CPU[0] = a.mn_cpu
    gen = build_generator()
    results = []
    with tempfile.TemporaryDirectory(prefix="mipro-flood-") as tmp:
        d = Path(tmp)
        ha_conf, fa_conf = write_confs(d, a.daemon_kernel_limits == "on")
        netns_up()
        daemons: dict[str, Daemon] = {}
        try:
            daemons["ha"] = Daemon("ha", HA, ha_conf, d, CPU_DAEMON)
            daemons["fa"] = Daemon("fa", FA, fa_conf, d, CPU_DAEMON)
            for target in a.targets.split(","):
                print(f"# {target}: first registration {json.dumps(register_once(target, a))}",
                      flush=True)
            print(HEADER, flush=True)
            for mode in a.limiter.split(","):
                for target in a.targets.split(","):
                    for phase in a.phases.split(","):
                        if not all(x.alive() for x in daemons.values()):
                            raise RuntimeError("a daemon died: see the results")
                        r = run_case(target, phase, daemons, gen, a, mode)
                        results.append(r)
                        print(fmt(r), flush=True)
        finally:
            for x in daemons.values():
                x.stop()
            for x in daemons.values():
                tail = x.log_path.read_text(errors="replace").splitlines()[-3:]
                if x.proc.returncode not in (0, None):
                    print(f"# {x.role} exited {x.proc.returncode}: {tail}")
            netns_down()
            Path(a.out).parent.mkdir(exist_ok=True)
            Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
