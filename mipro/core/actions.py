"""What engines ask the runtime to do: small frozen values, dispatched by type."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

MIP_PORT = 434


@dataclass(frozen=True)
class Send:
    """Send a UDP datagram (source port 434 on agents, any on the MN)."""

    dst: IPv4Address
    port: int
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class SendIcmp:
    """Send an ICMP message (agent advertisement or solicitation) on the agent's link."""

    dst: IPv4Address
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class SendToLink:
    """Send a UDP datagram straight to a link-layer address (FA → MN: no ARP for a
    home address, RFC 5944 §3.7.2.3)."""

    mac: bytes
    src: IPv4Address
    dst: IPv4Address
    port: int
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Log:
    """One journald-friendly event: ``event key=value ...``."""

    event: str
    fields: dict[str, Any] = field(default_factory=dict)
    level: str = "info"

    def line(self) -> str:
        parts = [f"event={self.event}"]
        for key, value in self.fields.items():
            text = str(value)
            if not text or any(c.isspace() for c in text) or '"' in text:
                text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
            parts.append(f"{key}={text}")
        return " ".join(parts)


@dataclass(frozen=True)
class InstallBinding:
    binding: Any  # core.bindings.Binding


@dataclass(frozen=True)
class RemoveBinding:
    binding: Any
    reason: str


Action = Send | SendIcmp | SendToLink | Log | InstallBinding | RemoveBinding
