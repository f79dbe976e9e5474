#!/usr/bin/env python3
"""Home agent redundancy (issue 14): failover outage, bulk sync, replication's cost.

Runs the `failover` lab (two home agents with keepalived, seed Fig. 13a) and prints:

* **outage**: ms from SIGKILL of the primary until a UDP stream (CN-internet -> the
  co-located MN, one datagram every 5 ms) flows again, and bindings lost, over
  --kills kills, alternating which home agent dies; with keepalived's advert_int 1 s
  and 0.1 s.  Mode "host": mipro and keepalived both killed (what a failed host does;
  the lab then removes the VMAC link keepalived left, as a dead host's would go).
  Mode "mipro": only mipro dies; keepalived's check of its process notices.
* **bulk sync**: seconds from the backup's start until it holds N bindings by dump,
  and the same dump encoded and applied in one process (the protocol's own cost).
* **registration rate** at the primary with replication on (backup connected) and off,
  same run, same generator.  Two baselines (--rate-baseline): "peer" (the fair one)
  has the lab exactly as with replication on, the backup home agent, both keepalived
  and their VMAC links included, with only the sync session missing (the backup
  listens on another port: the primary's dials are refused); "alone" is HA1 without
  [redundancy], no keepalived, no backup (the figures before 2026-12-01 20:00).  On
  veth links the kernel runs every receiver's work for a broadcast (the gratuitous
  ARPs) inside the sender's system call, and the backup's keepalived VMAC link is one
  more receiver on the home link: "alone" charges that to replication, though between
  two hosts it is the peer's work and is there whether or not the bindings are
  replicated.

Figures, not pass/fail.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.regload import home_of, mn_key  # noqa: E402
from mipro.lab import Lab  # noqa: E402

VIP, GEN, MN2 = "10.1.0.1", "203.0.113.10", "10.1.0.101"
PORT = 7200
OWN = {"ha1": "10.1.0.2", "ha2": "10.1.0.3"}  # the home agents' own home-link addresses
PREFIX = ["mbf"]  # the labs' namespace prefix (--prefix)


def make_lab(out: Path, n: int, advert: float, redundancy: bool = True,
             sync: bool = True) -> Lab:
    """``redundancy`` False: no [redundancy] at all; ``sync`` False: redundancy as ever but
    no sync session (HA2 listens on a port HA1 does not dial: no forwards, no dumps)."""
    lab = Lab("failover", prefix=PREFIX[0], out=out)
    lab.up(services=False)
    subs = lab.conf("ha1", "subscribers.toml").read_text()  # the two MNs of the scenario
    subs += "".join(f'[[subscriber]]\nhome_address = "{home_of(i)}"\nmax_lifetime = 3600\n'
                    f'sa = [{{ spi = {256 + i}, key = "hex:{mn_key("bench", i).hex()}" }}]\n'
                    for i in range(n))
    for ha in ("ha1", "ha2"):
        lab.conf(ha, "subscribers.toml").write_text(subs)
        conf = lab.conf(ha, "ha.toml")
        text = conf.read_text().replace('home_network = "10.1.0.0/24"',
                                        'home_network = "10.0.0.0/8"\nproxy_arp = "interface"')
        if not redundancy:
            text = text[:text.index("[redundancy]")] + text[text.index("[runtime]"):]
        elif not sync and ha == "ha2":
            text = text.replace("[redundancy]\n", "[redundancy]\nport = 4341\n", 1)
        conf.write_text(text + "\n[ha.limits]\nper_source = 1000000.0\nper_source_burst = "
                        "1000000.0\nunknown_sources = 1000000.0\nkernel = false\n")
        lab.edit_conf(ha, "keepalived.conf", "advert_int 1", f"advert_int {advert}")
    return lab


def register(lab: Lab, n: int, phase: str = "new") -> dict:
    out = lab.exec("cn-inet", "taskset", "-c", "1", lab.python, str(HERE / "regload.py"),
                   "--ha", VIP, "--coa", GEN, "--n", str(n), "--phase", phase,
                   timeout=600).stdout
    return json.loads(out)


def roles(lab: Lab) -> dict[str, str]:
    out = {}
    for ha in ("ha1", "ha2"):
        try:
            g = lab.status(ha)["redundancy"]["groups"][0]
        except (OSError, KeyError, ValueError):
            continue
        out[ha] = g["role"] if g["in_sync"] else g["role"] + "-unsynced"
    return out


def both_ready(lab: Lab) -> str:
    """Until one HA is primary and the other a backup in sync; returns the primary."""
    def ready():
        r = roles(lab)
        return sorted(r.values()) == ["backup", "master"] and \
            next(h for h, v in r.items() if v == "master")
    return lab.wait_for(ready, 60, "a primary and an in-sync backup")


def kill(lab: Lab, ha: str, mode: str) -> None:
    n = ha[-1]
    lab.stop_service(ha, signal.SIGKILL)
    if mode == "host":
        lab.stop_service(f"keepalived{n}", signal.SIGKILL)
        lab.exec(ha, "ip", "link", "del", "vrrp.51", check=False)
    lab.exec(ha, lab.python, "-m", "mipro.cli", "ha", "--cleanup", "--config",
             str(lab.conf(ha, "ha.toml")))  # systemd's ExecStopPost


def revive(lab: Lab, ha: str, mode: str) -> None:
    lab.start_service(ha)
    if mode == "host":
        lab.start_service(f"keepalived{ha[-1]}")


def in_kernel(lab: Lab, ha: str) -> set[str]:
    return {b["home_address"] for b in lab.status(ha)["bindings"] if b["in_kernel"]}


def outage_run(lab: Lab, kills: int, mode: str) -> list[dict]:
    results = []
    for _ in range(kills):
        primary = both_ready(lab)
        other = "ha2" if primary == "ha1" else "ha1"
        lab.expect("mn2", {"state": "registered"}, 30)
        expected = in_kernel(lab, primary)
        sink = lab.udp_sink("mn2", PORT, 8)
        source = lab.udp_source("cn-inet", MN2, PORT, 6, 0.005)
        time.sleep(1.5)  # a steady stream before the failure (the outage is cut from it)
        t_kill = time.time()
        kill(lab, primary, mode)
        source.wait(30)
        arrivals = sorted(t for _, t in json.loads(sink.communicate(timeout=30)[0])
                          ["arrivals"])
        # the longest silence that ends after the kill: a datagram relayed just before
        # SIGKILL landed may arrive just after it, so the first gap is not the outage
        before = [t for t in arrivals if t <= t_kill]
        after = [t for t in arrivals if t > t_kill]
        previous = [before[-1] if before else t_kill] + after[:-1]
        gaps = [(b - a, b) for a, b in zip(previous, after, strict=True)]
        gap, resumed = max(gaps) if gaps else (float("inf"), float("inf"))
        held = in_kernel(lab, other)  # the takeover may still be installing: give it 10 s
        deadline = time.time() + 10
        while not expected <= held and time.time() < deadline:
            time.sleep(0.2)
            held = in_kernel(lab, other)
        missing = sorted(expected - held)
        results.append({"t_kill": t_kill, "killed": primary, "survivor": other,
                        "resumed_ms": round((resumed - t_kill) * 1000, 1),
                        "outage_ms": round(gap * 1000, 1), "bindings_in_kernel":
                        len(expected & held), "bindings_expected": len(expected),
                        "missing": missing[:10]})
        print(f"    kill {primary} ({mode}): outage {gap * 1000:.0f} ms, {other} holds "
              f"{len(expected & held)}/{len(expected)} bindings in its kernel"
              + (f" (missing {', '.join(missing[:5])})" if missing else ""), flush=True)
        revive(lab, primary, mode)
    return results


def phases(pcap: Path, runs: list[dict]) -> None:
    """Where each outage went, from the home link as the router saw it (its capture):
    ms after the kill until the dead home agent's VRRP advertisement of priority 0
    (keepalived noticed mipro is gone: mode mipro), the survivor's first advertisement
    (it is primary), its first ARP naming MN2's home address (mipro took over), and
    the stream's first datagram after the outage (the sink's); added to each run."""
    from scapy.all import ARP, IP, PcapReader

    packets = []
    with PcapReader(str(pcap)) as reader:
        for p in reader:
            if IP in p and p[IP].proto in (4, 112) or ARP in p:
                packets.append(p)
    for r in runs:
        dead, alive, t0 = OWN[r["killed"]], OWN[r["survivor"]], r["t_kill"]
        seen: dict[str, float] = {}
        for p in packets:
            t = float(p.time)
            if t < t0 or t > t0 + r["resumed_ms"] / 1000 + 1:  # (not the revived one's)
                continue
            if IP in p and p[IP].proto == 112:
                if p[IP].src == dead and bytes(p[IP].payload)[2:3] == b"\x00":
                    seen.setdefault("dead_priority_0", t)
                elif p[IP].src == alive:
                    seen.setdefault("survivor_advert", t)
            elif ARP in p and p[ARP].psrc == MN2 and "survivor_advert" in seen:
                seen.setdefault("survivor_arp_mn2", t)
        r["phases_ms"] = {k: round((t - t0) * 1000, 1) for k, t in seen.items()}
        r["phases_ms"]["stream_resumed"] = r["resumed_ms"]
        print(f"    kill {r['killed']}: outage {r['outage_ms']:.0f} ms; " + ", ".join(
            f"{k} +{v:.0f}" for k, v in r["phases_ms"].items()), flush=True)


def bench_outage(kills: int, n: int, modes: list[tuple[str, float]] | None = None,
                 keep: Path | None = None) -> dict:
    out = {}
    for mode, advert in modes or [("host", 1.0), ("host", 0.1), ("mipro", 0.1)]:
        with tempfile.TemporaryDirectory(prefix="mipro-bench-") as tmp:
            where = Path(tmp) if keep is None else keep / f"{mode}-{advert}"
            lab = make_lab(where, n, advert)
            try:
                for svc in ("dnsmasq", "ha1", "ha2", "keepalived1", "keepalived2", "mn2"):
                    lab.start_service(svc)
                both_ready(lab)
                if n:
                    register(lab, n)
                print(f"  outage, mode {mode}, advert_int {advert} s:", flush=True)
                runs = outage_run(lab, kills, mode)
            finally:
                lab.down(quiet=True)
            if keep is not None:
                print(f"  where the time went (lab kept in {where}):")
                phases(where / "rhome-home0.pcap", runs)
        ms = [r["outage_ms"] for r in runs]
        lost = sum(r["bindings_expected"] - r["bindings_in_kernel"] for r in runs)
        out[f"{mode} advert_int={advert}"] = {"median_ms": statistics.median(ms),
                                              "max_ms": max(ms), "kills": len(ms),
                                              "bindings_lost": lost, "runs": runs}
    return out


def bench_bulk_sync(sizes: list[int]) -> dict:
    out = {}
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="mipro-bench-") as tmp:
            lab = make_lab(Path(tmp), n, 1.0)
            try:
                lab.start_service("ha1")
                lab.start_service("keepalived1")
                lab.expect("ha1", {"redundancy": {"groups": [{"role": "master"}]}}, 30)
                reg = register(lab, n)
                t0 = time.monotonic()
                lab.start_service("ha2")
                started = time.monotonic() - t0
                st = lab.expect("ha2", {"redundancy": {"groups": [{"in_sync": True}]},
                                        "counters": {"replicated": f">= {n}"}}, 600,
                                "the dump")
                took = time.monotonic() - t0
                red = st["redundancy"]
                session = red["groups"][0]["last_resync"] - red["since"]
            finally:
                lab.down(quiet=True)
        memory = in_process_dump(n)
        out[n] = {"seconds_from_start": round(took, 3), "daemon_start_s": round(started, 3),
                  "session_to_in_sync_s": round(session, 3),
                  "registered_per_s": reg["rate"], "lost": reg["lost"], **memory}
        print(f"  bulk sync {n:>7}: {session:.2f} s from the session's start to in sync "
              f"({took:.2f} s from starting the backup, {started:.2f} s of it the daemon "
              f"starting); in one process: primary {memory['encode_s']:.2f} s, backup "
              f"{memory['apply_s']:.2f} s", flush=True)
    return out


def in_process_dump(n: int) -> dict:
    """The dump of n bindings through two Replications and HomeAgents, no I/O."""
    from ipaddress import IPv4Address

    from mipro.core.ha import HaPolicy, HomeAgent
    from mipro.core.replication import Group, Replicate, Replication, SyncSend
    from mipro.security import SecurityAssociation, append_authenticator
    from mipro.security.replay import timestamp_identification
    from mipro.subscribers.model import MemoryStore, Subscriber
    from mipro.wire import ExtType, RegistrationRequest

    vip, now = IPv4Address(VIP), time.time()
    subs = [Subscriber(home_of(i), "", {256 + i: SecurityAssociation(256 + i, mn_key("b", i))})
            for i in range(n)]
    policy = HaPolicy((vip,), source_rate=1e9, source_burst=1e9, known_source_rate=1e9,
                      known_source_burst=1e9, unknown_rate=1e9)
    a, b = HomeAgent(policy, MemoryStore(subs)), HomeAgent(policy, MemoryStore(subs))
    for i in range(n):
        req = RegistrationRequest.build(lifetime=600, home_address=home_of(i), home_agent=vip,
                                        care_of_address=GEN,
                                        identification=timestamp_identification(now))
        a.receive(append_authenticator(req.encode(), ExtType.MN_HA_AUTH, subs[i].associations[256 + i]),
                  IPv4Address(GEN), 434, now)
    key = os.urandom(32)
    ra = Replication([Group(51, vip, "VI_HA")], key, a.export, now)
    rb = Replication([Group(51, vip, "VI_HA")], key, b.export, now)
    ra.vrrp_state("VI_HA", "MASTER", now)
    to_b = b"".join(x.data for x in ra.session_up(True, b"a" * 16) if isinstance(x, SyncSend))
    to_a = b"".join(x.data for x in rb.session_up(False, b"b" * 16) if isinstance(x, SyncSend))
    encode = apply = 0.0
    applied = dump_bytes = 0
    while to_a or to_b:  # the two ends of the session, until neither has more to say
        t0 = time.perf_counter()
        out_a = ra.session_data(to_a, now) if to_a else []
        t1 = time.perf_counter()
        out_b = rb.session_data(to_b, now) if to_b else []
        for x in out_b:
            if isinstance(x, Replicate):
                applied += len(b.replicate(x.address, x.blocks, x.replace, now))
        t2 = time.perf_counter()
        encode, apply = encode + t1 - t0, apply + t2 - t1
        to_b = b"".join(x.data for x in out_a if isinstance(x, SyncSend))
        to_a = b"".join(x.data for x in out_b if isinstance(x, SyncSend))
        if len(to_b) > 1000:
            dump_bytes = len(to_b)
    assert len(b.bindings) == n, (len(b.bindings), n)
    return {"encode_s": round(encode, 3), "apply_s": round(apply, 3),
            "dump_bytes": dump_bytes}


def cpu_seconds(lab: Lab, ha: str) -> float:
    """User and system CPU time of a home agent daemon so far (``ip netns exec`` execs
    it: the service's pid is the daemon's)."""
    fields = Path(f"/proc/{lab.services[ha].proc.pid}/stat").read_text().rsplit(")", 1)[1]
    utime, stime = fields.split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def profiled(lab: Lab, ha: str, path: Path) -> None:
    """Run the home agent daemon under cProfile (written when it stops)."""
    svc = next(s for s in lab.spec["service"] if s["name"] == ha)
    at = svc["cmd"].index("-m")
    svc["cmd"][at:at] = ["-m", "cProfile", "-o", str(path)]


def print_profile(path: Path, top: int = 30) -> None:
    import pstats

    print(f"  profile of the primary ({path}), by own time:")
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(top)


class Sampler:
    """py-spy sampling one daemon from outside (it does not slow the daemon down as
    cProfile does): collapsed stacks, one file per phase, for flame graphs or diffs."""

    def __init__(self, where: Path | None, pid: int, name: str) -> None:
        self.where, self.pid, self.name = where, pid, name
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Sampler:
        if self.where is not None:
            self.where.mkdir(parents=True, exist_ok=True)
            spy = Path(sys.executable).parent / "py-spy"
            self.proc = subprocess.Popen(
                [str(spy), "record", "--pid", str(self.pid), "--rate", "500", "--nonblocking",
                 "--format", "raw", "--output", str(self.where / f"{self.name}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # (attached)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(30)


MODES = {"on": "replication on", "peer": "replication off, peer present",
         "alone": "replication off, alone"}


def bench_rate(n: int, rounds: int = 1, profile: Path | None = None,
               captures: bool = True, spy: Path | None = None,
               baselines: tuple[str, ...] = ("peer", "alone")) -> dict:
    """Rounds alternate the baselines and replication on, each in a lab of its own; the
    figures are the medians.  Also each daemon's CPU time per registration (the machine
    is shared: the backup, on the same cores, takes CPU the primary would otherwise
    have)."""
    modes = [*baselines, "on"]
    samples: dict[str, list[dict]] = {m: [] for m in modes}
    for _ in range(rounds):
        for mode in modes:
            samples[mode].append(rate_round(n, mode, profile, captures,
                                            spy and spy / f"round{len(samples[mode])}"))
    out: dict = {}
    for mode, runs in samples.items():
        key = MODES[mode]
        med = {k: statistics.median(r[k] for r in runs if k in r) for k in runs[0]
               if k != "lost"}
        out[key] = dict(med, lost=sum(r["lost"] for r in runs),
                        runs=[{k: r[k] for k in ("new_per_s", "renew_per_s")} for r in runs])
        print(f"  {key:<31} new {med['new_per_s']:>6.0f}/s  renew {med['renew_per_s']:>6.0f}/s"
              f"  p99 {med['p99_ms']} ms  primary CPU {med['primary_us_new']:.0f} / "
              f"{med['primary_us_renew']:.0f} us per new / renewal"
              + (f", backup {med['backup_us_new']:.0f} / {med['backup_us_renew']:.0f} us"
                 if "backup_us_new" in med else "")
              + f"  lost {out[key]['lost']}  (median of {len(runs)})", flush=True)
    on_ = out[MODES["on"]]
    for base in baselines:
        off = out[MODES[base]]
        ratios = {"ratio_renew": round(on_["renew_per_s"] / off["renew_per_s"], 3),
                  "ratio_new": round(on_["new_per_s"] / off["new_per_s"], 3),
                  "cpu_ratio_renew": round(off["primary_us_renew"] / on_["primary_us_renew"], 3),
                  "cpu_ratio_new": round(off["primary_us_new"] / on_["primary_us_new"], 3)}
        out[f"against {base}"] = ratios
        print(f"  on / off ({base:<5}): renewals {ratios['ratio_renew']}, new "
              f"{ratios['ratio_new']}; by the primary's CPU per registration (off/on): "
              f"renewals {ratios['cpu_ratio_renew']}, new {ratios['cpu_ratio_new']}")
    return out


def rate_round(n: int, mode: str, profile: Path | None, captures: bool = True,
               spy: Path | None = None) -> dict:
    """One lab: ``mode`` "on" (HA1 primary, HA2 its backup in sync), "peer" (the same
    but no sync session), "alone" (HA1 only, no [redundancy], no keepalived)."""
    with tempfile.TemporaryDirectory(prefix="mipro-bench-") as tmp:
        lab = make_lab(Path(tmp), n, 1.0, redundancy=mode != "alone", sync=mode == "on")
        if not captures:  # the lab's tcpdump on every link costs CPU per packet
            for cap in lab.captures:
                cap.terminate()
                cap.wait()
        prof = Path(tmp) / "ha1.prof"
        if profile is not None:
            profiled(lab, "ha1", prof)
        try:
            if mode != "alone":
                lab.start_service("ha1")  # first: keepalived1 makes it primary
                lab.start_service("keepalived1")
                lab.expect("ha1", {"redundancy": {"groups": [{"role": "master"}]}}, 30)
                for svc in ("ha2", "keepalived2"):
                    lab.start_service(svc)
                primary = both_ready(lab)
                assert primary == "ha1", primary
                up = lab.status("ha1")["redundancy"]["session"]
                assert up == ("up" if mode == "on" else "down"), (mode, up)
            else:  # no keepalived: the virtual address is HA1's own
                lab.exec("ha1", "ip", "addr", "add", f"{VIP}/24", "dev", "home0")
                lab.start_service("ha1")
            daemons = ("ha1",) if mode == "alone" else ("ha1", "ha2")
            cpu0 = {ha: cpu_seconds(lab, ha) for ha in daemons}
            pid = lab.services["ha1"].proc.pid
            with Sampler(spy, pid, f"ha1-{mode}-new"):
                new = register(lab, n)
            cpu1 = {ha: cpu_seconds(lab, ha) for ha in daemons}
            with Sampler(spy, pid, f"ha1-{mode}-renew"):
                renew = register(lab, n, "renew")
            if mode == "on":
                lab.expect("ha2", {"counters": {"replicated": f">= {2 * n}"}}, 60,
                           "the backup to have every forward")
            cpu2 = {ha: cpu_seconds(lab, ha) for ha in daemons}
            counters = (lab.status("ha1").get("redundancy") or {}).get("counters", {})
            if profile is not None:
                lab.stop_service("ha1")
        finally:
            lab.down(quiet=True)
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            kept = profile / f"ha1-{mode}.prof"
            kept.write_bytes(prof.read_bytes())
            print_profile(kept)
    out = {"new_per_s": new["rate"], "renew_per_s": renew["rate"], "p99_ms": renew["p99_ms"],
           "lost": new["lost"] + renew["lost"],
           "primary_us_new": (cpu1["ha1"] - cpu0["ha1"]) / n * 1e6,
           "primary_us_renew": (cpu2["ha1"] - cpu1["ha1"]) / n * 1e6}
    per_message = ""
    if "ha2" in daemons:
        out |= {"backup_us_new": (cpu1["ha2"] - cpu0["ha2"]) / n * 1e6,
                "backup_us_renew": (cpu2["ha2"] - cpu1["ha2"]) / n * 1e6}
        if counters.get("forwards_sent"):  # (a counter older trees do not have)
            out["blocks_per_forward"] = counters["blocks_forwarded"] / counters["forwards_sent"]
            per_message = f", {out['blocks_per_forward']:.1f} bindings per data forward"
    print(f"    {mode:<5}: new {new['rate']:.0f}/s, renew {renew['rate']:.0f}/s, "
          f"primary CPU {out['primary_us_new']:.0f} / {out['primary_us_renew']:.0f} us"
          + (f", backup {out['backup_us_new']:.0f} / {out['backup_us_renew']:.0f} us"
             if "backup_us_new" in out else "") + per_message, flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--bindings", type=int, default=1000, help="besides the MNs, in outage runs")
    p.add_argument("--sync-sizes", default="10000,100000")
    p.add_argument("--rate-n", type=int, default=10000)
    p.add_argument("--rate-rounds", type=int, default=1,
                   help="rate: rounds of off and on (the medians are printed)")
    p.add_argument("--rate-baseline", choices=("peer", "alone", "both"), default="both",
                   help="rate: replication off with the backup home agent and both "
                   "keepalived present, only the sync session missing (peer: the fair "
                   "one), or HA1 alone as before (alone), or both (default)")
    p.add_argument("--no-captures", action="store_true",
                   help="rate: stop the lab's packet captures (tcpdump on every link)")
    p.add_argument("--profile", type=Path,
                   help="rate: run the primary under cProfile, keep the profiles here")
    p.add_argument("--py-spy", type=Path, dest="spy",
                   help="rate: sample the primary with py-spy per phase, collapsed stacks "
                   "here (the CPU figures then include py-spy's share)")
    p.add_argument("--modes", help="outage: e.g. mipro:0.1,host:1 (mode:advert_int; "
                   "default host:1,host:0.1,mipro:0.1)")
    p.add_argument("--keep", type=Path, help="outage: keep each lab (logs, captures) here "
                   "and say where each outage's time went")
    p.add_argument("--only", choices=("outage", "sync", "rate"))
    p.add_argument("--prefix", default="mbf", help="the labs' namespace prefix")
    a = p.parse_args()
    PREFIX[0] = a.prefix
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    results: dict = {}
    if a.only in (None, "rate"):
        print("registration rate at the primary:")
        baselines = ("peer", "alone") if a.rate_baseline == "both" else (a.rate_baseline,)
        results["rate"] = bench_rate(a.rate_n, a.rate_rounds, a.profile,
                                     not a.no_captures, a.spy, baselines)
    if a.only in (None, "sync"):
        print("bulk sync:")
        results["bulk_sync"] = bench_bulk_sync([int(x) for x in a.sync_sizes.split(",")])
    if a.only in (None, "outage"):
        print("failover outage:")
        modes = [(m, float(x)) for m, x in (item.split(":") for item in a.modes.split(","))] \
            if a.modes else None
        results["outage"] = bench_outage(a.kills, a.bindings, modes, a.keep)
        for k, v in results["outage"].items():
            print(f"  {k:<24} median {v['median_ms']:.0f} ms, max {v['max_ms']:.0f} ms over "
                  f"{v['kills']} kills, bindings lost {v['bindings_lost']}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "failover.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
