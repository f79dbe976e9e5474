"""Cross-check against Wireshark: tshark must read our bytes as we meant them.

One frame per message and extension, written with scapy; `tshark -T json`
gives the fields it sees and `-z expert` any complaint.
"""

import datetime
import json
import shutil
import subprocess
from collections import defaultdict
from ipaddress import IPv4Address as A

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from mipro import wire as w
from mipro.security import SecurityAssociation, append_authenticator

from . import golden

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None,
                                reason="tshark not installed (make setup installs it)")


@pytest.fixture(scope="module", autouse=True)
def plain_tshark(tmp_path_factory):
    """What tshark does by itself: no personal preferences or plugins (an installed
    contrib/wireshark/mipro.lua would decode what these tests pin as undecoded)."""
    home = tmp_path_factory.mktemp("tshark-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("WIRESHARK_CONFIG_DIR", str(home / "config"))
        yield


NTP_OFFSET = 2_208_988_800


def ether() -> Ether:
    """With both addresses given: scapy would otherwise look the destination up by ARP,
    seconds per frame."""
    return Ether(src="02:00:5e:00:00:01", dst="02:00:5e:00:00:02")


def requests():
    """One registration request per extension, each with distinct fixed fields."""
    for i, (name, (data, _)) in enumerate(sorted(golden.EXTENSIONS.items())):
        if name == "unknown-critical":
            continue  # type 127 is unassigned; Wireshark would only guess its layout
        msg = w.RegistrationRequest.build(
            flags=w.RequestFlags(0x80 >> (i % 8)), lifetime=100 + i,
            home_address=f"10.0.{i}.1", home_agent=f"192.0.2.{i + 1}",
            care_of_address=f"198.51.100.{i + 2}",
            identification=((3_800_000_000 + i) << 32) | i)
        yield name, msg.encode() + data, msg


HOME, HA, FA1, FA2 = A("10.1.0.100"), A("10.1.0.1"), A("198.51.100.1"), A("192.0.2.129")
MN_HA = SecurityAssociation(256, b"mn-ha secret key")
MN_FA1 = SecurityAssociation(400, b"mn-fa1 secret")
MN_FA2 = SecurityAssociation(401, b"mn-fa2 secret")
IDENT = (3_800_000_100 << 32) | 7


def handover():
    """Fig. 3b with the previous-FA notification, byte for byte as the agents exchange it:
    (name, source, destination, payload, decoded message)."""
    # the mobile node signs, in advance, the notification FA2 will send FA1
    ahead = w.BindingUpdate.build(home_address=HOME, care_of_address=FA2, identification=IDENT)
    signed = append_authenticator(ahead.encode(), w.ExtType.MN_FA_AUTH, MN_FA1)
    nvse = w.PreviousFaNotification(FA1, 0, MN_FA1.spi, signed[-16:])
    rrq = w.RegistrationRequest.build(flags=w.RequestFlags.T, lifetime=300, home_address=HOME,
                                      home_agent=HA, care_of_address=FA2, identification=IDENT)
    to_ha = append_authenticator(rrq.encode(), w.ExtType.MN_HA_AUTH, MN_HA)
    on_link = append_authenticator(to_ha + nvse.encode(), w.ExtType.MN_FA_AUTH, MN_FA2)
    yield "handover-rrq", HOME, FA2, on_link, w.decode_udp434(on_link)
    yield "handover-rrq-relayed", FA2, HA, to_ha, w.decode_udp434(to_ha)
    rrp = append_authenticator(w.RegistrationReply.build(
        code=0, lifetime=300, home_address=HOME, home_agent=HA,
        identification=IDENT + (1 << 32)).encode(), w.ExtType.MN_HA_AUTH, MN_HA)
    yield "handover-rrp", HA, FA2, rrp, w.decode_udp434(rrp)
    # FA2, from the request and the NVSE: exactly the bytes the MN signed
    notification = w.BindingUpdate.build(home_address=HOME, care_of_address=FA2,
                                         identification=IDENT, lifetime=nvse.cache_lifetime,
                                         extensions=[w.MnFaAuth(nvse.spi, nvse.authenticator)])
    assert notification.encode() == signed
    yield "handover-notification", FA2, FA1, signed, notification
    ack = w.BindingAck.answering(notification, w.BindingStatus.ACCEPTED)
    ack_signed = append_authenticator(ack.encode(), w.ExtType.MN_FA_AUTH, MN_FA1)
    yield "handover-ack", FA1, FA2, ack_signed, w.decode_udp434(ack_signed)
    # later, back home, the mobile node tells FA1 itself (no new FA to do it), from its home
    # address; FA1 has no visitor left and says so, signing with the mobile node's key
    direct = w.BindingUpdate.build(home_address=HOME, care_of_address=HOME,
                                   identification=IDENT + (60 << 32))
    home = append_authenticator(direct.encode(), w.ExtType.MN_FA_AUTH, MN_FA1)
    yield "home-notification", HOME, FA1, home, w.decode_udp434(home)
    nack = append_authenticator(w.BindingAck.answering(direct, w.BindingStatus.NO_SUCH_VISITOR)
                                .encode(), w.ExtType.MN_FA_AUTH, MN_FA1)
    yield "home-ack", FA1, HOME, nack, w.decode_udp434(nack)
    for name, (payload, msg) in golden.MESSAGES.items():
        yield name, FA2, FA1, payload, msg


NOTIFICATIONS = [n for n, *_ in handover() if not n.endswith(("rrq", "relayed", "rrp"))]


def flatten(tree, out=None):
    out = defaultdict(list) if out is None else out
    if isinstance(tree, dict):
        for key, value in tree.items():
            if isinstance(value, dict | list):
                flatten(value, out)
            else:
                out[key].append(value)
    elif isinstance(tree, list):
        for item in tree:
            flatten(item, out)
    return out


def assert_ntp(shown: str, ident: int) -> None:
    """tshark shows the Identification as an NTP time; seconds exact, fraction to 1 ns."""
    t = datetime.datetime.fromtimestamp((ident >> 32) - NTP_OFFSET, datetime.UTC)
    seconds, _, rest = shown.partition(".")
    assert seconds == t.strftime("%b %e, %Y %H:%M:%S")
    nanos = int(rest.split()[0])
    assert abs(nanos - (ident & 0xFFFFFFFF) * 1e9 / 2**32) <= 1


def frames():
    """(name, frame, decoded message) for every frame of the cross-check capture: one
    registration request per extension, a reply, tunnel data, an agent advertisement and
    solicitation, and the handover of Fig. 3b with the type-255 messages."""
    for name, payload, msg in requests():
        yield name, (ether() / IP(src=str(msg.care_of_address), dst=str(msg.home_agent)) /
                     UDP(sport=434, dport=434) / Raw(payload)), msg
    for name, (payload, msg) in [("reply", golden.RRP), ("tunnel-data", golden.TUNNEL_DATA)]:
        yield name, (ether() / IP(src="192.0.2.1", dst="198.51.100.2") /
                     UDP(sport=434, dport=434) / Raw(payload)), msg
    for name, (payload, msg) in [("advert", golden.ADVERT), ("solicit", golden.SOLICITATION)]:
        yield name, (ether() / IP(src="192.0.2.9", dst="224.0.0.1", proto=1, ttl=1) /
                     Raw(payload)), msg
    for name, src, dst, payload, msg in handover():
        yield name, (ether() / IP(src=str(src), dst=str(dst)) /
                     UDP(sport=434, dport=434) / Raw(payload)), msg


@pytest.fixture(scope="module")
def dissected(tmp_path_factory):
    built = list(frames())
    meta = [(name, msg) for name, _, msg in built]
    pcap = tmp_path_factory.mktemp("tshark") / "all.pcap"
    wrpcap(str(pcap), [frame for _, frame, _ in built])
    out = subprocess.run(["tshark", "-r", str(pcap), "-T", "json"], capture_output=True,
                         text=True, check=True).stdout
    expert = subprocess.run(["tshark", "-r", str(pcap), "-q", "-z", "expert"],
                            capture_output=True, text=True, check=True).stdout
    columns = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "_ws.col.Protocol",
                              "-e", "_ws.col.Info"], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    layers = [flatten(p["_source"]["layers"]) for p in json.loads(out)]
    assert len(layers) == len(meta) == len(columns)
    for fields, line in zip(layers, columns, strict=True):
        protocol, info = line.split("\t")
        fields["_ws.col.Protocol"], fields["_ws.col.Info"] = [protocol], [info]
    return dict(zip([m[0] for m in meta], zip(layers, [m[1] for m in meta], strict=True),
                    strict=True)), expert, out


def test_no_malformed_packets_or_expert_warnings(dissected):
    _, expert, raw_json = dissected
    assert "_ws.malformed" not in raw_json
    for level in ("Errors", "Warnings", "Notes"):
        assert level not in expert, expert


@pytest.mark.parametrize("name", [n for n, _, _ in requests()])
def test_request_fixed_fields(dissected, name):
    fields, msg = dissected[0][name]
    assert fields["mip.type"] == ["1"]
    assert int(fields["mip.flags"][0], 16) == int(msg.flags)
    assert fields["mip.life"] == [str(msg.lifetime)]
    assert fields["mip.homeaddr"] == [str(msg.home_address)]
    assert fields["mip.haaddr"] == [str(msg.home_agent)]
    assert fields["mip.coa"] == [str(msg.care_of_address)]
    assert len(fields["mip.ident"]) == 1
    assert_ntp(fields["mip.ident"][0], msg.identification)


@pytest.mark.parametrize("name,ext_type", [
    ("mn-ha-auth", 32), ("mn-fa-auth", 33), ("fa-ha-auth", 34), ("mn-aaa-auth", 36)])
def test_authentication_extensions(dissected, name, ext_type):
    fields, _ = dissected[0][name]
    _, ext = golden.EXTENSIONS[name]
    assert fields["mip.ext.type"] == [str(ext_type)]
    assert int(fields["mip.auth.spi"][0], 16) == ext.spi
    assert fields["mip.auth.auth"][0].replace(":", "") == ext.authenticator.hex()


def test_nai(dissected):
    fields, _ = dissected[0]["nai"]
    assert fields["mip.nai"] == ["mn1@example.org"]


def test_udp_tunnel_request(dissected):
    fields, _ = dissected[0]["udp-tunnel-request"]
    assert fields["mip.ext.type"] == ["144"]
    assert fields["mip.ext.utrq.f"] == ["1"] and fields["mip.ext.utrq.r"] == ["0"]
    assert fields["mip.ext.utrq.encaptype"] == ["4"]


def test_udp_tunnel_reply(dissected):
    fields, _ = dissected[0]["udp-tunnel-reply"]
    assert fields["mip.ext.type"] == ["44"]
    assert fields["mip.ext.utrp.code"] == ["0"] and fields["mip.ext.utrp.f"] == ["1"]
    assert fields["mip.ext.utrp.keepalive"] == ["110"]


@pytest.mark.parametrize("name", ["static-routes", "filter-rules", "certificate",
                                  "previous-fa-notification", "home-address-in-use",
                                  "nvse-foreign-vendor"])
def test_vendor_extensions(dissected, name):
    fields, _ = dissected[0][name]
    data, ext = golden.EXTENSIONS[name]
    assert fields["mip.ext.type"] == ["134"]
    assert fields["mip.ext.nvse.vendor_id"] == [str(ext.vendor_id)]
    assert fields["mip.ext.nvse.vendor_value"][0].replace(":", "") == data[10:].hex()


def test_cvse(dissected):
    fields, _ = dissected[0]["cvse"]
    assert fields["mip.ext.cvse.vendor_id"] == ["32473"]
    assert int(fields["mip.ext.cvse.vendor_type"][0], 0) == 5


def test_reply(dissected):
    fields, msg = dissected[0]["reply"]
    assert fields["mip.type"] == ["3"] and fields["mip.code"] == ["133"]
    assert fields["mip.homeaddr"] == ["10.0.0.1"] and fields["mip.haaddr"] == ["192.0.2.1"]
    assert len(fields["mip.ident"]) == 1
    assert_ntp(fields["mip.ident"][0], msg.identification)


def test_tunnel_data(dissected):
    fields, _ = dissected[0]["tunnel-data"]
    assert fields["mip.type"] == ["4"] and fields["mip.nattt.nexthdr"] == ["4"]
    assert "203.0.113.5" in fields["ip.dst"]


def test_agent_advertisement(dissected):
    fields, adv = dissected[0]["advert"]
    assert fields["icmp.type"] == ["9"] and fields["icmp.checksum.status"] == ["1"]
    assert fields["icmp.lifetime"] == ["1800"]
    assert fields["icmp.mip.seq"] == ["1"] and fields["icmp.mip.life"] == ["1800"]
    assert int(fields["icmp.mip.flags"][0], 16) == int(adv.mobility.flags)
    assert fields["icmp.mip.coa"] == ["192.0.2.9"]
    assert fields["icmp.mip.prefixlength"] == ["24"]


def test_agent_solicitation(dissected):
    fields, _ = dissected[0]["solicit"]
    assert fields["icmp.type"] == ["10"] and fields["icmp.checksum.status"] == ["1"]


# --- the handover: the registration with the notification NVSE, and the notification itself


def test_handover_registration_request(dissected):
    """MN -> FA2: the MN-HA authenticator, then the previous-FA notification NVSE, then MN-FA."""
    fields, msg = dissected[0]["handover-rrq"]
    nvse = msg.find(w.PreviousFaNotification)
    assert fields["mip.type"] == ["1"] and fields["mip.coa"] == [str(FA2)]
    assert fields["mip.ext.type"] == ["32", "134", "33"]
    assert [int(v, 16) for v in fields["mip.auth.spi"]] == [MN_HA.spi, MN_FA2.spi]
    assert fields["mip.ext.nvse.vendor_id"] == ["32473"]
    assert int(fields["mip.ext.nvse.vendor_type"][0], 0) == 4
    assert fields["mip.ext.nvse.vendor_value"][0].replace(":", "") == nvse.encode()[10:].hex()
    assert [a.replace(":", "") for a in fields["mip.auth.auth"]] == \
        [e.authenticator.hex() for e in msg.find_all(w.MnHaAuth) + msg.find_all(w.MnFaAuth)]
    relayed, _ = dissected[0]["handover-rrq-relayed"]
    assert relayed["mip.ext.type"] == ["32"]  # NVSE and MN-FA authenticator stripped
    reply, _ = dissected[0]["handover-rrp"]
    assert reply["mip.type"] == ["3"] and reply["mip.code"] == ["0"]


@pytest.mark.parametrize("name", NOTIFICATIONS)
def test_notification_frames(dissected, name):
    """tshark 4.0.17 names type 255 "Message for Experimental Use" but dissects none of it: no
    field of its own, not mistaken for another message, not Malformed (see the no-malformed
    test above); the UDP payload it reports is exactly what mipro encoded."""
    fields, msg = dissected[0][name]
    assert fields["_ws.col.Protocol"] == ["MobileIP"] and fields["_ws.col.Info"] == [""]
    assert fields["frame.protocols"] == ["eth:ethertype:ip:udp"]
    assert not [k for k in fields if k.startswith(("mip.", "data", "_ws.malformed"))]
    assert fields["udp.srcport"] == fields["udp.dstport"] == ["434"]
    assert bytes.fromhex(fields["udp.payload"][0].replace(":", "")) == msg.encode()


def _tshark_verdicts(tmp_path, payloads):
    pcap = tmp_path / "frames.pcap"
    wrpcap(str(pcap), [ether() / IP(src="192.0.2.129", dst="198.51.100.1") /
                       UDP(sport=434, dport=434) / Raw(p) for p in payloads])
    out = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "_ws.malformed"],
                         capture_output=True, text=True, check=True).stdout
    return ["malformed" if line.strip() else "clean" for line in out.splitlines()]


def _tshark_version() -> str:
    out = subprocess.run(["tshark", "--version"], capture_output=True, text=True).stdout
    return out.split()[2] if out.startswith("TShark") else ""


@pytest.mark.skipif(not _tshark_version().startswith("4.0."),
                    reason="pins what tshark 4.0 does (docs/protocol.md)")
def test_the_layouts_mipro_did_not_choose_are_malformed_in_tshark(tmp_path):
    """The control for the checks above: tshark does walk these payloads, and the old
    type-18/19 messages, RFC 6098 GNM/GNAM and RFC 4988 FBU/FBack frames for the same
    notification are all reported Malformed (their second octet is read as a length)."""
    h = bytes.fromhex
    hoa, ha, fa1, coa, ident = h("0a000001"), h("c0000201"), h("c6336401"), h("c0000281"), \
        h("e1e2e3e400000001")
    mn_fa, mn_par = golden.EXTENSIONS["mn-fa-auth"][0], golden.EXTENSIONS["mn-aaa-auth"][0]
    mn_par = mn_par[:1] + b"\x04" + mn_par[2:]  # Generalized Authentication, sub-type MN-PAR
    old_bu = h("12 c0 0000") + hoa + coa + ident + mn_fa
    old_ack = h("13 00 00 00") + hoa + ident
    gnm = h("16 03 8000") + hoa + ha + coa + ident + mn_fa  # MD 3, A
    gnam = h("17 04 00 00") + hoa + ha + coa + ident + mn_fa  # MD 4, code 0
    fbu = h("14 00 0000") + hoa + fa1 + coa + ident + mn_par
    fback = h("15 00 0000") + hoa + fa1 + ident + mn_par
    assert _tshark_verdicts(tmp_path, [old_bu, old_ack, gnm, gnam, fbu, fback]) == \
        ["malformed"] * 6
    assert _tshark_verdicts(tmp_path, [golden.BU[0], golden.BACK[0]]) == ["clean"] * 2


def test_the_engines_handover_capture_is_clean(tmp_path):
    """What the MN, FA1, FA2 and HA engines send in Fig. 3b (FA1, then FA2, then home),
    written as it would be captured: tshark finds nothing malformed or suspicious in it."""
    from mipro.core.actions import Send, SendToLink
    from mipro.core.advertiser import Advertiser, AdvertPolicy

    from .test_previous_fa import FA1 as ENGINE_FA1
    from .test_previous_fa import FA2 as ENGINE_FA2
    from .test_previous_fa import HA as ENGINE_HA
    from .test_previous_fa import NOW, deliver, move, world

    ha, fas, mn = world()
    trace = []
    move(ha, fas, mn, ENGINE_FA1, NOW, trace)
    move(ha, fas, mn, ENGINE_FA2, NOW + 5, trace)
    home_adv = Advertiser(AdvertPolicy(ENGINE_HA, 24, w.AgentFlags.H), NOW).handle_timer(NOW)
    deliver(ha, fas, mn, mn.advertisement(home_adv[0].data, ENGINE_HA, NOW + 10), NOW + 10,
            trace=trace)
    frames, payloads = [], []
    for origin, a in trace:
        if isinstance(a, Send | SendToLink):
            src = a.src if isinstance(a, SendToLink) else origin
            frames.append(ether() / IP(src=str(src), dst=str(a.dst)) /
                          UDP(sport=434, dport=434) / Raw(a.data))
            payloads.append(a.data)
    kinds = [type(w.decode_udp434(p)).__name__ for p in payloads]
    assert kinds.count("BindingUpdate") == 2 and kinds.count("BindingAck") == 2, kinds
    assert {"RegistrationRequest", "RegistrationReply"} <= set(kinds)
    pcap = tmp_path / "handover.pcap"
    wrpcap(str(pcap), frames)
    out = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "_ws.malformed",
                          "-e", "_ws.col.Protocol"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["\tMobileIP"] * len(frames)
    expert = subprocess.run(["tshark", "-r", str(pcap), "-q", "-z", "expert"],
                            capture_output=True, text=True, check=True).stdout
    for level in ("Errors", "Warnings", "Notes"):
        assert level not in expert, expert
