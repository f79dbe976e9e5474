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

