"""The embedded subscriber store: a TOML file that must not be readable by others."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..config.loader import (
    Checker,
    ConfigError,
    check_not_world_readable,
    file_problem,
    read_toml,
)
from ..policy.profile import ProfileError, parse_filter, parse_route
from ..security import Algorithm, SecurityAssociation
from ..security.replay import ReplayMethod
from ..wire.vendor import FilterRule, StaticRoute
from .model import MemoryStore, Subscriber


def load_subscribers(path: str | Path, named_by: str | None = None) -> MemoryStore:
    """Parse and validate every subscriber; all errors at once (ConfigError).

    ``named_by`` (``CONFIG: subscribers.file``) is where the path came from: a file that
    is missing or cannot be read is reported there."""
    if (problem := file_problem(path)) is not None:
        raise ConfigError([f"{named_by}: {path}: {problem}" if named_by else
                           f"{path}: {problem}"])
    check_not_world_readable(path, "the subscriber file (it holds keys)")
    data = read_toml(path)
    c = Checker(path, data)
    subs: list[Subscriber] = []
    seen: set[object] = set()
    for i, _ in enumerate(c.get("subscriber", list, [])):
        p = f"subscriber.{i}"
        home = c.address(f"{p}.home_address")
        if home is not None and home in seen:
            c.error(f"{p}.home_address", f"{home} is listed twice")
        seen.add(home)
        assocs: dict[int, SecurityAssociation] = {}
        for j, _sa in enumerate(c.get(f"{p}.sa", list)  or []):
            q = f"{p}.sa.{j}"
            spi = c.integer(f"{q}.spi", lo=256, hi=2**32 - 1)
            key = c.key_bytes(f"{q}.key")
            alg = c.choice(f"{q}.algorithm", tuple(a.value for a in Algorithm), "hmac-md5")
            if isinstance(spi, int) and isinstance(key, bytes) and isinstance(alg, str):
                assocs[spi] = SecurityAssociation(spi, key, Algorithm(alg))
        routes: list[StaticRoute] = _profile(c, f"{p}.routes", parse_route)
        filters: list[FilterRule] = _profile(c, f"{p}.filters", parse_filter)
        subs.append(Subscriber(
            home_address=home,
            nai=c.get(f"{p}.nai", str, ""),
            associations=assocs,
            max_lifetime=c.integer(f"{p}.max_lifetime", 3600, 1, 65534),
            replay=ReplayMethod(c.choice(f"{p}.replay", ("timestamp", "nonce"), "timestamp")
                                or "timestamp"),
            routes=tuple(routes),
            filters=tuple(filters),
        ))
    c.done()
    return MemoryStore(subs)


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

