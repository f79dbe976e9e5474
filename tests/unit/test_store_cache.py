"""The subscriber cache in front of the directory: hits, expiry, negatives, errors, bound."""

from ipaddress import IPv4Address as A

import pytest

from mipro.security import SecurityAssociation
from mipro.subscribers.cache import CachedStore
from mipro.subscribers.model import StoreUnavailable, Subscriber

HOME = A("10.1.0.100")
SUB = Subscriber(HOME, "mn1", {256: SecurityAssociation(256, b"k" * 16)})


class Directory:
    """Stands in for the LDAP store (tested against slapd in the integration tests)."""

    def __init__(self):
        self.asked = 0
        self.down = False
        self.entries = {HOME: SUB}

    def lookup(self, home, nai=None):
        self.asked += 1
        if self.down:
            raise StoreUnavailable("ldap://127.0.0.1:1: down")
        return self.entries.get(home)


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_found_subscribers_are_reused_until_the_ttl():
    d, clock = Directory(), Clock()
    store = CachedStore(d, ttl=60, clock=clock)
    assert store.lookup(HOME) is SUB and store.lookup(HOME) is SUB and d.asked == 1
    clock.t += 61
    assert store.lookup(HOME) is SUB and d.asked == 2
    assert (store.hits, store.misses) == (1, 2)


def test_unknown_addresses_are_remembered_briefly():
    d, clock = Directory(), Clock()
    store = CachedStore(d, ttl=60, negative_ttl=5, clock=clock)
    stranger = A("10.1.0.99")
    assert store.lookup(stranger) is None and store.lookup(stranger) is None and d.asked == 1
    d.entries[stranger] = SUB  # provisioned meanwhile: seen after the negative ttl
    clock.t += 6
    assert store.lookup(stranger) is SUB


def test_errors_are_never_cached():
    d, clock = Directory(), Clock()
    store = CachedStore(d, ttl=60, clock=clock)
    d.down = True
    with pytest.raises(StoreUnavailable):
        store.lookup(HOME)
    d.down = False
    assert store.lookup(HOME) is SUB and d.asked == 2


def test_a_zero_ttl_asks_every_time_and_the_cache_is_bounded():
    d, clock = Directory(), Clock()
    store = CachedStore(d, ttl=0, negative_ttl=0, clock=clock)
    store.lookup(HOME)
    store.lookup(HOME)
    assert d.asked == 2 and not store.entries
    small = CachedStore(d, max_entries=3, clock=clock)
    for i in range(10):
        small.lookup(A(f"10.1.1.{i}"))
    assert len(small.entries) == 3 and ("home", A("10.1.1.9")) in small.entries
