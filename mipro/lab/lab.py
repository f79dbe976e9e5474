"""Build a topology of namespaces, start services, drive traffic, tear everything down."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .expect import json_cmp, run_and_expect

ROOT = Path(__file__).resolve().parents[2]
LAB_DIR = ROOT / "netns-lab"
SCENARIOS = LAB_DIR / "scenarios"


# A one-way delay (netem, e.g. "20ms") on every link of the topology's internet router,
# so that route optimization shows as time; needs a kernel with sch_netem.
INTERNET_DELAY = os.environ.get("MIPRO_LAB_INTERNET_DELAY", "")

# Every timeout of the lab is multiplied by this: under an emulated CPU (a stock kernel
# in qemu without KVM, tests/kernel/runner.py) starting a Python daemon takes ~30 s.
TIME_SCALE = float(os.environ.get("MIPRO_LAB_TIME_SCALE", "1"))


class LabError(RuntimeError):
    pass


def sh(*args: str, check: bool = True, timeout: float = 30,
       capture: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=capture, text=True,
                          timeout=timeout * TIME_SCALE)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(args)} failed ({proc.returncode}): "
                       f"{(proc.stderr or proc.stdout or '').strip()}")
    return proc


@dataclass
class Service:
    node: str
    name: str
    proc: subprocess.Popen
    log: Path


@dataclass
class Lab:
    scenario: str
    prefix: str = "ml"
    out: Path = field(default=None)  # type: ignore[assignment]
    python: str = sys.executable
    services: dict[str, Service] = field(default_factory=dict)
    captures: list[subprocess.Popen] = field(default_factory=list)
    topology: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dir = SCENARIOS / self.scenario
        if not (self.dir / "scenario.toml").exists():
            raise LabError(f"no scenario {self.scenario!r} in {SCENARIOS}")
        self.spec = tomllib.loads((self.dir / "scenario.toml").read_text())
        topo = LAB_DIR / self.spec.get("topology", "topology.toml")
        self.topology = tomllib.loads(topo.read_text())
        if self.out is None:  # MIPRO_LAB_OUT: elsewhere, e.g. a tmpfs in a test VM
            self.out = Path(os.environ.get("MIPRO_LAB_OUT", LAB_DIR / "out")) / self.scenario
        self.run_dir = self.out / "run"

    # --- names ------------------------------------------------------------------------

    def ns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    @property
    def sw(self) -> str:
        return self.ns("sw")

    def namespaces(self) -> list[str]:
        listed = sh("ip", "netns", "list").stdout.split("\n")
        names = [line.split()[0] for line in listed if line.strip()]
        return [n for n in names if n.startswith(self.prefix + "-")]

    # --- building ---------------------------------------------------------------------

    def up(self, services: bool = True) -> None:
        self.down(quiet=True)
        if self.out.exists():
            shutil.rmtree(self.out)
        (self.out / "logs").mkdir(parents=True)
        self.run_dir.mkdir(parents=True)
        self._write_state()
        nodes = self.topology["node"]
        for name in ["sw", *[n["name"] for n in nodes]]:
            sh("ip", "netns", "add", self.ns(name))
            self.exec(name, "ip", "link", "set", "lo", "up")
        for bridge in self.topology.get("bridges", {}):
            self.exec("sw", "ip", "link", "add", f"br-{bridge}", "type", "bridge")
            self.exec("sw", "ip", "link", "set", f"br-{bridge}", "up")
        port = 0
        for node in nodes:
            for iface in node.get("iface", []):
                if "bridge" in iface:
                    port += 1
                    self._bridge_port(node["name"], iface, f"p{port}")
                elif "peer" in iface:
                    peer_node, peer_if = iface["peer"].split(".")
                    self.exec(node["name"], "ip", "link", "add", iface["name"], "type", "veth",
                              "peer", "name", peer_if, "netns", self.ns(peer_node))
        for node in nodes:
            for iface in node.get("iface", []):
                if "mac" in iface:
                    self.exec(node["name"], "ip", "link", "set", iface["name"], "address",
                              iface["mac"])
                if "address" in iface:
                    self.exec(node["name"], "ip", "addr", "add", iface["address"], "dev",
                              iface["name"])
                self.exec(node["name"], "ip", "link", "set", iface["name"], "up")
            for route in node.get("routes", []):
                self.exec(node["name"], "ip", "route", "add", *route.split())
            fwd = "1" if node.get("forward") else "0"
            self.exec(node["name"], "sysctl", "-qw", f"net.ipv4.ip_forward={fwd}")
            for command in node.get("setup", []):  # e.g. the NAPT of a residential gateway
                self.exec(node["name"], *command.split())
            if node.get("internet") and INTERNET_DELAY:
                self._delay(node)
        self._render_confs()
        self._start_captures()
        for svc in self.spec.get("service", []) if services else []:
            if svc.get("start", True):
                self.start_service(svc["name"])

    def _delay(self, node: dict[str, Any]) -> None:
        for iface in node.get("iface", []):
            r = self.exec(node["name"], "tc", "qdisc", "add", "dev", iface["name"], "root",
                          "netem", "delay", INTERNET_DELAY, check=False)
            if r.returncode:
                raise LabError(f"cannot delay {node['name']}.{iface['name']} with netem "
                               f"({r.stderr.strip()}); this kernel may lack sch_netem: "
                               "`make demo KERNEL=stock` runs the lab in Debian's kernel")

    def _bridge_port(self, node: str, iface: dict[str, Any], port: str) -> None:
        self.exec(node, "ip", "link", "add", iface["name"], "type", "veth", "peer", "name",
                  port, "netns", self.sw)
        self.exec("sw", "ip", "link", "set", port, "master", f"br-{iface['bridge']}", "up")
        self.ports = getattr(self, "ports", {})
        self.ports[f"{node}.{iface['name']}"] = port

    def move(self, node_iface: str, bridge: str, flap: float = 0.05) -> float:
        """Move a host's LAN port to another bridge: the mobile node changes links.

        The port goes down for ``flap`` seconds, as a radio link would: the host sees
        its carrier drop and come back.  Returns the time the link came back up.
        """
        port = self._port_of(node_iface)
        self.exec("sw", "ip", "link", "set", port, "down")
        self.exec("sw", "ip", "link", "set", port, "nomaster")
        self.exec("sw", "ip", "link", "set", port, "master", f"br-{bridge}")
        time.sleep(flap)
        self.exec("sw", "ip", "link", "set", port, "up")
        return time.time()

    def _port_of(self, node_iface: str) -> str:
        ports = getattr(self, "ports", None) or self._read_state().get("ports", {})
        return ports[node_iface]

    def _render_confs(self) -> None:
        """Copy the scenario's per-node conf folders, filling in the run paths."""
        subst = {"{run}": str(self.run_dir), "{out}": str(self.out), "{lab}": str(self.dir)}
        for src in sorted(p for p in self.dir.glob("*/*") if p.suffix in (".toml", ".conf")):
            text = src.read_text()
            for k, v in subst.items():
                text = text.replace(k, v)
            dst = self.out / "conf" / src.parent.name / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(text)
            dst.chmod(0o600)

    def conf(self, node: str, name: str) -> Path:
        return self.out / "conf" / node / name

    def edit_conf(self, node: str, name: str, old: str, new: str) -> None:
        path = self.conf(node, name)
        text = path.read_text()
        if old not in text:
            raise LabError(f"{path} has no {old!r}")
        path.write_text(text.replace(old, new))

    def log_lines(self, service: str) -> list[str]:
        path = self.out / "logs" / f"{service}.log"
        return path.read_text().splitlines() if path.exists() else []

    def _start_captures(self) -> None:
        if not shutil.which("tcpdump"):
            return
        for node in self.topology["node"]:
            for iface in node.get("iface", []):
                if "address" not in iface and "bridge" not in iface:
                    continue
                pcap = self.out / f"{node['name']}-{iface['name']}.pcap"
                proc = subprocess.Popen(
                    ["ip", "netns", "exec", self.ns(node["name"]), "tcpdump", "-i",
                     iface["name"], "-n", "-U", "-s", "256", "-w", str(pcap)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                self.captures.append(proc)
        self._write_state()

    def start_service(self, name: str) -> Service:
        svc = next(s for s in self.spec["service"] if s["name"] == name)
        cmd = [self._fill(c) for c in svc["cmd"]]
        ready = Path(self._fill(svc.get("socket") or svc["ready"])) \
            if "socket" in svc or "ready" in svc else None
        running = self.services.get(name)
        if ready is not None and (running is None or running.proc.poll() is not None):
            ready.unlink(missing_ok=True)  # a killed daemon's: it would mean ready at once
        log = self.out / "logs" / f"{name}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        fh = open(log, "a")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(svc["node"]), *cmd],
                                stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        fh.close()
        self.services[name] = Service(svc["node"], name, proc, log)
        self._write_state()
        if ready is not None:  # a file that exists once it serves
            sock = ready
            self.wait_for(lambda: sock.exists() or proc.poll() is not None, 20,
                          f"{name} control socket")
            if proc.poll() is not None:
                raise LabError(f"{name} exited ({proc.returncode}); see {log}:\n"
                               f"{log.read_text()[-2000:]}")
            if "socket" in svc:  # the socket exists before the daemon has finished
                self.wait_for(lambda: self._answers(name), 20, f"{name} status")
        return self.services[name]

    def _answers(self, name: str) -> bool:
        """One status round trip: the daemon answers only once its loop runs, after
        the rest of its start (and its ``started`` line)."""
        try:
            self.status(name)
        except (OSError, ValueError):
            return False
        return True

    def stop_service(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        svc = self.services.pop(name)
        if svc.proc.poll() is None:
            os.killpg(svc.proc.pid, sig)
            try:
                svc.proc.wait(timeout * TIME_SCALE)
            except subprocess.TimeoutExpired:
                os.killpg(svc.proc.pid, signal.SIGKILL)
                svc.proc.wait(5)
        self._write_state()
        return svc.proc.returncode

    def _fill(self, text: str) -> str:
        return (text.replace("{python}", self.python)
                .replace("{mipro}", f"{self.python} -m mipro.cli")
                .replace("{run}", str(self.run_dir)).replace("{out}", str(self.out))
                .replace("{conf}", str(self.out / "conf")))

    # --- using ------------------------------------------------------------------------

    def exec(self, node: str, *cmd: str, check: bool = True,
             timeout: float = 30) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.ns(node), *cmd, check=check, timeout=timeout)

    def status(self, name: str) -> dict[str, Any]:
        svc = next(s for s in self.spec["service"] if s["name"] == name)
        from ..runtime.control import request

        return request(self._fill(svc["socket"]))

    def vtysh(self, node: str, command: str) -> Any:
        """One vtysh command to the FRR instance of ``node`` (mipro.lab.frr); its answer,
        decoded when it is JSON."""
        out = self.exec(node, "vtysh", "--vty_socket", str(self.run_dir / f"frr-{node}"),
                        "-c", command).stdout
        return json.loads(out) if command.rstrip().endswith("json") else out

    def mipro_status(self, name: str) -> str:
        """`mipro status` as an operator sees it, for a service with a control socket."""
        svc = next(s for s in self.spec["service"] if s["name"] == name)
        return sh(self.python, "-m", "mipro.cli", "status", "--socket",
                  self._fill(svc["socket"])).stdout

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str,
                 interval: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout * TIME_SCALE
        while True:
            try:
                value = predicate()
            except (OSError, KeyError, ValueError):
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise LabError(f"timed out after {timeout * TIME_SCALE:g}s waiting for {what}")
            time.sleep(interval)

    # --- expected state (netns-lab/scenarios/NAME/expect.json) ---------------------------

    def phases(self) -> dict[str, dict[str, Any]]:
        """The scenario's expected states by phase, in order: each names the daemons
        (services) it is about, with what their `status --json` must match (json_cmp),
        and says in "about" what it means."""
        if not hasattr(self, "_phases"):
            path = self.dir / "expect.json"
            self._phases = json.loads(path.read_text()) if path.exists() else {}
        return self._phases

    def expected(self, phase: str, services: tuple[str, ...] | None = None) -> dict[str, Any]:
        """A phase's expected status per service (all of its services, or those named)."""
        if phase not in self.phases():
            raise LabError(f"{self.dir / 'expect.json'} has no phase {phase!r}")
        want = {k: v for k, v in self.phases()[phase].items() if k != "about"}
        return want if services is None else {k: want[k] for k in services}

    def expect(self, service: str, expected: dict[str, Any] | str, timeout: float = 10,
               what: str | None = None) -> dict[str, Any]:
        """Poll ``service``'s status until it matches ``expected`` (a json_cmp pattern, or
        the name of a phase of expect.json); return it.  On timeout the error says
        which keys differed and how."""
        if isinstance(expected, str):
            what = what or f"{service} as in phase {expected!r}"
            expected = self.expected(expected, (service,))[service]
        return run_and_expect(lambda: self.status(service), expected, timeout,
                              what or f"{service}'s status", scale=TIME_SCALE)

    def expect_phase(self, phase: str, timeout: float = 10,
                     services: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
        """Poll the phase's services (all together: one consistent round of answers)
        until each matches; return their statuses by service."""
        want = self.expected(phase, services)
        return run_and_expect(lambda: {s: self.status(s) for s in want}, want, timeout,
                              f"{self.scenario}: phase {phase!r}", scale=TIME_SCALE)

    def matches(self, phase: str,
                services: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
        """The phase's services' statuses if they match it now, else {} (a predicate for
        wait_for)."""
        want = self.expected(phase, services)
        try:
            actual = {s: self.status(s) for s in want}
        except (OSError, KeyError, ValueError):
            return {}
        return actual if json_cmp(actual, want) is None else {}

    # --- traffic ----------------------------------------------------------------------

    def wait_listening(self, node: str, port: int, proc: subprocess.Popen,
                       udp: bool = False, timeout: float = 10) -> None:
        """Until ``proc`` (started with `ip netns exec`, which execs: the same pid) has a
        socket listening on ``port`` in the node's namespace, as `ss` shows it."""
        flags = "-Hlnup" if udp else "-Hlntp"

        def listening() -> bool:
            if proc.poll() is not None:
                raise LabError(f"{node}: the listener on port {port} exited "
                               f"({proc.returncode})")
            out = self.exec(node, "ss", flags, f"sport = :{port}", check=False).stdout
            return f"pid={proc.pid}," in out
        self.wait_for(listening, timeout, f"{node} to listen on port {port}", interval=0.02)

    @contextlib.contextmanager
    def capture(self, node: str, bpf: str, iface: str = "eth0") -> Iterator[list[str]]:
        """tcpdump on ``node``'s ``iface`` for the duration of the with-block; the list
        it yields holds tcpdump's lines once the block is left.

        The block starts once tcpdump says it is listening; when it ends, ``node`` sends
        a marker broadcast out of ``iface`` and the capture ends when tcpdump has shown
        it: every packet the interface saw before is in the list."""
        port = 40000 + (os.getpid() + time.monotonic_ns()) % 20000  # the marker's source
        marker = f".{port} > 255.255.255.255.9: UDP"
        cap = subprocess.Popen(["ip", "netns", "exec", self.ns(node), "tcpdump", "-l", "-n",
                                "--immediate-mode", "-i", iface,
                                f"({bpf}) or (udp dst port 9 and dst host 255.255.255.255)"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               errors="replace")
        lines: list[str] = []
        errors: list[str] = []

        def read(stream: Any, into: list[str]) -> None:
            for line in stream:
                into.append(line.rstrip("\n"))
        readers = [threading.Thread(target=read, args=(cap.stdout, lines), daemon=True),
                   threading.Thread(target=read, args=(cap.stderr, errors), daemon=True)]
        for r in readers:
            r.start()
        seen: list[str] = []
        try:
            self.wait_for(lambda: cap.poll() is not None or
                          any("listening on" in e for e in errors), 10,
                          f"tcpdump on {node}.{iface} to listen")
            if cap.poll() is not None:
                raise LabError(f"tcpdump on {node}.{iface} exited: {errors}")
            yield seen
            self.exec(node, self.python, "-m", "mipro.lab.traffic", "udp-mark", "--iface",
                      iface, "--sport", str(port))
            self.wait_for(lambda: any(marker in line for line in lines), 10,
                          f"the marker in the capture on {node}.{iface}")
        finally:
            cap.terminate()
            cap.wait(10)
            for r in readers:
                r.join(5)
        seen.extend(lines[:next(i for i, line in enumerate(lines) if marker in line)])

    def ping(self, node: str, dst: str, count: int = 3) -> tuple[int, float | None]:
        """(packets received, average RTT in ms)."""
        proc = self.exec(node, "ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "2",
                         dst, check=False, timeout=count * 3 + 5)
        received = 0
        rtt = None
        for line in proc.stdout.splitlines():
            if "received" in line:
                received = int(line.split(",")[1].split()[0])
            if line.startswith("rtt"):
                rtt = float(line.split("=")[1].split("/")[1])
        return received, rtt

    def echo_stream(self, client: str, server: str, server_ip: str, seconds: float,
                    port: int = 5003) -> tuple[subprocess.Popen, subprocess.Popen]:
        """Start a long TCP echo session (one message every 50 ms); see echo_result()."""
        srv = subprocess.Popen(["ip", "netns", "exec", self.ns(server), self.python, "-m",
                                "mipro.lab.traffic", "echo-server", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.wait_listening(server, port, srv)
        cli = subprocess.Popen(["ip", "netns", "exec", self.ns(client), self.python, "-m",
                                "mipro.lab.traffic", "echo-client", server_ip, "--port",
                                str(port), "--seconds", str(seconds)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return srv, cli

    def udp_burst(self, sender: str, receiver: str, dst: str, port: int) -> dict[str, Any]:
        """0.3 s of datagrams from sender to dst:port; what the receiver saw (its
        "arrivals" and the "peers" it heard from)."""
        sink = subprocess.Popen(["ip", "netns", "exec", self.ns(receiver), self.python, "-m",
                                 "mipro.lab.traffic", "udp-sink", "--port", str(port),
                                 "--seconds", str(1.5 * TIME_SCALE)],
                                stdout=subprocess.PIPE, text=True)
        self.wait_listening(receiver, port, sink, udp=True)
        self.exec(sender, self.python, "-m", "mipro.lab.traffic", "udp-source", dst, "--port",
                  str(port), "--seconds", "0.3", "--interval", "0.01")
        return json.loads(sink.communicate(timeout=10 * TIME_SCALE)[0])

    def udp_sink(self, node: str, port: int, seconds: float) -> subprocess.Popen:
        """Record every datagram to ``port`` for a while: json {"arrivals": [[seq, time]],
        "peers"} on its stdout."""
        sink = subprocess.Popen(["ip", "netns", "exec", self.ns(node), self.python, "-m",
                                 "mipro.lab.traffic", "udp-sink", "--port", str(port),
                                 "--seconds", str(seconds * TIME_SCALE)],
                                stdout=subprocess.PIPE, text=True)
        self.wait_listening(node, port, sink, udp=True)
        return sink

    def udp_source(self, node: str, dst: str, port: int, seconds: float,
                   interval: float) -> subprocess.Popen:
        """A numbered datagram every ``interval`` seconds to dst:port, in the background."""
        return subprocess.Popen(["ip", "netns", "exec", self.ns(node), self.python, "-m",
                                 "mipro.lab.traffic", "udp-source", dst, "--port", str(port),
                                 "--seconds", str(seconds), "--interval", str(interval)],
                                stdout=subprocess.DEVNULL)

    def udp_echo(self, server: str, seconds: float, port: int = 7007) -> subprocess.Popen:
        """A UDP echo server for a while (it says whom it saw); json on its stdout."""
        srv = subprocess.Popen(["ip", "netns", "exec", self.ns(server), self.python, "-m",
                                "mipro.lab.traffic", "udp-echo", "--port", str(port),
                                "--seconds", str(seconds * TIME_SCALE)],
                               stdout=subprocess.PIPE, text=True)
        self.wait_listening(server, port, srv, udp=True)
        return srv

    def udp_ask(self, client: str, dst: str, message: str, bind: str,
                port: int = 7007) -> str | None:
        """One datagram from ``bind`` (address:port) in client to dst; the answer."""
        out = self.exec(client, self.python, "-m", "mipro.lab.traffic", "udp-ask", dst,
                        message, "--port", str(port), "--bind", bind).stdout
        return json.loads(out)["answer"]

    def iperf(self, server: str, client: str, dst: str, udp: bool, seconds: int) -> float:
        """iperf3 from client to dst (served in server): Mbit/s received, for UDP at a
        2 Gbit/s offered load of 1,400-byte datagrams."""
        srv = subprocess.Popen(["ip", "netns", "exec", self.ns(server), "iperf3", "-s", "-1",
                                "-p", "5201"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        self.wait_listening(server, 5201, srv)
        args = ["iperf3", "-c", dst, "-p", "5201", "-t", str(seconds), "-J"]
        if udp:
            args += ["-u", "-b", "2G", "-l", "1400"]
        out = self.exec(client, *args, check=False, timeout=seconds + 60).stdout
        srv.wait(timeout=60 * TIME_SCALE)
        end = json.loads(out)["end"]
        return (end.get("sum_received") or end.get("sum"))["bits_per_second"] / 1e6

    def tcp_rtt(self, client: str, server: str, server_ip: str, port: int = 5004) -> float:
        """Median TCP request/response time (ms) over a second of small echoes."""
        result = self.echo_result(self.echo_stream(client, server, server_ip, 1.0, port))
        if not result.get("ok"):
            raise LabError(f"TCP echo {client} -> {server_ip}: {result}")
        return result["median_ms"]

    @staticmethod
    def echo_result(pair: tuple[subprocess.Popen, subprocess.Popen],
                    timeout: float = 120) -> dict[str, Any]:
        srv, cli = pair
        try:
            out, err = cli.communicate(timeout=timeout)
        finally:
            for p in pair:
                if p.poll() is None:
                    p.kill()
                    p.wait(5)
        return json.loads(out) if out.strip() else {"ok": False, "error": err.strip()[-500:]}

    def tcp_transfer(self, client: str, server: str, server_ip: str, nbytes: int,
                     port: int = 5001) -> dict[str, Any]:
        """Send nbytes from client to server over TCP and back; both ends verify."""
        sink = subprocess.Popen(["ip", "netns", "exec", self.ns(server), self.python, "-m",
                                 "mipro.lab.traffic", "sink", "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            self.wait_listening(server, port, sink)
            sent = self.exec(client, self.python, "-m", "mipro.lab.traffic", "send", server_ip,
                             "--port", str(port), "--bytes", str(nbytes), timeout=60)
            out, err = sink.communicate(timeout=30 * TIME_SCALE)
        finally:
            if sink.poll() is None:
                sink.kill()
        return {"client": json.loads(sent.stdout), "server": json.loads(out or "{}")}

    # --- tearing down ------------------------------------------------------------------

    def down(self, quiet: bool = False) -> None:
        state = self._read_state()
        pids = [s.proc.pid for s in self.services.values()] + state.get("pids", [])
        for pid in set(pids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for svc in self.services.values():
            try:
                svc.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(svc.proc.pid, signal.SIGKILL)
        for pid in set(pids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for cap in self.captures:
            cap.terminate()
        for cap in self.captures:
            try:
                cap.wait(5)
            except subprocess.TimeoutExpired:
                cap.kill()
        for pid in state.get("captures", []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self.services.clear()
        self.captures.clear()
        for ns in self.namespaces():
            # processes still inside (e.g. from a crashed run) go first
            pids_in = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids_in:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)
        state_file = self._state_path()
        if state_file.exists():
            state_file.unlink()
        if not quiet:
            print(f"lab {self.scenario}: down")

    def _state_path(self) -> Path:
        return LAB_DIR / "out" / f".{self.prefix}.state.json"

    def _write_state(self) -> None:
        path = self._state_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "scenario": self.scenario, "prefix": self.prefix, "out": str(self.out),
            "pids": [s.proc.pid for s in self.services.values()],
            "captures": [c.pid for c in self.captures],
            "ports": getattr(self, "ports", {})}))

    def _read_state(self) -> dict[str, Any]:
        try:
            return json.loads(self._state_path().read_text())
        except (OSError, ValueError):
            return {}
