"""Agent Advertisements (RFC 5944 §2.3): periodic, and in answer to solicitations.

Used by the foreign agent (F bit, care-of addresses) and by the home agent on
its home link (H bit), where a returning mobile node learns it is home.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from ipaddress import IPv4Address

from ..wire import AgentAdvertisement, AgentFlags, MobilityAgentExtension, PrefixLengthsExtension
from .actions import SendIcmp

ALL_SYSTEMS = IPv4Address("224.0.0.1")


@dataclass(frozen=True)
class AdvertPolicy:
    address: IPv4Address  # router address advertised (the agent on this link)
    prefix_length: int
    flags: AgentFlags
    care_of_addresses: tuple[IPv4Address, ...] = ()
    registration_lifetime: int = 600
    interval: float = 1.0  # seconds between unsolicited advertisements

    @property
    def lifetime(self) -> int:
        """ICMP advertisement lifetime: three intervals, at least 1 s."""
        return max(1, int(self.interval * 3 + 0.999))


class Advertiser:
    SOLICITED_GAP = 0.05  # seconds

    def __init__(self, policy: AdvertPolicy, now: float) -> None:
        self.policy = policy
        self.sequence = 0
        self.next_at = now  # advertise at once on start
        self.last_solicited = float("-inf")
        self.solicitations_ignored = 0

    def _advert(self) -> bytes:
        p = self.policy
        # RFC 5944 §2.3.2: sequence numbers wrap to 256, never back to 0 (0 means "rebooted")
        self.sequence = self.sequence + 1 if self.sequence < 0xFFFF else 256
        ext = MobilityAgentExtension(self.sequence, p.registration_lifetime, p.flags,
                                     p.care_of_addresses)
        return AgentAdvertisement(p.lifetime, ((p.address, 0),),
                                  (ext, PrefixLengthsExtension((p.prefix_length,)))).encode()

    def next_timer(self) -> float:
        return self.next_at

    def handle_timer(self, now: float) -> list[SendIcmp]:
        if now < self.next_at:
            return []
        # RFC 1256 jitter keeps agents on one link from synchronising
        self.next_at = now + self.policy.interval * random.uniform(0.9, 1.0)
        return [SendIcmp(ALL_SYSTEMS, self._advert())]

    def solicited(self, src: IPv4Address, now: float) -> list[SendIcmp]:
        """Answer a solicitation by multicast (RFC 5944 §2.4 allows it): a mobile node's
        source is its home address, for which an agent must not ARP.  One multicast
        answer serves every node on the link, so at most one per ``SOLICITED_GAP``
        seconds: a flood of solicitations earns a few advertisements, not one each."""
        if now - self.last_solicited < self.SOLICITED_GAP:
            self.solicitations_ignored += 1
            return []
        self.last_solicited = now
        return [SendIcmp(ALL_SYSTEMS, self._advert())]
