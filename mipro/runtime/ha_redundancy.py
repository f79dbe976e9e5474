"""The home agent daemon's side of redundancy (seed Fig. 13): keepalived's notify FIFO and
track files, the sync session with the peer, and which bindings the kernel may hold.

The protocol is core/replication.py; the I/O pieces are runtime/redundancy.py.  Here
they meet the daemon: a binding reaches the kernel only while this home agent is
primary for its virtual address; what the kernel took is forwarded to the backup; a
takeover programs the group's bindings (and announces them by gratuitous ARP), a
stand-down removes them from the kernel and keeps them in the table.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from ..config.schema import RedundancyConfig
from ..core.actions import InstallBinding, Log, RemoveBinding
from ..core.bindings import Binding
from ..core.replication import (
    CloseSession,
    Group,
    ReplayState,
    Replicate,
    Replication,
    ReplicationAction,
    Role,
    SaveOwed,
    StandDown,
    SyncError,
    SyncSend,
    TakeOver,
    TrackFile,
)
from ..dataplane.kernel.errors import NETLINK_ERRORS
from ..wire.sync import BindingBlock
from . import statefile
from .redundancy import (
    KeepalivedWatch,
    NotifyFifo,
    SyncTransport,
    set_process_name,
    write_track_file,
)

if TYPE_CHECKING:
    from .ha_daemon import HaDaemon

TICK = 0.25  # the engine's timers (heartbeat 1 s, a silent peer 3.5 s) and the FIFO check
OWED_SUFFIX = ".replay-owed"


@dataclass(frozen=True)
class KernelSync:
    """A takeover (``install``) or a stand-down of one virtual address, in the kernel
    only (the table, the journal and the peer have the bindings already).  Resolved
    when the worker reaches it, so it is ordered with the changes queued before it."""

    address: IPv4Address
    install: bool


class HaRedundancy:
    def __init__(self, daemon: HaDaemon, cfg: RedundancyConfig) -> None:
        self.d = daemon
        self.cfg = cfg
        self.groups = [Group(g.vrid, g.address, g.instance, g.priority, g.advert_interval)
                       for g in cfg.groups]
        self.track_files = {g.vrid: g.track_file for g in cfg.groups}
        self.rep = Replication(self.groups, cfg.key, daemon.engine.export, time.time(),
                               cfg.alone_after, daemon.engine.replay_since)
        self.transport = SyncTransport(cfg.local_address, cfg.peer_address, cfg.port,
                                       self._up, self._data, self._down, daemon.log,
                                       proven=self._proven)
        self.fifo: NotifyFifo | None = None
        self.keepalived = KeepalivedWatch(cfg.keepalived_pid_file, daemon.log) \
            if cfg.keepalived_pid_file else None
        self.ticker: asyncio.TimerHandle | None = None
        self.fifo_fd = -1
        self.sessions = 0
        self.refused_records = 0
        # the replay state we may owe the peer, next to the state file (none without one)
        state_file = daemon.cfg.runtime.state_file
        self.owed_path = state_file + OWED_SUFFIX if state_file else None

    # --- lifecycle ------------------------------------------------------------------

    async def start(self, local_addresses: set[IPv4Address]) -> None:
        """Before the state file is read: until keepalived says otherwise, nothing of a
        group is primary (unless its address is already ours: keepalived was primary
        before this daemon started).  The session waits for ``connect``."""
        set_process_name(self.cfg.process_name)
        if self.owed_path is not None:
            try:
                problem = self.rep.load_owed(statefile.read(self.owed_path))
            except (OSError, ValueError) as exc:
                problem = str(exc)
            if problem is not None:  # nothing is owed then: said, not fatal
                self.d.log("replay-owed-unreadable", "warning", path=self.owed_path,
                           reason=problem)
        self.run(self.rep.start())
        self.fifo = NotifyFifo(self.cfg.notify_fifo, self.d.log)
        self.fifo_fd = self.fifo.fileno()
        self.d.add_input(self.fifo_fd, self._on_fifo)
        self._look_for_keepalived()
        # an address of ours left by a keepalived that died without a word is not its
        # word that we are primary: with a watched pid file, only a running one's is
        alive = self.keepalived is None or self.keepalived.running
        for g in self.groups:
            if g.address in local_addresses and alive:
                self.run(self.rep.vrrp_state(g.instance, "MASTER", time.time()))
        self._tick()

    async def connect(self) -> None:
        """After the state file is read: what a run that died as primary owes is taken
        from the restored table before a session can resync it away; then the session."""
        self.run(self.rep.restored(time.time()))
        await self.transport.start()

    async def stop(self) -> None:
        if self.ticker is not None:
            self.ticker.cancel()
        await self.transport.stop()
        if self.fifo is not None:
            self.d.remove_input(self.fifo_fd)
            self.fifo.close()
        if self.keepalived is not None and self.keepalived.running:
            self.d.remove_input(self.keepalived.fileno())
            self.keepalived.forget()
        for vrid, path in self.track_files.items():  # gone: keepalived must not keep us
            self._track(vrid, path, 1)

    # --- what the daemon asks -------------------------------------------------------

    def kernel_allowed(self, b: Binding) -> bool:
        return self.rep.role_of(b.home_agent) is Role.MASTER

    def is_master(self, address: IPv4Address) -> bool:
        return self.rep.role_of(address) is Role.MASTER

    def forward(self, done: list[Any], now: float) -> None:
        """Installs and removals the kernel (or the table) took: to the backup."""
        if not self._proven():  # no backup to tell: the engine would drop the blocks
            return
        by_group: dict[IPv4Address, list[BindingBlock]] = defaultdict(list)
        master: dict[IPv4Address, bool] = {}  # per address, not per binding
        block_of = self.d.engine.block_of
        for a in done:
            b = a.binding
            ours = master.get(b.home_agent)
            if ours is None:
                ours = master[b.home_agent] = self.is_master(b.home_agent)
            if ours:
                by_group[b.home_agent].append(block_of(b, now, isinstance(a, RemoveBinding)))
        for address, blocks in by_group.items():
            self.run(self.rep.forward(address, blocks, now))

    def describe(self, now: float) -> dict[str, object]:
        return dict(self.rep.describe(now), local=str(self.cfg.local_address),
                    peer=str(self.cfg.peer_address), sessions=self.sessions,
                    refused_connections=self.transport.refused,
                    replaced_connections=self.transport.replaced,
                    refused_records=self.refused_records,
                    keepalived=self.keepalived.describe() if self.keepalived else None)

    # --- replication actions --------------------------------------------------------

    def run(self, actions: list[ReplicationAction]) -> None:
        for a in actions:
            if isinstance(a, SyncSend):
                self.transport.send(a.data)  # at once: records must leave in order
            elif isinstance(a, TrackFile):
                self._track(a.vrid, self.track_files[a.vrid], a.value)
            elif isinstance(a, TakeOver):
                self.d.dispatch([KernelSync(a.address, install=True)])
            elif isinstance(a, StandDown):
                self.d.dispatch([KernelSync(a.address, install=False)])
            elif isinstance(a, Replicate):
                self.d.dispatch(self.d.call("replicate", self.d.engine.replicate, a.address,
                                            a.blocks, a.replace, time.time()))
            elif isinstance(a, ReplayState):  # log lines only: no binding, no kernel
                self.d.dispatch(self.d.call("replay", self.d.engine.take_replay, a.address,
                                            a.blocks, time.time()))
            elif isinstance(a, CloseSession):
                self.transport.close(a.reason)
            elif isinstance(a, SaveOwed):
                self._save_owed(a.data)
            elif isinstance(a, Log):
                self.d.log.emit(a)
        self.d._reschedule()

    def _save_owed(self, data: dict[str, object]) -> None:
        """Rare (a takeover, a stand-down, the peer's acknowledgement): written at once."""
        if self.owed_path is None:
            return
        try:
            statefile.write_atomic(self.owed_path, data)
        except OSError as exc:
            self.d.log("replay-owed-write-failed", "error", path=self.owed_path, reason=exc)

    def _track(self, vrid: int, path: str, value: int) -> None:
        try:
            write_track_file(path, value)
        except OSError as exc:
            self.d.log("track-file-failed", "error", vrid=vrid, path=path, reason=exc)

    # --- inputs ---------------------------------------------------------------------

    def _on_fifo(self) -> None:
        assert self.fifo is not None
        events = self.fifo.events()
        if self.fifo.fileno() != self.fifo_fd:  # keepalived made a new one: reopened
            self.d.remove_input(self.fifo_fd)
            self.fifo_fd = self.fifo.fileno()
            self.d.add_input(self.fifo_fd, self._on_fifo)
        if events and self.keepalived is not None and not self.keepalived.running:
            self._look_for_keepalived()  # a restarted one speaks: its pid file is written
        for event in events:
            if event.kind == "INSTANCE":
                self.run(self.rep.vrrp_state(event.name, event.state, time.time()))

    def _tick(self) -> None:
        """The engine's timers (handshake timeout, heartbeat, a silent peer, alone at
        start), whether keepalived has replaced its FIFO (a reload, a restart), and
        whether keepalived runs (the pidfd is an input, paused while the worker is
        behind: checked here too)."""
        self.ticker = asyncio.get_running_loop().call_later(TICK, self._tick)
        self.run(self.rep.handle_timer(time.time()))
        self._on_fifo()
        if self.keepalived is not None:
            if self.keepalived.exited():
                self._keepalived_exited()
            else:
                self._look_for_keepalived()

    def _look_for_keepalived(self) -> None:
        if self.keepalived is not None and self.keepalived.look():
            self.d.add_input(self.keepalived.fileno(), self._keepalived_exited)

    def _keepalived_exited(self) -> None:
        """keepalived's VRRP process is gone.  Killed without a word (SIGKILL, a crash), it
        left the virtual address on the interface and the peer takes it over after three
        missed advertisements; as primary we would go on answering there and answering
        ARP for the away MNs, with the peer doing the same: every group stands down, as
        for FAULT, until a keepalived is back and says its state.  What it wrote before
        it died is read first.  A new one already running (keepalived's parent restarts
        a VRRP child that died) says its state itself: its lines come after the old
        one's, and its first is BACKUP or FAULT."""
        w = self.keepalived
        if w is None or not w.exited():
            return
        self.d.remove_input(w.fileno())
        pid = w.forget()
        self._on_fifo()
        self._look_for_keepalived()
        primary = [g.vrid for g in self.groups if self.rep.role_of(g.address) is Role.MASTER]
        if w.running:
            self.d.log("keepalived-gone", "info", pid=pid, path=w.path,
                       then=f"a new keepalived runs (pid {w.pid}): its state decides")
            return
        self.d.log("keepalived-gone", "error" if primary else "info", pid=pid, path=w.path,
                   primary_for=",".join(map(str, primary)) or "-",
                   then="standing down: primary for no group until keepalived is back"
                   if primary else "not primary: nothing to stand down")
        self.run(self.rep.keepalived_gone(time.time()))

    def _up(self, initiator: bool, nonce: bytes) -> None:
        self.sessions += 1
        self.run(self.rep.session_up(initiator, nonce, time.time()))

    def _proven(self) -> bool:
        return self.rep.session is not None and self.rep.session.established

    def _data(self, data: bytes) -> None:
        try:
            self.run(self.rep.session_data(data, time.time()))
        except SyncError as exc:
            self.refused_records += 1
            self.d.log("redundancy-record-refused", "warning", peer=self.cfg.peer_address,
                       reason=exc)
            self.transport.close(str(exc))

    def _down(self, reason: str) -> None:
        self.run(self.rep.session_down(reason))


async def apply_kernel_sync(daemon: HaDaemon, a: KernelSync) -> None:
    """Takeover: every binding of the address the kernel lacks goes in (announced by
    gratuitous ARP: hosts on the home link still have the old primary's MAC for the away
    MNs).  Stand-down: every one the kernel holds comes out; the table keeps them."""
    dp = daemon.dataplane
    if dp is None:
        return
    if a.install:
        ops = [("install", b) for b in daemon.engine.bindings
               if b.home_agent == a.address and dp.bindings.get(b.home_address) is not b]
    else:
        ops = [("remove", b) for b in list(dp.bindings.values()) if b.home_agent == a.address]
    started = time.monotonic()
    failed: dict[int, str] = {}
    if ops:
        try:
            failed = await dp.apply(ops)
        except NETLINK_ERRORS as exc:
            failed = {i: str(exc) for i in range(len(ops))}
    if a.install and daemon.redundancy is not None:  # a registration that came in while
        # keepalived had given us the address but not yet told us: the peer gets it too
        daemon.redundancy.forward([InstallBinding(b) for i, (_, b) in enumerate(ops)
                                   if i not in failed], time.time())
    daemon.log("takeover" if a.install else "stand-down", address=a.address,
               bindings=len(ops) - len(failed),
               ms=round((time.monotonic() - started) * 1000, 1))
    if failed:
        daemon.log("takeover-incomplete" if a.install else "stand-down-incomplete", "error",
                   address=a.address, failed=len(failed), first=next(iter(failed.values())))
