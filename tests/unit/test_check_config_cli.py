"""`mipro check-config` through the real command: every broken file it is pointed at, or
that the configuration points at, is one `FILE: KEY: PROBLEM` line and exit 1, never a
Python traceback."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]  # root, but mode bits hold


def check_config(path, wrap=()):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([*wrap, sys.executable, "-m", "mipro.cli", "check-config", str(path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc.returncode, proc.stdout.splitlines(), proc.stderr


def ha_conf(tmp_path, subscribers):
    ha = tmp_path / "ha.toml"
    ha.write_text((CONF / "ha.toml").read_text().replace("/etc/mipro/subscribers.toml",
                                                         str(subscribers)))
    ha.chmod(0o600)
    return ha


def subscribers(tmp_path, text=None):
    p = tmp_path / "subscribers.toml"
    p.write_text((CONF / "subscribers.toml").read_text() if text is None else text)
    p.chmod(0o600)
    return p


def ldap_conf(tmp_path, password_file):
    ha = tmp_path / "ha-ldap.toml"
    ha.write_text((CONF / "ha.toml").read_text().replace(
        'store = "file"\nfile = "/etc/mipro/subscribers.toml"',
        'store = "ldap"\n[subscribers.ldap]\nurl = "ldap://127.0.0.1"\n'
        f'base_dn = "dc=example,dc=org"\npassword_file = "{password_file}"\n'))
    ha.chmod(0o600)
    return ha


def test_good_file_store_config(tmp_path):
    subs = subscribers(tmp_path)
    ha = ha_conf(tmp_path, subs)
    rc, out, err = check_config(ha)
    assert (rc, out, err) == (0, [f"{subs}: ok (2 subscribers)", f"{ha}: ok (ha)"], "")


def test_subscriber_file_missing(tmp_path):
    ha = ha_conf(tmp_path, tmp_path / "nowhere.toml")
    assert check_config(ha) == (1, [f"{ha}: subscribers.file: {tmp_path / 'nowhere.toml'}: "
                                    "no such file"], "")


def test_subscriber_file_is_a_directory(tmp_path):
    (tmp_path / "subs.d").mkdir(mode=0o700)
    ha = ha_conf(tmp_path, tmp_path / "subs.d")
    assert check_config(ha) == (1, [f"{ha}: subscribers.file: {tmp_path / 'subs.d'}: "
                                    "is a directory, not a file"], "")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to drop CAP_DAC_OVERRIDE")
def test_subscriber_file_unreadable(tmp_path):
    subs = subscribers(tmp_path)
    subs.chmod(0o000)
    ha = ha_conf(tmp_path, subs)
    assert check_config(ha, NO_DAC) == (1, [f"{ha}: subscribers.file: {subs}: cannot read "
                                            "(Permission denied)"], "")
    assert subs.stat().st_mode & 0o777 == 0  # looked at, not changed


def test_subscriber_file_bad_toml_and_not_utf8(tmp_path):
    subs = subscribers(tmp_path, "[[subscriber]\n")
    ha = ha_conf(tmp_path, subs)
    rc, out, _ = check_config(ha)
    assert rc == 1 and len(out) == 1 and out[0].startswith(f"{subs}: not valid TOML: "), out
    subs.write_bytes(b'[[subscriber]]\nnai = "\xff"\n')
    rc, out, _ = check_config(ha)
    assert rc == 1 and len(out) == 1 and out[0].startswith(f"{subs}: not valid TOML: "), out


def test_subscriber_file_world_readable(tmp_path):
    subs = subscribers(tmp_path)
    subs.chmod(0o644)
    ha = ha_conf(tmp_path, subs)
    rc, out, _ = check_config(ha)
    assert rc == 1 and out == [f"{subs}: the subscriber file (it holds keys) is readable by "
                               f"others (mode 0644); chmod o-rw {subs}"]


def test_ldap_password_file_missing_or_a_directory(tmp_path):
    pw = tmp_path / "ldap.secret"
    ha = ldap_conf(tmp_path, pw)
    assert check_config(ha) == (1, [f"{ha}: subscribers.ldap.password_file: {pw}: "
                                    "no such file"], "")
    pw.mkdir(mode=0o700)
    assert check_config(ha) == (1, [f"{ha}: subscribers.ldap.password_file: {pw}: "
                                    "is a directory, not a file"], "")
    pw.rmdir()
    pw.write_text("s3cret\n")
    pw.chmod(0o600)
    rc, out, _ = check_config(ha)
    assert rc == 0 and out[-1] == f"{ha}: ok (ha)", out
    ca = tmp_path / "ca.pem"
    ha.write_text(ha.read_text().replace(f'password_file = "{pw}"',
                                         f'password_file = "{pw}"\nca_file = "{ca}"'))
    assert check_config(ha) == (1, [f"{ha}: subscribers.ldap.ca_file: {ca}: no such file"], "")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to drop CAP_DAC_OVERRIDE")
def test_ldap_password_file_unreadable(tmp_path):
    pw = tmp_path / "ldap.secret"
    pw.write_text("s3cret\n")
    pw.chmod(0o000)
    ha = ldap_conf(tmp_path, pw)
    assert check_config(ha, NO_DAC) == (1, [f"{ha}: subscribers.ldap.password_file: {pw}: "
                                            "cannot read (Permission denied)"], "")


def test_the_config_file_itself(tmp_path):
    missing = tmp_path / "missing.toml"
    assert check_config(missing) == (1, [f"{missing}: cannot read: No such file or directory"],
                                     "")
    assert check_config(tmp_path) == (1, [f"{tmp_path}: cannot read: Is a directory"], "")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[ha]\naddress = "\xe9"\n')
    rc, out, _ = check_config(bad)
    assert rc == 1 and len(out) == 1 and out[0].startswith(f"{bad}: not valid TOML: "), out


def test_the_home_agent_says_the_same_and_touches_nothing(tmp_path):
    """`mipro ha` with a missing subscriber file stops before any socket or kernel state,
    logging the problem check-config prints (event=config-invalid, docs/operations.md)."""
    ha = ha_conf(tmp_path, tmp_path / "nowhere.toml")
    text = ha.read_text()
    ha.write_text(text.replace("/run/mipro/ha.sock", str(tmp_path / "ha.sock"))
                  .replace("/var/lib/mipro/ha-bindings.json", str(tmp_path / "state.json")))
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = subprocess.run([sys.executable, "-m", "mipro.cli", "ha", "--config", str(ha)],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    problem = f"{ha}: subscribers.file: {tmp_path / 'nowhere.toml'}: no such file"
    assert [line.split(" level=", 1)[1] for line in proc.stdout.splitlines()] == \
        [f'error event=config-invalid problem="{problem}"'], proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == before


WRONG = ['1', '-1', '"x"', 'true', '[]', '[1, "a"]', '{ a = 1 }', '1.5', '""', '[{ a = 1 }]',
         '"0.0.0.0/0"', '99999999999']


def test_any_value_of_any_shipped_key_is_a_config_error_or_fine(tmp_path):
    """Every `key = value` line of the shipped and lab configurations, given a value of
    the wrong kind, loads or is a ConfigError naming the file (no other exception)."""
    import re

    from mipro.config import ConfigError, load_role
    from mipro.subscribers.file_store import load_subscribers

    files = [CONF / n for n in ("ha.toml", "fa.toml", "mn.toml", "subscribers.toml")] + \
        sorted((REPO / "netns-lab" / "scenarios").glob("*/*/*.toml"))
    p = tmp_path / "t.toml"
    tried = 0
    for f in files:
        lines = f.read_text().replace("{out}", str(tmp_path)).replace(
            "{run}", str(tmp_path)).splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^(\s*[A-Za-z_]+\s*=\s*)(.+)$", line)
            for wrong in WRONG if m else ():
                p.write_text("\n".join(lines[:i] + [m.group(1) + wrong] + lines[i + 1:]))
                p.chmod(0o600)
                tried += 1
                try:
                    (load_subscribers if "subscriber" in f.name else load_role)(p)
                except ConfigError as exc:
                    assert all(e.startswith(f"{p}: ") for e in exc.errors), exc.errors
                except Exception as exc:  # noqa: BLE001 - the point of the test
                    pytest.fail(f"{f}:{i + 1} {line!r} -> {wrong}: {exc!r}")
    assert tried > 1000


def _redundant(tmp_path, keepalived_edit=None):
    """conf/ha.toml with its [redundancy] example filled in, next to conf/keepalived.conf."""
    import re

    ka = tmp_path / "keepalived.conf"
    text = (REPO / "conf" / "keepalived.conf").read_text()
    ka.write_text(keepalived_edit(text) if keepalived_edit else text)
    subs = tmp_path / "subscribers.toml"
    subs.write_text((REPO / "conf" / "subscribers.toml").read_text())
    subs.chmod(0o600)
    ha = (REPO / "conf" / "ha.toml").read_text().replace("/etc/mipro/subscribers.toml",
                                                          str(subs))
    block = ha[ha.index("# [redundancy]"):ha.index("#\n# Active/active")]  # one group
    block = re.sub(r"^# ?", "", block, flags=re.M).replace('key = "hex:..."',
                                                            'key = "hex:' + "ab" * 32 + '"')
    block = block.replace("/etc/keepalived/keepalived.conf", str(ka))
    conf = tmp_path / "ha.toml"
    conf.write_text(ha[:ha.index("# [redundancy]")] + block)
    conf.chmod(0o600)
    return conf


def test_check_config_finds_keepalived_agreeing(tmp_path):
    code, lines, _ = check_config(_redundant(tmp_path))
    assert code == 0, lines
    assert any(line.endswith("keepalived.conf: agrees (1 group)") for line in lines)


def test_check_config_names_what_keepalived_disagrees_on(tmp_path):
    conf = _redundant(tmp_path, lambda t: t.replace("virtual_router_id 51",
                                                    "virtual_router_id 52")
                      .replace("vrrp_notify_fifo /run/mipro/keepalived.fifo", "")
                      .replace("weight 0\n    init_file", "weight -20\n    init_file")
                      .replace("process mipro-ha", "process mipro"))
    code, lines, _ = check_config(conf)
    text = "\n".join(lines)
    assert code == 1
    assert "vrrp_instance VI_HA: tracks process mipro, but mipro's process is named " \
        "mipro-ha (redundancy.process_name)" in text
    assert "vrrp_instance VI_HA: virtual_router_id 52 is not redundancy.group.0.vrid 51" in text
    assert "global_defs: no notify_fifo" in text
    assert "track_file mipro_sync: weight -20" in text
