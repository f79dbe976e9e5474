"""Run a command under the seccomp filter a unit's SystemCallFilter=, SystemCallErrorNumber=
and RestrictAddressFamilies= describe, as systemd would install it (libseccomp, through
ctypes): only the allowed system calls, the others fail with the unit's errno; socket()
only for the allowed address families, others fail with EAFNOSUPPORT.

    unit_seccomp.py FILTER.json -- COMMAND ARGS...

FILTER.json: {"allow": [syscall names], "errno": N, "families": [AF numbers]}.  Needs
no_new_privs (setpriv --no-new-privs, as NoNewPrivileges=yes), like any unprivileged
seccomp filter.
"""

import ctypes
import ctypes.util
import errno
import json
import os
import sys

ALLOW = 0x7FFF0000
CMP_EQ = 4
AF_LIMIT = 64  # above every address family the kernel knows (AF_MAX is 46)


def ERRNO(n: int) -> int:  # noqa: N802 - libseccomp's SCMP_ACT_ERRNO
    return 0x00050000 | (n & 0xFFFF)


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def install(allow: list[str], deny_errno: int, families: list[int]) -> None:
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(ERRNO(deny_errno))
    if not ctx:
        raise OSError("seccomp_init failed")

    def rule(action: int, number: int, *cmp: ArgCmp) -> None:
        array = (ArgCmp * len(cmp))(*cmp) if cmp else None
        rc = lib.seccomp_rule_add_array(ctx, action, number, len(cmp), array)
        if rc < 0 and rc != -errno.EEXIST:
            raise OSError(-rc, f"seccomp_rule_add({number}): {os.strerror(-rc)}")

    socket_nr = lib.seccomp_syscall_resolve_name(b"socket")
    for name in sorted(set(allow) - {"socket"}):
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number >= 0:  # names of other architectures (e.g. *32) do not resolve here
            rule(ALLOW, number)
    if "socket" in allow:
        for family in range(AF_LIMIT):
            action = ALLOW if family in families else ERRNO(errno.EAFNOSUPPORT)
            rule(action, socket_nr, ArgCmp(0, CMP_EQ, family, 0))
    rc = lib.seccomp_load(ctx)
    if rc < 0:
        raise OSError(-rc, f"seccomp_load: {os.strerror(-rc)}")


def main() -> None:
    path, sep, *command = sys.argv[1:]
    assert sep == "--" and command, __doc__
    with open(path) as fh:
        spec = json.load(fh)
    install(spec["allow"], spec["errno"], spec["families"])
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
