"""A DHCP lease kept in memory only: the MN asks afresh at every start."""

from __future__ import annotations

from pyroute2.dhcp.leases import Lease


class MemoryLease(Lease):
    def dump(self) -> None:
        pass

    @classmethod
    def load(cls, interface: str) -> None:
        return None
