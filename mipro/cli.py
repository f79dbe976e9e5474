"""The one `mipro` command: daemons, decoding, configuration checks, status."""

from __future__ import annotations

import argparse
import sys

from .wire import DEFAULT_VENDOR_ID


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mipro", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    dec = sub.add_parser("decode", help="decode Mobile IP messages from hex or a pcap")
    dec.add_argument("hex", nargs="?", help="one message as hex (UDP 434 payload or ICMP)")
    dec.add_argument("--pcap", help="decode every UDP 434 / ICMP 9,10 packet in this file")
    dec.add_argument("--json", action="store_true", help="print JSON")
    dec.add_argument("--redundancy", action="store_true",
                     help="HEX is a home agent redundancy message (seed Fig. 13b)")
    dec.add_argument("--vendor-id", type=int, default=DEFAULT_VENDOR_ID,
                     help=f"Vendor/Org-ID of mipro's NVSEs (default {DEFAULT_VENDOR_ID})")

    for role, text in (("ha", "run the home agent daemon"), ("fa", "run the foreign agent daemon"),
                       ("mn", "run the mobile node daemon")):
        d = sub.add_parser(role, help=text)
        d.add_argument("--config", "-c", required=True, help="TOML configuration file")
        if role == "ha":
            d.add_argument("--cleanup", action="store_true",
                           help="remove the kernel state a killed home agent left, and exit "
                                "(systemd's ExecStopPost)")

    chk = sub.add_parser("check-config", help="validate a configuration file and exit")
    chk.add_argument("config")

    st = sub.add_parser("status", help="show a running daemon's state")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.add_argument("--socket", "-s", help="control socket (default: the role's)")
    st.add_argument("--role", choices=("ha", "fa", "mn"), default=None,
                    help="which daemon's default socket to ask")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "decode":
        from .tools import decode

        if bool(args.hex) == bool(args.pcap):
            print("mipro decode: give either HEX or --pcap FILE", file=sys.stderr)
            return 2
        return decode.run(args.hex, args.pcap, args.json, args.vendor_id, args.redundancy)
    if args.command == "ha":
        from .runtime.ha_daemon import cleanup_main
        from .runtime.ha_daemon import main as ha_main

        return cleanup_main(args.config) if args.cleanup else ha_main(args.config)
    if args.command == "fa":
        from .runtime.fa_daemon import main as fa_main

        return fa_main(args.config)
    if args.command == "mn":
        from .runtime.mn_daemon import main as mn_main

        return mn_main(args.config)
    if args.command == "check-config":
        from .tools.check_config import run

        return run(args.config)
    if args.command == "status":
        from .tools.status import run as status

        return status(args.socket, args.role, args.json)
    return 2


if __name__ == "__main__":
    sys.exit(main())
