"""Pictures of the lab: a scenario's topology as graphviz DOT, with the paths its check
verifies drawn over it, rendered by `dot` (Debian package graphviz).

The paths are data in the scenario's scenario.toml::

    [[path]]
    route = "mn - fa1 = ha - cn-home"
    label = "MN <-> CN-home: reverse tunnel through the HA"

``route`` names topology nodes; between two of them `` - `` is a hop on the wire,
`` = `` the inside of a mipro tunnel (drawn dashed, end to end), `` x `` where the
traffic is dropped (drawn red, ending in a bar).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

# path colours: distinct on white, and for the colour-blind (Okabe-Ito)
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
ROLE_STYLE = {  # what runs on a node: label line, fill
    "ha": ("home agent", "#FDE2C4"),
    "fa": ("foreign agent", "#CFE3F7"),
    "mn": ("mobile node", "#D5F0DC"),
}
HOPS = {"-": "wire", "=": "tunnel", "x": "dropped"}
NL = "\n"  # a line break in a label (_q writes it as DOT's \n)


class DrawError(ValueError):
    pass


@dataclass(frozen=True)
class Segment:
    src: str
    dst: str
    kind: str  # wire, tunnel, dropped


@dataclass(frozen=True)
class Route:
    label: str
    segments: tuple[Segment, ...]


def parse_route(route: str, nodes: set[str], where: str) -> tuple[Segment, ...]:
    parts = re.split(r"\s+([-=x])\s+", route.strip())
    names, seps = parts[0::2], parts[1::2]
    if len(names) < 2:
        raise DrawError(f"{where}: route {route!r} needs two nodes or more")
    unknown = [n for n in names if n not in nodes]
    if unknown:
        raise DrawError(f"{where}: route {route!r}: no node {', '.join(unknown)} in the topology")
    return tuple(Segment(a, b, HOPS[s]) for a, s, b in zip(names[:-1], seps, names[1:], strict=True))


def routes(spec: dict[str, Any], topology: dict[str, Any], where: str) -> list[Route]:
    nodes = {n["name"] for n in topology["node"]}
    out = []
    for i, p in enumerate(spec.get("path", []), 1):
        if "route" not in p or "label" not in p:
            raise DrawError(f"{where}: path {i}: needs route and label")
        out.append(Route(str(p["label"]), parse_route(str(p["route"]), nodes, f"{where}: path {i}")))
    return out


def roles(spec: dict[str, Any]) -> dict[str, list[str]]:
    """node -> what the scenario runs there (mipro roles, other services by name)."""
    out: dict[str, list[str]] = {}
    for svc in spec.get("service", []):
        cmd = svc.get("cmd", [])
        role = next((c for c in cmd if c in ROLE_STYLE), None) if "mipro.cli" in cmd else None
        out.setdefault(svc["node"], []).append(role or svc["name"])
    return out


def _q(text: str) -> str:
    """A DOT string; a newline in ``text`` becomes a line break of the label."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot_source(name: str, spec: dict[str, Any], topology: dict[str, Any],
               where: str = "scenario.toml") -> str:
    """The DOT text for one scenario: nodes with their role and addresses, LAN segments,
    links, and the scenario's paths over them with a numbered legend."""
    running = roles(spec)
    lines = [f"digraph {_q(name)} {{",
             '  graph [rankdir=LR, fontname="Helvetica", fontsize=11, nodesep=0.35, '
             'ranksep=0.9, labelloc=t, label=' + _q(f"lab scenario {name}") + "];",
             '  node [fontname="Helvetica", fontsize=9, shape=box, style="rounded,filled", '
             'fillcolor="#FFFFFF", color="#555555"];',
             '  edge [fontname="Helvetica", fontsize=8, dir=none, color="#9A9A9A"];']
    for bridge, prefix in topology.get("bridges", {}).items():
        lines.append(f"  {_q('lan:' + bridge)} [shape=ellipse, style=filled, "
                     f'fillcolor="#EEEEEE", label={_q(NL.join((bridge, str(prefix))))}];')
    for node in topology["node"]:
        text = [node["name"]]
        fill = "#F4F4F4" if node.get("forward") else "#FFFFFF"
        for what in running.get(node["name"], []):
            label, colour = ROLE_STYLE.get(what, (f"{what} (DHCP)" if what == "dnsmasq" else
                                                  what, None))
            text.append(label)
            fill = colour or fill
        if any("MASQUERADE" in c for c in node.get("setup", [])):
            text.append("NAPT")
        for iface in node.get("iface", []):
            text.append(f"{iface['name']} {iface.get('address', '(no static address)')}")
        lines.append(f"  {_q(node['name'])} [label={_q(NL.join(text))}, "
                     f'fillcolor="{fill}"];')
    depth = _depths(topology)
    for a, b, attrs in _links(topology):
        if depth[b] < depth[a]:  # drawn away from the internet: the layout reads as a tree
            a, b = b, a
            attrs = {"taillabel": attrs.get("headlabel", ""), "headlabel": attrs["taillabel"]}
        labels = ", ".join(f"{k}={_q(v)}" for k, v in attrs.items() if v)
        lines.append(f"  {_q(a)} -> {_q(b)} [{labels}];")
    drawn = routes(spec, topology, where)
    for number, path in enumerate(drawn, 1):
        colour = PALETTE[(number - 1) % len(PALETTE)]
        for i, seg in enumerate(path.segments):
            style = [f'color="{colour}"', "penwidth=2.2", "constraint=false", "dir=forward",
                     "arrowsize=0.6"]
            if seg.kind == "tunnel":
                style.append("style=dashed")
            if seg.kind == "dropped":
                style += ['color="#C00000"', "arrowhead=tee", "style=dotted"]
            if i == 0:  # (a label= on a constraint=false edge crashes graphviz 2.43)
                style += [f"taillabel={_q(str(number))}", f'fontcolor="{colour}"']
            lines.append(f"  {_q(seg.src)} -> {_q(seg.dst)} [{', '.join(style)}];")
    if drawn:
        rows = "".join(
            f'<TR><TD ALIGN="LEFT"><FONT COLOR="{PALETTE[(n - 1) % len(PALETTE)]}">'
            f"<B>{n}</B></FONT> {escape(p.label)}</TD></TR>" for n, p in enumerate(drawn, 1))
        key = ('<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="8">solid: on the wire; dashed: '
               'inside a mipro tunnel; red, dotted: dropped</FONT></TD></TR>')
        lines.append('  legend [shape=plaintext, style="", label=<<TABLE BORDER="0" '
                     f'CELLBORDER="0" CELLSPACING="1">{rows}{key}</TABLE>>];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _links(topology: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(node, node or "lan:BRIDGE", interface labels) for every cable of the topology."""
    out = []
    for node in topology["node"]:
        for iface in node.get("iface", []):
            if "bridge" in iface:
                out.append((node["name"], "lan:" + iface["bridge"], {"taillabel": iface["name"]}))
            elif "peer" in iface:
                peer, peer_if = iface["peer"].split(".")
                out.append((node["name"], peer, {"taillabel": iface["name"],
                                                 "headlabel": peer_if}))
    return out


def _depths(topology: dict[str, Any]) -> dict[str, int]:
    """Hops from the internet router (the first node marked internet, else the first)."""
    links = _links(topology)
    near: dict[str, set[str]] = {}
    for a, b, _ in links:
        near.setdefault(a, set()).add(b)
        near.setdefault(b, set()).add(a)
    names = [n["name"] for n in topology["node"]]
    root = next((n["name"] for n in topology["node"] if n.get("internet")), names[0])
    depth, queue = {root: 0}, [root]
    for here in queue:  # breadth first: the queue grows as it is walked
        for there in sorted(near.get(here, ())):
            if there not in depth:
                depth[there] = depth[here] + 1
                queue.append(there)
    for name in [*names, *near]:
        depth.setdefault(name, 0)
    return depth


def render(dot: str, out: Path, stem: str = "topology",
           formats: tuple[str, ...] = ("svg", "png")) -> list[Path]:
    """Write STEM.dot and, if graphviz is installed, STEM.FORMAT for each format."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{stem}.dot"]
    written[0].write_text(dot)
    if not shutil.which("dot"):
        return written
    for fmt in formats:
        target = out / f"{stem}.{fmt}"
        proc = subprocess.run(["dot", f"-T{fmt}", "-o", str(target)], input=dot, text=True,
                              capture_output=True, timeout=60)
        if proc.returncode != 0:
            raise DrawError(f"dot -T{fmt}: {proc.stderr.strip()}")
        written.append(target)
    return written
