"""mipro watching keepalived's VRRP process (runtime/redundancy.py KeepalivedWatch,
runtime/ha_redundancy.py): a keepalived killed without a word makes every group stand
down, as FAULT does; the pid file that names it is trusted only as the notify FIFO is.

Real processes stand in for keepalived: a Python child that names itself ``keepalived``
(prctl, the kernel's comm, which is what the watch reads), killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from ipaddress import IPv4Address as A
from pathlib import Path

import pytest

from mipro.core.replication import Group, Replication, Role, StandDown, TakeOver, TrackFile
from mipro.runtime.redundancy import (
    KeepalivedMissing,
    KeepalivedWatch,
    process_problem,
    read_pid_file,
)

ROOT = Path(__file__).resolve().parents[2]
VIP, VIP2 = A("10.1.0.1"), A("10.1.0.10")
NOW = 1_700_000_000.0
NAMED = ("import ctypes,sys,time;ctypes.CDLL(None).prctl(15,sys.argv[1].encode(),0,0,0);"
         "print('ready',flush=True);time.sleep(120)")


def named_process(name: str = "keepalived", wrap: tuple[str, ...] = ()) -> subprocess.Popen:
    proc = subprocess.Popen([*wrap, sys.executable, "-c", NAMED, name],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)


@pytest.fixture
def keepalived():
    procs: list[subprocess.Popen] = []

    def start(name: str = "keepalived", wrap: tuple[str, ...] = ()) -> subprocess.Popen:
        procs.append(named_process(name, wrap))
        return procs[-1]

    yield start
    for p in procs:
        if p.poll() is None:
            kill(p)


def pid_file(tmp_path: Path, pid: int, mode: int = 0o644) -> Path:
    p = tmp_path / "vrrp.pid"
    p.write_text(f"{pid}\n")
    p.chmod(mode)
    return p


# --- the pid file and the process -------------------------------------------------------

def test_a_running_keepalived_is_found_and_its_death_seen(tmp_path, keepalived):
    proc = keepalived()
    logs: list = []
    w = KeepalivedWatch(str(pid_file(tmp_path, proc.pid)), lambda *a, **k: logs.append((a, k)))
    assert w.look() and w.running and w.pid == proc.pid and not w.exited()
    assert not w.look()  # held: the file is not read again
    kill(proc)
    assert w.exited()
    assert w.forget() == proc.pid and not w.running
    assert not w.look()  # the file still names it (SIGKILL leaves it): not running, said
    assert [a[0] for a, _ in logs] == ["keepalived-found"]  # already by the stand-down


def test_a_restarted_keepalived_is_found_through_its_new_pid_file(tmp_path, keepalived):
    first = keepalived()
    path = pid_file(tmp_path, first.pid)
    w = KeepalivedWatch(str(path))
    assert w.look()
    kill(first)
    assert w.exited()
    w.forget()
    for _ in range(3):
        assert not w.look()
    second = keepalived()
    path.write_text(f"{second.pid}\n")
    assert w.look() and w.pid == second.pid


@pytest.mark.parametrize("content,problem,level", [
    (None, "no such file", "info"),
    ("", "is not a process id", "warning"),
    ("12ab\n", "is not a process id", "warning"),
    ("-5\n", "is not a process id", "warning"),
    ("1\n", "is not a process id", "warning"),  # init: never keepalived's
    ("99999999999\n", "is not a process id", "warning"),
    ("4194000\n", "not running", "info"),
])
def test_a_pid_file_missing_or_garbage_is_said_once(tmp_path, content, problem, level):
    path = tmp_path / "vrrp.pid"
    if content is not None:
        path.write_text(content)
    logs: list = []
    w = KeepalivedWatch(str(path), lambda *a, **k: logs.append((a, k)))
    for _ in range(5):  # every tick looks again; one line
        assert not w.look()
    assert len(logs) == 1, logs
    (event, got_level), fields = logs[0]
    assert event == "keepalived-not-found" and got_level == level
    assert problem in fields["problem"] and fields["path"] == str(path)


def test_a_pid_file_naming_another_process_is_not_keepalived(tmp_path, keepalived):
    other = keepalived("sleepy")
    logs: list = []
    w = KeepalivedWatch(str(pid_file(tmp_path, other.pid)), lambda *a, **k: logs.append(k))
    assert not w.look() and not w.running
    assert logs[0]["problem"] == f"pid {other.pid} is 'sleepy', not keepalived"
    assert process_problem(os.getpid()) is not None  # pytest: not keepalived either


@pytest.mark.skipif(os.geteuid() != 0, reason="another uid needs root")
def test_a_process_named_keepalived_of_another_user_is_not_keepalived(tmp_path, keepalived):
    """A local user can name a process keepalived: the pid reused by it after keepalived
    died (its pid file left behind) is not taken for keepalived."""
    impostor = keepalived(wrap=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"))
    assert process_problem(impostor.pid) == f"pid {impostor.pid} runs as uid 65534, not root"
    assert not KeepalivedWatch(str(pid_file(tmp_path, impostor.pid))).look()


@pytest.mark.parametrize("how", ["world-writable", "group-writable", "not-roots", "symlink",
                                 "fifo"])
def test_a_pid_file_others_can_write_is_refused(tmp_path, keepalived, how):
    """Whoever writes the pid file picks the process we take for keepalived: only root's
    or ours, not writable by others, a regular file, not through a symlink."""
    proc = keepalived()
    path = pid_file(tmp_path, proc.pid)
    if how == "world-writable":
        path.chmod(0o666)
    elif how == "group-writable":
        path.chmod(0o664)
    elif how == "not-roots":
        if os.geteuid() != 0:
            pytest.skip("chown needs root")
        os.chown(path, 65534, 65534)
    elif how == "symlink":
        real = tmp_path / "real.pid"
        path.rename(real)
        path.symlink_to(real)
    else:
        path.unlink()
        os.mkfifo(path, 0o600)
    with pytest.raises(KeepalivedMissing) as exc:
        read_pid_file(str(path))
    assert exc.value.level == "error"
    assert re.search(r"owned by uid 65534|others may write|not a regular file|symbolic link",
                     exc.value.problem), exc.value.problem
    logs: list = []
    w = KeepalivedWatch(str(path), lambda *a, **k: logs.append((a, k)))
    assert not w.look() and not w.look() and len(logs) == 1


def test_check_config_refuses_a_pid_file_others_can_write_and_advises_one(tmp_path):
    """`mipro check-config`: the key unset is a warning; a pid file there now that others
    may write is an error naming the file, key and problem."""
    from mipro.tools.check_config import check_pid_file

    warnings: list[str] = []
    assert check_pid_file("ha.toml", None, warnings) == []
    assert warnings and "redundancy.keepalived_pid_file: not set" in warnings[0]
    path = tmp_path / "vrrp.pid"
    assert check_pid_file("ha.toml", str(path), []) == []  # not running now: fine
    path.write_text("123\n")
    path.chmod(0o644)
    assert check_pid_file("ha.toml", str(path), []) == []
    path.chmod(0o666)
    assert check_pid_file("ha.toml", str(path), []) == [
        f"ha.toml: redundancy.keepalived_pid_file: {path}: mode 0666: others may write it"]


@pytest.mark.parametrize("value,problem", [('"vrrp.pid"', "not an absolute path"),
                                           ("5", "expected a string")])
def test_a_relative_or_wrong_pid_file_key_is_a_config_error(tmp_path, value, problem):
    from mipro.config import ConfigError, load_ha

    conf = _example_ha_toml(tmp_path, value)
    with pytest.raises(ConfigError) as exc:
        load_ha(str(conf))
    assert any(e.startswith(f"{conf}: redundancy.keepalived_pid_file: ") and problem in e
               for e in exc.value.errors), exc.value.errors


# --- the engine: every group as FAULT -----------------------------------------------------

def test_keepalived_gone_makes_every_group_fault_and_the_primary_stand_down():
    rep = Replication([Group(51, VIP, "VI_HA"), Group(52, VIP2, "VI_HA2")], b"k" * 32,
                      lambda address, now: [], NOW)
    rep.start()
    assert TakeOver(VIP) in rep.vrrp_state("VI_HA", "MASTER", NOW)
    rep.vrrp_state("VI_HA2", "BACKUP", NOW)
    actions = rep.keepalived_gone(NOW + 1)
    assert rep.role_of(VIP) is Role.FAULT and rep.role_of(VIP2) is Role.FAULT
    assert [a for a in actions if isinstance(a, StandDown)] == [StandDown(VIP)]
    assert TrackFile(51, 1) in actions  # not in sync: the primary's table wins now
    assert rep.keepalived_gone(NOW + 2) == []  # nothing left to change


# --- the daemon: keepalived SIGKILLed while we are primary --------------------------------

def _example_ha_toml(tmp_path: Path, pid_file_value: str | None = None) -> Path:
    """conf/ha.toml with its [redundancy] example switched on, files under tmp_path."""
    subs = tmp_path / "subscribers.toml"
    subs.write_text((ROOT / "conf" / "subscribers.toml").read_text())
    subs.chmod(0o600)
    ha = (ROOT / "conf" / "ha.toml").read_text().replace(
        "/etc/mipro/subscribers.toml", str(subs)).replace(
        "/var/lib/mipro/ha-bindings.json", str(tmp_path / "ha-bindings.json")).replace(
        "/run/mipro/", f"{tmp_path}/").replace(
        '"/run/vrrp.pid"', pid_file_value or f'"{tmp_path}/vrrp.pid"')
    at = ha.index("# [redundancy]")
    lines = [re.sub(r"^# ?", "", line) for line in ha[at:].splitlines()
             if re.match(r"^# ?(\[|[a-z_]+ = )", line)]
    assert any(line.startswith("keepalived_pid_file = ") for line in lines)
    example = "\n".join(lines).replace('key = "hex:..."', 'key = "hex:' + "ab" * 32 + '"')
    conf = tmp_path / "ha.toml"
    conf.write_text(ha[:at] + example + "\n")
    conf.chmod(0o600)
    return conf


def _daemon(tmp_path: Path):
    from mipro.config import load_ha
    from mipro.dataplane.fake import FakeHaDataplane
    from mipro.runtime.ha_daemon import HaDaemon
    from mipro.runtime.logging import EventLog

    stream = open(tmp_path / "log", "w")  # noqa: SIM115 (closed with tmp_path's life)
    d = HaDaemon(load_ha(str(_example_ha_toml(tmp_path))), EventLog("ha", stream=stream))
    d.dataplane = FakeHaDataplane()
    return d, tmp_path / "log"


async def _settle(d, seconds: float) -> None:
    """Let the loop run (pidfd, FIFO, ticks) and the worker's queue drain, as the
    daemon's worker would."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        await asyncio.sleep(0.02)
        while not d.work.empty():
            await d._execute(d.work.get_nowait())


def _fifo_write(tmp_path: Path, line: str) -> None:
    fd = os.open(tmp_path / "keepalived.fifo", os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, line.encode() + b"\n")
    os.close(fd)


def _binding(d, home: str):
    from mipro.core.bindings import Binding

    now = time.time()
    b = Binding(A(home), A("198.51.100.7"), VIP, 600, now + 600, now, 1,
                source=A("198.51.100.7"))
    d.engine.bindings.put(b)
    return b


def test_keepalived_sigkilled_while_primary_stands_down_within_a_second(tmp_path,
                                                                        keepalived):
    """Primary with two bindings in the kernel; keepalived's VRRP process SIGKILLed: its
    death (the pidfd) makes the group FAULT at once: the kernel's bindings out, the table
    keeps them, the track file 1, not serving the address, one error line.  A keepalived
    started again is found through its new pid file and its BACKUP taken as ever."""
    proc = keepalived()
    (tmp_path / "vrrp.pid").write_text(f"{proc.pid}\n")
    d, log = _daemon(tmp_path)

    async def scenario() -> dict:
        r = d.redundancy
        await r.start(set())
        _fifo_write(tmp_path, 'INSTANCE "VI_HA" MASTER 100')
        await _settle(d, 0.3)
        assert r.is_master(VIP) and d.serving(VIP)
        for home in ("10.1.0.100", "10.1.0.101"):
            _binding(d, home)
        r.run([TakeOver(VIP)])  # as a takeover with these in the table
        await _settle(d, 0.05)
        assert set(map(str, d.dataplane.bindings)) == {"10.1.0.100", "10.1.0.101"}
        kill(proc)
        t0 = time.monotonic()
        while r.is_master(VIP) and time.monotonic() - t0 < 5:
            await _settle(d, 0.01)
        took = time.monotonic() - t0
        await _settle(d, 0.1)
        seen = {"took": took, "role": r.rep.role_of(VIP), "kernel": dict(d.dataplane.bindings),
                "table": len(d.engine.bindings), "serving": d.serving(VIP),
                "track": (tmp_path / "ha-sync-51").read_text().strip(),
                "status": r.describe(time.time())["keepalived"]}
        again = keepalived()
        (tmp_path / "vrrp.pid").write_text(f"{again.pid}\n")
        await _settle(d, 0.6)  # a tick or two: found
        seen["found_again"] = r.keepalived is not None and r.keepalived.pid == again.pid
        _fifo_write(tmp_path, 'INSTANCE "VI_HA" BACKUP 100')
        await _settle(d, 0.3)
        seen["role_after"] = r.rep.role_of(VIP)
        await r.stop()
        return seen

    seen = asyncio.run(scenario())
    assert seen["took"] < 1.0, seen  # the pidfd, not a poll: well within the tick
    assert seen["role"] is Role.FAULT and not seen["serving"]
    assert seen["kernel"] == {} and seen["table"] == 2
    assert seen["track"] == "1"
    assert seen["status"] == {"pid_file": str(tmp_path / "vrrp.pid"), "pid": None,
                              "running": False, "problem": f"pid {proc.pid} is not running"}
    assert seen["found_again"] and seen["role_after"] is Role.BACKUP
    lines = [x for x in log.read_text().splitlines() if "event=keepalived-gone" in x]
    assert len(lines) == 1 and "level=error" in lines[0], lines
    assert f"pid={proc.pid}" in lines[0] and "primary_for=51" in lines[0]
    assert "standing down" in lines[0]


def test_what_keepalived_wrote_before_it_died_is_read_first(tmp_path, keepalived):
    """MASTER in the FIFO, then SIGKILL, both before the loop looks: the line is taken in
    order and the death after it: FAULT, nothing in the kernel."""
    proc = keepalived()
    (tmp_path / "vrrp.pid").write_text(f"{proc.pid}\n")
    d, log = _daemon(tmp_path)
    _binding(d, "10.1.0.100")

    async def scenario():
        r = d.redundancy
        await r.start(set())
        _fifo_write(tmp_path, 'INSTANCE "VI_HA" MASTER 100')
        kill(proc)
        r._keepalived_exited()  # the pidfd's callback, before the FIFO's
        await _settle(d, 0.3)
        role = r.rep.role_of(VIP)
        await r.stop()
        return role

    assert asyncio.run(scenario()) is Role.FAULT
    assert d.dataplane.bindings == {}
    text = log.read_text()
    assert text.index("role=master") < text.index("event=keepalived-gone")


def test_a_vrrp_process_restarted_at_once_says_its_state_itself(tmp_path, keepalived):
    """keepalived's parent restarts a VRRP child that died: the new one runs (its pid file
    written) by the time the old one's death is handled, and what it wrote comes after
    what the old one wrote: its word stands, no stand-down of ours on top of it."""
    old = keepalived()
    (tmp_path / "vrrp.pid").write_text(f"{old.pid}\n")
    d, log = _daemon(tmp_path)

    async def scenario():
        r = d.redundancy
        await r.start(set())
        _fifo_write(tmp_path, 'INSTANCE "VI_HA" BACKUP 100')  # the old one's
        kill(old)
        new = keepalived()
        (tmp_path / "vrrp.pid").write_text(f"{new.pid}\n")
        _fifo_write(tmp_path, 'INSTANCE "VI_HA" MASTER 100')  # the new one's, later
        r._keepalived_exited()
        await _settle(d, 0.3)
        seen = (r.rep.role_of(VIP), r.keepalived.pid == new.pid)
        await r.stop()
        return seen

    assert asyncio.run(scenario()) == (Role.MASTER, True)
    lines = [x for x in log.read_text().splitlines() if "event=keepalived-gone" in x]
    assert len(lines) == 1 and "level=info" in lines[0] and "its state decides" in lines[0]


def test_a_clean_stop_is_no_alarm(tmp_path, keepalived):
    """keepalived stopped: it said STOP (FAULT here) before it exited; its exit is an info
    line, nothing left to stand down."""
    proc = keepalived()
    (tmp_path / "vrrp.pid").write_text(f"{proc.pid}\n")
    d, log = _daemon(tmp_path)

    async def scenario():
        r = d.redundancy
        await r.start(set())
        _fifo_write(tmp_path, 'INSTANCE "VI_HA" MASTER 100')
        await _settle(d, 0.3)
        _fifo_write(tmp_path, 'INSTANCE "VI_HA" STOP 100')
        await _settle(d, 0.3)
        kill(proc)
        await _settle(d, 0.3)
        await r.stop()

    asyncio.run(scenario())
    lines = [x for x in log.read_text().splitlines() if "event=keepalived-gone" in x]
    assert len(lines) == 1 and "level=info" in lines[0] and "primary_for=-" in lines[0]


@pytest.mark.parametrize("running", [True, False], ids=["keepalived-running",
                                                        "keepalived-dead"])
def test_an_address_left_on_the_interface_is_ours_only_with_a_running_keepalived(
        tmp_path, keepalived, running):
    """At start the virtual address on an interface means keepalived made us primary
    before mipro started, if a keepalived runs; one SIGKILLed leaves it there too."""
    proc = keepalived()
    (tmp_path / "vrrp.pid").write_text(f"{proc.pid}\n")
    if not running:
        kill(proc)
    d, log = _daemon(tmp_path)

    async def scenario():
        await d.redundancy.start({VIP})
        master = d.redundancy.is_master(VIP)
        await d.redundancy.stop()
        return master

    assert asyncio.run(scenario()) is running
    if not running:
        assert f"problem=\"pid {proc.pid} is not running\"" in log.read_text()
