"""What the home agent knows about a mobile node, and the store interface.

A request names its subscriber by NAI when it carries one (RFC 2794: the NAI
is the identity) and by home address otherwise; a store never falls back from
one to the other, or a subscriber could sign a request for somebody else's
home address with its own key.  The home agent then checks that the home
address asked for is the subscriber's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, Protocol

from ..core.addressmap import AddressMap
from ..security import SecurityAssociation
from ..security.replay import ReplayMethod
from ..wire.vendor import FilterRule, StaticRoute


class Associations(Mapping[int, SecurityAssociation]):
    """A subscriber's security associations by SPI: a dict's interface in a tuple's
    memory (a dict of one costs 224 bytes, and a million subscribers have one or two
    each).  Immutable, like the Subscriber that holds it."""

    __slots__ = ("_sas",)

    def __init__(self, sas: Iterable[SecurityAssociation]) -> None:
        self._sas = tuple(sas)

    def __getitem__(self, spi: int) -> SecurityAssociation:
        for sa in self._sas:
            if sa.spi == spi:
                return sa
        raise KeyError(spi)

    def get(self, spi: int, default: Any = None) -> Any:
        for sa in self._sas:
            if sa.spi == spi:
                return sa
        return default

    def __iter__(self) -> Iterator[int]:
        return (sa.spi for sa in self._sas)

    def __len__(self) -> int:
        return len(self._sas)

    def __repr__(self) -> str:
        return repr(dict(self.items()))


@dataclass(frozen=True, slots=True)
class Subscriber:
    home_address: IPv4Address
    nai: str
    associations: Mapping[int, SecurityAssociation]  # by SPI (a dict is made Associations)
    max_lifetime: int = 3600
    replay: ReplayMethod = ReplayMethod.TIMESTAMP
    routes: tuple[StaticRoute, ...] = field(default=())
    filters: tuple[FilterRule, ...] = field(default=())

    def __post_init__(self) -> None:
        sas = self.associations
        if isinstance(sas, dict) and all(spi == sa.spi for spi, sa in sas.items()):
            object.__setattr__(self, "associations", Associations(sas.values()))


class StoreUnavailable(Exception):
    """The store cannot answer now (down, or returned garbage); say why."""


#: How a request names its subscriber: ("nai", text) or ("home", address).
Identity = tuple[str, object]


def identity(home_address: IPv4Address, nai: str | None) -> Identity:
    return ("nai", nai) if nai else ("home", home_address)


class Miss:
    """peek(): the answer is not known yet; fetch it (off the event loop)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"


MISS = Miss()


@dataclass(frozen=True)
class Unavailable:
    """peek(): the store cannot answer now (e.g. the directory is down)."""

    reason: str


Peeked = Subscriber | None | Miss | Unavailable


class SubscriberStore(Protocol):
    def lookup(self, home_address: IPv4Address, nai: str | None = None) -> Subscriber | None:
        """The subscriber named by ``nai`` if given, else by ``home_address``; None if
        unknown.  May block; raises StoreUnavailable when the store cannot answer."""
        ...


class Directory(Protocol):
    """What the home agent engine asks: never blocks."""

    def peek(self, home_address: IPv4Address, nai: str | None = None) -> Peeked:
        ...


class MemoryStore:
    """A dict-backed store, used by the file store and by tests: answers at once."""

    def __init__(self, subscribers: list[Subscriber] | tuple[Subscriber, ...] = ()) -> None:
        # an AddressMap: a lookup per request without IPv4Address's Python-level hash,
        # and no million-entry dict growing in one piece (core/addressmap.py)
        self.by_home: AddressMap[Subscriber] = AddressMap()
        for s in subscribers:
            self.by_home[s.home_address] = s
        self.by_nai = {s.nai: s for s in subscribers if s.nai}

    def lookup(self, home_address: IPv4Address, nai: str | None = None) -> Subscriber | None:
        if nai:
            return self.by_nai.get(nai)
        return self.by_home.get(home_address)

    peek = lookup

    def __len__(self) -> int:
        return len(self.by_home)

    def release(self) -> None:
        """Empty the store a few hundred subscribers at a time, for a thread to call on a
        store that a reload replaced: dropping a million-entry dict frees every subscriber
        in one C call that holds the GIL (~0.3 s), this lets go of it in between."""
        while self.by_nai:
            for _ in range(min(256, len(self.by_nai))):
                self.by_nai.popitem()
        self.by_home.clear()  # a shard at a time: 1/256 of the subscribers per C call


class BlockingDirectory:
    """A store without ``peek`` (a test double, a plugin) asked synchronously."""

    def __init__(self, store: SubscriberStore) -> None:
        self.store = store

    def peek(self, home_address: IPv4Address, nai: str | None = None) -> Peeked:
        try:
            return self.store.lookup(home_address, nai)
        except StoreUnavailable as exc:
            return Unavailable(str(exc))


def directory_of(store: object) -> Directory:
    return store if hasattr(store, "peek") else BlockingDirectory(store)  # type: ignore[arg-type]
