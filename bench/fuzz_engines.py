#!/usr/bin/env python3
"""Stateful fuzzing of the home agent, foreign agent and mobile node engines.

A small world per episode: a home agent with several subscribers (with and without NAIs,
timestamp and nonce replay protection, HMAC-MD5, keyed MD5 and HMAC-SHA-256 keys, route
and filter profiles), two foreign agents (FA1 with FA-HA and MN-FA keys, FA2 with neither
FA-HA key nor most MN-FA keys), and four mobile nodes (FA mode, co-located, behind a NAPT,
auto).  The real engines talk to each other through an in-memory network (``World.route``),
so the corpus is made of the messages the real peers produce.  Each step then picks an
operation aimed at the engine under test (``--engine``): deliver valid traffic, advance
the clock and run the timers, replay an earlier message, mutate fixed fields, reorder,
duplicate, insert or delete extensions (mipro's NVSEs included, before, between and after
the authenticators), tamper with authenticators (extra, duplicate, wrong keys, wrong SPIs),
re-sign with the RIGHT keys after mutating (so authenticated-but-wrong messages reach deep
logic), truncate, random bytes, craft replies / Binding Updates / advertisements for the
current state, interleave other peers' messages, make the kernel refuse an install.

After EVERY engine call (of every engine, not only the one under test) the invariants are
checked by ``Checker``, which recomputes what it needs from the bytes and the keys with
its own parser and its own MACs (not mipro.wire, not mipro.security):

HA   no exception; a binding only for the home address of the subscriber whose key signed
     the request (its NAI, or its home address, named it); none for 0.0.0.0 or an address
     nobody owns; care-of addresses valid (unicast, not ours, not the home network); a
     signed reply only to a request that authenticated, signed with that subscriber's key
     (and FA-HA last towards a keyed FA); when the answer is not an acceptance nothing
     changed: bindings, replay state, challenges, except a nonce handed out on first
     contact, and the replay state advancing plus a challenge issued on a 131 NAPT
     challenge (HomeAgent._check_replay); kernel actions (InstallBinding/RemoveBinding)
     only with an acceptance, a deregistration, an expiry or install_failed, and a kernel
     mirror fed by them always equal to the binding table.
FA   no exception; a visitor's routes and filters are exactly the mipro NVSE entries
     between the MN-HA and a verified FA-HA authenticator (key of that visitor's home agent)
     of the reply that created it; none without a key for that home agent; only replies
     from the visitor's home agent matching a pending request (and FA-HA verified when the
     FA has a key) change anything, else nothing changes and nothing is sent; pending
     requests within max_pending / max_pending_per_mac and consistently counted; a
     relayed request is the MN's bytes up to its MN-HA authenticator (+ FA-HA); a
     previous-FA notification kept only under a verified MN-FA authenticator; a Binding
     Update that does not verify with an MN-FA key changes nothing and gets no answer;
     AddVisitor/RemoveVisitor mirror equal to the visitor table; timers only expire what
     is due.
MN   no exception (IllegalTransition included); the state is always a ``State``; a reply
     that is unsolicited or does not verify with the MN-HA key changes nothing; TunnelUp
     routes/filters exactly the NVSE entries the accepted reply's MN-HA authenticator
     covers; OwnAddressOut(True) only under an MN-FA authenticator verified with the key
     for the current agent, naming the MN's own home address; requests it sends verify.
all  one input provokes a bounded exchange: at most 100 datagrams between the engines at
     one instant (more is a message loop, a request storm in the real network).

Everything is deterministic for a seed (the engines' ``secrets`` and the advertiser's
``random`` are replaced by seeded generators while fuzzing); a failure prints the seed,
episode, step, the episode's operations and the offending call, saves the offending input
as hex, and says how to reproduce it.  ``make fuzz`` runs 1,000,000 steps per engine.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import random
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address as A
from ipaddress import IPv4Network as N
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mipro.core import advertiser as _advertiser_module  # noqa: E402
from mipro.core import ha as _ha_module  # noqa: E402
from mipro.core import mn as _mn_module  # noqa: E402
from mipro.core.actions import (  # noqa: E402
    FetchSubscriber,
    InstallBinding,
    Log,
    RemoveBinding,
    Send,
    SendIcmp,
    SendToLink,
)
from mipro.core.advertiser import Advertiser, AdvertPolicy  # noqa: E402
from mipro.core.fa import AddVisitor, FaPolicy, ForeignAgent, RemoveVisitor  # noqa: E402
from mipro.core.ha import HaPolicy, HomeAgent  # noqa: E402
from mipro.core.mn import (  # noqa: E402
    MnSettings,
    MobileNode,
    OwnAddressOut,
    State,
    TunnelUp,
)
from mipro.security import Algorithm, SecurityAssociation  # noqa: E402
from mipro.security import replay as _replay_module  # noqa: E402
from mipro.security.replay import ReplayMethod, ntp_from_unix  # noqa: E402
from mipro.subscribers.cache import CachedStore  # noqa: E402
from mipro.subscribers.model import MemoryStore, Subscriber, Unavailable  # noqa: E402
from mipro.wire import (  # noqa: E402
    AgentAdvertisement,
    AgentFlags,
    BindingUpdate,
    CertificateExtension,
    Cvse,
    FilterRule,
    FilterRulesExtension,
    GeneralizedAuth,
    HomeAddressInUse,
    MnFaChallenge,
    MobilityAgentExtension,
    Nai,
    Nvse,
    PrefixLengthsExtension,
    PreviousFaNotification,
    RawExtension,
    RegistrationReply,
    RegistrationRequest,
    StaticRoute,
    StaticRoutesExtension,
    UdpTunnelReply,
    UdpTunnelRequest,
    Verdict,
)
from mipro.wire.advertisement import icmp_checksum  # noqa: E402

# ============================================================================ the world

T0 = 1_790_000_000.0
VID = 32473
HA = A("10.1.0.1")
HOME_NET = N("10.1.0.0/24")
FA1, FA2 = A("198.51.100.1"), A("192.0.2.129")
PUBLIC = A("203.0.113.2")  # the NAPT's public address
ATTACKER = A("203.0.113.66")
UNOWNED = A("10.1.0.77")  # on the home link, nobody's
HOME_HOST = A("10.1.0.10")  # a host of the home network
TEMP = A("172.16.5.1")  # what FA1 translates MN3's home address to (a local host has it)
ZERO = A("0.0.0.0")
BCAST = A("255.255.255.255")

FA_HA_SA = SecurityAssociation(300, b"fa1-ha secret 16")
FA_HA_WRONG = SecurityAssociation(300, b"not the fa-ha key")


@dataclass(frozen=True)
class NodeCfg:
    """A subscriber, and the mobile node that uses it (``mode`` None: nobody does)."""

    name: str
    home: A
    nai: str
    sas: dict  # SPI -> SecurityAssociation (the subscriber's, at the HA)
    spi: int  # the one its mobile node uses
    replay: ReplayMethod
    mode: str | None
    mac: bytes
    fa_keys: dict = field(default_factory=dict)  # FA address -> MN-FA SecurityAssociation
    routes: tuple = ()
    filters: tuple = ()
    max_lifetime: int = 3600
    udp_tunnel: str = "auto"
    coas: tuple = ()  # co-located care-of addresses it may get from DHCP
    private: A = A("10.0.0.50")  # behind the NAPT
    napt_port: int = 40434

    @property
    def sa(self) -> SecurityAssociation:
        return self.sas[self.spi]


ROUTES = (StaticRoute(N("198.51.100.0/24"), ZERO, 5, False),
          StaticRoute(N("0.0.0.0/0"), ZERO, 100, True),
          StaticRoute(N("192.0.2.0/25"), A("192.0.2.1"), 7, False))
FILTERS = (FilterRule(destination=N("203.0.113.10/32"), protocol=17, verdict=Verdict.DENY,
                      both_directions=True, dport=(5060, 5061)),
           FilterRule(source=N("10.1.0.0/24"), nat=True, nat_address=A("198.51.100.9"),
                      log=True))

MNFA_1_1 = SecurityAssociation(400, b"mn1-fa1 secret..")
MNFA_1_2 = SecurityAssociation(401, b"mn1-fa2 secret..")
MNFA_3_1 = SecurityAssociation(402, b"mn3-fa1 secret..", Algorithm.HMAC_SHA256)

NODES = (
    NodeCfg("mn1", A("10.1.0.100"), "mn1@home.example",
            {256: SecurityAssociation(256, b"mn1 mn-ha key 16")}, 256, ReplayMethod.TIMESTAMP,
            "fa", bytes.fromhex("020000000101"), {FA1: MNFA_1_1, FA2: MNFA_1_2},
            coas=(A("198.51.100.71"), A("203.0.113.71")), napt_port=40431),
    NodeCfg("mn2", A("10.1.0.101"), "mn2@home.example",
            {257: SecurityAssociation(257, b"mn2 mn-ha key, sha256", Algorithm.HMAC_SHA256)},
            257, ReplayMethod.NONCE, "colocated", bytes.fromhex("020000000102"),
            coas=(A("198.51.100.72"), A("203.0.113.72")), private=A("10.0.0.52"),
            napt_port=40432),
    NodeCfg("mn3", A("10.1.0.102"), "",
            {258: SecurityAssociation(258, b"mn3 keyed md5 k.", Algorithm.KEYED_MD5)}, 258,
            ReplayMethod.TIMESTAMP, "auto", bytes.fromhex("020000000103"), {FA1: MNFA_3_1},
            routes=ROUTES, filters=FILTERS, coas=(A("198.51.100.73"), A("203.0.113.73")),
            private=A("10.0.0.53"), napt_port=40433),
    NodeCfg("mn4", A("10.1.0.103"), "mn4@home.example",
            {259: SecurityAssociation(259, b"mn4 first key..."),
             260: SecurityAssociation(260, b"mn4 second key, sha", Algorithm.HMAC_SHA256)},
            260, ReplayMethod.NONCE, "auto", bytes.fromhex("020000000104"),
            routes=ROUTES[:1], filters=FILTERS[1:], max_lifetime=120, udp_tunnel="always",
            coas=(A("198.51.100.74"), A("203.0.113.74")), private=A("10.0.0.54"),
            napt_port=40434),
    NodeCfg("s5", A("10.1.0.104"), "s5@home.example",
            {261: SecurityAssociation(261, b"silent subscriber")}, 261, ReplayMethod.TIMESTAMP,
            None, bytes.fromhex("020000000105")),
)
BY_NAME = {n.name: n for n in NODES}
MOBILE = tuple(n for n in NODES if n.mode is not None)
HOMES = tuple(n.home for n in NODES)
EVIL_MAC = bytes.fromhex("02000000dead")


@dataclass(frozen=True)
class Variant:
    """What changes from one episode to the next."""

    ha_reverse: bool = True
    ha_encaps: frozenset = frozenset({"ipip", "gre"})
    tight_budgets: bool = False
    ha_max_lifetime: int = 3600
    fa1_max_lifetime: int = 600
    fa2_require_mn_fa: bool = False
    fa2_reverse_required: bool = False
    fa1_in_use: bool = True
    directory: bool = False  # the HA asks a slow directory (CachedStore): requests park
    cache_ttl: float = 60.0
    skews: tuple = (0.0,) * 4  # each mobile node's clock minus the true time

    @classmethod
    def draw(cls, rng: random.Random) -> Variant:
        skews = tuple(draw_skew(rng) for _ in range(4))
        directory = rng.random() < 0.3
        cache_ttl = rng.choice((0.0, 5.0, 60.0))
        if rng.random() < 0.4:
            return cls(directory=directory, cache_ttl=cache_ttl, skews=skews)
        return cls(directory=directory, cache_ttl=cache_ttl, skews=skews,
                   ha_reverse=rng.random() < 0.85,
                   ha_encaps=rng.choice([frozenset({"ipip", "gre"}), frozenset({"ipip"})]),
                   tight_budgets=rng.random() < 0.25,
                   ha_max_lifetime=rng.choice([3600, 200]),
                   fa1_max_lifetime=rng.choice([600, 250]),
                   fa2_require_mn_fa=rng.random() < 0.3,
                   fa2_reverse_required=rng.random() < 0.3,
                   fa1_in_use=rng.random() < 0.8)


def draw_skew(rng: random.Random) -> float:
    """A mobile node's clock error: mostly none, sometimes within the HA's replay window,
    sometimes far outside it."""
    choice = rng.random()
    if choice < 0.6:
        return 0.0
    if choice < 0.85:
        return rng.choice((-1, 1)) * rng.uniform(0.2, 6.5)
    return rng.choice((-1, 1)) * rng.uniform(10, 400)


def subscribers() -> list[Subscriber]:
    return [Subscriber(n.home, n.nai, dict(n.sas), max_lifetime=n.max_lifetime,
                       replay=n.replay, routes=n.routes, filters=n.filters) for n in NODES]


def ha_policy(v: Variant) -> HaPolicy:
    tight = v.tight_budgets
    return HaPolicy((HA,), max_lifetime=v.ha_max_lifetime, encapsulations=v.ha_encaps,
                    reverse_tunneling=v.ha_reverse, fa_associations={FA1: FA_HA_SA},
                    home_networks=(HOME_NET,), nat_challenge_timeout=30.0,
                    source_rate=5.0 if tight else 500.0, source_burst=5.0 if tight else 200.0,
                    unknown_rate=50.0 if tight else 5000.0,
                    unsigned_reply_rate=5.0 if tight else 500.0,
                    max_parked=6 if v.directory else 1024,
                    max_parked_per_identity=2 if v.directory else 4)


def fa_policies(v: Variant) -> dict[str, FaPolicy]:
    tight = v.tight_budgets
    in_use = (lambda h: TEMP if h == BY_NAME["mn3"].home else None) if v.fa1_in_use else None
    return {
        "fa1": FaPolicy(FA1, (FA1,), max_lifetime=v.fa1_max_lifetime, ha_peers={HA: FA_HA_SA},
                        mn_fa={BY_NAME["mn1"].home: MNFA_1_1,
                               (BY_NAME["mn3"].home, HA): MNFA_3_1},
                        address_in_use=in_use, max_pending=8, max_pending_per_mac=2,
                        mac_rate=3.0 if tight else 200.0, mac_burst=3.0 if tight else 100.0,
                        max_cache_lifetime=60),
        "fa2": FaPolicy(FA2, (FA2,), max_lifetime=600, mn_fa={BY_NAME["mn1"].home: MNFA_1_2},
                        require_mn_fa=v.fa2_require_mn_fa,
                        reverse_tunnel_required=v.fa2_reverse_required,
                        home_agents=(N("10.0.0.0/8"),), max_pending=6, max_pending_per_mac=3,
                        mac_rate=3.0 if tight else 200.0, mac_burst=3.0 if tight else 100.0,
                        unkeyed_ha_rate=5.0 if tight else 100.0, max_cache_lifetime=30),
    }


FA_ADDR = {"fa1": FA1, "fa2": FA2}
FA_BY_ADDR = {FA1: "fa1", FA2: "fa2"}
ADV_FLAGS = {"fa1": AgentFlags.F | AgentFlags.R | AgentFlags.T | AgentFlags.G,
             "fa2": AgentFlags.F | AgentFlags.T}

#: every key in the world by (extension type, SPI): what "re-sign with the right key" uses
KEYS: dict[tuple[int, int], SecurityAssociation] = {}
for _n in NODES:
    for _spi, _sa in _n.sas.items():
        KEYS[(32, _spi)] = _sa
for _sa in (MNFA_1_1, MNFA_1_2, MNFA_3_1):
    KEYS[(33, _sa.spi)] = _sa
KEYS[(34, FA_HA_SA.spi)] = FA_HA_SA
ALL_SAS = tuple(KEYS.values())


# ============================================================== an independent view of bytes
#
# The checks below parse messages and compute MACs themselves: a bug in mipro.wire's
# offsets or in mipro.security would not hide a bug in an engine.

MNHA, MNFA, FAHA = 32, 33, 34
AUTH_TYPES = (MNHA, MNFA, FAHA)
LONG = (36, 38)
NVSE_T, NAI_T, CHAL_T = 134, 131, 132
FIXED = {"req": 24, "rep": 20, "bu": 28, "ba": 20}


class Msg:
    """A message split into its extensions: (type, offset, end, header length) each."""

    __slots__ = ("data", "kind", "exts")

    def __init__(self, data: bytes, kind: str, exts: list[tuple[int, int, int, int]]) -> None:
        self.data, self.kind, self.exts = data, kind, exts

    def of(self, t: int) -> list[tuple[int, int, int, int]]:
        return [e for e in self.exts if e[0] == t]

    def u(self, at: int, n: int) -> int:
        return int.from_bytes(self.data[at:at + n], "big")

    def addr(self, at: int) -> A:
        return A(self.data[at:at + 4])


def kind_of(data: bytes) -> str | None:
    if not data:
        return None
    t = data[0]
    if t == 1:
        return "req"
    if t == 3:
        return "rep"
    if t == 255 and len(data) >= 3:
        return {1: "bu", 2: "ba"}.get(data[2])
    return None


def parse(data: bytes) -> Msg | None:
    kind = kind_of(data)
    if kind is None or len(data) < FIXED[kind]:
        return None
    exts = []
    pos, n = FIXED[kind], len(data)
    while pos < n:
        t = data[pos]
        if t in LONG:
            if pos + 4 > n:
                return None
            hdr, length = 4, (data[pos + 2] << 8) | data[pos + 3]
        else:
            if pos + 2 > n:
                return None
            hdr, length = 2, data[pos + 1]
        end = pos + hdr + length
        if end > n:
            return None
        exts.append((t, pos, end, hdr))
        pos = end
    return Msg(data, kind, exts)


def digest_size(sa: SecurityAssociation) -> int:
    return 32 if sa.algorithm is Algorithm.HMAC_SHA256 else 16


def mac(sa: SecurityAssociation, data: bytes) -> bytes:
    if sa.algorithm is Algorithm.HMAC_MD5:
        return hmac.digest(sa.key, data, "md5")
    if sa.algorithm is Algorithm.HMAC_SHA256:
        return hmac.digest(sa.key, data, "sha256")
    return hashlib.md5(sa.key + data + sa.key).digest()  # RFC 2002 keyed MD5


def verifies(m: Msg, e: tuple[int, int, int, int], sa: SecurityAssociation | None) -> bool:
    """RFC 5944 §3.5.1: the MAC covers everything up to and including the SPI."""
    _, off, end, _ = e
    if sa is None or end - off < 6 or m.u(off + 2, 4) != sa.spi:
        return False
    return hmac.compare_digest(mac(sa, m.data[:off + 6]), m.data[off + 6:end])


def auth_ext(sa: SecurityAssociation, t: int, prefix: bytes) -> bytes:
    head = bytes((t, 4 + digest_size(sa))) + sa.spi.to_bytes(4, "big")
    return head + mac(sa, prefix + head)


def nvse(m: Msg, e: tuple[int, int, int, int]) -> tuple[int, int, bytes] | None:
    t, off, end, _ = e
    if t != NVSE_T or end - off < 10:
        return None
    return m.u(off + 4, 4), m.u(off + 8, 2), m.data[off + 10:end]


def ro_bytes(m: Msg, exts) -> tuple[bytes, bytes]:
    """Route and filter entries of mipro NVSEs among ``exts``, as the engine would encode
    them again (only the route flag byte's tunnel bit is kept by the codec)."""
    routes, filters = bytearray(), bytearray()
    for e in exts:
        info = nvse(m, e)
        if info is None or info[0] != VID:
            continue
        if info[1] == 1:
            value = bytearray(info[2])
            for i in range(5, len(value), 12):
                value[i] &= 0x80
            routes += value
        elif info[1] == 2:
            filters += info[2]
    return bytes(routes), bytes(filters)


def encoded(entries) -> bytes:
    return b"".join(x.encode() for x in entries)


_COA_OK: dict[A, bool] = {}


def care_of_ok(coa: A) -> bool:
    """HomeAgent._check_care_of, recomputed: unicast, not ours, not in the home network."""
    ok = _COA_OK.get(coa)
    if ok is None:
        ok = not (coa.is_unspecified or coa.is_multicast or coa.is_loopback or coa.is_reserved
                  or coa.is_link_local or coa in (BCAST, HA) or coa in HOME_NET)
        _COA_OK[coa] = ok
    return ok


# ================================================================================ checks


class FuzzFailure(Exception):
    def __init__(self, invariant: str, detail: str, call: tuple | None = None) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant, self.detail, self.call = invariant, detail, call


def _sends(out, kind=Send):
    return [a for a in out if isinstance(a, kind)]


class Checker:
    """The invariants, from bytes, keys and the configuration; one per episode (it keeps
    the kernel mirrors the engines' Install/Remove actions feed)."""

    def __init__(self, variant: Variant, fa_policies: dict[str, FaPolicy],
                 counts: Counter) -> None:
        self.variant = variant
        self.subs_by_home = {s.home_address: s for s in subscribers()}
        self.subs_by_nai = {s.nai: s for s in self.subs_by_home.values() if s.nai}
        self.fa = fa_policies
        self.ha_policy = ha_policy(variant)
        self.counts = counts
        self.ha_kernel: dict[A, object] = {}
        self.fa_kernel: dict[str, dict] = {name: {} for name in fa_policies}
        self.call: tuple | None = None

    def need(self, name: str, cond: bool, detail=None) -> None:
        self.counts[name] += 1
        if not cond:
            text = detail() if callable(detail) else (detail or "")
            raise FuzzFailure(name, text, self.call)

    # --- the home agent ---------------------------------------------------------------

    @staticmethod
    def ha_snapshot(ha: HomeAgent) -> tuple:
        return ({b.home_address: b for b in ha.bindings},
                {h: (s.last_accepted, s.nonce) for h, s in ha.replay.items()
                 if s.last_accepted is not None or s.nonce is not None},
                {h: (c.value, c.source, c.expires) for h, c in ha.challenges.items()},
                {k: tuple(v) for k, v in ha.parked.items()}, ha.parked_count)

    def ha_authenticates(self, m: Msg | None, src: A):
        """The subscriber and key a request authenticates with, by the HA's rules (RFC 5944
        §3.5, RFC 2794), or None."""
        if m is None or m.kind != "req":
            return None
        mnha = m.of(MNHA)
        if len(mnha) != 1:
            return None
        auth = mnha[0]
        idx = m.exts.index(auth)
        fa_sa = {FA1: FA_HA_SA}.get(src)
        if fa_sa is not None:
            faha = [e for e in m.exts[idx + 1:] if e[0] == FAHA]
            if len(faha) != 1 or m.exts[-1] is not faha[0] or not verifies(m, faha[0], fa_sa):
                return None
        nai = None
        for e in m.exts[:idx]:
            if e[0] == NAI_T:
                body = m.data[e[1] + 2:e[2]]
                try:
                    nai = body.decode()
                except UnicodeDecodeError:
                    return None
                if not nai:
                    return None
                break
        home = m.addr(4)
        if not int(home) and nai is None:
            return None
        sub = self.subs_by_nai.get(nai) if nai else self.subs_by_home.get(home)
        if sub is None or auth[2] - auth[1] < 6:
            return None
        sa = sub.associations.get(m.u(auth[1] + 2, 4))
        if sa is None or not verifies(m, auth, sa):
            return None
        return sub, sa

    def check_ha(self, ha: HomeAgent, method: str, args: tuple, b: tuple, a: tuple,
                 out: list) -> None:
        need = self.need
        b_bind, b_rep, b_chal = b[:3]
        a_bind, a_rep, a_chal = a[:3]
        sends = _sends(out)
        installs = _sends(out, InstallBinding)
        removes = _sends(out, RemoveBinding)
        replies = []
        for s in sends:
            rm = parse(s.data)
            need("ha.sends_only_replies", rm is not None and rm.kind == "rep",
                 lambda s=s: f"HA sent {s.data.hex()}")
            replies.append(rm)
        changed = {h for h in b_bind.keys() | a_bind.keys() if b_bind.get(h) is not a_bind.get(h)}
        pk0, pk1 = b[3], a[3]
        fetches = _sends(out, FetchSubscriber)
        need("ha.parked_bounded", a[4] == sum(len(v) for v in pk1.values()) and
             a[4] <= self.ha_policy.max_parked and
             all(len(v) <= self.ha_policy.max_parked_per_identity for v in pk1.values()),
             lambda: f"{a[4]} parked: {[(k, len(v)) for k, v in pk1.items()]}")
        parked = [k for k in pk0.keys() | pk1.keys() if pk0.get(k) != pk1.get(k)]
        if method == "receive":
            data, src, port, now = args
            if parked:  # waiting for the directory: nothing else may happen yet
                k = parked[0]
                need("ha.parks_only_this_request", len(parked) == 1 and
                     pk1.get(k) == pk0.get(k, ()) + ((data, src, port),))
                need("ha.parked_request_changes_nothing_else", not sends and not installs and
                     not removes and not changed and a_rep == b_rep and a_chal == b_chal)
                need("ha.one_lookup_per_identity", len(fetches) == (k not in pk0) and all(
                    (("nai", f.nai) if f.nai else ("home", f.home_address)) == k
                    for f in fetches))
                return self._ha_kernel(out, a_bind, changed)
            need("ha.no_lookup_without_parking", not fetches)
            self._ha_request(data, src, port, now, sends, replies, installs, removes, changed,
                             b, a)
        elif method == "subscriber_ready":
            home, nai, _result, now = args
            k = ("nai", nai) if nai else ("home", home)
            waiting = pk0.get(k, ())
            need("ha.ready_unparks_its_identity", parked == ([k] if waiting else []) and
                 k not in pk1)
            need("ha.no_lookup_when_ready", not fetches)
            if len(waiting) == 1:
                self._ha_request(*waiting[0], now, sends, replies, installs, removes, changed,
                                 b, a)
            else:
                self._ha_waiting(waiting, sends, replies, out, changed, b, a)
        elif method == "restore":
            bindings, now = args
            live = {x.home_address: x for x in bindings if x.expires > now}
            need("ha.restore_keeps_live_bindings", a_bind == live and not sends and
                 len(installs) == len(live) and not b_bind)
        elif method == "handle_timer":
            (now,) = args
            need("ha.timer_sends_nothing", not sends and not installs)
            for h in changed:
                need("ha.timer_only_expires", h not in a_bind and b_bind[h].expires <= now,
                     lambda h=h: f"{h} removed before its expiry")
                need("ha.expiry_removes_in_kernel", any(x.binding is b_bind[h] and
                                                        x.reason == "expired" for x in removes))
            need("ha.timer_replay_untouched", a_rep == b_rep)
            for h in b_chal.keys() | a_chal.keys():
                if b_chal.get(h) != a_chal.get(h):
                    need("ha.timer_only_expires_challenges", h not in a_chal and
                         b_chal[h][2] <= now)
            need("ha.nothing_due_left", all(x.expires > now for x in a_bind.values()))
        elif method == "install_failed":
            action, _reason, _now = args
            home = action.binding.home_address
            need("ha.install_failed_removes_it", changed <= {home} and
                 a_bind.get(home) is not action.binding)
            need("ha.install_failed_answers_130", len(replies) == (action.reply is not None) and
                 all(r.data[1] == 130 and verifies(r, r.of(MNHA)[0], action.sa)
                     for r in replies if r.of(MNHA)))
            need("ha.install_failed_no_install", not installs)
        self._ha_kernel(out, a_bind, changed)

    def _ha_kernel(self, out: list, a_bind: dict, changed: set) -> None:
        """The kernel mirror: what Install/RemoveBinding told the kernel is the binding
        table; and every binding that changed is somebody's, with a valid care-of."""
        need = self.need
        for x in out:
            if isinstance(x, InstallBinding):
                self.ha_kernel[x.binding.home_address] = x.binding
            elif isinstance(x, RemoveBinding) and \
                    self.ha_kernel.get(x.binding.home_address) is x.binding:
                del self.ha_kernel[x.binding.home_address]
        need("ha.kernel_mirror_is_binding_table", self.ha_kernel == a_bind,
             lambda: f"kernel {sorted(map(str, self.ha_kernel))} table "
                     f"{sorted(map(str, a_bind))}")
        for h in changed:
            nb = a_bind.get(h)
            if nb is None:
                continue
            sub = self.subs_by_home.get(h)
            need("ha.binding_owned", sub is not None and int(h) != 0,
                 lambda h=h: f"binding for {h}, nobody's")
            need("ha.binding_spi_of_owner", nb.spi in sub.associations)
            need("ha.binding_care_of_valid", care_of_ok(nb.care_of_address))

    def _ha_request(self, data: bytes, src: A, port: int, now: float, sends, replies,
                    installs, removes, changed, b, a) -> None:
        """One request answered (from receive, or after the directory answered)."""
        need = self.need
        b_bind, b_rep, b_chal = b[:3]
        a_bind, a_rep, a_chal = a[:3]
        m = parse(data)
        who = self.ha_authenticates(m, src)
        accepted = [r for r in replies if r.data[1] in (0, 1)]
        for s, r in zip(sends, replies, strict=True):
            need("ha.reply_to_sender", (s.dst, s.port) == (src, port))
            signed = r.of(MNHA)
            need("ha.unauthenticated_denial_unsigned", not signed or who is not None,
                 lambda r=r: f"reply code {r.data[1]} carries an MN-HA authenticator "
                             f"though the request did not authenticate")
            if signed:
                need("ha.signed_with_subscribers_key",
                     len(signed) == 1 and verifies(r, signed[0], who[1]),
                     lambda: f"reply not signed with {who[0].home_address}'s key")
                if src == FA1:
                    need("ha.fa_ha_last_towards_keyed_fa",
                         r.exts[-1][0] == FAHA and verifies(r, r.exts[-1], FA_HA_SA))
            if r.data[1] in (0, 1):
                need("ha.acceptance_authenticated", who is not None and bool(signed))
                need("ha.acceptance_for_own_address", r.addr(4) == who[0].home_address)
        need("ha.one_answer", len(sends) <= 1)
        if changed:
            need("ha.binding_change_only_on_acceptance", bool(accepted) and who is not None,
                 lambda: f"bindings {sorted(map(str, changed))} changed, answer "
                         f"{[r.data[1] for r in replies]}")
            sub, sa = who
            need("ha.binding_only_for_signers_address", changed == {sub.home_address},
                 lambda: f"{sorted(map(str, changed))} changed by a request signed by "
                         f"{sub.home_address}'s key")
            req_home = m.addr(4)
            need("ha.request_home_is_signers", not int(req_home) or
                 req_home == sub.home_address)
            nb = a_bind.get(sub.home_address)
            lifetime = accepted[0].u(2, 2)
            if nb is None:
                need("ha.removal_is_deregistration", lifetime == 0 and any(
                    x.binding is b_bind[sub.home_address] for x in removes))
            else:
                need("ha.binding_fields",
                     nb.spi == sa.spi and nb.nai == sub.nai and
                     nb.care_of_address == m.addr(12) and nb.home_agent == HA,
                     lambda: f"binding {nb} from request {data.hex()}")
                need("ha.binding_care_of_valid", care_of_ok(nb.care_of_address),
                     lambda: f"care-of {nb.care_of_address}")
                need("ha.binding_lifetime", 0 < nb.lifetime <= min(
                    m.u(2, 2), sub.max_lifetime, self.variant.ha_max_lifetime) and
                    nb.lifetime == lifetime and nb.expires == now + nb.lifetime)
                need("ha.install_with_acceptance", len(installs) == 1 and
                     installs[0].binding is nb and installs[0].reply is sends[0])
        else:
            need("ha.no_install_without_binding", not installs)
        if installs or removes:
            need("ha.kernel_only_on_acceptance", bool(accepted) and bool(changed))
        if not accepted:
            self._ha_denial_changed_nothing(m, who, src, replies, b_rep, a_rep,
                                            b_chal, a_chal)
        elif who is not None:
            for h in b_rep.keys() | a_rep.keys():
                if b_rep.get(h) != a_rep.get(h):
                    need("ha.replay_state_only_of_signer", h == who[0].home_address)

    def _ha_waiting(self, waiting, sends, replies, out, changed, b, a) -> None:
        """Several requests answered at once after a lookup: each change must be one an
        authenticated one of them asked for."""
        need = self.need
        b_rep, b_chal = b[1:3]
        a_bind, a_rep, a_chal = a[:3]
        whos = [(d, s, p, m, self.ha_authenticates(m, s)) for d, s, p in waiting
                for m in (parse(d),)]
        signers = {w[4][0].home_address for w in whos if w[4] is not None}
        for x, r in zip(sends, replies, strict=True):
            need("ha.reply_to_a_waiting_sender", any((x.dst, x.port) == (w[1], w[2])
                                                      for w in whos))
            signed = r.of(MNHA)
            need("ha.unauthenticated_denial_unsigned", not signed or any(
                w[4] is not None and (x.dst, x.port) == (w[1], w[2]) and len(signed) == 1 and
                verifies(r, signed[0], w[4][1]) for w in whos))
            if r.data[1] in (0, 1):
                need("ha.acceptance_authenticated", bool(signed))
        for h in changed:
            cands = [w for w in whos if w[4] is not None and w[4][0].home_address == h]
            need("ha.binding_change_only_on_acceptance", bool(cands) and any(
                r.data[1] in (0, 1) and r.addr(4) == h for r in replies))
            nb = a_bind.get(h)
            if nb is not None:
                need("ha.binding_fields", any(nb.spi == w[4][1].spi and
                                              nb.care_of_address == w[3].addr(12)
                                              for w in cands))
        for h in (b_rep.keys() | a_rep.keys()) | (b_chal.keys() | a_chal.keys()):
            if b_rep.get(h) != a_rep.get(h) or b_chal.get(h) != a_chal.get(h):
                need("ha.replay_state_only_of_signer", h in signers)
        last: dict = {}  # requests answered in order: a later one may renew or deregister
        for x in out:
            if isinstance(x, InstallBinding):
                last[x.binding.home_address] = x.binding
            elif isinstance(x, RemoveBinding):
                last[x.binding.home_address] = None
        need("ha.install_with_acceptance", all(a_bind.get(h) is x for h, x in last.items()))

    def _ha_denial_changed_nothing(self, m, who, src, replies, b_rep, a_rep, b_chal,
                                   a_chal) -> None:
        """Not accepted: nothing changed but the documented exceptions."""
        need = self.need
        challenge = None
        for r in replies:
            if r.data[1] == 131 and r.of(MNHA):
                found = r.of(CHAL_T)
                if found:
                    challenge = r.data[found[0][1] + 2:found[0][2]]
        home = who[0].home_address if who is not None else None
        for h in b_rep.keys() | a_rep.keys():
            old, new = b_rep.get(h, (None, None)), a_rep.get(h, (None, None))
            if old == new:
                continue
            need("ha.denial_replay_only_of_signer", who is not None and h == home,
                 lambda h=h: f"replay state of {h} changed by a denied request "
                             f"(signer {home})")
            first_contact = who[0].replay is ReplayMethod.NONCE and old[1] is None and \
                new[1] is not None and old[0] == new[0]
            if first_contact:
                self.counts["ha.denial_exception_first_nonce"] += 1
                continue
            need("ha.denial_replay_advances_only_with_challenge", challenge is not None,
                 lambda old=old, new=new: f"replay state {old} -> {new} on a denial "
                                          f"{[r.data[1] for r in replies]}")
            if who[0].replay is ReplayMethod.TIMESTAMP:
                need("ha.challenge_uses_identification", new[0] == m.u(16, 8))
            self.counts["ha.denial_exception_challenge"] += 1
        for h in b_chal.keys() | a_chal.keys():
            if b_chal.get(h) == a_chal.get(h):
                continue
            need("ha.denial_challenge_only_issued", challenge is not None and h == home and
                 a_chal.get(h) is not None and a_chal[h][0] == challenge and
                 a_chal[h][1] == src,
                 lambda h=h: f"challenge for {h} changed on a denial without issuing it")

    # --- the foreign agents -------------------------------------------------------------

    @staticmethod
    def fa_snapshot(fa: ForeignAgent) -> tuple:
        return (dict(fa.visitors), {k: (p.visitor, p.expires) for k, p in fa.pending.items()},
                {k: (n.previous_fa, n.data, n.attempts) for k, n in fa.notifications.items()},
                dict(fa.cache), dict(fa.pending_by_mac))

    def mn_fa_keys(self, policy: FaPolicy, home: A) -> list:
        keys = [(None, policy.mn_fa[home])] if home in policy.mn_fa else []
        return keys + [(k[1], sa) for k, sa in policy.mn_fa.items()
                       if isinstance(k, tuple) and k[0] == home]

    def check_fa(self, name: str, fa: ForeignAgent, method: str, args: tuple, b: tuple,
                 a: tuple, out: list) -> None:
        need = self.need
        policy = self.fa[name]
        b_vis, b_pend, b_note, b_cache, _ = b
        a_vis, a_pend, a_note, a_cache, a_bymac = a
        vis_changed = {k for k in b_vis.keys() | a_vis.keys() if b_vis.get(k) is not a_vis.get(k)}
        pend_changed = {k for k in b_pend.keys() | a_pend.keys() if b_pend.get(k) != a_pend.get(k)}
        note_changed = b_note != a_note
        cache_changed = b_cache != a_cache
        sends, links = _sends(out), _sends(out, SendToLink)
        adds, removes = _sends(out, AddVisitor), _sends(out, RemoveVisitor)
        nothing = not (vis_changed or pend_changed or note_changed or cache_changed)

        if method == "request_from_mn":
            data, src, port, mac_addr, now = args
            need("fa.request_touches_no_visitor", not vis_changed and not note_changed and
                 not cache_changed and not adds and not removes)
            m = parse(data)
            key = (m.addr(4), m.u(20, 4)) if m is not None and m.kind == "req" else None
            need("fa.request_pends_only_itself", pend_changed <= {key},
                 lambda: f"pending {pend_changed} changed by a request for {key}")
            denials = [x for x in links if x.data[1:2] not in (b"\x00", b"\x01")]
            if denials:
                need("fa.denial_changes_nothing", not pend_changed and not sends,
                     lambda: f"denied {denials[0].data[1]} but pending changed")
                need("fa.denial_to_sender", all(x.mac == mac_addr and x.dst == src
                                                for x in denials))
            if sends:
                need("fa.relay_only_pending", key in a_pend and len(sends) == 1)
                v = a_pend[key][0]
                need("fa.pending_is_the_request", v.mac == mac_addr and v.home_address == key[0]
                     and v.home_agent == m.addr(8) and v.source == src and
                     v.identification == m.u(16, 8))
                self._fa_relayed(policy, m, sends[0], v.home_agent)
                if v.notify is not None:
                    self._fa_notify_verified(policy, m, v)
        elif method in ("from_network", "reply_from_ha"):
            data, src, port, now = args
            if data[:1] == b"\x03" or method == "reply_from_ha":
                self._fa_reply(policy, data, src, now, b, a, out, vis_changed, pend_changed,
                               nothing)
            elif len(data) >= 3 and data[0] == 255 and data[2] == 1:
                self._fa_binding_update(policy, data, src, now, b, a, out, vis_changed,
                                        pend_changed, nothing)
            elif len(data) >= 3 and data[0] == 255 and data[2] == 2:
                need("fa.ack_touches_only_notifications", not vis_changed and not pend_changed
                     and not cache_changed and not sends and not links)
                for k in b_note.keys() - a_note.keys():
                    need("fa.ack_from_the_previous_fa", b_note[k][0] == src and
                         k == (A(data[8:12]), int.from_bytes(data[12:20], "big")))
                need("fa.ack_adds_nothing", a_note.keys() <= b_note.keys())
            else:
                need("fa.unexpected_changes_nothing", nothing and not sends and not links)
        elif method == "handle_timer":
            (now,) = args
            need("fa.timer_adds_nothing", a_vis.keys() <= b_vis.keys() and
                 a_pend.keys() <= b_pend.keys() and a_cache.keys() <= b_cache.keys() and
                 a_note.keys() <= b_note.keys())
            for k in vis_changed:
                need("fa.timer_expires_only_due_visitors", k not in a_vis and
                     b_vis[k].expires <= now)
            for k in pend_changed:
                need("fa.timer_expires_only_due_requests", k not in a_pend and
                     b_pend[k][1] <= now)
            for k in b_cache.keys() - a_cache.keys():
                need("fa.timer_expires_only_due_cache", b_cache[k].expires <= now)
            for x in links:
                need("fa.timeout_answers_78_or_68", x.data[1] in (78, 68))
            for s in sends:
                need("fa.timer_resends_only_notifications",
                     any(s.dst == n[0] and s.data == n[1] for n in b_note.values()))
        elif method == "solicitation":
            need("fa.solicitation_changes_nothing", nothing and not sends and not links)
        elif method == "visitor_failed":
            action = args[0]
            need("fa.visitor_failed_removes_it", vis_changed <= {action.visitor.key} and
                 a_vis.get(action.visitor.key) is not action.visitor and not pend_changed)
            need("fa.visitor_failed_answers_66", len(links) == 1 and links[0].data[1] == 66)
        # global: bounded, counted, mirrored, no route optimization without a key
        need("fa.pending_bounded", len(a_pend) <= policy.max_pending and
             all(c <= policy.max_pending_per_mac for c in a_bymac.values()),
             lambda: f"{len(a_pend)} pending, per MAC {a_bymac}")
        if pend_changed:
            need("fa.pending_counted", Counter(p[0].mac for p in a_pend.values()) == a_bymac)
        kernel = self.fa_kernel[name]
        for x in out:
            if isinstance(x, AddVisitor):
                kernel[x.visitor.key] = x.visitor
            elif isinstance(x, RemoveVisitor) and kernel.get(x.visitor.key) is x.visitor:
                del kernel[x.visitor.key]
        need("fa.kernel_mirror_is_visitor_table", kernel == a_vis,
             lambda: f"kernel {list(kernel)} visitors {list(a_vis)}")
        for k in vis_changed:
            v = a_vis.get(k)
            if v is None:
                continue
            need("fa.no_route_optimization_without_key", v.home_agent in policy.ha_peers or
                 (not v.routes and not v.filters),
                 lambda v=v: f"visitor {v.home_address} of unkeyed {v.home_agent} has "
                             f"{len(v.routes)} routes {len(v.filters)} filters")
            need("fa.visitor_lifetime", v.state == "accepted" and
                 0 <= v.lifetime <= policy.max_lifetime)
        for n in a_note.values():
            need("fa.notification_attempts_bounded", 1 <= n[2] <= 3)

    def _fa_relayed(self, policy: FaPolicy, m: Msg, send: Send, ha: A) -> None:
        """What goes to the HA: the MN's bytes up to its MN-HA authenticator, + FA-HA."""
        need = self.need
        mnha = m.of(MNHA)
        need("fa.relay_has_one_mn_ha", len(mnha) == 1)
        prefix = m.data[:mnha[0][2]]
        need("fa.relay_to_the_home_agent", send.dst == ha)
        sa = policy.ha_peers.get(ha)
        if sa is None:
            need("fa.relay_is_the_mns_bytes", send.data == prefix,
                 lambda: f"relayed {send.data.hex()} for {m.data.hex()}")
        else:
            rm = parse(send.data)
            need("fa.relay_is_the_mns_bytes_plus_fa_ha", send.data[:len(prefix)] == prefix and
                 rm is not None and len(rm.exts) == len(m.exts[:m.exts.index(mnha[0]) + 1]) + 1
                 and verifies(rm, rm.exts[-1], sa) and rm.exts[-1][0] == FAHA)

    def _fa_notify_verified(self, policy: FaPolicy, m: Msg, v) -> None:
        """A previous-FA notification kept only from under a verified MN-FA authenticator."""
        mnha = m.of(MNHA)[0]
        i = m.exts.index(mnha)
        sa = policy.mn_fa.get((v.home_address, v.home_agent)) or policy.mn_fa.get(v.home_address)
        theirs = [e for e in m.exts[i + 1:] if e[0] == MNFA]
        ok = sa is not None and len(theirs) == 1 and verifies(m, theirs[0], sa)
        named = False
        if ok:
            j = m.exts.index(theirs[0])
            for e in m.exts[i + 1:j]:
                info = nvse(m, e)
                if info and info[0] == VID and info[1] == 4 and \
                        A(info[2][:4]) == v.notify.previous_fa:
                    named = True
        self.need("fa.notification_only_under_mn_fa", ok and named,
                  lambda: f"notification to {v.notify.previous_fa} kept from {m.data.hex()}")

    def _fa_reply(self, policy, data, src, now, b, a, out, vis_changed, pend_changed,
                  nothing) -> None:
        need = self.need
        b_vis, b_pend, b_note, b_cache, _ = b
        a_vis, a_pend, a_note, a_cache, _ = a
        sends, links = _sends(out), _sends(out, SendToLink)
        m = parse(data)
        pend = None
        if m is not None:
            pend = b_pend.get((m.addr(4), m.u(16, 4)))
        authentic = False
        routes = filters = b""
        if pend is not None and src == pend[0].home_agent:
            sa = policy.ha_peers.get(pend[0].home_agent)
            if sa is None:
                authentic = True
            else:
                faha = m.of(FAHA)
                authentic = len(faha) == 1 and verifies(m, faha[0], sa)
                if authentic:
                    mnha = m.of(MNHA)
                    i_f = m.exts.index(faha[0])
                    if len(mnha) == 1 and m.exts.index(mnha[0]) < i_f:
                        routes, filters = ro_bytes(m, m.exts[m.exts.index(mnha[0]) + 1:i_f])
        if not authentic:
            need("fa.forged_reply_changes_nothing", nothing and not sends and not links,
                 lambda: f"reply from {src} (pending {pend and pend[0].home_agent}) changed "
                         f"state or was relayed")
            return
        v0 = pend[0]
        need("fa.reply_settles_only_its_request", pend_changed <= {(m.addr(4), m.u(16, 4))})
        need("fa.reply_changes_only_its_visitor", vis_changed <= {v0.key})
        # a visitor registering with us again ends our forwarding pointer for it, nothing else
        need("fa.reply_touches_only_its_cache_entry",
             all(b_cache.get(k) == a_cache.get(k) or k == (v0.home_address, v0.home_agent)
                 for k in b_cache.keys() | a_cache.keys()) and a_cache.keys() <= b_cache.keys())
        code, lifetime = m.data[1], m.u(2, 2)
        v = a_vis.get(v0.key)
        if v0.key in vis_changed and v is not None:
            need("fa.visitor_only_on_acceptance", code in (0, 1) and lifetime > 0)
            need("fa.visitor_routes_are_covered_nvses",
                 encoded(v.routes) == routes and encoded(v.filters) == filters,
                 lambda: f"visitor {v.home_address}: routes {encoded(v.routes).hex()} filters "
                         f"{encoded(v.filters).hex()}, covered {routes.hex()} {filters.hex()} "
                         f"in {data.hex()}")
            need("fa.visitor_is_the_request", v.home_agent == v0.home_agent and
                 v.mac == v0.mac and v.identification == v0.identification and
                 v.lifetime == min(lifetime, v0.requested_lifetime) and
                 v.expires == now + v.lifetime)
        elif v0.key in vis_changed:
            need("fa.visitor_removed_only_on_deregistration", code in (0, 1) and lifetime == 0)
        for k in a_note.keys() - b_note.keys():
            need("fa.notification_for_the_accepted_visitor", v is not None and
                 v0.notify is not None and k == (v0.home_address, v0.identification) and
                 a_note[k][0] == v0.notify.previous_fa)
        need("fa.reply_keeps_other_notifications", b_note.keys() <= a_note.keys())
        for s in sends:
            need("fa.reply_sends_only_the_notification", v0.notify is not None and
                 s.dst == v0.notify.previous_fa and BindingUpdate.matches(s.data))
        for x in links:
            need("fa.reply_relayed_to_the_mn", x.mac == v0.mac and x.dst == v0.source)
            self._fa_stripped(policy, m, x.data, v0)

    def _fa_stripped(self, policy: FaPolicy, m: Msg, relayed: bytes, v0) -> None:
        """The reply relayed to the MN: the HA's bytes up to its MN-HA authenticator (RFC 5944
        §3.7.3.2: what follows is the FA's to remove), then only what the FA adds for the MN
        (home address in use, its MN-FA authenticator)."""
        mnha = m.of(MNHA)
        if policy.ha_peers.get(v0.home_agent) is None:
            limit = m.exts.index(mnha[0]) + 1 if len(mnha) == 1 else next(
                (i for i, e in enumerate(m.exts) if e[0] in AUTH_TYPES), len(m.exts))
        else:  # FA-HA verified (else nothing is relayed): it never goes on
            i_f = m.exts.index(m.of(FAHA)[0])
            limit = m.exts.index(mnha[0]) + 1 if len(mnha) == 1 and \
                m.exts.index(mnha[0]) < i_f else i_f
        prefix = m.data[:m.exts[limit - 1][2]] if limit else m.data[:20]
        self.need("fa.relay_is_the_has_bytes_up_to_mn_ha", relayed[:len(prefix)] == prefix,
                  lambda: f"relayed {relayed.hex()} from {m.data.hex()}")
        rm = parse(relayed)
        self.need("fa.relayed_reply_parses", rm is not None)
        added = [e for e in rm.exts if e[1] >= len(prefix)]
        for e in added:
            info = nvse(rm, e)
            self.need("fa.adds_only_home_address_in_use_and_mn_fa",
                      e[0] == MNFA or (info is not None and info[:2] == (VID, 5)),
                      lambda: f"relayed {relayed.hex()} from {m.data.hex()}")

    def _fa_binding_update(self, policy, data, src, now, b, a, out, vis_changed,
                           pend_changed, nothing) -> None:
        need = self.need
        b_vis, b_pend, b_note, b_cache, _ = b
        a_vis, a_pend, a_note, a_cache, _ = a
        sends, links = _sends(out), _sends(out, SendToLink)
        m = parse(data)
        signers = []
        if m is not None:
            auths = m.of(MNFA)
            if len(auths) == 1:
                signers = [(ha, sa) for ha, sa in self.mn_fa_keys(policy, m.addr(8))
                           if verifies(m, auths[0], sa)]
        if not signers:
            need("fa.unverified_update_changes_nothing", nothing and not sends and not links,
                 lambda: f"unverified Binding Update {data.hex()} from {src} acted on")
            return
        home, coa = m.addr(8), m.addr(12)
        anyone = any(ha is None for ha, _ in signers)
        for k in vis_changed:
            need("fa.update_removes_only_the_signers_visitors", k not in a_vis and
                 k[0] == home and (anyone or b_vis[k].home_agent in {h for h, _ in signers}))
        need("fa.update_touches_no_request", not pend_changed and a_note == b_note and
             not links)
        for h in b_cache.keys() | a_cache.keys():  # keyed (home address, home agent)
            if b_cache.get(h) != a_cache.get(h):
                need("fa.update_caches_only_its_address", h[0] == home)
            if h in a_cache and a_cache.get(h) != b_cache.get(h):
                need("fa.cache_entry_bounded", a_cache[h].care_of_address == coa and
                     a_cache[h].expires <= now + policy.max_cache_lifetime)
        for s in sends:
            sm = parse(s.data)
            need("fa.update_acknowledged_only_to_its_care_of", s.dst == src == coa and
                 sm is not None and sm.kind == "ba" and len(sm.of(MNFA)) == 1 and
                 any(verifies(sm, sm.of(MNFA)[0], sa) for _, sa in signers))

    # --- the mobile nodes ---------------------------------------------------------------

    @staticmethod
    def mn_snapshot(mn: MobileNode) -> tuple:
        p = mn.pending
        ag = mn.agent
        return (mn.state, mn.using, mn.care_of_address,
                (p.identification, p.lifetime, p.care_of_address) if p is not None else None,
                mn.clock_offset, mn.ha_nonce, mn.nat_challenge, mn.granted_lifetime,
                mn.renew_at, mn.expires_at, mn.retransmit_at, mn.last_code, mn.udp_keepalive,
                (ag.address, ag.care_of_address, ag.expires, ag.sequence) if ag else None,
                mn.registered_agent.address if mn.registered_agent else None,
                mn.previous_agent.address if mn.previous_agent else None,
                mn.pending_bytes)

    def check_mn(self, node: NodeCfg, mn: MobileNode, method: str, args: tuple, b: tuple,
                 a: tuple, out: list) -> None:
        need = self.need
        need("mn.state_is_a_State", isinstance(mn.state, State), lambda: repr(mn.state))
        for s in _sends(out):
            sm = parse(s.data)
            if sm is not None and sm.kind == "req":
                mnha = sm.of(MNHA)
                need("mn.request_signed", len(mnha) == 1 and verifies(sm, mnha[0], node.sa) and
                     sm.addr(4) == node.home)
        if method != "receive":
            return
        data, src, port, now = args
        m = parse(data)
        pend = b[3]
        authentic = solicited = False
        if m is not None and m.kind == "rep":
            mnha = m.of(MNHA)
            authentic = len(mnha) == 1 and verifies(m, mnha[0], node.sa)
            solicited = pend is not None and m.u(16, 4) == pend[0] & 0xFFFFFFFF and \
                m.addr(4) == node.home
        ups = _sends(out, TunnelUp)
        owns = [x for x in _sends(out, OwnAddressOut) if x.on]
        if not (authentic and solicited):
            need("mn.unauthentic_reply_changes_nothing", a == b and not ups and not owns and
                 not _sends(out),
                 lambda: f"reply {data.hex()} (authentic {authentic}, solicited {solicited}) "
                         f"changed the MN: {b} -> {a}")
            return
        code = m.data[1]
        for up in ups:
            need("mn.tunnel_only_on_acceptance", code in (0, 1) and pend[1] > 0)
            i = m.exts.index(m.of(MNHA)[0])
            routes, filters = ro_bytes(m, m.exts[:i])
            need("mn.tunnel_routes_are_covered_nvses",
                 encoded(up.routes) == routes and encoded(up.filters) == filters,
                 lambda up=up, r=routes, f=filters: f"TunnelUp routes "
                 f"{encoded(up.routes).hex()} filters {encoded(up.filters).hex()}; covered "
                 f"{r.hex()} {f.hex()} in {data.hex()}")
            need("mn.tunnel_is_ours", up.home_address == node.home and up.home_agent == HA and
                 up.lifetime == m.u(2, 2))
        for own in owns:
            agent = b[13]
            sa = node.fa_keys.get(agent[0]) or node.fa_keys.get(agent[1]) if agent else None
            mnha = m.of(MNHA)[0]
            i = m.exts.index(mnha)
            theirs = [e for e in m.exts[i + 1:] if e[0] == MNFA]
            ok = sa is not None and len(theirs) == 1 and verifies(m, theirs[0], sa)
            named = False
            if ok:
                for e in m.exts[i + 1:m.exts.index(theirs[0])]:
                    info = nvse(m, e)
                    if info and info[0] == VID and info[1] == 5 and \
                            A(info[2][:4]) == node.home and A(info[2][4:8]) == \
                            own.temporary_address:
                        named = True
            need("mn.own_address_out_only_under_mn_fa", ok and named,
                 lambda: f"OwnAddressOut(True) from {data.hex()}")


# ============================================================================== the world


class _Secrets:
    """``secrets`` for the engines while fuzzing: seeded, so a run can be repeated."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def randbits(self, k: int) -> int:
        return self.rng.getrandbits(k)

    def token_bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)


@contextlib.contextmanager
def deterministic(rng: random.Random):
    shim = _Secrets(rng)
    saved = (_ha_module.secrets, _mn_module.secrets, _replay_module.secrets,
             _advertiser_module.random)
    _ha_module.secrets = _mn_module.secrets = _replay_module.secrets = shim
    _advertiser_module.random = rng
    try:
        yield shim
    finally:
        (_ha_module.secrets, _mn_module.secrets, _replay_module.secrets,
         _advertiser_module.random) = saved


ENGINE_KINDS = ("ha", "fa", "mn")


class World:
    """The engines, where each mobile node is, and the network between them."""

    MAX_DELIVERIES = 100  # per routed burst, all at one instant: more is a message storm

    def __init__(self, rng: random.Random, variant: Variant, target: str, stats: Stats,
                 shim: _Secrets) -> None:
        self.rng, self.variant, self.target, self.stats, self.shim = rng, variant, target, \
            stats, shim
        self.now = T0
        self.store = self.new_store()
        self.ha = HomeAgent(ha_policy(variant), self.store)
        self.lookups: list[FetchSubscriber] = []  # directory lookups the HA asked for
        self.directory_down = False
        self.fa_policy = fa_policies(variant)
        self.fas = {name: ForeignAgent(p, Advertiser(AdvertPolicy(
            p.address, 24, ADV_FLAGS[name], p.care_of_addresses, 600, 1.0), T0))
            for name, p in self.fa_policy.items()}
        self.mns = {n.name: self.new_mn(n) for n in MOBILE}
        self.skew = {n.name: sk for n, sk in zip(MOBILE, variant.skews, strict=True)}
        self.loc: dict[str, tuple] = {n.name: ("none",) for n in MOBILE}
        self.checker = Checker(variant, self.fa_policy, stats.checks)
        self.corpus: dict[tuple, deque] = {}
        self.old: dict[tuple, list] = {}
        self.last_adv: dict[str, bytes] = {}
        self.home_adv = Advertiser(AdvertPolicy(HA, 24, AgentFlags.H), T0).handle_timer(T0)[0].data
        self.challenges: deque = deque(maxlen=8)  # NAPT challenges the HA handed out
        self.refuse_kernel = False
        self.hold_from: set[str] = set()  # whose datagrams are held back (lost, or late)
        self.held: deque = deque(maxlen=16)
        self.trace: list = []  # engine calls of this episode, for a failure report

    def new_store(self):
        if not self.variant.directory:
            return MemoryStore(subscribers())
        return CachedStore(MemoryStore(subscribers()), ttl=self.variant.cache_ttl,
                           negative_ttl=min(5.0, self.variant.cache_ttl),
                           clock=lambda: self.now, trip_after=3, open_for=5.0)

    @staticmethod
    def new_mn(n: NodeCfg) -> MobileNode:
        return MobileNode(MnSettings(n.home, HA, n.sa, nai=n.nai, lifetime=300, replay=n.replay,
                                     mode=n.mode, fa_peers=dict(n.fa_keys),
                                     udp_tunnel=n.udp_tunnel))

    def restart_ha(self) -> None:
        """The HA daemon restarts: a new engine (and store) restored from its bindings, as
        from the journal; the daemon clears the kernel and reinstalls what restore says."""
        bindings = list(self.ha.bindings)
        self.store = self.new_store()
        self.ha = HomeAgent(ha_policy(self.variant), self.store)
        self.lookups.clear()
        self.checker.ha_kernel = {}
        self.route("ha", self.call("ha", "restore", bindings, self.now))

    def answer_lookup(self, a: FetchSubscriber, fail: bool = False) -> list:
        """The runtime's side of FetchSubscriber: the directory in a worker, then
        subscriber_ready with what it said."""
        store = self.store
        if fail or self.directory_down:
            store.record_failure("fuzz: directory timed out")
            result = Unavailable("fuzz: directory timed out")
        else:
            result = store.fetch(a.home_address, a.nai)
            store.record(a.home_address, a.nai, result)
        return self._from("ha", self.call("ha", "subscriber_ready", a.home_address, a.nai,
                                          result, self.now))

    # --- calling engines, checked -----------------------------------------------------

    def call(self, who: str, method: str, *args, record: bool = False) -> list:
        if who == "ha":
            eng, kind, snap = self.ha, "ha", Checker.ha_snapshot
        elif who in self.fas:
            eng, kind, snap = self.fas[who], "fa", Checker.fa_snapshot
        else:
            eng, kind, snap = self.mns[who], "mn", Checker.mn_snapshot
        call = (who, method, args)
        self.checker.call = call
        self.trace.append(call)
        if len(self.trace) > 400:
            del self.trace[:200]
        if record:
            self._record(who, method, args)
        if kind == "mn" and self.skew[who]:  # every MN input ends with its own clock
            args = (*args[:-1], args[-1] + self.skew[who])
            call = (who, method, args)
            self.checker.call = call
            self.trace[-1] = call
        before = snap(eng)
        counters = dict(eng.counters) if kind != "mn" else None
        try:
            out = getattr(eng, method)(*args)
        except Exception as exc:  # every exception from an engine is a bug
            raise FuzzFailure(f"{kind}.no_exception", f"{type(exc).__name__}: {exc}",
                              call) from exc
        self.stats.checks[f"{kind}.no_exception"] += 1
        after = snap(eng)
        if kind == "ha":
            self.checker.check_ha(eng, method, args, before, after, out)
        elif kind == "fa":
            self.checker.check_fa(who, eng, method, args, before, after, out)
        else:
            self.checker.check_mn(BY_NAME[who], eng, method, args, before, after, out)
        self.stats.calls[kind] += 1
        if kind == self.target:
            self.stats.outcome(kind, method, counters, eng, out)
        return out

    def _record(self, who: str, method: str, args: tuple) -> None:
        ch = (who, method)
        q = self.corpus.get(ch)
        if q is None:
            q = self.corpus[ch] = deque(maxlen=48)
            self.old[ch] = []
        if len(q) == q.maxlen:  # keep some old ones for replays much later
            old = self.old[ch]
            if len(old) < 32:
                old.append(q[0])
            elif self.rng.random() < 0.1:
                old[self.rng.randrange(32)] = q[0]
        q.append(args)

    def pick(self, ch: tuple) -> tuple | None:
        q = self.corpus.get(ch)
        if not q:
            return None
        if self.old[ch] and self.rng.random() < 0.2:
            return self.rng.choice(self.old[ch])
        # recent ones more often
        i = len(q) - 1 - min(int(self.rng.expovariate(0.3)), len(q) - 1)
        return q[i]

    # --- the network ----------------------------------------------------------------------

    def mn_source(self, name: str) -> tuple[A, int] | None:
        """Where a mobile node's datagrams to the HA appear to come from."""
        node, loc = BY_NAME[name], self.loc[name]
        if loc[0] == "coloc":
            return loc[1], 434
        if loc[0] == "napt":
            return PUBLIC, node.napt_port
        if loc[0] in ("home", "fa"):
            return node.home, 434
        return None

    def route(self, origin: str, actions: list) -> None:
        """Deliver what ``origin`` sent, and what that provokes, until quiet."""
        queue = deque((origin, a) for a in actions)
        budget = self.MAX_DELIVERIES
        while queue:
            origin, a = queue.popleft()
            if isinstance(a, Send | SendToLink | SendIcmp):
                budget -= 1
                self.checker.need("world.bounded_exchange", budget >= 0, lambda: (
                    f"more than {self.MAX_DELIVERIES} datagrams provoked at one instant: "
                    "a message loop between engines (the last calls show it)"))
            queue.extend(self._deliver(origin, a))

    def _deliver(self, origin: str, a) -> list:
        now = self.now
        if origin in self.hold_from and isinstance(a, Send | SendToLink):
            self.held.append((origin, a))
            return []
        if origin == "ha":
            if isinstance(a, FetchSubscriber):
                if self.rng.random() < 0.6:  # a fast directory
                    return self.answer_lookup(a)
                self.lookups.append(a)
                return []
            if isinstance(a, Send):
                if a.dst in FA_BY_ADDR:
                    fa = FA_BY_ADDR[a.dst]
                    return self._from(fa, self.call(fa, "from_network", a.data, HA, 434, now,
                                                    record=True))
                for name, loc in self.loc.items():
                    node = BY_NAME[name]
                    if (loc[0] == "napt" and a.dst == PUBLIC and a.port == node.napt_port) or \
                            (loc[0] == "coloc" and a.dst == loc[1]) or \
                            (loc[0] == "home" and a.dst == node.home):
                        return self._from(name, self.call(name, "receive", a.data, HA, 434, now,
                                                          record=True))
            return []
        if origin in self.fas:
            fa_addr = FA_ADDR[origin]
            if isinstance(a, Send):
                if a.dst == HA:
                    return self._from("ha", self.call("ha", "receive", a.data, fa_addr, 434, now,
                                                      record=True))
                if a.dst in FA_BY_ADDR:
                    other = FA_BY_ADDR[a.dst]
                    return self._from(other, self.call(other, "from_network", a.data, fa_addr,
                                                       434, now, record=True))
                for name, loc in self.loc.items():
                    if (loc[0] == "coloc" and a.dst == loc[1]) or \
                            (loc[0] == "home" and a.dst == BY_NAME[name].home):
                        return self._from(name, self.call(name, "receive", a.data, fa_addr, 434,
                                                          now, record=True))
            elif isinstance(a, SendToLink):
                for name, loc in self.loc.items():
                    if loc == ("fa", origin) and BY_NAME[name].mac == a.mac:
                        return self._from(name, self.call(name, "receive", a.data, a.src, 434,
                                                          now, record=True))
            elif isinstance(a, SendIcmp):
                self.last_adv[origin] = a.data
                got = []
                for name, loc in self.loc.items():
                    if loc == ("fa", origin):
                        got += self._from(name, self.call(name, "advertisement", a.data,
                                                          fa_addr, now, record=True))
                return got
            return []
        # a mobile node
        loc = self.loc[origin]
        node = BY_NAME[origin]
        if isinstance(a, Send):
            if loc[0] == "fa" and a.dst == FA_ADDR[loc[1]] and a.data[:1] == b"\x01":
                return self._from(loc[1], self.call(loc[1], "request_from_mn", a.data, node.home,
                                                    5000, node.mac, now, record=True))
            src = self.mn_source(origin)
            if src is None:
                return []
            if a.dst == HA:
                return self._from("ha", self.call("ha", "receive", a.data, src[0], src[1], now,
                                                  record=True))
            if a.dst in FA_BY_ADDR:
                fa = FA_BY_ADDR[a.dst]
                return self._from(fa, self.call(fa, "from_network", a.data, src[0], src[1], now,
                                                record=True))
        elif isinstance(a, SendIcmp) and loc[0] == "fa":
            return self._from(loc[1], self.call(loc[1], "solicitation", node.home, now))
        return []

    def _from(self, origin: str, out: list) -> list:
        """What an engine sent, to be delivered; the kernel may refuse an install first (the
        runtime then withholds the acceptance and asks the engine instead)."""
        if self.refuse_kernel and origin in ("ha", *self.fas) and \
                (origin == "ha") == (self.target == "ha"):
            kind, method = (InstallBinding, "install_failed") if origin == "ha" else \
                (AddVisitor, "visitor_failed")
            for x in out:
                if isinstance(x, kind):
                    self.refuse_kernel = False
                    self.stats.note("kernel_refused")
                    held = x.reply if origin == "ha" else x.relay
                    out = [y for y in out if y is not held] + \
                        self.call(origin, method, x, "fuzz: kernel refused", self.now)
                    break
        if origin == "ha":
            for x in out:  # remember challenges the HA hands out (an on-path attacker would)
                if isinstance(x, Send) and len(x.data) > 20 and x.data[1] == 131:
                    rm = parse(x.data)
                    if rm is not None:
                        for e in rm.of(CHAL_T):
                            self.challenges.append(rm.data[e[1]:e[2]])
        return [(origin, x) for x in out]

    # --- the clock ----------------------------------------------------------------------

    def engines(self) -> list[str]:
        return ["ha", *self.fas, *self.mns]

    def next_timer(self, who: str) -> float | None:
        """When ``who``'s timer is due, on the true clock."""
        if who == "ha":
            return self.ha.next_timer()
        if who in self.fas:
            return self.fas[who].next_timer()
        t = self.mns[who].next_timer()
        return None if t is None else t - self.skew[who]

    def advance(self, dt: float) -> None:
        self.now += dt
        while self.lookups and self.rng.random() < 0.5:  # the directory answers meanwhile
            a = self.lookups.pop(self.rng.randrange(len(self.lookups)))
            self.route("ha", [(x[1]) for x in self.answer_lookup(a)])
        order = self.engines()
        self.rng.shuffle(order)
        for who in order:
            t = self.next_timer(who)
            if t is not None and t <= self.now:
                self.route(who, self.call(who, "handle_timer", self.now))


# ============================================================================ statistics


class Stats:
    def __init__(self) -> None:
        self.steps: Counter = Counter()
        self.ops: dict[str, Counter] = {k: Counter() for k in ENGINE_KINDS}
        self.outcomes: dict[str, Counter] = {k: Counter() for k in ENGINE_KINDS}
        self.coarse: dict[str, Counter] = {k: Counter() for k in ENGINE_KINDS}
        self.calls: Counter = Counter()
        self.checks: Counter = Counter()
        self.notes: Counter = Counter()
        self.episodes: Counter = Counter()
        self.seconds: dict[str, float] = {}

    def note(self, what: str) -> None:
        self.notes[what] += 1

    def outcome(self, kind: str, method: str, counters: dict | None, eng, out: list) -> None:
        if kind == "mn":
            names = self._mn_outcome(method, out)
        else:
            now = eng.counters
            names = [k for k, v in now.items() if v != counters.get(k, 0)]
            if not names:
                names = [f"{method}:no-op" if not out else f"{method}:" + next(
                    (x.event for x in out if isinstance(x, Log)), type(out[0]).__name__)]
        key = "+".join(sorted(names))
        self.outcomes[kind][key] += 1
        self.coarse[kind][coarse(kind, method, names, out)] += 1

    @staticmethod
    def _mn_outcome(method: str, out: list) -> list[str]:
        names = []
        for x in out:
            if isinstance(x, Log):
                if x.event == "drop":
                    reason = str(x.fields.get("reason", ""))
                    if reason.startswith("at byte") or reason.startswith("advertisement:"):
                        reason = "undecodable"
                    names.append(f"drop:{reason}")
                elif x.event == "registration-denied":
                    names.append(f"denied_{x.fields.get('code')}")
                else:
                    names.append(x.event)
            elif isinstance(x, TunnelUp | OwnAddressOut):
                names.append(type(x).__name__ + (f"({x.on})" if isinstance(x, OwnAddressOut)
                                                 else ""))
        return sorted(set(names)) or [f"{method}:no-op"]


def coarse(kind: str, method: str, names: list[str], out: list) -> str:
    """accepted / deregistered / denied <code> / dropped / ignored / timer."""
    if method == "handle_timer":
        return "timer"
    s = set(names)
    if kind == "ha":
        if s & {"registrations", "renewals"}:
            return "accepted"
        if "deregistrations" in s:
            return "deregistered"
        if "install_failed" in s:
            return "kernel refused: denied 130"
        for n in sorted(s):
            if n.startswith("denied_"):
                return f"denied {n[7:]}" + (" (answer suppressed)" if "replies_suppressed" in s
                                            else "")
        if s & {"poorly_formed"}:
            return "denied 134 (undecodable)" if _sends(out) else "dropped (undecodable)"
        return "dropped"
    if kind == "fa":
        if "accepted" in s:
            return "reply relayed: visitor accepted"
        if "relayed_requests" in s:
            return "request relayed"
        if "binding_updates_accepted" in s:
            return "binding update accepted"
        for n in sorted(s):
            if n.startswith("denied_"):
                return f"request denied {n[7:]}"
            if n.startswith("binding_update_denied_"):
                return f"binding update refused {n[22:]}"
        if "visitor_install_failed" in s:
            return "kernel refused: denied 66"
        if _sends(out, SendToLink):
            codes = {x.data[1] for x in _sends(out, SendToLink) if len(x.data) > 1}
            return "reply relayed: code " + ",".join(map(str, sorted(codes)))
        if method == "solicitation":
            return "advertised" if out else "ignored"
        if s & {"poorly_formed_request"}:
            return "request denied 70 (undecodable)"
        return "dropped" if any(isinstance(x, Log) for x in out) else "ignored"
    if "TunnelUp" in s or "registered" in s or "renewed" in s:
        return "accepted"
    if "deregistered" in s:
        return "deregistered"
    for n in sorted(s):
        if n.startswith("denied_"):
            return f"denied {n[7:]}"
    if "resync" in s:
        return "denied 133 (resynchronised)"
    if "napt-challenge" in s:
        return "denied 131 (NAPT challenge answered)"
    if any(n.startswith("drop") for n in s):
        return "dropped"
    if method == "advertisement":
        return "advertisement acted on" if any(isinstance(x, Send) for x in out) else \
            "advertisement ignored"
    return "ignored" if not out else f"{method}"


# ============================================================================ mutation


def split(data: bytes) -> tuple[bytearray, list[bytes]] | None:
    m = parse(data)
    if m is None:
        return None
    return bytearray(data[:FIXED[m.kind]]), [data[o:e] for _, o, e, _ in m.exts]


def join(fixed: bytes, exts: list[bytes]) -> bytes:
    return bytes(fixed) + b"".join(exts)


def resign(fixed: bytes, exts: list[bytes], wrong: int | None = None,
           rng: random.Random | None = None) -> bytes:
    """Recompute every authenticator we hold the key for, in order (each covers the ones
    before); ``wrong``: that one with a wrong key instead."""
    out = bytearray(fixed)
    for i, e in enumerate(exts):
        if e and e[0] in AUTH_TYPES and len(e) >= 6:
            sa = KEYS.get((e[0], int.from_bytes(e[2:6], "big")))
            if sa is not None:
                if i == wrong:
                    sa = SecurityAssociation(sa.spi, rng.randbytes(16), sa.algorithm)
                e = auth_ext(sa, e[0], bytes(out))
        out += e
    return bytes(out)


FIELDS = {
    "req": {"flags": (1, 1), "lifetime": (2, 2), "home": (4, 4), "ha": (8, 4), "coa": (12, 4),
            "ident": (16, 8)},
    "rep": {"code": (1, 1), "lifetime": (2, 2), "home": (4, 4), "ha": (8, 4), "ident": (12, 8)},
    "bu": {"flags": (3, 1), "home": (8, 4), "coa": (12, 4), "ident": (16, 8),
           "lifetime": (24, 2)},
    "ba": {"status": (3, 1), "home": (8, 4), "ident": (12, 8)},
}
ADDRS = (*HOMES, ZERO, UNOWNED, HA, FA1, FA2, HOME_HOST, BCAST, A("224.0.0.5"),
         A("127.0.0.1"), A("169.254.1.1"), A("240.0.0.1"), ATTACKER, PUBLIC, TEMP,
         *(c for n in MOBILE for c in n.coas), A("10.0.0.50"), A("10.1.1.5"), A("8.8.8.8"))
LIFETIMES = (0, 1, 60, 120, 121, 200, 250, 299, 300, 301, 600, 601, 3600, 3601, 65535)
CODES = (0, 0, 1, 64, 65, 66, 67, 68, 69, 70, 71, 77, 78, 128, 129, 130, 131, 131, 132, 133,
         133, 134, 136, 139, 142, 255)


class Mutator:
    def __init__(self, world: World) -> None:
        self.w = world
        self.rng = world.rng

    # --- values -------------------------------------------------------------------------

    def addr(self) -> A:
        if self.rng.random() < 0.1:
            return A(self.rng.getrandbits(32))
        return self.rng.choice(ADDRS)

    def fresh_ident(self, home: A) -> int:
        """An identification the HA would take for ``home`` now (the harness peeks at the
        HA's nonce, as an attacker who saw the last reply would know it)."""
        sub = self.w.checker.subs_by_home.get(home)
        r = self.rng
        if sub is not None and sub.replay is ReplayMethod.NONCE:
            state = self.w.ha.replay.get(home)
            nonce = state.nonce if state is not None and state.nonce is not None and \
                r.random() < 0.85 else r.getrandbits(32)
            return (nonce << 32) | r.getrandbits(32)
        t = self.w.now + (r.uniform(-2, 2) if r.random() < 0.8 else r.choice((-8, 8, -100)))
        return (ntp_from_unix(t) & ~0xFFF) | r.getrandbits(12)

    def value(self, kind: str, name: str, old: bytes, fixed: bytearray) -> bytes:
        r = self.rng
        size = len(old)
        if name in ("home", "ha", "coa"):
            return self.addr().packed
        if name == "lifetime":
            return r.choice(LIFETIMES).to_bytes(2, "big")
        if name == "flags":
            if kind == "req":
                choice = r.random()
                if choice < 0.5:
                    return bytes((old[0] ^ (1 << r.randrange(8)),))
                if choice < 0.8:
                    return bytes((r.choice((0, 0x20, 0x22, 0x2A, 0x02, 0x08, 0x80, 0x40, 0x10,
                                            0x04, 0x01, 0xFF)),))
                return bytes((r.getrandbits(8),))
            return bytes((r.choice((0, 0x80, 0x01, 0x40, 0xFF)),))
        if name == "code":
            return bytes((r.choice(CODES),))
        if name == "status":
            return bytes((r.choice((0, 64, 67, 69, 127, 200)),))
        # identification
        v = int.from_bytes(old, "big")
        choice = r.random()
        if choice < 0.35 and kind == "req":
            v = self.fresh_ident(A(bytes(fixed[4:8])))
        elif choice < 0.55:
            v += r.choice((1, -1, 2, 1 << 32, -(1 << 32), 1 << 12))
        elif choice < 0.65:
            v = r.choice((0, (1 << 64) - 1, 1 << 63))
        elif choice < 0.8:
            v = (r.getrandbits(32) << 32) | (v & 0xFFFFFFFF)
        elif choice < 0.9:
            v = (v & ~0xFFFFFFFF) | r.getrandbits(32)
        else:
            v = r.getrandbits(64)
        return (v % (1 << (8 * size))).to_bytes(size, "big")

    # --- extensions to insert -----------------------------------------------------------

    def routes(self) -> list:
        r = self.rng
        out = []
        for _ in range(r.choice((0, 1, 1, 2, 3, 20))):
            plen = r.choice((0, 8, 16, 24, 25, 32))
            net = N((r.getrandbits(32) & ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF), plen))
            out.append(StaticRoute(net, r.choice((ZERO, ATTACKER, HA, A("192.0.2.1"))),
                                   r.getrandbits(16), r.random() < 0.5))
        return out

    def filters(self) -> list:
        r = self.rng
        out = []
        for _ in range(r.choice((0, 1, 1, 2, 9))):
            nat = r.random() < 0.3
            out.append(FilterRule(destination=r.choice((N("0.0.0.0/0"), N("203.0.113.10/32"))),
                                  protocol=r.choice((0, 6, 17)), verdict=Verdict(r.randrange(2)),
                                  log=r.random() < 0.3, nat=nat,
                                  nat_address=ATTACKER if nat else ZERO,
                                  both_directions=r.random() < 0.3))
        return out

    def extension(self, kind: str | None = None) -> bytes:
        """One extension from the pool: mipro NVSEs, RFC extensions, junk, authenticators."""
        r = self.rng
        w = self.w
        home = r.choice(HOMES)
        choice = r.randrange(26) if kind is None else kind
        if choice < 3:
            return b"".join(e.encode() for e in StaticRoutesExtension.chunked(self.routes(), VID)) \
                or StaticRoutesExtension((), VID).encode()
        if choice < 5:
            return b"".join(e.encode() for e in FilterRulesExtension.chunked(self.filters(), VID)) \
                or FilterRulesExtension((), VID).encode()
        if choice < 7:
            return HomeAddressInUse(r.choice((home, *HOMES[:1])), r.choice((TEMP, ATTACKER)),
                                    VID).encode()
        if choice < 9:
            return PreviousFaNotification(r.choice((FA1, FA2, ATTACKER, HA, ZERO)),
                                          r.choice((0, 30, 600)), r.choice((400, 401, 402, 9)),
                                          r.randbytes(r.choice((16, 32))), VID).encode()
        if choice < 11:
            names = [n.nai for n in NODES if n.nai] + ["nobody@home.example", "é" * 3]
            return Nai(r.choice(names)).encode()
        if choice == 11:
            return UdpTunnelRequest(forced=r.random() < 0.5,
                                    encapsulation=r.choice((4, 4, 47, 55))).encode()
        if choice == 12:
            return UdpTunnelReply(r.choice((0, 64)), r.random() < 0.5,
                                  r.choice((0, 5, 110))).encode()
        if choice == 13:
            if w.challenges and r.random() < 0.7:
                return r.choice(w.challenges)
            return MnFaChallenge(r.randbytes(r.choice((4, 16)))).encode()
        if choice == 14:
            return RawExtension(r.choice((99, 7, 127)), r.randbytes(r.randrange(6))).encode()
        if choice == 15:
            return RawExtension(r.choice((200, 128, 255)), r.randbytes(r.randrange(6))).encode()
        if choice == 16:
            return Cvse(r.choice((VID, 9)), r.randrange(4), r.randbytes(4)).encode()
        if choice == 17:
            return GeneralizedAuth(1, 256, r.randbytes(16)).encode()
        if choice == 18:
            return Nvse(r.choice((VID, 311)), r.choice((1, 2, 4, 5, 9)), r.randbytes(
                r.choice((0, 8, 12)))).encode()
        if choice == 19:
            return CertificateExtension(0, 1, r.randbytes(20), VID).encode()
        # an authenticator: right key at this place (filled in by the caller), random bytes,
        # an SPI only, or a key of somebody else
        t = r.choice(AUTH_TYPES)
        spis = [s for (tt, s) in KEYS if tt == t] + [9999]
        spi = r.choice(spis)
        body = spi.to_bytes(4, "big") + (r.randbytes(r.choice((16, 32))) if choice < 24 else b"")
        return bytes((t, len(body))) + body

    # --- whole-message operators --------------------------------------------------------

    def fixed(self, data: bytes) -> tuple[bytes, str]:
        parts = split(data)
        if parts is None:
            return self.bytes_(data)
        fixed, exts = parts
        kind = kind_of(data)
        names = []
        for _ in range(1 if self.rng.random() < 0.7 else self.rng.randint(2, 3)):
            name = self.rng.choice(list(FIELDS[kind]))
            at, size = FIELDS[kind][name]
            fixed[at:at + size] = self.value(kind, name, bytes(fixed[at:at + size]), fixed)
            names.append(name)
        return join(fixed, exts), "fields=" + ",".join(names)

    def shuffle(self, exts: list[bytes]) -> str:
        r = self.rng
        if not exts:
            return "none"
        op = r.randrange(5)
        if op == 0:
            del exts[r.randrange(len(exts))]
            return "delete"
        if op == 1:
            exts.insert(r.randrange(len(exts) + 1), r.choice(exts))
            return "duplicate"
        if op == 2 and len(exts) > 1:
            i, j = r.sample(range(len(exts)), 2)
            exts[i], exts[j] = exts[j], exts[i]
            return "swap"
        if op == 3:
            e = exts.pop(r.randrange(len(exts)))
            exts.insert(r.randrange(len(exts) + 1), e)
            return "move"
        exts.reverse()
        return "reverse"

    def position(self, exts: list[bytes]) -> int:
        """Before, between or after the authenticators, more often next to one."""
        auths = [i for i, e in enumerate(exts) if e and e[0] in AUTH_TYPES]
        if auths and self.rng.random() < 0.7:
            i = self.rng.choice(auths)
            return i + self.rng.choice((0, 1))
        return self.rng.randrange(len(exts) + 1)

    def insert(self, exts: list[bytes], n: int = 1) -> str:
        names = []
        for _ in range(n):
            e = self.extension()
            exts.insert(self.position(exts), e)
            names.append(str(e[0]))
        return "insert=" + ",".join(names)

    def tamper_auth(self, fixed: bytes, exts: list[bytes]) -> str:
        r = self.rng
        auths = [i for i, e in enumerate(exts) if e and e[0] in AUTH_TYPES]
        op = r.randrange(6)
        if op == 0 and auths:  # flip a bit of an authenticator
            i = r.choice(auths)
            e = bytearray(exts[i])
            if len(e) > 6:
                e[r.randrange(6, len(e))] ^= 1 << r.randrange(8)
            exts[i] = bytes(e)
            return "auth-bitflip"
        if op == 1 and auths:  # another SPI (of a key we hold, or not)
            i = r.choice(auths)
            spis = [s for (t, s) in KEYS if t == exts[i][0]] + [9999, 0]
            exts[i] = exts[i][:2] + r.choice(spis).to_bytes(4, "big") + exts[i][6:]
            return "auth-spi"
        if op == 2 and auths:  # an authenticator only its SPI long
            i = r.choice(auths)
            exts[i] = bytes((exts[i][0], 4)) + exts[i][2:6]
            return "auth-short"
        if op == 3 and auths:  # duplicated
            i = r.choice(auths)
            exts.insert(r.choice((i, i + 1, len(exts))), exts[i])
            return "auth-duplicate"
        if op == 4:  # an extra authenticator signed with a right key where it lands
            at = self.position(exts)
            sa = r.choice(ALL_SAS)
            t = {256: MNHA}.get(sa.spi, MNHA if sa.spi < 300 else FAHA if sa.spi == 300 else MNFA)
            exts.insert(at, auth_ext(sa, t, join(fixed, exts[:at])))
            return "auth-extra-signed"
        if auths:
            del exts[r.choice(auths)]
            return "auth-delete"
        return "auth-none"

    def truncate(self, data: bytes) -> tuple[bytes, str]:
        m = parse(data)
        r = self.rng
        if m is not None and m.exts and r.random() < 0.6:
            e = r.choice(m.exts)
            cut = r.choice((e[1], e[1] + 1, e[2] - 1, e[1] + 6))
        else:
            cut = r.randrange(len(data) + 1)
        return data[:max(0, cut)], f"at={cut}"

    def bytes_(self, data: bytes) -> tuple[bytes, str]:
        b = bytearray(data)
        r = self.rng
        for _ in range(r.randint(1, 4)):
            if not b:
                break
            op = r.randrange(4)
            pos = r.randrange(len(b))
            if op == 0:
                b[pos] ^= 1 << r.randrange(8)
            elif op == 1:
                b[pos] = r.choice((0, 1, 4, 0x7F, 0x80, 0xFE, 0xFF, r.getrandbits(8)))
            elif op == 2:
                b[pos:pos] = r.randbytes(r.randint(1, 8))
            else:
                del b[pos]
        return bytes(b), "bytes"

    def random_message(self) -> tuple[bytes, str]:
        r = self.rng
        head = bytes((r.choice((1, 3, 255, 4, 9, 0, r.getrandbits(8))),))
        if head == b"\xff":
            head += bytes((r.choice((26, 18, r.getrandbits(8))), r.choice((1, 2, 3))))
        return head + r.randbytes(r.choice((0, 3, 19, 20, 23, 24, 27, 28, 40, 80))), "random"

    def mutate(self, data: bytes, op: str) -> tuple[bytes, str]:
        """One of the message operators; ``*_resign`` ones re-sign with the right keys."""
        r = self.rng
        if op == "truncate":
            return self.truncate(data)
        if op == "bytes":
            return self.bytes_(data)
        if op == "random":
            return self.random_message()
        parts = split(data)
        if parts is None:
            return self.bytes_(data)
        fixed, exts = parts
        kind = kind_of(data)
        if op in ("fixed", "fixed_resign"):
            data, what = self.fixed(data)
            fixed, exts = split(data)
            if op == "fixed" and r.random() < 0.3:
                what += "+" + self.insert(exts)
        elif op in ("shuffle", "shuffle_resign"):
            what = self.shuffle(exts)
            if r.random() < 0.3:
                what += "+" + self.shuffle(exts)
        elif op in ("insert", "insert_resign"):
            what = self.insert(exts, r.choice((1, 1, 1, 2, 3)))
            if r.random() < 0.3:  # and the fields, so the inserted ones are read
                at, size = FIELDS[kind]["ident"]
                if kind == "req":
                    fixed[at:at + size] = self.fresh_ident(A(bytes(fixed[4:8]))).to_bytes(8, "big")
        elif op in ("auth", "auth_resign"):
            what = self.tamper_auth(bytes(fixed), exts)
        else:
            raise ValueError(op)
        if op.endswith("_resign"):
            wrong = None
            auths = [i for i, e in enumerate(exts) if e and e[0] in AUTH_TYPES]
            if auths and r.random() < 0.15:
                wrong = r.choice(auths)
                what += f"+wrong-key@{wrong}"
            return resign(bytes(fixed), exts, wrong, r), what + "+resigned"
        return join(fixed, exts), what


class Builder:
    """A message built extension by extension, authenticators computed as they come."""

    def __init__(self, fixed: bytes) -> None:
        self.data = bytearray(fixed)

    def add(self, *exts: bytes) -> Builder:
        for e in exts:
            self.data += e
        return self

    def sign(self, t: int, sa: SecurityAssociation | None) -> Builder:
        if sa is not None:
            self.data += auth_ext(sa, t, bytes(self.data))
        return self

    def bytes(self) -> bytes:
        return bytes(self.data)


# ============================================================================ the fuzzer

OPS = {
    "ha": {"valid": 12, "time": 9, "replay": 7, "fixed": 5, "fixed_resign": 14, "shuffle": 3,
           "shuffle_resign": 4, "insert": 4, "insert_resign": 8, "auth": 4, "auth_resign": 4,
           "craft_request": 12, "truncate": 3, "bytes": 3, "random": 2, "interleave": 3,
           "kernel_refuses": 2, "release": 1, "restart": 1, "clock": 1, "directory": 3},
    "fa": {"valid": 14, "time": 9, "replay": 6, "fixed": 4, "fixed_resign": 7, "shuffle": 3,
           "shuffle_resign": 3, "insert": 4, "insert_resign": 6, "auth": 3, "auth_resign": 4,
           "craft_reply": 12, "craft_update": 7, "other_mac": 3, "truncate": 3, "bytes": 3,
           "random": 2, "interleave": 3, "kernel_refuses": 2, "solicit": 1, "release": 2,
           "restart": 1, "clock": 1},
    "mn": {"valid": 14, "time": 11, "replay": 6, "fixed": 4, "fixed_resign": 7, "shuffle": 3,
           "shuffle_resign": 3, "insert": 3, "insert_resign": 6, "auth": 3, "auth_resign": 3,
           "craft_reply": 14, "craft_advert": 8, "api": 8, "truncate": 2, "bytes": 3,
           "random": 2, "interleave": 3, "release": 2, "restart": 2, "clock": 2},
}
MUTATIONS = {"fixed", "fixed_resign", "shuffle", "shuffle_resign", "insert", "insert_resign",
             "auth", "auth_resign", "truncate", "bytes", "random"}


class Fuzzer:
    def __init__(self, target: str, seed: int, stats: Stats, out_dir: Path | None = None,
                 verbose: bool = False) -> None:
        self.target, self.seed, self.stats, self.out_dir = target, seed, stats, out_dir
        names, weights = zip(*OPS[target].items(), strict=True)
        self.op_names, self.op_weights = names, weights
        self.verbose = verbose

    # --- the loop -----------------------------------------------------------------------

    def run(self, steps: int, only_episode: int | None = None) -> None:
        done, episode = 0, 0
        t0 = time.perf_counter()
        while done < steps:
            rng = random.Random(f"{self.seed}:{self.target}:{episode}")
            length = min(rng.randint(50, 1500), steps - done)
            if only_episode is None or episode == only_episode:
                self.episode(rng, episode, length, done)
            done += length
            episode += 1
            if only_episode is not None and episode > only_episode:
                break
        self.stats.seconds[self.target] = time.perf_counter() - t0

    def episode(self, rng: random.Random, episode: int, length: int, base: int) -> None:
        variant = Variant.draw(rng)
        ops: list[tuple] = []
        with deterministic(random.Random(rng.getrandbits(64))) as shim:
            w = World(rng, variant, self.target, self.stats, shim)
            self.w, self.mut = w, Mutator(w)
            self.stats.episodes[self.target] += 1
            step = 0
            try:
                self.warm_up()
                for step in range(length):
                    op = rng.choices(self.op_names, self.op_weights)[0]
                    self.current = op
                    detail = self.do(op)
                    ops.append((step, op, detail))
                    self.stats.ops[self.target][op] += 1
                    self.stats.steps[self.target] += 1
            except FuzzFailure as failure:
                self.report(failure, episode, step, base, variant, ops)
                raise

    def warm_up(self) -> None:
        """Everyone somewhere, registered: the corpus starts with real traffic."""
        w, r = self.w, self.w.rng
        for node in MOBILE:
            choice = r.random()
            if node.mode == "fa" or (node.mode == "auto" and choice < 0.6):
                self.move(node.name, ("fa", r.choice(("fa1", "fa2"))))
            elif choice < 0.8 or node.mode == "colocated":
                self.move(node.name, ("coloc", r.choice(node.coas)) if r.random() < 0.7
                          else ("napt", node.private))
        w.advance(0.01)

    def move(self, name: str, loc: tuple) -> None:
        """The mobile node ``name`` appears at ``loc``: what it hears and does there."""
        w = self.w
        w.loc[name] = loc
        mn = w.mns[name]
        if loc[0] == "fa":
            w.route(name, w.call(name, "link_up", w.now))
            ad = w.last_adv.get(loc[1])
            if ad is not None and w.rng.random() < 0.5:
                w.route(name, w.call(name, "advertisement", ad, FA_ADDR[loc[1]], w.now,
                                     record=True))
            else:
                w.route(loc[1], w.call(loc[1], "solicitation", BY_NAME[name].home, w.now))
        elif loc[0] in ("coloc", "napt"):
            if w.rng.random() < 0.5:
                w.route(name, w.call(name, "link_up", w.now))
            coa = loc[1] if loc[0] == "coloc" else BY_NAME[name].private
            w.route(name, w.call(name, "attach", coa, w.now))
        elif loc[0] == "home":
            if w.rng.random() < 0.6:
                w.route(name, w.call(name, "advertisement", w.home_adv, HA, w.now, record=True))
            else:
                w.route(name, w.call(name, "returned_home", w.now))
        else:
            if mn.using == "colocated" and w.rng.random() < 0.5:
                w.route(name, w.call(name, "detach", w.now))

    # --- operations ---------------------------------------------------------------------

    def do(self, op: str) -> str:
        w, r = self.w, self.w.rng
        if op == "valid":
            return self.valid()
        if op == "time":
            return self.time()
        if op == "kernel_refuses":
            w.refuse_kernel = True
            what = self.valid()
            w.refuse_kernel = False
            return what
        if op == "replay":
            return self.deliver_corpus(lambda d: (d, "as-is"), vary=True)
        if op in MUTATIONS:
            return self.deliver_corpus(lambda d: self.mut.mutate(d, op), vary=r.random() < 0.3)
        if op == "interleave":
            return self.interleave()
        return getattr(self, "op_" + op)()

    def valid(self) -> str:
        """A protocol event of a real mobile node; everything it causes is delivered."""
        w, r = self.w, self.w.rng
        node = r.choice(MOBILE)
        name = node.name
        mn = w.mns[name]
        choice = r.random()
        if choice < 0.35:
            fa = r.choice(("fa1", "fa2"))
            self.move(name, ("fa", fa))
            return f"{name} at {fa}"
        if choice < 0.55:
            self.move(name, ("coloc", r.choice(node.coas)))
            return f"{name} co-located at {w.loc[name][1]}"
        if choice < 0.62:
            self.move(name, ("napt", node.private))
            return f"{name} behind the NAPT"
        if choice < 0.70:
            self.move(name, ("home",))
            return f"{name} home"
        if choice < 0.74:
            self.move(name, ("none",))
            return f"{name} off-link"
        if choice < 0.82 and mn.dhcp_running and w.loc[name][0] in ("coloc", "napt", "none"):
            if w.loc[name][0] == "none":
                w.loc[name] = ("coloc", r.choice(node.coas))
            coa = w.loc[name][1] if w.loc[name][0] == "coloc" else node.private
            w.route(name, w.call(name, "attach", coa, w.now))
            return f"{name} dhcp {coa}"
        if choice < 0.88:
            t = w.next_timer(name)
            if t is not None and t > w.now:
                w.advance(min(t - w.now, 700.0) + 0.001)
                return f"to {name}'s timer"
        if choice < 0.92:
            w.route(name, w.call(name, "shutdown", w.now))
            return f"{name} shutdown"
        w.route(name, w.call(name, "udp_tunnel_silent", w.now))
        return f"{name} udp silent"

    def time(self) -> str:
        w, r = self.w, self.w.rng
        choice = r.random()
        if choice < 0.55:
            dt = r.uniform(0.001, 1.5)
        elif choice < 0.8:
            times = [t for who in w.engines() if (t := w.next_timer(who)) is not None]
            dt = max(0.0, min(times) - w.now) + r.choice((0.0, 0.0005, 0.01)) if times else 0.1
            dt = min(dt, 900.0)
        elif choice < 0.95:
            dt = r.uniform(2, 40)
        else:
            dt = r.uniform(60, 700)
        w.advance(dt)
        return f"+{dt:.3f}s"

    def channels(self) -> list[tuple]:
        w = self.w
        if self.target == "ha":
            return [("ha", "receive")]
        if self.target == "fa":
            return [(fa, m) for fa in w.fas for m in ("request_from_mn", "from_network")]
        return [(mn, m) for mn in w.mns for m in ("receive", "receive", "receive",
                                                  "advertisement")]

    def deliver_corpus(self, transform, vary: bool) -> str:
        w, r = self.w, self.w.rng
        chans = [c for c in self.channels() if w.corpus.get(c)]
        if not chans:
            return self.valid()
        ch = r.choice(chans)
        args = w.pick(ch)
        data, what = transform(args[0])
        if ch[1] == "advertisement":
            data = fix_checksum(data)
        return self.deliver(ch, args, data, vary) + " " + what

    def deliver(self, ch: tuple, args: tuple, data: bytes, vary: bool,
                propagate: bool | None = None) -> str:
        """``data`` into channel ``ch`` with the recorded arguments (or varied ones)."""
        w, r = self.w, self.w.rng
        who, method = ch
        if propagate is None:
            propagate = r.random() < 0.6
        if method == "receive" and who == "ha":
            src, port = args[1], args[2]
            if vary:
                src, port = r.choice(((FA1, 434), (FA2, 434), (ATTACKER, 434), (PUBLIC, 40434),
                                      (r.choice(ADDRS), r.choice((434, 40431, 5000)))))
            out = w.call("ha", "receive", data, src, port, w.now)
            desc = f"ha.receive from {src}:{port}"
        elif method == "request_from_mn":
            src, port, mac_addr = args[1], args[2], args[3]
            if vary:
                mac_addr = r.choice([n.mac for n in MOBILE] + [EVIL_MAC])
                src = r.choice((src, r.choice(HOMES), ZERO, ATTACKER))
            out = w.call(who, "request_from_mn", data, src, port, mac_addr, w.now)
            desc = f"{who}.request_from_mn from {src} mac {mac_addr.hex()}"
        elif method == "from_network":
            src, port = args[1], args[2]
            if vary:
                src = r.choice((HA, FA1, FA2, ATTACKER, r.choice(ADDRS)))
            out = w.call(who, "from_network", data, src, port, w.now)
            desc = f"{who}.from_network from {src}"
        elif method == "receive":
            src = args[1]
            if vary:
                src = r.choice((HA, FA1, FA2, ATTACKER))
            out = w.call(who, "receive", data, src, args[2], w.now)
            desc = f"{who}.receive from {src}"
        else:  # advertisement
            src = args[1]
            if vary:
                src = r.choice((HA, FA1, FA2, ATTACKER))
            out = w.call(who, "advertisement", data, src, w.now)
            desc = f"{who}.advertisement from {src}"
        if propagate:
            w.route(who, out)
        self.last_input = data
        return desc

    def interleave(self) -> str:
        """Another peer's message where this engine listens."""
        w, r = self.w, self.w.rng
        others = [c for c in w.corpus if w.corpus[c] and c not in self.channels()]
        chans = self.channels()
        if not others:
            return self.valid()
        src_ch = r.choice(others)
        data = w.pick(src_ch)[0]
        ch = r.choice(chans)
        args = w.pick(ch)
        if args is None:
            args = self.default_args(ch)
        return self.deliver(ch, args, data, r.random() < 0.5) + f" (a {src_ch[1]} message)"

    def default_args(self, ch: tuple) -> tuple:
        who, method = ch
        node = BY_NAME.get(who, MOBILE[0])
        if method == "request_from_mn":
            return (b"", node.home, 5000, node.mac)
        if method == "advertisement":
            return (b"", FA1)
        return (b"", HA, 434)

    # --- target-specific crafting -------------------------------------------------------

    def op_craft_request(self) -> str:
        """A request built for the present: fresh identification, signed with real keys,
        with fields and extensions an attacker or a confused MN would choose."""
        w, r = self.w, self.w.rng
        node = r.choice(NODES)
        home = node.home if r.random() < 0.75 else r.choice((ZERO, UNOWNED, *HOMES))
        flags = r.choice((0x20, 0x22, 0x02, 0x00, 0x2A, 0x30, 0x24, 0xA2))
        src, port = r.choice(((r.choice(node.coas or (COA_DEFAULT,)), 434), (PUBLIC, 40999),
                              (FA1, 434), (FA2, 434), (ATTACKER, 434)))
        coa = src if r.random() < 0.6 and src not in (PUBLIC,) else r.choice(
            (node.private, FA1, FA2, HA, HOME_HOST, ZERO, A("224.0.0.5"), node.home,
             *node.coas))
        if src in (FA1, FA2) and r.random() < 0.8:
            coa, flags = src, flags & ~0x20
        lifetime = r.choice((300, 300, 0, 120, 65535, 1))
        ident = self.mut.fresh_ident(node.home if not int(home) else home)
        fixed = RegistrationRequest.build(flags=flags, lifetime=lifetime, home_address=home,
                                          home_agent=HA if r.random() < 0.9 else self.mut.addr(),
                                          care_of_address=coa, identification=ident).encode()
        b = Builder(fixed)
        before = []
        if node.nai and (not int(home) or r.random() < 0.6):
            before.append(Nai(node.nai if r.random() < 0.85 else r.choice(NODES).nai or
                              "x@y").encode())
        if r.random() < 0.4:
            before.append(UdpTunnelRequest(forced=r.random() < 0.3,
                                           encapsulation=4 if r.random() < 0.9 else 47).encode())
        if r.random() < 0.35:
            before.append(self.mut.extension(13))  # a challenge answer, often a real one
        for _ in range(r.choice((0, 0, 0, 1, 2))):
            before.append(self.mut.extension())
        r.shuffle(before)
        b.add(*before)
        sa = node.sa if r.random() < 0.85 else r.choice([x for n in NODES for x in n.sas.values()])
        if r.random() < 0.1:
            sa = SecurityAssociation(sa.spi, r.randbytes(16), sa.algorithm)
        b.sign(MNHA, sa)
        if r.random() < 0.3:
            b.add(*(self.mut.extension() for _ in range(r.randint(1, 2))))
        if src == FA1 and r.random() < 0.85:
            b.sign(FAHA, FA_HA_SA if r.random() < 0.9 else FA_HA_WRONG)
        data = b.bytes()
        out = w.call("ha", "receive", data, src, port, w.now)
        if r.random() < 0.5:
            w.route("ha", out)
        self.last_input = data
        return f"for {home} signed spi {sa.spi} from {src}:{port} coa {coa} flags {flags:#x}"

    def op_craft_reply(self) -> str:
        """A reply for what is pending now (an FA's relayed request, an MN's request), with
        NVSEs before, between and after the authenticators, signed with right and wrong
        keys, from the home agent or not."""
        if self.target == "fa":
            return self._craft_reply_fa()
        return self._craft_reply_mn()

    def _reply_fixed(self, home: A, ident: int, lifetime: int) -> tuple[bytes, int]:
        r = self.w.rng
        code = r.choice((0, 0, 0, 1, 131, 133, 130, 129, 136, 134, 139, 142, 64))
        if r.random() < 0.1:
            ident ^= r.getrandbits(32) << 32
        return RegistrationReply.build(code=code, lifetime=lifetime, home_address=home,
                                       home_agent=HA, identification=ident).encode(), code

    def provoke(self, name: str, hold: set[str]) -> None:
        """Make the mobile node ``name`` register now, holding back what ``hold`` sends (the
        request lost or late: its requests stay pending for crafted answers)."""
        w, r = self.w, self.w.rng
        mn, loc = w.mns[name], w.loc[name]
        w.hold_from = hold
        try:
            if loc[0] == "fa" and mn.using == "fa" and mn.agent is not None:
                fa = loc[1]  # the agent rebooted (sequence < 256): the MN registers again
                ad = AgentAdvertisement(3, ((FA_ADDR[fa], 0),), (
                    MobilityAgentExtension(r.choice((0, 1, 5)), 600, ADV_FLAGS[fa],
                                           (FA_ADDR[fa],)), PrefixLengthsExtension((24,))))
                w.route(name, w.call(name, "advertisement", ad.encode(), FA_ADDR[fa], w.now,
                                     record=True))
            elif loc[0] in ("coloc", "napt") and mn.using == "colocated":
                node = BY_NAME[name]
                coa = r.choice(node.coas)
                w.loc[name] = ("coloc", coa)
                w.route(name, w.call(name, "attach", coa, w.now))
            else:
                node = BY_NAME[name]
                loc = ("fa", r.choice(("fa1", "fa2"))) if node.mode != "colocated" else \
                    ("coloc", r.choice(node.coas))
                self.move(name, loc)
        finally:
            w.hold_from = set()

    def op_restart(self) -> str:
        """A daemon restarts: the HA (restored from its bindings) or a mobile node (a fresh
        engine: its last identification and clock offset are gone)."""
        w, r = self.w, self.w.rng
        if self.target == "ha" and r.random() < 0.5:
            w.restart_ha()
            return "ha restarted"
        node = r.choice(MOBILE)
        w.mns[node.name] = w.new_mn(node)
        self.move(node.name, w.loc[node.name])
        return f"{node.name} restarted at {w.loc[node.name][0]}"

    def op_clock(self) -> str:
        """A mobile node's clock is set (NTP steps it), then it may restart."""
        w, r = self.w, self.w.rng
        node = r.choice(MOBILE)
        w.skew[node.name] = 0.0 if r.random() < 0.5 else draw_skew(r)
        if r.random() < 0.4:
            w.mns[node.name] = w.new_mn(node)
            self.move(node.name, w.loc[node.name])
            return f"{node.name} clock {w.skew[node.name]:+.1f}s, restarted"
        return f"{node.name} clock {w.skew[node.name]:+.1f}s"

    def op_directory(self) -> str:
        """The directory answers what the HA asked, in any order, or fails, or goes down or
        comes back."""
        w, r = self.w, self.w.rng
        if r.random() < 0.15:
            w.directory_down = not w.directory_down
        n = 0
        while w.lookups and r.random() < 0.7:
            a = w.lookups.pop(r.randrange(len(w.lookups)))
            w.route("ha", [x[1] for x in w.answer_lookup(a, fail=r.random() < 0.1)])
            n += 1
        return f"{n} lookups answered, directory {'down' if w.directory_down else 'up'}"

    def op_release(self) -> str:
        """What was held back arrives now (late, possibly after crafted answers)."""
        w, r = self.w, self.w.rng
        if not w.held:
            return "nothing held"
        n = r.randint(1, len(w.held))
        for _ in range(n):
            origin, a = w.held.popleft()
            w.route(origin, [a])
        return f"{n} released"

    def _craft_reply_fa(self) -> str:
        w, r = self.w, self.w.rng
        name = r.choice(list(w.fas))
        fa = w.fas[name]
        if not fa.pending and r.random() < 0.7:
            here = [n for n, loc in w.loc.items() if loc == ("fa", name)]
            self.provoke(r.choice(here) if here else r.choice(("mn1", "mn3", "mn4")),
                         {"fa1", "fa2"})
            if not fa.pending:
                name = next((n for n, f in w.fas.items() if f.pending), name)
                fa = w.fas[name]
        if fa.pending and r.random() < 0.9:
            v = r.choice(list(fa.pending.values())).visitor
            home, ident, ha, req_life = v.home_address, v.identification, v.home_agent, \
                v.requested_lifetime
        else:
            home, ident, ha, req_life = r.choice(HOMES), r.getrandbits(64), HA, 300
        lifetime = r.choice((req_life, req_life, 0, 300, 1, 65535, 30))
        fixed, code = self._reply_fixed(home, ident, lifetime)
        b = Builder(fixed)
        if r.random() < 0.2:
            b.add(self.mut.extension())
        sub = w.checker.subs_by_home.get(home)
        mn_sa = next(iter(sub.associations.values())) if sub else r.choice(ALL_SAS)
        if r.random() < 0.9:
            b.sign(MNHA, mn_sa if r.random() < 0.9 else r.choice(ALL_SAS))
        for _ in range(r.choice((0, 1, 1, 2, 3))):  # the part for the FA
            b.add(self.mut.extension(r.choice((0, 1, 3, 5, 6, 8, 14, 15, 18, 20))))
        choice = r.random()
        if choice < 0.65:
            b.sign(FAHA, FA_HA_SA)
        elif choice < 0.8:
            b.sign(FAHA, FA_HA_WRONG)
        elif choice < 0.85:
            b.sign(FAHA, FA_HA_SA).sign(FAHA, FA_HA_SA)
        if r.random() < 0.3:
            b.add(*(self.mut.extension(r.choice((0, 3, 6))) for _ in range(r.randint(1, 2))))
        data = b.bytes()
        src = ha if r.random() < 0.85 else r.choice((ATTACKER, FA2, FA1, HA))
        out = w.call(name, "from_network", data, src, 434, w.now)
        if r.random() < 0.7:
            w.route(name, out)
        self.last_input = data
        return f"{name} reply {code} for {home} from {src}"

    def _craft_reply_mn(self) -> str:
        w, r = self.w, self.w.rng
        node = r.choice(MOBILE)
        mn = w.mns[node.name]
        if mn.pending is None and r.random() < 0.7:
            self.provoke(node.name, {node.name})
        if mn.pending is not None and r.random() < 0.9:
            ident, lifetime = mn.pending.identification, mn.pending.lifetime
        else:
            ident, lifetime = r.getrandbits(64), 300
        if r.random() < 0.3:
            lifetime = r.choice((0, 1, 300, 65535))
        home = node.home if r.random() < 0.92 else r.choice(HOMES)
        fixed, code = self._reply_fixed(home, ident, lifetime)
        b = Builder(fixed)
        for _ in range(r.choice((0, 0, 1, 2, 3))):  # covered by MN-HA: the home agent's word
            b.add(self.mut.extension(r.choice((0, 1, 3, 4, 6, 12, 12, 13, 14, 15, 18))))
        choice = r.random()
        if choice < 0.8:
            b.sign(MNHA, node.sa)
        elif choice < 0.9:
            b.sign(MNHA, SecurityAssociation(node.spi, r.randbytes(16), node.sa.algorithm))
        elif choice < 0.95:
            b.sign(MNHA, node.sa).sign(MNHA, node.sa)
        for _ in range(r.choice((0, 1, 1, 2))):  # the FA's part
            b.add(self.mut.extension(r.choice((0, 3, 6, 6, 5, 12))))
        agent = mn.agent
        key = node.fa_keys.get(agent.address) if agent is not None else None
        choice = r.random()
        if key is not None and choice < 0.6:
            b.sign(MNFA, key)
        elif choice < 0.75:
            b.sign(MNFA, r.choice((MNFA_1_1, MNFA_1_2, MNFA_3_1)))
        data = b.bytes()
        src = r.choice((HA, FA1, FA2, ATTACKER, agent.address if agent else HA))
        out = w.call(node.name, "receive", data, src, 434, w.now)
        if r.random() < 0.5:
            w.route(node.name, out)
        self.last_input = data
        return f"{node.name} reply {code} lifetime {lifetime} from {src}"

    def op_craft_update(self) -> str:
        """A Binding Update to an FA about one of its visitors (or anybody), signed with the
        MN-FA key, a wrong key or none, from the care-of address it names or not."""
        w, r = self.w, self.w.rng
        name = r.choice(list(w.fas))
        fa = w.fas[name]
        if fa.visitors and r.random() < 0.8:
            v = r.choice(list(fa.visitors.values()))
            home, ident = v.home_address, v.identification + r.choice((1, 1, 1, 0, -1, 1 << 20))
        else:
            home, ident = r.choice(HOMES), r.getrandbits(64)
        coa = r.choice((FA1, FA2, ATTACKER, *BY_NAME["mn1"].coas, home))
        bu = BindingUpdate.build(home_address=home, care_of_address=coa,
                                 identification=ident % (1 << 64),
                                 lifetime=r.choice((0, 0, 10, 60, 600)),
                                 flags=r.choice((0x80, 0x80, 0)), vendor_id=VID)
        b = Builder(bu.encode())
        if r.random() < 0.2:
            b.add(self.mut.extension())
        keys = [sa for _, sa in w.checker.mn_fa_keys(w.fa_policy[name], home)]
        choice = r.random()
        if keys and choice < 0.6:
            b.sign(MNFA, r.choice(keys))
        elif choice < 0.75:
            b.sign(MNFA, r.choice((MNFA_1_1, MNFA_1_2, MNFA_3_1)))
        elif choice < 0.85:
            b.sign(MNFA, SecurityAssociation(400, r.randbytes(16)))
        elif choice < 0.9 and keys:
            b.sign(MNFA, keys[0]).sign(MNFA, keys[0])
        if r.random() < 0.15:
            b.add(self.mut.extension())
        data = b.bytes()
        src = coa if r.random() < 0.6 else r.choice((FA1, FA2, ATTACKER))
        out = w.call(name, "from_network", data, src, 434, w.now)
        if r.random() < 0.5:
            w.route(name, out)
        self.last_input = data
        return f"{name} update {home} -> {coa} from {src}"

    def op_other_mac(self) -> str:
        """A request seen on the link, again from another link-layer address."""
        w, r = self.w, self.w.rng
        chans = [(fa, "request_from_mn") for fa in w.fas if w.corpus.get((fa, "request_from_mn"))]
        if not chans:
            return self.valid()
        ch = r.choice(chans)
        args = w.pick(ch)
        mac_addr = r.choice([n.mac for n in MOBILE if n.mac != args[3]] + [EVIL_MAC])
        out = w.call(ch[0], "request_from_mn", args[0], args[1], args[2], mac_addr, w.now)
        w.route(ch[0], out)
        self.last_input = args[0]
        return f"{ch[0]} copy from mac {mac_addr.hex()}"

    def op_solicit(self) -> str:
        w, r = self.w, self.w.rng
        name = r.choice(list(w.fas))
        for _ in range(r.randint(1, 20)):
            w.route(name, w.call(name, "solicitation", r.choice(HOMES), w.now))
        return f"{name} solicited"

    def op_craft_advert(self) -> str:
        """Agent advertisements: foreign agents, home agents, rebooted, from impostors."""
        w, r = self.w, self.w.rng
        node = r.choice(MOBILE)
        mn = w.mns[node.name]
        flags = AgentFlags(0)
        for f in (AgentFlags.F, AgentFlags.H, AgentFlags.R, AgentFlags.B, AgentFlags.T,
                  AgentFlags.G, AgentFlags.U):
            if r.random() < (0.7 if f is AgentFlags.F else 0.2):
                flags |= f
        router = r.choice((FA1, FA2, HA, ATTACKER))
        seq = r.choice((0, 1, 2, 255, 256, 0xFFFF, r.getrandbits(16)))
        if mn.agent is not None and r.random() < 0.4:
            seq = max(0, mn.agent.sequence + r.choice((-1, 1, -300)))
        coas = r.choice(((router,), (), (ATTACKER,), (router, FA2), (HA,)))
        exts = [MobilityAgentExtension(seq % 0x10000, r.choice((0, 300, 600)), flags, coas)]
        if r.random() < 0.7:
            exts.append(PrefixLengthsExtension((r.choice((24, 0, 32)),)))
        if r.random() < 0.1:
            exts.append(RawExtension(r.choice((99, 200)), b"xx"))
        routers = r.choice((((router, 0),), (), ((router, 0), (HA, 0))))
        data = AgentAdvertisement(r.choice((0, 1, 3, 9000)), routers, tuple(exts)).encode()
        if r.random() < 0.15:
            data = fix_checksum(self.mut.bytes_(data)[0])
        src = router if r.random() < 0.8 else r.choice((FA1, FA2, HA, ATTACKER))
        out = w.call(node.name, "advertisement", data, src, w.now)
        if r.random() < 0.6:
            w.route(node.name, out)
        self.last_input = data
        return f"{node.name} advert {flags.letters()} seq {seq} from {src}"

    def op_api(self) -> str:
        """The daemon's calls into the MN, in any order."""
        w, r = self.w, self.w.rng
        node = r.choice(MOBILE)
        name = node.name
        calls = []
        for _ in range(r.randint(1, 3)):
            choice = r.randrange(7)
            if choice == 0:
                coa = r.choice((*node.coas, node.private, ZERO, HA, node.home, FA1))
                calls.append(("attach", coa, w.now))
            elif choice == 1:
                calls.append(("detach", w.now))
            elif choice == 2:
                calls.append(("link_up", w.now))
            elif choice == 3:
                calls.append(("returned_home", w.now))
            elif choice == 4:
                calls.append(("shutdown", w.now))
            elif choice == 5:
                calls.append(("udp_tunnel_silent", w.now))
            else:
                calls.append(("handle_timer", w.now))
        for method, *args in calls:
            out = w.call(name, method, *args)
            if r.random() < 0.6:
                w.route(name, out)
        return f"{name} " + ",".join(c[0] for c in calls)

    # --- failure ------------------------------------------------------------------------

    def report(self, failure: FuzzFailure, episode: int, step: int, base: int,
               variant: Variant, ops: list) -> None:
        call = failure.call
        lines = [
            "",
            "=" * 78,
            f"INVARIANT VIOLATED: {failure.invariant}",
            f"  {failure.detail}",
            f"engine {self.target}, seed {self.seed}, episode {episode} (starts at step "
            f"{base}), step {step} of the episode (global step {base + step})",
            f"variant: {variant}",
        ]
        offending = b""
        if call is not None:
            who, method, args = call
            shown = []
            for a in args:
                if isinstance(a, bytes | bytearray):
                    shown.append(a.hex())
                    if not offending:
                        offending = bytes(a)
                else:
                    shown.append(repr(a))
            lines.append(f"failing call: {who}.{method}({', '.join(shown)})")
        lines.append(f"operations of this episode ({len(ops)} before the failing one):")
        for s, op, detail in ops[-60:]:
            lines.append(f"  {s:5d} {op:15s} {detail}")
        lines.append(f"  {step:5d} {getattr(self, 'current', '?'):15s} <- failed here")
        trace = self.w.trace[-25:]
        lines.append("last engine calls:")
        for who, method, args in trace:
            lines.append(f"  {who}.{method}(" + ", ".join(
                (a.hex()[:96] + ("..." if len(a) > 48 else "")) if isinstance(a, bytes)
                else repr(a) for a in args) + ")")
        lines.append(f"reproduce: PYTHONPATH=. python bench/fuzz_engines.py --engine "
                     f"{self.target} --seed {self.seed} --episode {episode}")
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            stem = self.out_dir / f"{self.target}-seed{self.seed}-ep{episode}-step{step}"
            stem.with_suffix(".hex").write_text(offending.hex() + "\n")
            stem.with_suffix(".txt").write_text("\n".join(lines) + "\n" + "\n".join(
                f"  {s:5d} {op:15s} {d}" for s, op, d in ops) + "\n")
            lines.append(f"offending input saved: {stem.with_suffix('.hex')}")
        print("\n".join(lines), file=sys.stderr)


COA_DEFAULT = A("198.51.100.77")


def fix_checksum(data: bytes) -> bytes:
    if len(data) < 4 or data[0] != 9:
        return data
    b = bytearray(data)
    b[2:4] = b"\x00\x00"
    b[2:4] = icmp_checksum(bytes(b)).to_bytes(2, "big")
    return bytes(b)


# ============================================================================ entry points


def run(engines: list[str], steps: int, seed: int, out_dir: Path | None = None,
        episode: int | None = None) -> Stats:
    """Fuzz each engine for ``steps`` steps; raises FuzzFailure on the first violation."""
    stats = Stats()
    for engine in engines:
        Fuzzer(engine, seed, stats, out_dir).run(steps, episode)
    return stats


def summary(stats: Stats, engines: list[str]) -> dict:
    out = {}
    for e in engines:
        secs = stats.seconds.get(e, 0.0)
        out[e] = {
            "steps": stats.steps[e], "episodes": stats.episodes[e],
            "seconds": round(secs, 1),
            "steps_per_second": round(stats.steps[e] / secs) if secs else None,
            "engine_calls": dict(stats.calls),
            "operations": dict(stats.ops[e].most_common()),
            "outcomes": dict(stats.coarse[e].most_common()),
            "outcomes_detail": dict(stats.outcomes[e].most_common()),
        }
    out["invariant_checks"] = dict(sorted(stats.checks.items()))
    out["invariant_checks_total"] = sum(stats.checks.values())
    out["notes"] = dict(stats.notes)
    return out


def print_summary(stats: Stats, engines: list[str]) -> None:
    for e in engines:
        secs = stats.seconds.get(e, 0.0)
        rate = stats.steps[e] / secs if secs else 0
        print(f"\n== {e}: {stats.steps[e]:,} steps in {stats.episodes[e]} episodes, "
              f"{secs:.1f}s ({rate:,.0f} steps/s)")
        print("  operations: " + ", ".join(f"{k} {v:,}" for k, v in stats.ops[e].most_common()))
        print("  outcomes (calls into the engine under test):")
        for k, v in stats.coarse[e].most_common():
            print(f"    {v:10,}  {k}")
    print("\nengine calls (all engines, each followed by its invariant checks): " +
          ", ".join(f"{k} {v:,}" for k, v in stats.calls.most_common()))
    groups: Counter = Counter()
    for k, v in stats.checks.items():
        groups[k.split(".")[0]] += v
    print(f"invariant checks: {sum(stats.checks.values()):,} (" +
          ", ".join(f"{k} {v:,}" for k, v in groups.most_common()) + f"), "
          f"{len(stats.checks)} distinct invariants")
    if stats.notes:
        print("notes: " + ", ".join(f"{k} {v:,}" for k, v in stats.notes.items()))
    print("invariant violations: 0 (every check held)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps per engine")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--engine", choices=("ha", "fa", "mn", "all"), default="all")
    parser.add_argument("--episode", type=int, default=None,
                        help="run only this episode of the seed (to reproduce a failure)")
    parser.add_argument("--out", type=Path, default=Path("fuzz-failures"),
                        help="where a failure's input and report are saved")
    parser.add_argument("--json", type=Path, default=None, help="write the counts here")
    parser.add_argument("--verbose", action="store_true",
                        help="list every invariant with its count")
    args = parser.parse_args()
    engines = list(ENGINE_KINDS) if args.engine == "all" else [args.engine]
    stats = Stats()
    t0 = time.perf_counter()
    try:
        for engine in engines:
            Fuzzer(engine, args.seed, stats, args.out).run(args.steps, args.episode)
            print(f"{engine}: {stats.steps[engine]:,} steps, "
                  f"{stats.seconds[engine]:.1f}s", flush=True)
    except FuzzFailure:
        return 1
    print_summary(stats, engines)
    print(f"wall time {time.perf_counter() - t0:.1f}s")
    if args.verbose:
        for k, v in sorted(stats.checks.items()):
            print(f"  {v:12,}  {k}")
    if args.json is not None:
        data = summary(stats, engines)
        data["seed"], data["steps_per_engine"] = args.seed, args.steps
        data["wall_seconds"] = round(time.perf_counter() - t0, 1)
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
