"""Configuration: the shipped examples load; every error names file, key and problem."""

import shutil
from pathlib import Path

import pytest

from mipro.cli import main
from mipro.config import ConfigError, load_ha, load_mn
from mipro.runtime.ha_daemon import make_store
from mipro.subscribers.file_store import load_subscribers

CONF = Path(__file__).resolve().parents[2] / "conf"
SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"


def private_copy(tmp_path, name):
    """As an operator installs it: install -m 600 conf/NAME /etc/mipro/."""
    dst = tmp_path / name
    shutil.copy(CONF / name, dst)
    dst.chmod(0o600)
    return dst


def test_example_ha_conf_loads(tmp_path):
    cfg = load_ha(private_copy(tmp_path, "ha.toml"))
    assert str(cfg.address) == "10.1.0.1" and cfg.encapsulations == {"ipip", "gre"}
    assert cfg.dataplane.backend == "auto" and cfg.runtime.state_file


def test_example_subscribers_load(tmp_path):
    store = load_subscribers(private_copy(tmp_path, "subscribers.toml"))
    assert len(store) == 2
    sub = store.by_nai["mn1@home.example"]
    assert set(sub.associations) == {256, 257}
    assert sub.associations[257].algorithm.value == "hmac-sha256"


def test_example_mn_conf_loads(tmp_path):
    cfg = load_mn(private_copy(tmp_path, "mn.toml"))
    assert cfg.sa.spi == 256 and cfg.care_of == "dhcp"
    assert cfg.fa_peers == {} and cfg.notify_previous_fa


def test_commented_fa_peer_example_loads(tmp_path):
    """Uncommenting the [[fa_peer]] example of conf/mn.toml gives a valid file."""
    p = private_copy(tmp_path, "mn.toml")
    text = p.read_text()
    block = text[text.index("# [[fa_peer]]"):text.index("[interface]")]
    p.write_text(text.replace(block, "\n".join(line.removeprefix("# ")
                                                for line in block.splitlines()) + "\n\n"))
    cfg = load_mn(p)
    assert [(str(a), sa.spi) for a, sa in cfg.fa_peers.items()] == [("198.51.100.1", 400)]


def test_example_fa_conf_loads(tmp_path):
    from mipro.config import load_fa

    cfg = load_fa(private_copy(tmp_path, "fa.toml"))
    assert [str(a) for a in cfg.care_of_addresses] == ["198.51.100.1"]
    assert cfg.reverse_tunneling and not cfg.reverse_tunnel_required


def test_lab_confs_load(tmp_path):
    lab = CONF.parent / "netns-lab" / "scenarios"
    files = sorted(lab.glob("*/*/*.toml"))
    assert files
    for f in files:
        dst = tmp_path / f"{f.parent.parent.name}-{f.parent.name}-{f.name}"
        dst.write_text(f.read_text().replace("{out}", str(tmp_path)).replace("{run}",
                                                                             str(tmp_path)))
        dst.chmod(0o600)
        if f.name == "subscribers.toml":
            load_subscribers(dst)
        elif "[ha]" in dst.read_text():
            load_ha(dst)
        elif "[fa]" in dst.read_text():
            from mipro.config import load_fa

            load_fa(dst)
        elif "[mn]" in dst.read_text():
            load_mn(dst)


def write(tmp_path, text, name="x.toml"):
    p = tmp_path / name
    p.write_text(text)
    p.chmod(0o600)
    return p


def test_all_errors_at_once_with_file_and_key(tmp_path):
    p = write(tmp_path, """
[ha]
address = "10.1.0.300"
home_interface = 5
home_network = "10.1.0.0/24"
max_lifetime = 0
encapsulations = ["ipip", "vxlan"]
colour = "blue"
[dataplane]
backend = "magic"
""")
    with pytest.raises(ConfigError) as err:
        load_ha(p)
    errors = err.value.errors
    assert all(e.startswith(f"{p}: ") for e in errors)
    text = "\n".join(errors)
    for key in ("ha.address", "ha.home_interface", "ha.max_lifetime", "ha.encapsulations",
                "ha.colour", "dataplane.backend"):
        assert f": {key}: " in text, key
    assert "unknown key" in text and "not one of auto, kernel, userspace" in text


def test_fa_has_no_tunnel_interface_and_ha_kernel_tunnels_is_checked(tmp_path):
    """An FA makes one tunnel device per home agent: the old key is named as unknown."""
    from mipro.config import load_fa

    fa = private_copy(tmp_path, "fa.toml")
    fa.write_text(fa.read_text().replace("[dataplane]", '[dataplane]\ntunnel_interface = "mip0"'))
    with pytest.raises(ConfigError) as err:
        load_fa(fa)
    assert any(": dataplane.tunnel_interface: unknown key" in e for e in err.value.errors), \
        err.value.errors
    ha = private_copy(tmp_path, "ha.toml")
    assert load_ha(ha).kernel_tunnels == "per-care-of"
    ha.write_text(ha.read_text().replace('kernel_tunnels = "per-care-of"',
                                         'kernel_tunnels = "one"'))
    with pytest.raises(ConfigError) as err:
        load_ha(ha)
    assert any("ha.kernel_tunnels" in e and "per-care-of, shared" in e
               for e in err.value.errors), err.value.errors


def test_missing_key_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_mn(write(tmp_path, "[mn]\nhome_address = \"10.1.0.100\"\n"))
    assert any(": mn.home_agent: missing" in e for e in err.value.errors)
    with pytest.raises(ConfigError) as err:
        load_ha(write(tmp_path, "[ha\n"))
    assert "not valid TOML" in err.value.errors[0]


def test_secrets_must_not_be_world_readable(tmp_path):
    p = private_copy(tmp_path, "subscribers.toml")
    p.chmod(0o644)
    with pytest.raises(ConfigError) as err:
        load_subscribers(p)
    assert "readable by others" in err.value.errors[0] and "chmod o-rw" in err.value.errors[0]


def test_short_key_and_duplicate_home(tmp_path):
    p = write(tmp_path, """
[[subscriber]]
home_address = "10.1.0.5"
sa = [{ spi = 256, key = "text:short" }]
[[subscriber]]
home_address = "10.1.0.5"
sa = [{ spi = 12, key = "hex:zz" }]
""")
    with pytest.raises(ConfigError) as err:
        load_subscribers(p)
    text = "\n".join(err.value.errors)
    assert "subscriber.0.sa.0.key: key of 5 bytes is too short" in text
    assert "subscriber.1.home_address: 10.1.0.5 is listed twice" in text
    assert "subscriber.1.sa.0.spi: 12 is below the minimum 256" in text
    assert "subscriber.1.sa.0.key: cannot decode the hex key" in text


def test_check_config_command(tmp_path, capsys):
    ha = private_copy(tmp_path, "ha.toml")
    subs = private_copy(tmp_path, "subscribers.toml")
    ha.write_text(ha.read_text().replace("/etc/mipro/subscribers.toml", str(subs)))
    assert main(["check-config", str(ha)]) == 0
    assert "ok (ha)" in capsys.readouterr().out
    bad = write(tmp_path, "[ha]\naddress = 1\n", "bad.toml")
    assert main(["check-config", str(bad)]) == 1
    assert f"{bad}: ha.address: expected a string" in capsys.readouterr().out


@pytest.mark.parametrize("unit,role", [("mipro-ha.service", "ha"), ("mipro-fa.service", "fa"),
                                       ("mipro-mn.service", "mn")])
def test_systemd_units(unit, role):
    text = (SYSTEMD / unit).read_text()
    for line in ("Type=notify", f"ExecStartPre=/usr/local/bin/mipro check-config "
                 f"/etc/mipro/{role}.toml", f"ExecStart=/usr/local/bin/mipro {role} --config",
                 "ExecReload=/bin/kill -HUP $MAINPID", "ProtectSystem=strict",
                 "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE"):
        assert line in text, line


def test_ldap_store_settings(tmp_path):
    pw = tmp_path / "ldap.pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o600)
    ha = private_copy(tmp_path, "ha.toml")
    text = ha.read_text().replace('store = "file"\nfile = "/etc/mipro/subscribers.toml"',
                                  f'store = "ldap"\n[subscribers.ldap]\n'
                                  f'url = "ldaps://ldap.example.org"\n'
                                  f'base_dn = "ou=mobile-nodes,dc=example,dc=org"\n'
                                  f'bind_dn = "cn=mipro-ha,dc=example,dc=org"\n'
                                  f'password_file = "{pw}"\n')
    ha.write_text(text)
    cfg = load_ha(ha)
    assert cfg.ldap["password"] == "s3cret" and cfg.ldap["url"].startswith("ldaps://")
    assert (cfg.ldap["cache_ttl"], cfg.ldap["cache_negative_ttl"]) == (60.0, 5.0)
    assert cfg.ldap["cache_size"] == 200_000
    line = f'password_file = "{pw}"\n'
    with_size = lambda v: text.replace(line, f"{line}cache_size = {v}\n")  # noqa: E731
    ha.write_text(with_size("1500000"))
    assert make_store(load_ha(ha)).max_entries == 1_500_000
    for bad, problem in (("0", "0 is below the minimum 1"), ('"big"', "expected an integer"),
                         ("1e6", "expected an integer"),
                         ("30000000", "30000000 is above the maximum 20000000")):
        ha.write_text(with_size(bad))
        with pytest.raises(ConfigError) as err:
            load_ha(ha)
        assert any(e.startswith(f"{ha}: subscribers.ldap.cache_size: {problem}")
                   for e in err.value.errors), err.value.errors
        assert main(["check-config", str(ha)]) == 1
    ha.write_text(text)
    pw.chmod(0o644)
    with pytest.raises(ConfigError) as err:
        load_ha(ha)
    assert "readable by others" in err.value.errors[0]
    ha.write_text(text.replace("ldaps://", "http://").replace("base_dn", "basedn"))
    pw.chmod(0o600)
    with pytest.raises(ConfigError) as err:
        load_ha(ha)
    joined = "\n".join(err.value.errors)
    assert "subscribers.ldap.url: must start with ldap://" in joined
    assert "subscribers.ldap.basedn: unknown key" in joined


def test_ha_with_fa_peer_keys_must_not_be_world_readable(tmp_path):
    """[[fa_peer]] holds FA-HA keys: like the FA's and MN's files, others may not read it."""
    p = private_copy(tmp_path, "ha.toml")
    text = p.read_text()
    block = text[text.index("# [[fa_peer]]"):text.index("[dataplane]")]
    p.write_text(text.replace(block, "\n".join(line.removeprefix("# ")
                                                for line in block.splitlines()) + "\n\n"))
    assert [(str(a), sa.spi) for a, sa in load_ha(p).fa_peers.items()] == [("198.51.100.1", 300)]
    p.chmod(0o644)
    with pytest.raises(ConfigError) as err:
        load_ha(p)
    assert err.value.errors == [f"{p}: a file holding FA-HA keys is readable by others (mode "
                                f"0644); chmod o-rw {p}"]
    assert p.stat().st_mode & 0o777 == 0o644  # reported, not changed
    # without keys in it the HA's file may be world-readable (the example as shipped)
    q = private_copy(tmp_path, "ha.toml")
    q.chmod(0o644)
    assert load_ha(q).fa_peers == {}


def test_ports_need_tcp_udp_or_sctp_in_every_store(tmp_path):
    """A filter with ports and another protocol would lose its ports in iptables (wider
    than written): the file store and the LDAP store refuse it, naming the key."""
    from mipro.policy.profile import ProfileError, parse_filter
    from mipro.subscribers.ldap_store import parse_entry

    for item, key in (({"protocol": 0, "dport": 25, "action": "deny"}, "dport"),
                      ({"protocol": "icmp", "sport": "53"}, "sport"),
                      ({"protocol": "any", "sport": 1, "dport": 2}, "sport")):
        with pytest.raises(ProfileError) as err:
            parse_filter(item)
        assert err.value.key == key and "ports need protocol tcp, udp or sctp" in \
            err.value.problem, (item, err.value.key)
    assert parse_filter({"protocol": "sctp", "sport": 1}).sport == (1, 1)
    p = write(tmp_path, """
[[subscriber]]
home_address = "10.1.0.5"
sa = [{ spi = 256, key = "text:sixteen-bytes-key" }]
filters = [{ protocol = 0, dport = 25, action = "deny" },
           { protocol = "icmp", sport = 53 }]
""")
    with pytest.raises(ConfigError) as err:
        load_subscribers(p)
    assert err.value.errors == [
        f"{p}: subscriber.0.filters.0.dport: ports need protocol tcp, udp or sctp, not 0",
        f"{p}: subscriber.0.filters.1.sport: ports need protocol tcp, udp or sctp, not 'icmp'"]
    with pytest.raises(ValueError, match=r"cn=x: miproRoute/miproFilter sport: ports need"):
        parse_entry("cn=x", {"miproHomeAddress": "10.1.0.5",
                             "miproFilter": ["1 protocol=icmp sport=53 action=accept"]})


def test_fa_offers_gre_only_if_its_dataplane_carries_it(tmp_path):
    """The FA's policy and advertisement are what the config allows AND the dataplane can
    deliver: with the kernel backend's ipip device per home agent, no G (no 72 escapes)."""
    from mipro.config import load_fa
    from mipro.runtime.fa_daemon import make_advert_policy, make_policy
    from mipro.wire import AgentFlags

    cfg = load_fa(private_copy(tmp_path, "fa.toml"))
    assert cfg.encapsulations == {"ipip", "gre"}
    assert make_policy(cfg).encapsulations == {"ipip", "gre"}
    assert make_advert_policy(cfg).flags & AgentFlags.G
    ipip_only = frozenset({"ipip"})
    assert make_policy(cfg, None, ipip_only).encapsulations == {"ipip"}
    flags = make_advert_policy(cfg, ipip_only).flags
    assert not flags & AgentFlags.G and flags == make_advert_policy(cfg).flags & ~AgentFlags.G
