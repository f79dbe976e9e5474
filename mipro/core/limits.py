"""Budgets for work done before anything is authenticated.

A datagram that has not yet been authenticated may cost a decode, a
subscriber lookup and an HMAC, and may earn an answer.  Each source gets a
token bucket, so one flooding source cannot starve the others; the table of
buckets is bounded (least recently seen sources are forgotten first), so a
flood from many spoofed sources cannot exhaust memory.  Pure: the caller
passes the time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float = 0.0) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, now

    def allow(self, now: float, cost: float = 1.0) -> bool:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class SourceLimiter:
    """A token bucket per key (a source address, a link-layer address), at most
    ``max_sources`` of them."""

    def __init__(self, rate: float, burst: float, max_sources: int = 65_536) -> None:
        self.rate, self.burst, self.max_sources = rate, burst, max_sources
        self.buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def allow(self, key: Hashable, now: float, cost: float = 1.0) -> bool:
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_sources:
                self.buckets.popitem(last=False)
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst, now)
        else:
            self.buckets.move_to_end(key)
        return bucket.allow(now, cost)
