"""`mipro ha`: the home agent daemon."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from ipaddress import IPv4Address
from typing import Any

from ..config import ConfigError, HaConfig, load_ha
from ..core.actions import FetchSubscriber, InstallBinding, Log, RemoveBinding, Send
from ..core.advertiser import Advertiser, AdvertPolicy
from ..core.bindings import Binding, dotted
from ..core.ha import HaPolicy, HomeAgent
from ..dataplane.fake import FakeHaDataplane
from ..dataplane.ha import HaDataplane
from ..dataplane.kernel.errors import KERNEL_ERRORS, NETLINK_ERRORS
from ..dataplane.kernel.floodlimit import EXEMPT_SET, Limits, SourceLimiter
from ..dataplane.kernel.netlink import Netlink
from ..dataplane.link.linklayer import IcmpLink
from ..subscribers.cache import CachedStore
from ..subscribers.file_store import load_subscribers
from ..subscribers.model import MemoryStore, StoreUnavailable, Unavailable
from ..wire import AgentFlags
from .daemon import EngineDaemon, datagrams, run_daemon
from .gcpolicy import LongLivedHeap
from .ha_redundancy import HaRedundancy, KernelSync, apply_kernel_sync
from .journal import BindingJournal
from .logging import LEVELS, EventLog
from .systemd import notify

STATE_FLUSH_DELAY = 0.5
IP_FREEBIND = 15  # linux/in.h; not exported by Python's socket module
RECV_BATCH = 256
MAX_PEERS = 1 << 16
CHANGES = (InstallBinding, RemoveBinding)
RESTORE_SLICE = 2048  # restored bindings per kernel batch, between registrations
# How soon a thread that holds the GIL must hand it over (CPython's default: 5 ms).  The
# event loop lets go of the GIL at every send and receive; while the journal's threads
# encode, each time it could wait 5 ms to get it back (bench/stallprobe.py: 20-60 ms lags
# at a million bindings with the journal thread in its encoder).
SWITCH_INTERVAL = 0.0005


@dataclass(frozen=True)
class Reinstall:
    """Restored bindings for the kernel, resolved when the worker reaches them."""

    bindings: list[Binding]
    done: asyncio.Future = field(repr=False)


def make_store(cfg: HaConfig) -> Any:
    if cfg.subscriber_store == "file":
        if cfg.subscribers_file is None:  # the loader requires it: a bug if it gets here
            raise ConfigError([f"{cfg.path}: subscribers.file: missing"])
        return load_subscribers(cfg.subscribers_file, f"{cfg.path}: subscribers.file")
    from ..subscribers.ldap_store import LdapSettings, LdapStore

    settings = dict(cfg.ldap or {})
    ttl, negative_ttl = settings.pop("cache_ttl"), settings.pop("cache_negative_ttl")
    size = settings.pop("cache_size")
    return CachedStore(LdapStore(LdapSettings(**settings)), ttl, negative_ttl, size)


def freeze_loaded() -> None:
    """A store just loaded, out of every collection from now on (``gc.freeze``).

    The file store loads with collections off, so a million subscribers (5 million
    objects) sit in the young generations after it: each young collection walked them
    all, 2.6 s, and the start-up's full collection 3 s (a first start at 1,000,000 took
    11.5 s against 8.5 s before).  They are long-lived and form no cycles (a collection
    after the load finds none unreachable), which is what gcpolicy.py assumes of the
    table too."""
    gc.freeze()


def make_policy(cfg: HaConfig, udp_tunnels: bool = True) -> HaPolicy:
    """``udp_tunnels``: whether the dataplane can carry RFC 3519 tunnels at all."""
    lim = cfg.limits
    return HaPolicy(addresses=cfg.addresses, max_lifetime=cfg.max_lifetime,
                    replay_window=cfg.replay_window, encapsulations=cfg.encapsulations,
                    reverse_tunneling=cfg.reverse_tunneling, vendor_id=cfg.vendor_id,
                    fa_associations=dict(cfg.fa_peers),
                    udp_tunnelling=cfg.udp_tunnelling and udp_tunnels,
                    udp_keepalive=cfg.udp_keepalive, home_networks=(cfg.home_network,),
                    source_rate=lim.per_source, source_burst=lim.per_source_burst,
                    unknown_rate=lim.unknown_sources, unsigned_reply_rate=lim.unsigned_replies)


def info_logged(cfg: HaConfig) -> bool:
    """Whether info-level events are written: if not, the engine builds none."""
    return LEVELS[cfg.runtime.log_level] <= LEVELS["info"]


LOOKUP_THREADS = 4  # directory lookups in flight at once (each thread has a connection)


def make_advert_policy(cfg: HaConfig) -> AdvertPolicy:
    return AdvertPolicy(cfg.address, cfg.home_network.prefixlen, AgentFlags.H, (),
                        cfg.max_lifetime, cfg.advertisement_interval)


class HaDaemon(EngineDaemon[HomeAgent]):
    BATCH = 256  # one netlink batch for many registrations
    LOAD = staticmethod(load_ha)
    LIVE = frozenset({
        "max_lifetime", "replay_window", "encapsulations", "reverse_tunneling", "vendor_id",
        "subscriber_store", "subscribers_file", "ldap", "fa_peers", "advertisement_interval",
        "udp_tunnelling", "udp_keepalive", "limits.unsigned_replies", "runtime.log_level"})
    def __init__(self, cfg: HaConfig, log: EventLog) -> None:
        super().__init__(log)
        self.cfg = cfg
        self.engine = HomeAgent(make_policy(cfg), make_store(cfg))
        freeze_loaded()
        self.engine.info_events = info_logged(cfg)
        self.dataplane: HaDataplane | FakeHaDataplane | None = None
        self.sock: socket.socket | None = None  # ha.address's; replies and UDP tunnels
        self.socks: dict[IPv4Address, socket.socket] = {}  # one per address served
        self.send_drops = 0
        self.flush_handle: asyncio.TimerHandle | None = None
        self.compacting: asyncio.Future | None = None
        self.advertiser: Advertiser | None = None
        self.icmp: IcmpLink | None = None
        self.advert_timer: asyncio.TimerHandle | None = None
        self.journal = BindingJournal(cfg.runtime.state_file) if cfg.runtime.state_file else None
        self.started = time.time()
        self.lookup_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.flood_limit: SourceLimiter | None = None
        self.redundancy = HaRedundancy(self, cfg.redundancy) if cfg.redundancy else None
        self.heap = LongLivedHeap()
        self.peers: dict[str, IPv4Address] = {}  # senders seen lately, by their text
        self.reinstalling: asyncio.Task | None = None  # restored bindings into the kernel
        self.reloading: asyncio.Task | None = None  # a SIGHUP's subscriber file being read
        self.reload_again = False  # a SIGHUP came while reading: read it again after

    @property
    def dp(self) -> HaDataplane | FakeHaDataplane:
        """The dataplane, once run() has started it."""
        if self.dataplane is None:
            raise RuntimeError("the dataplane is not started")
        return self.dataplane

    @property
    def main_sock(self) -> socket.socket:
        """ha.address's socket, once run() has opened it."""
        if self.sock is None:
            raise RuntimeError("the home agent's socket is not open")
        return self.sock

    # --- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        dp = self.cfg.dataplane
        if dp.backend == "fake":
            self.backend_reason = "configured: no kernel changes"
            self.dataplane = FakeHaDataplane(self.log)
            self.log("dataplane", backend="fake", reason=self.backend_reason)
        else:
            backend = await self.pick_backend(dp.backend)
            self.dataplane = HaDataplane(
                backend=backend, address=self.cfg.address,
                home_interface=self.cfg.home_interface, home_network=self.cfg.home_network,
                table=dp.table, rule_priority=dp.rule_priority,
                tunnel_interface=dp.tunnel_interface, log=self.log,
                proxy_arp=self.cfg.proxy_arp, kernel_tunnels=self.cfg.kernel_tunnels,
                addresses=self.cfg.addresses)
        await self.dataplane.start(loop)
        await self._start_flood_limit()
        self.engine.set_policy(make_policy(self.cfg, self.dataplane.udp_tunnels))
        worker = asyncio.create_task(self._worker())
        if self.redundancy is not None:  # before the state file: no kernel state until primary
            await self.redundancy.start(await local_addresses())
        # no collections while the state file is read: at 1,000,000 full collections over
        # the loaded subscribers were most of a restart's load (py-spy); heap.start below
        # freezes it all
        enabled = gc.isenabled()
        gc.disable()
        try:
            self._restore()
            freeze_loaded()  # the restored bindings: long-lived too
        finally:
            if enabled:
                gc.enable()
        if self.redundancy is not None:  # what we owe from the restored table, then the peer
            await self.redundancy.connect()
        for address in self.cfg.addresses:
            sock = open_socket(address)
            self.socks[address] = sock
            self.add_input(sock.fileno(), partial(self._on_readable, sock))
        self.sock = self.socks[self.cfg.address]
        relay = getattr(self.dataplane, "relay", None)
        if relay is not None:  # UDP tunnel data leaves from port 434, as the NAPT expects,
            relay.udp_send = self._udp_send  # of the address the MN registered with
            relay.udp_send_from = self._udp_send_from
        control = await self.serve_operations(self.cfg.runtime.control_socket)
        if self.cfg.advertise:
            self.advertiser = Advertiser(make_advert_policy(self.cfg), time.time())
            self.icmp = IcmpLink(self.cfg.home_interface, self.cfg.address, ("224.0.0.2",))
            self.add_input(self.icmp.fileno(), self._on_icmp)
            self._advertise()
        self._reschedule()
        self.heap.start()  # subscribers and bindings are long-lived: out of the GC's scans
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        self.log("started", address=self.cfg.address, config=self.cfg.path,
                 bindings=len(self.engine.bindings), pid=os.getpid())
        notify("READY=1\nSTATUS=serving")
        await self.stopping.wait()
        notify("STOPPING=1")
        self.log("stopping", bindings=len(self.engine.bindings))
        for sock in self.socks.values():
            self.remove_input(sock.fileno())
        if self.icmp is not None:
            self.remove_input(self.icmp.fileno())
            self.icmp.close()
        if self.advert_timer is not None:
            self.advert_timer.cancel()
        if self.reinstalling is not None:
            self.reinstalling.cancel()
        if self.reloading is not None:  # its thread finishes; what it read is dropped
            self.reloading.cancel()
        await self.work.join()
        worker.cancel()
        self.heap.stop()
        sys.setswitchinterval(switch_interval)
        await self._final_flush()
        if self.redundancy is not None:
            await self.redundancy.stop()
        await control.stop()
        await self.dataplane.stop()  # bindings stay in the state file for the next start
        if self.flood_limit is not None:
            await self.flood_limit.stop()
        if self.lookup_pool is not None:
            self.lookup_pool.shutdown(wait=False, cancel_futures=True)
        for sock in self.socks.values():
            sock.close()
        self.stop_log_flush()
        self.log("stopped")

    async def _start_flood_limit(self) -> None:
        """The kernel drops each unknown source's excess before it is queued (docs/
        security.md); FA peers and the sources of bindings are exempt."""
        lim = self.cfg.limits
        if not lim.kernel or isinstance(self.dataplane, FakeHaDataplane):
            return
        limiter = SourceLimiter(
            self.cfg.address, Limits(rate=max(1, round(lim.per_source)),
                                     burst=max(1, round(lim.per_source_burst)),
                                     aggregate_rate=round(lim.unknown_sources),
                                     aggregate_burst=round(lim.unknown_sources)),
            solicit_interface=self.cfg.home_interface if self.cfg.advertise else None)
        try:
            await limiter.start(exempt=self.cfg.fa_peers)
        except KERNEL_ERRORS as exc:
            self.log("flood-limit-unavailable", "warning", reason=exc)
            with contextlib.suppress(*KERNEL_ERRORS):
                await limiter.stop()
            return
        self.flood_limit = limiter
        self.dp.exempt_sources(EXEMPT_SET)
        self.log("flood-limit", per_source=lim.per_source, unknown_sources=lim.unknown_sources,
                 exempt=len(self.cfg.fa_peers))

    def _restore(self) -> None:
        if self.journal is None:
            return
        try:
            bindings = self.journal.load()
        except (KeyError, TypeError, ValueError, OSError) as exc:
            self.log("state-file-unreadable", "warning", path=self.journal.snapshot, reason=exc)
            return
        if self.journal.skipped:  # the rest is restored
            self.log("state-rows-skipped", "warning", path=self.journal.snapshot,
                     count=len(self.journal.skipped), first=self.journal.skipped[0])
        actions = self.call("restore", self.engine.restore, bindings, time.time())
        restored = [a.binding for a in actions if isinstance(a, InstallBinding)]
        self.dispatch([a for a in actions if not isinstance(a, InstallBinding)])
        if restored:  # the table is whole: registrations are answered from now on
            self.reinstalling = asyncio.get_running_loop().create_task(
                self._reinstall(restored))

    async def _reinstall(self, bindings: list[Binding]) -> None:
        """The restored bindings into the kernel a slice at a time, through the worker:
        a registration waits for one slice at most, and a binding that one replaced or
        removed meanwhile is skipped.  Already in the state file: not journalled."""
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        for first in range(0, len(bindings), RESTORE_SLICE):
            done = loop.create_future()
            self.dispatch([Reinstall(bindings[first:first + RESTORE_SLICE], done)])
            await done
        self.log("kernel-restored", bindings=len(bindings),
                 seconds=round(time.monotonic() - started, 1))

    async def _reinstall_slice(self, a: Reinstall) -> None:
        try:
            current = [InstallBinding(b) for b in a.bindings
                       if self.engine.bindings.get(b.home_address) is b]
            failed = await self._apply(current) if current else {}
            extra: list[Any] = []
            for i, reason in failed.items():  # forgotten, as a refused registration is
                extra += self.call("install_failed", self.engine.install_failed, current[i],
                                   reason, time.time())
            if self.redundancy is not None:
                self.redundancy.forward([c for i, c in enumerate(current) if i not in failed],
                                        time.time())
            self.dispatch(extra)
        finally:
            if not a.done.done():
                a.done.set_result(None)

    def reload(self) -> None:
        """SIGHUP.  The subscriber file is read and checked in a thread (a million
        subscribers take ~8 s), so the home agent goes on answering with the store it has;
        the new configuration is swapped in on the event loop once its store is built, or
        refused whole (file, key, problem) with the old one kept.  A SIGHUP meanwhile
        reloads again once this one is done."""
        if self.reloading is not None and not self.reloading.done():
            self.reload_again = True
            return
        new = self.reload_candidate()
        if new is not None:
            self.reloading = asyncio.get_running_loop().create_task(self._reload_store(new))

    async def _reload_store(self, cfg: HaConfig) -> None:
        self.log("reload-reading", store=cfg.subscriber_store,
                 file=cfg.subscribers_file or "-")
        try:
            store = await asyncio.to_thread(make_store, cfg)
            freeze_loaded()
        except ConfigError as exc:  # the old configuration stays
            self._refuse(exc.errors)
        except Exception as exc:  # a bug in a store must not take the daemon down
            self._internal_error("reload", exc)
            self.log("reload-kept-old-config", "warning")
        else:
            if not self.stopping.is_set():
                self.swap_in(cfg, self._prepare(cfg, store))
        finally:
            if self.reload_again and not self.stopping.is_set():
                self.reload_again = False
                asyncio.get_running_loop().call_soon(self._guarded_reload)

    def prepare_reload(self, cfg: HaConfig) -> Callable[[], None]:
        """The subscriber file (or directory settings) is read again on every reload."""
        return self._prepare(cfg, make_store(cfg))  # ConfigError: the old config stays

    def _prepare(self, cfg: HaConfig, store: Any) -> Callable[[], None]:
        policy = make_policy(cfg, self.dataplane.udp_tunnels if self.dataplane else True)
        new_peers = set(cfg.fa_peers) - set(self.cfg.fa_peers)

        def commit() -> None:
            self.engine.set_policy(policy)
            self.engine.info_events = info_logged(cfg)
            old = self.engine.store
            self.engine.set_store(store)
            if old is not store and hasattr(old, "close"):
                old.close()
            if old is not store and isinstance(old, MemoryStore):  # freed bit by bit
                asyncio.get_running_loop().run_in_executor(None, old.release)
            if self.advertiser is not None:
                self.advertiser.policy = make_advert_policy(cfg)
            if self.flood_limit is not None and new_peers:  # removed ones: at a restart
                asyncio.get_running_loop().create_task(self.flood_limit.add_exempt(new_peers))
            self.log("subscribers-loaded",
                     subscribers=len(store) if hasattr(store, "__len__") else "ldap")
        return commit

    # --- datagrams and timers -----------------------------------------------------------

    def _advertise(self) -> None:
        """Agent advertisements on the home link (H bit): a returning MN learns it is home."""
        adv, icmp = self.advertiser, self.icmp
        if adv is None or icmp is None:
            return
        now = time.time()
        for a in adv.handle_timer(now):
            if self.serving(self.cfg.address):
                icmp.send(a.dst, a.data)
        loop = asyncio.get_running_loop()
        self.advert_timer = loop.call_later(max(0.05, adv.next_timer() - now), self._advertise)

    def _on_icmp(self) -> None:
        adv, icmp = self.advertiser, self.icmp
        if adv is None or icmp is None:
            return
        for _ in range(RECV_BATCH):  # bounded: a flood of solicitations cannot starve us
            got = icmp.receive()
            if got is None:
                return
            src, msg = got
            if msg[:1] == b"\x0a" and self.serving(self.cfg.address):
                for a in adv.solicited(src, time.time()):
                    icmp.send(a.dst, a.data)

    def serving(self, address: IPv4Address) -> bool:
        """Whether this home agent is the one answering for ``address`` now (with
        redundancy: primary for its virtual address)."""
        return self.redundancy is None or self.redundancy.is_master(address)

    def _on_readable(self, sock: socket.socket) -> None:
        """Drain up to a batch of datagrams per wakeup (asyncio's transport reads one)."""
        actions: list[Any] = []
        now = time.time()
        for data, addr in datagrams(sock, RECV_BATCH, self.log):
            if data[:1] == b"\x04":  # RFC 3519 tunnel data from an MN behind a NAPT
                self.dp.from_udp(data, self._peer(addr[0]), addr[1])
                continue
            self.request_seen(data, addr[0], addr[1])
            actions += self.call("receive", self.engine.receive, data, self._peer(addr[0]),
                                 addr[1], now)
        self.dispatch(actions)
        self._reschedule()

    def _peer(self, text: str) -> IPv4Address:
        """A sender's address, parsed once (1.3 µs) and shared by its bindings."""
        address = self.peers.get(text)
        if address is None:
            if len(self.peers) >= MAX_PEERS:  # spoofed sources: start afresh
                self.peers.clear()
            address = self.peers[text] = IPv4Address(text)
        return address

    # --- the subscriber directory, off the event loop ---------------------------------

    def _fetch(self, a: FetchSubscriber) -> None:
        store = self.engine.store
        if not isinstance(store, CachedStore):  # only a directory's cache parks requests
            return
        if self.lookup_pool is None:
            self.lookup_pool = concurrent.futures.ThreadPoolExecutor(
                LOOKUP_THREADS, thread_name_prefix="mipro-lookup")
        timeout = float((self.cfg.ldap or {}).get("timeout", 3.0)) + 1.0
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self.lookup_pool, store.fetch, a.home_address, a.nai)
        task = asyncio.ensure_future(asyncio.wait_for(job, timeout))
        task.add_done_callback(lambda t: self._fetched(a, store, t))

    def _fetched(self, a: FetchSubscriber, store: Any, task: asyncio.Future) -> None:
        try:
            sub = task.result()
        except (StoreUnavailable, TimeoutError, OSError) as exc:
            reason = str(exc) or "directory lookup timed out"
            store.record_failure(reason)
            result: Any = Unavailable(reason)
        except Exception as exc:  # a bug in the store: deny (130), never register
            self._internal_error("subscriber lookup", exc)
            store.record_failure(repr(exc))
            result = Unavailable(repr(exc))
        else:
            store.record(a.home_address, a.nai, sub)
            result = sub
        self.dispatch(self.call("subscriber_ready", self.engine.subscriber_ready,
                                a.home_address, a.nai, result, time.time()))
        self._reschedule()

    def _udp_send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.main_sock.sendto(data, addr)

    def _udp_send_from(self, data: bytes, addr: tuple[str, int], local: IPv4Address) -> None:
        (self.socks.get(local) or self.main_sock).sendto(data, addr)

    async def _execute(self, actions: list[Any]) -> None:
        """Program the kernel before answering, so the MN's first packets find the tunnel,
        and acknowledge (reply, journal) only what the kernel took: a binding it refused
        is answered with the engine's denial instead, and removed again."""
        changes: list[Any] = []
        ordered = False  # a takeover, a stand-down or restored bindings among them
        for a in actions:  # one pass over a batch of registrations' actions
            if isinstance(a, CHANGES):
                changes.append(a)
            elif isinstance(a, KernelSync | Reinstall):
                ordered = True
        held: set[int] = set()  # acceptances not to send
        if ordered:
            await self._ordered(actions)
        if changes:
            failed = await self._apply(changes)
            extra: list[Any] = []
            for i, a in enumerate(changes):
                if i not in failed:
                    continue
                if isinstance(a, InstallBinding):
                    if a.reply is not None:
                        held.add(id(a.reply))
                    extra += self.call("install_failed", self.engine.install_failed, a,
                                       failed[i], time.time())
                else:
                    self.log("remove-failed", "warning", home=a.binding.home_address,
                             reason=failed[i])
            done = [a for i, a in enumerate(changes) if i not in failed]
            self._journal(done)
            undo = [a for a in extra if isinstance(a, RemoveBinding)]
            if undo:
                for i, reason in (await self._apply(undo)).items():
                    self.log("remove-failed", "warning", home=undo[i].binding.home_address,
                             reason=reason)
                self._journal(undo)
            if self.redundancy is not None:  # what we acknowledge, the backup gets
                self.redundancy.forward(done + undo, time.time())
            actions = actions + [a for a in extra if not isinstance(a, RemoveBinding)]
        one = self.main_sock if len(self.socks) == 1 else None  # else: by source address
        for a in actions:
            if isinstance(a, Send):
                if id(a) in held:
                    continue
                sock = one or (self.socks.get(a.src) if a.src is not None else None) or \
                    self.main_sock
                try:
                    sock.sendto(a.data, (dotted(a.dst), a.port))
                    self.reply_sent(a.data, a.dst, a.port)
                except (BlockingIOError, InterruptedError):
                    self.send_drops += 1  # UDP: the MN retransmits
                except OSError as exc:
                    self.log("send-failed", "warning", dst=f"{a.dst}:{a.port}", reason=exc)
            elif isinstance(a, Log):
                self.log.emit(a)
            elif isinstance(a, FetchSubscriber):
                self._fetch(a)

    async def _ordered(self, actions: list[Any]) -> None:
        """Takeovers, stand-downs and restored slices, in their order among the changes."""
        try:
            for a in actions:
                if isinstance(a, KernelSync):  # a takeover or a stand-down, in order
                    await apply_kernel_sync(self, a)
                elif isinstance(a, Reinstall):  # restored bindings, a slice at a time
                    await self._reinstall_slice(a)
        except BaseException:  # the reinstall goes on with its next slice
            for a in actions:
                if isinstance(a, Reinstall) and not a.done.done():
                    a.done.set_result(None)
            raise

    async def _apply(self, changes: list[Any]) -> dict[int, str]:
        """The kernel's answer for each change: {index: why it failed}.  With redundancy
        only the primary's bindings go to the kernel (a backup's stay in the table), and a
        removal only of what the kernel holds."""
        index = [i for i, a in enumerate(changes) if self._kernel_change(a)]
        # a registration accepted while we were primary, reached after a stand-down: a
        # backup must not answer 0 (the new primary never hears of it): denied, retried
        stale: dict[int, str] = {}
        if self.redundancy is not None and len(index) < len(changes):  # not per request
            kept = set(index)
            stale = {i: "not primary any more" for i, a in enumerate(changes)
                     if isinstance(a, InstallBinding) and a.reply is not None and
                     i not in kept}
        ops = [("install" if isinstance(changes[i], InstallBinding) else "remove",
                changes[i].binding) for i in index]
        if not ops:
            return stale
        try:
            failed = await self.dp.apply(ops)
        except NETLINK_ERRORS as exc:  # the whole batch: nothing acknowledged
            self.log("dataplane-error", "error", ops=len(ops), reason=exc)
            failed = {i: str(exc) for i in range(len(ops))}
        return stale | {index[i]: reason for i, reason in failed.items()}

    def _kernel_change(self, a: InstallBinding | RemoveBinding) -> bool:
        if self.redundancy is None:
            return True
        if isinstance(a, InstallBinding):
            return self.redundancy.kernel_allowed(a.binding)
        return self.dataplane is not None and a.binding.home_address in self.dataplane.bindings

    def _journal(self, changes: list[Any]) -> None:
        if self.journal is None or not changes:
            return
        for a in changes:
            self.journal.record("install" if isinstance(a, InstallBinding) else "remove",
                                a.binding)
        self._schedule_flush()

    # --- state file -------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if self.flush_handle is None and self.journal is not None:
            loop = asyncio.get_running_loop()
            self.flush_handle = loop.call_later(STATE_FLUSH_DELAY, self._flush_state)

    def _flush_state(self) -> None:
        """Hand the journal its changes, or compact it when it outgrows the table: the
        journal's threads write, the event loop never waits for the disk."""
        self.flush_handle = None
        if self.journal is None:
            return
        busy = self.compacting is not None and not self.compacting.done()
        if not busy and self.journal.needs_compaction(len(self.engine.bindings)):
            job = self.journal.compact_in_background(self.engine.bindings.slices)
            self.compacting = asyncio.wrap_future(job)
            self.compacting.add_done_callback(self._state_written)
        elif (written := self.journal.flush_in_background()) is not None:
            asyncio.wrap_future(written).add_done_callback(self._state_written)

    def _state_written(self, job: asyncio.Future) -> None:
        if not job.cancelled() and job.exception() is not None:  # kept for the next flush
            self.log("state-write-failed", "error", path=self.journal.snapshot if self.journal
                     else None, reason=job.exception())

    async def _final_flush(self) -> None:
        if self.flush_handle is not None:
            self.flush_handle.cancel()
        if self.compacting is not None:
            with contextlib.suppress(OSError):  # logged by _state_written
                await self.compacting
        if self.journal is not None:
            self.journal.rotate()
            self.journal.write_snapshot(list(self.engine.bindings))
            self.journal.close()

    # --- status -------------------------------------------------------------------------

    def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("command", "status") != "status":
            return {"error": f"unknown command {request.get('command')!r}"}
        now = time.time()
        bindings = []
        in_kernel: Any = self.dataplane.bindings if self.dataplane is not None else {}
        for b in sorted(self.engine.bindings, key=lambda b: b.home_address):
            entry = {"home_address": str(b.home_address),
                     "care_of_address": str(b.care_of_address),
                     "lifetime_left": b.remaining(now), "lifetime": b.lifetime,
                     "encapsulation": b.encapsulation, "reverse_tunnel": b.reverse_tunnel,
                     "nai": b.nai, "source": f"{b.source}:{b.source_port}",
                     "home_agent": str(b.home_agent),
                     "in_kernel": in_kernel.get(b.home_address) is b}
            counters = self.dataplane.counters(b.home_address) if self.dataplane else None
            if counters is not None:
                entry["counters"] = counters
            bindings.append(entry)
        return {"role": "ha", "pid": os.getpid(), "config": self.cfg.path,
                "address": str(self.cfg.address),
                "dataplane": self.dataplane.name if self.dataplane else None,
                "dataplane_reason": self.backend_reason,
                "uptime": round(now - self.started, 1), "bindings": bindings,
                "counters": dict(self.engine.counters, reply_send_drops=self.send_drops,
                                 internal_errors=self.internal_errors,
                                 input_pauses=self.input_pauses),
                "directory": self._directory_status(),
                "tunnel_drops": self.dataplane.drops() if self.dataplane else {},
                "flood_limit": self.flood_limit.counters() if self.flood_limit else None,
                "redundancy": self.redundancy.describe(now) if self.redundancy else None}


    def _directory_status(self) -> dict[str, Any]:
        store = self.engine.store
        if not isinstance(store, CachedStore):
            return {"store": "file", "subscribers": len(store) if hasattr(store, "__len__")
                    else None}
        return {"store": "ldap", "breaker": store.state, "cached": len(store.entries),
                "hits": store.hits, "misses": store.misses, "found": store.found,
                "not_found": store.not_found, "failed": store.failed,
                "failures_in_a_row": store.failures, "last_error": store.last_error or None,
                "waiting": self.engine.parked_count}


def open_socket(address: IPv4Address) -> socket.socket:
    """UDP 434 bound to one home agent address: replies and UDP tunnel data leave from
    the address the MN sent to, which is all a NAPT between us lets through.  Freebind: a
    backup binds the virtual address keepalived has not given it (yet)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
    sock.bind((str(address), 434))
    sock.setblocking(False)
    return sock


async def local_addresses() -> set[IPv4Address]:
    """This host's IPv4 addresses (the virtual one among them: keepalived is primary)."""
    nl = Netlink()
    try:
        return await nl.all_addresses()
    finally:
        nl.close()


def main(config_path: str) -> int:
    return run_daemon("ha", config_path, load_ha, HaDaemon)


async def cleanup(cfg: HaConfig, log: EventLog) -> None:
    """What a home agent that did not stop cleanly leaves in the kernel: its table, rule,
    tunnel links, proxy-neighbour entries (which would keep answering ARP for the away
    MNs after the backup took over) and the flood limiter.  Idempotent."""
    if cfg.dataplane.backend == "fake":
        return
    dp = cfg.dataplane
    dataplane = HaDataplane(
        backend="kernel" if dp.backend == "kernel" else "userspace", address=cfg.address,
        home_interface=cfg.home_interface, home_network=cfg.home_network, table=dp.table,
        rule_priority=dp.rule_priority, tunnel_interface=dp.tunnel_interface, log=log,
        proxy_arp=cfg.proxy_arp, kernel_tunnels=cfg.kernel_tunnels)
    try:
        await dataplane.cleanup_leftovers()
    finally:
        dataplane.nl.close()
    limiter = SourceLimiter(cfg.address, Limits(rate=1, burst=1))
    with contextlib.suppress(*KERNEL_ERRORS):
        await limiter.stop()


class Cleanup:
    """`mipro ha --cleanup`, run the way the daemon is (config errors, exit codes)."""

    def __init__(self, cfg: HaConfig, log: EventLog) -> None:
        self.cfg, self.log = cfg, log

    def listen_metrics(self) -> None:
        """A one-shot command serves no metrics."""

    async def run(self) -> None:
        await cleanup(self.cfg, self.log)
        self.log("cleaned-up", config=self.cfg.path)


def cleanup_main(config_path: str) -> int:
    return run_daemon("ha", config_path, load_ha, Cleanup)
