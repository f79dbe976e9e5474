"""The network-namespace lab: topologies after the seed's figures, scenarios, captures.

Used by `netns-lab/lab` by hand and by the integration tests.  The lab is a
test harness, so it drives `ip`, `tcpdump` and `dnsmasq` as commands; the
daemons it starts program the kernel themselves through pyroute2.
"""

from .lab import Lab, LabError

__all__ = ["Lab", "LabError"]
