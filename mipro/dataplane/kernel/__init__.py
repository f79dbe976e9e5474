"""Mechanism: the kernel's own interfaces (netlink, netfilter), for every role."""
