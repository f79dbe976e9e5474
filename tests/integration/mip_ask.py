#!/usr/bin/env python3
"""Registers once per line read from stdin and prints the reply code (JSON, one line
each): a sender that is already running, imports done, when a test needs an answer at a
given moment.  ``mip_ask.py HA HOME COA KEY FLAGS``; null when no reply came in 10 s."""

import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mipro import wire as w  # noqa: E402
from mipro.security import SecurityAssociation, append_authenticator  # noqa: E402
from mipro.security.replay import timestamp_identification  # noqa: E402


def main() -> None:
    ha, home, coa, key, flags = sys.argv[1:6]
    sa = SecurityAssociation(256, bytes.fromhex(key))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        for _ in sys.stdin:
            req = w.RegistrationRequest.build(
                flags=w.RequestFlags(int(flags)), lifetime=300, home_address=home,
                home_agent=ha, care_of_address=coa,
                identification=timestamp_identification(time.time()))
            sock.sendto(append_authenticator(req.encode(), w.ExtType.MN_HA_AUTH, sa), (ha, 434))
            try:
                code = w.RegistrationReply.decode(sock.recv(4096)).code
            except TimeoutError:
                code = None
            print(json.dumps({"code": code}), flush=True)


if __name__ == "__main__":
    main()
