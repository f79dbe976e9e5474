"""Mechanism: link-layer I/O (packet sockets, gratuitous ARP, carrier changes)."""
