"""Mechanism: userspace IP-in-IP, GRE and RFC 3519 UDP tunnels (TUN + raw sockets)."""
