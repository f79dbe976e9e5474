"""What the home agent knows about a mobile node, and the store interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Protocol

from ..security import SecurityAssociation
from ..security.replay import ReplayMethod
from ..wire.vendor import FilterRule, StaticRoute


@dataclass(frozen=True)
class Subscriber:
    home_address: IPv4Address
    nai: str
    associations: dict[int, SecurityAssociation]  # by SPI
    max_lifetime: int = 3600
    replay: ReplayMethod = ReplayMethod.TIMESTAMP
    routes: tuple[StaticRoute, ...] = field(default=())
    filters: tuple[FilterRule, ...] = field(default=())


class StoreUnavailable(Exception):
    """The store cannot answer now (down, or returned garbage); say why."""


class SubscriberStore(Protocol):
    def lookup(self, home_address: IPv4Address, nai: str | None = None) -> Subscriber | None:
        """The subscriber with this home address (or NAI), None if unknown.

        Raises StoreUnavailable when the store cannot answer.
        """
        ...


class MemoryStore:
    """A dict-backed store, used by the file store and by tests."""

    def __init__(self, subscribers: list[Subscriber] | tuple[Subscriber, ...] = ()) -> None:
        self.by_home = {s.home_address: s for s in subscribers}
        self.by_nai = {s.nai: s for s in subscribers if s.nai}

    def lookup(self, home_address: IPv4Address, nai: str | None = None) -> Subscriber | None:
        found = self.by_home.get(home_address)
        if found is None and nai:
            found = self.by_nai.get(nai)
        return found

    def __len__(self) -> int:
        return len(self.by_home)
