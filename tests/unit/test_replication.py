"""HA redundancy in memory (seed Fig. 13): two home agents' replication wired together."""

from ipaddress import IPv4Address as A

import pytest

from mipro.core.actions import InstallBinding, RemoveBinding, Send
from mipro.core.ha import HaPolicy, HomeAgent
from mipro.core.replication import (
    Group,
    Replicate,
    Replication,
    Role,
    Session,
    StandDown,
    SyncError,
    SyncSend,
    TakeOver,
    TrackFile,
)
from mipro.security import SecurityAssociation, append_authenticator
from mipro.security.replay import timestamp_identification
from mipro.subscribers.model import MemoryStore, Subscriber
from mipro.wire import ExtType, RegistrationReply, RegistrationRequest
from mipro.wire.sync import SyncMessage, SyncType

VIP = A("10.1.0.1")
GROUP = Group(51, VIP, "VI_HA")
KEY = b"replication key!" * 2
NOW = 1_790_000_000.0
MN_KEY = b"mn-ha secret key"


def home(i):
    return A(0x0A010000 + 100 + i)


def agent(n=3):
    subs = [Subscriber(home(i), "", {256: SecurityAssociation(256, MN_KEY)}) for i in range(n)]
    return HomeAgent(HaPolicy((VIP,)), MemoryStore(subs))


def register(ha, i, now, coa="198.51.100.23"):
    req = RegistrationRequest.build(flags=0x02, lifetime=600, home_address=home(i),
                                    home_agent=VIP, care_of_address=coa,
                                    identification=timestamp_identification(now))
    data = append_authenticator(req.encode(), ExtType.MN_HA_AUTH,
                                SecurityAssociation(256, MN_KEY))
    out = ha.receive(data, A(coa), 434, now)
    return data, RegistrationReply.decode([a for a in out if isinstance(a, Send)][0].data)


class Side:
    """One home agent: engine + replication, and what the runtime would do with actions."""

    def __init__(self, name, n=3):
        self.name = name
        self.ha = agent(n)
        self.rep = Replication([GROUP], KEY, self.ha.export, NOW)
        self.track = {}
        self.kernel = set()  # home addresses programmed
        self.outbox = []
        self.run(self.rep.start())

    def run(self, actions, now=NOW):
        for a in actions:
            if isinstance(a, SyncSend):
                self.outbox.append(a.data)
            elif isinstance(a, TrackFile):
                self.track[a.vrid] = a.value
            elif isinstance(a, TakeOver):
                self.kernel |= {b.home_address for b in self.ha.bindings}
            elif isinstance(a, StandDown):
                self.kernel.clear()
            elif isinstance(a, Replicate):
                for x in self.ha.replicate(a.address, a.blocks, a.replace, now):
                    if self.rep.role_of(VIP) is Role.MASTER:
                        (self.kernel.add if isinstance(x, InstallBinding) else
                         self.kernel.discard)(x.binding.home_address)

    def accept(self, i, now=NOW):
        """A registration at this (primary) side, forwarded as the runtime would."""
        data, reply = register(self.ha, i, now)
        b = self.ha.bindings.get(home(i))
        self.kernel.add(home(i))
        self.run(self.rep.forward(VIP, [self.ha.block_of(b, now)], now), now)
        return data, reply


def connect(a, b):
    a.run(a.rep.session_up(True, b"a" * 16))
    b.run(b.rep.session_up(False, b"b" * 16))
    pump(a, b)


def pump(a, b, now=NOW):
    for _ in range(20):
        if not a.outbox and not b.outbox:
            return
        for src, dst in ((a, b), (b, a)):
            data, src.outbox = b"".join(src.outbox), []
            if data:
                dst.run(dst.rep.session_data(data, now), now)


def pair(n=3):
    a, b = Side("ha1", n), Side("ha2", n)
    a.run(a.rep.vrrp_state("VI_HA", "MASTER", NOW))
    b.run(b.rep.vrrp_state("VI_HA", "BACKUP", NOW))
    return a, b


def test_a_backup_is_not_in_sync_until_its_dump_is_complete():
    a, b = pair()
    assert b.track == {51: 1}  # keepalived keeps it in FAULT: it cannot take over empty
    for i in range(3):
        a.accept(i)
    connect(a, b)
    assert b.track == {51: 0} and len(b.ha.bindings) == 3
    assert not b.kernel  # a backup programs nothing
    assert a.rep.describe(NOW)["lag_messages"] == 0  # all acknowledged


def test_data_forward_keeps_the_backup_current_and_a_takeover_refuses_replays():
    a, b = pair()
    connect(a, b)
    data, reply = a.accept(0, NOW + 1)
    pump(a, b, NOW + 1)
    assert reply.code == 0 and b.ha.bindings.get(home(0)).care_of_address == A("198.51.100.23")
    # the primary dies; VRRP makes the backup primary
    b.run(b.rep.vrrp_state("VI_HA", "MASTER", NOW + 2))
    assert b.kernel == {home(0)}
    out = b.ha.receive(data, A("198.51.100.23"), 434, NOW + 3)  # the accepted one, replayed
    assert RegistrationReply.decode([x for x in out if isinstance(x, Send)][0].data).code == 133
    _, renewal = register(b.ha, 0, NOW + 4)
    assert renewal.code == 0  # the MN's own next request goes through


def test_ten_thousand_bindings_in_a_dump():
    a, b = pair(10_000)
    for i in range(10_000):
        register(a.ha, i, NOW + i * 1e-4)
    connect(a, b)
    assert len(b.ha.bindings) == 10_000 and b.track == {51: 0}
    blocks = sum(1 for _ in b.ha.bindings)
    assert blocks == 10_000


def test_removals_are_forwarded():
    a, b = pair()
    connect(a, b)
    a.accept(0, NOW + 1)
    pump(a, b, NOW + 1)
    gone = a.ha.bindings.pop(home(0))
    a.run(a.rep.forward(VIP, [a.ha.block_of(gone, NOW + 2, removed=True)], NOW + 2), NOW + 2)
    pump(a, b, NOW + 2)
    assert b.ha.bindings.get(home(0)) is None


def test_a_primary_that_loses_mastership_takes_the_new_primarys_table():
    """After a partition both were primary; VRRP settles on B: A stands down, asks for a
    dump and replaces its table with B's (B's table is what the network is routed by)."""
    a, b = pair()
    connect(a, b)
    b.run(b.rep.vrrp_state("VI_HA", "MASTER", NOW + 1))  # the partition: two primaries
    a.accept(0, NOW + 2)  # only A hears this MN ...
    b.accept(1, NOW + 2)  # ... only B this one
    pump(a, b, NOW + 2)  # forwards between two primaries are ignored
    assert a.rep.counters.get("sync_ignored_as_master") and b.rep.counters.get(
        "sync_ignored_as_master")
    a.run(a.rep.vrrp_state("VI_HA", "BACKUP", NOW + 3))  # healed: B won
    assert not a.kernel and a.track == {51: 1}
    pump(a, b, NOW + 3)
    assert {x.home_address for x in a.ha.bindings} == {home(1)} and a.track == {51: 0}


def test_alone_at_start_the_own_table_is_the_table():
    a = Side("ha1")
    assert a.track == {51: 1} and a.rep.next_timer() == NOW + 10
    a.run(a.rep.handle_timer(NOW + 10))
    assert a.track == {51: 0}


def forwarded(a, now=NOW + 1):
    a.accept(0, now)
    data, a.outbox = b"".join(a.outbox), []
    return data


def test_a_forged_record_closes_the_session_and_changes_nothing():
    a, b = pair()
    connect(a, b)
    data = forwarded(a)
    before = list(b.ha.bindings)
    forged = bytearray(data)
    forged[20] ^= 0x01
    with pytest.raises(SyncError, match="authentication"):
        b.rep.session_data(bytes(forged), NOW + 1)
    assert list(b.ha.bindings) == before


def test_a_third_host_without_the_key_gets_nowhere():
    a, b = pair()
    mallory = Replication([GROUP], b"not the key at all", lambda a, n: [], NOW)
    mallory.session_up(True, b"m" * 16)
    b.run(b.rep.session_up(False, b"b" * 16))
    b.rep.session_data(mallory.session.hello(), NOW)
    msg = SyncMessage(SyncType.FORWARD, 51, 100, (VIP,))
    mallory.session.peer_nonce = b"b" * 16
    mallory.session.feed(b.rep.session.hello(), NOW)
    with pytest.raises(SyncError, match="authentication"):
        b.rep.session_data(mallory.session.message(msg, NOW), NOW)
    assert len(b.ha.bindings) == 0


def test_a_record_of_an_earlier_session_is_refused():
    a, b = pair()
    connect(a, b)
    old = forwarded(a)
    pump(a, b)
    b.run(b.rep.session_down("reconnect"))
    a.run(a.rep.session_down("reconnect"))
    a.run(a.rep.session_up(True, b"c" * 16))
    b.run(b.rep.session_up(False, b"d" * 16))
    pump(a, b)
    with pytest.raises(SyncError, match="authentication"):
        b.rep.session_data(old, NOW + 2)


def test_reordered_or_repeated_records_are_refused():
    s1, s2 = Session(KEY, True, b"x" * 16), Session(KEY, False, b"y" * 16)
    s1.feed(s2.hello(), NOW)
    s2.feed(s1.hello(), NOW)
    m = SyncMessage(SyncType.FORWARD, 51, 100, (VIP,))
    r1, r2 = s1.message(m, NOW), s1.message(m, NOW)
    with pytest.raises(SyncError, match="record 2 after 0"):
        s2.feed(r2, NOW)
    s3 = Session(KEY, False, b"y" * 16)
    s3.feed(s1.hello(), NOW)
    s3.feed(r1, NOW)
    with pytest.raises(SyncError, match="record 1 after 1"):
        s3.feed(r1, NOW)
    reflected = Session(KEY, True, b"x" * 16)  # our own record sent back to us
    reflected.feed(s2.hello(), NOW)
    with pytest.raises(SyncError, match="authentication"):
        reflected.feed(r1, NOW)


def test_the_wrong_greeting_is_refused():
    s = Session(KEY, False, b"y" * 16)
    with pytest.raises(SyncError, match="not a mipro sync session"):
        s.feed(b"GET / HTTP/1.1\r\n", NOW)


def test_replicated_state_never_reaches_the_kernel_of_a_backup():
    a, b = pair()
    connect(a, b)
    for i in range(3):
        a.accept(i, NOW + 1)
    pump(a, b, NOW + 1)
    assert len(b.ha.bindings) == 3 and not b.kernel
    acts = b.ha.replicate(VIP, tuple(a.ha.export(VIP, NOW + 1)), False, NOW + 1)
    assert all(isinstance(x, InstallBinding | RemoveBinding) for x in acts)


def test_both_starting_the_intended_primarys_table_wins():
    """Both home agents start from their state files at once (a site power cut): neither
    is primary yet, each asks the other for a dump.  The one with the higher configured
    priority keeps its own table; the other takes it.  No swap, no merge."""
    a, b = Side("ha1"), Side("ha2")
    a.rep = Replication([Group(51, VIP, "VI_HA", priority=100)], KEY, a.ha.export, NOW)
    b.rep = Replication([Group(51, VIP, "VI_HA", priority=90)], KEY, b.ha.export, NOW)
    register(a.ha, 0, NOW)  # A's state file has MN 0, B's (older) has MN 1
    register(b.ha, 1, NOW)
    connect(a, b)
    assert {x.home_address for x in a.ha.bindings} == {home(0)}
    assert {x.home_address for x in b.ha.bindings} == {home(0)}
    assert a.track == b.track == {51: 0}
    assert a.rep.counters["dumps_kept_ours"] == 1 and "dumps_kept_ours" not in b.rep.counters


def test_a_dump_from_the_primary_always_wins():
    a, b = Side("ha1"), Side("ha2")
    b.rep = Replication([Group(51, VIP, "VI_HA", priority=200)], KEY, b.ha.export, NOW)
    a.run(a.rep.vrrp_state("VI_HA", "MASTER", NOW))  # the lower priority holds the address
    a.accept(0)
    register(b.ha, 1, NOW)
    connect(a, b)
    assert {x.home_address for x in b.ha.bindings} == {home(0)}  # B asked and took A's
    assert {x.home_address for x in a.ha.bindings} == {home(0)}  # A, primary, ignored B's


def test_keepalived_restarting_gets_the_track_file_rewritten():
    """keepalived may reset its track file when it restarts: every state it reports gets
    mipro's current value written again."""
    a, b = pair()
    connect(a, b)
    b.track.clear()
    b.run(b.rep.vrrp_state("VI_HA", "FAULT", NOW + 1))
    assert b.track == {51: 0}


def test_a_hello_alone_does_not_make_a_session():
    """Anyone who can reach the port can send a hello: the session is up only once the
    peer's first record verifies, and nothing but our own proof is sent before that."""
    a, b = pair()
    for i in range(3):
        a.accept(i)
    a.outbox.clear()
    a.run(a.rep.session_up(False, b"a" * 16))
    a.outbox.clear()
    a.run(a.rep.session_data(Session(b"not the key", True, b"m" * 16).hello(), NOW))
    assert not a.rep.session.established and a.rep.describe(NOW)["session"] == "handshake"
    assert len(a.outbox) == 1 and len(a.outbox[0]) == 4 + 1 + 8 + 8 + 32  # our ack: no data
    a.run(a.rep.forward(VIP, [a.ha.block_of(b, NOW) for b in a.ha.bindings], NOW))
    assert len(a.outbox) == 1  # nothing forwarded to an unproven peer


@pytest.mark.parametrize("event", ["MASTER_RX_LOWER_PRI", "MASTER_PRIORITY", "BACKUP_PRIORITY",
                                   "SOMETHING_NEW"])
def test_a_keepalived_event_that_is_no_state_changes_no_role(event):
    """keepalived's FIFO also carries events: MASTER_RX_LOWER_PRI when a primary hears a
    lower-priority primary (the winner of a healing partition), *_PRIORITY when a
    priority changes. Read as FAULT (as once), the winner stood down and took the
    loser's table. Only the five states change the role; any other word is logged."""
    a, b = pair()
    connect(a, b)
    a.accept(0)
    pump(a, b)
    a.outbox.clear()
    a.track.clear()
    before = (a.kernel.copy(), set(a.ha.bindings), a.rep.role_of(VIP))
    actions = a.rep.vrrp_state("VI_HA", event, NOW + 1)
    a.run(actions)
    assert (a.kernel, set(a.ha.bindings), a.rep.role_of(VIP)) == before
    assert before[2] is Role.MASTER and a.kernel == {home(0)}
    assert a.track == {} and a.outbox == []  # no track file, no dump request
    [log] = actions
    assert log.event == "redundancy-vrrp-event" and log.fields["event"] == event
    assert log.level == ("warning" if event == "SOMETHING_NEW" else "info")


@pytest.mark.parametrize("state", ["FAULT", "STOP", "DELETED"])
def test_a_state_that_is_not_primary_stands_down(state):
    a, b = pair()
    connect(a, b)
    a.accept(0)
    a.run(a.rep.vrrp_state("VI_HA", state, NOW + 1))
    assert a.rep.role_of(VIP) is Role.FAULT and a.kernel == set() and a.track == {51: 1}
