"""What engines ask the runtime to do: small frozen values, dispatched by type."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from ..security import SecurityAssociation
from .bindings import Binding

MIP_PORT = 434


@dataclass(frozen=True)
class Send:
    """Send a UDP datagram (source port 434 on agents, any on the MN)."""

    dst: IPv4Address
    port: int
    data: bytes = field(repr=False)
    #: the agent address it leaves from (an HA serving several addresses); None: the main one
    src: IPv4Address | None = None


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
        """One line, whatever the fields hold: a value with spaces or quotes is quoted,
        and control characters (a newline in a peer's bytes or an exception) escaped."""
        parts = [f"event={self.event}"]
        for key, value in self.fields.items():
            text = str(value)
            if not text or any(c.isspace() or c == '"' or not c.isprintable() for c in text):
                text = text.replace("\\", "\\\\").replace('"', '\\"')
                text = '"' + "".join(c if c.isprintable() else
                                     c.encode("unicode_escape").decode() for c in text) + '"'
            parts.append(f"{key}={text}")
        return " ".join(parts)


@dataclass(frozen=True)
class InstallBinding:
    """Program a binding into the kernel.  ``reply`` is the Send (in the same action
    list) that accepts it: the runtime sends it only once the kernel has the binding.
    If the kernel refuses, the runtime drops that Send and asks the engine instead
    (``install_failed``), which answers with a denial signed with ``sa`` (and FA-HA
    when ``fa_signed``)."""

    binding: Binding
    reply: Send | None = None
    sa: SecurityAssociation | None = field(default=None, repr=False)
    fa_signed: bool = False


@dataclass(frozen=True)
class RemoveBinding:
    binding: Binding
    reason: str


@dataclass(frozen=True)
class FetchSubscriber:
    """Look a subscriber up in the directory, off the event loop; hand the answer back
    with ``HomeAgent.subscriber_ready``."""

    home_address: IPv4Address
    nai: str | None


Action = Send | SendIcmp | SendToLink | Log | InstallBinding | RemoveBinding | FetchSubscriber
