#!/usr/bin/env python3
"""Memory and load time per subscriber, by subscriber store (docs/operations.md).

File store: a subscriber file of N (one SA each, as bench/registration.py writes)
loaded by ``load_subscribers``.  LDAP with cache: N entries as ``parse_entry``
builds them from the directory's attributes, recorded in a ``CachedStore`` (what
the home agent keeps per cached subscriber; the directory's own memory is not
counted).  Baseline in the same run: the same N as plain dicts of the file's
values (what any store must hold at least, in Python).  Bytes from tracemalloc
(Python allocations, no allocator slack); figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.regload import home_of, mn_key  # noqa: E402
from mipro.subscribers.cache import CachedStore  # noqa: E402
from mipro.subscribers.file_store import load_subscribers  # noqa: E402
from mipro.subscribers.ldap_store import parse_entry  # noqa: E402
from mipro.subscribers.model import MemoryStore  # noqa: E402


def measure(build: Any) -> tuple[Any, int, float]:
    """What ``build()`` keeps alive (bytes) and how long it took."""
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    kept = build()
    seconds = time.perf_counter() - t0
    gc.collect()
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return kept, size, seconds


def file_store(n: int, seed: str) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "subscribers.toml"
        with open(path, "w") as fh:
            for i in range(n):
                fh.write(f'[[subscriber]]\nhome_address = "{home_of(i)}"\nmax_lifetime = 3600\n'
                         f'sa = [{{ spi = {256 + i}, key = "hex:{mn_key(seed, i).hex()}" }}]\n')
        path.chmod(0o600)
        _, size, seconds = measure(lambda: load_subscribers(path))
    return size, seconds


def ldap_cache(n: int, seed: str) -> tuple[int, float]:
    entries = [(f"cn=mn{i},ou=mobile", {
        "miproHomeAddress": [str(home_of(i))], "miproNAI": [f"mn{i}@home.example"],
        "miproSecurityAssociation": [f"{256 + i} hmac-md5 hex:{mn_key(seed, i).hex()}"]})
        for i in range(n)]

    def build() -> CachedStore:
        cache = CachedStore(MemoryStore([]), ttl=3600, max_entries=n)
        for dn, attrs in entries:
            sub = parse_entry(dn, attrs)
            cache.record(sub.home_address, sub.nai, sub)
        return cache
    _, size, seconds = measure(build)
    return size, seconds


def plain(n: int, seed: str) -> tuple[int, float]:
    def build() -> dict:
        return {home_of(i): {"max_lifetime": 3600, "spi": 256 + i, "key": mn_key(seed, i)}
                for i in range(n)}
    _, size, seconds = measure(build)
    return size, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--seed", default="bench")
    a = p.parse_args()
    IPv4Address("0.0.0.0")  # noqa: B018 (the ipaddress module's caches, before measuring)
    print(f"{'store':<16} {'subscribers':>11} {'B/subscriber':>12} {'µs/subscriber':>13}")
    for n in (int(x) for x in a.sizes.split(",")):
        for name, fn in (("plain dicts", plain), ("file", file_store),
                         ("ldap+cache", ldap_cache)):
            size, seconds = fn(n, a.seed)
            print(f"{name:<16} {n:>11} {size / n:>12.0f} {seconds / n * 1e6:>13.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
