"""The systemd units as installed and as they run the daemons.

- `make install-files` (in a private mount namespace, /usr/local a tmpfs: the host keeps
  its own) puts mipro where the units' ExecStart= says; `systemd-analyze verify` then
  passes on each installed unit (it checks that the command is executable and that
  `man mipro` finds the page), and `systemd-analyze security --offline=yes` rates each
  at most 2.5.  pip installs mipro's dependencies from the package index, as `make setup`
  does.
- Each scenario's own checks (netns-lab/scenarios/NAME/check.py) pass with every mipro
  daemon started the way its unit starts it: the unit's User= (made by systemd-sysusers
  from systemd/mipro.sysusers, into a copy of /etc/passwd: the host's is not touched),
  its capabilities, NoNewPrivileges= and UMask=, a clean environment, the configuration
  files as `make install` and docs/operations.md lay them out (root:mipro 0640) and the
  runtime directory the user's, by `setpriv`; and under the seccomp filter of the unit's
  SystemCallFilter=, SystemCallErrorNumber= and RestrictAddressFamilies= (the groups
  expanded by `systemd-analyze syscall-filter`, installed by unit_seccomp.py).  The rest
  of the sandbox (ProtectSystem=, PrivateTmp=, ProtectProc=, DevicePolicy=, ...) needs a
  running systemd and is not tested here.
"""

import errno
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from mipro.lab import Lab
from mipro.lab.cli import load_check

REPO = Path(__file__).resolve().parents[2]
ROLES = ("ha", "fa", "mn")
MAX_EXPOSURE = 2.5
CAP_NUMBERS = {"CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12,
               "CAP_NET_RAW": 13}
# systemd's environment for a service (systemd.exec(5), "Environment variables in spawned
# processes"), less what names the invocation
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SECCOMP = Path(__file__).with_name("unit_seccomp.py")


def unit(role: str, root: Path = REPO / "systemd") -> dict[str, list[str]]:
    """The [Service] settings of mipro-ROLE.service: name -> values in order."""
    settings: dict[str, list[str]] = {}
    section = None
    for line in (root / f"mipro-{role}.service").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


# --- installed where ExecStart= says -------------------------------------------------

@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze")
def test_installed_units_verify_and_rate(tmp_path):
    src = tmp_path / "src"  # the tree as it is, without what builds and runs leave
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True)
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.split("\n")):
            if (REPO / name).is_file():
                (src / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, src / name)
    else:  # not a git checkout
        shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "out", "*.egg-info", "__pycache__", ".*_cache"))
    conf = tmp_path / "mn.toml"
    conf.write_text((REPO / "conf/mn.toml").read_text())
    conf.chmod(0o600)
    script = f"""
        mount -t tmpfs tmpfs /usr/local
        make -C {src} install-files PY={sys.executable} > {tmp_path}/install.log 2>&1 ||
          {{ tail -30 {tmp_path}/install.log; exit 1; }}
        for role in {' '.join(ROLES)}; do
          u=/usr/local/lib/systemd/system/mipro-$role.service
          echo "== verify $role"; systemd-analyze verify $u 2>&1
          echo "== security $role"; systemd-analyze security --offline=yes $u 2>&1 | tail -1
        done
        echo "== keepalived"; grep -h '^Restart=' /usr/local/lib/systemd/system/keepalived.service.d/mipro.conf
        systemd-analyze verify /lib/systemd/system/keepalived.service 2>&1 | grep mipro.conf || true
        echo "== man"; man -w mipro
        echo "== run"; /usr/local/bin/mipro check-config {conf}
    """
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-euc",
                           script], capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    blocks: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("== "):
            key = line[3:]
            blocks[key] = ""
        else:
            blocks[key] += line + "\n"
    assert blocks["keepalived"] == "Restart=on-failure\n", out  # the drop-in, and it parses
    for role in ROLES:
        assert blocks[f"verify {role}"] == "", out  # verify says nothing when it passes
        exposure = re.search(r"Overall exposure level for mipro-\w+\.service: ([\d.]+)",
                             blocks[f"security {role}"])
        assert exposure and float(exposure.group(1)) <= MAX_EXPOSURE, out
        for command in unit(role)["ExecStart"] + unit(role)["ExecStartPre"]:
            assert command.split()[0] == "/usr/local/bin/mipro", command
    assert blocks["man"].strip() == "/usr/local/share/man/man8/mipro.8", out
    assert blocks["run"].strip() == f"{conf}: ok (mn)", out  # the installed command works


# --- the daemons as the units run them -------------------------------------------------

@dataclass
class ServiceUser:
    name: str
    uid: int
    gid: int
    home: str
    shell: str


@pytest.fixture(scope="module")
def mipro_user(tmp_path_factory) -> ServiceUser:
    """The unit's User=, as systemd-sysusers creates it from systemd/mipro.sysusers (in a
    copy of the host's account files, so its UID is free here and the host is untouched)."""
    for tool in ("systemd-sysusers", "systemd-analyze", "setpriv"):
        if not shutil.which(tool):
            pytest.skip(f"needs {tool} (Debian packages systemd, util-linux)")
    root = tmp_path_factory.mktemp("accounts")
    (root / "etc").mkdir()
    for name in ("passwd", "group", "shadow", "gshadow"):
        if Path("/etc", name).exists():
            shutil.copy2(Path("/etc", name), root / "etc" / name)
    subprocess.run(["systemd-sysusers", f"--root={root}", str(REPO / "systemd/mipro.sysusers")],
                   check=True, capture_output=True, timeout=30)
    users = {u: unit(u)["User"] for u in ROLES}
    assert set(map(tuple, users.values())) == {("mipro",)}, users
    assert {tuple(unit(u)["Group"]) for u in ROLES} == {("mipro",)}
    for line in (root / "etc/passwd").read_text().splitlines():
        name, _, uid, gid, _, home, shell = line.split(":")
        if name == "mipro":
            assert 0 < int(uid) < 1000 and shell.endswith("nologin")
            return ServiceUser(name, int(uid), int(gid), home, shell)
    raise AssertionError("systemd-sysusers made no user mipro")


def capability_set(names: list[str]) -> list[str]:
    caps = " ".join(names).split()
    assert caps and all(c in CAP_NUMBERS for c in caps), caps
    return sorted(caps)


def daemon_python(user: ServiceUser) -> tuple[str, str]:
    """An interpreter the service user can run, and the PYTHONPATH that finds this tree
    and its dependencies: the test's own, unless it lives where the user cannot reach
    (a pyenv under /root); then the system's python3 of the same version with the test
    environment's packages."""
    here = f"{REPO}"
    candidates = [(sys.executable, here)]
    system = shutil.which("python3", path="/usr/bin:/bin")
    if system:
        paths = dict.fromkeys([here, sysconfig.get_paths()["purelib"],
                               sysconfig.get_paths()["platlib"]])
        candidates.append((system, ":".join(paths)))
    for python, pythonpath in candidates:
        probe = subprocess.run(["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}",
                                "--clear-groups", "env", "-i", f"PYTHONPATH={pythonpath}",
                                python, "-c", "import sys, mipro.cli, iptc, scapy.all; "
                                "print(sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=120)
        if probe.returncode == 0 and probe.stdout.strip() == str(sys.version_info[:2]):
            return python, pythonpath
    pytest.fail(f"no interpreter the user {user.name} can run mipro with: {candidates}")


def syscall_groups() -> dict[str, list[str]]:
    """systemd's system call groups (@system-service, ...): name -> members."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    groups: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out |= expand(groups[name], groups) if name.startswith("@") else {name}
    return out


def seccomp_spec(role: str) -> dict:
    """The unit's filter as systemd builds it: the first SystemCallFilter= is an allow
    list, "~" lines take calls away; @default is always allowed."""
    s, groups = unit(role), syscall_groups()
    allowed: set[str] = expand(["@default"], groups)
    filters = s["SystemCallFilter"]
    assert filters and not filters[0].startswith("~"), filters
    for value in filters:
        names = value.removeprefix("~").split()
        if value.startswith("~"):
            allowed -= expand(names, groups) - expand(["@default"], groups)
        else:
            allowed |= expand(names, groups)
    error = errno.errorcode  # SystemCallErrorNumber=EPERM -> 1
    number = next(n for n, name in error.items() if name == s["SystemCallErrorNumber"][-1])
    families = [getattr(socket, f) for f in s["RestrictAddressFamilies"][-1].split()]
    return {"allow": sorted(allowed), "errno": number, "families": families}


def as_unit_runs_it(role: str, args: list[str], user: ServiceUser, python: str,
                    pythonpath: str, seccomp: Path) -> list[str]:
    """The command line that runs `mipro ARGS` as mipro-ROLE.service would; ``seccomp``
    holds its seccomp_spec."""
    s = unit(role)
    caps = ",".join("+" + c.removeprefix("CAP_").lower()
                    for c in capability_set(s["AmbientCapabilities"]))
    bounding = ",".join("+" + c.removeprefix("CAP_").lower()
                        for c in capability_set(s["CapabilityBoundingSet"]))
    umask = s["UMask"][-1]
    nnp = ["--no-new-privs"] if s["NoNewPrivileges"][-1] == "yes" else []
    return ["sh", "-c", f'umask {umask} && exec "$@"', "sh",
            "setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", f"--groups={user.gid}",
            f"--inh-caps=-all,{caps}", f"--ambient-caps=-all,{caps}",
            f"--bounding-set=-all,{bounding}", *nnp,
            "env", "-i", f"HOME={user.home}", f"USER={user.name}", f"LOGNAME={user.name}",
            f"SHELL={user.shell}", f"PATH={SERVICE_PATH}", "LANG=C.UTF-8",
            f"PYTHONPATH={pythonpath}", "PYTHONUNBUFFERED=1",
            python, str(SECCOMP), str(seccomp), "--", python, "-m", "mipro.cli", *args]


def unit_args(role: str, config: str) -> tuple[list[str], list[str]]:
    """ExecStartPre's and ExecStart's arguments, with the scenario's configuration file."""
    s = unit(role)
    pre, start = s["ExecStartPre"][0].split(), s["ExecStart"][0].split()
    default = f"/etc/mipro/{role}.toml"
    assert pre[1:] == ["check-config", default] and start[1:] == [role, "--config", default]
    return ([config if a == default else a for a in pre[1:]],
            [config if a == default else a for a in start[1:]])


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


@pytest.fixture
def public_dir():
    """A directory the service user can enter (pytest's tmp_path is under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="mipro-units-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def unit_lab(mipro_user, public_dir):
    """unit_lab(scenario) -> a Lab (not started) whose mipro daemons run as their units
    run them; torn down after the test."""
    labs = []
    python, pythonpath = daemon_python(mipro_user)
    base = public_dir

    def factory(scenario: str) -> Lab:
        lab = Lab(scenario, prefix=f"u{os.getpid() % 10000}{len(labs)}", out=base / scenario,
                  python=sys.executable)
        labs.append(lab)
        lab.up(services=False)
        lay_out_as_installed(lab, mipro_user)
        lab.unit_roles = {}  # type: ignore[attr-defined]
        for svc in lab.spec["service"]:
            cmd = svc["cmd"]
            if cmd[1:3] != ["-m", "mipro.cli"] or cmd[3] not in ROLES:
                continue  # dnsmasq: runs as root, as it would on its own host
            role, config = cmd[3], lab._fill(cmd[5])
            pre, start = unit_args(role, config)
            seccomp = lab.out / f"seccomp-{role}.json"
            seccomp.write_text(json.dumps(seccomp_spec(role)))
            seccomp.chmod(0o644)
            run = (role, mipro_user, python, pythonpath, seccomp)
            check = subprocess.run(["ip", "netns", "exec", lab.ns(svc["node"]),
                                    *as_unit_runs_it(run[0], pre, *run[1:])],
                                   capture_output=True, text=True, timeout=120)
            assert check.returncode == 0, f"ExecStartPre of {svc['name']}: {check.stdout}"
            svc["cmd"] = as_unit_runs_it(run[0], start, *run[1:])
            lab.unit_roles[svc["name"]] = role  # type: ignore[attr-defined]
        for svc in lab.spec["service"]:
            if svc.get("start", True):
                lab.start_service(svc["name"])
        return lab

    yield factory
    for lab in labs:
        lab.down(quiet=True)
        assert not lab.namespaces(), "namespaces left behind"


def lay_out_as_installed(lab: Lab, user: ServiceUser) -> None:
    """Configuration root:mipro 0750/0640 (docs/operations.md), the runtime directory the
    user's (RuntimeDirectory=, 0755); the HA's state file is in it in the lab's confs."""
    conf = lab.out / "conf"
    for path in [conf, *conf.rglob("*")]:
        os.chown(path, 0, user.gid)
        path.chmod(0o750 if path.is_dir() else 0o640)
    os.chown(lab.run_dir, user.uid, user.gid)
    lab.run_dir.chmod(0o755)


def assert_runs_as_the_unit_says(lab: Lab, user: ServiceUser) -> None:
    for name, role in lab.unit_roles.items():
        s = unit(role)
        pid = lab.services[name].proc.pid
        status = proc_status(pid)
        assert "mipro.cli" in Path(f"/proc/{pid}/cmdline").read_text(), name
        assert status["Uid"].split() == [str(user.uid)] * 4, (name, status["Uid"])
        assert status["Gid"].split() == [str(user.gid)] * 4, (name, status["Gid"])
        assert status["Groups"].split() == [str(user.gid)], (name, status["Groups"])
        want = sum(1 << CAP_NUMBERS[c] for c in capability_set(s["AmbientCapabilities"]))
        for field in ("CapEff", "CapPrm", "CapAmb"):
            assert int(status[field], 16) == want, (name, field, status[field])
        bounding = sum(1 << CAP_NUMBERS[c] for c in capability_set(s["CapabilityBoundingSet"]))
        assert int(status["CapBnd"], 16) == bounding, (name, status["CapBnd"])
        assert status["NoNewPrivs"] == "1" and status["Umask"] == s["UMask"][-1], status
        assert status["Seccomp"] == "2", (name, status["Seccomp"])  # a filter is installed
        sock = lab.run_dir / f"{name}.sock"
        st = sock.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (user.uid, user.gid, 0o660)


PROBE = """
import errno, os, socket
def fails(call):
    try:
        call()
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return "ok"
print(fails(lambda: os.setpriority(os.PRIO_PROCESS, 0, 5)),   # @resources: denied
      fails(lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)),  # not a family
      fails(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()),
      fails(lambda: os.getpriority(os.PRIO_PROCESS, 0)))  # allowed
"""


@pytest.mark.parametrize("role", ROLES)
def test_the_seccomp_filter_is_the_units(mipro_user, public_dir, role):
    """What unit_seccomp.py installs denies what the unit denies (else the scenario test
    below would prove nothing about it)."""
    python, pythonpath = daemon_python(mipro_user)
    spec = public_dir / "seccomp.json"
    spec.write_text(json.dumps(seccomp_spec(role)))
    spec.chmod(0o644)
    cmd = as_unit_runs_it(role, [], mipro_user, python, pythonpath, spec)
    cmd = cmd[:cmd.index("-m")] + ["-c", PROBE]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["EPERM", "EAFNOSUPPORT", "ok", "ok"], proc.stderr


@pytest.mark.parametrize("scenario", ["ro", "colocated"])
def test_scenario_passes_with_the_daemons_run_as_their_units(unit_lab, mipro_user, scenario):
    lab = unit_lab(scenario)
    assert set(lab.unit_roles.values()) == ({"ha", "fa", "mn"} if scenario == "ro"
                                            else {"ha", "mn"})
    assert_runs_as_the_unit_says(lab, mipro_user)
    said: list[str] = []
    load_check(scenario).run(lab, say=said.append)  # registers the MN, pings, TCP, ...
    assert_runs_as_the_unit_says(lab, mipro_user)  # still: nothing gained or lost

    # what the HA wrote (its bindings) is the user's and no one else's (UMask=0077)
    saved = sorted(lab.run_dir.glob("ha-bindings.json*"))
    assert saved, "the HA saved no bindings"
    for path in saved:
        st = path.stat()
        assert (st.st_uid, st.st_mode & 0o077) == (mipro_user.uid, 0), path
    # a reload and a stop work unprivileged too: SIGHUP re-reads, SIGTERM removes it all
    def reloads() -> int:
        return sum("event=reloaded" in x for x in lab.log_lines("ha"))
    before = reloads()
    lab.exec("ha", "kill", "-HUP", str(lab.services["ha"].proc.pid))
    lab.wait_for(lambda: reloads() > before, 10, "the HA's reload")
    for name in ("mn", *[n for n in lab.unit_roles if n not in ("mn", "ha")], "ha"):
        assert lab.stop_service(name) == 0, "\n".join(lab.log_lines(name)[-20:])
        assert any("event=stopped" in x for x in lab.log_lines(name)), name
    for node in ("ha", *(["fa1"] if scenario == "ro" else [])):
        table = "434" if node == "ha" else "1434"
        assert f"lookup {table}" not in lab.exec(node, "ip", "rule").stdout, node
    errors = [x for n in lab.unit_roles for x in lab.log_lines(n)
              if "level=error" in x or "Traceback" in x]
    assert not errors, errors
