"""Every log line the daemons write has a stable `event=` name, and docs/operations.md
documents each one with its level, so the list operators alert on cannot go stale.

The names are read from the source (ast): the first argument of every `Log(...)` (engines'
actions, core/actions.py) and of every call of an EventLog (`log(...)`, `self.log(...)`,
`self.d.log(...)`), with the level (third argument of Log, second of a log call, or the
default "info").  A name must be a string literal, a conditional between literals, or a
local variable only ever assigned such; anything else fails the test (a name built at run
time is not one an operator can alert on)."""

import ast
import re
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "mipro"
DOC = REPO / "docs" / "operations.md"
LEVELS = {"debug", "info", "warning", "error"}
# where a name is passed through, not chosen: EventLog.__call__ (runtime/logging.py)
FORWARDERS = {("mipro/runtime/logging.py", "__call__")}
# what are not daemons' log lines: the lab's drivers and the command-line tools' output
NOT_DAEMONS = ("mipro/lab/", "mipro/tools/")


class Emission:
    def __init__(self, where: str, names: set[str], levels: set[str]) -> None:
        self.where, self.names, self.levels = where, names, levels


def literals(node: ast.AST, function: ast.AST | None) -> set[str] | None:
    """The strings ``node`` can be: a literal, a conditional between them, or a local
    variable only assigned them in ``function``; None if anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        a, b = literals(node.body, function), literals(node.orelse, function)
        return a | b if a is not None and b is not None else None
    if isinstance(node, ast.Name) and function is not None:
        values: set[str] = set()
        assigned = False
        for sub in ast.walk(function):
            if isinstance(sub, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == node.id for t in sub.targets):
                assigned = True
                found = literals(sub.value, None)
                if found is None:
                    return None
                values |= found
        return values if assigned else None
    return None


def function_of(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> ast.AST | None:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return node
    return None


def emissions() -> tuple[list[Emission], list[str]]:
    found: list[Emission] = []
    problems: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(REPO))
        if rel.startswith(NOT_DAEMONS):
            continue
        tree = ast.parse(path.read_text(), filename=rel)
        parents = {child: parent for parent in ast.walk(tree)
                   for child in ast.iter_child_nodes(parent)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            callee = func.id if isinstance(func, ast.Name) else \
                func.attr if isinstance(func, ast.Attribute) else None
            if callee not in ("Log", "log"):
                continue
            where = f"{rel}:{node.lineno}"
            function = function_of(node, parents)
            if function is not None and (rel, function.name) in FORWARDERS:
                continue
            args = list(node.args)
            keywords = {k.arg: k.value for k in node.keywords}
            name_node = args[0] if args else keywords.get("event")
            level_index = 2 if callee == "Log" else 1
            level_node = args[level_index] if len(args) > level_index else \
                keywords.get("level")
            names = literals(name_node, function) if name_node is not None else None
            levels = {"info"} if level_node is None else literals(level_node, function)
            if not names:
                problems.append(f"{where}: event name is not a literal: {ast.unparse(node)[:80]}")
                continue
            if not levels or not levels <= LEVELS:
                problems.append(f"{where}: level is not one of {sorted(LEVELS)}: "
                                f"{ast.unparse(node)[:80]}")
                continue
            found.append(Emission(where, names, levels))
    return found, problems


def documented() -> dict[str, set[str]]:
    """docs/operations.md's event table: | `name` | level[, level] | meaning |"""
    table: dict[str, set[str]] = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\|\s*`([a-z0-9-]+)`\s*\|\s*([a-z, ]+?)\s*\|", line)
        if m:
            table[m.group(1)] = {x.strip() for x in m.group(2).split(",")}
    return table


def test_every_event_name_is_a_literal():
    found, problems = emissions()
    assert not problems, "\n".join(problems)
    assert len({n for e in found for n in e.names}) > 50  # the scan sees the daemons


def test_every_event_is_documented_with_its_levels():
    found, _ = emissions()
    table = documented()
    levels: dict[str, set[str]] = defaultdict(set)
    where: dict[str, str] = {}
    for e in found:
        for name in e.names:
            levels[name] |= e.levels
            where.setdefault(name, e.where)
    levels["log-summary"].add("warning")  # runtime/logging.py writes it itself
    missing = sorted(f"{n} ({', '.join(sorted(levels[n]))}; {where.get(n, '-')})"
                     for n in levels if n not in table)
    assert not missing, "events not in docs/operations.md's table:\n" + "\n".join(missing)
    wrong = sorted(f"{n}: code {sorted(levels[n])}, docs {sorted(table[n])}"
                   for n in levels if n in table and levels[n] != table[n])
    assert not wrong, "levels differ from docs/operations.md:\n" + "\n".join(wrong)
    stale = sorted(set(table) - set(levels))
    assert not stale, f"documented but never logged: {stale}"


def test_alerts_are_documented_events():
    """The alerting section names only events of the table, and every error-level one."""
    text = DOC.read_text()
    alerts = text[text.index("## Events to alert on"):text.index("## All events")]
    named = set(re.findall(r"`([a-z0-9-]+)`", alerts))
    table = documented()
    assert named and named <= set(table), sorted(named - set(table))
    errors = {n for n, lv in table.items() if "error" in lv}
    assert errors <= named, f"error events with no alert advice: {sorted(errors - named)}"


# --- the log itself: every line has an event name, repeats are summarised -------------

def lines(stream) -> list[str]:
    return stream.getvalue().splitlines()


def test_repeated_warnings_are_summarised_with_counts_and_sources():
    import io

    from mipro.runtime.logging import EventLog

    now = [0.0]
    stream = io.StringIO()
    log = EventLog("ha", stream=stream, burst=5, interval=10, clock=lambda: now[0])
    for i in range(1000):
        log("drop", "warning", src=f"203.0.113.{i % 3}:434", reason="x")
    log("registered", home="10.1.0.100")  # info is never held back
    assert len(lines(stream)) == 6
    now[0] = 10.5
    log("drop", "warning", src="198.51.100.7:434", reason="x")  # a new window
    out = lines(stream)
    summary = [x for x in out if "event=log-summary" in x]
    assert len(summary) == 1 and "of=drop suppressed=995 sources=3" in summary[0]
    assert "top=203.0.113." in summary[0] and "window=10s" in summary[0]
    assert out[-1].endswith('event=drop src=198.51.100.7:434 reason=x')
    assert all(" event=" in x for x in out)


def test_a_refused_configuration_is_every_problem_as_an_event(tmp_path):
    import os
    import subprocess
    import sys

    bad = tmp_path / "ha.toml"
    bad.write_text("[ha]\n" + "".join(f"typo{i} = 1\n" for i in range(8)))
    bad.chmod(0o600)
    proc = subprocess.run([sys.executable, "-m", "mipro.cli", "ha", "--config", str(bad)],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 1 and not proc.stderr, proc.stderr
    out = proc.stdout.splitlines()
    problems = [x for x in out if "event=config-invalid" in x]
    assert len(problems) >= 8 and len(problems) == len(out)  # not rate-limited, nothing else
    assert all("level=error" in x and str(bad) in x for x in problems)
    assert any("ha.typo7" in x for x in problems), out


def test_library_logging_comes_out_as_events():
    import os
    import subprocess
    import sys

    script = """
import logging, warnings
import scapy.all  # installs its own stderr handler on the "scapy" logger
from mipro.runtime.logging import EventLog, capture_library_logs
capture_library_logs(EventLog("mn"))
logging.getLogger("pyroute2.dhcp").warning("lease %s lost", "x")
logging.getLogger("scapy.runtime").error("no route")
logging.getLogger("pyroute2").info("not shown: below warning")
warnings.warn("old api", DeprecationWarning, stacklevel=1)
"""
    proc = subprocess.run([sys.executable, "-W", "always", "-c", script], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    out = proc.stdout.splitlines()
    assert len(out) == 3 and all("event=library-log" in x for x in out), out
    assert 'level=warning event=library-log logger=pyroute2.dhcp message="lease x lost"' in out[0]
    assert "level=error" in out[1] and "logger=scapy.runtime" in out[1]
    assert "logger=py.warnings" in out[2] and "old api" in out[2]


def test_a_line_stays_one_line_whatever_a_field_holds():
    from mipro.core.actions import Log

    line = Log("drop", {"nai": 'mn\nevent=fake level=error "x"', "ok": "plain",
                        "esc": "\x1b[31m"}).line()
    assert "\n" not in line and "\x1b" not in line
    assert line == ('event=drop nai="mn\\nevent=fake level=error \\"x\\"" ok=plain '
                    'esc="\\x1b[31m"')


def test_an_unexpected_error_at_start_is_a_fatal_line_not_a_traceback():
    import os
    import subprocess
    import sys

    script = """
import sys
from types import SimpleNamespace
from mipro.runtime.daemon import run_daemon

class LibraryError(Exception):  # e.g. python-iptables' IPTCError without CAP_NET_ADMIN
    pass

def factory(cfg, log):
    raise LibraryError("can't initialize mangle: Permission denied")

cfg = SimpleNamespace(runtime=SimpleNamespace(log_level="info"))
sys.exit(run_daemon("fa", "fa.toml", lambda path: cfg, factory))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 1 and not proc.stderr, proc.stderr
    [line] = proc.stdout.splitlines()
    assert "mipro-fa level=error event=fatal reason=\"LibraryError(" in line, line
    assert "trace=" in line and "Permission denied" in line
