"""The embedded subscriber store: a TOML file that must not be readable by others.

A million subscribers must load in seconds (docs/scale.md).  The file is read
in groups of GROUP ``[[subscriber]]`` tables, each parsed by rtoml (a compiled
TOML parser) and turned into Subscribers at once, so no parse tree of the
whole file is ever held.  A table of the usual shape (address, NAI, hex keys,
lifetime, replay method) is checked directly; any other goes through the
Checker, which names every problem.  Should a group not parse on its own (a
``[[subscriber]]`` line inside a multi-line string) or hold anything besides
subscribers, the whole file is read the plain way (tomllib, the Checker for
every table): the outcome, subscribers or errors, is the same either way.
"""

from __future__ import annotations

import gc
import socket
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, TypeVar

import rtoml

from ..config.loader import (
    MIN_KEY_BYTES,
    Checker,
    ConfigError,
    check_not_world_readable,
    file_problem,
    read_toml,
)
from ..core.addressmap import AddressMap
from ..policy.profile import ProfileError, parse_filter, parse_route
from ..security import Algorithm, SecurityAssociation
from ..security.replay import ReplayMethod
from ..wire.vendor import FilterRule, StaticRoute
from .model import MemoryStore, Subscriber

GROUP = 512  # subscriber tables per rtoml call
HEADER = "\n[[subscriber]]\n"
ALGORITHMS = {a.value: a for a in Algorithm}
REPLAYS = {m.value: m for m in ReplayMethod}
QUICK_KEYS = frozenset({"home_address", "nai", "sa", "max_lifetime", "replay"})
QUICK_SA_KEYS = frozenset({"spi", "key", "algorithm"})
READ: dict[str, Any] = {}  # stands in for a table read without the Checker


def load_subscribers(path: str | Path, named_by: str | None = None) -> MemoryStore:
    """Parse and validate every subscriber; all errors at once (ConfigError).

    ``named_by`` (``CONFIG: subscribers.file``) is where the path came from: a file that
    is missing or cannot be read is reported there."""
    if (problem := file_problem(path)) is not None:
        raise ConfigError([f"{named_by}: {path}: {problem}" if named_by else
                           f"{path}: {problem}"])
    check_not_world_readable(path, "the subscriber file (it holds keys)")
    enabled = gc.isenabled()
    gc.disable()  # millions of new objects and no cycles: no collections while loading
    try:
        subs = _load_grouped(path)
        if subs is None:
            subs = _load_plain(path)
    finally:
        if enabled:
            gc.enable()
    return MemoryStore(subs)


def _load_grouped(path: str | Path) -> list[Subscriber] | None:
    """The fast way; None if the file is not a plain list of subscriber tables."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # the plain way says what is wrong
    tables: list[dict[str, Any]] = []
    subs: list[Subscriber] = []
    c = Checker(path, {"subscriber": tables})
    seen: AddressMap[bool] = AddressMap()  # no million-entry set growing in one step
    ints: dict[int, int] = {}  # one object per distinct lifetime, not one per subscriber
    for group in _groups(text):
        try:
            data = rtoml.loads(group)
        except rtoml.TomlParsingError:
            return None
        if set(data) - {"subscriber"} or not isinstance(data.get("subscriber", []), list):
            return None
        for table in data.get("subscriber", []):
            i = len(tables)
            sub = _quick(table, ints) if isinstance(table, dict) else None
            tables.append(table if sub is None else READ)  # the Checker reads only its own
            if sub is None:
                sub = _checked(c, i, seen)
            else:
                _unique(c, i, sub.home_address, seen)
            subs.append(sub)
    del text
    c.done()
    return subs


def _load_plain(path: str | Path) -> list[Subscriber]:
    data = read_toml(path)
    c = Checker(path, data)
    subs: list[Subscriber] = []
    seen: AddressMap[bool] = AddressMap()  # no million-entry set growing in one step
    for i, _ in enumerate(c.get("subscriber", list, [])):
        subs.append(_checked(c, i, seen))
    c.done()
    return subs


def _groups(text: str) -> Iterator[str]:
    """``text`` cut before every GROUP-th ``[[subscriber]]`` line."""
    start = 0
    while start < len(text):
        end = start
        for _ in range(GROUP):
            end = text.find(HEADER, end + 1)
            if end < 0:
                end = len(text)
                break
        yield text[start:end + 1]
        start = end + 1


def _unique(c: Checker, i: int, home: IPv4Address, seen: AddressMap[bool]) -> None:
    if home in seen:
        c.error(f"subscriber.{i}.home_address", f"{home} is listed twice")
    seen[home] = True


def _quick(t: dict[str, Any], ints: dict[int, int]) -> Subscriber | None:
    """A table of the usual shape, checked directly at a tenth of the Checker's cost;
    None for anything else (the Checker then names what is wrong, or parses routes)."""
    if not QUICK_KEYS.issuperset(t):
        return None
    home, nai = t.get("home_address"), t.get("nai", "")
    lifetime, replay, sas = t.get("max_lifetime", 3600), t.get("replay", "timestamp"), t.get("sa")
    if type(home) is not str or type(nai) is not str or type(lifetime) is not int or \
            not 1 <= lifetime <= 65534 or type(replay) is not str or replay not in REPLAYS or \
            type(sas) is not list or not sas:
        return None
    try:
        address = _address(home)
    except ValueError:
        return None
    assocs: dict[int, SecurityAssociation] = {}
    for sa in sas:
        if type(sa) is not dict or not QUICK_SA_KEYS.issuperset(sa):
            return None
        spi, key, alg = sa.get("spi"), sa.get("key"), sa.get("algorithm", "hmac-md5")
        if type(spi) is not int or not 256 <= spi <= 2**32 - 1 or type(key) is not str or \
                not key.startswith("hex:") or type(alg) is not str or alg not in ALGORITHMS:
            return None
        try:
            raw = bytes.fromhex(key[4:])
        except ValueError:
            return None
        if len(raw) < MIN_KEY_BYTES:
            return None
        assocs[spi] = SecurityAssociation(spi, raw, ALGORITHMS[alg])
    return Subscriber(address, nai, assocs, ints.setdefault(lifetime, lifetime),
                      REPLAYS[replay])


def _address(text: str) -> IPv4Address:
    """IPv4Address(text) at a third of the cost: the C parser, when it reads back the same
    (inet_aton also takes "10.1" or octal, which ipaddress refuses: those go there)."""
    try:
        packed = socket.inet_aton(text)
    except OSError:
        packed = b""
    if packed and socket.inet_ntoa(packed) == text:
        return IPv4Address(packed)
    return IPv4Address(text)


def _checked(c: Checker, i: int, seen: AddressMap[bool]) -> Subscriber:
    """Subscriber ``i`` read through the Checker (problems recorded, a placeholder back)."""
    p = f"subscriber.{i}"
    home = c.address(f"{p}.home_address")
    _unique(c, i, home, seen)
    assocs: dict[int, SecurityAssociation] = {}
    for j, _sa in enumerate(c.get(f"{p}.sa", list) or []):
        q = f"{p}.sa.{j}"
        spi = c.integer(f"{q}.spi", lo=256, hi=2**32 - 1)
        key = c.key_bytes(f"{q}.key")
        alg = c.choice(f"{q}.algorithm", tuple(a.value for a in Algorithm), "hmac-md5")
        if isinstance(spi, int) and isinstance(key, bytes) and isinstance(alg, str):
            assocs[spi] = SecurityAssociation(spi, key, Algorithm(alg))
    routes: list[StaticRoute] = _profile(c, f"{p}.routes", parse_route)
    filters: list[FilterRule] = _profile(c, f"{p}.filters", parse_filter)
    return Subscriber(
        home_address=home,
        nai=c.get(f"{p}.nai", str, ""),
        associations=assocs,
        max_lifetime=c.integer(f"{p}.max_lifetime", 3600, 1, 65534),
        replay=ReplayMethod(c.choice(f"{p}.replay", ("timestamp", "nonce"), "timestamp")
                            or "timestamp"),
        routes=tuple(routes),
        filters=tuple(filters),
    )


P = TypeVar("P", StaticRoute, FilterRule)


def _profile(c: Checker, key: str, parse: Callable[[dict[str, Any]], P]) -> list[P]:
    """A subscriber's routes or filters, each table parsed; problems named by key."""
    out: list[P] = []
    for j, item in enumerate(c.get(key, list, []) or []):
        if not isinstance(item, dict):
            c.error(f"{key}.{j}", "expected a table like { destination = ... }")
            continue
        try:
            out.append(parse(item))
        except ProfileError as exc:
            c.error(f"{key}.{j}.{exc.key}", exc.problem)
    return out
