"""Expected state as data: compare a daemon's `status --json` against a JSON subset.

After FRR topotests' ``json_cmp`` / ``run_and_expect``, with these semantics (the
expected document is the pattern, the actual one the daemon's answer):

- an object matches an object that has every key the expected one names, each value
  matching; keys it does not name are not looked at;
- ``null`` as an object's value: that key is absent, or its value is null;
- a key ending in ``?`` (``"counters?": {...}``): optional, compared only when the
  actual object has the key (without the ``?``) with a value other than null;
- an array matches an array of the same length, element by element, in order;
  an array whose first element is ``"__subset__"`` matches an array in which each
  of the other elements matches a distinct element, in any order, others allowed
  (``["__subset__"]`` matches any array, ``["__subset__", {}]`` a non-empty one);
- ``"*"`` matches any value except null (the key is there);
- a string containing ``*`` is a shell-style pattern (``fnmatch``, case-sensitive,
  ``*``, ``?`` and ``[...]``) that an actual string must match, e.g. ``"10.0.0.*"``;
- ``"> N"``, ``">= N"``, ``"< N"``, ``"<= N"``, ``"!= N"`` (N a number) match a number
  (not a boolean) that compares so;
- anything else is compared with ``==``; booleans only equal booleans.

``json_cmp`` returns None when the actual document matches, else a readable diff: one
line per mismatch (the first ``limit``), each with the path (``bindings[0].source``),
what was expected and what was there.
"""

from __future__ import annotations

import fnmatch
import json
import operator
import re
import time
from collections.abc import Callable
from typing import Any

SUBSET = "__subset__"
_COMPARE = re.compile(r"^(<=|>=|<|>|!=)\s*(-?\d+(?:\.\d+)?)$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "!=": operator.ne}


def _show(value: Any, width: int = 120) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[: width - 3] + "..."


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _cmp(actual: Any, expected: Any, path: str, out: list[str]) -> None:
    where = path or "(top)"
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            out.append(f"{where}: expected an object, got {_show(actual)}")
            return
        for key, want in expected.items():
            optional = key.endswith("?")
            name = key[:-1] if optional else key
            sub = _join(path, name)
            if want is None:
                if actual.get(name) is not None:
                    out.append(f"{sub}: expected absent or null, got {_show(actual[name])}")
            elif name not in actual or (optional and actual[name] is None):
                if not optional:
                    out.append(f"{sub}: missing (expected {_show(want)})")
            else:
                _cmp(actual[name], want, sub, out)
        return
    if isinstance(expected, list):
        if not isinstance(actual, list):
            out.append(f"{where}: expected an array, got {_show(actual)}")
        elif expected and expected[0] == SUBSET:
            _subset(actual, expected[1:], path, out)
        elif len(actual) != len(expected):
            out.append(f"{where}: expected {len(expected)} element(s), got {len(actual)}: "
                       f"{_show(actual)}")
        else:
            for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
                _cmp(a, e, f"{path}[{i}]", out)
        return
    if isinstance(expected, str):
        if expected == "*":
            if actual is None:
                out.append(f"{where}: expected a value, got null")
            return
        if m := _COMPARE.match(expected):
            if not _is_number(actual) or not _OPS[m[1]](actual, float(m[2])):
                out.append(f"{where}: expected {expected}, got {_show(actual)}")
            return
        if "*" in expected:
            if not isinstance(actual, str) or not fnmatch.fnmatchcase(actual, expected):
                out.append(f"{where}: expected to match {expected!r}, got {_show(actual)}")
            return
    if isinstance(expected, bool) or isinstance(actual, bool):
        same = type(actual) is type(expected) and actual == expected
    else:
        same = actual == expected
    if not same:
        out.append(f"{where}: expected {_show(expected)}, got {_show(actual)}")


def _mismatches(actual: Any, expected: Any, path: str) -> list[str]:
    out: list[str] = []
    _cmp(actual, expected, path, out)
    return out


def _subset(actual: list[Any], wanted: list[Any], path: str, out: list[str]) -> None:
    """Each wanted element matches a distinct actual element (a matching, by search)."""
    fits = [[j for j, a in enumerate(actual) if not _mismatches(a, w, "")] for w in wanted]

    def assign(i: int, used: frozenset[int]) -> bool:
        return i == len(wanted) or any(
            assign(i + 1, used | {j}) for j in fits[i] if j not in used)

    if assign(0, frozenset()):
        return
    where = path or "(top)"
    found: list[str] = []
    for i, w in enumerate(wanted):
        if fits[i]:
            continue
        if not actual:
            found.append(f"{where}: no element matches {_show(w)} (the array is empty)")
            continue
        near = min(range(len(actual)),
                   key=lambda j: len(_mismatches(actual[j], w, "")))
        why = _mismatches(actual[near], w, f"{path}[{near}]")
        found.append(f"{where}: no element matches {_show(w)}; nearest, " + "; ".join(why[:3]))
    out.extend(found)
    if not found:  # each fits one alone, but not all at once
        out.append(f"{where}: {len(wanted)} expected element(s) need distinct matches among "
                   f"{len(actual)}: {_show(actual)}")


def json_cmp(actual: Any, expected: Any, limit: int = 10) -> str | None:
    """None if ``actual`` matches ``expected`` (see the module's semantics), else a diff
    of the first ``limit`` mismatches, one a line."""
    out = _mismatches(actual, expected, "")
    if not out:
        return None
    more = f"\n... and {len(out) - limit} more" if len(out) > limit else ""
    return "\n".join(out[:limit]) + more


class ExpectError(AssertionError):
    """What was expected did not come within the time: the last diff says why."""


def run_and_expect(func: Callable[[], Any], expected: Any, timeout: float, what: str,
                   interval: float = 0.1, scale: float = 1.0) -> Any:
    """Call ``func`` until what it returns matches ``expected`` (``json_cmp``), at most
    ``timeout * scale`` seconds; return that value, or raise ExpectError with the diff.

    OSError, KeyError and ValueError from ``func`` (a daemon whose control socket is not
    up yet) count as a mismatch and are retried."""
    deadline = time.monotonic() + timeout * scale
    while True:
        try:
            value = func()
            diff = json_cmp(value, expected)
        except (OSError, KeyError, ValueError) as exc:
            diff = f"could not get the state: {exc!r}"
        if diff is None:
            return value
        if time.monotonic() > deadline:
            raise ExpectError(f"timed out after {timeout * scale:g}s waiting for {what}:\n"
                              + "\n".join("  " + line for line in diff.splitlines()))
        time.sleep(interval)
