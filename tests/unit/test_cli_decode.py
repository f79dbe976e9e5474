"""`mipro decode` prints every field, as text or JSON, from hex or a pcap."""

import json

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from mipro.cli import main

from . import golden


def test_decode_hex_text(capsys):
    data = golden.RRQ_FIXED + golden.EXTENSIONS["static-routes"][0]
    assert main(["decode", data.hex()]) == 0
    out = capsys.readouterr().out
    assert "care_of_address: 198.51.100.2" in out
    assert "destination: 10.1.0.0/16" in out and "via: tunnel" in out


def test_decode_hex_json(capsys):
    assert main(["decode", "--json", golden.EXTENSIONS["filter-rules"][0].hex()
                 .join([golden.RRQ_FIXED.hex(), ""])]) == 0
    msg = json.loads(capsys.readouterr().out)
    rule = msg["extensions"][0]["entries"][0]
    assert rule["action"] == "deny" and rule["dport"] == [5060, 5061]


def test_decode_icmp_hex(capsys):
    assert main(["decode", "--json", golden.ADVERT[0].hex()]) == 0
    msg = json.loads(capsys.readouterr().out)
    assert msg["extensions"][0]["flags"] == "RF"


def test_decode_error_names_offset(capsys):
    assert main(["decode", golden.RRQ[0][:30].hex()]) == 1
    assert "at byte 24" in capsys.readouterr().err


def test_decode_pcap(tmp_path, capsys):
    pcap = tmp_path / "mip.pcap"
    wrpcap(str(pcap), [
        Ether() / IP(src="198.51.100.2", dst="192.0.2.1") / UDP(sport=4000, dport=434) /
        Raw(golden.RRQ[0]),
        Ether() / IP(src="192.0.2.1", dst="198.51.100.2") / UDP(sport=80, dport=81) / Raw(b"x"),
        Ether() / IP(src="192.0.2.9", dst="224.0.0.1", proto=1, ttl=1) / Raw(golden.ADVERT[0]),
        Ether() / IP(src="192.0.2.1", dst="198.51.100.2") / UDP(sport=434, dport=4000) /
        Raw(golden.RRP[0]),
    ])
    assert main(["decode", "--json", "--pcap", str(pcap)]) == 0
    msgs = json.loads(capsys.readouterr().out)
    assert [m["message"] for m in msgs] == ["registration-request", "agent-advertisement",
                                            "registration-reply"]
    assert [m["frame"] for m in msgs] == [1, 3, 4]


def test_decode_notification_and_ack(capsys):
    assert main(["decode", golden.BU[0].hex()]) == 0
    out = capsys.readouterr().out
    assert "message: binding-update" in out and "sub_type: 1" in out
    assert "care_of_address: 192.0.2.129" in out and "flags: A" in out
    assert main(["decode", "--json", golden.BACK_SIGNED[0].hex()]) == 0
    ack = json.loads(capsys.readouterr().out)
    assert ack["message"] == "binding-ack" and ack["status_name"] == "identification-mismatch"
    assert ack["extensions"][0]["name"] == "MN-FA authentication"


def test_decode_another_organizations_experiment(capsys):
    assert main(["decode", "--vendor-id", "9", golden.BU[0].hex()]) == 1
    assert "organization 32473" in capsys.readouterr().err


def test_decode_a_redundancy_message():
    import json
    import subprocess
    import sys

    from . import golden

    out = subprocess.run([sys.executable, "-m", "mipro.cli", "decode", "--redundancy", "--json",
                          golden.SYNC_FORWARD[0].hex()], capture_output=True, text=True,
                         check=True).stdout
    got = json.loads(out)
    assert got["message"] == "redundancy-forward" and got["vrid"] == 51
    assert got["blocks"][0]["home_address"] == "10.1.0.100"
    assert got["blocks"][0]["identification"] == "0xeeb917bcf4c665fc"
