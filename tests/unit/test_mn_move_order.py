"""The MN daemon on a move from one foreign agent to the next: the request to the new
agent leaves on the link before the two routes change (the real sending is tested in
tests/integration/test_handover.py); any other move changes its routes first."""

import asyncio
import dataclasses
import io
import socket
from ipaddress import IPv4Address
from pathlib import Path

from mipro.config import load_mn
from mipro.core.actions import Log, Send
from mipro.core.mn import UseForeignAgent
from mipro.runtime.logging import EventLog
from mipro.runtime.mn_daemon import MnDaemon

CONF = Path(__file__).resolve().parents[2] / "conf" / "mn.toml"
FA2 = IPv4Address("192.0.2.1")


class Recorder:
    """The dataplane's and the socket's calls, in order."""

    def __init__(self, between: bool, home: str) -> None:
        self.calls: list[tuple] = []
        self.between = between
        self.home = home
        self.own_out = False

    def between_agents(self) -> bool:
        return self.between

    async def use_agent(self, agent):
        self.calls.append(("use_agent", agent))

    def getsockname(self):
        return (self.home, 40000)

    def sendto(self, data, addr):
        self.calls.append(("sendto", addr))

    def sendmsg(self, buffers, ancillary, flags, addr):
        self.calls.append(("sendmsg", addr, flags))


def run(tmp_path, between: bool) -> list[tuple]:
    path = tmp_path / "mn.toml"
    path.write_text(CONF.read_text())
    path.chmod(0o600)
    cfg = load_mn(path)
    daemon = MnDaemon(cfg, EventLog("mn", stream=io.StringIO()))
    rec = Recorder(between, str(cfg.home_address))
    daemon.dataplane = rec  # type: ignore[assignment]
    daemon.sock = rec  # type: ignore[assignment]
    daemon.cfg = dataclasses.replace(cfg, interface="lo")
    actions = [Log("agent-found", {}), UseForeignAgent(FA2, FA2, 24),
               Send(FA2, 434, b"request"), Log("register", {})]
    asyncio.run(daemon._execute(actions))
    return rec.calls


def test_between_agents_the_request_leaves_on_the_link_before_the_routes(tmp_path):
    assert run(tmp_path, True) == [("sendmsg", (str(FA2), 434), socket.MSG_DONTROUTE),
                                   ("use_agent", FA2)]


def test_otherwise_the_routes_change_first(tmp_path):
    assert run(tmp_path, False) == [("use_agent", FA2),
                                      ("sendmsg", (str(FA2), 434), socket.MSG_DONTROUTE)]
