"""The fake backend: records what would be programmed, changes nothing.

For unit tests of the layers above (with failure injection) and for
protocol-only runs such as the registration benchmark's baseline.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from ..core.bindings import Binding


class FakeHaDataplane:
    name = "fake"

    def __init__(self, log: Any = None, fail_on: set[IPv4Address] | None = None) -> None:
        self.bindings: dict[IPv4Address, Binding] = {}
        self.calls: list[tuple[str, IPv4Address]] = []
        self.fail_on = fail_on or set()

    async def start(self, loop: Any) -> None:
        self.calls.append(("start", IPv4Address(0)))

    async def stop(self) -> None:
        self.calls.append(("stop", IPv4Address(0)))
        self.bindings.clear()

    async def install(self, b: Binding) -> None:
        if b.home_address in self.fail_on:
            raise OSError(105, "injected failure (No buffer space available)")
        self.calls.append(("install", b.home_address))
        self.bindings[b.home_address] = b

    async def remove(self, b: Binding) -> None:
        self.calls.append(("remove", b.home_address))
        self.bindings.pop(b.home_address, None)

    async def apply(self, ops: list[tuple[str, Binding]]) -> dict[int, str]:
        failed: dict[int, str] = {}
        for i, (op, b) in enumerate(ops):
            try:
                await (self.install(b) if op == "install" else self.remove(b))
            except OSError as exc:
                failed[i] = str(exc)
        return failed

    def counters(self, home: IPv4Address) -> None:
        return None

    udp_tunnels = True  # the engine decides as configured; nothing is carried here

    def from_udp(self, data: bytes, src: IPv4Address, port: int) -> bool:
        return False  # no tunnels here

    def drops(self) -> dict[str, int]:
        return {}
