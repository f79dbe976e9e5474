"""The lab's pictures (mipro/lab/draw.py): each scenario's DOT names every node and LAN
of its topology and every path its scenario.toml says the check verifies; graphviz
renders it; docs/lab.md shows a committed rendering of each that is not behind the
topology or the paths."""

import html
import re
import shutil
from pathlib import Path

import pytest

from mipro.lab.cli import draw, scenarios
from mipro.lab.draw import DrawError, dot_source, parse_route
from mipro.lab.lab import Lab

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "docs" / "img"


@pytest.fixture(params=scenarios())
def lab(request) -> Lab:
    return Lab(request.param)


def test_every_scenario_has_checked_paths():
    assert len(scenarios()) >= 6
    for name in scenarios():
        assert Lab(name).spec.get("path"), f"{name}: no [[path]] in scenario.toml"


def test_the_dot_names_every_node_lan_and_path(lab):
    dot = dot_source(lab.scenario, lab.spec, lab.topology)
    for node in lab.topology["node"]:
        assert f'\n  "{node["name"]}" [label="{node["name"]}\\n' in dot, node["name"]
    for bridge in lab.topology.get("bridges", {}):
        assert f'"lan:{bridge}" [' in dot, bridge
    for path in lab.spec["path"]:
        assert html.escape(path["label"]) in dot, path["label"]
        hops = re.split(r"\s+[-=x]\s+", path["route"])
        for a, b in zip(hops, hops[1:], strict=False):
            assert f'"{a}" -> "{b}" [color=' in dot, (path["route"], a, b)
    roles = {"ha": "home agent", "fa": "foreign agent", "mn": "mobile node"}
    for svc in lab.spec["service"]:
        role = svc["cmd"][3] if "mipro.cli" in svc["cmd"] else None
        if role in roles:  # the node says what runs there
            assert re.search(rf'"{svc["node"]}" \[label="[^"]*\\n{roles[role]}\\n', dot), svc


@pytest.mark.skipif(not shutil.which("dot"), reason="graphviz is not installed")
def test_graphviz_renders_it(lab, tmp_path):
    written = draw(lab, tmp_path)
    assert [p.name for p in written] == ["topology.dot", "topology.svg", "topology.png"]
    svg = html.unescape((tmp_path / "topology.svg").read_text())
    for node in lab.topology["node"]:
        assert f"<title>{node['name']}</title>" in svg, node["name"]
    assert (tmp_path / "topology.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_docs_show_a_current_picture_of_each(lab):
    image = IMAGES / f"lab-{lab.scenario}.svg"
    assert f"img/lab-{lab.scenario}.svg" in (REPO / "docs" / "lab.md").read_text()
    svg = html.unescape(image.read_text())  # `netns-lab/lab draw --out docs/img` wrote it
    for node in lab.topology["node"]:
        assert f"<title>{node['name']}</title>" in svg, f"{image}: no {node['name']}"
    for path in lab.spec["path"]:
        assert path["label"] in svg, f"{image}: {path['label']}"


def test_a_route_names_nodes_of_the_topology():
    nodes = {"mn", "fa1", "ha", "cn-home"}
    segs = parse_route("mn - fa1 = ha - cn-home", nodes, "s.toml: path 1")
    assert [(s.src, s.dst, s.kind) for s in segs] == [
        ("mn", "fa1", "wire"), ("fa1", "ha", "tunnel"), ("ha", "cn-home", "wire")]
    assert parse_route("mn x cn-home", nodes, "-")[0].kind == "dropped"
    with pytest.raises(DrawError, match=r"s.toml: path 2: .*no node fa9"):
        parse_route("mn - fa9", nodes, "s.toml: path 2")
    with pytest.raises(DrawError, match="two nodes"):
        parse_route("mn", nodes, "s.toml: path 3")
    with pytest.raises(DrawError, match="no node mn-fa1"):  # separators need spaces
        parse_route("mn-fa1 - ha", nodes, "s.toml: path 4")
