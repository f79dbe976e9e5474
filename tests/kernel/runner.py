#!/usr/bin/env python3
"""`make test-kernel`: the kernel-backend tests on a kernel that has ipip and ip_gre.

If this machine's kernel has them, the tests run here.  Otherwise Debian's stock
kernel (package linux-image-amd64) boots in qemu through virtme-ng, which shares
this root filesystem read-only (the repository and /tmp read-write), and one
pytest process runs inside it.  KVM is used when a guest boots with it,
emulation (TCG) otherwise; under emulation the lab's timeouts are stretched
(MIPRO_LAB_TIME_SCALE).  It prints where the tests ran; their JUnit report and
the labs' captures and logs stay under tests/kernel/results/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "tests" / "kernel" / "results"
GUEST_TIME_SCALE = {"kvm": "2", "tcg": "8"}


def host_has_tunnels() -> str | None:
    sys.path.insert(0, str(REPO))
    from tests.kernel.conftest import MISSING  # noqa: PLC0415 - probes when imported

    return MISSING


def stock_kernel() -> Path | None:
    kernels = sorted(Path("/boot").glob("vmlinuz-*"), key=lambda p: p.stat().st_mtime)
    return kernels[-1] if kernels else None


def vng() -> str | None:
    here = Path(sys.executable).parent / "vng"
    return str(here) if here.exists() else shutil.which("vng")


def vng_command(kernel: Path, mode: str, command: str) -> list[str]:
    cmd = [vng(), "--run", str(kernel), "--disable-microvm", "--memory", "2G", "--cpus", "2",
           "--rwdir", str(REPO), "--exec", command]
    if mode == "tcg":
        cmd.insert(4, "--disable-kvm")
    return cmd


def env() -> dict[str, str]:
    """virtme-ng runs helpers (virtme-run, busybox) from PATH: ours first."""
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}:{e.get('PATH', '/usr/bin:/bin')}"
    return e


def pick_mode(kernel: Path) -> str:
    """KVM if a guest boots with it within a minute, else emulation."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    # its own process group: on a timeout qemu goes too, not only virtme-ng's wrapper (an
    # orphaned guest that never boots spins on a core for the whole run)
    probe = subprocess.Popen(vng_command(kernel, "kvm", "true"), env=env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        code = probe.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(probe.pid, signal.SIGKILL)
        probe.wait()
        return "tcg"
    return "kvm" if code == 0 else "tcg"


def pytest_args(basetemp: Path, everything: bool = False) -> list[str]:
    """``everything``: the tests marked slow too (under emulation each takes 10-15 min)."""
    select = [] if everything else ["-m", "'not slow'"]
    return ["-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider", *select,
            str(REPO / "tests" / "kernel"), f"--junitxml={RESULTS / 'junit.xml'}",
            f"--basetemp={basetemp}"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", nargs="*", metavar="SCENARIO",
                   help="run these lab scenarios (default: ro) with a 20 ms netem delay on "
                        "the internet links instead of the tests")
    p.add_argument("--delay", default="20ms", help="one-way internet delay for --demo")
    p.add_argument("--exec", dest="command", help="run this shell command there instead "
                   "(e.g. a benchmark: \"$PY bench/kernel_dataplane.py\")")
    p.add_argument("--all", dest="everything", action="store_true",
                   help="the tests marked slow too (make test-kernel-all)")
    a = p.parse_args()
    if RESULTS.exists():
        shutil.rmtree(RESULTS)
    RESULTS.mkdir(parents=True)
    if a.command:
        job = f"PY={sys.executable} MIPRO_LAB_OUT=/run/mipro-kernel-tests; export PY " \
              f"MIPRO_LAB_OUT; {a.command}"
    elif a.demo is not None:
        job = f"MIPRO_LAB_INTERNET_DELAY={a.delay} MIPRO_LAB_OUT=/run/mipro-kernel-tests " \
            f"{sys.executable} -m mipro.lab.cli run " + " ".join(a.demo or ["ro"])
    else:
        job = f"{sys.executable} {' '.join(pytest_args(Path('/run/mipro-kernel-tests'), a.everything))}"
    missing = host_has_tunnels()
    if missing is None:
        print(f"kernel tests: on this machine's kernel {os.uname().release} (it has ipip "
              "and ip_gre)", flush=True)
        if a.demo is not None or a.command:
            return subprocess.call(["sh", "-c", job], cwd=REPO)
        args = [x.strip("'") for x in pytest_args(RESULTS / "labs", a.everything)]
        return subprocess.call([sys.executable, *args], cwd=REPO)
    kernel, tool = stock_kernel(), vng()
    if kernel is None or tool is None:
        print(f"kernel tests SKIPPED: {missing}, and no stock kernel to boot "
              f"(/boot/vmlinuz-*: {kernel}, virtme-ng: {tool}); `make setup` installs both",
              flush=True)
        return 0
    t0 = time.monotonic()
    mode = pick_mode(kernel)
    print(f"kernel tests: this kernel ({os.uname().release}) lacks them ({missing}); booting "
          f"{kernel.name} in qemu with virtme-ng, {'KVM' if mode == 'kvm' else 'emulated (TCG)'}",
          flush=True)
    script = RESULTS / "guest.sh"
    # the labs live in the guest's own tmpfs (control sockets cannot live on the 9p
    # share); their logs and captures are copied back afterwards
    script.write_text(
        "#!/bin/sh\n"
        f"cd {REPO}\n"
        f"export MIPRO_LAB_TIME_SCALE={GUEST_TIME_SCALE[mode]} PYTHONUNBUFFERED=1\n"  # progress as it comes
        "echo \"guest: kernel $(uname -r), $(nproc) CPUs\"\n"
        "modprobe tun; modprobe ipip; modprobe ip_gre; modprobe sch_netem\n"
        f"{job}\n"
        f"echo $? > {RESULTS / 'exit-code'}\n"
        "cd /run/mipro-kernel-tests 2>/dev/null && find . \\( -name '*.log' -o -name '*.pcap' "
        f"\\) -exec cp --parents {{}} {RESULTS / 'labs'} \\;\n")
    (RESULTS / "labs").mkdir()
    script.chmod(0o755)
    # through a pipe: qemu reopens its stdout, which would truncate a log file we write to
    with subprocess.Popen(vng_command(kernel, mode, str(script)), env=env(), cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace") as vm:
        for line in vm.stdout:
            print(line, end="", flush=True)
    code_file = RESULTS / "exit-code"
    code = int(code_file.read_text()) if code_file.exists() else 1
    what = "kernel tests" if a.demo is None and not a.command else "stock-kernel run"
    report = f"; report {RESULTS / 'junit.xml'}" if what == "kernel tests" else ""
    print(f"{what}: {'passed' if code == 0 else f'FAILED ({code})'} in "
          f"{time.monotonic() - t0:.0f} s{report}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
