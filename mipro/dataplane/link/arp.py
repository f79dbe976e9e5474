"""Gratuitous ARP, so neighbours learn who now answers for an address."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def gratuitous_arp_frame(mac: bytes, address: IPv4Address) -> bytes:
    """An ARP request with sender and target protocol address both ``address``."""
    ip = address.packed
    arp = (b"\x00\x01\x08\x00\x06\x04\x00\x01" + mac + ip + b"\x00" * 6 + ip)
    return BROADCAST + mac + ETH_P_ARP.to_bytes(2, "big") + arp


def send_gratuitous_arp(ifname: str, mac: bytes, address: IPv4Address, count: int = 2) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.bind((ifname, 0))
        frame = gratuitous_arp_frame(mac, address)
        for _ in range(count):
            sock.send(frame)


class ArpSender:
    """One packet socket on a link, kept open: an HA announces every new binding.

    It only sends, so it is opened for protocol 0, which receives nothing (the kernel
    takes the frame's type from its Ethernet header): bound to ARP it would be handed a
    copy of every ARP frame on the link, never read (a backup home agent's got its
    primary's two gratuitous ARPs per new binding)."""

    def __init__(self, ifname: str, mac: bytes) -> None:
        self.mac = mac
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.sock.setblocking(False)
        self.sock.bind((ifname, 0))

    def announce(self, address: IPv4Address, count: int = 2) -> None:
        frame = gratuitous_arp_frame(self.mac, address)
        for _ in range(count):
            try:
                self.sock.send(frame)
            except BlockingIOError:
                break

    def close(self) -> None:
        self.sock.close()
