"""What the running kernel offers, found by trying rather than assuming."""

from __future__ import annotations

import os

from pyroute2 import NetlinkError

from .. import BACKENDS
from .netlink import Netlink


async def kernel_tunnels(nl: Netlink) -> tuple[bool, str]:
    """Can we create ipip and gre links here?  (ok, reason)"""
    for kind, prefix in (("ipip", "ipip"), ("gre", "gre")):
        name = f"mipprobe{os.getpid() % 100000}"
        try:
            await nl.ipr.link("add", ifname=name, kind=kind, **{
                f"{prefix}_local": "127.0.0.1", f"{prefix}_remote": "127.0.0.2"})
        except NetlinkError as exc:
            return False, f"{kind} links unavailable ({os.strerror(exc.code)})"
        await nl.link_del(name)
    return True, "ipip and gre links available"


async def choose_backend(nl: Netlink, wanted: str) -> tuple[str, str]:
    """Resolve "auto" | "kernel" | "userspace" | "fake" to a backend name, with the reason;
    any other name is refused (ValueError), never taken for "auto".  Only "auto" and
    "kernel" probe the kernel ("fake" must not change it, not even for a moment)."""
    if wanted not in BACKENDS:
        raise ValueError(f"unknown dataplane backend {wanted!r} (one of {', '.join(BACKENDS)})")
    if wanted == "fake":
        return "fake", "configured: no kernel changes"
    if wanted == "userspace":
        return "userspace", "configured"
    ok, why = await kernel_tunnels(nl)
    if wanted == "kernel":
        if not ok:
            raise RuntimeError(f"dataplane backend \"kernel\" configured but {why}")
        return "kernel", why
    return ("kernel", why) if ok else ("userspace", f"{why}; using TUN + raw sockets")
