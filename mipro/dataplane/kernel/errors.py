"""What a kernel call may raise, for the daemons that catch it: the runtime names these
instead of importing pyroute2 and python-iptables itself."""

import iptc
from pyroute2 import NetlinkError

NETLINK_ERRORS: tuple[type[Exception], ...] = (OSError, NetlinkError)
KERNEL_ERRORS: tuple[type[Exception], ...] = (*NETLINK_ERRORS, iptc.IPTCError)
