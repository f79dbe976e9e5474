"""`mipro decode`: print every message and extension field by field."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ..wire import DecodeContext, DecodeError, decode_icmp, decode_udp434
from ..wire.sync import SyncMessage


class Describable(Protocol):
    def describe(self) -> dict[str, object]: ...

MIP_PORT = 434


def decode_hex(text: str, ctx: DecodeContext, redundancy: bool = False) -> dict[str, Any]:
    """Decode one message given as hex; UDP 434 payloads and ICMP 9/10 are told apart by
    type; ``redundancy``: a home agent redundancy message (seed Fig. 13b)."""
    data = bytes.fromhex("".join(text.split()).removeprefix("0x"))
    if redundancy:
        return SyncMessage.decode(data).describe()
    if data and data[0] in (9, 10):
        return decode_icmp(data).describe()
    return decode_udp434(data, ctx).describe()


def pcap_messages(path: str, ctx: DecodeContext) -> Iterator[dict[str, Any]]:
    """Every UDP 434 datagram and ICMP router advertisement/solicitation in a pcap."""
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.utils import PcapReader

    with PcapReader(path) as reader:
        for number, pkt in enumerate(reader, start=1):
            if IP not in pkt:
                continue
            ip = pkt[IP]
            where = {"frame": number, "src": ip.src, "dst": ip.dst}
            decoder: Callable[[bytes], Describable]
            if UDP in pkt and MIP_PORT in (pkt[UDP].sport, pkt[UDP].dport):
                payload = bytes(pkt[UDP].payload)
                where |= {"sport": pkt[UDP].sport, "dport": pkt[UDP].dport}
                decoder = functools.partial(decode_udp434, ctx=ctx)
            elif ICMP in pkt and pkt[ICMP].type in (9, 10):
                payload = bytes(pkt[ICMP])
                decoder = decode_icmp
            else:
                continue
            try:
                yield where | decoder(payload).describe()
            except DecodeError as exc:
                yield where | {"error": str(exc), "offset": exc.offset}


def _print_text(obj: Any, indent: int = 0) -> None:
    pad = "  " * indent
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, list) and value and not any(
                isinstance(v, dict | list) for v in value
            ):
                print(f"{pad}{key}: {', '.join(str(v) for v in value)}")
            elif isinstance(value, dict | list) and value:
                print(f"{pad}{key}:")
                _print_text(value, indent + 1)
            else:
                print(f"{pad}{key}: {value if value != [] else '-'}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict):
                first, *rest = item.items()
                print(f"{pad}- {first[0]}: {first[1]}")
                _print_text(dict(rest), indent + 1)
            else:
                print(f"{pad}- {item}")


def run(hex_text: str | None, pcap: str | None, as_json: bool, vendor_id: int,
        redundancy: bool = False) -> int:
    ctx = DecodeContext(vendor_id=vendor_id)
    try:
        results = list(pcap_messages(pcap, ctx)) if pcap else \
            [decode_hex(hex_text or "", ctx, redundancy)]
    except DecodeError as exc:
        print(f"mipro decode: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"mipro decode: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(results if pcap else results[0], indent=2))
    else:
        for i, msg in enumerate(results):
            if i:
                print()
            _print_text(msg)
    return 1 if any("error" in m for m in results) else 0
