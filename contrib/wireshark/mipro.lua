-- mipro.lua: Wireshark dissector for mipro's Mobile IPv4 vendor extensions and messages.
--
-- * The NVSEs (RFC 3115, type 134) with mipro's Vendor/Org-ID: registered on the built-in
--   Mobile IP dissector's "mip.nvse_ext" table, keyed by Vendor/Org-ID (preference
--   mipro.vendor_id, default 32473).  That dissector shows Type, Length, Reserved and the
--   Vendor/Org-ID itself and hands over the rest: the Vendor-NVSE-Type (2 bytes) and the
--   value.
-- * The previous-FA notification and acknowledgement (RFC 4064 experimental message 255,
--   sub-types 1 and 2, with mipro's Vendor/Org-ID) on UDP 434: protocol "mipro.msg" takes
--   the udp.port 434 entry and hands every other datagram to the built-in "mip" dissector
--   unchanged (preference mipro.udp434 turns this off).
-- * The home agents' redundancy session (protocol "mipro.sync", TCP port 4340, preference
--   mipro.sync_port): hellos, records, and the seed's Fig. 13b messages in them.
--
-- Byte layouts: docs/protocol.md.  Installation and what is shown: docs/wireshark.md.
-- Tested with Wireshark/tshark 4.0 (tests/unit/test_wireshark_lua.py).

local DEFAULT_VENDOR_ID = 32473 -- RFC 5612 documentation enterprise number
local MIP_PORT = 434

local mipro = Proto("mipro", "mipro vendor extensions (RFC 3115 NVSE)")
local msg = Proto("mipro.msg", "mipro experimental message (RFC 4064 type 255)")

-- ---------------------------------------------------------------- value strings

local vendor_types = {
    [1] = "Static routes",
    [2] = "Filter rules",
    [3] = "X.509 certificate fragment",
    [4] = "Previous-FA notification",
    [5] = "Home address in use",
}

local short_names = { -- for the Info column
    [1] = "routes", [2] = "filters", [3] = "certificate", [4] = "previous FA",
    [5] = "home address in use",
}

local ip_protocols = {
    [0] = "any", [1] = "ICMP", [6] = "TCP", [17] = "UDP", [47] = "GRE", [50] = "ESP",
    [51] = "AH", [58] = "IPv6-ICMP", [132] = "SCTP",
}

local verdicts = { [0] = "accept", [1] = "deny" }

local subtypes = { [1] = "Previous-FA notification", [2] = "Previous-FA acknowledgement" }

local statuses = {
    [0] = "Accepted",
    [64] = "Reason unspecified",
    [67] = "Mobile node failed authentication",
    [69] = "Identification mismatch",
    [127] = "No visitor with that home address",
}

local message_types = { [255] = "Message for Experimental Use (RFC 4064)" }

local ext_types = {
    [32] = "Mobile-Home Authentication",
    [33] = "Mobile-Foreign Authentication",
    [34] = "Foreign-Home Authentication",
    [36] = "Generalized Authentication",
    [38] = "Critical Vendor/Organization Specific Extension",
    [131] = "Mobile Node NAI",
    [134] = "Normal Vendor/Organization Specific Extension",
}

-- ---------------------------------------------------------------- NVSE fields

local F = {
    vendor_type = ProtoField.uint16("mipro.vendor_type", "Vendor-NVSE-Type", base.DEC,
                                    vendor_types),
    value = ProtoField.bytes("mipro.value", "Vendor-NVSE-Value"),
    entries = ProtoField.uint16("mipro.entries", "Entries", base.DEC),

    route = ProtoField.none("mipro.route", "Static route"),
    route_dest = ProtoField.ipv4("mipro.route.destination", "Destination"),
    route_plen = ProtoField.uint8("mipro.route.prefix_len", "Prefix length", base.DEC),
    route_flags = ProtoField.uint8("mipro.route.flags", "Flags", base.HEX),
    route_tunnel = ProtoField.bool("mipro.route.flags.tunnel", "Tunnel (T)", 8,
                                   { "via the Mobile IP tunnel (router is the home agent)",
                                     "local route on the visited network" }, 0x80),
    route_reserved = ProtoField.uint8("mipro.route.flags.reserved", "Reserved", base.HEX,
                                      nil, 0x7F),
    route_cost = ProtoField.uint16("mipro.route.cost", "Routing cost", base.DEC),
    route_router = ProtoField.ipv4("mipro.route.router", "Router"),

    rule = ProtoField.none("mipro.filter", "Filter rule"),
    f_src = ProtoField.ipv4("mipro.filter.source", "Source address"),
    f_src_plen = ProtoField.uint8("mipro.filter.source_prefix_len", "Source prefix length",
                                  base.DEC),
    f_dst_plen = ProtoField.uint8("mipro.filter.destination_prefix_len",
                                  "Destination prefix length", base.DEC),
    f_proto = ProtoField.uint8("mipro.filter.protocol", "Protocol", base.DEC, ip_protocols),
    f_action = ProtoField.uint8("mipro.filter.action", "Action", base.HEX),
    f_verdict = ProtoField.uint8("mipro.filter.action.verdict", "Verdict", base.DEC, verdicts,
                                 0x0F),
    f_log = ProtoField.bool("mipro.filter.action.log", "Log (LOG)", 8, nil, 0x10),
    f_nat = ProtoField.bool("mipro.filter.action.nat", "Source NAT (NAT)", 8, nil, 0x20),
    f_both = ProtoField.bool("mipro.filter.action.both", "Both directions (BOTH)", 8, nil, 0x40),
    f_reserved = ProtoField.bool("mipro.filter.action.reserved", "Reserved", 8, nil, 0x80),
    f_dst = ProtoField.ipv4("mipro.filter.destination", "Destination address"),
    f_sport_low = ProtoField.uint16("mipro.filter.sport_low", "Source port low", base.DEC),
    f_sport_high = ProtoField.uint16("mipro.filter.sport_high", "Source port high", base.DEC),
    f_dport_low = ProtoField.uint16("mipro.filter.dport_low", "Destination port low", base.DEC),
    f_dport_high = ProtoField.uint16("mipro.filter.dport_high", "Destination port high",
                                     base.DEC),
    f_nat_addr = ProtoField.ipv4("mipro.filter.nat_address", "NAT address"),

    cert_index = ProtoField.uint8("mipro.cert.index", "Fragment index", base.DEC),
    cert_count = ProtoField.uint8("mipro.cert.count", "Fragment count", base.DEC),
    cert_der = ProtoField.bytes("mipro.cert.der", "DER bytes"),

    pfa_addr = ProtoField.ipv4("mipro.prevfa.address", "Previous FA"),
    pfa_lifetime = ProtoField.uint16("mipro.prevfa.cache_lifetime", "Cache lifetime",
                                     base.DEC),
    pfa_reserved = ProtoField.uint16("mipro.prevfa.reserved", "Reserved", base.HEX),
    pfa_spi = ProtoField.uint32("mipro.prevfa.spi", "SPI", base.DEC_HEX),
    pfa_auth = ProtoField.bytes("mipro.prevfa.authenticator", "Authenticator"),

    hiu_home = ProtoField.ipv4("mipro.hoa_in_use.home_address", "Home address"),
    hiu_temp = ProtoField.ipv4("mipro.hoa_in_use.temporary_address", "Temporary address"),
}
mipro.fields = F

local E = {
    unknown_type = ProtoExpert.new("mipro.unknown_vendor_type", "Vendor-NVSE-Type not known",
                                   expert.group.UNDECODED, expert.severity.NOTE),
    bad_length = ProtoExpert.new("mipro.bad_length", "Value length does not fit the layout",
                                 expert.group.MALFORMED, expert.severity.ERROR),
    bad_value = ProtoExpert.new("mipro.bad_value", "Value mipro refuses",
                                expert.group.PROTOCOL, expert.severity.WARN),
}
mipro.experts = E

mipro.prefs.vendor_id = Pref.uint("Vendor/Org-ID", DEFAULT_VENDOR_ID,
    "Vendor/Org-ID (SMI enterprise number) of mipro's NVSEs and type-255 messages "
    .. "(the daemons' vendor_id; default 32473)")
mipro.prefs.sync_port = Pref.uint("TCP port of the HA redundancy session", 4340,
    "The home agents' sync session (the daemons' [redundancy] port; default 4340)")
mipro.prefs.udp434 = Pref.bool("Dissect mipro's type-255 messages on UDP 434", true,
    "Take the UDP 434 entry to show mipro's previous-FA notification and acknowledgement; "
    .. "every other datagram still goes to the built-in Mobile IP dissector")

-- ---------------------------------------------------------------- helpers

local function bit_set(value, mask) -- mask: one power of two
    return math.floor(value / mask) % 2 == 1
end

local function ip(range)
    return tostring(range:ipv4())
end

-- true when addr (a 4-byte range) has bits set past the prefix length
local function host_bits(range, plen)
    if plen >= 32 then
        return false
    end
    return range:uint() % (2 ^ (32 - plen)) ~= 0
end

local function ports(low, high)
    if low == 0 and high == 65535 then
        return "any"
    elseif low == high then
        return tostring(low)
    end
    return low .. "-" .. high
end

local function check_prefix(item, range, plen, what)
    if plen > 32 then
        item:add_proto_expert_info(E.bad_value, what .. " prefix length " .. plen .. " > 32")
    elseif host_bits(range, plen) then
        item:add_proto_expert_info(E.bad_value,
            what .. " " .. ip(range) .. "/" .. plen .. " has host bits set")
    end
end

-- ---------------------------------------------------------------- mipro vendor types

local function entry_list(tvb, tree, size, what, decode_one)
    local n = tvb:len()
    if n % size ~= 0 then
        tree:add_proto_expert_info(E.bad_length, string.format(
            "%s value of %d bytes is not a multiple of %d", what, n, size))
    end
    local count = math.floor(n / size)
    tree:add(F.entries, count):set_generated()
    for i = 0, count - 1 do
        decode_one(tvb(i * size, size), tree, i + 1)
    end
    if n % size ~= 0 then
        tree:add(F.value, tvb(count * size))
    end
    return count
end

local function route(r, tree, i)
    local plen, flags = r(4, 1):uint(), r(5, 1):uint()
    local tunnel = bit_set(flags, 0x80)
    local t = tree:add(F.route, r)
    local via = "via " .. ip(r(8, 4)) .. (tunnel and " (tunnel)" or " (local)")
    if not tunnel and r(8, 4):uint() == 0 then
        via = "directly connected (local)"
    end
    t:set_text(string.format("Route %d: %s/%d %s, cost %d", i, ip(r(0, 4)), plen, via,
        r(6, 2):uint()))
    t:add(F.route_dest, r(0, 4))
    local p = t:add(F.route_plen, r(4, 1))
    check_prefix(p, r(0, 4), plen, "destination")
    local f = t:add(F.route_flags, r(5, 1))
    f:add(F.route_tunnel, r(5, 1))
    f:add(F.route_reserved, r(5, 1))
    if flags % 0x80 ~= 0 then
        f:add_proto_expert_info(E.bad_value, "reserved route flags set")
    end
    t:add(F.route_cost, r(6, 2))
    t:add(F.route_router, r(8, 4))
end

local function filter_rule(r, tree, i)
    local src_plen, dst_plen = r(4, 1):uint(), r(5, 1):uint()
    local proto, action = r(6, 1):uint(), r(7, 1):uint()
    local sl, sh, dl, dh = r(12, 2):uint(), r(14, 2):uint(), r(16, 2):uint(), r(18, 2):uint()
    local verdict = action % 16
    local nat = bit_set(action, 0x20)
    local words = { verdicts[verdict] or ("verdict " .. verdict),
        ip_protocols[proto] and ip_protocols[proto]:lower() or ("protocol " .. proto),
        ip(r(0, 4)) .. "/" .. src_plen, "->", ip(r(8, 4)) .. "/" .. dst_plen,
        "sport " .. ports(sl, sh), "dport " .. ports(dl, dh) }
    if bit_set(action, 0x40) then words[#words + 1] = "both directions" end
    if bit_set(action, 0x10) then words[#words + 1] = "log" end
    if nat then
        words[#words + 1] = "NAT to " .. (r(20, 4):uint() == 0 and "the agent's own address"
                                          or ip(r(20, 4)))
    end
    local t = tree:add(F.rule, r)
    t:set_text(string.format("Rule %d: %s", i, table.concat(words, " ")))
    t:add(F.f_src, r(0, 4))
    check_prefix(t:add(F.f_src_plen, r(4, 1)), r(0, 4), src_plen, "source")
    check_prefix(t:add(F.f_dst_plen, r(5, 1)), r(8, 4), dst_plen, "destination")
    t:add(F.f_proto, r(6, 1))
    local a = t:add(F.f_action, r(7, 1))
    a:add(F.f_verdict, r(7, 1))
    a:add(F.f_log, r(7, 1))
    a:add(F.f_nat, r(7, 1))
    a:add(F.f_both, r(7, 1))
    a:add(F.f_reserved, r(7, 1))
    if verdict > 1 or bit_set(action, 0x80) then
        a:add_proto_expert_info(E.bad_value, string.format("unknown filter action 0x%02x",
                                                           action))
    end
    t:add(F.f_dst, r(8, 4))
    local sport = t:add(F.f_sport_low, r(12, 2))
    t:add(F.f_sport_high, r(14, 2))
    local dport = t:add(F.f_dport_low, r(16, 2))
    t:add(F.f_dport_high, r(18, 2))
    if sl > sh then sport:add_proto_expert_info(E.bad_value, "empty source port range") end
    if dl > dh then dport:add_proto_expert_info(E.bad_value, "empty destination port range") end
    if not (sl == 0 and sh == 65535 and dl == 0 and dh == 65535)
        and proto ~= 6 and proto ~= 17 and proto ~= 132 then
        t:add_proto_expert_info(E.bad_value, "ports need protocol 6, 17 or 132")
    end
    local n = t:add(F.f_nat_addr, r(20, 4))
    if not nat and r(20, 4):uint() ~= 0 then
        n:add_proto_expert_info(E.bad_value, "NAT address set without the NAT action")
    end
end

local decoders = {}

decoders[1] = function(tvb, tree)
    local n = entry_list(tvb, tree, 12, "static routes", route)
    return n .. (n == 1 and " route" or " routes")
end

decoders[2] = function(tvb, tree)
    local n = entry_list(tvb, tree, 24, "filter rules", filter_rule)
    return n .. (n == 1 and " rule" or " rules")
end

decoders[3] = function(tvb, tree)
    if tvb:len() < 2 then
        tree:add_proto_expert_info(E.bad_length, "certificate fragment shorter than 2 bytes")
        return nil
    end
    local index, count = tvb(0, 1):uint(), tvb(1, 1):uint()
    tree:add(F.cert_index, tvb(0, 1))
    local c = tree:add(F.cert_count, tvb(1, 1))
    if index >= count then
        c:add_proto_expert_info(E.bad_value, string.format("fragment %d of %d", index, count))
    end
    if tvb:len() > 2 then
        tree:add(F.cert_der, tvb(2))
    else
        tree:add(F.cert_der, tvb(2, 0))
    end
    return string.format("fragment %d of %d, %d bytes", index, count, tvb:len() - 2)
end

decoders[4] = function(tvb, tree)
    if tvb:len() < 12 then
        tree:add_proto_expert_info(E.bad_length, "previous-FA notification shorter than 12 bytes")
        return nil
    end
    tree:add(F.pfa_addr, tvb(0, 4))
    tree:add(F.pfa_lifetime, tvb(4, 2))
    local res = tree:add(F.pfa_reserved, tvb(6, 2))
    if tvb(6, 2):uint() ~= 0 then res:add_proto_expert_info(E.bad_value, "reserved not zero") end
    tree:add(F.pfa_spi, tvb(8, 4))
    local alen = tvb:len() - 12
    local a = tree:add(F.pfa_auth, alen > 0 and tvb(12) or tvb(12, 0))
    if alen ~= 16 and alen ~= 32 then
        a:add_proto_expert_info(E.bad_length, string.format(
            "authenticator of %d bytes (16 or 32 expected)", alen))
    end
    return "previous FA " .. ip(tvb(0, 4))
end

decoders[5] = function(tvb, tree)
    if tvb:len() ~= 8 then
        tree:add_proto_expert_info(E.bad_length, string.format(
            "home address in use: %d bytes, 8 expected", tvb:len()))
        if tvb:len() < 8 then return nil end
    end
    tree:add(F.hiu_home, tvb(0, 4))
    tree:add(F.hiu_temp, tvb(4, 4))
    if tvb:len() > 8 then tree:add(F.value, tvb(8)) end
    return ip(tvb(0, 4)) .. " in use, via " .. ip(tvb(4, 4))
end

-- Called by the Mobile IP dissector for an NVSE with our Vendor/Org-ID; tvb starts at the
-- Vendor-NVSE-Type.  Returns the bytes taken (all of them).
function mipro.dissector(tvb, pinfo, tree)
    local n = tvb:len()
    if n < 2 then
        tree:add_proto_expert_info(E.bad_length, "NVSE shorter than its Vendor-NVSE-Type")
        return n
    end
    local vtype = tvb(0, 2):uint()
    local name = vendor_types[vtype] or ("unknown vendor type " .. vtype)
    local t = tree:add(mipro, tvb(), "mipro " .. name)
    t:add(F.vendor_type, tvb(0, 2))
    local value = tvb(2):tvb()
    local decode = decoders[vtype]
    local summary
    if decode then
        summary = decode(value, t)
    else
        local v = t:add(F.value, n > 2 and tvb(2) or tvb(2, 0))
        v:add_proto_expert_info(E.unknown_type, string.format(
            "mipro Vendor-NVSE-Type %d not known to this dissector", vtype))
    end
    if summary then
        t:append_text(": " .. summary)
    end
    pinfo.cols.info:append(", mipro " .. (short_names[vtype] or ("type " .. vtype)))
    return n
end

-- ---------------------------------------------------------------- type-255 messages

local M = {
    type = ProtoField.uint8("mipro.msg.type", "Message Type", base.DEC, message_types),
    length = ProtoField.uint8("mipro.msg.length", "Length", base.DEC),
    subtype = ProtoField.uint8("mipro.msg.subtype", "Sub-Type", base.DEC, subtypes),
    flags = ProtoField.uint8("mipro.msg.flags", "Flags", base.HEX),
    flag_a = ProtoField.bool("mipro.msg.flags.a", "Acknowledgement requested (A)", 8, nil, 0x80),
    flag_reserved = ProtoField.uint8("mipro.msg.flags.reserved", "Reserved", base.HEX, nil,
                                     0x7F),
    status = ProtoField.uint8("mipro.msg.status", "Status", base.DEC, statuses),
    vendor_id = ProtoField.uint32("mipro.msg.vendor_id", "Vendor/Org-ID", base.DEC),
    home = ProtoField.ipv4("mipro.msg.home_address", "Home Address"),
    coa = ProtoField.ipv4("mipro.msg.care_of_address", "New Care-of Address"),
    ident = ProtoField.uint64("mipro.msg.identification", "Identification", base.HEX),
    ident_time = ProtoField.absolute_time("mipro.msg.identification.time",
                                          "Identification as NTP time", base.UTC),
    lifetime = ProtoField.uint16("mipro.msg.lifetime", "Cache Lifetime", base.DEC),
    reserved = ProtoField.uint16("mipro.msg.reserved", "Reserved", base.HEX),
    extensions = ProtoField.none("mipro.msg.extensions", "Extensions"),
    ext = ProtoField.none("mipro.msg.ext", "Extension"),
    ext_type = ProtoField.uint8("mipro.msg.ext.type", "Extension Type", base.DEC, ext_types),
    ext_subtype = ProtoField.uint8("mipro.msg.ext.subtype", "Sub-Type", base.DEC),
    ext_reserved8 = ProtoField.uint8("mipro.msg.ext.reserved8", "Reserved", base.HEX),
    ext_length = ProtoField.uint16("mipro.msg.ext.length", "Extension Length", base.DEC),
    ext_reserved = ProtoField.uint16("mipro.msg.ext.reserved", "Reserved", base.HEX),
    ext_vendor_id = ProtoField.uint32("mipro.msg.ext.vendor_id", "Vendor/Org-ID", base.DEC),
    ext_spi = ProtoField.uint32("mipro.msg.ext.spi", "SPI", base.DEC_HEX),
    ext_auth = ProtoField.bytes("mipro.msg.ext.authenticator", "Authenticator"),
    ext_data = ProtoField.bytes("mipro.msg.ext.data", "Data"),
}
msg.fields = M

local ME = {
    bad_length = ProtoExpert.new("mipro.msg.bad_length", "Length not that of the sub-type",
                                 expert.group.MALFORMED, expert.severity.ERROR),
    reserved = ProtoExpert.new("mipro.msg.reserved_set", "Reserved bits set",
                               expert.group.PROTOCOL, expert.severity.WARN),
    truncated = ProtoExpert.new("mipro.msg.truncated_ext", "Extension runs past the datagram",
                                expert.group.MALFORMED, expert.severity.ERROR),
}
msg.experts = ME

local LAYOUT = { [1] = { length = 26, fixed = 28 }, [2] = { length = 18, fixed = 20 } }

local mip_handle = Dissector.get("mip")
local nvse_table = DissectorTable.get("mip.nvse_ext")

-- Whether tvb is one of mipro's type-255 messages (for the configured Vendor/Org-ID).
local function is_mipro_message(tvb)
    if tvb:len() < 8 or tvb(0, 1):uint() ~= 255 then return false end
    local layout = LAYOUT[tvb(2, 1):uint()]
    return layout ~= nil and tvb:len() >= layout.fixed
        and tvb(4, 4):uint() == mipro.prefs.vendor_id
end

-- The extensions after the fixed part, RFC 5944 §3.5 short format (type, length, value),
-- with the long formats of types 36 and 38.
local function extensions(tvb, offset, pinfo, tree)
    local n = tvb:len()
    while offset < n do
        local etype = tvb(offset, 1):uint()
        local long = etype == 36 or etype == 38
        local hdr = long and 4 or 2
        if offset + hdr > n then
            tree:add(M.ext_data, tvb(offset)):add_proto_expert_info(ME.truncated,
                "extension header runs past the datagram")
            return
        end
        local elen = long and tvb(offset + 2, 2):uint() or tvb(offset + 1, 1):uint()
        local t = tree:add(M.ext, tvb(offset, math.min(hdr + elen, n - offset)))
        t:set_text("Extension: " .. (ext_types[etype] or ("Unknown Extension " .. etype)))
        t:add(M.ext_type, tvb(offset, 1))
        if long then
            t:add(etype == 36 and M.ext_subtype or M.ext_reserved8, tvb(offset + 1, 1))
            t:add(M.ext_length, tvb(offset + 2, 2))
        else
            t:add(M.ext_length, tvb(offset + 1, 1))
        end
        local v = offset + hdr
        if v + elen > n then
            t:add_proto_expert_info(ME.truncated, string.format(
                "extension of %d bytes, %d left", elen, n - v))
            if n > v then t:add(M.ext_data, tvb(v)) end
            return
        end
        if (etype == 32 or etype == 33 or etype == 34 or etype == 36) and elen >= 4 then
            t:add(M.ext_spi, tvb(v, 4))
            t:add(M.ext_auth, tvb(v + 4, elen - 4))
            t:append_text(string.format(", SPI %d", tvb(v, 4):uint()))
        elseif etype == 134 and elen >= 8 then
            t:add(M.ext_reserved, tvb(v, 2))
            t:add(M.ext_vendor_id, tvb(v + 2, 4))
            local sub = tvb(v + 6, elen - 6):tvb()
            if nvse_table:try(tvb(v + 2, 4):uint(), sub, pinfo, t) == 0 then
                t:add(M.ext_data, tvb(v + 6, elen - 6))
            end
        elseif elen > 0 then
            t:add(M.ext_data, tvb(v, elen))
        end
        offset = v + elen
    end
end

local function dissect_message(tvb, pinfo, tree)
    local subtype = tvb(2, 1):uint()
    local layout = LAYOUT[subtype]
    pinfo.cols.protocol = "mipro"
    local t = tree:add(msg, tvb(), "mipro " .. subtypes[subtype])
    t:add(M.type, tvb(0, 1))
    local len = t:add(M.length, tvb(1, 1))
    if tvb(1, 1):uint() ~= layout.length then
        len:add_proto_expert_info(ME.bad_length, string.format(
            "Length %d, %d expected", tvb(1, 1):uint(), layout.length))
    end
    t:add(M.subtype, tvb(2, 1))
    local info
    if subtype == 1 then
        local flags = tvb(3, 1):uint()
        local f = t:add(M.flags, tvb(3, 1))
        f:add(M.flag_a, tvb(3, 1))
        f:add(M.flag_reserved, tvb(3, 1))
        if flags % 0x80 ~= 0 then
            f:add_proto_expert_info(ME.reserved, "reserved notification flags set")
        end
        info = string.format("Previous-FA notification: HoA=%s CoA=%s%s", ip(tvb(8, 4)),
                             ip(tvb(12, 4)), bit_set(flags, 0x80) and " A" or "")
    else
        local status = tvb(3, 1):uint()
        t:add(M.status, tvb(3, 1))
        info = string.format("Previous-FA acknowledgement: HoA=%s Status=%d (%s)", ip(tvb(8, 4)),
                             status, statuses[status] or "unknown")
    end
    t:add(M.vendor_id, tvb(4, 4))
    t:add(M.home, tvb(8, 4))
    local ident_at = 12
    if subtype == 1 then
        t:add(M.coa, tvb(12, 4))
        ident_at = 16
    end
    local id = t:add(M.ident, tvb(ident_at, 8))
    id:add_packet_field(M.ident_time, tvb(ident_at, 8), ENC_TIME_NTP + ENC_BIG_ENDIAN)
      :set_generated()
    if subtype == 1 then
        t:add(M.lifetime, tvb(24, 2))
        local r = t:add(M.reserved, tvb(26, 2))
        if tvb(26, 2):uint() ~= 0 then
            r:add_proto_expert_info(ME.reserved, "reserved octets not zero")
        end
    end
    pinfo.cols.info = info
    if tvb:len() > layout.fixed then
        local exts = t:add(M.extensions, tvb(layout.fixed))
        extensions(tvb, layout.fixed, pinfo, exts)
    end
    return tvb:len()
end

function msg.dissector(tvb, pinfo, tree)
    if is_mipro_message(tvb) then
        return dissect_message(tvb, pinfo, tree)
    end
    return mip_handle:call(tvb, pinfo, tree)
end


-- ---------------------------------------------------------------- HA redundancy session

-- The home agents' sync session (docs/protocol.md, "Home agent redundancy"): on TCP
-- (redundancy.port, default 4340), each side's hello, then records of Length (4), Kind (1),
-- Sequence (8), body, MAC (32); a message record's body is a seed Fig. 13b message.

local sync = Proto("mipro.sync", "mipro HA redundancy session (Fig. 13b)")

local SYNC_MAGIC = "MIPRO-HA-SYNC"
local HELLO_LEN = 13 + 1 + 16
local MAC_LEN = 32
local MAX_RECORD = 1048576

local record_kinds = { [1] = "Message", [2] = "Acknowledgement" }
local sync_types = { [2] = "Data dump request", [3] = "Data dump", [4] = "Data forward" }
local sync_subtypes = { [1] = "Mobile IP" }
local encapsulations = { [4] = "IP-in-IP", [47] = "GRE", [17] = "UDP (RFC 3519)" }
local checksum_status = { [0] = "Bad", [1] = "Good" }
local directions = { I = "from the initiator, the lower address",
                     R = "from the responder, the higher address" }

local S = {
    hello = ProtoField.none("mipro.sync.hello", "Hello"),
    magic = ProtoField.string("mipro.sync.magic", "Magic"),
    version = ProtoField.uint8("mipro.sync.version", "Version", base.DEC),
    nonce = ProtoField.bytes("mipro.sync.nonce", "Nonce"),
    record = ProtoField.none("mipro.sync.record", "Record"),
    length = ProtoField.uint32("mipro.sync.length", "Length", base.DEC),
    kind = ProtoField.uint8("mipro.sync.kind", "Kind", base.DEC, record_kinds),
    sequence = ProtoField.uint64("mipro.sync.sequence", "Sequence", base.DEC),
    acked = ProtoField.uint64("mipro.sync.acked", "Highest sequence received", base.DEC),
    body = ProtoField.bytes("mipro.sync.body", "Body"),
    mac = ProtoField.bytes("mipro.sync.mac", "MAC (HMAC-SHA-256, not verified)"),
    direction = ProtoField.string("mipro.sync.direction", "Direction"),

    m_version = ProtoField.uint8("mipro.sync.msg.version", "Version", base.DEC, nil, 0xF0),
    m_type = ProtoField.uint8("mipro.sync.msg.type", "Type", base.DEC, sync_types, 0x0F),
    m_vrid = ProtoField.uint8("mipro.sync.msg.vrid", "Virtual Rtr ID", base.DEC),
    m_priority = ProtoField.uint8("mipro.sync.msg.priority", "Priority", base.DEC),
    m_count = ProtoField.uint8("mipro.sync.msg.count_ip", "Count IP Addrs", base.DEC),
    m_auth_type = ProtoField.uint8("mipro.sync.msg.auth_type", "Auth Type", base.DEC),
    m_adver = ProtoField.uint8("mipro.sync.msg.adver_int", "Adver Int", base.DEC),
    m_checksum = ProtoField.uint16("mipro.sync.msg.checksum", "Checksum", base.HEX),
    m_checksum_status = ProtoField.uint8("mipro.sync.msg.checksum.status", "Checksum Status",
                                         base.DEC, checksum_status),
    m_address = ProtoField.ipv4("mipro.sync.msg.address", "IP Address"),
    m_auth_data = ProtoField.bytes("mipro.sync.msg.auth_data", "Authentication Data"),
    m_count_d = ProtoField.uint16("mipro.sync.msg.count_d", "Count-D", base.DEC),
    m_subtype = ProtoField.uint8("mipro.sync.msg.subtype", "Subtype", base.DEC, sync_subtypes),
    m_flags = ProtoField.uint8("mipro.sync.msg.flags", "Flags", base.HEX),
    m_more = ProtoField.bool("mipro.sync.msg.flags.more", "More (MORE)", 8, nil, 0x01),
    m_primary = ProtoField.bool("mipro.sync.msg.flags.primary", "Sender is primary (PRIMARY)",
                                8, nil, 0x02),
    m_replay = ProtoField.bool("mipro.sync.msg.flags.replay",
                               "Replay state only, no binding (REPLAY)", 8, nil, 0x04),
    m_flags_reserved = ProtoField.uint8("mipro.sync.msg.flags.reserved", "Reserved", base.HEX,
                                        nil, 0xF8),

    block = ProtoField.none("mipro.sync.block", "Data block"),
    b_length = ProtoField.uint16("mipro.sync.block.length", "Data block length", base.DEC),
    b_home = ProtoField.ipv4("mipro.sync.block.home_address", "Home Address"),
    b_coa = ProtoField.ipv4("mipro.sync.block.care_of_address", "Care-of Address"),
    b_ha = ProtoField.ipv4("mipro.sync.block.home_agent", "Home Agent"),
    b_source = ProtoField.ipv4("mipro.sync.block.source", "Source"),
    b_source_port = ProtoField.uint16("mipro.sync.block.source_port", "Source Port", base.DEC),
    b_flags = ProtoField.uint8("mipro.sync.block.flags", "Flags", base.HEX),
    b_reverse = ProtoField.bool("mipro.sync.block.flags.reverse", "Reverse tunnel", 8, nil,
                                0x01),
    b_nonce_flag = ProtoField.bool("mipro.sync.block.flags.nonce",
                                   "Nonce replay protection (else timestamps)", 8, nil, 0x02),
    b_flags_reserved = ProtoField.uint8("mipro.sync.block.flags.reserved", "Reserved",
                                        base.HEX, nil, 0xFC),
    b_encap = ProtoField.uint8("mipro.sync.block.encapsulation", "Encapsulation", base.DEC,
                               encapsulations),
    b_lifetime = ProtoField.uint16("mipro.sync.block.lifetime", "Lifetime (granted)",
                                   base.DEC),
    b_left = ProtoField.uint16("mipro.sync.block.lifetime_left", "Lifetime Left", base.DEC),
    b_ident = ProtoField.uint64("mipro.sync.block.identification", "Identification",
                                base.HEX),
    b_ident_time = ProtoField.absolute_time("mipro.sync.block.identification.time",
                                            "Identification as NTP time", base.UTC),
    b_nonce = ProtoField.uint32("mipro.sync.block.nonce", "Nonce", base.HEX),
    b_spi = ProtoField.uint32("mipro.sync.block.spi", "SPI", base.DEC_HEX),
    b_nai_length = ProtoField.uint8("mipro.sync.block.nai_length", "NAI Length", base.DEC),
    b_reserved = ProtoField.uint24("mipro.sync.block.reserved", "Reserved", base.HEX),
    b_nai = ProtoField.string("mipro.sync.block.nai", "NAI"),
}
sync.fields = S

local SE = {
    bad_hello = ProtoExpert.new("mipro.sync.bad_hello", "Not a mipro sync hello",
                                expert.group.MALFORMED, expert.severity.ERROR),
    bad_length = ProtoExpert.new("mipro.sync.bad_length", "Length does not fit the layout",
                                 expert.group.MALFORMED, expert.severity.ERROR),
    bad_checksum = ProtoExpert.new("mipro.sync.bad_checksum", "Checksum mismatch",
                                   expert.group.CHECKSUM, expert.severity.ERROR),
    bad_value = ProtoExpert.new("mipro.sync.bad_value", "Value mipro refuses",
                                expert.group.PROTOCOL, expert.severity.WARN),
}
sync.experts = SE

-- RFC 1071: the one's complement sum of the 16-bit words of range; 0xffff when the
-- checksum in it is right.
local function ones_sum(range)
    local n, s = range:len(), 0
    local bytes = range:bytes()
    for i = 0, n - 2, 2 do
        s = s + bytes:get_index(i) * 256 + bytes:get_index(i + 1)
    end
    if n % 2 == 1 then s = s + bytes:get_index(n - 1) * 256 end
    while s > 0xFFFF do s = s % 0x10000 + math.floor(s / 0x10000) end
    return s
end

local function binding_block(r, tree, i, replay)
    local n = r:len()
    local t = tree:add(S.block, r)
    if n < 44 then
        t:set_text(string.format("Data block %d (%d bytes)", i, n))
        t:add_proto_expert_info(SE.bad_length, string.format(
            "binding block of %d bytes, at least 44", n))
        t:add(S.body, r)
        return
    end
    local flags, encap = r(18, 1):uint(), r(19, 1):uint()
    local lifetime, left = r(20, 2):uint(), r(22, 2):uint()
    local nai_len = r(40, 1):uint()
    local words = { ip(r(0, 4)) .. " at " .. ip(r(4, 4)) .. " (" .. (encapsulations[encap] or
        ("encapsulation " .. encap)) .. (bit_set(flags, 0x01) and ", reverse tunnel)" or ")") }
    if replay then  -- replay state only: Lifetime is its age, no binding
        words = { ip(r(0, 4)) .. ": replay state, accepted " .. lifetime .. " s ago" }
    else
        words[#words + 1] = left == 0 and "removed" or string.format("%d s of %d left", left,
                                                                      lifetime)
    end
    if nai_len > 0 and n >= 44 + nai_len then
        words[#words + 1] = r(44, nai_len):string()
    end
    t:set_text(string.format("Binding %d: %s", i, table.concat(words, ", ")))
    t:add(S.b_home, r(0, 4))
    t:add(S.b_coa, r(4, 4))
    t:add(S.b_ha, r(8, 4))
    t:add(S.b_source, r(12, 4))
    t:add(S.b_source_port, r(16, 2))
    local f = t:add(S.b_flags, r(18, 1))
    f:add(S.b_reverse, r(18, 1))
    f:add(S.b_nonce_flag, r(18, 1))
    f:add(S.b_flags_reserved, r(18, 1))
    if flags >= 4 then
        f:add_proto_expert_info(SE.bad_value, string.format("unknown block flags 0x%02x", flags))
    end
    local e = t:add(S.b_encap, r(19, 1))
    if not encapsulations[encap] then
        e:add_proto_expert_info(SE.bad_value, "unknown encapsulation " .. encap)
    end
    t:add(S.b_lifetime, r(20, 2))
    local l = t:add(S.b_left, r(22, 2))
    if left > lifetime then
        l:add_proto_expert_info(SE.bad_value, string.format("lifetime left %d > granted %d",
                                                            left, lifetime))
    end
    t:add(S.b_ident, r(24, 8)):add_packet_field(S.b_ident_time, r(24, 8),
                                                ENC_TIME_NTP + ENC_BIG_ENDIAN):set_generated()
    t:add(S.b_nonce, r(32, 4))
    t:add(S.b_spi, r(36, 4))
    t:add(S.b_nai_length, r(40, 1))
    t:add(S.b_reserved, r(41, 3))
    if n ~= 44 + nai_len then
        t:add_proto_expert_info(SE.bad_length, string.format(
            "block of %d bytes, %d for an NAI of %d", n, 44 + nai_len, nai_len))
    end
    if nai_len > 0 and n >= 44 + nai_len then
        t:add(S.b_nai, r(44, nai_len))
    end
end

-- A Fig. 13b message (the body of a message record); returns a summary.
local function sync_message(tvb, tree)
    local n = tvb:len()
    local t = tree:add(S.record, tvb())
    if n < 20 then
        t:set_text("Redundancy message (truncated)")
        t:add_proto_expert_info(SE.bad_length, string.format(
            "redundancy message of %d bytes, at least 20", n))
        return "truncated message"
    end
    local vt, vrid = tvb(0, 1):uint(), tvb(1, 1):uint()
    local mtype, count = vt % 16, tvb(3, 1):uint()
    local name = sync_types[mtype] or ("type " .. mtype)
    t:set_text("Redundancy message: " .. name .. ", VRID " .. vrid)
    local v = t:add(S.m_version, tvb(0, 1))
    if math.floor(vt / 16) ~= 2 then
        v:add_proto_expert_info(SE.bad_value, "version " .. math.floor(vt / 16) .. ", not 2")
    end
    local ty = t:add(S.m_type, tvb(0, 1))
    if not sync_types[mtype] then
        ty:add_proto_expert_info(SE.bad_value, "unknown redundancy message type " .. mtype)
    end
    local vr = t:add(S.m_vrid, tvb(1, 1))
    if vrid == 0 then vr:add_proto_expert_info(SE.bad_value, "VRID 0") end
    t:add(S.m_priority, tvb(2, 1))
    t:add(S.m_count, tvb(3, 1))
    local auth = t:add(S.m_auth_type, tvb(4, 1))
    if tvb(4, 1):uint() ~= 0 then
        auth:add_proto_expert_info(SE.bad_value, "auth type " .. tvb(4, 1):uint() ..
                                   ": the session authenticates, use 0")
    end
    t:add(S.m_adver, tvb(5, 1))
    local c = t:add(S.m_checksum, tvb(6, 2))
    local good = ones_sum(tvb()) == 0xFFFF
    c:add(S.m_checksum_status, good and 1 or 0):set_generated()
    if not good then
        local zeroed = ones_sum(tvb(0, 6)) + ones_sum(tvb(8))
        while zeroed > 0xFFFF do zeroed = zeroed % 0x10000 + math.floor(zeroed / 0x10000) end
        c:add_proto_expert_info(SE.bad_checksum, string.format(
            "checksum 0x%04x, 0x%04x expected", tvb(6, 2):uint(), 0xFFFF - zeroed))
    end
    local at = 8
    if n < at + 4 * count + 12 then
        t:add_proto_expert_info(SE.bad_length, string.format(
            "%d bytes: too short for %d addresses", n, count))
        return name
    end
    for _ = 1, count do
        t:add(S.m_address, tvb(at, 4))
        at = at + 4
    end
    t:add(S.m_auth_data, tvb(at, 8))
    at = at + 8
    local nblocks = tvb(at, 2):uint()
    t:add(S.m_count_d, tvb(at, 2))
    local st = t:add(S.m_subtype, tvb(at + 2, 1))
    if tvb(at + 2, 1):uint() ~= 1 then
        st:add_proto_expert_info(SE.bad_value, "unknown data subtype " .. tvb(at + 2, 1):uint())
    end
    local flags = tvb(at + 3, 1):uint()
    local f = t:add(S.m_flags, tvb(at + 3, 1))
    f:add(S.m_more, tvb(at + 3, 1))
    f:add(S.m_primary, tvb(at + 3, 1))
    f:add(S.m_replay, tvb(at + 3, 1))
    f:add(S.m_flags_reserved, tvb(at + 3, 1))
    local replay = bit_set(flags, 0x04)
    if flags > 7 then
        f:add_proto_expert_info(SE.bad_value, string.format("unknown flags 0x%02x", flags))
    elseif replay and (mtype ~= 4 or flags ~= 4) then
        f:add_proto_expert_info(SE.bad_value, "REPLAY is for a data forward from a home " ..
                                "agent that is not primary (no MORE, no PRIMARY)")
    end
    at = at + 4
    if mtype == 2 and nblocks > 0 then
        t:add_proto_expert_info(SE.bad_value, "a data dump request carries no data")
    end
    for i = 1, nblocks do
        if at + 2 > n then
            t:add_proto_expert_info(SE.bad_length, string.format(
                "%d data blocks announced, %d found", nblocks, i - 1))
            return name
        end
        local blen = tvb(at, 2):uint()
        if at + 2 + blen > n then
            t:add(S.b_length, tvb(at, 2)):add_proto_expert_info(SE.bad_length, string.format(
                "data block of %d bytes, %d left", blen, n - at - 2))
            return name
        end
        t:add(S.b_length, tvb(at, 2))
        binding_block(tvb(at + 2, blen), t, i, replay)
        at = at + 2 + blen
    end
    if at < n then
        t:add(S.body, tvb(at)):add_proto_expert_info(SE.bad_length, string.format(
            "%d bytes after the data blocks", n - at))
    end
    local summary = string.format("%s VRID %d", name, vrid)
    if replay then
        summary = summary .. string.format(": %d replay state%s", nblocks,
                                           nblocks == 1 and "" or "s")
    elseif mtype ~= 2 then
        summary = summary .. string.format(": %d binding%s", nblocks, nblocks == 1 and "" or "s")
    end
    if flags % 2 == 1 then summary = summary .. " (more)" end
    return summary
end

local function addr_number(addr)
    local a, b, c, d = tostring(addr):match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if not a then return nil end
    return ((tonumber(a) * 256 + tonumber(b)) * 256 + tonumber(c)) * 256 + tonumber(d)
end

local function sync_pdu_length(tvb, pinfo, offset)
    if tvb(offset, 4):string() == SYNC_MAGIC:sub(1, 4) then
        return HELLO_LEN
    end
    local length = tvb(offset, 4):uint()
    if length < 1 + 8 + MAC_LEN or length > MAX_RECORD then
        return tvb:len() - offset -- not a record: show the rest as it is
    end
    return 4 + length
end

local function sync_info(pinfo, text)
    if pinfo.private.mipro_sync then
        pinfo.cols.info:append(", " .. text)
    else
        pinfo.cols.info = text
        pinfo.private.mipro_sync = "1"
    end
end

local function sync_pdu(tvb, pinfo, tree)
    pinfo.cols.protocol = "mipro sync"
    local n = tvb:len()
    local t = tree:add(sync, tvb())
    if tvb(0, 4):string() == SYNC_MAGIC:sub(1, 4) then
        local h = t:add(S.hello, tvb())
        h:set_text("Hello")
        local m = h:add(S.magic, tvb(0, math.min(13, n)))
        if n < HELLO_LEN or tvb(0, 13):string() ~= SYNC_MAGIC then
            m:add_proto_expert_info(SE.bad_hello, "not a mipro sync session")
            return n
        end
        local v = h:add(S.version, tvb(13, 1))
        if tvb(13, 1):uint() ~= 1 then
            v:add_proto_expert_info(SE.bad_value, "session version " .. tvb(13, 1):uint())
        end
        h:add(S.nonce, tvb(14, 16))
        t:append_text(", Hello")
        sync_info(pinfo, "Hello")
        return n
    end
    local length = tvb(0, 4):uint()
    local len_item = t:add(S.length, tvb(0, 4))
    if n < 4 + 1 + 8 + MAC_LEN or length ~= n - 4 then
        len_item:add_proto_expert_info(SE.bad_length, string.format(
            "record length %d (from 41 to %d)", length, MAX_RECORD))
        t:add(S.body, tvb(4))
        sync_info(pinfo, "Not a record")
        return n
    end
    local kind = tvb(4, 1):uint()
    local k = t:add(S.kind, tvb(4, 1))
    t:add(S.sequence, tvb(5, 8))
    local src, dst = addr_number(pinfo.src), addr_number(pinfo.dst)
    if src and dst and src ~= dst then
        local d = src < dst and "I" or "R"
        local item = t:add(S.direction, d)
        item:append_text(" (" .. directions[d] .. ")")
        item:set_generated()
    end
    local body = tvb(13, n - 13 - MAC_LEN)
    local text
    if kind == 1 then
        text = sync_message(body:tvb(), t)
    elseif kind == 2 then
        local a = t:add(S.acked, body)
        if body:len() ~= 8 then
            a:add_proto_expert_info(SE.bad_length, string.format(
                "acknowledgement of %d bytes, 8 expected", body:len()))
            text = "Acknowledgement"
        else
            text = "Ack " .. tostring(body:uint64())
        end
    else
        k:add_proto_expert_info(SE.bad_value, "record kind " .. kind)
        t:add(S.body, body)
        text = "Record kind " .. kind
    end
    t:add(S.mac, tvb(n - MAC_LEN, MAC_LEN))
    t:append_text(string.format(", #%s %s", tostring(tvb(5, 8):uint64()), text))
    sync_info(pinfo, string.format("#%s %s", tostring(tvb(5, 8):uint64()), text))
    return n
end

function sync.dissector(tvb, pinfo, tree)
    dissect_tcp_pdus(tvb, tree, 4, sync_pdu_length, sync_pdu, true)
    return tvb:len()
end

-- ---------------------------------------------------------------- registration

-- What the tables held before us, put back when a preference moves us away (another
-- dissector registered for the Vendor/Org-ID we took, e.g. 3GPP2's 5535).
local registered_vendor, displaced = nil, nil
local udp434 = nil
local sync_port, sync_displaced = nil, nil

local function register()
    local vendor = mipro.prefs.vendor_id
    if vendor ~= registered_vendor then
        if registered_vendor ~= nil then
            if displaced then
                nvse_table:add(registered_vendor, displaced)
            else
                nvse_table:remove(registered_vendor, mipro)
            end
        end
        displaced = nvse_table:get_dissector(vendor)
        nvse_table:add(vendor, mipro)
        registered_vendor = vendor
    end
    local want = mipro.prefs.udp434
    if want ~= udp434 then
        DissectorTable.get("udp.port"):add(MIP_PORT, want and msg or mip_handle)
        udp434 = want
    end
    local port = mipro.prefs.sync_port
    if port ~= sync_port then
        local tcp = DissectorTable.get("tcp.port")
        if sync_port ~= nil then
            if sync_displaced then
                tcp:add(sync_port, sync_displaced)
            else
                tcp:remove(sync_port, sync)
            end
        end
        sync_displaced = tcp:get_dissector(port)
        tcp:add(port, sync)
        sync_port = port
    end
end

function mipro.prefs_changed()
    register()
end

register()
