"""The flood limiter's parameters and nftables script, without touching a kernel."""

import pytest

from mipro.dataplane.kernel.floodlimit import Limits, LinkLimiter, _mac


def test_limits_are_checked():
    with pytest.raises(ValueError):
        Limits(rate=0)
    with pytest.raises(ValueError):
        Limits(aggregate_rate=-1)
    assert Limits(rate=5).burst == 100


def test_link_ruleset_names_its_objects():
    script = LinkLimiter("lan0", Limits(rate=7, burst=9, aggregate_rate=300))._ruleset()
    assert script.startswith("table netdev mipro-limit-lan0 {")
    assert 'hook ingress device "lan0" priority -500' in script
    assert "udp dport 434 ether saddr @exempt counter accept" in script
    assert "update @sources { ether saddr limit rate over 7/second burst 9 packets }" in script
    assert "udp dport 434 limit rate over 300/second burst 300 packets counter drop" in script
    assert "icmp type router-solicitation" in script
    assert "udp dport 434 limit rate" not in LinkLimiter("lan0")._ruleset()  # no aggregate


def test_macs_are_normalised():
    assert _mac(b"\x02\x00\x00\x00\x01\x00") == "02:00:00:00:01:00"
    assert _mac("02:AB:00:00:01:00") == "02:ab:00:00:01:00"
    for bad in ("02:00", "zz:00:00:00:00:00", b"\x01"):
        with pytest.raises(ValueError):
            _mac(bad)


def test_link_shape_and_addresses():
    from ipaddress import IPv4Address as A

    script = LinkLimiter("lan0", addresses=[A("198.51.100.1"), A("255.255.255.255")])._ruleset()
    udp = "udp dport 434 ip daddr { 198.51.100.1, 255.255.255.255 }"
    assert f"{udp} @th,64,8 != 1 counter drop" in script
    assert f"{udp} udp length < 32 counter drop" in script
    assert script.index("@th,64,8") < script.index("@exempt")  # junk goes, exempt or not
    assert "@th" not in LinkLimiter("lan0", Limits(shape=False))._ruleset()
