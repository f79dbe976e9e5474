"""Hypothesis strategies for every message and extension mipro encodes."""

from ipaddress import IPv4Address, IPv4Network

from hypothesis import strategies as st

from mipro import wire as w

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 2**64 - 1)
addrs = st.builds(IPv4Address, u32)


@st.composite
def networks(draw):
    plen = draw(st.integers(0, 32))
    return IPv4Network((draw(u32), plen), strict=False)


@st.composite
def port_ranges(draw):
    lo = draw(u16)
    return (lo, draw(st.integers(lo, 0xFFFF)))


routes = st.builds(w.StaticRoute, networks(), addrs, u16, st.booleans())


@st.composite
def filter_rules(draw):
    nat = draw(st.booleans())
    return w.FilterRule(
        draw(networks()), draw(networks()), draw(u8), draw(st.sampled_from(list(w.Verdict))),
        draw(st.booleans()), nat, draw(st.booleans()), draw(port_ranges()), draw(port_ranges()),
        draw(addrs) if nat else IPv4Address(0))


auth_bytes = st.binary(min_size=0, max_size=40)
skippable_raw = st.builds(w.RawExtension, st.integers(150, 255), st.binary(max_size=30))
critical_raw = st.builds(w.RawExtension, st.sampled_from([1, 2, 50, 99, 127]),
                         st.binary(max_size=30))

extensions = st.one_of(
    st.builds(w.MnHaAuth, u32, auth_bytes),
    st.builds(w.MnFaAuth, u32, auth_bytes),
    st.builds(w.FaHaAuth, u32, auth_bytes),
    st.builds(w.GeneralizedAuth, u8, u32, st.binary(max_size=300)),
    st.builds(w.Nai, st.text(min_size=1, max_size=60).filter(lambda s: len(s.encode()) <= 255)),
    st.builds(w.MnFaChallenge, st.binary(min_size=4, max_size=64)),
    st.builds(w.Cvse, u32, u16, st.binary(max_size=300)),
    st.builds(w.Nvse, st.integers(0, 32472), u16, st.binary(max_size=200)),
    st.builds(w.UdpTunnelRequest, st.booleans(), st.booleans(), u8),
    st.builds(w.UdpTunnelReply, u8, st.booleans(), u16),
    st.builds(w.StaticRoutesExtension, st.lists(routes, max_size=20).map(tuple)),
    st.builds(w.FilterRulesExtension, st.lists(filter_rules(), max_size=10).map(tuple)),
    st.builds(w.CertificateExtension, st.just(0), st.integers(1, 5), st.binary(max_size=245)),
    skippable_raw,
    critical_raw,
)

requests = st.builds(
    lambda flags, life, hoa, ha, coa, ident, exts: w.RegistrationRequest.build(
        flags=w.RequestFlags(flags), lifetime=life, home_address=hoa, home_agent=ha,
        care_of_address=coa, identification=ident, extensions=exts),
    u8, u16, addrs, addrs, addrs, u64, st.lists(extensions, max_size=6))

replies = st.builds(
    lambda code, life, hoa, ha, ident, exts: w.RegistrationReply.build(
        code=code, lifetime=life, home_address=hoa, home_agent=ha, identification=ident,
        extensions=exts),
    u8, u16, addrs, addrs, u64, st.lists(extensions, max_size=6))


@st.composite
def tunnel_data(draw):
    payload_len = draw(st.integers(0, 40))
    total = 20 + payload_len
    header = bytes([0x45, 0]) + total.to_bytes(2, "big") + draw(st.binary(min_size=16,
                                                                          max_size=16))
    return w.TunnelData(4, header + draw(st.binary(min_size=payload_len, max_size=payload_len)))


adverts = st.builds(
    lambda life, routers, seq, alife, flags, coas, plens, pad, code: w.AgentAdvertisement(
        life, tuple(routers),
        (w.MobilityAgentExtension(seq, alife, w.AgentFlags(flags), tuple(coas)),
         *( [w.PrefixLengthsExtension(tuple(plens))] if plens else []),
         *([w.PaddingExtension()] if pad else [])), code),
    u16, st.lists(st.tuples(addrs, st.integers(-(2**31), 2**31 - 1)), max_size=4), u16, u16,
    st.integers(0, 0xFFE0).map(lambda f: f & 0xFFE0), st.lists(addrs, max_size=8),
    st.lists(st.integers(0, 32), max_size=4), st.booleans(), st.sampled_from([0, 16]))

notifications = st.builds(
    lambda flags, life, hoa, coa, ident, exts: w.BindingUpdate.build(
        flags=w.BindingFlags(flags), lifetime=life, home_address=hoa, care_of_address=coa,
        identification=ident, extensions=exts),
    st.sampled_from([0, int(w.BindingFlags.A)]), u16, addrs, addrs, u64,
    st.lists(extensions, max_size=4))

notification_acks = st.builds(
    lambda status, hoa, ident, exts: w.BindingAck(status, hoa, ident, extensions=tuple(exts)),
    u8, addrs, u64, st.lists(extensions, max_size=2))

udp434_messages = st.one_of(requests, replies, tunnel_data(), notifications, notification_acks)
