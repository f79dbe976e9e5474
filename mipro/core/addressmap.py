"""A dict keyed by IPv4 address, kept as 256 dicts of the address's integer.

Two reasons, both measured at a million bindings (bench/registration.py --stalls):

- CPython grows a dict by copying it whole with the GIL held: at 700,000 entries one
  insertion takes ~30 ms, at 1.4 million ~60 ms, and the home agent's tables (bindings,
  their expiry entries, replay state, the dataplane's) all grow at the same registration:
  a 100-500 ms stall.  Split by the address's low byte, no growth copies more than
  1/256 of a table.
- An ``IPv4Address`` hashes and compares in Python (``hash(hex(int(self)))``); its
  integer does both in C.  A lookup here costs ~70 ns against ~230 ns in a plain dict.

Iterating yields ``IPv4Address`` keys made afresh (equal to, not the same as, the ones
put in): status, tests and replication iterate, the request path looks up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from operator import attrgetter
from typing import Any, Generic, TypeVar, overload

V = TypeVar("V")
D = TypeVar("D")
SHARDS = 256
_MASK = SHARDS - 1
_MISSING: Any = object()
# int(address) without a Python-level __int__ call (the slot ipaddress keeps it in)
_int: Callable[[IPv4Address], int] = attrgetter("_ip")


class AddressMap(Generic[V]):
    __slots__ = ("_shards", "_len")

    def __init__(self, items: Any = ()) -> None:
        self._shards: list[dict[int, V]] = [{} for _ in range(SHARDS)]
        self._len = 0
        pairs = items.items() if hasattr(items, "items") else items
        for key, value in pairs:
            self[key] = value

    def __len__(self) -> int:
        return self._len

    def __contains__(self, key: object) -> bool:
        ip = getattr(key, "_ip", None)
        return ip is not None and ip in self._shards[ip & _MASK]

    def __getitem__(self, key: IPv4Address) -> V:
        ip = _int(key)
        value: V = self._shards[ip & _MASK][ip]
        return value

    @overload
    def get(self, key: IPv4Address) -> V | None: ...
    @overload
    def get(self, key: IPv4Address, default: D) -> V | D: ...

    def get(self, key: IPv4Address, default: Any = None) -> Any:
        ip = _int(key)
        return self._shards[ip & _MASK].get(ip, default)

    def __setitem__(self, key: IPv4Address, value: V) -> None:
        ip = _int(key)
        shard = self._shards[ip & _MASK]
        before = len(shard)
        shard[ip] = value
        self._len += len(shard) - before

    def setdefault(self, key: IPv4Address, default: V) -> V:
        ip = _int(key)
        shard = self._shards[ip & _MASK]
        value = shard.get(ip, _MISSING)
        if value is _MISSING:
            shard[ip] = value = default
            self._len += 1
        return value  # type: ignore[no-any-return]

    def __delitem__(self, key: IPv4Address) -> None:
        ip = _int(key)
        del self._shards[ip & _MASK][ip]
        self._len -= 1

    @overload
    def pop(self, key: IPv4Address) -> V: ...
    @overload
    def pop(self, key: IPv4Address, default: D) -> V | D: ...

    def pop(self, key: IPv4Address, default: Any = _MISSING) -> Any:
        ip = _int(key)
        value = self._shards[ip & _MASK].pop(ip, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        self._len -= 1
        return value

    def clear(self) -> None:
        for shard in self._shards:
            shard.clear()
        self._len = 0

    def __iter__(self) -> Iterator[IPv4Address]:
        return (IPv4Address(ip) for ip in self.keys_as_ints())

    def keys(self) -> Iterator[IPv4Address]:
        return iter(self)

    def keys_as_ints(self) -> Iterator[int]:
        return (ip for shard in self._shards for ip in list(shard))

    def values(self) -> Iterator[V]:
        return (v for shard in self._shards for v in list(shard.values()))

    def items(self) -> Iterator[tuple[IPv4Address, V]]:
        return ((IPv4Address(ip), v) for shard in self._shards for ip, v in list(shard.items()))

    def slices(self) -> Iterator[list[V]]:
        """The values a shard at a time, each shard copied when it is reached (one C call
        under the GIL, so another thread may take a snapshot this way while the event
        loop changes the map: a consistent copy of each shard, not of the whole)."""
        return (list(shard.values()) for shard in self._shards)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AddressMap):
            return self._shards == other._shards
        if isinstance(other, dict):
            return len(other) == self._len and all(
                k in self and self[k] == v for k, v in other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"AddressMap({dict(self.items())!r})"
