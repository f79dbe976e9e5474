"""A bounded, time-limited cache in front of a remote subscriber store (LDAP).

The home agent looks a subscriber up on every registration and renewal; a
directory round trip (~1 ms on loopback, more across a network) would bound
the registration rate and load the directory with renewals that change
nothing.  Found subscribers are kept for ``ttl`` seconds, unknown home
addresses for ``negative_ttl`` (so a flood of strangers does not reach the
directory), errors never: a directory that is down is noticed on the first
lookup that misses.  A reload (SIGHUP) builds a new store, hence an empty
cache; an operator who changes a profile sees it within ``ttl``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from ipaddress import IPv4Address

from .model import Subscriber, SubscriberStore


class CachedStore:
    def __init__(self, store: SubscriberStore, ttl: float = 60.0, negative_ttl: float = 5.0,
                 max_entries: int = 200_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self.clock = clock
        self.entries: OrderedDict[tuple[IPv4Address, str | None],
                                  tuple[float, Subscriber | None]] = OrderedDict()
        self.hits = self.misses = 0

    def lookup(self, home_address: IPv4Address, nai: str | None = None) -> Subscriber | None:
        key = (home_address, nai or None)
        now = self.clock()
        cached = self.entries.get(key)
        if cached is not None and cached[0] > now:
            self.entries.move_to_end(key)
            self.hits += 1
            return cached[1]
        self.misses += 1
        sub = self.store.lookup(home_address, nai)  # StoreUnavailable propagates, uncached
        ttl = self.ttl if sub is not None else self.negative_ttl
        if ttl > 0:
            self.entries[key] = (now + ttl, sub)
            self.entries.move_to_end(key)
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)
        return sub

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            close()
