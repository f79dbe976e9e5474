"""rtbatch's hand-packed RTM_NEWLINK, read back by pyroute2's own parser."""

import struct
from ipaddress import IPv4Address as A

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from mipro.dataplane.kernel import rtbatch


@pytest.mark.parametrize("kind,prefix", [("ipip", "IFLA_IPIP"), ("gre", "IFLA_GRE")])
def test_tunnel_link_message_parses(kind, prefix):
    req = rtbatch.tunnel_link(kind, "mip-c6336402", A("10.1.0.1"), A("198.51.100.2"),
                              0x4D490001)
    assert req.msg_type == rtbatch.RTM_NEWLINK
    data = struct.pack("=IHHII", 16 + len(req.body), req.msg_type, 5, 1, 0) + req.body
    msg = ifinfmsg(data)
    msg.decode()
    assert msg["index"] == 0x4D490001 and msg["flags"] & 1 and msg["change"] & 1
    assert msg.get_attr("IFLA_IFNAME") == "mip-c6336402"
    info = msg.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == kind
    data = info.get_attr("IFLA_INFO_DATA")
    assert data.get_attr(f"{prefix}_LOCAL") == "10.1.0.1"
    assert data.get_attr(f"{prefix}_REMOTE") == "198.51.100.2"
    assert data.get_attr(f"{prefix}_TTL") == 64


def test_delete_link_by_index():
    req = rtbatch.delete_link(0x4D490001, "mip-c6336402")
    assert req.msg_type == rtbatch.RTM_DELLINK
    assert struct.unpack("=BxHiII", req.body) == (0, 0, 0x4D490001, 0, 0)


@pytest.mark.parametrize("kind,prefix", [("ipip", "IFLA_IPIP"), ("gre", "IFLA_GRE")])
def test_collect_metadata_link_message_parses(kind, prefix):
    req = rtbatch.metadata_link(kind, f"mip-{kind}", 0x4D490002)
    data = struct.pack("=IHHII", 16 + len(req.body), req.msg_type, 5, 1, 0) + req.body
    msg = ifinfmsg(data)
    msg.decode()
    info = msg.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == kind
    attrs = [name for name, _ in info.get_attr("IFLA_INFO_DATA")["attrs"]]
    assert attrs == [f"{prefix}_COLLECT_METADATA"], attrs


def test_lightweight_tunnel_route_carries_its_encapsulation():
    """RTA_ENCAP_TYPE = LWTUNNEL_ENCAP_IP and the nested destination/source/ttl, by hand:
    pyroute2 does not parse this encapsulation type."""
    req = rtbatch.route(True, A("10.1.0.100"), 434, 7, encap=(A("10.1.0.1"), A("198.51.100.2")))
    attrs, body = {}, req.body[12:]
    while body:
        length, kind = struct.unpack_from("=HH", body)
        attrs[kind] = body[4:length]
        body = body[(length + 3) & ~3:]
    assert struct.unpack("=H", attrs[rtbatch.RTA_ENCAP_TYPE][:2]) == (rtbatch.LWTUNNEL_ENCAP_IP,)
    assert attrs[rtbatch.RTA_ENCAP] == (
        struct.pack("=HH", 8, rtbatch.LWTUNNEL_IP_DST) + A("198.51.100.2").packed
        + struct.pack("=HH", 8, rtbatch.LWTUNNEL_IP_SRC) + A("10.1.0.1").packed
        + struct.pack("=HH", 5, rtbatch.LWTUNNEL_IP_TTL) + b"\x40\0\0\0")
