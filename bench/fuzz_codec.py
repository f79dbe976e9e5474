#!/usr/bin/env python3
"""Long fuzz run of mipro's decoders: mutated valid messages and random bytes.

Counts outcomes; any exception other than DecodeError is a bug and is
printed with the input that caused it (exit 1).  `make fuzz` runs 1,000,000.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mipro import wire as w  # noqa: E402
from tests.unit import golden  # noqa: E402

SEEDS = [golden.RRQ[0], golden.RRP[0], golden.TUNNEL_DATA[0], golden.RRQ_ALL_FLAGS[0],
         golden.ADVERT[0], golden.SOLICITATION[0],
         golden.RRQ_FIXED + b"".join(v[0] for v in golden.EXTENSIONS.values())]


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(5)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            del b[pos:]
        elif op == 2:
            b[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 3 and b:
            del b[min(pos, len(b) - 1)]
        else:  # interesting lengths
            if pos < len(b):
                b[pos] = rng.choice([0, 1, 4, 6, 0x7F, 0x80, 0xFE, 0xFF])
    return bytes(b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261126)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    decoded = rejected = 0
    t0 = time.perf_counter()
    for i in range(args.count):
        data = rng.randbytes(rng.randint(0, 120)) if i % 10 == 0 else mutate(rng, rng.choice(SEEDS))
        decoder = w.decode_icmp if data[:1] in (b"\x09", b"\x0a") else w.decode_udp434
        try:
            decoder(data)
            decoded += 1
        except w.DecodeError:
            rejected += 1
        except Exception as exc:  # the bug this run exists to find
            print(f"BUG: {type(exc).__name__}: {exc} on input {data.hex()}")
            return 1
    elapsed = time.perf_counter() - t0
    print(f"fuzz: {args.count} inputs in {elapsed:.1f}s ({args.count / elapsed:,.0f}/s): "
          f"{decoded} decoded, {rejected} rejected with DecodeError, 0 other exceptions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
