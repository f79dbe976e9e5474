"""A bounded, time-limited cache in front of a remote subscriber store (LDAP), with the
directory asked off the event loop and a circuit breaker for outages.

The home agent looks a subscriber up on every registration and renewal; a
directory round trip (~1 ms on loopback, more across a network) would bound
the registration rate and load the directory with renewals that change
nothing.  Found subscribers are kept for ``ttl`` seconds, unknown identities
for ``negative_ttl`` (so a flood of strangers does not reach the directory),
errors never.

The engine only ever calls ``peek``, which answers from the cache: a
subscriber, None (known to be unknown), MISS (ask the directory) or
Unavailable.  The runtime runs ``fetch`` in a worker thread, with a timeout,
and hands the outcome back with ``record``/``record_failure`` on the event
loop.  After ``trip_after`` failures in a row the breaker opens: misses are
answered Unavailable at once (the HA denies with 130) for ``open_for``
seconds, doubling up to ``max_open`` while the directory stays down; then one
probe goes through, and a success closes the breaker.  A reload (SIGHUP)
builds a new store, hence an empty cache.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from ipaddress import IPv4Address

from .model import (
    MISS,
    Identity,
    Peeked,
    StoreUnavailable,
    Subscriber,
    SubscriberStore,
    Unavailable,
    identity,
)


class CachedStore:
    def __init__(self, store: SubscriberStore, ttl: float = 60.0, negative_ttl: float = 5.0,
                 max_entries: int = 200_000,
                 clock: Callable[[], float] = time.monotonic, trip_after: int = 3,
                 open_for: float = 5.0, max_open: float = 60.0) -> None:
        self.store = store
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self.clock = clock
        self.entries: OrderedDict[Identity, tuple[float, Subscriber | None]] = OrderedDict()
        self.hits = self.misses = 0
        self.found = self.not_found = self.failed = 0  # the directory's answers, ever
        self.trip_after, self.open_for, self.max_open = trip_after, open_for, max_open
        self.failures = 0  # in a row
        self.open_until = 0.0
        self.backoff = open_for
        self.probing = False
        self.last_error = ""

    # --- the engine's side: never blocks ---------------------------------------------

    def peek(self, home_address: IPv4Address, nai: str | None = None) -> Peeked:
        key = identity(home_address, nai)
        now = self.clock()
        cached = self.entries.get(key)
        if cached is not None and cached[0] > now:
            self.entries.move_to_end(key)
            self.hits += 1
            return cached[1]
        self.misses += 1
        if self.failures >= self.trip_after:
            if now < self.open_until or self.probing:
                return Unavailable(f"directory unavailable ({self.last_error}); "
                                   f"retrying in {max(0.0, self.open_until - now):.0f}s")
            self.probing = True  # half-open: this miss is the probe
        return MISS

    @property
    def state(self) -> str:
        if self.failures < self.trip_after:
            return "closed"
        return "half-open" if self.probing else "open"

    # --- the runtime's side ----------------------------------------------------------

    def fetch(self, home_address: IPv4Address, nai: str | None = None) -> Subscriber | None:
        """Ask the directory (blocks: call it from a worker thread)."""
        return self.store.lookup(home_address, nai)

    def record(self, home_address: IPv4Address, nai: str | None,
               sub: Subscriber | None) -> None:
        """A fetch answered (on the event loop)."""
        if sub is None:
            self.not_found += 1
        else:
            self.found += 1
        self.failures, self.probing, self.backoff = 0, False, self.open_for
        ttl = self.ttl if sub is not None else self.negative_ttl
        if ttl <= 0:
            return
        key = identity(home_address, nai)
        self.entries[key] = (self.clock() + ttl, sub)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def record_failure(self, reason: str) -> None:
        """A fetch failed or timed out (on the event loop)."""
        self.failed += 1
        self.last_error = reason
        self.failures += 1
        if self.failures >= self.trip_after:
            if self.probing:  # the probe failed too: stay open longer
                self.backoff = min(self.backoff * 2, self.max_open)
            self.open_until = self.clock() + self.backoff
            self.probing = False

    # --- blocking use (tools, tests) ---------------------------------------------------

    def lookup(self, home_address: IPv4Address, nai: str | None = None) -> Subscriber | None:
        seen = self.peek(home_address, nai)
        if isinstance(seen, Unavailable):
            raise StoreUnavailable(seen.reason)
        if seen is not MISS:
            return seen  # type: ignore[return-value]
        try:
            sub = self.fetch(home_address, nai)
        except StoreUnavailable as exc:
            self.record_failure(str(exc))
            raise
        self.record(home_address, nai, sub)
        return sub

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            close()
