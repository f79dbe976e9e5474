"""Golden vectors: hex assembled by hand from the RFC layouts, and the objects they mean.

The hex here is written field by field (see the comments), not produced by
the codec, so a codec bug cannot make a vector agree with itself.
"""

from ipaddress import IPv4Address as A
from ipaddress import IPv4Network as N

from mipro import wire as w
from mipro.wire.sync import BindingBlock, SyncMessage, SyncType

AUTH16 = bytes(range(16))
AUTH16_HEX = AUTH16.hex()


def h(*parts: str) -> bytes:
    return bytes.fromhex("".join(p.replace(" ", "") for p in parts))


EXTENSIONS = {
    "mn-ha-auth": (h("20 14", "00000100", AUTH16_HEX), w.MnHaAuth(256, AUTH16)),
    "mn-fa-auth": (h("21 14", "00000101", AUTH16_HEX), w.MnFaAuth(257, AUTH16)),
    "fa-ha-auth": (h("22 14", "00000102", AUTH16_HEX), w.FaHaAuth(258, AUTH16)),
    "mn-aaa-auth": (h("24 01 0014", "00000103", AUTH16_HEX), w.GeneralizedAuth(1, 259, AUTH16)),
    "nai": (h("83 0f", b"mn1@example.org".hex()), w.Nai("mn1@example.org")),
    "challenge": (h("84 08", "0102030405060708"), w.MnFaChallenge(bytes(range(1, 9)))),
    "cvse": (h("26 00 000a", "00007ed9", "0005", "aabbccdd"),
             w.Cvse(32473, 5, bytes.fromhex("aabbccdd"))),
    "nvse-foreign-vendor": (h("86 0a", "0000", "00000009", "0001", "beef"),
                            w.Nvse(9, 1, bytes.fromhex("beef"))),
    "udp-tunnel-request": (h("90 06", "00", "00", "80", "04", "0000"),
                           w.UdpTunnelRequest(forced=True, encapsulation=4)),
    "udp-tunnel-reply": (h("2c 06", "00", "00", "8000", "006e"),
                         w.UdpTunnelReply(code=0, forced=True, keepalive=110)),
    "unknown-skippable": (h("fe 03 010203"), w.RawExtension(254, b"\x01\x02\x03")),
    "unknown-critical": (h("7f 01 ff"), w.RawExtension(127, b"\xff")),
    # mipro NVSE, static routes: 10.1.0.0/16 via the home agent 192.0.2.1, cost 10
    "static-routes": (
        h("86 14", "0000", "00007ed9", "0001", "0a010000 10 80 000a c0000201"),
        w.StaticRoutesExtension((w.StaticRoute(N("10.1.0.0/16"), A("192.0.2.1"), 10, True),)),
    ),
    # mipro NVSE, filter rules: deny TCP 10.0.0.1 -> 203.0.113.5 port 5060-5061, both ways
    "filter-rules": (
        h("86 20", "0000", "00007ed9", "0002",
          "0a000001 20 20 06 41 cb007105 0000ffff 13c413c5 00000000"),
        w.FilterRulesExtension((w.FilterRule(
            N("10.0.0.1/32"), N("203.0.113.5/32"), 6, w.Verdict.DENY, both_directions=True,
            dport=(5060, 5061)),)),
    ),
    "certificate": (h("86 0d", "0000", "00007ed9", "0003", "00 01", "308201"),
                    w.CertificateExtension(0, 1, bytes.fromhex("308201"))),
    # previous FA 198.51.100.1, cache lifetime 0, SPI 257, the MN's authenticator
    "previous-fa-notification": (
        h("86 24", "0000", "00007ed9", "0004", "c6336401", "0000", "0000", "00000101",
          AUTH16_HEX),
        w.PreviousFaNotification(A("198.51.100.1"), 0, 257, AUTH16)),
    # a host on the visited network has home address 10.1.0.100; the FA's 172.16.5.1 stands in
    "home-address-in-use": (
        h("86 10", "0000", "00007ed9", "0005", "0a010064", "ac100501"),
        w.HomeAddressInUse(A("10.1.0.100"), A("172.16.5.1"))),
}

# Registration Request: type 1, flags S|T, lifetime 1800, HoA 10.0.0.1, HA 192.0.2.1,
# CoA 198.51.100.2, identification e1e2e3e4 00000001
RRQ_FIXED = h("01 82 0708", "0a000001", "c0000201", "c6336402", "e1e2e3e400000001")
RRQ = (
    RRQ_FIXED + EXTENSIONS["nai"][0] + EXTENSIONS["mn-ha-auth"][0],
    w.RegistrationRequest.build(
        flags=w.RequestFlags.S | w.RequestFlags.T, lifetime=1800, home_address="10.0.0.1",
        home_agent="192.0.2.1", care_of_address="198.51.100.2",
        identification=0xE1E2E3E400000001,
        extensions=[EXTENSIONS["nai"][1], EXTENSIONS["mn-ha-auth"][1]]),
)
RRQ_ALL_FLAGS = (
    h("01 ff 0000", "0a000001", "c0000201", "0a000001", "0000000000000000"),
    w.RegistrationRequest.build(
        flags=w.RequestFlags(0xFF), lifetime=0, home_address="10.0.0.1", home_agent="192.0.2.1",
        care_of_address="10.0.0.1", identification=0),
)
# Registration Reply: code 133, lifetime 0, identification carrying the HA's time
RRP = (
    h("03 85 0000", "0a000001", "c0000201", "e1e2e3f000000001") + EXTENSIONS["mn-ha-auth"][0],
    w.RegistrationReply.build(code=133, lifetime=0, home_address="10.0.0.1",
                              home_agent="192.0.2.1", identification=0xE1E2E3F000000001,
                              extensions=[EXTENSIONS["mn-ha-auth"][1]]),
)
# Previous-FA notification (RFC 4064 experimental message 255, sub-type 1): Length 26, flag A,
# Vendor/Org-ID 32473, HoA 10.0.0.1, new CoA 192.0.2.129, the registration's identification,
# cache lifetime 0, reserved; then MN-FA auth SPI 257
BU = (
    h("ff 1a 01 80", "00007ed9", "0a000001", "c0000281", "e1e2e3e400000001", "0000 0000")
    + EXTENSIONS["mn-fa-auth"][0],
    w.BindingUpdate.build(home_address="10.0.0.1", care_of_address="192.0.2.129",
                          identification=0xE1E2E3E400000001,
                          extensions=[EXTENSIONS["mn-fa-auth"][1]]),
)
# Its acknowledgement (sub-type 2): Length 18, status 0 (accepted), Vendor/Org-ID, HoA, the
# notification's identification
BACK = (h("ff 12 02 00", "00007ed9", "0a000001", "e1e2e3e400000001"),
        w.BindingAck(0, A("10.0.0.1"), 0xE1E2E3E400000001))
# ... and one the previous FA signed with the mobile node's key: status 69 (identification
# mismatch), then MN-FA auth SPI 257
BACK_SIGNED = (h("ff 12 02 45", "00007ed9", "0a000001", "e1e2e3e400000001")
               + EXTENSIONS["mn-fa-auth"][0],
               w.BindingAck(69, A("10.0.0.1"), 0xE1E2E3E400000001,
                            extensions=(EXTENSIONS["mn-fa-auth"][1],)))
# Redundancy (seed Fig. 13b), VRID 51, virtual HA address 10.1.0.1.  A data dump request
# from the backup (priority 90): version 2 / type 2, one address, auth type 0, adver int 1,
# checksum, the address, 8 bytes of authentication data, Count-D 0, subtype 1 (Mobile IP)
SYNC_DUMP_REQUEST = (
    h("22 33 5a 01", "00 01 78c8", "0a010001", "00000000 00000000", "0000 01 00"),
    SyncMessage(SyncType.DUMP_REQUEST, 51, 90, (A("10.1.0.1"),), 1))
# A data forward from the primary (priority 100): one block of 60 bytes: home address
# 10.1.0.100, care-of 198.51.100.106, HA 10.1.0.1, source 198.51.100.106 port 434, flags
# 01 (reverse tunnel), encapsulation 4 (IP-in-IP), lifetime 600, 512 left, the last
# identification used, nonce 0 (timestamps), SPI 256, NAI length 16, reserved, the NAI
SYNC_FORWARD = (
    h("24 33 64 01", "00 01 9480", "0a010001", "00000000 00000000", "0001 01 00",
      "003c", "0a010064", "c633646a", "0a010001", "c633646a", "01b2", "01 04", "0258 0200",
      "eeb917bcf4c665fc", "00000000", "00000100", "10 000000") + b"mn1@home.example",
    SyncMessage(SyncType.FORWARD, 51, 100, (A("10.1.0.1"),), 1, blocks=(BindingBlock(
        A("10.1.0.100"), A("198.51.100.106"), A("10.1.0.1"), A("198.51.100.106"), 434,
        "ipip", True, 600, 512, 0xEEB917BCF4C665FC, None, 256, "mn1@home.example"),)))
# A data forward of replay state only (flag REPLAY, 04) from the backup that stood down
# after a partition (priority 90): one block, home address 10.1.0.100, no care-of, source
# or port (0.0.0.0:0), flags 00 (timestamps), IP-in-IP, lifetime 2 (accepted 2 s ago), 0
# left, the last identification it accepted, nonce 0, SPI 0, the NAI
SYNC_REPLAY = (
    h("24 33 5a 01", "00 01 fbc0", "0a010001", "00000000 00000000", "0001 01 04",
      "003c", "0a010064", "00000000", "0a010001", "00000000", "0000", "00 04", "0002 0000",
      "eeb917bcf4c665fc", "00000000", "00000000", "10 000000") + b"mn1@home.example",
    SyncMessage(SyncType.FORWARD, 51, 90, (A("10.1.0.1"),), 1, blocks=(BindingBlock(
        A("10.1.0.100"), A("0.0.0.0"), A("10.1.0.1"), A("0.0.0.0"), 0, "ipip", False, 2, 0,
        0xEEB917BCF4C665FC, None, 0, "mn1@home.example"),), replay=True))
MESSAGES = {"binding-update": BU, "binding-ack": BACK, "binding-ack-signed": BACK_SIGNED}
# not UDP 434 messages: they travel in the home agents' TCP sync session
SYNC_MESSAGES = {"redundancy-dump-request": SYNC_DUMP_REQUEST,
                 "redundancy-forward": SYNC_FORWARD, "redundancy-replay-state": SYNC_REPLAY}
INNER_IP = h("45000014 0000 0000 40 01 0000", "0a000001", "cb007105")
TUNNEL_DATA = (h("04 04 0000") + INNER_IP, w.TunnelData(4, INNER_IP))

# Agent advertisement: ICMP 9 code 0, checksum 98cd, 1 address, entry size 2, lifetime 1800,
# router 192.0.2.9 pref 0; mobility ext: seq 1, lifetime 1800, flags R|F, CoA 192.0.2.9;
# prefix-lengths 24; one-byte padding
ADVERT = (
    h("09 00 98cd 01 02 0708", "c0000209 00000000",
      "10 0a 0001 0708 9000 c0000209", "13 01 18", "00"),
    w.AgentAdvertisement(1800, ((A("192.0.2.9"), 0),), (
        w.MobilityAgentExtension(1, 1800, w.AgentFlags.R | w.AgentFlags.F, (A("192.0.2.9"),)),
        w.PrefixLengthsExtension((24,)), w.PaddingExtension())),
)
SOLICITATION = (h("0a 00 f5ff 00000000"), w.AgentSolicitation())
