"""One reload procedure: which keys change live, and what a reload does with the rest."""

from pathlib import Path

import pytest

from mipro.config import load_fa, load_ha, load_mn
from mipro.runtime.daemon import config_changes, config_keys
from mipro.runtime.fa_daemon import FaDaemon
from mipro.runtime.ha_daemon import HaDaemon
from mipro.runtime.mn_daemon import MnDaemon

CONF = Path(__file__).resolve().parents[2] / "conf"
DAEMONS = {"ha": (HaDaemon, load_ha), "fa": (FaDaemon, load_fa), "mn": (MnDaemon, load_mn)}


def loaded(role, tmp_path, edit=None):
    text = (CONF / f"{role}.toml").read_text()
    if role == "ha":
        subs = tmp_path / "subscribers.toml"
        subs.write_text((CONF / "subscribers.toml").read_text())
        subs.chmod(0o600)
        text = text.replace("/etc/mipro/subscribers.toml", str(subs))
    if edit:
        text = edit(text)
    path = tmp_path / f"{role}.toml"
    path.write_text(text)
    path.chmod(0o600)
    return DAEMONS[role][1](path)


@pytest.mark.parametrize("role", ["ha", "fa", "mn"])
def test_every_live_key_is_a_key(role, tmp_path):
    """A typo in LIVE would make a key restart-only silently; every entry names a key."""
    daemon = DAEMONS[role][0]
    keys = set(config_keys(loaded(role, tmp_path)))
    for live in daemon.LIVE:
        assert live in keys or any(k.startswith(live) for k in keys), live


def test_changes_are_found_key_by_key(tmp_path):
    old = loaded("ha", tmp_path)
    new = loaded("ha", tmp_path, lambda t: t.replace('address = "10.1.0.1"',
                                                    'address = "10.1.0.2"'))
    assert config_changes(old, new) == ["address"]
    assert config_changes(old, old) == []
    new = loaded("ha", tmp_path, lambda t: t.replace('log_level = "info"',
                                                    'log_level = "debug"'))
    assert config_changes(old, new) == ["runtime.log_level"]
    assert HaDaemon.reloads_live("runtime.log_level")
    assert not HaDaemon.reloads_live("runtime.control_socket")
    assert not HaDaemon.reloads_live("address") and not HaDaemon.reloads_live("dataplane.table")



def test_ha_reads_the_subscriber_file_off_the_loop_and_again_after_a_second_hup(tmp_path):
    """The store is built in a thread; a SIGHUP while it is read is not lost (one more
    reload follows, which sees the file as it is then); a bad file keeps the store."""
    import asyncio
    import io
    import threading

    from mipro.runtime import ha_daemon
    from mipro.runtime.logging import EventLog

    cfg = loaded("ha", tmp_path)
    d = HaDaemon(cfg, EventLog("ha", stream=(out := io.StringIO())))
    first = d.engine.store
    count = len(first)
    subs = Path(cfg.subscribers_file)
    threads = []
    real = ha_daemon.make_store

    def recording(c):
        threads.append(threading.current_thread() is not threading.main_thread())
        store = real(c)
        if len(threads) == 1:  # the queued reload reads the file as it is after this one
            subs.write_text(subs.read_text() + '[[subscriber]]\nhome_address = "10.1.0.199"\n'
                            'sa = [{ spi = 999, key = "hex:00" }]\n')
        return store

    async def run():
        ha_daemon.make_store = recording
        try:
            d.reload()
            d.reload()  # while the first one reads: queued
            while d.reloading is not None and not d.reloading.done() or d.reload_again:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the queued one is called soon, then runs
            while d.reloading is not None and not d.reloading.done():
                await asyncio.sleep(0.01)
        finally:
            ha_daemon.make_store = real

    asyncio.run(run())
    log = out.getvalue()
    assert threads == [True, True]
    assert log.count("event=reload-reading") == 2 and log.count("event=reloaded") == 1
    assert "event=reload-failed" in log and "sa" in log
    assert d.engine.store is not first and len(d.engine.store) == count
    assert len(first) == 0  # the replaced store was emptied in a thread, bit by bit
