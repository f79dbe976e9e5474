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
    dec.add_argument("--vendor-id", type=int, default=DEFAULT_VENDOR_ID,
                     help=f"Vendor/Org-ID of mipro's NVSEs (default {DEFAULT_VENDOR_ID})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "decode":
        from .tools import decode

        if bool(args.hex) == bool(args.pcap):
            print("mipro decode: give either HEX or --pcap FILE", file=sys.stderr)
            return 2
        return decode.run(args.hex, args.pcap, args.json, args.vendor_id)
    return 2


if __name__ == "__main__":
    sys.exit(main())
