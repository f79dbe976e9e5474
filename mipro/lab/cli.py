"""`netns-lab/lab`: build, use and tear down the namespace lab by hand."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path

from .draw import DrawError, dot_source, render
from .lab import LAB_DIR, SCENARIOS, Lab, LabError


def scenarios() -> list[str]:
    return sorted(p.parent.name for p in SCENARIOS.glob("*/scenario.toml"))


def load_check(name: str):
    path = SCENARIOS / name / "check.py"
    spec = importlib.util.spec_from_file_location(f"scenario_{name.replace('-', '_')}", path)
    if spec is None or spec.loader is None:
        raise LabError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def current(prefix: str) -> Lab | None:
    state = LAB_DIR / "out" / f".{prefix}.state.json"
    if not state.exists():
        return None
    data = json.loads(state.read_text())
    return Lab(data["scenario"], prefix=prefix, out=Path(data["out"]))


def draw(lab: Lab, out: Path | None = None, stem: str = "topology") -> list[Path]:
    """The scenario's topology and checked paths (mipro/lab/draw.py) into ``out``
    (default: the scenario's output folder)."""
    dot = dot_source(lab.scenario, lab.spec, lab.topology, str(lab.dir / "scenario.toml"))
    return render(dot, out or lab.out, stem)


def run_scenario(name: str, prefix: str) -> int:
    lab = Lab(name, prefix=prefix)
    print(f"== scenario {name}: {lab.spec.get('description', '').strip()}")
    try:
        lab.up()
        written = draw(lab)
        picture = next((p for p in written if p.suffix == ".svg"), written[0])
        load_check(name).run(lab, say=lambda s: print(f"   {s}"))
        print(f"== {name}: PASS (captures and logs in {lab.out}; the topology and the "
              f"paths checked: {picture})")
        return 0
    except (AssertionError, LabError, DrawError) as exc:
        print(f"== {name}: FAIL: {exc}")
        traceback.print_exc()
        for log in sorted((lab.out / "logs").glob("*.log")):
            print(f"--- {log.name} (last lines)")
            print("\n".join(log.read_text().splitlines()[-15:]))
        return 1
    finally:
        lab.down(quiet=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="netns-lab/lab", description=__doc__)
    p.add_argument("--prefix", default=os.environ.get("MIPRO_LAB_PREFIX", "ml"),
                   help="namespace name prefix (default ml)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list scenarios")
    up = sub.add_parser("up", help="build a scenario and start its daemons")
    up.add_argument("scenario")
    sub.add_parser("down", help="stop everything and delete the namespaces")
    sub.add_parser("status", help="namespaces, processes and daemon status")
    ex = sub.add_parser("exec", help="run a command in a node's namespace")
    ex.add_argument("node")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    run = sub.add_parser("run", help="build, drive traffic, check, tear down")
    run.add_argument("scenario", nargs="+")
    dr = sub.add_parser("draw", help="draw scenarios' topologies and checked paths (graphviz)")
    dr.add_argument("scenario", nargs="*", help="default: every scenario")
    dr.add_argument("--out", type=Path, help="write DIR/lab-SCENARIO.{dot,svg,png} instead "
                    "of netns-lab/out/SCENARIO/topology.*")
    a = p.parse_args(argv)

    if a.cmd == "list":
        for name in scenarios():
            desc = Lab(name).spec.get("description", "").strip().split("\n")[0]
            print(f"{name:<14} {desc}")
        return 0
    if a.cmd == "up":
        lab = Lab(a.scenario, prefix=a.prefix)
        try:
            lab.up()
        except LabError as exc:
            print(f"lab up failed: {exc}", file=sys.stderr)
            lab.down(quiet=True)
            return 1
        print(f"lab {a.scenario}: up (namespaces {a.prefix}-*, output in {lab.out})")
        return 0
    if a.cmd == "down":
        lab = current(a.prefix) or Lab(scenarios()[0], prefix=a.prefix)
        lab.down()
        return 0
    if a.cmd == "status":
        running = current(a.prefix)
        if running is None:
            print("no lab is up")
            return 1
        print(f"scenario {running.scenario}; namespaces: {' '.join(running.namespaces())}")
        for svc in running.spec.get("service", []):
            if "socket" in svc:
                try:
                    print(f"{svc['name']}: {json.dumps(running.status(svc['name']))}")
                except OSError as exc:
                    print(f"{svc['name']}: not reachable ({exc})")
        return 0
    if a.cmd == "exec":
        if not a.command:
            print("exec NODE CMD...", file=sys.stderr)
            return 2
        os.execvp("ip", ["ip", "netns", "exec", f"{a.prefix}-{a.node}", *a.command])
    if a.cmd == "run":
        return max(run_scenario(name, a.prefix) for name in a.scenario)
    if a.cmd == "draw":
        try:
            for name in a.scenario or scenarios():
                lab = Lab(name, prefix=a.prefix)
                written = draw(lab, a.out, f"lab-{name}" if a.out else "topology")
                print(f"{name}: {' '.join(str(p) for p in written)}")
        except (LabError, DrawError) as exc:
            print(f"lab draw: {exc}", file=sys.stderr)
            return 1
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
