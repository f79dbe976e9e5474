#!/usr/bin/env python3
"""Handover outage between foreign agents (issue 4 benchmark).

In the `handover` lab, CN-home streams a datagram every 2 ms to the mobile
node's home address while the MN is moved between visited networks A and B
(a 50 ms link flap each time).  For each move: the time from the link coming
back up to the first datagram delivered on the new network, and how many
datagrams were lost.  Variants, in the same run: the previous FA as a
forwarding pointer (re-tunnelling what still reaches it to the new care-of
address, `fa.forwarding.enabled`) and without; with solicitation on attach,
and (``--advertisement``) without, waiting for the next periodic advertisement
(every 0.5 s in the lab).  ``--baseline DIR``: each variant also with the daemons of
another checkout (e.g. main's worktree), alternating which goes first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mipro.lab import Lab  # noqa: E402

HOME = "10.1.0.100"
HA = "10.1.0.1"
STREAM_PORT = 6000
INTERVAL = 0.002
# the foreign agents: (bridge, agent address on it = care-of address, capture of its wan0)
FAS = {"visit-a": ("198.51.100.1", "fa1-wan0.pcap"), "visit-b": ("192.0.2.1", "fa2-wan0.pcap")}


def read_pcap(path: Path) -> list[tuple[float, bytes]]:
    """(time, IPv4 packet) of an Ethernet capture: the lab's tcpdump, kernel timestamps
    (the same clock as time.time())."""
    from scapy.utils import RawPcapReader

    out = []
    if not path.exists():
        return out
    for data, meta in RawPcapReader(str(path)):
        if len(data) > 34 and data[12:14] == b"\x08\x00":
            out.append((meta.sec + meta.usec / 1e6, data[14:]))
    return out


def _ip(pkt: bytes) -> tuple[int, str, str, bytes]:
    hl = (pkt[0] & 15) * 4
    return pkt[9], ".".join(map(str, pkt[12:16])), ".".join(map(str, pkt[16:20])), pkt[hl:]


def first(pkts: list[tuple[float, bytes]], after: float, test) -> float | None:
    for t, pkt in pkts:
        if t >= after and test(*_ip(pkt)):
            return t
    return None


def _udp(sport: int | None, dport: int | None):
    def test(proto: int, s: str, d: str, pl: bytes) -> bool:
        return proto == 17 and len(pl) >= 8 and \
            (sport is None or int.from_bytes(pl[0:2], "big") == sport) and \
            (dport is None or int.from_bytes(pl[2:4], "big") == dport)
    return test


def _move_phases(mn: list, w: list, t0: float, t_up: float, fa: str,
                 prev_fa: str) -> dict[str, float | None]:
    to_fa, from_ha = _udp(None, 434), _udp(434, None)
    r: dict[str, float | None] = {"off_link": t_up - t0}
    r["solicit"] = first(mn, t_up - 0.02, lambda p, s, d, pl: p == 1 and pl[:1] == b"\x0a")
    r["advert"] = first(mn, r["solicit"] or t_up,
                        lambda p, s, d, pl: p == 1 and pl[:1] == b"\x09" and s == fa)
    r["request"] = first(mn, r["advert"] or t_up, lambda p, s, d, pl: s == HOME and
                         to_fa(p, s, d, pl) and pl[8:9] == b"\x01")
    at = r["request"] or t_up
    r["relayed"] = first(w, at, lambda p, s, d, pl: d == HA and to_fa(p, s, d, pl))
    at = r["relayed"] or at
    r["ha_reply"] = first(w, at, lambda p, s, d, pl: s == HA and from_ha(p, s, d, pl))
    r["ha_tunnel"] = first(w, at, lambda p, s, d, pl: s == HA and p == 4)
    at = r["ha_reply"] or at
    r["reply"] = first(mn, at, lambda p, s, d, pl: d == HOME and from_ha(p, s, d, pl))
    r["bu"] = first(w, at, lambda p, s, d, pl: d == prev_fa and to_fa(p, s, d, pl))
    r["from_previous"] = first(w, r["bu"] or at, lambda p, s, d, pl: s == prev_fa and p == 4)
    r["data"] = first(mn, t_up, lambda p, s, d, pl: d == HOME and
                      _udp(None, STREAM_PORT)(p, s, d, pl))
    return r


def phases(out: Path, moves: list[tuple[float, float, str, str]]) -> list[dict[str, float]]:
    """Per move, from the captures: when each step of the handover happened, in ms from
    the link coming back up (``off_link``: how long the lab's move kept the MN off)."""
    mn = read_pcap(out / "mn-eth0.pcap")
    wan = {b: read_pcap(out / cap) for b, (_, cap) in FAS.items()}
    rows = []
    for t0, t_up, bridge, prev in moves:
        r = _move_phases(mn, wan[bridge], t0, t_up, FAS[bridge][0], FAS[prev][0])
        rows.append({k: round((v - t_up) * 1000, 1) if v is not None and k != "off_link" else
                     (round(v * 1000, 1) if v is not None else None) for k, v in r.items()})
    return rows


STEPS = ("off_link", "solicit", "advert", "request", "relayed", "ha_tunnel", "ha_reply",
         "reply", "bu", "from_previous", "data")


def phase_medians(rows: list[dict[str, float]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k in STEPS:
        vals = [r[k] for r in rows if r.get(k) is not None]
        out[k] = round(statistics.median(vals), 1) if vals else None
    return out


def registered_via(lab: Lab, coa: str) -> bool:
    mn = lab.status("mn")
    return mn["state"] == "registered" and mn["care_of_address"] == coa


ROOT = Path(__file__).resolve().parents[1]


def run_variant(solicit: bool, moves: int, settle: float, forwarding: bool = True,
                replay: float = 0.0, prefix: str = "hob", linger: float = 0.0,
                keep: Path | None = None, code: Path = ROOT) -> dict:
    # the daemons (python -m, from the cwd) import mipro from ``code``
    os.environ["PYTHONPATH"] = str(code)
    os.chdir(code)
    with tempfile.TemporaryDirectory(prefix="mipro-handover-") as tmp:
        lab = Lab("handover", prefix=prefix, out=Path(tmp) / "handover", python=sys.executable)
        try:
            lab.up(services=False)
            lab.edit_conf("mn", "mn.toml", "mode = \"auto\"",
                          f"mode = \"fa\"\nsolicit_on_attach = {str(solicit).lower()}")
            lab.edit_conf("mn", "mn.toml", "lifetime = 20", "lifetime = 120")
            for fa in ("fa1", "fa2"):  # the previous FA as a forwarding pointer, or not
                lab.edit_conf(fa, "fa.toml", "[runtime]",
                              f"[fa.forwarding]\nenabled = {str(forwarding).lower()}\n"
                              f"replay = {replay}\n\n[fa.realms]\nlinger = {linger}\n\n"
                              "[runtime]")
            for name in ("ha", "fa1", "fa2", "mn"):
                lab.start_service(name)
            lab.wait_for(lambda: registered_via(lab, "198.51.100.1"), 30, "FA1 registration")
            seconds = moves * settle + 4
            sink = subprocess.Popen(["ip", "netns", "exec", lab.ns("mn"), sys.executable, "-m",
                                     "mipro.lab.traffic", "udp-sink", "--seconds",
                                     str(seconds + 1)], stdout=subprocess.PIPE, text=True)
            time.sleep(0.3)
            source = subprocess.Popen(["ip", "netns", "exec", lab.ns("cn-home"), sys.executable,
                                       "-m", "mipro.lab.traffic", "udp-source", HOME,
                                       "--seconds", str(seconds), "--interval", str(INTERVAL)],
                                      stdout=subprocess.PIPE, text=True)
            time.sleep(1.5)
            events = []
            moved: list[tuple[float, float, str, str]] = []
            for i in range(moves):
                target, coa = ("visit-b", "192.0.2.1") if i % 2 == 0 else \
                    ("visit-a", "198.51.100.1")
                t0 = time.time()
                t_up = lab.move("mn.eth0", target)
                moved.append((t0, t_up, target, "visit-a" if target == "visit-b" else "visit-b"))
                try:
                    lab.wait_for(lambda c=coa: registered_via(lab, c), settle - 0.2,
                                 "registration", interval=0.02)
                    events.append((t_up, True))
                except Exception:  # noqa: BLE001 - a failed handover is a figure, not a crash
                    events.append((t_up, False))
                time.sleep(max(0.0, t_up + settle - time.time()))
            src = json.loads(source.communicate(timeout=seconds + 30)[0])
            arrivals = json.loads(sink.communicate(timeout=30)[0])["arrivals"]
        finally:
            lab.down(quiet=True)
        steps = phases(Path(tmp) / "handover", moved)
        if keep is not None:  # the captures and logs, and what the analysis needs
            shutil.copytree(Path(tmp) / "handover", keep, dirs_exist_ok=True)
            (keep / "moves.json").write_text(json.dumps({
                "moves": moved, "start": src["start"], "interval": INTERVAL,
                "sent": src["sent"], "arrivals": arrivals}))
    times = sorted(t for _, t in arrivals)
    got = {seq for seq, _ in arrivals}
    outages, losses, lost_at = [], [], []
    for t_up, _ in events:
        after = [t for t in times if t >= t_up]
        if after:
            outages.append((after[0] - t_up) * 1000)
        # datagrams sent in [t_up - 1 s, t_up + 1.5 s] that never arrived
        lo = int((t_up - 1.0 - src["start"]) / INTERVAL)
        hi = int((t_up + 1.5 - src["start"]) / INTERVAL)
        lost = [s for s in range(max(0, lo), min(src["sent"], hi)) if s not in got]
        losses.append(len(lost))
        # when the lost ones were sent, in ms from link-up (the source's clock is ours)
        lost_at += [(src["start"] + s * INTERVAL - t_up) * 1000 for s in lost]
    return {"solicit": solicit, "forwarding": forwarding, "replay": replay, "linger": linger,
            "moves": moves,
            "registrations_ok": sum(ok for _, ok in events),
            "outage_ms_median": round(statistics.median(outages), 1),
            "outage_ms_p90": round(sorted(outages)[int(0.9 * (len(outages) - 1))], 1),
            "outage_ms_max": round(max(outages), 1),
            "lost_median": statistics.median(losses), "lost_max": max(losses),
            "lost_sent_ms": [round(x) for x in sorted(lost_at)][:40],
            "sent": src["sent"], "received": len(got), "phases": phase_medians(steps),
            # the same outage from the MN's own solicitation, on the captures' clock: t_up is
            # read after the lab's `ip link set up` has returned, late by 0-8 ms under load
            "from_solicit_ms_median": _from_solicit(steps)}


def _from_solicit(rows: list[dict[str, float]]) -> float | None:
    """Median ms from the MN's solicitation to the first datagram delivered on its link."""
    gaps = [r["data"] - r["solicit"] for r in rows
            if r.get("data") is not None and r.get("solicit") is not None]
    return round(statistics.median(gaps), 1) if gaps else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--moves", type=int, default=20)
    p.add_argument("--settle", type=float, default=2.0, help="seconds between moves")
    p.add_argument("--replay", type=float, default=0.3,
                   help="fa.forwarding.replay of the buffering variant (seconds)")
    p.add_argument("--linger", type=float, default=300.0,
                   help="fa.realms.linger of the last variant (seconds)")
    p.add_argument("--keep", type=Path, help="keep each variant's captures in DIR/<n>")
    p.add_argument("--advertisement", action="store_true",
                   help="also without solicitation (waiting for an advertisement)")
    p.add_argument("--baseline", type=Path,
                   help="also run each variant with the daemons of this checkout")
    p.add_argument("--only-linger", action="store_true",
                   help="only the last variant (forwarding + replay + linger)")
    p.add_argument("--rounds", type=int, default=1, help="run the variants this many times")
    p.add_argument("--prefix", default="hob",
                   help="namespace prefix of the lab (another run may use the default)")
    a = p.parse_args()
    keep = a.keep.resolve() if a.keep else None  # run_variant changes the cwd
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    print(f"{'variant':<50} {'moves':>5} {'reg ok':>6} {'outage ms median':>17} {'p90':>7} "
          f"{'max':>7} {'lost median':>11} {'lost max':>8} {'from solicit':>12}")
    variants = [(True, False, 0.0, 0.0), (True, True, 0.0, 0.0), (True, True, a.replay, 0.0),
                (True, True, a.replay, a.linger)] + \
        ([(False, True, 0.0, 0.0)] if a.advertisement else [])
    if a.only_linger:
        variants = [(True, True, a.replay, a.linger)]
    variants = variants * a.rounds  # each round alternates which code goes first
    results = []
    codes = [("", ROOT)] + ([("baseline: ", a.baseline.resolve())] if a.baseline else [])
    runs = [(v, c) for n, v in enumerate(variants) for c in (codes if n % 2 else codes[::-1])]
    for n, ((solicit, forwarding, replay, linger), (label, code)) in enumerate(runs):
        r = run_variant(solicit, a.moves, a.settle, forwarding, replay, a.prefix, linger,
                        keep / str(n) if keep else None, code)
        name = label + ("solicit" if solicit else "advert.") + \
            (", fwd" if forwarding else ", no forwarding") + \
            (f" + replay {replay:g} s" if replay else "") + \
            (f" + linger {linger:g} s" if linger else "")
        print(f"{name:<50} {r['moves']:>5} {r['registrations_ok']:>6} "
              f"{r['outage_ms_median']:>17} {r['outage_ms_p90']:>7} {r['outage_ms_max']:>7} "
              f"{r['lost_median']:>11} {r['lost_max']:>8} {r['from_solicit_ms_median']!s:>12}",
              flush=True)
        if r["replay"]:  # what is still lost with everything on, and when it was sent
            print(f"  {'':<48} lost datagrams sent at (ms from link-up): {r['lost_sent_ms']}")
        results.append((name, r["phases"]))
    print("\nmedian ms from the link coming back up (off_link: how long the lab's move kept the"
          "\nMN off its link before that, the 50 ms flap and the bridge commands), captures:")
    w = {k: max(9, len(k) + 1) for k in STEPS}
    print(f"{'variant':<50}" + "".join(f"{k:>{w[k]}}" for k in STEPS))
    for name, ph in results:
        print(f"{name:<50}" + "".join(f"{'-' if ph[k] is None else ph[k]:>{w[k]}}"
                                      for k in STEPS))


if __name__ == "__main__":
    main()
