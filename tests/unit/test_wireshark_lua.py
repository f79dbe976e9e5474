"""contrib/wireshark/mipro.lua: tshark with the plugin shows every field of mipro's vendor
extensions, type-255 messages and HA redundancy session as the codec encoded them.

The capture is the cross-check's (one frame per message and extension, the Fig. 3b
handover with the type-255 messages) plus one registration request carrying every mipro
vendor extension at once.  For each frame, the fields the plugin adds (`mipro.*`, in the
order tshark shows them) are compared with what the Python codec decodes from the same bytes;
the built-in dissector's fields must be the same with and without the plugin; and nothing is
malformed or flagged by the expert system.  The redundancy session is a TCP connection
whose bytes core/replication.Session writes (tests at the end).  docs/wireshark.md says how
to install the plugin.
"""

import json
import os
import shutil
import subprocess
from ipaddress import IPv4Address as A
from ipaddress import IPv4Network as N
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import Raw
from scapy.utils import wrpcap

from mipro import wire as w
from mipro.core.replication import Session
from mipro.security import Algorithm, SecurityAssociation, append_authenticator
from mipro.wire.sync import BLOCK_FIXED, BindingBlock, SyncMessage, SyncType

from . import golden
from .test_wireshark_crosscheck import assert_ntp, ether
from .test_wireshark_crosscheck import frames as crosscheck_frames

PLUGIN = Path(__file__).resolve().parents[2] / "contrib" / "wireshark" / "mipro.lua"
OTHER_VENDOR = 4242
MN_HA = SecurityAssociation(256, b"mn-ha secret key")
MN_FA_SHA = SecurityAssociation(402, b"mn-fa1 secret", Algorithm.HMAC_SHA256)


def _tshark_has_lua() -> bool:
    if shutil.which("tshark") is None:
        return False
    out = subprocess.run(["tshark", "-G", "protocols", "-X", f"lua_script:{PLUGIN}"],
                         capture_output=True, text=True, env=_env()).stdout
    return any(line.split("\t")[2:3] == ["mipro"] for line in out.splitlines())


def _env(home: Path = Path("/nonexistent/mipro-tshark-home")) -> dict[str, str]:
    """No personal preferences or plugin folder (a mipro.lua installed there would load
    twice): only the plugin given with -X counts."""
    return {**os.environ, "HOME": str(home), "WIRESHARK_CONFIG_DIR": str(home / "config")}


pytestmark = pytest.mark.skipif(not _tshark_has_lua(),
                                reason="tshark not installed, or built without Lua")


# --------------------------------------------------------------------------- the capture


def every_extension():
    """One registration request with every mipro vendor extension, several entries each."""
    routes = w.StaticRoutesExtension((
        w.StaticRoute(N("10.1.0.0/16"), A("192.0.2.1"), 10, True),
        w.StaticRoute(N("192.168.50.0/24"), A("198.51.100.254"), 20),
        w.StaticRoute(N("0.0.0.0/0"), A("0.0.0.0"), 65535),
    ))
    rules = w.FilterRulesExtension((
        golden.EXTENSIONS["filter-rules"][1].entries[0],
        w.FilterRule(destination=N("192.0.2.53/32"), protocol=17, log=True, dport=(53, 53)),
        w.FilterRule(source=N("10.1.0.0/16"), protocol=6, nat=True, log=True,
                     sport=(1024, 65535), nat_address=A("198.51.100.7")),
        w.FilterRule(source=N("10.1.2.0/24"), destination=N("203.0.113.0/24"), protocol=132,
                     verdict=w.Verdict.DENY, nat=True, both_directions=True),
    ))
    der = bytes(range(256)) + bytes(range(44))  # 300 bytes: two fragments
    certificate = w.CertificateExtension.fragments(der)
    previous = w.PreviousFaNotification(A("198.51.100.1"), 30, 402, bytes(range(100, 132)))
    in_use = w.HomeAddressInUse(A("10.1.0.100"), A("172.16.5.1"))
    extensions = [routes, rules, *certificate, previous, in_use]
    rrq = w.RegistrationRequest.build(
        flags=w.RequestFlags.T, lifetime=600, home_address="10.1.0.100", home_agent="10.1.0.1",
        care_of_address="192.0.2.129", identification=(3_800_000_200 << 32) | 9,
        extensions=extensions)
    payload = append_authenticator(rrq.encode(), w.ExtType.MN_HA_AUTH, MN_HA)
    decoded = w.decode_udp434(payload)
    assert list(decoded.extensions[:-1]) == extensions  # the codec reads back what it wrote
    return payload


def signed_notification() -> bytes:
    """A notification with a 32-byte (HMAC-SHA-256) MN-FA authenticator."""
    bu = w.BindingUpdate.build(home_address="10.1.0.100", care_of_address="192.0.2.129",
                               identification=(3_800_000_300 << 32) | 3, lifetime=5)
    return append_authenticator(bu.encode(), w.ExtType.MN_FA_AUTH, MN_FA_SHA)


def udp(payload: bytes, src: str = "192.0.2.129", dst: str = "198.51.100.1"):
    return ether() / IP(src=src, dst=dst) / UDP(sport=434, dport=434) / Raw(payload)


def capture():
    """(name, frame) for every frame: the cross-check's, then the new ones."""
    for name, frame, _ in crosscheck_frames():
        yield name, frame
    yield "every-extension", udp(every_extension(), "10.1.0.100", "192.0.2.129")
    yield "notification-sha256", udp(signed_notification())
    # not something mipro sends: an NVSE in a type-255 message, for the plugin's own walk
    # of the extensions after the fixed part, which hands NVSEs to the mip.nvse_ext table
    ack = w.BindingAck(0, A("10.1.0.100"), (3_800_000_300 << 32) | 3, extensions=(
        w.HomeAddressInUse(A("10.1.0.100"), A("172.16.5.1")),))
    yield "ack-with-nvse", udp(append_authenticator(ack.encode(), w.ExtType.MN_FA_AUTH,
                                                    MN_FA_SHA))
    # NAI, MN-HA authenticator, a routes NVSE, MN-FA authenticator: an NVSE between the two
    yield "nvse-between-auths", udp(golden.RRQ[0] + golden.EXTENSIONS["static-routes"][0]
                                    + golden.EXTENSIONS["mn-fa-auth"][0])


NAMES = [name for name, _ in capture()]


# --------------------------------------------------------------------------- tshark


class Obj(list):
    """A JSON object as its (key, value) pairs: tshark repeats keys (one per extension)."""


def leaves(node):
    """The (field, value) pairs of a tshark JSON tree, in the order shown."""
    if isinstance(node, Obj):
        for key, value in node:
            if isinstance(value, Obj | list):
                yield from leaves(value)
            else:
                yield key, value
    elif isinstance(node, list):
        for item in node:
            yield from leaves(item)


def tshark(pcap: Path, *args: str, plugin: bool = True) -> str:
    cmd = ["tshark", *(["-X", f"lua_script:{PLUGIN}"] if plugin else []), "-r", str(pcap), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    assert done.returncode == 0, done.stderr
    assert "Lua" not in done.stderr and "rror" not in done.stderr, done.stderr  # script errors
    return done.stdout


def frames_json(pcap: Path, *args: str, plugin: bool = True) -> list[list[tuple[str, str]]]:
    packets = json.loads(tshark(pcap, "-T", "json", *args, plugin=plugin),
                         object_pairs_hook=Obj)
    return [list(leaves(dict(p)["_source"])) for p in packets]


def write(tmp_path: Path, name: str, frames) -> Path:
    pcap = tmp_path / f"{name}.pcap"
    wrpcap(str(pcap), list(frames))
    return pcap


@pytest.fixture(scope="module")
def pcap(tmp_path_factory):
    return write(tmp_path_factory.mktemp("lua"), "all", [f for _, f in capture()])


@pytest.fixture(scope="module")
def shown(pcap):
    """name -> (fields with the plugin, fields without it, the UDP payload)."""
    with_plugin, without = frames_json(pcap), frames_json(pcap, plugin=False)
    built = list(capture())
    assert len(with_plugin) == len(without) == len(built)
    return {name: (a, b, bytes(frame[UDP].payload) if UDP in frame else None)
            for (name, frame), a, b in zip(built, with_plugin, without, strict=True)}


# --------------------------------------------------------------------------- what the codec says


def hexbytes(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)


def flag(value: object) -> str:
    return "1" if value else "0"


def route_fields(r: w.StaticRoute):
    tunnel = w.StaticRoute.TUNNEL if r.via_tunnel else 0
    return [("mipro.route.destination", str(r.destination.network_address)),
            ("mipro.route.prefix_len", str(r.destination.prefixlen)),
            ("mipro.route.flags", f"0x{tunnel:02x}"),
            ("mipro.route.flags.tunnel", flag(r.via_tunnel)),
            ("mipro.route.flags.reserved", "0x00"),
            ("mipro.route.cost", str(r.cost)),
            ("mipro.route.router", str(r.router))]


def rule_fields(f: w.FilterRule):
    return [("mipro.filter.source", str(f.source.network_address)),
            ("mipro.filter.source_prefix_len", str(f.source.prefixlen)),
            ("mipro.filter.destination_prefix_len", str(f.destination.prefixlen)),
            ("mipro.filter.protocol", str(f.protocol)),
            ("mipro.filter.action", f"0x{f.action_byte():02x}"),
            ("mipro.filter.action.verdict", str(int(f.verdict))),
            ("mipro.filter.action.log", flag(f.log)),
            ("mipro.filter.action.nat", flag(f.nat)),
            ("mipro.filter.action.both", flag(f.both_directions)),
            ("mipro.filter.action.reserved", "0"),
            ("mipro.filter.destination", str(f.destination.network_address)),
            ("mipro.filter.sport_low", str(f.sport[0])),
            ("mipro.filter.sport_high", str(f.sport[1])),
            ("mipro.filter.dport_low", str(f.dport[0])),
            ("mipro.filter.dport_high", str(f.dport[1])),
            ("mipro.filter.nat_address", str(f.nat_address))]


def nvse_fields(ext: w.Extension):
    """What the plugin shows for one of mipro's NVSEs, from the decoded object."""
    out = [("mipro.vendor_type", str(ext.VENDOR_TYPE))]
    if isinstance(ext, w.StaticRoutesExtension):
        out.append(("mipro.entries", str(len(ext.entries))))
        out += [kv for r in ext.entries for kv in route_fields(r)]
    elif isinstance(ext, w.FilterRulesExtension):
        out.append(("mipro.entries", str(len(ext.entries))))
        out += [kv for f in ext.entries for kv in rule_fields(f)]
    elif isinstance(ext, w.CertificateExtension):
        out += [("mipro.cert.index", str(ext.index)), ("mipro.cert.count", str(ext.count)),
                ("mipro.cert.der", hexbytes(ext.der))]
    elif isinstance(ext, w.PreviousFaNotification):
        out += [("mipro.prevfa.address", str(ext.previous_fa)),
                ("mipro.prevfa.cache_lifetime", str(ext.cache_lifetime)),
                ("mipro.prevfa.reserved", "0x0000"),
                ("mipro.prevfa.spi", str(ext.spi)),
                ("mipro.prevfa.authenticator", hexbytes(ext.authenticator))]
    elif isinstance(ext, w.HomeAddressInUse):
        out += [("mipro.hoa_in_use.home_address", str(ext.home_address)),
                ("mipro.hoa_in_use.temporary_address", str(ext.temporary_address))]
    else:
        raise AssertionError(f"no expectation for {ext!r}")
    return out


MIPRO_NVSES = (w.StaticRoutesExtension, w.FilterRulesExtension, w.CertificateExtension,
               w.PreviousFaNotification, w.HomeAddressInUse)


def message_fields(m: w.BindingUpdate | w.BindingAck):
    bu = isinstance(m, w.BindingUpdate)
    out = [("mipro.msg.type", "255"), ("mipro.msg.length", str(m.LENGTH)),
           ("mipro.msg.subtype", str(int(m.SUBTYPE)))]
    if isinstance(m, w.BindingUpdate):
        out += [("mipro.msg.flags", f"0x{int(m.flags):02x}"),
                ("mipro.msg.flags.a", flag(m.flags & w.BindingFlags.A)),
                ("mipro.msg.flags.reserved", "0x00")]
    else:
        out.append(("mipro.msg.status", str(m.status)))
    out += [("mipro.msg.vendor_id", str(m.vendor_id)),
            ("mipro.msg.home_address", str(m.home_address))]
    if isinstance(m, w.BindingUpdate):
        out.append(("mipro.msg.care_of_address", str(m.care_of_address)))
    out += [("mipro.msg.identification", f"0x{m.identification:016x}"),
            ("mipro.msg.identification.time", "NTP")]
    if bu:
        out += [("mipro.msg.lifetime", str(m.lifetime)), ("mipro.msg.reserved", "0x0000")]
    for e in m.extensions:
        if isinstance(e, w.MnFaAuth):
            out += [("mipro.msg.ext.type", str(e.TYPE)),
                    ("mipro.msg.ext.length", str(4 + len(e.authenticator))),
                    ("mipro.msg.ext.spi", str(e.spi)),
                    ("mipro.msg.ext.authenticator", hexbytes(e.authenticator))]
        else:
            assert isinstance(e, MIPRO_NVSES)
            out += [("mipro.msg.ext.type", str(e.TYPE)),
                    ("mipro.msg.ext.length", str(len(e.encode()) - 2)),
                    ("mipro.msg.ext.reserved", "0x0000"),
                    ("mipro.msg.ext.vendor_id", str(e.vendor_id)), *nvse_fields(e)]
    return out


def expected(payload: bytes | None, vendor_id: int = w.DEFAULT_VENDOR_ID):
    """The mipro.* fields, in order, for a UDP payload, from the codec's decoding of it."""
    if payload is None:
        return []
    msg = w.decode_udp434(payload, w.DecodeContext(vendor_id))
    if isinstance(msg, w.BindingUpdate | w.BindingAck):
        return message_fields(msg)
    return [kv for e in getattr(msg, "extensions", ()) if isinstance(e, MIPRO_NVSES)
            for kv in nvse_fields(e)]


def mipro_fields(fields, prefix: str = "mipro."):
    """The plugin's fields; each identification's NTP-time rendering is checked against the
    number shown just before it, and masked."""
    out, ident = [], None
    for key, value in fields:
        if key.endswith(".identification"):
            ident = int(value, 16)
        if key.endswith(".identification.time"):
            assert_ntp(value, ident)
            value = "NTP"
        if key.startswith(prefix):
            out.append((key, value))
    return out


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("name", NAMES)
def test_every_mipro_field_is_what_was_encoded(shown, name):
    fields, _, payload = shown[name]
    assert mipro_fields(fields) == expected(payload)


def test_the_capture_has_every_mipro_extension_and_message(shown):
    vendor_types = [v for name in NAMES for k, v in shown[name][0] if k == "mipro.vendor_type"]
    assert set(vendor_types) == {"1", "2", "3", "4", "5"}
    fields = dict(shown["every-extension"][0])
    assert [v for k, v in shown["every-extension"][0] if k == "mipro.vendor_type"] == \
        ["1", "2", "3", "3", "4", "5"]
    assert fields["mip.ext.type"]  # the built-in dissector walked it too
    subtypes = [v for name in NAMES for k, v in shown[name][0] if k == "mipro.msg.subtype"]
    assert set(subtypes) == {"1", "2"}


@pytest.mark.parametrize("name", NAMES)
def test_the_built_in_dissector_shows_the_same_with_the_plugin(shown, name):
    """Every other message still reaches the Mobile IP dissector, which shows what it
    showed without the plugin (the plugin adds its own fields, and a layer "mipro.msg" in
    frame.protocols before "mip")."""
    with_plugin, without, payload = shown[name]

    def theirs(fields):
        return [(k, v) for k, v in fields if not k.startswith(("mipro", "_ws.lua"))
                and k != "frame.protocols"]

    def not_for_mipro(fields):
        """Without the plugin: less the Vendor Type and Value of mipro's NVSEs, which the
        plugin shows in its place."""
        out, vendor = [], None
        for k, v in fields:
            if k == "mip.ext.nvse.vendor_id":
                vendor = v
            elif k.startswith("mip.ext.nvse.vendor_") and vendor == str(w.DEFAULT_VENDOR_ID):
                continue
            out.append((k, v))
        return out
    assert [k for k, _ in without if k.startswith("mipro")] == []
    if payload is not None and payload[0] == 255:
        assert not [k for k, _ in with_plugin if k.startswith("mip.")]
        assert theirs(with_plugin) == theirs(without)
    else:
        assert theirs(with_plugin) == not_for_mipro(theirs(without))


@pytest.mark.parametrize("plugin", [True, False], ids=["with-plugin", "without"])
def test_no_malformed_frame_no_expert_info(pcap, plugin):
    out = tshark(pcap, "-T", "fields", "-e", "_ws.malformed", "-e", "_ws.expert",
                 plugin=plugin)
    assert set(out.splitlines()) == {"\t"}
    expert = tshark(pcap, "-q", "-z", "expert", plugin=plugin)
    for level in ("Errors", "Warnings", "Notes", "Chats"):
        assert level not in expert, expert


def test_the_protocol_column(pcap):
    lines = tshark(pcap, "-T", "fields", "-e", "_ws.col.Protocol", "-e",
                   "_ws.col.Info").splitlines()
    columns = dict(zip(NAMES, lines, strict=True))
    assert columns["handover-notification"] == \
        "mipro\tPrevious-FA notification: HoA=10.1.0.100 CoA=192.0.2.129 A"
    assert columns["home-ack"] == "mipro\tPrevious-FA acknowledgement: HoA=10.1.0.100 " \
        "Status=127 (No visitor with that home address)"
    assert columns["every-extension"] == (
        "MobileIP\tReg Request: HoA=10.1.0.100 HA=10.1.0.1 CoA=192.0.2.129, mipro routes, "
        "mipro filters, mipro certificate, mipro certificate, mipro previous FA, "
        "mipro home address in use")
    assert columns["ack-with-nvse"] == "mipro\tPrevious-FA acknowledgement: HoA=10.1.0.100 " \
        "Status=0 (Accepted), mipro home address in use"
    assert columns["reply"].startswith("MobileIP\tReg Reply")


def test_the_verbose_tree_reads_as_the_layouts(pcap):
    """-V: what an operator reads (docs/wireshark.md shows it)."""
    out = tshark(pcap, "-V", "-Y", "mipro || mipro.msg")
    for line in [
        "mipro Static routes: 3 routes",
        "Route 1: 10.1.0.0/16 via 192.0.2.1 (tunnel), cost 10",
        "Route 2: 192.168.50.0/24 via 198.51.100.254 (local), cost 20",
        "Route 3: 0.0.0.0/0 directly connected (local), cost 65535",
        "1... .... = Tunnel (T): via the Mobile IP tunnel (router is the home agent)",
        "Rule 1: deny tcp 10.0.0.1/32 -> 203.0.113.5/32 sport any dport 5060-5061 "
        "both directions",
        "Rule 2: accept udp 0.0.0.0/0 -> 192.0.2.53/32 sport any dport 53 log",
        "Rule 3: accept tcp 10.1.0.0/16 -> 0.0.0.0/0 sport 1024-65535 dport any log "
        "NAT to 198.51.100.7",
        "Rule 4: deny sctp 10.1.2.0/24 -> 203.0.113.0/24 sport any dport any both directions "
        "NAT to the agent's own address",
        ".... 0001 = Verdict: deny (1)",
        "mipro X.509 certificate fragment: fragment 1 of 2, 55 bytes",
        "mipro Previous-FA notification: previous FA 198.51.100.1",
        "SPI: 402 (0x00000192)",
        "mipro Home address in use: 10.1.0.100 in use, via 172.16.5.1",
        "mipro Previous-FA notification",
        "Sub-Type: Previous-FA acknowledgement (2)",
        "Status: Identification mismatch (69)",
        "Extension: Mobile-Foreign Authentication, SPI 402",
        "mipro Home address in use: 10.1.0.100 in use, via 172.16.5.1",
        "1... .... = Acknowledgement requested (A): True",
        "Extension: Mobile-Foreign Authentication, SPI 257",
    ]:
        assert line in out, line


IDENT = (3_800_000_400 << 32) | 1


def _other_vendor_capture(tmp_path):
    v = OTHER_VENDOR
    nvses = [w.StaticRoutesExtension((w.StaticRoute(N("10.9.0.0/16"), A("192.0.2.1"), 3, True),),
                                     vendor_id=v),
             w.FilterRulesExtension((w.FilterRule(protocol=1, verdict=w.Verdict.DENY),),
                                    vendor_id=v),
             w.CertificateExtension(0, 1, b"\x30\x03\x02\x01\x00", vendor_id=v),
             w.PreviousFaNotification(A("198.51.100.1"), 0, 257, golden.AUTH16, vendor_id=v),
             w.HomeAddressInUse(A("10.1.0.100"), A("172.16.5.1"), vendor_id=v)]
    rrq = w.RegistrationRequest.build(
        flags=0, lifetime=60, home_address="10.9.0.5", home_agent="192.0.2.1",
        care_of_address="198.51.100.2", identification=IDENT, extensions=nvses)
    bu = w.BindingUpdate.build(home_address="10.9.0.5", care_of_address="192.0.2.129",
                               identification=IDENT, vendor_id=v,
                               extensions=[golden.EXTENSIONS["mn-fa-auth"][1]])
    payloads = [append_authenticator(rrq.encode(), w.ExtType.MN_HA_AUTH, MN_HA), bu.encode(),
                w.BindingAck.answering(bu, w.BindingStatus.ACCEPTED).encode(),
                golden.RRQ_FIXED + golden.EXTENSIONS["static-routes"][0]]
    return payloads, write(tmp_path, "vendor", [udp(p) for p in payloads])


def test_the_vendor_id_preference(tmp_path):
    payloads, pcap = _other_vendor_capture(tmp_path)
    mine, default = payloads[:3], payloads[3]
    shown = frames_json(pcap, "-o", f"mipro.vendor_id:{OTHER_VENDOR}")
    for payload, fields in zip(mine, shown, strict=False):
        assert mipro_fields(fields) == expected(payload, OTHER_VENDOR)
        assert expected(payload, OTHER_VENDOR)
    # 32473 is no longer mipro's: the built-in dissector shows that NVSE as type and bytes
    assert mipro_fields(shown[3]) == []
    assert ("mip.ext.nvse.vendor_type", "1") in shown[3]
    # and without the preference, the other vendor's NVSEs and messages are not mipro's
    plain = frames_json(pcap)
    for fields in plain[:3]:
        assert not [k for k, _ in fields if k.startswith("mipro")]
    assert [v for k, v in plain[0] if k == "mip.ext.nvse.vendor_id"] == [str(OTHER_VENDOR)] * 5
    assert mipro_fields(plain[3]) == expected(default)


def test_udp434_preference_off_leaves_type_255_to_the_built_in_dissector(pcap):
    off = frames_json(pcap, "-o", "mipro.udp434:FALSE")
    by_name = dict(zip(NAMES, off, strict=True))
    assert not [k for k, _ in by_name["handover-notification"] if k.startswith("mipro")]
    assert ("frame.protocols", "eth:ethertype:ip:udp") in by_name["handover-notification"]
    assert dict(by_name["every-extension"])["frame.protocols"] == \
        "eth:ethertype:ip:udp:mip" + ":mipro" * 6  # one layer per NVSE
    assert ("mipro.vendor_type", "5") in by_name["every-extension"]


def test_what_the_plugin_refuses_is_flagged(tmp_path):
    """The control for the clean capture: a value mipro would reject gets expert info and
    dissection goes on; a length that does not fit the layout is an error of group Malformed
    (so `_ws.malformed` matches that frame), a value mipro refuses a warning, an unknown
    vendor type a note."""
    h = golden.h
    head = golden.RRQ_FIXED

    def nvse(vtype: int, value: str) -> bytes:
        body = h("0000 00007ed9") + vtype.to_bytes(2, "big") + h(value)
        return bytes((134, len(body))) + body
    cases = {
        "unknown-vendor-type": (nvse(9, "beef"), "mipro.unknown_vendor_type"),
        "routes-13-bytes": (nvse(1, "0a010000 10 80 000a c0000201 ff"), "mipro.bad_length"),
        "route-host-bits": (nvse(1, "0a010001 10 81 000a c0000201"), "mipro.bad_value"),
        "filter-action-0x83": (nvse(2, "0a000001 20 20 06 83 cb007105 0000ffff 13c413c5 "
                                       "00000000"), "mipro.bad_value"),
        "certificate-2-of-2": (nvse(3, "02 02 3082"), "mipro.bad_value"),
        "auth-of-10-bytes": (nvse(4, "c6336401 0000 0000 00000101 00010203040506070809"),
                             "mipro.bad_length"),
    }
    payloads = [head + ext for ext, _ in cases.values()]
    bu = bytearray(golden.BU[0])
    bu[3] = 0x81  # a reserved flag
    payloads.append(bytes(bu))
    pcap = write(tmp_path, "refused", [udp(p) for p in payloads])
    shown = frames_json(pcap)
    wanted = [want for _, want in cases.values()] + ["mipro.msg.reserved_set"]
    for fields, want in zip(shown, wanted, strict=True):
        keys = [k for k, _ in fields]
        assert want in keys, (want, keys)
        assert ("_ws.malformed" in keys) == (want == "mipro.bad_length")
    routes = dict(shown[1])
    assert routes["mipro.route.destination"] == "10.1.0.0"  # the whole entry, then the rest
    assert routes["mipro.value"] == "ff"
    severities = [set(line.split(",")) for line in
                  tshark(pcap, "-T", "fields", "-e", "_ws.expert.severity").splitlines()]
    note, warn, error = str(0x00400000), str(0x00600000), str(0x00800000)  # PI_NOTE, ...
    assert severities == [{note}, {error}, {warn}, {warn}, {warn}, {error}, {warn}]


def test_installed_in_the_personal_plugin_folder(tmp_path):
    """docs/wireshark.md: copied to ~/.local/lib/wireshark/plugins/ it loads without -X."""
    folder = tmp_path / ".local" / "lib" / "wireshark" / "plugins"
    folder.mkdir(parents=True)
    shutil.copy(PLUGIN, folder / "mipro.lua")
    out = subprocess.run(["tshark", "-G", "protocols"], capture_output=True, text=True,
                         env=_env(tmp_path), check=True).stdout
    names = {line.split("\t")[2] for line in out.splitlines() if line.count("\t") >= 2}
    assert {"mipro", "mipro.msg"} <= names


# --------------------------------------------------------------------------- HA redundancy


SYNC_KEY = b"the [redundancy] key both HAs share"
INITIATOR, RESPONDER = "10.1.0.2", "10.1.0.3"  # the lower address connects
SYNC_PORT = 4340


class TcpConversation:
    """Segments of one TCP connection, with consistent sequence and acknowledgement numbers
    (the handshake first), so tshark's reassembly and analysis find nothing to complain of."""

    def __init__(self, port: int):
        self.port = port
        self.next = {INITIATOR: 1000, RESPONDER: 5000}
        self.frames: list = []
        self.send(INITIATOR, b"", "S")
        self.send(RESPONDER, b"", "SA")
        self.send(INITIATOR, b"", "A")

    def send(self, src: str, data: bytes, flags: str = "PA") -> int:
        dst = RESPONDER if src == INITIATOR else INITIATOR
        sport, dport = (40000, self.port) if src == INITIATOR else (self.port, 40000)
        tcp = TCP(sport=sport, dport=dport, flags=flags, seq=self.next[src],
                  ack=self.next[dst] if "A" in flags else 0, window=65535)
        frame = ether() / IP(src=src, dst=dst) / tcp
        if data:
            frame = frame / Raw(data)
        frame.time = 1_700_000_000 + len(self.frames) / 1000
        self.frames.append(frame)
        self.next[src] += len(data) + (1 if "S" in flags else 0)
        return len(self.frames)


def block(home: str, coa: str, **kw) -> BindingBlock:
    fields = {"home_agent": A("10.1.0.1"), "source": A(coa), "source_port": 434,
              "encapsulation": "ipip", "reverse_tunnel": False, "lifetime": 600,
              "lifetime_left": 600, "identification": (3_900_000_000 << 32) | 1, **kw}
    return BindingBlock(A(home), A(coa), **fields)


def sync_session(port: int = SYNC_PORT):
    """The session of two home agents as core/replication.Session writes it: hellos, the
    backup's dump request, the primary's dump in two messages (the first split over two
    segments, the second in one segment with a data forward), acknowledgements both ways,
    the last of the backup's with a replay-state forward after it (flag REPLAY).
    Returns the frames and, in the order tshark completes them, what each PDU is."""
    primary = Session(SYNC_KEY, True, bytes(range(16)))
    backup = Session(SYNC_KEY, False, bytes(range(100, 116)))
    tcp = TcpConversation(port)
    pdus = []  # (sender, kind, record bytes, object)

    def deliver(sender: Session, receiver: Session, src: str, chunks: list[bytes], what):
        data = b"".join(chunks)
        got = receiver.feed(data, 0.0)  # the receiving HA accepts it: a genuine session
        assert got == [o for k, _, o in what if k == 1]
        for chunk in chunks:
            tcp.send(src, chunk)
        pdus.extend((src, *w_) for w_ in what)

    hello_p, hello_b = primary.hello(), backup.hello()
    tcp.send(INITIATOR, hello_p)
    tcp.send(RESPONDER, hello_b)
    primary.feed(hello_b, 0.0)
    backup.feed(hello_p, 0.0)
    pdus += [(INITIATOR, 0, hello_p, primary.nonce), (RESPONDER, 0, hello_b, backup.nonce)]

    request = golden.SYNC_DUMP_REQUEST[1]
    rec = backup.message(request, 1.0)
    deliver(backup, primary, RESPONDER, [rec], [(1, rec, request)])

    dump1 = SyncMessage(SyncType.DUMP, 51, 100, (A("10.1.0.1"),), 1, more=True, primary=True,
                        blocks=(
        block("10.1.0.100", "198.51.100.106", reverse_tunnel=True, nai="mn1@home.example"),
        block("10.1.0.101", "192.0.2.129", encapsulation="gre", nonce=0x1234ABCD, spi=300,
              lifetime_left=42, nai="mn2@home.example"),
        block("10.1.0.102", "203.0.113.9", encapsulation="udp", source=A("203.0.113.1"),
              source_port=61000, lifetime=120, lifetime_left=119)))
    dump2 = SyncMessage(SyncType.DUMP, 51, 100, (A("10.1.0.1"),), 1, blocks=(
        block("10.1.0.103", "198.51.100.7", lifetime_left=0),))
    forward = golden.SYNC_FORWARD[1]
    r1, r2, r3 = (primary.message(m, 2.0) for m in (dump1, dump2, forward))
    primary_to_backup = [r1[:50], r1[50:] + r2 + r3]  # r1 split, then three records at once
    deliver(primary, backup, INITIATOR, primary_to_backup,
            [(1, r1, dump1), (1, r2, dump2), (1, r3, forward)])
    a1 = backup.ack(3.0)
    replay = golden.SYNC_REPLAY[1]  # as from a backup that was primary too (a partition)
    rr = backup.message(replay, 3.0)
    deliver(backup, primary, RESPONDER, [a1 + rr], [(2, a1, backup.received), (1, rr, replay)])
    a2 = primary.ack(3.0)
    deliver(primary, backup, INITIATOR, [a2], [(2, a2, primary.received)])
    assert not primary.sent_at and not backup.sent_at  # every message acknowledged
    return tcp.frames, pdus


def sync_message_fields(m: SyncMessage, encoded: bytes):
    out = [("mipro.sync.msg.version", "2"), ("mipro.sync.msg.type", str(int(m.type))),
           ("mipro.sync.msg.vrid", str(m.vrid)), ("mipro.sync.msg.priority", str(m.priority)),
           ("mipro.sync.msg.count_ip", str(len(m.addresses))),
           ("mipro.sync.msg.auth_type", "0"), ("mipro.sync.msg.adver_int", str(m.advert_interval)),
           ("mipro.sync.msg.checksum", "0x" + encoded[6:8].hex()),
           ("mipro.sync.msg.checksum.status", "1")]
    out += [("mipro.sync.msg.address", str(a)) for a in m.addresses]
    out += [("mipro.sync.msg.auth_data", hexbytes(bytes(8))),
            ("mipro.sync.msg.count_d", str(len(m.blocks))),
            ("mipro.sync.msg.subtype", str(int(m.subtype))),
            ("mipro.sync.msg.flags",
             f"0x{(1 if m.more else 0) | (2 if m.primary else 0) | (4 if m.replay else 0):02x}"),
            ("mipro.sync.msg.flags.more", flag(m.more)),
            ("mipro.sync.msg.flags.primary", flag(m.primary)),
            ("mipro.sync.msg.flags.replay", flag(m.replay)),
            ("mipro.sync.msg.flags.reserved", "0x00")]
    for b in m.blocks:
        nai = b.nai.encode()
        out += [("mipro.sync.block.length", str(BLOCK_FIXED + len(nai))),
                ("mipro.sync.block.home_address", str(b.home_address)),
                ("mipro.sync.block.care_of_address", str(b.care_of_address)),
                ("mipro.sync.block.home_agent", str(b.home_agent)),
                ("mipro.sync.block.source", str(b.source)),
                ("mipro.sync.block.source_port", str(b.source_port)),
                ("mipro.sync.block.flags",
                 f"0x{(1 if b.reverse_tunnel else 0) | (2 if b.nonce is not None else 0):02x}"),
                ("mipro.sync.block.flags.reverse", flag(b.reverse_tunnel)),
                ("mipro.sync.block.flags.nonce", flag(b.nonce is not None)),
                ("mipro.sync.block.flags.reserved", "0x00"),
                ("mipro.sync.block.encapsulation",
                 {"ipip": "4", "gre": "47", "udp": "17"}[b.encapsulation]),
                ("mipro.sync.block.lifetime", str(b.lifetime)),
                ("mipro.sync.block.lifetime_left", str(b.lifetime_left)),
                ("mipro.sync.block.identification", f"0x{b.identification:016x}"),
                ("mipro.sync.block.identification.time", "NTP"),
                ("mipro.sync.block.nonce", f"0x{b.nonce or 0:08x}"),
                ("mipro.sync.block.spi", str(b.spi)),
                ("mipro.sync.block.nai_length", str(len(nai))),
                ("mipro.sync.block.reserved", "0x000000")]
        if nai:
            out.append(("mipro.sync.block.nai", b.nai))
    return out


def sync_fields(pdus):
    """What the plugin shows for each PDU of the session, from the codec's objects."""
    out = []
    for sender, kind, data, obj in pdus:
        if kind == 0:
            out += [("mipro.sync.magic", "MIPRO-HA-SYNC"), ("mipro.sync.version", "1"),
                    ("mipro.sync.nonce", hexbytes(obj))]
            continue
        seq = int.from_bytes(data[5:13], "big")
        out += [("mipro.sync.length", str(len(data) - 4)), ("mipro.sync.kind", str(kind)),
                ("mipro.sync.sequence", str(seq)),
                ("mipro.sync.direction", "I" if sender == INITIATOR else "R")]
        if kind == 1:
            out += sync_message_fields(obj, obj.encode())
        else:
            out.append(("mipro.sync.acked", str(obj)))
        out.append(("mipro.sync.mac", hexbytes(data[-32:])))
    return out


@pytest.fixture(scope="module")
def sync_pcap(tmp_path_factory):
    frames, pdus = sync_session()
    return write(tmp_path_factory.mktemp("sync"), "sync", frames), pdus


def test_sync_session_every_field_is_what_was_encoded(sync_pcap):
    pcap, pdus = sync_pcap
    shown = [kv for fields in frames_json(pcap) for kv in mipro_fields(fields, "mipro.sync.")]
    assert shown == sync_fields(pdus)
    kinds = {int(o.type) for _, k, _, o in pdus if k == 1}
    assert kinds == {2, 3, 4}  # every Fig. 13b message


def test_sync_session_reassembly_and_columns(sync_pcap):
    pcap, _ = sync_pcap
    lines = tshark(pcap, "-T", "fields", "-e", "_ws.col.Protocol",
                   "-e", "_ws.col.Info").splitlines()
    assert [line.split("\t")[0] for line in lines[:3]] == ["TCP"] * 3  # the handshake
    assert lines[3:] == [
        "mipro sync\tHello",
        "mipro sync\tHello",
        "mipro sync\t#1 Data dump request VRID 51",
        f"TCP\t40000 → {SYNC_PORT} [PSH, ACK] Seq=31 Ack=100 Win=65535 Len=50 "
        "[TCP segment of a reassembled PDU]",
        "mipro sync\t#1 Data dump VRID 51: 3 bindings (more), #2 Data dump VRID 51: 1 binding, "
        "#3 Data forward VRID 51: 1 binding",
        "mipro sync\t#2 Ack 3, #3 Data forward VRID 51: 1 replay state",
        "mipro sync\t#4 Ack 3",
    ]


@pytest.mark.parametrize("plugin", [True, False], ids=["with-plugin", "without"])
def test_sync_session_is_clean(sync_pcap, plugin):
    pcap, _ = sync_pcap
    out = tshark(pcap, "-T", "fields", "-e", "_ws.malformed", "-e", "_ws.expert.severity",
                 "-e", "_ws.expert.message", plugin=plugin)
    # TCP's own Chat-level notes of the handshake are the only expert information
    assert out.splitlines()[3:] == ["\t\t"] * 7
    expert = tshark(pcap, "-q", "-z", "expert", plugin=plugin)
    for level in ("Errors", "Warnings", "Notes"):
        assert level not in expert, expert


def test_sync_verbose(sync_pcap):
    pcap, _ = sync_pcap
    out = tshark(pcap, "-V", "-Y", "mipro.sync")
    for line in [
        "mipro HA redundancy session (Fig. 13b), #1 Data dump request VRID 51",
        "[Direction: R (from the responder, the higher address)]",
        "Redundancy message: Data forward, VRID 51",
        ".... 0100 = Type: Data forward (4)",
        "[Checksum Status: Good (1)]",
        "Binding 1: 10.1.0.100 at 198.51.100.106 (IP-in-IP, reverse tunnel), 512 s of 600 "
        "left, mn1@home.example",
        "Binding 2: 10.1.0.101 at 192.0.2.129 (GRE), 42 s of 600 left, mn2@home.example",
        "Binding 3: 10.1.0.102 at 203.0.113.9 (UDP (RFC 3519)), 119 s of 120 left",
        "Binding 1: 10.1.0.103 at 198.51.100.7 (IP-in-IP), removed",
        "Binding 1: 10.1.0.100: replay state, accepted 2 s ago, mn1@home.example",
        ".... .1.. = Replay state only, no binding (REPLAY): True",
        ".... ...1 = More (MORE): True",
        "Highest sequence received: 3",
    ]:
        assert line in out, line


def test_sync_port_preference(tmp_path):
    frames, pdus = sync_session(port=5000)
    pcap = write(tmp_path, "sync5000", frames)
    assert not [k for f in frames_json(pcap) for k, _ in f if k.startswith("mipro")]
    moved = frames_json(pcap, "-o", "mipro.sync_port:5000")
    assert [kv for f in moved for kv in mipro_fields(f, "mipro.sync.")] == sync_fields(pdus)


def test_sync_what_the_plugin_refuses_is_flagged(tmp_path):
    """A wrong checksum is an error, values the codec refuses are warnings; the rest of the
    record is still shown."""
    tcp = TcpConversation(SYNC_PORT)
    good = golden.SYNC_FORWARD[0]
    bad_checksum = good[:6] + b"\x00\x00" + good[8:]
    overlong = SyncMessage(SyncType.FORWARD, 51, 100, (A("10.1.0.1"),), 1, blocks=(
        block("10.1.0.100", "198.51.100.106", lifetime=60, lifetime_left=61),)).encode()

    def record(kind: int, seq: int, body: bytes) -> bytes:
        return (1 + 8 + len(body) + 32).to_bytes(4, "big") + bytes((kind,)) + \
            seq.to_bytes(8, "big") + body + bytes(32)
    tcp.send(INITIATOR, b"MIPRO-HA-SYNC\x02" + bytes(16))
    for seq, (kind, body) in enumerate([(1, bad_checksum), (1, overlong), (3, b"??")], 1):
        tcp.send(INITIATOR, record(kind, seq, body))
    pcap = write(tmp_path, "sync-refused", tcp.frames)
    shown = frames_json(pcap)[3:]
    wanted = ["mipro.sync.bad_value", "mipro.sync.bad_checksum", "mipro.sync.bad_value",
              "mipro.sync.bad_value"]
    for fields, want in zip(shown, wanted, strict=True):
        keys = [k for k, _ in fields]
        assert want in keys, (want, keys)
    assert dict(shown[1])["mipro.sync.msg.checksum.status"] == "0"
    assert dict(shown[1])["mipro.sync.block.nai"] == "mn1@home.example"  # shown all the same
    assert dict(shown[2])["mipro.sync.block.lifetime_left"] == "61"
