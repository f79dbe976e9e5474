#!/usr/bin/env python3
"""Render docs/grafana/mipro-dashboard.json's panels from a real lab run.

Grafana is not packaged in Debian and there is no Grafana server here, so this is NOT a
Grafana screenshot.  What is real: the handover lab (`mipro ha`, `mipro fa` for FA1 and
a mobile node, in namespaces) with runtime.metrics_listen set, Debian's `prometheus`
scraping the HA and FA1 every 2 s from the lab's internet router, load generators
(this file's `gen` subcommand) on the internet and on FA1's visited link, and every
panel's PromQL of the dashboard JSON evaluated by that Prometheus (query_range, with
Grafana's variables replaced: $job and $instance by ".*", $__rate_interval by 10s; a
series that stays 0 throughout is left out).
What is this script's: drawing the answers as SVG charts in an HTML page laid out like
the dashboard, which headless Chromium (Debian's) turns into docs/metrics-dashboard.png.

The load (--seconds, 100 by default): from the internet, co-located registrations of
120 subscribers at 40/s rising to 120/s, 5 % with a wrong key (131) and 2 % with a
skewed clock (133); junk datagrams at 300/s for 20 s (dropped by the kernel's flood
limit); deregistration of half of them near the end; through FA1, from its visited
link, 8 subscribers from one link-layer address at 4/s with a burst of 40/s for 10 s
(beyond fa.limits.pending_per_mac the FA answers 66).

Needs root, the `prometheus` and `chromium` Debian packages (`make metrics-dashboard`
installs them).  Writes docs/metrics-dashboard.png and, next to the lab's output,
dashboard.html and the query results (query-results.json).
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import random
import select
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from mipro.security import SecurityAssociation, append_authenticator  # noqa: E402
from mipro.security.replay import timestamp_identification  # noqa: E402
from mipro.wire import ExtType, RegistrationRequest, RequestFlags  # noqa: E402

DASHBOARD = ROOT / "docs" / "grafana" / "mipro-dashboard.json"
SCREENSHOT = ROOT / "docs" / "metrics-dashboard.png"
HA, FA1 = "10.1.0.1", "198.51.100.1"
DIRECT = [(f"10.1.0.{120 + i}", 700 + i) for i in range(120)]  # via the internet
VIA_FA = [(f"10.1.0.{241 + i}", 900 + i) for i in range(8)]  # through FA1
VARIABLES = {"$job": ".*", "$instance": ".*", "$__rate_interval": "10s"}


def key_of(spi: int) -> bytes:
    return spi.to_bytes(4, "big") * 4


# --- the load generator (runs inside a lab namespace) ---------------------------------

def gen(a: argparse.Namespace) -> None:
    """Open loop: ``--plan`` is a JSON list of [seconds, requests/s, junk/s, dereg]."""
    subs = json.loads(a.subs)
    plan = json.loads(a.plan)
    rng = random.Random(a.seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", a.sport))
    sock.setblocking(False)
    codes: dict[int, int] = {}
    i = 0
    for seconds, rate, junk, dereg in plan:
        end = time.monotonic() + seconds
        nxt = time.monotonic()
        junk_next = nxt
        while time.monotonic() < end:
            now = time.monotonic()
            if rate and now >= nxt:
                home, spi = subs[i % len(subs)]
                i += 1
                r = rng.random()
                key = key_of(spi) if r >= 0.05 else bytes(16)
                skew = 1000.0 if 0.05 <= r < 0.07 else 0.0
                req = RegistrationRequest.build(
                    flags=RequestFlags(a.flags), lifetime=0 if dereg else 300,
                    home_address=home, home_agent=HA, care_of_address=a.coa,
                    identification=timestamp_identification(time.time() + skew))
                data = append_authenticator(req.encode(), ExtType.MN_HA_AUTH,
                                            SecurityAssociation(spi, key))
                sock.sendto(data, (a.dst, 434))
                nxt += 1.0 / rate
            if junk and now >= junk_next:
                sock.sendto(bytes([0x42]) + rng.randbytes(40), (a.dst, 434))
                junk_next += 1.0 / junk
            ready, _, _ = select.select([sock], [], [], 0.001)
            while ready:
                try:
                    reply = sock.recv(4096)
                except BlockingIOError:
                    break
                codes[reply[1]] = codes.get(reply[1], 0) + 1
    print(json.dumps({"sent": i, "codes": codes}))


def query(a: argparse.Namespace) -> None:
    """One query_range against the Prometheus in this namespace; prints its JSON."""
    url = "http://127.0.0.1:9090/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": a.expr, "start": a.start, "end": a.end, "step": a.step})
    print(urllib.request.urlopen(url, timeout=30).read().decode())


# --- the run ---------------------------------------------------------------------------

def run(a: argparse.Namespace) -> None:
    from mipro.lab import Lab

    for tool in ("prometheus", "chromium"):
        if not shutil.which(tool):
            sys.exit(f"needs {tool} (apt-get install {tool}; `make metrics-dashboard`)")
    out = Path(a.out)
    lab = Lab("handover", prefix="mdash", out=out, python=sys.executable)
    lab.up(services=False)
    prom = None
    try:
        for node, name, listen in (("ha", "ha.toml", f"{HA}:9434"),
                                   ("fa1", "fa.toml", f"{FA1}:9434")):
            lab.edit_conf(node, name, "[runtime]", f'[runtime]\nmetrics_listen = "{listen}"')
        subs = lab.conf("ha", "subscribers.toml")
        subs.write_text(subs.read_text() + "".join(
            f'\n[[subscriber]]\nhome_address = "{h}"\nmax_lifetime = 600\n'
            f'sa = [{{ spi = {s}, key = "hex:{key_of(s).hex()}" }}]\n'
            for h, s in DIRECT + VIA_FA))
        for name in ("ha", "fa1", "mn"):
            lab.start_service(name)
        tsdb = out / "prometheus"
        tsdb.mkdir(parents=True, exist_ok=True)
        (out / "prometheus.yml").write_text(f"""global:
  scrape_interval: 2s
  evaluation_interval: 2s
scrape_configs:
  - job_name: mipro-ha
    static_configs: [{{targets: ["{HA}:9434"]}}]
  - job_name: mipro-fa
    static_configs: [{{targets: ["{FA1}:9434"]}}]
""")
        prom_log = open(out / "prometheus.log", "w")  # noqa: SIM115 - the child's
        prom = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns("inet"), "prometheus",
             f"--config.file={out / 'prometheus.yml'}", f"--storage.tsdb.path={tsdb}",
             "--web.listen-address=127.0.0.1:9090"], stdout=prom_log, stderr=prom_log)
        time.sleep(6)  # a few scrapes of the idle daemons first
        s = a.seconds / 100
        direct = [[20 * s, 40, 0, 0], [20 * s, 80, 0, 0], [20 * s, 120, 300, 0],
                  [20 * s, 80, 0, 0], [10 * s, 60, 0, 1], [10 * s, 20, 0, 0]]
        via_fa = [[40 * s, 4, 0, 0], [10 * s, 40, 0, 0], [50 * s, 4, 0, 0]]
        start = time.time()
        gens = [
            subprocess.Popen(["ip", "netns", "exec", lab.ns("cn-inet"), sys.executable,
                              __file__, "gen", "--dst", HA, "--coa", "203.0.113.10",
                              "--flags", str(0x22), "--sport", "43500",
                              "--subs", json.dumps(DIRECT),
                              "--plan", json.dumps(direct)], stdout=subprocess.PIPE, text=True),
            subprocess.Popen(["ip", "netns", "exec", lab.ns("cn-local-a"), sys.executable,
                              __file__, "gen", "--dst", FA1, "--coa", FA1, "--flags", "2",
                              "--sport", "43501", "--subs", json.dumps(VIA_FA),
                              "--plan", json.dumps(via_fa)], stdout=subprocess.PIPE, text=True),
        ]
        for g in gens:
            print("generator:", g.communicate(timeout=a.seconds * 2 + 60)[0].strip())
        time.sleep(8)
        end = time.time()
        results = panels_data(lab, start - 4, end)
        (out / "query-results.json").write_text(json.dumps(results, indent=1))
        page = out / "dashboard.html"
        page.write_text(render(results, start, end))
        subprocess.run(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", "--force-device-scale-factor=1",
                        "--window-size=1400,1330", f"--screenshot={SCREENSHOT}",
                        page.as_uri()], check=True, capture_output=True, timeout=120)
        print(f"wrote {SCREENSHOT} (from {page})")
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(30)
        lab.down(quiet=True)


def panels_data(lab, start: float, end: float) -> list[dict]:
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for p in sorted(dash["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])):
        series = []
        for t in p["targets"]:
            expr = t["expr"]
            for k, v in VARIABLES.items():
                expr = expr.replace(k, v)
            got = json.loads(lab.exec("inet", sys.executable, __file__, "query", "--expr", expr,
                                      "--start", f"{start:.0f}", "--end", f"{end:.0f}",
                                      "--step", "2").stdout)
            for r in got["data"]["result"]:
                if not any(float(y) for _, y in r["values"]):
                    continue  # 0 throughout: left out, or the legends drown in them
                label = t.get("legendFormat", "")
                for name, val in r["metric"].items():
                    label = label.replace("{{" + name + "}}", val)
                series.append({"label": label.strip() or expr, "expr": expr,
                               "points": [[float(x), float(y)] for x, y in r["values"]]})
        out.append({"title": p["title"], "unit": p["fieldConfig"]["defaults"]["unit"],
                    "wide": p["gridPos"]["w"] > 12, "series": series,
                    "exprs": [t["expr"] for t in p["targets"]]})
    return out


# --- drawing -------------------------------------------------------------------------

PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9",
           "#705da0", "#37872d", "#fade2a", "#c4162a", "#1f60c4"]


def fmt(v: float, unit: str) -> str:
    if unit == "s":
        return f"{v * 1000:.3g} ms" if v < 1 else f"{v:.3g} s"
    if unit == "bytes":
        return f"{v / 2**20:.3g} MiB"
    if unit == "percentunit":
        return f"{v * 100:.3g} %"
    suffix = {"reqps": "/s", "pps": "/s"}.get(unit, "")
    return f"{v:.3g}{suffix}"


def nice_max(v: float) -> float:
    if v <= 0 or not math.isfinite(v):
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * e:
            return m * e
    return 10 * e


def chart(panel: dict, start: float, end: float, width: int) -> str:
    h, left, right, top, bottom = 230, 70, 10, 8, 22
    pw, ph = width - left - right, h - top - bottom
    vals = [y for s in panel["series"] for _, y in s["points"] if math.isfinite(y)]
    ymax = nice_max(max(vals) if vals else 0)
    parts = [f'<svg width="{width}" height="{h}" xmlns="http://www.w3.org/2000/svg">']
    for i in range(5):
        y = top + ph - ph * i / 4
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#2c3235"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{html.escape(fmt(ymax * i / 4, panel["unit"]))}</text>')
    span = end - start
    for i in range(6):
        x = left + pw * i / 5
        anchor = "start" if i == 0 else "end" if i == 5 else "middle"
        parts.append(f'<text x="{x:.1f}" y="{h - 5}" text-anchor="{anchor}">'
                     f'{time.strftime("%H:%M:%S", time.localtime(start + span * i / 5))}</text>')
    for n, s in enumerate(panel["series"]):
        pts = " ".join(f"{left + pw * (t - start) / span:.1f},{top + ph - ph * y / ymax:.1f}"
                       for t, y in s["points"] if math.isfinite(y))
        if pts:
            parts.append(f'<polyline fill="none" stroke="{PALETTE[n % len(PALETTE)]}" '
                         f'stroke-width="1.6" points="{pts}"/>')
    if not panel["series"]:
        parts.append(f'<text x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle" '
                     'class="nodata">No data</text>')
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{PALETTE[n % len(PALETTE)]}"></i>'
                     f'{html.escape(s["label"])}</span>'
                     for n, s in enumerate(panel["series"]))
    return "".join(parts) + f'<div class="legend">{legend}</div>'


def render(results: list[dict], start: float, end: float) -> str:
    cells = []
    for p in results:
        width = 1352 if p["wide"] else 668
        cells.append(f'<div class="panel{" wide" if p["wide"] else ""}">'
                     f'<h2>{html.escape(p["title"])}</h2>{chart(p, start, end, width - 16)}'
                     "</div>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ background:#111217; color:#ccccdc; font:13px sans-serif; margin:16px; width:1368px }}
h1 {{ font-size:18px; margin:0 0 4px }} .note {{ color:#8e8e8e; margin-bottom:12px }}
.grid {{ display:flex; flex-wrap:wrap; gap:16px }}
.panel {{ background:#181b1f; border:1px solid #2c3235; border-radius:2px; padding:8px;
          width:652px }}
.panel.wide {{ width:1336px }} h2 {{ font-size:14px; margin:0 0 6px; font-weight:500 }}
svg text {{ fill:#8e8e8e; font-size:11px }} svg text.nodata {{ font-size:14px }}
.legend span {{ margin-right:14px; white-space:nowrap; display:inline-block }}
.legend i {{ display:inline-block; width:14px; height:4px; margin:0 5px 3px 0 }}
</style></head><body>
<h1>mipro — docs/grafana/mipro-dashboard.json's panels, from a lab run</h1>
<div class="note">Not Grafana: each panel's PromQL evaluated by Prometheus {html.escape(
    prometheus_version())} scraping mipro-ha and mipro-fa (FA1) of the handover lab every 2 s,
drawn by bench/metrics_dashboard.py ($__rate_interval = 10s; series that stay 0 are left
out). {time.strftime(
    "%Y-%m-%d %H:%M", time.localtime(start))}, {end - start:.0f} s.</div>
<div class="grid">{"".join(cells)}</div></body></html>
"""


def prometheus_version() -> str:
    out = subprocess.run(["prometheus", "--version"], capture_output=True, text=True).stdout
    return out.split()[2] if out.startswith("prometheus, version") else "?"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    g = sub.add_parser("gen")
    g.add_argument("--dst", required=True)
    g.add_argument("--coa", required=True)
    g.add_argument("--flags", type=int, default=0)
    g.add_argument("--sport", type=int, default=43500)
    g.add_argument("--subs", required=True)
    g.add_argument("--plan", required=True)
    g.add_argument("--seed", type=int, default=434)
    q = sub.add_parser("query")
    for arg in ("--expr", "--start", "--end", "--step"):
        q.add_argument(arg, required=True)
    p.add_argument("--seconds", type=float, default=100)
    p.add_argument("--out", default=str(ROOT / "netns-lab" / "out" / "metrics-dashboard"))
    a = p.parse_args()
    if a.cmd == "gen":
        gen(a)
    elif a.cmd == "query":
        query(a)
    else:
        if os.geteuid() != 0:
            sys.exit("needs root (network namespaces)")
        run(a)


if __name__ == "__main__":
    main()
