"""Carrier changes of one interface, from rtnetlink link notifications."""

from __future__ import annotations

import socket
import struct

RTMGRP_LINK = 0x1
RTM_NEWLINK = 16
IFF_LOWER_UP = 0x10000


class LinkWatch:
    def __init__(self, ifname: str) -> None:
        self.index = socket.if_nametoindex(ifname)
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, 0)
        self.sock.bind((0, RTMGRP_LINK))
        try:
            with open(f"/sys/class/net/{ifname}/carrier") as fh:
                self.up = fh.read().strip() == "1"
        except OSError:  # a down interface has no readable carrier
            self.up = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def changes(self) -> list[bool]:
        """Carrier transitions since the last call (True = came up)."""
        out: list[bool] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return out
            offset = 0
            while offset + 32 <= len(data):
                length, msg_type = struct.unpack_from("=IH", data, offset)
                if length < 16:
                    break
                if msg_type == RTM_NEWLINK:
                    _, _, _, index, flags, _ = struct.unpack_from("=BBHiII", data, offset + 16)
                    if index == self.index:
                        up = bool(flags & IFF_LOWER_UP)
                        if up != self.up:
                            self.up = up
                            out.append(up)
                offset += (length + 3) & ~3

    def close(self) -> None:
        self.sock.close()
