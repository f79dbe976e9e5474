"""Cross-check against Wireshark: tshark must read our bytes as we meant them.

One frame per message and extension, written with scapy; `tshark -T json`
gives the fields it sees and `-z expert` any complaint.
"""

import datetime
import json
import shutil
import subprocess
from collections import defaultdict

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from mipro import wire as w

from . import golden

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None,
                                reason="tshark not installed (make setup installs it)")

NTP_OFFSET = 2_208_988_800


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


@pytest.fixture(scope="module")
def dissected(tmp_path_factory):
    frames = []
    meta = []
    for name, payload, msg in requests():
        frames.append(Ether() / IP(src=str(msg.care_of_address), dst=str(msg.home_agent)) /
                      UDP(sport=434, dport=434) / Raw(payload))
        meta.append((name, msg))
    for name, (payload, msg) in [("reply", golden.RRP), ("tunnel-data", golden.TUNNEL_DATA)]:
        frames.append(Ether() / IP(src="192.0.2.1", dst="198.51.100.2") /
                      UDP(sport=434, dport=434) / Raw(payload))
        meta.append((name, msg))
    for name, (payload, msg) in [("advert", golden.ADVERT), ("solicit", golden.SOLICITATION)]:
        frames.append(Ether() / IP(src="192.0.2.9", dst="224.0.0.1", proto=1, ttl=1) /
                      Raw(payload))
        meta.append((name, msg))
    pcap = tmp_path_factory.mktemp("tshark") / "all.pcap"
    wrpcap(str(pcap), frames)
    out = subprocess.run(["tshark", "-r", str(pcap), "-T", "json"], capture_output=True,
                         text=True, check=True).stdout
    expert = subprocess.run(["tshark", "-r", str(pcap), "-q", "-z", "expert"],
                            capture_output=True, text=True, check=True).stdout
    layers = [flatten(p["_source"]["layers"]) for p in json.loads(out)]
    assert len(layers) == len(meta)
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
