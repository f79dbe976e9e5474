"""The systemd units as files: `systemd-analyze security --offline=yes` rates each at most
2.5; they run as the user systemd/mipro.sysusers creates; the command they start is where
`make install` puts it.  (tests/integration/test_units.py installs them, runs
`systemd-analyze verify`, and runs the daemons as the units do.)"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROLES = ("ha", "fa", "mn")
MAX_EXPOSURE = 2.5


def setting(role: str, key: str) -> list[str]:
    text = (REPO / "systemd" / f"mipro-{role}.service").read_text()
    return re.findall(rf"^{key}=(.*)$", text, re.M)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze")
@pytest.mark.parametrize("role", ROLES)
def test_exposure_is_at_most_2_5(role):
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                           str(REPO / "systemd" / f"mipro-{role}.service")],
                          capture_output=True, text=True, timeout=60)
    level = re.search(r"Overall exposure level for mipro-\w+\.service: ([\d.]+)", proc.stdout)
    assert level, proc.stdout + proc.stderr
    assert float(level.group(1)) <= MAX_EXPOSURE, proc.stdout


def test_units_run_as_the_sysusers_user():
    lines = [x.split() for x in (REPO / "systemd" / "mipro.sysusers").read_text().splitlines()
             if x.strip() and not x.startswith("#")]
    assert [(x[0], x[1]) for x in lines] == [("u", "mipro")]
    for role in ROLES:
        assert setting(role, "User") == ["mipro"] and setting(role, "Group") == ["mipro"]
        assert setting(role, "DynamicUser") == []
        caps = setting(role, "AmbientCapabilities")
        assert caps == setting(role, "CapabilityBoundingSet"), role  # nothing held in reserve


def test_execstart_is_where_make_install_puts_mipro():
    if not shutil.which("make"):
        pytest.skip("no make")
    dry = subprocess.run(["make", "-s", "-n", "-C", str(REPO), "install-files"],
                         capture_output=True, text=True, timeout=60).stdout
    links = re.findall(r"ln -sfn (\S+) (\S+)", dry)
    assert links, dry
    installed = {dst for _, dst in links}
    for role in ROLES:
        for command in setting(role, "ExecStartPre") + setting(role, "ExecStart"):
            assert command.split()[0] in installed, (role, command, installed)
    roles = re.search(r"for role in ([\w ]+);", dry)
    unit_dir = re.search(r"> (\S+)/mipro-\$role\.service", dry)
    assert roles and sorted(roles.group(1).split()) == sorted(ROLES), dry
    assert unit_dir, dry
    if shutil.which("systemd-analyze"):  # where systemd looks for units
        paths = subprocess.run(["systemd-analyze", "unit-paths"], capture_output=True,
                               text=True, timeout=60).stdout.split()
        assert unit_dir.group(1) in paths, paths
