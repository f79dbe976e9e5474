"""nftables through libnftables (Debian's libnftables1) with ctypes: a script in nft's
syntax is one atomic transaction, output can be JSON; mipro never runs ``nft``.

Used for what iptables cannot do: the foreign agent's per-MAC meter at the netdev
ingress hook of its link (floodlimit.py ``LinkLimiter``), which runs before the packet
socket that reads registration requests.
"""

from __future__ import annotations

import ctypes
import ctypes.util


class NftError(RuntimeError):
    pass


class Nft:
    """libnftables through ctypes: commands in nft's syntax, output as JSON."""

    JSON = 1 << 4  # NFT_CTX_OUTPUT_JSON

    def __init__(self) -> None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            raise NftError(f"libnftables is not installed ({exc})") from exc
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        for f in (lib.nft_ctx_get_output_buffer, lib.nft_ctx_get_error_buffer):
            f.argtypes = [ctypes.c_void_p]
            f.restype = ctypes.c_char_p
        self.lib = lib
        self.ctx = lib.nft_ctx_new(0)
        if not self.ctx:
            raise NftError("nft_ctx_new failed")
        lib.nft_ctx_buffer_output(self.ctx)
        lib.nft_ctx_buffer_error(self.ctx)

    def run(self, commands: str, json_output: bool = False) -> str:
        """Run a script as one transaction; its output; NftError with nft's message."""
        self.lib.nft_ctx_output_set_flags(self.ctx, self.JSON if json_output else 0)
        rc = self.lib.nft_run_cmd_from_buffer(self.ctx, commands.encode())
        out = (self.lib.nft_ctx_get_output_buffer(self.ctx) or b"").decode()
        err = (self.lib.nft_ctx_get_error_buffer(self.ctx) or b"").decode()
        if rc:
            raise NftError(err.strip() or f"nft failed ({rc})")
        return out

    def close(self) -> None:
        if self.ctx:
            self.lib.nft_ctx_free(self.ctx)
            self.ctx = None


def nft_available(probe: str = "mipro-limit-probe") -> str | None:
    """None if libnftables and the kernel's netdev family are here, else why not."""
    try:
        nft = Nft()
    except NftError as exc:
        return str(exc)
    try:
        nft.run(f"add table netdev {probe}\ndelete table netdev {probe}")
        return None
    except NftError as exc:
        return f"no nftables netdev family: {exc}"
    finally:
        nft.close()
