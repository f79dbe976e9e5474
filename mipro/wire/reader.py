"""Bounds-checked big-endian reads that fail with DecodeError, never IndexError."""

from __future__ import annotations

from ipaddress import IPv4Address

from .errors import DecodeError


class Reader:
    """A cursor over ``data[start:end]``; offsets reported are relative to ``base``."""

    __slots__ = ("data", "pos", "end", "base")

    def __init__(self, data: bytes, start: int = 0, end: int | None = None, base: int = 0):
        self.data = data
        self.pos = start
        self.end = len(data) if end is None else end
        self.base = base

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def remaining(self) -> int:
        return self.end - self.pos

    def error(self, reason: str, at: int | None = None) -> DecodeError:
        return DecodeError(self.base + (self.pos if at is None else at), reason)

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise self.error(f"truncated {what}: need {n} bytes, {self.remaining()} left")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "big")

    def u32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "big")

    def u64(self, what: str) -> int:
        return int.from_bytes(self.take(8, what), "big")

    def addr(self, what: str) -> IPv4Address:
        return IPv4Address(self.take(4, what))

    def rest(self) -> bytes:
        chunk = self.data[self.pos : self.end]
        self.pos = self.end
        return chunk

    def expect_end(self, what: str) -> None:
        if self.pos != self.end:
            raise self.error(f"{self.remaining()} unexpected trailing bytes in {what}")
