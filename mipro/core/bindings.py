"""The home agent's binding table: O(1) lookups, O(log n) expiry via a lazy heap."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any


@dataclass(frozen=True, slots=True)
class Binding:
    home_address: IPv4Address
    care_of_address: IPv4Address
    home_agent: IPv4Address
    lifetime: int
    expires: float  # engine clock (time.time() in the runtime)
    registered: float
    identification: int
    encapsulation: str = "ipip"  # ipip | gre
    reverse_tunnel: bool = False
    nai: str = ""
    spi: int = 0
    source: IPv4Address | None = None  # where the request came from (FA, NAPT, MN)
    source_port: int = 434

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires - now + 0.5))

    def to_row(self) -> list[Any]:
        """A compact JSON-ready row, in field order (the state file's format)."""
        return [str(self.home_address), str(self.care_of_address), str(self.home_agent),
                self.lifetime, self.expires, self.registered, self.identification,
                self.encapsulation, self.reverse_tunnel, self.nai, self.spi,
                None if self.source is None else str(self.source), self.source_port]

    @classmethod
    def from_row(cls, row: list[Any]) -> Binding:
        (home, coa, ha, lifetime, expires, registered, ident, encap, reverse, nai, spi, source,
         port) = row
        return cls(IPv4Address(home), IPv4Address(coa), IPv4Address(ha), int(lifetime),
                   float(expires), float(registered), int(ident), str(encap), bool(reverse),
                   str(nai), int(spi), None if source is None else IPv4Address(source),
                   int(port))


class BindingTable:
    """Bindings by home address; expiry without scanning the table."""

    def __init__(self) -> None:
        self._by_home: dict[IPv4Address, Binding] = {}
        self._heap: list[tuple[float, int, IPv4Address]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._by_home)

    def __iter__(self) -> Iterator[Binding]:
        return iter(list(self._by_home.values()))

    def get(self, home: IPv4Address) -> Binding | None:
        return self._by_home.get(home)

    def put(self, binding: Binding) -> Binding | None:
        old = self._by_home.get(binding.home_address)
        self._by_home[binding.home_address] = binding
        self._seq += 1
        heapq.heappush(self._heap, (binding.expires, self._seq, binding.home_address))
        return old

    def pop(self, home: IPv4Address) -> Binding | None:
        return self._by_home.pop(home, None)

    def next_expiry(self) -> float | None:
        while self._heap:
            expires, _, home = self._heap[0]
            current = self._by_home.get(home)
            if current is None or current.expires != expires:
                heapq.heappop(self._heap)  # stale entry of a renewed or removed binding
                continue
            return expires
        return None

    def pop_expired(self, now: float) -> list[Binding]:
        expired = []
        while (t := self.next_expiry()) is not None and t <= now:
            _, _, home = heapq.heappop(self._heap)
            expired.append(self._by_home.pop(home))
        return expired
