"""fa.realms.linger's bookkeeping (IdleRealms): which realms without visitors are kept, for
how long, which one gives way first; and the key as check-config reads it."""

from ipaddress import IPv4Address

import pytest

from mipro.config import ConfigError
from mipro.dataplane.fa.realms import IdleRealms

HA1, HA2, HA3 = (IPv4Address(f"10.1.0.{n}") for n in (1, 2, 3))


def idle(linger: float, keyed=(HA1, HA2)) -> IdleRealms:
    r = IdleRealms()
    r.linger, r.keep = linger, lambda ha: ha in keyed
    return r


def test_only_keyed_home_agents_realms_are_kept_and_only_with_a_linger():
    assert not idle(0).retire(HA1, 10.0)  # off: goes with its last visitor
    r = idle(300)
    assert r.retire(HA1, 10.0) and not r.retire(HA3, 10.0)  # HA3: no FA-HA key
    assert list(r.since) == [HA1] and r.deadline() == 310.0


def test_kept_until_the_linger_ends_or_a_visitor_comes_back():
    r = idle(300)
    r.retire(HA1, 10.0)
    r.retire(HA2, 20.0)
    assert r.due(309.9) == [] and r.due(310.0) == [HA1] and r.due(400) == [HA1, HA2]
    r.used(HA1)  # a visitor of HA1 again: no longer idle
    assert r.due(400) == [HA2] and r.deadline() == 320.0
    r.used(HA2)
    assert r.deadline() is None and r.oldest() is None


def test_the_longest_idle_gives_way_first_and_a_reload_applies_at_once():
    r = idle(300)
    r.retire(HA1, 10.0)
    r.retire(HA2, 20.0)
    r.retire(HA1, 30.0)  # idle again later: it is the newest now
    assert r.oldest() == HA2
    r.keep = lambda ha: ha == HA2  # a reload removed HA1's key
    assert r.due(31.0) == [HA1]
    r.linger = 5.0  # and shortened the linger
    assert r.due(31.0) == [HA2, HA1]


@pytest.mark.parametrize("value,problem", [("-1", "below 0"), ("86401", "above 86400"),
                                           ('"long"', "")])
def test_linger_is_checked(tmp_path, value, problem):
    from mipro.config import load_fa

    conf = tmp_path / "fa.toml"
    conf.write_text('[fa]\ninterface = "eth1"\naddress = "198.51.100.1"\n\n'
                    f"[fa.realms]\nlinger = {value}\n")
    with pytest.raises(ConfigError) as err:
        load_fa(conf)
    assert "fa.realms.linger" in str(err.value) and problem in str(err.value)


def test_linger_loads(tmp_path):
    from mipro.config import load_fa

    conf = tmp_path / "fa.toml"
    conf.write_text('[fa]\ninterface = "eth1"\naddress = "198.51.100.1"\n\n'
                    "[fa.realms]\nlinger = 300\n")
    assert load_fa(conf).realms.linger == 300.0
    conf.write_text('[fa]\ninterface = "eth1"\naddress = "198.51.100.1"\n')
    assert load_fa(conf).realms.linger == 0.0
