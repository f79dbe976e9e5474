"""Home agent redundancy (seed Fig. 13), sans-I/O: the session between two home agents and
what each does with the seed's data dump request, data dump and data forward.

Who is primary for a virtual home agent address is VRRP's business (keepalived); mipro
learns it from keepalived's notify FIFO and keeps each side's binding table the same:

* The primary (MASTER) forwards every binding the kernel took, with its replay state, as
  it accepts, renews or removes it (data forward), and answers a backup's data dump
  request with every valid registration (data dump, in as many messages as it takes).
* A backup keeps the replica in memory and in its state file and programs no binding
  into the kernel.  It asks for a dump whenever a session comes up or it stops being
  primary, and is *in sync* once the dump is complete; until then keepalived's
  ``track_file`` for the group says 1 (FAULT: it cannot become primary with a partial
  table), then 0.  Alone at start (no peer within ``alone_after``) it is in sync with
  what its own state file had.
* After a partition both sides may have been primary; once VRRP has one again, the other
  asks for a dump and *replaces* its table with the primary's: the primary's is what the
  network is routed by.  Bindings made only on the other side are dropped; those mobile
  nodes register again at their next renewal.  Their replay state is not: at stand-down
  the loser sends the replay state it set while primary (a data forward flagged REPLAY,
  again on every new session until one acknowledges it), and the winner takes replay
  state only from it, forward only, never a binding; a request only the loser accepted
  is refused by the winner too.  What is owed outlives a crash of the loser
  (``SaveOwed``, written next to the state file): while primary, since when we are; once
  we stand down (or restart after dying as primary), the replay state itself, until the
  peer acknowledges it.

The session (``Session``): each side sends a hello with a fresh nonce; both derive a
session key from the shared key and both nonces; then every record is sequenced and
MAC'd (HMAC-SHA-256) with it, with the direction in the MAC: a record from another
session, the other direction, out of order or from a host without the key never
verifies, and the session is closed.  Records are messages (Fig. 13b) or acknowledgements
(the highest sequence number received), which give the replication lag.  An
acknowledgement also goes out when nothing else has for HEARTBEAT seconds, and a session
silent for DEAD_AFTER is closed (``CloseSession``): a peer that lost power sends no FIN,
and its next connection must not find the slot held by the dead one.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from ..wire import DecodeError
from ..wire.sync import BindingBlock, SyncMessage, SyncType, blocks_per_message
from .actions import Log

HELLO = b"MIPRO-HA-SYNC\x01"
NONCE_BYTES = 16
MAC_BYTES = 32
MAX_RECORD = 1 << 20
MESSAGE, ACK = 1, 2
HEARTBEAT = 1.0  # an acknowledgement when nothing else went out for this long
DEAD_AFTER = 3.5  # nothing from the peer for this long: the session is gone (no FIN came)
FRESHER_SLACK = 1.0  # at a cold start, tables whose newest registrations are this close tie
HANDSHAKE_TIMEOUT = 5.0  # a session that has not proven itself in this long is closed
OWED_VERSION = 1  # of the owed-replay file (SaveOwed)


class SyncError(Exception):
    """The session is broken or hostile: close it (and count why)."""


@dataclass
class Session:
    key: bytes
    initiator: bool
    nonce: bytes
    peer_nonce: bytes = b""
    session_key: bytes = b""
    buffer: bytearray = field(default_factory=bytearray)
    sent: int = 0  # highest sequence number sent
    received: int = 0  # highest sequence number received (and verified)
    acked: int = 0  # highest of ours the peer acknowledged
    sent_at: dict[int, float] = field(default_factory=dict)  # unacknowledged: when sent
    started: float | None = None  # when the connection came up
    last_sent: float | None = None  # when we last sent a record
    last_received: float | None = None  # when a record from the peer last verified

    def hello(self) -> bytes:
        return HELLO + self.nonce

    @property
    def keyed(self) -> bool:
        """Both hellos seen: records can be made and checked (anyone can get this far)."""
        return bool(self.session_key)

    @property
    def established(self) -> bool:
        """The peer has sent a record that verified: it holds the key."""
        return self.received > 0

    def _mac(self, outgoing: bool, header: bytes, body: bytes) -> bytes:
        direction = b"I" if outgoing == self.initiator else b"R"
        return hmac.new(self.session_key, direction + header + body, hashlib.sha256).digest()

    def _record(self, kind: int, body: bytes, now: float) -> bytes:
        if not self.keyed:
            raise SyncError("no session yet")
        self.sent += 1
        header = (1 + 8 + len(body) + MAC_BYTES).to_bytes(4, "big") + bytes((kind,)) + \
            self.sent.to_bytes(8, "big")
        if kind == MESSAGE:
            self.sent_at[self.sent] = now
        self.last_sent = now
        return header + body + self._mac(True, header, body)

    def message(self, msg: SyncMessage, now: float) -> bytes:
        return self._record(MESSAGE, msg.encode(), now)

    def ack(self, now: float) -> bytes:
        return self._record(ACK, self.received.to_bytes(8, "big"), now)

    def feed(self, data: bytes, now: float) -> list[SyncMessage]:
        """Bytes from the peer; the messages they complete (acks are taken in here)."""
        self.buffer += data
        if not self.keyed:
            if len(self.buffer) < len(HELLO) + NONCE_BYTES:
                if not HELLO.startswith(bytes(self.buffer[:len(HELLO)])):
                    raise SyncError("not a mipro sync session")
                return []
            if bytes(self.buffer[:len(HELLO)]) != HELLO:
                raise SyncError("not a mipro sync session")
            self.peer_nonce = bytes(self.buffer[len(HELLO):len(HELLO) + NONCE_BYTES])
            del self.buffer[:len(HELLO) + NONCE_BYTES]
            if self.peer_nonce == self.nonce:
                raise SyncError("the peer sent our own nonce back")
            first, second = (self.nonce, self.peer_nonce) if self.initiator else \
                (self.peer_nonce, self.nonce)
            self.session_key = hmac.new(self.key, b"mipro sync session" + first + second,
                                        hashlib.sha256).digest()
        out: list[SyncMessage] = []
        while len(self.buffer) >= 4:
            length = int.from_bytes(self.buffer[:4], "big")
            if not 1 + 8 + MAC_BYTES <= length <= MAX_RECORD:
                raise SyncError(f"record of {length} bytes")
            if len(self.buffer) < 4 + length:
                break
            record = bytes(self.buffer[:4 + length])
            del self.buffer[:4 + length]
            header, body, mac = record[:13], record[13:-MAC_BYTES], record[-MAC_BYTES:]
            if not hmac.compare_digest(mac, self._mac(False, header, body)):
                raise SyncError("record failed authentication")
            seq = int.from_bytes(header[5:13], "big")
            if seq != self.received + 1:
                raise SyncError(f"record {seq} after {self.received}")
            self.received, self.last_received = seq, now
            if header[4] == ACK:
                self._acknowledged(int.from_bytes(body, "big"))
            elif header[4] == MESSAGE:
                try:
                    out.append(SyncMessage.decode(body))
                except DecodeError as exc:
                    raise SyncError(f"authenticated but malformed message: {exc}") from None
            else:
                raise SyncError(f"record kind {header[4]}")
        return out

    def _acknowledged(self, seq: int) -> None:
        if seq > self.sent:
            raise SyncError(f"acknowledgement of {seq}, only {self.sent} sent")
        self.acked = max(self.acked, seq)
        for s in [s for s in self.sent_at if s <= self.acked]:
            del self.sent_at[s]

    def lag(self, now: float) -> tuple[int, float]:
        """Messages the peer has not acknowledged yet, and the oldest one's age."""
        if not self.sent_at:
            return 0, 0.0
        return len(self.sent_at), now - min(self.sent_at.values())


class Role(enum.Enum):
    INIT = "init"  # keepalived has said nothing yet
    MASTER = "master"
    BACKUP = "backup"
    FAULT = "fault"


@dataclass(frozen=True)
class Group:
    """One virtual home agent address held by one VRRP instance."""

    vrid: int
    address: IPv4Address  # the virtual HA address
    instance: str  # keepalived's vrrp_instance name
    priority: int = 100
    advert_interval: int = 1


# --- what the replication asks of the runtime --------------------------------------------

@dataclass(frozen=True)
class SyncSend:
    data: bytes


@dataclass(frozen=True)
class TrackFile:
    """Write keepalived's track_file of the group: 0 in sync (may be primary), 1 not."""

    vrid: int
    value: int


@dataclass(frozen=True)
class TakeOver:
    """Primary now: program the group's bindings into the kernel and announce them."""

    address: IPv4Address


@dataclass(frozen=True)
class StandDown:
    """Not primary any more: remove the group's binding state from the kernel."""

    address: IPv4Address


@dataclass(frozen=True)
class Replicate:
    """Blocks from the primary, to put into the binding table (``replace``: the whole
    group's table, from a dump)."""

    address: IPv4Address
    blocks: tuple[BindingBlock, ...]
    replace: bool = False


@dataclass(frozen=True)
class ReplayState:
    """Replay state from a peer that stood down: into the engine's replay state (forward
    only), never into the binding table."""

    address: IPv4Address
    blocks: tuple[BindingBlock, ...]


@dataclass(frozen=True)
class SaveOwed:
    """Write what we may owe the peer (``Replication.owed_data``) where a restart finds it:
    the runtime's file next to the state file, replaced whole."""

    data: dict[str, object]


@dataclass(frozen=True)
class Owed:
    """Replay state we set while primary that the peer may not have: one MN's."""

    home: IPv4Address
    identification: int
    nonce: int | None
    accepted_at: float  # our clock
    nai: str = ""

    def block(self, address: IPv4Address, now: float) -> BindingBlock:
        """As a REPLAY forward carries it: no care-of address, no lifetime left, the
        seconds since it was accepted as the granted lifetime."""
        zero = IPv4Address(0)
        age = min(0xFFFF, max(0, round(now - self.accepted_at)))
        return BindingBlock(self.home, zero, address, zero, 0, "ipip", False, age, 0,
                            self.identification, self.nonce, 0, self.nai)


@dataclass(frozen=True)
class CloseSession:
    """The session is dead or never proved itself: close the connection."""

    reason: str


ReplicationAction = SyncSend | TrackFile | TakeOver | StandDown | Replicate | ReplayState | \
    CloseSession | SaveOwed | Log
#: every valid registration of a virtual HA address, as blocks (HomeAgent.export)
Export = Callable[[IPv4Address, float], list[BindingBlock]]
#: the replay state set since a time, as blocks (HomeAgent.replay_since)
ReplayExport = Callable[[IPv4Address, float, float], list[BindingBlock]]


@dataclass
class _GroupState:
    group: Group
    role: Role = Role.INIT
    in_sync: bool = False
    receiving: list[BindingBlock] = field(default_factory=list)  # a dump under way
    asked: bool = False  # a dump request is out
    # dump requests sent in this session, and dumps (to their last message) received: the
    # primary answers in order on one ordered stream, so a dump answers request
    # answered + 1, and only the answer to the latest request is taken
    requested: int = 0
    answered: int = 0
    last_resync: float | None = None
    received_blocks: int = 0
    master_since: float | None = None  # when we last became primary (None: stood down)
    # replay state we set while primary that the peer may not have (we stood down and
    # it has not acknowledged our REPLAY forward yet), and the record that carries it in
    # this session
    replay_owed: tuple[Owed, ...] | None = None
    replay_record: int | None = None


# keepalived's notify FIFO (vrrp_notify.c): the states an instance enters, and the
# events it reports without a change of state. MASTER_RX_LOWER_PRI is a primary
# hearing a lower-priority primary (a partition healing: keepalived answers with an
# advertisement and stays primary); the *_PRIORITY ones are a changed priority. Read as
# a state, either would make the primary stand down and take the loser's table.
_VRRP_ROLES = {"MASTER": Role.MASTER, "BACKUP": Role.BACKUP, "FAULT": Role.FAULT,
               "STOP": Role.FAULT, "DELETED": Role.FAULT}
_VRRP_EVENTS = frozenset({"MASTER_RX_LOWER_PRI", "MASTER_PRIORITY", "BACKUP_PRIORITY"})


class Replication:
    """The groups, their roles and sync state, and the session, for one home agent."""

    def __init__(self, groups: list[Group], key: bytes, export: Export, now: float,
                 alone_after: float = 10.0, replay_export: ReplayExport | None = None) -> None:
        self.export = export
        self.replay_export = replay_export  # None: nothing is sent at stand-down
        self.groups = {g.vrid: _GroupState(g) for g in groups}
        self.by_instance = {g.instance: g.vrid for g in groups}
        self.by_address = {g.address: self.groups[g.vrid] for g in groups}
        self.key = key
        self.session: Session | None = None
        self.alone_at: float | None = now + alone_after
        self.counters: dict[str, int] = {}
        self.session_since: float | None = None  # when the current session was proven
        self.died_primary: dict[int, float] = {}  # from the file: primary when it stopped

    # --- keepalived ------------------------------------------------------------------

    def start(self) -> list[ReplicationAction]:
        """Nothing is in sync yet: keepalived must not make us primary."""
        return [TrackFile(vrid, 1) for vrid in self.groups]

    def vrrp_state(self, instance: str, state: str, now: float) -> list[ReplicationAction]:
        """A line of keepalived's notify FIFO: INSTANCE "name" STATE priority."""
        vrid = self.by_instance.get(instance)
        if vrid is None:
            return []
        g = self.groups[vrid]
        new = _VRRP_ROLES.get(state)
        if new is None:  # an event, not a state: the role stays (and so does the table)
            return [Log("redundancy-vrrp-event", {"vrid": vrid, "event": state,
                                                  "role": g.role.value},
                        "info" if state in _VRRP_EVENTS else "warning")]
        was, g.role = g.role, new
        actions: list[ReplicationAction] = [Log("redundancy-role", {
            "vrid": vrid, "address": g.group.address, "role": new.value, "was": was.value,
            "in_sync": g.in_sync})]
        if new is Role.MASTER and was is not Role.MASTER:
            if not g.in_sync:
                actions.append(Log("redundancy-master-not-in-sync", {
                    "vrid": vrid, "hint": "track_file not configured in keepalived?"},
                    "warning"))
            g.in_sync, g.receiving, g.asked = True, [], False  # its table is the table now
            g.master_since = now
            actions += [TakeOver(g.group.address), self._save()]
        elif was is Role.MASTER and new is not Role.MASTER:
            g.in_sync = False  # the new primary's table wins: ask for it
            actions += [StandDown(g.group.address)]
            if g.master_since is not None:  # what we accepted meanwhile: replay state
                self._owe(g, g.master_since, now)
                g.master_since = None
                actions.append(self._save())
            actions += self._send_replay(g, now)  # (before the request: the dump that
            actions += self._ask(g, now)  # answers it has it)
        # every time keepalived speaks (it may have just restarted and reset the file)
        actions.append(TrackFile(vrid, 0 if g.in_sync else 1))
        return actions

    def keepalived_gone(self, now: float) -> list[ReplicationAction]:
        """keepalived died (the runtime watches its process): nothing here holds VRRP for
        any group, so none is primary; each goes to FAULT as if keepalived had said so
        (a primary stands down, its track file says not in sync)."""
        actions: list[ReplicationAction] = []
        for g in self.groups.values():
            if g.role is not Role.FAULT:
                actions += self.vrrp_state(g.group.instance, "FAULT", now)
        return actions

    # --- the session ------------------------------------------------------------------

    def session_up(self, initiator: bool, nonce: bytes,
                   now: float | None = None) -> list[ReplicationAction]:
        self.session = Session(self.key, initiator, nonce, started=now)
        for g in self.groups.values():
            g.receiving, g.asked, g.requested, g.answered = [], False, 0, 0
            g.replay_record = None
        return [SyncSend(self.session.hello())]

    def session_down(self, reason: str) -> list[ReplicationAction]:
        self.session = None
        for g in self.groups.values():
            g.receiving, g.asked, g.requested, g.answered = [], False, 0, 0
            g.replay_record = None  # not acknowledged: owed to the next session
        return [Log("redundancy-session-down", {"reason": reason}, "warning")]

    def session_data(self, data: bytes, now: float) -> list[ReplicationAction]:
        """Bytes from the peer; raises SyncError when the session must be closed."""
        s = self.session
        if s is None:
            raise SyncError("no session")
        if s.started is None:
            s.started = now
        was_keyed, was_established = s.keyed, s.established
        messages = s.feed(data, now)
        actions: list[ReplicationAction] = []
        if s.keyed and not was_keyed:  # prove we hold the key: the peer's first record
            actions.append(SyncSend(s.ack(now)))
        if s.established and not was_established:
            self.alone_at, self.session_since = None, now
            actions.append(Log("redundancy-session-up", {"initiator": s.initiator}))
            for g in self.groups.values():
                actions += self._send_replay(g, now)
                if g.role is not Role.MASTER:
                    actions += self._ask(g, now)
        for g in self.groups.values():
            if g.replay_record is not None and s.acked >= g.replay_record:
                g.replay_owed = g.replay_record = None  # the peer has it
                actions.append(self._save())
        for msg in messages:
            actions += self._message(msg, now)
        if messages:
            actions.append(SyncSend(s.ack(now)))
        return actions

    def _message(self, msg: SyncMessage, now: float) -> list[ReplicationAction]:
        g = self.groups.get(msg.vrid)
        if g is None or g.group.address not in msg.addresses:
            self._count("sync_unknown_group")
            return [Log("redundancy-unknown-group", {"vrid": msg.vrid}, "warning")]
        if msg.type is SyncType.DUMP_REQUEST:
            self._count("dump_requests")
            return self.dump(msg.vrid, self.export(g.group.address, now), now)
        if msg.replay:  # whatever our role: replay state only moves forward, no binding
            self._count("replay_blocks_received", len(msg.blocks))
            return [ReplayState(g.group.address, msg.blocks)]
        latest = False  # a dump part answering our latest request (bookkeeping first:
        if msg.type is SyncType.DUMP and g.answered < g.requested:  # whatever our role)
            latest = g.answered + 1 == g.requested
            if not msg.more:
                g.answered += 1
        if g.role is Role.MASTER:  # two primaries (a partition): ours is the table
            self._count("sync_ignored_as_master")
            return [Log("redundancy-ignored", {"vrid": msg.vrid, "type": msg.type.name,
                                               "reason": "we are primary"}, "warning")]
        if msg.type is SyncType.FORWARD:
            g.received_blocks += len(msg.blocks)
            self._count("forwards_received")
            return [Replicate(g.group.address, msg.blocks)]
        if not latest:  # the rest of a dump we gave up (a role flap asked again), or unasked
            self._count("dump_parts_skipped")
            if msg.more:
                return []
            return [Log("redundancy-dump-skipped", {
                "vrid": msg.vrid, "reason": "answers an earlier request" if
                g.answered < g.requested else "not asked for"}, "warning")]
        g.received_blocks += len(msg.blocks)
        g.receiving += msg.blocks
        if msg.more:
            return []
        blocks, g.receiving, g.asked = tuple(g.receiving), [], False
        g.in_sync, g.last_resync = True, now
        self._count("dumps_received")
        done: list[ReplicationAction] = [TrackFile(g.group.vrid, 0)]
        reason = "peer is primary"
        if not msg.primary:
            # neither is primary (both just started): the fresher table wins, the one
            # whose newest registration is more recent; within FRESHER_SLACK the
            # intended primary's (priority).  The peer takes ours when it asks.
            theirs = _newest_age(blocks)
            ours = _newest_age(self.export(g.group.address, now))
            if theirs is not None and (ours is None or theirs + FRESHER_SLACK < ours):
                reason = f"peer not primary, its table fresher ({_age(theirs)} vs {_age(ours)})"
            elif ours is not None and (theirs is None or ours + FRESHER_SLACK < theirs):
                self._count("dumps_kept_ours")
                return done + [Log("redundancy-in-sync", {
                    "vrid": g.group.vrid, "bindings": "ours", "reason": "peer not primary, "
                    f"our table fresher ({_age(ours)} vs {_age(theirs)})"})]
            elif not self._outranked_by(g, msg.priority):
                self._count("dumps_kept_ours")
                return done + [Log("redundancy-in-sync", {
                    "vrid": g.group.vrid, "bindings": "ours", "reason": "peer not primary, "
                    f"tables as fresh, priority {msg.priority} not above ours "
                    f"{g.group.priority}"})]
            else:
                reason = f"peer not primary, tables as fresh, priority {msg.priority} " \
                    f"above ours {g.group.priority}"
        return [Replicate(g.group.address, blocks, replace=True), *done,
                Log("redundancy-in-sync", {"vrid": g.group.vrid, "bindings": len(blocks),
                                           "reason": reason})]

    def _outranked_by(self, g: _GroupState, priority: int) -> bool:
        """The peer's configured priority is higher (a tie: the session's initiator, the
        lower address, wins, as VRRP's own tie-break prefers one side)."""
        if priority != g.group.priority:
            return priority > g.group.priority
        return self.session is not None and not self.session.initiator

    def _ask(self, g: _GroupState, now: float) -> list[ReplicationAction]:
        s = self.session
        if s is None or not s.established or g.asked:
            return []
        g.asked = True
        g.requested += 1
        return [SyncSend(s.message(SyncMessage(SyncType.DUMP_REQUEST, g.group.vrid,
                                               g.group.priority, (g.group.address,),
                                               g.group.advert_interval), now))]

    def _owe(self, g: _GroupState, since: float, now: float) -> None:
        """The replay state we set since ``since`` (as primary) joins what we owe; per MN
        the later acceptance, and a new REPLAY forward goes out (an earlier one still on
        its way may lack it)."""
        if self.replay_export is None:
            return
        owed = {o.home: o for o in g.replay_owed or ()}
        for blk in self.replay_export(g.group.address, since, now):
            o = Owed(blk.home_address, blk.identification, blk.nonce, now - blk.lifetime,
                     blk.nai)
            if blk.home_address not in owed or owed[o.home].accepted_at <= o.accepted_at:
                owed[o.home] = o
        g.replay_owed = tuple(owed.values()) or None
        g.replay_record = None

    def _send_replay(self, g: _GroupState, now: float) -> list[ReplicationAction]:
        """The replay state we owe the peer, if the session is up and it is not on its
        way already."""
        s = self.session
        if not g.replay_owed or g.replay_record is not None or s is None or \
                not s.established:
            return []
        blocks = [o.block(g.group.address, now) for o in g.replay_owed]
        actions: list[ReplicationAction] = [
            SyncSend(s.message(SyncMessage(SyncType.FORWARD, g.group.vrid, g.group.priority,
                                           (g.group.address,), g.group.advert_interval,
                                           blocks=chunk, replay=True), now))
            for chunk in _chunks(blocks)]
        g.replay_record = s.sent
        self._count("replay_blocks_sent", len(blocks))
        return actions + [Log("redundancy-replay-sent", {"vrid": g.group.vrid,
                                                         "blocks": len(blocks)})]

    # --- what outlives a restart ------------------------------------------------------

    def owed_data(self) -> dict[str, object]:
        """What a restart needs to go on owing: per group, since when we are (or a run
        that died was) primary, and the replay state owed.  JSON-ready."""
        groups: dict[str, object] = {}
        for vrid, g in self.groups.items():
            since = [t for t in (g.master_since, self.died_primary.get(vrid)) if t is not None]
            if since or g.replay_owed:
                groups[str(vrid)] = {
                    "primary_since": min(since) if since else None,
                    "owed": [[str(o.home), o.identification, o.nonce, o.accepted_at, o.nai]
                             for o in g.replay_owed or ()]}
        return {"version": OWED_VERSION, "groups": groups}

    def _save(self) -> SaveOwed:
        return SaveOwed(self.owed_data())

    def load_owed(self, data: object) -> str | None:
        """The file a previous run wrote (``owed_data``), before ``start``.  It names only
        replay state (never a binding: a REPLAY forward carries nothing else), for our
        groups; anything else in it is refused whole (the problem is returned) and
        nothing is owed."""
        if data is None:
            return None
        try:
            groups = _parse_owed(data, set(self.groups))
        except (KeyError, TypeError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"
        for vrid, (since, owed) in groups.items():
            if since is not None:
                self.died_primary[vrid] = since
            self.groups[vrid].replay_owed = tuple(owed) or None
        return None

    def restored(self, now: float) -> list[ReplicationAction]:
        """The state file is read back: a run that died as primary owes the replay state it
        set since (the bindings it accepted are in the state file, their replay state now
        in the engine); computed now, before a resync replaces that table."""
        if not self.died_primary:
            return []
        for vrid, since in self.died_primary.items():
            self._owe(self.groups[vrid], since, now)
        self.died_primary = {}
        return [self._save()]

    # --- the primary's side -----------------------------------------------------------

    def forward(self, address: IPv4Address, blocks: list[BindingBlock],
                now: float) -> list[ReplicationAction]:
        """Bindings of ``address`` the kernel took (or removed): to the backup, if any."""
        g = self._group_of(address)
        s = self.session
        if g is None or g.role is not Role.MASTER or s is None or not s.established or \
                not blocks:
            return []
        chunks = _chunks(blocks)
        self._count("blocks_forwarded", len(blocks))
        self._count("forwards_sent", len(chunks))
        return [SyncSend(s.message(SyncMessage(SyncType.FORWARD, g.group.vrid,
                                               g.group.priority, (address,),
                                               g.group.advert_interval, blocks=chunk,
                                               primary=True), now))
                for chunk in chunks]

    def dump(self, vrid: int, blocks: list[BindingBlock], now: float) -> list[ReplicationAction]:
        """Every valid registration of the group, for the backup that asked."""
        g = self.groups[vrid]
        s = self.session
        if s is None or not s.established:
            return []
        chunks = list(_chunks(blocks)) or [()]
        self._count("dumps_sent")
        primary = g.role is Role.MASTER
        actions: list[ReplicationAction] = [
            SyncSend(s.message(SyncMessage(SyncType.DUMP, vrid, g.group.priority,
                                           (g.group.address,), g.group.advert_interval,
                                           blocks=chunk, more=i < len(chunks) - 1,
                                           primary=primary), now))
            for i, chunk in enumerate(chunks)]
        return actions + [Log("redundancy-dump-sent", {"vrid": vrid, "bindings": len(blocks)})]

    # --- timers -----------------------------------------------------------------------

    def next_timer(self) -> float | None:
        times = [t for t in (self.alone_at, *self._session_timers()) if t is not None]
        return min(times) if times else None

    def _session_timers(self) -> tuple[float | None, ...]:
        """When the handshake times out; when a heartbeat is due, when the peer is dead."""
        s = self.session
        if s is None:
            return ()
        if not s.established:
            return (s.started + HANDSHAKE_TIMEOUT if s.started is not None else None,)
        assert s.last_received is not None
        return (s.last_received + DEAD_AFTER,
                (s.last_sent if s.last_sent is not None else s.last_received) + HEARTBEAT)

    def handle_timer(self, now: float) -> list[ReplicationAction]:
        actions = self._session_timer(now)
        if self.alone_at is None or now < self.alone_at:
            return actions
        self.alone_at = None  # no peer came: what our state file had is the table
        for g in self.groups.values():
            if not g.in_sync:
                g.in_sync, g.last_resync = True, now
                actions += [TrackFile(g.group.vrid, 0),
                            Log("redundancy-alone", {"vrid": g.group.vrid,
                                                     "reason": "no peer session"}, "warning")]
        return actions

    def _session_timer(self, now: float) -> list[ReplicationAction]:
        """A proven session hears from the peer at least every HEARTBEAT (an
        acknowledgement when there is nothing else): silence for DEAD_AFTER means the
        peer is gone without a FIN (power loss, a cut link), and its slot must be free
        for its next connection."""
        s = self.session
        if s is None:
            return []
        if not s.established:
            if s.started is not None and now >= s.started + HANDSHAKE_TIMEOUT:
                return [CloseSession("no authenticated hello in time")]
            return []
        assert s.last_received is not None
        if now >= s.last_received + DEAD_AFTER:
            self._count("sessions_timed_out")
            return [CloseSession(f"nothing from the peer for {now - s.last_received:.1f} s")]
        if now >= (s.last_sent if s.last_sent is not None else s.last_received) + HEARTBEAT:
            return [SyncSend(s.ack(now))]
        return []

    # --- views ------------------------------------------------------------------------

    def role_of(self, address: IPv4Address) -> Role:
        g = self._group_of(address)
        return g.role if g is not None else Role.MASTER  # an address without a group

    def _group_of(self, address: IPv4Address) -> _GroupState | None:
        return self.by_address.get(address)

    def describe(self, now: float) -> dict[str, object]:
        s = self.session
        lag = s.lag(now) if s is not None else (0, 0.0)
        return {"session": "up" if s is not None and s.established else
                "handshake" if s is not None else "down",
                "since": self.session_since if s is not None and s.established else None,
                "lag_messages": lag[0], "lag_seconds": round(lag[1], 3),
                "groups": [{"vrid": g.group.vrid, "address": str(g.group.address),
                            "instance": g.group.instance, "role": g.role.value,
                            "in_sync": g.in_sync, "last_resync": g.last_resync,
                            "blocks_received": g.received_blocks}
                           for g in self.groups.values()],
                "counters": dict(self.counters)}

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n


def _newest_age(blocks: list[BindingBlock] | tuple[BindingBlock, ...]) -> float | None:
    """Seconds since the newest registration of a table (granted minus left), None for an
    empty one.  Each side computes it with its own clock from its own state (the dump's
    from the sender's, as it sent it): comparable if the clocks agree (NTP)."""
    ages = [b.lifetime - b.lifetime_left for b in blocks if b.lifetime_left > 0]
    return float(min(ages)) if ages else None


def _age(age: float | None) -> str:
    return "empty" if age is None else f"newest {age:.0f} s old"


_PER_MESSAGE = blocks_per_message()


def _chunks(blocks: list[BindingBlock]) -> list[tuple[BindingBlock, ...]]:
    n = _PER_MESSAGE
    if len(blocks) <= n:
        return [tuple(blocks)] if blocks else []
    return [tuple(blocks[i:i + n]) for i in range(0, len(blocks), n)]


def _parse_owed(data: object, vrids: set[int]) -> dict[int, tuple[float | None, list[Owed]]]:
    """``owed_data``'s JSON back; KeyError, TypeError or ValueError at the first problem."""
    if not isinstance(data, dict) or data.get("version") != OWED_VERSION or \
            not isinstance(data.get("groups"), dict):
        raise ValueError(f"not version {OWED_VERSION} of the owed replay state")
    out: dict[int, tuple[float | None, list[Owed]]] = {}
    for key, g in data["groups"].items():
        vrid = int(key)
        if vrid not in vrids:
            raise ValueError(f"VRID {vrid} is not one of ours")
        since = g["primary_since"]
        if since is not None and not isinstance(since, int | float):
            raise TypeError(f"VRID {vrid}: primary_since is not a time")
        owed = []
        for row in g["owed"]:
            home, ident, nonce, at, nai = row
            if not isinstance(ident, int) or not 0 <= ident < 1 << 64 or \
                    not (nonce is None or isinstance(nonce, int) and 0 <= nonce < 1 << 32) \
                    or not isinstance(at, int | float) or not isinstance(nai, str):
                raise ValueError(f"VRID {vrid}: not replay state: {row!r}")
            owed.append(Owed(IPv4Address(home), ident, nonce, float(at), nai))
        out[vrid] = (None if since is None else float(since), owed)
    return out
