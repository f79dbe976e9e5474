"""Restored bindings reach the kernel a slice at a time, between registrations."""

import asyncio
import io
import time
from ipaddress import IPv4Address as A
from pathlib import Path

from mipro.config import load_ha
from mipro.core.actions import InstallBinding
from mipro.core.bindings import Binding
from mipro.dataplane.fake import FakeHaDataplane
from mipro.runtime import ha_daemon
from mipro.runtime.ha_daemon import HaDaemon
from mipro.runtime.journal import BindingJournal
from mipro.runtime.logging import EventLog

CONF = Path(__file__).resolve().parents[2] / "conf"


def b(i, coa="198.51.100.9"):
    return Binding(A(f"10.1.0.{i}"), A(coa), A("10.1.0.1"), 600, time.time() + 600,
                   time.time(), i, "ipip", False, "", 256 + i, A(coa), 434)


def daemon(tmp_path):
    subs = tmp_path / "subscribers.toml"
    subs.write_text((CONF / "subscribers.toml").read_text())
    subs.chmod(0o600)
    text = (CONF / "ha.toml").read_text().replace("/etc/mipro/subscribers.toml", str(subs))
    text = text.replace("/var/lib/mipro/ha-bindings.json", str(tmp_path / "state.json"))
    path = tmp_path / "ha.toml"
    path.write_text(text)
    path.chmod(0o600)
    out = io.StringIO()
    d = HaDaemon(load_ha(path), EventLog("ha", stream=out))
    d.dataplane = FakeHaDataplane()
    return d, out


def test_registrations_wait_for_one_slice_at_most(tmp_path, monkeypatch):
    monkeypatch.setattr(ha_daemon, "RESTORE_SLICE", 3)
    BindingJournal(tmp_path / "state.json").write_snapshot([b(i) for i in range(10, 20)])
    d, out = daemon(tmp_path)

    async def scenario():
        worker = asyncio.create_task(d._worker())
        d._restore()
        assert len(d.engine.bindings) == 10  # answered from the table at once
        assert d.dataplane.bindings == {}
        await asyncio.sleep(0)  # the first slice is queued
        fresh = b(30)  # a registration arriving meanwhile
        d.engine.bindings.put(fresh)
        d.dispatch([InstallBinding(fresh)])
        moved = b(18, "203.0.113.5")  # one re-registered elsewhere before its slice
        d.engine.bindings.put(moved)
        d.engine.bindings.pop(A("10.1.0.19"))  # one deregistered
        await d.reinstalling
        await d.work.join()
        worker.cancel()

    asyncio.run(scenario())
    installs = [str(home) for op, home in d.dataplane.calls if op == "install"]
    assert installs[:3] == ["10.1.0.10", "10.1.0.11", "10.1.0.12"]
    assert installs[3] == "10.1.0.30"  # after one slice, not after the whole table
    assert sorted(installs[4:]) == [f"10.1.0.{i}" for i in range(13, 18)]
    assert A("10.1.0.18") not in d.dataplane.bindings  # its own install puts the new one
    assert "event=kernel-restored" in out.getvalue()
